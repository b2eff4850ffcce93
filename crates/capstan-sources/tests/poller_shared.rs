//! Sources identical except their name share one read per interval, against a real
//! HTTP server that counts its requests.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use capstan_core::Clock;
use capstan_sources::{HttpSpec, SourceKind, SourceSpec, spawn_all};
use capstan_testkit::http::MetricServer;
use support::{shared, spec, values};
use tokio_util::sync::CancellationToken;

/// An `http` source named `name` reading `url`, every second.
fn http(name: &str, url: &str, timeout: Duration) -> SourceSpec {
    let mut s = spec(name, 1);
    s.timeout = timeout;
    s.retries = 2;
    s.kind = SourceKind::Http(HttpSpec {
        url: url.to_owned(),
        pointer: "/jobs".into(),
        headers: BTreeMap::new(),
        ..HttpSpec::default()
    });
    s
}

/// Waits (at most 10 s) until every window has `n` samples.
async fn until_samples(obs: &capstan_core::metrics::SharedObservations, names: &[&str], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while names.iter().any(|name| values(obs, name).len() < n) {
        assert!(Instant::now() < deadline, "no {n} samples in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn identical_sources_are_read_once_per_interval_and_all_windows_get_the_value() {
    let server = MetricServer::start("/stats").await.expect("server");
    server.set_json(&serde_json::json!({"jobs": 12}));
    let obs = shared();
    let clock: Arc<dyn Clock> = Arc::new(capstan_core::clock::SystemClock);
    let cancel = CancellationToken::new();
    let url = server.url();
    // a and b differ only by name (and window settings): one read for both. c has
    // another timeout: a read of its own.
    let mut b = http("b", &url, Duration::from_secs(2));
    b.retention = Duration::from_secs(60);
    b.max_age = Duration::from_secs(7);
    let specs = [
        http("a", &url, Duration::from_secs(2)),
        b,
        http("c", &url, Duration::from_secs(3)),
    ];
    let mut tasks = spawn_all(&specs, obs.clone(), clock, cancel.clone()).expect("spawn");
    assert_eq!(tasks.len(), 2);

    until_samples(&obs, &["a", "b", "c"], 1).await;
    assert_eq!(
        server.requests(),
        2,
        "a and b share one request, c has its own"
    );
    server.set_json(&serde_json::json!({"jobs": 30}));
    until_samples(&obs, &["a", "b", "c"], 2).await;
    assert_eq!(server.requests(), 4);
    cancel.cancel();
    while let Some(done) = tasks.join_next().await {
        done.expect("poller");
    }

    let a = values(&obs, "a");
    let b = values(&obs, "b");
    assert_eq!(
        a.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        vec![12.0, 30.0]
    );
    // The same sample (value and time) in both windows.
    assert_eq!(a, b);
    assert_eq!(
        values(&obs, "c")
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        vec![12.0, 30.0]
    );
}
