//! The `kafka` source against a real Kafka-protocol broker (capstan-testkit's
//! `kafka::kafka()`, a private tansu broker): each test makes its own topics and groups.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use capstan_sources::kafka::KafkaSource;
use capstan_sources::{ErrorClass, KafkaSpec, OffsetReset, ReadError};
use capstan_testkit::kafka::{self, KafkaBroker};
use capstan_testkit::servers::{self, SilentServer};

const TIMEOUT: Duration = Duration::from_secs(10);

fn spec(brokers: &str, group: &str, topic: Option<&str>) -> KafkaSpec {
    KafkaSpec {
        brokers: vec![brokers.into()],
        group: group.into(),
        topic: topic.map(str::to_owned),
        offset_reset: OffsetReset::Latest,
        lag_threshold: None,
        cap_at_partitions: true,
        exclude_persistent_lag: false,
        sasl_mechanism: None,
        username: None,
        password: None,
        password_file: None,
        tls: false,
    }
}

/// The source, built once for several reads.
fn built(spec: KafkaSpec) -> KafkaSource {
    KafkaSource::new(&spec, TIMEOUT).unwrap()
}

async fn read_with(src: &KafkaSource) -> Result<f64, ReadError> {
    src.fetch().await
}

async fn read(spec: KafkaSpec) -> Result<f64, ReadError> {
    read_with(&built(spec)).await
}

/// A 3-partition topic holding 37 records: 15, 12 and 10 (one record per batch).
fn topic_with_37(kafka: &KafkaBroker, name: &str) -> String {
    let topic = kafka.name(name);
    kafka.create_topic(&topic, 3);
    kafka.produce(&topic, 0, 15);
    kafka.produce(&topic, 1, 12);
    kafka.produce(&topic, 2, 10);
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_latest_minus_committed_over_the_partitions() {
    let kafka = kafka::kafka();
    let topic = topic_with_37(&kafka, "jobs");
    let group = kafka.name("workers");
    // 10 + 0 + 7 = 17 behind.
    kafka.commit(&group, &topic, 0, 5);
    kafka.commit(&group, &topic, 1, 12);
    kafka.commit(&group, &topic, 2, 3);
    let src = built(spec(&kafka.brokers(), &group, Some(&topic)));
    assert_eq!(read_with(&src).await.unwrap(), 17.0);
    // The group catches up on partition 0, and 4 more records arrive on partition 1:
    // the same client reads the change.
    kafka.commit(&group, &topic, 0, 15);
    kafka.produce(&topic, 1, 4);
    assert_eq!(read_with(&src).await.unwrap(), 11.0);
    // All caught up.
    kafka.commit(&group, &topic, 1, 16);
    kafka.commit(&group, &topic, 2, 10);
    assert_eq!(read_with(&src).await.unwrap(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_without_a_commit_count_by_the_reset_policy() {
    let kafka = kafka::kafka();
    let topic = topic_with_37(&kafka, "jobs");
    let group = kafka.name("workers");
    // Only partition 0 committed: 10 behind; 12 and 10 records uncommitted.
    kafka.commit(&group, &topic, 0, 5);
    let mut s = spec(&kafka.brokers(), &group, Some(&topic));
    assert_eq!(read(s.clone()).await.unwrap(), 10.0);
    s.offset_reset = OffsetReset::Earliest;
    assert_eq!(read(s).await.unwrap(), 10.0 + 12.0 + 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_is_capped_at_partitions_times_the_threshold() {
    let kafka = kafka::kafka();
    let topic = topic_with_37(&kafka, "jobs");
    let group = kafka.name("workers");
    for p in 0..3 {
        kafka.commit(&group, &topic, p, 0);
    }
    let mut s = spec(&kafka.brokers(), &group, Some(&topic));
    assert_eq!(read(s.clone()).await.unwrap(), 37.0);
    s.lag_threshold = Some(10); // cap 30
    assert_eq!(read(s.clone()).await.unwrap(), 30.0);
    s.lag_threshold = Some(13); // cap 39: not reached
    assert_eq!(read(s.clone()).await.unwrap(), 37.0);
    s.lag_threshold = Some(10);
    s.cap_at_partitions = false;
    assert_eq!(read(s).await.unwrap(), 37.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_lag_is_excluded_from_the_second_read_on() {
    let kafka = kafka::kafka();
    let topic = topic_with_37(&kafka, "jobs");
    let group = kafka.name("workers");
    kafka.commit(&group, &topic, 0, 5); // 10 behind
    kafka.commit(&group, &topic, 1, 12); // none behind
    kafka.commit(&group, &topic, 2, 3); // 7 behind
    let mut s = spec(&kafka.brokers(), &group, Some(&topic));
    s.exclude_persistent_lag = true;
    let src = built(s);
    // First read: nothing to compare with.
    assert_eq!(read_with(&src).await.unwrap(), 17.0);
    // No offset moved: both lagging partitions are stuck.
    assert_eq!(read_with(&src).await.unwrap(), 0.0);
    // Partition 0 moves (5 behind now), partition 2 stays stuck.
    kafka.commit(&group, &topic, 0, 10);
    assert_eq!(read_with(&src).await.unwrap(), 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_topic_every_topic_the_group_committed_on_counts() {
    let kafka = kafka::kafka();
    let a = topic_with_37(&kafka, "a");
    let b = kafka.name("b");
    kafka.create_topic(&b, 2);
    kafka.produce(&b, 1, 6);
    // A third topic the group never committed on does not count.
    let _other = topic_with_37(&kafka, "other");
    let group = kafka.name("workers");
    kafka.commit(&group, &a, 0, 10); // 5 behind; partitions 1 and 2 uncommitted
    kafka.commit(&group, &b, 1, 2); // 4 behind
    let mut s = spec(&kafka.brokers(), &group, None);
    assert_eq!(read(s.clone()).await.unwrap(), 9.0);
    s.offset_reset = OffsetReset::Earliest;
    assert_eq!(read(s).await.unwrap(), 9.0 + 12.0 + 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_or_group_is_not_found() {
    let kafka = kafka::kafka();
    let missing = kafka.name("missing");
    let err = read(spec(&kafka.brokers(), "g", Some(&missing)))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains(&missing), "{err}");
    assert!(err.to_string().contains(&kafka.brokers()), "{err}");

    let topic = topic_with_37(&kafka, "jobs");
    let group = kafka.name("nobody");
    let err = read(spec(&kafka.brokers(), &group, Some(&topic)))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains(&group), "{err}");
    let err = read(spec(&kafka.brokers(), &group, None))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_is_a_connect_error() {
    let brokers = format!("127.0.0.1:{}", servers::closed_port());
    let src = KafkaSource::new(&spec(&brokers, "g", Some("jobs")), Duration::from_secs(2)).unwrap();
    let err = src.fetch().await.unwrap_err();
    // librdkafka reported the refused connections while it waited: connect, not a
    // bare timeout.
    assert_eq!(err.class(), ErrorClass::Connect, "{err}");
    assert!(err.to_string().contains(&brokers), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_cut_at_the_timeout() {
    let silent = SilentServer::start();
    let brokers = format!("127.0.0.1:{}", silent.port());
    let timeout = Duration::from_millis(500);
    let src = KafkaSource::new(&spec(&brokers, "g", Some("jobs")), timeout).unwrap();
    let started = tokio::time::Instant::now();
    let err = src.fetch().await.unwrap_err();
    assert_eq!(err, ReadError::Timeout(timeout));
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
}
