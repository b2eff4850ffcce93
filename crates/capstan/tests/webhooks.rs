//! The alert webhooks in-process on an ephemeral loopback port: both payloads (the
//! fixtures under `fixtures/webhooks/`), routing by label and by an `alert` policy's
//! selector, unknown services, auth (listener token, per-webhook token), 400 naming the
//! field with nothing changed, 413, and the wake hook.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::config::Secret;
use capstan::server::webhooks::{AlertRoutes, WebhookSettings, Webhooks};
use capstan::server::{self, Exporter, ServerState};
use capstan_core::alerts::{AlertSelector, AlertStatus};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_sources::PushStore;
use tokio_util::sync::CancellationToken;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap()
}

struct Running {
    base: String,
    obs: SharedObservations,
    clock: Arc<VirtualClock>,
    woken: Arc<Mutex<Vec<String>>>,
    cancel: CancellationToken,
    client: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(listener_token: Option<&str>, webhook_token: Option<&str>) -> Running {
    let clock = Arc::new(VirtualClock::at_epoch());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let routes = AlertRoutes::new(
        ["worker".to_owned(), "mailer".to_owned(), "api".to_owned()],
        vec![(
            "api".to_owned(),
            AlertSelector {
                alertname: Some("High memory usage".into()),
                labels: BTreeMap::from([("team".to_owned(), "blue".to_owned())]),
            },
        )],
    );
    let woken = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&woken);
    let hooks = Webhooks::new(Arc::clone(&obs), Arc::clone(&dyn_clock), routes)
        .alertmanager(WebhookSettings {
            token: webhook_token.map(Secret::new),
            ..WebhookSettings::default()
        })
        .on_change(Arc::new(move |s: &str| {
            sink.lock().unwrap().push(s.to_owned());
        }));
    let exporter = Arc::new(Exporter::new(&[], Arc::clone(&dyn_clock)));
    let state = ServerState::new(
        listener_token.map(Secret::new),
        exporter,
        PushStore::new(dyn_clock),
    )
    .with_alerts(Arc::new(hooks));
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(
        listener,
        server::router(state),
        cancel.clone(),
    ));
    Running {
        base,
        obs,
        clock,
        woken,
        cancel,
        client: reqwest::Client::new(),
    }
}

impl Running {
    async fn post(&self, kind: &str, auth: Option<&str>, body: String) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .post(format!("{}/webhooks/{kind}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = auth {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    fn alerts(&self, service: &str) -> Vec<(String, AlertStatus, Option<f64>)> {
        let obs = self.obs.lock().unwrap();
        obs.alerts()
            .service(service)
            .map(|(f, a)| (f.to_owned(), a.status, a.value(Some("B")).map(|v| v.0)))
            .collect()
    }
}

#[tokio::test]
async fn alertmanager_payload_routes_by_the_service_label() {
    let s = start(None, None).await;
    let (status, summary) = s
        .post("alertmanager", None, fixture("alertmanager.json"))
        .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["received"], 2);
    assert_eq!(summary["applied"]["worker"], 1);
    assert_eq!(summary["applied"]["mailer"], 1);
    assert_eq!(
        s.alerts("worker"),
        vec![(
            "5ef77f1f8a3ecfa4".to_owned(),
            AlertStatus::Firing,
            Some(523.0)
        )]
    );
    assert_eq!(s.alerts("mailer")[0].1, AlertStatus::Resolved);
    let mut woken = s.woken.lock().unwrap().clone();
    woken.sort();
    assert_eq!(woken, vec!["mailer", "worker"]);
    // The same notification again changes no state and wakes nobody.
    s.woken.lock().unwrap().clear();
    s.clock.advance(Duration::from_secs(30));
    let (status, summary) = s
        .post("alertmanager", None, fixture("alertmanager.json"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(summary["changed"], serde_json::json!([]));
    assert!(s.woken.lock().unwrap().is_empty());
    let obs = s.obs.lock().unwrap();
    let (_, a) = obs.alerts().service("worker").next().unwrap();
    assert_eq!(
        a.received_at,
        s.clock.now(),
        "the refresh time comes from the clock"
    );
}

#[tokio::test]
async fn grafana_payload_from_the_docs_routes_by_a_policy_selector() {
    let s = start(None, None).await;
    let (status, summary) = s.post("grafana", None, fixture("grafana.json")).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["received"], 2);
    assert_eq!(summary["applied"]["api"], 1);
    // "High CPU usage" has no service label and no policy selects it.
    assert_eq!(summary["unmatched"], 1);
    let api = s.alerts("api");
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].0, "c6eadffa33fcdf37");
    assert!((api[0].2.unwrap() - 44.239_437_375_419_08).abs() < 1e-9);
}

#[tokio::test]
async fn unknown_services_are_counted_not_fatal() {
    let s = start(None, None).await;
    let body =
        fixture("alertmanager.json").replace("\"service\": \"mailer\"", "\"service\": \"ghost\"");
    let (status, summary) = s.post("alertmanager", None, body).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["unknown_services"]["ghost"], 1);
    assert_eq!(summary["applied"]["worker"], 1);
    assert!(s.alerts("ghost").is_empty());
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_field_and_change_nothing() {
    let s = start(None, None).await;
    let cases = [
        (
            "alertmanager",
            fixture("alertmanager.json").replacen(
                "\"status\": \"resolved\"",
                "\"status\": \"gone\"",
                1,
            ),
            "alerts[1].status",
        ),
        (
            "alertmanager",
            fixture("alertmanager.json").replace("\"version\": \"4\"", "\"version\": \"3\""),
            "version",
        ),
        (
            "grafana",
            fixture("grafana.json").replacen("\"C\": 1", "\"C\": \"one\"", 1),
            "alerts[0].values.C",
        ),
        ("grafana", "{\"status\": \"firing\"}".to_owned(), "alerts"),
        ("grafana", "{not json".to_owned(), "body"),
    ];
    for (kind, body, field) in cases {
        let (status, answer) = s.post(kind, None, body).await;
        assert_eq!(status, 400, "{kind} {field}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert!(s.obs.lock().unwrap().alerts().is_empty());
    assert!(s.woken.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let s = start(None, None).await;
    let big = format!(
        "{{\"version\":\"4\",\"status\":\"firing\",\"alerts\":[],\"pad\":\"{}\"}}",
        "x".repeat(server::webhooks::MAX_WEBHOOK_BODY)
    );
    let (status, answer) = s.post("alertmanager", None, big).await;
    assert_eq!(status, 413, "{answer}");
    assert!(s.obs.lock().unwrap().alerts().is_empty());
}

#[tokio::test]
async fn auth_accepts_the_listener_token_or_the_webhooks_own() {
    // No token anywhere: open.
    let open = start(None, None).await;
    assert_eq!(
        open.post("alertmanager", None, fixture("alertmanager.json"))
            .await
            .0,
        200
    );

    // Listener token only.
    let s = start(Some("listener-secret"), None).await;
    for bad in [None, Some("wrong"), Some("listener-secre")] {
        let (status, answer) = s
            .post("alertmanager", bad, fixture("alertmanager.json"))
            .await;
        assert_eq!(status, 401, "{bad:?}");
        assert!(!answer.to_string().contains("listener-secret"));
    }
    assert_eq!(
        s.post(
            "alertmanager",
            Some("listener-secret"),
            fixture("alertmanager.json")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post("grafana", Some("listener-secret"), fixture("grafana.json"))
            .await
            .0,
        200
    );

    // Listener token and a token for the Alertmanager route.
    let s = start(Some("listener-secret"), Some("am-secret")).await;
    assert_eq!(
        s.post("alertmanager", None, fixture("alertmanager.json"))
            .await
            .0,
        401
    );
    assert_eq!(
        s.post("alertmanager", Some("nope"), fixture("alertmanager.json"))
            .await
            .0,
        401
    );
    assert_eq!(
        s.post(
            "alertmanager",
            Some("am-secret"),
            fixture("alertmanager.json")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            "alertmanager",
            Some("listener-secret"),
            fixture("alertmanager.json")
        )
        .await
        .0,
        200
    );
    // The Alertmanager token is good for its own route only.
    assert_eq!(
        s.post("grafana", Some("am-secret"), fixture("grafana.json"))
            .await
            .0,
        401
    );
    // Nor for the rest of the listener.
    let response = s
        .client
        .get(format!("{}/metrics", s.base))
        .header("authorization", "Bearer am-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A per-webhook token without a listener token still closes the route.
    let s = start(None, Some("am-secret")).await;
    assert_eq!(
        s.post("alertmanager", None, fixture("alertmanager.json"))
            .await
            .0,
        401
    );
    assert_eq!(
        s.post(
            "alertmanager",
            Some("am-secret"),
            fixture("alertmanager.json")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post("grafana", None, fixture("grafana.json")).await.0,
        200
    );
}

/// A notification that changes the state calls the wake hook before the answer leaves:
/// the round trip bounds the time from the webhook to the hook. 200 changes, p99 printed
/// (`cargo test -p capstan --test integration webhooks:: -- --nocapture`); the bound asserted is loose
/// (debug build, shared machine), the goal is under 10 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_the_wake_hook_within_milliseconds() {
    let s = start(None, None).await;
    let template = fixture("alertmanager.json");
    let mut took = Vec::with_capacity(200);
    for i in 0..200 {
        let body = template.replace("\"value\": \"523\"", &format!("\"value\": \"{}\"", 200 + i));
        let woken_before = s.woken.lock().unwrap().len();
        let started = tokio::time::Instant::now();
        let (status, summary) = s.post("alertmanager", None, body).await;
        took.push(started.elapsed());
        assert_eq!(status, 200, "{summary}");
        let expected = if i == 0 {
            serde_json::json!(["mailer", "worker"])
        } else {
            serde_json::json!(["worker"])
        };
        assert_eq!(summary["changed"], expected);
        assert!(s.woken.lock().unwrap().len() > woken_before);
    }
    took.sort();
    let p50 = took[took.len() / 2];
    let p99 = took[took.len() * 99 / 100];
    eprintln!(
        "webhook -> wake hook (round trip): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
}

#[tokio::test]
async fn webhooks_built_from_a_config_use_its_tokens_and_policies() {
    let text = std::fs::read_to_string(format!(
        "{}/../../fixtures/config/valid/alert.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let env = |name: &str| (name == "API_TOKEN").then(|| "am-token".to_owned());
    let config = capstan::config::compile(&text, "alert.toml", &env).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::at_epoch());
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let hooks =
        Arc::new(Webhooks::from_config(&config, Arc::clone(&obs), Arc::clone(&clock)).unwrap());
    let state = ServerState::new(
        None,
        Arc::new(Exporter::new(&[], Arc::clone(&clock))),
        PushStore::new(clock),
    )
    .with_alerts(Arc::clone(&hooks));
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(
        listener,
        server::router(state),
        cancel.clone(),
    ));
    let client = reqwest::Client::new();
    let post = |token: Option<&'static str>| {
        let mut r = client
            .post(format!("{base}/webhooks/alertmanager"))
            .body(fixture("alertmanager.json"));
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    let response = post(Some("am-token")).await.unwrap();
    assert_eq!(response.status(), 200);
    let summary: serde_json::Value = response.json().await.unwrap();
    // `worker` by its label; `mailer` is not configured.
    assert_eq!(summary["applied"]["worker"], 1, "{summary}");
    assert_eq!(summary["unknown_services"]["mailer"], 1, "{summary}");

    // A reload with another token and a `mailer` service: the old token is refused, and
    // the alert labelled for `mailer` goes there, not to the other service whose policy
    // selects `QueueHigh` too.
    let reloaded_text = format!(
        "{}\n[[services]]\nname = \"mailer\"\nmax = 2\ntarget = {{ kind = \"process\", command = [\"true\"] }}\n[[services.policies]]\nkind = \"alert\"\nalert = \"QueueHigh\"\n",
        text.replace(
            "token = \"${API_TOKEN}\"          #",
            "token = \"new-token\" #"
        )
    );
    let reloaded = capstan::config::compile(&reloaded_text, "alert.toml", &env).unwrap();
    hooks.reload(&reloaded).unwrap();
    assert_eq!(post(Some("am-token")).await.unwrap().status(), 401);
    let summary: serde_json::Value = post(Some("new-token")).await.unwrap().json().await.unwrap();
    assert_eq!(summary["applied"]["mailer"], 1, "{summary}");
    cancel.cancel();

    // A token file that cannot be read names the webhook and the file.
    let mut broken = config.clone();
    broken.webhooks.grafana.token = Some(capstan::config::TokenSource::File(
        "/nonexistent/capstan-grafana-token".into(),
    ));
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::at_epoch());
    let err = Webhooks::from_config(&broken, obs, clock)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("webhooks.grafana.token_file /nonexistent/capstan-grafana-token:"),
        "{err}"
    );
}

#[tokio::test]
async fn the_service_label_wins_over_policy_selectors() {
    let s = start(None, None).await;
    // "High memory usage" with team=blue is selected by `api`'s policy, but the label
    // names `worker`: it goes to `worker` only.
    let body = fixture("grafana.json").replacen(
        "\"team\": \"blue\",",
        "\"team\": \"blue\", \"service\": \"worker\",",
        1,
    );
    let (status, summary) = s.post("grafana", None, body).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary["applied"],
        serde_json::json!({"worker": 1}),
        "{summary}"
    );
    assert!(s.alerts("api").is_empty());
}
