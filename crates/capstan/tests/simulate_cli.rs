//! `capstan simulate` as a user runs it: the table, the files of `--out`, `--compare`,
//! and the errors.

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
fn writes_summary_csvs_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (ok, stdout, stderr) = capstan(&[
        "simulate",
        "--scenario",
        "sqs-backlog",
        "--duration",
        "2h",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("scenario sqs-backlog (seed 3)"),
        "{stdout}"
    );
    assert!(stdout.contains("aws-target-tracking"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["scenario"], "sqs-backlog");
    assert_eq!(summary["runs"][0]["name"], "capstan");
    for key in [
        "task_hours",
        "slo_violation_minutes",
        "p99_latency_s",
        "interrupted_sessions",
        "failed_requests",
        "scaling_actions",
    ] {
        assert!(summary["runs"][0].get(key).is_some(), "no {key}");
    }
    let csv = std::fs::read_to_string(out.join("capstan.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2 * 3600 + 1);
    let png = std::fs::read(out.join("plot.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(svg.contains("aws-target-tracking"));
}

#[test]
fn compares_two_configs_on_one_trace() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/scenarios/sqs-backlog/capstan.toml"
    ))
    .unwrap();
    let slow = base.replace(
        "datapoints = { out = 2, in = 6 }",
        "datapoints = { out = 6, in = 30 }",
    );
    std::fs::write(dir.path().join("fast.toml"), &base).unwrap();
    std::fs::write(dir.path().join("slow.toml"), &slow).unwrap();
    let (ok, stdout, stderr) = capstan(&[
        "simulate",
        "--duration",
        "1h",
        "--json",
        "--compare",
        dir.path().join("fast.toml").to_str().unwrap(),
        dir.path().join("slow.toml").to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = summary["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fast", "slow", "aws-target-tracking"]);
}

#[test]
fn errors_name_what_is_wrong() {
    let (ok, _, stderr) = capstan(&["simulate", "--scenario", "sqs-backlgo"]);
    assert!(!ok);
    assert!(
        stderr.contains("no shipped scenario \"sqs-backlgo\" (did you mean \"sqs-backlog\"?)"),
        "{stderr}"
    );
    let (ok, _, stderr) = capstan(&["simulate", "--metric", "queue", "--duration", "1h"]);
    assert!(!ok);
    assert!(
        stderr.contains("--metric queue: expected NAME=METRIC"),
        "{stderr}"
    );
    let (ok, _, stderr) = capstan(&["simulate", "--duration", "soon"]);
    assert!(!ok);
    assert!(stderr.contains("--duration"), "{stderr}");
}

#[test]
fn a_config_scales_hosts_only_on_a_cluster_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let ec2 = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/scenarios/ec2-cluster/capstan.toml"
    ))
    .unwrap();
    // The ec2-cluster config on a Fargate scenario: its hosts service has no cluster.
    std::fs::write(dir.path().join("ec2.toml"), &ec2).unwrap();
    let (ok, _, stderr) = capstan(&[
        "simulate",
        "--scenario",
        "sqs-backlog",
        "--duration",
        "10m",
        "--compare",
        dir.path().join("ec2.toml").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("service hosts scales hosts, but the scenario has no [cluster]"),
        "{stderr}"
    );
    // Two services scaling hosts.
    let twice = format!(
        "{ec2}\n[[services]]\nname = \"more-hosts\"\nmax = 4\ntarget = {{ kind = \"simulated\", scales = \"hosts\" }}\npolicies = [{{ kind = \"target_tracking\", metric = \"memory_reservation\", mode = \"per_task\", target = 75 }}]\n"
    );
    std::fs::write(dir.path().join("twice.toml"), twice).unwrap();
    let (ok, _, stderr) = capstan(&[
        "simulate",
        "--scenario",
        "ec2-cluster",
        "--duration",
        "10m",
        "--compare",
        dir.path().join("twice.toml").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("2 services scale hosts (hosts, more-hosts); the simulator drives one"),
        "{stderr}"
    );
}
