//! Restart: rebuild what cooldowns and rate limits need from the decisions a store kept.
//!
//! The planner's memory (the last scale-out and scale-in, the changes within the longest
//! rate-limit period) is rebuilt by replaying, oldest first, the newest changes that were
//! carried out, exactly as the control loop recorded them when they happened
//! ([`PlannerState::applied`] at the decision's instant). Policy state (streaks) and the
//! stabilization history start afresh, as on a first start.

use jiff::Timestamp;

use crate::decision::Decision;
use crate::planner::{Engine, EngineState, PlannerConfig, PlannerState};

/// How many carried-out changes a restart should read back: enough for the last
/// scale-out, the last scale-in and every change a rate limit can still count at any
/// realistic setting.
pub const RESTORE_LIMIT: usize = 1000;

impl PlannerState {
    /// The planner's memory rebuilt at `now` from `last_applied`, the newest carried-out
    /// changes of the service, newest first (as a store's `last_applied` returns them).
    ///
    /// Holds and dry-runs are ignored, as are changes dated after `now` (a clock that went
    /// back must not stretch a cooldown). Changes only the bounds made start no cooldown,
    /// as when they happened.
    pub fn restore(config: &PlannerConfig, last_applied: &[Decision], now: Timestamp) -> Self {
        let mut state = PlannerState {
            change_horizon: config.rate_limits.longest_period(),
            ..PlannerState::default()
        };
        for decision in last_applied.iter().rev().filter(|d| d.at <= now) {
            state.applied(decision, decision.at);
        }
        let horizon = state.change_horizon;
        crate::planner::prune_changes(&mut state.changes, horizon, now);
        state
    }
}

impl Engine {
    /// The state to start with at `now` after a restart: the initial state, with the
    /// planner's memory rebuilt from `last_applied` (this service's newest carried-out
    /// changes, newest first; decisions of other services are ignored). See
    /// [`PlannerState::restore`].
    pub fn restore_state(&self, last_applied: &[Decision], now: Timestamp) -> EngineState {
        let own: Vec<Decision> = last_applied
            .iter()
            .filter(|d| d.service == self.service)
            .cloned()
            .collect();
        EngineState {
            planner: PlannerState::restore(&self.planner, &own, now),
            ..self.initial_state()
        }
    }
}
