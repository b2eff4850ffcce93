//! The durable scale-in workflow of the real `capstan` binary on the wire: an ECS
//! service on moto, behind the test proxy (task protection, finished rollouts, faults),
//! with its tasks registered in an IP target group and sessions on two of them.
//!
//! - **Killed at each AWS call of a workflow**: the proxy holds one call of the
//!   scale-in unanswered (before it reaches moto, or after), the test kills capstan
//!   with SIGKILL right then, starts it again on the same store, and the workflow
//!   completes: `desiredCount` lowered by exactly one `UpdateService` that reached
//!   moto, exactly the idle tasks stopped, never a task with a session, the victims out
//!   of the target group and the others in it, no protection left behind.
//! - **20 % of calls fail** (throttled, 500, 503, or applied with the answer lost):
//!   three scale-ins in a row all complete, none applied twice.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use capstan_testkit::aws_proxy::{AwsProxy, FaultKind};
use capstan_testkit::moto::{self, Moto, REGION};
use capstan_testkit::moto_ecs::EcsFixture;
use capstan_testkit::servers::free_port;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{client, ready, sigkill, start, task_url};
use tokio::time::Instant;

fn config(port: u16, store: &Path, fixture: &EcsFixture, endpoint: &str, max: u32) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
path = "{store}"

[sources.load]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[[services]]
name = "api"
min = 1
max = {max}
interval = "200ms"
cooldown = {{ out = "0s", in = "0s" }}
scale_in = {{ stabilization = "0s" }}
target = {{ kind = "ecs", cluster = "{cluster}", service = "{service}", endpoint_url = "{endpoint}", region = "{REGION}", target_group = "{tg}", first_check_after = "0s", check_every = "200ms", drain_timeout = "1m" }}
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
        tg = fixture.target_group,
    )
}

/// One service on moto behind a proxy, and capstan's directory and address.
struct Setup {
    moto: Moto,
    fixture: EcsFixture,
    proxy: AwsProxy,
    dir: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
}

impl Setup {
    /// A service of `tasks` running tasks (desired as many), all registered in its
    /// target group.
    async fn new(tasks: u32) -> Self {
        let moto = moto::moto();
        let fixture = moto.ecs_service(tasks, tasks);
        fixture.register_targets(&moto);
        let proxy = AwsProxy::start(&moto.endpoint_url()).await.unwrap();
        proxy.complete_rollouts();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("capstan.toml"),
            config(
                port,
                &dir.path().join("capstan.db"),
                &fixture,
                &proxy.endpoint_url(),
                tasks,
            ),
        )
        .unwrap();
        Self {
            moto,
            fixture,
            proxy,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            http: client(),
        }
    }

    /// Starts capstan and waits until its registry knows `tasks`.
    async fn start(&self, tasks: &[&String]) -> tokio::process::Child {
        let child = start(self.dir.path());
        let tasks: Vec<String> = tasks.iter().map(|t| (*t).clone()).collect();
        ready(&self.http, &self.base, &tasks).await;
        child
    }

    async fn session(&self, task: &str) {
        let url = format!("{}/sessions/s-1", task_url(&self.base, task));
        let status = self.http.put(url).send().await.unwrap().status();
        assert!(status.is_success(), "session on {task}: {status}");
    }

    async fn load(&self, value: u32) {
        let answer = self
            .http
            .post(format!("{}/api/v1/metrics/load", self.base))
            .json(&json!({ "value": value }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }

    async fn workflows(&self) -> Vec<Value> {
        let Ok(answer) = self
            .http
            .get(format!("{}/api/v1/workflows", self.base))
            .send()
            .await
        else {
            return Vec::new();
        };
        let value: Value = answer.json().await.unwrap_or_default();
        value["workflows"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `count` workflows are done and none runs or failed. The deadline
    /// leaves room for a step retried several times (1 s doubling, jittered) when
    /// faults are injected.
    async fn until_done(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let all = self.workflows().await;
            let failed: Vec<&Value> = all.iter().filter(|w| w["status"] == "failed").collect();
            assert!(failed.is_empty(), "a workflow failed: {failed:?}");
            let done = all.iter().filter(|w| w["status"] == "done").count();
            if done == count && all.iter().all(|w| w["status"] == "done") {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "{count} workflows never done: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tasks ECS was asked to stop.
    fn stopped(&self) -> BTreeSet<String> {
        self.fixture
            .describe_tasks(&self.moto)
            .into_iter()
            .filter(|(_, t)| t["desiredStatus"] == "STOPPED")
            .map(|(arn, _)| arn)
            .collect()
    }

    /// The `desiredCount` of every `UpdateService` call that reached moto.
    fn updates(&self) -> Vec<u64> {
        self.proxy
            .forwarded("UpdateService")
            .iter()
            .map(|body| {
                let v: Value = serde_json::from_slice(body).unwrap();
                v["desiredCount"].as_u64().unwrap()
            })
            .collect()
    }

    /// The task ARNs of every `StopTask` call that reached moto.
    fn stop_calls(&self) -> Vec<String> {
        self.proxy
            .forwarded("StopTask")
            .iter()
            .map(|body| {
                let v: Value = serde_json::from_slice(body).unwrap();
                v["task"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// Asserts the end state of scale-ins that kept the tasks in `busy`: exactly the
    /// others stopped, `desiredCount` at `desired`, the victims out of the target group
    /// and `busy` in it, no protection left.
    fn assert_end(&self, busy: &[&String], desired: u64) {
        let busy: BTreeSet<String> = busy.iter().map(|t| (*t).clone()).collect();
        let stopped = self.stopped();
        assert!(
            stopped.is_disjoint(&busy),
            "a task with a session was stopped: {stopped:?}"
        );
        assert_eq!(
            stopped.len() as u64,
            self.fixture.tasks.len() as u64 - desired,
            "{stopped:?}"
        );
        for task in self.stop_calls() {
            assert!(stopped.contains(&task), "StopTask on {task}, not a victim");
        }
        assert_eq!(self.fixture.desired_count(&self.moto), desired);
        let ips = self.fixture.task_ips(&self.moto);
        let expected: BTreeSet<String> = busy.iter().map(|t| ips[t].clone()).collect();
        assert_eq!(self.fixture.registered_targets(&self.moto), expected);
        for task in &self.fixture.tasks {
            assert_eq!(
                self.proxy.protected_until(task),
                None,
                "{task} is left protected"
            );
        }
    }
}

/// Kills capstan with SIGKILL while the `nth` call of `operation` in a 4 → 2 scale-in
/// is held (after it reached moto if `applied`), restarts it, and checks the end.
async fn killed_at(operation: &str, nth: usize, applied: bool) {
    let case = format!(
        "{operation} #{nth} {}",
        if applied { "applied" } else { "not sent" }
    );
    let s = Setup::new(4).await;
    s.proxy.hold(operation, nth, applied);
    let busy = [&s.fixture.tasks[0], &s.fixture.tasks[1]];
    let mut capstan = s.start(&busy).await;
    for task in busy {
        s.session(task).await;
    }
    s.load(20).await;
    tokio::time::timeout(Duration::from_secs(60), s.proxy.held())
        .await
        .unwrap_or_else(|_| panic!("{case}: the call was never made"));
    sigkill(&mut capstan).await;

    let mut capstan = s.start(&busy).await;
    s.load(20).await;
    let all = s.until_done(1).await;
    sigkill(&mut capstan).await;

    s.assert_end(&busy, 2);
    assert_eq!(
        s.updates(),
        vec![2],
        "{case}: desiredCount lowered by exactly one call that reached moto"
    );
    assert_eq!(all[0]["from"], json!(4), "{case}: {all:?}");
    assert_eq!(all[0]["to"], json!(2), "{case}: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_deregistration_or_protection_the_scale_in_resumes() {
    for applied in [false, true] {
        killed_at("DeregisterTargets", 1, applied).await;
        killed_at("UpdateTaskProtection", 1, applied).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_the_count_or_a_stop_the_scale_in_resumes_once() {
    for applied in [false, true] {
        killed_at("UpdateService", 1, applied).await;
        killed_at("StopTask", 1, applied).await;
    }
    killed_at("StopTask", 2, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_the_release_the_protection_is_still_released() {
    for applied in [false, true] {
        killed_at("UpdateTaskProtection", 2, applied).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fifth_of_calls_failing_every_scale_in_completes_once() {
    let s = Setup::new(8).await;
    let busy = [&s.fixture.tasks[0], &s.fixture.tasks[1]];
    let mut capstan = s.start(&busy).await;
    for task in busy {
        s.session(task).await;
    }
    s.proxy.fail_randomly(0.2, 20261205);
    for (i, desired) in [6_u32, 4, 2].into_iter().enumerate() {
        s.load(desired * 10).await;
        s.until_done(i + 1).await;
        assert_eq!(s.fixture.desired_count(&s.moto), u64::from(desired));
    }
    s.proxy.fail_randomly(0.0, 0);
    sigkill(&mut capstan).await;

    s.assert_end(&busy, 2);
    // Each scale-in's count reached moto at least once, never another count: a call
    // whose answer was lost is sent again with the same count, which changes nothing.
    let mut updates = s.updates();
    updates.dedup();
    assert_eq!(updates, vec![6, 4, 2]);
    for kind in FaultKind::ALL {
        assert!(s.proxy.injected(kind) > 0, "no {kind:?} fault was injected");
    }
}
