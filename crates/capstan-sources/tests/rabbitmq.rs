//! The `rabbitmq` source against a real RabbitMQ broker (capstan-testkit's
//! `servers::rabbitmq`): each test uses queues of its own, published to with lapin.

use std::time::Duration;

use capstan_sources::{
    ErrorClass, RabbitmqSpec, ReadError, SourceKind, SourceSpec, ValueKind, build, read_once,
};
use capstan_testkit::servers::{self, RabbitmqServer, SilentServer};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

fn spec(url: &str, queue: &str) -> RabbitmqSpec {
    RabbitmqSpec {
        url: url.into(),
        password: None,
        password_file: None,
        queue: queue.into(),
    }
}

fn source(rabbitmq: RabbitmqSpec, timeout: Duration) -> SourceSpec {
    SourceSpec {
        name: "queue".into(),
        interval: Duration::from_secs(5),
        timeout,
        max_age: Duration::from_secs(15),
        retention: Duration::from_secs(900),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Rabbitmq(rabbitmq),
    }
}

async fn read(rabbitmq: RabbitmqSpec) -> Result<f64, ReadError> {
    let spec = source(rabbitmq, Duration::from_secs(5));
    let built = build(&spec).expect("the source builds");
    read_once(built.as_ref(), &spec).await.map_err(|e| e.error)
}

/// A publishing channel (publisher confirms on: a confirmed message is in the queue)
/// and its connection, which must be kept alive while the channel is used.
async fn publisher(server: &RabbitmqServer) -> (Connection, Channel) {
    let connection = Connection::connect(&server.url(), ConnectionProperties::default())
        .await
        .expect("the test connects to the broker");
    let channel = connection
        .create_channel()
        .await
        .expect("the test opens a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("the broker confirms publishes");
    (connection, channel)
}

/// Declares `queue`, removed by the broker once unused for a minute.
async fn declare(channel: &Channel, queue: &str) {
    let mut args = FieldTable::default();
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(i64::from(RabbitmqServer::QUEUE_EXPIRES_MS)),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), args)
        .await
        .expect("the test declares its queue");
}

async fn publish(channel: &Channel, queue: &str, n: usize) {
    for i in 0..n {
        let body = format!("job-{i}");
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("the test publishes")
            .await
            .expect("the broker confirms the message");
    }
}

#[tokio::test]
async fn a_queue_of_37_published_messages_reads_37_and_drops_as_they_are_acked() {
    let server = servers::rabbitmq();
    let queue = server.queue("jobs");
    let (_connection, channel) = publisher(&server).await;
    declare(&channel, &queue).await;
    publish(&channel, &queue, 37).await;
    assert_eq!(read(spec(&server.url(), &queue)).await, Ok(37.0));

    // The same source keeps its connection across reads and follows the queue.
    let spec = source(spec(&server.url(), &queue), Duration::from_secs(5));
    let built = build(&spec).unwrap();
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(37.0));
    // Ten messages delivered and not yet acknowledged are no longer ready ...
    let mut taken = Vec::new();
    for _ in 0..10 {
        let message = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .expect("a message is ready");
        taken.push(message);
    }
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(27.0));
    // ... and acknowledging them leaves the count where it is.
    for message in taken {
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(27.0));
    publish(&channel, &queue, 3).await;
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(30.0));
}

#[tokio::test]
async fn a_missing_queue_is_not_found_and_the_next_read_opens_a_new_channel() {
    let server = servers::rabbitmq();
    let queue = server.queue("absent");
    let spec = source(spec(&server.url(), &queue), Duration::from_secs(5));
    let built = build(&spec).unwrap();
    let err = read_once(built.as_ref(), &spec).await.unwrap_err().error;
    assert_eq!(err.class(), ErrorClass::NotFound, "{err:?}");
    assert_eq!(
        err,
        ReadError::NotFound {
            target: format!("amqp://127.0.0.1:{}/%2f", server.port()),
            what: format!("queue {queue:?}"),
        }
    );
    // Again, on the channel the broker closed: still a classified error, not a panic.
    let err = read_once(built.as_ref(), &spec).await.unwrap_err().error;
    assert_eq!(err.class(), ErrorClass::NotFound, "{err:?}");
    // Once the queue exists, the same source reads it.
    let (_connection, channel) = publisher(&server).await;
    declare(&channel, &queue).await;
    publish(&channel, &queue, 2).await;
    assert_eq!(read_once(built.as_ref(), &spec).await, Ok(2.0));
}

#[tokio::test]
async fn a_missing_virtual_host_is_not_found() {
    let server = servers::rabbitmq();
    let url = format!(
        "amqp://guest:guest@127.0.0.1:{}/{}",
        server.port(),
        server.queue("no-such-vhost")
    );
    let err = read(spec(&url, "jobs")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err:?}");
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_without_the_password() {
    let server = servers::rabbitmq();
    let err = read(spec(&server.url_as("guest", "hunter2"), "jobs"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // The password setting overrides the URL's.
    let mut s = spec(&server.url_as("guest", "hunter2"), &server.queue("jobs"));
    s.password = Some("guest".into());
    let err = read(s).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "logged in: {err:?}");
}

#[tokio::test]
async fn a_password_file_is_read() {
    let server = servers::rabbitmq();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "guest\n").unwrap();
    let queue = server.queue("jobs");
    let (_connection, channel) = publisher(&server).await;
    declare(&channel, &queue).await;
    publish(&channel, &queue, 4).await;
    let mut s = spec(&server.url_as("guest", "wrong"), &queue);
    s.password_file = Some(file);
    assert_eq!(read(s).await, Ok(4.0));
}

#[tokio::test]
async fn a_broker_that_is_down_is_a_connect_error_not_a_zero() {
    let port = servers::closed_port();
    let err = read(spec(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        "jobs",
    ))
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Connect, "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to amqp://127.0.0.1:{port}/%2f")),
        "{err}"
    );
}

#[tokio::test]
async fn a_broker_that_never_answers_is_cut_at_the_timeout() {
    let silent = SilentServer::start();
    let spec = source(
        spec(
            &format!("amqp://guest:guest@127.0.0.1:{}/%2f", silent.port()),
            "jobs",
        ),
        Duration::from_millis(300),
    );
    let built = build(&spec).unwrap();
    let err = read_once(built.as_ref(), &spec).await.unwrap_err();
    assert_eq!(err.error, ReadError::Timeout(Duration::from_millis(300)));
    assert_eq!(err.error.class(), ErrorClass::Timeout);
}
