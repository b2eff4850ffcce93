//! A restart honours the cooldown of a scale-out made just before capstan died.
//!
//! A step policy adds 3 tasks while CPU is above 60 %, with a one-hour scale-out
//! cooldown. capstan scales the world model's ECS service 1 → 4 and is killed at once
//! (its task aborted: no orderly shutdown, only what the SQLite store already holds
//! survives). A new capstan on the same store finds CPU still high: inside the cooldown
//! the step counts from the count before that scale-out (AWS's rule), so it holds at 4
//! instead of adding 3 more. A control run with an empty store scales 4 → 7, which is
//! what a capstan that forgot its history would do.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use capstan::config;
use capstan::daemon::services::world_targets;
use capstan::daemon::{self, RunOptions};
use capstan_core::clock::SystemClock;
use capstan_testkit::servers::free_port;
use capstan_world::{ServiceSpec, World, WorldConfig};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn config(port: u16, store: &Path) -> config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
path = "{store}"

[sources.cpu]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[[services]]
name = "api"
min = 1
max = 10
interval = "100ms"
target = {{ kind = "process", command = ["true"] }}
cooldown = {{ out = "1h", in = "1h" }}

[[services.policies]]
kind = "step"
metric = "cpu"
out = {{ threshold = 60, datapoints = 1, steps = [{{ lower = 0, change = 3 }}] }}
"#,
        store = store.display()
    );
    config::compile(&text, "test.toml", &|_| None).unwrap()
}

fn start(world: &World, port: u16, store: &Path) -> (JoinHandle<()>, CancellationToken) {
    let targets = world_targets(world.clone(), "prod");
    let cancel = CancellationToken::new();
    let options = RunOptions {
        targets: Some(targets),
        ..RunOptions::new(config(port, store))
    };
    let run = daemon::run_with(options, cancel.clone());
    let handle = tokio::spawn(async move {
        run.await.unwrap();
    });
    (handle, cancel)
}

async fn push_cpu(port: u16, value: f64) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client
            .post(format!("http://127.0.0.1:{port}/api/v1/metrics/cpu"))
            .body(value.to_string())
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "capstan does not take the push");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn desired_reaches(world: &World, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let desired = world.service_counts("prod", "api").unwrap().desired;
        if desired == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "desired {desired}, waiting for {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn world() -> World {
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: "prod".into(),
            name: "api".into(),
            desired: 1,
            startup: Duration::from_millis(200),
            ..ServiceSpec::default()
        })
        .unwrap();
    world
}

/// Runs capstan on `store` until the service is at 4, kills it, starts a new capstan
/// on `second_store` with CPU still high, and returns the desired count after a second.
async fn killed_after_scale_out_then_restarted(first_store: &Path, second_store: &Path) -> u32 {
    let world = world();
    let port = free_port();
    let (first, _cancel) = start(&world, port, first_store);
    push_cpu(port, 80.0).await;
    desired_reaches(&world, 4).await;
    first.abort();
    let _ = first.await;

    let port = free_port();
    let (second, cancel) = start(&world, port, second_store);
    push_cpu(port, 80.0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let desired = world.service_counts("prod", "api").unwrap().desired;
    cancel.cancel();
    second.await.unwrap();
    desired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooldown_of_a_scale_out_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("capstan.db");
    assert_eq!(
        killed_after_scale_out_then_restarted(&store, &store).await,
        4,
        "the restarted capstan holds inside the cooldown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_history_capstan_would_scale_again() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        killed_after_scale_out_then_restarted(
            &dir.path().join("first.db"),
            &dir.path().join("second.db")
        )
        .await,
        7,
        "a fresh store knows no cooldown: +3 from 4"
    );
}

/// `capstan run --once` (cron-style): CPU read from a command, the same step policy.
fn once_config(store: &Path) -> config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[sources.cpu]
kind = "command"
command = ["echo", "80"]
value = "any"

[[services]]
name = "api"
min = 1
max = 10
target = {{ kind = "process", command = ["true"] }}
cooldown = {{ out = "1h", in = "1h" }}

[[services.policies]]
kind = "step"
metric = "cpu"
out = {{ threshold = 60, datapoints = 1, steps = [{{ lower = 0, change = 3 }}] }}
"#,
        store = store.display()
    );
    config::compile(&text, "test.toml", &|_| None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_run_honours_the_cooldown_left_by_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("capstan.db");
    let world = world();
    for want in [4, 4] {
        let options = RunOptions {
            targets: Some(world_targets(world.clone(), "prod")),
            once: true,
            ..RunOptions::new(once_config(&store))
        };
        daemon::run_with(options, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            world.service_counts("prod", "api").unwrap().desired,
            want,
            "the second run is inside the first one's scale-out cooldown"
        );
    }
}
