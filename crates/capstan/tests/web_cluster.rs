//! The web page's cluster view end to end, in a real headless Chromium driven over
//! WebDriver (chromedriver, through `fantoccini`), against the daemon run in-process
//! with an `ec2_cluster` service on the world model: a cluster whose Auto Scaling group
//! has 3 hosts, running an EC2 service of 3 tasks.
//!
//! - the service view lists each host with its CPU and memory reservation bars
//!   (accessible meters, labelled by host), their text the world's reservation
//!   ("25 % (1024 / 4096)");
//! - pushed low load scales the hosts in: the page shows a host draining and the host
//!   removal with its step, then the host gone and the removal over.
//!
//! Without chromedriver the test skips (loudly), unless `CI` is set: in CI it fails.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::browser;
use crate::in_process;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use browser::{browser, chromedriver_for_test, text_of, wait_js};
use capstan::config::{self, ServiceSpec};
use capstan::daemon::services::{AnyTarget, TargetFactory, TargetParts};
use capstan_aws_api::ContainerInstanceStatus;
use capstan_core::clock::SystemClock;
use capstan_core::workflow::WorkflowSettings;
use capstan_targets::durable::MemoryJournal;
use capstan_targets::{AsgTarget, TargetSpec};
use capstan_testkit::servers::free_port;
use capstan_world::{AutoScalingGroupSpec, ClusterSpec, LaunchType, ServiceSpec as WorldService};
use capstan_world::{World, WorldConfig};
use fantoccini::Locator;
use in_process::Daemon;
use serde_json::json;
use tokio::time::Instant;

const CLUSTER: &str = "prod";
const GROUP: &str = "prod-asg";

fn config(port: u16, store: &Path) -> config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
path = "{}"

[sources.load]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[[services]]
name = "hosts"
min = 1
max = 3
interval = "250ms"
# Replaced by the world model's cluster in this test.
target = {{ kind = "ec2_cluster", cluster = "{CLUSTER}", group = "{GROUP}" }}
cooldown = {{ out = "0s", in = "0s" }}
scale_in = {{ stabilization = "0s" }}

[[services.policies]]
kind = "target_tracking"
metric = "load"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 1 }}
"#,
        store.display()
    );
    config::compile(&text, "test.toml", &|_| None).unwrap()
}

/// 3 hosts (4096 CPU, 7482 MiB each) running an EC2 service of 3 tasks (1024 CPU,
/// 2048 MiB each). No API rate limits: the service is observed 4 times a second.
fn world() -> World {
    let world = World::new(
        WorldConfig {
            rate_limits: false,
            ..WorldConfig::default()
        },
        SystemClock,
    );
    world
        .add_cluster(ClusterSpec {
            name: CLUSTER.into(),
            groups: vec![AutoScalingGroupSpec {
                name: GROUP.into(),
                min: 0,
                max: 10,
                desired: 3,
                // Long enough for the page to see the host stopping, short enough to wait.
                termination_time: Duration::from_secs(2),
                ..AutoScalingGroupSpec::default()
            }],
        })
        .unwrap();
    world
        .add_service(WorldService {
            cluster: CLUSTER.into(),
            name: "app".into(),
            launch_type: LaunchType::Ec2,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            desired: 3,
            startup: Duration::from_secs(1),
            stop_timeout: Duration::from_millis(500),
            deprovisioning: Duration::from_millis(200),
            ..WorldService::default()
        })
        .unwrap();
    world
}

/// Puts every `ec2_cluster` service on the world model's cluster (its configured
/// cluster and group), with host removal workflows in the daemon's journal. A host is
/// first checked for drained after 3 s, so the page sees it draining even when it has no
/// task to move.
fn cluster_targets(world: World) -> TargetFactory {
    Arc::new(move |spec: &ServiceSpec, parts: TargetParts| {
        let TargetSpec::Ec2Cluster(t) = &spec.target else {
            return None;
        };
        let journal = parts
            .journal
            .unwrap_or_else(|| Arc::new(MemoryJournal::default()));
        let settings = WorkflowSettings {
            first_check_after: Duration::from_secs(3),
            check_every: Duration::from_millis(250),
            retry_first: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..WorkflowSettings::default()
        };
        let target = AsgTarget::new(&spec.name, t.target.clone(), world.clone(), world.clone())
            .with_workflows(journal, settings)
            .unwrap();
        Some(Ok(AnyTarget::Ec2ClusterWorld(Arc::new(target))))
    })
}

/// The daemon on `world`, its store at `store`.
fn start(world: &World, store: &Path) -> Daemon {
    let port = free_port();
    Daemon::start(
        config(port, store),
        port,
        cluster_targets(world.clone()),
        None,
    )
}

/// Host (EC2 instance id) → the text of its CPU and memory bars, as the world's
/// reservation gives them: "25 % (1024 / 4096)".
fn expected_bars(world: &World) -> BTreeMap<String, [String; 2]> {
    let text = |reserved: u32, registered: u32| {
        let pct = if registered > 0 {
            (f64::from(reserved) * 100.0 / f64::from(registered)).round()
        } else {
            0.0
        };
        format!("{pct} % ({reserved} / {registered})")
    };
    world
        .cluster_state(CLUSTER)
        .unwrap()
        .instances
        .into_iter()
        .map(|i| {
            (
                i.ec2_instance_id,
                [
                    text(i.reserved_cpu, i.registered_cpu),
                    text(i.reserved_memory, i.registered_memory),
                ],
            )
        })
        .collect()
}

/// A JavaScript expression: host id → [CPU bar text, memory bar text] of the hosts the
/// page lists, each bar found by its accessible label, by host id.
const BARS: &str = r#"Object.fromEntries(Array.from(document.querySelectorAll('#hosts tbody tr')).map(tr => {
  const id = tr.cells[0].textContent;
  const bar = (what) => {
    const m = tr.querySelector('[role="meter"][aria-label="' + what + ' reserved on ' + id + '"]');
    return m ? m.textContent : null;
  };
  return [id, [bar('CPU'), bar('Memory')]];
}).sort((a, b) => (a[0] < b[0] ? -1 : 1)))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_view_shows_reservation_and_a_host_removal() {
    let Some(driver) = chromedriver_for_test("the web page's cluster view test").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let world = world();
    let expected = expected_bars(&world);
    assert_eq!(expected.len(), 3, "{expected:?}");
    let d = start(&world, &dir.path().join("capstan.db"));
    // 30 / 10: 3 hosts, as many as there are.
    d.push("load", 30).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hosts = d.get("/api/v1/services/hosts/hosts").await;
        let seen = hosts["hosts"].as_array().map_or(0, Vec::len);
        let decided = d.get("/api/v1/services/hosts").await["last_decision"].is_object();
        if seen == 3 && decided {
            break;
        }
        assert!(Instant::now() < deadline, "never observed: {hosts:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let page = browser(&driver).await;
    page.goto(&format!("{}/#/services/hosts", d.base))
        .await
        .unwrap();
    wait_js(
        &page,
        "the service view",
        &format!("{} === 'hosts'", text_of("#svc-title")),
    )
    .await;
    wait_js(
        &page,
        "the cluster section",
        &format!(
            "!document.getElementById('cluster').hidden && {}.includes('Cluster {CLUSTER}: 3 hosts')",
            text_of("#cluster-note")
        ),
    )
    .await;

    // Each host with its bars, their text the world's reservation.
    let want = serde_json::to_value(&expected).unwrap();
    let shown = wait_js(
        &page,
        "every host's bars as the world reserves",
        &format!("JSON.stringify({BARS}) === JSON.stringify({want})"),
    )
    .await;
    assert_eq!(shown, json!(true));
    let bars = page
        .execute(&format!("return {BARS};"), vec![])
        .await
        .unwrap();
    for (id, [cpu, memory]) in &expected {
        assert_eq!(bars[id], json!([cpu, memory]), "{bars:#}");
    }
    // 3 tasks of 1024 CPU on hosts of 4096, wherever they were placed.
    let reserved: f64 = expected
        .values()
        .map(|[cpu, _]| cpu.split(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(reserved, 75.0, "{expected:?}");
    // The meters say their value to assistive technology too.
    let (first, [cpu, _]) = expected.iter().next().unwrap();
    let meter = page
        .find(Locator::Css(&format!(
            r#"[role="meter"][aria-label="CPU reserved on {first}"]"#
        )))
        .await
        .unwrap();
    let pct = cpu.split(' ').next().unwrap();
    assert_eq!(
        meter.attr("aria-valuenow").await.unwrap().as_deref(),
        Some(pct)
    );
    assert_eq!(
        meter.attr("aria-valuemax").await.unwrap().as_deref(),
        Some("100")
    );

    // Low load: 15 / 10 → 2 hosts. One host drains, then goes.
    d.push("load", 15).await;
    let draining = wait_js(
        &page,
        "a host shown draining",
        "(Array.from(document.querySelectorAll('#hosts tbody tr')).find(tr => tr.cells[1].textContent === '⤓ draining') || {cells: [{}]}).cells[0].textContent",
    )
    .await;
    let draining = draining.as_str().unwrap().to_owned();
    assert!(expected.contains_key(&draining), "{draining}");
    let removal = wait_js(
        &page,
        "the host removal with its step",
        &format!(
            "!document.getElementById('removal').hidden && /step (mark_draining|wait_drained|recheck|terminate)\\)$/.test({t}) && {t}",
            t = text_of("#removal")
        ),
    )
    .await;
    let removal = removal.as_str().unwrap();
    assert!(
        removal.starts_with(&format!("⤓ Removing hosts {draining} (workflow ")),
        "{removal}"
    );
    // The world agrees: its container instance is DRAINING (or already gone).
    let status = world
        .cluster_state(CLUSTER)
        .unwrap()
        .instances
        .into_iter()
        .find(|i| i.ec2_instance_id == draining)
        .map(|i| i.status);
    assert!(
        matches!(status, Some(ContainerInstanceStatus::Draining) | None),
        "{status:?}"
    );

    // The removal over: the host gone, 2 left, the removal notice hidden.
    wait_js(
        &page,
        "the host gone from the page",
        &format!(
            "(() => {{ const ids = Array.from(document.querySelectorAll('#hosts tbody tr')).map(tr => tr.cells[0].textContent); return ids.length === 2 && !ids.includes({draining:?}) && document.getElementById('removal').hidden && {}.includes('2 hosts'); }})()",
            text_of("#cluster-note")
        ),
    )
    .await;
    let left: Vec<String> = world
        .cluster_state(CLUSTER)
        .unwrap()
        .instances
        .into_iter()
        .map(|i| i.ec2_instance_id)
        .collect();
    assert!(!left.contains(&draining), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
    // The task that ran on it runs elsewhere: 3 tasks on the 2 hosts left, and the page
    // shows the reservation the world has now.
    let after = serde_json::to_value(expected_bars(&world)).unwrap();
    wait_js(
        &page,
        "the bars after the removal",
        &format!("JSON.stringify({BARS}) === JSON.stringify({after})"),
    )
    .await;
    let workflows = d.get("/api/v1/workflows?service=hosts").await;
    let list = workflows["workflows"].as_array().unwrap();
    assert!(list.iter().any(|w| w["status"] == "done"), "{workflows:#}");

    page.close().await.unwrap();
    drop(driver);
    d.stop().await;
}
