//! The EC2 cluster reservation policy end to end on the world model, on a virtual
//! clock: a config like docs/config.md's EC2 example, compiled as `capstan run`
//! compiles it (two `ecs_cluster` sources, CPU and memory reservation; a `threshold`
//! policy with a band per metric, up after 4 datapoints, down after 10, one a minute),
//! read by the real `ecs_cluster` source from the world's container instances, and
//! carried out by the real control loop (policy → planner → victim choice) on the EC2
//! host target (`AsgTarget`) of the world's Auto Scaling group.
//!
//! The cluster: three hosts of 4096 CPU units and 8192 MiB, launched a minute apart
//! (A oldest, C newest), one per zone. The services' tasks reserve little CPU and much
//! memory, so memory reservation can be high while CPU reservation stays low:
//!
//! - memory alone above its max for 4 datapoints → the group's desired capacity rises
//!   by the step (3 → 5), not before;
//! - CPU below its min but memory inside its band → two hours without a change;
//! - both below their mins for 10 datapoints → exactly one host removed (drained, then
//!   terminated, its tasks moved first), the one the target's `host_order` puts first:
//!   by default `least_reserved` (here the host with the fewest tasks, neither the
//!   oldest nor the newest), with `host_order = "oldest"` the oldest although it runs
//!   more tasks, and among hosts that reserve as much, `oldest` and `newest` pick the
//!   oldest and the newest;
//! - a reloaded threshold applies at the next evaluation, on the samples already held.
//!
//! Core's host strategies (`capstan_core::hosts::plan_removal`) are checked against
//! the same world state, so the test shows the loop's choice is theirs.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::config::{self, Config};
use capstan_aws_api::{AutoScaling, ContainerInstanceStatus, Ecs, InstanceLifecycleState};
use capstan_control::ServiceLoop;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision};
use capstan_core::hosts::{Host, HostOrder, HostStatus, HostTask, Resources, plan_removal};
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::{Sample, TaskId};
use capstan_sources::ecs_cluster::EcsClusterSource;
use capstan_sources::{Source, SourceKind};
use capstan_store::{DecisionLog, MemoryStore};
use capstan_targets::TargetSpec;
use capstan_targets::asg::AsgTarget;
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, Event, LaunchType, ServiceSpec, World, WorldConfig,
};

pub(crate) const CLUSTER: &str = "prod";
pub(crate) const GROUP: &str = "prod-asg";
pub(crate) const HOSTS: &str = "prod-hosts";

/// One evaluation (and one read of each source) a minute.
pub(crate) const MINUTE: Duration = Duration::from_secs(60);

/// The service scaling the cluster's hosts: docs/config.md's EC2 example with a
/// `threshold` policy on both reservations (memory's max is `memory_max`), and
/// the target's `host_order` if given. Stabilization is off so that the scale-in
/// datapoints alone decide when a host goes (with the example's 10 minutes the first
/// removal would come 10 minutes after the last evaluation that held).
fn config_text(memory_max: u32, order: Option<&str>) -> String {
    let order = order.map_or(String::new(), |o| format!(", host_order = \"{o}\""));
    format!(
        r#"
[sources.cpu_reservation]
kind = "ecs_cluster"
metric = "cpu_reservation"
cluster = "{CLUSTER}"
interval = "1m"
region = "eu-west-1"

[sources.memory_reservation]
kind = "ecs_cluster"
metric = "memory_reservation"
cluster = "{CLUSTER}"
interval = "1m"
region = "eu-west-1"

[[services]]
name = "{HOSTS}"
min = 2
max = 20
interval = "1m"
target = {{ kind = "ec2_cluster", cluster = "{CLUSTER}", group = "{GROUP}", warmup = "5m", drain_timeout = "1h", region = "eu-west-1"{order} }}
cooldown = {{ out = "1m", in = "5m" }}
scale_in = {{ stabilization = "0s" }}

[[services.policies]]
kind = "threshold"
name = "reservation"
metrics = [
  {{ metric = "cpu_reservation", min = 40, max = 80 }},
  {{ metric = "memory_reservation", min = 30, max = {memory_max} }},
]
datapoints = {{ out = 4, in = 10 }}
step = {{ out = 2, in = 1 }}
"#
    )
}

fn compile(memory_max: u32, order: Option<&str>) -> Config {
    config::compile(&config_text(memory_max, order), "hosts.toml", &|_| None)
        .unwrap_or_else(|e| panic!("{:#?}", e.errors))
}

/// What each service of the cluster runs: 256 CPU units per task, and much memory.
#[derive(Clone, Copy)]
pub(crate) struct Tasks {
    pub(crate) name: &'static str,
    pub(crate) count: u32,
    pub(crate) memory: u32,
}

/// 2048 MiB a task: four fill a host's memory, sixteen of them its CPU.
pub(crate) fn cache(count: u32) -> Tasks {
    Tasks {
        name: "cache",
        count,
        memory: 2048,
    }
}

/// 512 MiB a task.
pub(crate) fn web(count: u32) -> Tasks {
    Tasks {
        name: "web",
        count,
        memory: 512,
    }
}

/// The world, its clock, the control loop of `prod-hosts` (the config's `ec2_cluster`
/// service) and its `ecs_cluster` sources.
pub(crate) struct Rig {
    pub(crate) world: World,
    pub(crate) clock: VirtualClock,
    /// Every world event so far.
    pub(crate) events: Vec<Event>,
    /// The hosts' EC2 instance ids, oldest first (A, B, C).
    pub(crate) hosts: Vec<String>,
    sources: Vec<(String, EcsClusterSource<World>)>,
    obs: SharedObservations,
    service_loop: ServiceLoop<AsgTarget<World, World>, VirtualClock>,
}

impl Rig {
    /// Three hosts launched a minute apart, every one ACTIVE and past its warm-up;
    /// `place` puts the services' tasks on them; then the loop of `config` starts.
    pub(crate) async fn new(config: &Config, place: impl AsyncFnOnce(&mut Self)) -> Self {
        let clock = VirtualClock::at_epoch();
        let world = World::new(
            WorldConfig {
                seed: 11,
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
                    desired: 1,
                    instance_cpu: 4096,
                    instance_memory: 8192,
                    ..AutoScalingGroupSpec::default()
                }],
            })
            .unwrap();
        // The config's (first) service scaling hosts; other services are not run.
        let (service, spec) = config
            .services
            .iter()
            .find_map(|s| match &s.target {
                TargetSpec::Ec2Cluster(spec) => Some((s, spec)),
                _ => None,
            })
            .expect("an ec2_cluster service");
        let target = AsgTarget::new(HOSTS, spec.target.clone(), world.clone(), world.clone())
            .with_clock(clock.clone());
        let mut obs = Observations::new();
        let mut sources = Vec::new();
        for s in &config.sources {
            // Only the cluster's own sources: the hosts' policies read nothing else.
            let SourceKind::EcsCluster(e) = &s.kind else {
                continue;
            };
            obs.declare(&s.name, s.retention, s.max_age);
            sources.push((
                s.name.clone(),
                EcsClusterSource::new(world.clone(), e, s.timeout),
            ));
        }
        let obs: SharedObservations = Arc::new(Mutex::new(obs));
        let log: Arc<dyn DecisionLog> = Arc::new(MemoryStore::default());
        let service_loop = ServiceLoop::new(
            service.engine.clone(),
            target,
            clock.clone(),
            Arc::clone(&obs),
            log,
        )
        .with_victims(service.victims.clone());
        let mut rig = Self {
            world,
            clock,
            events: Vec::new(),
            hosts: Vec::new(),
            sources,
            obs,
            service_loop,
        };
        // B and C: launched through the group a minute apart, ACTIVE 3 minutes later.
        for desired in [2, 3] {
            rig.run(MINUTE);
            rig.world
                .set_desired_capacity(GROUP, desired)
                .await
                .unwrap();
        }
        rig.run(Duration::from_secs(300));
        let mut group = rig.world.describe_group(GROUP).await.unwrap().instances;
        group.sort_by_key(|i| i.launched_at);
        rig.hosts = group.into_iter().map(|i| i.instance_id).collect();
        assert_eq!(rig.hosts.len(), 3);
        assert!(
            rig.layout()
                .values()
                .all(|h| h.status == ContainerInstanceStatus::Active),
            "{:?}",
            rig.layout()
        );
        place(&mut rig).await;
        // Every replacement placed and running; every host past its 5 minutes of warm-up.
        rig.run(Duration::from_secs(600));
        rig
    }

    /// Lets `d` pass, one second at a time.
    pub(crate) fn run(&mut self, d: Duration) {
        for _ in 0..d.as_secs() {
            self.clock.advance(Duration::from_secs(1));
            self.events.extend(self.world.advance());
        }
    }

    /// Adds an EC2 service with `tasks` (warm, placed by the world's scheduler).
    pub(crate) fn add(&self, tasks: Tasks) {
        self.world
            .add_service(ServiceSpec {
                cluster: CLUSTER.into(),
                name: tasks.name.into(),
                launch_type: LaunchType::Ec2,
                desired: tasks.count,
                task_cpu: 256,
                task_memory: tasks.memory,
                minimum_healthy_percent: 100,
                maximum_percent: 200,
                ..ServiceSpec::default()
            })
            .unwrap();
    }

    /// Sets host `host` (EC2 instance id) `status`, as an operator would.
    pub(crate) async fn set_status(&self, host: &str, status: ContainerInstanceStatus) {
        let arn = self.container_instance(host);
        let failures = self
            .world
            .update_container_instances_state(CLUSTER, &[arn], status)
            .await
            .unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }

    pub(crate) fn container_instance(&self, host: &str) -> String {
        let state = self.world.cluster_state(CLUSTER).unwrap();
        state
            .instances
            .into_iter()
            .find(|i| i.ec2_instance_id == host)
            .unwrap()
            .arn
    }

    /// The registered container instances by EC2 instance id.
    pub(crate) fn layout(&self) -> BTreeMap<String, HostView> {
        self.world
            .cluster_state(CLUSTER)
            .unwrap()
            .instances
            .into_iter()
            .map(|i| {
                (
                    i.ec2_instance_id,
                    HostView {
                        status: i.status,
                        tasks: i.tasks.len(),
                        memory: i.reserved_memory,
                    },
                )
            })
            .collect()
    }

    /// The group's desired capacity.
    pub(crate) async fn desired(&self) -> u32 {
        self.world.describe_group(GROUP).await.unwrap().desired
    }

    /// The group's instances that are not terminated, by lifecycle state.
    pub(crate) async fn lifecycle(&self) -> BTreeMap<String, InstanceLifecycleState> {
        self.world
            .describe_group(GROUP)
            .await
            .unwrap()
            .instances
            .into_iter()
            .filter(|i| i.lifecycle_state != InstanceLifecycleState::Terminated)
            .map(|i| (i.instance_id, i.lifecycle_state))
            .collect()
    }

    /// (CPU, memory) reservation, percent, as the world reports it.
    pub(crate) fn reservation(&self) -> (f64, f64) {
        let s = self.world.cluster_state(CLUSTER).unwrap();
        (s.cpu_reservation_percent, s.memory_reservation_percent)
    }

    /// One minute: the world moves on, each source is read once into its window, and
    /// the loop evaluates (observe, policy, planner, victims, target). A failed tick
    /// comes back as its message.
    pub(crate) async fn minute(&mut self) -> Result<Decision, String> {
        self.run(MINUTE);
        let now = self.clock.now();
        for (name, source) in &self.sources {
            let read = source.read().await;
            let mut obs = self.obs.lock().unwrap();
            match read {
                Ok(value) => obs.push(name, Sample { value, at: now }),
                Err(e) => obs.fail(name, now, e.to_string()),
            }
        }
        self.service_loop.tick().await.map_err(|e| e.to_string())
    }

    /// The hosts' removal order by each of core's host strategies on the cluster as
    /// it is now: the host each one would remove (its tasks' exact sizes checked to fit
    /// on the others).
    pub(crate) async fn strategies(&self) -> HashMap<HostOrder, String> {
        let group = self.world.describe_group(GROUP).await.unwrap();
        let state = self.world.cluster_state(CLUSTER).unwrap();
        let by_arn: BTreeMap<&str, &str> = state
            .instances
            .iter()
            .map(|i| (i.arn.as_str(), i.ec2_instance_id.as_str()))
            .collect();
        let hosts: Vec<Host> = state
            .instances
            .iter()
            .map(|i| Host {
                id: i.ec2_instance_id.as_str().into(),
                status: match i.status {
                    ContainerInstanceStatus::Active => HostStatus::Active,
                    ContainerInstanceStatus::Draining => HostStatus::Draining,
                    _ => HostStatus::Other,
                },
                registered: Resources::new(i.registered_cpu, i.registered_memory),
                remaining: Resources::new(
                    i.registered_cpu - i.reserved_cpu,
                    i.registered_memory - i.reserved_memory,
                ),
                launched_at: group
                    .instances
                    .iter()
                    .find(|g| g.instance_id == i.ec2_instance_id)
                    .and_then(|g| g.launched_at),
                protected: false,
                used_ports: Default::default(),
            })
            .collect();
        let tasks: Vec<HostTask> = ["cache", "web"]
            .into_iter()
            .flat_map(|s| self.world.tasks(CLUSTER, s))
            .map(|t| HostTask {
                id: TaskId::from(t.arn.as_str()),
                host: by_arn[t.host.as_deref().unwrap()].into(),
                service: Some(t.service.as_str().into()),
                size: Resources::new(t.cpu, t.memory),
                host_ports: Vec::new(),
                running: true,
                protected: false,
                live_work: 0,
            })
            .collect();
        HostOrder::ALL
            .into_iter()
            .map(|order| {
                let removal = plan_removal(&hosts, &tasks, &[], order, false).unwrap();
                (order, removal.host.to_string())
            })
            .collect()
    }

    /// Tasks stopped because their host was terminated under them.
    pub(crate) fn killed_with_a_host(&self) -> usize {
        self.events
            .iter()
            .filter(
                |e| matches!(e, Event::TaskStopped { reason, .. } if reason.contains("terminated")),
            )
            .count()
    }

    pub(crate) fn terminated(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::InstanceTerminated { instance_id, .. } => Some(instance_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// RUNNING tasks of `service`.
    pub(crate) fn running(&self, service: &str) -> u32 {
        self.world.service_counts(CLUSTER, service).unwrap().running
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostView {
    pub(crate) status: ContainerInstanceStatus,
    pub(crate) tasks: usize,
    pub(crate) memory: u32,
}

fn held(decision: &Decision) -> bool {
    matches!(decision.action, Action::Hold { .. })
}

/// Ten tasks of 2048 MiB and 256 CPU units on three hosts: memory 83 %, CPU 21 %.
async fn memory_high() -> Rig {
    Rig::new(&compile(75, None), async |rig: &mut Rig| rig.add(cache(10))).await
}

#[tokio::test]
async fn memory_alone_above_its_max_for_4_datapoints_adds_the_step() {
    let mut rig = memory_high().await;
    let (cpu, memory) = rig.reservation();
    assert!((memory - 83.33).abs() < 0.01, "{memory}");
    assert!((cpu - 20.83).abs() < 0.01, "CPU below its min even: {cpu}");

    // Three datapoints above the max: not yet.
    for n in 1..=3 {
        let d = rig.minute().await.unwrap();
        assert!(held(&d), "minute {n}: {}", d.sentence());
        assert!(
            d.sentence()
                .contains(&format!("memory_reservation above max 75 for {n} of 4")),
            "{}",
            d.sentence()
        );
        assert_eq!(rig.desired().await, 3);
    }
    // The fourth: up by the step, 3 → 5.
    let d = rig.minute().await.unwrap();
    assert_eq!(
        d.action,
        Action::ScaleOut { from: 3, to: 5 },
        "{}",
        d.sentence()
    );
    assert!(
        d.sentence().contains("memory_reservation 83.333 > max 75"),
        "{}",
        d.sentence()
    );
    assert_eq!(rig.desired().await, 5);

    // While the new hosts launch, memory stays above its max, but no further host is
    // added: the target refuses while a host warms up. Once they are ACTIVE the same
    // tasks reserve half the memory of five hosts: hold.
    for _ in 0..20 {
        let _ = rig.minute().await;
    }
    assert_eq!(rig.desired().await, 5);
    let layout = rig.layout();
    assert_eq!(layout.len(), 5);
    assert!(
        layout
            .values()
            .all(|h| h.status == ContainerInstanceStatus::Active)
    );
    let (_, memory) = rig.reservation();
    assert!((memory - 50.0).abs() < 0.01, "{memory}");
    let d = rig.minute().await.unwrap();
    assert!(held(&d), "{}", d.sentence());
}

#[tokio::test]
async fn cpu_low_with_memory_inside_its_band_holds_for_hours() {
    // Six tasks: memory 50 %, CPU 12.5 % (below its min of 40).
    let mut rig = Rig::new(&compile(75, None), async |rig: &mut Rig| rig.add(cache(6))).await;
    let (cpu, memory) = rig.reservation();
    assert!(
        (cpu - 12.5).abs() < 1e-9 && (memory - 50.0).abs() < 1e-9,
        "{cpu} {memory}"
    );
    let before = rig.layout();
    for minute in 1..=120 {
        let d = rig.minute().await.unwrap();
        assert!(held(&d), "minute {minute}: {}", d.sentence());
        assert!(
            d.sentence().contains("memory_reservation 50 in [30, 75]"),
            "minute {minute}: {}",
            d.sentence()
        );
    }
    assert_eq!(rig.desired().await, 3);
    assert_eq!(rig.layout(), before, "no host drained, no task moved");
    assert!(rig.terminated().is_empty());
}

#[tokio::test]
async fn a_reloaded_memory_max_applies_at_the_next_evaluation() {
    // As above: memory 50 %, inside [30, 75] for 10 minutes.
    let mut rig = Rig::new(&compile(75, None), async |rig: &mut Rig| rig.add(cache(6))).await;
    for _ in 0..10 {
        let d = rig.minute().await.unwrap();
        assert!(held(&d), "{}", d.sentence());
    }
    // The reload lowers memory's max to 45, as the daemon applies a changed policy to a
    // running loop (`ServiceLoop::reconfigure`): the windows keep their samples, so the
    // 4 datapoints above the new max are already there.
    let reloaded = compile(45, None);
    rig.service_loop
        .reconfigure(reloaded.services[0].engine.clone());
    let d = rig.minute().await.unwrap();
    assert_eq!(
        d.action,
        Action::ScaleOut { from: 3, to: 5 },
        "{}",
        d.sentence()
    );
    assert!(
        d.sentence().contains("memory_reservation 50 > max 45"),
        "{}",
        d.sentence()
    );
    assert_eq!(rig.desired().await, 5);
}

/// A: one `cache` task and one `web` task; B: one `web` task; C: one `cache` task and
/// one `web` task (B was set DRAINING while `cache` was placed, then ACTIVE again).
/// Memory 22.9 %, CPU 10.4 %: both below their mins. Without B, memory 34.4 %.
async fn b_emptiest(order: Option<&str>) -> Rig {
    Rig::new(&compile(75, order), async |rig: &mut Rig| {
        let b = rig.hosts[1].clone();
        rig.set_status(&b, ContainerInstanceStatus::Draining).await;
        rig.add(cache(2));
        rig.set_status(&b, ContainerInstanceStatus::Active).await;
        rig.add(web(3));
    })
    .await
}

#[tokio::test]
async fn both_below_their_mins_for_10_datapoints_remove_the_emptiest_host() {
    let mut rig = b_emptiest(None).await;
    let [a, b, c] = <[String; 3]>::try_from(rig.hosts.clone()).unwrap();
    let layout = rig.layout();
    let tasks: Vec<usize> = rig.hosts.iter().map(|h| layout[h].tasks).collect();
    let memory: Vec<u32> = rig.hosts.iter().map(|h| layout[h].memory).collect();
    assert_eq!(tasks, [2, 1, 2]);
    assert_eq!(memory, [2560, 512, 2560]);
    let (cpu, mem) = rig.reservation();
    assert!(cpu < 40.0 && mem < 30.0, "{cpu} {mem}");

    // Core's host strategies on this cluster: the least reserved is B; the oldest A,
    // the newest C.
    let picks = rig.strategies().await;
    assert_eq!(picks[&HostOrder::LeastReserved], b);
    assert_eq!(picks[&HostOrder::EmptyFirst], b);
    assert_eq!(picks[&HostOrder::Oldest], a);
    assert_eq!(picks[&HostOrder::Newest], c);

    // Nine datapoints below: nothing moves.
    for n in 1..=9 {
        let d = rig.minute().await.unwrap();
        assert!(held(&d), "minute {n}: {}", d.sentence());
        assert!(
            d.sentence()
                .contains(&format!("below min 30 for {n} of 10")),
            "minute {n}: {}",
            d.sentence()
        );
        assert_eq!(rig.desired().await, 3);
        assert_eq!(rig.layout(), layout, "minute {n}");
    }
    // The tenth: one host, B, the least reserved (and the one with the fewest tasks;
    // neither the oldest nor the newest), set DRAINING; the others stay ACTIVE.
    let d = rig.minute().await.unwrap();
    assert_eq!(
        d.action,
        Action::ScaleIn { from: 3, to: 2 },
        "{}",
        d.sentence()
    );
    let now = rig.layout();
    // The group keeps its desired capacity until B is terminated (which lowers it).
    assert_eq!(rig.desired().await, 3);
    assert_eq!(now[&b].status, ContainerInstanceStatus::Draining);
    assert_eq!(now[&a].status, ContainerInstanceStatus::Active);
    assert_eq!(now[&c].status, ContainerInstanceStatus::Active);

    // Half an hour on: B's task runs elsewhere, B is terminated and the group is down
    // to 2; memory is back inside its band, so no second host goes.
    let mut scale_ins = 1;
    for _ in 0..30 {
        if let Ok(d) = rig.minute().await
            && matches!(d.action, Action::ScaleIn { .. })
        {
            scale_ins += 1;
        }
    }
    assert_eq!(scale_ins, 1);
    assert_eq!(rig.terminated(), std::slice::from_ref(&b));
    assert_eq!(rig.desired().await, 2);
    assert_eq!(
        rig.lifecycle().await,
        [
            (a.clone(), InstanceLifecycleState::InService),
            (c.clone(), InstanceLifecycleState::InService)
        ]
        .into()
    );
    let after = rig.layout();
    assert_eq!(
        after.keys().cloned().collect::<BTreeSet<_>>(),
        [a.clone(), c.clone()].into()
    );
    assert_eq!(after[&a].tasks + after[&c].tasks, 5);
    assert_eq!((rig.running("cache"), rig.running("web")), (2, 3));
    assert_eq!(rig.killed_with_a_host(), 0, "no task died with its host");
    let (_, mem) = rig.reservation();
    assert!((mem - 34.375).abs() < 0.01, "{mem}");
}

#[tokio::test]
async fn host_order_oldest_takes_the_oldest_host_although_it_runs_more_tasks() {
    // `host_order = "oldest"`: A, not the least reserved B.
    let rig = b_emptiest(Some("oldest")).await;
    let a = rig.hosts[0].clone();
    assert_eq!(removed(rig).await, a);
    // `empty_first` as `least_reserved` here (no host is empty): B.
    let rig = b_emptiest(Some("empty_first")).await;
    let b = rig.hosts[1].clone();
    assert_eq!(removed(rig).await, b);
}

/// One `cache` task on each host: memory 25 %, CPU 6.25 %. Without a host, 37.5 %.
async fn even(order: Option<&str>) -> Rig {
    Rig::new(&compile(75, order), async |rig: &mut Rig| rig.add(cache(3))).await
}

/// The one host drained by the tenth evaluation, none before.
async fn removed(mut rig: Rig) -> String {
    for n in 1..=10 {
        let d = rig.minute().await.unwrap();
        let want = if n < 10 {
            Action::Hold { at: 3 }
        } else {
            Action::ScaleIn { from: 3, to: 2 }
        };
        assert_eq!(d.action, want, "minute {n}: {}", d.sentence());
    }
    let layout = rig.layout();
    let draining: Vec<&String> = layout
        .iter()
        .filter(|(_, h)| h.status == ContainerInstanceStatus::Draining)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(draining.len(), 1, "{layout:?}");
    draining[0].clone()
}

#[tokio::test]
async fn among_hosts_that_reserve_as_much_oldest_and_newest_decide() {
    let rig = even(Some("newest")).await;
    let (a, c) = (rig.hosts[0].clone(), rig.hosts[2].clone());
    assert!(rig.layout().values().all(|h| h.tasks == 1));
    assert_eq!(removed(rig).await, c);
    assert_eq!(removed(even(Some("oldest")).await).await, a);
}
