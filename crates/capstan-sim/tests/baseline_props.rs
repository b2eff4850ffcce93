//! Properties of both AWS baselines over random settings and random metric histories:
//! they never set a count outside `[min, max]`, and never scale in on missing data.

use crate::support;

use capstan_sim::baseline::BaselineSpec;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::{Sim, spec};

/// Settings shared by both kinds.
#[derive(Debug, Clone)]
struct Common {
    min: u32,
    max: u32,
    target: f64,
    cooldown_out: u32,
    cooldown_in: u32,
    delay: u32,
}

fn common() -> impl Strategy<Value = Common> {
    (
        0u32..5,
        0u32..20,
        20.0..100.0f64,
        0u32..600,
        0u32..600,
        0u32..150,
    )
        .prop_map(
            |(min, span, target, cooldown_out, cooldown_in, delay)| Common {
                min,
                max: min + span,
                target,
                cooldown_out,
                cooldown_in,
                delay,
            },
        )
}

fn target_tracking(c: &Common) -> BaselineSpec {
    spec(json!({
        "kind": "aws-target-tracking", "metric": "cpu", "target": c.target,
        "min": c.min, "max": c.max, "publish_delay_s": c.delay,
        "scale_out_cooldown_s": c.cooldown_out, "scale_in_cooldown_s": c.cooldown_in,
    }))
}

/// An adjustment type and a value of the right sign for it.
fn adjustment(out: bool) -> impl Strategy<Value = (&'static str, i64)> {
    let sign = if out { 1 } else { -1 };
    prop_oneof![
        (1i64..5).prop_map(move |n| ("change-in-capacity", sign * n)),
        (5i64..100).prop_map(move |p| ("percent-change-in-capacity", sign * p)),
        (0i64..30).prop_map(|n| ("exact-capacity", n)),
    ]
}

/// A step alarm with two bands on the given side of `threshold`.
fn alarm(threshold: f64, out: bool, kind: &str, a: i64, m: u32, n: u32, missing: &str) -> Value {
    let steps = if out {
        json!([{ "lower": 0.0, "upper": 20.0, "adjustment": a },
               { "lower": 20.0, "adjustment": a.saturating_mul(2) }])
    } else {
        json!([{ "lower": -10.0, "upper": 0.0, "adjustment": a },
               { "upper": -10.0, "adjustment": a.saturating_mul(2).max(-100) }])
    };
    json!({
        "threshold": threshold,
        "comparison": if out { "greater-than-threshold" } else { "less-than-or-equal-to-threshold" },
        "evaluation_periods": n, "datapoints": m, "missing_data": missing,
        "adjustment_type": kind, "steps": steps,
    })
}

fn missing_treatment() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("missing"),
        Just("ignore"),
        Just("breaching"),
        Just("not-breaching")
    ]
}

fn step_spec() -> impl Strategy<Value = BaselineSpec> {
    (
        common(),
        adjustment(true),
        adjustment(false),
        (1u32..4, 0u32..3),
        (1u32..6, 0u32..4),
        missing_treatment(),
        missing_treatment(),
    )
        .prop_map(
            |(c, (ko, ao), (ki, ai), (mo, xo), (mi, xi), miss_o, miss_i)| {
                spec(json!({
                    "kind": "aws-step", "metric": "cpu",
                    "min": c.min, "max": c.max, "publish_delay_s": c.delay,
                    "cooldown_s": c.cooldown_out,
                    "out": alarm(c.target, true, ko, ao, mo, mo + xo, miss_o),
                    "in": alarm(c.target / 2.0, false, ki, ai, mi, mi + xi, miss_i),
                }))
            },
        )
}

fn any_spec() -> impl Strategy<Value = BaselineSpec> {
    prop_oneof![common().prop_map(|c| target_tracking(&c)), step_spec()]
}

/// A metric history, one value (or none) per minute: runs of 1 to 25 minutes at one
/// level (long enough for AlarmLow's 15 datapoints) or without data.
fn history() -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(
        (prop::option::weighted(0.8, 0.0..200.0f64), 1usize..25),
        2..10,
    )
    .prop_map(|runs| {
        let mut minutes: Vec<Option<f64>> = runs
            .into_iter()
            .flat_map(|(v, n)| std::iter::repeat_n(v, n))
            .collect();
        minutes.resize(minutes.len().max(20), Some(50.0));
        minutes
    })
}

/// Runs `spec` over `minutes` (one value per whole minute), from `desired` tasks.
fn run(spec: &BaselineSpec, desired: u32, startup: i64, minutes: &[Option<f64>]) -> Sim {
    let mut sim = Sim::new(spec, desired);
    sim.startup_s = startup;
    let end = minutes.len() as i64 * 60 - 1;
    sim.run_until(end, |t, _| minutes[(t / 60) as usize]);
    sim
}

fn delay_of(spec: &BaselineSpec) -> i64 {
    i64::from(match spec {
        BaselineSpec::AwsTargetTracking(s) => s.publish_delay_s,
        BaselineSpec::AwsStep(s) => s.publish_delay_s,
        BaselineSpec::AwsManagedScaling(s) => s.publish_delay_s,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn never_outside_min_and_max(
        spec in any_spec(),
        desired in 0u32..30,
        startup in 0i64..180,
        minutes in history(),
    ) {
        let sim = run(&spec, desired, startup, &minutes);
        let (min, max) = sim.baseline.bounds();
        for a in &sim.actions {
            prop_assert!(
                (min..=max).contains(&a.to),
                "{a:?} outside [{min}, {max}]"
            );
            prop_assert_ne!(a.to, a.from);
        }
    }

    /// The documented rule (AWS-SEMANTICS §1, `baseline` module docs): no scale-in on a
    /// missing newest datapoint. An alarm whose window is all missing is
    /// INSUFFICIENT_DATA and does nothing (`no_data_no_action`); one already in ALARM
    /// keeps its state over a gap inside its window, as CloudWatch does with `missing`
    /// data, and fires again on the next fresh datapoint
    /// (`no_scale_in_on_a_missing_newest_datapoint` pins that).
    #[test]
    fn never_scales_in_on_missing_newest_data(
        spec in any_spec(),
        desired in 0u32..30,
        startup in 0i64..180,
        minutes in history(),
    ) {
        let sim = run(&spec, desired, startup, &minutes);
        let delay = delay_of(&spec);
        for a in sim.actions.iter().filter(|a| a.to < a.from) {
            // The newest datapoint published at `a.at`, as a minute index.
            let newest = (a.at - delay - 60).div_euclid(60);
            prop_assert!(newest >= 0, "scale-in before any datapoint: {a:?}");
            prop_assert!(
                minutes[newest as usize].is_some(),
                "scale-in with the newest minute {newest} missing: {a:?}"
            );
        }
    }

    #[test]
    fn no_data_no_action(spec in any_spec(), desired in 0u32..30, len in 20usize..60) {
        let sim = run(&spec, desired, 30, &vec![None; len]);
        prop_assert!(sim.actions.is_empty(), "{:?}", sim.actions);
    }
}
