//! The JSON API in-process on an ephemeral loopback port, over a registry whose
//! services are driven tick by tick by real `ServiceLoop`s on a virtual clock against
//! a small in-memory target: list, detail, paging, pause, override and its expiry,
//! `/readyz`, auth, 400s naming the field, 404s, and the OpenAPI document.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::config::{self, Secret};
use capstan::server::api::{self, Services};
use capstan::server::{self, Exporter, ServerState};
use capstan_control::{Registry, ServiceLoop};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision};
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::{Capacity, Sample, Task, TaskId, TaskState};
use capstan_sources::PushStore;
use capstan_store::{DecisionLog, MemoryStore, Page, StoreError};
use capstan_targets::{Observed, Target, TargetError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Service `w`: one task per unit of `q`, bounds 1..=10, no cooldowns; service `idle`
/// never ticks.
const CONFIG: &str = r#"
[sources.q]
kind = "push"
ttl = "1h"

[[services]]
name = "w"
min = 1
max = 10
cooldown = { out = "0s", in = "0s" }
scale_in = { stabilization = "0s" }
target = { kind = "process", command = ["true"] }

[[services.policies]]
kind = "target_tracking"
metric = "q"
mode = "total"
target = 1
datapoints = { out = 1, in = 1 }

[[services]]
name = "idle"
min = 0
max = 3
target = { kind = "process", command = ["true"] }

[[services.policies]]
kind = "target_tracking"
metric = "q"
mode = "total"
target = 1
"#;

/// A target whose tasks start and stop at once: in `zone` when set, the first task
/// protected with `protect_first` (the API views show both).
#[derive(Debug, Clone, Default)]
pub(crate) struct InstantTarget {
    tasks: Arc<Mutex<Vec<Task>>>,
    started: Arc<AtomicI64>,
    zone: Option<String>,
    protect_first: bool,
}

impl InstantTarget {
    /// Tasks in `zone`, the first one protected.
    pub(crate) fn zoned_with_first_protected(zone: &str) -> Self {
        Self {
            zone: Some(zone.to_owned()),
            protect_first: true,
            ..Self::default()
        }
    }

    /// Starts or stops tasks until there are `n`.
    pub(crate) fn set(&self, n: usize) {
        let mut tasks = self.tasks.lock().unwrap();
        tasks.truncate(n);
        while tasks.len() < n {
            let seq = self.started.fetch_add(1, Ordering::Relaxed) + 1;
            tasks.push(Task {
                id: TaskId::from(format!("t-{seq}")),
                started_at: capstan_core::Timestamp::from_second(seq).unwrap(),
                zone: self.zone.as_deref().map(Into::into),
                state: TaskState::Running,
                sessions: 0,
                protected: self.protect_first && seq == 1,
                healthy: true,
            });
        }
    }

    fn count(&self) -> u32 {
        u32::try_from(self.tasks.lock().unwrap().len()).unwrap()
    }
}

impl Target for InstantTarget {
    fn name(&self) -> &str {
        "instant"
    }
    async fn observe(&self) -> Result<Observed, TargetError> {
        let tasks = self.tasks.lock().unwrap().clone();
        let n = u32::try_from(tasks.len()).unwrap();
        Ok(Observed {
            capacity: Capacity {
                desired: n,
                running: n,
                pending: 0,
            },
            tasks,
        })
    }
    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        self.set(desired as usize);
        Ok(())
    }
    async fn scale_in(&self, _desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        self.tasks
            .lock()
            .unwrap()
            .retain(|t| !victims.contains(&t.id));
        Ok(())
    }
    async fn shutdown(&self) {}
}

/// A decision log that can be told to fail (for `/readyz`).
struct Flaky {
    inner: MemoryStore,
    down: Mutex<bool>,
}

impl DecisionLog for Flaky {
    fn record(&self, decision: &Decision) -> Result<(), StoreError> {
        self.inner.record(decision)
    }
    fn recent(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        if *self.down.lock().unwrap() {
            return Err(StoreError::Decisions {
                service: service.to_owned(),
                reason: "disk on fire".into(),
            });
        }
        self.inner.recent(service, limit)
    }
    fn page(&self, service: &str, before: Option<u64>, limit: usize) -> Result<Page, StoreError> {
        self.recent(service, 0)?;
        self.inner.page(service, before, limit)
    }
    fn ping(&self) -> Result<(), StoreError> {
        self.recent("", 0).map(|_| ())
    }
}

struct Rig {
    base: String,
    client: reqwest::Client,
    clock: Arc<VirtualClock>,
    obs: SharedObservations,
    target: InstantTarget,
    service: ServiceLoop<InstantTarget, Arc<VirtualClock>>,
    store: Arc<Flaky>,
    cancel: CancellationToken,
    token: Option<&'static str>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(token: Option<&'static str>, with_services: bool) -> Rig {
    let config = config::compile(CONFIG, "t.toml", &|_| None).unwrap();
    let clock = Arc::new(VirtualClock::at_epoch());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let registry = Arc::new(Registry::new());
    let store = Arc::new(Flaky {
        inner: MemoryStore::new(1000),
        down: Mutex::new(false),
    });
    let log: Arc<dyn DecisionLog> = store.clone();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    obs.lock()
        .unwrap()
        .declare("q", Duration::from_secs(900), Duration::from_secs(3600));
    let target = InstantTarget::default();
    target.set(2);
    let mut service = None;
    for spec in &config.services {
        let handle = registry.register(
            &spec.name,
            spec.engine.planner.bounds,
            spec.engine.planner.dry_run,
        );
        if spec.name == "w" {
            service = Some(
                ServiceLoop::new(
                    spec.engine.clone(),
                    target.clone(),
                    clock.clone(),
                    Arc::clone(&obs),
                    Arc::clone(&log),
                )
                .with_handle(handle),
            );
        }
    }
    let exporter = Arc::new(Exporter::new(&config.sources, Arc::clone(&dyn_clock)));
    let push = PushStore::new(Arc::clone(&dyn_clock));
    let mut state = ServerState::new(token.map(Secret::new), exporter, push);
    if with_services {
        state = state.with_services(Services::new(registry, log, dyn_clock));
    }
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(
        listener,
        server::router(state),
        cancel.clone(),
    ));
    Rig {
        base,
        client: reqwest::Client::new(),
        clock,
        obs,
        target,
        service: service.unwrap(),
        store,
        cancel,
        token,
    }
}

impl Rig {
    /// One second later, `q` reads `value`, and the loop ticks.
    async fn tick(&mut self, value: f64) -> Decision {
        self.clock.advance(Duration::from_secs(1));
        let at = self.clock.now();
        self.obs.lock().unwrap().push("q", Sample { value, at });
        self.service.tick().await.unwrap()
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method.parse().unwrap(), url);
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }
}

#[tokio::test]
async fn list_and_detail_show_bounds_counts_and_the_last_decision() {
    let mut rig = start(None, true).await;
    let (status, body) = rig.get("/api/v1/services").await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<_> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["idle", "w"]);
    let idle = &body["services"][0];
    assert_eq!(idle["configured"], json!({"min": 0, "max": 3}));
    assert_eq!(idle["desired"], Value::Null);
    assert_eq!(idle["last_decision"], Value::Null);

    let d = rig.tick(5.0).await;
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 5 });
    let (_, body) = rig.get("/api/v1/services").await;
    let w = &body["services"][1];
    assert_eq!(w["configured"], json!({"min": 1, "max": 10}));
    assert_eq!(w["effective"], json!({"min": 1, "max": 10}));
    assert_eq!(
        (w["desired"].as_u64(), w["running"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(w["paused"], json!({"in": false, "out": false}));
    assert_eq!(w["override"], Value::Null);
    assert_eq!(w["dry_run"], false);
    assert_eq!(w["last_decision"]["action"]["action"], "scale_out");
    assert_eq!(w["last_decision"]["sentence"], d.sentence());
    assert_eq!(w["last_change"], w["last_decision"], "it scaled");
    assert_eq!(w["last_tick"], rig.clock.now().to_string());
    assert_eq!(idle["last_change"], Value::Null);

    let (status, detail) = rig.get("/api/v1/services/w").await;
    assert_eq!(status, 200);
    assert_eq!(detail["desired"], 5);
    let decisions = detail["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["sentence"], d.sentence());
    assert_eq!(decisions[0]["asks"][0]["policy"], d.asks[0].policy);
    assert!(
        !decisions[0]["asks"][0]["reason"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(decisions[0]["rule"], "largest_scale_out");

    // A hold after it: the last decision is the hold, the last change still the
    // scale-out.
    let hold = rig.tick(5.0).await;
    assert!(matches!(hold.action, Action::Hold { .. }), "{hold:?}");
    let (_, body) = rig.get("/api/v1/services").await;
    let w = &body["services"][1];
    assert_eq!(w["last_decision"]["action"]["action"], "hold");
    assert_eq!(w["last_change"]["sentence"], d.sentence());
    assert_eq!(w["sources"], json!([{"name": "q", "status": "fresh"}]));

    // A source whose read fails: the service's sources say so, with the reason.
    rig.clock.advance(Duration::from_secs(1));
    let at = rig.clock.now();
    rig.obs.lock().unwrap().fail("q", at, "connection refused");
    rig.service.tick().await.unwrap();
    let (_, body) = rig.get("/api/v1/services").await;
    let q = &body["services"][1]["sources"][0];
    assert_eq!(
        (&q["name"], &q["status"]),
        (&json!("q"), &json!("failing")),
        "{q}"
    );
    assert_eq!(q["failure"]["reason"], "connection refused");
    assert_eq!(q["failure"]["streak"], 1);
}

#[tokio::test]
async fn decisions_page_newest_first_with_a_cursor() {
    let mut rig = start(Some("tok"), true).await;
    let mut sentences = Vec::new();
    for n in 1..=7 {
        sentences.push(rig.tick(f64::from(n)).await.sentence());
    }
    sentences.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/v1/services/w/decisions?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = rig.get(&path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        let page = body["decisions"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|d| d["sentence"].as_str().unwrap().to_owned()),
        );
        match body["next"].as_u64() {
            Some(next) => path = format!("/api/v1/services/w/decisions?limit=3&before={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, sentences);
    let (_, body) = rig.get("/api/v1/services/w/decisions").await;
    assert_eq!(body["decisions"].as_array().unwrap().len(), 7);
    assert_eq!(body["next"], Value::Null);
    let (_, body) = rig.get("/api/v1/services/idle/decisions").await;
    assert_eq!(body["decisions"], json!([]));
}

#[tokio::test]
async fn a_paused_scale_in_holds_until_resumed() {
    let mut rig = start(None, true).await;
    assert_eq!(
        rig.tick(6.0).await.action,
        Action::ScaleOut { from: 2, to: 6 }
    );
    let (status, body) = rig
        .call(
            "POST",
            "/api/v1/services/w/pause",
            Some(json!({"direction": "in"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paused"], json!({"in": true, "out": false}));

    let d = rig.tick(2.0).await;
    assert_eq!(d.action, Action::Hold { at: 6 });
    assert!(
        d.sentence().contains("paused by operator (scale-in)"),
        "{}",
        d.sentence()
    );
    assert_eq!(rig.target.count(), 6);
    // Scale-out still goes through.
    assert_eq!(
        rig.tick(8.0).await.action,
        Action::ScaleOut { from: 6, to: 8 }
    );
    let (_, w) = rig.get("/api/v1/services/w").await;
    assert_eq!(w["paused"], json!({"in": true, "out": false}));

    // Resume with no body: both directions.
    let (status, body) = rig.call("POST", "/api/v1/services/w/resume", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paused"], json!({"in": false, "out": false}));
    assert_eq!(
        rig.tick(2.0).await.action,
        Action::ScaleIn { from: 8, to: 2 }
    );
    assert_eq!(rig.target.count(), 2);

    // Both paused: nothing moves either way.
    rig.call(
        "POST",
        "/api/v1/services/w/pause",
        Some(json!({"direction": "both"})),
    )
    .await;
    assert_eq!(rig.tick(9.0).await.action, Action::Hold { at: 2 });
    assert_eq!(rig.tick(1.0).await.action, Action::Hold { at: 2 });
}

#[tokio::test]
async fn an_override_applies_until_it_expires_on_virtual_time() {
    let mut rig = start(None, true).await;
    let (status, body) = rig
        .call(
            "PUT",
            "/api/v1/services/w/override",
            Some(json!({"min": 4, "max": 6, "for": "30m"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["override"]["min"], 4);
    assert_eq!(body["override"]["active"], true);

    let d = rig.tick(9.0).await;
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 6 });
    assert!(
        d.sentence().contains("operator override max 6"),
        "{}",
        d.sentence()
    );
    let (_, w) = rig.get("/api/v1/services/w").await;
    assert_eq!(w["effective"], json!({"min": 4, "max": 6}));
    assert_eq!(w["configured"], json!({"min": 1, "max": 10}));
    assert_eq!(w["override"]["max"], 6);
    assert_eq!(
        rig.tick(1.0).await.action,
        Action::ScaleIn { from: 6, to: 4 }
    );

    // 30 minutes later the configured bounds are back.
    rig.clock.advance(Duration::from_secs(1800));
    let d = rig.tick(9.0).await;
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 9 });
    assert_eq!((d.min, d.max), (1, 10));
    let (_, w) = rig.get("/api/v1/services/w").await;
    assert_eq!(w["effective"], json!({"min": 1, "max": 10}));
    assert_eq!(w["override"], Value::Null);

    // An override removed by DELETE stops at once.
    rig.call(
        "PUT",
        "/api/v1/services/w/override",
        Some(json!({"max": 3, "for": "1h"})),
    )
    .await;
    let (status, body) = rig
        .call("DELETE", "/api/v1/services/w/override", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["removed"]["max"], 3);
    assert_eq!(rig.tick(9.0).await.action, Action::Hold { at: 9 });
}

#[tokio::test]
async fn bad_requests_name_the_field_and_change_nothing() {
    let rig = start(None, true).await;
    for (method, path, body, field) in [
        ("GET", "/api/v1/services/w/decisions?limit=0", None, "limit"),
        (
            "GET",
            "/api/v1/services/w/decisions?limit=9999",
            None,
            "limit",
        ),
        (
            "GET",
            "/api/v1/services/w/decisions?before=soon",
            None,
            "before",
        ),
        ("GET", "/api/v1/services/w/decisions?page=2", None, "query"),
        (
            "POST",
            "/api/v1/services/w/pause",
            Some(json!({"direction": "up"})),
            "direction",
        ),
        (
            "POST",
            "/api/v1/services/w/pause",
            Some(json!({"way": "in"})),
            "way",
        ),
        (
            "PUT",
            "/api/v1/services/w/override",
            Some(json!({"min": 7, "max": 3, "for": "1m"})),
            "min",
        ),
        (
            "PUT",
            "/api/v1/services/w/override",
            Some(json!({"max": 10000, "for": "1m"})),
            "max",
        ),
        (
            "PUT",
            "/api/v1/services/w/override",
            Some(json!({"min": 2, "for": "9d"})),
            "for",
        ),
        (
            "PUT",
            "/api/v1/services/w/override",
            Some(json!({"min": 2})),
            "for",
        ),
        (
            "PUT",
            "/api/v1/services/w/override",
            Some(json!([1])),
            "body",
        ),
    ] {
        let (status, body) = rig.call(method, path, body).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(body["field"], field, "{method} {path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (_, w) = rig.get("/api/v1/services/w").await;
    assert_eq!(w["paused"], json!({"in": false, "out": false}));
    assert_eq!(w["override"], Value::Null);
}

#[tokio::test]
async fn unknown_services_are_404() {
    let rig = start(None, true).await;
    for (method, path, body) in [
        ("GET", "/api/v1/services/nope", None),
        ("GET", "/api/v1/services/nope/decisions", None),
        ("POST", "/api/v1/services/nope/pause", None),
        ("POST", "/api/v1/services/nope/resume", None),
        (
            "PUT",
            "/api/v1/services/nope/override",
            Some(json!({"min": 1, "for": "1m"})),
        ),
        ("DELETE", "/api/v1/services/nope/override", None),
    ] {
        let (status, body) = rig.call(method, path, body).await;
        assert_eq!(status, 404, "{method} {path}");
        assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    }
}

#[tokio::test]
async fn every_api_route_needs_the_token_but_readyz() {
    let rig = start(Some("s3cret"), true).await;
    for r in api::routes() {
        let path = r.path.replace("{name}", "w");
        for auth in [None, Some("Bearer wrong")] {
            let mut request = rig
                .client
                .request(r.method.parse().unwrap(), format!("{}{path}", rig.base));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            let expected = if r.protected { 401 } else { 200 };
            assert_eq!(response.status(), expected, "{} {path} {auth:?}", r.method);
        }
    }
    // A refused pause changed nothing.
    let (_, w) = rig.get("/api/v1/services/w").await;
    assert_eq!(w["paused"], json!({"in": false, "out": false}));
}

#[tokio::test]
async fn readyz_needs_the_services_and_a_store_that_answers() {
    let rig = start(Some("tok"), true).await;
    let response = rig
        .client
        .get(format!("{}/readyz", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"ready": true, "services": 2}));
    *rig.store.down.lock().unwrap() = true;
    let response = rig
        .client
        .get(format!("{}/readyz", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("disk on fire"),
        "{body}"
    );

    let bare = start(None, false).await;
    let (status, body) = bare.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body["error"].as_str().unwrap().contains("not loaded"),
        "{body}"
    );
    let (status, _) = bare.get("/api/v1/services").await;
    assert_eq!(status, 503);
}

/// Every route of the listener: the API's table plus the routes of `server.rs` and of
/// the webhooks, which are not built from it.
fn listener_routes() -> BTreeSet<(String, String)> {
    let mut all: BTreeSet<_> = api::routes()
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/metrics/{name}"),
        ("POST", "/api/v1/reload"),
        ("POST", "/webhooks/alertmanager"),
        ("POST", "/webhooks/grafana"),
    ] {
        all.insert((method.to_owned(), path.to_owned()));
    }
    all
}

#[tokio::test]
async fn the_openapi_document_is_the_checked_in_file_and_lists_every_route() {
    let rig = start(None, true).await;
    let (status, served) = rig.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .unwrap();
    let file: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");

    let documented: BTreeSet<(String, String)> = served["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let routes = listener_routes();
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );

    // Every documented operation is served: the router answers it (no routing 404 with
    // an empty body, no 405).
    for (method, path) in &documented {
        let url = format!("{}{}", rig.base, path.replace("{name}", "w"));
        let response = rig
            .client
            .request(method.parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        assert!(
            status != 405 && !(status == 404 && body.is_empty()),
            "{method} {path} is documented but not routed ({status})"
        );
    }
}

/// 10,000 services: loops recording their ticks from several threads while the API
/// lists them; every service is listed with its latest decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_services_list_while_they_tick() {
    use capstan_core::model::Bounds;

    let clock = Arc::new(VirtualClock::at_epoch());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let registry = Arc::new(Registry::new());
    let names: Vec<String> = (0..10_000).map(|i| format!("svc-{i:05}")).collect();
    let handles: Vec<_> = names
        .iter()
        .map(|n| registry.register(n, Bounds { min: 1, max: 10 }, false))
        .collect();
    let record = |round: u32| {
        for h in &handles {
            let d = Decision {
                service: h.name().to_owned(),
                at: clock.now(),
                capacity: Capacity {
                    desired: round,
                    running: round,
                    pending: 0,
                },
                asks: Vec::new(),
                rule: capstan_core::decision::Rule::NoVotes,
                winner: None,
                combined: round,
                min: 1,
                max: 10,
                steps: Vec::new(),
                action: Action::Hold { at: round },
                dry_run: false,
            };
            h.record_decision(&d, clock.now());
        }
    };
    record(1);
    let config = config::compile(CONFIG, "t.toml", &|_| None).unwrap();
    let exporter = Arc::new(Exporter::new(&config.sources, Arc::clone(&dyn_clock)));
    let state = ServerState::new(None, exporter, PushStore::new(Arc::clone(&dyn_clock)))
        .with_services(Services::new(
            Arc::clone(&registry),
            Arc::new(MemoryStore::new(10)),
            dyn_clock,
        ));
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(
        listener,
        server::router(state),
        cancel.clone(),
    ));
    let writer = {
        let handles = handles.clone();
        std::thread::spawn(move || {
            for round in 2..=20u32 {
                for h in &handles {
                    h.pause(capstan_core::controls::Direction::In);
                    h.resume(capstan_core::controls::Direction::In);
                    h.record_error(
                        format!("round {round}"),
                        capstan_core::Timestamp::UNIX_EPOCH,
                    );
                }
            }
        })
    };
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let body: Value = client
            .get(format!("{base}/api/v1/services"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed = body["services"].as_array().unwrap();
        assert_eq!(listed.len(), 10_000);
        assert_eq!(listed[0]["name"], "svc-00000");
        assert_eq!(listed[9_999]["last_decision"]["action"]["desired"], 1);
    }
    writer.join().unwrap();
    cancel.cancel();
}
