//! Must show: the AWS target-tracking baseline reproduces AWS's documented timing. On a
//! step increase of load, the first scale-out comes no earlier than 3 minutes after the
//! metric crosses the target (AlarmHigh needs 3 of 3 one-minute datapoints), and no later
//! than that plus the publishing delay and one period; after load drops, the first
//! scale-in comes no earlier than 15 minutes later (AlarmLow, 15 of 15).

use crate::support;

use serde_json::json;
use support::{Sim, spec};

/// CPU of a service whose load needs `demand` percent of one task in total, spread over
/// the running tasks.
fn cpu(demand: f64, running: u32) -> Option<f64> {
    (running > 0).then(|| (demand / f64::from(running)).min(100.0))
}

fn target_tracking(delay_s: u32) -> support::Sim {
    let s = spec(json!({
        "kind": "aws-target-tracking",
        "metric": "cpu",
        "target": 60.0,
        "min": 1,
        "max": 20,
        "publish_delay_s": delay_s,
    }));
    Sim::new(&s, 4)
}

#[test]
fn step_increase_then_drop_with_the_default_publishing_delay() {
    // Load jumps at `up` from 4 × 40% to 4 × 90%, and drops at `down` to 60% in total.
    for offset in [0, 1, 10, 30, 45, 59] {
        let up = 600 + offset;
        let down = up + 1800;
        let load = |t: i64, running: u32| {
            let demand = if t < up {
                160.0
            } else if t < down {
                360.0
            } else {
                60.0
            };
            cpu(demand, running)
        };
        let mut sim = target_tracking(60);
        let out = sim
            .next_action(down, load)
            .expect("a step to 90% CPU scales out");
        let after = out.at - up;
        assert!(
            (180..=180 + 60 + 60).contains(&after),
            "offset {offset}: first scale-out {after} s after the crossing: {out:?}"
        );
        assert_eq!((out.from, out.to), (4, 6), "ceil(4 × 90 / 60) = 6: {out:?}");
        assert!(
            out.reason
                .starts_with("AlarmHigh cpu 90 > 60 for 3 of 3 datapoints: ceil(4 × 90 / 60) = 6"),
            "{}",
            out.reason
        );

        // Six tasks at 60% hold steady: no further change until the drop.
        sim.run_until(down - 1, load);
        assert_eq!(sim.actions.len(), 1, "{:?}", sim.actions);

        let scale_in = sim
            .next_action(down + 3600, load)
            .expect("10% CPU on 6 tasks scales in");
        let after = scale_in.at - down;
        assert!(
            (900..=900 + 60 + 60).contains(&after),
            "offset {offset}: first scale-in {after} s after the drop: {scale_in:?}"
        );
        assert_eq!((scale_in.from, scale_in.to), (6, 1), "{scale_in:?}");
        assert!(
            scale_in
                .reason
                .starts_with("AlarmLow cpu 10 < 54 for 15 of 15 datapoints"),
            "{}",
            scale_in.reason
        );
    }
}

#[test]
fn timing_is_three_and_fifteen_minutes_plus_the_publishing_delay() {
    // Crossings on whole minutes: the first breaching datapoint is the minute of the
    // crossing, so the alarms fire exactly 3 (15) periods plus the delay later.
    for delay in [0_u32, 30, 60, 120] {
        let up = 600;
        let down = 2400;
        let load = |t: i64, running: u32| {
            let demand = if t < up {
                160.0
            } else if t < down {
                360.0
            } else {
                60.0
            };
            cpu(demand, running)
        };
        let mut sim = target_tracking(delay);
        let out = sim.next_action(down, load).expect("scales out");
        assert_eq!(
            out.at,
            up + 180 + i64::from(delay),
            "delay {delay}: {out:?}"
        );
        sim.run_until(down - 1, load);
        let scale_in = sim.next_action(down + 3600, load).expect("scales in");
        assert_eq!(
            scale_in.at,
            down + 900 + i64::from(delay),
            "delay {delay}: {scale_in:?}"
        );
    }
}

#[test]
fn a_short_spike_does_not_scale_out() {
    // Two minutes above the target are not three datapoints.
    let mut sim = target_tracking(60);
    sim.run_until(3600, |t, running| {
        let demand = if (600..720).contains(&t) {
            360.0
        } else {
            220.0
        };
        cpu(demand, running)
    });
    assert!(sim.actions.is_empty(), "{:?}", sim.actions);
}
