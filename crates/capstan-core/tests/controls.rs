//! Operator controls in the planner: a paused direction becomes a hold with the
//! operator as the reason; an override replaces a bound until it expires, and the
//! reason names the bound in force. Property tests: never outside the effective
//! min/max (unless a pause holds a count already outside), a paused direction never
//! moves.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock, add};
use capstan_core::controls::{Controls, Direction, Override, Pause};
use capstan_core::decision::{Action, StepKind};
use capstan_core::planner::{PlannerState, plan, plan_with};
use capstan_core::policy::{Ask, Recommendation};
use capstan_core::testing::{planner_config, recommendation, steady};
use proptest::prelude::*;

fn desired(count: u32) -> Vec<Recommendation> {
    vec![recommendation(
        "queue",
        Ask::Desired { count },
        "from the queue",
    )]
}

fn paused(direction: Direction) -> Controls {
    let mut c = Controls::NONE;
    c.pause(direction);
    c
}

#[test]
fn a_paused_scale_in_is_a_hold_naming_the_operator() {
    let clock = VirtualClock::at_epoch();
    let cfg = planner_config(1, 10);
    let mut state = PlannerState::default();
    let d = plan_with(
        &cfg,
        &mut state,
        "w",
        steady(5),
        desired(2),
        clock.now(),
        &paused(Direction::In),
    );
    assert_eq!(d.action, Action::Hold { at: 5 });
    let step = d.steps.last().unwrap();
    assert_eq!(step.kind, StepKind::Paused);
    assert_eq!(step.detail, "paused by operator (scale-in)");
    assert!(
        d.sentence()
            .contains("scale-in to 2 held at 5: paused by operator (scale-in)"),
        "{}",
        d.sentence()
    );
    // Scale-out is still allowed while only scale-in is paused.
    let d = plan_with(
        &cfg,
        &mut state,
        "w",
        steady(5),
        desired(8),
        clock.now(),
        &paused(Direction::In),
    );
    assert_eq!(d.action, Action::ScaleOut { from: 5, to: 8 });
}

#[test]
fn a_paused_scale_out_is_a_hold_and_scale_in_goes_on() {
    let clock = VirtualClock::at_epoch();
    let cfg = planner_config(1, 10);
    let mut state = PlannerState::default();
    let c = paused(Direction::Out);
    let d = plan_with(
        &cfg,
        &mut state,
        "w",
        steady(5),
        desired(9),
        clock.now(),
        &c,
    );
    assert_eq!(d.action, Action::Hold { at: 5 });
    assert!(
        d.sentence()
            .contains("scale-out to 9 held at 5: paused by operator (scale-out)"),
        "{}",
        d.sentence()
    );
    let d = plan_with(
        &cfg,
        &mut state,
        "w",
        steady(5),
        desired(3),
        clock.now(),
        &c,
    );
    assert_eq!(d.action, Action::ScaleIn { from: 5, to: 3 });
}

#[test]
fn without_controls_plan_with_is_plan() {
    let clock = VirtualClock::at_epoch();
    let cfg = planner_config(2, 6);
    for (current, ask) in [(3, 9), (5, 1), (4, 4)] {
        let a = plan(
            &cfg,
            &mut PlannerState::default(),
            "w",
            steady(current),
            desired(ask),
            clock.now(),
        );
        let b = plan_with(
            &cfg,
            &mut PlannerState::default(),
            "w",
            steady(current),
            desired(ask),
            clock.now(),
            &Controls::NONE,
        );
        assert_eq!(a, b);
    }
}

#[test]
fn an_override_replaces_the_bound_until_it_expires() {
    let clock = VirtualClock::at_epoch();
    let cfg = planner_config(1, 10);
    let until = add(clock.now(), Duration::from_secs(1800));
    let controls = Controls {
        bounds_override: Some(Override {
            min: Some(4),
            max: Some(6),
            since: clock.now(),
            until,
        }),
        ..Controls::NONE
    };
    let mut state = PlannerState::default();
    let d = plan_with(
        &cfg,
        &mut state,
        "w",
        steady(5),
        desired(9),
        clock.now(),
        &controls,
    );
    assert_eq!(d.action, Action::ScaleOut { from: 5, to: 6 });
    assert_eq!((d.min, d.max), (4, 6));
    assert!(
        d.sentence().contains(&format!(
            "capped 9 → 6 by operator override max 6 (until {until})"
        )),
        "{}",
        d.sentence()
    );
    let d = plan_with(
        &cfg,
        &mut state,
        "w",
        steady(5),
        desired(1),
        clock.now(),
        &controls,
    );
    assert_eq!(d.action, Action::ScaleIn { from: 5, to: 4 });
    assert!(
        d.sentence().contains("operator override min 4"),
        "{}",
        d.sentence()
    );

    // At the expiry instant the configured bounds are back.
    clock.set(until);
    let d = plan_with(
        &cfg,
        &mut state,
        "w",
        steady(5),
        desired(12),
        clock.now(),
        &controls,
    );
    assert_eq!(d.action, Action::ScaleOut { from: 5, to: 10 });
    assert_eq!((d.min, d.max), (1, 10));
    assert!(
        d.sentence().ends_with("capped 12 → 10 by max 10"),
        "{}",
        d.sentence()
    );
}

#[test]
fn an_override_of_one_side_keeps_the_other() {
    let clock = VirtualClock::at_epoch();
    let cfg = planner_config(2, 10);
    let controls = Controls {
        bounds_override: Some(Override {
            min: None,
            max: Some(3),
            since: clock.now(),
            until: add(clock.now(), Duration::from_secs(60)),
        }),
        ..Controls::NONE
    };
    let d = plan_with(
        &cfg,
        &mut PlannerState::default(),
        "w",
        steady(5),
        desired(0),
        clock.now(),
        &controls,
    );
    assert_eq!((d.min, d.max), (2, 3));
    assert_eq!(d.action, Action::ScaleIn { from: 5, to: 2 });
}

fn controls() -> impl Strategy<Value = Controls> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((
            proptest::option::of(0u32..30),
            proptest::option::of(0u32..30),
            0u64..120,
        )),
    )
        .prop_map(|(scale_in, scale_out, o)| Controls {
            paused: Pause {
                scale_in,
                scale_out,
            },
            bounds_override: o.map(|(min, max, secs)| Override {
                min,
                max,
                since: VirtualClock::at_epoch().now(),
                until: add(VirtualClock::at_epoch().now(), Duration::from_secs(secs)),
            }),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Within the effective bounds unless a pause holds the count where it was; a paused
    /// direction never moves.
    #[test]
    fn controls_keep_bounds_and_pauses(
        min in 0u32..15,
        span in 0u32..20,
        current in 0u32..40,
        asks in proptest::collection::vec(
            prop_oneof![
                (0u32..40).prop_map(|count| Ask::Desired { count }),
                Just(Ask::Hold),
                (proptest::option::of(0u32..30), proptest::option::of(0u32..30))
                    .prop_map(|(min, max)| Ask::Bounds { min, max }),
            ],
            0..4,
        ),
        controls in controls(),
        at in 0u64..150,
    ) {
        let cfg = planner_config(min, min + span);
        let clock = VirtualClock::at_epoch();
        clock.advance(Duration::from_secs(at));
        let now = clock.now();
        let recs: Vec<_> = asks
            .into_iter()
            .enumerate()
            .map(|(i, ask)| recommendation(&format!("p{i}"), ask, ""))
            .collect();
        // The effective bounds, computed independently.
        let (mut lo, mut hi) = (cfg.bounds.min, cfg.bounds.max);
        for r in &recs {
            if let Ask::Bounds { min, max } = r.ask {
                lo = min.unwrap_or(lo);
                hi = max.unwrap_or(hi);
            }
        }
        if let Some(o) = controls.bounds_override.filter(|o| now < o.until) {
            lo = o.min.unwrap_or(lo);
            hi = o.max.unwrap_or(hi);
        }
        let lo = lo.min(hi);
        let d = plan_with(
            &cfg,
            &mut PlannerState::default(),
            "w",
            steady(current),
            recs,
            now,
            &controls,
        );
        prop_assert_eq!((d.min, d.max), (lo, hi));
        let result = d.action.desired();
        match d.action {
            Action::ScaleIn { .. } => prop_assert!(!controls.paused.scale_in),
            Action::ScaleOut { .. } => prop_assert!(!controls.paused.scale_out),
            Action::Hold { .. } => {}
        }
        let held_by_pause = d.steps.iter().any(|s| s.kind == StepKind::Paused);
        if held_by_pause {
            prop_assert_eq!(result, current);
        } else {
            prop_assert!(lo <= result && result <= hi, "{} not in [{lo}, {hi}]: {:?}", result, d);
        }
        // A pause only ever holds a count that is outside the bounds closer to them than
        // it was, or keeps it where it is.
        if held_by_pause && (current < lo || current > hi) {
            prop_assert!(
                (current < lo && controls.paused.scale_out) || (current > hi && controls.paused.scale_in)
            );
        }
    }
}
