//! A day of synthetic history for the benches that need many services with a full
//! 24 h window (`history`, `web_load`): the same shape everywhere, so their figures
//! compare.

use std::time::Duration;

use capstan_control::registry::ServiceHandle;
use capstan_core::Timestamp;
use capstan_core::history::{Reading, Tick};

/// Records `ticks` samples `tick_s` apart from `start` into `h`: desired (= running)
/// stepping between 3 and 7 every half hour, and two policies (`cpu` against 60,
/// `queue` against 100) on a 10-minute saw-tooth.
pub fn fill(h: &ServiceHandle, start: Timestamp, ticks: u64, tick_s: u64) {
    for k in 0..ticks {
        let at = capstan_core::clock::add(start, Duration::from_secs(k * tick_s));
        let desired = 3 + u32::try_from((k * tick_s / 1800) % 5).unwrap_or(0);
        let wave = f64::from(u32::try_from(k % 600).unwrap_or(0)) / 10.0;
        let policies = [
            (
                "cpu",
                Reading {
                    value: Some(30.0 + wave),
                    target: Some(60.0),
                },
            ),
            (
                "queue",
                Reading {
                    value: Some(wave * 3.0),
                    target: Some(100.0),
                },
            ),
        ];
        h.record_history(&Tick {
            at,
            desired,
            running: desired,
            pending: 0,
            policies: &policies,
        });
    }
}
