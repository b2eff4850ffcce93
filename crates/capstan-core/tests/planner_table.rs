//! Table tests of the planner, driven through `plan` with hand-made recommendations:
//! combining, bounds (AWS's below-min / above-max rules, scheduled windows), AWS's
//! cooldown examples, stabilization, rate limits, fallbacks and dry-run.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock, elapsed};
use capstan_core::decision::{Action, Decision, Rule, StepKind};
use capstan_core::planner::{
    Applied, Cooldowns, Fallback, PlannerConfig, PlannerState, RateLimit, plan,
};
use capstan_core::policy::{Ask, Recommendation};
use capstan_core::testing::{planner_config as config, recommendation, steady as cap};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn rec(policy: &str, ask: Ask) -> Recommendation {
    recommendation(policy, ask, "")
}

fn want(policy: &str, count: u32) -> Recommendation {
    rec(policy, Ask::Desired { count })
}

fn hold(policy: &str) -> Recommendation {
    rec(policy, Ask::Hold)
}

fn abstain(policy: &str) -> Recommendation {
    rec(policy, Ask::Abstain)
}

fn no_data(policy: &str, source: &str) -> Recommendation {
    rec(
        policy,
        Ask::NoData {
            sources: vec![source.to_owned()],
        },
    )
}

fn degraded(mut r: Recommendation) -> Recommendation {
    r.degraded = true;
    r
}

fn window(policy: &str, min: Option<u32>, max: Option<u32>) -> Recommendation {
    rec(policy, Ask::Bounds { min, max })
}

/// `plan` for the service "svc" at the clock's current instant, from `current` steady
/// tasks.
fn plan_now(
    cfg: &PlannerConfig,
    state: &mut PlannerState,
    clock: &VirtualClock,
    current: u32,
    asks: Vec<Recommendation>,
) -> Decision {
    plan(cfg, state, "svc", cap(current), asks, clock.now())
}

fn kinds(d: &Decision) -> Vec<StepKind> {
    d.steps.iter().map(|s| s.kind).collect()
}

/// Plans once with a fresh state at the virtual epoch.
fn once(cfg: &PlannerConfig, current: u32, asks: Vec<Recommendation>) -> Decision {
    let now = VirtualClock::at_epoch().now();
    plan(
        cfg,
        &mut PlannerState::default(),
        "svc",
        cap(current),
        asks,
        now,
    )
}

// ---------------------------------------------------------------------------------------
// Combining

#[test]
fn combining_table() {
    struct Case {
        name: &'static str,
        current: u32,
        asks: Vec<Recommendation>,
        rule: Rule,
        winner: Option<&'static str>,
        desired: u32,
    }
    let cases = vec![
        Case {
            name: "out: the largest ask wins",
            current: 4,
            asks: vec![want("a", 3), want("b", 6), want("c", 5)],
            rule: Rule::LargestScaleOut,
            winner: Some("b"),
            desired: 6,
        },
        Case {
            name: "out: ties go to the first in order",
            current: 4,
            asks: vec![want("a", 3), want("b", 6), want("c", 6)],
            rule: Rule::LargestScaleOut,
            winner: Some("b"),
            desired: 6,
        },
        Case {
            name: "out beats a hold",
            current: 4,
            asks: vec![hold("a"), want("b", 5)],
            rule: Rule::LargestScaleOut,
            winner: Some("b"),
            desired: 5,
        },
        Case {
            name: "in: all agree, the largest of the smaller asks wins",
            current: 6,
            asks: vec![want("a", 2), want("b", 4), want("c", 3)],
            rule: Rule::ScaleInAllAgree,
            winner: Some("b"),
            desired: 4,
        },
        Case {
            name: "in: one policy at the current count blocks it",
            current: 6,
            asks: vec![want("a", 2), want("b", 6)],
            rule: Rule::Hold,
            winner: Some("b"),
            desired: 6,
        },
        Case {
            name: "in: a hold blocks it",
            current: 6,
            asks: vec![want("a", 2), hold("b")],
            rule: Rule::Hold,
            winner: Some("b"),
            desired: 6,
        },
        Case {
            name: "abstain is ignored (scale in)",
            current: 6,
            asks: vec![abstain("a"), want("b", 2)],
            rule: Rule::ScaleInAllAgree,
            winner: Some("b"),
            desired: 2,
        },
        Case {
            name: "abstain is ignored (scale out)",
            current: 6,
            asks: vec![want("a", 9), abstain("b")],
            rule: Rule::LargestScaleOut,
            winner: Some("a"),
            desired: 9,
        },
        Case {
            name: "only abstentions: no votes",
            current: 6,
            asks: vec![abstain("a"), abstain("b")],
            rule: Rule::NoVotes,
            winner: None,
            desired: 6,
        },
        Case {
            name: "no policies: no votes",
            current: 3,
            asks: vec![],
            rule: Rule::NoVotes,
            winner: None,
            desired: 3,
        },
        Case {
            name: "a scheduled window does not vote",
            current: 3,
            asks: vec![window("night", Some(1), None), want("a", 2)],
            rule: Rule::ScaleInAllAgree,
            winner: Some("a"),
            desired: 2,
        },
    ];
    let cfg = config(0, 100);
    for case in cases {
        let d = once(&cfg, case.current, case.asks);
        assert_eq!(d.rule, case.rule, "{}", case.name);
        assert_eq!(d.winner.as_deref(), case.winner, "{}", case.name);
        assert_eq!(d.action.desired(), case.desired, "{}", case.name);
        assert_eq!(d.combined, case.desired, "{}", case.name);
        assert!(d.steps.is_empty(), "{}: {:?}", case.name, d.steps);
    }
}

#[test]
fn action_reflects_direction() {
    let cfg = config(0, 100);
    assert_eq!(
        once(&cfg, 4, vec![want("a", 6)]).action,
        Action::ScaleOut { from: 4, to: 6 }
    );
    assert_eq!(
        once(&cfg, 4, vec![want("a", 1)]).action,
        Action::ScaleIn { from: 4, to: 1 }
    );
    assert_eq!(
        once(&cfg, 4, vec![want("a", 4)]).action,
        Action::Hold { at: 4 }
    );
}

// ---------------------------------------------------------------------------------------
// Bounds

#[test]
fn below_min_scale_out_goes_to_at_least_min() {
    let cfg = config(5, 10);
    // A scale-out that stays below the min is raised to it...
    let d = once(&cfg, 2, vec![want("a", 3)]);
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 5 });
    assert_eq!(kinds(&d), vec![StepKind::Min]);
    assert_eq!(d.steps[0].from, 3);
    assert_eq!(d.steps[0].detail, "min 5");
    // ...and one beyond the min goes further.
    let d = once(&cfg, 2, vec![want("a", 7)]);
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 7 });
    assert!(d.steps.is_empty());
    // Even a hold (or no vote at all) raises a count below the min.
    let d = once(&cfg, 2, vec![hold("a")]);
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 5 });
    let d = once(&cfg, 2, vec![]);
    assert_eq!(d.action, Action::ScaleOut { from: 2, to: 5 });
}

#[test]
fn above_max_is_the_mirror_image() {
    let cfg = config(1, 10);
    let d = once(&cfg, 12, vec![want("a", 15)]);
    assert_eq!(d.action, Action::ScaleIn { from: 12, to: 10 });
    assert_eq!(kinds(&d), vec![StepKind::Max]);
    assert_eq!((d.steps[0].from, d.steps[0].to), (15, 10));
    let d = once(&cfg, 12, vec![want("a", 11)]);
    assert_eq!(d.action, Action::ScaleIn { from: 12, to: 10 });
    let d = once(&cfg, 12, vec![want("a", 8)]);
    assert_eq!(d.action, Action::ScaleIn { from: 12, to: 8 });
    assert!(d.steps.is_empty());
    // A scale-out within the max is not clamped.
    let d = once(&cfg, 4, vec![want("a", 10)]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 10 });
}

#[test]
fn bounds_win_over_the_missing_data_rule() {
    let cfg = config(3, 10);
    let d = once(&cfg, 12, vec![no_data("q", "jobs")]);
    assert_eq!(d.action, Action::ScaleIn { from: 12, to: 10 });
    assert_eq!(kinds(&d), vec![StepKind::Fallback, StepKind::Max]);
    let d = once(&cfg, 1, vec![no_data("q", "jobs")]);
    assert_eq!(d.action, Action::ScaleOut { from: 1, to: 3 });
}

#[test]
fn scheduled_bounds_override_static_ones() {
    let cfg = config(1, 10);
    let d = once(&cfg, 4, vec![window("day", Some(6), None), want("a", 2)]);
    assert_eq!((d.min, d.max), (6, 10));
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 6 });
    assert_eq!(d.steps[0].kind, StepKind::Min);
    assert_eq!(d.steps[0].detail, "scheduled min 6 (day)");

    let d = once(&cfg, 8, vec![window("night", None, Some(3)), hold("a")]);
    assert_eq!((d.min, d.max), (1, 3));
    assert_eq!(d.action, Action::ScaleIn { from: 8, to: 3 });
    assert_eq!(d.steps[0].detail, "scheduled max 3 (night)");

    // A scheduled max above the static one lets the service grow past it.
    let d = once(&cfg, 8, vec![window("peak", None, Some(20)), want("a", 15)]);
    assert_eq!(d.action, Action::ScaleOut { from: 8, to: 15 });
}

#[test]
fn several_windows_the_later_wins_per_side_and_max_beats_min() {
    let cfg = config(1, 10);
    let d = once(
        &cfg,
        4,
        vec![
            window("a", Some(5), Some(8)),
            window("b", Some(2), None),
            hold("p"),
        ],
    );
    assert_eq!((d.min, d.max), (2, 8));
    // min 12 from a window, max 10 static: the max wins.
    let d = once(&cfg, 4, vec![window("a", Some(12), None), hold("p")]);
    assert_eq!((d.min, d.max), (10, 10));
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 10 });
    // An exact window is min = max.
    let d = once(&cfg, 4, vec![window("x", Some(7), Some(7)), want("p", 9)]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 7 });
}

#[test]
fn scheduled_bounds_apply_immediately_inside_cooldowns() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 10);
    cfg.cooldown = Cooldowns {
        out: secs(300),
        r#in: secs(300),
    };
    let t0 = clock.now();
    let mut state = PlannerState {
        last_out: Some(Applied {
            at: t0,
            from: 2,
            to: 4,
        }),
        last_in: Some(Applied {
            at: t0,
            from: 5,
            to: 4,
        }),
        ..PlannerState::default()
    };
    clock.advance(secs(10));
    // Raised to a new min although the out-cooldown runs and nobody asks.
    let d = plan_now(
        &cfg,
        &mut state,
        &clock,
        4,
        vec![window("day", Some(8), None), hold("p")],
    );
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 8 });
    // A policy ask of 6 is refused by the out-cooldown, then the min raises it anyway.
    let d = plan_now(
        &cfg,
        &mut state,
        &clock,
        4,
        vec![window("day", Some(8), None), want("p", 4)],
    );
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 8 });
    // Lowered to a new max although the in-cooldown runs.
    let d = plan_now(
        &cfg,
        &mut state,
        &clock,
        4,
        vec![window("night", None, Some(2)), hold("p")],
    );
    assert_eq!(d.action, Action::ScaleIn { from: 4, to: 2 });
    assert_eq!(kinds(&d), vec![StepKind::Max]);
}

#[test]
fn bounds_only_changes_start_no_cooldown() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 10);
    cfg.cooldown = Cooldowns {
        out: secs(300),
        r#in: secs(300),
    };
    let mut state = PlannerState::default();
    let d = plan_now(
        &cfg,
        &mut state,
        &clock,
        4,
        vec![window("night", None, Some(2)), hold("p")],
    );
    assert_eq!(d.action, Action::ScaleIn { from: 4, to: 2 });
    state.applied(&d, clock.now());
    assert_eq!(state.last_in, None);
    // A policy scale-in just after is not blocked by an in-cooldown.
    clock.advance(secs(1));
    let d = plan_now(&cfg, &mut state, &clock, 2, vec![want("p", 1)]);
    assert_eq!(d.action, Action::ScaleIn { from: 2, to: 1 });

    // A policy scale-out that the max caps does start the out-cooldown.
    let d = plan_now(&cfg, &mut state, &clock, 4, vec![want("p", 14)]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 10 });
    state.applied(&d, clock.now());
    assert_eq!(
        state.last_out,
        Some(Applied {
            at: clock.now(),
            from: 4,
            to: 10
        })
    );
}

// ---------------------------------------------------------------------------------------
// Cooldowns

/// AWS's step scaling example: +2 done (5 → 7); during the cooldown a +3 step computed
/// from the baseline of 5 asks 8, so only +1 is added.
#[test]
fn aws_scale_out_cooldown_example() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.cooldown.out = secs(300);
    let mut state = PlannerState::default();

    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("step", 7)]);
    assert_eq!(d.action, Action::ScaleOut { from: 5, to: 7 });
    state.applied(&d, clock.now());

    clock.advance(secs(60));
    // The step policy's +3 from the baseline 5 asks 8: only +1 more.
    let mut probe = state.clone();
    let d = plan_now(&cfg, &mut probe, &clock, 7, vec![want("step", 8)]);
    assert_eq!(d.action, Action::ScaleOut { from: 7, to: 8 });
    assert!(d.steps.is_empty());

    // An ask of 7 at 7 is a plain hold.
    let mut probe = state.clone();
    let d = plan_now(&cfg, &mut probe, &clock, 7, vec![want("step", 7)]);
    assert_eq!(d.action, Action::Hold { at: 7 });

    // If the desired count fell back to 6 meanwhile, an ask of 7 (not above the last
    // scale-out's 7) is held by the cooldown.
    let mut probe = state.clone();
    let d = plan_now(&cfg, &mut probe, &clock, 6, vec![want("step", 7)]);
    assert_eq!(d.action, Action::Hold { at: 6 });
    assert_eq!(kinds(&d), vec![StepKind::OutCooldown]);
    assert_eq!((d.steps[0].from, d.steps[0].to), (7, 6));

    // A larger scale-out breaks through.
    let mut probe = state.clone();
    let d = plan_now(&cfg, &mut probe, &clock, 7, vec![want("step", 12)]);
    assert_eq!(d.action, Action::ScaleOut { from: 7, to: 12 });

    // After the cooldown, the ask of 7 at 6 goes through.
    clock.advance(secs(240));
    let d = plan_now(&cfg, &mut state, &clock, 6, vec![want("step", 7)]);
    assert_eq!(d.action, Action::ScaleOut { from: 6, to: 7 });
}

#[test]
fn the_out_cooldown_never_blocks_scale_in() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.cooldown.out = secs(300);
    let mut state = PlannerState::default();
    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("p", 7)]);
    state.applied(&d, clock.now());
    clock.advance(secs(10));
    let d = plan_now(&cfg, &mut state, &clock, 7, vec![want("p", 6)]);
    assert_eq!(d.action, Action::ScaleIn { from: 7, to: 6 });
}

#[test]
fn in_cooldown_blocks_scale_in_and_a_scale_out_cancels_it() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.cooldown.r#in = secs(300);
    let mut state = PlannerState::default();

    let d = plan_now(&cfg, &mut state, &clock, 6, vec![want("p", 4)]);
    assert_eq!(d.action, Action::ScaleIn { from: 6, to: 4 });
    state.applied(&d, clock.now());

    clock.advance(secs(10));
    let d = plan_now(&cfg, &mut state, &clock, 4, vec![want("p", 3)]);
    assert_eq!(d.action, Action::Hold { at: 4 });
    assert_eq!(kinds(&d), vec![StepKind::InCooldown]);

    // A scale-out during the in-cooldown happens at once...
    let d = plan_now(&cfg, &mut state, &clock, 4, vec![want("p", 6)]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 6 });
    state.applied(&d, clock.now());
    assert_eq!(state.last_in, None);

    // ...and cancels it: a scale-in right after is allowed.
    clock.advance(secs(10));
    let d = plan_now(&cfg, &mut state, &clock, 6, vec![want("p", 5)]);
    assert_eq!(d.action, Action::ScaleIn { from: 6, to: 5 });
}

#[test]
fn in_cooldown_ends_after_its_duration() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.cooldown.r#in = secs(120);
    let mut state = PlannerState::default();
    let d = plan_now(&cfg, &mut state, &clock, 6, vec![want("p", 5)]);
    state.applied(&d, clock.now());
    clock.advance(secs(119));
    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("p", 4)]);
    assert_eq!(d.action, Action::Hold { at: 5 });
    clock.advance(secs(1));
    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("p", 4)]);
    assert_eq!(d.action, Action::ScaleIn { from: 5, to: 4 });
}

// ---------------------------------------------------------------------------------------
// Stabilization

#[test]
fn stabilization_keeps_the_highest_recommendation_of_the_window() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.stabilization = secs(60);
    let mut state = PlannerState::default();
    let mut step = |current: u32, ask: u32, advance: u64| {
        clock.advance(secs(advance));
        plan_now(&cfg, &mut state, &clock, current, vec![want("p", ask)])
    };
    // t=0: 10 at 10.
    assert_eq!(step(10, 10, 0).action, Action::Hold { at: 10 });
    // t=10: asks 4; 10 was recommended within the window.
    let d = step(10, 4, 10);
    assert_eq!(d.action, Action::Hold { at: 10 });
    assert_eq!(kinds(&d), vec![StepKind::Stabilization]);
    assert_eq!((d.steps[0].from, d.steps[0].to), (4, 10));
    // t=20: asks 6; t=30: asks 5. Still 10 in the window.
    assert_eq!(step(10, 6, 10).action, Action::Hold { at: 10 });
    assert_eq!(step(10, 5, 10).action, Action::Hold { at: 10 });
    // t=60: the 10 of t=0 has left the window (half-open): the highest is 6 (t=20).
    let d = step(10, 5, 30);
    assert_eq!(d.action, Action::ScaleIn { from: 10, to: 6 });
    assert_eq!((d.steps[0].from, d.steps[0].to), (5, 6));
    // t=81: the 6 has left as well; 5 remains.
    let d = step(6, 3, 21);
    assert_eq!(d.action, Action::ScaleIn { from: 6, to: 5 });
    // Scale-out is never delayed.
    let d = step(5, 9, 1);
    assert_eq!(d.action, Action::ScaleOut { from: 5, to: 9 });
    assert!(d.steps.is_empty());
}

#[test]
fn stabilization_off_when_zero() {
    let clock = VirtualClock::at_epoch();
    let cfg = config(1, 20);
    let mut state = PlannerState::default();
    plan_now(&cfg, &mut state, &clock, 10, vec![want("p", 10)]);
    clock.advance(secs(1));
    let d = plan_now(&cfg, &mut state, &clock, 10, vec![want("p", 4)]);
    assert_eq!(d.action, Action::ScaleIn { from: 10, to: 4 });
    assert!(state.history.is_empty());
}

#[test]
fn stabilization_history_stays_short() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 200);
    cfg.stabilization = secs(600);
    let mut state = PlannerState::default();
    // A falling series: every entry can still be the maximum of a later window.
    for i in 0..100u32 {
        plan_now(&cfg, &mut state, &clock, 100, vec![want("p", 100 - i)]);
        clock.advance(secs(1));
    }
    assert_eq!(state.history.len(), 100);
    // A rising value dominates all of them.
    plan_now(&cfg, &mut state, &clock, 100, vec![want("p", 150)]);
    assert_eq!(state.history.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Rate limits

fn limit(tasks: Option<u32>, percent: Option<f64>, period: u64) -> Option<RateLimit> {
    Some(RateLimit {
        tasks,
        percent,
        period: secs(period),
    })
}

#[test]
fn rate_limit_out_over_a_sliding_period() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 100);
    cfg.rate_limits.out = limit(Some(2), None, 60);
    let mut state = PlannerState::default();

    let d = plan_now(&cfg, &mut state, &clock, 4, vec![want("p", 10)]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 6 });
    assert_eq!(kinds(&d), vec![StepKind::RateLimitOut]);
    assert_eq!(d.steps[0].detail, "at most +2 per 1m from 4");
    state.applied(&d, clock.now());

    // Within the period the +2 is spent.
    clock.advance(secs(30));
    let d = plan_now(&cfg, &mut state, &clock, 6, vec![want("p", 10)]);
    assert_eq!(d.action, Action::Hold { at: 6 });
    assert_eq!((d.steps[0].from, d.steps[0].to), (10, 6));

    // Once the change has left the period, +2 more.
    clock.advance(secs(30));
    let d = plan_now(&cfg, &mut state, &clock, 6, vec![want("p", 10)]);
    assert_eq!(d.action, Action::ScaleOut { from: 6, to: 8 });
    state.applied(&d, clock.now());
    // Scale-in is not limited by the out limit.
    let d = plan_now(&cfg, &mut state, &clock, 8, vec![want("p", 1)]);
    assert_eq!(d.action, Action::ScaleIn { from: 8, to: 1 });
}

#[test]
fn rate_limit_out_by_percent_the_larger_allowance_applies() {
    let mut cfg = config(1, 100);
    cfg.rate_limits.out = limit(None, Some(50.0), 60);
    // ceil(5 × 50 %) = 3.
    assert_eq!(once(&cfg, 5, vec![want("p", 20)]).action.desired(), 8);
    cfg.rate_limits.out = limit(Some(4), Some(50.0), 60);
    assert_eq!(once(&cfg, 5, vec![want("p", 20)]).action.desired(), 9);
    assert_eq!(once(&cfg, 20, vec![want("p", 50)]).action.desired(), 30);
    // Scale-out from zero by a percentage still moves by one.
    cfg.rate_limits.out = limit(None, Some(100.0), 60);
    assert_eq!(
        once(&config_with_min0(&cfg), 0, vec![want("p", 5)])
            .action
            .desired(),
        1
    );
}

fn config_with_min0(cfg: &PlannerConfig) -> PlannerConfig {
    let mut c = cfg.clone();
    c.bounds.min = 0;
    c
}

#[test]
fn rate_limit_in_over_a_sliding_period() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 100);
    cfg.rate_limits.r#in = limit(Some(1), None, 60);
    let mut state = PlannerState::default();

    let d = plan_now(&cfg, &mut state, &clock, 6, vec![want("p", 2)]);
    assert_eq!(d.action, Action::ScaleIn { from: 6, to: 5 });
    assert_eq!(kinds(&d), vec![StepKind::RateLimitIn]);
    assert_eq!(d.steps[0].detail, "at most −1 per 1m from 6");
    state.applied(&d, clock.now());

    clock.advance(secs(59));
    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("p", 2)]);
    assert_eq!(d.action, Action::Hold { at: 5 });

    clock.advance(secs(1));
    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("p", 2)]);
    assert_eq!(d.action, Action::ScaleIn { from: 5, to: 4 });
}

#[test]
fn rate_limit_in_by_percent_rounds_down_but_at_least_one() {
    let mut cfg = config(1, 100);
    cfg.rate_limits.r#in = limit(None, Some(30.0), 60);
    // floor(11 × 30 %) = 3.
    assert_eq!(once(&cfg, 11, vec![want("p", 1)]).action.desired(), 8);
    // floor(3 × 30 %) = 0 → 1.
    assert_eq!(once(&cfg, 3, vec![want("p", 1)]).action.desired(), 2);
}

#[test]
fn changes_are_forgotten_after_the_longest_period() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 100);
    cfg.rate_limits.out = limit(Some(5), None, 60);
    cfg.rate_limits.r#in = limit(Some(5), None, 120);
    let mut state = PlannerState::default();
    // Alternate 10 → 12 → 10 → ... at t = 0, 50, 100, 150, 200.
    for i in 0..5u32 {
        if i > 0 {
            clock.advance(secs(50));
        }
        let (current, ask) = if i % 2 == 0 { (10, 12) } else { (12, 10) };
        let d = plan_now(&cfg, &mut state, &clock, current, vec![want("p", ask)]);
        assert_eq!(d.action.desired(), ask);
        state.applied(&d, clock.now());
    }
    // At t = 200 only the changes after t = 80 remain.
    assert_eq!(state.change_horizon, secs(120));
    assert!(
        state
            .changes
            .iter()
            .all(|c| elapsed(c.at, clock.now()) < secs(120))
    );
    assert_eq!(state.changes.len(), 3);
}

// ---------------------------------------------------------------------------------------
// Missing data and fallbacks

#[test]
fn fallback_hold_votes_current_and_blocks_scale_in() {
    let cfg = config(1, 20);
    let d = once(&cfg, 4, vec![no_data("queue", "jobs"), want("cpu", 2)]);
    assert_eq!(d.action, Action::Hold { at: 4 });
    assert_eq!(d.rule, Rule::Hold);
    assert_eq!(d.winner.as_deref(), Some("queue"));
    assert_eq!(kinds(&d), vec![StepKind::Fallback]);
    assert_eq!(
        d.steps[0].detail,
        "queue has no data from jobs: fallback hold at 4"
    );
    // A scale-out from another policy still happens.
    let d = once(&cfg, 4, vec![no_data("queue", "jobs"), want("cpu", 7)]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 7 });
}

#[test]
fn fallback_tasks_votes_its_count_but_never_scales_in() {
    let mut cfg = config(1, 20);
    cfg.fallback = Fallback::Tasks(6);
    let d = once(&cfg, 4, vec![no_data("queue", "jobs")]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 6 });
    assert_eq!(d.rule, Rule::LargestScaleOut);
    assert_eq!(
        d.steps[0].detail,
        "queue has no data from jobs: fallback asks 6"
    );
    cfg.fallback = Fallback::Tasks(2);
    let d = once(&cfg, 4, vec![no_data("queue", "jobs")]);
    assert_eq!(d.action, Action::Hold { at: 4 });
    assert_eq!(d.rule, Rule::ScaleInAllAgree);
    assert_eq!(kinds(&d), vec![StepKind::Fallback, StepKind::MissingData]);
    assert_eq!(
        (d.steps[1].from, d.steps[1].to, d.steps[1].detail.as_str()),
        (2, 4, "queue has no data from jobs")
    );
}

#[test]
fn fallback_last_known_holds_once_too_old() {
    let mut cfg = config(1, 20);
    cfg.fallback = Fallback::LastKnownFor(secs(300));
    let d = once(&cfg, 4, vec![no_data("queue", "jobs"), want("cpu", 2)]);
    assert_eq!(d.action, Action::Hold { at: 4 });
    assert_eq!(
        d.steps[0].detail,
        "queue has no data from jobs: no value newer than 5m; hold at 4"
    );
    // A degraded (last-known) ask can scale out but never in.
    let d = once(&cfg, 4, vec![degraded(want("queue", 7))]);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 7 });
    let d = once(&cfg, 4, vec![degraded(want("queue", 2)), want("cpu", 1)]);
    assert_eq!(d.action, Action::Hold { at: 4 });
    assert_eq!(kinds(&d), vec![StepKind::MissingData]);
    assert_eq!(d.steps[0].detail, "queue runs on a last-known value");
}

#[test]
fn missing_data_is_refused_before_stabilization_records_it() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.stabilization = secs(60);
    let mut state = PlannerState::default();
    plan_now(&cfg, &mut state, &clock, 8, vec![degraded(want("p", 2))]);
    // The history holds 8 (the count after the missing-data rule), not 2.
    assert_eq!(state.history.back().map(|e| e.1), Some(8));
}

// ---------------------------------------------------------------------------------------
// Dry-run and determinism

#[test]
fn dry_run_computes_but_records_nothing() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.dry_run = true;
    cfg.cooldown = Cooldowns {
        out: secs(300),
        r#in: secs(300),
    };
    cfg.rate_limits.out = limit(Some(10), None, 60);
    let mut state = PlannerState::default();
    let d = plan_now(&cfg, &mut state, &clock, 4, vec![want("p", 6)]);
    assert!(d.dry_run);
    assert_eq!(d.action, Action::ScaleOut { from: 4, to: 6 });
    assert_eq!(kinds(&d), vec![StepKind::DryRun]);
    let before = state.clone();
    state.applied(&d, clock.now());
    assert_eq!(state, before);
    assert!(state.last_out.is_none() && state.changes.is_empty());
}

#[test]
fn holds_record_nothing() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.rate_limits.out = limit(Some(10), None, 60);
    let mut state = PlannerState::default();
    let d = plan_now(&cfg, &mut state, &clock, 4, vec![hold("p")]);
    let before = state.clone();
    state.applied(&d, clock.now());
    assert_eq!(state, before);
}

#[test]
fn same_inputs_same_decision() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(2, 20);
    cfg.stabilization = secs(60);
    cfg.cooldown.r#in = secs(30);
    cfg.rate_limits.r#in = limit(Some(1), None, 60);
    let mut state = PlannerState::default();
    let d = plan_now(&cfg, &mut state, &clock, 9, vec![want("p", 12)]);
    state.applied(&d, clock.now());
    clock.advance(secs(5));
    let asks = vec![want("a", 3), no_data("b", "x"), window("w", Some(4), None)];
    let mut s1 = state.clone();
    let mut s2 = state.clone();
    let d1 = plan_now(&cfg, &mut s1, &clock, 12, asks.clone());
    let d2 = plan_now(&cfg, &mut s2, &clock, 12, asks);
    assert_eq!(d1, d2);
    assert_eq!(s1, s2);
    assert_eq!(d1.sentence(), d2.sentence());
}

#[test]
fn every_step_in_order() {
    // Fallback, missing data, stabilization... each adds a step in the documented order.
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 5);
    cfg.dry_run = true;
    cfg.rate_limits.out = limit(Some(6), None, 60);
    cfg.fallback = Fallback::Tasks(9);
    let mut state = PlannerState::default();
    let d = plan_now(
        &cfg,
        &mut state,
        &clock,
        1,
        vec![no_data("q", "jobs"), want("c", 2)],
    );
    assert_eq!(
        kinds(&d),
        vec![
            StepKind::Fallback,
            StepKind::RateLimitOut,
            StepKind::Max,
            StepKind::DryRun
        ]
    );
    let chain: Vec<(u32, u32)> = d.steps.iter().map(|s| (s.from, s.to)).collect();
    assert_eq!(chain, vec![(1, 9), (9, 7), (7, 5), (5, 5)]);
    assert_eq!(d.action, Action::ScaleOut { from: 1, to: 5 });
}

#[test]
fn a_breakthrough_trimmed_by_a_rate_limit_is_still_judged_by_the_cooldown() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(0, 20);
    cfg.cooldown.out = secs(300);
    cfg.rate_limits.out = limit(Some(1), None, 60);
    let mut state = PlannerState::default();
    let d = plan_now(&cfg, &mut state, &clock, 8, vec![want("p", 9)]);
    state.applied(&d, clock.now());
    assert_eq!(state.last_out.map(|l| l.to), Some(9));
    // Desired fell to 5 meanwhile; an ask of 12 is larger than 9, but the rate limit
    // trims it to 6, which is not: the cooldown holds.
    clock.advance(secs(120));
    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("p", 12)]);
    assert_eq!(d.action, Action::Hold { at: 5 });
    assert_eq!(
        kinds(&d),
        vec![StepKind::RateLimitOut, StepKind::OutCooldown]
    );
    // After the cooldown the trimmed scale-out goes through.
    clock.advance(secs(180));
    let d = plan_now(&cfg, &mut state, &clock, 5, vec![want("p", 12)]);
    assert_eq!(d.action, Action::ScaleOut { from: 5, to: 6 });
}
