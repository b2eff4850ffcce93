//! Live reload: which of a service's engine state survives a new configuration.
//!
//! A reloaded service keeps what protects it from flapping: the planner's memory (the
//! last scale-out and scale-in, so cooldowns keep running; the stabilization history;
//! the changes counted by rate limits), and any operator state the engine carries. A
//! policy keeps its own state (threshold streaks, the backlog policy's dynamic target)
//! only if a policy of the same name and the very same settings existed before; a new
//! or changed policy starts afresh, as at start-up.

use crate::planner::{Engine, EngineState};
use crate::policy::PolicyState;

impl Engine {
    /// The state to continue with when `self` replaces `old`, whose state was `state`
    /// (see the [module docs](self)).
    pub fn carry_state(&self, old: &Engine, mut state: EngineState) -> EngineState {
        let mut previous: Vec<Option<PolicyState>> = std::mem::take(&mut state.policies)
            .into_iter()
            .map(Some)
            .collect();
        state.policies = self
            .policies
            .iter()
            .map(|policy| {
                old.policies
                    .iter()
                    .position(|o| o == policy)
                    .and_then(|i| previous.get_mut(i).and_then(Option::take))
                    .unwrap_or_else(|| policy.policy.initial_state())
            })
            .collect();
        state
    }
}
