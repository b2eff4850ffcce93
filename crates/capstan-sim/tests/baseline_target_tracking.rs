//! The AWS target-tracking baseline (AWS-SEMANTICS §1): re-firing every minute while
//! AlarmHigh stays in ALARM, running-count capacity, cooldowns, clamping, missing data,
//! scale-in disabled, and the start from zero.

use crate::support;

use capstan_sim::baseline::AlarmState;
use serde_json::{Value, json};
use support::{Sim, spec};

/// Target tracking on CPU at 60, no publishing delay (whole-minute timing), with `extra`
/// settings merged in.
fn tt(extra: Value) -> capstan_sim::baseline::BaselineSpec {
    let mut v = json!({
        "kind": "aws-target-tracking",
        "metric": "cpu",
        "target": 60.0,
        "min": 1,
        "max": 100,
        "publish_delay_s": 0,
    });
    if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in more {
            base.insert(k.clone(), x.clone());
        }
    }
    spec(v)
}

fn at_most_100(demand: f64, running: u32) -> Option<f64> {
    (running > 0).then(|| (demand / f64::from(running)).min(100.0))
}

#[test]
fn refires_every_minute_while_alarm_high_stays_in_alarm() {
    // Far more load than tasks, no cooldown: each minute's invocation scales out again
    // from the tasks running by then.
    let mut sim = Sim::new(&tt(json!({ "scale_out_cooldown_s": 0 })), 2);
    sim.run_until(400, |_, running| at_most_100(5000.0, running));
    assert_eq!(sim.baseline.alarms()[0], ("AlarmHigh", AlarmState::Alarm));
    sim.run_until(900, |_, running| at_most_100(5000.0, running));
    let times: Vec<i64> = sim.actions.iter().map(|a| a.at).collect();
    let counts: Vec<(u32, u32)> = sim.actions.iter().map(|a| (a.running, a.to)).collect();
    assert!(times.len() >= 5, "{:?}", sim.actions);
    assert_eq!(times[0], 180, "3 datapoints, no delay: {:?}", sim.actions);
    for w in times.windows(2).take(4) {
        assert_eq!(w[1] - w[0], 60, "re-fired every minute: {times:?}");
    }
    // ceil(running × 100 / 60), from the running count each time.
    assert_eq!(&counts[..4], &[(2, 4), (4, 7), (7, 12), (12, 20)]);
}

#[test]
fn capacity_comes_from_the_running_count_not_the_desired_count() {
    // Tasks take 10 minutes to start: after 4 → 6 at 180 and the end of the cooldown
    // at 480, the decisions still compute from the 4 running tasks and change nothing,
    // until the new tasks run (780).
    let mut sim = Sim::new(&tt(json!({})), 4);
    sim.startup_s = 600;
    sim.run_until(779, |_, _| Some(90.0));
    let got: Vec<(i64, u32, u32, u32)> = sim
        .actions
        .iter()
        .map(|a| (a.at, a.running, a.from, a.to))
        .collect();
    assert_eq!(got, [(180, 4, 4, 6)]);
    sim.run_until(800, |_, _| Some(90.0));
    let a = sim.actions.last().expect("an action");
    assert_eq!((a.at, a.running, a.from, a.to), (780, 6, 6, 9));
}

#[test]
fn scale_out_cooldown_blocks_increases_unless_larger() {
    // CPU stays at 90 whatever runs (a lagging metric): after 4 → 6 the added capacity
    // counts, and ceil(4 × 90 / 60) = 6 is not larger, until the cooldown ends.
    let mut sim = Sim::new(&tt(json!({})), 4);
    sim.run_until(1200, |_, _| Some(90.0));
    let got: Vec<(i64, u32, u32)> = sim.actions.iter().map(|a| (a.at, a.from, a.to)).collect();
    assert_eq!(&got[..2], &[(180, 4, 6), (480, 6, 9)], "{:?}", sim.actions);
    assert!(sim.actions[1].reason.contains("ceil(6 × 90 / 60) = 9"));

    // A larger scale-out goes through during the cooldown (and says so).
    let mut sim = Sim::new(&tt(json!({})), 4);
    sim.run_until(1200, |t, _| Some(if t < 240 { 90.0 } else { 150.0 }));
    let got: Vec<(i64, u32, u32)> = sim.actions.iter().map(|a| (a.at, a.from, a.to)).collect();
    assert_eq!(got[0], (180, 4, 6));
    // The 150 datapoint of [240, 300) is published at 300: ceil(4 × 150 / 60) = 10.
    assert_eq!(got[1], (300, 6, 10), "{:?}", sim.actions);
    assert!(
        sim.actions[1]
            .reason
            .contains("ceil(4 × 150 / 60) = 10 (scale-out cooldown until"),
        "{}",
        sim.actions[1].reason
    );

    // Without a cooldown the same lagging metric scales out again a minute later.
    let mut sim = Sim::new(&tt(json!({ "scale_out_cooldown_s": 0 })), 4);
    sim.run_until(300, |_, _| Some(90.0));
    let got: Vec<(i64, u32, u32)> = sim.actions.iter().map(|a| (a.at, a.from, a.to)).collect();
    assert_eq!(&got[..2], &[(180, 4, 6), (240, 6, 9)]);
}

#[test]
fn scale_in_cooldown_blocks_scale_in_and_a_scale_out_cancels_it() {
    let low = |_: i64, running: u32| at_most_100(60.0, running);
    // 10 tasks at 6%: AlarmLow after 15 minutes, ceil(10 × 6 / 60) = 1 → min 2.
    let mut sim = Sim::new(&tt(json!({ "min": 2, "scale_in_cooldown_s": 1800 })), 10);
    let first = sim.next_action(3600, low).expect("scales in");
    assert_eq!((first.at, first.from, first.to), (900, 10, 2));
    assert!(
        first.reason.ends_with(", held at min 2"),
        "{}",
        first.reason
    );

    // At min: nothing more to remove, whatever the cooldown.
    sim.run_until(7200, low);
    assert_eq!(sim.actions.len(), 1, "{:?}", sim.actions);

    // The cooldown itself: two drops 5 minutes apart, cooldown 30 minutes.
    let mut sim = Sim::new(&tt(json!({ "scale_in_cooldown_s": 1800 })), 12);
    sim.run_until(5000, |_, running| {
        // Always below AlarmLow; the formula wants half the running tasks.
        (running > 0).then_some(30.0)
    });
    let got: Vec<(i64, u32, u32)> = sim.actions.iter().map(|a| (a.at, a.from, a.to)).collect();
    assert_eq!(got[0], (900, 12, 6));
    assert_eq!(
        got[1],
        (900 + 1800, 6, 3),
        "blocked for the cooldown: {got:?}"
    );

    // A scale-out during the scale-in cooldown happens at once and cancels it: the next
    // scale-in waits only for AlarmLow's 15 datapoints.
    let mut sim = Sim::new(&tt(json!({ "scale_in_cooldown_s": 1800 })), 12);
    let cpu = |t: i64| {
        if (1200..1440).contains(&t) {
            90.0
        } else {
            30.0
        }
    };
    sim.run_until(5000, |t, running| (running > 0).then(|| cpu(t)));
    let got: Vec<(i64, u32, u32)> = sim.actions.iter().map(|a| (a.at, a.from, a.to)).collect();
    assert_eq!(got[0], (900, 12, 6));
    // 1200–1440 at 90: 3 datapoints published at 1380.
    assert_eq!(got[1], (1380, 6, 9), "scale-out not blocked: {got:?}");
    // Back at 30 from 1440: 15 datapoints by 2340, well before 900 + 1800.
    assert_eq!(got[2], (2340, 9, 5), "scale-in cooldown cancelled: {got:?}");
}

#[test]
fn clamps_to_min_and_max() {
    let mut sim = Sim::new(&tt(json!({ "max": 8 })), 4);
    let a = sim
        .next_action(600, |_, _| Some(200.0))
        .expect("scales out");
    assert_eq!(a.to, 8, "ceil(4 × 200 / 60) = 14, clamped: {a:?}");
    assert!(a.reason.ends_with("= 14, clamped to max 8"), "{}", a.reason);
    sim.run_until(1800, |_, _| Some(200.0));
    assert_eq!(sim.actions.len(), 1, "at max, no further scale-out");

    // Desired below min (min raised outside the policy): a scale-in leaves it, a
    // scale-out goes to min at least.
    let mut sim = Sim::new(&tt(json!({ "min": 5 })), 2);
    sim.run_until(1800, |_, _| Some(10.0));
    assert!(sim.actions.is_empty(), "{:?}", sim.actions);
    let a = sim
        .next_action(3600, |_, _| Some(70.0))
        .expect("scales out");
    assert_eq!(
        (a.from, a.to),
        (2, 5),
        "ceil(2 × 70 / 60) = 3, raised to min: {a:?}"
    );

    // Desired above max: a scale-out leaves it, a scale-in goes to max at most.
    let mut sim = Sim::new(&tt(json!({ "max": 6 })), 10);
    sim.run_until(1800, |_, _| Some(95.0));
    assert!(sim.actions.is_empty(), "{:?}", sim.actions);
    let a = sim.next_action(5400, |_, _| Some(50.0)).expect("scales in");
    assert_eq!(
        (a.from, a.to),
        (10, 6),
        "ceil(10 × 50 / 60) = 9, lowered: {a:?}"
    );
}

#[test]
fn insufficient_data_never_scales_in() {
    // No data at all: both alarms stay in INSUFFICIENT_DATA, nothing happens.
    let mut sim = Sim::new(&tt(json!({})), 6);
    sim.run_until(7200, |_, _| None);
    assert!(sim.actions.is_empty());
    let states: Vec<AlarmState> = sim.baseline.alarms().iter().map(|a| a.1).collect();
    assert_eq!(
        states,
        [AlarmState::InsufficientData, AlarmState::InsufficientData]
    );

    // Low CPU with a gap every 10 minutes: AlarmLow never sees 15 of 15.
    let mut sim = Sim::new(&tt(json!({})), 6);
    sim.run_until(7200, |t, _| (t % 600 >= 60).then_some(10.0));
    assert!(sim.actions.is_empty(), "{:?}", sim.actions);

    // The data stops while AlarmLow would fire: no scale-in.
    let mut sim = Sim::new(&tt(json!({})), 6);
    sim.run_until(7200, |t, _| (t < 840).then_some(10.0));
    assert!(sim.actions.is_empty(), "{:?}", sim.actions);
    assert_eq!(sim.baseline.alarms()[1].1, AlarmState::InsufficientData);
}

#[test]
fn no_scale_in_on_a_missing_newest_datapoint() {
    // AlarmLow stays in ALARM over one missing datapoint (14 breaching + 1 missing can
    // still make 15), and re-fires every minute, but scales in only on fresh data.
    let mut sim = Sim::new(&tt(json!({ "scale_in_cooldown_s": 0 })), 12);
    sim.run_until(1100, |t, _| (t / 60 != 15).then_some(30.0));
    let got: Vec<(i64, u32)> = sim.actions.iter().map(|a| (a.at, a.to)).collect();
    // 900: ceil(12 × 30 / 60) = 6; 960: minute 15 missing, held; 1020: 3; 1080: 2.
    assert_eq!(got, [(900, 6), (1020, 3), (1080, 2)]);
    assert_eq!(sim.baseline.alarms()[1].1, AlarmState::Alarm);
}

#[test]
fn disable_scale_in_never_removes_tasks() {
    let mut sim = Sim::new(&tt(json!({ "disable_scale_in": true })), 6);
    sim.run_until(7200, |_, _| Some(5.0));
    assert!(sim.actions.is_empty());
    assert_eq!(sim.baseline.alarms().len(), 1, "no AlarmLow");
}

#[test]
fn low_ratio_sets_alarm_low() {
    // 50% is below 0.9 × 60 = 54 but not below 0.8 × 60 = 48.
    for (ratio, scales_in) in [(0.9, true), (0.8, false)] {
        let mut sim = Sim::new(&tt(json!({ "low_ratio": ratio })), 6);
        sim.run_until(3600, |_, _| Some(50.0));
        assert_eq!(!sim.actions.is_empty(), scales_in, "ratio {ratio}");
    }
}

#[test]
fn scale_in_skipped_when_removing_a_task_would_cross_the_target() {
    // 2 tasks at 50% (< 54): removing one would put 100% on the other: no scale-in.
    let mut sim = Sim::new(&tt(json!({})), 2);
    sim.run_until(7200, |_, running| at_most_100(100.0, running));
    assert!(sim.actions.is_empty(), "{:?}", sim.actions);
    assert_eq!(sim.baseline.alarms()[1].1, AlarmState::Alarm);
}

#[test]
fn from_zero_one_datapoint_then_proportional() {
    // A queue metric with nothing running: the first datapoint above the target adds
    // one task; then AlarmHigh scales proportionally from the running count.
    let s = spec(json!({
        "kind": "aws-target-tracking",
        "metric": "queue_depth",
        "target": 100.0,
        "min": 0,
        "max": 50,
    }));
    let mut sim = Sim::new(&s, 0);
    sim.run_until(600, |_, _| Some(500.0));
    let got: Vec<(i64, u32, u32)> = sim.actions.iter().map(|a| (a.at, a.from, a.to)).collect();
    // Datapoint [0, 60) published at 120 (60 s delay); 3 of 3 at 240.
    assert_eq!(&got[..2], &[(120, 0, 1), (240, 1, 5)], "{:?}", sim.actions);
    assert!(sim.actions[0].reason.contains("with nothing running"));

    // With a min of 2 the first step goes to min; below the target nothing happens.
    let s2 = spec(json!({
        "kind": "aws-target-tracking", "metric": "queue_depth", "target": 100.0,
        "min": 2, "max": 50,
    }));
    let mut sim = Sim::new(&s2, 0);
    sim.run_until(600, |_, _| Some(500.0));
    assert_eq!(sim.actions[0].to, 2);
    let mut sim = Sim::new(&s, 0);
    sim.run_until(3600, |_, _| Some(50.0));
    assert!(sim.actions.is_empty());
}

#[test]
fn reports_its_metric_target_and_bounds() {
    let sim = Sim::new(&tt(json!({ "min": 2, "max": 9 })), 4);
    assert_eq!(
        sim.baseline.metric(),
        (capstan_sim::metric::SimMetric::Cpu, 60.0)
    );
    assert_eq!(sim.baseline.bounds(), (2, 9));
    assert_eq!(sim.baseline.name(), "test");
}
