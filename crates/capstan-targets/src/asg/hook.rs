//! Lifecycle-hook mode: terminations capstan did not start (an instance refresh, a
//! manual termination, the group's own scale-in) drained safely before the host goes.
//!
//! With `termination_hook` set, the group has an `autoscaling:EC2_INSTANCE_TERMINATING`
//! lifecycle hook of that name, and Auto Scaling holds each terminating instance in
//! `Terminating:Wait` until the hook is completed (or its heartbeat timeout passes). At
//! each observation, for every instance of the group in `Terminating:Wait`:
//!
//! 1. its container instance, if ACTIVE, is set DRAINING: ECS starts its service tasks
//!    elsewhere within each service's minimum healthy and maximum percent, and then
//!    stops them here;
//! 2. while any task is left on it, the hook's heartbeat is recorded every
//!    `hook_heartbeat_every` (keep it below the hook's `HeartbeatTimeout`), so Auto
//!    Scaling keeps waiting (AWS caps a wait at 100 heartbeat timeouts or 48 hours);
//! 3. once it holds no task (none running, pending or stopping, nothing reserved), or
//!    has no container instance at all (no ECS task can run there), the hook is
//!    completed with `CONTINUE` and Auto Scaling terminates it.
//!
//! Hosts capstan removes itself pass through the hook too: they are empty by then, and
//! are let go at the next observation. Errors are logged and retried at the next
//! observation. What is waited on lives in memory: after a restart the hosts still in
//! `Terminating:Wait` are found again by the first observation.

use std::collections::BTreeSet;

use capstan_aws_api::limits::UPDATE_CONTAINER_INSTANCES_STATE;
use capstan_aws_api::{
    AutoScaling, ContainerInstanceStatus, Ecs, InstanceLifecycleState, LifecycleActionResult,
};
use capstan_core::clock::elapsed;

use super::removal::State;
use super::{AsgTarget, Snapshot, is_empty};

impl<E: Ecs, A: AutoScaling> AsgTarget<E, A> {
    /// Moves every instance held by the termination hook along (see the module docs).
    pub(super) async fn tend_hooked(&self, state: &mut State, snap: &Snapshot) {
        let Some(hook) = self.spec.termination_hook.as_deref() else {
            return;
        };
        let now = self.clock.now();
        let waiting: BTreeSet<&str> = snap
            .group
            .instances
            .iter()
            .filter(|i| i.lifecycle_state == InstanceLifecycleState::TerminatingWait)
            .map(|i| i.instance_id.as_str())
            .collect();
        // Forget the ones no longer waiting.
        state.hooked.retain(|id, _| waiting.contains(id.as_str()));
        let mut to_drain = Vec::new();
        for &id in &waiting {
            let host = snap.host(id);
            let empty = host.is_none_or(|h| {
                is_empty(h)
                    || matches!(
                        h.status,
                        ContainerInstanceStatus::Deregistering | ContainerInstanceStatus::Inactive
                    )
            });
            if empty {
                match self
                    .asg
                    .complete_lifecycle_action(
                        &self.spec.group,
                        hook,
                        id,
                        LifecycleActionResult::Continue,
                    )
                    .await
                {
                    Ok(()) => {
                        tracing::info!(target_name = %self.name, instance = id, hook, "host held by the termination hook is empty: let go");
                        state.hooked.remove(id);
                    }
                    Err(e) => {
                        tracing::warn!(target_name = %self.name, instance = id, hook, error = %e, "cannot complete the termination hook; trying again at the next observation");
                    }
                }
                continue;
            }
            let since = *state.hooked.entry(id.to_owned()).or_insert(now);
            if let Some(h) = host
                && h.status == ContainerInstanceStatus::Active
            {
                to_drain.push(h.arn.clone());
            }
            if elapsed(since, now) >= self.spec.hook_heartbeat_every {
                match self
                    .asg
                    .record_lifecycle_action_heartbeat(&self.spec.group, hook, id)
                    .await
                {
                    Ok(()) => {
                        state.hooked.insert(id.to_owned(), now);
                    }
                    Err(e) => {
                        tracing::warn!(target_name = %self.name, instance = id, hook, error = %e, "cannot record the termination hook's heartbeat; trying again at the next observation");
                    }
                }
            }
        }
        for batch in to_drain.chunks(UPDATE_CONTAINER_INSTANCES_STATE) {
            match self
                .ecs
                .update_container_instances_state(
                    &self.spec.cluster,
                    batch,
                    ContainerInstanceStatus::Draining,
                )
                .await
            {
                Ok(failures) if failures.is_empty() => {
                    tracing::info!(target_name = %self.name, hosts = ?batch, "hosts held by the termination hook set DRAINING");
                }
                Ok(failures) => {
                    tracing::warn!(target_name = %self.name, ?failures, "ECS did not set some hosts held by the termination hook DRAINING; trying again at the next observation");
                }
                Err(e) => {
                    tracing::warn!(target_name = %self.name, error = %e, "cannot set hosts held by the termination hook DRAINING; trying again at the next observation");
                }
            }
        }
    }
}
