//! The planner: combines the policies' recommendations into one decision.
//!
//! Order: fallback for missing data → combine (scale out if any asks, the largest wins;
//! scale in only if every voting policy allows, the largest of the smaller asks wins) →
//! refuse scale-in on missing/stale/degraded data → scale-in stabilization (highest
//! recommendation in the window) → cooldowns (a larger scale-out breaks through the
//! out-cooldown; a scale-out cancels the in-cooldown) → rate limits → min/max (static,
//! or a scheduled window's; never subject to cooldowns) → dry-run.

use std::collections::VecDeque;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::decision::Decision;
use crate::metrics::Observations;
use crate::model::{Bounds, Capacity};
use crate::policy::{NamedPolicy, PolicyState};

/// Per-direction cooldowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Cooldowns {
    /// After a scale-out, further scale-out only if larger.
    pub out: Duration,
    /// After a scale-in, no scale-in.
    pub r#in: Duration,
}

/// A limit on how much capacity may change in one direction within `period`.
/// When both `tasks` and `percent` are set, the larger allowance applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateLimit {
    /// At most this many tasks per period.
    pub tasks: Option<u32>,
    /// At most this percentage of the capacity at the start of the period.
    pub percent: Option<f64>,
    /// The sliding period.
    pub period: Duration,
}

/// Rate limits per direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct RateLimits {
    /// Scale-out limit.
    pub out: Option<RateLimit>,
    /// Scale-in limit.
    pub r#in: Option<RateLimit>,
}

/// What to do when a policy's source is missing, stale or failing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Keep the current count (the policy votes to hold).
    #[default]
    Hold,
    /// Ask for this many tasks (but never scale in on missing data).
    Tasks(u32),
    /// Use the newest sample while it is no older than this; after that, hold.
    LastKnownFor(Duration),
}

/// The planner's settings for one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannerConfig {
    /// Static bounds.
    pub bounds: Bounds,
    /// Cooldowns.
    pub cooldown: Cooldowns,
    /// Scale-in stabilization window (0 = off).
    pub stabilization: Duration,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Fallback for missing data.
    pub fallback: Fallback,
    /// Compute, record, but never apply.
    pub dry_run: bool,
}

/// A change that was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// When.
    pub at: Timestamp,
    /// Desired before.
    pub from: u32,
    /// Desired after.
    pub to: u32,
}

/// What the planner remembers between evaluations.
#[derive(Debug, Clone, Default)]
pub struct PlannerState {
    /// The last applied scale-out (starts the out-cooldown).
    pub last_out: Option<Applied>,
    /// The last applied scale-in (starts the in-cooldown).
    pub last_in: Option<Applied>,
    /// Recent combined recommendations for stabilization (time, count).
    pub history: VecDeque<(Timestamp, u32)>,
    /// Applied changes within the longest rate-limit period.
    pub changes: VecDeque<Applied>,
}

/// One service's policies and planner: the whole pure decision engine.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Service name.
    pub service: String,
    /// Policies, in configuration order.
    pub policies: Vec<NamedPolicy>,
    /// Planner settings.
    pub planner: PlannerConfig,
}

/// Everything that changes between evaluations of one service.
#[derive(Debug, Clone, Default)]
pub struct EngineState {
    /// One state per policy, same order as `Engine::policies`.
    pub policies: Vec<PolicyState>,
    /// The planner's memory.
    pub planner: PlannerState,
}

impl Engine {
    /// The initial state for this engine.
    pub fn initial_state(&self) -> EngineState {
        EngineState {
            policies: self.policies.iter().map(|p| p.policy.initial_state()).collect(),
            planner: PlannerState::default(),
        }
    }

    /// Evaluates every policy and plans. Records the combined recommendation in the
    /// stabilization history; call [`EngineState::applied`] once the decision's action
    /// has actually been carried out.
    pub fn evaluate(
        &self,
        _state: &mut EngineState,
        _capacity: Capacity,
        _metrics: &Observations,
        _now: Timestamp,
    ) -> Decision {
        unimplemented!("planner")
    }
}

impl EngineState {
    /// Records that `decision` was carried out at `now` (starts cooldowns, counts toward
    /// rate limits). Holds and dry-runs record nothing.
    pub fn applied(&mut self, _decision: &Decision, _now: Timestamp) {
        unimplemented!("planner applied")
    }
}
