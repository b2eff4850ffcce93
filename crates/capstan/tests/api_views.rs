//! The read-only views the web page draws, in-process on an ephemeral loopback port:
//! a service's history (a real `ServiceLoop` ticking on a virtual clock for a day and
//! more: bounded, downsampled, counts as the loop decided them, the changes in the
//! window), its tasks with the work registry's sessions and workloads, and the hosts
//! of an `ec2_cluster` service on the world model (404 for any other service).

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::config;
use capstan::daemon::services::{AnyTarget, TargetBoard};
use capstan::server::api::Services;
use capstan::server::{self, Exporter, ServerState};
use capstan_control::{Registry, ServiceLoop, WorkRegistry};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision};
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::Sample;
use capstan_sources::PushStore;
use capstan_store::{DecisionLog, MemoryStore, MemoryWorkLog};
use capstan_targets::asg::{AsgTarget, AsgTargetSpec};
use capstan_targets::{EcsTarget, EcsTargetSpec, Target};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, LaunchType, ServiceSpec, World, WorldConfig,
};
use serde_json::{Value, json};

use crate::api::InstantTarget;
use tokio_util::sync::CancellationToken;

/// Service `w`: one task per unit of `q`, bounds 1..=10, no cooldowns; `hosts` is
/// the EC2 cluster (its loop is not run here: the test observes its target).
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
name = "queue"
kind = "target_tracking"
metric = "q"
mode = "total"
target = 1
datapoints = { out = 1, in = 1 }

[[services]]
name = "hosts"
min = 0
max = 3
target = { kind = "process", command = ["true"] }

[[services.policies]]
kind = "target_tracking"
metric = "q"
mode = "total"
target = 1
"#;

const CLUSTER: &str = "default";
const GROUP: &str = "asg";

struct Rig {
    base: String,
    client: reqwest::Client,
    clock: Arc<VirtualClock>,
    obs: SharedObservations,
    service: ServiceLoop<InstantTarget, Arc<VirtualClock>>,
    log: Arc<MemoryStore>,
    world: World,
    hosts: Arc<AsgTarget<World, World>>,
    cancel: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start() -> Rig {
    let config = config::compile(CONFIG, "t.toml", &|_| None).unwrap();
    let clock = Arc::new(VirtualClock::at_epoch());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let registry = Arc::new(Registry::new());
    let log = Arc::new(MemoryStore::new(100_000));
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    obs.lock()
        .unwrap()
        .declare("q", Duration::from_secs(900), Duration::from_secs(3600));
    let work = WorkRegistry::open(Arc::new(MemoryWorkLog), Arc::clone(&dyn_clock)).unwrap();
    work.configure("w", Some(Duration::from_secs(3600)));
    let target = InstantTarget::zoned_with_first_protected("eu-west-1a");
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
                    Arc::clone(&log) as Arc<dyn DecisionLog>,
                )
                .with_handle(handle)
                .with_work(work.clone()),
            );
        }
    }

    // The world: 3 hosts of 4096 CPU running an EC2 service of 4 tasks.
    let world = World::new(
        WorldConfig {
            seed: 7,
            rate_limits: false,
            ..WorldConfig::default()
        },
        clock.clone(),
    );
    world
        .add_cluster(ClusterSpec {
            name: CLUSTER.into(),
            groups: vec![AutoScalingGroupSpec {
                name: GROUP.into(),
                min: 0,
                max: 10,
                desired: 3,
                ..AutoScalingGroupSpec::default()
            }],
        })
        .unwrap();
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: "app".into(),
            launch_type: LaunchType::Ec2,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            desired: 4,
            ..ServiceSpec::default()
        })
        .unwrap();
    let hosts = Arc::new(
        AsgTarget::new(
            "hosts",
            AsgTargetSpec::new(CLUSTER, GROUP),
            world.clone(),
            world.clone(),
        )
        .with_clock(clock.clone()),
    );
    let board = TargetBoard::default();
    {
        let mut board = board.lock().unwrap();
        board.insert(
            "hosts".into(),
            AnyTarget::Ec2ClusterWorld(Arc::clone(&hosts)),
        );
        board.insert(
            "w".into(),
            AnyTarget::EcsWorld(Arc::new(EcsTarget::new(
                "w",
                EcsTargetSpec::new(CLUSTER, "app"),
                world.clone(),
                Some(world.clone()),
                None,
            ))),
        );
    }

    let exporter = Arc::new(Exporter::new(&config.sources, Arc::clone(&dyn_clock)));
    let push = PushStore::new(Arc::clone(&dyn_clock));
    let state = ServerState::new(None, exporter, push).with_services(
        Services::new(
            registry,
            Arc::clone(&log) as Arc<dyn DecisionLog>,
            dyn_clock,
        )
        .with_work(work)
        .with_targets(board),
    );
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
        service: service.unwrap(),
        log,
        world,
        hosts,
        cancel,
    }
}

impl Rig {
    /// `secs` seconds later, `q` reads `value`, and the loop ticks.
    async fn tick(&mut self, secs: u64, value: f64) -> Decision {
        self.clock.advance(Duration::from_secs(secs));
        let at = self.clock.now();
        self.obs.lock().unwrap().push("q", Sample { value, at });
        self.service.tick().await.unwrap()
    }

    async fn call(&self, method: &str, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .request(method.parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path).await
    }
}

#[tokio::test]
async fn history_is_bounded_downsampled_and_matches_what_the_loop_did() {
    let mut rig = start().await;
    // 25 hours of ticks every 10 s; the queue steps between 2 and 6 every hour, so the
    // loop scales each hour.
    let mut ticks: Vec<(String, u32)> = Vec::new();
    for i in 0..(25 * 360u32) {
        let q = f64::from(2 + (i / 360) % 5);
        let d = rig.tick(10, q).await;
        ticks.push((d.at.to_string(), d.action.desired()));
    }
    let now = rig.clock.now();

    // The default: the last hour in 360 points of 10 s, one tick each.
    let (status, body) = rig.get("/api/v1/services/w/history").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"], "w");
    assert_eq!(
        (body["window_s"].as_u64(), body["step_s"].as_u64()),
        (Some(3600), Some(10))
    );
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 360);
    let seen: Vec<(String, u32)> = points
        .iter()
        .map(|p| {
            (
                p["t"].as_str().unwrap().to_owned(),
                u32::try_from(p["desired"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, ticks[ticks.len() - 360..]);
    let last = points.last().unwrap();
    assert_eq!(last["t"], now.to_string());
    assert_eq!(last["running"], last["desired"]);
    assert_eq!(last["pending"], 0);
    // The total is shown per task against the per-task target.
    assert_eq!(last["policies"]["queue"]["target"], 1.0);
    let value = last["policies"]["queue"]["value"].as_f64().unwrap();
    assert!((value - 1.0).abs() < 1e-9, "{value}");

    // A day in at most 1000 points, covering the day.
    let (status, body) = rig
        .get("/api/v1/services/w/history?window=24h&points=1000")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window_s"], 86_400);
    assert_eq!(body["step_s"], 87);
    let points = body["points"].as_array().unwrap();
    assert!(
        points.len() <= 1000 && points.len() >= 990,
        "{}",
        points.len()
    );
    let times: Vec<capstan_core::Timestamp> = points
        .iter()
        .map(|p| p["t"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    let start = capstan_core::clock::sub(now, Duration::from_secs(86_400));
    assert!(
        times[0] > start && times[0] < capstan_core::clock::add(start, Duration::from_secs(87))
    );
    assert_eq!(*times.last().unwrap(), now);
    assert_eq!(points.last().unwrap()["desired"], ticks.last().unwrap().1);

    // The changes of the day, oldest first: one per hour, as the log has them.
    let decisions = body["decisions"].as_array().unwrap();
    let expected: Vec<Decision> = {
        let mut all: Vec<Decision> = rig
            .log
            .recent("w", usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|d| d.at > start && !matches!(d.action, Action::Hold { .. }))
            .collect();
        all.reverse();
        all
    };
    assert!((20..=25).contains(&decisions.len()), "{}", decisions.len());
    assert_eq!(decisions.len(), expected.len());
    for (got, want) in decisions.iter().zip(&expected) {
        assert_eq!(got["at"], want.at.to_string());
        assert_eq!(got["sentence"], want.sentence());
        assert_eq!(got["winner"], "queue");
        let (action, from, to) = match want.action {
            Action::ScaleOut { from, to } => ("scale_out", from, to),
            Action::ScaleIn { from, to } => ("scale_in", from, to),
            Action::Hold { .. } => unreachable!(),
        };
        assert_eq!(
            (
                got["action"].as_str().unwrap(),
                got["from"].as_u64().unwrap(),
                got["to"].as_u64().unwrap()
            ),
            (action, u64::from(from), u64::from(to))
        );
    }

    // Six hours: minute buckets, 360 points.
    let (_, body) = rig.get("/api/v1/services/w/history?window=6h").await;
    assert_eq!(body["step_s"], 60);
    assert_eq!(body["points"].as_array().unwrap().len(), 360);

    // A service that never ticked has an empty history.
    let (status, body) = rig.get("/api/v1/services/hosts/history").await;
    assert_eq!(status, 200);
    assert_eq!(body["points"], json!([]));
    assert_eq!(body["decisions"], json!([]));
}

#[tokio::test]
async fn bad_history_queries_name_the_parameter() {
    let rig = start().await;
    for (query, field) in [
        ("window=2h", "window"),
        ("window=", "window"),
        ("points=0", "points"),
        ("points=1001", "points"),
        ("points=many", "points"),
        ("window=1h&step=5", "query"),
    ] {
        let (status, body) = rig
            .get(&format!("/api/v1/services/w/history?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(field) || field == "query");
    }
    for path in ["history", "tasks", "hosts"] {
        let (status, body) = rig.get(&format!("/api/v1/services/nope/{path}")).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

#[tokio::test]
async fn tasks_show_the_work_registrys_sessions_and_workloads() {
    let mut rig = start().await;
    let (_, body) = rig.get("/api/v1/services/w/tasks").await;
    assert_eq!(
        body["tasks"],
        json!([]),
        "nothing before the first observation"
    );
    assert_eq!(body["observed_at"], Value::Null);
    rig.tick(1, 2.0).await;
    for (method, path) in [
        ("PUT", "/api/v1/services/w/tasks/t-1/sessions/a"),
        ("PUT", "/api/v1/services/w/tasks/t-1/sessions/b"),
        ("POST", "/api/v1/services/w/tasks/t-2/workloads/job"),
    ] {
        let (status, body) = rig.call(method, path).await;
        assert!(status < 300, "{method} {path}: {status} {body}");
    }
    let (status, body) = rig.get("/api/v1/services/w/tasks").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"], "w");
    assert_eq!(body["observed_at"], rig.clock.now().to_string());
    assert_eq!(
        body["tasks"],
        json!([
            {
                "id": "t-1", "state": "running", "zone": "eu-west-1a",
                "started_at": "1970-01-01T00:00:01Z", "sessions": 2, "workloads": 0,
                "protected": true, "draining": false, "healthy": true,
            },
            {
                "id": "t-2", "state": "running", "zone": "eu-west-1a",
                "started_at": "1970-01-01T00:00:02Z", "sessions": 0, "workloads": 1,
                "protected": false, "draining": false, "healthy": true,
            },
        ])
    );
}

#[tokio::test]
async fn hosts_show_reservation_and_the_removal_in_progress() {
    let rig = start().await;
    let (status, body) = rig.get("/api/v1/services/w/hosts").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("ec2_cluster"),
        "{body}"
    );
    // Before the first observation: the cluster, no hosts.
    let (status, body) = rig.get("/api/v1/services/hosts/hosts").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cluster"], CLUSTER);
    assert_eq!(body["hosts"], json!([]));
    assert_eq!(body["removal"], Value::Null);

    let o = rig.hosts.observe().await.unwrap();
    let (_, body) = rig.get("/api/v1/services/hosts/hosts").await;
    assert_eq!(body["group"], GROUP);
    let hosts = body["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    let mut tasks = 0;
    for h in hosts {
        assert!(h["id"].as_str().unwrap().starts_with("i-"), "{h}");
        assert_eq!(h["state"], "running");
        assert_eq!(h["cpu"]["registered"], 4096);
        let n = h["tasks"].as_u64().unwrap();
        assert_eq!(h["cpu"]["reserved"].as_u64().unwrap(), 1024 * n);
        assert_eq!(h["memory"]["reserved"].as_u64().unwrap(), 2048 * n);
        assert!(h["zone"].as_str().is_some_and(|z| !z.is_empty()));
        tasks += n;
    }
    assert_eq!(tasks, 4);

    // A removal: the host drains, and the removal names it.
    let victims = capstan_core::victim::choose(&o.tasks, 1);
    rig.hosts.scale_in(2, &victims).await.unwrap();
    rig.hosts.observe().await.unwrap();
    let (_, body) = rig.get("/api/v1/services/hosts/hosts").await;
    let victim = victims[0].to_string();
    let removal = &body["removal"];
    assert_eq!(removal["hosts"], json!([victim]));
    assert!(removal["workflow"].as_str().is_some_and(|w| !w.is_empty()));
    assert!(removal["step"].as_str().is_some());
    assert_eq!(removal["to"], 2);
    let draining: Vec<_> = body["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["state"] == "draining")
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(draining, [victim]);
    let _ = &rig.world;
}
