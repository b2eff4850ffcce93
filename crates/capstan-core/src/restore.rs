//! Restart: rebuild what cooldowns and rate limits need from the decisions a store kept.
//!
//! The planner's memory (the last scale-out and scale-in, the changes within the longest
//! rate-limit period) is rebuilt by replaying, oldest first, the newest changes that were
//! carried out, exactly as the control loop recorded them when they happened
//! ([`PlannerState::applied`] at the decision's instant). The scale-in stabilization
//! history is rebuilt from the newest decisions of any kind
//! ([`PlannerState::restore_stabilization`]). Policy state (streaks) starts afresh, as on
//! a first start.

use jiff::Timestamp;

use crate::clock::sub;
use crate::decision::{Decision, StepKind};
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

impl PlannerState {
    /// Rebuilds the scale-in stabilization history at `now` from `recent`, the newest
    /// decisions of the service of any kind, newest first.
    ///
    /// A store may skip a hold identical to the previous one, so each decision's
    /// combined count (after the missing-data rule, as the planner records it) is taken
    /// to stay in force until the next decision, and the newest one until `now`: the
    /// restored window is never lower than the one the planner had, so a restart never
    /// lets a scale-in through sooner (at worst it waits one window longer).
    pub fn restore_stabilization(
        &mut self,
        config: &PlannerConfig,
        recent: &[Decision],
        now: Timestamp,
    ) {
        self.history.clear();
        if config.stabilization.is_zero() {
            return;
        }
        let cutoff = sub(now, config.stabilization);
        let mut oldest_first = recent.iter().rev().filter(|d| d.at <= now).peekable();
        while let Some(d) = oldest_first.next() {
            let until = oldest_first.peek().map_or(now, |next| next.at);
            if until <= cutoff {
                continue;
            }
            let count = d
                .steps
                .iter()
                .find(|s| s.kind == StepKind::MissingData)
                .map_or(d.combined, |s| s.to);
            self.remember(until, count);
        }
    }
}

impl Engine {
    /// The state to start with at `now` after a restart: the initial state, with the
    /// planner's memory rebuilt from `last_applied` (this service's newest carried-out
    /// changes, newest first; decisions of other services are ignored). See
    /// [`PlannerState::restore`].
    ///
    /// See [`restore_state_with`](Self::restore_state_with) to restore the stabilization
    /// history as well.
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

    /// [`restore_state`](Self::restore_state), plus the stabilization history rebuilt
    /// from `recent`, the service's newest decisions of any kind, newest first (see
    /// [`PlannerState::restore_stabilization`]).
    pub fn restore_state_with(
        &self,
        last_applied: &[Decision],
        recent: &[Decision],
        now: Timestamp,
    ) -> EngineState {
        let mut state = self.restore_state(last_applied, now);
        let own: Vec<Decision> = recent
            .iter()
            .filter(|d| d.service == self.service)
            .cloned()
            .collect();
        state
            .planner
            .restore_stabilization(&self.planner, &own, now);
        state
    }
}
