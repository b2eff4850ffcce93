//! The ELBv2 operations behind [`capstan_aws_api::Elb`] (AWS-SEMANTICS §5).
//!
//! Targets are the tasks of the service owning the target group: an awsvpc task is an
//! IP target (its private IP, on the group's port); a bridge-mode task is an instance
//! target (the EC2 instance id of its host, on its own host port, so tasks sharing an
//! instance are told apart by port). A target capstan deregisters drains like one ECS
//! deregisters (`draining`, then gone), but its task stays RUNNING; registering it
//! again starts over at `initial`. Unknown targets (an IP, or an instance and port, no
//! task of the group's service has) are rejected (`InvalidTarget`, as AWS does for an
//! IP outside the VPC); registering a task that is already stopping is refused.

use std::time::Duration;

use capstan_aws_api::{AwsError, AwsErrorKind, TargetHealth, TargetHealthState, TargetRef};

use super::ecs_api::not_found;
use super::{State, TargetPhase, Task};

impl State {
    /// The target group `arn`, or a not-found error.
    fn target_group_for(&self, op: &'static str, arn: &str) -> Result<usize, AwsError> {
        self.target_groups
            .iter()
            .position(|g| g.spec.arn == arn)
            .ok_or_else(|| not_found(op, format!("One or more target groups not found: {arn}")))
    }

    /// The id task `t` is registered under: the EC2 instance id of its host for a
    /// bridge-mode task (an instance target), else its private IP.
    fn target_id<'a>(&'a self, t: &'a Task) -> &'a str {
        match t.host_port {
            Some(_) => t
                .host
                .and_then(|h| self.instances.get(h))
                .map_or("", |i| i.id.as_str()),
            None => &t.ip,
        }
    }

    /// The slot of the not-yet-STOPPED task of target group `g` that `target` names:
    /// by IP (any port), or by instance id and host port.
    fn target_task(&self, g: usize, target: &TargetRef) -> Option<usize> {
        let svc = self.services.get(self.target_groups.get(g)?.service)?;
        svc.tasks.iter().copied().find(|s| {
            self.task(*s).is_some_and(|t| {
                self.target_id(t) == target.id && t.host_port.is_none_or(|p| p == target.port)
            })
        })
    }

    /// Resolves every target or fails naming the first unknown one.
    fn target_slots(
        &self,
        op: &'static str,
        g: usize,
        targets: &[TargetRef],
    ) -> Result<Vec<usize>, AwsError> {
        targets
            .iter()
            .map(|t| {
                self.target_task(g, t).ok_or_else(|| {
                    AwsError::new(
                        op,
                        AwsErrorKind::NotFound,
                        format!(
                            "InvalidTarget: {}:{} is not a task of this world",
                            t.id, t.port
                        ),
                    )
                })
            })
            .collect()
    }

    /// `DescribeTargetHealth`: every registered target, draining ones included.
    pub(crate) fn describe_target_health(&self, arn: &str) -> Result<Vec<TargetHealth>, AwsError> {
        let g = self.target_group_for("DescribeTargetHealth", arn)?;
        let Some(svc) = self
            .target_groups
            .get(g)
            .and_then(|g| self.services.get(g.service))
        else {
            return Ok(Vec::new());
        };
        Ok(svc
            .tasks
            .iter()
            .filter_map(|s| self.task(*s))
            .filter_map(|t| {
                let target = t.target?;
                let (state, reason) = match target.phase {
                    TargetPhase::Initial => (
                        TargetHealthState::Initial,
                        Some("Elb.RegistrationInProgress"),
                    ),
                    TargetPhase::Healthy => (TargetHealthState::Healthy, None),
                    TargetPhase::Draining { .. } => (
                        TargetHealthState::Draining,
                        Some("Target.DeregistrationInProgress"),
                    ),
                };
                Some(TargetHealth {
                    target: TargetRef {
                        id: self.target_id(t).to_owned(),
                        port: target.port,
                    },
                    state,
                    reason: reason.map(str::to_owned),
                })
            })
            .collect())
    }

    /// `RegisterTargets`: unregistered or draining targets start over at `initial`.
    pub(crate) fn register_targets(
        &mut self,
        arn: &str,
        targets: &[TargetRef],
    ) -> Result<(), AwsError> {
        const OP: &str = "RegisterTargets";
        let g = self.target_group_for(OP, arn)?;
        let slots = self.target_slots(OP, g, targets)?;
        if let Some(t) = slots
            .iter()
            .filter_map(|s| self.task(*s))
            .find(|t| !t.live())
        {
            return Err(AwsError::new(
                OP,
                AwsErrorKind::Conflict,
                format!(
                    "task {} is stopping; its target cannot be registered",
                    t.arn
                ),
            ));
        }
        let hc = self
            .target_groups
            .get(g)
            .map_or(Duration::ZERO, |g| g.spec.health_check_time);
        for (slot, target) in slots.into_iter().zip(targets) {
            let registered = self.task(slot).and_then(|t| t.target).is_some_and(|g| {
                g.port == target.port
                    && matches!(g.phase, TargetPhase::Initial | TargetPhase::Healthy)
            });
            if !registered {
                self.register_target_on(slot, target.port, hc, false);
            }
        }
        Ok(())
    }

    /// `DeregisterTargets`: registered targets start draining; others are left alone.
    pub(crate) fn deregister_targets(
        &mut self,
        arn: &str,
        targets: &[TargetRef],
    ) -> Result<(), AwsError> {
        const OP: &str = "DeregisterTargets";
        let g = self.target_group_for(OP, arn)?;
        let slots = self.target_slots(OP, g, targets)?;
        for (slot, target) in slots.into_iter().zip(targets) {
            let on_port = self
                .task(slot)
                .and_then(|t| t.target)
                .is_some_and(|g| g.port == target.port);
            if on_port {
                self.begin_drain(slot);
                self.check_idle_drain(slot);
            }
        }
        Ok(())
    }

    /// `deregistration_delay.timeout_seconds` of the group.
    pub(crate) fn deregistration_delay(&self, arn: &str) -> Result<Duration, AwsError> {
        let g = self.target_group_for("DescribeTargetGroupAttributes", arn)?;
        Ok(self
            .target_groups
            .get(g)
            .map_or(Duration::ZERO, |g| g.spec.deregistration_delay))
    }
}
