//! 1,000 `http` sources read every second against a local HTTP server for ~20 s of real
//! time: the CPU time capstan's poller spends per poll, and as a share of one core.
//!
//! `cargo bench -p capstan-sources --bench http_sources` (`CAPSTAN_BENCH_SECS` changes
//! the duration, `CAPSTAN_BENCH_SOURCES` the number of sources). The server
//! (`capstan_testkit::http::MetricServer`) runs on a Tokio runtime of its own in a
//! thread of its own; its CPU time (that thread's, from `/proc/thread-self/schedstat`) is
//! subtracted from the whole process's (`getrusage`, every thread; the sources are
//! built before the clock starts). Linux only. Every source
//! keeps a connection open, so the process needs a few more than 2 × sources open files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_core::Clock;
use capstan_core::clock::SystemClock;
use capstan_core::metrics::Observations;
use capstan_sources::{HttpSpec, SourceKind, SourceSpec, ValueKind, spawn_all};
use capstan_testkit::http::MetricServer;
use tokio_util::sync::CancellationToken;

/// User + system CPU time of the whole process, every thread included.
fn process_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    micros(usage.user_time()) + micros(usage.system_time())
}

/// CPU time on record in a `schedstat` file (its first field, nanoseconds).
fn cpu(path: &str) -> Duration {
    let text = std::fs::read_to_string(path).expect("read schedstat");
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("schedstat's first field");
    Duration::from_nanos(ns)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs = env_or("CAPSTAN_BENCH_SECS", 20);
    let sources = env_or("CAPSTAN_BENCH_SOURCES", 1000) as usize;

    // The server, on its own runtime and thread.
    let (ready, url) = mpsc::channel::<String>();
    let (stop, stopped) = mpsc::channel::<()>();
    let (report, server_report) = mpsc::channel::<(Duration, u64)>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let server = MetricServer::start("/metric").await.expect("server");
            server.set_json(&serde_json::json!({"jobs": 17}));
            ready.send(server.url()).expect("send url");
            let before = cpu("/proc/thread-self/schedstat");
            tokio::task::spawn_blocking(move || stopped.recv())
                .await
                .expect("wait")
                .ok();
            let used = cpu("/proc/thread-self/schedstat").saturating_sub(before);
            report.send((used, server.requests())).expect("report");
        });
    });
    let url = url.recv().expect("server url");

    // capstan's side: a runtime like `capstan run`'s.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let specs: Vec<SourceSpec> = (0..sources)
        .map(|i| SourceSpec {
            name: format!("jobs{i}"),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_age: Duration::from_secs(3),
            retention: Duration::from_secs(60),
            value: ValueKind::Count,
            retries: 2,
            // A query string of its own, so no two sources share a read.
            kind: SourceKind::Http(HttpSpec {
                url: format!("{url}?source={i}"),
                pointer: "/jobs".into(),
                headers: BTreeMap::new(),
                ..HttpSpec::default()
            }),
        })
        .collect();
    let obs = Arc::new(Mutex::new(Observations::new()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cancel = CancellationToken::new();
    let mut process_before = Duration::ZERO;
    let mut wall = tokio::time::Instant::now();
    rt.block_on(async {
        let mut tasks = spawn_all(&specs, Arc::clone(&obs), clock, cancel.clone()).expect("spawn");
        // The clock starts once every source is built and polling.
        process_before = process_cpu();
        wall = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        cancel.cancel();
        while tasks.join_next().await.is_some() {}
    });
    let elapsed = wall.elapsed();
    let process = process_cpu().saturating_sub(process_before);
    stop.send(()).expect("stop server");
    let (server_cpu, requests) = server_report.recv().expect("server report");
    server.join().expect("server thread");

    let (polls, failures) = {
        let obs = obs.lock().unwrap();
        let polls: usize = specs
            .iter()
            .map(|s| obs.series(&s.name).map_or(0, |x| x.samples().len()))
            .sum();
        let failing = specs
            .iter()
            .filter(|s| obs.series(&s.name).is_some_and(|x| x.samples().is_empty()))
            .count();
        (polls, failing)
    };
    let capstan = process.saturating_sub(server_cpu);
    let per_poll = capstan.as_secs_f64() / polls.max(1) as f64;
    let core = 100.0 * capstan.as_secs_f64() / elapsed.as_secs_f64();
    println!(
        "{sources} http sources, 1 s interval, {:.1} s: {polls} good polls ({requests} requests served, {failures} sources without a value)",
        elapsed.as_secs_f64()
    );
    println!(
        "CPU: process {:.3} s, server thread {:.3} s, capstan {:.3} s",
        process.as_secs_f64(),
        server_cpu.as_secs_f64(),
        capstan.as_secs_f64()
    );
    println!(
        "capstan CPU per poll: {:.1} µs; {core:.1} % of one core",
        per_poll * 1e6
    );
}
