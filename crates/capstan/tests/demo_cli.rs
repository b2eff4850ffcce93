//! `capstan demo` as a user runs it without a terminal (a pipe): one line per action or
//! change of decision, then the summary table; and the errors of bad flags.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn capstan(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prints_decisions_as_they_happen_then_the_summary() {
    // A speed this high makes the pacing a no-op: the test does not depend on how fast
    // the machine is.
    let (ok, stdout, stderr) = capstan(&["demo", "--speed", "1000000", "--duration", "1800"]);
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().unwrap(),
        "capstan demo: redis-burst (seed 0) · 1000000× real time · showing 2:55:00 → 3:25:00"
    );
    // Every decision line is `h:mm:ss  run  sentence`, within the window.
    let decisions: Vec<(&str, &str, &str)> = stdout
        .lines()
        .filter_map(|l| {
            let (time, rest) = l.split_once("  ")?;
            let (run, sentence) = rest.split_once("  ")?;
            let t: Vec<u64> = time
                .split(':')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            (t.len() == 3).then_some((time, run, sentence))
        })
        .collect();
    assert!(
        decisions
            .iter()
            .all(|(t, _, _)| ("2:55:00"..="3:25:00").contains(t)),
        "{stdout}"
    );
    // The burst at 3:00 makes capstan scale out, with its reason.
    assert!(
        decisions.iter().any(|(t, run, s)| *run == "capstan"
            && s.starts_with("worker: scale out ")
            && s.contains(" — ")
            && *t >= "3:00:00"),
        "{stdout}"
    );
    // Holds are shown too, but not once per tick.
    assert!(
        decisions
            .iter()
            .any(|(_, run, s)| *run == "capstan" && s.starts_with("worker: hold at ")),
        "{stdout}"
    );
    assert!(decisions.len() < 360, "{} lines: {stdout}", decisions.len());
    // AWS's actions, with the alarm behind them.
    assert!(
        decisions
            .iter()
            .any(|(_, run, s)| *run == "aws-target-tracking" && s.contains(" → ")),
        "{stdout}"
    );
    // Then the usual summary table.
    let summary = stdout
        .split("summary of the whole run, 0:00:00 → 3:25:00:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert!(
        summary.starts_with("scenario redis-burst (seed 0)"),
        "{summary}"
    );
    for run in ["capstan", "aws-target-tracking", "aws-step"] {
        assert!(
            summary.lines().any(|l| l.starts_with(run)),
            "no row {run}: {summary}"
        );
    }
}

#[test]
fn bad_flags_are_named() {
    for speed in ["0", "-2", "inf", "NaN", "fast"] {
        let (ok, _, stderr) = capstan(&["demo", "--speed", speed]);
        assert!(!ok);
        assert!(
            stderr.contains("--speed must be a finite number greater than 0"),
            "{speed}: {stderr}"
        );
    }
    for duration in ["0", "0s", "-5"] {
        let (ok, _, stderr) = capstan(&["demo", "--duration", duration]);
        assert!(!ok);
        assert!(
            stderr.contains("--duration must be more than 0")
                || stderr.contains("--duration: durations cannot be negative"),
            "{duration}: {stderr}"
        );
    }
    let (ok, _, stderr) = capstan(&["demo", "--duration", "soon"]);
    assert!(!ok);
    assert!(stderr.contains("--duration: "), "{stderr}");
    // An unknown scenario: the same message as `capstan simulate`.
    let (ok, _, demo) = capstan(&["demo", "--scenario", "redis-brust"]);
    assert!(!ok);
    assert!(
        demo.contains("no shipped scenario \"redis-brust\" (did you mean \"redis-burst\"?)"),
        "{demo}"
    );
    let (_, _, simulate) = capstan(&["simulate", "--scenario", "redis-brust"]);
    assert_eq!(
        demo.replace("capstan demo: ", ""),
        simulate.replace("capstan simulate: ", "")
    );
}
