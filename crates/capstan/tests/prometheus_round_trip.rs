//! The round trip: capstan's listener exports a source's value on `/metrics`, a real
//! Prometheus scrapes it every second, and a `prometheus` source reads the same value
//! back through PromQL (`capstan_source_value{source="jobs"}`), following its changes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use capstan::config;
use capstan::server::{self, Exporter, ServerState};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_sources::{
    ErrorClass, PushStore, ReadError, ReadObserver, Source, SourceSpec, build_with, read_once,
};
use capstan_testkit::prometheus::{Prometheus, scrape_config};
use tokio_util::sync::CancellationToken;

/// How long a change may take to come back: a 1 s scrape plus the query.
const SETTLE: Duration = Duration::from_secs(20);

fn config_text(prometheus: &str) -> String {
    format!(
        r#"
[sources.jobs]
kind = "push"
ttl = "1h"

[sources.back]
kind = "prometheus"
url = "{prometheus}"
query = 'capstan_source_value{{source="jobs"}}'
timeout = "2s"

[[services]]
name = "worker"
max = 4
target = {{ kind = "process", command = ["true"] }}

[[services.policies]]
kind = "target_tracking"
metric = "jobs"
mode = "total"
target = 10
"#
    )
}

/// Reads `source` until `done` holds for its result (a bounded wait for the next
/// scrape); returns the last result.
async fn settles(
    source: &dyn Source,
    spec: &SourceSpec,
    done: impl Fn(&Result<f64, ReadError>) -> bool,
) -> Result<f64, ReadError> {
    let started = tokio::time::Instant::now();
    loop {
        let read = read_once(source, spec).await.map_err(|e| e.error);
        if done(&read) || started.elapsed() > SETTLE {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_capstan_and_a_prometheus_source_reads_the_value_back() {
    // capstan's listener first: Prometheus needs its address.
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let capstan = listener.local_addr().unwrap().to_string();
    let scrape = scrape_config("capstan", "/metrics", &[&capstan], &[]);
    let prometheus = tokio::task::spawn_blocking(move || Prometheus::start(&scrape, &[]))
        .await
        .unwrap();

    let config = config::compile(&config_text(&prometheus.url()), "t.toml", &|_| None).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::at_epoch());
    let exporter = Arc::new(Exporter::new(&config.sources, Arc::clone(&clock)));
    let push = PushStore::new(clock);
    push.declare_all(&config.sources);
    let app = server::router(ServerState::new(None, Arc::clone(&exporter), push.clone()));
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    tokio::spawn(server::serve(listener, app, cancel));

    let jobs_spec = config.source("jobs").unwrap();
    let jobs = build_with(jobs_spec, Some(&push)).unwrap();
    let back_spec = config.source("back").unwrap();
    let back = build_with(back_spec, Some(&push)).unwrap();
    let client = reqwest::Client::new();
    // Pushes `value`, then reads `jobs` once as the poller does, into the exporter.
    let push_and_poll = |value: &'static str| {
        let client = client.clone();
        let exporter = Arc::clone(&exporter);
        let jobs = &jobs;
        let url = format!("http://{capstan}/api/v1/metrics/jobs");
        async move {
            let response = client
                .post(url)
                .header("content-type", "text/plain")
                .body(value)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let read = read_once(jobs.as_ref(), jobs_spec).await;
            exporter.observed(
                "jobs",
                Duration::from_millis(1),
                read.as_ref().copied().map_err(|e| &e.error),
            );
            read.unwrap()
        }
    };

    // Before any read capstan exports NaN for the source; once scraped, the prometheus
    // source sees that NaN and refuses it (malformed), where before the first scrape
    // there was no series at all (not_found).
    let first = settles(back.as_ref(), back_spec, |r| {
        r.as_ref()
            .is_err_and(|e| e.class() == ErrorClass::Malformed)
    })
    .await;
    let err = first.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed, "{err}");
    assert!(err.to_string().contains("gave NaN"), "{err}");

    assert_eq!(push_and_poll("37").await, 37.0);
    let read = settles(back.as_ref(), back_spec, |r| *r == Ok(37.0)).await;
    assert_eq!(read, Ok(37.0));

    assert_eq!(push_and_poll("12.5").await, 12.5);
    let read = settles(back.as_ref(), back_spec, |r| *r == Ok(12.5)).await;
    assert_eq!(read, Ok(12.5));

    // Prometheus saw capstan as a healthy target all along.
    let (status, body) = prometheus
        .get("/api/v1/query?query=up%7Bjob%3D%22capstan%22%7D")
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"1\"]"), "{body}");
}
