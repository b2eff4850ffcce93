//! The work registry end to end: the daemon's API over the world model's ECS service.
//!
//! Tasks report sessions and workloads over HTTP (every answer, good and bad, is
//! checked), then a decision to go from 6 tasks to 3 stops exactly the three idle
//! tasks: no task with a session is touched.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use capstan::config;
use capstan::daemon::services::world_targets;
use capstan::daemon::{self, RunOptions};
use capstan_aws_api::TaskStatus;
use capstan_core::clock::SystemClock;
use capstan_testkit::servers::free_port;
use capstan_world::{ServiceSpec, World, WorldConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "prod";

fn config(port: u16) -> config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
kind = "memory"

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
work = {{ ttl = "10m" }}

[[services.policies]]
kind = "target_tracking"
metric = "load"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 1 }}
"#
    );
    config::compile(&text, "test.toml", &|_| None).unwrap()
}

fn world(desired: u32) -> World {
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: "api".into(),
            desired,
            startup: Duration::from_millis(100),
            ..ServiceSpec::default()
        })
        .unwrap();
    world
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn task_url(&self, service: &str, task: &str) -> String {
        format!(
            "{}/api/v1/services/{service}/tasks/{}",
            self.base,
            urlencoding(task)
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, body)
    }
}

/// Percent-encodes everything but unreserved characters (a task ARN has `:` and `/`).
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn running(world: &World) -> Vec<String> {
    world
        .tasks(CLUSTER, "api")
        .into_iter()
        .filter(|t| t.status == TaskStatus::Running)
        .map(|t| t.arn)
        .collect()
}

async fn wait_known(api: &Api, task: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The listener may not be up yet: a refused connection is retried too.
        let known = api
            .http
            .get(format!("{}/work", api.task_url("api", task)))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if known {
            return;
        }
        assert!(Instant::now() < deadline, "the task never became known");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the daemon on `world`'s service: its API, its task and what stops it.
fn start(
    world: &World,
) -> (
    Api,
    tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    CancellationToken,
) {
    let port = free_port();
    let cancel = CancellationToken::new();
    let options = RunOptions {
        targets: Some(world_targets(world.clone(), CLUSTER)),
        ..RunOptions::new(config(port))
    };
    let daemon = tokio::spawn(daemon::run_with(options, cancel.clone()));
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    (api, daemon, cancel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_checked_and_scale_in_stops_only_idle_tasks() {
    use reqwest::Method as M;
    let world = world(6);
    let (api, daemon, cancel) = start(&world);
    let tasks = running(&world);
    assert_eq!(tasks.len(), 6);
    wait_known(&api, &tasks[0]).await;

    // Sessions on the three newest tasks (those a newest-first choice blind to work
    // would stop); one reported by its short id, the others by their full ARN.
    let busy = &tasks[3..];
    let short = busy[0].rsplit('/').next().unwrap();
    let (status, body) = api
        .call(
            M::PUT,
            &format!("{}/sessions/s-0", api.task_url("api", short)),
            Some(json!({ "ttl": "5m" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["task"], json!(busy[0]), "resolved to the full ARN");
    assert_eq!(body["sessions"], json!(1));
    let (status, _) = api
        .call(
            M::PUT,
            &format!("{}/sessions/s-0", api.task_url("api", short)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a duplicate start renews");
    let (status, body) = api
        .call(
            M::PUT,
            &format!("{}/sessions", api.task_url("api", &busy[1])),
            Some(json!({ "sessions": ["a", "b", "c"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["added"], json!(3));
    let (status, body) = api
        .call(
            M::POST,
            &format!("{}/workloads/job-1", api.task_url("api", &busy[2])),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Bad input: named, and nothing changes.
    let cases = [
        (
            M::PUT,
            format!("{}/sessions/a%20b", api.task_url("api", &busy[0])),
            None,
            StatusCode::BAD_REQUEST,
            "session",
        ),
        (
            M::PUT,
            format!("{}/sessions/x", api.task_url("api", &busy[0])),
            Some(json!({ "ttl": "forever" })),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            M::PUT,
            format!("{}/sessions/x", api.task_url("api", &busy[0])),
            Some(json!({ "ttl": "5m", "colour": "red" })),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            M::PUT,
            format!("{}/sessions", api.task_url("api", &busy[0])),
            Some(json!({ "sessions": "a" })),
            StatusCode::BAD_REQUEST,
            "sessions",
        ),
        (
            M::PUT,
            format!("{}/sessions", api.task_url("api", &busy[0])),
            Some(json!({ "sessions": ["ok", 3] })),
            StatusCode::BAD_REQUEST,
            "sessions",
        ),
        (
            M::PUT,
            format!("{}/sessions/x", api.task_url("api", "no-such-task")),
            None,
            StatusCode::NOT_FOUND,
            "task",
        ),
        (
            M::PUT,
            format!("{}/sessions/x", api.task_url("web", &busy[0])),
            None,
            StatusCode::NOT_FOUND,
            "service",
        ),
    ];
    for (method, url, body, want, field) in cases {
        let (status, answer) = api.call(method, &url, body).await;
        assert_eq!(status, want, "{url}: {answer}");
        assert_eq!(answer["field"], json!(field), "{url}: {answer}");
    }
    let (_, answer) = api
        .call(
            M::PUT,
            &format!("{}/sessions/x", api.task_url("api", "no-such-task")),
            None,
        )
        .await;
    assert!(
        answer["error"].as_str().unwrap().contains("no-such-task"),
        "{answer}"
    );
    // Ending an unknown session is idempotent.
    let (status, _) = api
        .call(
            M::DELETE,
            &format!("{}/sessions/never", api.task_url("api", &busy[0])),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A bulk report bigger than the API's usual 4 KiB body limit is accepted.
    let many: Vec<String> = (0..500).map(|i| format!("bulk-session-{i}")).collect();
    let (status, body) = api
        .call(
            M::PUT,
            &format!("{}/sessions", api.task_url("api", &busy[1])),
            Some(json!({ "sessions": many })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .call(
            M::PUT,
            &format!("{}/sessions", api.task_url("api", &busy[1])),
            Some(json!({ "sessions": ["a", "b", "c"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], json!(500));
    let (_, work) = api
        .call(
            M::GET,
            &format!("{}/work", api.task_url("api", &busy[1])),
            None,
        )
        .await;
    assert_eq!(work["sessions"], json!(3), "{work}");
    assert_eq!(work["draining"], json!(false));

    // Load for 3 tasks: capstan goes 6 → 3 and stops exactly the idle tasks.
    let (status, _) = api
        .call(
            M::POST,
            &format!("{}/api/v1/metrics/load", api.base),
            Some(json!({ "value": 30 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = world.service_counts(CLUSTER, "api").unwrap();
        let live: Vec<String> = world
            .tasks(CLUSTER, "api")
            .into_iter()
            .map(|t| t.arn)
            .collect();
        if counts.desired == 3 && live.len() == 3 {
            let mut live = live;
            live.sort();
            let mut want = busy.to_vec();
            want.sort();
            assert_eq!(live, want, "only the tasks with work are left");
            break;
        }
        for task in busy {
            assert!(live.contains(task), "a task with work was stopped: {task}");
        }
        assert!(
            Instant::now() < deadline,
            "scale-in did not finish: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stopped tasks' entries are gone with them; the others keep theirs.
    let (status, _) = api
        .call(
            M::PUT,
            &format!("{}/sessions/late", api.task_url("api", &tasks[0])),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a stopped task is unknown");
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("capstan_work_sessions{service=\"api\"} 4"),
        "{metrics}"
    );
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}

/// Sessions on 5 of 6 tasks and load for 3: only the idle task goes (6 → 5), and the
/// decision says why the scale-in was shortened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_in_is_shortened_to_the_idle_tasks_and_says_why() {
    use reqwest::Method as M;
    let world = world(6);
    let (api, daemon, cancel) = start(&world);
    let tasks = running(&world);
    wait_known(&api, &tasks[0]).await;
    let idle = tasks[2].clone();
    for task in tasks.iter().filter(|t| **t != idle) {
        let (status, body) = api
            .call(
                M::PUT,
                &format!("{}/sessions/s", api.task_url("api", task)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, _) = api
        .call(
            M::POST,
            &format!("{}/api/v1/metrics/load", api.base),
            Some(json!({ "value": 30 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live: Vec<String> = world
            .tasks(CLUSTER, "api")
            .into_iter()
            .map(|t| t.arn)
            .collect();
        if live.len() == 5 {
            assert!(!live.contains(&idle), "the idle task went");
            break;
        }
        assert!(Instant::now() < deadline, "the idle task never went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(world.service_counts(CLUSTER, "api").unwrap().desired, 5);
    let (_, detail) = api
        .call(
            M::GET,
            &format!("{}/api/v1/services/api/decisions?limit=500", api.base),
            None,
        )
        .await;
    let sentences: Vec<&str> = detail["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["sentence"].as_str())
        .collect();
    assert!(
        sentences.iter().any(|s| s.contains("scale in 6 → 5")
            && s.contains("shortened to 5: only 1 of 3 tasks can go: 5 tasks have live sessions")),
        "{sentences:#?}"
    );
    // Later decisions hold at 5 and keep saying why.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.service_counts(CLUSTER, "api").unwrap().desired, 5);
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}
