//! The ECS service scheduler (AWS-SEMANTICS §4, §6), run after every change.
//!
//! A service's live tasks (not yet told to stop) are *incoming* (of the PRIMARY
//! deployment, on a host that takes placements) or *outgoing* (of an older deployment,
//! or on a DRAINING container instance: both are replaced the same way, E6/E16).
//! Each run:
//! 1. starts `desired − incoming` tasks, within `maximumPercent` of `desired` for all
//!    live tasks; Fargate puts each in the zone with the fewest tasks of the service,
//!    EC2 on an ACTIVE container instance with room: zone spread, then binpack on
//!    memory. A task that fits nowhere is *unplaced* and retried on the next run;
//! 2. stops incoming tasks above `desired`: pending ones first, then ECS's scale-in
//!    choice (E6): the zone with most tasks of the service, in it the instance with most
//!    tasks, then an arbitrary one (seeded). Protected tasks are never chosen (E8), so
//!    the service may stay above `desired` until their protection lapses;
//! 3. stops outgoing tasks that are not healthy at once (PENDING tasks on a DRAINING
//!    host, E16) and healthy ones only as far as `minimumHealthyPercent` of `desired`
//!    stays healthy; protected outgoing tasks are kept until protection ends (E8);
//! 4. drops old deployments without tasks and marks the PRIMARY one COMPLETED once it
//!    alone runs `desired` healthy tasks.
//!
//! "Healthy" is RUNNING with a `healthy` target (RUNNING alone without a target
//! group). The deployment circuit breaker is not modelled: tasks in this world never
//! fail to start.

use std::collections::HashMap;

use capstan_aws_api::{ContainerInstanceStatus, DeploymentRollout};
use rand::Rng;

use super::State;
use crate::spec::LaunchType;

/// A service's live tasks, sorted for the scheduler.
struct Census {
    /// Live tasks of the PRIMARY deployment on hosts taking placements.
    incoming: Vec<usize>,
    /// Live tasks to replace (older deployment or DRAINING host).
    outgoing: Vec<usize>,
    /// Healthy live tasks (incoming and outgoing).
    healthy: usize,
    /// Healthy incoming tasks.
    incoming_healthy: usize,
}

impl State {
    /// One scheduler run for service `si`.
    pub(super) fn schedule_service(&mut self, si: usize) {
        let Some(svc) = self.services.get(si) else {
            return;
        };
        let desired = svc.desired as usize;
        let max_pct = svc.spec.maximum_percent as usize;
        let min_pct = svc.spec.minimum_healthy_percent as usize;
        let census = self.census(si);
        let live = census.incoming.len() + census.outgoing.len();
        let max_total = (desired * max_pct / 100).max(desired);
        let min_healthy = (desired * min_pct).div_ceil(100);

        let start = desired
            .saturating_sub(census.incoming.len())
            .min(max_total.saturating_sub(live));
        let placed = self.launch(si, start, &census.incoming, false);
        let unplaced = u32::try_from(start - placed).unwrap_or(u32::MAX);
        if let Some(svc) = self.services.get_mut(si)
            && svc.unplaced != unplaced
        {
            svc.unplaced = unplaced;
            self.generation += 1;
        }

        if census.incoming.len() > desired {
            self.scale_in(si, &census.incoming, census.incoming.len() - desired);
        }
        if !census.outgoing.is_empty() {
            self.retire(si, &census.outgoing, census.healthy, min_healthy);
        }
        let steady = census.outgoing.is_empty() && census.incoming_healthy >= desired;
        self.update_deployments(si, steady);
    }

    /// Sorts the live tasks of service `si`.
    fn census(&self, si: usize) -> Census {
        let mut c = Census {
            incoming: Vec::new(),
            outgoing: Vec::new(),
            healthy: 0,
            incoming_healthy: 0,
        };
        let Some(svc) = self.services.get(si) else {
            return c;
        };
        // Allocated once at its final size (the scheduler runs after every change).
        c.incoming.reserve_exact(svc.tasks.len());
        let primary = svc.deployments.first().map_or(0, |d| d.serial);
        for &slot in &svc.tasks {
            let Some(t) = self.task(slot) else { continue };
            if !t.live() {
                continue;
            }
            let healthy = self.healthy(slot);
            c.healthy += usize::from(healthy);
            if t.deployment != primary || self.on_draining_host(t.host) {
                c.outgoing.push(slot);
            } else {
                c.incoming.push(slot);
                c.incoming_healthy += usize::from(healthy);
            }
        }
        c
    }

    /// Whether `host` is a DRAINING container instance.
    fn on_draining_host(&self, host: Option<usize>) -> bool {
        host.and_then(|h| self.instances.get(h))
            .and_then(|i| i.ci.as_ref())
            .is_some_and(|ci| ci.status == ContainerInstanceStatus::Draining)
    }

    /// Starts up to `n` tasks of service `si` (`warm`: already RUNNING), balancing zones
    /// against `incoming`. Returns how many were placed.
    pub(crate) fn launch(&mut self, si: usize, n: usize, incoming: &[usize], warm: bool) -> usize {
        if n == 0 {
            return 0;
        }
        let Some((launch_type, cluster, cpu, memory)) = self.services.get(si).map(|s| {
            (
                s.spec.launch_type,
                s.cluster,
                s.spec.task_cpu,
                s.spec.task_memory,
            )
        }) else {
            return 0;
        };
        let mut per_zone = vec![0usize; self.config.zones.len()];
        for t in incoming.iter().filter_map(|s| self.task(*s)) {
            if let Some(z) = per_zone.get_mut(t.zone) {
                *z += 1;
            }
        }
        let mut placed = 0;
        for _ in 0..n {
            let spot = match launch_type {
                LaunchType::Fargate => fewest(&per_zone).map(|z| (z, None)),
                LaunchType::Ec2 => self
                    .place_on_host(cluster, cpu, memory, &per_zone)
                    .map(|(z, h)| (z, Some(h))),
            };
            let Some((zone, host)) = spot else { break };
            if self.create_task(si, zone, host, warm).is_none() {
                break;
            }
            if let Some(z) = per_zone.get_mut(zone) {
                *z += 1;
            }
            placed += 1;
        }
        placed
    }

    /// The ACTIVE container instance of `cluster` a task needing `cpu` and `memory`
    /// goes to: zone with fewest tasks of the service, then least remaining memory
    /// (binpack), then registration order. `None` if none has room.
    fn place_on_host(
        &self,
        cluster: usize,
        cpu: u32,
        memory: u32,
        per_zone: &[usize],
    ) -> Option<(usize, usize)> {
        let hosts = &self.clusters.get(cluster)?.hosts;
        let mut best: Option<((usize, u32, usize), usize, usize)> = None;
        for (order, &h) in hosts.iter().enumerate() {
            let Some(inst) = self.instances.get(h) else {
                continue;
            };
            let Some(ci) = inst.ci.as_ref() else { continue };
            if ci.status != ContainerInstanceStatus::Active {
                continue;
            }
            let free_cpu = ci.registered_cpu.saturating_sub(ci.reserved_cpu);
            let free_memory = ci.registered_memory.saturating_sub(ci.reserved_memory);
            if free_cpu < cpu || free_memory < memory {
                continue;
            }
            let key = (
                per_zone.get(inst.zone).copied().unwrap_or(0),
                free_memory,
                order,
            );
            if best.is_none_or(|(k, _, _)| key < k) {
                best = Some((key, inst.zone, h));
            }
        }
        best.map(|(_, zone, h)| (zone, h))
    }

    /// The reason ECS gives tasks it stops for scale-in or replacement.
    fn scaling_reason(&self, si: usize) -> String {
        let id = self
            .services
            .get(si)
            .and_then(|s| s.deployments.first())
            .map_or("", |d| d.id.as_str());
        format!("Scaling activity initiated by (deployment {id})")
    }

    /// Stops `k` unprotected tasks among `incoming`: pending first, then ECS's choice.
    fn scale_in(&mut self, si: usize, incoming: &[usize], k: usize) {
        let now = self.now;
        let (pending, running): (Vec<usize>, Vec<usize>) = incoming
            .iter()
            .copied()
            .filter(|s| self.task(*s).is_some_and(|t| !t.protected(now)))
            .partition(|s| self.task(*s).is_some_and(|t| t.status.is_pending()));
        let victims = self.pick_victims(&[&pending, &running], k, incoming);
        let reason = self.scaling_reason(si);
        for v in victims {
            self.stop_task(v, &reason);
        }
    }

    /// Stops the outgoing tasks that may go: unhealthy ones at once, healthy ones while
    /// `min_healthy` healthy tasks remain; never protected ones.
    fn retire(&mut self, si: usize, outgoing: &[usize], healthy: usize, min_healthy: usize) {
        let now = self.now;
        let (fit, sick): (Vec<usize>, Vec<usize>) = outgoing
            .iter()
            .copied()
            .filter(|s| self.task(*s).is_some_and(|t| !t.protected(now)))
            .partition(|s| self.healthy(*s));
        let reason = self.scaling_reason(si);
        for v in sick {
            let why = self.retire_reason(v, &reason);
            self.stop_task(v, &why);
        }
        let allowed = healthy.saturating_sub(min_healthy);
        for v in self.pick_victims(&[&fit], allowed, outgoing) {
            let why = self.retire_reason(v, &reason);
            self.stop_task(v, &why);
        }
    }

    /// Why an outgoing task is stopped.
    fn retire_reason(&self, slot: usize, scaling: &str) -> String {
        if self.on_draining_host(self.task(slot).and_then(|t| t.host)) {
            "Container instance is DRAINING: task replaced on another instance".into()
        } else {
            scaling.to_owned()
        }
    }

    /// ECS's scale-in choice (E6) of `k` tasks from `classes` (earlier classes first):
    /// the zone with most tasks of `basis`, in it the instance with most tasks, then
    /// an arbitrary one (seeded RNG).
    pub(crate) fn pick_victims(
        &mut self,
        classes: &[&[usize]],
        k: usize,
        basis: &[usize],
    ) -> Vec<usize> {
        let mut out = Vec::new();
        if k == 0 {
            return out;
        }
        let mut per_zone = vec![0usize; self.config.zones.len()];
        let mut per_host: HashMap<usize, usize> = HashMap::new();
        for t in basis.iter().filter_map(|s| self.task(*s)) {
            if let Some(z) = per_zone.get_mut(t.zone) {
                *z += 1;
            }
            if let Some(h) = t.host {
                *per_host.entry(h).or_default() += 1;
            }
        }
        let place = |s: &State, slot: usize| {
            s.task(slot)
                .map_or((usize::MAX, None), |t| (t.zone, t.host))
        };
        for class in classes {
            let mut pool: Vec<usize> = class.to_vec();
            while out.len() < k && !pool.is_empty() {
                let zone_n = |z: usize| per_zone.get(z).copied().unwrap_or(0);
                let host_n =
                    |h: Option<usize>| h.and_then(|h| per_host.get(&h)).copied().unwrap_or(0);
                let top_zone = pool
                    .iter()
                    .map(|s| zone_n(place(self, *s).0))
                    .max()
                    .unwrap_or(0);
                let in_zone: Vec<usize> = pool
                    .iter()
                    .copied()
                    .filter(|s| zone_n(place(self, *s).0) == top_zone)
                    .collect();
                let top_host = in_zone
                    .iter()
                    .map(|s| host_n(place(self, *s).1))
                    .max()
                    .unwrap_or(0);
                let finalists: Vec<usize> = in_zone
                    .into_iter()
                    .filter(|s| host_n(place(self, *s).1) == top_host)
                    .collect();
                let i = self.rng.random_range(0..finalists.len().max(1));
                let Some(&pick) = finalists.get(i) else { break };
                pool.retain(|s| *s != pick);
                let (zone, host) = place(self, pick);
                if let Some(z) = per_zone.get_mut(zone) {
                    *z = z.saturating_sub(1);
                }
                if let Some(n) = host.and_then(|h| per_host.get_mut(&h)) {
                    *n = n.saturating_sub(1);
                }
                out.push(pick);
            }
        }
        out
    }

    /// Drops old deployments without tasks; completes the PRIMARY one when `steady`.
    fn update_deployments(&mut self, si: usize, steady: bool) {
        let Some(svc) = self.services.get(si) else {
            return;
        };
        if svc.deployments.len() > 1 {
            let mut keep: Vec<bool> = svc
                .deployments
                .iter()
                .enumerate()
                .map(|(i, _)| i == 0)
                .collect();
            for t in svc.tasks.iter().filter_map(|s| self.task(*s)) {
                if let Some(i) = svc
                    .deployments
                    .iter()
                    .position(|d| d.serial == t.deployment)
                    && let Some(k) = keep.get_mut(i)
                {
                    *k = true;
                }
            }
            if keep.iter().any(|k| !k) {
                let mut flags = keep.into_iter();
                if let Some(svc) = self.services.get_mut(si) {
                    svc.deployments.retain(|_| flags.next().unwrap_or(true));
                }
                self.changed();
            }
        }
        let Some(svc) = self.services.get_mut(si) else {
            return;
        };
        if steady
            && svc.deployments.len() == 1
            && let Some(primary) = svc.deployments.first_mut()
            && primary.rollout == DeploymentRollout::InProgress
        {
            primary.rollout = DeploymentRollout::Completed;
            self.changed();
        }
    }
}

/// The index of the smallest count (the first on ties).
fn fewest(counts: &[usize]) -> Option<usize> {
    counts
        .iter()
        .enumerate()
        .min_by_key(|(i, n)| (**n, *i))
        .map(|(i, _)| i)
}
