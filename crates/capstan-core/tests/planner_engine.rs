//! `Engine::evaluate` end to end with real policies: the baseline a step policy sees
//! during a scale-out cooldown (AWS's +2 then +3 example), and the `last_known` fallback
//! reaching the policies.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, StepKind};
use capstan_core::metrics::Observations;
use capstan_core::model::Sample;
use capstan_core::planner::{Cooldowns, Engine, Fallback, PlannerConfig};
use capstan_core::policy::{
    Adjustment, Aggregation, Ask, Policy, StepAlarm, StepBand, StepScaling,
};
use capstan_core::testing::{one_policy, planner_config, steady as cap, total_tracking};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn planner(fallback: Fallback, out_cooldown: u64) -> PlannerConfig {
    PlannerConfig {
        cooldown: Cooldowns {
            out: secs(out_cooldown),
            r#in: secs(300),
        },
        fallback,
        ..planner_config(1, 20)
    }
}

/// CPU above 60: +2 in [60, 70), +3 from 70.
fn step_engine() -> Engine {
    let band = |lower: Option<f64>, upper: Option<f64>, n: i64| StepBand {
        lower,
        upper,
        adjustment: Adjustment::Change(n),
    };
    one_policy(
        "worker",
        "cpu",
        Policy::Step(StepScaling {
            metric: "cpu".into(),
            aggregation: Aggregation::Average,
            out: Some(StepAlarm {
                threshold: 60.0,
                bands: vec![band(Some(0.0), Some(10.0), 2), band(Some(10.0), None, 3)],
                datapoints: 1,
            }),
            r#in: None,
            min_adjustment: None,
        }),
        planner(Fallback::Hold, 300),
    )
}

#[test]
fn aws_step_example_through_the_engine() {
    let engine = step_engine();
    let mut state = engine.initial_state();
    let clock = VirtualClock::at_epoch();
    let mut obs = Observations::new();
    obs.declare("cpu", secs(900), secs(60));

    // cpu 65: +2 from 5 → 7.
    obs.push(
        "cpu",
        Sample {
            value: 65.0,
            at: clock.now(),
        },
    );
    let d = engine.evaluate(&mut state, cap(5), &obs, clock.now());
    assert_eq!(d.action, Action::ScaleOut { from: 5, to: 7 });
    state.applied(&d, clock.now());

    // During the cooldown cpu 75: +3 counts from the baseline 5 → 8, i.e. only +1.
    clock.advance(secs(60));
    obs.push(
        "cpu",
        Sample {
            value: 75.0,
            at: clock.now(),
        },
    );
    let d = engine.evaluate(&mut state, cap(7), &obs, clock.now());
    assert_eq!(d.asks[0].ask, Ask::Desired { count: 8 }, "{}", d.sentence());
    assert_eq!(d.action, Action::ScaleOut { from: 7, to: 8 });
    state.applied(&d, clock.now());

    // Still in the (new) cooldown, cpu 65: +2 from the baseline 7 → 9 > 8 breaks through.
    clock.advance(secs(60));
    obs.push(
        "cpu",
        Sample {
            value: 65.0,
            at: clock.now(),
        },
    );
    let d = engine.evaluate(&mut state, cap(8), &obs, clock.now());
    assert_eq!(d.asks[0].ask, Ask::Desired { count: 9 }, "{}", d.sentence());
    assert_eq!(d.action, Action::ScaleOut { from: 8, to: 9 });
    state.applied(&d, clock.now());

    // After the cooldown the baseline is the current count again: +2 from 9 → 11.
    clock.advance(secs(300));
    obs.push(
        "cpu",
        Sample {
            value: 65.0,
            at: clock.now(),
        },
    );
    let d = engine.evaluate(&mut state, cap(9), &obs, clock.now());
    assert_eq!(d.action, Action::ScaleOut { from: 9, to: 11 });
}

fn queue_engine(fallback: Fallback) -> Engine {
    one_policy(
        "worker",
        "queue",
        total_tracking("jobs", 100.0),
        planner(fallback, 0),
    )
}

#[test]
fn last_known_fallback_reaches_the_policies_and_never_scales_in() {
    let clock = VirtualClock::at_epoch();
    let mut obs = Observations::new();
    obs.declare("jobs", secs(900), secs(30));
    obs.push(
        "jobs",
        Sample {
            value: 150.0,
            at: clock.now(),
        },
    );
    clock.advance(secs(120)); // stale (max age 30 s)

    // Hold fallback: the stale source is no data; hold.
    let engine = queue_engine(Fallback::Hold);
    let d = engine.evaluate(&mut engine.initial_state(), cap(6), &obs, clock.now());
    assert!(matches!(d.asks[0].ask, Ask::NoData { .. }));
    assert_eq!(d.action, Action::Hold { at: 6 });
    assert_eq!(d.steps[0].kind, StepKind::Fallback);

    // Last-known within its TTL: the policy uses 150 (degraded) and asks 2, refused.
    let engine = queue_engine(Fallback::LastKnownFor(secs(300)));
    let d = engine.evaluate(&mut engine.initial_state(), cap(6), &obs, clock.now());
    assert!(d.asks[0].degraded, "{}", d.sentence());
    assert_eq!(d.action, Action::Hold { at: 6 });

    // ...but a scale-out from the last-known value goes through: 150 / 100 → 2 > 1.
    let d = engine.evaluate(&mut engine.initial_state(), cap(1), &obs, clock.now());
    assert_eq!(
        d.action,
        Action::ScaleOut { from: 1, to: 2 },
        "{}",
        d.sentence()
    );

    // Beyond the TTL: no data, hold.
    let engine = queue_engine(Fallback::LastKnownFor(secs(60)));
    let d = engine.evaluate(&mut engine.initial_state(), cap(6), &obs, clock.now());
    assert!(matches!(d.asks[0].ask, Ask::NoData { .. }));
    assert_eq!(d.action, Action::Hold { at: 6 });
}

#[test]
fn a_state_of_the_wrong_length_is_repaired() {
    let clock = VirtualClock::at_epoch();
    let mut obs = Observations::new();
    obs.push(
        "jobs",
        Sample {
            value: 450.0,
            at: clock.now(),
        },
    );
    let engine = queue_engine(Fallback::Hold);
    let mut state = capstan_core::planner::EngineState::default();
    let d = engine.evaluate(&mut state, cap(2), &obs, clock.now());
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 5 });
    assert_eq!(state.policies.len(), 1);
}
