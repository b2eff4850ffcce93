//! Target tracking: keep a metric at a target value.
//!
//! Per-task metrics (CPU %, requests per task): desired = ceil(running × value / target).
//! Totals (queue depth): desired = ceil(total / target), the target being per task.

use serde::Serialize;

use super::{Datapoints, Outcome, PolicyError, PolicyInput};

/// Whether the metric is per task or a total over the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingMode {
    /// The metric is an average per task (CPU %, requests per task).
    PerTask,
    /// The metric is a total (queue depth); the target is per task.
    Total,
}

/// Settings of a target tracking policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetTracking {
    /// Source name of the metric.
    pub metric: String,
    /// Per-task or total.
    pub mode: TrackingMode,
    /// The value to hold (per task in `total` mode). > 0.
    pub target: f64,
    /// Relative band around the target inside which nothing changes (0.1 = ±10%).
    pub tolerance: f64,
    /// Consecutive breaching samples needed per direction.
    pub datapoints: Datapoints,
    /// Never ask for fewer tasks (abstain instead), so another policy owns scale-in.
    pub disable_scale_in: bool,
}

impl TargetTracking {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        unimplemented!("target tracking validate")
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, _input: &PolicyInput<'_>) -> Outcome {
        unimplemented!("target tracking evaluate")
    }
}
