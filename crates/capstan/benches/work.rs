//! Throughput and latency of the work registry through the real daemon
//! (`daemon::run_with`, SQLite store with `synchronous = FULL`: every answered report is
//! durable) over loopback HTTP.
//!
//! The world model runs 100 ECS services of 100 tasks each (10,000 tasks). The registry
//! is first loaded with 100,000 live sessions (10 per task, one bulk report per task);
//! then `CAPSTAN_BENCH_CLIENTS` clients (default 32) each start a session on a random
//! task (`PUT .../sessions/{id}`) and end it (`DELETE`), in a loop, for
//! `CAPSTAN_BENCH_SECONDS` (default 20). Prints updates per second, the median, p99 and
//! maximum latency of one update, and how many reports each store transaction carried
//! on average. The load generator runs in the same process as capstan, on the same
//! cores.
//!
//! ```sh
//! cargo bench -p capstan --bench work
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use capstan::config;
use capstan::daemon::services::world_targets;
use capstan::daemon::{self, RunOptions};
use capstan_core::clock::SystemClock;
use capstan_testkit::servers::free_port;
use capstan_world::{ServiceSpec, World, WorldConfig};
use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 100;
const TASKS: usize = 100;
const SESSIONS_PER_TASK: usize = 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config_text(port: u16, store: &std::path::Path) -> String {
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
path = "{}"

# Never pushed: every service holds.
[sources.load]
kind = "push"
ttl = "1h"
interval = "10s"
value = "any"
"#,
        store.display()
    );
    for s in 0..SERVICES {
        text.push_str(&format!(
            r#"
[[services]]
name = "svc-{s}"
min = 1
max = {TASKS}
interval = "10s"
target = {{ kind = "process", command = ["true"] }}
work = {{ ttl = "1h" }}

[[services.policies]]
kind = "target_tracking"
metric = "load"
mode = "total"
target = 10
"#
        ));
    }
    text
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// The value of `capstan_work_events_total{event="..."}` in a `/metrics` text.
fn event(metrics: &str, name: &str) -> f64 {
    let prefix = format!("capstan_work_events_total{{event=\"{name}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let clients = env_or("CAPSTAN_BENCH_CLIENTS", 32) as usize;
    let seconds = env_or("CAPSTAN_BENCH_SECONDS", 20);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config::compile(
        &config_text(port, &dir.path().join("capstan.db")),
        "bench.toml",
        &|_| None,
    )
    .unwrap();
    let world = World::new(WorldConfig::default(), SystemClock);
    for s in 0..SERVICES {
        world
            .add_service(ServiceSpec {
                cluster: "bench".into(),
                name: format!("svc-{s}"),
                desired: TASKS as u32,
                ..ServiceSpec::default()
            })
            .unwrap();
    }
    let tasks: Arc<Vec<(String, String)>> = Arc::new(
        (0..SERVICES)
            .flat_map(|s| {
                let service = format!("svc-{s}");
                world.tasks("bench", &service).into_iter().map(move |t| {
                    (
                        service.clone(),
                        t.arn.rsplit('/').next().unwrap().to_owned(),
                    )
                })
            })
            .collect(),
    );
    assert_eq!(tasks.len(), SERVICES * TASKS);
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(
        RunOptions {
            targets: Some(world_targets(world.clone(), "bench")),
            ..RunOptions::new(config)
        },
        cancel.clone(),
    ));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .build()
        .unwrap();

    // Every task known (each service observed once), then 100,000 sessions.
    let started = Instant::now();
    let mut loaded = 0;
    let mut pending = tokio::task::JoinSet::new();
    for (i, (service, task)) in tasks.iter().enumerate() {
        let http = http.clone();
        let url = format!("{base}/api/v1/services/{service}/tasks/{task}/sessions");
        let ids: Vec<String> = (0..SESSIONS_PER_TASK)
            .map(|n| format!("seed-{i}-{n}"))
            .collect();
        pending.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let r = http
                    .put(&url)
                    .json(&json!({ "sessions": ids }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => return,
                    _ if Instant::now() > deadline => panic!("cannot load {url}"),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        if pending.len() >= clients {
            pending.join_next().await.unwrap().unwrap();
            loaded += 1;
        }
    }
    while let Some(r) = pending.join_next().await {
        r.unwrap();
        loaded += 1;
    }
    println!(
        "loaded {} sessions on {loaded} tasks in {:.1} s",
        loaded * SESSIONS_PER_TASK,
        started.elapsed().as_secs_f64()
    );
    let before = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // The measured run.
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut runners = tokio::task::JoinSet::new();
    for c in 0..clients {
        let http = http.clone();
        let base = base.clone();
        let tasks = Arc::clone(&tasks);
        runners.spawn(async move {
            let mut times = Vec::new();
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (c as u64);
            let mut n = 0u64;
            while Instant::now() < until {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let (service, task) = &tasks[(seed >> 33) as usize % tasks.len()];
                let url =
                    format!("{base}/api/v1/services/{service}/tasks/{task}/sessions/c{c}-{n}");
                n += 1;
                let t = Instant::now();
                let r = http.put(&url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                times.push(t.elapsed());
                let t = Instant::now();
                let r = http.delete(&url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::NO_CONTENT);
                times.push(t.elapsed());
            }
            times
        });
    }
    let measured = Instant::now();
    let mut times = Vec::new();
    while let Some(r) = runners.join_next().await {
        times.extend(r.unwrap());
    }
    let elapsed = measured.elapsed().as_secs_f64();
    let after = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    times.sort();
    let batches = event(&after, "store_batch") - event(&before, "store_batch");
    println!(
        "{} updates in {elapsed:.1} s with {clients} clients: {:.0} updates/s; latency median {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} reports per store transaction",
        times.len(),
        times.len() as f64 / elapsed,
        quantile(&times, 0.5).as_secs_f64() * 1e3,
        quantile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        times.len() as f64 / batches.max(1.0),
    );
    let live = after
        .lines()
        .filter_map(|l| l.strip_prefix("capstan_work_sessions{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    println!("live sessions at the end: {live:.0}");
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}
