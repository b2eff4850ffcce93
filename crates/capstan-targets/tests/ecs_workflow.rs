//! The durable scale-in workflow of the ECS target against the world model (ECS + an
//! IP target group on a virtual clock):
//!
//! - 6 tasks, sessions on 3, a decision to go to 3: exactly the 3 idle tasks are
//!   deregistered, drained and stopped; `desiredCount` ends at 3, lowered once;
//! - a session appearing on a victim during the drain keeps that victim (registered
//!   again); the others go;
//! - a crash (a failpoint stops the target dead) before and after every step: a new
//!   target on the same journal finishes the workflow, the count lowered exactly once,
//!   no task with a session stopped;
//! - AWS errors on 20 % of calls: the workflow still completes, nothing applied twice;
//! - a permanent failure at the deregistration, fixed, then redriven: it resumes from
//!   that step, not from the start;
//! - an EC2 service in bridge mode behind an instance target group (four tasks on one
//!   instance, each on its own host port): exactly the victims' (instance, host port)
//!   targets are deregistered, the workflow waits while one drains, the victims stop
//!   and the other tasks on the same instance stay registered; a victim that gets a
//!   session while draining is registered again under its (instance, port) and kept.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_aws_api::{AwsErrorKind, Ecs, Elb, TargetHealthState, TargetRef};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::model::TaskId;
use capstan_core::workflow::{Status, Step, WorkflowSettings};
use capstan_targets::Target;
use capstan_targets::ecs::durable::{Boundary, Journal, MemoryJournal};
use capstan_targets::ecs::{EcsTarget, EcsTargetSpec, WorkCounts};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, FaultRule, LaunchType, NetworkMode, ServiceSpec,
    TargetGroupSpec, World, WorldConfig,
};

const CLUSTER: &str = "default";
const SERVICE: &str = "app";

/// Live sessions per task, told to the world too (so a draining target with sessions
/// stays draining and a task with sessions would not exit).
struct Work {
    world: World,
    counts: Mutex<HashMap<String, u32>>,
}

impl Work {
    fn set(&self, arn: &str, n: u32) {
        self.counts.lock().unwrap().insert(arn.to_owned(), n);
        self.world.set_work(arn, n);
    }
}

impl WorkCounts for Work {
    fn work(&self, task_arn: &str) -> u32 {
        self.counts
            .lock()
            .unwrap()
            .get(task_arn)
            .copied()
            .unwrap_or(0)
    }
}

struct Fixture {
    world: World,
    clock: VirtualClock,
    work: Arc<Work>,
    journal: Arc<MemoryJournal>,
    tasks: Vec<String>,
}

fn settings() -> WorkflowSettings {
    WorkflowSettings {
        first_check_after: Duration::from_secs(10),
        check_every: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(600),
        cut_after: None,
        max_attempts: 12,
        retry_first: Duration::from_secs(1),
        retry_max: Duration::from_secs(10),
    }
}

fn fixture(seed: u64) -> Fixture {
    let clock = VirtualClock::at_epoch();
    let world = World::new(
        WorldConfig {
            seed,
            ..WorldConfig::default()
        },
        clock.clone(),
    );
    world
        .add_service(ServiceSpec {
            desired: 6,
            target_group: Some(TargetGroupSpec {
                deregistration_delay: Duration::from_secs(300),
                routing_lag: Duration::from_secs(5),
                ..TargetGroupSpec::default()
            }),
            ..ServiceSpec::default()
        })
        .unwrap();
    let work = Arc::new(Work {
        world: world.clone(),
        counts: Mutex::new(HashMap::new()),
    });
    let tasks: Vec<String> = world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .map(|t| t.arn)
        .collect();
    // Sessions on the three newest tasks.
    for arn in &tasks[3..] {
        work.set(arn, 2);
    }
    Fixture {
        world,
        clock,
        work,
        journal: Arc::new(MemoryJournal::default()),
        tasks,
    }
}

impl Fixture {
    /// The target, with no target group configured: the workflow finds the service's
    /// group in `DescribeServices`.
    fn target(&self) -> EcsTarget<World, World> {
        let spec = EcsTargetSpec::new(CLUSTER, SERVICE);
        EcsTarget::new(
            SERVICE,
            spec,
            self.world.clone(),
            Some(self.world.clone()),
            Some(self.work.clone() as Arc<dyn WorkCounts>),
        )
        .with_clock(self.clock.clone())
        .with_workflows(self.journal.clone() as Arc<dyn Journal>, settings())
        .unwrap()
    }

    fn idle(&self) -> Vec<TaskId> {
        self.tasks[..3]
            .iter()
            .map(|a| TaskId::from(a.as_str()))
            .collect()
    }

    /// Observes every 5 s until no workflow holds the service (at most 30 min).
    async fn run_to_end(&self, target: &EcsTarget<World, World>) {
        for _ in 0..360 {
            let _ = target.observe().await;
            if target.workflow().is_none() {
                return;
            }
            self.clock.advance(Duration::from_secs(5));
        }
        panic!("the workflow never ended: {:?}", target.workflow());
    }

    fn desired(&self) -> u32 {
        self.world.service_counts(CLUSTER, SERVICE).unwrap().desired
    }

    fn running(&self) -> Vec<String> {
        self.world
            .tasks(CLUSTER, SERVICE)
            .into_iter()
            .filter(|t| t.status == capstan_aws_api::TaskStatus::Running)
            .map(|t| t.arn)
            .collect()
    }

    /// Lets ECS finish stopping the victims.
    fn settle(&self) {
        for _ in 0..24 {
            self.clock.advance(Duration::from_secs(5));
            self.world.advance();
        }
    }

    fn assert_busy_untouched(&self) {
        let running = self.running();
        for arn in &self.tasks[3..] {
            assert!(running.contains(arn), "a task with sessions stopped: {arn}");
        }
    }

    fn last_status(&self) -> Status {
        self.journal.all().last().unwrap().0.status.clone()
    }
}

#[tokio::test]
async fn exactly_the_idle_tasks_are_drained_and_stopped() {
    let f = fixture(1);
    let target = f.target();
    target.observe().await.unwrap();
    target.scale_in(3, &f.idle()).await.unwrap();
    // Deregistered at once; the service reports the count it goes to.
    let observed = target.observe().await.unwrap();
    assert_eq!(observed.capacity.desired, 3);
    let draining: Vec<String> = observed
        .tasks
        .iter()
        .filter(|t| t.state == capstan_core::model::TaskState::Draining)
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(draining.len(), 3);
    for arn in &f.tasks[..3] {
        assert!(draining.contains(arn));
    }
    f.run_to_end(&target).await;
    f.settle();
    assert_eq!(f.desired(), 3);
    assert_eq!(f.world.api_stats().calls("UpdateService"), 1);
    assert_eq!(f.world.api_stats().calls("StopTask"), 3);
    assert_eq!(f.world.api_stats().calls("DeregisterTargets"), 1);
    f.assert_busy_untouched();
    assert_eq!(f.running().len(), 3);
    assert_eq!(f.last_status(), Status::Done);
    let (_, journal) = f.journal.all().pop().unwrap();
    let steps: Vec<&str> = journal
        .iter()
        .filter(|e| e.event == "done")
        .map(|e| e.step.as_str())
        .collect();
    assert_eq!(
        steps,
        vec![
            "mark_draining",
            "deregister",
            "wait_drained",
            "recheck",
            "protect",
            "lower_desired",
            "stop_tasks",
            "release"
        ]
    );
    // No protection left behind.
    let arns: Vec<Arc<str>> = f.running().iter().map(|a| Arc::from(a.as_str())).collect();
    let prot = f.world.get_task_protection(CLUSTER, &arns).await.unwrap();
    assert!(prot.protected.iter().all(|p| !p.enabled), "{prot:?}");
}

/// A deployment that starts after the workflow did holds it before the count is
/// lowered (AWS holds scale-in during a deployment): nothing is lowered or stopped
/// while it rolls.
#[tokio::test]
async fn a_deployment_started_mid_workflow_holds_it_until_it_is_over() {
    let f = fixture(1);
    let target = f.target();
    target.observe().await.unwrap();
    target.scale_in(3, &f.idle()).await.unwrap();
    f.world.start_deployment(CLUSTER, SERVICE).unwrap();
    let mut held = 0;
    for _ in 0..12 {
        f.clock.advance(Duration::from_secs(5));
        target.observe().await.unwrap();
        let w = target.workflow().unwrap();
        if w.step == capstan_core::workflow::Step::Recheck {
            held += 1;
        }
        assert!(
            w.step <= capstan_core::workflow::Step::Recheck,
            "{:?}",
            w.step
        );
        assert_eq!(f.desired(), 6, "not lowered during the deployment");
    }
    assert!(
        held > 0,
        "the workflow reached the recheck and waited there"
    );
    // The deployment replaces every task, the victims too: once it is over, the
    // recheck finds them gone and keeps them; nothing is lowered or stopped by the
    // workflow (the next evaluation decides again on the new tasks).
    f.run_to_end(&target).await;
    let (w, journal) = f.journal.all().pop().unwrap();
    assert_eq!(w.status, Status::Done);
    assert!(
        w.victims
            .iter()
            .all(|v| v.kept.as_deref() == Some("no longer running")),
        "{:?}",
        w.victims
    );
    assert_eq!(f.desired(), 6);
    assert_eq!(f.world.api_stats().calls("UpdateService"), 0);
    assert_eq!(f.world.api_stats().calls("StopTask"), 0);
    assert!(
        journal
            .iter()
            .any(|e| e.event == "held" && e.detail.contains("deployment")),
        "{journal:#?}"
    );
}

#[tokio::test]
async fn a_victim_that_gets_a_session_while_draining_is_kept() {
    let f = fixture(2);
    let target = f.target();
    target.observe().await.unwrap();
    target.scale_in(3, &f.idle()).await.unwrap();
    f.clock.advance(Duration::from_secs(3));
    target.observe().await.unwrap();
    assert_eq!(target.workflow().unwrap().step, Step::WaitDrained);
    // A session lands on the first victim (the load balancer's routing lag).
    f.work.set(&f.tasks[0], 1);
    f.run_to_end(&target).await;
    f.settle();
    assert_eq!(f.desired(), 4, "only two victims went");
    let running = f.running();
    assert!(
        running.contains(&f.tasks[0]),
        "the victim with a session is kept"
    );
    f.assert_busy_untouched();
    // It is back in the target group.
    let health = f
        .world
        .describe_target_health(&TargetGroupSpec::default().arn)
        .await
        .unwrap();
    let ip = f
        .world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .find(|t| t.arn == f.tasks[0])
        .unwrap()
        .ip;
    assert!(
        health
            .iter()
            .any(|h| h.target.id == ip && h.state != TargetHealthState::Draining),
        "{health:?}"
    );
    let (w, journal) = f.journal.all().pop().unwrap();
    assert_eq!(w.status, Status::Done);
    assert!(
        journal
            .iter()
            .any(|e| e.event == "kept" && e.detail.contains("live"))
    );
}

#[tokio::test]
async fn a_crash_at_every_step_boundary_resumes_and_lowers_once() {
    let steps = [
        Step::MarkDraining,
        Step::Deregister,
        Step::WaitDrained,
        Step::Recheck,
        Step::Protect,
        Step::LowerDesired,
        Step::StopTasks,
        Step::Release,
    ];
    for step in steps {
        for boundary in [Boundary::Before, Boundary::After] {
            let f = fixture(3);
            let fired = Arc::new(AtomicBool::new(false));
            let hook = {
                let fired = fired.clone();
                Arc::new(move |s: Step, b: Boundary| {
                    s == step && b == boundary && !fired.swap(true, Ordering::SeqCst)
                })
            };
            let first = f.target().with_failpoint(hook);
            first.observe().await.unwrap();
            let _ = first.scale_in(3, &f.idle()).await;
            for _ in 0..200 {
                if fired.load(Ordering::SeqCst) {
                    break;
                }
                let _ = first.observe().await;
                f.clock.advance(Duration::from_secs(5));
            }
            assert!(
                fired.load(Ordering::SeqCst),
                "{step:?} {boundary:?} never reached"
            );
            assert!(first.observe().await.is_err(), "dead after the failpoint");
            drop(first);
            // A new capstan on the same journal.
            let second = f.target();
            assert!(
                second.workflow().is_some(),
                "{step:?} {boundary:?}: resumed"
            );
            f.run_to_end(&second).await;
            f.settle();
            assert_eq!(f.desired(), 3, "{step:?} {boundary:?}");
            assert_eq!(
                f.world.api_stats().calls("UpdateService"),
                1,
                "{step:?} {boundary:?}: lowered exactly once"
            );
            f.assert_busy_untouched();
            assert_eq!(f.running().len(), 3, "{step:?} {boundary:?}");
            assert_eq!(f.last_status(), Status::Done, "{step:?} {boundary:?}");
        }
    }
}

#[tokio::test]
async fn aws_errors_on_a_fifth_of_calls_still_complete_once() {
    for seed in 10..20 {
        let f = fixture(seed);
        let target = f.target();
        target.observe().await.unwrap();
        f.world.inject_fault(FaultRule {
            operation: None,
            kind: AwsErrorKind::Throttling,
            times: None,
            probability: 0.2,
        });
        let mut started = false;
        for _ in 0..50 {
            if target.scale_in(3, &f.idle()).await.is_ok() {
                started = true;
                break;
            }
            f.clock.advance(Duration::from_secs(1));
        }
        assert!(started);
        f.run_to_end(&target).await;
        f.world.clear_faults();
        f.settle();
        assert_eq!(f.last_status(), Status::Done, "seed {seed}");
        assert_eq!(f.desired(), 3, "seed {seed}");
        f.assert_busy_untouched();
        assert_eq!(f.running().len(), 3, "seed {seed}");
    }
}

#[tokio::test]
async fn a_failed_deregistration_is_redriven_from_that_step() {
    let f = fixture(4);
    let target = f.target();
    target.observe().await.unwrap();
    f.world.inject_fault(FaultRule::always(
        "DeregisterTargets",
        AwsErrorKind::AccessDenied,
    ));
    target.scale_in(3, &f.idle()).await.unwrap();
    let w = target.workflow().unwrap();
    assert_eq!(w.step, Step::Deregister);
    assert!(matches!(w.status, Status::Failed { .. }), "{w:?}");
    assert!(
        target
            .workflow_error()
            .unwrap()
            .contains("DeregisterTargets")
    );
    // Nothing moves while it is failed; the count reported stays the target.
    f.clock.advance(Duration::from_secs(60));
    target.observe().await.unwrap();
    assert_eq!(target.workflow().unwrap().step, Step::Deregister);
    assert_eq!(f.desired(), 6);
    // The permission is fixed; redrive.
    f.world.clear_faults();
    let id = w.id.clone();
    target.redrive(&id).await.unwrap();
    f.run_to_end(&target).await;
    f.settle();
    assert_eq!(f.desired(), 3);
    let (_, journal) = f.journal.all().pop().unwrap();
    let mark_draining_runs = journal
        .iter()
        .filter(|e| e.step == Step::MarkDraining && e.event == "started")
        .count();
    assert_eq!(
        mark_draining_runs, 1,
        "resumed from the failed step, not the start"
    );
    assert!(journal.iter().any(|e| e.event == "redrive"));
}

/// A scale-in of 50 tasks out of 100: the 50 that stay are protected in ⌈50/10⌉ = 5
/// UpdateTaskProtection calls and released in 5 more, and no call is throttled by the
/// world's model of ECS's rate limits.
#[tokio::test]
async fn fifty_victims_take_five_protection_calls_each_way_within_rate_limits() {
    let clock = VirtualClock::at_epoch();
    let world = World::new(WorldConfig::default(), clock.clone());
    world
        .add_service(ServiceSpec {
            desired: 100,
            ..ServiceSpec::default()
        })
        .unwrap();
    let journal = Arc::new(MemoryJournal::default());
    let target = EcsTarget::new(
        SERVICE,
        EcsTargetSpec::new(CLUSTER, SERVICE),
        world.clone(),
        Some(world.clone()),
        None,
    )
    .with_clock(clock.clone())
    .with_workflows(journal.clone() as Arc<dyn Journal>, settings())
    .unwrap();
    let victims: Vec<TaskId> = world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .take(50)
        .map(|t| TaskId::from(t.arn.as_str()))
        .collect();
    target.observe().await.unwrap();
    target.scale_in(50, &victims).await.unwrap();
    for _ in 0..360 {
        target.observe().await.unwrap();
        if target.workflow().is_none() {
            break;
        }
        clock.advance(Duration::from_secs(5));
    }
    assert!(target.workflow().is_none());
    let stats = world.api_stats();
    assert_eq!(
        stats.calls("UpdateTaskProtection"),
        10,
        "5 to protect, 5 to release"
    );
    assert_eq!(stats.calls("StopTask"), 50);
    assert_eq!(stats.calls("UpdateService"), 1);
    let throttled: u64 = stats.operations.values().map(|o| o.throttled).sum();
    assert_eq!(throttled, 0, "{stats:?}");
    assert_eq!(world.service_counts(CLUSTER, SERVICE).unwrap().desired, 50);
}

/// Without a drain deadline a busy victim is waited for up to `drain_timeout`, then
/// kept; with one, it is stopped at the deadline, its sessions cut, and the journal says
/// so.
#[tokio::test]
async fn a_busy_victim_is_kept_or_cut_at_the_deadline() {
    for deadline in [None, Some(Duration::from_secs(120))] {
        let f = fixture(5);
        let mut target = f.target();
        if let Some(cut_after) = deadline {
            target = EcsTarget::new(
                SERVICE,
                EcsTargetSpec::new(CLUSTER, SERVICE),
                f.world.clone(),
                Some(f.world.clone()),
                Some(f.work.clone() as Arc<dyn WorkCounts>),
            )
            .with_clock(f.clock.clone())
            .with_workflows(
                f.journal.clone() as Arc<dyn Journal>,
                WorkflowSettings {
                    cut_after: Some(cut_after),
                    ..settings()
                },
            )
            .unwrap();
        }
        target.observe().await.unwrap();
        // One idle victim, one with sessions (its sessions never end).
        let busy = TaskId::from(f.tasks[5].as_str());
        let victims = vec![TaskId::from(f.tasks[0].as_str()), busy.clone()];
        target.scale_in(4, &victims).await.unwrap();
        let started = f.clock.now();
        f.run_to_end(&target).await;
        let took = f.clock.now().duration_since(started).as_secs();
        f.settle();
        let (w, journal) = f.journal.all().pop().unwrap();
        assert_eq!(w.status, Status::Done);
        match deadline {
            None => {
                assert_eq!(f.desired(), 5, "the busy victim is kept");
                assert!(f.running().contains(&f.tasks[5]));
                assert!(took >= 600, "waited for the drain timeout: {took}s");
                assert!(!journal.iter().any(|e| e.event == "cut"));
            }
            Some(_) => {
                assert_eq!(f.desired(), 4, "both went");
                assert!(!f.running().contains(&f.tasks[5]));
                assert!((120..600).contains(&took), "cut at the deadline: {took}s");
                assert!(
                    journal
                        .iter()
                        .any(|e| e.event == "cut" && e.detail.contains(busy.as_str())),
                    "{journal:?}"
                );
            }
        }
    }
}

/// Four tasks of an EC2 service in bridge mode on one instance, behind an instance
/// target group (delay 300 s, routing lag 5 s); no sessions yet.
fn bridge_fixture() -> Fixture {
    let clock = VirtualClock::at_epoch();
    let world = World::new(WorldConfig::default(), clock.clone());
    world
        .add_cluster(ClusterSpec {
            name: CLUSTER.into(),
            groups: vec![AutoScalingGroupSpec {
                desired: 1,
                instance_cpu: 4096,
                ..AutoScalingGroupSpec::default()
            }],
        })
        .unwrap();
    world
        .add_service(ServiceSpec {
            desired: 4,
            launch_type: LaunchType::Ec2,
            network_mode: NetworkMode::Bridge,
            task_cpu: 1024,
            task_memory: 1024,
            target_group: Some(TargetGroupSpec {
                deregistration_delay: Duration::from_secs(300),
                routing_lag: Duration::from_secs(5),
                ..TargetGroupSpec::default()
            }),
            ..ServiceSpec::default()
        })
        .unwrap();
    let work = Arc::new(Work {
        world: world.clone(),
        counts: Mutex::new(HashMap::new()),
    });
    let tasks: Vec<String> = world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .map(|t| t.arn)
        .collect();
    Fixture {
        world,
        clock,
        work,
        journal: Arc::new(MemoryJournal::default()),
        tasks,
    }
}

impl Fixture {
    /// Each task's instance target: (the EC2 instance id, its host port).
    fn instance_targets(&self) -> Vec<TargetRef> {
        let arns: Vec<Arc<str>> = self.tasks.iter().map(|a| Arc::from(a.as_str())).collect();
        let (described, _) = self.world.describe_tasks(CLUSTER, &arns).now_or_never();
        let instance = self.world.cluster_state(CLUSTER).unwrap().instances[0]
            .ec2_instance_id
            .clone();
        described
            .iter()
            .map(|t| {
                assert_eq!(t.host_ports.len(), 1, "{t:?}");
                TargetRef {
                    id: instance.clone(),
                    port: t.host_ports[0],
                }
            })
            .collect()
    }

    /// The target group's targets that are not `unused`, with their state.
    fn group_targets(&self) -> HashMap<TargetRef, TargetHealthState> {
        self.world
            .describe_target_health(&TargetGroupSpec::default().arn)
            .now_or_never()
            .into_iter()
            .map(|h| (h.target, h.state))
            .collect()
    }
}

/// Resolves a world future (they are ready at once) or panics on its error.
trait NowOrNever<T> {
    fn now_or_never(self) -> T;
}

impl<T, F: std::future::Future<Output = Result<T, capstan_aws_api::AwsError>>> NowOrNever<T> for F {
    fn now_or_never(self) -> T {
        let mut f = std::pin::pin!(self);
        match f
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(v) => v.unwrap(),
            std::task::Poll::Pending => panic!("world futures are ready at once"),
        }
    }
}

#[tokio::test]
async fn bridge_victims_are_drained_by_instance_and_host_port() {
    let f = bridge_fixture();
    let targets = f.instance_targets();
    // Four tasks, one instance, four host ports.
    let ports: std::collections::BTreeSet<u16> = targets.iter().map(|t| t.port).collect();
    assert_eq!(ports.len(), 4);
    assert!(targets.iter().all(|t| t.id == targets[0].id));
    // The second victim holds a session that ends a minute into the drain.
    f.work.set(&f.tasks[1], 1);
    let victims: Vec<TaskId> = f.tasks[..2]
        .iter()
        .map(|a| TaskId::from(a.as_str()))
        .collect();
    let target = f.target();
    target.observe().await.unwrap();
    target.scale_in(2, &victims).await.unwrap();
    assert_eq!(f.world.api_stats().calls("DeregisterTargets"), 1);
    // Exactly the victims' (instance, host port) targets were deregistered, and the
    // workflow recorded them (to register them again if needed).
    let w = target.workflow().unwrap();
    for (i, v) in w.victims.iter().enumerate() {
        assert_eq!(v.targets.len(), 1, "{v:?}");
        assert_eq!(v.targets[0].id, targets[i].id);
        assert_eq!(v.targets[0].port, Some(targets[i].port));
    }
    let state = f.group_targets();
    assert_eq!(state.get(&targets[1]), Some(&TargetHealthState::Draining));
    for other in &targets[2..] {
        assert_eq!(
            state.get(other),
            Some(&TargetHealthState::Healthy),
            "another task on the same instance is left alone"
        );
    }
    // It waits while the busy victim drains: nothing stopped, the count not lowered.
    for _ in 0..6 {
        f.clock.advance(Duration::from_secs(5));
        target.observe().await.unwrap();
    }
    assert_eq!(target.workflow().unwrap().step, Step::WaitDrained);
    assert_eq!(
        f.group_targets().get(&targets[1]),
        Some(&TargetHealthState::Draining)
    );
    assert_eq!(
        f.group_targets().get(&targets[0]),
        None,
        "idle: gone at once"
    );
    assert_eq!(f.desired(), 4);
    assert_eq!(f.world.api_stats().calls("StopTask"), 0);
    f.clock.advance(Duration::from_secs(30));
    f.work.set(&f.tasks[1], 0);
    f.run_to_end(&target).await;
    f.settle();
    assert_eq!(f.last_status(), Status::Done);
    assert_eq!(f.desired(), 2);
    assert_eq!(f.world.api_stats().calls("StopTask"), 2);
    assert_eq!(f.world.api_stats().calls("UpdateService"), 1);
    assert_eq!(f.world.api_stats().calls("RegisterTargets"), 0);
    let running = f.running();
    assert_eq!(running, f.tasks[2..].to_vec());
    // The two tasks left on the instance are still registered, on their own ports.
    let state = f.group_targets();
    assert_eq!(state.len(), 2, "{state:?}");
    for other in &targets[2..] {
        assert_eq!(state.get(other), Some(&TargetHealthState::Healthy));
    }
}

#[tokio::test]
async fn a_bridge_victim_with_a_session_is_registered_again_under_its_port() {
    let f = bridge_fixture();
    let targets = f.instance_targets();
    let victims: Vec<TaskId> = f.tasks[..2]
        .iter()
        .map(|a| TaskId::from(a.as_str()))
        .collect();
    let target = f.target();
    target.observe().await.unwrap();
    target.scale_in(2, &victims).await.unwrap();
    f.clock.advance(Duration::from_secs(3));
    target.observe().await.unwrap();
    assert_eq!(target.workflow().unwrap().step, Step::WaitDrained);
    // A session lands on the first victim inside the routing lag; it never ends.
    f.work.set(&f.tasks[0], 1);
    f.run_to_end(&target).await;
    f.settle();
    assert_eq!(f.last_status(), Status::Done);
    assert_eq!(f.desired(), 3, "only the idle victim went");
    let running = f.running();
    assert!(running.contains(&f.tasks[0]), "the busy victim is kept");
    assert!(!running.contains(&f.tasks[1]));
    assert_eq!(f.world.api_stats().calls("RegisterTargets"), 1);
    // Registered again under its own (instance, host port); the other tasks untouched.
    let state = f.group_targets();
    assert_eq!(state.len(), 3, "{state:?}");
    assert!(
        matches!(
            state.get(&targets[0]),
            Some(TargetHealthState::Initial | TargetHealthState::Healthy)
        ),
        "{state:?}"
    );
    for other in &targets[2..] {
        assert_eq!(state.get(other), Some(&TargetHealthState::Healthy));
    }
    let (_, journal) = f.journal.all().pop().unwrap();
    assert!(
        journal
            .iter()
            .any(|e| e.event == "kept" && e.detail.contains("live")),
        "{journal:?}"
    );
}
