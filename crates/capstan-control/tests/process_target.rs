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
        drain_deadline: None,
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

/// With the work registry: scale-in stops the idle worker at once, drains the busy
/// victim (new sessions refused) until its last session ends, then stops it; the worker
/// with the most sessions is never touched. A victim still busy at its drain deadline is
/// kept running and the desired count goes back up.
///
/// Real Tokio time (seconds): paused time would race through the target's drain
/// checks while the test waits for real processes to exit.
#[tokio::test]
async fn victims_drain_until_idle_before_their_sigterm() {
    use capstan_control::{WorkError, WorkRegistry};
    use capstan_core::model::TaskId;
    use capstan_core::work::WorkKind;
    use capstan_store::MemoryWorkLog;

    let clock = VirtualClock::at_epoch();
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let log = Arc::new(MemoryStore::new(100));
    let work = WorkRegistry::open(Arc::new(MemoryWorkLog), Arc::new(clock.clone())).unwrap();
    work.configure("svc", Some(Duration::from_secs(3600)));
    let spec = ProcessSpec {
        command: vec!["sh".into(), "-c".into(), "exec sleep 1000".into()],
        env: BTreeMap::new(),
        workdir: None,
        stop_timeout: Duration::from_secs(5),
        restart_delay: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(4),
        drain_deadline: None,
    };
    let target =
        ProcessTarget::with_work("svc", spec, clock.clone(), Some(work.counts_for("svc"))).unwrap();
    let mut rx = target.subscribe();
    let mut service = ServiceLoop::new(
        engine(),
        target.clone(),
        clock.clone(),
        Arc::clone(&obs),
        Arc::clone(&log) as Arc<dyn DecisionLog>,
    )
    .with_work(work.clone());
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
    queue(30.0);
    service.tick().await.unwrap();
    until(&mut rx, |s| s.workers.len() == 3).await;
    queue(30.0);
    service.tick().await.unwrap();
    let (t1, t2, t3) = (
        TaskId::from("svc-1"),
        TaskId::from("svc-2"),
        TaskId::from("svc-3"),
    );
    // svc-2 holds one session, svc-3 two: a scale-in to 1 takes svc-1 (idle) and
    // svc-2 (fewest sessions), never svc-3.
    work.start("svc", &t2, WorkKind::Session, "a", None)
        .await
        .unwrap();
    for id in ["b", "c"] {
        work.start("svc", &t3, WorkKind::Session, id, None)
            .await
            .unwrap();
    }
    queue(8.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleIn { from: 3, to: 1 });
    let watch = target.subscribe();
    let state = |id: &str| {
        let s = watch.borrow().clone();
        s.workers
            .iter()
            .find(|w| w.id.as_str() == id)
            .map(|w| (w.stopping, w.draining))
    };
    until(&mut rx, |s| s.workers.len() == 2).await;
    assert_eq!(state("svc-1"), None, "the idle victim stopped at once");
    assert_eq!(
        state("svc-2"),
        Some((false, true)),
        "the busy victim drains"
    );
    assert_eq!(state("svc-3"), Some((false, false)));
    // The draining victim refuses new sessions but may end its own.
    let e = work
        .start("svc", &t2, WorkKind::Session, "new", None)
        .await
        .unwrap_err();
    assert!(matches!(e, WorkError::Draining { .. }), "{e}");
    // Nothing happens while it is busy (two drain checks go by).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        state("svc-2"),
        Some((false, true)),
        "still busy: still draining"
    );
    assert!(work.end("svc", &t2, WorkKind::Session, "a").await.unwrap());
    let after = until(&mut rx, |s| s.workers.len() == 1).await;
    assert_eq!(after.workers[0].id.as_str(), "svc-3");
    assert_eq!(after.desired, 1);
    let _ = t1;

    // A victim that stays busy past drain_timeout is kept, and counted again.
    queue(30.0);
    service.tick().await.unwrap();
    until(&mut rx, |s| s.workers.len() == 3).await;
    queue(30.0);
    service.tick().await.unwrap();
    let ids: Vec<TaskId> = rx.borrow().workers.iter().map(|w| w.id.clone()).collect();
    for (i, id) in ids.iter().enumerate() {
        work.start("svc", id, WorkKind::Workload, &format!("job-{i}"), None)
            .await
            .unwrap();
    }
    queue(18.0);
    let d = service.tick().await.unwrap();
    assert_eq!(d.action, Action::ScaleIn { from: 3, to: 2 });
    assert_eq!(rx.borrow().desired, 2);
    let kept = until(&mut rx, |s| s.desired == 3).await;
    assert_eq!(kept.workers.len(), 3, "nobody was stopped");
    assert!(kept.workers.iter().all(|w| !w.draining && !w.stopping));

    service.into_target().shutdown().await;
}
