//! The scale-in in progress of an ECS target, and the clean-up it leaves (targets to
//! register again, protection to release): started by `scale_in`, moved along by
//! each observation, cancelled by `scale_out` and by shutdown. In memory only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::{Ecs, Elb, TargetHealth, TargetHealthState, TargetRef};
use capstan_core::Timestamp;
use capstan_core::clock::elapsed;
use capstan_core::model::TaskId;

use super::calls;
use super::{EcsTarget, ScaleInPhase, ScaleInProgress, Snapshot};
use crate::TargetError;
use crate::count;

/// What the target remembers between calls.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The scale-in in progress.
    scale_in: Option<ScaleIn>,
    /// What ended scale-ins still owe.
    cleanup: Cleanup,
}

impl State {
    /// The scale-in in progress, as reported outside.
    pub(super) fn progress(&self) -> Option<ScaleInProgress> {
        self.scale_in.as_ref().map(|si| ScaleInProgress {
            to: si.to(),
            victims: si.victims.iter().map(|v| TaskId(v.arn.clone())).collect(),
            phase: match si.phase {
                Phase::Draining => ScaleInPhase::Draining,
                Phase::Stopping { .. } => ScaleInPhase::Stopping,
            },
        })
    }

    /// The desired count to report while a scale-in is in progress.
    pub(super) fn reported_desired(&self) -> Option<u32> {
        self.scale_in.as_ref().map(ScaleIn::to)
    }

    /// The victims of the scale-in in progress.
    pub(super) fn victim_arns(&self) -> BTreeSet<&str> {
        self.scale_in
            .iter()
            .flat_map(|si| si.victims.iter().map(|v| &*v.arn))
            .collect()
    }

    /// The victims of the scale-in in progress, as a list.
    pub(super) fn victim_list(&self) -> Vec<Arc<str>> {
        self.scale_in
            .iter()
            .flat_map(|si| si.victims.iter().map(|v| v.arn.clone()))
            .collect()
    }
}

/// One scale-in in progress.
#[derive(Debug)]
struct ScaleIn {
    /// The desired count asked for.
    requested: u32,
    /// The desired count when it started.
    base: u32,
    /// The victims still in it.
    victims: Vec<Victim>,
    /// Where it stands.
    phase: Phase,
    /// Tasks it protected (released when it ends).
    added: BTreeSet<Arc<str>>,
}

impl ScaleIn {
    /// The desired count it scales in to: lowered by the victims still in it, never
    /// below the count asked for.
    fn to(&self) -> u32 {
        match self.phase {
            Phase::Stopping { lowered_to, .. } => lowered_to,
            Phase::Draining => self
                .base
                .saturating_sub(count(self.victims.len()))
                .max(self.requested),
        }
    }
}

/// Where a scale-in stands.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Victims deregistered; waiting for their targets to drain.
    Draining,
    /// Others protected and the count lowered; waiting for ECS to stop the victims.
    Stopping {
        /// When the count was lowered.
        since: Timestamp,
        /// The count it was lowered to.
        lowered_to: u32,
    },
}

/// A victim kept for a scale-in: its ARN and its targets in the target group.
type Kept = (Arc<str>, Vec<TargetRef>);

/// One victim of a scale-in.
#[derive(Debug)]
struct Victim {
    /// Task ARN.
    arn: Arc<str>,
    /// Its targets deregistered from the target group (empty if none).
    targets: Vec<TargetRef>,
    /// When they were deregistered.
    since: Timestamp,
}

/// What ended scale-ins still owe, retried at each observation until done.
#[derive(Debug, Default)]
struct Cleanup {
    /// Targets to register again, per task (skipped once ECS no longer runs the task).
    reregister: BTreeMap<Arc<str>, Vec<TargetRef>>,
    /// Tasks whose protection (added by a scale-in) is to be released.
    unprotect: BTreeSet<Arc<str>>,
}

impl Cleanup {
    /// Nothing owed.
    fn is_empty(&self) -> bool {
        self.reregister.is_empty() && self.unprotect.is_empty()
    }

    /// Registers `victim`'s targets again.
    fn reregister(&mut self, victim: Victim) {
        if !victim.targets.is_empty() {
            self.reregister.insert(victim.arn, victim.targets);
        }
    }
}

/// Whether a victim can be drained from the load balancer: deregistered, it gets no
/// new work while the work it holds ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// It is registered in the target group.
    Registered,
    /// The target has no target group (e.g. queue workers): nothing keeps new work off
    /// the victim.
    NoGroup,
    /// The target group does not have it (no private IP, instance targets, or already
    /// `unused`).
    Unregistered,
}

impl Drain {
    /// How a victim with `targets` deregistered (or to deregister) can be drained.
    fn of(targets: &[TargetRef], has_group: bool) -> Self {
        if !targets.is_empty() {
            Self::Registered
        } else if has_group {
            Self::Unregistered
        } else {
            Self::NoGroup
        }
    }
}

/// Why a victim is not fit to stop: not running, protected by someone else (not in
/// `ours`), or busy with no target group to drain it from. A busy victim in the target
/// group is fit: it is drained until idle.
fn unfit(
    snap: &Snapshot,
    arn: &str,
    work: u32,
    drain: Drain,
    ours: &BTreeSet<Arc<str>>,
) -> Option<&'static str> {
    if !snap.is_running(arn) {
        Some("not running")
    } else if snap.protected.contains(arn) && !ours.contains(arn) {
        Some("protected")
    } else if work == 0 {
        None
    } else {
        match drain {
            Drain::Registered => None,
            Drain::NoGroup => Some("busy, and no target group to drain it from"),
            Drain::Unregistered => {
                Some("busy, and not registered in the target group to drain it from")
            }
        }
    }
}

/// Refused victims (`"{arn} {why}"`) as one short phrase: grouped by reason, each with
/// at most three task ARNs named (`"arn1 busy, …; arn2, arn3 and 12 more not
/// running"`), so a scale-in of many tasks does not log a page.
fn refusals(refused: &[String]) -> String {
    const NAMED: usize = 3;
    let mut by_why: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in refused {
        let (arn, why) = r.split_once(' ').unwrap_or((r.as_str(), ""));
        match by_why.iter_mut().find(|(w, _)| *w == why) {
            Some((_, arns)) => arns.push(arn),
            None => by_why.push((why, vec![arn])),
        }
    }
    by_why
        .iter()
        .map(|(why, arns)| {
            let mut named = arns[..arns.len().min(NAMED)].join(", ");
            if arns.len() > NAMED {
                named.push_str(&format!(" and {} more", arns.len() - NAMED));
            }
            format!("{named} {why}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The targets of the live task `arn` in the target group (`health`), on every port the
/// group has it, except `unused` ones: what deregistering it drains. Found by its
/// private IP.
fn targets_of(snap: &Snapshot, health: &[TargetHealth], arn: &str) -> Vec<TargetRef> {
    let Some(ip) = snap.live_task(arn).and_then(|t| t.private_ip.as_deref()) else {
        return Vec::new();
    };
    health
        .iter()
        .filter(|h| h.target.id == ip && h.state != TargetHealthState::Unused)
        .map(|h| h.target.clone())
        .collect()
}

impl<E: Ecs, L: Elb> EcsTarget<E, L> {
    /// `scale_out` with the state locked.
    pub(super) async fn scale_out_locked(
        &self,
        state: &mut State,
        desired: u32,
    ) -> Result<(), TargetError> {
        let (cluster, service) = (&self.spec.cluster, &self.spec.service);
        let svc = self
            .ecs
            .describe_service(cluster, service)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        let reported = state.reported_desired().unwrap_or(svc.desired);
        if desired < reported {
            return Err(self.invalid(format!(
                "scale out to {desired} is below the desired count {reported}; scale in instead"
            )));
        }
        // Never lower the count here: a scale-in that has not lowered it yet is
        // cancelled by keeping the tasks the service has.
        let to = desired.max(svc.desired);
        self.ecs
            .update_desired_count(cluster, service, to)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        if let Some(si) = state.scale_in.take() {
            tracing::info!(target_name = %self.name, to, victims = si.victims.len(), "scale-out cancels the scale-in in progress");
            for v in si.victims {
                state.cleanup.reregister(v);
            }
            state.cleanup.unprotect.extend(si.added);
        }
        if !state.cleanup.is_empty() {
            match self.snapshot(&[]).await {
                Ok(snap) => self.flush(&mut state.cleanup, &snap).await,
                Err(e) => {
                    tracing::warn!(target_name = %self.name, error = %e, "cannot clean up after the cancelled scale-in yet; trying again at the next observation");
                }
            }
        }
        Ok(())
    }

    /// `scale_in` with the state locked.
    pub(super) async fn scale_in_locked(
        &self,
        state: &mut State,
        desired: u32,
        victims: &[TaskId],
    ) -> Result<(), TargetError> {
        self.spec.validate().map_err(|e| self.invalid(e))?;
        if let Some(si) = &state.scale_in {
            if si.to() == desired {
                return Ok(());
            }
            return Err(self.fail(format!(
                "scale-in to {desired} waits: the scale-in to {} is still in progress",
                si.to()
            )));
        }
        let snap = self.snapshot(&[]).await?;
        let svc = &snap.service;
        if desired > svc.desired {
            return Err(self.invalid(format!(
                "scale in to {desired} is above the desired count {}; scale out instead",
                svc.desired
            )));
        }
        if desired == svc.desired {
            return Ok(());
        }
        if svc.deployment_in_progress() {
            return Err(self.fail(format!(
                "scale-in to {desired} held: a deployment of service {} is in progress (AWS holds scale-in during deployments too)",
                svc.name
            )));
        }
        let health = self.group_health().await?;
        let kept = self.keep_victims(state, &snap, health.as_deref(), desired, victims)?;
        let live: Vec<TargetRef> = kept.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
        self.deregister(&live).await?;
        let now = self.clock.now();
        let chosen: Vec<Victim> = kept
            .into_iter()
            .map(|(arn, mut targets)| {
                // A victim kept by an earlier scale-in and not yet registered again
                // stays out of the group now; its targets are registered again if this
                // scale-in keeps it too.
                if let Some(owed) = state.cleanup.reregister.remove(&arn) {
                    for t in owed {
                        if !targets.contains(&t) {
                            targets.push(t);
                        }
                    }
                }
                Victim {
                    arn,
                    targets,
                    since: now,
                }
            })
            .collect();
        tracing::info!(
            target_name = %self.name,
            from = svc.desired,
            to = svc.desired.saturating_sub(count(chosen.len())).max(desired),
            victims = ?chosen.iter().map(|v| &*v.arn).collect::<Vec<_>>(),
            "scale-in started"
        );
        state.scale_in = Some(ScaleIn {
            requested: desired,
            base: svc.desired,
            victims: chosen,
            phase: Phase::Draining,
            added: BTreeSet::new(),
        });
        self.advance(state, &snap).await;
        Ok(())
    }

    /// The target group's target health, `None` without a target group.
    async fn group_health(&self) -> Result<Option<Vec<TargetHealth>>, TargetError> {
        let Some(tg) = &self.spec.target_group else {
            return Ok(None);
        };
        let Some(elb) = &self.elb else {
            return Err(self.invalid(format!(
                "target group {tg} is set but the target has no load balancer client"
            )));
        };
        elb.describe_target_health(tg)
            .await
            .map(Some)
            .map_err(|e| TargetError::aws(&self.name, &e))
    }

    /// The victims to keep, in the order given, no more than the drop in desired count,
    /// each with its targets in the target group (`health`): running, not protected by
    /// someone else, and idle or drainable (in the target group). Fails if none is left.
    fn keep_victims(
        &self,
        state: &State,
        snap: &Snapshot,
        health: Option<&[TargetHealth]>,
        desired: u32,
        victims: &[TaskId],
    ) -> Result<Vec<Kept>, TargetError> {
        let drop = usize::try_from(snap.service.desired.saturating_sub(desired)).unwrap_or(0);
        let mut kept: Vec<Kept> = Vec::new();
        let mut refused = Vec::new();
        for victim in victims {
            let arn = victim.as_str();
            if kept.len() == drop || kept.iter().any(|(k, _)| **k == *arn) {
                continue;
            }
            let targets = health.map_or_else(Vec::new, |h| targets_of(snap, h, arn));
            let drain = Drain::of(&targets, health.is_some());
            match unfit(
                snap,
                arn,
                self.work_of(arn),
                drain,
                &state.cleanup.unprotect,
            ) {
                Some(why) => refused.push(format!("{arn} {why}")),
                None => kept.push((Arc::clone(&victim.0), targets)),
            }
        }
        if !refused.is_empty() {
            tracing::info!(target_name = %self.name, refused = %refusals(&refused), kept = kept.len(), "victims not fit to stop are kept running");
        }
        if kept.is_empty() {
            let why = if refused.is_empty() {
                "no victim was given".to_owned()
            } else {
                refusals(&refused)
            };
            return Err(self.fail(format!(
                "scale-in to {desired} not started: no victim is running, unprotected, and idle or drainable from a target group ({why})"
            )));
        }
        Ok(kept)
    }

    /// Deregisters `targets` from the target group (none: nothing to do).
    async fn deregister(&self, targets: &[TargetRef]) -> Result<(), TargetError> {
        let (Some(tg), Some(elb)) = (&self.spec.target_group, &self.elb) else {
            return Ok(());
        };
        if targets.is_empty() {
            return Ok(());
        }
        elb.deregister_targets(tg, targets)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))
    }

    /// Moves the scale-in in progress along, then pays what ended ones owe. Errors are
    /// logged; the step is tried again next time.
    pub(super) async fn advance(&self, state: &mut State, snap: &Snapshot) {
        if let Some(mut si) = state.scale_in.take() {
            let going = match si.phase {
                Phase::Draining => {
                    self.advance_draining(&mut si, &mut state.cleanup, snap)
                        .await
                }
                Phase::Stopping { since, lowered_to } => {
                    self.advance_stopping(&mut si, &mut state.cleanup, snap, since, lowered_to)
                }
            };
            if going {
                state.scale_in = Some(si);
            } else {
                state.cleanup.unprotect.extend(si.added);
            }
        }
        if !state.cleanup.is_empty() {
            self.flush(&mut state.cleanup, snap).await;
        }
    }

    /// The draining phase: drops victims that stopped, got protected, or got work
    /// with nothing to drain them from; waits until the others are drained (out of the
    /// target group and idle), then stops them. Whether the scale-in goes on.
    async fn advance_draining(
        &self,
        si: &mut ScaleIn,
        cleanup: &mut Cleanup,
        snap: &Snapshot,
    ) -> bool {
        let now = self.clock.now();
        let ours: BTreeSet<Arc<str>> = si.added.union(&cleanup.unprotect).cloned().collect();
        let has_group = self.spec.target_group.is_some();
        for victim in std::mem::take(&mut si.victims) {
            let drain = Drain::of(&victim.targets, has_group);
            match unfit(snap, &victim.arn, self.work_of(&victim.arn), drain, &ours) {
                None => si.victims.push(victim),
                Some(why) => {
                    tracing::info!(target_name = %self.name, task = %victim.arn, why, "victim dropped from the scale-in and kept");
                    if why != "not running" {
                        cleanup.reregister(victim);
                    }
                }
            }
        }
        let Some(draining) = self.still_draining(si, cleanup, now).await else {
            return true;
        };
        if si.victims.is_empty() {
            tracing::info!(target_name = %self.name, "scale-in ended: no victim left to stop");
            return false;
        }
        if draining {
            return true;
        }
        self.stop_victims(si, cleanup, snap, now).await
    }

    /// Whether some victim is still draining: its targets are not yet `unused` (or
    /// gone), or it still has work. `None` if the target group cannot be read now.
    /// Victims still draining `drain_timeout` after their deregistration are dropped
    /// and registered again, so no work is ever cut off.
    async fn still_draining(
        &self,
        si: &mut ScaleIn,
        cleanup: &mut Cleanup,
        now: Timestamp,
    ) -> Option<bool> {
        let health = match (&self.spec.target_group, &self.elb) {
            (Some(tg), Some(elb)) if si.victims.iter().any(|v| !v.targets.is_empty()) => {
                match elb.describe_target_health(tg).await {
                    Ok(health) => health,
                    Err(e) => {
                        tracing::warn!(target_name = %self.name, error = %e, "cannot check the victims' drain; trying again at the next observation");
                        return None;
                    }
                }
            }
            _ => Vec::new(),
        };
        let mut draining = false;
        for victim in std::mem::take(&mut si.victims) {
            let registered = victim.targets.iter().any(|t| {
                health
                    .iter()
                    .any(|h| h.target == *t && h.state != TargetHealthState::Unused)
            });
            let work = self.work_of(&victim.arn);
            if !registered && work == 0 {
                si.victims.push(victim);
            } else if elapsed(victim.since, now) >= self.spec.drain_timeout {
                tracing::warn!(target_name = %self.name, task = %victim.arn, work, in_target_group = registered, timeout_s = self.spec.drain_timeout.as_secs_f64(), "victim still draining after the drain timeout: registered again and kept");
                cleanup.reregister(victim);
            } else {
                draining = true;
                si.victims.push(victim);
            }
        }
        Some(draining)
    }

    /// Protects every other task and lowers the desired count so that ECS stops
    /// exactly the victims. Whether the scale-in goes on.
    async fn stop_victims(
        &self,
        si: &mut ScaleIn,
        cleanup: &mut Cleanup,
        snap: &Snapshot,
        now: Timestamp,
    ) -> bool {
        let svc = &snap.service;
        if svc.deployment_in_progress() {
            tracing::info!(target_name = %self.name, "scale-in held before lowering the count: a deployment is in progress");
            return true;
        }
        let lowered_to = svc
            .desired
            .saturating_sub(count(si.victims.len()))
            .max(si.requested);
        if lowered_to >= svc.desired {
            tracing::warn!(target_name = %self.name, desired = svc.desired, "scale-in ended: the desired count changed meanwhile, nothing to lower");
            for v in std::mem::take(&mut si.victims) {
                cleanup.reregister(v);
            }
            return false;
        }
        let victims: BTreeSet<&str> = si.victims.iter().map(|v| &*v.arn).collect();
        // The protection manager must not release any task that stays until the
        // victims are gone: ECS would be free to stop it instead of a victim.
        if let Some(protector) = &self.protector {
            protector.pin(
                snap.live
                    .iter()
                    .filter(|t| !victims.contains(&*t.arn))
                    .map(|t| TaskId(t.arn.clone())),
            );
        }
        // Protect (again, refreshing the expiry) every other task except those
        // protected by someone else, whose protection must not be shortened.
        let to_protect: Vec<Arc<str>> = snap
            .live
            .iter()
            .filter(|t| !victims.contains(&*t.arn))
            .filter(|t| {
                !snap.protected.contains(&t.arn)
                    || si.added.contains(&t.arn)
                    || cleanup.unprotect.contains(&t.arn)
            })
            .map(|t| t.arn.clone())
            .collect();
        let outcome = calls::update_protection(
            &self.ecs,
            &self.spec.cluster,
            &to_protect,
            Some(self.spec.protect_minutes),
        )
        .await;
        for arn in outcome.done {
            cleanup.unprotect.remove(&arn);
            si.added.insert(arn);
        }
        for arn in outcome.gone {
            cleanup.unprotect.remove(&arn);
            si.added.remove(&arn);
        }
        if let Some(error) = outcome.error {
            tracing::warn!(target_name = %self.name, error, "cannot protect the tasks that stay; trying again at the next observation");
            return true;
        }
        match self
            .ecs
            .update_desired_count(&self.spec.cluster, &self.spec.service, lowered_to)
            .await
        {
            Ok(()) => {
                tracing::info!(target_name = %self.name, to = lowered_to, protected = si.added.len(), "desired count lowered: ECS stops the victims");
                si.phase = Phase::Stopping {
                    since: now,
                    lowered_to,
                };
            }
            Err(e) => {
                tracing::warn!(target_name = %self.name, error = %e, "cannot lower the desired count; trying again at the next observation");
            }
        }
        true
    }

    /// The stopping phase: done once ECS no longer runs the victims. If ECS keeps a
    /// victim (the service already has no more tasks than desired) or the protection
    /// lapsed, that victim is registered again and the scale-in ends. Whether it goes
    /// on.
    fn advance_stopping(
        &self,
        si: &mut ScaleIn,
        cleanup: &mut Cleanup,
        snap: &Snapshot,
        since: Timestamp,
        lowered_to: u32,
    ) -> bool {
        let (running, stopped): (Vec<Victim>, Vec<Victim>) = std::mem::take(&mut si.victims)
            .into_iter()
            .partition(|v| snap.is_running(&v.arn));
        if running.is_empty() {
            tracing::info!(target_name = %self.name, to = lowered_to, stopped = stopped.len(), "scale-in done: the victims stopped; releasing the protection it added");
            return false;
        }
        let kept_by_ecs = count(snap.live.len()) <= snap.service.desired;
        let protection = Duration::from_secs(u64::from(self.spec.protect_minutes) * 60);
        let lapsed = elapsed(since, self.clock.now()) >= protection;
        if kept_by_ecs || lapsed {
            tracing::warn!(
                target_name = %self.name,
                kept = ?running.iter().map(|v| &*v.arn).collect::<Vec<_>>(),
                protection_lapsed = lapsed,
                "ECS did not stop these victims: registered again and kept"
            );
            for v in running {
                cleanup.reregister(v);
            }
            return false;
        }
        si.victims = running;
        si.victims.extend(stopped);
        true
    }

    /// Registers again the targets of tasks ECS still runs, and releases the
    /// protection owed. What fails stays owed.
    async fn flush(&self, cleanup: &mut Cleanup, snap: &Snapshot) {
        cleanup
            .reregister
            .retain(|arn, _| snap.live_task(arn).is_some());
        if !cleanup.reregister.is_empty() {
            if let (Some(tg), Some(elb)) = (&self.spec.target_group, &self.elb) {
                let targets: Vec<TargetRef> =
                    cleanup.reregister.values().flatten().cloned().collect();
                match elb.register_targets(tg, &targets).await {
                    Ok(()) => cleanup.reregister.clear(),
                    Err(e) => {
                        tracing::warn!(target_name = %self.name, error = %e, "cannot register kept victims again; trying again at the next observation");
                    }
                }
            } else {
                cleanup.reregister.clear();
            }
        }
        // A protection the manager now holds for live work is its to release, not ours.
        if let Some(protector) = &self.protector {
            cleanup
                .unprotect
                .retain(|arn| protector.holds(arn).is_none());
        }
        if !cleanup.unprotect.is_empty() {
            let arns: Vec<Arc<str>> = cleanup.unprotect.iter().cloned().collect();
            let outcome =
                calls::update_protection(&self.ecs, &self.spec.cluster, &arns, None).await;
            for arn in outcome.done.iter().chain(&outcome.gone) {
                cleanup.unprotect.remove(arn);
            }
            if let Some(error) = outcome.error {
                tracing::warn!(target_name = %self.name, error, "cannot release the protection a scale-in added; trying again at the next observation");
            }
        }
    }

    /// Undoes what is safe to undo of the scale-in in progress (see `shutdown`).
    pub(super) async fn abandon(&self, state: &mut State) {
        if let Some(si) = state.scale_in.take() {
            match si.phase {
                Phase::Draining => {
                    for v in si.victims {
                        state.cleanup.reregister(v);
                    }
                    state.cleanup.unprotect.extend(si.added);
                }
                Phase::Stopping { .. } => {
                    tracing::info!(target_name = %self.name, protected = si.added.len(), "shutdown during a scale-in: ECS is stopping the victims; the protection added lapses on its own");
                }
            }
        }
        if state.cleanup.is_empty() {
            return;
        }
        match self.snapshot(&[]).await {
            Ok(snap) => self.flush(&mut state.cleanup, &snap).await,
            Err(e) => {
                tracing::warn!(target_name = %self.name, error = %e, "shutdown: cannot clean up after the scale-in");
            }
        }
        if !state.cleanup.is_empty() {
            tracing::warn!(target_name = %self.name, reregister = ?state.cleanup.reregister.keys().collect::<Vec<_>>(), unprotect = ?state.cleanup.unprotect, "shutdown: clean-up left undone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refusals;

    #[test]
    fn refusals_are_grouped_by_reason_and_name_at_most_three_tasks() {
        let refused: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|arn| format!("{arn} busy, and no target group to drain it from"))
            .chain(std::iter::once("f not running".to_owned()))
            .collect();
        assert_eq!(
            refusals(&refused),
            "a, b, c and 2 more busy, and no target group to drain it from; f not running"
        );
    }
}
