//! The control loop driving the real local-process target: real worker processes, a
//! virtual clock for the engine, and paused Tokio time for the target's timers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_control::ServiceLoop;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::Action;
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::{Capacity, Sample, TaskState};
use capstan_core::planner::Engine;
use capstan_core::testing::{one_policy, planner_config, total_tracking};
use capstan_store::{DecisionLog, MemoryStore};
use capstan_targets::{ProcessSpec, ProcessTarget, Target};
use capstan_testkit::process::{alive, until};

/// Target tracking on `queue`, 10 per task, min 1 max 5, no cooldowns.
fn engine() -> Engine {
    one_policy(
        "svc",
        "queue",
        total_tracking("queue", 10.0),
        planner_config(1, 5),
    )
}

#[tokio::test(start_paused = true)]
async fn the_loop_keeps_real_workers_at_the_decided_count() {
    let clock = VirtualClock::at_epoch();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let log = Arc::new(MemoryStore::new(100));
    let spec = ProcessSpec {
        command: vec!["sh".into(), "-c".into(), "exec sleep 1000".into()],
        env: BTreeMap::new(),
        workdir: None,
        stop_timeout: Duration::from_secs(5),
        restart_delay: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(600),
    };
    let target = ProcessTarget::new("svc", spec, clock.clone()).unwrap();
    let mut rx = target.subscribe();
    let mut service = ServiceLoop::new(
        engine(),
        target.clone(),
        clock.clone(),
        Arc::clone(&obs),
        Arc::clone(&log) as Arc<dyn DecisionLog>,
    );
    let queue = |depth: f64| {
        clock.advance(Duration::from_secs(10));
        obs.lock().unwrap().push(
            "queue",
            Sample {
                value: depth,
                at: clock.now(),
            },
        );
    };

    // From nothing to the minimum, then up to 3.
    queue(4.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleOut { from: 0, to: 1 });
    queue(30.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleOut { from: 1, to: 3 });
    let observed = target.observe().await.unwrap();
    assert_eq!(
        observed.capacity,
        Capacity {
            desired: 3,
            running: 3,
            pending: 0
        }
    );
    let pids: BTreeMap<String, u32> = target
        .snapshot()
        .unwrap()
        .workers
        .iter()
        .map(|w| (w.id.to_string(), w.pid))
        .collect();
    assert!(pids.values().all(|&p| alive(p)));

    // Down to 1: the two newest workers are the victims.
    queue(8.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleIn { from: 3, to: 1 });
    let states: Vec<(String, TaskState)> = target
        .observe()
        .await
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| (t.id.to_string(), t.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("svc-1".into(), TaskState::Running),
            ("svc-2".into(), TaskState::Stopping),
            ("svc-3".into(), TaskState::Stopping),
        ]
    );
    let after = until(&mut rx, |s| s.workers.len() == 1).await;
    assert_eq!(after.workers[0].id.as_str(), "svc-1");
    assert_eq!(after.restarts_pending, 0);
    assert!(!alive(pids["svc-2"]) && !alive(pids["svc-3"]) && alive(pids["svc-1"]));

    // A steady metric holds, and the log has every decision in order.
    queue(8.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::Hold { at: 1 });
    let logged: Vec<Action> = log
        .recent("svc", 10)
        .unwrap()
        .into_iter()
        .rev()
        .map(|d| d.action)
        .collect();
    assert_eq!(
        logged,
        vec![
            Action::ScaleOut { from: 0, to: 1 },
            Action::ScaleOut { from: 1, to: 3 },
            Action::ScaleIn { from: 3, to: 1 },
            Action::Hold { at: 1 },
        ]
    );

    service.into_target().shutdown().await;
    assert!(!alive(pids["svc-1"]));
}
