//! Baseline settings: what a scenario file may say, the defaults AWS uses, and errors
//! that name the field at fault.

use capstan_sim::baseline::{
    AdjustmentType, Baseline, BaselineSpec, Comparison, MetricAggregation, MissingData, Statistic,
};
use capstan_sim::metric::SimMetric;
use serde_json::{Value, json};

fn parse(v: Value) -> Result<BaselineSpec, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn problems(v: Value) -> String {
    let spec = parse(v).expect("parses");
    Baseline::new("b", &spec)
        .expect_err("invalid settings are refused")
        .to_string()
}

#[test]
fn target_tracking_defaults_are_aws_defaults() {
    let spec = parse(json!({
        "kind": "aws-target-tracking", "metric": "cpu", "target": 60.0, "min": 1, "max": 10,
    }))
    .expect("parses");
    assert_eq!(spec.kind(), "aws-target-tracking");
    let BaselineSpec::AwsTargetTracking(s) = spec else {
        panic!("target tracking expected");
    };
    assert_eq!(s.metric, SimMetric::Cpu);
    assert_eq!(s.statistic, Statistic::Average);
    assert_eq!((s.scale_out_cooldown_s, s.scale_in_cooldown_s), (300, 300));
    assert!(!s.disable_scale_in);
    assert_eq!(s.low_ratio, 0.9);
    assert_eq!(s.publish_delay_s, 60);
}

#[test]
fn step_settings_accept_our_names_and_aws_names() {
    let spec = parse(json!({
        "kind": "aws-step", "metric": "queue_depth", "statistic": "Maximum",
        "min": 0, "max": 10,
        "out": {
            "threshold": 100.0, "comparison": "GreaterThanOrEqualToThreshold",
            "evaluation_periods": 3,
            "adjustment_type": "PercentChangeInCapacity", "min_adjustment_magnitude": 2,
            "aggregation": "Maximum", "missing_data": "notBreaching",
            "steps": [{ "lower": 0.0, "adjustment": 50 }],
        },
        "in": {
            "threshold": 10.0, "comparison": "less-than-threshold",
            "evaluation_periods": 15, "datapoints": 10, "cooldown_s": 600,
            "adjustment_type": "change-in-capacity",
            "steps": [{ "upper": 0.0, "adjustment": -1 }],
        },
    }))
    .expect("parses");
    assert_eq!(spec.kind(), "aws-step");
    assert!(spec.validate().is_empty(), "{:?}", spec.validate());
    let BaselineSpec::AwsStep(s) = spec else {
        panic!("step expected");
    };
    assert_eq!((s.cooldown_s, s.publish_delay_s), (300, 60));
    assert_eq!(s.statistic, Statistic::Maximum);
    let out = s.out.expect("out");
    assert_eq!(out.comparison, Comparison::GreaterThanOrEqualToThreshold);
    assert_eq!(out.adjustment_type, AdjustmentType::PercentChangeInCapacity);
    assert_eq!(out.aggregation, MetricAggregation::Maximum);
    assert_eq!(out.missing_data, MissingData::NotBreaching);
    assert_eq!((out.evaluation_periods, out.datapoints), (3, None));
    let r#in = s.r#in.expect("in");
    assert_eq!((r#in.evaluation_periods, r#in.datapoints), (15, Some(10)));
    assert_eq!(r#in.missing_data, MissingData::Missing);
    assert_eq!(r#in.cooldown_s, Some(600));
}

#[test]
fn unknown_names_are_refused_by_name() {
    let e = parse(json!({
        "kind": "aws-target-tracking", "metric": "cpu", "target": 60.0, "min": 1, "max": 10,
        "scale_out_cooldown": 60,
    }))
    .expect_err("unknown field");
    assert!(e.contains("unknown field `scale_out_cooldown`"), "{e}");

    let e = parse(json!({
        "kind": "aws-step", "metric": "cpu", "min": 1, "max": 10,
        "out": {
            "threshold": 70.0, "comparison": "greater-than-threshold",
            "adjustment_type": "change-in-capacity",
            "steps": [{ "lower": 0.0, "adjustment": 1, "scaling_adjustment": 1 }],
        },
    }))
    .expect_err("unknown field");
    assert!(e.contains("unknown field `scaling_adjustment`"), "{e}");

    let e = parse(json!({ "kind": "aws-predictive", "metric": "cpu" })).expect_err("kind");
    assert!(e.contains("aws-predictive"), "{e}");
    let e = parse(json!({
        "kind": "aws-target-tracking", "metric": "cpus", "target": 60.0, "min": 1, "max": 10,
    }))
    .expect_err("metric");
    assert!(e.contains("cpus"), "{e}");
    let e = parse(json!({
        "kind": "aws-step", "metric": "cpu", "min": 1, "max": 10,
        "out": {
            "threshold": 70.0, "comparison": "above",
            "adjustment_type": "change-in-capacity", "steps": [],
        },
    }))
    .expect_err("comparison");
    assert!(e.contains("above"), "{e}");
}

#[test]
fn target_tracking_errors_name_their_fields() {
    let e = problems(json!({
        "kind": "aws-target-tracking", "metric": "cpu", "target": 0.0, "min": 5, "max": 2,
        "low_ratio": 1.0, "publish_delay_s": 7200,
    }));
    assert!(e.starts_with("baseline \"b\": "), "{e}");
    for part in [
        "target: must be a positive finite number (got 0)",
        "low_ratio: must be above 0 and below 1",
        "min: must not be above max (5 > 2)",
        "publish_delay_s: must be at most 3600 s (got 7200)",
    ] {
        assert!(e.contains(part), "{part} in {e}");
    }

    // NaN cannot come from JSON but can from code.
    let BaselineSpec::AwsTargetTracking(mut s) = parse(json!({
        "kind": "aws-target-tracking", "metric": "cpu", "target": 60.0, "min": 1, "max": 10,
    }))
    .expect("parses") else {
        panic!("target tracking expected");
    };
    s.target = f64::NAN;
    s.low_ratio = f64::NAN;
    let fields: Vec<String> = BaselineSpec::AwsTargetTracking(s)
        .validate()
        .into_iter()
        .map(|p| p.field)
        .collect();
    assert_eq!(fields, ["target", "low_ratio"]);
}

fn step_with(out: Value) -> Value {
    json!({ "kind": "aws-step", "metric": "cpu", "min": 0, "max": 10, "out": out })
}

#[test]
fn step_errors_name_their_fields() {
    let e = problems(json!({ "kind": "aws-step", "metric": "cpu", "min": 0, "max": 10 }));
    assert!(e.contains("out: step scaling needs an `out` alarm"), "{e}");

    let cases = [
        // A gap between bands.
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "lower": 0.0, "upper": 10.0, "adjustment": 1 },
                              { "lower": 20.0, "adjustment": 2 }] }),
            "out.steps[1]: leaves a gap after out.steps[0] (from 10 to 20)",
        ),
        // Overlapping bands.
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "lower": 0.0, "upper": 15.0, "adjustment": 1 },
                              { "lower": 10.0, "adjustment": 2 }] }),
            "out.steps[1]: overlaps out.steps[0]",
        ),
        // Both ends open.
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "adjustment": 1 }] }),
            "out.steps[0]: lower and upper bounds cannot both be open",
        ),
        // A negative lower bound without a band open below.
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "lower": -5.0, "adjustment": 1 }] }),
            "out.steps[0].lower: a negative lower bound requires a band with an open lower bound",
        ),
        // No steps.
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "change-in-capacity", "steps": [] }),
            "out.steps: must hold at least one band",
        ),
        // M of N.
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "evaluation_periods": 3, "datapoints": 4,
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "lower": 0.0, "adjustment": 1 }] }),
            "out.datapoints: must not exceed evaluation_periods (4 > 3)",
        ),
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "evaluation_periods": 3, "datapoints": 0,
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "lower": 0.0, "adjustment": 1 }] }),
            "out.datapoints: must be at least 1",
        ),
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "evaluation_periods": 0,
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "lower": 0.0, "adjustment": 1 }] }),
            "out.evaluation_periods: must be 1 to 1440",
        ),
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "evaluation_periods": 1441,
                    "adjustment_type": "change-in-capacity",
                    "steps": [{ "lower": 0.0, "adjustment": 1 }] }),
            "out.evaluation_periods: must be 1 to 1440 (60 s periods, at most one day; got 1441)",
        ),
        // Adjustments.
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "change-in-capacity", "min_adjustment_magnitude": 2,
                    "steps": [{ "lower": 0.0, "adjustment": 1 }] }),
            "out.min_adjustment_magnitude: applies only to adjustment_type = \"percent-change-in-capacity\"",
        ),
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "percent-change-in-capacity", "min_adjustment_magnitude": 0,
                    "steps": [{ "lower": 0.0, "adjustment": 10 }] }),
            "out.min_adjustment_magnitude: must be at least 1",
        ),
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "percent-change-in-capacity",
                    "steps": [{ "lower": 0.0, "adjustment": -150 }] }),
            "out.steps[0].adjustment: a percentage must be at least -100 (got -150)",
        ),
        (
            json!({ "threshold": 70.0, "comparison": "greater-than-threshold",
                    "adjustment_type": "exact-capacity",
                    "steps": [{ "lower": 0.0, "adjustment": -1 }] }),
            "out.steps[0].adjustment: an exact capacity must be 0 to 4294967295 (got -1)",
        ),
    ];
    for (out, message) in cases {
        let e = problems(step_with(out));
        assert!(e.contains(message), "expected {message:?} in {e}");
    }

    let e = problems(json!({
        "kind": "aws-step", "metric": "cpu", "min": 3, "max": 1,
        "in": { "threshold": 30.0, "comparison": "less-than-threshold",
                "adjustment_type": "change-in-capacity",
                "steps": [{ "lower": 5.0, "upper": 1.0, "adjustment": -1 }] },
    }));
    assert!(
        e.contains("in.steps[0].upper: must be above the lower bound"),
        "{e}"
    );
    assert!(e.contains("min: must not be above max (3 > 1)"), "{e}");
}

#[test]
fn a_non_finite_threshold_is_refused() {
    let BaselineSpec::AwsStep(mut s) = parse(step_with(json!({
        "threshold": 70.0, "comparison": "greater-than-threshold",
        "adjustment_type": "change-in-capacity",
        "steps": [{ "lower": 0.0, "adjustment": 1 }],
    })))
    .expect("parses") else {
        panic!("step expected");
    };
    if let Some(out) = s.out.as_mut() {
        out.threshold = f64::INFINITY;
        out.steps[0].lower = Some(f64::NAN);
    }
    let fields: Vec<String> = BaselineSpec::AwsStep(s)
        .validate()
        .into_iter()
        .map(|p| p.field)
        .collect();
    assert!(fields.contains(&"out.threshold".to_owned()), "{fields:?}");
    assert!(
        fields.contains(&"out.steps[0].lower".to_owned()),
        "{fields:?}"
    );
}

#[test]
fn settings_can_be_flattened_into_a_named_entry() {
    // How a scenario lists its baselines: a name beside the flattened settings.
    #[derive(Debug, serde::Deserialize)]
    struct Entry {
        name: String,
        #[serde(flatten)]
        spec: BaselineSpec,
    }
    let e: Entry = serde_json::from_value(json!({
        "name": "aws-tt", "kind": "aws-target-tracking", "metric": "cpu",
        "target": 60, "min": 1, "max": 10,
    }))
    .expect("parses");
    assert_eq!(e.name, "aws-tt");
    assert_eq!(e.spec.kind(), "aws-target-tracking");
    let err = serde_json::from_value::<Entry>(json!({
        "name": "aws-tt", "kind": "aws-target-tracking", "metric": "cpu",
        "target": 60, "min": 1, "max": 10, "cooldown": 5,
    }))
    .expect_err("unknown field");
    assert!(
        err.to_string().contains("unknown field `cooldown`"),
        "{err}"
    );
}
