//! The HTTP listener in-process on an ephemeral loopback port: health, auth, `/metrics`
//! parsed as Prometheus text, and pushed values round-tripping through a `push` source
//! with its ttl on virtual time.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use capstan::config::{self, Config, Secret};
use capstan::server::{self, Exporter, ServerState};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::Action;
use capstan_sources::{ErrorClass, PushStore, ReadObserver, build_with, read_once};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[sources.queue]
kind = "command"
command = ["echo", "42"]

[sources.jobs]
kind = "push"
ttl = "1m"

[sources.delta]
kind = "push"
ttl = "30s"
value = "any"

[[services]]
name = "worker"
max = 4
target = { kind = "process", command = ["true"] }

[[services.policies]]
kind = "target_tracking"
metric = "queue"
mode = "total"
target = 10
"#;

/// The smallest valid rest of a file, after a `[server]` table.
const SERVICE: &str = r#"
[sources.q]
kind = "push"
ttl = "1m"

[[services]]
name = "w"
max = 2
target = { kind = "process", command = ["true"] }

[[services.policies]]
kind = "target_tracking"
metric = "q"
mode = "total"
target = 1
"#;

fn with_service(server: &str) -> String {
    format!("{server}{SERVICE}")
}

struct Running {
    base: String,
    clock: Arc<VirtualClock>,
    exporter: Arc<Exporter>,
    push: PushStore,
    config: Config,
    cancel: CancellationToken,
    client: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(token: Option<&str>) -> Running {
    let config = config::compile(CONFIG, "t.toml", &|_| None).unwrap();
    let clock = Arc::new(VirtualClock::at_epoch());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let exporter = Arc::new(Exporter::new(&config.sources, Arc::clone(&dyn_clock)));
    let push = PushStore::new(dyn_clock);
    push.declare_all(&config.sources);
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = server::router(ServerState::new(
        token.map(Secret::new),
        Arc::clone(&exporter),
        push.clone(),
    ));
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(listener, app, cancel.clone()));
    Running {
        base,
        clock,
        exporter,
        push,
        config,
        cancel,
        client: reqwest::Client::new(),
    }
}

impl Running {
    /// Reads source `name` once through the same path as the poller and reports the
    /// outcome to the exporter, as the poller's hook does.
    async fn poll(&self, name: &str) -> Result<f64, ErrorClass> {
        let spec = self.config.source(name).unwrap();
        let source = build_with(spec, Some(&self.push)).unwrap();
        let read = read_once(source.as_ref(), spec).await;
        self.exporter.observed(
            name,
            Duration::from_millis(3),
            read.as_ref().copied().map_err(|e| &e.error),
        );
        read.map_err(|e| e.error.class())
    }

    async fn push(&self, name: &str, content_type: &str, body: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/metrics/{name}", self.base))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn scrape(&self) -> prometheus_parse::Scrape {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }
}

fn value_of(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{metric}: unexpected {other:?}"),
    }
}

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let s = start(Some("s3cret")).await;
    let response = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn a_configured_token_is_required_on_every_other_route() {
    let s = start(Some("s3cret")).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("s3cret"),
    ] {
        let mut get = s.client.get(format!("{}/metrics", s.base));
        let mut post = s
            .client
            .post(format!("{}/api/v1/metrics/jobs", s.base))
            .body("5");
        if let Some(auth) = auth {
            get = get.header("authorization", auth);
            post = post.header("authorization", auth);
        }
        for request in [get, post] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{auth:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(!body.to_string().contains("s3cret"), "{body}");
        }
    }
    assert_eq!(
        s.push.latest("jobs"),
        None,
        "a refused push changes nothing"
    );
    let ok = s
        .client
        .get(format!("{}/metrics", s.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let pushed = s
        .client
        .post(format!("{}/api/v1/metrics/jobs", s.base))
        .bearer_auth("s3cret")
        .body("5")
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
    assert_eq!(s.push.latest("jobs").map(|l| l.0), Some(5.0));
}

#[tokio::test]
async fn metrics_show_every_source_and_service_in_prometheus_format() {
    let s = start(None).await;
    let scrape = s.scrape().await;
    for source in ["queue", "jobs", "delta"] {
        assert!(value_of(&scrape, "capstan_source_value", &[("source", source)]).is_nan());
        for class in ErrorClass::ALL {
            let labels = [("source", source), ("class", class.label())];
            assert_eq!(
                value_of(&scrape, "capstan_source_errors_total", &labels),
                0.0
            );
        }
        assert!(
            scrape.samples.iter().any(|x| x
                .metric
                .starts_with("capstan_source_read_duration_seconds")
                && x.labels.get("source") == Some(source)),
            "{source} has a duration histogram"
        );
    }

    assert_eq!(s.poll("queue").await, Ok(42.0));
    assert_eq!(s.poll("jobs").await, Err(ErrorClass::NotFound));
    s.clock.advance(Duration::from_secs(7));
    let scrape = s.scrape().await;
    assert_eq!(
        value_of(&scrape, "capstan_source_value", &[("source", "queue")]),
        42.0
    );
    assert_eq!(
        value_of(
            &scrape,
            "capstan_source_age_seconds",
            &[("source", "queue")]
        ),
        7.0
    );
    let labels = [("source", "jobs"), ("class", "not_found")];
    assert_eq!(
        value_of(&scrape, "capstan_source_errors_total", &labels),
        1.0
    );

    // A decision recorded through the exporting log shows up per service.
    let log = server::ExportingLog::new(
        Arc::new(capstan_store::MemoryStore::default()),
        Arc::clone(&s.exporter),
    );
    let mut decision = decision("worker");
    capstan_store::DecisionLog::record(&log, &decision).unwrap();
    decision.action = Action::Hold { at: 5 };
    capstan_store::DecisionLog::record(&log, &decision).unwrap();
    let scrape = s.scrape().await;
    assert_eq!(
        value_of(&scrape, "capstan_desired_tasks", &[("service", "worker")]),
        5.0
    );
    assert_eq!(
        value_of(&scrape, "capstan_running_tasks", &[("service", "worker")]),
        2.0
    );
    let out = [
        ("service", "worker"),
        ("direction", "out"),
        ("reason", "max"),
    ];
    assert_eq!(value_of(&scrape, "capstan_decisions_total", &out), 1.0);
    let hold = [
        ("service", "worker"),
        ("direction", "hold"),
        ("reason", "max"),
    ];
    assert_eq!(value_of(&scrape, "capstan_decisions_total", &hold), 1.0);
}

fn decision(service: &str) -> capstan_core::decision::Decision {
    use capstan_core::decision::{Decision, Rule, Step, StepKind};
    use capstan_core::model::Capacity;
    Decision {
        service: service.to_owned(),
        at: jiff::Timestamp::UNIX_EPOCH,
        capacity: Capacity {
            desired: 2,
            running: 2,
            pending: 0,
        },
        asks: Vec::new(),
        rule: Rule::LargestScaleOut,
        winner: None,
        combined: 7,
        min: 1,
        max: 5,
        steps: vec![Step {
            kind: StepKind::Max,
            from: 7,
            to: 5,
            detail: "max 5".into(),
        }],
        action: Action::ScaleOut { from: 2, to: 5 },
        dry_run: false,
    }
}

#[tokio::test]
async fn a_pushed_value_is_read_until_its_ttl_then_the_source_fails() {
    let s = start(None).await;
    let (status, body) = s
        .push("jobs", "application/json", r#"{"value": 12.5}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], 12.5);
    assert_eq!(s.poll("jobs").await, Ok(12.5));
    s.clock.advance(Duration::from_secs(60));
    assert_eq!(
        s.poll("jobs").await,
        Ok(12.5),
        "still fresh at exactly the ttl"
    );
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(
        s.poll("jobs").await,
        Err(ErrorClass::NotFound),
        "stale after the ttl"
    );
    let (status, _) = s.push("jobs", "text/plain", "30\n").await;
    assert_eq!(status, 200);
    assert_eq!(s.poll("jobs").await, Ok(30.0));
    let scrape = s.scrape().await;
    assert_eq!(
        value_of(&scrape, "capstan_source_value", &[("source", "jobs")]),
        30.0
    );
    // A source of any value takes negatives.
    let (status, _) = s.push("delta", "text/plain", "-3").await;
    assert_eq!(status, 200);
    assert_eq!(s.poll("delta").await, Ok(-3.0));
}

#[tokio::test]
async fn bad_pushes_are_refused_naming_the_field_and_change_nothing() {
    let s = start(None).await;
    assert_eq!(s.push("jobs", "text/plain", "8").await.0, 200);
    let cases = [
        ("application/json", r#"{"value": "12"}"#, "value"),
        ("application/json", r#"{"value": null}"#, "value"),
        ("application/json", r#"{}"#, "value"),
        ("application/json", r#"{"value": -1}"#, "value"),
        ("application/json", r#"{"value": 1e300}"#, "value"),
        ("application/json", r#"{"value": 1, "extra": 2}"#, "body"),
        ("application/json", r#"[1]"#, "body"),
        ("application/json", r#"{"value": 1"#, "body"),
        ("text/plain", "NaN", "value"),
        ("text/plain", "-2", "value"),
        ("text/plain", "inf", "value"),
        ("text/plain", "twelve", "body"),
        ("text/plain", "", "body"),
    ];
    for (content_type, body, field) in cases {
        let (status, answer) = s.push("jobs", content_type, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (status, answer) = s.push("nope", "text/plain", "1").await;
    assert_eq!(status, 404);
    assert!(
        answer["error"].as_str().unwrap().contains("nope"),
        "{answer}"
    );
    let (status, _) = s.push("queue", "text/plain", "1").await;
    assert_eq!(status, 404, "a source of another kind takes no pushes");
    let big = "1".repeat(server::MAX_PUSH_BODY + 1);
    let response = s
        .client
        .post(format!("{}/api/v1/metrics/jobs", s.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(s.poll("jobs").await, Ok(8.0), "the first value is intact");
}

#[test]
fn beyond_loopback_without_a_token_is_a_config_error_naming_the_key() {
    let text = "[server]\nlisten = \"0.0.0.0:9120\"\n";
    let err = config::compile(&with_service(text), "t.toml", &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.listen"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs a bearer token"), "{err}");
    let with_token = "[server]\nlisten = \"0.0.0.0:9120\"\ntoken = \"${CAPSTAN_TOKEN}\"\n";
    let env = |n: &str| (n == "CAPSTAN_TOKEN").then(|| "hunter2".to_owned());
    let config = config::compile(&with_service(with_token), "t.toml", &env).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let file = "[server]\nlisten = \"[::]:9120\"\ntoken_file = \"/run/secrets/t\"\n";
    assert!(config::compile(&with_service(file), "t.toml", &|_| None).is_ok());
    let loopback = config::compile(&with_service(""), "t.toml", &|_| None).unwrap();
    assert_eq!(loopback.server.listen.to_string(), "127.0.0.1:9120");
    assert!(loopback.server.token.is_none());
    let both = "[server]\ntoken = \"a\"\ntoken_file = \"b\"\n";
    let err = config::compile(&with_service(both), "t.toml", &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.token_file"), "{err}");
}

#[test]
fn a_token_file_is_read_without_its_final_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "s3cret\n").unwrap();
    let text = format!("[server]\ntoken_file = {:?}\n", path.display().to_string());
    let config = config::compile(&with_service(&text), "t.toml", &|_| None).unwrap();
    let token = server::resolve_token(&config.server).unwrap().unwrap();
    assert_eq!(token.expose(), "s3cret");
    std::fs::write(&path, "\n").unwrap();
    let err = server::resolve_token(&config.server)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
}
