//! A loop sharing a registry handle: its status follows each tick (decision or error),
//! its controls are read at the start of each tick, and an expired override is dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_control::{Registry, ServiceLoop};
use capstan_core::clock::{Clock, VirtualClock, add};
use capstan_core::controls::{Direction, Override};
use capstan_core::decision::Action;
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::{Bounds, Capacity, Sample, TaskId};
use capstan_core::testing::{one_policy, planner_config, total_tracking};
use capstan_store::{DecisionLog, MemoryStore};
use capstan_targets::{Observed, Target, TargetError};

/// A target with a count and no tasks, whose observe can be made to fail.
#[derive(Debug, Clone, Default)]
struct Counter {
    desired: Arc<AtomicU32>,
    broken: Arc<AtomicBool>,
}

impl Target for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    async fn observe(&self) -> Result<Observed, TargetError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(TargetError::Failed {
                target: "counter".into(),
                reason: "describe refused".into(),
            });
        }
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

#[tokio::test]
async fn the_handle_follows_every_tick() {
    let clock = VirtualClock::at_epoch();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    obs.lock()
        .unwrap()
        .declare("queue", Duration::from_secs(900), Duration::from_secs(3600));
    let registry = Registry::new();
    let handle = registry.register("svc", Bounds { min: 0, max: 0 }, true);
    let target = Counter::default();
    target.desired.store(2, Ordering::SeqCst);
    let log: Arc<dyn DecisionLog> = Arc::new(MemoryStore::new(10));
    let mut service = ServiceLoop::new(
        one_policy(
            "svc",
            "queue",
            total_tracking("queue", 10.0),
            planner_config(1, 8),
        ),
        target.clone(),
        clock.clone(),
        Arc::clone(&obs),
        log,
    )
    .with_handle(Arc::clone(&handle));
    // The loop's configuration replaces what was registered.
    let status = handle.status();
    assert_eq!(status.config, Bounds { min: 1, max: 8 });
    assert!(!status.dry_run);
    assert_eq!(status.desired, None);

    let push = |value: f64| {
        clock.advance(Duration::from_secs(1));
        obs.lock().unwrap().push(
            "queue",
            Sample {
                value,
                at: clock.now(),
            },
        );
    };

    push(60.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 6 });
    let status = handle.status();
    assert_eq!(status.desired, Some(6));
    assert_eq!(status.capacity.map(|c| c.desired), Some(2));
    assert_eq!(status.last_tick, Some(clock.now()));
    assert_eq!(status.last_decision.unwrap().sentence, d.sentence());

    // A failed tick is recorded with its reason; a good one clears it.
    target.broken.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    assert!(service.tick().await.is_err());
    let status = handle.status();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("describe refused")),
        "{status:?}"
    );
    assert_eq!(status.last_tick, Some(clock.now()));
    target.broken.store(false, Ordering::SeqCst);

    // Controls are read at the next tick: pause scale-out, cap by an override.
    handle.pause(Direction::Out);
    push(100.0);
    assert_eq!(service.tick().await.unwrap().action, Action::Hold { at: 6 });
    assert_eq!(handle.status().last_error, None);
    handle.resume(Direction::Out);
    handle.set_override(Override {
        min: None,
        max: Some(7),
        since: clock.now(),
        until: add(clock.now(), Duration::from_secs(10)),
    });
    push(100.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleOut { from: 6, to: 7 });
    assert_eq!(handle.status().effective, Bounds { min: 1, max: 7 });

    // Ten seconds on, the override is gone, from the decision and from the handle.
    clock.advance(Duration::from_secs(10));
    push(100.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleOut { from: 7, to: 8 });
    assert_eq!(handle.controls().bounds_override, None);
    assert_eq!(handle.status().effective, Bounds { min: 1, max: 8 });
}
