//! Live reload of `ec2_cluster` services: the steps the daemon's reload takes
//! (`Daemon::try_reload` in `daemon/mod.rs`), on the daemon's own `Services` and
//! `Sources`, for a file whose EC2 cluster thresholds changed and which adds a second
//! cluster:
//!
//! - the changed thresholds are a settings change: the running loop is updated in
//!   place, not restarted (a restart would shut its target down and put back a host
//!   removal in progress); changing the cluster or the group is a target change (the
//!   loop restarts);
//! - the new cluster's service gets its own EC2 host target, and its `ecs_cluster`
//!   sources are added while the first cluster's sources keep running (their windows
//!   keep their samples, so its datapoints carry over).
//!
//! The targets and sources talk to AWS through the SDK, at an endpoint where nothing
//! listens: nothing here needs an answer (their reads and ticks fail and are logged).
//! That the new thresholds decide from the next evaluation on is shown on the world
//! model in `ec2_cluster_policy.rs`
//! (`a_reloaded_memory_max_applies_at_the_next_evaluation`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use capstan::config::{self, Config};
use capstan::daemon::services::{AnyTarget, Change, Services};
use capstan::daemon::sources::Sources;
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::policy::{Policy, Threshold};
use capstan_sources::PushStore;
use capstan_sources::poller::Hooks;
use capstan_store::{DecisionLog, MemoryStore};
use capstan_targets::TargetSpec;
use tokio_util::sync::CancellationToken;

/// Nothing listens here.
const NOWHERE: &str = "http://127.0.0.1:9";

/// One EC2 cluster of the file: its name, its group and memory's max.
struct Cluster {
    name: &'static str,
    group: &'static str,
    memory_max: u32,
}

/// A file with, for each cluster, its two `ecs_cluster` sources and a `<name>-hosts`
/// service scaling its group on both reservations.
fn text(clusters: &[Cluster]) -> String {
    let mut out = String::from("[store]\nkind = \"memory\"\n");
    for Cluster {
        name,
        group,
        memory_max,
    } in clusters
    {
        out.push_str(&format!(
            r#"
[sources.{name}_cpu]
kind = "ecs_cluster"
metric = "cpu_reservation"
cluster = "{name}"
interval = "1h"
region = "eu-west-1"
endpoint_url = "{NOWHERE}"

[sources.{name}_memory]
kind = "ecs_cluster"
metric = "memory_reservation"
cluster = "{name}"
interval = "1h"
region = "eu-west-1"
endpoint_url = "{NOWHERE}"

[[services]]
name = "{name}-hosts"
min = 2
max = 20
interval = "1h"
target = {{ kind = "ec2_cluster", cluster = "{name}", group = "{group}", region = "eu-west-1", endpoint_url = "{NOWHERE}" }}

[[services.policies]]
kind = "threshold"
metrics = [
  {{ metric = "{name}_cpu", min = 40, max = 80 }},
  {{ metric = "{name}_memory", min = 30, max = {memory_max} }},
]
datapoints = {{ out = 4, in = 10 }}
"#
        ));
    }
    out
}

fn compile(clusters: &[Cluster]) -> Config {
    config::compile(&text(clusters), "hosts.toml", &|_| None)
        .unwrap_or_else(|e| panic!("{:#?}", e.errors))
}

fn prod(memory_max: u32) -> Cluster {
    Cluster {
        name: "prod",
        group: "prod-asg",
        memory_max,
    }
}

fn batch() -> Cluster {
    Cluster {
        name: "batch",
        group: "batch-asg",
        memory_max: 75,
    }
}

/// Memory's max in the service's threshold policy.
fn memory_max(config: &Config, service: &str) -> f64 {
    let spec = config.services.iter().find(|s| s.name == service).unwrap();
    match &spec.engine.policies[0].policy {
        Policy::Threshold(Threshold { metrics, .. }) => metrics[1].max,
        other => panic!("a threshold policy expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_thresholds_update_in_place_and_a_new_cluster_starts() {
    let v1 = compile(&[prod(75)]);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let log: Arc<dyn DecisionLog> = Arc::new(MemoryStore::default());
    let stop = CancellationToken::new();
    let mut sources = Sources::start(
        &v1.sources,
        Arc::clone(&obs),
        Arc::clone(&clock),
        PushStore::new(Arc::clone(&clock)),
        Hooks::default(),
        &stop,
    )
    .unwrap();
    let mut services = Services::new(Arc::clone(&clock), Arc::clone(&obs), log, stop.clone());
    for spec in &v1.services {
        let target = services.build_target(spec).unwrap();
        assert!(matches!(target, AnyTarget::Ec2Cluster(_)));
        services.start(spec.clone(), target);
    }

    // The new file: prod's memory max 75 → 60, and a second cluster.
    let v2 = compile(&[prod(60), batch()]);
    assert_eq!(memory_max(&v2, "prod-hosts"), 60.0);
    let (prod2, batch2) = (&v2.services[0], &v2.services[1]);
    assert_eq!(
        services.change(prod2),
        Some(Change::Settings),
        "new thresholds are applied in place, the loop and its target kept"
    );
    assert_eq!(services.change(batch2), None, "a new service");
    // Another group or cluster is another target: that loop would restart.
    for moved in [
        Cluster {
            group: "prod-asg-2",
            ..prod(75)
        },
        Cluster {
            name: "prod2",
            ..prod(75)
        },
    ] {
        let name = format!("{}-hosts", moved.name);
        let v = compile(&[moved]);
        let mut spec = v.services[0].clone();
        spec.name = "prod-hosts".into();
        assert_eq!(services.change(&spec), Some(Change::Target), "{name}");
    }

    // Applied as the daemon does: targets built first, then the sources, then the
    // loops.
    let target = services.build_target(batch2).unwrap();
    match &target {
        AnyTarget::Ec2Cluster(t) => {
            assert_eq!(
                (t.spec().cluster.as_str(), t.spec().group.as_str()),
                ("batch", "batch-asg")
            );
        }
        _ => panic!("an ec2_cluster target expected"),
    }
    let changes = sources.reload(&v2.sources).unwrap();
    assert_eq!(changes.added, ["batch_cpu", "batch_memory"]);
    assert!(
        changes.changed.is_empty() && changes.removed.is_empty(),
        "prod's sources keep polling, their windows kept: {changes:?}"
    );
    assert_eq!(sources.specs().len(), 4);
    services.start(batch2.clone(), target);
    assert!(services.update(prod2.clone()));
    assert_eq!(
        services.names().collect::<Vec<_>>(),
        ["batch-hosts", "prod-hosts"]
    );
    // The running services are the new file's now.
    assert_eq!(services.change(prod2), Some(Change::None));
    assert_eq!(services.change(batch2), Some(Change::None));
    match &batch2.target {
        TargetSpec::Ec2Cluster(t) => assert_eq!(t.target.cluster, "batch"),
        other => panic!("{other:?}"),
    }

    stop.cancel();
    sources.stop().await;
    services.stop_all().await;
}
