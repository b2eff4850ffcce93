//! The `cloudwatch` source, the `ecs` presets and `ship_to_cloudwatch` through the
//! real SDK client (`SdkCloudWatch`) with a replayed HTTP exchange: moto cannot speak
//! the rpc-v2-cbor protocol of the current SDK, so each test checks the request we
//! send (decoded from CBOR) and feeds back hand-built CBOR answers of CloudWatch's
//! real shapes.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use capstan_aws_api::{CloudWatch, Dimension, MetricDatum, MetricQuery};
use capstan_aws_sdk::SdkCloudWatch;
use capstan_core::{Clock, VirtualClock};
use capstan_sources::aws::AwsSpec;
use capstan_sources::cloudwatch::{
    CloudWatchSource, CloudWatchSpec, EcsMetric, OnEmpty, ecs_query,
};
use capstan_sources::poller::ReadObserver;
use capstan_sources::ship::{CloudWatchShipper, ShipOptions, ShipSpec};
use capstan_sources::{ErrorClass, ReadError, Source};
use ciborium::Value;
use jiff::Timestamp;

const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn clock() -> Arc<VirtualClock> {
    Arc::new(VirtualClock::new(
        Timestamp::from_second(NOW).expect("a valid instant"),
    ))
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("encode CBOR");
    out
}

/// An epoch-seconds timestamp as rpc-v2-cbor sends it (tag 1, a float).
fn time(secs: i64) -> Value {
    #[allow(clippy::cast_precision_loss)]
    Value::Tag(1, Box::new(Value::Float(secs as f64)))
}

fn answer(status: u16, body: &Value, extra: &[(&str, &str)]) -> http::Response<SdkBody> {
    let mut b = http::Response::builder()
        .status(status)
        .header("smithy-protocol", "rpc-v2-cbor")
        .header("content-type", "application/cbor");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(SdkBody::from(cbor(body))).expect("a response")
}

fn request() -> http::Request<SdkBody> {
    http::Request::builder()
        .uri("https://monitoring.us-east-1.amazonaws.com/")
        .body(SdkBody::empty())
        .expect("a request")
}

/// A GetMetricData answer with one series for capstan's query id.
fn data_answer(points: &[(i64, f64)], status_code: &str) -> http::Response<SdkBody> {
    let body = map(vec![
        (
            "MetricDataResults",
            Value::Array(vec![map(vec![
                ("Id", text("capstan")),
                ("Label", text("CPUUtilization")),
                (
                    "Timestamps",
                    Value::Array(points.iter().map(|(t, _)| time(*t)).collect()),
                ),
                (
                    "Values",
                    Value::Array(points.iter().map(|(_, v)| Value::Float(*v)).collect()),
                ),
                ("StatusCode", text(status_code)),
            ])]),
        ),
        ("Messages", Value::Array(vec![])),
    ]);
    answer(200, &body, &[])
}

/// An error answer as CloudWatch's rpc-v2-cbor sends it (query-compatible code in
/// `x-amzn-query-error`).
fn error_answer(status: u16, type_name: &str, query_code: &str) -> http::Response<SdkBody> {
    let body = map(vec![
        (
            "__type",
            text(&format!("com.amazonaws.cloudwatch#{type_name}")),
        ),
        ("message", text("details from AWS")),
    ]);
    let header = format!("{query_code};Sender");
    answer(status, &body, &[("x-amzn-query-error", &header)])
}

fn replay(answers: Vec<http::Response<SdkBody>>) -> StaticReplayClient {
    StaticReplayClient::new(
        answers
            .into_iter()
            .map(|a| ReplayEvent::new(request(), a))
            .collect(),
    )
}

fn client(http: &StaticReplayClient) -> SdkCloudWatch {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .http_client(http.clone())
        // As capstan's own clients: one attempt, capstan retries itself.
        .retry_config(RetryConfig::disabled())
        .build();
    SdkCloudWatch::from_client(aws_sdk_cloudwatch::Client::from_conf(config))
}

/// The CBOR bodies of the requests sent, decoded, with their `X-Amz-Target`-free
/// paths (rpc-v2-cbor names the operation in the path).
fn sent(http: &StaticReplayClient) -> Vec<(String, Value)> {
    http.actual_requests()
        .map(|r| {
            let bytes = r.body().bytes().expect("an in-memory body");
            // PutMetricData bodies over 10 KiB are gzip-compressed by the SDK.
            let bytes = if r.headers().get("content-encoding") == Some("gzip") {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut plain)
                    .expect("a gzip body");
                plain
            } else {
                bytes.to_vec()
            };
            let value: Value =
                ciborium::from_reader(bytes.as_slice()).expect("a CBOR request body");
            (r.uri().to_owned(), value)
        })
        .collect()
}

fn get<'a>(value: &'a Value, key: &str) -> &'a Value {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {key} in {value:?}")),
        _ => panic!("{value:?} is not a map"),
    }
}

fn as_str(value: &Value) -> &str {
    value
        .as_text()
        .unwrap_or_else(|| panic!("{value:?} is not text"))
}

fn seconds(value: &Value) -> f64 {
    match value {
        Value::Tag(1, inner) => match inner.as_ref() {
            Value::Float(f) => *f,
            Value::Integer(i) => {
                #[allow(clippy::cast_precision_loss)]
                let f = i128::from(*i) as f64;
                f
            }
            other => panic!("timestamp {other:?}"),
        },
        other => panic!("not a timestamp: {other:?}"),
    }
}

fn cpu_spec(on_empty: OnEmpty) -> CloudWatchSpec {
    CloudWatchSpec {
        query: ecs_query(EcsMetric::Cpu, "prod", "worker", None, "Average", 60),
        lookback: Duration::from_secs(600),
        on_empty,
        aws: AwsSpec {
            region: Some("us-east-1".into()),
            ..AwsSpec::default()
        },
    }
}

fn source(http: &StaticReplayClient, spec: &CloudWatchSpec) -> CloudWatchSource<SdkCloudWatch> {
    CloudWatchSource::new(client(http), spec, clock(), Duration::from_secs(5))
}

#[tokio::test]
async fn sends_one_metric_stat_query_and_reads_the_newest_datapoint() {
    let http = replay(vec![data_answer(
        &[(NOW - 60, 41.5), (NOW - 120, 38.0), (NOW - 180, 12.0)],
        "Complete",
    )]);
    let s = source(&http, &cpu_spec(OnEmpty::Error));
    assert_eq!(s.read().await, Ok(41.5));

    let requests = sent(&http);
    assert_eq!(requests.len(), 1);
    let (uri, body) = &requests[0];
    assert!(
        uri.ends_with("/service/GraniteServiceVersion20100801/operation/GetMetricData"),
        "{uri}"
    );
    assert_eq!(seconds(get(body, "EndTime")), NOW as f64);
    assert_eq!(seconds(get(body, "StartTime")), (NOW - 600) as f64);
    assert_eq!(as_str(get(body, "ScanBy")), "TimestampDescending");
    let Value::Array(queries) = get(body, "MetricDataQueries") else {
        panic!("MetricDataQueries is not an array");
    };
    assert_eq!(queries.len(), 1);
    let q = &queries[0];
    assert_eq!(as_str(get(q, "Id")), "capstan");
    let stat = get(q, "MetricStat");
    assert_eq!(as_str(get(stat, "Stat")), "Average");
    assert_eq!(get(stat, "Period"), &Value::Integer(60.into()));
    let metric = get(stat, "Metric");
    assert_eq!(as_str(get(metric, "Namespace")), "AWS/ECS");
    assert_eq!(as_str(get(metric, "MetricName")), "CPUUtilization");
    let Value::Array(dims) = get(metric, "Dimensions") else {
        panic!("Dimensions is not an array");
    };
    let dims: Vec<(&str, &str)> = dims
        .iter()
        .map(|d| (as_str(get(d, "Name")), as_str(get(d, "Value"))))
        .collect();
    assert_eq!(dims, [("ClusterName", "prod"), ("ServiceName", "worker")]);
}

#[tokio::test]
async fn an_expression_is_sent_as_such_and_order_does_not_matter() {
    let http = replay(vec![data_answer(
        &[(NOW - 180, 1.0), (NOW - 60, 7.25), (NOW - 120, 3.0)],
        "Complete",
    )]);
    let spec = CloudWatchSpec {
        query: MetricQuery::Expression {
            expression: "SUM(METRICS())".into(),
            period_secs: 300,
        },
        ..cpu_spec(OnEmpty::Error)
    };
    assert_eq!(source(&http, &spec).read().await, Ok(7.25));
    let (_, body) = &sent(&http)[0];
    let Value::Array(queries) = get(body, "MetricDataQueries") else {
        panic!("MetricDataQueries is not an array");
    };
    assert_eq!(as_str(get(&queries[0], "Expression")), "SUM(METRICS())");
    assert_eq!(get(&queries[0], "Period"), &Value::Integer(300.into()));
}

#[tokio::test]
async fn an_empty_window_reads_zero_or_fails_as_configured() {
    let http = replay(vec![data_answer(&[], "Complete")]);
    assert_eq!(
        source(&http, &cpu_spec(OnEmpty::Zero)).read().await,
        Ok(0.0)
    );
    let http = replay(vec![data_answer(&[], "Complete")]);
    let error = source(&http, &cpu_spec(OnEmpty::Error))
        .read()
        .await
        .expect_err("no datapoint");
    assert_eq!(error.class(), ErrorClass::NotFound, "{error}");
    assert!(error.to_string().contains("CPUUtilization"), "{error}");
}

#[tokio::test]
async fn error_answers_get_their_class() {
    for (status, type_name, code, class) in [
        (
            400,
            "InvalidParameterValueException",
            "InvalidParameterValue",
            ErrorClass::Config,
        ),
        (
            403,
            "AccessDeniedException",
            "AccessDenied",
            ErrorClass::Auth,
        ),
        (400, "ThrottlingException", "Throttling", ErrorClass::Server),
        (
            500,
            "InternalServiceFault",
            "InternalServiceError",
            ErrorClass::Server,
        ),
    ] {
        let http = replay(vec![error_answer(status, type_name, code)]);
        let error = source(&http, &cpu_spec(OnEmpty::Zero))
            .read()
            .await
            .expect_err("an error answer");
        assert_eq!(error.class(), class, "{type_name}: {error}");
        assert!(error.to_string().contains("GetMetricData"), "{error}");
    }
    // A partial or failed series: InternalError is a server error.
    let http = replay(vec![data_answer(&[], "InternalError")]);
    let error = source(&http, &cpu_spec(OnEmpty::Zero))
        .read()
        .await
        .expect_err("InternalError");
    assert_eq!(error.class(), ErrorClass::Server, "{error}");
    // Not CBOR at all.
    let http = replay(vec![
        http::Response::builder()
            .status(200)
            .header("smithy-protocol", "rpc-v2-cbor")
            .header("content-type", "application/cbor")
            .body(SdkBody::from("not cbor"))
            .expect("a response"),
    ]);
    let error = source(&http, &cpu_spec(OnEmpty::Zero))
        .read()
        .await
        .expect_err("garbage");
    assert!(matches!(error.class(), ErrorClass::Malformed), "{error:?}");
}

#[tokio::test]
async fn put_metric_data_rejects_more_than_1000_datums() {
    let http = replay(vec![]);
    let datum = MetricDatum {
        metric_name: "m".into(),
        dimensions: vec![],
        value: 1.0,
        timestamp: Timestamp::from_second(NOW).expect("valid"),
    };
    let error = client(&http)
        .put_metric_data("Capstan", &vec![datum; 1001])
        .await
        .expect_err("too many");
    assert!(!error.is_retryable());
    assert_eq!(sent(&http).len(), 0);
}

fn ship_spec() -> HashMap<String, ShipSpec> {
    HashMap::from([(
        "jobs".to_owned(),
        ShipSpec {
            namespace: "Capstan/Test".into(),
            metric_name: "jobs_backlog".into(),
            dimensions: vec![Dimension::new("Service", "worker")],
            aws: AwsSpec::default(),
        },
    )])
}

fn ok_answer() -> http::Response<SdkBody> {
    answer(200, &map(vec![]), &[])
}

#[tokio::test]
async fn ships_2500_values_in_three_calls_of_at_most_1000() {
    let http = replay(vec![ok_answer(), ok_answer(), ok_answer()]);
    let clock = clock();
    let shipper = CloudWatchShipper::new(
        client(&http),
        ship_spec(),
        ShipOptions::default(),
        clock.clone() as Arc<dyn Clock>,
    );
    for n in 0..2500 {
        shipper.observed("jobs", Duration::ZERO, Ok(f64::from(n)));
    }
    // Values of sources without ship_to_cloudwatch, and failed reads, are not shipped.
    shipper.observed("other", Duration::ZERO, Ok(1.0));
    let failed = ReadError::Timeout(Duration::from_secs(1));
    shipper.observed("jobs", Duration::ZERO, Err(&failed));
    assert_eq!(shipper.buffered(), 2500);
    shipper.flush().await;

    let requests = sent(&http);
    let sizes: Vec<usize> = requests
        .iter()
        .map(|(uri, body)| {
            assert!(uri.ends_with("/operation/PutMetricData"), "{uri}");
            assert_eq!(as_str(get(body, "Namespace")), "Capstan/Test");
            match get(body, "MetricData") {
                Value::Array(data) => data.len(),
                other => panic!("MetricData {other:?}"),
            }
        })
        .collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert!(
        http.actual_requests()
            .all(|r| r.headers().get("content-encoding") == Some("gzip")),
        "large PutMetricData bodies are compressed"
    );
    let (_, first) = &requests[0];
    let Value::Array(data) = get(first, "MetricData") else {
        unreachable!()
    };
    assert_eq!(as_str(get(&data[0], "MetricName")), "jobs_backlog");
    assert_eq!(get(&data[7], "Value"), &Value::Float(7.0));
    assert_eq!(seconds(get(&data[0], "Timestamp")), NOW as f64);
    let Value::Array(dims) = get(&data[0], "Dimensions") else {
        panic!("no dimensions");
    };
    assert_eq!(as_str(get(&dims[0], "Name")), "Service");
    assert_eq!(as_str(get(&dims[0], "Value")), "worker");
    let stats = shipper.stats();
    assert_eq!((stats.shipped, stats.unshipped, stats.calls), (2500, 0, 3));
    assert_eq!(shipper.buffered(), 0);
}

#[tokio::test]
async fn a_throttled_batch_is_retried_and_counted_when_attempts_run_out() {
    let throttled = || error_answer(400, "ThrottlingException", "Throttling");
    let denied = || error_answer(403, "AccessDeniedException", "AccessDenied");
    let http = replay(vec![
        throttled(),
        ok_answer(),
        throttled(),
        throttled(),
        denied(),
    ]);
    let hooked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&hooked);
    let shipper = CloudWatchShipper::new(
        client(&http),
        ship_spec(),
        ShipOptions {
            max_attempts: 2,
            ..ShipOptions::default()
        },
        clock() as Arc<dyn Clock>,
    )
    .on_unshipped(Arc::new(move |n| {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }));
    for n in 0..10 {
        shipper.observed("jobs", Duration::ZERO, Ok(f64::from(n)));
    }
    // Throttled: kept for the next flush.
    shipper.flush().await;
    assert_eq!(shipper.buffered(), 10);
    assert_eq!(shipper.stats().unshipped, 0);
    // Accepted on the second try.
    shipper.flush().await;
    assert_eq!(shipper.buffered(), 0);
    assert_eq!(shipper.stats().shipped, 10);

    // Throttled twice with max_attempts 2: given up and counted.
    for n in 0..4 {
        shipper.observed("jobs", Duration::ZERO, Ok(f64::from(n)));
    }
    shipper.flush().await;
    shipper.flush().await;
    assert_eq!(shipper.buffered(), 0);
    assert_eq!(shipper.stats().unshipped, 4);

    // Access denied is not retried.
    shipper.observed("jobs", Duration::ZERO, Ok(1.0));
    shipper.flush().await;
    assert_eq!(shipper.buffered(), 0);
    let stats = shipper.stats();
    assert_eq!((stats.shipped, stats.unshipped, stats.calls), (10, 5, 5));
    assert_eq!(
        hooked.load(std::sync::atomic::Ordering::Relaxed),
        5,
        "the hook saw every datum given up on"
    );
}
