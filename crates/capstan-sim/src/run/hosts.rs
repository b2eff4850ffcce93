//! The hosts of a run's EC2 cluster: what scales them, stepped after the service's
//! controller in every step.
//!
//! - capstan: a second [`ServiceLoop`], built from the config's service whose target
//!   `scales = "hosts"`, ticks at its own interval on the same metric windows as the
//!   service's loop and carries its decisions out through the Auto Scaling group target
//!   of `capstan-targets` ([`AsgTarget`]), which drains a host until its tasks run
//!   elsewhere before terminating it;
//! - AWS: ECS capacity provider managed scaling ([`Baseline::step_cluster`]) sees the
//!   cluster every second; before each step, managed termination protection is applied
//!   ([`managed_protection`] through `SetInstanceProtection`), and the group's
//!   instances are drained by ECS managed draining when Auto Scaling terminates them
//!   (the world's `managed_draining`, set by the runner for these runs).
//!
//! Runs without host scaling keep the group at its initial desired capacity.

use std::time::Duration;

use capstan_aws_api::AutoScaling;
use capstan_control::ServiceLoop;
use capstan_core::clock::VirtualClock;
use capstan_targets::asg::AsgTarget;
use capstan_world::{AutoScalingGroupSpec, World};
use jiff::Timestamp;

use super::{Tick, ready, tick_due};
use crate::baseline::{Baseline, ClusterView, TaskGroup, managed_protection};

/// What scales one run's hosts.
pub(super) enum HostScaler {
    /// capstan's loop on the Auto Scaling group target.
    Capstan(Box<CapstanHosts>),
    /// AWS managed scaling of the capacity provider.
    Aws(Box<AwsHosts>),
}

/// capstan's host loop.
pub(super) struct CapstanHosts {
    pub(super) service_loop: ServiceLoop<AsgTarget<World, World>, VirtualClock>,
    pub(super) interval: Duration,
    pub(super) next_tick: Timestamp,
}

/// AWS's managed scaling, and the view of the cluster it last read.
pub(super) struct AwsHosts {
    pub(super) baseline: Baseline,
    pub(super) cluster: String,
    pub(super) group: AutoScalingGroupSpec,
    pub(super) view: Option<ClusterView>,
    pub(super) generation: Option<u64>,
}

impl HostScaler {
    /// One step at `now`: the group's desired-capacity change carried out, if any, and
    /// the decision as a sentence (capstan's starts with the hosts service's name, AWS's
    /// with `hosts: `).
    pub(super) fn step(&mut self, now: Timestamp, world: &World) -> Result<Tick, String> {
        match self {
            Self::Capstan(c) => c.step(now),
            Self::Aws(a) => a.step(now, world),
        }
    }
}

impl CapstanHosts {
    fn step(&mut self, now: Timestamp) -> Result<Tick, String> {
        tick_due(
            &mut self.service_loop,
            now,
            self.interval,
            &mut self.next_tick,
        )
    }
}

impl AwsHosts {
    fn step(&mut self, now: Timestamp, world: &World) -> Result<Tick, String> {
        self.refresh(world)?;
        let Some(view) = &self.view else {
            return Err(format!(
                "the cluster {} or its group {} disappeared from the world",
                self.cluster, self.group.name
            ));
        };
        // Managed termination protection: instances with tasks are protected, empty
        // ones are not, so Auto Scaling only ever terminates empty instances.
        let changes = managed_protection(view);
        for protect in [true, false] {
            let ids: Vec<String> = changes
                .iter()
                .filter(|(_, p)| *p == protect)
                .map(|(id, _)| id.clone())
                .collect();
            if ids.is_empty() {
                continue;
            }
            ready(world.set_instance_protection(&self.group.name, &ids, protect))
                .ok_or("the world did not answer at once")?
                .map_err(|e| e.to_string())?;
        }
        if !changes.is_empty() {
            self.refresh(world)?;
        }
        let Some(view) = &self.view else {
            return Ok((None, None));
        };
        let Some(action) = self.baseline.step_cluster(now, view) else {
            return Ok((None, None));
        };
        let from = view.desired;
        ready(world.set_desired_capacity(&self.group.name, action.to))
            .ok_or("the world did not answer at once")?
            .map_err(|e| e.to_string())?;
        Ok((
            (from != action.to).then_some((from, action.to)),
            Some(format!("hosts: {from} → {}: {}", action.to, action.reason)),
        ))
    }

    /// Re-reads the cluster when the world changed since the last read.
    fn refresh(&mut self, world: &World) -> Result<(), String> {
        let generation = world.generation();
        if self.generation == Some(generation) {
            return Ok(());
        }
        self.generation = Some(generation);
        let state = world
            .cluster_state(&self.cluster)
            .ok_or_else(|| format!("the cluster {} disappeared from the world", self.cluster))?;
        let unplaced = vec![TaskGroup::from_totals(
            state.unplaced_tasks,
            state.unplaced_cpu,
            state.unplaced_memory,
        )];
        self.view = ClusterView::from_world(&state, &self.group, unplaced);
        Ok(())
    }
}
