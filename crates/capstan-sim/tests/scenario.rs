//! Scenario files: bad ones fail before any run starts, naming the file and the key.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use capstan_sim::run::{self, RunOptions};
use capstan_sim::scenario::Scenario;

const GOOD: &str = r#"
name = "t"
duration_s = 600

[service]
name = "worker"
desired = 1

[workload]
kind = "queue"
processing = { kind = "fixed", s = 1.0 }
slo_age_s = 60.0

[trace]
kind = "constant"
rate = 1.0
"#;

fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::parse(text, "t.toml", Path::new(".")).map_err(|e| e.to_string())
}

#[test]
fn a_good_scenario_parses_with_defaults() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.seed, 1);
    assert_eq!(s.step_s, 1.0);
    assert_eq!(s.capstan_path(), Path::new("./capstan.toml"));
    assert!(s.baselines.is_empty());
}

#[test]
fn unknown_keys_and_wrong_types_name_the_line() {
    let err = parse(&GOOD.replace("desired = 1", "desird = 1")).unwrap_err();
    assert!(
        err.starts_with("t.toml: TOML parse error at line 7"),
        "{err}"
    );
    assert!(err.contains("unknown field `desird`"), "{err}");
    let err = parse(&GOOD.replace("rate = 1.0", "rate = \"fast\"")).unwrap_err();
    assert!(err.contains("line 14"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn impossible_scenarios_fail_validation() {
    let cases = [
        (
            GOOD.replace("desired = 1", "desired = 1\ntask_cpu = 0"),
            "t.toml: service.task_cpu: a task needs CPU and memory (zero capacity per task)",
        ),
        (
            GOOD.replace("duration_s = 600", "duration_s = 600\nstep_s = 0"),
            "t.toml: step_s: 0 is not a step between 0 and 60 seconds",
        ),
        (
            GOOD.replace("duration_s = 600", "duration_s = -5"),
            "t.toml: duration_s: -5 is not a duration of at least one step",
        ),
        (
            format!(
                "{GOOD}\n[cluster]\nname = \"c\"\ngroups = [{{ name = \"g\", min = 5, max = 2 }}]\n"
            ),
            "t.toml: cluster.groups[0].min: min 5 is greater than max 2",
        ),
        (
            format!(
                "{GOOD}\n[[baselines]]\nname = \"capstan\"\nkind = \"aws-target-tracking\"\nmetric = \"cpu\"\ntarget = 50.0\nmin = 1\nmax = 2\n"
            ),
            "t.toml: baselines[0].name: \"capstan\" is used twice",
        ),
        (
            format!(
                "{GOOD}\n[[baselines]]\nname = \"managed\"\nkind = \"aws-managed-scaling\"\nmin = 0\nmax = 4\n"
            ),
            "t.toml: baselines[0].kind: aws-managed-scaling scales the cluster's hosts, not the service: put it in a service baseline's `hosts` table",
        ),
        (
            format!(
                "{GOOD}\n[[baselines]]\nname = \"aws\"\nkind = \"aws-target-tracking\"\nmetric = \"cpu\"\ntarget = 50.0\nmin = 1\nmax = 2\nhosts = {{ min = 1, max = 4 }}\n"
            ),
            "t.toml: baselines[0].hosts: scales the cluster's hosts, but the scenario has no [cluster] with an Auto Scaling group",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse(&text).unwrap_err(), want);
    }
}

#[test]
fn a_bad_baseline_or_workload_fails_before_the_first_step() {
    let text = format!(
        "{GOOD}\n[[baselines]]\nname = \"aws\"\nkind = \"aws-target-tracking\"\nmetric = \"cpu\"\ntarget = 50.0\nmin = 5\nmax = 2\n"
    );
    let s = parse(&text).unwrap();
    let err = run::run(&s, &[], &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.toml: baselines \"aws\":"), "{err}");
    assert!(err.contains("min"), "{err}");

    let s = parse(&GOOD.replace("s = 1.0", "s = -1.0")).unwrap();
    let err = run::run(&s, &[], &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.toml: workload:"), "{err}");
}

/// An EC2 service on a one-host cluster with managed scaling of the hosts.
fn ec2(hosts: &str) -> String {
    GOOD.replace(
        "desired = 1",
        "desired = 1\ncluster = \"c\"\nlaunch_type = \"ec2\"\ntask_cpu = 1024\ntask_memory = 2048",
    ) + &format!(
        "\n[cluster]\nname = \"c\"\ngroups = [{{ name = \"g\", min = 1, max = 4, desired = 1 }}]\n\n[[baselines]]\nname = \"aws\"\nkind = \"aws-target-tracking\"\nmetric = \"cpu\"\ntarget = 50.0\nmin = 1\nmax = 8\nhosts = {hosts}\n"
    )
}

#[test]
fn a_baseline_scales_the_hosts_with_managed_scaling() {
    let s = parse(&ec2("{ min = 1, max = 4 }")).unwrap();
    let summary = run::run(&s, &[], &RunOptions::default()).unwrap();
    let aws = &summary.runs[0];
    assert_eq!(aws.peak_hosts, Some(1));
    assert!(
        aws.host_hours
            .is_some_and(|h| (h - 600.0 / 3600.0).abs() < 1e-9),
        "{aws:?}"
    );

    // Bad managed-scaling settings are named before the first step.
    let s = parse(&ec2("{ min = 1, max = 4, target_capacity = 0 }")).unwrap();
    let err = run::run(&s, &[], &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.toml: baselines \"aws\":"), "{err}");
    assert!(err.contains("target_capacity"), "{err}");

    // Unknown keys in the hosts table are refused with the line.
    let err = parse(&ec2("{ min = 1, max = 4, target = 3 }")).unwrap_err();
    assert!(err.contains("unknown field `target`"), "{err}");
}

#[test]
fn a_malformed_trace_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("load.csv"),
        "seconds,rate\n0,1\n60,2\n30,3\n",
    )
    .unwrap();
    let text = GOOD.replace(
        "kind = \"constant\"\nrate = 1.0",
        "kind = \"csv\"\npath = \"load.csv\"",
    );
    let s = Scenario::parse(&text, "t.toml", dir.path()).unwrap();
    let err = run::run(&s, &[], &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("load.csv:4:"), "{err}");
}
