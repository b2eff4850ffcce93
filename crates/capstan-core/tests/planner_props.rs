//! Property tests of the planner over arbitrary configurations, states, capacities and
//! asks: the result stays within the bounds in force, never drops on missing data,
//! never violates a cooldown (over sequences of evaluations on a virtual clock), and is
//! the same for the same inputs.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock, add};
use capstan_core::decision::{Action, Decision, StepKind};
use capstan_core::model::{Bounds, Capacity};
use capstan_core::planner::{
    Cooldowns, Fallback, PlannerConfig, PlannerState, RateLimit, RateLimits, plan,
};
use capstan_core::policy::{Ask, Recommendation};
use capstan_core::testing::steady as cap;
use proptest::prelude::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn rate_limit() -> impl Strategy<Value = Option<RateLimit>> {
    proptest::option::of(
        (
            proptest::option::of(0u32..8),
            proptest::option::of(0.0f64..150.0),
            1u64..600,
        )
            .prop_map(|(tasks, percent, period)| RateLimit {
                tasks,
                percent,
                period: secs(period),
            }),
    )
}

fn fallback() -> impl Strategy<Value = Fallback> {
    prop_oneof![
        Just(Fallback::Hold),
        (0u32..50).prop_map(Fallback::Tasks),
        (1u64..900).prop_map(|s| Fallback::LastKnownFor(secs(s))),
    ]
}

prop_compose! {
    fn config()(
        min in 0u32..20,
        span in 0u32..30,
        inverted in proptest::bool::weighted(0.05),
        out in 0u64..400,
        inn in 0u64..400,
        stabilization in prop_oneof![Just(0u64), 1u64..400],
        rate_out in rate_limit(),
        rate_in in rate_limit(),
        fallback in fallback(),
        dry_run in proptest::bool::weighted(0.1),
    ) -> PlannerConfig {
        // Static bounds are validated by the config loader; an inverted pair still must
        // not break the planner.
        let bounds = if inverted && span > 0 {
            Bounds { min: min + span, max: min }
        } else {
            Bounds { min, max: min + span }
        };
        PlannerConfig {
            bounds,
            cooldown: Cooldowns { out: secs(out), r#in: secs(inn) },
            stabilization: secs(stabilization),
            rate_limits: RateLimits { out: rate_out, r#in: rate_in },
            fallback,
            dry_run,
        }
    }
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![
        6 => (0u32..60).prop_map(|count| Ask::Desired { count }),
        2 => Just(Ask::Hold),
        2 => Just(Ask::Abstain),
        1 => Just(Ask::NoData { sources: vec!["src".to_owned()] }),
        1 => (proptest::option::of(0u32..40), proptest::option::of(0u32..50))
            .prop_map(|(min, max)| Ask::Bounds { min, max }),
    ]
}

fn asks() -> impl Strategy<Value = Vec<Recommendation>> {
    proptest::collection::vec((ask(), proptest::bool::weighted(0.1)), 0..6).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (ask, degraded))| Recommendation {
                policy: format!("p{i}"),
                ask,
                reason: String::new(),
                degraded,
            })
            .collect()
    })
}

/// The bounds the planner must enforce, computed independently.
fn bounds_in_force(cfg: &PlannerConfig, asks: &[Recommendation]) -> (u32, u32) {
    let (mut min, mut max) = (cfg.bounds.min, cfg.bounds.max);
    for r in asks {
        if let Ask::Bounds { min: lo, max: hi } = r.ask {
            min = lo.unwrap_or(min);
            max = hi.unwrap_or(max);
        }
    }
    (min.min(max), max)
}

fn lacks_data(asks: &[Recommendation]) -> bool {
    asks.iter()
        .any(|r| r.degraded || matches!(r.ask, Ask::NoData { .. }))
}

/// Checks that hold for every single decision.
fn check_decision(
    cfg: &PlannerConfig,
    current: u32,
    asks: &[Recommendation],
    d: &Decision,
) -> Result<(), TestCaseError> {
    let result = d.action.desired();
    let (min, max) = bounds_in_force(cfg, asks);
    prop_assert_eq!((d.min, d.max), (min, max));
    prop_assert!(
        min <= result && result <= max,
        "{} not in [{min}, {max}]",
        result
    );
    if lacks_data(asks) && current <= max {
        prop_assert!(result >= current, "scaled in on missing data: {d:?}");
    }
    match d.action {
        Action::ScaleOut { from, to } => prop_assert!(from == current && to > current),
        Action::ScaleIn { from, to } => prop_assert!(from == current && to < current),
        Action::Hold { at } => prop_assert_eq!(at, current),
    }
    prop_assert_eq!(d.dry_run, cfg.dry_run);
    // The steps form a chain from the combined count to the result.
    let mut n = d.combined;
    for s in d.steps.iter().filter(|s| s.kind != StepKind::Fallback) {
        prop_assert_eq!(s.from, n, "broken chain in {:?}", d.steps);
        n = s.to;
    }
    prop_assert_eq!(n, result);
    let sentence = d.sentence();
    for s in d.steps.iter().filter(|s| s.kind != StepKind::DryRun) {
        prop_assert!(
            sentence.contains(&s.detail),
            "{sentence} lacks {}",
            s.detail
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// One decision from an arbitrary (but reachable) state.
    #[test]
    fn single_decisions_respect_bounds_and_missing_data(
        cfg in config(),
        history in proptest::collection::vec((0u32..60, 0u32..60), 0..5),
        current in 0u32..60,
        asks in asks(),
    ) {
        let clock = VirtualClock::at_epoch();
        let mut state = PlannerState::default();
        // Build a state by planning and applying a few earlier decisions.
        for (before, ask) in history {
            let d = plan(&cfg, &mut state, "svc", cap(before), vec![Recommendation {
                policy: "h".into(),
                ask: Ask::Desired { count: ask },
                reason: String::new(),
                degraded: false,
            }], clock.now());
            state.applied(&d, clock.now());
            clock.advance(secs(7));
        }
        let mut copy = state.clone();
        let d = plan(&cfg, &mut state, "svc", cap(current), asks.clone(), clock.now());
        check_decision(&cfg, current, &asks, &d)?;
        // Determinism: same inputs, same (cloned) state → same decision and state.
        let again = plan(&cfg, &mut copy, "svc", cap(current), asks, clock.now());
        prop_assert_eq!(&d, &again);
        prop_assert_eq!(&state, &copy);
    }

    /// Sequences of evaluations, each applied, on a virtual clock: cooldowns are never
    /// violated, and every decision satisfies the single-decision properties.
    #[test]
    fn sequences_never_violate_cooldowns(
        cfg in config(),
        start in 0u32..40,
        ticks in proptest::collection::vec(
            (0u64..200, asks(), proptest::option::of(0u32..50), proptest::bool::weighted(0.8)),
            1..40,
        ),
    ) {
        let clock = VirtualClock::at_epoch();
        let mut state = PlannerState::default();
        let mut current = start;
        for (advance, asks, external, carried_out) in ticks {
            clock.advance(secs(advance));
            let now = clock.now();
            // Someone else may change the desired count between evaluations.
            if let Some(n) = external
                && advance % 7 == 0
            {
                current = n;
            }
            let in_cooldown = state
                .last_in
                .is_some_and(|l| now < add(l.at, cfg.cooldown.r#in));
            let out_cooldown = state
                .last_out
                .filter(|l| now < add(l.at, cfg.cooldown.out));

            let mut copy = state.clone();
            let d = plan(&cfg, &mut state, "svc", cap(current), asks.clone(), now);
            let again = plan(&cfg, &mut copy, "svc", cap(current), asks.clone(), now);
            prop_assert_eq!(&d, &again);
            check_decision(&cfg, current, &asks, &d)?;

            let result = d.action.desired();
            if in_cooldown && result < current {
                // Only the bounds may lower it during the in-cooldown.
                prop_assert_eq!(result, d.max, "scaled in during the in-cooldown: {:?}", d);
            }
            if let Some(last) = out_cooldown {
                // The cooldown governs the policies' number; the bounds come after it
                // and are exempt (a raise to the min, a cap at the max).
                let before_bounds = d
                    .steps
                    .iter()
                    .find(|s| matches!(s.kind, StepKind::Min | StepKind::Max))
                    .map_or(result, |s| s.from);
                prop_assert!(
                    before_bounds <= current || before_bounds > last.to,
                    "scaled out to {} during the out-cooldown of {:?}: {:?}",
                    before_bounds,
                    last,
                    d
                );
                if result > current && before_bounds <= current {
                    prop_assert_eq!(result, d.min);
                }
            }
            if carried_out && !cfg.dry_run {
                state.applied(&d, now);
                current = result;
            }
            prop_assert_eq!(state.history.is_empty(), cfg.stabilization.is_zero());
            prop_assert!(state.changes.iter().all(|c| now < add(c.at, state.change_horizon)));
        }
    }

    /// Stabilization: a scale-in never goes below any recommendation recorded within the
    /// window (when nothing else interferes).
    #[test]
    fn stabilization_never_undercuts_the_window(
        window in 1u64..300,
        steps in proptest::collection::vec((1u64..60, 0u32..40), 1..40),
    ) {
        let cfg = PlannerConfig {
            bounds: Bounds { min: 0, max: 100 },
            cooldown: Cooldowns::default(),
            stabilization: secs(window),
            rate_limits: RateLimits::default(),
            fallback: Fallback::Hold,
            dry_run: false,
        };
        let clock = VirtualClock::at_epoch();
        let mut state = PlannerState::default();
        let mut seen: Vec<(capstan_core::Timestamp, u32)> = Vec::new();
        let current = 40;
        for (advance, ask) in steps {
            clock.advance(secs(advance));
            let now = clock.now();
            seen.push((now, ask));
            let d = plan(&cfg, &mut state, "svc", cap(current), vec![Recommendation {
                policy: "p".into(),
                ask: Ask::Desired { count: ask },
                reason: String::new(),
                degraded: false,
            }], now);
            let highest = seen
                .iter()
                .filter(|(at, _)| now < add(*at, secs(window)))
                .map(|&(_, n)| n)
                .max()
                .unwrap_or(ask);
            prop_assert_eq!(d.action.desired(), highest.min(current));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Through the whole engine (policies + planner), driven by metric windows.

mod engine {
    use super::*;
    use capstan_core::metrics::Observations;
    use capstan_core::model::Sample;
    use capstan_core::planner::Engine;
    use capstan_core::policy::{Datapoints, Growth, Policy, TargetTracking, TrackingMode};
    use capstan_core::testing;

    prop_compose! {
        /// A planner config whose static bounds contain `desired`, falling back to hold.
        fn config_around(desired: u32)(
            cfg in config(),
            below in 0u32..5,
            above in 0u32..5,
        ) -> PlannerConfig {
            PlannerConfig {
                bounds: Bounds {
                    min: desired.saturating_sub(below),
                    max: desired + above,
                },
                fallback: Fallback::Hold,
                ..cfg
            }
        }
    }

    fn tracking_engine(
        planner: PlannerConfig,
        mode: TrackingMode,
        target: f64,
        tolerance: f64,
        datapoints: Datapoints,
        disable_scale_in: bool,
    ) -> Engine {
        testing::one_policy(
            "svc",
            "tt",
            Policy::TargetTracking(TargetTracking {
                metric: "m".into(),
                mode,
                target,
                tolerance,
                datapoints,
                disable_scale_in,
            }),
            planner,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A constant metric equal to the target (per task; or a total of target ×
        /// running) never changes capacity, over a sequence of ticks.
        #[test]
        fn constant_metric_at_target_never_changes_capacity(
            (desired, planner) in (1u32..40).prop_flat_map(|d| (Just(d), config_around(d))),
            running in 1u32..40,
            total_mode in any::<bool>(),
            target in prop_oneof![0.01f64..1.0, 1.0f64..100.0, 100.0f64..10_000.0],
            tolerance in prop_oneof![Just(0.0f64), 0.0f64..0.5],
            out_dp in 1u32..5,
            in_dp in 1u32..20,
            disable_scale_in in any::<bool>(),
            ticks in proptest::collection::vec(1u64..30, 1..60),
        ) {
            let (mode, value) = if total_mode {
                (TrackingMode::Total, target * f64::from(running))
            } else {
                (TrackingMode::PerTask, target)
            };
            let engine = tracking_engine(
                planner,
                mode,
                target,
                tolerance,
                Datapoints { out: out_dp, r#in: in_dp },
                disable_scale_in,
            );
            let mut state = engine.initial_state();
            let clock = VirtualClock::at_epoch();
            let mut obs = Observations::new();
            obs.declare("m", secs(900), secs(60));
            let capacity = Capacity { desired, running, pending: 0 };
            for advance in ticks {
                clock.advance(secs(advance));
                let now = clock.now();
                obs.push("m", Sample { value, at: now });
                let d = engine.evaluate(&mut state, capacity, &obs, now);
                prop_assert_eq!(d.action, Action::Hold { at: desired }, "{}", d.sentence());
                state.applied(&d, now);
            }
        }

        /// The whole engine (three policies, one with a seeded RNG) is deterministic:
        /// the same inputs and a clone of the same state give the same decision.
        #[test]
        fn engine_is_deterministic(
            planner in config(),
            desired in 0u32..30,
            series in proptest::collection::vec(
                (1u64..20, 0.0f64..2000.0, 0.0f64..100.0, 0.0f64..100.0, any::<bool>()),
                1..40,
            ),
        ) {
            let engine = three_policies(planner);
            let mut state = engine.initial_state();
            let clock = VirtualClock::at_epoch();
            let mut obs = Observations::new();
            for name in ["queue", "cpu", "memory"] {
                obs.declare(name, secs(900), secs(30));
            }
            let mut capacity = cap(desired);
            for (advance, queue, cpu, memory, cpu_fails) in series {
                clock.advance(secs(advance));
                let now = clock.now();
                obs.push("queue", Sample { value: queue, at: now });
                if cpu_fails {
                    obs.fail("cpu", now, "timeout");
                } else {
                    obs.push("cpu", Sample { value: cpu, at: now });
                }
                obs.push("memory", Sample { value: memory, at: now });
                let mut copy = state.clone();
                let d = engine.evaluate(&mut state, capacity, &obs, now);
                let again = engine.evaluate(&mut copy, capacity, &obs, now);
                prop_assert_eq!(&d, &again);
                prop_assert_eq!(&state.planner, &copy.planner);
                check_decision(&engine.planner, capacity.desired, &d.asks, &d)?;
                state.applied(&d, now);
                capacity = cap(d.action.desired());
            }
        }
    }

    /// Target tracking on a queue, step scaling on cpu, threshold on cpu and memory.
    pub fn three_policies(planner: PlannerConfig) -> Engine {
        testing::three_policies(
            "svc",
            planner,
            Growth::Exponential,
            Some(capstan_core::policy::Jitter {
                fraction: 0.3,
                seed: 7,
            }),
        )
    }

    #[test]
    fn the_three_policies_are_valid() {
        let engine = three_policies(PlannerConfig {
            bounds: Bounds { min: 1, max: 10 },
            cooldown: Cooldowns::default(),
            stabilization: Duration::ZERO,
            rate_limits: RateLimits::default(),
            fallback: Fallback::Hold,
            dry_run: false,
        });
        for p in &engine.policies {
            assert_eq!(p.policy.validate(), vec![], "{}", p.name);
        }
    }
}
