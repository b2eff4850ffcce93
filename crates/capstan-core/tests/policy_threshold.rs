//! Threshold / composite: direction rules, asymmetric datapoints, growth, jitter,
//! validation.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::metrics::Observations;
use capstan_core::model::Sample;
use capstan_core::policy::{
    Ask, Datapoints, Growth, Jitter, MetricBounds, PolicyInput, Threshold, ThresholdState,
};
use capstan_core::testing::steady;
use jiff::Timestamp;
use proptest::prelude::*;

/// Every source holds its values one second apart, all ending at the returned instant.
fn windows(sources: &[(&str, &[f64])]) -> (Observations, Timestamp) {
    let clock = VirtualClock::at_epoch();
    let start = clock.now();
    let mut obs = Observations::new();
    let longest = sources.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for (name, values) in sources {
        obs.declare(name, Duration::from_secs(900), Duration::from_secs(30));
        let offset = longest - values.len();
        for (i, v) in values.iter().enumerate() {
            let at = start
                .checked_add(Duration::from_secs((offset + i) as u64))
                .expect("in range");
            obs.push(name, Sample { value: *v, at });
        }
    }
    let end = start
        .checked_add(Duration::from_secs(longest.saturating_sub(1) as u64))
        .expect("in range");
    (obs, end)
}

fn input(obs: &Observations, now: Timestamp, desired: u32) -> PolicyInput<'_> {
    PolicyInput {
        now,
        capacity: steady(desired),
        baseline: desired,
        metrics: obs,
        last_known: None,
    }
}

fn bounds(metric: &str, min: f64, max: f64) -> MetricBounds {
    MetricBounds {
        metric: metric.to_owned(),
        min,
        max,
    }
}

/// CPU and memory reservation, up after 4, down after 10 (the cluster example).
fn cluster() -> Threshold {
    Threshold {
        metrics: vec![bounds("cpu", 40.0, 80.0), bounds("mem", 30.0, 75.0)],
        datapoints: Datapoints { out: 4, r#in: 10 },
        step_out: 1,
        step_in: 1,
        growth: Growth::Fixed,
        jitter: None,
    }
}

fn eval(
    p: &Threshold,
    state: &mut ThresholdState,
    sources: &[(&str, &[f64])],
    desired: u32,
) -> (Ask, String) {
    let (obs, now) = windows(sources);
    let (ask, reason, degraded) = p.evaluate(&input(&obs, now, desired), state);
    assert!(!degraded);
    (ask, reason)
}

#[test]
fn any_above_max_scales_up_all_below_min_scales_down() {
    let p = cluster();
    assert!(p.validate().is_empty());
    let mut s = ThresholdState::new(&p);
    let hi = [90.0; 4];
    let mid = [50.0; 10];
    let lo = [10.0; 10];
    // CPU above its max for 4 samples: up, whatever memory does.
    let (ask, reason) = eval(&p, &mut s, &[("cpu", &hi), ("mem", &lo)], 5);
    assert_eq!(ask, Ask::Desired { count: 6 }, "{reason}");
    assert!(reason.contains("cpu 90 > max 80"), "{reason}");
    // Memory above its max: up too.
    let (ask, _) = eval(&p, &mut s, &[("cpu", &lo), ("mem", &hi)], 5);
    assert_eq!(ask, Ask::Desired { count: 6 });
    // Only 3 samples above: not yet.
    let (ask, reason) = eval(
        &p,
        &mut s,
        &[("cpu", &[50.0, 90.0, 90.0, 90.0]), ("mem", &mid)],
        5,
    );
    assert_eq!(ask, Ask::Hold);
    let _ = reason;
    // Both below for 10: down.
    let (ask, reason) = eval(&p, &mut s, &[("cpu", &lo), ("mem", &lo)], 5);
    assert_eq!(ask, Ask::Desired { count: 4 }, "{reason}");
    assert!(reason.starts_with("down"), "{reason}");
    // One below, the other in the middle: hold.
    let (ask, reason) = eval(&p, &mut s, &[("cpu", &lo), ("mem", &mid)], 5);
    assert_eq!(ask, Ask::Hold);
    assert!(reason.contains("cpu 10 in [40, 80]"), "{reason}");
    // Both below for 9 samples only: hold, and the reason says so.
    let (ask, reason) = eval(&p, &mut s, &[("cpu", &[10.0; 9]), ("mem", &[10.0; 9])], 5);
    assert_eq!(ask, Ask::Hold);
    assert!(reason.contains("9 of 10 datapoints"), "{reason}");
    // Down saturates at zero.
    let (ask, _) = eval(&p, &mut s, &[("cpu", &lo), ("mem", &lo)], 0);
    assert_eq!(ask, Ask::Desired { count: 0 });
}

/// The step asked at each evaluation of `pattern` (1 above max, −1 below min, 0 in
/// the band), each ask carried out before the next evaluation.
fn steps(p: &Threshold, pattern: &[i8]) -> Vec<i64> {
    steps_applied(p, pattern, &vec![true; pattern.len()])
}

/// Like [`steps`]; `applied[i]` says whether the i-th ask was carried out (false: the
/// planner held it back and the count stayed).
fn steps_applied(p: &Threshold, pattern: &[i8], applied: &[bool]) -> Vec<i64> {
    let mut s = ThresholdState::new(p);
    let hi: &[f64] = &[100.0];
    let lo: &[f64] = &[0.0];
    let mid: &[f64] = &[50.0];
    let mut desired = 100_000;
    pattern
        .iter()
        .zip(applied)
        .map(|(d, applied)| {
            let v = match d {
                1 => hi,
                -1 => lo,
                _ => mid,
            };
            match eval(p, &mut s, &[("q", v)], desired).0 {
                Ask::Desired { count } => {
                    let step = i64::from(count) - i64::from(desired);
                    if *applied {
                        desired = count;
                    }
                    step
                }
                Ask::Hold => 0,
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

fn single(growth: Growth, step_out: u32, step_in: u32) -> Threshold {
    Threshold {
        metrics: vec![bounds("q", 10.0, 90.0)],
        datapoints: Datapoints { out: 1, r#in: 1 },
        step_out,
        step_in,
        growth,
        jitter: None,
    }
}

#[test]
fn growth_while_the_condition_persists() {
    let pattern = [1, 1, 1, 1, 0, 1, 1, -1, -1, -1, 1];
    assert_eq!(
        steps(&single(Growth::Fixed, 2, 1), &pattern),
        [2, 2, 2, 2, 0, 2, 2, -1, -1, -1, 2]
    );
    assert_eq!(
        steps(&single(Growth::Linear, 2, 1), &pattern),
        [2, 4, 6, 8, 0, 2, 4, -1, -2, -3, 2]
    );
    assert_eq!(
        steps(&single(Growth::Exponential, 1, 3), &pattern),
        [1, 2, 4, 8, 0, 1, 2, -3, -6, -12, 1]
    );
}

#[test]
fn growth_saturates() {
    let p = single(Growth::Exponential, 3, 1);
    assert_eq!(p.grown_step(3, 1), 3);
    assert_eq!(p.grown_step(3, 31), 3 << 30);
    assert_eq!(p.grown_step(3, 32), u32::MAX);
    assert_eq!(p.grown_step(3, 200), u32::MAX);
    assert_eq!(
        single(Growth::Linear, 1, 1).grown_step(u32::MAX / 2, 3),
        u32::MAX
    );
    let mut s = ThresholdState::new(&p);
    // The count moves at every firing (another one each time): the step grows to
    // 3 << 30 by the 31st firing and saturates from the 32nd.
    for k in 1..=40u32 {
        let (obs, now) = windows(&[("q", &[100.0])]);
        let (ask, _, _) = p.evaluate(&input(&obs, now, k), &mut s);
        if k >= 32 {
            assert_eq!(ask, Ask::Desired { count: u32::MAX }, "firing {k}");
        }
    }
    assert_eq!(s.streak, 40);
}

#[test]
fn a_step_held_back_is_asked_again_not_grown() {
    // Exponential up: 1, 2, then the planner holds three asks back (cooldown): the
    // same 4 is asked each time, and growth resumes once it is carried out.
    let p = single(Growth::Exponential, 1, 1);
    let pattern = [1, 1, 1, 1, 1, 1, 1];
    let applied = [true, true, false, false, false, true, true];
    assert_eq!(steps_applied(&p, &pattern, &applied), [1, 2, 4, 4, 4, 4, 8]);
    // The same down, linear.
    let p = single(Growth::Linear, 2, 2);
    let applied = [true, false, false, true, true, false, true];
    assert_eq!(
        steps_applied(&p, &[-1; 7], &applied),
        [-2, -4, -4, -4, -6, -8, -8]
    );
}

#[test]
fn jitter_is_seeded_and_bounded() {
    let mut p = single(Growth::Fixed, 10, 10);
    p.jitter = Some(Jitter {
        fraction: 0.5,
        seed: 42,
    });
    let pattern = [1; 50];
    let a = steps(&p, &pattern);
    let b = steps(&p, &pattern);
    assert_eq!(a, b, "same seed, same sequence");
    assert!(a.iter().all(|s| (5..=15).contains(s)), "{a:?}");
    assert!(
        a.iter().any(|s| *s != a[0]),
        "jitter varies the step: {a:?}"
    );
    p.jitter = Some(Jitter {
        fraction: 0.5,
        seed: 43,
    });
    assert_ne!(steps(&p, &pattern), a, "another seed, another sequence");
    // A step of 1 with jitter never becomes 0.
    let mut p = single(Growth::Fixed, 1, 1);
    p.jitter = Some(Jitter {
        fraction: 0.9,
        seed: 7,
    });
    assert!(steps(&p, &[-1; 50]).iter().all(|s| *s <= -1));
}

#[test]
fn missing_sources_are_all_listed() {
    let p = Threshold {
        metrics: vec![
            bounds("cpu", 1.0, 2.0),
            bounds("mem", 1.0, 2.0),
            bounds("disk", 1.0, 2.0),
        ],
        ..cluster()
    };
    let (mut obs, now) = windows(&[("mem", &[1.5])]);
    obs.fail("disk", now, "timeout");
    let mut s = ThresholdState::new(&p);
    s.direction = 1;
    s.streak = 3;
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 3), &mut s);
    assert_eq!(
        ask,
        Ask::NoData {
            sources: vec!["cpu".to_owned(), "disk".to_owned()]
        }
    );
    assert!(
        reason.contains("cpu has no data") && reason.contains("disk is failing"),
        "{reason}"
    );
    assert_eq!(s.streak, 0, "missing data ends the streak");
}

#[test]
fn last_known_never_scales_down() {
    let p = single(Growth::Fixed, 1, 1);
    let mut s = ThresholdState::new(&p);
    let (obs, now) = windows(&[("q", &[0.0])]);
    let later = now.checked_add(Duration::from_secs(60)).unwrap();
    let mut inp = input(&obs, later, 4);
    inp.last_known = Some(Duration::from_secs(120));
    let (ask, reason, degraded) = p.evaluate(&inp, &mut s);
    assert_eq!(ask, Ask::Hold, "{reason}");
    assert!(degraded);
    let (obs, now) = windows(&[("q", &[100.0])]);
    let later = now.checked_add(Duration::from_secs(60)).unwrap();
    let mut inp = input(&obs, later, 4);
    inp.last_known = Some(Duration::from_secs(120));
    let (ask, _, degraded) = p.evaluate(&inp, &mut s);
    assert_eq!(ask, Ask::Desired { count: 5 });
    assert!(degraded);
}

#[test]
fn validation_table() {
    let fields = |p: &Threshold| {
        p.validate()
            .into_iter()
            .map(|e| e.field)
            .collect::<Vec<_>>()
    };
    assert!(fields(&cluster()).is_empty());
    let mut p = cluster();
    p.metrics.clear();
    assert_eq!(fields(&p), ["metrics"]);
    let mut p = cluster();
    p.metrics = vec![
        bounds("cpu", 80.0, 80.0),
        bounds("cpu", 1.0, 2.0),
        bounds("m", f64::NAN, 3.0),
    ];
    assert_eq!(
        fields(&p),
        ["metrics[0].max", "metrics[1].metric", "metrics[2].min"]
    );
    let mut p = cluster();
    p.step_out = 0;
    p.step_in = 0;
    p.datapoints = Datapoints { out: 0, r#in: 1 };
    p.jitter = Some(Jitter {
        fraction: 1.0,
        seed: 0,
    });
    assert_eq!(
        fields(&p),
        ["datapoints.out", "step_out", "step_in", "jitter.fraction"]
    );
    let msg = {
        let mut p = cluster();
        p.metrics.push(bounds("cpu", 1.0, 2.0));
        p.validate()[0].to_string()
    };
    assert!(msg.contains("already listed at metrics[0]"), "{msg}");
}

proptest! {
    /// The ask is always desired ± a step of at least 1 (or hold), never a panic.
    #[test]
    fn asks_move_by_at_least_one(
        values in proptest::collection::vec(0.0f64..100.0, 1..20),
        desired in 0u32..u32::MAX,
        step_out in 1u32..1000,
        step_in in 1u32..1000,
        fraction in 0.0f64..0.99,
        seed in any::<u64>(),
        rounds in 1usize..10,
    ) {
        let mut p = single(Growth::Exponential, step_out, step_in);
        p.jitter = Some(Jitter { fraction, seed });
        let mut s = ThresholdState::new(&p);
        let (obs, now) = windows(&[("q", &values)]);
        for _ in 0..rounds {
            let (ask, reason, _) = p.evaluate(&input(&obs, now, desired), &mut s);
            let newest = values[values.len() - 1];
            match ask {
                Ask::Desired { count } if newest > 90.0 => prop_assert!(count > desired || desired == u32::MAX),
                Ask::Desired { count } if newest < 10.0 => prop_assert!(count < desired || desired == 0),
                Ask::Hold => prop_assert!((10.0..=90.0).contains(&newest), "{}", reason),
                other => prop_assert!(false, "unexpected {:?}: {}", other, reason),
            }
        }
    }
}
