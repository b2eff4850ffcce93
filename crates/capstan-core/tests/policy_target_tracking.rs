//! Target tracking: table tests and properties.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::metrics::Observations;
use capstan_core::model::Capacity;
use capstan_core::policy::{Ask, Datapoints, PolicyInput, TargetTracking, TrackingMode};
use capstan_core::testing::window;
use jiff::Timestamp;
use proptest::prelude::*;

fn input(obs: &Observations, now: Timestamp, running: u32, desired: u32) -> PolicyInput<'_> {
    PolicyInput {
        now,
        capacity: Capacity {
            desired,
            running,
            pending: desired.saturating_sub(running),
        },
        baseline: desired,
        metrics: obs,
        last_known: None,
    }
}

fn policy(mode: TrackingMode, target: f64, out: u32, r#in: u32) -> TargetTracking {
    TargetTracking {
        metric: "m".to_owned(),
        mode,
        target,
        tolerance: 0.1,
        datapoints: Datapoints { out, r#in },
        disable_scale_in: false,
    }
}

fn desired(count: u32) -> Ask {
    Ask::Desired { count }
}

/// (mode, target, values, running, desired, expected ask, reason fragment)
type Case = (
    TrackingMode,
    f64,
    &'static [f64],
    u32,
    u32,
    Ask,
    &'static str,
);

#[test]
fn per_task_and_total_tables() {
    use TrackingMode::{PerTask, Total};
    // (mode, target, values, running, desired, expected ask, reason fragment)
    let cases: &[Case] = &[
        (
            PerTask,
            50.0,
            &[80.0],
            4,
            4,
            desired(7),
            "m 80 per task × 4 running / 50 → 7",
        ),
        (PerTask, 50.0, &[50.0], 4, 4, Ask::Hold, "within 50 ±10%"),
        (PerTask, 50.0, &[54.0], 4, 4, Ask::Hold, "within"),
        (PerTask, 50.0, &[46.0], 4, 4, Ask::Hold, "within"),
        // Scale-in to ceil(4 × 20 / 50) = 2: 20 × 4 / 2 = 40 per task ≤ 50.
        (
            PerTask,
            50.0,
            &[20.0],
            4,
            4,
            desired(2),
            "m 20 per task × 4 running / 50 → 2",
        ),
        // Just below the band: 44 × 10 / 50 = 8.8 → 9 (never removes too much).
        (PerTask, 50.0, &[44.0], 10, 10, desired(9), "→ 9"),
        (
            Total,
            100.0,
            &[550.0],
            3,
            3,
            desired(6),
            "m 550 total / 100 per task → 6",
        ),
        (
            Total,
            100.0,
            &[0.0],
            3,
            3,
            desired(0),
            "m 0 total / 100 per task → 0",
        ),
        (Total, 100.0, &[300.0], 3, 3, Ask::Hold, "within"),
        // From zero: total mode works directly, per-task asks for the smallest step.
        (Total, 100.0, &[250.0], 0, 0, desired(3), "→ 3"),
        (PerTask, 50.0, &[12.0], 0, 0, desired(1), "from zero"),
        (
            PerTask,
            50.0,
            &[0.0],
            0,
            0,
            Ask::Hold,
            "not below the 0 desired",
        ),
        // Pending tasks already cover the computed count.
        (PerTask, 50.0, &[60.0], 4, 6, Ask::Hold, "6 already desired"),
        // Computed from running, not desired: 2 running at 10% with 4 desired → 1.
        (PerTask, 50.0, &[10.0], 2, 4, desired(1), "× 2 running"),
    ];
    for (i, (mode, target, values, running, want_desired, ask, fragment)) in
        cases.iter().enumerate()
    {
        let (obs, now) = window("m", values);
        let p = policy(*mode, *target, 1, 1);
        let (got, reason, degraded) = p.evaluate(&input(&obs, now, *running, *want_desired));
        assert_eq!(&got, ask, "case {i}: {reason}");
        assert!(
            reason.contains(fragment),
            "case {i}: `{reason}` lacks `{fragment}`"
        );
        assert!(!degraded, "case {i}");
    }
}

#[test]
fn datapoints_per_direction() {
    let p = policy(TrackingMode::PerTask, 50.0, 3, 5);
    // Two breaching samples of three needed.
    let (obs, now) = window("m", &[80.0, 80.0]);
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(ask, Ask::Hold);
    assert!(reason.contains("2 of 3 datapoints"), "{reason}");

    // Three in a row: scale out, sized from the newest sample.
    let (obs, now) = window("m", &[30.0, 80.0, 70.0, 100.0]);
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(ask, desired(8), "{reason}");
    assert!(reason.contains("3 of 3 datapoints above 55"), "{reason}");

    // An interruption inside the window: hold.
    let (obs, now) = window("m", &[80.0, 50.0, 80.0]);
    let (ask, _, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(ask, Ask::Hold);

    // Scale-in needs five low samples; four are not enough.
    let (obs, now) = window("m", &[60.0, 20.0, 20.0, 20.0, 20.0]);
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(ask, Ask::Hold, "{reason}");
    let (obs, now) = window("m", &[20.0, 20.0, 20.0, 20.0]);
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(ask, Ask::Hold);
    assert!(reason.contains("4 of 5 datapoints"), "{reason}");

    // Five low samples: scale in, sized from the largest of them (30, not 10).
    let (obs, now) = window("m", &[20.0, 30.0, 10.0, 10.0, 10.0]);
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 10, 10));
    assert_eq!(ask, desired(6), "{reason}");
}

#[test]
fn disable_scale_in_abstains() {
    let mut p = policy(TrackingMode::PerTask, 50.0, 1, 1);
    p.disable_scale_in = true;
    let (obs, now) = window("m", &[10.0]);
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(ask, Ask::Abstain, "{reason}");
    // Within the band: no opinion either (another policy owns scale-in).
    let (obs, now) = window("m", &[50.0]);
    assert_eq!(p.evaluate(&input(&obs, now, 4, 4)).0, Ask::Abstain);
    // Scale-out still works.
    let (obs, now) = window("m", &[100.0]);
    assert_eq!(p.evaluate(&input(&obs, now, 4, 4)).0, desired(8));
}

#[test]
fn missing_stale_and_failing_sources_give_no_data() {
    let p = policy(TrackingMode::PerTask, 50.0, 1, 1);
    let obs = Observations::new();
    let now = VirtualClock::at_epoch().now();
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(
        ask,
        Ask::NoData {
            sources: vec!["m".to_owned()]
        }
    );
    assert!(reason.contains("m has no data"), "{reason}");

    let (obs, now) = window("m", &[80.0]);
    let later = now.checked_add(Duration::from_secs(31)).unwrap();
    let (ask, reason, _) = p.evaluate(&input(&obs, later, 4, 4));
    assert!(matches!(ask, Ask::NoData { .. }));
    assert!(
        reason.contains("m is stale (newest sample 31s old)"),
        "{reason}"
    );

    let (mut obs, now) = window("m", &[80.0]);
    obs.fail("m", now, "connection refused");
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert!(matches!(ask, Ask::NoData { .. }));
    assert!(
        reason.contains("failing") && reason.contains("connection refused"),
        "{reason}"
    );
}

#[test]
fn last_known_value_is_degraded_and_never_scales_in() {
    let p = policy(TrackingMode::PerTask, 50.0, 3, 3);
    // Stale high value within the TTL: may scale out (one value stands for all three).
    let (obs, now) = window("m", &[100.0]);
    let later = now.checked_add(Duration::from_secs(60)).unwrap();
    let mut inp = input(&obs, later, 4, 4);
    inp.last_known = Some(Duration::from_secs(120));
    let (ask, reason, degraded) = p.evaluate(&inp);
    assert_eq!(ask, desired(8), "{reason}");
    assert!(degraded);
    assert!(reason.contains("last-known"), "{reason}");

    // Stale low value: hold, never fewer.
    let (obs, now) = window("m", &[5.0]);
    let later = now.checked_add(Duration::from_secs(60)).unwrap();
    let mut inp = input(&obs, later, 4, 4);
    inp.last_known = Some(Duration::from_secs(120));
    let (ask, reason, degraded) = p.evaluate(&inp);
    assert_eq!(ask, Ask::Hold, "{reason}");
    assert!(degraded);

    // Older than the TTL: no data.
    inp.last_known = Some(Duration::from_secs(30));
    let (ask, reason, _) = p.evaluate(&inp);
    assert!(matches!(ask, Ask::NoData { .. }), "{reason}");
}

#[test]
fn huge_values_saturate() {
    let (obs, now) = window("m", &[1e300]);
    let p = policy(TrackingMode::PerTask, 1e-300, 1, 1);
    let (ask, _, _) = p.evaluate(&input(&obs, now, u32::MAX, u32::MAX - 1));
    assert_eq!(ask, desired(u32::MAX));
    let p = policy(TrackingMode::Total, 1e-300, 1, 1);
    assert_eq!(p.evaluate(&input(&obs, now, 0, 0)).0, desired(u32::MAX));
}

#[test]
fn validation_names_fields() {
    let mut p = policy(TrackingMode::Total, 0.0, 0, 0);
    p.metric = String::new();
    p.tolerance = 1.0;
    let fields: Vec<String> = p.validate().into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "metric",
            "target",
            "tolerance",
            "datapoints.out",
            "datapoints.in"
        ]
    );
    p.target = f64::NAN;
    assert!(p.validate().iter().any(|e| e.field == "target"));
    assert!(
        policy(TrackingMode::Total, 10.0, 3, 15)
            .validate()
            .is_empty()
    );
}

proptest! {
    /// A constant metric exactly at the target never changes anything.
    #[test]
    fn constant_metric_at_target_holds(
        target in 0.001f64..1e6,
        running in 1u32..10_000,
        pending in 0u32..100,
        out in 1u32..20,
        r#in in 1u32..20,
        len in 1usize..40,
        tolerance in 0.0f64..0.5,
        total in any::<bool>(),
    ) {
        let mode = if total { TrackingMode::Total } else { TrackingMode::PerTask };
        // Per task: the value is the target; total: running × target.
        let value = if total { f64::from(running) * target } else { target };
        let (obs, now) = window("m", &vec![value; len]);
        let mut p = policy(mode, target, out, r#in);
        p.tolerance = tolerance;
        let desired = running + pending;
        let (ask, reason, _) = p.evaluate(&input(&obs, now, running, desired));
        prop_assert_eq!(ask, Ask::Hold, "{}", reason);
    }

    /// The count asked for never decreases as the value grows.
    #[test]
    fn desired_is_monotone_in_value(
        target in 0.01f64..1000.0,
        running in 0u32..1000,
        a in 0.0f64..1e6,
        b in 0.0f64..1e6,
        total in any::<bool>(),
    ) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mode = if total { TrackingMode::Total } else { TrackingMode::PerTask };
        let mut p = policy(mode, target, 1, 1);
        p.tolerance = 0.0;
        let count = |v: f64| {
            let (obs, now) = window("m", &[v]);
            // Desired 0 → any computed count shows up as a scale-out or a hold at 0.
            match p.evaluate(&input(&obs, now, running, 0)).0 {
                Ask::Desired { count } => count,
                _ => 0,
            }
        };
        prop_assert!(count(lo) <= count(hi));
    }

    /// A per-task scale-in never lands the load per task above the target.
    #[test]
    fn scale_in_keeps_load_at_or_below_target(
        target in 0.1f64..1000.0,
        running in 1u32..10_000,
        ratio in 0.0f64..0.9,
    ) {
        let value = target * ratio;
        let (obs, now) = window("m", &[value]);
        let p = policy(TrackingMode::PerTask, target, 1, 1);
        if let Ask::Desired { count } = p.evaluate(&input(&obs, now, running, running)).0 {
            prop_assert!(count < running);
            let total = f64::from(running) * value;
            if count == 0 {
                prop_assert!(total == 0.0);
            } else {
                prop_assert!(total / f64::from(count) <= target * (1.0 + 1e-9));
            }
        }
    }

    /// A scale-out always adds enough: the new load per task is at most the target.
    #[test]
    fn scale_out_adds_enough(
        target in 0.1f64..1000.0,
        running in 1u32..10_000,
        ratio in 1.2f64..50.0,
    ) {
        let value = target * ratio;
        let (obs, now) = window("m", &[value]);
        let p = policy(TrackingMode::PerTask, target, 1, 1);
        match p.evaluate(&input(&obs, now, running, running)).0 {
            Ask::Desired { count } => {
                prop_assert!(count > running);
                prop_assert!(f64::from(running) * value / f64::from(count) <= target * (1.0 + 1e-9));
            }
            other => prop_assert!(false, "expected a scale-out, got {:?}", other),
        }
    }
}
