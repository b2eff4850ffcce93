//! Live reload: the planner's memory survives; a policy's state survives only when the
//! same policy (same name, same settings) is in the new configuration.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::planner::{Applied, Engine, EngineState};
use capstan_core::policy::{Growth, Policy, PolicyState};
use capstan_core::testing::{planner_config, three_policies};

/// An engine state as if the service had scaled out and its threshold policy had fired
/// three times in a row.
fn busy_state(engine: &Engine) -> EngineState {
    let now = VirtualClock::at_epoch().now();
    let mut state = engine.initial_state();
    state.planner.last_out = Some(Applied {
        at: now,
        from: 2,
        to: 5,
    });
    state.planner.history.push_back((now, 5));
    for policy in &mut state.policies {
        if let PolicyState::Threshold(t) = policy {
            t.direction = 1;
            t.streak = 3;
            t.last_desired = Some(5);
        }
    }
    state
}

fn threshold_streak(state: &EngineState, index: usize) -> u32 {
    match &state.policies[index] {
        PolicyState::Threshold(t) => t.streak,
        other => panic!("policy {index} is not a threshold: {other:?}"),
    }
}

#[test]
fn new_bounds_keep_the_cooldown_and_every_policy_state() {
    let old = three_policies("svc", planner_config(1, 10), Growth::Exponential, None);
    let state = busy_state(&old);
    let mut new = old.clone();
    new.planner = planner_config(2, 20);
    new.planner.cooldown.out = Duration::from_secs(600);
    let carried = new.carry_state(&old, state.clone());
    assert_eq!(carried.planner, state.planner, "cooldown and history kept");
    assert_eq!(carried.policies.len(), 3);
    assert_eq!(
        threshold_streak(&carried, 2),
        3,
        "unchanged policy keeps its streak"
    );
}

#[test]
fn a_changed_policy_starts_afresh_and_the_others_follow_their_names() {
    let old = three_policies("svc", planner_config(1, 10), Growth::Exponential, None);
    let state = busy_state(&old);

    // The same policies in another order: states follow the policies.
    let mut reordered = old.clone();
    reordered.policies.reverse();
    let carried = reordered.carry_state(&old, state.clone());
    assert_eq!(threshold_streak(&carried, 0), 3);

    // The threshold's growth changed: its streak starts again.
    let mut changed = old.clone();
    if let Policy::Threshold(t) = &mut changed.policies[2].policy {
        t.growth = Growth::Linear;
    }
    let carried = changed.carry_state(&old, state.clone());
    assert_eq!(threshold_streak(&carried, 2), 0);
    assert_eq!(carried.planner, state.planner);

    // A removed policy's state goes; a new one starts from its initial state.
    let mut fewer = old.clone();
    let threshold = fewer.policies.pop().map(|p| p.policy);
    let carried = fewer.carry_state(&old, state.clone());
    assert_eq!(carried.policies.len(), 2);
    let mut renamed = fewer.clone();
    if let Some(policy) = threshold {
        renamed.policies.push(capstan_core::policy::NamedPolicy {
            name: "cpu-mem-v2".into(),
            policy,
        });
    }
    let carried = renamed.carry_state(&old, state);
    assert_eq!(
        threshold_streak(&carried, 2),
        0,
        "a renamed policy is a new one"
    );
}
