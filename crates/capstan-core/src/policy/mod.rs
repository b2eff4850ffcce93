//! Policies: each turns metric windows, capacity, its own state and `now` into a
//! [`Recommendation`] with a reason. Pure: no I/O, no clock, seeded randomness only.
//!
//! - [`target_tracking`]: keep a metric at a target (per-task or total).
//! - [`step`]: AWS step scaling, with AWS's exact band and rounding semantics.
//! - [`threshold`]: several metrics with min/max each (composite), asymmetric datapoints.
//! - [`backlog`]: backlog per task against a dynamic target (latency / processing time).
//! - [`scheduled`]: cron windows (with time zone) that set min/max or an exact count.
//! - [`alert`]: alerts received from Alertmanager / Grafana (stepped like threshold).

pub mod alert;
pub mod backlog;
pub mod scheduled;
pub mod step;
pub mod target_tracking;
pub mod threshold;

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::metrics::Observations;
use crate::model::Capacity;

pub use alert::Alert;
pub use backlog::{BacklogPerTask, BacklogState};
pub use scheduled::{Scheduled, ScheduledAction};
pub use step::{Adjustment, Aggregation, StepAlarm, StepBand, StepScaling};
pub use target_tracking::{TargetTracking, TrackingMode};
pub use threshold::{Growth, Jitter, MetricBounds, Threshold, ThresholdState};

/// How many consecutive datapoints must breach before acting, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Datapoints {
    /// Consecutive breaching samples before scaling out (≥ 1).
    pub out: u32,
    /// Consecutive breaching samples before scaling in (≥ 1).
    pub r#in: u32,
}

impl Default for Datapoints {
    fn default() -> Self {
        Self { out: 1, r#in: 1 }
    }
}

/// Everything a policy may look at.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// Evaluation time.
    pub now: Timestamp,
    /// Current capacity of the service.
    pub capacity: Capacity,
    /// The count relative adjustments start from: during a scale-out cooldown, the
    /// desired count before the scale-out that started it (AWS: capacity added inside a
    /// cooldown counts toward the next step); otherwise `capacity.desired`.
    pub baseline: u32,
    /// Metric windows of every source.
    pub metrics: &'a Observations,
    /// The `last_known` fallback: when set, a source that is not fresh may still be used
    /// through its newest sample if that sample is no older than this. The
    /// recommendation is then marked `degraded` (and can never cause a scale-in).
    pub last_known: Option<Duration>,
}

/// What a policy asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
pub enum Ask {
    /// This many tasks.
    Desired {
        /// The count asked for.
        count: u32,
    },
    /// Keep the current count (e.g. within tolerance, or not enough datapoints yet).
    /// Blocks scale-in by other policies.
    Hold,
    /// No opinion: the policy neither asks for more nor objects to fewer (e.g. a step
    /// policy whose alarm is not breaching, a tracking policy with scale-in disabled).
    Abstain,
    /// The policy cannot decide because these sources are missing, stale or failing.
    /// The planner applies the service's fallback and never scales in.
    NoData {
        /// The sources without usable data.
        sources: Vec<String>,
    },
    /// A scheduled window is active and sets the bounds (exact = min = max).
    Bounds {
        /// New minimum, if set.
        min: Option<u32>,
        /// New maximum, if set.
        max: Option<u32>,
    },
}

/// A policy's output: what it asks and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The policy's name.
    pub policy: String,
    /// What it asks.
    #[serde(flatten)]
    pub ask: Ask,
    /// Why, as a short phrase ("queue 550 / 100 per task → 6").
    pub reason: String,
    /// True when computed from a last-known value rather than fresh data.
    pub degraded: bool,
}

/// A problem in a policy's own settings, found by `validate`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The field (relative to the policy, e.g. `out.steps[1].upper`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl PolicyError {
    /// A new error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One of the policy kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// Target tracking.
    TargetTracking(TargetTracking),
    /// Step scaling.
    Step(StepScaling),
    /// Threshold / composite.
    Threshold(Threshold),
    /// Backlog per task with a dynamic target.
    BacklogPerTask(BacklogPerTask),
    /// Scheduled bounds.
    Scheduled(Scheduled),
    /// Alerts received through webhooks.
    Alert(Alert),
}

/// The mutable state a policy carries between evaluations.
#[derive(Debug, Clone, Default)]
pub enum PolicyState {
    /// Stateless policies.
    #[default]
    None,
    /// Threshold (and alert) streaks and jitter RNG.
    Threshold(Box<ThresholdState>),
    /// The dynamic target.
    Backlog(BacklogState),
}

/// A policy with its name (unique within a service).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedPolicy {
    /// Name used in decisions and logs (`kind#index` unless configured).
    pub name: String,
    /// The policy.
    pub policy: Policy,
}

impl Policy {
    /// The kind's name as written in config (`target_tracking`, `step`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Policy::TargetTracking(_) => "target_tracking",
            Policy::Step(_) => "step",
            Policy::Threshold(_) => "threshold",
            Policy::BacklogPerTask(_) => "backlog_per_task",
            Policy::Scheduled(_) => "scheduled",
            Policy::Alert(_) => "alert",
        }
    }

    /// Sources the policy reads.
    pub fn sources(&self) -> Vec<&str> {
        match self {
            Policy::TargetTracking(p) => vec![p.metric.as_str()],
            Policy::Step(p) => vec![p.metric.as_str()],
            Policy::Threshold(p) => p.metrics.iter().map(|m| m.metric.as_str()).collect(),
            Policy::BacklogPerTask(p) => vec![p.backlog.as_str(), p.processing_time.as_str()],
            Policy::Scheduled(_) | Policy::Alert(_) => Vec::new(),
        }
    }

    /// How many of the newest samples of each source the policy reads at most (its
    /// datapoints; 1 where it reads only the newest value). A source's window must hold
    /// that many samples for the policy to decide as configured.
    pub fn samples_needed(&self) -> Vec<(&str, u32)> {
        let most = |d: Datapoints| d.out.max(d.r#in).max(1);
        match self {
            Policy::TargetTracking(p) => vec![(p.metric.as_str(), most(p.datapoints))],
            Policy::Step(p) => {
                let n = [&p.out, &p.r#in]
                    .into_iter()
                    .flatten()
                    .map(|a| a.datapoints)
                    .max()
                    .unwrap_or(1)
                    .max(1);
                vec![(p.metric.as_str(), n)]
            }
            Policy::Threshold(p) => p
                .metrics
                .iter()
                .map(|m| (m.metric.as_str(), most(p.datapoints)))
                .collect(),
            Policy::BacklogPerTask(p) => vec![
                (p.backlog.as_str(), most(p.datapoints)),
                (p.processing_time.as_str(), 1),
            ],
            Policy::Scheduled(_) | Policy::Alert(_) => Vec::new(),
        }
    }

    /// The state a fresh policy starts with.
    pub fn initial_state(&self) -> PolicyState {
        match self {
            Policy::Threshold(p) => PolicyState::Threshold(Box::new(ThresholdState::new(p))),
            Policy::BacklogPerTask(_) => PolicyState::Backlog(BacklogState::default()),
            Policy::Alert(p) => PolicyState::Threshold(Box::new(p.initial_state())),
            _ => PolicyState::None,
        }
    }

    /// Checks the policy's own settings; every problem is returned.
    pub fn validate(&self) -> Vec<PolicyError> {
        match self {
            Policy::TargetTracking(p) => p.validate(),
            Policy::Step(p) => p.validate(),
            Policy::Threshold(p) => p.validate(),
            Policy::BacklogPerTask(p) => p.validate(),
            Policy::Scheduled(p) => p.validate(),
            Policy::Alert(p) => p.validate(),
        }
    }

    /// Evaluates the policy. `state` must come from [`initial_state`](Self::initial_state)
    /// of this same policy (a mismatched state is replaced by a fresh one).
    pub fn evaluate(
        &self,
        name: &str,
        input: &PolicyInput<'_>,
        state: &mut PolicyState,
    ) -> Recommendation {
        let (ask, reason, degraded) = match self {
            Policy::TargetTracking(p) => p.evaluate(input),
            Policy::Step(p) => p.evaluate(input),
            Policy::Threshold(p) => {
                if !matches!(state, PolicyState::Threshold(_)) {
                    *state = self.initial_state();
                }
                match state {
                    PolicyState::Threshold(s) => p.evaluate(input, s),
                    _ => (
                        Ask::Hold,
                        "internal: threshold state missing".to_owned(),
                        false,
                    ),
                }
            }
            Policy::BacklogPerTask(p) => {
                if !matches!(state, PolicyState::Backlog(_)) {
                    *state = self.initial_state();
                }
                match state {
                    PolicyState::Backlog(s) => p.evaluate(input, s),
                    _ => (
                        Ask::Hold,
                        "internal: backlog state missing".to_owned(),
                        false,
                    ),
                }
            }
            Policy::Scheduled(p) => p.evaluate(input),
            Policy::Alert(p) => {
                if !matches!(state, PolicyState::Threshold(_)) {
                    *state = self.initial_state();
                }
                match state {
                    PolicyState::Threshold(s) => p.evaluate(input, s),
                    _ => (Ask::Hold, "internal: alert state missing".to_owned(), false),
                }
            }
        };
        Recommendation {
            policy: name.to_owned(),
            ask,
            reason,
            degraded,
        }
    }
}

/// What a policy's `evaluate` returns: the ask, the reason, and whether it rests on a
/// last-known (not fresh) value.
pub type Outcome = (Ask, String, bool);
