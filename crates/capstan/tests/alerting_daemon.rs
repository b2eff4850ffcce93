//! The whole loop with the real alerting stack and the daemon: a value pushed to capstan
//! is exported on its `/metrics`; a private Prometheus (Debian package) scrapes it and a
//! rule on it fires; a private Alertmanager posts its webhook (with the webhook's own
//! token) to the daemon; the alert policy scales the world model's ECS service out
//! at once (the service's interval is a minute: only the webhook's wake-up can explain
//! a prompt change). The value drops, the alert resolves, the service scales back in.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use capstan::config;
use capstan::daemon::services::world_targets;
use capstan::daemon::{self, RunOptions};
use capstan_core::clock::SystemClock;
use capstan_testkit::prometheus::{Alertmanager, Prometheus, scrape_config};
use capstan_testkit::servers::free_port;
use capstan_world::{ServiceCounts, ServiceSpec, World, WorldConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const RULES: &str = r#"groups:
  - name: capstan
    interval: 1s
    rules:
      - alert: QueueHigh
        expr: capstan_source_value{source="queue"} > 100
        labels:
          service: api
        annotations:
          value: "{{ $value }}"
"#;

fn config(port: u16, target: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[webhooks.alertmanager]
token = "am-secret"

[store]
kind = "memory"

[sources.queue]
kind = "push"
ttl = "1h"
interval = "500ms"

[[services]]
name = "api"
min = 1
max = 10
interval = "60s"
{target}
cooldown = {{ out = "0s", in = "0s" }}
scale_in = {{ stabilization = "0s" }}

[[services.policies]]
kind = "alert"
alert = "QueueHigh"
threshold = 100
step = 2
in_step = 1
"#
    )
}

fn counts(world: &World) -> ServiceCounts {
    world.service_counts("prod", "api").unwrap()
}

async fn until(what: &str, world: &World, mut done: impl FnMut(&ServiceCounts) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        world.advance();
        let now = counts(world);
        if done(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_alert_scales_the_service_out_and_its_resolution_back_in() {
    let port = free_port();
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: "prod".into(),
            name: "api".into(),
            desired: 1,
            startup: Duration::from_millis(300),
            stop_timeout: Duration::from_millis(300),
            deprovisioning: Duration::from_millis(100),
            ..ServiceSpec::default()
        })
        .unwrap();
    let targets = world_targets(world.clone(), "prod");
    // Replaced by the world model's ECS service.
    let target = r#"target = { kind = "process", command = ["true"] }"#;
    let (daemon, cancel) = start(port, target, targets);
    let base = format!("http://127.0.0.1:{port}");
    push(&base, 500).await;
    let (prometheus, alertmanager) = alerting_stack(port).await;

    // Firing: 1 + step 2, well before the service's one-minute interval.
    until("the scale-out", &world, |c| c.desired == 3).await;
    until("three running tasks", &world, |c| c.running == 3).await;

    // The value drops: resolved → one fewer per evaluation.
    push(&base, 3).await;
    until("the scale-in", &world, |c| c.desired < 3).await;

    drop(prometheus);
    drop(alertmanager);
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}

/// The same alert, once through the AWS SDK: the service is an `ecs` target on moto
/// (behind the testkit's proxy, which fakes the task protection moto lacks), and the
/// webhook's scale-out lands as an UpdateService on moto's service. (moto keeps the
/// service's deployment in progress, so the scale-in after the resolution is held, as
/// AWS holds it: the world-model test above covers it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_alert_scales_an_ecs_service_out_through_the_sdk() {
    let moto = capstan_testkit::moto::moto();
    let fixture = moto.ecs_service(1, 1);
    assert_eq!(fixture.running_count(&moto), 1);
    let proxy = capstan_testkit::aws_proxy::AwsProxy::start(&moto.endpoint_url())
        .await
        .unwrap();
    let sdk = capstan_aws_sdk::SharedConfig::ready(capstan_aws_sdk::static_config(
        &proxy.endpoint_url(),
        capstan_testkit::moto::REGION,
        capstan_testkit::moto::ACCESS_KEY_ID,
        capstan_testkit::moto::SECRET_ACCESS_KEY,
    ));
    // The configured `ecs` target, built with the test's static credentials instead
    // of the standard chain's.
    let targets: capstan::daemon::services::TargetFactory =
        Arc::new(move |spec, parts: capstan::daemon::services::TargetParts| {
            let capstan_targets::TargetSpec::Ecs(ecs) = &spec.target else {
                return None;
            };
            let target = capstan_targets::EcsTarget::new(
                &spec.name,
                ecs.target.clone(),
                capstan_aws_sdk::SdkEcs::new(sdk.clone()),
                Some(capstan_aws_sdk::SdkElb::new(sdk.clone())),
                parts.work,
            );
            Some(Ok(capstan::daemon::services::AnyTarget::Ecs(Arc::new(
                target,
            ))))
        });
    let port = free_port();
    let target = format!(
        r#"target = {{ kind = "ecs", cluster = "{}", service = "{}", endpoint_url = "{}" }}"#,
        fixture.cluster,
        fixture.service,
        proxy.endpoint_url()
    );
    let (daemon, cancel) = start(port, &target, targets);
    let base = format!("http://127.0.0.1:{port}");
    push(&base, 500).await;
    let (prometheus, alertmanager) = alerting_stack(port).await;

    // Firing: 1 + step 2 on moto, well before the service's one-minute interval.
    let deadline = Instant::now() + Duration::from_secs(40);
    while fixture.desired_count(&moto) != 3 {
        assert!(
            Instant::now() < deadline,
            "desired {} on moto, waiting for 3",
            fixture.desired_count(&moto)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.calls("UpdateService"), 1);

    drop(prometheus);
    drop(alertmanager);
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}

/// Starts the daemon on `port` with the service's `target` line, its targets built by
/// `targets`.
fn start(
    port: u16,
    target: &str,
    targets: capstan::daemon::services::TargetFactory,
) -> (
    tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    CancellationToken,
) {
    let config = config::compile(&config(port, target), "test.toml", &|_| None).unwrap();
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(
        RunOptions {
            targets: Some(targets),
            ..RunOptions::new(config)
        },
        cancel.clone(),
    ));
    (daemon, cancel)
}

/// Pushes `value` to the daemon at `base`'s `queue` source, waiting for it to listen.
async fn push(base: &str, value: u32) {
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/metrics/queue");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client.post(&url).body(value.to_string()).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "capstan does not take the push");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private Alertmanager posting to the daemon on `port`, and a private Prometheus
/// scraping it with the rule, sending to that Alertmanager.
async fn alerting_stack(port: u16) -> (Prometheus, Alertmanager) {
    let base = format!("http://127.0.0.1:{port}");
    let am_config = format!(
        "route:\n  receiver: capstan\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: capstan\n    webhook_configs:\n      - url: {base}/webhooks/alertmanager\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials: am-secret\n"
    );
    let alertmanager = tokio::task::spawn_blocking(move || Alertmanager::start(&am_config))
        .await
        .unwrap();
    let target = format!("127.0.0.1:{port}");
    let prom_config = format!(
        "{}alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{}\"]\n",
        scrape_config("capstan", "/metrics", &[&target], &["rules.yml"]),
        alertmanager.address()
    );
    let prometheus = tokio::task::spawn_blocking(move || {
        Prometheus::start(&prom_config, &[("rules.yml", RULES)])
    })
    .await
    .unwrap();
    (prometheus, alertmanager)
}
