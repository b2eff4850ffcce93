//! Restart: the planner's memory rebuilt from stored decisions honours the cooldowns of
//! changes made before the restart, on virtual time, and never breaks the bounds.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision, StepKind};
use capstan_core::metrics::Observations;
use capstan_core::model::{Bounds, Sample};
use capstan_core::planner::{
    Cooldowns, Engine, EngineState, PlannerConfig, PlannerState, RateLimit, RateLimits, plan,
};
use capstan_core::policy::{Ask, Recommendation};
use capstan_core::testing::{one_policy, planner_config, steady, total_tracking};
use jiff::Timestamp;
use proptest::prelude::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Target tracking of the queue at 100 per task, bounds 1..=20, 5-minute cooldowns.
fn engine() -> Engine {
    let mut planner = planner_config(1, 20);
    planner.cooldown = Cooldowns {
        out: secs(300),
        r#in: secs(300),
    };
    one_policy("svc", "queue", total_tracking("queue", 100.0), planner)
}

/// The queue at `value` observed at `now`.
fn queue(value: f64, now: Timestamp) -> Observations {
    let mut obs = Observations::new();
    obs.declare("queue", secs(900), secs(30));
    obs.push("queue", Sample { value, at: now });
    obs
}

/// Evaluates at `desired` with the queue at `value`, and applies the decision (as the
/// control loop does once the target carried it out).
fn tick(
    engine: &Engine,
    state: &mut EngineState,
    desired: u32,
    value: f64,
    now: Timestamp,
) -> Decision {
    let d = engine.evaluate(state, steady(desired), &queue(value, now), now);
    state.applied(&d, now);
    d
}

fn has_step(d: &Decision, kind: StepKind) -> bool {
    d.steps.iter().any(|s| s.kind == kind)
}

#[test]
fn the_in_cooldown_of_a_scale_in_before_the_restart_is_honoured() {
    let clock = VirtualClock::at_epoch();
    let engine = engine();
    let mut before = engine.initial_state();
    let d = tick(&engine, &mut before, 8, 500.0, clock.now());
    assert_eq!(d.action, Action::ScaleIn { from: 8, to: 5 });

    // The daemon stops right after; the store kept the change.
    clock.advance(secs(60));
    let mut after = engine.restore_state(std::slice::from_ref(&d), clock.now());
    let held = tick(&engine, &mut after, 5, 300.0, clock.now());
    assert_eq!(held.action, Action::Hold { at: 5 }, "{}", held.sentence());
    assert!(has_step(&held, StepKind::InCooldown), "{}", held.sentence());
    assert!(
        held.sentence().contains("in-cooldown until"),
        "{}",
        held.sentence()
    );

    // Without the restore the same tick would have scaled in at once.
    let mut fresh = engine.initial_state();
    let unguarded = tick(&engine, &mut fresh, 5, 300.0, clock.now());
    assert_eq!(unguarded.action, Action::ScaleIn { from: 5, to: 3 });

    // Once the cooldown is over, it is allowed.
    clock.advance(secs(241));
    let allowed = tick(&engine, &mut after, 5, 300.0, clock.now());
    assert_eq!(
        allowed.action,
        Action::ScaleIn { from: 5, to: 3 },
        "{}",
        allowed.sentence()
    );
}

#[test]
fn the_out_cooldown_of_a_scale_out_before_the_restart_is_honoured() {
    let clock = VirtualClock::at_epoch();
    let engine = engine();
    let mut before = engine.initial_state();
    let d = tick(&engine, &mut before, 2, 600.0, clock.now());
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 6 });

    // Restart 30 s later; the service is seen at 4 (two tasks lost), the queue asks 5.
    clock.advance(secs(30));
    let mut after = engine.restore_state(std::slice::from_ref(&d), clock.now());
    assert_eq!(after.planner.last_out.map(|a| (a.from, a.to)), Some((2, 6)));
    let held = tick(&engine, &mut after, 4, 500.0, clock.now());
    assert_eq!(held.action, Action::Hold { at: 4 }, "{}", held.sentence());
    assert!(
        has_step(&held, StepKind::OutCooldown),
        "{}",
        held.sentence()
    );

    // An ask above the last scale-out is not held by the cooldown.
    let above = engine.evaluate(
        &mut after.clone(),
        steady(4),
        &queue(800.0, clock.now()),
        clock.now(),
    );
    assert_eq!(above.action, Action::ScaleOut { from: 4, to: 8 });

    clock.advance(secs(300));
    let allowed = tick(&engine, &mut after, 4, 500.0, clock.now());
    assert_eq!(
        allowed.action,
        Action::ScaleOut { from: 4, to: 5 },
        "{}",
        allowed.sentence()
    );
}

#[test]
fn restore_replays_oldest_first_and_skips_what_was_not_carried_out() {
    let clock = VirtualClock::at_epoch();
    let engine = engine();
    let mut state = engine.initial_state();
    let out = tick(&engine, &mut state, 2, 600.0, clock.now());
    clock.advance(secs(400));
    let inn = tick(&engine, &mut state, 6, 300.0, clock.now());
    assert_eq!(inn.action, Action::ScaleIn { from: 6, to: 3 });
    clock.advance(secs(10));
    let mut dry = inn.clone();
    dry.dry_run = true;
    dry.at = clock.now();
    let mut other = out.clone();
    other.service = "another".into();
    other.at = clock.now();
    // Newest first, as a store returns them.
    let restored = engine.restore_state(&[other, dry, inn.clone(), out.clone()], clock.now());
    assert_eq!(restored.planner.last_in.map(|a| a.at), Some(inn.at));
    assert_eq!(restored.planner.last_out.map(|a| a.at), Some(out.at));
    assert_eq!(restored.planner, {
        let mut p = state.planner.clone();
        p.history.clear();
        p
    });
}

#[test]
fn a_change_dated_after_now_is_ignored() {
    let clock = VirtualClock::at_epoch();
    let engine = engine();
    let mut state = engine.initial_state();
    clock.advance(secs(600));
    let d = tick(&engine, &mut state, 8, 500.0, clock.now());
    let earlier = clock
        .now()
        .checked_sub(jiff::SignedDuration::from_secs(120))
        .unwrap();
    let restored = engine.restore_state(&[d], earlier);
    assert_eq!(restored.planner.last_in, None);
}

#[test]
fn rate_limit_changes_within_the_period_are_restored() {
    let clock = VirtualClock::at_epoch();
    let mut engine = engine();
    engine.planner.cooldown = Cooldowns::default();
    engine.planner.rate_limits = RateLimits {
        out: Some(RateLimit {
            tasks: Some(4),
            percent: None,
            period: secs(600),
        }),
        r#in: None,
    };
    let mut state = engine.initial_state();
    let d = tick(&engine, &mut state, 2, 600.0, clock.now());
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 6 });
    clock.advance(secs(60));
    let mut after = engine.restore_state(&[d], clock.now());
    let capped = tick(&engine, &mut after, 6, 1500.0, clock.now());
    // 4 of the 10 minutes' allowance of +4 from 2 were used before the restart.
    assert_eq!(
        capped.action,
        Action::Hold { at: 6 },
        "{}",
        capped.sentence()
    );
    assert!(has_step(&capped, StepKind::RateLimitOut));
}

fn stored_change() -> impl Strategy<Value = (u64, u32, u32, bool, bool)> {
    (
        0u64..2000,
        0u32..60,
        0u32..60,
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.2),
    )
}

proptest! {
    #[test]
    fn restore_never_lets_the_planner_leave_the_bounds(
        min in 0u32..20,
        span in 0u32..30,
        out in 0u64..900,
        inn in 0u64..900,
        rate in proptest::option::of((1u32..8, 1u64..900)),
        changes in proptest::collection::vec(stored_change(), 0..20),
        now_secs in 0u64..2500,
        current in 0u32..60,
        asked in proptest::collection::vec(0u32..80, 1..4),
    ) {
        let clock = VirtualClock::at_epoch();
        let epoch = clock.now();
        let at = |s: u64| epoch.checked_add(jiff::SignedDuration::from_secs(i64::try_from(s).unwrap_or(0))).unwrap();
        let mut config: PlannerConfig = planner_config(min, min + span);
        config.bounds = Bounds { min, max: min + span };
        config.cooldown = Cooldowns { out: secs(out), r#in: secs(inn) };
        config.rate_limits = RateLimits {
            out: rate.map(|(tasks, p)| RateLimit { tasks: Some(tasks), percent: None, period: secs(p) }),
            r#in: rate.map(|(tasks, p)| RateLimit { tasks: Some(tasks), percent: None, period: secs(p) }),
        };
        let mut stored: Vec<Decision> = changes
            .iter()
            .map(|&(t, from, to, dry, bounded)| {
                let mut state = PlannerState::default();
                let ask = Recommendation {
                    policy: "p".into(),
                    ask: Ask::Desired { count: to },
                    reason: String::new(),
                    degraded: false,
                };
                let mut wide = planner_config(0, 100);
                wide.dry_run = dry;
                if bounded {
                    wide.bounds = Bounds { min: to, max: to };
                }
                plan(&wide, &mut state, "svc", steady(from), vec![ask], at(t))
            })
            .collect();
        stored.sort_by_key(|d| std::cmp::Reverse(d.at));
        let now = at(now_secs);
        let mut state = PlannerState::restore(&config, &stored, now);
        prop_assert!(state.last_out.is_none_or(|a| a.at <= now));
        prop_assert!(state.last_in.is_none_or(|a| a.at <= now));
        prop_assert!(state.changes.len() <= stored.len());
        let asks = asked
            .iter()
            .enumerate()
            .map(|(i, &count)| Recommendation {
                policy: format!("p{i}"),
                ask: Ask::Desired { count },
                reason: String::new(),
                degraded: false,
            })
            .collect();
        let d = plan(&config, &mut state, "svc", steady(current), asks, now);
        let result = d.action.desired();
        prop_assert!(result >= min && result <= min + span, "{} outside {min}..={}: {:?}", result, min + span, d);
    }
}

#[test]
fn the_stabilization_window_survives_a_restart_even_with_deduped_holds() {
    let clock = VirtualClock::at_epoch();
    let mut engine = engine();
    engine.planner.cooldown = Cooldowns::default();
    engine.planner.stabilization = secs(300);
    let mut state = engine.initial_state();
    let high = tick(&engine, &mut state, 8, 800.0, clock.now());
    assert_eq!(high.action, Action::Hold { at: 8 });
    // The same hold every second for 50 s: a store keeps only the first.
    for _ in 0..50 {
        clock.advance(secs(1));
        tick(&engine, &mut state, 8, 800.0, clock.now());
    }
    clock.advance(secs(10));
    let restart = clock.now();
    let mut after = engine.restore_state_with(&[], std::slice::from_ref(&high), restart);
    let held = tick(&engine, &mut after, 8, 300.0, clock.now());
    assert_eq!(held.action, Action::Hold { at: 8 }, "{}", held.sentence());
    assert!(
        has_step(&held, StepKind::Stabilization),
        "{}",
        held.sentence()
    );

    // Without it, the scale-in would go through at once.
    let mut fresh = engine.restore_state(&[], restart);
    let unguarded = tick(&engine, &mut fresh, 8, 300.0, clock.now());
    assert_eq!(unguarded.action, Action::ScaleIn { from: 8, to: 3 });

    // The 8 counts as in force until the restart; a window later it is gone.
    clock.advance(secs(299));
    let still = tick(&engine, &mut after, 8, 300.0, clock.now());
    assert_eq!(still.action, Action::Hold { at: 8 }, "{}", still.sentence());
    clock.advance(secs(2));
    let allowed = tick(&engine, &mut after, 8, 300.0, clock.now());
    assert_eq!(
        allowed.action,
        Action::ScaleIn { from: 8, to: 3 },
        "{}",
        allowed.sentence()
    );
}

#[test]
fn restored_stabilization_uses_the_count_after_the_missing_data_rule() {
    let clock = VirtualClock::at_epoch();
    let mut config = planner_config(1, 20);
    config.stabilization = secs(300);
    let mut state = PlannerState::default();
    let ask = Recommendation {
        policy: "p".into(),
        ask: Ask::Desired { count: 2 },
        reason: String::new(),
        degraded: true,
    };
    let d = plan(
        &config,
        &mut state,
        "svc",
        steady(6),
        vec![ask],
        clock.now(),
    );
    assert!(has_step(&d, StepKind::MissingData));
    clock.advance(secs(5));
    let mut restored = PlannerState::default();
    restored.restore_stabilization(&config, std::slice::from_ref(&d), clock.now());
    assert_eq!(
        restored.history.iter().map(|&(_, n)| n).collect::<Vec<_>>(),
        vec![6]
    );
    // Two decisions older than the window: the older ended there, the newest counts as
    // in force until now.
    clock.advance(secs(301));
    restored.restore_stabilization(&config, &[d.clone(), d], clock.now());
    assert_eq!(
        restored.history.iter().copied().collect::<Vec<_>>(),
        vec![(clock.now(), 6)]
    );
    // No stabilization configured: no history.
    config.stabilization = Duration::ZERO;
    restored.restore_stabilization(&config, &[], clock.now());
    assert!(restored.history.is_empty());
}
