//! Durable scale-in workflows through the daemon (SQLite store, the world model's ECS
//! service behind a target group, on the system clock), read and redriven through the
//! API and the `capstan workflows` command:
//!
//! - a decision 6 → 3 with sessions on 3 tasks runs one workflow that stops the 3 idle
//!   ones; its journal lists every step;
//! - a scale-in whose deregistration is refused (a missing permission) fails at that
//!   step and holds the service; once the permission is back, a redrive through the
//!   API resumes it there and it completes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use capstan::config;
use capstan::daemon::services::world_targets;
use capstan::daemon::{self, RunOptions};
use capstan_aws_api::{AwsErrorKind, TaskStatus};
use capstan_core::clock::SystemClock;
use capstan_testkit::servers::free_port;
use capstan_world::{FaultRule, ServiceSpec, TargetGroupSpec, World, WorldConfig};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "prod";

fn config(port: u16, store: &std::path::Path) -> config::Config {
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
name = "api"
min = 1
max = 10
interval = "100ms"
# Replaced by the world model's ECS service in this test.
target = {{ kind = "process", command = ["true"] }}
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

fn world() -> World {
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: "api".into(),
            desired: 6,
            startup: Duration::from_millis(100),
            stop_timeout: Duration::from_millis(200),
            deprovisioning: Duration::from_millis(100),
            target_group: Some(TargetGroupSpec {
                deregistration_delay: Duration::from_secs(300),
                routing_lag: Duration::from_millis(100),
                ..TargetGroupSpec::default()
            }),
            ..ServiceSpec::default()
        })
        .unwrap();
    world
}

struct Daemon {
    base: String,
    http: reqwest::Client,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

impl Daemon {
    fn start(world: &World, store: &std::path::Path) -> Self {
        let port = free_port();
        let cancel = CancellationToken::new();
        let options = RunOptions {
            targets: Some(world_targets(world.clone(), CLUSTER)),
            ..RunOptions::new(config(port, store))
        };
        let task = tokio::spawn(daemon::run_with(options, cancel.clone()));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            cancel,
            task,
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn load(&self, value: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = self
                .http
                .post(format!("{}/api/v1/metrics/load", self.base))
                .json(&json!({ "value": value }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "capstan does not take the push");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn session(&self, task: &str) {
        let short = task.rsplit('/').next().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The listener may not be up yet: a refused connection is retried too.
            let answer = match self
                .http
                .put(format!(
                    "{}/api/v1/services/api/tasks/{short}/sessions/s",
                    self.base
                ))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            assert!(Instant::now() < deadline, "{answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn running(world: &World) -> Vec<String> {
    world
        .tasks(CLUSTER, "api")
        .into_iter()
        .filter(|t| t.status == TaskStatus::Running)
        .map(|t| t.arn)
        .collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn workflows(d: &Daemon) -> Vec<Value> {
    d.get("/api/v1/workflows").await["workflows"]
        .as_array()
        .unwrap()
        .clone()
}

/// Every step of a scale-in behind a target group, in order.
pub(crate) const SCALE_IN_STEPS: [&str; 8] = [
    "mark_draining",
    "deregister",
    "wait_drained",
    "recheck",
    "protect",
    "lower_desired",
    "stop_tasks",
    "release",
];

/// The steps a workflow (as the API shows it) finished, in order.
pub(crate) fn done_steps(shown: &Value) -> Vec<&str> {
    shown["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "done")
        .map(|e| e["step"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_runs_as_a_journaled_workflow_and_a_failed_one_is_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("capstan.db");
    let world = world();
    let d = Daemon::start(&world, &store);
    let tasks = running(&world);
    for task in &tasks[3..] {
        d.session(task).await;
    }
    d.load(30).await;
    until("6 → 3", || {
        world.service_counts(CLUSTER, "api").unwrap().desired == 3 && running(&world).len() == 3
    })
    .await;
    for task in &tasks[3..] {
        assert!(
            running(&world).contains(task),
            "a task with a session stopped"
        );
    }
    let mut listed = Vec::new();
    until("the workflow is done", || {
        listed = futures_lite(workflows(&d));
        listed.len() == 1 && listed[0]["status"] == "done"
    })
    .await;
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let shown = d.get(&format!("/api/v1/workflows/{id}")).await;
    assert_eq!(done_steps(&shown), SCALE_IN_STEPS, "{shown:#}");

    // The CLI reads the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["workflows", "list", "--url", &d.base])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&id) && text.contains("done"), "{text}");

    // Back to 6, then a scale-in whose deregistration is refused.
    d.load(60).await;
    until("back at 6", || running(&world).len() == 6).await;
    world.inject_fault(FaultRule::always(
        "DeregisterTargets",
        AwsErrorKind::AccessDenied,
    ));
    d.load(30).await;
    let mut failed = Value::Null;
    until("the workflow fails", || {
        let all = futures_lite(workflows(&d));
        if let Some(w) = all.iter().find(|w| w["status"] == "failed") {
            failed = w.clone();
            true
        } else {
            false
        }
    })
    .await;
    assert_eq!(failed["step"], "deregister", "{failed:#}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("DeregisterTargets"),
        "{failed:#}"
    );
    assert_eq!(world.service_counts(CLUSTER, "api").unwrap().desired, 6);
    let failed_id = failed["id"].as_str().unwrap().to_owned();
    // Redriving a workflow that is not failed is refused.
    let r = d
        .http
        .post(format!("{}/api/v1/workflows/{id}/redrive", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CONFLICT);
    // The permission is back: redrive through the CLI.
    world.clear_faults();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["workflows", "redrive", &failed_id, "--url", &d.base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    until("redriven to 3", || {
        world.service_counts(CLUSTER, "api").unwrap().desired == 3 && running(&world).len() == 3
    })
    .await;
    let shown = d.get(&format!("/api/v1/workflows/{failed_id}")).await;
    let journal = shown["journal"].as_array().unwrap();
    let marks = journal
        .iter()
        .filter(|e| e["step"] == "mark_draining" && e["event"] == "started")
        .count();
    assert_eq!(marks, 1, "resumed at the failed step: {shown:#}");
    assert!(journal.iter().any(|e| e["event"] == "redrive"));
    d.stop().await;
}

/// Blocks on a future from inside a sync closure (the test's `until` checks).
fn futures_lite<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
