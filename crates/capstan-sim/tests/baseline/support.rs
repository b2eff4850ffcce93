//! A tiny stand-in for the runner, for the baseline tests: per-second frames of one
//! metric, a desired count the baseline's actions set, and a running count that follows
//! it (new tasks after a start-up delay, removals at once).

#![allow(dead_code)]

use capstan_sim::baseline::{Baseline, BaselineSpec};
use capstan_sim::metric::{Frame, SimMetric};
use jiff::Timestamp;

/// 2025-01-01T00:00:00Z, a whole minute: elapsed seconds are aligned with CloudWatch's
/// periods.
pub const T0: i64 = 1_735_689_600;

/// A settings value from JSON, as a scenario file would hold it.
pub fn spec(json: serde_json::Value) -> BaselineSpec {
    serde_json::from_value(json).expect("the test's baseline settings parse")
}

/// One change the baseline made.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Seconds since `T0`.
    pub at: i64,
    /// Desired count before.
    pub from: u32,
    /// Desired count after.
    pub to: u32,
    /// Running count when it was decided.
    pub running: u32,
    /// The baseline's reason.
    pub reason: String,
}

/// A baseline driven one simulated second at a time.
pub struct Sim {
    pub baseline: Baseline,
    pub metric: SimMetric,
    /// Seconds since `T0` of the last step.
    pub t: i64,
    pub desired: u32,
    pub running: u32,
    /// Seconds a new task takes to run.
    pub startup_s: i64,
    last_increase: i64,
    pub actions: Vec<Action>,
}

impl Sim {
    /// A baseline on a service with `desired` tasks, all running.
    pub fn new(spec: &BaselineSpec, desired: u32) -> Self {
        let baseline = Baseline::new("test", spec).expect("the test's settings are valid");
        let metric = baseline.metric().0;
        Self {
            baseline,
            metric,
            t: -1,
            desired,
            running: desired,
            startup_s: 30,
            last_increase: i64::MIN / 2,
            actions: Vec::new(),
        }
    }

    /// One second: `value(t, running)` is the metric's value at `t` (`None`: no data).
    pub fn step(&mut self, value: &mut impl FnMut(i64, u32) -> Option<f64>) -> Option<Action> {
        self.t += 1;
        let t = self.t;
        if self.running < self.desired && t - self.last_increase >= self.startup_s {
            self.running = self.desired;
        }
        let mut frame = Frame::default();
        if let Some(v) = value(t, self.running) {
            frame.set(self.metric, v);
        }
        let now = Timestamp::from_second(T0 + t).expect("test instants are valid");
        let a = self
            .baseline
            .step(now, &frame, self.running, self.desired)?;
        let action = Action {
            at: t,
            from: self.desired,
            to: a.to,
            running: self.running,
            reason: a.reason,
        };
        if a.to > self.desired {
            self.last_increase = t;
        }
        self.desired = a.to;
        self.running = self.running.min(a.to);
        self.actions.push(action.clone());
        Some(action)
    }

    /// Steps through second `end` (inclusive).
    pub fn run_until(&mut self, end: i64, mut value: impl FnMut(i64, u32) -> Option<f64>) {
        while self.t < end {
            self.step(&mut value);
        }
    }

    /// Steps until the next action, at most through second `end`.
    pub fn next_action(
        &mut self,
        end: i64,
        mut value: impl FnMut(i64, u32) -> Option<f64>,
    ) -> Option<Action> {
        while self.t < end {
            if let Some(a) = self.step(&mut value) {
                return Some(a);
            }
        }
        None
    }
}
