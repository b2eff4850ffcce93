//! End to end with the real alerting stack: a private Prometheus scrapes a metric served
//! by the test, a rule fires, a private Alertmanager posts the webhook (with its own
//! per-webhook token) to capstan's listener in-process, the service's alert state
//! changes and its wake hook is called, and the service's engine, evaluated on those
//! observations, asks to scale out; then the metric drops, the resolved notification
//! arrives and the engine asks to scale in.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::routing::get;
use capstan::config::{self, Secret};
use capstan::server::webhooks::{AlertRoutes, WebhookSettings, Webhooks};
use capstan::server::{self, Exporter, ServerState};
use capstan_core::alerts::AlertStatus;
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::decision::Action;
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::Capacity;
use capstan_sources::PushStore;
use capstan_testkit::prometheus::{Alertmanager, Prometheus, scrape_config};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[services]]
name = "worker"
min = 1
max = 10
target = { kind = "process", command = ["true"] }
cooldown = { out = "0s", in = "0s" }
scale_in = { stabilization = "0s" }

[[services.policies]]
kind = "alert"
alert = "QueueHigh"
threshold = 100
step = 2
in_step = 1
"#;

const RULES: &str = r#"groups:
  - name: capstan
    interval: 1s
    rules:
      - alert: QueueHigh
        expr: jobs_queue_depth > 50
        labels:
          service: worker
        annotations:
          value: "{{ $value }}"
"#;

/// Polls `check` every 100 ms until it returns Some, at most `limit`.
async fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_fires_and_resolves_through_the_webhook() {
    let started = Instant::now();
    // The metric Prometheus scrapes.
    let depth = Arc::new(AtomicU64::new(500));
    let served = Arc::clone(&depth);
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap().to_string();
    let cancel = CancellationToken::new();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let v = served.load(Ordering::SeqCst);
            async move {
                format!("# TYPE jobs_queue_depth gauge\njobs_queue_depth{{queue=\"jobs\"}} {v}\n")
            }
        }),
    );
    tokio::spawn(server::serve(metrics, app, cancel.clone()));

    // capstan's listener with the webhooks, a listener token and an Alertmanager token.
    let config = config::compile(CONFIG, "t.toml", &|_| None).unwrap();
    let engine = config.services[0].engine.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let woken = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let sink = Arc::clone(&woken);
    let hooks = Webhooks::new(
        Arc::clone(&obs),
        Arc::clone(&clock),
        AlertRoutes::from_engines([&engine]),
    )
    .alertmanager(WebhookSettings {
        token: Some(Secret::new("am-secret")),
        ..WebhookSettings::default()
    })
    .on_change(Arc::new(move |s: &str| {
        sink.lock().unwrap().push((s.to_owned(), Instant::now()));
    }));
    let state = ServerState::new(
        Some(Secret::new("listener-secret")),
        Arc::new(Exporter::new(&[], Arc::clone(&clock))),
        PushStore::new(Arc::clone(&clock)),
    )
    .with_alerts(Arc::new(hooks));
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let capstan = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        server::router(state),
        cancel.clone(),
    ));

    // Alertmanager posting to capstan, then Prometheus sending to Alertmanager.
    let am_config = format!(
        "route:\n  receiver: capstan\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: capstan\n    webhook_configs:\n      - url: http://{capstan}/webhooks/alertmanager\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials: am-secret\n"
    );
    let alertmanager = tokio::task::spawn_blocking(move || Alertmanager::start(&am_config))
        .await
        .unwrap();
    let prom_config = format!(
        "{}alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{}\"]\n",
        scrape_config("jobs", "/metrics", &[&metrics_addr], &["rules.yml"]),
        alertmanager.address()
    );
    let prometheus = tokio::task::spawn_blocking(move || {
        Prometheus::start(&prom_config, &[("rules.yml", RULES)])
    })
    .await
    .unwrap();

    // Firing: the state for `worker` changes and its loop would be woken.
    let fingerprint = wait_for(Duration::from_secs(30), "the firing alert", || {
        let obs = obs.lock().unwrap();
        obs.alerts()
            .service("worker")
            .find(|(_, a)| a.status == AlertStatus::Firing)
            .map(|(f, a)| {
                assert_eq!(a.alertname(), "QueueHigh");
                assert_eq!(a.value(None).map(|v| v.0), Some(500.0));
                f.to_owned()
            })
    })
    .await;
    assert_eq!(
        woken.lock().unwrap().first().map(|w| w.0.as_str()),
        Some("worker")
    );
    let fired_after = started.elapsed();

    // The engine asks for more: 3 + step 2.
    let mut engine_state = engine.initial_state();
    let capacity = Capacity {
        desired: 3,
        running: 3,
        pending: 0,
    };
    let decision = {
        let obs = obs.lock().unwrap();
        engine.evaluate(&mut engine_state, capacity, &obs, clock.now())
    };
    assert!(
        matches!(decision.action, Action::ScaleOut { to: 5, .. }),
        "{}",
        decision.sentence()
    );
    assert!(
        decision.asks[0].reason.contains("QueueHigh"),
        "{}",
        decision.asks[0].reason
    );

    // The metric drops: resolved arrives, the engine asks for one fewer.
    depth.store(3, Ordering::SeqCst);
    wait_for(Duration::from_secs(30), "the resolved alert", || {
        let obs = obs.lock().unwrap();
        obs.alerts()
            .service("worker")
            .find(|(f, a)| *f == fingerprint && a.status == AlertStatus::Resolved)
            .map(|_| ())
    })
    .await;
    assert!(woken.lock().unwrap().len() >= 2);
    let decision = {
        let obs = obs.lock().unwrap();
        engine.evaluate(&mut engine_state, capacity, &obs, clock.now())
    };
    assert!(
        matches!(decision.action, Action::ScaleIn { to: 2, .. }),
        "{}",
        decision.sentence()
    );
    assert!(
        decision.asks[0].reason.contains("resolved"),
        "{}",
        decision.asks[0].reason
    );
    eprintln!(
        "firing seen after {:.1} s, resolved after {:.1} s (from the test's start)",
        fired_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(prometheus);
    drop(alertmanager);
    cancel.cancel();
}
