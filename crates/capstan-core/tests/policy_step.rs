//! Step scaling: AWS's documented examples, seed 002's band tables, validation, and
//! properties of the rounding and band selection.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::metrics::Observations;
use capstan_core::policy::step::{add_signed, adjusted_count, percent_adjustment};
use capstan_core::policy::{
    Adjustment, Aggregation, Ask, PolicyInput, StepAlarm, StepBand, StepScaling,
};
use capstan_core::testing::{steady, window};
use jiff::Timestamp;
use proptest::prelude::*;

fn input(obs: &Observations, now: Timestamp, desired: u32, baseline: u32) -> PolicyInput<'_> {
    PolicyInput {
        now,
        capacity: steady(desired),
        baseline,
        metrics: obs,
        last_known: None,
    }
}

fn band(lower: Option<f64>, upper: Option<f64>, adjustment: Adjustment) -> StepBand {
    StepBand {
        lower,
        upper,
        adjustment,
    }
}

/// Seed 002's scale-out list: CPU > 60% add 1, > 70% add 3.
fn cpu_out() -> StepAlarm {
    StepAlarm {
        threshold: 60.0,
        bands: vec![
            band(Some(0.0), Some(10.0), Adjustment::Change(1)),
            band(Some(10.0), None, Adjustment::Change(3)),
        ],
        datapoints: 1,
    }
}

/// Seed 002's scale-in list: requests 100–50 remove 2, 50–30 remove 4, 30–10 remove 8,
/// below 10 remove 16.
fn requests_in() -> StepAlarm {
    StepAlarm {
        threshold: 100.0,
        bands: vec![
            band(Some(-50.0), Some(0.0), Adjustment::Change(-2)),
            band(Some(-70.0), Some(-50.0), Adjustment::Change(-4)),
            band(Some(-90.0), Some(-70.0), Adjustment::Change(-8)),
            band(None, Some(-90.0), Adjustment::Change(-16)),
        ],
        datapoints: 1,
    }
}

fn policy(out: Option<StepAlarm>, r#in: Option<StepAlarm>) -> StepScaling {
    StepScaling {
        metric: "m".to_owned(),
        aggregation: Aggregation::Average,
        out,
        r#in,
        min_adjustment: None,
    }
}

fn ask_for(p: &StepScaling, values: &[f64], desired: u32, baseline: u32) -> (Ask, String) {
    let (obs, now) = window("m", values);
    let (ask, reason, degraded) = p.evaluate(&input(&obs, now, desired, baseline));
    assert!(!degraded);
    (ask, reason)
}

#[test]
fn seed_002_cpu_out_table() {
    let p = policy(Some(cpu_out()), None);
    assert!(p.validate().is_empty(), "{:?}", p.validate());
    for (cpu, expected) in [
        (65.0, Some(5)),
        (75.0, Some(7)),
        (70.0, Some(7)),
        (60.0, Some(5)),
        (69.99, Some(5)),
        (59.99, None),
    ] {
        let (ask, reason) = ask_for(&p, &[cpu], 4, 4);
        match expected {
            Some(count) => assert_eq!(ask, Ask::Desired { count }, "cpu {cpu}: {reason}"),
            None => assert_eq!(ask, Ask::Abstain, "cpu {cpu}: {reason}"),
        }
    }
}

#[test]
fn seed_002_requests_in_table() {
    let p = policy(None, Some(requests_in()));
    assert!(p.validate().is_empty(), "{:?}", p.validate());
    let cases = [
        (100.0, Some(-2)),
        (80.0, Some(-2)),
        (50.0, Some(-4)),
        (40.0, Some(-4)),
        (30.0, Some(-8)),
        (20.0, Some(-8)),
        (10.0, Some(-16)),
        (5.0, Some(-16)),
        (0.0, Some(-16)),
        (100.5, None),
    ];
    for (requests, change) in cases {
        let (ask, reason) = ask_for(&p, &[requests], 20, 20);
        match change {
            Some(c) => assert_eq!(
                ask,
                Ask::Desired {
                    count: add_signed(20, c)
                },
                "requests {requests}: {reason}"
            ),
            None => assert_eq!(ask, Ask::Abstain, "requests {requests}: {reason}"),
        }
    }
    // The count saturates at 0.
    let (ask, _) = ask_for(&p, &[0.0], 3, 3);
    assert_eq!(ask, Ask::Desired { count: 0 });
}

#[test]
fn band_ends_follow_aws_on_both_sides_of_the_threshold() {
    // Above: lower inclusive, upper exclusive.
    let above = band(Some(0.0), Some(10.0), Adjustment::Change(1));
    assert!(above.contains(0.0));
    assert!(above.contains(9.999));
    assert!(!above.contains(10.0));
    assert!(!above.contains(-0.001));
    // Below: lower exclusive, upper inclusive.
    let below = band(Some(-50.0), Some(0.0), Adjustment::Change(-2));
    assert!(below.contains(0.0));
    assert!(below.contains(-49.999));
    assert!(!below.contains(-50.0));
    assert!(!below.contains(0.001));
    assert_eq!(above.to_string(), "[0, 10)");
    assert_eq!(below.to_string(), "(-50, 0]");
    assert_eq!(
        band(None, Some(-90.0), Adjustment::Change(-16)).to_string(),
        "(−∞, -90]"
    );
    // Exactly at a boundary, the band farther from the threshold wins.
    let cover = requests_in().coverage().expect("contiguous");
    assert_eq!((cover.lower, cover.upper), (None, Some(0.0)));
    assert!(cover.contains(0.0) && !cover.contains(0.001));
    let cover = cpu_out().coverage().expect("contiguous");
    assert!(cover.contains(0.0) && !cover.contains(-0.001));
    assert_eq!(cpu_out().select(10.0, true), Some(1));
    assert_eq!(requests_in().select(-50.0, false), Some(1));
    assert_eq!(requests_in().select(-90.0, false), Some(3));
    // Two bands meeting at the threshold: out takes the upper, in the lower.
    let both = StepAlarm {
        threshold: 0.0,
        bands: vec![
            band(None, Some(0.0), Adjustment::Change(-1)),
            band(Some(0.0), None, Adjustment::Change(1)),
        ],
        datapoints: 1,
    };
    assert!(both.validate("out").is_empty());
    assert_eq!(both.select(0.0, true), Some(1));
    assert_eq!(both.select(0.0, false), Some(0));
}

#[test]
fn aws_percent_examples() {
    // 30% of 11 = 3.3 → +3 (11 → 14).
    assert_eq!(percent_adjustment(11, 30.0, None), 3);
    // 25% of 4 = 1 with a minimum magnitude of 2 → +2.
    assert_eq!(percent_adjustment(4, 25.0, Some(2)), 2);
    // −30% of 11 = −3.3 → −3 (toward zero).
    assert_eq!(percent_adjustment(11, -30.0, None), -3);
    // Fractions between −1 and 1 become ±1.
    assert_eq!(percent_adjustment(3, 10.0, None), 1);
    assert_eq!(percent_adjustment(3, -10.0, None), -1);
    assert_eq!(percent_adjustment(1, 0.5, None), 1);
    assert_eq!(percent_adjustment(1, -0.5, None), -1);
    // −2.5 → −2, 2.5 → 2.
    assert_eq!(percent_adjustment(5, -50.0, None), -2);
    assert_eq!(percent_adjustment(5, 50.0, None), 2);
    // From zero: nothing, unless a minimum magnitude is set.
    assert_eq!(percent_adjustment(0, 50.0, None), 0);
    assert_eq!(percent_adjustment(0, 50.0, Some(1)), 1);
    assert_eq!(percent_adjustment(10, -20.0, Some(3)), -3);

    let alarm = StepAlarm {
        threshold: 50.0,
        bands: vec![band(Some(0.0), None, Adjustment::Percent(30.0))],
        datapoints: 1,
    };
    assert_eq!(adjusted_count(&alarm, 80.0, 11, None, true), Some(14));
    let p = policy(Some(alarm), None);
    let (ask, reason) = ask_for(&p, &[80.0], 11, 11);
    assert_eq!(ask, Ask::Desired { count: 14 });
    assert!(reason.contains("30% of 11 = 3.3 → +3 → 14"), "{reason}");

    let mut p = policy(
        Some(StepAlarm {
            threshold: 50.0,
            bands: vec![band(Some(0.0), None, Adjustment::Percent(25.0))],
            datapoints: 1,
        }),
        None,
    );
    p.min_adjustment = Some(2);
    assert!(p.validate().is_empty());
    assert_eq!(ask_for(&p, &[60.0], 4, 4).0, Ask::Desired { count: 6 });

    let p = policy(
        None,
        Some(StepAlarm {
            threshold: 50.0,
            bands: vec![band(None, Some(0.0), Adjustment::Percent(-30.0))],
            datapoints: 1,
        }),
    );
    assert_eq!(ask_for(&p, &[10.0], 11, 11).0, Ask::Desired { count: 8 });
}

#[test]
fn exact_adjustment_sets_the_count() {
    let p = policy(
        Some(StepAlarm {
            threshold: 90.0,
            bands: vec![band(Some(0.0), None, Adjustment::Exact(12))],
            datapoints: 1,
        }),
        Some(StepAlarm {
            threshold: 10.0,
            bands: vec![band(None, Some(0.0), Adjustment::Exact(0))],
            datapoints: 1,
        }),
    );
    assert!(p.validate().is_empty());
    assert_eq!(ask_for(&p, &[95.0], 3, 3).0, Ask::Desired { count: 12 });
    assert_eq!(ask_for(&p, &[5.0], 3, 3).0, Ask::Desired { count: 0 });
    // A scale-out never asks for fewer than desired.
    assert_eq!(ask_for(&p, &[95.0], 20, 20).0, Ask::Hold);
}

#[test]
fn scale_out_cooldown_counts_capacity_already_added() {
    // Baseline 5; a +2 step already moved desired to 7 inside the cooldown; now the +3
    // band fires: 5 + 3 = 8, one more than the current 7.
    let p = policy(
        Some(StepAlarm {
            threshold: 60.0,
            bands: vec![
                band(Some(0.0), Some(10.0), Adjustment::Change(2)),
                band(Some(10.0), None, Adjustment::Change(3)),
            ],
            datapoints: 1,
        }),
        None,
    );
    let (ask, reason) = ask_for(&p, &[75.0], 7, 5);
    assert_eq!(ask, Ask::Desired { count: 8 }, "{reason}");
    assert!(reason.contains("+3 from 5 → 8"), "{reason}");
    // The +2 band again inside the cooldown: 5 + 2 = 7, nothing more to add.
    let (ask, reason) = ask_for(&p, &[65.0], 7, 5);
    assert_eq!(ask, Ask::Hold, "{reason}");
}

#[test]
fn datapoints_and_aggregation() {
    let mut out = cpu_out();
    out.datapoints = 3;
    let mut p = policy(Some(out), None);
    // Two of three: no alarm yet.
    let (ask, reason) = ask_for(&p, &[75.0, 75.0], 4, 4);
    assert_eq!(ask, Ask::Abstain);
    assert!(reason.contains("2 of 3 datapoints"), "{reason}");
    // One sample below the threshold breaks the streak.
    assert_eq!(ask_for(&p, &[75.0, 50.0, 75.0, 75.0], 4, 4).0, Ask::Abstain);
    // Average of 62, 64, 75 = 67 → [0, 10) → +1.
    assert_eq!(
        ask_for(&p, &[10.0, 62.0, 64.0, 75.0], 4, 4).0,
        Ask::Desired { count: 5 }
    );
    p.aggregation = Aggregation::Maximum;
    assert_eq!(
        ask_for(&p, &[10.0, 62.0, 64.0, 75.0], 4, 4).0,
        Ask::Desired { count: 7 }
    );
    p.aggregation = Aggregation::Minimum;
    assert_eq!(
        ask_for(&p, &[10.0, 62.0, 64.0, 75.0], 4, 4).0,
        Ask::Desired { count: 5 }
    );
    assert_eq!(
        ask_for(&p, &[10.0, 72.0, 74.0, 75.0], 4, 4).0,
        Ask::Desired { count: 7 }
    );
}

#[test]
fn out_wins_when_both_alarms_fire() {
    let p = policy(
        Some(StepAlarm {
            threshold: 50.0,
            bands: vec![band(Some(0.0), None, Adjustment::Change(1))],
            datapoints: 1,
        }),
        Some(StepAlarm {
            threshold: 60.0,
            bands: vec![band(None, Some(0.0), Adjustment::Change(-1))],
            datapoints: 1,
        }),
    );
    assert_eq!(ask_for(&p, &[55.0], 4, 4).0, Ask::Desired { count: 5 });
    assert_eq!(ask_for(&p, &[45.0], 4, 4).0, Ask::Desired { count: 3 });
}

#[test]
fn no_data_and_last_known() {
    let p = policy(Some(cpu_out()), Some(requests_in()));
    let obs = Observations::new();
    let now = VirtualClock::at_epoch().now();
    let (ask, reason, _) = p.evaluate(&input(&obs, now, 4, 4));
    assert_eq!(
        ask,
        Ask::NoData {
            sources: vec!["m".to_owned()]
        }
    );
    assert!(reason.contains("no data"), "{reason}");

    let (obs, now) = window("m", &[20.0]);
    let later = now.checked_add(Duration::from_secs(100)).unwrap();
    let mut inp = input(&obs, later, 10, 10);
    inp.last_known = Some(Duration::from_secs(300));
    let (ask, reason, degraded) = p.evaluate(&inp);
    assert_eq!(ask, Ask::Hold, "{reason}");
    assert!(degraded);

    let (obs, now) = window("m", &[80.0]);
    let later = now.checked_add(Duration::from_secs(100)).unwrap();
    let mut inp = input(&obs, later, 10, 10);
    inp.last_known = Some(Duration::from_secs(300));
    let (ask, _, degraded) = p.evaluate(&inp);
    assert_eq!(ask, Ask::Desired { count: 13 });
    assert!(degraded);
}

fn fields(p: &StepScaling) -> Vec<String> {
    p.validate().into_iter().map(|e| e.field).collect()
}

#[test]
fn validation_table() {
    let c = Adjustment::Change(1);
    let alarm = |bands: Vec<StepBand>| StepAlarm {
        threshold: 0.0,
        bands,
        datapoints: 1,
    };
    let cases: Vec<(&str, StepAlarm, Vec<&str>)> = vec![
        (
            "valid above",
            alarm(vec![
                band(Some(0.0), Some(5.0), c),
                band(Some(5.0), None, c),
            ]),
            vec![],
        ),
        (
            "a gap",
            alarm(vec![
                band(Some(0.0), Some(5.0), c),
                band(Some(6.0), None, c),
            ]),
            vec!["out.steps[1]"],
        ),
        (
            "an overlap",
            alarm(vec![
                band(Some(0.0), Some(5.0), c),
                band(Some(4.0), None, c),
            ]),
            vec!["out.steps[1]"],
        ),
        (
            "two open lower bounds",
            alarm(vec![band(None, Some(-5.0), c), band(None, Some(0.0), c)]),
            vec!["out.steps[1].lower"],
        ),
        (
            "both open",
            alarm(vec![band(None, None, c)]),
            vec!["out.steps[0]"],
        ),
        (
            "upper not above lower",
            alarm(vec![
                band(Some(5.0), Some(5.0), c),
                band(Some(5.0), None, c),
            ]),
            vec!["out.steps[0].upper"],
        ),
        (
            "negative lower without an open lower",
            alarm(vec![band(Some(-10.0), Some(0.0), c)]),
            vec!["out.steps[0].lower"],
        ),
        (
            "positive upper without an open upper",
            alarm(vec![band(Some(0.0), Some(10.0), c)]),
            vec!["out.steps[0].upper"],
        ),
        ("no bands", alarm(vec![]), vec!["out.steps"]),
        (
            "non-finite bound",
            alarm(vec![band(Some(f64::NAN), None, c)]),
            vec!["out.steps[0].lower"],
        ),
        (
            "open above, then another band",
            alarm(vec![
                band(Some(0.0), None, c),
                band(Some(5.0), Some(9.0), c),
            ]),
            vec!["out.steps[1]"],
        ),
    ];
    for (name, out, want) in cases {
        let p = policy(Some(out), None);
        assert_eq!(fields(&p), want, "{name}: {:?}", p.validate());
    }

    // Order does not matter: the seed list shuffled is still valid.
    let mut shuffled = requests_in();
    shuffled.bands.swap(0, 3);
    shuffled.bands.swap(1, 2);
    assert!(policy(None, Some(shuffled)).validate().is_empty());

    // Datapoints, no lists, min_adjustment without a percent band, bad percent.
    let mut out = cpu_out();
    out.datapoints = 0;
    assert_eq!(fields(&policy(Some(out), None)), ["out.datapoints"]);
    assert_eq!(fields(&policy(None, None)), ["out"]);
    let mut p = policy(Some(cpu_out()), None);
    p.min_adjustment = Some(2);
    assert_eq!(fields(&p), ["min_adjustment"]);
    let p = policy(
        None,
        Some(StepAlarm {
            threshold: 1.0,
            bands: vec![band(None, Some(0.0), Adjustment::Percent(f64::INFINITY))],
            datapoints: 1,
        }),
    );
    assert_eq!(fields(&p), ["in.steps[0].percent"]);
    // Messages name the problem.
    let p = policy(
        Some(alarm(vec![
            band(Some(0.0), Some(5.0), c),
            band(Some(6.0), None, c),
        ])),
        None,
    );
    let msg = p.validate()[0].to_string();
    assert!(msg.contains("gap") && msg.contains("from 5 to 6"), "{msg}");
}

proptest! {
    /// AWS's percent rounding: sign of the percentage, magnitude trunc(|raw|) (at least 1),
    /// then at least `min_adjustment`.
    #[test]
    fn percent_rounding(base in 1u32..100_000, percent in -100.0f64..1000.0, min in proptest::option::of(1u32..50)) {
        prop_assume!(percent != 0.0);
        let adj = percent_adjustment(base, percent, min);
        let raw = f64::from(base) * percent / 100.0;
        prop_assert_eq!(adj.signum(), if percent > 0.0 { 1 } else { -1 });
        let expected = if raw.abs() < 1.0 { 1 } else { raw.abs().trunc() as i64 };
        // Float noise may snap a value 1e-9 below an integer up to it.
        let magnitude = adj.abs();
        let floor = expected.max(i64::from(min.unwrap_or(0)));
        prop_assert!(magnitude == floor || magnitude == floor + 1 && (raw.abs() - raw.abs().round()).abs() < 1e-6,
            "base {} percent {} raw {} adj {}", base, percent, raw, adj);
        prop_assert!(magnitude as f64 <= raw.abs().max(1.0).max(f64::from(min.unwrap_or(0))) + 1e-6);
        prop_assert!(magnitude >= i64::from(min.unwrap_or(1)));
    }

    /// For contiguous lists from −∞ to +∞ (valid by construction, in any order), every
    /// offset lies in exactly one band, except a boundary exactly at the threshold.
    #[test]
    fn band_selection_picks_exactly_one(
        mut cuts in proptest::collection::btree_set(-1000i32..1000, 1..8),
        offset in -1500.0f64..1500.0,
        rotate in 0usize..8,
        at_cut in any::<bool>(),
    ) {
        let cuts: Vec<f64> = std::mem::take(&mut cuts).into_iter().map(f64::from).collect();
        let mut bands = Vec::new();
        bands.push(band(None, Some(cuts[0]), Adjustment::Change(0)));
        for w in cuts.windows(2) {
            bands.push(band(Some(w[0]), Some(w[1]), Adjustment::Change(1)));
        }
        bands.push(band(cuts.last().copied(), None, Adjustment::Change(2)));
        let len = bands.len();
        bands.rotate_left(rotate % len);
        let alarm = StepAlarm { threshold: 0.0, bands, datapoints: 1 };
        prop_assert!(alarm.validate("out").is_empty(), "{:?}", alarm.validate("out"));
        let offset = if at_cut { cuts[rotate % cuts.len()] } else { offset };
        let holding = alarm.bands.iter().filter(|b| b.contains(offset)).count();
        if offset == 0.0 && cuts.contains(&0.0) {
            prop_assert_eq!(holding, 2);
        } else {
            prop_assert_eq!(holding, 1);
        }
        // The union as one band agrees with "some band holds it".
        let cover = alarm.coverage();
        prop_assert!(cover.is_some());
        for x in [offset, offset - 0.5, offset + 0.5, -1e9, 1e9] {
            let any = alarm.bands.iter().any(|b| b.contains(x));
            prop_assert_eq!(cover.is_some_and(|c| c.contains(x)), any);
        }
        for prefer_upper in [true, false] {
            let i = alarm.select(offset, prefer_upper);
            prop_assert!(i.is_some_and(|i| alarm.bands[i].contains(offset)));
        }
    }

    /// Removing an inner band of a valid list always reports a gap.
    #[test]
    fn a_missing_band_is_a_gap(cuts in proptest::collection::btree_set(-1000i32..1000, 2..8), pick in 0usize..8) {
        let cuts: Vec<f64> = cuts.into_iter().map(f64::from).collect();
        let mut bands = vec![band(None, Some(cuts[0]), Adjustment::Change(0))];
        for w in cuts.windows(2) {
            bands.push(band(Some(w[0]), Some(w[1]), Adjustment::Change(1)));
        }
        bands.push(band(cuts.last().copied(), None, Adjustment::Change(2)));
        let inner = 1 + pick % (bands.len() - 2);
        bands.remove(inner);
        let alarm = StepAlarm { threshold: 0.0, bands, datapoints: 1 };
        let errors = alarm.validate("in");
        prop_assert!(errors.iter().any(|e| e.message.contains("gap")), "{:?}", errors);
        prop_assert!(alarm.coverage().is_none(), "a list with a gap is not one interval");
    }
}

/// A real fraction just below an integer is not float noise: it rounds toward zero.
#[test]
fn percent_just_below_an_integer_rounds_down() {
    // 44553 × 525.3316274815962 / 100 = 234050.99999187555…
    assert_eq!(
        percent_adjustment(44_553, 525.331_627_481_596_2, None),
        234_050
    );
    // Float noise above an integer still counts as that integer.
    assert_eq!(percent_adjustment(100, 7.0, None), 7);
    assert_eq!(percent_adjustment(11, 30.0, None), 3);
}
