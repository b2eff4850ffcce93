//! The web page end to end, in a real headless Chromium driven over WebDriver
//! (chromedriver, through `fantoccini`), against the daemon run in-process with the
//! world model's ECS services behind it (`push` sources, a token configured):
//!
//! - the page and its assets are served without the token (right content types,
//!   `Cache-Control: no-cache`), the API is not;
//! - the page shows the token form and no data; a wrong token is refused; the right one
//!   shows the overview listing the services;
//! - pushed load scales `api` out: the overview's desired/running and last decision
//!   follow without a reload;
//! - the service view shows the chart (an SVG with the desired/running series and a
//!   marker per scaling decision, whose title is the decision's reason) and the
//!   decision list;
//! - "Pause scale-in" pauses it in the API (`paused.in`), and "Resume scale-in" lifts it;
//! - a scale-in whose deregistration is refused fails its workflow, shown as failed
//!   with a redrive button; once the permission is back, the button redrives it and it
//!   completes.
//!
//! Without chromedriver the browser test skips (loudly), unless `CI` is set: in CI it
//! fails. With `CAPSTAN_WEB_SCREENSHOTS=1` it also plays two minutes of changing load
//! and writes the screenshots `docs/img/web-overview.png` and
//! `docs/img/web-service.png` (run it with `cargo test`: it takes longer than nextest's
//! limit).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::browser;
use crate::in_process;

use std::path::Path;
use std::time::Duration;

use browser::{browser, chromedriver_for_test, text_of, wait_js};
use capstan::config;
use capstan::daemon::services::world_targets;
use capstan_aws_api::{AwsErrorKind, TaskStatus};
use capstan_core::clock::SystemClock;
use capstan_testkit::servers::free_port;
use capstan_world::{FaultRule, ServiceSpec, TargetGroupSpec, World, WorldConfig};
use fantoccini::{Client, Locator};
use in_process::Daemon;
use serde_json::json;
use tokio::time::Instant;

const CLUSTER: &str = "prod";
const TOKEN: &str = "web-e2e-token-1f3a";

fn config(port: u16, store: &Path) -> config::Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"

[store]
path = "{}"

[sources.load]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[sources.jobs]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[[services]]
name = "api"
min = 1
max = 10
interval = "250ms"
# Replaced by the world model's ECS service in this test.
target = {{ kind = "process", command = ["true"] }}
cooldown = {{ out = "0s", in = "0s" }}
scale_in = {{ stabilization = "0s" }}

[[services.policies]]
kind = "target_tracking"
metric = "load"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 1 }}

[[services]]
name = "worker"
min = 2
max = 20
interval = "1s"
target = {{ kind = "process", command = ["true"] }}

[[services.policies]]
kind = "target_tracking"
metric = "jobs"
mode = "total"
target = 100
"#,
        store.display()
    );
    config::compile(&text, "test.toml", &|_| None).unwrap()
}

fn world() -> World {
    // No API rate limits: the services here are evaluated many times a second, far
    // more often than a real deployment, and throttled observations would show as
    // failures on the page and stall the workflow's steps.
    let world = World::new(
        WorldConfig {
            rate_limits: false,
            ..WorldConfig::default()
        },
        SystemClock,
    );
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: "api".into(),
            desired: 2,
            startup: Duration::from_millis(100),
            stop_timeout: Duration::from_millis(200),
            deprovisioning: Duration::from_millis(100),
            target_group: Some(TargetGroupSpec {
                deregistration_delay: Duration::from_secs(300),
                routing_lag: Duration::from_millis(100),
                ..TargetGroupSpec::default()
            }),
            ..ServiceSpec::default()
        })
        .unwrap();
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: "worker".into(),
            desired: 3,
            startup: Duration::from_millis(100),
            stop_timeout: Duration::from_millis(200),
            deprovisioning: Duration::from_millis(100),
            ..ServiceSpec::default()
        })
        .unwrap();
    world
}

/// The daemon on `world`, its store at `store`.
fn start(world: &World, store: &Path) -> Daemon {
    let port = free_port();
    Daemon::start(
        config(port, store),
        port,
        world_targets(world.clone(), CLUSTER),
        Some(TOKEN),
    )
}

fn running(world: &World) -> usize {
    world
        .tasks(CLUSTER, "api")
        .into_iter()
        .filter(|t| t.status == TaskStatus::Running)
        .count()
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(page: &Client, file: &str, width: u32, height: u32) {
    if std::env::var_os("CAPSTAN_WEB_SCREENSHOTS").is_none() {
        return;
    }
    page.set_window_size(width, height).await.unwrap();
    page.execute("window.scrollTo(0, 0);", vec![])
        .await
        .unwrap();
    // Let a poll re-render at the new size.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let png = page.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/img")
        .join(file);
    std::fs::write(&path, png).unwrap();
    eprintln!("wrote {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_without_the_token_and_the_api_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let world = world();
    let d = start(&world, &dir.path().join("capstan.db"));
    d.get("/api/v1/services").await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let r = d
            .http
            .get(format!("{}{path}", d.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert!(header("content-security-policy").contains("script-src 'self'"));
        let body = r.text().await.unwrap();
        assert!(!body.is_empty());
        assert!(!body.contains(TOKEN));
    }
    let r = d
        .http
        .get(format!("{}/api/v1/services", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_scaling_pauses_and_redrives_a_failed_workflow() {
    let Some(driver) = chromedriver_for_test("the web page's end-to-end test").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let world = world();
    let d = start(&world, &dir.path().join("capstan.db"));
    d.push("load", 20).await;
    d.push("jobs", 250).await;
    until("api decided", async || {
        d.get("/api/v1/services/api").await["desired"] == 2
    })
    .await;
    let page = browser(&driver).await;

    // Without a token: the form, and no data.
    page.goto(&format!("{}/", d.base)).await.unwrap();
    wait_js(
        &page,
        "the token form",
        "!document.getElementById('auth').hidden && document.activeElement.id === 'token'",
    )
    .await;
    let rows = page
        .execute("return document.querySelectorAll('#services tbody tr').length + document.body.innerText.indexOf('worker');", vec![])
        .await
        .unwrap();
    assert_eq!(rows, json!(-1), "data shown without a token");
    // A wrong token is refused.
    page.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys("wrong")
        .await
        .unwrap();
    page.find(Locator::Css("#auth-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(&page, "the refusal", &text_of("#auth-error")).await;
    // The right one.
    page.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    page.find(Locator::Css("#auth-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let desired = r#"tr[data-service="api"] td[data-field="desired"]"#;
    wait_js(
        &page,
        "the overview lists api",
        &format!("{} === '2'", text_of(desired)),
    )
    .await;
    wait_js(
        &page,
        "the overview lists worker",
        "!!document.querySelector('tr[data-service=\"worker\"]')",
    )
    .await;
    assert_eq!(
        page.execute("return sessionStorage.getItem('capstan.token');", vec![])
            .await
            .unwrap(),
        json!(TOKEN)
    );

    // Load: api scales out, the overview follows without a reload.
    page.execute("window.__noReload = 42;", vec![])
        .await
        .unwrap();
    d.push("load", 60).await;
    wait_js(
        &page,
        "desired 6 in the overview",
        &format!("{} === '6'", text_of(desired)),
    )
    .await;
    let running_cell = r#"tr[data-service="api"] td[data-field="running"]"#;
    wait_js(
        &page,
        "running 6 in the overview",
        &format!("{}.startsWith('6')", text_of(running_cell)),
    )
    .await;
    let decision = r#"tr[data-service="api"] td[data-field="decision"]"#;
    wait_js(
        &page,
        "the last decision in the overview",
        &format!("{}.includes('scale out 2 → 6')", text_of(decision)),
    )
    .await;
    assert_eq!(
        page.execute("return window.__noReload;", vec![])
            .await
            .unwrap(),
        json!(42),
        "the page was reloaded"
    );
    screenshot(&page, "web-overview.png", 1360, 420).await;
    page.set_window_size(1360, 900).await.unwrap();

    // The service view: chart with its series and markers, the decisions.
    page.find(Locator::Css(r##"a[href="#/services/api"]"##))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &page,
        "the service view",
        &format!("{} === 'api'", text_of("#svc-title")),
    )
    .await;
    wait_js(
        &page,
        "the chart's desired series",
        "(document.querySelector('#chart svg path[data-series=\"desired\"]') || {getAttribute: () => ''}).getAttribute('d').length > 0",
    )
    .await;
    wait_js(
        &page,
        "the chart's running series",
        "!!document.querySelector('#chart svg path[data-series=\"running\"]')",
    )
    .await;
    let marker = wait_js(
        &page,
        "a scale-out marker with its reason",
        "Array.from(document.querySelectorAll('#chart .marker.out title')).map(t => t.textContent).find(t => t.includes('scale out 2 → 6'))",
    )
    .await;
    assert!(marker.as_str().unwrap().contains("load"), "{marker}");
    wait_js(
        &page,
        "the decision list",
        "Array.from(document.querySelectorAll('#decisions tbody tr')).some(r => r.textContent.includes('scale out 2 → 6'))",
    )
    .await;

    // Pause scale-in from the page: the API says so; then resume.
    let toggle = page.find(Locator::Css("#toggle-in")).await.unwrap();
    assert!(toggle.text().await.unwrap().contains("Pause scale-in"));
    toggle.click().await.unwrap();
    until("paused.in in the API", async || {
        d.get("/api/v1/services/api").await["paused"] == json!({"in": true, "out": false})
    })
    .await;
    wait_js(
        &page,
        "the page shows the pause",
        "document.getElementById('toggle-in').getAttribute('aria-pressed') === 'true' && document.getElementById('toggle-in').textContent.includes('Resume scale-in')",
    )
    .await;
    page.find(Locator::Css("#toggle-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("resumed in the API", async || {
        d.get("/api/v1/services/api").await["paused"]["in"] == false
    })
    .await;

    // For the screenshots only: two minutes of changing load, so the service view's
    // chart has a history to show; then back to 6 tasks.
    if std::env::var_os("CAPSTAN_WEB_SCREENSHOTS").is_some() {
        for load in [20, 35, 50, 70, 90, 80, 60, 45, 30, 40, 55, 60] {
            d.push("load", load).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        until("back at 6 running", async || {
            let c = world.service_counts(CLUSTER, "api").unwrap();
            c.desired == 6 && c.running == 6
        })
        .await;
    }

    // A scale-in whose deregistration is refused: its workflow fails.
    world.inject_fault(FaultRule::always(
        "DeregisterTargets",
        AwsErrorKind::AccessDenied,
    ));
    d.push("load", 30).await;
    let failed = wait_js(
        &page,
        "the failed workflow with its redrive button",
        "(() => { const w = Array.from(document.querySelectorAll('#workflows article')).find(a => a.querySelector('.wf-status').textContent.includes('failed')); return w && !w.querySelector('.redrive').hidden ? w.dataset.workflow : null; })()",
    )
    .await;
    let failed = failed.as_str().unwrap().to_owned();
    let shown = d.get(&format!("/api/v1/workflows/{failed}")).await;
    assert_eq!(shown["status"], "failed", "{shown:#}");
    assert_eq!(shown["step"], "deregister", "{shown:#}");
    assert_eq!(world.service_counts(CLUSTER, "api").unwrap().desired, 6);
    // Its journal, opened from the page.
    page.find(Locator::Css(&format!(
        r#"article[data-workflow="{failed}"] .journal-toggle"#
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_js(
        &page,
        "the journal",
        &format!(
            "{}.includes('failed')",
            text_of(&format!(r#"article[data-workflow="{failed}"] .journal"#))
        ),
    )
    .await;
    screenshot(&page, "web-service.png", 1360, 1900).await;
    page.set_window_size(1360, 900).await.unwrap();

    // The permission is back: redrive from the page.
    world.clear_faults();
    page.find(Locator::Css(&format!(
        r#"article[data-workflow="{failed}"] button.redrive"#
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !(world.service_counts(CLUSTER, "api").unwrap().desired == 3 && running(&world) == 3) {
        if Instant::now() >= deadline {
            let msg = page
                .execute(&format!("return {};", text_of("#workflows")), vec![])
                .await
                .unwrap();
            let shown = d.get(&format!("/api/v1/workflows/{failed}")).await;
            panic!("never redriven to 3: {shown:#}\npage: {msg}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = d.get(&format!("/api/v1/workflows/{failed}")).await;
    assert!(
        shown["journal"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "redrive"),
        "{shown:#}"
    );
    wait_js(
        &page,
        "the workflow done on the page",
        &format!(
            "{}.includes('done')",
            text_of(&format!(r#"article[data-workflow="{failed}"] .wf-status"#))
        ),
    )
    .await;

    // Forgetting the token hides the data again.
    page.find(Locator::Css("#forget"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &page,
        "the token form again",
        "!document.getElementById('auth').hidden && document.getElementById('service').hidden && document.querySelectorAll('#decisions tbody tr').length === 0",
    )
    .await;

    page.close().await.unwrap();
    drop(driver);
    d.stop().await;
}
