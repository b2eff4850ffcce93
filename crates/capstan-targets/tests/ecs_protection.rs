//! Task protection managed for workloads, against the world model's ECS on a virtual
//! clock: enabled at a task's first workload for 60 min (what GetTaskProtection then
//! shows), extended at 50 min, released after 15 s idle; many tasks at once are
//! protected in batches of 10; a scale-in never releases a protection held for live
//! work.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_aws_api::Ecs;
use capstan_core::Timestamp;
use capstan_core::clock::{Clock, VirtualClock, add};
use capstan_core::model::TaskId;
use capstan_core::protection::ProtectionSettings;
use capstan_targets::Target;
use capstan_targets::ecs::{EcsTarget, EcsTargetSpec, WorkCounts};
use capstan_world::{ServiceSpec, World, WorldConfig};

const CLUSTER: &str = "default";
const SERVICE: &str = "app";

/// Workloads in progress per task (what the work registry would report).
#[derive(Default)]
struct Workloads(Mutex<HashMap<String, u32>>);

impl Workloads {
    fn set(&self, arn: &str, n: u32) {
        self.0.lock().unwrap().insert(arn.to_owned(), n);
    }
}

impl WorkCounts for Workloads {
    fn work(&self, task_arn: &str) -> u32 {
        self.0.lock().unwrap().get(task_arn).copied().unwrap_or(0)
    }
}

struct Fixture {
    world: World,
    clock: VirtualClock,
    work: Arc<Workloads>,
    target: EcsTarget<World, World>,
    tasks: Vec<String>,
}

async fn fixture(desired: u32) -> Fixture {
    let clock = VirtualClock::at_epoch();
    let world = World::new(WorldConfig::default(), clock.clone());
    world
        .add_service(ServiceSpec {
            desired,
            ..ServiceSpec::default()
        })
        .unwrap();
    let work = Arc::new(Workloads::default());
    let counts: Arc<dyn WorkCounts> = work.clone();
    let target = EcsTarget::new(
        SERVICE,
        EcsTargetSpec::new(CLUSTER, SERVICE),
        world.clone(),
        Some(world.clone()),
        Some(counts),
    )
    .with_clock(clock.clone())
    .with_protection(ProtectionSettings::default())
    .unwrap();
    target.observe().await.unwrap();
    let tasks = world
        .tasks(CLUSTER, SERVICE)
        .into_iter()
        .map(|t| t.arn)
        .collect();
    Fixture {
        world,
        clock,
        work,
        target,
        tasks,
    }
}

impl Fixture {
    /// What GetTaskProtection says of `arn`: its expiry when protected.
    async fn protection(&self, arn: &str) -> Option<Timestamp> {
        let r = self
            .world
            .get_task_protection(CLUSTER, &[Arc::from(arn)])
            .await
            .unwrap();
        r.protected
            .into_iter()
            .find(|p| p.enabled)
            .and_then(|p| p.expires_at)
    }

    async fn step(&self) -> usize {
        self.target.protector().unwrap().step().await.unwrap()
    }

    fn updates(&self) -> u64 {
        self.world.api_stats().calls("UpdateTaskProtection")
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

fn min(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[tokio::test]
async fn a_workload_is_protected_extended_and_released() {
    let f = fixture(3).await;
    let a = f.tasks[0].clone();
    let start = f.clock.now();
    assert_eq!(f.step().await, 0, "no work: nothing to do");
    f.work.set(&a, 1);
    assert_eq!(f.step().await, 1);
    assert_eq!(
        f.protection(&a).await,
        Some(add(start, min(60))),
        "protected for 60 min"
    );
    assert_eq!(
        f.target.protector().unwrap().holds(&a),
        Some(add(start, min(60)))
    );
    assert_eq!(f.protection(&f.tasks[1]).await, None);

    // Nothing until 50 min in force, then the extension.
    f.advance(min(49));
    assert_eq!(f.step().await, 0);
    f.advance(min(1));
    assert_eq!(f.step().await, 1, "extended at 50 min");
    assert_eq!(f.protection(&a).await, Some(add(start, min(110))));

    // Idle for 14 s: still protected; at 15 s: released.
    f.work.set(&a, 0);
    assert_eq!(f.step().await, 0);
    f.advance(Duration::from_secs(14));
    assert_eq!(f.step().await, 0);
    assert!(f.protection(&a).await.is_some());
    f.advance(Duration::from_secs(1));
    assert_eq!(f.step().await, 1, "released after 15 s idle");
    assert_eq!(f.protection(&a).await, None);
    assert_eq!(f.target.protector().unwrap().holds(&a), None);
    assert_eq!(f.updates(), 3);
    let stats = f.target.protector().unwrap().stats();
    assert_eq!((stats.enables, stats.extensions, stats.releases), (1, 1, 1));
}

#[tokio::test]
async fn work_returning_within_the_grace_keeps_the_protection() {
    let f = fixture(2).await;
    let a = f.tasks[0].clone();
    f.work.set(&a, 2);
    f.step().await;
    f.work.set(&a, 0);
    f.step().await;
    f.advance(Duration::from_secs(10));
    f.work.set(&a, 1);
    f.step().await;
    f.advance(Duration::from_secs(30));
    assert_eq!(f.step().await, 0);
    assert!(f.protection(&a).await.is_some(), "never released");
    assert_eq!(f.updates(), 1);
}

#[tokio::test]
async fn many_tasks_are_protected_in_batches_of_ten() {
    let f = fixture(25).await;
    for arn in &f.tasks {
        f.work.set(arn, 1);
    }
    assert_eq!(f.step().await, 3);
    assert_eq!(f.updates(), 3, "⌈25/10⌉ calls");
    for arn in &f.tasks {
        assert!(f.protection(arn).await.is_some(), "{arn}");
    }
}

#[tokio::test]
async fn protections_found_at_start_up_are_adopted() {
    let f = fixture(2).await;
    let (a, b) = (f.tasks[0].clone(), f.tasks[1].clone());
    // Protected before this capstan started (by a previous one).
    f.world
        .update_task_protection(
            CLUSTER,
            &[Arc::from(a.as_str()), Arc::from(b.as_str())],
            Some(30),
        )
        .await
        .unwrap();
    let f = Fixture {
        target: EcsTarget::new(
            SERVICE,
            EcsTargetSpec::new(CLUSTER, SERVICE),
            f.world.clone(),
            Some(f.world.clone()),
            Some(f.work.clone() as Arc<dyn WorkCounts>),
        )
        .with_clock(f.clock.clone())
        .with_protection(ProtectionSettings::default())
        .unwrap(),
        ..f
    };
    f.target.observe().await.unwrap();
    f.work.set(&a, 1);
    f.step().await;
    // a keeps its protection (work), b (idle) is released after the grace.
    assert!(f.target.protector().unwrap().holds(&a).is_some());
    f.advance(Duration::from_secs(15));
    f.step().await;
    assert!(f.protection(&a).await.is_some());
    assert_eq!(f.protection(&b).await, None);
    let _ = TaskId::from(a);
}

/// A scale-in protects the tasks that stay, lowers the count and releases only what
/// it added: the protection held for a workload stays, and is not released while the
/// scale-in still needs it even once that task goes idle.
#[tokio::test]
async fn a_scale_in_never_releases_a_protection_held_for_work() {
    let f = fixture(4).await;
    let (a, d) = (f.tasks[0].clone(), f.tasks[3].clone());
    f.work.set(&a, 1);
    f.step().await;
    let held = f.protection(&a).await.unwrap();
    f.target
        .scale_in(3, &[TaskId::from(d.as_str())])
        .await
        .unwrap();
    for other in &f.tasks[1..3] {
        assert!(
            f.protection(other).await.is_some(),
            "{other} protected by the scale-in"
        );
    }
    assert_eq!(f.protection(&a).await, Some(held), "not shortened");
    // a goes idle while ECS stops the victim: pinned, not released past its grace.
    assert!(f.target.scale_in_progress().await.is_some());
    f.work.set(&a, 0);
    f.step().await;
    f.advance(Duration::from_secs(16));
    assert_eq!(f.step().await, 0);
    assert!(
        f.protection(&a).await.is_some(),
        "pinned during the scale-in"
    );
    for _ in 0..200 {
        if f.target.scale_in_progress().await.is_none() {
            break;
        }
        f.advance(Duration::from_secs(5));
        f.target.observe().await.unwrap();
    }
    assert!(
        f.target.scale_in_progress().await.is_none(),
        "scale-in done"
    );
    assert_eq!(f.world.service_counts(CLUSTER, SERVICE).unwrap().desired, 3);
    assert!(f.world.tasks(CLUSTER, SERVICE).iter().all(|t| t.arn != d));
    // What the scale-in added is released; a's protection is the manager's to end.
    for other in &f.tasks[1..3] {
        assert_eq!(f.protection(other).await, None, "{other} released");
    }
    f.step().await;
    f.advance(Duration::from_secs(15));
    f.step().await;
    assert_eq!(
        f.protection(&a).await,
        None,
        "released by the manager once idle"
    );
}
