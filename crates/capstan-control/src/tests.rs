//! Tests of the loop against a recording fake target, on virtual and paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::Action;
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::{Capacity, Sample, Task, TaskId, TaskState};
use capstan_core::planner::{Cooldowns, Engine, PlannerConfig};
use capstan_core::testing::{one_policy, planner_config, total_tracking};
use capstan_store::{DecisionLog, MemoryStore};
use capstan_targets::{Observed, Target, TargetError};
use tokio_util::sync::CancellationToken;

use super::{LoopError, ServiceLoop};

/// One call the loop made to the fake target.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Observe,
    ScaleOut(u32),
    ScaleIn(u32, Vec<&'static str>),
}

/// The fake target's world: a desired count and tasks that appear and vanish at once.
#[derive(Debug, Default)]
struct FakeWorld {
    desired: u32,
    tasks: Vec<Task>,
    calls: Vec<Call>,
    /// How many of the next observe calls fail.
    fail_observe: u32,
    /// How many of the next scale calls fail.
    fail_scale: u32,
    next_seq: i64,
}

/// A recording fake target (tasks start and stop instantly), shared with the test.
#[derive(Debug, Clone, Default)]
struct FakeTarget(Arc<Mutex<FakeWorld>>);

impl FakeTarget {
    fn with_tasks(n: u32) -> Self {
        let fake = Self::default();
        {
            let mut w = fake.0.lock().unwrap();
            w.desired = n;
            for _ in 0..n {
                w.add_task();
            }
        }
        fake
    }
    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }
    fn task_ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .tasks
            .iter()
            .map(|t| t.id.to_string())
            .collect()
    }
}

impl FakeWorld {
    fn add_task(&mut self) {
        self.next_seq += 1;
        self.tasks.push(Task {
            id: TaskId::from(format!("fake-{}", self.next_seq)),
            // Later tasks are newer.
            started_at: capstan_core::Timestamp::from_second(1_000 + self.next_seq).unwrap(),
            zone: None,
            state: TaskState::Running,
            sessions: 0,
            protected: false,
            healthy: true,
        });
    }
    fn failure(&mut self, what: &str) -> Result<(), TargetError> {
        if self.fail_scale > 0 {
            self.fail_scale -= 1;
            return Err(TargetError::Failed {
                target: "fake".into(),
                reason: format!("{what} refused"),
            });
        }
        Ok(())
    }
}

/// Leaks the id so `Call` can hold `&'static str` and compare nicely.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl Target for FakeTarget {
    fn name(&self) -> &str {
        "fake"
    }

    async fn observe(&self) -> Result<Observed, TargetError> {
        let mut w = self.0.lock().unwrap();
        w.calls.push(Call::Observe);
        if w.fail_observe > 0 {
            w.fail_observe -= 1;
            return Err(TargetError::Failed {
                target: "fake".into(),
                reason: "describe failed".into(),
            });
        }
        Ok(Observed {
            capacity: Capacity {
                desired: w.desired,
                running: u32::try_from(w.tasks.len()).unwrap(),
                pending: 0,
            },
            tasks: w.tasks.clone(),
        })
    }

    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        let mut w = self.0.lock().unwrap();
        w.calls.push(Call::ScaleOut(desired));
        w.failure("scale out")?;
        w.desired = desired;
        while w.tasks.len() < desired as usize {
            w.add_task();
        }
        Ok(())
    }

    async fn scale_in(&self, desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        let mut w = self.0.lock().unwrap();
        w.calls.push(Call::ScaleIn(
            desired,
            victims.iter().map(|v| leak(&v.0)).collect(),
        ));
        w.failure("scale in")?;
        w.desired = desired;
        w.tasks.retain(|t| !victims.contains(&t.id));
        Ok(())
    }

    async fn shutdown(&self) {}
}

/// Target tracking on `queue`, 10 per task, no tolerance games, min 1 max 5, 60 s
/// cooldowns.
fn engine(dry_run: bool) -> Engine {
    one_policy(
        "svc",
        "queue",
        total_tracking("queue", 10.0),
        PlannerConfig {
            cooldown: Cooldowns {
                out: Duration::from_secs(60),
                r#in: Duration::from_secs(60),
            },
            dry_run,
            ..planner_config(1, 5)
        },
    )
}

struct Rig {
    clock: VirtualClock,
    obs: SharedObservations,
    log: Arc<MemoryStore>,
    fake: FakeTarget,
    service: ServiceLoop<FakeTarget, VirtualClock>,
}

fn rig(fake: FakeTarget, dry_run: bool) -> Rig {
    let clock = VirtualClock::at_epoch();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let log = Arc::new(MemoryStore::new(100));
    let service = ServiceLoop::new(
        engine(dry_run),
        fake.clone(),
        clock.clone(),
        Arc::clone(&obs),
        Arc::clone(&log) as Arc<dyn DecisionLog>,
    );
    Rig {
        clock,
        obs,
        log,
        fake,
        service,
    }
}

impl Rig {
    /// Moves virtual time on and reports a fresh queue depth.
    fn queue(&self, depth: f64) {
        self.clock.advance(Duration::from_secs(1));
        self.obs.lock().unwrap().push(
            "queue",
            Sample {
                value: depth,
                at: self.clock.now(),
            },
        );
    }
    fn logged(&self) -> Vec<Action> {
        self.log
            .recent("svc", 100)
            .unwrap()
            .into_iter()
            .rev()
            .map(|d| d.action)
            .collect()
    }
}

#[tokio::test]
async fn scale_out_observes_then_raises_desired_then_records() {
    let mut r = rig(FakeTarget::with_tasks(2), false);
    r.queue(35.0);
    let d = r.service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 4 });
    assert_eq!(r.fake.calls(), vec![Call::Observe, Call::ScaleOut(4)]);
    assert_eq!(r.logged(), vec![Action::ScaleOut { from: 2, to: 4 }]);
    let last_out = r.service.state().planner.last_out.expect("applied");
    assert_eq!(
        (last_out.from, last_out.to, last_out.at),
        (2, 4, r.clock.now())
    );
}

#[tokio::test]
async fn scale_in_stops_the_victims_the_core_chooses() {
    let mut r = rig(FakeTarget::with_tasks(4), false);
    r.queue(15.0);
    let d = r.service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleIn { from: 4, to: 2 });
    // The newest two go first.
    assert_eq!(
        r.fake.calls(),
        vec![Call::Observe, Call::ScaleIn(2, vec!["fake-4", "fake-3"])]
    );
    assert_eq!(r.fake.task_ids(), vec!["fake-1", "fake-2"]);
    assert!(r.service.state().planner.last_in.is_some());
    // The in-cooldown now holds a further scale-in.
    r.queue(5.0);
    let d = r.service.tick().await.unwrap();
    assert_eq!(d.action, Action::Hold { at: 2 });
    assert_eq!(r.fake.calls().len(), 3, "a hold only observes");
}

#[tokio::test]
async fn a_hold_carries_out_nothing_but_is_recorded() {
    let mut r = rig(FakeTarget::with_tasks(2), false);
    r.queue(20.0);
    let d = r.service.tick().await.unwrap();
    assert_eq!(d.action, Action::Hold { at: 2 });
    assert_eq!(r.fake.calls(), vec![Call::Observe]);
    assert_eq!(r.logged(), vec![Action::Hold { at: 2 }]);
}

#[tokio::test]
async fn a_dry_run_carries_out_nothing_and_starts_no_cooldown() {
    let mut r = rig(FakeTarget::with_tasks(2), true);
    r.queue(45.0);
    let d = r.service.tick().await.unwrap();
    assert!(d.dry_run);
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 5 });
    assert_eq!(r.fake.calls(), vec![Call::Observe]);
    assert!(r.service.state().planner.last_out.is_none());
    assert_eq!(r.logged(), vec![Action::ScaleOut { from: 2, to: 5 }]);
    assert!(
        r.log.recent("svc", 1).unwrap()[0]
            .sentence()
            .starts_with("[dry-run] ")
    );
}

#[tokio::test]
async fn a_failed_change_is_neither_applied_nor_recorded_and_is_retried() {
    let mut r = rig(FakeTarget::with_tasks(2), false);
    r.fake.0.lock().unwrap().fail_scale = 1;
    r.queue(35.0);
    let err = r.service.tick().await.unwrap_err();
    match &err {
        LoopError::Execute {
            service, decision, ..
        } => {
            assert_eq!(service, "svc");
            assert_eq!(decision.action, Action::ScaleOut { from: 2, to: 4 });
        }
        other => panic!("expected an execute error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("service svc: cannot carry out \"svc: scale out 2 → 4"),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("target fake: scale out refused"),
        "{err}"
    );
    assert!(r.service.state().planner.last_out.is_none());
    assert!(r.logged().is_empty());

    r.queue(35.0);
    let d = r.service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 4 });
    assert_eq!(
        r.fake.calls(),
        vec![
            Call::Observe,
            Call::ScaleOut(4),
            Call::Observe,
            Call::ScaleOut(4)
        ]
    );
}

#[tokio::test]
async fn an_observe_failure_decides_nothing() {
    let mut r = rig(FakeTarget::with_tasks(2), false);
    r.fake.0.lock().unwrap().fail_observe = 1;
    r.queue(35.0);
    let err = r.service.tick().await.unwrap_err();
    assert!(matches!(err, LoopError::Observe { .. }));
    assert_eq!(
        err.to_string(),
        "service svc: cannot observe the target: target fake: describe failed"
    );
    assert_eq!(r.fake.calls(), vec![Call::Observe]);
    assert!(r.logged().is_empty());
}

#[tokio::test(start_paused = true)]
async fn run_ticks_every_interval_survives_errors_and_stops_on_cancel() {
    let r = rig(FakeTarget::with_tasks(2), false);
    r.queue(20.0);
    r.fake.0.lock().unwrap().fail_observe = 1;
    let cancel = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let handle = tokio::spawn(r.service.run(Duration::from_secs(10), cancel.clone()));
    // Ticks at 0 s (fails), 10 s and 20 s.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(r.fake.calls(), vec![Call::Observe; 3]);
    assert_eq!(r.log.recent("svc", 100).unwrap().len(), 2);
    cancel.cancel();
    let service = handle.await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(25), "stops at once");
    assert_eq!(service.service(), "svc");
    assert_eq!(r.fake.calls().len(), 3, "no tick after cancel");
}

#[tokio::test]
async fn a_handle_gets_the_tasks_and_a_history_sample_per_tick() {
    let mut r = rig(FakeTarget::with_tasks(2), false);
    let handle = Arc::new(super::ServiceHandle::new("svc"));
    r.service = r.service.with_handle(Arc::clone(&handle));
    assert!(handle.tasks().at.is_none());
    r.queue(35.0);
    r.service.tick().await.unwrap();
    let seen = handle.tasks();
    assert_eq!(seen.at, Some(r.clock.now()));
    assert_eq!(seen.tasks.len(), 2);
    r.queue(35.0);
    r.service.tick().await.unwrap();
    let h = handle.history(r.clock.now(), Duration::from_secs(3600), 3600);
    assert_eq!(h.points.len(), 2);
    // Desired after each decision; the running count the tick observed.
    let counts: Vec<_> = h.points.iter().map(|p| (p.desired, p.running)).collect();
    assert_eq!(counts, [(4, 2), (4, 4)]);
    // The total is shown per task (35 over 2, then 4 desired) against 10 per task.
    let cpu: Vec<_> = h.points.iter().map(|p| p.policies[0].1).collect();
    assert_eq!(cpu[0].value, Some(17.5));
    assert_eq!(cpu[1].value, Some(8.75));
    assert_eq!(cpu[1].target, Some(10.0));
    assert_eq!(&*h.points[0].policies[0].0, "queue");
}
