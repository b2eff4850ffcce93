//! Backlog per task with a dynamic target (AWS-SEMANTICS §7).
//!
//! target = acceptable latency / average processing time (a metric), recomputed every
//! `target_refresh` and clamped to `[target_min, target_max]`; desired =
//! ceil(backlog / target).

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::{Datapoints, Outcome, PolicyError, PolicyInput};

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
        unimplemented!("backlog validate")
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, _input: &PolicyInput<'_>, _state: &mut BacklogState) -> Outcome {
        unimplemented!("backlog evaluate")
    }
}
