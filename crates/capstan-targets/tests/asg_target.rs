//! The EC2 cluster host target against the world model (ECS container instances and an
//! Auto Scaling group on a virtual clock): observe, scale-out with warm-up, and the
//! drain-then-terminate host removal.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use capstan_aws_api::{
    AutoScaling, AutoScalingGroup, AwsError, AwsErrorKind, ContainerInstanceStatus, Ecs,
    InstanceLifecycleState, LifecycleActionResult,
};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::model::{TaskId, TaskState};
use capstan_core::victim;
use capstan_core::workflow::{Status, Step, WorkflowSettings};
use capstan_targets::asg::{AsgTarget, AsgTargetSpec};
use capstan_targets::durable::{Boundary, Failpoint, Journal, MemoryJournal};
use capstan_targets::{Observed, Target, TargetError, WorkCounts};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, Event, FaultRule, HookSpec, HookTransition, LaunchType,
    ServiceSpec, World, WorldConfig,
};

const CLUSTER: &str = "default";
const SERVICE: &str = "app";
const GROUP: &str = "asg";

struct Fixture {
    world: World,
    clock: VirtualClock,
    target: AsgTarget<World, World>,
    /// Every world event so far.
    events: Vec<Event>,
}

/// Settings a test may change before the world is built.
struct Setup {
    seed: u64,
    hosts: u32,
    tasks: u32,
    spec: AsgTargetSpec,
    group: AutoScalingGroupSpec,
    service: ServiceSpec,
    other_group: bool,
}

fn setup(hosts: u32, tasks: u32) -> Setup {
    Setup {
        seed: 7,
        hosts,
        tasks,
        spec: AsgTargetSpec::new(CLUSTER, GROUP),
        group: AutoScalingGroupSpec {
            name: GROUP.into(),
            min: 0,
            max: 10,
            ..AutoScalingGroupSpec::default()
        },
        service: ServiceSpec {
            cluster: CLUSTER.into(),
            name: SERVICE.into(),
            launch_type: LaunchType::Ec2,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            ..ServiceSpec::default()
        },
        other_group: false,
    }
}

impl Setup {
    /// A cluster of `hosts` instances (4096 CPU, 7482 MiB: 3 tasks of 1024 / 2048 each)
    /// running an EC2 service of `tasks` warm tasks, and a target for its group.
    fn build(self) -> Fixture {
        let clock = VirtualClock::at_epoch();
        let world = World::new(
            WorldConfig {
                seed: self.seed,
                rate_limits: false,
                ..WorldConfig::default()
            },
            clock.clone(),
        );
        let mut groups = vec![AutoScalingGroupSpec {
            desired: self.hosts,
            ..self.group
        }];
        if self.other_group {
            groups.push(AutoScalingGroupSpec {
                name: "other".into(),
                desired: 1,
                ..AutoScalingGroupSpec::default()
            });
        }
        world
            .add_cluster(ClusterSpec {
                name: CLUSTER.into(),
                groups,
            })
            .unwrap();
        world
            .add_service(ServiceSpec {
                desired: self.tasks,
                ..self.service
            })
            .unwrap();
        let target = AsgTarget::new(GROUP, self.spec, world.clone(), world.clone())
            .with_clock(clock.clone());
        Fixture {
            world,
            clock,
            target,
            events: Vec::new(),
        }
    }
}

impl Fixture {
    /// Lets `secs` seconds pass, one at a time.
    fn run(&mut self, secs: u64) {
        for _ in 0..secs {
            self.clock.advance(Duration::from_secs(1));
            self.events.extend(self.world.advance());
        }
    }

    async fn observe(&self) -> Observed {
        self.target.observe().await.unwrap()
    }

    /// Instance id → (container instance status, tasks on it), for the group's hosts
    /// and any other.
    fn hosts(&self) -> BTreeMap<String, (ContainerInstanceStatus, usize)> {
        self.world
            .cluster_state(CLUSTER)
            .unwrap()
            .instances
            .into_iter()
            .map(|i| (i.ec2_instance_id, (i.status, i.tasks.len())))
            .collect()
    }

    /// The group's instances with their lifecycle states.
    async fn lifecycle(&self) -> BTreeMap<String, InstanceLifecycleState> {
        self.world
            .describe_group(GROUP)
            .await
            .unwrap()
            .instances
            .into_iter()
            .map(|i| (i.instance_id, i.lifecycle_state))
            .collect()
    }

    async fn group_desired(&self) -> u32 {
        self.world.describe_group(GROUP).await.unwrap().desired
    }

    /// The host with `n` tasks (the first one, by instance id).
    fn host_with(&self, n: usize) -> String {
        self.hosts()
            .into_iter()
            .find(|(_, (_, tasks))| *tasks == n)
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("a host with {n} tasks: {:?}", self.hosts()))
    }

    /// The tasks ECS keeps running on the host behind EC2 instance `id`.
    async fn hosts_tasks(&self, id: &str) -> Vec<std::sync::Arc<str>> {
        let arns = self
            .world
            .list_container_instances(CLUSTER, None)
            .await
            .unwrap();
        let (hosts, _) = self
            .world
            .describe_container_instances(CLUSTER, &arns)
            .await
            .unwrap();
        let host = hosts.iter().find(|h| h.ec2_instance_id == id).unwrap();
        self.world
            .list_instance_tasks(CLUSTER, &host.arn)
            .await
            .unwrap()
    }

    fn running_tasks(&self) -> u32 {
        self.world.service_counts(CLUSTER, SERVICE).unwrap().running
    }

    fn terminated(&self, id: &str) -> usize {
        self.events
            .iter()
            .filter(
                |e| matches!(e, Event::InstanceTerminated { instance_id, .. } if instance_id == id),
            )
            .count()
    }

    fn killed_by_a_host(&self) -> usize {
        self.events
            .iter()
            .filter(
                |e| matches!(e, Event::TaskStopped { reason, .. } if reason.contains("terminated")),
            )
            .count()
    }
}

fn failed_reason(r: Result<(), TargetError>) -> String {
    match r {
        Err(TargetError::Failed { target, reason }) => {
            assert_eq!(target, GROUP);
            reason
        }
        other => panic!("a Failed error expected, got {other:?}"),
    }
}

#[tokio::test]
async fn observe_maps_the_groups_instances_to_tasks() {
    let mut s = setup(3, 4);
    s.other_group = true;
    let mut fx = s.build();
    let o = fx.observe().await;
    assert_eq!(
        (o.capacity.desired, o.capacity.running, o.capacity.pending),
        (3, 3, 0)
    );
    assert_eq!(o.tasks.len(), 3, "the other group's host is not ours");
    let ids: Vec<String> = fx.lifecycle().await.into_keys().collect();
    let mut seen: Vec<String> = o.tasks.iter().map(|t| t.id.to_string()).collect();
    seen.sort();
    assert_eq!(seen, ids);
    let hosts = fx.hosts();
    for t in &o.tasks {
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.started_at, fx.clock.now(), "launched at the start");
        assert!(!t.protected);
    }
    // A host's "sessions" is its place in host_order (least reserved first): 0, 1, 2,
    // the emptiest host first.
    let mut by_rank: Vec<_> = o
        .tasks
        .iter()
        .map(|t| (t.sessions, hosts[&*t.id.0].1))
        .collect();
    by_rank.sort();
    assert_eq!(
        by_rank.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(by_rank.windows(2).all(|w| w[0].1 <= w[1].1), "{by_rank:?}");
    let mut zones: Vec<_> = o.tasks.iter().map(|t| t.zone.clone().unwrap()).collect();
    zones.dedup();
    assert_eq!(zones.len(), 3, "one host per zone");

    // A launching instance is pending; protection shows.
    fx.run(300);
    fx.target.scale_out(4).await.unwrap();
    fx.world
        .set_instance_protection(GROUP, &[o.tasks[0].id.to_string()], true)
        .await
        .unwrap();
    let o = fx.observe().await;
    assert_eq!(
        (o.capacity.desired, o.capacity.running, o.capacity.pending),
        (4, 3, 1)
    );
    let new = o
        .tasks
        .iter()
        .find(|t| t.state == TaskState::Pending)
        .unwrap();
    assert_eq!(new.sessions, 0);
    assert!(o.tasks[0].protected);
    fx.run(180);
    let o = fx.observe().await;
    assert_eq!((o.capacity.running, o.capacity.pending), (4, 0));
}

#[tokio::test]
async fn scale_out_launches_and_the_warm_up_blocks_the_next_one() {
    let mut s = setup(2, 2);
    s.group.max = 5;
    let mut fx = s.build();
    // The first instances launched at the start: warming for 300 s.
    let e = failed_reason(fx.target.scale_out(3).await);
    assert!(e.contains("warming up: instance i-"), "{e}");
    assert!(e.contains("launched 0 s ago (warm-up 300 s)"), "{e}");
    assert_eq!(fx.group_desired().await, 2);
    fx.run(300);
    fx.target.scale_out(3).await.unwrap();
    assert_eq!(fx.group_desired().await, 3);
    fx.run(299);
    let e = failed_reason(fx.target.scale_out(4).await);
    assert!(e.contains("launched 299 s ago"), "{e}");
    assert_eq!(fx.group_desired().await, 3);
    fx.run(1);
    // At most the group's max.
    fx.target.scale_out(7).await.unwrap();
    assert_eq!(fx.group_desired().await, 5);
    fx.run(300);
    let e = failed_reason(fx.target.scale_out(6).await);
    assert!(e.contains("at its max 5"), "{e}");
    // Not a scale-in.
    assert!(matches!(
        fx.target.scale_out(2).await,
        Err(TargetError::Invalid { .. })
    ));
    // The same count is harmless.
    fx.target.scale_out(5).await.unwrap();
    fx.run(180);
    let o = fx.observe().await;
    assert_eq!((o.capacity.desired, o.capacity.running), (5, 5));
}

/// The world model's Auto Scaling, with its DescribeAutoScalingGroups answer changed
/// by a function to what AWS answers and the world does not model (no launch times;
/// an instance in service before its container instance registers). Everything else
/// is the world's.
struct Answers(World, fn(&mut AutoScalingGroup));

/// Auto Scaling's own API reports no launch times.
fn no_launch_times(g: &mut AutoScalingGroup) {
    for i in &mut g.instances {
        i.launched_at = None;
    }
}

/// On AWS an instance is in service while the ECS agent is still starting.
fn in_service_early(g: &mut AutoScalingGroup) {
    for i in &mut g.instances {
        if i.lifecycle_state == InstanceLifecycleState::Pending {
            i.lifecycle_state = InstanceLifecycleState::InService;
        }
    }
}

impl AutoScaling for Answers {
    async fn describe_group(&self, group: &str) -> Result<AutoScalingGroup, AwsError> {
        let mut g = self.0.describe_group(group).await?;
        (self.1)(&mut g);
        Ok(g)
    }
    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), AwsError> {
        self.0.set_desired_capacity(group, desired).await
    }
    async fn set_instance_protection(
        &self,
        group: &str,
        ids: &[String],
        protected: bool,
    ) -> Result<(), AwsError> {
        self.0.set_instance_protection(group, ids, protected).await
    }
    async fn terminate_instance(&self, id: &str, decrement: bool) -> Result<(), AwsError> {
        self.0.terminate_instance(id, decrement).await
    }
    async fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        id: &str,
        result: LifecycleActionResult,
    ) -> Result<(), AwsError> {
        self.0
            .complete_lifecycle_action(group, hook, id, result)
            .await
    }
    async fn record_lifecycle_action_heartbeat(
        &self,
        group: &str,
        hook: &str,
        id: &str,
    ) -> Result<(), AwsError> {
        self.0
            .record_lifecycle_action_heartbeat(group, hook, id)
            .await
    }
}

/// An instance in service whose container instance has not registered is reported
/// pending and protected: victim selection passes over it, and the scale-in takes a
/// registered host instead of failing on it.
#[tokio::test]
async fn an_instance_in_service_but_not_registered_is_never_a_victim() {
    let mut s = setup(2, 2);
    s.group.max = 5;
    let fx = s.build();
    let target = AsgTarget::new(
        GROUP,
        AsgTargetSpec {
            warmup: Duration::ZERO,
            ..AsgTargetSpec::new(CLUSTER, GROUP)
        },
        fx.world.clone(),
        Answers(fx.world.clone(), in_service_early),
    )
    .with_clock(fx.clock.clone());
    target.scale_out(3).await.unwrap();
    let o = target.observe().await.unwrap();
    let early: Vec<&capstan_core::model::Task> = o
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Pending)
        .collect();
    assert_eq!(early.len(), 1, "{o:?}");
    assert!(early[0].protected);
    // Hosts with tasks may go (the daemon's policy for hosts), the unregistered one not.
    let policy = victim::VictimPolicy {
        allow_busy: true,
        ..victim::VictimPolicy::default()
    };
    let victims = victim::select(&o.tasks, 1, &policy).victims;
    assert_eq!(victims.len(), 1);
    assert_ne!(
        victims[0], early[0].id,
        "the unregistered instance is passed over"
    );
    target.scale_in(2, &victims).await.unwrap();
    assert_eq!(
        fx.hosts()[victims[0].as_str()].0,
        ContainerInstanceStatus::Draining
    );
}

/// Without launch times, warm-up counts from a host's registration with the cluster,
/// and a host still launching holds scale-out until it registers.
#[tokio::test]
async fn without_launch_times_warm_up_counts_from_registration() {
    let mut s = setup(2, 2);
    s.group.max = 5;
    let mut fx = s.build();
    let target = AsgTarget::new(
        GROUP,
        AsgTargetSpec::new(CLUSTER, GROUP),
        fx.world.clone(),
        Answers(fx.world.clone(), no_launch_times),
    )
    .with_clock(fx.clock.clone());
    let e = failed_reason(target.scale_out(3).await);
    assert!(
        e.contains("registered with the cluster 0 s ago (warm-up 300 s)"),
        "{e}"
    );
    fx.run(300);
    target.scale_out(3).await.unwrap();
    assert_eq!(fx.group_desired().await, 3);
    // The new instance has not registered yet.
    let e = failed_reason(target.scale_out(4).await);
    assert!(e.contains("is still launching"), "{e}");
    // Registered: 300 s from then.
    let mut waited = 0;
    loop {
        fx.run(1);
        waited += 1;
        let e = failed_reason(target.scale_out(4).await);
        if e.contains("registered with the cluster 0 s ago") {
            break;
        }
        assert!(waited < 600, "never registered: {e}");
    }
    fx.run(299);
    let e = failed_reason(target.scale_out(4).await);
    assert!(e.contains("registered with the cluster 299 s ago"), "{e}");
    fx.run(1);
    target.scale_out(4).await.unwrap();
    assert_eq!(fx.group_desired().await, 4);
    // A host starts at its registration (the third one registered after 300 s); the
    // fourth, still launching, at this observation.
    let o = target.observe().await.unwrap();
    let mut started: Vec<i64> = o.tasks.iter().map(|t| t.started_at.as_second()).collect();
    started.sort_unstable();
    let t0 = started[0];
    let now = fx.clock.now().as_second();
    assert_eq!(started, [t0, t0, started[2], now], "{started:?}");
    assert!(started[2] > t0 + 300 && started[2] < now, "{started:?}");
}

/// Scale-in of one host out of three with 4 tasks (2 + 1 + 1): the chosen host's task
/// moves, the service never drops below its 4 running tasks, the host terminates once.
#[tokio::test]
async fn scale_in_drains_the_chosen_host_then_terminates_it() {
    for seed in 0..5 {
        let mut s = setup(3, 4);
        s.seed = seed;
        let mut fx = s.build();
        let o = fx.observe().await;
        let victims = victim::choose(&o.tasks, 1);
        let victim = victims[0].0.clone();
        assert_eq!(fx.hosts()[&*victim].1, 1, "the emptiest host is chosen");
        fx.target.scale_in(2, &victims).await.unwrap();
        assert_eq!(fx.hosts()[&*victim].0, ContainerInstanceStatus::Draining);
        let o = fx.observe().await;
        assert_eq!(o.capacity.desired, 2, "reported while removing");
        let t = o.tasks.iter().find(|t| *t.id.0 == *victim).unwrap();
        assert_eq!(t.state, TaskState::Draining);
        assert_eq!(fx.group_desired().await, 3, "not lowered before it drains");
        let progress = fx.target.removal_in_progress().await.unwrap();
        assert_eq!(
            (progress.to, progress.draining.clone()),
            (2, victims.clone())
        );
        // Another count waits; the same one is fine.
        let e = failed_reason(fx.target.scale_in(1, &[]).await);
        assert!(e.contains("still in progress"), "{e}");
        fx.target.scale_in(2, &victims).await.unwrap();

        let mut seconds = 0;
        while fx.terminated(&victim) == 0 && seconds < 600 {
            fx.run(1);
            seconds += 1;
            assert!(
                fx.running_tasks() >= 4,
                "seed {seed}: below 4 running at {seconds} s"
            );
            let o = fx.observe().await;
            assert!(o.capacity.desired == 2, "seed {seed}: {:?}", o.capacity);
        }
        assert_eq!(
            fx.terminated(&victim),
            1,
            "seed {seed}: terminated in {seconds} s"
        );
        assert_eq!(
            fx.killed_by_a_host(),
            0,
            "seed {seed}: no task died with the host"
        );
        assert_eq!(fx.group_desired().await, 2);
        assert!(fx.target.removal_in_progress().await.is_none());
        let hosts = fx.hosts();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts.values().map(|(_, n)| n).sum::<usize>(), 4);
        let o = fx.observe().await;
        assert_eq!(
            (o.capacity.desired, o.capacity.running, o.tasks.len()),
            (2, 2, 2)
        );
        fx.run(600);
        assert_eq!(fx.terminated(&victim), 1, "terminated exactly once");
        assert_eq!(fx.running_tasks(), 4);
    }
}

#[tokio::test]
async fn a_host_whose_tasks_do_not_fit_elsewhere_is_refused() {
    // Two full hosts (3 + 3): neither can go.
    let fx = setup(2, 6).build();
    let victim = fx.host_with(3);
    let e = failed_reason(
        fx.target
            .scale_in(1, &[TaskId::from(victim.as_str())])
            .await,
    );
    assert!(e.contains(&format!("{victim}: task ")), "{e}");
    assert!(
        e.contains("(1024 CPU units, 2048 MiB) fits on no other ACTIVE host"),
        "{e}"
    );
    assert!(
        fx.hosts()
            .values()
            .all(|(s, _)| *s == ContainerInstanceStatus::Active)
    );
    assert_eq!(fx.group_desired().await, 2);
    assert!(fx.target.removal_in_progress().await.is_none());

    // 2 + 2 + 1 tasks, removing two hosts, in the order given: the host with 1 task
    // may go alone, but not once the other one's tasks are planned onto the rest (3
    // tasks for the 1 slot left on the third host).
    let mut fx = setup(3, 5).build();
    let one = fx.host_with(1);
    let two = fx.host_with(2);
    fx.target
        .scale_in(1, &[TaskId::from(one.as_str()), TaskId::from(two.as_str())])
        .await
        .unwrap();
    let hosts = fx.hosts();
    assert_eq!(hosts[&one].0, ContainerInstanceStatus::Draining);
    assert_eq!(hosts[&two].0, ContainerInstanceStatus::Active, "refused");
    let o = fx.observe().await;
    assert_eq!(o.capacity.desired, 2, "one host out of the two asked for");
    for _ in 0..10 {
        fx.run(60);
        fx.observe().await;
    }
    assert_eq!(fx.terminated(&one), 1);
    assert_eq!(fx.terminated(&two), 0);
    assert_eq!(fx.group_desired().await, 2);
    assert_eq!(fx.running_tasks(), 5);
}

/// A scale-in of a host with 2 of the service's 6 tasks (2 per host on 3 hosts), the
/// service at `minimum_percent` (maximum 100 %) and the target's `minimum_running` for
/// it: the victim and the refusal, once checked that every host stayed ACTIVE.
async fn refused_at_minimum(
    minimum_percent: u32,
    minimum_running: Option<u32>,
) -> (String, String) {
    let mut s = setup(3, 6);
    s.service.minimum_healthy_percent = minimum_percent;
    s.service.maximum_percent = 100;
    if let Some(n) = minimum_running {
        s.spec.minimum_running.insert(SERVICE.into(), n);
    }
    let fx = s.build();
    let victim = fx.host_with(2);
    let e = failed_reason(
        fx.target
            .scale_in(2, &[TaskId::from(victim.as_str())])
            .await,
    );
    assert!(
        fx.hosts()
            .values()
            .all(|(s, _)| *s == ContainerInstanceStatus::Active)
    );
    (victim, e)
}

/// A host goes only while the service keeps its minimum healthy count on the other
/// hosts, or can start replacements first.
#[tokio::test]
async fn a_host_goes_only_while_its_service_keeps_its_minimum() {
    // 6 tasks on 3 hosts (2 each); minimum 90 % (6 tasks), maximum 100 %: ECS can
    // neither stop a task first nor start its replacement first, so no host may go.
    let (victim, e) = refused_at_minimum(90, None).await;
    assert!(
        e.contains(&format!(
            "{victim}: service {SERVICE} would run 4 tasks, below its minimum of 6"
        )),
        "{e}"
    );
    // Minimum 50 % (3 of 6), but the target keeps at least 5 of this service running:
    // refused.
    let (victim, e) = refused_at_minimum(50, Some(5)).await;
    assert!(
        e.contains(&format!(
            "{victim}: service {SERVICE} would run 4 tasks, below its minimum of 5"
        )),
        "{e}"
    );

    // Minimum 50 % (3 of 6): the host goes, and the service never runs fewer than 3
    // tasks while its tasks move (checked at every simulated second).
    let mut s = setup(3, 6);
    s.service.minimum_healthy_percent = 50;
    s.service.maximum_percent = 100;
    let mut fx = s.build();
    // The other two hosts have a slot each for its 2 tasks.
    let victim = fx.host_with(2);
    fx.target
        .scale_in(2, &[TaskId::from(victim.as_str())])
        .await
        .unwrap();
    let mut lowest = u32::MAX;
    for _ in 0..900 {
        fx.run(1);
        lowest = lowest.min(fx.running_tasks());
        if fx.clock.now().as_second() % 30 == 0 {
            fx.observe().await;
        }
    }
    assert!(lowest >= 3, "the service ran {lowest} tasks");
    assert_eq!(fx.terminated(&victim), 1);
    assert_eq!(fx.running_tasks(), 6);
}

/// A host running a task with scale-in protection is not drained: ECS would keep the
/// task, and the host would never empty.
#[tokio::test]
async fn a_host_running_a_protected_task_is_refused() {
    let fx = setup(3, 3).build();
    let victim = fx.host_with(1);
    let arn = fx.hosts_tasks(&victim).await.into_iter().next().unwrap();
    fx.world
        .update_task_protection(CLUSTER, std::slice::from_ref(&arn), Some(60))
        .await
        .unwrap();
    let e = failed_reason(
        fx.target
            .scale_in(2, &[TaskId::from(victim.as_str())])
            .await,
    );
    assert!(
        e.contains(&format!("{victim}: task {arn} is protected")),
        "{e}"
    );
}

/// The live work of the world's tasks, as the work registry would report it.
struct WorldWork(World);

impl WorkCounts for WorldWork {
    fn work(&self, task_arn: &str) -> u32 {
        self.0.work(task_arn).unwrap_or(0)
    }
}

/// A host running a task with live sessions is refused (its task would be stopped with
/// them); once the task is idle, the host goes.
#[tokio::test]
async fn a_host_running_a_task_with_live_work_is_refused_until_it_is_idle() {
    let mut fx = setup(3, 4).build();
    fx.target = AsgTarget::new(
        GROUP,
        AsgTargetSpec::new(CLUSTER, GROUP),
        fx.world.clone(),
        fx.world.clone(),
    )
    .with_clock(fx.clock.clone())
    .with_work(Arc::new(WorldWork(fx.world.clone())));
    let victim = fx.host_with(1);
    let arn = fx.hosts_tasks(&victim).await.into_iter().next().unwrap();
    fx.world.set_work(&arn, 3);
    let e = failed_reason(
        fx.target
            .scale_in(2, &[TaskId::from(victim.as_str())])
            .await,
    );
    assert!(
        e.contains(&format!(
            "{victim}: task {arn} has 3 live sessions or workloads"
        )),
        "{e}"
    );
    assert_eq!(fx.hosts()[&victim].0, ContainerInstanceStatus::Active);
    fx.world.set_work(&arn, 0);
    fx.target
        .scale_in(2, &[TaskId::from(victim.as_str())])
        .await
        .unwrap();
    assert_eq!(fx.hosts()[&victim].0, ContainerInstanceStatus::Draining);
    fx.run(1);
}

#[tokio::test]
async fn protected_hosts_are_refused_and_launching_ones_go_at_once() {
    let mut fx = setup(3, 3).build();
    let o = fx.observe().await;
    let protected = o.tasks[0].id.clone();
    fx.world
        .set_instance_protection(GROUP, &[protected.to_string()], true)
        .await
        .unwrap();
    let e = failed_reason(
        fx.target
            .scale_in(2, std::slice::from_ref(&protected))
            .await,
    );
    assert!(e.contains("protected from scale-in"), "{e}");
    let e = failed_reason(fx.target.scale_in(2, &[TaskId("i-nope".into())]).await);
    assert!(e.contains("i-nope: not an instance of group asg"), "{e}");

    fx.run(300);
    fx.target.scale_out(4).await.unwrap();
    let o = fx.observe().await;
    let launching = o
        .tasks
        .iter()
        .find(|t| t.state == TaskState::Pending)
        .unwrap()
        .id
        .clone();
    fx.target
        .scale_in(3, std::slice::from_ref(&launching))
        .await
        .unwrap();
    assert_eq!(
        fx.lifecycle().await.get(&*launching.0),
        Some(&InstanceLifecycleState::Terminating)
    );
    assert_eq!(fx.group_desired().await, 3);
    assert!(fx.target.removal_in_progress().await.is_none());
    let o = fx.observe().await;
    assert_eq!(o.capacity.desired, 3);
    let t = o.tasks.iter().find(|t| t.id == launching).unwrap();
    assert_eq!(t.state, TaskState::Stopping);
}

#[tokio::test]
async fn the_group_min_is_kept() {
    let mut s = setup(2, 1);
    s.group.min = 2;
    let fx = s.build();
    let o = fx.observe().await;
    let e = failed_reason(fx.target.scale_in(1, &victim::choose(&o.tasks, 1)).await);
    assert!(e.contains("at its min 2"), "{e}");
}

/// Replacements that never become healthy in time: the old task stays (minimum healthy
/// 100 %), so the host never drains.
fn slow_replacements() -> Setup {
    let mut s = setup(2, 2);
    s.service.startup = Duration::from_secs(7200);
    s.spec.drain_timeout = Duration::from_secs(600);
    s
}

#[tokio::test]
async fn a_host_still_holding_tasks_at_the_drain_timeout_is_put_back() {
    let mut fx = slow_replacements().build();
    let victim = fx.host_with(1);
    fx.target
        .scale_in(1, &[TaskId::from(victim.as_str())])
        .await
        .unwrap();
    for _ in 0..59 {
        fx.run(10);
        let o = fx.observe().await;
        assert_eq!(o.capacity.desired, 1);
        assert!(fx.running_tasks() >= 2);
    }
    fx.run(9);
    assert_eq!(fx.hosts()[&*victim].0, ContainerInstanceStatus::Draining);
    fx.run(1);
    let o = fx.observe().await;
    assert_eq!(fx.hosts()[&*victim].0, ContainerInstanceStatus::Active);
    assert!(fx.target.removal_in_progress().await.is_none());
    assert_eq!(o.capacity.desired, 2);
    assert_eq!(fx.group_desired().await, 2);
    let t = o.tasks.iter().find(|t| *t.id.0 == *victim).unwrap();
    assert_eq!(t.state, TaskState::Running);
    fx.run(600);
    fx.observe().await;
    assert_eq!(fx.terminated(&victim), 0);
    assert_eq!(fx.running_tasks(), 2);
}

#[tokio::test]
async fn scale_out_cancels_a_removal_and_shutdown_undoes_one() {
    let mut fx = slow_replacements().build();
    let victim = fx.host_with(1);
    fx.target
        .scale_in(1, &[TaskId::from(victim.as_str())])
        .await
        .unwrap();
    fx.run(30);
    fx.observe().await;
    // Back to 2: the draining host is ACTIVE again, nothing launched.
    fx.target.scale_out(2).await.unwrap();
    assert_eq!(fx.hosts()[&*victim].0, ContainerInstanceStatus::Active);
    assert!(fx.target.removal_in_progress().await.is_none());
    assert_eq!(fx.group_desired().await, 2);
    assert_eq!(fx.lifecycle().await.len(), 2);

    fx.target
        .scale_in(1, &[TaskId::from(victim.as_str())])
        .await
        .unwrap();
    assert_eq!(fx.hosts()[&*victim].0, ContainerInstanceStatus::Draining);
    fx.target.shutdown().await;
    assert_eq!(fx.hosts()[&*victim].0, ContainerInstanceStatus::Active);
    assert!(fx.target.removal_in_progress().await.is_none());
}

#[tokio::test]
async fn aws_faults_surface_as_failed() {
    let mut fx = setup(3, 4).build();
    for op in [
        "DescribeAutoScalingGroups",
        "ListContainerInstances",
        "DescribeContainerInstances",
    ] {
        fx.world
            .inject_fault(FaultRule::always(op, AwsErrorKind::Throttling));
        let e = match fx.target.observe().await {
            Err(TargetError::Failed { reason, .. }) => reason,
            other => panic!("{op}: a failure expected, got {other:?}"),
        };
        assert!(e.starts_with(&format!("{op}: throttled")), "{e}");
        fx.world.clear_faults();
    }
    fx.run(300);
    fx.world.inject_fault(FaultRule::times(
        "SetDesiredCapacity",
        AwsErrorKind::Server,
        1,
    ));
    let e = failed_reason(fx.target.scale_out(4).await);
    assert!(e.starts_with("SetDesiredCapacity: AWS server error"), "{e}");
    assert_eq!(fx.group_desired().await, 3);

    let o = fx.observe().await;
    let victims = victim::choose(&o.tasks, 1);
    fx.world.inject_fault(FaultRule::times(
        "UpdateContainerInstancesState",
        AwsErrorKind::AccessDenied,
        1,
    ));
    let e = failed_reason(fx.target.scale_in(2, &victims).await);
    assert!(
        e.contains("failed at mark_draining: UpdateContainerInstancesState: access denied"),
        "{e}"
    );
    // The failed removal holds the target, visible, until redriven.
    let progress = fx.target.removal_in_progress().await.unwrap();
    assert!(progress.error.unwrap().contains("access denied"));
    assert!(
        fx.hosts()
            .values()
            .all(|(s, _)| *s == ContainerInstanceStatus::Active)
    );
    let e = failed_reason(fx.target.scale_in(2, &victims).await);
    assert!(e.contains("failed at mark_draining"), "{e}");

    // Redriven; a failing termination is retried at the next observations; the host
    // goes once.
    fx.target.redrive(&progress.workflow).await.unwrap();
    fx.observe().await;
    assert_eq!(
        fx.hosts()[&*victims[0].0].0,
        ContainerInstanceStatus::Draining
    );
    fx.world.inject_fault(FaultRule::times(
        "TerminateInstanceInAutoScalingGroup",
        AwsErrorKind::Server,
        3,
    ));
    let victim = victims[0].0.clone();
    for _ in 0..300 {
        fx.run(1);
        fx.observe().await;
    }
    assert_eq!(fx.terminated(&victim), 1);
    assert_eq!(fx.group_desired().await, 2);
    assert_eq!(
        fx.world
            .api_stats()
            .calls("TerminateInstanceInAutoScalingGroup"),
        4,
        "3 failed, 1 done"
    );
}

/// Runs a termination capstan did not start (the group lowered by someone else) on a
/// group with a 30 s termination hook, observing every 5 s for 10 minutes; gives the
/// fixture after.
async fn foreign_termination(hook_mode: bool) -> Fixture {
    let mut s = setup(3, 4);
    s.group.hooks = vec![HookSpec {
        name: "drain".into(),
        transition: HookTransition::Terminating,
        heartbeat_timeout: Duration::from_secs(30),
        default_continue: true,
    }];
    if hook_mode {
        s.spec.termination_hook = Some("drain".into());
        s.spec.hook_heartbeat_every = Duration::from_secs(20);
    }
    let mut fx = s.build();
    fx.world.set_desired_capacity(GROUP, 2).await.unwrap();
    for second in 0..600 {
        fx.run(1);
        if second % 5 == 0 {
            fx.observe().await;
        }
    }
    fx
}

/// Lifecycle-hook mode: a host terminated by someone else is drained first, its hook
/// heartbeated past its 30 s timeout while its tasks move, then let go: no task dies
/// with it. Without the mode, the hook times out and the host takes its tasks down.
#[tokio::test]
async fn a_termination_capstan_did_not_start_waits_for_the_host_to_drain() {
    let fx = foreign_termination(true).await;
    let terminated: Vec<&Event> = fx
        .events
        .iter()
        .filter(|e| matches!(e, Event::InstanceTerminated { .. }))
        .collect();
    assert_eq!(terminated.len(), 1, "{terminated:?}");
    assert_eq!(fx.killed_by_a_host(), 0, "no task died with its host");
    assert_eq!(fx.running_tasks(), 4);

    let fx = foreign_termination(false).await;
    assert!(fx.killed_by_a_host() > 0, "without the hook mode tasks die");
}

/// A target on the fixture's world keeping its host removals in `journal`.
fn durable_target(
    fx: &Fixture,
    journal: &Arc<MemoryJournal>,
    failpoint: Option<Failpoint>,
) -> AsgTarget<World, World> {
    let mut t = AsgTarget::new(
        GROUP,
        AsgTargetSpec::new(CLUSTER, GROUP),
        fx.world.clone(),
        fx.world.clone(),
    )
    .with_clock(fx.clock.clone());
    if let Some(f) = failpoint {
        t = t.with_failpoint(f);
    }
    t.with_workflows(
        Arc::clone(journal) as Arc<dyn Journal>,
        WorkflowSettings::default(),
    )
    .unwrap()
}

/// capstan dies (as if SIGKILLed) before or after each step of a host removal, and a
/// new target on the same journal resumes it: at every simulated second the service
/// runs at least its minimum (4 of 4, minimum healthy 100 %), no task dies with the
/// host, the host is terminated exactly once, and the group ends one lower.
#[tokio::test]
async fn a_host_removal_resumes_after_a_crash_at_any_step() {
    let steps = [
        Step::MarkDraining,
        Step::WaitDrained,
        Step::Recheck,
        Step::Terminate,
    ];
    for step in steps {
        for at in [Boundary::Before, Boundary::After] {
            let case = format!("crash {at:?} {}", step.as_str());
            let mut fx = setup(3, 4).build();
            let journal = Arc::new(MemoryJournal::default());
            let fired = Arc::new(AtomicBool::new(false));
            let f = Arc::clone(&fired);
            let failpoint: Failpoint =
                Arc::new(move |s, b| s == step && b == at && !f.swap(true, Ordering::SeqCst));
            let first = durable_target(&fx, &journal, Some(failpoint));
            let victim = fx.host_with(1);
            let victims = [TaskId::from(victim.as_str())];
            // The crash may come within scale_in itself (mark draining runs there).
            let _ = first.scale_in(2, &victims).await;
            let mut seconds = 0;
            while !fired.load(Ordering::SeqCst) {
                fx.run(1);
                seconds += 1;
                assert!(seconds < 900, "{case}: the failpoint never fired");
                assert!(fx.running_tasks() >= 4, "{case}: below 4 at {seconds} s");
                let _ = first.observe().await;
            }
            assert!(
                first.observe().await.is_err(),
                "{case}: dead after the crash"
            );
            drop(first);
            // The restart: the removal is found in the journal and finished.
            let second = durable_target(&fx, &journal, None);
            assert!(
                second.workflow().is_some(),
                "{case}: resumed from the journal"
            );
            while second.workflow().is_some() {
                fx.run(1);
                seconds += 1;
                assert!(seconds < 1800, "{case}: not finished");
                assert!(fx.running_tasks() >= 4, "{case}: below 4 at {seconds} s");
                second.observe().await.unwrap();
            }
            fx.run(300);
            assert_eq!(fx.terminated(&victim), 1, "{case}: terminated exactly once");
            assert_eq!(
                fx.world
                    .api_stats()
                    .calls("TerminateInstanceInAutoScalingGroup"),
                1,
                "{case}: one termination call"
            );
            assert_eq!(fx.killed_by_a_host(), 0, "{case}: no task died with it");
            assert_eq!(fx.group_desired().await, 2, "{case}");
            assert_eq!(fx.running_tasks(), 4, "{case}");
            let (w, events) = journal.all().pop().unwrap();
            assert_eq!(w.status, Status::Done, "{case}: {events:#?}");
            assert_eq!(w.remaining_count(), 1, "{case}: the host was not kept");
        }
    }
}

/// A host terminated by someone else while it drains is dropped from the removal,
/// never terminated again; a group that does not exist is named in the error.
#[tokio::test]
async fn a_host_gone_mid_drain_is_skipped_and_a_missing_group_is_named() {
    let mut fx = slow_replacements().build();
    let victim = fx.host_with(1);
    fx.target
        .scale_in(1, &[TaskId::from(victim.as_str())])
        .await
        .unwrap();
    fx.run(20);
    fx.observe().await;
    // Someone terminates it (with its task) before it drained.
    fx.world.terminate_instance(&victim, false).await.unwrap();
    for _ in 0..120 {
        fx.run(1);
        fx.observe().await;
    }
    assert!(fx.target.removal_in_progress().await.is_none());
    assert_eq!(
        fx.world
            .api_stats()
            .calls("TerminateInstanceInAutoScalingGroup"),
        1,
        "only the other party's call"
    );
    assert_eq!(fx.terminated(&victim), 1);

    let missing = AsgTarget::new(
        "hosts",
        AsgTargetSpec::new(CLUSTER, "no-such-group"),
        fx.world.clone(),
        fx.world.clone(),
    )
    .with_clock(fx.clock.clone());
    let e = match missing.observe().await {
        Err(e) => e.to_string(),
        Ok(o) => panic!("a missing group observed: {o:?}"),
    };
    assert!(
        e.contains("DescribeAutoScalingGroups") && e.contains("no-such-group"),
        "{e}"
    );
}

#[tokio::test]
async fn the_hosts_view_shows_reservation_and_draining_hosts() {
    let fx = setup(3, 4).build();
    assert!(fx.target.hosts_view().is_none(), "nothing before observing");
    let o = fx.observe().await;
    let view = fx.target.hosts_view().unwrap();
    assert_eq!(
        (view.cluster.as_str(), view.group.as_str()),
        (CLUSTER, GROUP)
    );
    assert_eq!(view.at, fx.clock.now());
    assert_eq!(view.hosts.len(), 3);
    let hosts = fx.hosts();
    for h in &view.hosts {
        assert_eq!(h.state, TaskState::Running);
        // Each task reserves 1024 CPU and 2048 MiB (see `Setup::build`).
        let tasks = u32::try_from(hosts[&h.id].1).unwrap();
        assert_eq!(h.tasks, tasks);
        assert_eq!((h.cpu_registered, h.cpu_reserved), (4096, 1024 * tasks));
        assert_eq!(h.memory_reserved, 2048 * tasks);
        assert!(h.memory_registered >= h.memory_reserved);
        assert!(!h.zone.is_empty());
    }
    assert_eq!(view.hosts.iter().map(|h| h.tasks).sum::<u32>(), 4);
    // A host being removed shows as draining, with the removal in progress.
    let victims = victim::choose(&o.tasks, 1);
    fx.target.scale_in(2, &victims).await.unwrap();
    fx.observe().await;
    let view = fx.target.hosts_view().unwrap();
    let draining: Vec<_> = view
        .hosts
        .iter()
        .filter(|h| h.state == TaskState::Draining)
        .map(|h| h.id.clone())
        .collect();
    assert_eq!(draining, [victims[0].to_string()]);
    let removal = fx.target.removal_in_progress().await.unwrap();
    assert_eq!(removal.draining, victims);
}
