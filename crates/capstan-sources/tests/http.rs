//! The `http` source against a real HTTP server on a loopback port.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_sources::{
    ErrorClass, HttpSpec, ReadError, SourceKind, SourceSpec, ValueKind, build, read_once,
};
use capstan_testkit::http::MetricServer;
use serde_json::json;

fn spec(url: &str, pointer: &str, timeout: Duration) -> SourceSpec {
    SourceSpec {
        name: "web".into(),
        interval: Duration::from_secs(5),
        timeout,
        max_age: Duration::from_secs(30),
        retention: Duration::from_secs(300),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Http(HttpSpec {
            url: url.into(),
            pointer: pointer.into(),
            headers: BTreeMap::new(),
            ..HttpSpec::default()
        }),
    }
}

async fn read(spec: &SourceSpec) -> Result<f64, ReadError> {
    let source = build(spec).expect("valid settings");
    read_once(source.as_ref(), spec).await.map_err(|e| {
        assert_eq!(e.name, "web");
        e.error
    })
}

#[tokio::test]
async fn picks_the_number_at_the_pointer_as_the_server_changes() {
    let server = MetricServer::start("/stats").await.unwrap();
    let spec = spec(&server.url(), "/queues/jobs/depth", Duration::from_secs(5));
    let source = build(&spec).unwrap();

    server.set_json(&json!({"queues": {"jobs": {"depth": 12}}}));
    assert_eq!(read_once(source.as_ref(), &spec).await, Ok(12.0));
    server.set_json(&json!({"queues": {"jobs": {"depth": 40.5}}}));
    assert_eq!(read_once(source.as_ref(), &spec).await, Ok(40.5));
    assert_eq!(server.requests(), 2);
    assert_eq!(server.last_uri().as_deref(), Some("/stats"));
}

#[tokio::test]
async fn whole_body_and_prometheus_style_strings() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_body("7");
    assert_eq!(
        read(&spec(&server.url(), "", Duration::from_secs(5))).await,
        Ok(7.0)
    );

    server.set_json(&json!({
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1767225600.0, "33.5"]}]}
    }));
    let url = format!("{}?query=sum(jobs)", server.url());
    let prom = spec(&url, "/data/result/0/value/1", Duration::from_secs(5));
    assert_eq!(read(&prom).await, Ok(33.5));
    assert_eq!(server.last_uri().as_deref(), Some("/m?query=sum(jobs)"));
}

#[tokio::test]
async fn missing_pointer_and_non_numbers_are_errors_naming_the_pointer() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_json(&json!({"a": {"b": [1, 2]}, "s": "lots", "n": null}));
    let url = server.url();

    let err = read(&spec(&url, "/a/c", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON pointer \"/a/c\" matches nothing in the response"
    );
    let err = read(&spec(&url, "/a/b", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the value at JSON pointer \"/a/b\" is an array, expected a number or a string holding one"
    );
    let err = read(&spec(&url, "/s", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the value at JSON pointer \"/s\" is the string \"lots\", not a number"
    );
    let err = read(&spec(&url, "/n", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReadError::Pointer { ref pointer, .. } if pointer == "/n"),
        "{err}"
    );
}

#[tokio::test]
async fn body_that_is_not_json_is_an_error() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_body("<html>oops</html>");
    let err = read(&spec(&server.url(), "", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(err, ReadError::Body { .. }), "{err}");
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[tokio::test]
async fn string_values_pass_the_boundary_check_too() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_json(&json!({"v": "NaN", "w": "+Inf", "x": -2}));
    let url = server.url();
    for p in ["/v", "/w"] {
        let err = read(&spec(&url, p, Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Rejected { .. }), "{p}: {err}");
    }
    let err = read(&spec(&url, "/x", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "value -2 rejected: a count cannot be negative"
    );
}

#[tokio::test]
async fn error_status_is_an_error_without_credentials() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_status(500);
    server.set_json(&json!(3));
    let url = server.url().replace("http://", "http://ops:pa55word@");
    let err = read(&spec(&url, "", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ReadError::Status {
            url: server.url(),
            status: 500
        }
    );
    assert!(!err.to_string().contains("pa55word"), "{err}");
    // The credentials were still used, as basic auth.
    assert!(
        server
            .last_headers()
            .get("authorization")
            .is_some_and(|v| v.starts_with("Basic "))
    );

    server.set_status(404);
    let err = read(&spec(&server.url(), "", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("answered HTTP 404"), "{err}");
    assert_eq!(err.class(), ErrorClass::NotFound);

    for (status, class) in [
        (401, ErrorClass::Auth),
        (403, ErrorClass::Auth),
        (503, ErrorClass::Server),
    ] {
        server.set_status(status);
        let err = read(&spec(&server.url(), "", Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert_eq!(err.class(), class, "{status}: {err}");
    }
}

#[tokio::test]
async fn configured_headers_and_user_agent_are_sent_but_never_shown() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_json(&json!(5));
    let mut spec = spec(&server.url(), "", Duration::from_secs(5));
    if let SourceKind::Http(h) = &mut spec.kind {
        h.headers
            .insert("Authorization".into(), "Bearer tok-s3cret".into());
        h.headers.insert("X-Tenant".into(), "blue".into());
    }
    assert_eq!(read(&spec).await, Ok(5.0));
    let headers = server.last_headers();
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer tok-s3cret")
    );
    assert_eq!(headers.get("x-tenant").map(String::as_str), Some("blue"));
    let agent = headers.get("user-agent").cloned().unwrap_or_default();
    assert!(agent.starts_with("capstan/"), "{agent}");

    server.set_status(503);
    let err = read(&spec).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
}

#[tokio::test]
async fn slow_server_hits_the_timeout() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_json(&json!(1));
    server.set_delay(Duration::from_secs(30));
    let spec = spec(&server.url(), "", Duration::from_millis(200));
    let started = tokio::time::Instant::now();
    let err = read(&spec).await.unwrap_err();
    assert_eq!(err, ReadError::Timeout(Duration::from_millis(200)));
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn refused_connection_is_a_request_error() {
    // A port that was free a moment ago and has nobody listening now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://u:hidden@{addr}/m");
    let err = read(&spec(&url, "", Duration::from_secs(2)))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("hidden"), "{text}");
    let ReadError::Request { url, reason } = &err else {
        panic!("expected a request error, got {err:?}");
    };
    assert_eq!(url, &format!("http://{addr}/m"));
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert_eq!(err.class(), ErrorClass::Connect);
}
