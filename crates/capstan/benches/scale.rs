//! How many services one capstan runs: `CAPSTAN_BENCH_SERVICES` services (default
//! 10,000), each with its own `push` source and a target-tracking policy, evaluated
//! every second against ECS services of the world model (on the system clock), in the
//! real daemon (`daemon::run_with`) on a 2-thread runtime.
//!
//! Every source gets one value over HTTP at the start (ttl 1 h; values spread so that
//! services scale to different counts), then the daemon runs `CAPSTAN_BENCH_WARMUP_S`
//! (default 15) seconds to settle and is measured for `CAPSTAN_BENCH_SECONDS` (default
//! 30), with its decisions in the default SQLite store: the process's CPU time (`getrusage`, every thread: the world model's work is in
//! it too), its resident memory (`/proc/self/status`), and the evaluations made (the
//! sum of `capstan_decisions_total`). Linux only. Each source's window keeps what its
//! policy needs (the default: a minute of values, one a second) unless
//! `CAPSTAN_BENCH_RETENTION` says otherwise (e.g. `15m`): memory grows until the windows
//! are full.
//!
//! ```sh
//! cargo bench -p capstan --bench scale
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use capstan::config;
use capstan::daemon::services::AnyTarget;
use capstan::daemon::{self, RunOptions};
use capstan_core::clock::SystemClock;
use capstan_targets::{EcsTarget, EcsTargetSpec};
use capstan_world::{ServiceSpec, World, WorldConfig};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the whole process so far.
fn process_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    micros(usage.user_time()) + micros(usage.system_time())
}

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`).
fn memory_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("the field");
    kib / 1024.0
}

fn config_text(
    services: usize,
    port: u16,
    store: &std::path::Path,
    retention: Option<&str>,
) -> String {
    let retention = retention.map_or_else(String::new, |r| format!("retention = \"{r}\"\n"));
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\npath = \"{}\"\n\n",
        store.display()
    );
    for i in 0..services {
        writeln!(
            text,
            "[sources.q{i}]\nkind = \"push\"\nttl = \"1h\"\ninterval = \"1s\"\n{retention}"
        )
        .unwrap();
    }
    for i in 0..services {
        writeln!(
            text,
            "[[services]]\nname = \"s{i}\"\nmin = 1\nmax = 10\ninterval = \"1s\"\n\
             target = {{ kind = \"process\", command = [\"true\"] }}\n\n\
             [[services.policies]]\nkind = \"target_tracking\"\nmetric = \"q{i}\"\n\
             mode = \"total\"\ntarget = 10\n"
        )
        .unwrap();
    }
    text
}

/// The sum of every `capstan_decisions_total` sample.
async fn decisions(client: &reqwest::Client, base: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("capstan_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    if let Ok(filter) = std::env::var("CAPSTAN_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let services = usize::try_from(env_or("CAPSTAN_BENCH_SERVICES", 10_000)).unwrap();
    let warmup = Duration::from_secs(env_or("CAPSTAN_BENCH_WARMUP_S", 15));
    let measured = Duration::from_secs(env_or("CAPSTAN_BENCH_SECONDS", 30));
    // Each source's window (default: the configuration's default, 15 minutes).
    let retention = std::env::var("CAPSTAN_BENCH_RETENTION").ok();
    let port = capstan_testkit::servers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The default store: SQLite, in a file of its own.
    let dir = tempfile::tempdir().unwrap();
    let config = config::compile(
        &config_text(
            services,
            port,
            &dir.path().join("capstan.db"),
            retention.as_deref(),
        ),
        "bench.toml",
        &|_| None,
    )
    .expect("the bench's config compiles");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // Several small worlds: the model settles every service of a world at each
        // call, so one world of 10,000 services would measure the model, not capstan.
        // Without the model's API rate limits: measured here is capstan's own cost (one
        // account's ECS API would throttle 10,000 DescribeServices a second).
        let per_world = usize::try_from(env_or("CAPSTAN_BENCH_PER_WORLD", 100)).unwrap();
        let worlds: Vec<World> = (0..services.div_ceil(per_world))
            .map(|_| {
                World::new(
                    WorldConfig {
                        rate_limits: false,
                        ..WorldConfig::default()
                    },
                    SystemClock,
                )
            })
            .collect();
        for i in 0..services {
            worlds[i / per_world]
                .add_service(ServiceSpec {
                    cluster: "bench".into(),
                    name: format!("s{i}"),
                    desired: 1,
                    startup: Duration::from_secs(5),
                    stop_timeout: Duration::from_secs(2),
                    deprovisioning: Duration::from_secs(1),
                    ..ServiceSpec::default()
                })
                .unwrap();
        }
        let target_worlds = worlds.clone();
        let targets = Arc::new(
            move |spec: &config::ServiceSpec, parts: capstan::daemon::services::TargetParts| {
                let i: usize = spec.name.trim_start_matches('s').parse().ok()?;
                let world = target_worlds.get(i / per_world)?;
                let target = EcsTarget::new(
                    &spec.name,
                    EcsTargetSpec::new("bench", &spec.name),
                    world.clone(),
                    Some(world.clone()),
                    parts.work,
                );
                Some(Ok(AnyTarget::EcsWorld(Arc::new(target))))
            },
        );
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let daemon = tokio::spawn(daemon::run_with(
            RunOptions {
                targets: Some(targets),
                ..RunOptions::new(config)
            },
            cancel.clone(),
        ));
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for i in 0..services {
            let value = (i % 60) as f64;
            client
                .post(format!("{base}/api/v1/metrics/q{i}"))
                .body(value.to_string())
                .send()
                .await
                .unwrap();
        }
        eprintln!(
            "{services} services started and fed in {:.1} s; warming up {} s",
            started.elapsed().as_secs_f64(),
            warmup.as_secs()
        );
        tokio::time::sleep(warmup).await;
        // Events are kept until read: read them, as the simulator does.
        for world in &worlds {
            world.advance();
        }
        let (cpu0, wall0, made0) = (
            process_cpu(),
            Instant::now(),
            decisions(&client, &base).await,
        );
        tokio::time::sleep(measured).await;
        let (cpu1, wall1, made1) = (
            process_cpu(),
            Instant::now(),
            decisions(&client, &base).await,
        );
        for world in &worlds {
            world.advance();
        }
        let wall = wall1 - wall0;
        let cpu = cpu1 - cpu0;
        let share = cpu.as_secs_f64() / wall.as_secs_f64();
        let per_second = (made1 - made0) / wall.as_secs_f64();
        println!(
            "{services} services, 1 s interval, {:.0} s measured: {:.1} % of one core \
             ({:.1} µs of CPU per evaluation), {per_second:.0} evaluations/s \
             ({:.0} % of the {services}/s asked), RSS {:.0} MiB (peak {:.0} MiB)",
            wall.as_secs_f64(),
            share * 100.0,
            cpu.as_secs_f64() * 1e6 / (made1 - made0).max(1.0),
            per_second * 100.0 / services as f64,
            memory_mib("VmRSS:"),
            memory_mib("VmHWM:"),
        );
        cancel.cancel();
        daemon.await.unwrap().unwrap();
    });
}
