//! Reaction time of the real daemon (`daemon::run_with`), from the moment the world
//! changes to the moment the scaling call reaches the ECS service (the world model's,
//! on the system clock, polled every millisecond):
//!
//! - `redis`: a Redis list (a `redis` source read every 1 s, the service evaluated every
//!   1 s) goes from empty to 37 items at a random moment → desiredCount 4.
//!   `CAPSTAN_BENCH_ROUNDS` rounds (default 30).
//!
//! - `alert`: an Alertmanager webhook (version 4 payload) posting a firing alert for the
//!   service (an `alert` policy, step 1, max 2) → the scale-out carried out, timed from
//!   just before the POST is sent to capstan's own log event of the scale-out (emitted
//!   once the `UpdateService` call has returned), caught by a tracing layer. Each round
//!   first resolves the alert and waits for the service to be back at 1.
//!   `CAPSTAN_BENCH_ALERTS` rounds (default 1000).
//!
//! Prints the median, p99 and maximum. Needs a Redis (capstan-testkit starts a private
//! one if none answers on 6379). `CAPSTAN_BENCH_ONLY=redis|alert` runs one of them.
//!
//! ```sh
//! cargo bench -p capstan --bench reaction
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use capstan::config;
use capstan::daemon::services::world_targets;
use capstan::daemon::{self, RunOptions};
use capstan_core::clock::SystemClock;
use capstan_testkit::servers::{self, free_port};
use capstan_world::{ServiceSpec, World, WorldConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// Sends the instant of every "scale out" log event of capstan.
struct ScaleOuts(mpsc::UnboundedSender<Instant>);

struct Message(Option<String>);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ScaleOuts {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let at = Instant::now();
        let mut message = Message(None);
        event.record(&mut message);
        if message.0.is_some_and(|m| m.starts_with("api: scale out")) {
            let _ = self.0.send(at);
        }
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q`-quantile of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn new_world() -> World {
    // Without the model's API rate limits: rounds follow each other far faster than a
    // real service changes (ECS would throttle ListTasks after a few dozen a second).
    let world = World::new(
        WorldConfig {
            rate_limits: false,
            ..WorldConfig::default()
        },
        SystemClock,
    );
    world
        .add_service(ServiceSpec {
            cluster: "bench".into(),
            name: "api".into(),
            desired: 1,
            startup: Duration::from_millis(100),
            stop_timeout: Duration::from_millis(100),
            deprovisioning: Duration::from_millis(50),
            ..ServiceSpec::default()
        })
        .unwrap();
    world
}

/// Polls the world every millisecond until `api`'s desiredCount is `want`; returns when.
async fn desired_reaches(world: &World, want: u32, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if world.service_counts("bench", "api").map(|c| c.desired) == Some(want) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        world.advance();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn redis_reaction(rounds: usize) -> Vec<Duration> {
    let redis = servers::redis();
    let key = redis.key("jobs");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[store]
kind = "memory"

[sources.jobs]
kind = "redis"
url = "{url}"
key = "{key}"
interval = "1s"

[[services]]
name = "api"
min = 1
max = 8
interval = "1s"
target = {{ kind = "process", command = ["true"] }}
cooldown = {{ out = "0s", in = "0s" }}
scale_in = {{ stabilization = "0s" }}

[[services.policies]]
kind = "target_tracking"
metric = "jobs"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 1 }}
"#,
        url = redis.url()
    );
    let config = config::compile(&text, "bench.toml", &|_| None).unwrap();
    let world = new_world();
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(
        RunOptions {
            targets: Some(world_targets(world.clone(), "bench")),
            ..RunOptions::new(config)
        },
        cancel.clone(),
    ));
    let items: Vec<String> = (0..37).map(|i| format!("job-{i}")).collect();
    let mut push = vec!["RPUSH", key.as_str()];
    push.extend(items.iter().map(String::as_str));
    let mut times = Vec::with_capacity(rounds);
    let mut seed = 0x9e37_79b9_u64;
    for _ in 0..rounds {
        redis.command(&["DEL", &key]).unwrap();
        desired_reaches(&world, 1, Duration::from_secs(10))
            .await
            .expect("back to 1");
        // A random phase against the source's and the loop's 1 s periods.
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(200 + (seed >> 33) % 1000)).await;
        redis.command(&push).unwrap();
        let crossed = Instant::now();
        let reached = desired_reaches(&world, 4, Duration::from_secs(10))
            .await
            .expect("desiredCount 4");
        times.push(reached - crossed);
    }
    cancel.cancel();
    daemon.await.unwrap().unwrap();
    times
}

fn alert_body(status: &str, round: usize) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"QueueHigh\"}}","truncatedAlerts":0,"status":"{status}","receiver":"capstan","groupLabels":{{"alertname":"QueueHigh"}},"commonLabels":{{"alertname":"QueueHigh","service":"api"}},"commonAnnotations":{{}},"externalURL":"http://alertmanager:9093","alerts":[{{"status":"{status}","labels":{{"alertname":"QueueHigh","service":"api"}},"annotations":{{"value":"250"}},"startsAt":"2026-12-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"f{round}"}}]}}"#
    )
}

async fn alert_reaction(
    rounds: usize,
    mut scale_outs: mpsc::UnboundedReceiver<Instant>,
) -> Vec<Duration> {
    let port = free_port();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
kind = "memory"

[[services]]
name = "api"
min = 1
max = 2
interval = "60s"
target = {{ kind = "process", command = ["true"] }}
cooldown = {{ out = "0s", in = "0s" }}
scale_in = {{ stabilization = "0s" }}

[[services.policies]]
kind = "alert"
alert = "QueueHigh"
threshold = 100
step = 1
in_step = 1
"#
    );
    let config = config::compile(&text, "bench.toml", &|_| None).unwrap();
    let world = new_world();
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(
        RunOptions {
            targets: Some(world_targets(world.clone(), "bench")),
            ..RunOptions::new(config)
        },
        cancel.clone(),
    ));
    let url = format!("http://127.0.0.1:{port}/webhooks/alertmanager");
    let client = reqwest::Client::new();
    loop {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let resolved = client
            .post(&url)
            .header("content-type", "application/json")
            .body(alert_body("resolved", round.saturating_sub(1)))
            .send()
            .await
            .unwrap();
        assert!(
            resolved.status().is_success(),
            "{}",
            resolved.text().await.unwrap_or_default()
        );
        desired_reaches(&world, 1, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("round {round}: back to 1"));
        while scale_outs.try_recv().is_ok() {}
        let body = alert_body("firing", round);
        let sent = Instant::now();
        let firing = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(firing.status().is_success());
        let at = tokio::time::timeout(Duration::from_secs(10), scale_outs.recv())
            .await
            .expect("a scale-out within 10 s")
            .expect("the layer is alive");
        times.push(at - sent);
        // ECS stops only running tasks: let the new one start before scaling in.
        let deadline = Instant::now() + Duration::from_secs(10);
        while world.service_counts("bench", "api").map(|c| c.running) != Some(2) {
            assert!(
                Instant::now() < deadline,
                "round {round}: the new task did not start"
            );
            world.advance();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    cancel.cancel();
    daemon.await.unwrap().unwrap();
    times
}

fn report(name: &str, mut times: Vec<Duration>) {
    if times.is_empty() {
        println!("{name}: no rounds");
        return;
    }
    times.sort();
    println!(
        "{name}: {} rounds, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        quantile(&times, 0.5).as_secs_f64() * 1e3,
        quantile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    let rounds = usize::try_from(env_or("CAPSTAN_BENCH_ROUNDS", 30)).unwrap();
    let alerts = usize::try_from(env_or("CAPSTAN_BENCH_ALERTS", 1000)).unwrap();
    let only = std::env::var("CAPSTAN_BENCH_ONLY").unwrap_or_default();
    let (tx, scale_outs) = mpsc::unbounded_channel();
    let log = std::env::var("CAPSTAN_BENCH_LOG")
        .ok()
        .map(|_| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(ScaleOuts(tx))
        .with(log)
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        if only.is_empty() || only == "alert" {
            let times = alert_reaction(alerts, scale_outs).await;
            report(
                "Alertmanager webhook (firing) → scale-out carried out (UpdateService returned)",
                times,
            );
        }
        if only.is_empty() || only == "redis" {
            let times = redis_reaction(rounds).await;
            report(
                "redis list crosses the target → UpdateService (1 s source and service intervals)",
                times,
            );
        }
    });
}
