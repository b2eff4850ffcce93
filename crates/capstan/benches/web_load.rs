//! What the web page costs in a real headless Chromium (chromedriver, through
//! `fantoccini`) with 500 services holding a full day of history:
//!
//! - **overview**: from the navigation to `/` until the overview table shows all 500
//!   rows;
//! - **service view**: from the navigation to `/#/services/svc-250` until its chart is
//!   drawn (the default 1 h window), then from the click on "24 h" until the 24 h chart
//!   is drawn; and the sum, the time to open a service view with its 24 h chart;
//!
//! each `CAPSTAN_BENCH_ROUNDS` times (default 10), median and max printed, with the
//! JSON sizes of `GET /api/v1/services` and of the 24 h history the page asks for.
//! The DOM is polled over WebDriver every 5 ms, so a time is late by up to a poll and
//! a WebDriver round trip.
//!
//! The API runs in-process without service loops (the fastest start): 500 services
//! registered with 24 hours of ticks every `CAPSTAN_BENCH_TICK_S` seconds (default 1:
//! the raw tier full) with 2 policies and 49 scaling decisions each, ending now, as in
//! the `history` bench.
//! Without chromedriver it prints why and does nothing.
//!
//! ```sh
//! cargo bench -p capstan --bench web_load
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/browser.rs"]
mod browser;

#[path = "support/day.rs"]
mod day;

use std::sync::Arc;
use std::time::Duration;

use capstan_control::Registry;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::model::Bounds;
use capstan_store::MemoryStore;
use fantoccini::{Client, Locator};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 500;
const DAY_S: u64 = 24 * 3600;
const SERVICE: &str = "svc-250";
const POLL: Duration = Duration::from_millis(5);

/// The API of 500 services with a day of history each, served on loopback: its base URL.
async fn serve(tick_s: u64, cancel: &CancellationToken) -> String {
    let ticks = DAY_S / tick_s;
    // The day ends now: the page's relative times read as they would live.
    let end = capstan_core::clock::SystemClock.now();
    let start = end
        .checked_sub(jiff::SignedDuration::from_secs(
            i64::try_from((ticks - 1) * tick_s).unwrap(),
        ))
        .unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let registry = Arc::new(Registry::new());
    let log = Arc::new(MemoryStore::new(100));
    let handles: Vec<_> = (0..SERVICES)
        .map(|i| registry.register(&format!("svc-{i:03}"), Bounds { min: 1, max: 20 }, false))
        .collect();
    for h in &handles {
        day::fill(h, start, ticks, tick_s);
    }
    clock.set(end);
    day::decisions(&handles, &log, start, end);
    day::serve_api(&registry, log, clock, cancel).await
}

/// Polls `check` (JavaScript) every [`POLL`] until truthy; the time since `since`.
async fn until(page: &Client, what: &str, check: &str, since: Instant) -> Duration {
    browser::wait_js_every(page, what, check, Duration::from_secs(60), POLL).await;
    since.elapsed()
}

fn stats(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{name}: median {:.0} ms, max {:.0} ms ({} rounds)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}

async fn size(client: &reqwest::Client, url: &str) -> usize {
    let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
    assert!(body.starts_with(b"{"), "{url}");
    body.len()
}

#[tokio::main]
async fn main() {
    let Some(binary) = browser::chromedriver_binary() else {
        println!(
            "web_load: skipped, chromedriver is not on the PATH (apt-get install chromium \
             chromium-driver, or set CHROMEDRIVER)"
        );
        return;
    };
    let tick_s = day::env_or("CAPSTAN_BENCH_TICK_S", 1).max(1);
    let rounds = day::env_or("CAPSTAN_BENCH_ROUNDS", 10).max(1);
    let cancel = CancellationToken::new();
    let filling = Instant::now();
    let base = serve(tick_s, &cancel).await;
    println!(
        "{SERVICES} services, 24 h of ticks every {tick_s} s, 2 policies, 49 decisions each \
         (filled in {:.1} s)",
        filling.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/services".to_owned(),
        format!("/api/v1/services/{SERVICE}/history?window=24h&points=240"),
        format!("/api/v1/services/{SERVICE}/history?window=24h"),
    ] {
        let bytes = size(&client, &format!("{base}{path}")).await;
        println!("GET {path}: {:.1} KB JSON", bytes as f64 / 1e3);
    }

    let driver = browser::start_chromedriver(binary).await;
    let page = browser::browser(&driver).await;
    // A first load, not measured: the browser process warms up.
    page.goto(&format!("{base}/")).await.unwrap();
    let rows = format!("document.querySelectorAll('#services tbody tr').length === {SERVICES}");
    until(&page, "the overview's rows", &rows, Instant::now()).await;

    let drawn = |window: &str| {
        format!(
            "document.getElementById('chart').dataset.window === '{window}' && \
             ((document.querySelector('#chart svg path[data-series=\"desired\"]') || \
             {{getAttribute: () => ''}}).getAttribute('d') || '').length > 0"
        )
    };
    let (mut overview, mut open, mut switch, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        page.goto("about:blank").await.unwrap();
        let t0 = Instant::now();
        page.goto(&format!("{base}/")).await.unwrap();
        overview.push(until(&page, "the overview's rows", &rows, t0).await);

        page.goto("about:blank").await.unwrap();
        let t0 = Instant::now();
        page.goto(&format!("{base}/#/services/{SERVICE}"))
            .await
            .unwrap();
        let first = until(&page, "the 1 h chart", &drawn("1h"), t0).await;
        open.push(first);
        let t1 = Instant::now();
        page.find(Locator::Css(r#"button[data-window="24h"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let second = until(&page, "the 24 h chart", &drawn("24h"), t1).await;
        switch.push(second);
        total.push(first + second);
    }
    let shown: Value = page
        .execute(
            "return document.querySelectorAll('#chart svg path').length;",
            vec![],
        )
        .await
        .unwrap();
    println!("the 24 h chart: {shown} paths");
    stats(
        &format!("overview: navigation to `/` until {SERVICES} rows"),
        overview,
    );
    stats(
        &format!("service view: navigation to `/#/services/{SERVICE}` until its 1 h chart"),
        open,
    );
    stats(
        "service view: click on \"24 h\" until the 24 h chart",
        switch,
    );
    stats("service view with its 24 h chart (the two above)", total);

    page.close().await.unwrap();
    drop(driver);
    cancel.cancel();
}
