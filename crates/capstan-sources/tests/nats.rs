//! The `nats` source against a real NATS server with JetStream (capstan-testkit's
//! `servers::nats`): each test works in its own stream, deleted when the test ends.
#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use capstan_sources::{
    ErrorClass, NatsSpec, ReadError, SourceKind, SourceSpec, ValueKind, build, read_once,
};
use capstan_testkit::servers::{self, NatsServer, SilentServer};

const TIMEOUT: Duration = Duration::from_secs(5);

fn spec(url: &str, stream: &str, consumer: &str) -> NatsSpec {
    NatsSpec {
        url: url.into(),
        stream: stream.into(),
        consumer: consumer.into(),
        token: None,
        token_file: None,
        user: None,
        password: None,
        password_file: None,
        credentials_file: None,
    }
}

fn source(nats: NatsSpec, timeout: Duration) -> SourceSpec {
    SourceSpec {
        name: "backlog".into(),
        interval: Duration::from_secs(1),
        timeout,
        max_age: Duration::from_secs(60),
        retention: Duration::from_secs(600),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Nats(nats),
    }
}

async fn read(spec: NatsSpec) -> Result<f64, ReadError> {
    let s = source(spec, TIMEOUT);
    let src = build(&s).unwrap();
    read_once(src.as_ref(), &s).await.map_err(|e| e.error)
}

/// Creates the handle's stream (subjects `STREAM.>`) and a durable pull consumer.
async fn stream_with_consumer(
    nats: &NatsServer,
    name: &str,
) -> (
    jetstream::Context,
    consumer::Consumer<consumer::pull::Config>,
) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let s = js
        .create_stream(stream::Config {
            name: nats.stream().to_owned(),
            subjects: vec![format!("{}.>", nats.stream())],
            ..Default::default()
        })
        .await
        .unwrap();
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    (js, c)
}

/// Fetches `n` messages, acknowledging each (and waiting for the server) if `ack`.
async fn take(c: &consumer::Consumer<consumer::pull::Config>, n: usize, ack: bool) {
    let batch = c
        .fetch()
        .max_messages(n)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut batch = Box::pin(batch);
    let mut got = 0;
    while let Some(m) =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::as_mut(&mut batch), cx))
            .await
    {
        let m = m.unwrap();
        if ack {
            m.double_ack().await.unwrap();
        }
        got += 1;
    }
    assert_eq!(got, n);
}

#[tokio::test]
async fn the_backlog_is_pending_plus_unacknowledged() {
    let nats = servers::nats();
    let (js, c) = stream_with_consumer(&nats, "workers").await;
    let spec = || spec(&nats.url(), nats.stream(), "workers");
    assert_eq!(read(spec()).await, Ok(0.0));
    for i in 0..37 {
        js.publish(nats.subject("jobs"), format!("job {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(read(spec()).await, Ok(37.0));
    take(&c, 10, true).await;
    assert_eq!(read(spec()).await, Ok(27.0));
    // Delivered and not acknowledged: still work to do.
    take(&c, 5, false).await;
    assert_eq!(read(spec()).await, Ok(27.0));
}

#[tokio::test]
async fn one_client_serves_every_read() {
    let nats = servers::nats();
    let (js, _c) = stream_with_consumer(&nats, "workers").await;
    let s = source(spec(&nats.url(), nats.stream(), "workers"), TIMEOUT);
    let src = build(&s).unwrap();
    for expected in 0..3 {
        assert_eq!(read_once(src.as_ref(), &s).await, Ok(f64::from(expected)));
        js.publish(nats.subject("jobs"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_missing_stream_or_consumer_is_not_found() {
    let nats = servers::nats();
    let err = read(spec(&nats.url(), nats.stream(), "workers"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("stream"), "{err}");
    let _ = stream_with_consumer(&nats, "workers").await;
    let err = read(spec(&nats.url(), nats.stream(), "nobody"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_or_token_is_an_auth_error() {
    let server = servers::private_nats(&["--user", "app", "--pass", "s3cret"]);
    let url = format!("nats://127.0.0.1:{}", server.port());
    let mut s = spec(&url, "jobs", "workers");
    s.user = Some("app".into());
    s.password = Some("wrong-hunter2".into());
    let err = read(s.clone()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // The right password gets through to JetStream.
    s.password = Some("s3cret".into());
    let err = read(s).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");

    let server = servers::private_nats(&["--auth", "t0ken"]);
    let url = format!("nats://127.0.0.1:{}", server.port());
    let mut s = spec(&url, "jobs", "workers");
    s.token = Some("wrong-hunter2".into());
    let err = read(s.clone()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let mut s = spec(&url, "jobs", "workers");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "t0ken\n").unwrap();
    s.token_file = Some(file);
    let err = read(s).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
}

#[tokio::test]
async fn a_server_that_is_down_is_a_connect_error() {
    let url = format!("nats://127.0.0.1:{}", servers::closed_port());
    let err = read(spec(&url, "jobs", "workers")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Connect, "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn a_silent_server_is_cut_at_the_timeout() {
    let silent = SilentServer::start();
    let url = format!("nats://127.0.0.1:{}", silent.port());
    let s = source(spec(&url, "jobs", "workers"), Duration::from_millis(300));
    let src = build(&s).unwrap();
    let err = read_once(src.as_ref(), &s).await.unwrap_err().error;
    assert_eq!(err, ReadError::Timeout(Duration::from_millis(300)));
}
