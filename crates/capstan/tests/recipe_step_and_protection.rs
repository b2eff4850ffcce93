//! The `step-and-protection` recipe end to end (examples/step-and-protection/): its
//! shipped `capstan.toml`, 60 times faster (a minute of the recipe is a second here),
//! run by the daemon in-process on the world model of ECS and its load balancer, with
//! the recipe's worker (`capstan-example-request-worker`) running one instance per
//! running task, reporting each request in progress to capstan's work registry.
//!
//! A small load balancer here sends requests only to tasks whose target is healthy in
//! the world's target group (registered, not draining), least outstanding first, and
//! tells the world how many requests each task holds (so the group drains as an ALB
//! does). The world stopping a task (SIGTERM) cancels its worker: a request in flight
//! there, or sent to it afterwards, fails.
//!
//! The cycle: a high request rate → the request table's surge band adds 3 tasks (the
//! decision names the policy and the band); the rate drops to near zero while two long
//! requests run → the request table's scale-in band removes the idle tasks through the
//! drain workflow, never the two busy ones, which capstan keeps protected while they
//! work and releases once idle. Not one request fails.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::daemon::services::world_targets_as_configured;
use capstan_aws_api::TaskStatus;
use capstan_core::clock::{Clock, SystemClock};
use capstan_example_request_worker::{Registry, Settings, Worker};
use capstan_testkit::servers::free_port;
use capstan_world::{ServiceSpec, TargetGroupSpec, TaskInfo, World, WorldConfig};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::in_process::Daemon;
use crate::support::recipe::Recipe;

const CLUSTER: &str = "prod";
const SERVICE: &str = "api";
const TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:000000000000:targetgroup/api/0123456789abcdef";
const TOKEN: &str = "step-and-protection-token";
/// The recipe's minutes become seconds.
const FACTOR: u32 = 60;
/// Each request sent here stands for this many of production's, so the request table's
/// thresholds (hundreds of requests per target a minute, a minute being a second here)
/// are crossed with tens of requests a second.
const REQUESTS_PER_REQUEST: f64 = 50.0;
/// A short request, and one longer than the target group's deregistration delay (1 s):
/// only the work registry keeps its task from being stopped.
const SHORT_MS: u64 = 100;
const LONG_MS: u64 = 12_000;

/// The shipped config, accelerated, on `port`, with its store in `dir`.
///
/// The world model has no CloudWatch, so the recipe's three `ecs` sources (CloudWatch's
/// ECS and ALB presets) become `push` sources read at the same interval, which the test
/// feeds with what CloudWatch would publish: requests per target from the rate the load
/// balancer sends, CPU and memory derived from it.
fn config(port: u16, dir: &std::path::Path) -> capstan::config::Config {
    let mut recipe = Recipe::load("step-and-protection", "capstan.toml").accelerate(FACTOR);
    for name in ["cpu", "memory", "requests"] {
        let shipped = recipe.take(&format!("sources.{name}"));
        assert_eq!(shipped["kind"].as_str(), Some("ecs"), "sources.{name}");
        let mut push = toml::Table::new();
        push.insert("kind".into(), "push".into());
        push.insert("ttl".into(), "2s".into());
        push.insert("interval".into(), shipped["interval"].clone());
        recipe = recipe.set(&format!("sources.{name}"), push);
    }
    recipe
        .set("server.listen", format!("127.0.0.1:{port}"))
        .set(
            "store.path",
            dir.join("capstan.db").to_string_lossy().into_owned(),
        )
        .compile(&[
            ("CAPSTAN_TOKEN", TOKEN),
            ("API_TARGET_GROUP_ARN", TARGET_GROUP),
        ])
}

fn world() -> World {
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: SERVICE.into(),
            desired: 2,
            startup: Duration::from_millis(300),
            stop_timeout: Duration::from_millis(500),
            deprovisioning: Duration::from_millis(100),
            target_group: Some(TargetGroupSpec {
                arn: TARGET_GROUP.into(),
                // An ALB's 300 s default, accelerated: shorter than the long requests.
                deregistration_delay: Duration::from_secs(1),
                // A target the load balancer no longer routes to is draining at once.
                routing_lag: Duration::ZERO,
                health_check_time: Duration::from_millis(200),
                ..TargetGroupSpec::default()
            }),
            ..ServiceSpec::default()
        })
        .unwrap();
    world
}

/// One worker, serving for one task.
#[derive(Clone)]
struct Member {
    addr: SocketAddr,
    stop: CancellationToken,
    outstanding: Arc<AtomicU32>,
}

/// The workers and the load balancer in front of them.
struct Fleet {
    world: World,
    base: String,
    members: Mutex<HashMap<String, Member>>,
    http: reqwest::Client,
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// When each request was sent (the last second's, for requests per target).
    sent: Mutex<VecDeque<Instant>>,
    /// Each request's length and the task it went to.
    picked: Mutex<Vec<(u64, String)>>,
}

fn live(t: &TaskInfo) -> bool {
    matches!(t.status, TaskStatus::Running | TaskStatus::Deactivating) && !t.terminating
}

impl Fleet {
    fn new(world: World, base: String) -> Arc<Self> {
        Arc::new(Self {
            world,
            base,
            members: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            ok: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            sent: Mutex::new(VecDeque::new()),
            picked: Mutex::new(Vec::new()),
        })
    }

    fn tasks(&self) -> Vec<TaskInfo> {
        self.world.tasks(CLUSTER, SERVICE)
    }

    /// Starts a worker for every running task without one, and cancels the worker of
    /// every task the world has told to stop (SIGTERM) or forgotten.
    async fn reconcile(&self) {
        let tasks = self.tasks();
        let mut start = Vec::new();
        {
            let mut members = self.members.lock().unwrap();
            members.retain(|arn, m| {
                let keep = tasks.iter().any(|t| t.arn == *arn && live(t));
                if !keep {
                    m.stop.cancel();
                }
                keep
            });
            for t in &tasks {
                if t.status == TaskStatus::Running && live(t) && !members.contains_key(&t.arn) {
                    start.push(t.arn.clone());
                }
            }
        }
        for arn in start {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let settings = Settings {
                registry: Some(Registry {
                    url: self.base.clone(),
                    service: SERVICE.into(),
                    task: arn.clone(),
                    token: Some(TOKEN.into()),
                }),
                request_time: Duration::from_millis(SHORT_MS),
                max_request_time: Duration::from_secs(60),
                // The service's `work.ttl`, accelerated.
                ttl: Duration::from_secs(10),
                // Stopped means gone: nothing in flight survives it.
                grace: Duration::ZERO,
            };
            let worker = Worker::new(settings, "w").unwrap();
            let stop = CancellationToken::new();
            tokio::spawn({
                let stop = stop.clone();
                async move { worker.run(listener, stop).await.unwrap() }
            });
            let member = Member {
                addr,
                stop,
                outstanding: Arc::new(AtomicU32::new(0)),
            };
            self.members.lock().unwrap().insert(arn, member);
        }
    }

    /// Sends one request of `ms` through the load balancer: to the task with a healthy
    /// target (registered, not draining) holding the fewest requests. Returns the
    /// task it went to.
    async fn send(&self, ms: u64) -> Option<String> {
        let now = Instant::now();
        self.sent.lock().unwrap().push_back(now);
        let picked = {
            let tasks = self.tasks();
            let members = self.members.lock().unwrap();
            tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Running && t.routable && live(t))
                .filter_map(|t| members.get(&t.arn).map(|m| (t.arn.clone(), m.clone())))
                .min_by_key(|(_, m)| m.outstanding.load(Ordering::SeqCst))
        };
        let Some((arn, member)) = picked else {
            self.failures
                .lock()
                .unwrap()
                .push("no healthy target (503 from the load balancer)".into());
            return None;
        };
        self.picked.lock().unwrap().push((ms, arn.clone()));
        let n = member.outstanding.fetch_add(1, Ordering::SeqCst) + 1;
        self.world.set_work(&arn, n);
        let answer = self
            .http
            .get(format!("http://{}/work?ms={ms}", member.addr))
            .send()
            .await;
        let n = member.outstanding.fetch_sub(1, Ordering::SeqCst) - 1;
        self.world.set_work(&arn, n);
        match answer {
            Ok(r) if r.status() == reqwest::StatusCode::OK => {
                self.ok.fetch_add(1, Ordering::SeqCst);
                Some(arn)
            }
            Ok(r) => {
                let status = r.status();
                self.failures
                    .lock()
                    .unwrap()
                    .push(format!("{arn}: {ms} ms request answered {status}"));
                None
            }
            Err(e) => {
                self.failures
                    .lock()
                    .unwrap()
                    .push(format!("{arn}: {ms} ms request failed: {e}"));
                None
            }
        }
    }

    /// Requests per healthy target in the last second (a minute of the recipe), in
    /// production's requests.
    fn requests_per_target(&self) -> f64 {
        let cutoff = Instant::now() - Duration::from_secs(1);
        let sent = {
            let mut sent = self.sent.lock().unwrap();
            while sent.front().is_some_and(|t| *t < cutoff) {
                sent.pop_front();
            }
            sent.len()
        };
        let targets = self
            .tasks()
            .iter()
            .filter(|t| t.status == TaskStatus::Running && t.routable)
            .count()
            .max(1);
        sent as f64 / targets as f64 * REQUESTS_PER_REQUEST
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }
}

fn running(world: &World) -> Vec<String> {
    world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .filter(|t| t.status == TaskStatus::Running)
        .map(|t| t.arn)
        .collect()
}

/// The tasks the world holds scale-in protected now.
fn protected(world: &World) -> HashSet<String> {
    let now = SystemClock.now();
    world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .filter(|t| t.protected_until.is_some_and(|u| u > now))
        .map(|t| t.arn)
        .collect()
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's decisions that scaled (newest first).
async fn changes(d: &Daemon) -> Vec<Value> {
    d.get("/api/v1/services/api/decisions?limit=500").await["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"]["action"] != "hold")
        .cloned()
        .collect()
}

fn protection_changes(metrics: &str, change: &str) -> u64 {
    let key = format!(r#"capstan_protection_changes_total{{service="api",change="{change}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn step_tables_scale_out_and_in_and_protection_keeps_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let world = world();
    let daemon = Daemon::start(
        config(port, dir.path()),
        port,
        world_targets_as_configured(world.clone(), Arc::new(SystemClock)),
        Some(TOKEN),
    );
    let fleet = Fleet::new(world.clone(), daemon.base.clone());
    let stop = CancellationToken::new();

    // The workers follow the world's tasks.
    let reconciler = tokio::spawn({
        let fleet = Arc::clone(&fleet);
        let stop = stop.clone();
        async move {
            while !stop.is_cancelled() {
                fleet.reconcile().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    fleet.reconcile().await;
    assert_eq!(daemon.get("/api/v1/services/api").await["name"], "api");

    // What CloudWatch would publish, pushed 10 times a recipe minute: requests per
    // target, and CPU and memory that follow them (1250 requests a minute per target
    // ≈ 62% CPU, memory about 45%, under its 60% threshold).
    let feeder = tokio::spawn({
        let fleet = Arc::clone(&fleet);
        let stop = stop.clone();
        let http = daemon.http.clone();
        let base = daemon.base.clone();
        async move {
            while !stop.is_cancelled() {
                let requests = fleet.requests_per_target();
                let cpu = (requests / 20.0).min(100.0);
                let memory = 40.0 + requests / 200.0;
                for (name, value) in [("requests", requests), ("cpu", cpu), ("memory", memory)] {
                    let _ = http
                        .post(format!("{base}/api/v1/metrics/{name}"))
                        .bearer_auth(TOKEN)
                        .json(&serde_json::json!({ "value": value }))
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // The load: one short request every `gap_ms` (0: none).
    let gap_ms = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let fleet = Arc::clone(&fleet);
        let stop = stop.clone();
        let gap_ms = Arc::clone(&gap_ms);
        async move {
            let mut requests = tokio::task::JoinSet::new();
            while !stop.is_cancelled() {
                let gap = gap_ms.load(Ordering::SeqCst);
                if gap == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let fleet = Arc::clone(&fleet);
                requests.spawn(async move { fleet.send(SHORT_MS).await });
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
            while requests.join_next().await.is_some() {}
        }
    });

    // Protection seen while the load runs (sampled).
    let seen_protected = Arc::new(Mutex::new(HashSet::new()));
    let watcher = tokio::spawn({
        let world = world.clone();
        let stop = stop.clone();
        let seen = Arc::clone(&seen_protected);
        async move {
            while !stop.is_cancelled() {
                seen.lock().unwrap().extend(protected(&world));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    // High: 50 requests a second over 2 tasks, 1250 per target a recipe minute, above
    // 700: the request table adds 3 (CPU's 62% asks for 1 at most).
    let first = running(&world);
    assert_eq!(first.len(), 2);
    gap_ms.store(20, Ordering::SeqCst);
    until("the step tables scale out to 5", 30, || {
        let c = world.service_counts(CLUSTER, SERVICE).unwrap();
        c.desired >= 5 && running(&world).len() >= 5
    })
    .await;
    let out = changes(&daemon).await;
    let first_out = out
        .iter()
        .rev()
        .find(|d| d["action"]["action"] == "scale_out")
        .unwrap_or_else(|| panic!("no scale-out decision: {out:#?}"));
    let sentence = first_out["sentence"].as_str().unwrap();
    eprintln!("scale-out: {sentence}");
    assert_eq!(first_out["winner"], "requests", "{sentence}");
    assert_eq!(first_out["action"]["from"], 2, "{sentence}");
    assert_eq!(first_out["action"]["to"], 5, "{sentence}");
    assert!(
        sentence.contains("out band [100, +∞): +3 from 2 → 5"),
        "{sentence}"
    );
    // Requests ran on every task, each reported as a workload: they were protected.
    until("the busy tasks are protected", 10, || {
        seen_protected.lock().unwrap().len() >= 2
    })
    .await;
    // Steady at 5: 500 requests per target, between the tables' thresholds.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Near zero: one short request every 2 s, and two long ones (12 recipe minutes)
    // that must not be cut by the scale-in.
    gap_ms.store(2_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let long = |fleet: &Arc<Fleet>| {
        let fleet = Arc::clone(fleet);
        tokio::spawn(async move { fleet.send(LONG_MS).await })
    };
    let long_a = long(&fleet);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let long_b = long(&fleet);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let busy: HashSet<String> = fleet
        .picked
        .lock()
        .unwrap()
        .iter()
        .filter(|(ms, _)| *ms == LONG_MS)
        .map(|(_, arn)| arn.clone())
        .collect();
    assert_eq!(busy.len(), 2, "the load balancer spread the long requests");
    until("the long requests' tasks are protected", 10, || {
        let p = protected(&world);
        busy.iter().all(|t| p.contains(t))
    })
    .await;
    until("the request table scales in to 2", 40, || {
        let c = world.service_counts(CLUSTER, SERVICE).unwrap();
        c.desired == 2 && world.tasks(CLUSTER, SERVICE).len() == 2
    })
    .await;
    // The scale-in happened while the long requests ran (else it proves nothing).
    assert!(
        !long_a.is_finished() && !long_b.is_finished(),
        "the long requests ended before the scale-in: make them longer"
    );
    // The tasks still holding the long requests stayed, protected.
    let left = running(&world);
    let p = protected(&world);
    for task in &busy {
        assert!(left.contains(task), "a busy task was stopped: {task}");
        assert!(p.contains(task), "a busy task lost its protection: {task}");
    }
    let all = changes(&daemon).await;
    let scale_in = all
        .iter()
        .find(|d| d["action"]["action"] == "scale_in")
        .unwrap_or_else(|| panic!("no scale-in decision: {all:#?}"));
    let sentence = scale_in["sentence"].as_str().unwrap();
    eprintln!("scale-in: {sentence}");
    assert_eq!(scale_in["winner"], "requests", "{sentence}");
    assert!(
        ["-2 from", "-4 from", "-8 from", "-16 from"]
            .iter()
            .any(|s| sentence.contains(s))
            && sentence.contains("in band"),
        "{sentence}"
    );

    // The long requests end; then the load stops and every protection is released.
    let a = long_a.await.unwrap();
    let b = long_b.await.unwrap();
    assert!(a.is_some() && b.is_some(), "{:?}", fleet.failures());
    gap_ms.store(0, Ordering::SeqCst);
    until("every protection is released", 15, || {
        protected(&world).is_empty()
    })
    .await;
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", daemon.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(protection_changes(&metrics, "enable") >= 1, "{metrics}");
    assert!(protection_changes(&metrics, "release") >= 1, "{metrics}");

    stop.cancel();
    load.await.unwrap();
    feeder.await.unwrap();
    reconciler.await.unwrap();
    watcher.await.unwrap();
    let failures = fleet.failures();
    let ok = fleet.ok.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}",
        failures.len(),
        ok + failures.len() as u64
    );
    assert!(ok > 100, "only {ok} requests were served");
    for member in fleet.members.lock().unwrap().values() {
        member.stop.cancel();
    }
    daemon.stop().await;
}
