//! Nothing the work registry answered is lost when capstan is killed: the real binary,
//! scaling an ECS service on moto (whose tasks outlive capstan, as on AWS), takes 200
//! session reports, is killed with SIGKILL right after the last answer, and a new
//! capstan on the same store lists every one of them.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::Path;
use std::time::Duration;

use capstan_testkit::aws_proxy::AwsProxy;
use capstan_testkit::moto::{self, REGION};
use capstan_testkit::moto_ecs::EcsFixture;
use capstan_testkit::servers::free_port;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{client, ready, start, task_url};
use tokio::time::Instant;

fn config(port: u16, store: &Path, fixture: &EcsFixture, endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
path = "{store}"

# Never pushed: the service holds (no data, no scale-in), the registry is what is tested.
[sources.load]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[[services]]
name = "api"
min = 1
max = 4
interval = "200ms"
target = {{ kind = "ecs", cluster = "{cluster}", service = "{service}", endpoint_url = "{endpoint}", region = "{REGION}"{extra} }}
work = {{ ttl = "1h" }}

[[services.policies]]
kind = "target_tracking"
metric = "load"
mode = "total"
target = 10
"#,
        store = store.display(),
        cluster = fixture.cluster,
        service = fixture.service,
    )
}

/// An ECS service of 2 running tasks on moto behind the proxy, and a directory holding a
/// config scaling it (with `extra` keys on its target): the fixture, the proxy, the
/// directory and capstan's base URL.
async fn setup(extra: &str) -> (EcsFixture, AwsProxy, tempfile::TempDir, String) {
    let moto = moto::moto();
    let fixture = moto.ecs_service(2, 2);
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("capstan.toml"),
        config(
            port,
            &dir.path().join("capstan.db"),
            &fixture,
            &proxy.endpoint_url(),
            extra,
        ),
    )
    .unwrap();
    (fixture, proxy, dir, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_reports_survive_a_sigkill() {
    let (fixture, _proxy, dir, base) = setup("").await;
    let http = client();

    let mut first = start(dir.path());
    ready(&http, &base, &fixture.tasks).await;
    // 200 sessions, 100 per task, reported concurrently.
    let mut reports = tokio::task::JoinSet::new();
    for i in 0..200 {
        let http = http.clone();
        let url = format!("{}/sessions/s-{i}", task_url(&base, &fixture.tasks[i % 2]));
        reports.spawn(async move { http.put(url).send().await.unwrap().status() });
    }
    while let Some(status) = reports.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }
    // Killed the instant the last answer arrived: no orderly shutdown.
    first.start_kill().unwrap();
    first.wait().await.unwrap();

    let mut second = start(dir.path());
    ready(&http, &base, &fixture.tasks).await;
    for task in &fixture.tasks {
        let work: Value = http
            .get(format!("{}/work", task_url(&base, task)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(work["sessions"], json!(100), "{task}: {work}");
    }
    second.start_kill().unwrap();
    second.wait().await.unwrap();
}

/// With `protection`, a workload reported to the registry protects its task through
/// the SDK (UpdateTaskProtection, answered by the proxy in front of moto), and its end
/// releases it after `release_after_idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_workload_protects_its_task() {
    let (fixture, proxy, dir, base) = setup(
        r#", protection = { protect_for = "30m", release_after_idle = "1s", extend_at = "20m" }"#,
    )
    .await;
    let http = client();
    let mut capstan = start(dir.path());
    ready(&http, &base, &fixture.tasks).await;
    let (a, b) = (&fixture.tasks[0], &fixture.tasks[1]);
    let url = format!("{}/workloads/job-1", task_url(&base, a));
    assert_eq!(
        http.post(&url).send().await.unwrap().status(),
        StatusCode::CREATED
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.protected_until(a).is_none() {
        assert!(Instant::now() < deadline, "the task was never protected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = capstan_core::clock::Clock::now(&capstan_core::clock::SystemClock).as_millisecond()
        as f64
        / 1000.0;
    let left = proxy.protected_until(a).unwrap() - now;
    assert!(
        (1700.0..=1800.0).contains(&left),
        "protected for 30 min: {left}"
    );
    assert!(
        proxy.protected_until(b).is_none(),
        "the idle task is not protected"
    );
    assert_eq!(
        http.delete(&url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.protected_until(a).is_some() {
        assert!(
            Instant::now() < deadline,
            "the protection was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The proxy has applied the release; capstan counts it once the answer is back.
    let released = r#"capstan_protection_changes_total{service="api",change="release"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(released) || Instant::now() >= deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metrics.contains(r#"capstan_protection_changes_total{service="api",change="enable"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(released), "{metrics}");
    capstan.start_kill().unwrap();
    capstan.wait().await.unwrap();
}
