//! Backlog per task with a dynamic target (AWS-SEMANTICS §7).
//!
//! target = acceptable latency / average processing time (a metric), recomputed every
//! `target_refresh` and clamped to `[target_min, target_max]`; desired =
//! ceil(backlog / target).
//!
//! The target is recomputed when it was never computed or when `target_refresh` has
//! passed since it was (the time is kept in [`BacklogState`]). If the processing-time
//! source is unusable at that moment, the old target is kept (the reason says so); with
//! no target ever computed, the policy has no data. A processing time of 0 gives
//! `target_max`. A target computed from a `last_known` value is provisional: it is
//! retried on every evaluation, marks the result degraded, and never allows scale-in.
//!
//! With the target in hand the policy *is* target tracking in `total` mode on the backlog
//! source (the same code: [`super::target_tracking`]), with its tolerance and datapoints.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::target_tracking::{
    Num, Tracker, read, validate_datapoints, validate_target, validate_tolerance,
};
use super::{Ask, Datapoints, Outcome, PolicyError, PolicyInput};
use crate::clock::elapsed;

/// Settings of a backlog-per-task policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogPerTask {
    /// Source of the backlog (queue depth, a total).
    pub backlog: String,
    /// Source of the average processing time of one item, in seconds.
    pub processing_time: String,
    /// How long an item may wait.
    pub acceptable_latency: Duration,
    /// How often the target is recomputed.
    pub target_refresh: Duration,
    /// Lower clamp of the target (items per task).
    pub target_min: f64,
    /// Upper clamp of the target (items per task).
    pub target_max: f64,
    /// Tolerance band as in target tracking.
    pub tolerance: f64,
    /// Consecutive breaching samples needed per direction.
    pub datapoints: Datapoints,
}

/// The dynamic target and when it was computed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacklogState {
    /// Current target (items per task), once computed.
    pub target: Option<f64>,
    /// When it was computed.
    pub computed_at: Option<Timestamp>,
}

impl BacklogPerTask {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        if self.backlog.trim().is_empty() {
            errors.push(PolicyError::new("backlog", "must name a source"));
        }
        if self.processing_time.trim().is_empty() {
            errors.push(PolicyError::new("processing_time", "must name a source"));
        }
        if self.acceptable_latency.is_zero() {
            errors.push(PolicyError::new(
                "acceptable_latency",
                "must be longer than 0",
            ));
        }
        if self.target_refresh.is_zero() {
            errors.push(PolicyError::new("target_refresh", "must be longer than 0"));
        }
        validate_target("target_min", self.target_min, &mut errors);
        validate_target("target_max", self.target_max, &mut errors);
        if self.target_min.is_finite()
            && self.target_max.is_finite()
            && self.target_min > self.target_max
        {
            errors.push(PolicyError::new(
                "target_max",
                format!(
                    "must be at least target_min ({} < {})",
                    Num(self.target_max),
                    Num(self.target_min)
                ),
            ));
        }
        validate_tolerance("tolerance", self.tolerance, &mut errors);
        validate_datapoints(self.datapoints, &mut errors);
        errors
    }

    /// The target for a processing time of `seconds` per item: acceptable latency ÷
    /// processing time, clamped to `[target_min, target_max]`; a processing time of 0 (or
    /// less) gives `target_max`.
    pub fn target_for(&self, seconds: f64) -> f64 {
        let raw = if seconds > 0.0 {
            self.acceptable_latency.as_secs_f64() / seconds
        } else {
            f64::INFINITY
        };
        // max then min: never panics, even on unvalidated bounds.
        raw.max(self.target_min).min(self.target_max)
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, input: &PolicyInput<'_>, state: &mut BacklogState) -> Outcome {
        let due = match (state.target, state.computed_at) {
            (Some(_), Some(at)) => elapsed(at, input.now) >= self.target_refresh,
            // Never computed, or computed from a last-known value only: try again.
            _ => true,
        };
        let mut note = String::new();
        let mut unusable: Vec<String> = Vec::new();
        let mut why_unusable: Vec<String> = Vec::new();
        if due {
            match read(input, &self.processing_time) {
                Ok(data) => {
                    let seconds = data.newest();
                    let target = self.target_for(seconds);
                    state.target = Some(target);
                    // A target from a last-known value is provisional: retried next time.
                    state.computed_at = if data.is_degraded() {
                        None
                    } else {
                        Some(input.now)
                    };
                    note = format!(
                        "target {} per task = {}s / {} {}s{}",
                        Num(target),
                        Num(self.acceptable_latency.as_secs_f64()),
                        self.processing_time,
                        Num(seconds),
                        if data.is_degraded() {
                            " (last-known, provisional)"
                        } else {
                            ", refreshed"
                        },
                    );
                }
                Err(why) => match state.target {
                    Some(target) => {
                        note = format!("target {} per task kept ({why})", Num(target));
                    }
                    None => {
                        unusable.push(self.processing_time.clone());
                        why_unusable.push(why);
                    }
                },
            }
        } else if let Some(target) = state.target {
            note = format!("target {} per task", Num(target));
        }

        let backlog = match read(input, &self.backlog) {
            Ok(d) => Some(d),
            Err(why) => {
                unusable.insert(0, self.backlog.clone());
                why_unusable.insert(0, why);
                None
            }
        };
        let (Some(backlog), Some(target)) = (backlog, state.target) else {
            return (
                Ask::NoData { sources: unusable },
                why_unusable.join("; "),
                false,
            );
        };
        let provisional = state.computed_at.is_none();
        let prefix = format!("{note}; ");
        let tracker = Tracker::total(&self.backlog, target, self.tolerance, self.datapoints);
        let (mut ask, mut why, degraded) = tracker.run(&backlog, input, &prefix);
        if provisional && !degraded {
            // The target itself rests on a last-known value: never scale in on it.
            if matches!(ask, Ask::Desired { count } if count < input.capacity.desired) {
                ask = Ask::Hold;
                why.push_str("; no scale-in on a provisional target: hold");
            }
        }
        (ask, why, degraded || provisional)
    }
}
