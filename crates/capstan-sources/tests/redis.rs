//! The `redis` source against a real Redis (capstan-testkit's `servers::redis`): each
//! test writes under its own key prefix.

use std::time::Duration;

use capstan_sources::{
    ErrorClass, MissingKey, ReadError, RedisSpec, SourceKind, SourceSpec, StreamMetric, ValueKind,
    build, read_once,
};
use capstan_testkit::servers::{self, RedisServer, SilentServer};

fn spec(url: &str, key: &str) -> RedisSpec {
    RedisSpec {
        url: url.into(),
        db: None,
        password: None,
        password_file: None,
        key: key.into(),
        consumer_group: None,
        stream: StreamMetric::Length,
        missing_key: MissingKey::Zero,
    }
}

fn source(redis: RedisSpec, timeout: Duration) -> SourceSpec {
    SourceSpec {
        name: "queue".into(),
        interval: Duration::from_secs(5),
        timeout,
        max_age: Duration::from_secs(15),
        retention: Duration::from_secs(900),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Redis(redis),
    }
}

async fn read(redis: RedisSpec) -> Result<f64, ReadError> {
    let spec = source(redis, Duration::from_secs(5));
    let built = build(&spec).expect("the source builds");
    read_once(built.as_ref(), &spec).await.map_err(|e| e.error)
}

fn cmd(server: &RedisServer, args: &[&str]) -> String {
    server
        .command(args)
        .expect("the test's redis command succeeds")
}

#[tokio::test]
async fn a_list_of_37_pushed_items_reads_37() {
    let server = servers::redis();
    let key = server.key("jobs");
    let items: Vec<String> = (0..37).map(|i| format!("job-{i}")).collect();
    let mut args = vec!["RPUSH", key.as_str()];
    args.extend(items.iter().map(String::as_str));
    assert_eq!(cmd(&server, &args), "37");
    assert_eq!(read(spec(&server.url(), &key)).await, Ok(37.0));

    // The same source keeps its connection across reads and follows the list.
    let spec = source(spec(&server.url(), &key), Duration::from_secs(5));
    let built = build(&spec).unwrap();
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(37.0));
    cmd(&server, &["LPOP", &key, "30"]);
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(7.0));
}

#[tokio::test]
async fn sorted_sets_sets_hashes_and_streams_are_counted_by_type() {
    let server = servers::redis();
    let zset = server.key("zset");
    cmd(&server, &["ZADD", &zset, "1", "a", "2", "b", "3", "c"]);
    let set = server.key("set");
    cmd(&server, &["SADD", &set, "a", "b", "c", "d"]);
    let hash = server.key("hash");
    cmd(
        &server,
        &[
            "HSET", &hash, "a", "1", "b", "2", "c", "3", "d", "4", "e", "5",
        ],
    );
    let stream = server.key("stream");
    for i in 0..6 {
        cmd(&server, &["XADD", &stream, "*", "n", &i.to_string()]);
    }
    assert_eq!(read(spec(&server.url(), &zset)).await, Ok(3.0));
    assert_eq!(read(spec(&server.url(), &set)).await, Ok(4.0));
    assert_eq!(read(spec(&server.url(), &hash)).await, Ok(5.0));
    assert_eq!(read(spec(&server.url(), &stream)).await, Ok(6.0));
}

#[tokio::test]
async fn a_consumer_groups_pending_entries_and_lag() {
    let server = servers::redis();
    let stream = server.key("events");
    for i in 0..10 {
        cmd(&server, &["XADD", &stream, "*", "n", &i.to_string()]);
    }
    cmd(&server, &["XGROUP", "CREATE", &stream, "workers", "0"]);
    // One consumer takes 4 entries and acknowledges 1 of them: 3 pending, 6 undelivered.
    let taken = cmd(
        &server,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w1",
            "COUNT",
            "4",
            "STREAMS",
            &stream,
            ">",
        ],
    );
    assert!(!taken.is_empty());
    let first_id = cmd(&server, &["XRANGE", &stream, "-", "+", "COUNT", "1"]);
    let first_id = first_id.lines().next().unwrap().to_owned();
    assert_eq!(cmd(&server, &["XACK", &stream, "workers", &first_id]), "1");

    let mut s = spec(&server.url(), &stream);
    s.consumer_group = Some("workers".into());
    s.stream = StreamMetric::PendingEntries;
    assert_eq!(read(s.clone()).await, Ok(3.0));
    s.stream = StreamMetric::Lag;
    assert_eq!(read(s.clone()).await, Ok(6.0));
    s.stream = StreamMetric::Length;
    assert_eq!(read(s.clone()).await, Ok(10.0));

    s.consumer_group = Some("nobody".into());
    for metric in [StreamMetric::PendingEntries, StreamMetric::Lag] {
        s.stream = metric;
        let err = read(s.clone()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::NotFound, "{metric:?}: {err}");
        assert!(
            err.to_string().contains("consumer group \"nobody\""),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_missing_key_is_zero_or_not_found_as_configured() {
    let server = servers::redis();
    let key = server.key("never-written");
    assert_eq!(read(spec(&server.url(), &key)).await, Ok(0.0));
    let mut s = spec(&server.url(), &key);
    s.missing_key = MissingKey::Error;
    let err = read(s).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert!(
        err.to_string()
            .contains(&format!("key {key:?} does not exist")),
        "{err}"
    );
}

#[tokio::test]
async fn a_key_of_another_type_is_malformed_naming_the_type() {
    let server = servers::redis();
    let key = server.key("flag");
    cmd(&server, &["SET", &key, "12"]);
    let err = read(spec(&server.url(), &key)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Malformed, "{err}");
    assert!(err.to_string().contains("is a string"), "{err}");
}

#[tokio::test]
async fn the_database_comes_from_the_url_or_db() {
    let server = servers::redis();
    let key = server.key("in-db-3");
    let url3 = server.url().replace("/0", "/3");
    let written = redis::Client::open(url3.as_str()).unwrap();
    let mut c = written.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("RPUSH")
        .arg(&key)
        .arg("a")
        .arg("b")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(read(spec(&url3, &key)).await, Ok(2.0));
    let mut s = spec(&server.url(), &key);
    assert_eq!(read(s.clone()).await, Ok(0.0), "db 0 has no such key");
    s.db = Some(3);
    assert_eq!(read(s).await, Ok(2.0));
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_without_the_password() {
    // A private instance: the shared server has no password to get wrong.
    let server = servers::private_redis(&["--requirepass", "right-pass"]);
    let key = "jobs";
    let url = server.redis_url();
    let mut s = spec(&url, key);
    s.password = Some("right-pass".into());
    assert_eq!(read(s.clone()).await, Ok(0.0));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis-password");
    std::fs::write(&file, "right-pass\n").unwrap();
    let mut from_file = spec(&url, key);
    from_file.password_file = Some(file);
    assert_eq!(read(from_file).await, Ok(0.0));

    s.password = Some("wr0ng-secret".into());
    let err = read(s).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err:?}");
    assert!(!err.to_string().contains("wr0ng-secret"), "{err}");

    let with_url_password = url.replace("redis://", "redis://:wr0ng-secret@");
    let err = read(spec(&with_url_password, key)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err:?}");
    assert!(!err.to_string().contains("wr0ng-secret"), "{err}");

    let err = read(spec(&url, key)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "no password: {err:?}");
}

#[tokio::test]
async fn a_server_that_is_down_is_a_connect_error_not_a_zero() {
    let port = servers::closed_port();
    let err = read(spec(&format!("redis://127.0.0.1:{port}/0"), "jobs"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Connect, "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to redis://127.0.0.1:{port}/0")),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_stops_answering_fails_then_the_source_recovers() {
    let server = servers::private_redis(&[]);
    let url = server.redis_url();
    let spec = source(spec(&url, "jobs"), Duration::from_secs(2));
    let built = build(&spec).unwrap();
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(0.0));
    let port = server.port();
    drop(server);
    let err = read_once(built.as_ref(), &spec).await.unwrap_err();
    assert!(
        matches!(err.error.class(), ErrorClass::Connect | ErrorClass::Timeout),
        "{err}"
    );
    // Anything on the same port again: the kept connection reconnects by itself.
    let again = servers::private_redis_on(port, &[]);
    servers::resp_command(again.port(), &["RPUSH", "jobs", "x"]).unwrap();
    let mut value = read_once(built.as_ref(), &spec).await;
    for _ in 0..20 {
        if value.is_ok() {
            break;
        }
        value = read_once(built.as_ref(), &spec).await;
    }
    assert_eq!(value, Ok(1.0));
}

#[tokio::test]
async fn a_server_that_never_answers_is_cut_at_the_timeout() {
    let silent = SilentServer::start();
    let spec = source(
        spec(&format!("redis://127.0.0.1:{}/0", silent.port()), "jobs"),
        Duration::from_millis(300),
    );
    let built = build(&spec).unwrap();
    let err = read_once(built.as_ref(), &spec).await.unwrap_err();
    assert_eq!(err.error, ReadError::Timeout(Duration::from_millis(300)));
    assert_eq!(err.error.class(), ErrorClass::Timeout);
}
