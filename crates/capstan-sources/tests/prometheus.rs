//! The `prometheus` source against a real Prometheus (capstan-testkit's private
//! server, scraping a test HTTP server every second): exact values that follow the
//! scraped target, and every error path classified.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_sources::{
    ErrorClass, HttpAuth, OnEmpty, PrometheusSpec, ReadError, Source, SourceKind, SourceSpec,
    ValueKind, build, read_once,
};
use capstan_testkit::http::MetricServer;
use capstan_testkit::prometheus::{Prometheus, scrape_config};
use capstan_testkit::servers::{self, SilentServer};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a change may take to show: a 1 s scrape plus the query.
const SETTLE: Duration = Duration::from_secs(20);

const TARGET: &str = "# TYPE jobs_waiting gauge\n\
                      jobs_waiting{queue=\"render\"} 37\n\
                      jobs_waiting{queue=\"mail\"} 3\n";

fn spec(url: &str, query: &str) -> PrometheusSpec {
    PrometheusSpec {
        url: url.into(),
        query: query.into(),
        on_empty: OnEmpty::Error,
        headers: BTreeMap::new(),
        auth: HttpAuth::default(),
    }
}

fn source(prometheus: PrometheusSpec, timeout: Duration) -> SourceSpec {
    SourceSpec {
        name: "prom".into(),
        interval: Duration::from_secs(1),
        timeout,
        max_age: Duration::from_secs(60),
        retention: Duration::from_secs(600),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Prometheus(prometheus),
    }
}

async fn read(spec: PrometheusSpec) -> Result<f64, ReadError> {
    let s = source(spec, TIMEOUT);
    let src = build(&s).unwrap();
    read_once(src.as_ref(), &s).await.map_err(|e| {
        assert_eq!(e.name, "prom");
        e.error
    })
}

/// Reads until the value is `want` (a bounded wait for the next scrape); the last
/// result otherwise.
async fn settles(source: &dyn Source, spec: &SourceSpec, want: f64) -> Result<f64, ReadError> {
    let started = tokio::time::Instant::now();
    loop {
        let read = read_once(source, spec).await.map_err(|e| e.error);
        if read == Ok(want) || started.elapsed() > SETTLE {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A test target serving [`TARGET`], and a Prometheus scraping it every second.
async fn scraped() -> (MetricServer, Prometheus) {
    let target = MetricServer::start("/metrics").await.unwrap();
    target.set_body(TARGET);
    let addr = target.addr().to_string();
    let config = scrape_config("capstan-test", "/metrics", &[&addr], &[]);
    let prometheus = tokio::task::spawn_blocking(move || Prometheus::start(&config, &[]))
        .await
        .unwrap();
    (target, prometheus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sample_is_read_and_follows_the_scraped_target() {
    let (target, prometheus) = scraped().await;
    let render = source(
        spec(&prometheus.url(), "jobs_waiting{queue=\"render\"}"),
        TIMEOUT,
    );
    let src = build(&render).unwrap();
    assert_eq!(settles(src.as_ref(), &render, 37.0).await, Ok(37.0));
    // An aggregation, and a scalar.
    assert_eq!(
        read(spec(&prometheus.url(), "sum(jobs_waiting)")).await,
        Ok(40.0)
    );
    assert_eq!(
        read(spec(&prometheus.url(), "scalar(sum(jobs_waiting))")).await,
        Ok(40.0)
    );
    // The target changes; the next scrape shows it through PromQL.
    target.set_body(TARGET.replace("} 37", "} 12"));
    assert_eq!(settles(src.as_ref(), &render, 12.0).await, Ok(12.0));
    assert_eq!(
        read(spec(&prometheus.url(), "sum(jobs_waiting)")).await,
        Ok(15.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_several_nan_and_bad_queries_are_classified_errors() {
    let (_target, prometheus) = scraped().await;
    let url = prometheus.url();
    let render = source(spec(&url, "jobs_waiting{queue=\"render\"}"), TIMEOUT);
    let src = build(&render).unwrap();
    assert_eq!(settles(src.as_ref(), &render, 37.0).await, Ok(37.0));

    // Empty: an error by default, 0 when asked.
    let err = read(spec(&url, "jobs_waiting{queue=\"video\"}"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert_eq!(
        err.to_string(),
        format!("{url}: a series for query \"jobs_waiting{{queue=\\\"video\\\"}}\" does not exist")
    );
    let zero = PrometheusSpec {
        on_empty: OnEmpty::Zero,
        ..spec(&url, "jobs_waiting{queue=\"video\"}")
    };
    assert_eq!(read(zero).await, Ok(0.0));

    // Several: malformed, naming the count and the series.
    let err = read(spec(&url, "jobs_waiting")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed);
    let text = err.to_string();
    assert!(
        text.contains("gave 2 series, expected exactly one"),
        "{text}"
    );
    assert!(text.contains("queue=\"mail\""), "{text}");

    // NaN and infinities: malformed.
    for (query, shown) in [
        ("vector(0) / 0", "NaN"),
        ("sum(jobs_waiting) / 0", "+Inf"),
        ("scalar(vector(-1) / 0)", "-Inf"),
    ] {
        let err = read(spec(&url, query)).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Malformed, "{query}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("gave {shown}, expected a finite number")),
            "{query}: {err}"
        );
    }

    // A range vector and a string: malformed.
    let err = read(spec(&url, "jobs_waiting{queue=\"render\"}[1m]"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed);
    assert!(err.to_string().contains("gave a matrix"), "{err}");
    let err = read(spec(&url, "\"text\"")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed);
    assert!(err.to_string().contains("gave a string"), "{err}");

    // A query that does not parse: Prometheus's bad_data, a config error.
    let err = read(spec(&url, "sum(jobs_waiting")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Config);
    let text = err.to_string();
    assert!(text.contains(&format!("{url} refused query")), "{text}");
    assert!(text.contains("(bad_data)"), "{text}");

    // A negative count passes the source and is rejected at the boundary.
    let err = read(spec(&url, "-sum(jobs_waiting)")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Rejected);
}

#[tokio::test]
async fn server_down_and_silent_server() {
    let down = format!("http://127.0.0.1:{}", servers::closed_port());
    let err = read(spec(&down, "up")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Connect);
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {down}")),
        "{err}"
    );

    let silent = SilentServer::start();
    let url = format!("http://u:hidden-pw@127.0.0.1:{}", silent.port());
    let s = source(spec(&url, "up"), Duration::from_millis(300));
    let src = build(&s).unwrap();
    let started = tokio::time::Instant::now();
    let err = read_once(src.as_ref(), &s).await.unwrap_err().error;
    assert_eq!(err, ReadError::Timeout(Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The bcrypt hash (cost 4) of "s3cret-pw", for Prometheus's web configuration.
const HASH: &str = "$2b$04$F4yo90uj8OaeVpYq0lggSu0R8EGmU0RiM..ZVnrdOrxOVdZq8a4Ma";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_against_prometheus() {
    let config = scrape_config("none", "/metrics", &[], &[]);
    let web = format!("basic_auth_users:\n  ops: {HASH}\n");
    let prometheus = tokio::task::spawn_blocking(move || {
        Prometheus::start_with(
            &config,
            &[("web.yml", &web)],
            &["--web.config.file={dir}/web.yml"],
            Some(("ops", "s3cret-pw")),
        )
    })
    .await
    .unwrap();
    let url = prometheus.url();
    let with = |username: &str, password: &str| PrometheusSpec {
        auth: HttpAuth {
            username: Some(username.into()),
            password: Some(password.into()),
            ..HttpAuth::default()
        },
        ..spec(&url, "vector(7)")
    };
    assert_eq!(read(with("ops", "s3cret-pw")).await, Ok(7.0));

    let err = read(with("ops", "wrong-pw")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-pw"), "{err:?}");
    let err = read(spec(&url, "vector(7)")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let from_file = PrometheusSpec {
        auth: HttpAuth {
            username: Some("ops".into()),
            password_file: Some(file),
            ..HttpAuth::default()
        },
        ..spec(&url, "vector(7)")
    };
    assert_eq!(read(from_file).await, Ok(7.0));
}

#[tokio::test]
async fn bearer_token_and_headers_are_sent_and_api_errors_classed() {
    // A stand-in answering as Prometheus's API does, to see what is sent.
    let api = MetricServer::start("/prom/api/v1/query").await.unwrap();
    let base = format!("http://{}/prom", api.addr());
    api.set_json(&json!({"status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "5"]}]}}));
    let bearer = PrometheusSpec {
        headers: BTreeMap::from([("X-Scope-OrgID".to_owned(), "team-a".to_owned())]),
        auth: HttpAuth {
            token: Some("tok-secret".into()),
            ..HttpAuth::default()
        },
        ..spec(&base, "sum(rate(x[1m]))")
    };
    assert_eq!(read(bearer.clone()).await, Ok(5.0));
    let headers = api.last_headers();
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer tok-secret")
    );
    assert_eq!(
        headers.get("x-scope-orgid").map(String::as_str),
        Some("team-a")
    );
    assert_eq!(
        api.last_uri().as_deref(),
        Some("/prom/api/v1/query?query=sum%28rate%28x%5B1m%5D%29%29")
    );

    // Prometheus's own errors, by errorType.
    for (status, kind, class) in [
        (422, "execution", ErrorClass::Server),
        (503, "timeout", ErrorClass::Server),
        (400, "bad_data", ErrorClass::Config),
    ] {
        api.set_status(status);
        api.set_json(&json!({"status": "error", "errorType": kind, "error": "it failed"}));
        let err = read(bearer.clone()).await.unwrap_err();
        assert_eq!(err.class(), class, "{kind}: {err}");
        assert!(err.to_string().contains("it failed"), "{err}");
        assert!(!format!("{err:?}").contains("tok-secret"), "{err:?}");
    }
    // Not the API at all: classed by the status.
    for (status, class) in [
        (401, ErrorClass::Auth),
        (404, ErrorClass::NotFound),
        (502, ErrorClass::Server),
    ] {
        api.set_status(status);
        api.set_body("<html>proxy</html>");
        let err = read(bearer.clone()).await.unwrap_err();
        assert_eq!(err.class(), class, "{status}: {err}");
        assert_eq!(
            err.to_string(),
            format!("GET {base}/api/v1/query answered HTTP {status}")
        );
    }
    api.set_status(200);
    api.set_body("<html>ok</html>");
    let err = read(bearer).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed);
    assert!(err.to_string().contains("not JSON"), "{err}");
}
