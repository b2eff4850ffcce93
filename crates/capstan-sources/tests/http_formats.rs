//! The `http` source's body formats besides JSON (YAML at a pointer, one sample of a
//! Prometheus text exposition) and its basic and bearer authentication, against a real
//! HTTP server on a loopback port.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_sources::{
    BodyFormat, ErrorClass, HttpAuth, HttpSpec, ReadError, SourceKind, SourceSpec, ValueKind,
    build, read_once,
};
use capstan_testkit::http::MetricServer;

fn spec(url: &str, pointer: &str, format: BodyFormat, auth: HttpAuth) -> SourceSpec {
    SourceSpec {
        name: "web".into(),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        max_age: Duration::from_secs(30),
        retention: Duration::from_secs(300),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Http(HttpSpec {
            url: url.into(),
            pointer: pointer.into(),
            headers: BTreeMap::new(),
            format,
            auth,
        }),
    }
}

fn prometheus(metric: &str, labels: &[(&str, &str)]) -> BodyFormat {
    BodyFormat::Prometheus {
        metric: metric.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
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
async fn yaml_bodies_are_read_at_the_pointer_as_they_change() {
    let server = MetricServer::start("/status.yaml").await.unwrap();
    let spec = spec(
        &server.url(),
        "/queues/1/depth",
        BodyFormat::Yaml,
        HttpAuth::default(),
    );
    let source = build(&spec).unwrap();
    server.set_body("queues:\n  - name: mail\n    depth: 3\n  - name: jobs\n    depth: 37\n");
    assert_eq!(read_once(source.as_ref(), &spec).await, Ok(37.0));
    server.set_body("queues:\n  - {name: mail, depth: 3}\n  - {name: jobs, depth: \"12.5\"}\n");
    assert_eq!(read_once(source.as_ref(), &spec).await, Ok(12.5));

    server.set_body("queues: [1, 2\n");
    let err = read(&spec).await.unwrap_err();
    assert!(matches!(err, ReadError::Body { .. }), "{err:?}");
    assert!(err.to_string().contains("not YAML"), "{err}");
    assert_eq!(err.class(), ErrorClass::Malformed);

    server.set_body("queues:\n  - depth: 1\n");
    let err = read(&spec).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON pointer \"/queues/1/depth\" matches nothing in the response"
    );
}

const EXPOSITION: &str = r#"# HELP jobs_waiting Jobs waiting per queue.
# TYPE jobs_waiting gauge
jobs_waiting{queue="mail",tier="a"} 3
jobs_waiting{queue="render",tier="a"} 37
jobs_waiting{queue="render",tier="b"} 4
# TYPE jobs_done_total counter
jobs_done_total 1027
broken_metric{queue="x" 5
"#;

#[tokio::test]
async fn prometheus_text_gives_the_one_matching_sample() {
    let server = MetricServer::start("/metrics").await.unwrap();
    server.set_body(EXPOSITION);
    let url = server.url();
    let no_auth = HttpAuth::default;
    let render_a = spec(
        &url,
        "",
        prometheus("jobs_waiting", &[("queue", "render"), ("tier", "a")]),
        no_auth(),
    );
    assert_eq!(read(&render_a).await, Ok(37.0));
    assert_eq!(
        read(&spec(
            &url,
            "",
            prometheus("jobs_done_total", &[]),
            no_auth()
        ))
        .await,
        Ok(1027.0)
    );
    server.set_body(EXPOSITION.replace("} 37", "} 41"));
    assert_eq!(read(&render_a).await, Ok(41.0));

    // Several samples match: malformed, naming the count.
    let err = read(&spec(
        &url,
        "",
        prometheus("jobs_waiting", &[("queue", "render")]),
        no_auth(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed);
    assert_eq!(
        err.to_string(),
        format!(
            "{url}: 2 samples match jobs_waiting{{queue=\"render\"}}; expected exactly one (add labels)"
        )
    );
    // None matches: not_found, naming the selector.
    let err = read(&spec(
        &url,
        "",
        prometheus("jobs_waiting", &[("queue", "video")]),
        no_auth(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert_eq!(
        err.to_string(),
        format!("{url}: a sample jobs_waiting{{queue=\"video\"}} does not exist")
    );
    // A broken line of the wanted metric: malformed, naming the line.
    let err = read(&spec(&url, "", prometheus("broken_metric", &[]), no_auth()))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed);
    assert!(err.to_string().contains("line 8"), "{err}");
    // NaN passes the parser and is then rejected at the boundary.
    server.set_body("jobs_waiting NaN\n");
    let err = read(&spec(&url, "", prometheus("jobs_waiting", &[]), no_auth()))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Rejected);
}

#[tokio::test]
async fn basic_and_bearer_auth_are_sent_and_never_shown() {
    let server = MetricServer::start("/m").await.unwrap();
    server.set_body("5");
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "pa55-secret\n").unwrap();
    let basic = HttpAuth {
        username: Some("ops".into()),
        password_file: Some(password_file),
        ..HttpAuth::default()
    };
    let spec_basic = spec(&server.url(), "", BodyFormat::Json, basic);
    assert_eq!(read(&spec_basic).await, Ok(5.0));
    // base64("ops:pa55-secret")
    assert_eq!(
        server
            .last_headers()
            .get("authorization")
            .map(String::as_str),
        Some("Basic b3BzOnBhNTUtc2VjcmV0")
    );

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tok-secret\n").unwrap();
    for auth in [
        HttpAuth {
            token: Some("tok-secret".into()),
            ..HttpAuth::default()
        },
        HttpAuth {
            token_file: Some(token_file.clone()),
            ..HttpAuth::default()
        },
    ] {
        let spec = spec(&server.url(), "", BodyFormat::Json, auth);
        assert_eq!(read(&spec).await, Ok(5.0));
        assert_eq!(
            server
                .last_headers()
                .get("authorization")
                .map(String::as_str),
            Some("Bearer tok-secret")
        );
        // A refusal is auth, and shows no secret.
        server.set_status(401);
        let err = read(&spec).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Auth);
        assert!(
            !format!("{err} {err:?} {spec:?}").contains("secret"),
            "{err:?}"
        );
        server.set_status(200);
    }

    // A missing secret file fails the build, naming the file.
    let missing = spec(
        &server.url(),
        "",
        BodyFormat::Json,
        HttpAuth {
            token_file: Some(dir.path().join("nope")),
            ..HttpAuth::default()
        },
    );
    let err = build(&missing).err().expect("a missing token file");
    assert_eq!(err.error.class(), ErrorClass::Config);
    assert!(err.to_string().contains("token_file"), "{err}");
}
