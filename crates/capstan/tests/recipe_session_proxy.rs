//! The `session-proxy` recipe end to end (examples/session-proxy/): its shipped
//! `capstan.toml`, accelerated 120× (a minute lasts 500 ms), run by the daemon in
//! process on the world model's ECS service `proxy` behind the configured target group,
//! with one instance of the recipe's proxy (`capstan-example-session-proxy`) per
//! running task reporting its sessions to the work registry over HTTP, with the token.
//!
//! A full cycle: sessions open (CPU high) → capstan scales out 2 → 4 → 6; most sessions
//! close, one long session stays on each of three tasks → capstan scales in one idle
//! task at a time, through the deregister → drain → recheck → ... → stop workflow,
//! down to the three busy tasks, where it holds ("tasks have live sessions"); the long
//! sessions end → it goes down to its min of 2. No session is cut: no proxy instance
//! holds a session when the world stops its task, and every session closes cleanly on
//! the client's side. The workflows' journals are fetched from the API, printed and
//! checked step by step.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::daemon::services::world_targets_as_configured;
use capstan_aws_api::{DesiredStatus, TaskStatus};
use capstan_core::clock::SystemClock;
use capstan_example_session_proxy::load::{self, Closed, Session};
use capstan_example_session_proxy::{Proxy, Registry, Sessions, Settings, Summary};
use capstan_testkit::servers::free_port;
use capstan_world::{ServiceSpec, TargetGroupSpec, TaskInfo, World, WorldConfig};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::in_process::Daemon;
use crate::support::recipe::Recipe;

/// The speed-up: the recipe's minute is 500 ms here.
const FACTOR: u32 = 120;
const CLUSTER: &str = "prod";
const SERVICE: &str = "proxy";
const TOKEN: &str = "session-proxy-recipe-token";

/// The recipe's duration `d` at the test's speed.
fn fast(d: Duration) -> Duration {
    d / FACTOR
}

/// A push source standing in for one of the recipe's CloudWatch ECS presets, read at
/// the recipe's `interval` ("1m") at the test's speed.
fn push_source() -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("kind".into(), "push".into());
    t.insert("ttl".into(), "5s".into());
    t.insert("value".into(), "any".into());
    let interval = fast(Duration::from_secs(60)).as_millis();
    t.insert("interval".into(), format!("{interval}ms").into());
    toml::Value::Table(t)
}

/// One proxy instance, the process of one world task.
struct Instance {
    addr: SocketAddr,
    sessions: Sessions,
    kill: CancellationToken,
    done: tokio::task::JoinHandle<Summary>,
}

/// The proxy instances of the running tasks, and what happened to the stopped ones.
#[derive(Default)]
struct Fleet {
    instances: Mutex<BTreeMap<String, Instance>>,
    /// Stopped tasks and the sessions their proxy held when the world stopped them.
    stopped: Mutex<Vec<(String, usize)>>,
    /// Every task a proxy was started for (it reached RUNNING).
    started: Mutex<BTreeSet<String>>,
}

impl Fleet {
    fn addr_of(&self, task: &str) -> Option<SocketAddr> {
        self.instances.lock().unwrap().get(task).map(|i| i.addr)
    }

    fn sessions_of(&self, task: &str) -> usize {
        self.instances
            .lock()
            .unwrap()
            .get(task)
            .map_or(0, |i| i.sessions.count())
    }

    fn cut(&self) -> usize {
        self.stopped.lock().unwrap().iter().map(|(_, n)| n).sum()
    }
}

/// A task the world means to keep running (whatever its start-up stage).
fn wanted(t: &TaskInfo) -> bool {
    t.desired_status == DesiredStatus::Running
        && matches!(
            t.status,
            TaskStatus::Provisioning
                | TaskStatus::Pending
                | TaskStatus::Activating
                | TaskStatus::Running
        )
}

fn serving(t: &TaskInfo) -> bool {
    wanted(t) && t.status == TaskStatus::Running
}

/// What the test's world does every 50 ms, standing in for ECS running the proxy
/// image and for CloudWatch: a proxy instance is started for each task that reaches
/// RUNNING (its task ARN the world task's) and killed when the world stops the task
/// (its open sessions then count as cut); the world is told each task's sessions (so
/// a deregistered target with none drains at once, as an ELB target does); and the
/// service's CPU and memory are pushed to capstan.
async fn run_fleet(
    world: World,
    fleet: Arc<Fleet>,
    base: String,
    upstream: SocketAddr,
    cancel: CancellationToken,
) {
    let http = reqwest::Client::new();
    while !cancel.is_cancelled() {
        let tasks = world.tasks(CLUSTER, SERVICE);
        let by_arn: BTreeMap<&str, &TaskInfo> = tasks.iter().map(|t| (t.arn.as_str(), t)).collect();
        // Stopped by the world: kill its proxy; what it held is cut.
        let gone: Vec<(String, Instance)> = {
            let mut instances = fleet.instances.lock().unwrap();
            let arns: Vec<String> = instances
                .keys()
                .filter(|arn| !by_arn.get(arn.as_str()).is_some_and(|t| wanted(t)))
                .cloned()
                .collect();
            arns.into_iter()
                .map(|arn| {
                    let instance = instances.remove(&arn).unwrap();
                    (arn, instance)
                })
                .collect()
        };
        for (arn, instance) in gone {
            let open = instance.sessions.count();
            instance.kill.cancel();
            let summary = instance.done.await.unwrap();
            fleet
                .stopped
                .lock()
                .unwrap()
                .push((arn, open.max(summary.cut)));
        }
        // Started by the world: run its proxy.
        for t in tasks.iter().filter(|t| serving(t)) {
            if fleet.instances.lock().unwrap().contains_key(&t.arn) {
                continue;
            }
            let registry = Registry::new(
                &base,
                SERVICE,
                &t.arn,
                Some(TOKEN.to_owned()),
                Duration::from_secs(5),
            )
            .unwrap();
            let settings = Settings {
                sync_every: Duration::from_millis(500),
                report_wait: Duration::from_secs(3),
                grace: Duration::from_secs(1),
                ..Settings::new(&upstream.to_string(), Some(registry))
            };
            let proxy = Proxy::bind("127.0.0.1:0", settings).await.unwrap();
            let kill = CancellationToken::new();
            let instance = Instance {
                addr: proxy.local_addr().unwrap(),
                sessions: proxy.sessions(),
                kill: kill.clone(),
                // Stopped only by a kill: the world's SIGKILL (the test counts what the
                // proxy still holds then as cut, whatever a grace would have saved).
                done: tokio::spawn(proxy.serve(CancellationToken::new(), kill)),
            };
            fleet.started.lock().unwrap().insert(t.arn.clone());
            fleet
                .instances
                .lock()
                .unwrap()
                .insert(t.arn.clone(), instance);
        }
        // The world learns each task's sessions.
        let counts: Vec<(String, usize)> = fleet
            .instances
            .lock()
            .unwrap()
            .iter()
            .map(|(arn, i)| (arn.clone(), i.sessions.count()))
            .collect();
        for (arn, n) in &counts {
            world.set_work(arn, u32::try_from(*n).unwrap());
        }
        // The world model has no CPU, and CloudWatch (the recipe's `ecs` sources) is
        // not on loopback: the test computes the service's CPU and memory as the
        // proxy's cost model (each task 5 % CPU and 30 % memory idle, 10 % CPU and 4 %
        // memory per session) averaged over the tasks the service wants running (new
        // tasks count at once, so a scale-out is seen without waiting for CloudWatch's
        // next datapoint), and pushes them to the sources the test put in place of the
        // CloudWatch ones.
        let wanted_tasks: Vec<&TaskInfo> = tasks.iter().filter(|t| wanted(t)).collect();
        if !wanted_tasks.is_empty() {
            let total: usize = wanted_tasks.iter().map(|t| fleet.sessions_of(&t.arn)).sum();
            #[allow(clippy::cast_precision_loss)]
            let per_task = total as f64 / wanted_tasks.len() as f64;
            for (source, value) in [
                ("cpu", 5.0 + 10.0 * per_task),
                ("memory", 30.0 + 4.0 * per_task),
            ] {
                let _ = http
                    .post(format!("{base}/api/v1/metrics/{source}"))
                    .bearer_auth(TOKEN)
                    .json(&json!({ "value": value }))
                    .send()
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let instances = std::mem::take(&mut *fleet.instances.lock().unwrap());
    for (_, instance) in instances {
        instance.kill.cancel();
        instance.done.abort();
    }
}

/// The test's load balancer: a new session goes to the task whose target is routable
/// (registered and healthy, not draining) with the fewest sessions, as an ELB with
/// least outstanding requests does; `None` when no task is routable.
fn pick(world: &World, fleet: &Fleet) -> Option<(String, SocketAddr)> {
    world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .filter(|t| t.routable && serving(t))
        .filter_map(|t| fleet.addr_of(&t.arn).map(|addr| (t.arn, addr)))
        .min_by_key(|(arn, _)| fleet.sessions_of(arn))
}

/// Opens `n` sessions through the load balancer, each on the task it picked.
async fn open(world: &World, fleet: &Fleet, n: usize, into: &mut Vec<(String, Session)>) {
    for _ in 0..n {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((arn, addr)) = pick(world, fleet) {
                match load::open(addr).await {
                    Ok(session) => {
                        // Counted by the proxy once it is forwarded: wait for it, so the
                        // next pick sees it.
                        let until = Instant::now() + Duration::from_secs(5);
                        while fleet.sessions_of(&arn) == 0 && Instant::now() < until {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        into.push((arn, session));
                        break;
                    }
                    Err(e) => assert!(Instant::now() < deadline, "no session opens: {e}"),
                }
            }
            assert!(Instant::now() < deadline, "no routable task");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits for `done`, at most `limit`; else fails with the world's tasks and
/// capstan's newest decisions.
async fn until(
    daemon: &Daemon,
    world: &World,
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            let decisions = daemon
                .get("/api/v1/services/proxy/decisions?limit=30")
                .await;
            let sentences: Vec<&str> = decisions["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|d| d["sentence"].as_str())
                .collect();
            let tasks: Vec<String> = world
                .tasks(CLUSTER, SERVICE)
                .iter()
                .map(|t| format!("{} {:?} routable={}", short(&t.arn), t.status, t.routable))
                .collect();
            panic!("never: {what}\ntasks: {tasks:#?}\ndecisions: {sentences:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many tasks serve once none is starting: every task the service wants is
/// routable with its proxy; 0 while one is starting.
fn settled(world: &World, fleet: &Fleet) -> usize {
    let wanted = world
        .tasks(CLUSTER, SERVICE)
        .iter()
        .filter(|t| wanted(t))
        .count();
    let serving = routable(world, fleet).len();
    if serving == wanted { serving } else { 0 }
}

/// The service's tasks the world runs and the load balancer routes to, with their proxy.
fn routable(world: &World, fleet: &Fleet) -> Vec<String> {
    world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .filter(|t| t.routable && serving(t) && fleet.addr_of(&t.arn).is_some())
        .map(|t| t.arn)
        .collect()
}

fn running(world: &World) -> Vec<String> {
    world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .filter(serving)
        .map(|t| t.arn)
        .collect()
}

/// A task's id, the last part of its ARN.
fn short(task: &str) -> String {
    task.rsplit('/').next().unwrap().to_owned()
}

fn desired(world: &World) -> u32 {
    world.service_counts(CLUSTER, SERVICE).unwrap().desired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_session_is_cut_across_a_full_scale_out_and_scale_in() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let recipe = Recipe::load("session-proxy", "capstan.toml")
        .accelerate(FACTOR)
        .set("server.listen", format!("127.0.0.1:{port}"))
        .set("server.token_file", token_file.display().to_string())
        .set(
            "store.path",
            dir.path().join("capstan.db").display().to_string(),
        )
        // The recipe reads CPU and memory from CloudWatch's ECS presets; here the test
        // computes them from the sessions (the world model has no CPU) and pushes them.
        .set("sources.cpu", push_source())
        .set("sources.memory", push_source());
    let config = recipe.compile(&[]);
    let spec = &config.services[0];
    assert_eq!(spec.name, SERVICE);
    let bounds = &spec.engine.planner.bounds;
    let min = bounds.min;
    let capstan_targets::TargetSpec::Ecs(ecs) = &spec.target else {
        panic!("the recipe's service is not an ecs target")
    };
    assert_eq!(ecs.target.cluster, CLUSTER);
    let target_group = ecs
        .target
        .target_group
        .clone()
        .expect("the recipe names a target group");

    // The world: ECS service `prod/proxy` at its min, behind the recipe's target group;
    // ECS's and the ELB's times at the test's speed.
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: SERVICE.into(),
            desired: min,
            startup: Duration::from_millis(200),
            stop_timeout: fast(Duration::from_secs(30)),
            deprovisioning: Duration::from_millis(100),
            target_group: Some(TargetGroupSpec {
                arn: target_group.clone(),
                deregistration_delay: fast(Duration::from_secs(300)),
                routing_lag: fast(Duration::from_secs(5)),
                health_check_time: fast(Duration::from_secs(15)),
                ..TargetGroupSpec::default()
            }),
            ..ServiceSpec::default()
        })
        .unwrap();

    let daemon = Daemon::start(
        config,
        port,
        world_targets_as_configured(world.clone(), Arc::new(SystemClock)),
        Some(TOKEN),
    );
    // The listener is up before the proxies report.
    daemon.get("/api/v1/services").await;

    // The proxies' upstream: an echo server.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    let stop = CancellationToken::new();
    let echoing = tokio::spawn(load::echo(echo, stop.clone()));
    let fleet = Arc::new(Fleet::default());
    let fleeting = tokio::spawn(run_fleet(
        world.clone(),
        Arc::clone(&fleet),
        daemon.base.clone(),
        upstream,
        stop.clone(),
    ));

    let long = Duration::from_secs(30);
    let mut sessions: Vec<(String, Session)> = Vec::new();
    // Load rises: 16 sessions on the 2 tasks (8 each: 85 % CPU) → at least 4 tasks
    // (capstan may add 2 more before the new tasks show in the CPU it reads).
    until(&daemon, &world, "2 proxies serve", long, || {
        routable(&world, &fleet).len() == 2
    })
    .await;
    open(&world, &fleet, 16, &mut sessions).await;
    until(&daemon, &world, "scaled out to 4", long, || {
        settled(&world, &fleet) >= 4
    })
    .await;
    // 14 more, on the new tasks first (7.5 a task on 4: 80 % CPU) → at least 6 tasks.
    open(&world, &fleet, 14, &mut sessions).await;
    until(&daemon, &world, "scaled out to 6", long, || {
        settled(&world, &fleet) >= 6
    })
    .await;
    // 4 more, on the newest tasks (5.7 a task on 6: 62 % CPU, 53 % memory: inside the
    // bands).
    open(&world, &fleet, 4, &mut sessions).await;
    let tasks = running(&world);
    let peak = tasks.len();
    assert!((6..=8).contains(&peak), "{tasks:?}");
    for task in &tasks {
        assert!(
            fleet.sessions_of(task) > 0,
            "every task took sessions: {task}"
        );
    }

    // Load falls: every session closes but one on the 2nd, 4th and 6th task in
    // creation order (the 6th is the newest: capstan's order, `newest` first, would take
    // it first were it idle).
    let keep: BTreeSet<String> = [1, 3, 5].iter().map(|&i| tasks[i].clone()).collect();
    let mut long_ones = Vec::new();
    let mut closed = 0;
    for (arn, session) in sessions.drain(..) {
        if keep.contains(&arn) && !long_ones.iter().any(|(a, _): &(String, Session)| *a == arn) {
            long_ones.push((arn, session));
        } else {
            assert_eq!(
                session.close().await,
                Closed::Ended,
                "a session on {arn} was cut"
            );
            closed += 1;
        }
    }
    assert_eq!(long_ones.len(), 3);
    assert_eq!(closed, 34 - 3);

    // Scale-in, one idle task at a time, down to the 3 busy ones, and it holds there.
    until(
        &daemon,
        &world,
        "scaled in to the 3 busy tasks",
        Duration::from_secs(40),
        || desired(&world) == 3 && running(&world).len() == 3,
    )
    .await;
    let left: BTreeSet<String> = running(&world).into_iter().collect();
    assert_eq!(left, keep, "the tasks with live sessions are the ones kept");
    let held;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let decisions = daemon
            .get("/api/v1/services/proxy/decisions?limit=50")
            .await;
        if decisions.to_string().contains("have live sessions") {
            held = decisions["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d.to_string().contains("have live sessions"))
                .cloned()
                .unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never held for live sessions: {decisions:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("held: {}", held["sentence"]);
    assert_eq!(desired(&world), 3, "no busy task is stopped");
    assert_eq!(
        fleet.cut(),
        0,
        "sessions cut: {:?}",
        fleet.stopped.lock().unwrap()
    );

    // The long sessions end: down to min.
    for (arn, session) in long_ones {
        assert_eq!(
            session.close().await,
            Closed::Ended,
            "the long session on {arn} was cut"
        );
    }
    until(&daemon, &world, "back at min", long, || {
        desired(&world) == min && running(&world).len() == usize::try_from(min).unwrap()
    })
    .await;

    // The workflows' journals, from the API.
    let listed = daemon.get("/api/v1/workflows?service=proxy").await;
    let workflows = listed["workflows"].as_array().unwrap().clone();
    let mut victims = Vec::new();
    for w in &workflows {
        let id = w["id"].as_str().unwrap();
        let shown = daemon.get(&format!("/api/v1/workflows/{id}")).await;
        println!(
            "workflow {id}: {} → {}, {}",
            shown["from"], shown["to"], shown["status"]
        );
        for e in shown["journal"].as_array().unwrap() {
            println!(
                "  {:>3} {:<14} {:<8} {}",
                e["seq"],
                e["step"].as_str().unwrap_or(""),
                e["event"].as_str().unwrap_or(""),
                e["detail"]
            );
        }
        assert_eq!(shown["status"], "done", "{shown:#}");
        assert_eq!(
            crate::workflows_daemon::done_steps(&shown),
            crate::workflows_daemon::SCALE_IN_STEPS,
            "{shown:#}"
        );
        for v in shown["victims"].as_array().unwrap() {
            assert_ne!(v["kept"], true, "a victim was kept: {shown:#}");
            victims.push(short(v["task"].as_str().unwrap()));
        }
    }
    // Every task that ran but the 2 kept was stopped by a workflow: capstan may have
    // added tasks after `peak` was read (a scale-out in flight), and a victim may be a
    // task still starting (those go first), which never ran a proxy.
    let victims: BTreeSet<String> = victims.into_iter().collect();
    let started: BTreeSet<String> = fleet
        .started
        .lock()
        .unwrap()
        .iter()
        .map(|a| short(a))
        .collect();
    let ran_and_went: BTreeSet<String> = victims.intersection(&started).cloned().collect();
    assert_eq!(
        ran_and_went.len(),
        started.len() - 2,
        "every task that ran went, but 2: {listed:#}"
    );
    assert!(started.len() >= peak, "{started:?}");
    // The fleet (every 50 ms) kills the proxy of a task the world stopped: the last
    // victim's may still be on its way.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.stopped.lock().unwrap().len() < ran_and_went.len() {
        assert!(
            Instant::now() < deadline,
            "the fleet never saw every victim stop: {:?}",
            fleet.stopped.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped_tasks: BTreeSet<String> = fleet
        .stopped
        .lock()
        .unwrap()
        .iter()
        .map(|(arn, _)| short(arn))
        .collect();
    assert_eq!(
        ran_and_went, stopped_tasks,
        "exactly the workflows' victims that ran stopped"
    );

    // Zero sessions cut across the cycle: no proxy held a session when its task stopped.
    let stopped = fleet.stopped.lock().unwrap().clone();
    assert_eq!(fleet.cut(), 0, "sessions cut: {stopped:?}");

    stop.cancel();
    fleeting.await.unwrap();
    echoing.await.unwrap();
    daemon.stop().await;
}
