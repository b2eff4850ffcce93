//! Reaction time of the real daemon (`daemon::run_with`), from the moment the world
//! changes to the moment the scaling call reaches the ECS service (the world model's,
//! on the system clock, polled every millisecond):
//!
//! - `redis`: a Redis list (a `redis` source read every 1 s, the service evaluated every
//!   1 s) goes from empty to 37 items at a random moment → desiredCount 4.
//!   `CAPSTAN_BENCH_ROUNDS` rounds (default 30).
//!
//! Prints the median, p99 and maximum. Needs a Redis (capstan-testkit starts a private
//! one if none answers on 6379).
//!
//! ```sh
//! cargo bench -p capstan --bench reaction
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use capstan::config;
use capstan::daemon::services::AnyTarget;
use capstan::daemon::{self, RunOptions};
use capstan_core::clock::SystemClock;
use capstan_targets::{EcsTarget, EcsTargetSpec};
use capstan_testkit::servers;
use capstan_world::{ServiceSpec, World, WorldConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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

fn world_target(world: &World) -> capstan::daemon::services::TargetFactory {
    let world = world.clone();
    Arc::new(move |spec: &config::ServiceSpec| {
        let target = EcsTarget::new(
            &spec.name,
            EcsTargetSpec::new("bench", &spec.name),
            world.clone(),
            Some(world.clone()),
            None,
        );
        Some(AnyTarget::EcsWorld(Arc::new(target)))
    })
}

fn new_world() -> World {
    let world = World::new(WorldConfig::default(), SystemClock);
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
            targets: Some(world_target(&world)),
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

fn report(name: &str, mut times: Vec<Duration>) {
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let times = redis_reaction(rounds).await;
        report(
            "redis list crosses the target → UpdateService (1 s source and service intervals)",
            times,
        );
    });
}
