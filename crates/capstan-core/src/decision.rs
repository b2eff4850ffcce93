//! A decision and its explanation: every policy's ask, every cap, cooldown and limit
//! that changed the number, and the rule that won. Structured (serde) and as one
//! sentence.

use jiff::Timestamp;
use serde::Serialize;

use crate::model::Capacity;
use crate::policy::Recommendation;

/// What the decision does to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Raise the desired count.
    ScaleOut {
        /// Desired before.
        from: u32,
        /// Desired after.
        to: u32,
    },
    /// Lower the desired count.
    ScaleIn {
        /// Desired before.
        from: u32,
        /// Desired after.
        to: u32,
    },
    /// Leave it.
    Hold {
        /// The desired count kept.
        at: u32,
    },
}

impl Action {
    /// The desired count after the action.
    pub fn desired(&self) -> u32 {
        match *self {
            Action::ScaleOut { to, .. } | Action::ScaleIn { to, .. } => to,
            Action::Hold { at } => at,
        }
    }
}

/// The rule by which the policies' asks were combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// At least one policy asked for more: the largest ask won.
    LargestScaleOut,
    /// Every voting policy asked for fewer: the largest of the smaller asks won.
    ScaleInAllAgree,
    /// Some policy holds (or asks for the current count): nothing to do.
    Hold,
    /// No policy voted.
    NoVotes,
}

/// Which step of the planner changed the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A source had no usable data; the fallback was applied.
    Fallback,
    /// Scale-in refused because some input was missing, stale or degraded.
    MissingData,
    /// Scale-in held at the highest recommendation of the stabilization window.
    Stabilization,
    /// Scale-out cooldown active and the ask was not larger than the last scale-out.
    OutCooldown,
    /// Scale-in cooldown active.
    InCooldown,
    /// Scale-out rate limit.
    RateLimitOut,
    /// Scale-in rate limit.
    RateLimitIn,
    /// Raised to the minimum (static or scheduled).
    Min,
    /// Lowered to the maximum (static or scheduled).
    Max,
    /// Dry-run: computed, not applied.
    DryRun,
}

/// One adjustment the planner made to the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Which rule.
    pub kind: StepKind,
    /// The count before this step.
    pub from: u32,
    /// The count after this step.
    pub to: u32,
    /// Human-readable detail ("scale-in cooldown until 12:03:00Z").
    pub detail: String,
}

/// The outcome of one evaluation of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Service name.
    pub service: String,
    /// Evaluation time.
    pub at: Timestamp,
    /// Capacity observed before deciding.
    pub capacity: Capacity,
    /// Every policy's recommendation, in configuration order.
    pub asks: Vec<Recommendation>,
    /// How the asks were combined.
    pub rule: Rule,
    /// The policy whose ask won, if any.
    pub winner: Option<String>,
    /// The combined count before the planner's steps.
    pub combined: u32,
    /// The bounds in force (static, or overridden by a scheduled window).
    pub min: u32,
    /// See `min`.
    pub max: u32,
    /// Each cap, cooldown, limit or fallback applied, in order.
    pub steps: Vec<Step>,
    /// What to do.
    pub action: Action,
    /// True when the decision is not applied.
    pub dry_run: bool,
}

impl Decision {
    /// The decision as one line, e.g.
    /// `worker: scale out 3 → 6 (largest ask: queue asked 6 — 550 total / 100 per task; capped 7 → 6 by max 6)`.
    pub fn sentence(&self) -> String {
        unimplemented!("decision sentence")
    }
}
