//! Task protection managed for workloads, against the world model's ECS on a virtual
//! clock: enabled at a task's first workload for 60 min (what GetTaskProtection then
//! shows), extended at 50 min, released after 15 s idle; many tasks at once are
//! protected in batches of 10; a scale-in never releases a protection held for live
//! work. Services of one cluster share their requests (a cluster driver): 6 + 6 tasks
//! go in 10 + 2, clusters are never mixed, and a task gone or a request failed touches
//! only its own tasks.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_aws_api::AwsErrorKind;
use capstan_aws_api::Ecs;
use capstan_core::Timestamp;
use capstan_core::clock::{Clock, VirtualClock, add};
use capstan_core::model::TaskId;
use capstan_core::protection::ProtectionSettings;
use capstan_targets::Target;
use capstan_targets::ecs::protect::{ClusterProtector, Protector};
use capstan_targets::ecs::{EcsTarget, EcsTargetSpec, WorkCounts};
use capstan_world::{FaultRule, ServiceSpec, World, WorldConfig};

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
    // The first StopTask fails: the workflow waits to retry it with the others
    // protected and the count lowered (ECS stops the victim meanwhile).
    f.world
        .inject_fault(FaultRule::times("StopTask", AwsErrorKind::Server, 1));
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
    assert!(f.target.workflow().is_some());
    f.work.set(&a, 0);
    f.step().await;
    f.advance(Duration::from_secs(16));
    assert_eq!(f.step().await, 0);
    assert!(
        f.protection(&a).await.is_some(),
        "pinned during the scale-in"
    );
    for _ in 0..200 {
        if f.target.workflow().is_none() {
            break;
        }
        f.advance(Duration::from_secs(5));
        f.target.observe().await.unwrap();
    }
    assert!(f.target.workflow().is_none(), "scale-in done");
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

/// One service of [`Services`].
struct Svc {
    cluster: String,
    name: String,
    target: EcsTarget<World, World>,
    /// Its tasks' ARNs, sorted.
    arns: Vec<String>,
}

/// Several services, each with its target managing protection, on one world.
struct Services {
    world: World,
    clock: VirtualClock,
    work: Arc<Workloads>,
    targets: Vec<Svc>,
}

/// The services `(cluster, name, desired)`, each observed once.
async fn services(specs: &[(&str, &str, u32)]) -> Services {
    let clock = VirtualClock::at_epoch();
    let world = World::new(WorldConfig::default(), clock.clone());
    let work = Arc::new(Workloads::default());
    let mut targets = Vec::new();
    for &(cluster, name, desired) in specs {
        world
            .add_service(ServiceSpec {
                cluster: cluster.into(),
                name: name.into(),
                desired,
                ..ServiceSpec::default()
            })
            .unwrap();
        let target = EcsTarget::new(
            name,
            EcsTargetSpec::new(cluster, name),
            world.clone(),
            Some(world.clone()),
            Some(work.clone() as Arc<dyn WorkCounts>),
        )
        .with_clock(clock.clone())
        .with_protection(ProtectionSettings::default())
        .unwrap();
        target.observe().await.unwrap();
        let mut arns: Vec<String> = world
            .tasks(cluster, name)
            .into_iter()
            .map(|t| t.arn.to_string())
            .collect();
        arns.sort();
        targets.push(Svc {
            cluster: cluster.to_owned(),
            name: name.to_owned(),
            target,
            arns,
        });
    }
    Services {
        world,
        clock,
        work,
        targets,
    }
}

impl Services {
    /// A driver for `cluster` with every service of it.
    fn driver(&self, cluster: &str) -> ClusterProtector<World> {
        let driver = ClusterProtector::new(cluster, self.world.clone());
        for svc in self.targets.iter().filter(|t| t.cluster == cluster) {
            driver.join(self.protector(&svc.name)).unwrap();
        }
        driver
    }

    fn service(&self, name: &str) -> &Svc {
        self.targets.iter().find(|t| t.name == name).unwrap()
    }

    fn protector(&self, service: &str) -> Arc<Protector<World>> {
        Arc::clone(self.service(service).target.protector().unwrap())
    }

    fn tasks(&self, service: &str) -> &[String] {
        &self.service(service).arns
    }

    fn stats(&self, service: &str) -> capstan_core::protection::ProtectionStats {
        self.protector(service).stats()
    }

    fn set_work(&self, service: &str, n: u32) {
        for arn in self.tasks(service) {
            self.work.set(arn, n);
        }
    }

    /// Which of `service`'s tasks GetTaskProtection shows protected.
    async fn protected(&self, service: &str) -> Vec<bool> {
        let cluster = &self.service(service).cluster;
        let arns: Vec<Arc<str>> = self
            .tasks(service)
            .iter()
            .map(|a| Arc::from(a.as_str()))
            .collect();
        let r = self
            .world
            .get_task_protection(cluster, &arns)
            .await
            .unwrap();
        arns.iter()
            .map(|a| r.protected.iter().any(|p| p.arn == *a && p.enabled))
            .collect()
    }

    fn updates(&self) -> u64 {
        self.world.api_stats().calls("UpdateTaskProtection")
    }
}

/// Two services of one cluster with workloads on 6 + 6 tasks at once: enabled in two
/// shared requests (10 + 2), released the same; each service counts its own changes.
#[tokio::test]
async fn two_services_of_one_cluster_share_requests_ten_plus_two() {
    let s = services(&[(CLUSTER, "a", 6), (CLUSTER, "b", 6)]).await;
    let driver = s.driver(CLUSTER);
    assert_eq!(driver.members(), vec!["a", "b"]);
    assert_eq!(driver.step().await.calls, 0, "no work: nothing to do");
    s.set_work("a", 1);
    s.set_work("b", 1);
    let step = driver.step().await;
    assert_eq!((step.calls, step.errors.len()), (2, 0));
    assert_eq!(s.updates(), 2);
    assert_eq!(s.protected("a").await, vec![true; 6]);
    assert_eq!(s.protected("b").await, vec![true; 6]);
    for service in ["a", "b"] {
        let st = s.stats(service);
        assert_eq!(
            (st.protected, st.enables, st.failures),
            (6, 6, 0),
            "{service}"
        );
    }

    // Idle for 15 s: released in two requests too. The first request fails as a
    // whole: it held a's 6 tasks and b's first 4 (10 + 2, not 6 + 6), and only b's
    // last 2 are released.
    s.set_work("a", 0);
    s.set_work("b", 0);
    assert_eq!(driver.step().await.calls, 0);
    s.clock.advance(Duration::from_secs(15));
    s.world.inject_fault(FaultRule::times(
        "UpdateTaskProtection",
        AwsErrorKind::Throttling,
        1,
    ));
    assert_eq!(driver.step().await.calls, 2);
    assert_eq!(s.protected("a").await, vec![true; 6]);
    assert_eq!(
        s.protected("b").await,
        vec![true, true, true, true, false, false]
    );
    // The 10 left go in one request once their backoff (1 s) is over.
    assert_eq!(driver.step().await.calls, 0, "backing off");
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(driver.step().await.calls, 1);
    assert_eq!(s.protected("a").await, vec![false; 6]);
    assert_eq!(s.protected("b").await, vec![false; 6]);
    assert_eq!(s.updates(), 5);
    let (a, b) = (s.stats("a"), s.stats("b"));
    assert_eq!((a.protected, a.releases, a.failures), (0, 6, 6));
    assert_eq!((b.protected, b.releases, b.failures), (0, 6, 4));
}

/// Four services of 3 tasks in one cluster: 12 tasks in 2 requests, not 4; a service
/// of another cluster is driven apart and cannot join this cluster's driver.
#[tokio::test]
async fn clusters_are_never_mixed() {
    let s = services(&[
        (CLUSTER, "a", 3),
        (CLUSTER, "b", 3),
        ("other", "c", 3),
        (CLUSTER, "d", 3),
        (CLUSTER, "e", 3),
    ])
    .await;
    let main = s.driver(CLUSTER);
    let other = s.driver("other");
    assert_eq!(main.members(), vec!["a", "b", "d", "e"]);
    assert_eq!(other.members(), vec!["c"]);
    let err = main.join(s.protector("c")).unwrap_err();
    assert!(
        err.contains("\"other\"") && err.contains("\"default\""),
        "{err}"
    );

    for service in ["a", "b", "c", "d", "e"] {
        s.set_work(service, 1);
    }
    assert_eq!(main.step().await.calls, 2, "12 tasks: 10 + 2");
    assert_eq!(s.protected("c").await, vec![false; 3], "not this driver's");
    assert_eq!(other.step().await.calls, 1);
    for service in ["a", "b", "c", "d", "e"] {
        assert_eq!(s.protected(service).await, vec![true; 3], "{service}");
        let st = s.stats(service);
        assert_eq!((st.enables, st.failures, st.gone), (3, 0, 0), "{service}");
    }
    assert_eq!(s.updates(), 3);

    // A service that leaves is no longer stepped; the others go on.
    assert!(main.leave(&s.protector("d")));
    assert!(!main.leave(&s.protector("d")), "already gone");
    s.set_work("a", 0);
    s.set_work("d", 0);
    assert_eq!(main.step().await.calls, 0, "idle grace");
    s.clock.advance(Duration::from_secs(15));
    assert_eq!(main.step().await.calls, 1);
    assert_eq!(s.protected("a").await, vec![false; 3]);
    assert_eq!(
        s.protected("d").await,
        vec![true; 3],
        "d left: not released"
    );
}

/// A task of one service that is gone (TASK_NOT_VALID) in a shared request is forgotten
/// by its service only; the other service's tasks in the same request are protected.
#[tokio::test]
async fn a_task_gone_does_not_disturb_the_other_service() {
    let s = services(&[(CLUSTER, "a", 6), (CLUSTER, "b", 6)]).await;
    let driver = s.driver(CLUSTER);
    // a's first task stops after the last observation: the protector still lists it.
    let gone = s.tasks("a")[0].clone();
    s.world.stop_task(CLUSTER, &gone, "test").await.unwrap();
    s.set_work("a", 1);
    s.set_work("b", 1);
    assert_eq!(driver.step().await.calls, 2);
    let (a, b) = (s.stats("a"), s.stats("b"));
    assert_eq!((a.protected, a.enables, a.gone, a.failures), (5, 5, 1, 0));
    assert_eq!((b.protected, b.enables, b.gone, b.failures), (6, 6, 0, 0));
    assert_eq!(s.protected("b").await, vec![true; 6]);
    assert_eq!(s.protected("a").await[1..], [true; 5]);
    // Nothing is retried: the gone task is forgotten, the rest are held.
    s.clock.advance(Duration::from_secs(60));
    assert_eq!(driver.step().await.calls, 0);
    assert_eq!(s.updates(), 2);
}

/// The driver's loop steps its services together (5 + 5 tasks in one request) and
/// steps at once when a service joins, without waiting for its next round.
#[tokio::test(start_paused = true)]
async fn the_driver_loop_steps_services_together_and_at_once_when_one_joins() {
    let s = services(&[(CLUSTER, "a", 5), (CLUSTER, "b", 5), (CLUSTER, "c", 2)]).await;
    let driver = Arc::new(ClusterProtector::new(CLUSTER, s.world.clone()));
    driver.join(s.protector("a")).unwrap();
    driver.join(s.protector("b")).unwrap();
    s.set_work("a", 1);
    s.set_work("b", 1);
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let (driver, cancel) = (Arc::clone(&driver), cancel.clone());
        async move { driver.run(cancel).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.protected("a").await, vec![true; 5]);
    assert_eq!(s.protected("b").await, vec![true; 5]);
    assert_eq!(s.updates(), 1, "10 tasks of two services in one request");

    s.set_work("c", 1);
    driver.join(s.protector("c")).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(s.protected("c").await, vec![true; 2], "stepped on joining");
    assert_eq!(s.updates(), 2);
    cancel.cancel();
    running.await.unwrap();
}
