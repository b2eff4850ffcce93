//! `kind = "ec2_cluster"` targets and `kind = "ecs_cluster"` sources in the
//! configuration: what a good one compiles to (its defaults, the victims a hosts service
//! may take), and the errors of bad ones, each naming its key.

use std::time::Duration;

use capstan::config::{self, Config, ConfigError};
use capstan_sources::SourceKind;
use capstan_sources::ecs_cluster::ClusterMetric;
use capstan_targets::spec::Ec2ClusterSpec;
use capstan_targets::{AsgTargetSpec, TargetSpec};

/// A config with one service `hosts` whose `target` is `target` and whose table also
/// holds `extra`.
fn text(target: &str, extra: &str) -> String {
    format!(
        r#"
[sources.reservation]
kind = "push"
ttl = "5m"

[[services]]
name = "hosts"
min = 1
max = 20
target = {target}
{extra}

[[services.policies]]
kind = "target_tracking"
metric = "reservation"
mode = "per_task"
target = 75
"#
    )
}

fn compile(text: &str) -> Result<Config, Vec<ConfigError>> {
    config::compile(text, "hosts.toml", &|_| None).map_err(|e| e.errors)
}

fn ec2_cluster(config: &Config) -> Ec2ClusterSpec {
    match &config.services[0].target {
        TargetSpec::Ec2Cluster(t) => t.clone(),
        other => panic!("expected an ec2_cluster target, got {other:?}"),
    }
}

/// The only error of `text`.
fn one_error(text: &str) -> ConfigError {
    match compile(text) {
        Ok(_) => panic!("compiled:\n{text}"),
        Err(mut errors) => {
            assert_eq!(errors.len(), 1, "{errors:#?}");
            errors.remove(0)
        }
    }
}

#[test]
fn a_good_target_compiles_with_its_defaults() {
    let config = compile(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg" }"#,
        "",
    ))
    .unwrap();
    let t = ec2_cluster(&config);
    assert_eq!(t.target, AsgTargetSpec::new("prod", "prod-asg"));
    assert_eq!(t.target.warmup, AsgTargetSpec::DEFAULT_WARMUP);
    assert_eq!(t.target.drain_timeout, AsgTargetSpec::DEFAULT_DRAIN_TIMEOUT);
    assert_eq!((t.region, t.endpoint_url, t.profile), (None, None, None));
    assert_eq!(t.target.validate(), Ok(()));
    // Hosts with tasks may be chosen (after the empty ones): the target moves their
    // tasks before a host goes.
    let victims = &config.services[0].victims;
    assert!(victims.allow_busy);
    assert_eq!(
        victims.order,
        capstan_core::victim::VictimPolicy::default().order
    );
}

#[test]
fn every_key_is_read() {
    let config = compile(&text(
        r#"{ kind = "ec2_cluster", cluster = "arn:aws:ecs:eu-west-1:123456789012:cluster/prod", group = "prod hosts", warmup = "0s", drain_timeout = "30m", minimum_running = { web = 10, worker = 2 }, termination_hook = "drain", hook_heartbeat_every = "2m", region = "eu-west-1", endpoint_url = "http://127.0.0.1:5000", profile = "scaler" }"#,
        r#"scale_in = { order = ["oldest"] }"#,
    ))
    .unwrap();
    let t = ec2_cluster(&config);
    assert_eq!(
        t.target.cluster,
        "arn:aws:ecs:eu-west-1:123456789012:cluster/prod"
    );
    // Auto Scaling group names may hold spaces.
    assert_eq!(t.target.group, "prod hosts");
    assert_eq!(t.target.warmup, Duration::ZERO);
    assert_eq!(t.target.drain_timeout, Duration::from_secs(1800));
    assert_eq!(
        t.target.minimum_running,
        [("web".to_owned(), 10), ("worker".to_owned(), 2)].into()
    );
    assert_eq!(t.target.termination_hook.as_deref(), Some("drain"));
    assert_eq!(t.target.hook_heartbeat_every, Duration::from_secs(120));
    assert_eq!(t.region.as_deref(), Some("eu-west-1"));
    assert_eq!(t.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    assert_eq!(t.profile.as_deref(), Some("scaler"));
    let victims = &config.services[0].victims;
    assert!(victims.allow_busy);
    assert_eq!(victims.order, [capstan_core::victim::VictimOrder::Oldest]);
}

#[test]
fn a_missing_group_is_named() {
    let e = one_error(&text(r#"{ kind = "ec2_cluster", cluster = "prod" }"#, ""));
    assert_eq!(e.path, "services[0].target");
    assert_eq!(e.message, "missing required key `group`");
}

#[test]
fn an_empty_cluster_is_named() {
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "", group = "prod-asg" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.cluster");
    assert_eq!(e.message, "must not be empty or hold spaces");
}

#[test]
fn an_empty_group_or_a_group_arn_is_named() {
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = " " }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.group");
    assert_eq!(e.message, "must not be empty");
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:0f1e:autoScalingGroupName/prod-asg" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.group");
    assert_eq!(
        e.message,
        "expected the Auto Scaling group's name, not its ARN"
    );
}

#[test]
fn a_bad_minimum_running_is_named() {
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", minimum_running = { web = -1 } }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.minimum_running.web");
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", minimum_running = 3 }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.minimum_running");
}

#[test]
fn an_empty_hook_or_a_zero_heartbeat_is_named() {
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", termination_hook = " " }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.termination_hook");
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", termination_hook = "drain", hook_heartbeat_every = "0s" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.hook_heartbeat_every");
}

#[test]
fn host_order_is_read_and_a_bad_one_is_named_with_the_accepted_ones() {
    let config = compile(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", host_order = "oldest" }"#,
        "",
    ))
    .unwrap();
    assert_eq!(
        ec2_cluster(&config).target.host_order,
        capstan_core::hosts::HostOrder::Oldest
    );
    let config = compile(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg" }"#,
        "",
    ))
    .unwrap();
    assert_eq!(
        ec2_cluster(&config).target.host_order,
        capstan_core::hosts::HostOrder::LeastReserved,
        "the default"
    );
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", host_order = "biggest" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.host_order");
    assert_eq!(
        e.message,
        "unknown host order \"biggest\"; accepted: least_reserved, empty_first, oldest, newest"
    );
}

#[test]
fn a_zero_drain_timeout_is_named() {
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", drain_timeout = "0s" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.drain_timeout");
    assert_eq!(e.message, "must be greater than 0s");
}

#[test]
fn an_unknown_key_is_named_with_the_valid_ones() {
    // `service` belongs to the ecs kind: refused here, not ignored.
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", service = "web" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.service");
    assert_eq!(
        e.message,
        "unknown key; valid keys here: `kind`, `cluster`, `group`, `warmup`, `drain_timeout`, `minimum_running`, `termination_hook`, `hook_heartbeat_every`, `host_order`, `region`, `endpoint_url`, `profile`"
    );
    // A typo gets a suggestion.
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", warmpu = "1m" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.warmpu");
    assert_eq!(e.suggestion.as_deref(), Some("warmup"));
}

#[test]
fn a_bad_endpoint_is_named_as_for_the_ecs_kind() {
    let e = one_error(&text(
        r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg", endpoint_url = "localhost:5000" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.endpoint_url");
    assert_eq!(
        e.message,
        "expected an http:// or https:// URL (e.g. http://127.0.0.1:5000)"
    );
}

#[test]
fn task_only_service_keys_are_refused() {
    let target = r#"{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg" }"#;
    let e = one_error(&text(target, r#"scale_in = { drain_deadline = "1h" }"#));
    assert_eq!(e.path, "services[0].scale_in.drain_deadline");
    assert!(
        e.message
            .starts_with("does not apply to an ec2_cluster target"),
        "{e}"
    );
    let e = one_error(&text(target, r#"work = { ttl = "5m" }"#));
    assert_eq!(e.path, "services[0].work");
    assert!(
        e.message
            .starts_with("does not apply to an ec2_cluster target"),
        "{e}"
    );
}

#[test]
fn the_kind_is_listed_among_the_valid_ones() {
    let e = one_error(&text(
        r#"{ kind = "ec2", cluster = "prod", group = "prod-asg" }"#,
        "",
    ));
    assert_eq!(e.path, "services[0].target.kind");
    assert!(e.message.contains("\"ec2_cluster\""), "{e}");
}

#[test]
fn the_documented_example_compiles() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
        .unwrap();
    let example = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(code, _)| code))
        .find(|code| code.contains("kind = \"ec2_cluster\"") && code.contains("[[services]]"))
        .expect("docs/config.md has a whole example of an ec2_cluster service");
    let config = compile(example).unwrap_or_else(|e| panic!("{e:#?}"));
    let t = ec2_cluster(&config);
    assert_eq!(
        (t.target.cluster.as_str(), t.target.group.as_str()),
        ("prod", "prod-asg")
    );
    assert_eq!(config.services[0].engine.policies.len(), 3);
    let metrics: Vec<ClusterMetric> = config
        .sources
        .iter()
        .map(|s| match &s.kind {
            SourceKind::EcsCluster(e) => {
                assert_eq!(e.cluster, "prod");
                e.metric
            }
            other => panic!("an ecs_cluster source expected, got {other:?}"),
        })
        .collect();
    assert_eq!(metrics, ClusterMetric::ALL);
}

/// A config with one `ecs_cluster` source holding `keys`.
fn source(keys: &str) -> String {
    format!(
        r#"
[sources.reservation]
kind = "ecs_cluster"
{keys}

[[services]]
name = "hosts"
min = 1
max = 20
target = {{ kind = "ec2_cluster", cluster = "prod", group = "prod-asg" }}

[[services.policies]]
kind = "target_tracking"
metric = "reservation"
mode = "per_task"
target = 75
"#
    )
}

#[test]
fn an_ecs_cluster_source_compiles_and_its_errors_name_the_key() {
    let config = compile(&source(
        "metric = \"memory_reservation\"\ncluster = \"prod\"\nregion = \"eu-west-1\"",
    ))
    .unwrap_or_else(|e| panic!("{e:#?}"));
    match &config.sources[0].kind {
        SourceKind::EcsCluster(e) => {
            assert_eq!(e.metric, ClusterMetric::MemoryReservation);
            assert_eq!(e.cluster, "prod");
            assert_eq!(e.aws.region.as_deref(), Some("eu-west-1"));
        }
        other => panic!("{other:?}"),
    }
    let e = one_error(&source("metric = \"cpu\"\ncluster = \"prod\""));
    assert_eq!(e.path, "sources.reservation.metric");
    assert!(e.message.contains("\"pending_tasks\""), "{e}");
    let e = one_error(&source("metric = \"pending_tasks\""));
    assert_eq!(e.path, "sources.reservation");
    assert!(e.message.contains("cluster"), "{e}");
    let e = one_error(&source("metric = \"pending_tasks\"\ncluster = \"\""));
    assert_eq!(e.path, "sources.reservation.cluster");
    let e = one_error(&source(
        "metric = \"pending_tasks\"\ncluster = \"prod\"\nservice = \"x\"",
    ));
    assert_eq!(e.path, "sources.reservation.service");
}
