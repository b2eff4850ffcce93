//! The EC2 Auto Scaling operations behind [`capstan_aws_api::AutoScaling`]
//! (AWS-SEMANTICS §6).

use capstan_aws_api::{
    AutoScalingGroup, AwsError, AwsErrorKind, InstanceLifecycleState, LifecycleActionResult,
};

use super::State;
use super::ecs_api::{invalid, not_found};

/// A conflict error of `operation`.
fn conflict(operation: &'static str, message: String) -> AwsError {
    AwsError::new(operation, AwsErrorKind::Conflict, message)
}

impl State {
    /// The group named `name`, or a not-found error.
    fn group_for(&self, op: &'static str, name: &str) -> Result<usize, AwsError> {
        self.groups
            .iter()
            .position(|g| g.spec.name == name)
            .ok_or_else(|| not_found(op, format!("AutoScalingGroup name not found: {name}")))
    }

    /// The not-yet-terminated instance `id` of group `g`, or a not-found error.
    fn group_instance(&self, op: &'static str, g: usize, id: &str) -> Result<usize, AwsError> {
        self.groups
            .get(g)
            .and_then(|grp| {
                grp.instances
                    .iter()
                    .copied()
                    .find(|i| self.instances.get(*i).is_some_and(|i| i.id == id))
            })
            .ok_or_else(|| {
                not_found(
                    op,
                    format!("The instance {id} is not part of Auto Scaling group"),
                )
            })
    }

    /// `DescribeAutoScalingGroups` for one group.
    pub(crate) fn describe_group(&self, name: &str) -> Result<AutoScalingGroup, AwsError> {
        let g = self.group_for("DescribeAutoScalingGroups", name)?;
        let grp = self
            .groups
            .get(g)
            .ok_or_else(|| not_found("DescribeAutoScalingGroups", name.to_owned()))?;
        Ok(AutoScalingGroup {
            name: grp.spec.name.clone(),
            min: grp.spec.min,
            max: grp.spec.max,
            desired: grp.desired,
            instances: self.group_instances(&grp.instances),
        })
    }

    /// `SetDesiredCapacity`: within min..=max.
    pub(crate) fn set_desired_capacity(
        &mut self,
        name: &str,
        desired: u32,
    ) -> Result<(), AwsError> {
        const OP: &str = "SetDesiredCapacity";
        let g = self.group_for(OP, name)?;
        let Some(grp) = self.groups.get_mut(g) else {
            return Ok(());
        };
        if desired < grp.spec.min || desired > grp.spec.max {
            return Err(invalid(
                OP,
                format!(
                    "New SetDesiredCapacity value {desired} is outside min {} and max {} of the AutoScalingGroup",
                    grp.spec.min, grp.spec.max
                ),
            ));
        }
        if grp.desired != desired {
            grp.desired = desired;
            self.changed();
        }
        Ok(())
    }

    /// `SetInstanceProtection` for instances of the group that are not terminating.
    pub(crate) fn set_instance_protection(
        &mut self,
        name: &str,
        ids: &[String],
        protected: bool,
    ) -> Result<(), AwsError> {
        const OP: &str = "SetInstanceProtection";
        let g = self.group_for(OP, name)?;
        let mut found = Vec::new();
        for id in ids {
            let i = self.group_instance(OP, g, id)?;
            let state = self
                .instances
                .get(i)
                .map_or(InstanceLifecycleState::Other, |i| i.lifecycle);
            if !matches!(
                state,
                InstanceLifecycleState::Pending
                    | InstanceLifecycleState::PendingWait
                    | InstanceLifecycleState::InService
            ) {
                return Err(conflict(
                    OP,
                    format!(
                        "The instance {id} is not in a state that allows protection ({state:?})"
                    ),
                ));
            }
            found.push(i);
        }
        for i in found {
            if let Some(inst) = self.instances.get_mut(i) {
                inst.protected = protected;
            }
        }
        self.changed();
        Ok(())
    }

    /// `TerminateInstanceInAutoScalingGroup` (protection does not apply; termination
    /// hooks and managed draining do).
    pub(crate) fn terminate_instance(
        &mut self,
        id: &str,
        decrement_desired: bool,
    ) -> Result<(), AwsError> {
        const OP: &str = "TerminateInstanceInAutoScalingGroup";
        let inst = *self
            .instance_ids
            .get(id)
            .ok_or_else(|| not_found(OP, format!("Instance Id not found: {id}")))?;
        let Some(i) = self.instances.get(inst) else {
            return Err(not_found(OP, format!("Instance Id not found: {id}")));
        };
        if !matches!(
            i.lifecycle,
            InstanceLifecycleState::Pending
                | InstanceLifecycleState::PendingWait
                | InstanceLifecycleState::InService
        ) {
            return Err(conflict(
                OP,
                format!("The instance {id} is already {:?}", i.lifecycle),
            ));
        }
        let g = i.group;
        if decrement_desired {
            let Some(grp) = self.groups.get_mut(g) else {
                return Ok(());
            };
            if grp.desired <= grp.spec.min {
                return Err(invalid(
                    OP,
                    format!(
                        "Currently, desiredCapacity={} and minSize={}; decrementing desired capacity would violate the group's min size",
                        grp.desired, grp.spec.min
                    ),
                ));
            }
            grp.desired -= 1;
        }
        self.begin_termination(inst, true);
        self.changed();
        Ok(())
    }

    /// The hook index and instance index of a lifecycle action call.
    fn lifecycle_action(
        &self,
        op: &'static str,
        group: &str,
        hook: &str,
        id: &str,
    ) -> Result<(usize, usize), AwsError> {
        let g = self.group_for(op, group)?;
        let h = self
            .groups
            .get(g)
            .and_then(|grp| grp.spec.hooks.iter().position(|h| h.name == hook))
            .ok_or_else(|| not_found(op, format!("No Lifecycle Hook found: {hook}")))?;
        let i = self.group_instance(op, g, id)?;
        let waiting = self
            .instances
            .get(i)
            .is_some_and(|inst| inst.waits.iter().any(|w| w.hook == h));
        if !waiting {
            return Err(conflict(
                op,
                format!("No active Lifecycle Action found with instance ID {id} for hook {hook}"),
            ));
        }
        Ok((h, i))
    }

    /// `CompleteLifecycleAction`.
    pub(crate) fn complete_lifecycle_action(
        &mut self,
        group: &str,
        hook: &str,
        id: &str,
        result: LifecycleActionResult,
    ) -> Result<(), AwsError> {
        let (h, i) = self.lifecycle_action("CompleteLifecycleAction", group, hook, id)?;
        self.finish_hook(i, h, result);
        Ok(())
    }

    /// `RecordLifecycleActionHeartbeat`.
    pub(crate) fn record_heartbeat(
        &mut self,
        group: &str,
        hook: &str,
        id: &str,
    ) -> Result<(), AwsError> {
        let (h, i) = self.lifecycle_action("RecordLifecycleActionHeartbeat", group, hook, id)?;
        self.heartbeat(i, h);
        Ok(())
    }
}
