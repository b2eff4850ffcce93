//! Restart: a loop stopped right after a scale-out, restored from the SQLite decision
//! log, honours the out-cooldown that scale-out started, then scales again once it ends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_control::ServiceLoop;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, StepKind};
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::{Capacity, Sample, TaskId};
use capstan_core::planner::{Cooldowns, Engine};
use capstan_core::testing::{one_policy, planner_config, total_tracking};
use capstan_store::{DecisionLog, SqliteStore};
use capstan_targets::{Observed, Target, TargetError};

/// A target with a count and no tasks.
#[derive(Debug, Clone, Default)]
struct Counter {
    desired: Arc<AtomicU32>,
}

impl Target for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    async fn observe(&self) -> Result<Observed, TargetError> {
        let n = self.desired.load(Ordering::SeqCst);
        Ok(Observed {
            capacity: Capacity {
                desired: n,
                running: n,
                pending: 0,
            },
            tasks: Vec::new(),
        })
    }
    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        self.desired.store(desired, Ordering::SeqCst);
        Ok(())
    }
    async fn scale_in(&self, desired: u32, _victims: &[TaskId]) -> Result<(), TargetError> {
        self.desired.store(desired, Ordering::SeqCst);
        Ok(())
    }
    async fn shutdown(&self) {}
}

fn engine() -> Engine {
    let mut planner = planner_config(1, 20);
    planner.cooldown = Cooldowns {
        out: Duration::from_secs(300),
        r#in: Duration::from_secs(300),
    };
    one_policy("svc", "queue", total_tracking("queue", 10.0), planner)
}

#[tokio::test]
async fn the_out_cooldown_is_honoured_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capstan.db");
    let clock = VirtualClock::at_epoch();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    obs.lock()
        .unwrap()
        .declare("queue", Duration::from_secs(900), Duration::from_secs(3600));
    let push = |value: f64| {
        obs.lock().unwrap().push(
            "queue",
            Sample {
                value,
                at: clock.now(),
            },
        );
    };
    let target = Counter::default();
    target.desired.store(2, Ordering::SeqCst);

    {
        let log: Arc<dyn DecisionLog> = Arc::new(SqliteStore::open(&db, 100).unwrap());
        let mut first = ServiceLoop::new(
            engine(),
            target.clone(),
            clock.clone(),
            Arc::clone(&obs),
            log,
        );
        clock.advance(Duration::from_secs(1));
        push(60.0);
        let d = first.tick().await.unwrap();
        assert_eq!(d.action, Action::ScaleOut { from: 2, to: 6 });
        // Killed right after: the loop and its store are dropped without any shutdown.
        std::mem::forget(first);
    }

    // Two tasks were lost meanwhile; the queue asks 5, not above the last scale-out.
    target.desired.store(4, Ordering::SeqCst);
    clock.advance(Duration::from_secs(30));
    push(50.0);
    let log: Arc<dyn DecisionLog> = Arc::new(SqliteStore::open(&db, 100).unwrap());
    let mut restarted = ServiceLoop::restore(
        engine(),
        target.clone(),
        clock.clone(),
        Arc::clone(&obs),
        Arc::clone(&log),
    )
    .unwrap();
    let held = restarted.tick().await.unwrap();
    assert_eq!(held.action, Action::Hold { at: 4 }, "{}", held.sentence());
    assert!(
        held.steps.iter().any(|s| s.kind == StepKind::OutCooldown),
        "{}",
        held.sentence()
    );
    assert!(
        held.sentence().contains("out-cooldown until"),
        "{}",
        held.sentence()
    );

    // A loop started without the store's memory would have scaled at once.
    let eager = engine().evaluate(
        &mut engine().initial_state(),
        Capacity {
            desired: 4,
            running: 4,
            pending: 0,
        },
        &obs.lock().unwrap(),
        clock.now(),
    );
    assert_eq!(eager.action, Action::ScaleOut { from: 4, to: 5 });

    // After the cooldown, the same ask is carried out.
    clock.advance(Duration::from_secs(300));
    push(50.0);
    let allowed = restarted.tick().await.unwrap();
    assert_eq!(
        allowed.action,
        Action::ScaleOut { from: 4, to: 5 },
        "{}",
        allowed.sentence()
    );
    assert_eq!(target.desired.load(Ordering::SeqCst), 5);
    assert_eq!(log.last_applied("svc", 10).unwrap().len(), 2);
}

#[tokio::test]
async fn the_stabilization_window_is_honoured_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capstan.db");
    let clock = VirtualClock::at_epoch();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    obs.lock()
        .unwrap()
        .declare("queue", Duration::from_secs(900), Duration::from_secs(3600));
    let push = |value: f64| {
        obs.lock().unwrap().push(
            "queue",
            Sample {
                value,
                at: clock.now(),
            },
        );
    };
    let mut engine = engine();
    engine.planner.cooldown = Cooldowns::default();
    engine.planner.stabilization = Duration::from_secs(300);
    let target = Counter::default();
    target.desired.store(8, Ordering::SeqCst);
    {
        let log: Arc<dyn DecisionLog> = Arc::new(SqliteStore::open(&db, 100).unwrap());
        let mut first = ServiceLoop::new(
            engine.clone(),
            target.clone(),
            clock.clone(),
            Arc::clone(&obs),
            log,
        );
        // A minute of the same hold at 8: the store keeps the first one.
        for _ in 0..60 {
            clock.advance(Duration::from_secs(1));
            push(80.0);
            let d = first.tick().await.unwrap();
            assert_eq!(d.action, Action::Hold { at: 8 });
        }
        drop(first);
    }
    clock.advance(Duration::from_secs(5));
    push(30.0);
    let log: Arc<dyn DecisionLog> = Arc::new(SqliteStore::open(&db, 100).unwrap());
    assert!(log.recent("svc", 100).unwrap().len() < 5, "holds deduped");
    let mut restarted = ServiceLoop::restore(
        engine.clone(),
        target.clone(),
        clock.clone(),
        Arc::clone(&obs),
        log,
    )
    .unwrap();
    let held = restarted.tick().await.unwrap();
    assert_eq!(held.action, Action::Hold { at: 8 }, "{}", held.sentence());
    assert!(
        held.steps.iter().any(|s| s.kind == StepKind::Stabilization),
        "{}",
        held.sentence()
    );
    clock.advance(Duration::from_secs(301));
    push(30.0);
    let allowed = restarted.tick().await.unwrap();
    assert_eq!(
        allowed.action,
        Action::ScaleIn { from: 8, to: 3 },
        "{}",
        allowed.sentence()
    );
}
