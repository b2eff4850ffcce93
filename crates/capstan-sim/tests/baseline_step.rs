//! The AWS step-scaling baseline (AWS-SEMANTICS §2): band selection with AWS's
//! inclusive/exclusive ends, adjustment types and percent rounding, aggregation, M of N
//! with missing data, cooldowns, re-firing and clamping.

use crate::support;

use capstan_sim::baseline::BaselineSpec;
use serde_json::{Value, json};
use support::{Sim, spec};

/// Step scaling on CPU, no publishing delay, cooldown 300 s unless `extra` says
/// otherwise.
fn step(extra: Value) -> BaselineSpec {
    let mut v = json!({
        "kind": "aws-step",
        "metric": "cpu",
        "min": 0,
        "max": 1000,
        "publish_delay_s": 0,
    });
    if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in more {
            base.insert(k.clone(), x.clone());
        }
    }
    spec(v)
}

/// The scale-out alarm ≥ 70 on one datapoint: +1 below 80, +2 below 90, +3 above.
fn out_change() -> Value {
    json!({
        "threshold": 70.0,
        "comparison": "greater-than-or-equal-to-threshold",
        "adjustment_type": "change-in-capacity",
        "steps": [
            { "lower": 0.0, "upper": 10.0, "adjustment": 1 },
            { "lower": 10.0, "upper": 20.0, "adjustment": 2 },
            { "lower": 20.0, "adjustment": 3 },
        ],
    })
}

/// The scale-in alarm ≤ 30: −1 down to 20 (exclusive), −2 from 20 down.
fn in_change() -> Value {
    json!({
        "threshold": 30.0,
        "comparison": "LessThanOrEqualToThreshold",
        "adjustment_type": "ChangeInCapacity",
        "steps": [
            { "lower": -10.0, "upper": 0.0, "adjustment": -1 },
            { "upper": -10.0, "adjustment": -2 },
        ],
    })
}

/// The first action with a constant metric `value`, from `desired`.
fn first(spec: &BaselineSpec, desired: u32, value: f64) -> Option<support::Action> {
    Sim::new(spec, desired).next_action(600, |_, _| Some(value))
}

#[test]
fn bands_above_the_threshold_include_their_lower_end() {
    let s = step(json!({ "out": out_change() }));
    for (value, to) in [
        (70.0, 5),
        (79.999, 5),
        (80.0, 6),
        (89.9, 6),
        (90.0, 7),
        (500.0, 7),
    ] {
        let a = first(&s, 4, value).expect("the alarm fires");
        assert_eq!((a.at, a.to), (60, to), "cpu {value}: {}", a.reason);
    }
    assert!(first(&s, 4, 69.9).is_none(), "not breaching");
    let a = first(&s, 4, 80.0).expect("fires");
    assert_eq!(
        a.reason,
        "out alarm cpu ≥ 70 for 1 of 1 datapoints: average 80 is +10 from the threshold, band [10, 20): +2 from 4 = 6"
    );
}

#[test]
fn bands_below_the_threshold_include_their_upper_end() {
    let s = step(json!({ "in": in_change() }));
    for (value, to) in [(30.0, 3), (25.0, 3), (20.5, 3), (20.0, 2), (0.0, 2)] {
        let a = first(&s, 4, value).expect("the alarm fires");
        assert_eq!(a.to, to, "cpu {value}: {}", a.reason);
    }
    assert!(first(&s, 4, 30.1).is_none(), "not breaching");
    let a = first(&s, 4, 20.0).expect("fires");
    assert_eq!(
        a.reason,
        "in alarm cpu ≤ 30 for 1 of 1 datapoints: average 20 is -10 from the threshold, band (−∞, -10]: -2 from 4 = 2"
    );
}

fn percent(threshold: f64, adjustment: i64, min_adjustment: Option<u32>) -> Value {
    let side = if adjustment > 0 { "out" } else { "in" };
    let (comparison, band) = if adjustment > 0 {
        (
            "greater-than-threshold",
            json!({ "lower": 0.0, "adjustment": adjustment }),
        )
    } else {
        (
            "less-than-threshold",
            json!({ "upper": 0.0, "adjustment": adjustment }),
        )
    };
    let mut alarm = json!({
        "threshold": threshold,
        "comparison": comparison,
        "adjustment_type": "percent-change-in-capacity",
        "steps": [band],
    });
    if let Some(m) = min_adjustment {
        alarm["min_adjustment_magnitude"] = json!(m);
    }
    json!({ side: alarm })
}

#[test]
fn percent_adjustments_round_as_aws_does() {
    // (adjustment %, min adjustment, desired, new desired)
    let cases = [
        (30, None, 11, 14),   // 3.3 → 3
        (25, None, 4, 5),     // 1
        (25, Some(2), 4, 6),  // 1, but at least 2
        (10, None, 4, 5),     // 0.4 → 1
        (7, None, 100, 107),  // 7.000000000000001 → 7
        (150, None, 3, 7),    // 4.5 → 4
        (-30, None, 11, 8),   // -3.3 → -3
        (-10, None, 4, 3),    // -0.4 → -1
        (-50, None, 3, 2),    // -1.5 → -1
        (-25, Some(3), 8, 5), // -2, but at least 3
        (-100, None, 5, 0),   // everything
    ];
    for (p, min, desired, to) in cases {
        let value = if p > 0 { 90.0 } else { 10.0 };
        let s = step(percent(50.0, p, min));
        let a = first(&s, desired, value).expect("the alarm fires");
        assert_eq!(a.to, to, "{p}% of {desired} (min {min:?}): {}", a.reason);
    }
    let s = step(percent(50.0, 25, Some(2)));
    let a = first(&s, 4, 90.0).expect("fires");
    assert!(
        a.reason
            .ends_with("band [0, +∞): 25% of 4 = 1 → +2 (min adjustment 2) = 6"),
        "{}",
        a.reason
    );
    let s = step(percent(50.0, 30, None));
    let a = first(&s, 11, 90.0).expect("fires");
    assert!(
        a.reason.ends_with("30% of 11 = 3.3 → +3 = 14"),
        "{}",
        a.reason
    );
}

#[test]
fn exact_capacity_sets_the_count() {
    let s = step(json!({
        "out": {
            "threshold": 70.0, "comparison": "greater-than-threshold",
            "adjustment_type": "exact-capacity",
            "steps": [{ "lower": 0.0, "adjustment": 10 }],
        },
        "in": {
            "threshold": 30.0, "comparison": "less-than-threshold",
            "adjustment_type": "ExactCapacity",
            "steps": [{ "upper": 0.0, "adjustment": 2 }],
        },
    }));
    assert_eq!(first(&s, 4, 90.0).map(|a| a.to), Some(10));
    assert_eq!(first(&s, 4, 10.0).map(|a| a.to), Some(2));
    // Already there: nothing to do.
    assert_eq!(first(&s, 10, 90.0), None);
}

#[test]
fn aggregation_reduces_the_breaching_datapoints() {
    for (aggregation, to) in [("average", 6), ("maximum", 7), ("minimum", 5)] {
        let mut out = out_change();
        out["evaluation_periods"] = json!(3);
        out["aggregation"] = json!(aggregation);
        let s = step(json!({ "out": out }));
        let mut sim = Sim::new(&s, 4);
        // 75, 85, 95 in minutes 0, 1, 2.
        let a = sim
            .next_action(600, |t, _| Some(75.0 + 10.0 * (t / 60).min(2) as f64))
            .expect("3 of 3 breach");
        assert_eq!((a.at, a.to), (180, to), "{aggregation}: {}", a.reason);
    }
}

#[test]
fn m_of_n_with_missing_data() {
    // 2 of 3: minute 0 at 40, minute 1 missing, minute 2 at 90, then 40.
    let value = |t: i64, _: u32| match t / 60 {
        1 => None,
        2 => Some(90.0),
        _ => Some(40.0),
    };
    for (treatment, fires_at) in [
        ("missing", None),
        ("ignore", None),
        ("not-breaching", None),
        ("notBreaching", None),
        // Missing counts as breaching: ALARM from the start, but only [40, -, 90]
        // has a breaching value to choose a step with.
        ("breaching", Some(180)),
    ] {
        let mut out = out_change();
        out["evaluation_periods"] = json!(3);
        out["datapoints"] = json!(2);
        out["missing_data"] = json!(treatment);
        let s = step(json!({ "out": out }));
        let mut sim = Sim::new(&s, 4);
        let a = sim.next_action(900, value);
        assert_eq!(a.as_ref().map(|a| a.at), fires_at, "{treatment}: {a:?}");
    }

    // Two breaching datapoints out of three, not consecutive: ALARM.
    let mut out = out_change();
    out["evaluation_periods"] = json!(3);
    out["datapoints"] = json!(2);
    let s = step(json!({ "out": out }));
    let mut sim = Sim::new(&s, 4);
    let a = sim
        .next_action(900, |t, _| Some(if t / 60 == 1 { 40.0 } else { 90.0 }))
        .expect("2 of 3 breach");
    assert_eq!((a.at, a.to), (180, 7), "average of 90, 90: {}", a.reason);
    assert!(a.reason.contains("for 2 of 3 datapoints: average 90"));
}

#[test]
fn scale_out_inside_the_cooldown_counts_the_capacity_already_added() {
    // +2 at 75, then +3 at 85 during the cooldown adds only +1 (AWS's example), then
    // nothing more until the cooldown (restarted by the +1) ends.
    let s = step(json!({ "out": {
        "threshold": 70.0, "comparison": "greater-than-threshold",
        "adjustment_type": "change-in-capacity",
        "steps": [
            { "lower": 0.0, "upper": 10.0, "adjustment": 2 },
            { "lower": 10.0, "adjustment": 3 },
        ],
    }}));
    let mut sim = Sim::new(&s, 4);
    sim.run_until(800, |t, _| Some(if t < 60 { 75.0 } else { 85.0 }));
    let got: Vec<(i64, u32, u32)> = sim.actions.iter().map(|a| (a.at, a.from, a.to)).collect();
    assert_eq!(got, [(60, 4, 6), (120, 6, 7), (420, 7, 10), (720, 10, 13)]);
    assert!(
        sim.actions[1]
            .reason
            .contains("+3 from 4 = 7 (scale-out cooldown until"),
        "{}",
        sim.actions[1].reason
    );
}

#[test]
fn scale_in_waits_for_its_cooldown_unless_a_scale_out_cancels_it() {
    let s = step(json!({ "in": {
        "threshold": 30.0, "comparison": "less-than-threshold",
        "adjustment_type": "change-in-capacity",
        "steps": [{ "upper": 0.0, "adjustment": -1 }],
    }}));
    let mut sim = Sim::new(&s, 4);
    sim.run_until(1200, |_, _| Some(10.0));
    let got: Vec<(i64, u32)> = sim.actions.iter().map(|a| (a.at, a.to)).collect();
    assert_eq!(got, [(60, 3), (360, 2), (660, 1), (960, 0)]);

    let mut both = step(json!({ "in": {
        "threshold": 30.0, "comparison": "less-than-threshold",
        "adjustment_type": "change-in-capacity",
        "steps": [{ "upper": 0.0, "adjustment": -1 }],
    }, "out": out_change() }));
    if let BaselineSpec::AwsStep(s) = &mut both {
        s.min = 1;
    }
    let mut sim = Sim::new(&both, 4);
    sim.run_until(400, |t, _| Some(if t / 60 == 2 { 80.0 } else { 10.0 }));
    let got: Vec<(i64, u32)> = sim.actions.iter().map(|a| (a.at, a.to)).collect();
    // 60: −1; 180: +2 (80 is +10: second band), cancelling the scale-in cooldown; 240:
    // −1 at once; then the scale-in cooldown holds until 540.
    assert_eq!(got, [(60, 3), (180, 5), (240, 4)]);
}

#[test]
fn refires_every_minute_while_in_alarm() {
    let mut s = step(json!({ "out": out_change() }));
    if let BaselineSpec::AwsStep(s) = &mut s {
        s.cooldown_s = 0;
    }
    let mut sim = Sim::new(&s, 4);
    sim.run_until(300, |_, _| Some(75.0));
    let got: Vec<(i64, u32)> = sim.actions.iter().map(|a| (a.at, a.to)).collect();
    assert_eq!(got, [(60, 5), (120, 6), (180, 7), (240, 8), (300, 9)]);
}

#[test]
fn clamps_to_min_and_max() {
    let both = |min: u32, max: u32| {
        step(json!({ "out": out_change(), "in": in_change(), "min": min, "max": max }))
    };
    // Inside: clamped at the bounds.
    assert_eq!(first(&both(1, 5), 4, 95.0).map(|a| a.to), Some(5));
    assert_eq!(first(&both(3, 10), 4, 5.0).map(|a| a.to), Some(3));
    // Below min: a scale-in leaves it, a scale-out goes to min at least.
    assert_eq!(first(&both(3, 10), 1, 5.0), None);
    let a = first(&both(3, 10), 1, 75.0).expect("scales out");
    assert_eq!(a.to, 3);
    assert!(
        a.reason.ends_with("+1 from 1 = 2, raised to min 3"),
        "{}",
        a.reason
    );
    // Above max: a scale-out leaves it, a scale-in goes to max at most.
    assert_eq!(first(&both(1, 5), 8, 95.0), None);
    let a = first(&both(1, 5), 8, 25.0).expect("scales in");
    assert_eq!(a.to, 5);
    assert!(
        a.reason.ends_with("-1 from 8 = 7, lowered to max 5"),
        "{}",
        a.reason
    );
}

#[test]
fn no_scale_in_without_data() {
    // No data at all, whatever the treatment: nothing to choose a step with.
    for treatment in ["missing", "ignore", "breaching", "not-breaching"] {
        let mut r#in = in_change();
        r#in["missing_data"] = json!(treatment);
        let s = step(json!({ "in": r#in }));
        let mut sim = Sim::new(&s, 4);
        sim.run_until(1800, |_, _| None);
        assert!(sim.actions.is_empty(), "{treatment}: {:?}", sim.actions);
    }

    // 2 of 3 breaching but the newest datapoint missing: the alarm stays in ALARM, yet
    // no scale-in until the data is back.
    let mut r#in = in_change();
    r#in["evaluation_periods"] = json!(3);
    r#in["datapoints"] = json!(2);
    let s = step(json!({ "in": r#in, "cooldown_s": 0 }));
    let mut sim = Sim::new(&s, 6);
    sim.run_until(299, |t, _| (t / 60 != 2).then_some(10.0));
    let got: Vec<(i64, u32)> = sim.actions.iter().map(|a| (a.at, a.to)).collect();
    // 120: [-, 10, 10]; 180: [10, 10, -] held; 240: [10, -, 10].
    assert_eq!(got, [(120, 4), (240, 2)]);
}

#[test]
fn reports_the_scale_out_threshold_for_plots() {
    let s = step(json!({ "out": out_change(), "in": in_change() }));
    let sim = Sim::new(&s, 4);
    assert_eq!(sim.baseline.metric().1, 70.0);
    let s = step(json!({ "in": in_change() }));
    assert_eq!(Sim::new(&s, 4).baseline.metric().1, 30.0);
    let sim = Sim::new(&s, 4);
    let names: Vec<&str> = sim.baseline.alarms().iter().map(|a| a.0).collect();
    assert_eq!(names, ["in"]);
}
