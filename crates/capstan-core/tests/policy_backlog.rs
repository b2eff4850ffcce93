//! Backlog per task with a dynamic target.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::metrics::Observations;
use capstan_core::model::Sample;
use capstan_core::policy::{Ask, BacklogPerTask, BacklogState, Datapoints, PolicyInput};
use capstan_core::testing::steady;

fn policy() -> BacklogPerTask {
    BacklogPerTask {
        backlog: "jobs".to_owned(),
        processing_time: "proc_time".to_owned(),
        acceptable_latency: Duration::from_secs(10),
        target_refresh: Duration::from_secs(3600),
        target_min: 1.0,
        target_max: 1000.0,
        tolerance: 0.1,
        datapoints: Datapoints { out: 1, r#in: 1 },
    }
}

fn observations() -> Observations {
    let mut obs = Observations::new();
    obs.declare("jobs", Duration::from_secs(900), Duration::from_secs(30));
    obs.declare(
        "proc_time",
        Duration::from_secs(900),
        Duration::from_secs(30),
    );
    obs
}

fn push(obs: &mut Observations, clock: &VirtualClock, source: &str, value: f64) {
    obs.push(
        source,
        Sample {
            value,
            at: clock.now(),
        },
    );
}

fn eval(
    p: &BacklogPerTask,
    obs: &Observations,
    clock: &VirtualClock,
    tasks: u32,
    state: &mut BacklogState,
) -> (Ask, String, bool) {
    let input = PolicyInput {
        now: clock.now(),
        capacity: steady(tasks),
        baseline: tasks,
        metrics: obs,
        last_known: None,
    };
    p.evaluate(&input, state)
}

#[test]
fn aws_example_1500_messages_on_10_tasks() {
    let p = policy();
    assert!(p.validate().is_empty());
    let clock = VirtualClock::at_epoch();
    let mut obs = observations();
    push(&mut obs, &clock, "jobs", 1500.0);
    push(&mut obs, &clock, "proc_time", 0.1);
    let mut state = BacklogState::default();
    let (ask, reason, degraded) = eval(&p, &obs, &clock, 10, &mut state);
    assert_eq!(ask, Ask::Desired { count: 15 }, "{reason}");
    assert!(!degraded);
    assert_eq!(state.target, Some(100.0));
    assert_eq!(state.computed_at, Some(clock.now()));
    assert!(
        reason.contains("target 100 per task = 10s / proc_time 0.1s"),
        "{reason}"
    );
    assert!(
        reason.contains("jobs 1500 total / 100 per task → 15"),
        "{reason}"
    );
}

#[test]
fn target_is_recomputed_only_after_the_refresh_interval() {
    let p = policy();
    let clock = VirtualClock::at_epoch();
    let t0 = clock.now();
    let mut obs = observations();
    let mut state = BacklogState::default();
    push(&mut obs, &clock, "jobs", 1000.0);
    push(&mut obs, &clock, "proc_time", 0.1);
    assert_eq!(eval(&p, &obs, &clock, 10, &mut state).0, Ask::Hold);
    assert_eq!(state.target, Some(100.0));

    // Processing doubles half an hour later: the target stays until the hour is up.
    clock.advance(Duration::from_secs(1800));
    push(&mut obs, &clock, "jobs", 1000.0);
    push(&mut obs, &clock, "proc_time", 0.2);
    let (ask, reason, _) = eval(&p, &obs, &clock, 10, &mut state);
    assert_eq!(ask, Ask::Hold, "{reason}");
    assert_eq!(state.target, Some(100.0));
    assert_eq!(state.computed_at, Some(t0));

    clock.advance(Duration::from_secs(1799));
    push(&mut obs, &clock, "jobs", 1000.0);
    push(&mut obs, &clock, "proc_time", 0.2);
    eval(&p, &obs, &clock, 10, &mut state);
    assert_eq!(state.target, Some(100.0), "one second before the refresh");

    clock.advance(Duration::from_secs(1));
    push(&mut obs, &clock, "jobs", 1000.0);
    push(&mut obs, &clock, "proc_time", 0.2);
    let (ask, reason, _) = eval(&p, &obs, &clock, 10, &mut state);
    assert_eq!(state.target, Some(50.0));
    assert_eq!(state.computed_at, Some(clock.now()));
    assert_eq!(ask, Ask::Desired { count: 20 }, "{reason}");
    assert!(reason.contains("refreshed"), "{reason}");
}

#[test]
fn target_is_clamped_and_zero_processing_time_gives_the_max() {
    let p = BacklogPerTask {
        target_min: 10.0,
        target_max: 500.0,
        ..policy()
    };
    assert_eq!(p.target_for(0.0), 500.0);
    assert_eq!(p.target_for(0.001), 500.0);
    assert_eq!(p.target_for(100.0), 10.0);
    assert_eq!(p.target_for(0.1), 100.0);

    let clock = VirtualClock::at_epoch();
    let mut obs = observations();
    push(&mut obs, &clock, "jobs", 5000.0);
    push(&mut obs, &clock, "proc_time", 0.0);
    let mut state = BacklogState::default();
    let (ask, reason, _) = eval(&p, &obs, &clock, 2, &mut state);
    assert_eq!(ask, Ask::Desired { count: 10 }, "{reason}");
}

#[test]
fn unusable_processing_time_keeps_the_old_target() {
    let p = policy();
    let clock = VirtualClock::at_epoch();
    let mut obs = observations();
    let mut state = BacklogState::default();
    push(&mut obs, &clock, "jobs", 1500.0);
    push(&mut obs, &clock, "proc_time", 0.1);
    eval(&p, &obs, &clock, 10, &mut state);

    // Two hours later the processing-time source is failing: the old target stays.
    clock.advance(Duration::from_secs(7200));
    push(&mut obs, &clock, "jobs", 2000.0);
    obs.fail("proc_time", clock.now(), "no worker reported");
    let (ask, reason, degraded) = eval(&p, &obs, &clock, 10, &mut state);
    assert_eq!(ask, Ask::Desired { count: 20 }, "{reason}");
    assert!(!degraded);
    assert!(
        reason.contains("target 100 per task kept") && reason.contains("no worker reported"),
        "{reason}"
    );
    assert_eq!(state.target, Some(100.0));

    // The backlog itself failing: no data for it.
    obs.fail("jobs", clock.now(), "redis down");
    let (ask, reason, _) = eval(&p, &obs, &clock, 10, &mut state);
    assert_eq!(
        ask,
        Ask::NoData {
            sources: vec!["jobs".to_owned()]
        },
        "{reason}"
    );
}

#[test]
fn no_target_ever_and_no_processing_time_is_no_data() {
    let p = policy();
    let clock = VirtualClock::at_epoch();
    let mut obs = observations();
    let mut state = BacklogState::default();
    push(&mut obs, &clock, "jobs", 1500.0);
    let (ask, reason, _) = eval(&p, &obs, &clock, 10, &mut state);
    assert_eq!(
        ask,
        Ask::NoData {
            sources: vec!["proc_time".to_owned()]
        }
    );
    assert!(reason.contains("proc_time has no data"), "{reason}");
    assert_eq!(state.target, None);

    let empty = observations();
    let (ask, _, _) = eval(&p, &empty, &clock, 10, &mut state);
    assert_eq!(
        ask,
        Ask::NoData {
            sources: vec!["jobs".to_owned(), "proc_time".to_owned()]
        }
    );
}

#[test]
fn last_known_processing_time_gives_a_provisional_target() {
    let p = policy();
    let clock = VirtualClock::at_epoch();
    let mut obs = observations();
    let mut state = BacklogState::default();
    push(&mut obs, &clock, "proc_time", 0.1);
    clock.advance(Duration::from_secs(60));
    push(&mut obs, &clock, "jobs", 100.0);
    let input = PolicyInput {
        now: clock.now(),
        capacity: steady(10),
        baseline: 10,
        metrics: &obs,
        last_known: Some(Duration::from_secs(300)),
    };
    let (ask, reason, degraded) = p.evaluate(&input, &mut state);
    assert!(degraded);
    assert_eq!(
        ask,
        Ask::Hold,
        "no scale-in on a provisional target: {reason}"
    );
    assert!(reason.contains("provisional"), "{reason}");
    assert_eq!(state.target, Some(100.0));
    assert_eq!(state.computed_at, None, "retried on the next evaluation");

    // Fresh processing time arrives: the target is computed for real.
    push(&mut obs, &clock, "proc_time", 0.1);
    let (ask, reason, degraded) = eval(&p, &obs, &clock, 10, &mut state);
    assert!(!degraded);
    assert_eq!(ask, Ask::Desired { count: 1 }, "{reason}");
    assert_eq!(state.computed_at, Some(clock.now()));
}

#[test]
fn validation() {
    let p = BacklogPerTask {
        backlog: String::new(),
        processing_time: " ".to_owned(),
        acceptable_latency: Duration::ZERO,
        target_refresh: Duration::ZERO,
        target_min: 10.0,
        target_max: 5.0,
        tolerance: -0.1,
        datapoints: Datapoints { out: 1, r#in: 0 },
    };
    let fields: Vec<String> = p.validate().into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "backlog",
            "processing_time",
            "acceptable_latency",
            "target_refresh",
            "target_max",
            "tolerance",
            "datapoints.in"
        ]
    );
    let p = BacklogPerTask {
        target_min: 0.0,
        ..policy()
    };
    assert_eq!(p.validate()[0].field, "target_min");
}
