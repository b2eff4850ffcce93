//! `ship_to_cloudwatch` end to end: the real `capstan run` binary reads a `command`
//! source and ships its values through the real SDK client to a local HTTP endpoint
//! (`endpoint_url`) that records each `PutMetricData` call and answers as CloudWatch's
//! rpc-v2-cbor protocol does (moto cannot speak it). The shipper flushes every 10 s;
//! the test stops capstan well before that, so every value it receives was shipped by
//! the final flush at shutdown: none of the last interval's reads is lost.
//!
//! Real processes on real time: every wait polls with a bounded deadline.

// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use ciborium::Value;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How long any one expectation may take to come true.
const DEADLINE: Duration = Duration::from_secs(30);

/// One request the endpoint received: its path and decoded CBOR body.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    body: Value,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// Starts the recording endpoint; returns its base URL and what it received.
async fn cloudwatch_endpoint() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let recorded = Arc::clone(&calls);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let recorded = Arc::clone(&recorded);
        async move {
            assert!(
                headers.get("content-encoding").is_none(),
                "small bodies are sent uncompressed"
            );
            let body: Value = ciborium::from_reader(body.as_ref()).unwrap();
            recorded.lock().unwrap().push(Call {
                path: uri.path().to_owned(),
                body,
            });
            // PutMetricData's empty answer: an empty CBOR map.
            (
                [
                    ("smithy-protocol", "rpc-v2-cbor"),
                    ("content-type", "application/cbor"),
                ],
                vec![0xa0_u8],
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

fn config(dir: &Path, endpoint: &str) -> String {
    let dir = dir.display();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.depth]
kind = "command"
command = ["sh", "-c", "echo read >> {dir}/reads; cat {dir}/depth"]
interval = "100ms"
timeout = "2s"

[sources.depth.ship_to_cloudwatch]
namespace = "Capstan/Test"
metric = "queue_depth"
dimensions = {{ Service = "worker" }}
region = "us-east-1"
endpoint_url = "{endpoint}"

[[services]]
name = "worker"
min = 1
max = 2
target = {{ kind = "process", command = ["sleep", "600"] }}

[[services.policies]]
kind = "target_tracking"
metric = "depth"
mode = "total"
target = 100
"#
    )
}

fn get<'a>(value: &'a Value, key: &str) -> &'a Value {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k == &Value::Text(key.to_owned()))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {key} in {value:?}")),
        other => panic!("not a map: {other:?}"),
    }
}

fn text(value: &Value) -> &str {
    match value {
        Value::Text(s) => s,
        other => panic!("not text: {other:?}"),
    }
}

/// Every datum shipped: (metric name, dimension name=value, value).
fn datums(calls: &[Call]) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for call in calls {
        assert!(
            call.path.ends_with("/operation/PutMetricData"),
            "{}",
            call.path
        );
        assert_eq!(text(get(&call.body, "Namespace")), "Capstan/Test");
        let Value::Array(data) = get(&call.body, "MetricData") else {
            panic!("MetricData is not a list: {:?}", call.body);
        };
        for datum in data {
            let Value::Array(dims) = get(datum, "Dimensions") else {
                panic!("no dimensions: {datum:?}");
            };
            let dims: Vec<String> = dims
                .iter()
                .map(|d| format!("{}={}", text(get(d, "Name")), text(get(d, "Value"))))
                .collect();
            let value = match get(datum, "Value") {
                Value::Float(v) => *v,
                Value::Integer(i) => f64::from(i32::try_from(*i).unwrap()),
                other => panic!("value {other:?}"),
            };
            out.push((
                text(get(datum, "MetricName")).to_owned(),
                dims.join(","),
                value,
            ));
        }
    }
    out
}

struct Capstan(Child);

impl Drop for Capstan {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test]
async fn the_last_reads_are_shipped_when_capstan_stops() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("depth"), "37\n").unwrap();
    let (endpoint, calls) = cloudwatch_endpoint().await;
    let config_path = dir.path().join("capstan.toml");
    fs::write(&config_path, config(dir.path(), &endpoint)).unwrap();
    let log_path = dir.path().join("capstan.log");
    let log = fs::File::create(&log_path).unwrap();
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let mut capstan = Capstan(
        Command::new(env!("CARGO_BIN_EXE_capstan"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret")
            .env("AWS_CONFIG_FILE", home.join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let show_log = || fs::read_to_string(&log_path).unwrap_or_default();

    // A few reads, well inside the first 10 s flush interval.
    let reads = || {
        fs::read_to_string(dir.path().join("reads"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let deadline = Instant::now() + DEADLINE;
    while reads() < 5 {
        assert!(
            Instant::now() < deadline,
            "capstan did not read the source\n{}",
            show_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        calls.lock().unwrap().is_empty(),
        "nothing is shipped before the first flush interval"
    );

    kill(
        Pid::from_raw(i32::try_from(capstan.0.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = capstan.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "capstan did not exit\n{}",
            show_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}\n{}", show_log());

    let read = reads();
    let shipped = datums(&calls.lock().unwrap());
    assert!(
        shipped
            .iter()
            .all(|d| d == &("queue_depth".to_owned(), "Service=worker".to_owned(), 37.0)),
        "{shipped:?}"
    );
    // Every read made before the pollers stopped is shipped; a read the shutdown cut
    // off in the middle (at most one) yields no value.
    assert!(
        shipped.len() == read || shipped.len() + 1 == read,
        "{read} reads, {} values shipped\n{}",
        shipped.len(),
        show_log()
    );
    assert!(
        !show_log().contains("not shipped"),
        "nothing was given up on\n{}",
        show_log()
    );
}
