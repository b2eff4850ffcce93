//! Blue/green host rotation ([`Rotator`]) against the world model on a virtual clock:
//! a cluster's 4 hosts move from group "blue" to group "green" while an EC2 service of
//! 20 tasks at minimum healthy 50 % keeps at least 10 running at every second; a
//! rotation resumed by a new driver from its saved state; bad input (a missing group,
//! B's max too small, A's min above 0, an instance that is not a container instance, a
//! host whose container instance disappears mid-drain) fails clearly or is skipped
//! with its reason, never terminated.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_aws_api::{
    AutoScaling, AwsError, AwsErrorKind, ContainerInstance, ContainerInstanceStatus, DesiredStatus,
    Ecs, EcsService, EcsTask, Failure, ProtectionResult,
};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::rotation::{Phase, Rotation, Status};
use capstan_targets::WorkCounts;
use capstan_targets::asg::AsgTargetSpec;
use capstan_targets::rotate::Rotator;
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, Event, FaultRule, LaunchType, ServiceSpec, World,
    WorldConfig,
};

const CLUSTER: &str = "default";
const SERVICE: &str = "api";
const BLUE: &str = "blue";
const GREEN: &str = "green";
/// The service's minimum healthy count: 50 % of 20.
const FLOOR: u32 = 10;

/// ECS of the world, with some EC2 instances' container instances hidden: they look
/// like instances that are not container instances of the cluster (never
/// registered, or deregistered).
#[derive(Clone)]
struct Hiding {
    world: World,
    hidden: Arc<Mutex<BTreeSet<String>>>,
}

impl Hiding {
    fn hidden(&self, id: &str) -> bool {
        self.hidden.lock().unwrap().contains(id)
    }
}

impl Ecs for Hiding {
    async fn describe_service(&self, c: &str, s: &str) -> Result<EcsService, AwsError> {
        self.world.describe_service(c, s).await
    }
    async fn describe_services(
        &self,
        c: &str,
        s: &[Arc<str>],
    ) -> Result<(Vec<EcsService>, Vec<Failure>), AwsError> {
        self.world.describe_services(c, s).await
    }
    async fn list_tasks(
        &self,
        c: &str,
        s: &str,
        d: DesiredStatus,
    ) -> Result<Vec<Arc<str>>, AwsError> {
        self.world.list_tasks(c, s, d).await
    }
    async fn list_instance_tasks(&self, c: &str, ci: &str) -> Result<Vec<Arc<str>>, AwsError> {
        self.world.list_instance_tasks(c, ci).await
    }
    async fn list_services(&self, c: &str) -> Result<Vec<Arc<str>>, AwsError> {
        self.world.list_services(c).await
    }
    async fn describe_tasks(
        &self,
        c: &str,
        t: &[Arc<str>],
    ) -> Result<(Vec<EcsTask>, Vec<Failure>), AwsError> {
        self.world.describe_tasks(c, t).await
    }
    async fn update_desired_count(&self, c: &str, s: &str, d: u32) -> Result<(), AwsError> {
        self.world.update_desired_count(c, s, d).await
    }
    async fn stop_task(&self, c: &str, t: &str, r: &str) -> Result<(), AwsError> {
        self.world.stop_task(c, t, r).await
    }
    async fn update_task_protection(
        &self,
        c: &str,
        t: &[Arc<str>],
        m: Option<u32>,
    ) -> Result<ProtectionResult, AwsError> {
        self.world.update_task_protection(c, t, m).await
    }
    async fn get_task_protection(
        &self,
        c: &str,
        t: &[Arc<str>],
    ) -> Result<ProtectionResult, AwsError> {
        self.world.get_task_protection(c, t).await
    }
    async fn list_container_instances(
        &self,
        c: &str,
        s: Option<ContainerInstanceStatus>,
    ) -> Result<Vec<String>, AwsError> {
        let arns = self.world.list_container_instances(c, s).await?;
        let (found, _) = self.world.describe_container_instances(c, &arns).await?;
        Ok(found
            .into_iter()
            .filter(|h| !self.hidden(&h.ec2_instance_id))
            .map(|h| h.arn)
            .collect())
    }
    async fn describe_container_instances(
        &self,
        c: &str,
        i: &[String],
    ) -> Result<(Vec<ContainerInstance>, Vec<Failure>), AwsError> {
        let (found, missing) = self.world.describe_container_instances(c, i).await?;
        Ok((
            found
                .into_iter()
                .filter(|h| !self.hidden(&h.ec2_instance_id))
                .collect(),
            missing,
        ))
    }
    async fn update_container_instances_state(
        &self,
        c: &str,
        i: &[String],
        s: ContainerInstanceStatus,
    ) -> Result<Vec<Failure>, AwsError> {
        self.world.update_container_instances_state(c, i, s).await
    }
}

struct Fixture {
    world: World,
    clock: VirtualClock,
    ecs: Hiding,
    /// Every world event so far.
    events: Vec<Event>,
    /// The fewest tasks RUNNING seen at any second.
    fewest_running: u32,
    /// The blue hosts at the start.
    blue_hosts: Vec<String>,
}

/// A cluster with group blue of 4 hosts (4096 CPU, 8192 MiB: 8 tasks of 512 / 1024
/// each) and an empty group green of the same hosts, running an EC2 service of 20
/// warm tasks at minimum healthy 50 %, maximum 100 %.
async fn build(blue_min: u32, green_max: u32) -> Fixture {
    let clock = VirtualClock::at_epoch();
    let world = World::new(
        WorldConfig {
            seed: 11,
            rate_limits: false,
            ..WorldConfig::default()
        },
        clock.clone(),
    );
    let group = |name: &str, desired: u32| AutoScalingGroupSpec {
        name: name.into(),
        min: 0,
        max: 10,
        desired,
        instance_cpu: 4096,
        instance_memory: 8192,
        ..AutoScalingGroupSpec::default()
    };
    world
        .add_cluster(ClusterSpec {
            name: CLUSTER.into(),
            groups: vec![
                AutoScalingGroupSpec {
                    min: blue_min,
                    ..group(BLUE, 4)
                },
                AutoScalingGroupSpec {
                    max: green_max,
                    ..group(GREEN, 0)
                },
            ],
        })
        .unwrap();
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: SERVICE.into(),
            launch_type: LaunchType::Ec2,
            desired: 20,
            task_cpu: 512,
            task_memory: 1024,
            minimum_healthy_percent: 50,
            maximum_percent: 100,
            ..ServiceSpec::default()
        })
        .unwrap();
    let mut blue_hosts: Vec<String> = world
        .describe_group(BLUE)
        .await
        .unwrap()
        .instances
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    blue_hosts.sort();
    let fx = Fixture {
        ecs: Hiding {
            world: world.clone(),
            hidden: Arc::default(),
        },
        world,
        clock,
        events: Vec::new(),
        fewest_running: u32::MAX,
        blue_hosts,
    };
    assert_eq!(fx.running(), 20, "a warm start");
    fx
}

impl Fixture {
    fn rotator(&self) -> Rotator<Hiding, World> {
        Rotator::new(
            AsgTargetSpec::new(CLUSTER, BLUE),
            GREEN,
            self.ecs.clone(),
            self.world.clone(),
        )
        .with_clock(self.clock.clone())
    }

    fn rotation(&self) -> Rotation {
        Rotation::new("r1", CLUSTER, BLUE, GREEN, self.clock.now())
    }

    fn running(&self) -> u32 {
        self.world.service_counts(CLUSTER, SERVICE).unwrap().running
    }

    /// One second passes; the running count is recorded.
    fn tick(&mut self) {
        self.clock.advance(Duration::from_secs(1));
        self.events.extend(self.world.advance());
        let running = self.running();
        self.fewest_running = self.fewest_running.min(running);
        assert!(
            running >= FLOOR,
            "{running} tasks running at {}",
            self.clock.now()
        );
    }

    /// Drives `r` with `rotator` second by second, a pass whenever one is due, until
    /// it ends or `until` says stop (checked after each pass) or `limit` seconds pass.
    /// Returns whether it ended.
    async fn drive(
        &mut self,
        rotator: &Rotator<Hiding, World>,
        r: &mut Rotation,
        limit: u64,
        mut until: impl FnMut(&Rotation, &Fixture) -> bool,
    ) -> bool {
        let mut due = self.clock.now();
        for _ in 0..limit {
            let mut passes = 0;
            while self.clock.now() >= due {
                let next = rotator.step(r).await;
                let stop = until(r, self);
                match next {
                    None => return true,
                    Some(d) => {
                        due = capstan_core::clock::add(self.clock.now(), d);
                    }
                }
                if stop {
                    return false;
                }
                passes += 1;
                assert!(passes < 50, "a pass loop: {r:?}");
            }
            self.tick();
        }
        false
    }

    fn terminations(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for e in &self.events {
            if let Event::InstanceTerminated { instance_id, .. } = e {
                *out.entry(instance_id.clone()).or_default() += 1;
            }
        }
        out
    }

    async fn desired(&self, group: &str) -> u32 {
        self.world.describe_group(group).await.unwrap().desired
    }

    /// EC2 instance id → (group, container instance status, tasks on it).
    /// The ARNs of the tasks on the host behind EC2 instance `id`.
    fn tasks_on(&self, id: &str) -> Vec<String> {
        self.world
            .cluster_state(CLUSTER)
            .unwrap()
            .instances
            .into_iter()
            .find(|i| i.ec2_instance_id == id)
            .map(|i| i.tasks)
            .unwrap_or_default()
    }

    fn hosts(&self) -> BTreeMap<String, (String, ContainerInstanceStatus, usize)> {
        self.world
            .cluster_state(CLUSTER)
            .unwrap()
            .instances
            .into_iter()
            .map(|i| (i.ec2_instance_id, (i.group, i.status, i.tasks.len())))
            .collect()
    }

    /// The service's tasks are all on green's hosts, 20 running, and no task died
    /// with a terminated host.
    fn all_on_green(&self) {
        let killed = self
            .events
            .iter()
            .filter(
                |e| matches!(e, Event::TaskStopped { reason, .. } if reason.contains("terminated")),
            )
            .count();
        assert_eq!(killed, 0, "tasks died with their host");
        let hosts = self.hosts();
        for (id, (group, _, tasks)) in &hosts {
            if group != GREEN {
                assert_eq!(
                    *tasks, 0,
                    "host {id} of {group} still holds tasks: {hosts:?}"
                );
            }
        }
        let on_green: usize = hosts
            .values()
            .filter(|(g, _, _)| g == GREEN)
            .map(|(_, _, n)| n)
            .sum();
        assert_eq!(on_green, 20, "{hosts:?}");
        assert_eq!(self.running(), 20);
    }
}

/// The whole rotation: green raised to 4 and ACTIVE, blue's hosts drained and
/// terminated one at a time (each exactly once), blue at 0, every task on green, and
/// never fewer than 10 tasks running.
#[tokio::test]
async fn a_rotation_moves_every_host_and_keeps_the_service_above_its_minimum() {
    let mut fx = build(0, 10).await;
    let rotator = fx.rotator();
    let mut r = fx.rotation();
    let start = fx.clock.now();
    let mut phases = vec![r.phase];
    let ended = fx
        .drive(&rotator, &mut r, 4000, |r, _| {
            if phases.last() != Some(&r.phase) {
                phases.push(r.phase);
            }
            false
        })
        .await;
    assert!(ended, "not done in time: {}", r.summary());
    assert_eq!(r.status, Status::Done, "{r:#?}");
    eprintln!(
        "rotation of 4 hosts: {} s simulated, fewest running {} of 20 (floor {FLOOR})",
        capstan_core::clock::elapsed(start, fx.clock.now()).as_secs(),
        fx.fewest_running
    );
    assert_eq!(
        phases,
        [
            Phase::ScaleUp,
            Phase::WaitActive,
            Phase::Remove,
            Phase::ZeroFrom,
            Phase::Done
        ]
    );
    assert_eq!(r.size, Some(4));
    let mut removed = r.removed.clone();
    removed.sort();
    assert_eq!(removed, fx.blue_hosts);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);

    let p = r.progress();
    assert_eq!((p.removed, p.total), (4, 4));
    // Let the last terminations finish.
    for _ in 0..120 {
        fx.tick();
    }
    let terminated = fx.terminations();
    for id in &fx.blue_hosts {
        assert_eq!(terminated.get(id), Some(&1), "{id}: {terminated:?}");
    }
    assert_eq!(terminated.len(), 4, "only blue's hosts: {terminated:?}");
    assert_eq!(fx.desired(GREEN).await, 4);
    assert_eq!(fx.desired(BLUE).await, 0);
    fx.all_on_green();
    assert!(fx.fewest_running >= FLOOR);
    assert!(
        fx.fewest_running < 20,
        "the floor was exercised: {}",
        fx.fewest_running
    );
}

/// The live work of the world's tasks, as the work registry would report it.
struct WorldWork(World);

impl WorkCounts for WorldWork {
    fn work(&self, task_arn: &str) -> u32 {
        self.0.work(task_arn).unwrap_or(0)
    }
}

/// A host of A running a task with live sessions waits (the rotation says why) while
/// the others go; once the task is idle, it goes too.
#[tokio::test]
async fn a_host_with_live_work_waits_until_its_tasks_are_idle() {
    let mut fx = build(0, 10).await;
    let rotator = fx
        .rotator()
        .with_work(Arc::new(WorldWork(fx.world.clone())));
    let mut r = fx.rotation();
    let busy_host = fx.blue_hosts[0].clone();
    let arns = fx.tasks_on(&busy_host);
    let busy = arns[0].clone();
    fx.world.set_work(&busy, 2);
    let mut reasons = Vec::new();
    let ended = fx
        .drive(&rotator, &mut r, 3000, |r, _| {
            if let Some(w) = &r.waiting
                && reasons.last() != Some(w)
            {
                reasons.push(w.clone());
            }
            false
        })
        .await;
    assert!(!ended, "it waits for the busy host: {}", r.summary());
    assert!(
        reasons
            .iter()
            .any(|w| w.contains(&format!("task {busy} has 2 live sessions or workloads"))),
        "{reasons:#?}"
    );
    assert!(!fx.terminations().contains_key(&busy_host));
    assert_eq!(r.removed.len(), 3, "the other hosts went: {}", r.summary());
    fx.world.set_work(&busy, 0);
    let ended = fx.drive(&rotator, &mut r, 3000, |_, _| false).await;
    assert!(ended, "not done once idle: {}", r.summary());
    assert_eq!(r.status, Status::Done, "{r:#?}");
    for _ in 0..120 {
        fx.tick();
    }
    assert_eq!(fx.terminations().get(&busy_host), Some(&1));
    fx.all_on_green();
}

/// A host removal that fails (ECS refuses DRAINING once: access denied) holds the A
/// target; the rotation shows why, redrives it, and still moves every host once.
#[tokio::test]
async fn a_failed_host_removal_is_redriven_and_the_rotation_finishes() {
    let mut fx = build(0, 10).await;
    let rotator = fx.rotator();
    let mut r = fx.rotation();
    // Up to the first removal, then the fault.
    fx.drive(&rotator, &mut r, 4000, |r, _| r.phase == Phase::Remove)
        .await;
    fx.world.inject_fault(FaultRule::times(
        "UpdateContainerInstancesState",
        AwsErrorKind::AccessDenied,
        1,
    ));
    let mut reasons = Vec::new();
    let ended = fx
        .drive(&rotator, &mut r, 6000, |r, _| {
            if let Some(w) = &r.waiting
                && reasons.last() != Some(w)
            {
                reasons.push(w.clone());
            }
            false
        })
        .await;
    assert!(ended, "not done in time: {}", r.summary());
    assert_eq!(r.status, Status::Done, "{r:#?}");
    assert!(
        reasons
            .iter()
            .any(|w| w.contains("failed at mark_draining") && w.contains("redriven")),
        "{reasons:#?}"
    );
    for _ in 0..120 {
        fx.tick();
    }
    let terminated = fx.terminations();
    for id in &fx.blue_hosts {
        assert_eq!(terminated.get(id), Some(&1), "{id}: {terminated:?}");
    }
    fx.all_on_green();
}

/// A driver dropped mid-removal (capstan stopped, its host left DRAINING) and a new
/// one built from the saved state finish the rotation with the same guarantees.
#[tokio::test]
async fn a_rotation_resumes_from_its_saved_state_with_a_new_driver() {
    let mut fx = build(0, 10).await;
    let mut r = fx.rotation();
    {
        let rotator = fx.rotator();
        let ended = fx
            .drive(&rotator, &mut r, 4000, |r, fx| {
                r.removed.len() == 1
                    && r.current.as_ref().is_some_and(|c| {
                        fx.hosts()
                            .get(c)
                            .is_some_and(|h| h.1 == ContainerInstanceStatus::Draining && h.2 > 0)
                    })
            })
            .await;
        assert!(!ended);
        // Dropped without shutdown: the host stays DRAINING.
    }
    let saved = r.clone();
    let draining = r.current.clone().unwrap();
    assert_eq!(fx.hosts()[&draining].1, ContainerInstanceStatus::Draining);
    for _ in 0..20 {
        fx.tick();
    }
    let mut r = saved;
    let rotator = fx.rotator();
    let ended = fx.drive(&rotator, &mut r, 4000, |_, _| false).await;
    assert!(ended, "{}", r.summary());
    assert_eq!(r.status, Status::Done, "{r:#?}");
    assert!(
        r.notes.iter().any(|n| n
            .message
            .contains(&format!("host {draining} was left DRAINING"))),
        "{:?}",
        r.notes
    );
    for _ in 0..120 {
        fx.tick();
    }
    let terminated = fx.terminations();
    for id in &fx.blue_hosts {
        assert_eq!(terminated.get(id), Some(&1), "{id}: {terminated:?}");
    }
    assert_eq!(r.removed.len(), 4);
    assert_eq!(fx.desired(BLUE).await, 0);
    assert_eq!(fx.desired(GREEN).await, 4);
    fx.all_on_green();
}

/// A group that does not exist, a green group too small, a blue group with a min:
/// each fails at once with a message naming it, and nothing is changed.
#[tokio::test]
async fn bad_groups_fail_clearly_before_anything_changes() {
    let fx = build(0, 10).await;
    for (from, to, want) in [
        (
            "nope",
            GREEN,
            "Auto Scaling group nope (of cluster default) not found",
        ),
        (
            BLUE,
            "gone",
            "Auto Scaling group gone (of cluster default) not found",
        ),
    ] {
        let rotator = Rotator::new(
            AsgTargetSpec::new(CLUSTER, from),
            to,
            fx.ecs.clone(),
            fx.world.clone(),
        )
        .with_clock(fx.clock.clone());
        let mut r = Rotation::new("r", CLUSTER, from, to, fx.clock.now());
        assert_eq!(rotator.step(&mut r).await, None);
        match &r.status {
            Status::Failed { error } => assert!(error.contains(want), "{error}"),
            other => panic!("{other:?}"),
        }
    }
    let small = build(0, 3).await;
    let mut r = small.rotation();
    assert_eq!(small.rotator().step(&mut r).await, None);
    match &r.status {
        Status::Failed { error } => assert!(
            error.contains("group green has max size 3, below the 4 hosts to reach"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(small.desired(GREEN).await, 0, "nothing changed");
    let pinned = build(2, 10).await;
    let mut r = pinned.rotation();
    assert_eq!(pinned.rotator().step(&mut r).await, None);
    match &r.status {
        Status::Failed { error } => assert!(
            error.contains("group blue has min size 2") && error.contains("set its min size to 0"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(pinned.desired(GREEN).await, 0, "nothing changed");
    // The cluster must exist too.
    let rotator = Rotator::new(
        AsgTargetSpec::new("elsewhere", BLUE),
        GREEN,
        fx.ecs.clone(),
        fx.world.clone(),
    );
    let mut r = Rotation::new("r", "elsewhere", BLUE, GREEN, fx.clock.now());
    assert_eq!(rotator.step(&mut r).await, None);
    assert!(
        matches!(&r.status, Status::Failed { error } if error.contains("cluster elsewhere not found")),
        "{:?}",
        r.status
    );
}

/// An instance of blue that is not a container instance of the cluster is skipped with
/// its reason and never terminated; blue is left at 1 so Auto Scaling keeps it.
#[tokio::test]
async fn an_instance_that_is_not_a_container_instance_is_skipped_never_terminated() {
    let mut fx = build(0, 10).await;
    let odd = fx.blue_hosts[0].clone();
    fx.ecs.hidden.lock().unwrap().insert(odd.clone());
    let rotator = fx.rotator();
    let mut r = fx.rotation();
    assert!(fx.drive(&rotator, &mut r, 4000, |_, _| false).await);
    assert_eq!(r.status, Status::Done, "{r:#?}");
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert_eq!(r.skipped[0].instance, odd);
    assert!(
        r.skipped[0]
            .reason
            .contains("not a container instance of cluster default"),
        "{}",
        r.skipped[0].reason
    );
    assert_eq!(r.removed.len(), 3);
    for _ in 0..120 {
        fx.tick();
    }
    let terminated = fx.terminations();
    assert_eq!(terminated.get(&odd), None, "never terminated");
    assert_eq!(terminated.len(), 3);
    assert_eq!(fx.desired(BLUE).await, 1, "kept by its group");
    assert!(r.notes.iter().any(|n| n.message.contains("left at 1")));
}

/// A host whose container instance disappears while it drains cannot be proven
/// drained: it is skipped with the reason and never terminated; the rest go on.
#[tokio::test]
async fn a_host_that_disappears_mid_drain_is_skipped_never_terminated() {
    let mut fx = build(0, 10).await;
    let rotator = fx.rotator();
    let mut r = fx.rotation();
    let ended = fx
        .drive(&rotator, &mut r, 4000, |r, fx| {
            r.current
                .as_ref()
                .is_some_and(|c| fx.hosts()[c].1 == ContainerInstanceStatus::Draining)
        })
        .await;
    assert!(!ended);
    let lost = r.current.clone().unwrap();
    fx.ecs.hidden.lock().unwrap().insert(lost.clone());
    assert!(fx.drive(&rotator, &mut r, 4000, |_, _| false).await);
    assert_eq!(r.status, Status::Done, "{r:#?}");
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert_eq!(r.skipped[0].instance, lost);
    assert!(
        r.skipped[0].reason.contains("disappeared while it drained"),
        "{}",
        r.skipped[0].reason
    );
    assert_eq!(r.removed.len(), 3);
    for _ in 0..120 {
        fx.tick();
    }
    let terminated = fx.terminations();
    assert_eq!(terminated.get(&lost), None, "never terminated");
    assert_eq!(terminated.len(), 3);
    assert_eq!(fx.desired(BLUE).await, 1);
}
