//! The `alert` policy: abstains without state, steps out while firing above the
//! threshold (growing only when the count moved, capped by `max_step`), scales in when
//! resolved or below, forgets resolved alerts, and does not compound re-notifications.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_core::alerts::{AlertOrigin, AlertSelector, AlertState, AlertStatus};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::metrics::Observations;
use capstan_core::policy::{Alert, Ask, Growth, Jitter, PolicyInput, ThresholdState};
use capstan_core::testing::steady;
use jiff::Timestamp;
use proptest::prelude::*;

fn policy() -> Alert {
    Alert {
        service: "api".into(),
        selector: AlertSelector {
            alertname: Some("QueueHigh".into()),
            labels: BTreeMap::from([("queue".to_owned(), "jobs".to_owned())]),
        },
        threshold: Some(100.0),
        value_key: None,
        step: 1,
        growth: Growth::Exponential,
        max_step: Some(8),
        jitter: None,
        in_step: 1,
        forget_after: Duration::from_secs(600),
    }
}

fn alert(status: AlertStatus, value: Option<f64>, at: Timestamp) -> AlertState {
    AlertState {
        origin: AlertOrigin::Alertmanager,
        status,
        labels: BTreeMap::from([
            ("alertname".to_owned(), "QueueHigh".to_owned()),
            ("queue".to_owned(), "jobs".to_owned()),
            ("service".to_owned(), "api".to_owned()),
        ]),
        values: BTreeMap::new(),
        value_string: None,
        value_text: value.map(|v| v.to_string()),
        group_key: Some("{}:{alertname=\"QueueHigh\"}".into()),
        received_at: at,
    }
}

fn eval(
    p: &Alert,
    obs: &Observations,
    now: Timestamp,
    desired: u32,
    s: &mut ThresholdState,
) -> (Ask, String) {
    let input = PolicyInput {
        now,
        capacity: steady(desired),
        baseline: desired,
        metrics: obs,
        last_known: None,
    };
    let (ask, why, degraded) = p.evaluate(&input, s);
    assert!(!degraded);
    (ask, why)
}

fn count(ask: &Ask) -> u32 {
    match ask {
        Ask::Desired { count } => *count,
        other => panic!("expected a count, got {other:?}"),
    }
}

#[test]
fn abstains_without_any_alert_state() {
    let clock = VirtualClock::at_epoch();
    let p = policy();
    let mut s = p.initial_state();
    let mut obs = Observations::new();
    let (ask, why) = eval(&p, &obs, clock.now(), 3, &mut s);
    assert_eq!(ask, Ask::Abstain, "{why}");
    assert!(why.contains("QueueHigh"), "{why}");
    // Another service's alert, or another alert of this service, changes nothing.
    obs.alerts_mut().record(
        "web",
        "f1",
        alert(AlertStatus::Firing, Some(500.0), clock.now()),
    );
    let mut other = alert(AlertStatus::Firing, Some(500.0), clock.now());
    other.labels.insert("queue".into(), "mail".into());
    obs.alerts_mut().record("api", "f2", other);
    assert_eq!(eval(&p, &obs, clock.now(), 3, &mut s).0, Ask::Abstain);
}

#[test]
fn firing_above_threshold_steps_out_and_grows_only_when_the_count_moved() {
    let clock = VirtualClock::at_epoch();
    let p = policy();
    let mut s = p.initial_state();
    let mut obs = Observations::new();
    obs.alerts_mut().record(
        "api",
        "fp-1",
        alert(AlertStatus::Firing, Some(523.0), clock.now()),
    );
    let (ask, why) = eval(&p, &obs, clock.now(), 2, &mut s);
    assert_eq!(count(&ask), 3, "{why}");
    assert!(
        why.contains("QueueHigh") && why.contains("523") && why.contains("> threshold 100"),
        "{why}"
    );
    // Held back (count did not move): the same step again, not a doubled one.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(10));
        assert_eq!(count(&eval(&p, &obs, clock.now(), 2, &mut s).0), 3);
    }
    // The count moved: 2, 4, 8, then capped at max_step 8.
    assert_eq!(count(&eval(&p, &obs, clock.now(), 3, &mut s).0), 5);
    assert_eq!(count(&eval(&p, &obs, clock.now(), 5, &mut s).0), 9);
    assert_eq!(count(&eval(&p, &obs, clock.now(), 9, &mut s).0), 17);
    let (ask, why) = eval(&p, &obs, clock.now(), 17, &mut s);
    assert_eq!(count(&ask), 25, "{why}");
    assert!(why.contains("capped at max_step 8"), "{why}");
}

#[test]
fn renotification_of_the_same_alert_does_not_compound() {
    let clock = VirtualClock::at_epoch();
    let p = policy();
    let mut s = p.initial_state();
    let mut obs = Observations::new();
    obs.alerts_mut().record(
        "api",
        "fp-1",
        alert(AlertStatus::Firing, Some(523.0), clock.now()),
    );
    assert_eq!(count(&eval(&p, &obs, clock.now(), 4, &mut s).0), 5);
    // Alertmanager sends the same group again (repeat, or a second receiver): state is
    // replaced, not added; the ask stays the same while the count has not moved.
    for _ in 0..10 {
        clock.advance(Duration::from_secs(1));
        let changed = obs.alerts_mut().record(
            "api",
            "fp-1",
            alert(AlertStatus::Firing, Some(523.0), clock.now()),
        );
        assert!(!changed);
        assert_eq!(count(&eval(&p, &obs, clock.now(), 4, &mut s).0), 5);
    }
    assert_eq!(obs.alerts().len(), 1);
}

#[test]
fn resolved_or_below_threshold_scales_in_then_is_forgotten() {
    let clock = VirtualClock::at_epoch();
    let p = policy();
    let mut s = p.initial_state();
    let mut obs = Observations::new();
    obs.alerts_mut().record(
        "api",
        "fp-1",
        alert(AlertStatus::Firing, Some(40.0), clock.now()),
    );
    let (ask, why) = eval(&p, &obs, clock.now(), 5, &mut s);
    assert_eq!(count(&ask), 4, "{why}");
    assert!(why.contains("≤ threshold 100"), "{why}");
    obs.alerts_mut().record(
        "api",
        "fp-1",
        alert(AlertStatus::Resolved, None, clock.now()),
    );
    clock.advance(Duration::from_secs(60));
    let (ask, why) = eval(&p, &obs, clock.now(), 4, &mut s);
    assert_eq!(count(&ask), 3, "{why}");
    assert!(
        why.starts_with("down: alert QueueHigh") && why.contains("resolved 60 s ago"),
        "{why}"
    );
    clock.advance(Duration::from_secs(541));
    assert_eq!(eval(&p, &obs, clock.now(), 3, &mut s).0, Ask::Abstain);
}

#[test]
fn firing_without_a_value_counts_as_above_and_in_step_zero_abstains() {
    let clock = VirtualClock::at_epoch();
    let mut p = policy();
    p.in_step = 0;
    p.growth = Growth::Fixed;
    p.step = 2;
    let mut s = p.initial_state();
    let mut obs = Observations::new();
    obs.alerts_mut()
        .record("api", "fp-1", alert(AlertStatus::Firing, None, clock.now()));
    let (ask, why) = eval(&p, &obs, clock.now(), 1, &mut s);
    assert_eq!(count(&ask), 3, "{why}");
    assert!(why.contains("without a value"), "{why}");
    obs.alerts_mut().record(
        "api",
        "fp-1",
        alert(AlertStatus::Resolved, None, clock.now()),
    );
    assert_eq!(eval(&p, &obs, clock.now(), 3, &mut s).0, Ask::Abstain);
}

#[test]
fn validation_names_the_fields() {
    let mut p = policy();
    p.selector = AlertSelector::default();
    p.step = 0;
    p.max_step = Some(0);
    p.threshold = Some(f64::NAN);
    p.forget_after = Duration::ZERO;
    p.jitter = Some(Jitter {
        fraction: 1.5,
        seed: 1,
    });
    let fields: Vec<String> = p.validate().into_iter().map(|e| e.field).collect();
    for f in [
        "alert",
        "threshold",
        "step",
        "jitter.fraction",
        "forget_after",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
    }
    assert!(policy().validate().is_empty());
}

proptest! {
    /// Whatever the notifications and counts, an ask moves the count by at most
    /// `max_step` up or exactly `in_step` down, and without state the policy abstains.
    #[test]
    fn never_asks_beyond_what_the_steps_allow(
        events in proptest::collection::vec((0u8..4, 0.0f64..300.0, 0u32..200, 0u64..120), 1..60),
        step in 1u32..4,
        max_extra in 0u32..10,
        in_step in 0u32..4,
        growth in prop_oneof![Just(Growth::Fixed), Just(Growth::Linear), Just(Growth::Exponential)],
        jitter in proptest::option::of(0.0f64..0.9),
    ) {
        let clock = VirtualClock::at_epoch();
        let mut p = policy();
        p.step = step;
        p.max_step = Some(step + max_extra);
        p.in_step = in_step;
        p.growth = growth;
        p.jitter = jitter.map(|fraction| Jitter { fraction, seed: 7 });
        let mut s = p.initial_state();
        let mut obs = Observations::new();
        for (kind, value, desired, wait) in events {
            clock.advance(Duration::from_secs(wait));
            match kind {
                0 => { obs.alerts_mut().record("api", "fp", alert(AlertStatus::Firing, Some(value), clock.now())); }
                1 => { obs.alerts_mut().record("api", "fp", alert(AlertStatus::Resolved, None, clock.now())); }
                2 => { obs.alerts_mut().record("api", "fp", alert(AlertStatus::Firing, None, clock.now())); }
                _ => {}
            }
            let (ask, why) = eval(&p, &obs, clock.now(), desired, &mut s);
            match ask {
                Ask::Desired { count } if count > desired => {
                    prop_assert!(count - desired <= step + max_extra, "{why}");
                    prop_assert!(count - desired >= 1, "{why}");
                }
                Ask::Desired { count } => {
                    prop_assert!(in_step > 0, "{why}");
                    prop_assert_eq!(count, desired.saturating_sub(in_step), "{}", why);
                }
                Ask::Abstain => {}
                other => prop_assert!(false, "unexpected ask {other:?}: {why}"),
            }
            if obs.alerts().is_empty() {
                prop_assert_eq!(eval(&p, &obs, clock.now(), desired, &mut s).0, Ask::Abstain);
            }
        }
    }
}
