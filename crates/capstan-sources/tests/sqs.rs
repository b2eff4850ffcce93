//! The `sqs` source against moto's SQS (capstan-testkit's `moto`): each test works in
//! queues named for its own handle.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use capstan_aws_sdk::{SdkSqs, SharedConfig, static_config};
use capstan_sources::aws::AwsSpec;
use capstan_sources::sqs::{QueueRef, SqsSource, SqsSpec};
use capstan_sources::{ErrorClass, ReadError, Source};
use capstan_testkit::moto::{self, ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use capstan_testkit::servers::{self, SilentServer};

const TIMEOUT: Duration = Duration::from_secs(5);

fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    static_config(endpoint, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
}

fn spec(endpoint: &str, queue: QueueRef) -> SqsSpec {
    SqsSpec {
        queue,
        include_in_flight: true,
        include_delayed: false,
        aws: AwsSpec {
            region: Some(REGION.into()),
            endpoint_url: Some(endpoint.into()),
            profile: None,
        },
    }
}

fn source(spec: &SqsSpec, timeout: Duration) -> SqsSource<SdkSqs> {
    let endpoint = spec
        .aws
        .endpoint_url
        .clone()
        .expect("tests set an endpoint");
    let client = SdkSqs::new(SharedConfig::ready(sdk_config(&endpoint)));
    SqsSource::new(client, spec, timeout)
}

/// A queue with `count` messages; its URL.
async fn queue_with(moto: &Moto, sqs: &aws_sdk_sqs::Client, name: &str, count: usize) -> String {
    let url = sqs
        .create_queue()
        .queue_name(moto.name(name))
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    for n in 0..count {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("job {n}"))
            .send()
            .await
            .expect("send");
    }
    url
}

/// Receives exactly `count` messages (hidden for 10 minutes, not deleted).
async fn take(sqs: &aws_sdk_sqs::Client, url: &str, count: usize) {
    let mut taken = 0;
    while taken < count {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from((count - taken).min(10)).expect("small"))
            .visibility_timeout(600)
            .send()
            .await
            .expect("receive");
        let got = out.messages().len();
        assert!(got > 0, "the queue ran dry after {taken} messages");
        taken += got;
    }
}

async fn read(source: &dyn Source) -> Result<f64, ReadError> {
    source.read().await
}

#[tokio::test]
async fn counts_visible_in_flight_and_delayed_messages() {
    let moto = moto::moto();
    let endpoint = moto.endpoint_url();
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&endpoint));
    let url = queue_with(&moto, &sqs, "jobs", 37).await;

    // By name (resolved with GetQueueUrl) and by URL.
    let by_name = source(&spec(&endpoint, QueueRef::Name(moto.name("jobs"))), TIMEOUT);
    assert_eq!(read(&by_name).await, Ok(37.0));
    let by_url = source(&spec(&endpoint, QueueRef::Url(url.clone())), TIMEOUT);
    assert_eq!(read(&by_url).await, Ok(37.0));

    // 10 received and not deleted: in flight.
    take(&sqs, &url, 10).await;
    assert_eq!(
        read(&by_name).await,
        Ok(37.0),
        "in flight counted by default"
    );
    let mut visible_only = spec(&endpoint, QueueRef::Url(url.clone()));
    visible_only.include_in_flight = false;
    assert_eq!(read(&source(&visible_only, TIMEOUT)).await, Ok(27.0));

    // 5 delayed: counted only with include_delayed.
    for n in 0..5 {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("later {n}"))
            .delay_seconds(900)
            .send()
            .await
            .expect("send delayed");
    }
    let counts = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("attributes");
    assert_eq!(
        counts
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed))
            .map(String::as_str),
        Some("5")
    );
    assert_eq!(
        read(&by_url).await,
        Ok(37.0),
        "delayed not counted by default"
    );
    let mut with_delayed = spec(&endpoint, QueueRef::Url(url.clone()));
    with_delayed.include_delayed = true;
    assert_eq!(read(&source(&with_delayed, TIMEOUT)).await, Ok(42.0));
    with_delayed.include_in_flight = false;
    assert_eq!(read(&source(&with_delayed, TIMEOUT)).await, Ok(32.0));
}

#[tokio::test]
async fn a_missing_queue_is_not_found() {
    let moto = moto::moto();
    let endpoint = moto.endpoint_url();
    let by_name = source(
        &spec(&endpoint, QueueRef::Name(moto.name("absent"))),
        TIMEOUT,
    );
    let error = read(&by_name).await.expect_err("no such queue");
    assert_eq!(error.class(), ErrorClass::NotFound, "{error}");
    assert!(error.to_string().contains(&moto.name("absent")), "{error}");
    assert!(error.to_string().contains(&endpoint), "{error}");

    let url = format!("{endpoint}/123456789012/{}", moto.name("absent"));
    let by_url = source(&spec(&endpoint, QueueRef::Url(url)), TIMEOUT);
    let error = read(&by_url).await.expect_err("no such queue");
    assert_eq!(error.class(), ErrorClass::NotFound, "{error}");
}

#[tokio::test]
async fn a_name_resolved_later_is_found_once_the_queue_exists() {
    let moto = moto::moto();
    let endpoint = moto.endpoint_url();
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&endpoint));
    let by_name = source(&spec(&endpoint, QueueRef::Name(moto.name("late"))), TIMEOUT);
    assert_eq!(
        read(&by_name).await.map_err(|e| e.class()),
        Err(ErrorClass::NotFound)
    );
    queue_with(&moto, &sqs, "late", 3).await;
    assert_eq!(read(&by_name).await, Ok(3.0));
}

#[tokio::test]
async fn moto_down_is_a_connect_error() {
    let endpoint = format!("http://127.0.0.1:{}", servers::closed_port());
    let s = source(&spec(&endpoint, QueueRef::Name("jobs".into())), TIMEOUT);
    let error = read(&s).await.expect_err("nothing listens");
    assert_eq!(error.class(), ErrorClass::Connect, "{error}");
    assert!(error.to_string().contains(&endpoint), "{error}");
}

#[tokio::test]
async fn a_silent_server_is_a_timeout() {
    let silent = SilentServer::start();
    let endpoint = format!("http://127.0.0.1:{}", silent.port());
    let s = source(
        &spec(&endpoint, QueueRef::Name("jobs".into())),
        Duration::from_millis(500),
    );
    let started = tokio::time::Instant::now();
    let error = read(&s).await.expect_err("no answer");
    assert_eq!(error, ReadError::Timeout(Duration::from_millis(500)));
    assert!(started.elapsed() < Duration::from_secs(3));
}
