//! `capstan run --once` (evaluate every service once after one read of every source,
//! then exit) and `--dry-run` (decide, log, change nothing), on the real binary.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Command;

fn config(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.depth]
kind = "command"
command = ["echo", "45"]

[[services]]
name = "worker"
min = 1
max = 10
target = {{ kind = "process", command = ["sh", "-c", "echo $CAPSTAN_TASK_ID >> {d}/started; exec sleep 60"] }}

[[services.policies]]
kind = "target_tracking"
metric = "depth"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 1 }}
"#
    )
}

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("run")
        .arg("--config")
        .arg(dir.join("capstan.toml"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

#[test]
fn once_evaluates_after_the_first_read_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("capstan.toml"), config(tmp.path())).unwrap();
    let (ok, log) = run(tmp.path(), &["--once"]);
    assert!(ok, "{log}");
    // 45 queued at 10 per task: 5 tasks, decided on the value read, not on missing data.
    assert!(log.contains("worker: scale out 0 → 5"), "{log}");
    // Five workers started (capstan logs each spawn; a worker stopped at once at exit
    // may not have run its first line yet).
    assert_eq!(log.matches("worker started").count(), 5, "{log}");
    assert!(log.contains("capstan stopped"), "{log}");
}

#[test]
fn dry_run_decides_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("capstan.toml"), config(tmp.path())).unwrap();
    let (ok, log) = run(tmp.path(), &["--once", "--dry-run"]);
    assert!(ok, "{log}");
    assert!(log.contains("dry_run=true"), "{log}");
    assert!(log.contains("worker: scale out 0 → 5"), "{log}");
    assert!(
        !log.contains("worker started"),
        "no worker was started:\n{log}"
    );
    assert!(
        !tmp.path().join("started").exists(),
        "no worker was started:\n{log}"
    );
}
