//! What the web page costs the API with 500 services holding a full day of history:
//! the time to answer `GET /api/v1/services` and one service's
//! `history?window=24h&points=1000` (and `window=1h`), with the size of each JSON body,
//! over loopback HTTP, and the memory the histories take.
//!
//! Each service's history is filled as its loop would fill it: 24 hours of ticks every
//! `CAPSTAN_BENCH_TICK_S` seconds (default 1: the worst case, the raw tier full) with 2
//! policies, and 48 scaling decisions in its log. The load generator runs in the same
//! process, one request at a time, `CAPSTAN_BENCH_ROUNDS` times (default 50); the median
//! and the maximum are printed.
//!
//! ```sh
//! cargo bench -p capstan --bench history
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/day.rs"]
mod day;

use std::sync::Arc;
use std::time::Duration;

use capstan_control::Registry;
use capstan_core::clock::VirtualClock;
use capstan_core::model::Bounds;
use capstan_store::MemoryStore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 500;
const DAY_S: u64 = 24 * 3600;

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn timed(client: &reqwest::Client, url: &str, rounds: u64) -> (Duration, Duration, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
        times.push(started.elapsed());
        size = body.len();
        assert!(body.starts_with(b"{"), "{url}");
    }
    times.sort();
    (times[times.len() / 2], times[times.len() - 1], size)
}

#[tokio::main]
async fn main() {
    let tick_s = day::env_or("CAPSTAN_BENCH_TICK_S", 1).max(1);
    let rounds = day::env_or("CAPSTAN_BENCH_ROUNDS", 50).max(1);
    let start = capstan_core::Timestamp::from_second(1_800_000_000).unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let registry = Arc::new(Registry::new());
    let log = Arc::new(MemoryStore::new(100));
    let handles: Vec<_> = (0..SERVICES)
        .map(|i| registry.register(&format!("svc-{i:03}"), Bounds { min: 1, max: 20 }, false))
        .collect();

    let before = rss();
    let filling = Instant::now();
    let ticks = DAY_S / tick_s;
    for h in &handles {
        day::fill(h, start, ticks, tick_s);
    }
    let filled = filling.elapsed();
    let after = rss();
    let end = capstan_core::clock::add(start, Duration::from_secs((ticks - 1) * tick_s));
    clock.set(end);
    day::decisions(&handles, &log, start, end);
    let cancel = CancellationToken::new();
    let base = day::serve_api(&registry, log, clock, &cancel).await;
    let client = reqwest::Client::new();

    println!(
        "{SERVICES} services, 24 h of ticks every {tick_s} s, 2 policies: filled in {:.1} s; \
         histories take {:.1} MB ({:.0} KB per service, RSS growth)",
        filled.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / 1e6,
        (after.saturating_sub(before)) as f64 / 1e3 / SERVICES as f64,
    );
    for path in [
        "/api/v1/services".to_owned(),
        "/api/v1/services/svc-250/history?window=24h&points=1000".to_owned(),
        "/api/v1/services/svc-250/history?window=6h".to_owned(),
        "/api/v1/services/svc-250/history?window=1h".to_owned(),
    ] {
        let (median, max, size) = timed(&client, &format!("{base}{path}"), rounds).await;
        println!(
            "GET {path}: median {:.2} ms, max {:.2} ms, {:.1} KB JSON",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            size as f64 / 1e3
        );
    }
    cancel.cancel();
}
