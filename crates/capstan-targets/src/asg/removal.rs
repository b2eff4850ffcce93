//! The host removal of an EC2 cluster target, as a durable workflow
//! ([`Kind::Hosts`](capstan_core::workflow::Kind::Hosts) in the engine of
//! [`crate::durable`]): `scale_in` checks the victims and starts it, each observation
//! runs its due steps, `scale_out` cancels it while it may be cancelled, `redrive`
//! resumes a failed one. Its state and journal are written before and after every
//! step, so a capstan that crashes resumes it where it stopped (with a durable
//! journal), and no step is done twice:
//!
//! - **mark draining** sets the victims' container instances DRAINING (those already
//!   DRAINING are left; one ECS refuses is kept);
//! - **wait drained** waits until every victim holds no task and every service that
//!   had a task on them runs at least its minimum, at most `drain_timeout`;
//! - **recheck** keeps (and sets ACTIVE again where it is still DRAINING) a victim
//!   that is not empty, gone, terminated by someone else or set ACTIVE by someone
//!   else; at the timeout with a service still below its minimum, every victim is kept
//!   (the replacements may need their room);
//! - **terminate** calls `TerminateInstanceInAutoScalingGroup` with
//!   `ShouldDecrementDesiredCapacity` for each victim left, after checking it once
//!   more: one already terminating (a retry after a crash) is not terminated again,
//!   and one not proven empty (an ACTIVE or non-empty container instance, an instance
//!   in service without one) is kept instead. A launching victim (no container
//!   instance yet) holds no task and is terminated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use capstan_aws_api::limits::UPDATE_CONTAINER_INSTANCES_STATE;
use capstan_aws_api::{AutoScaling, ContainerInstanceStatus, Ecs, InstanceLifecycleState};
use capstan_core::Timestamp;
use capstan_core::clock::{add, elapsed};
use capstan_core::model::TaskId;
use capstan_core::workflow::{Event, Outcome, Status, Step, Workflow, WorkflowSettings};

use super::{AsgTarget, RemovalProgress, Snapshot, is_empty, tasks_on};
use crate::TargetError;
use crate::count;
use crate::durable::{Durable, Failpoint, Journal, Steps, aws_outcome};

/// What the target remembers between calls, besides its workflow.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Instances held by the termination hook (EC2 instance id → when its wait began
    /// or its heartbeat was last recorded).
    pub(super) hooked: BTreeMap<String, Timestamp>,
}

/// An instance of the group still warming up at `now`, and why. Its age is counted
/// from its launch when the group reports it, else from its container instance's
/// registration with the cluster (Auto Scaling's API has no launch times); an instance
/// still launching with neither is warming. An instance in service that never
/// registered (not a container instance) does not hold scale-out: its age is unknown
/// and it adds no capacity to wait for.
fn warming(snap: &Snapshot, now: Timestamp, warmup: std::time::Duration) -> Option<String> {
    snap.group.instances.iter().find_map(|i| {
        let launching = matches!(
            i.lifecycle_state,
            InstanceLifecycleState::Pending | InstanceLifecycleState::PendingWait
        );
        if !launching && i.lifecycle_state != InstanceLifecycleState::InService {
            return None;
        }
        let id = &i.instance_id;
        if let Some(at) = i.launched_at {
            let age = elapsed(at, now);
            return (age < warmup)
                .then(|| format!("instance {id} launched {} s ago", age.as_secs()));
        }
        match snap.host(id) {
            Some(h) => {
                let age = elapsed(h.registered_at, now);
                (age < warmup).then(|| {
                    format!(
                        "instance {id} registered with the cluster {} s ago",
                        age.as_secs()
                    )
                })
            }
            None if launching => Some(format!("instance {id} is still launching")),
            None => None,
        }
    })
}

/// The victims a scale-in can take, sorted out.
#[derive(Debug, Default)]
struct Picked {
    /// In service with an ACTIVE container instance: (EC2 instance id, its container
    /// instance ARN).
    active: Vec<(String, String)>,
    /// Still launching: nothing to drain.
    launching: Vec<String>,
    /// Refused, with the reason.
    refused: Vec<String>,
}

impl<E: Ecs, A: AutoScaling> AsgTarget<E, A> {
    /// The same target, keeping its host removals in `journal` with `settings`
    /// (`check_every`, retries; the drain timeout is the spec's) instead of in memory;
    /// an active removal of this target found there is resumed at the next
    /// observation.
    pub fn with_workflows(
        mut self,
        journal: Arc<dyn Journal>,
        settings: WorkflowSettings,
    ) -> Result<Self, String> {
        self.durable.use_journal(&self.name, journal, settings)?;
        Ok(self)
    }

    /// Installs a failpoint (tests: a crash at a step boundary).
    #[must_use]
    pub fn with_failpoint(mut self, failpoint: Failpoint) -> Self {
        self.durable.failpoint = Some(failpoint);
        self
    }

    /// The host removal holding the target (running or failed), if any.
    pub fn workflow(&self) -> Option<Workflow> {
        self.durable.current()
    }

    /// Resumes the failed host removal `id` from the step it failed at.
    pub async fn redrive(&self, id: &str) -> Result<Workflow, TargetError> {
        let d = self.live()?;
        let _state = self.state.lock().await;
        d.redrive(&self.name, id, self.clock.now())
    }

    /// The workflows, unless a failpoint stopped the target.
    pub(super) fn live(&self) -> Result<&Durable, TargetError> {
        self.durable.alive(&self.name)
    }

    /// The removal in progress, as reported outside.
    pub(super) fn progress(&self) -> Option<RemovalProgress> {
        let w = self.durable.current()?;
        Some(RemovalProgress {
            to: w.target_count(),
            draining: w.remaining().map(|v| v.task.clone()).collect(),
            workflow: w.id.clone(),
            step: w.step.as_str(),
            error: match &w.status {
                Status::Failed { error } => Some(error.clone()),
                _ => None,
            },
        })
    }

    /// The desired capacity to report while a removal holds the target: what it will
    /// leave (none while it is being undone).
    pub(super) fn reported_desired(&self) -> Option<u32> {
        self.durable
            .current()
            .filter(|w| w.step != Step::Undo)
            .map(|w| w.target_count())
    }

    /// Runs the removal's due steps on `snap`; whether any step ran.
    pub(super) async fn drive_removal(&self, snap: &Snapshot) -> Result<bool, TargetError> {
        let d = self.live()?;
        let before = d.current();
        if before.as_ref().is_none_or(|w| !w.due(self.clock.now())) {
            return Ok(false);
        }
        d.drive(self, snap).await?;
        Ok(d.current() != before)
    }

    /// `scale_out` with the state locked.
    pub(super) async fn scale_out_locked(&self, desired: u32) -> Result<(), TargetError> {
        let d = self.live()?;
        let mut snap = self.snapshot().await?;
        let reported = self.reported_desired().unwrap_or(snap.group.desired);
        if desired < reported {
            return Err(self.invalid(format!(
                "scale out to {desired} is below the desired capacity {reported}; scale in instead"
            )));
        }
        if let Some(mut w) = d.current() {
            if let Some(event) = w.cancel(self.clock.now()) {
                tracing::info!(target_name = %self.name, workflow = %w.id, to = desired, "scale-out cancels the host removal in progress");
                d.save(&self.name, &w, &[event])?;
                d.set(Some(w));
            }
            d.drive(self, &snap).await?;
            if let Some(w) = d.current() {
                return Err(self.fail(format!(
                    "scale-out to {desired} waits: host removal {} ({} at {}) is past its last chance to cancel",
                    w.id,
                    w.status.as_str(),
                    w.step.as_str()
                )));
            }
            snap = self.snapshot().await?;
        }
        let group = &snap.group;
        if desired <= group.desired {
            return Ok(());
        }
        let to = desired.min(group.max);
        if to <= group.desired {
            return Err(self.fail(format!(
                "scale out to {desired}: group {} is at its max {}",
                group.name, group.max
            )));
        }
        let now = self.clock.now();
        if let Some(why) = warming(&snap, now, self.spec.warmup) {
            return Err(self.fail(format!(
                "scale out to {to} refused: warming up: {why} (warm-up {} s)",
                self.spec.warmup.as_secs()
            )));
        }
        self.asg
            .set_desired_capacity(&self.spec.group, to)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        if to < desired {
            tracing::warn!(target_name = %self.name, asked = desired, to, max = group.max, "scale-out held at the group's max");
        }
        Ok(())
    }

    /// `scale_in` with the state locked.
    pub(super) async fn scale_in_locked(
        &self,
        desired: u32,
        victims: &[TaskId],
    ) -> Result<(), TargetError> {
        self.spec.validate().map_err(|e| self.invalid(e))?;
        let d = self.live()?;
        if let Some(w) = d.current() {
            if w.to == desired && w.is_running() {
                return Ok(());
            }
            return Err(self.fail(format!(
                "scale-in to {desired} waits: the host removal {} down to {} is still in progress ({} at {})",
                w.id,
                w.target_count(),
                w.status.as_str(),
                w.step.as_str()
            )));
        }
        let snap = self.snapshot().await?;
        let current = snap.group.desired;
        if desired > current {
            return Err(self.invalid(format!(
                "scale in to {desired} is above the desired capacity {current}; scale out instead"
            )));
        }
        if desired == current {
            return Ok(());
        }
        let room = current.saturating_sub(snap.group.min);
        if room == 0 {
            return Err(self.fail(format!(
                "scale-in to {desired} not started: group {} is at its min {}",
                snap.group.name, snap.group.min
            )));
        }
        let drop = usize::try_from((current - desired).min(room)).unwrap_or(usize::MAX);
        let mut picked = self.pick(&snap, victims, drop);
        let checked = self
            .safe_to_remove(&snap, std::mem::take(&mut picked.active))
            .await?;
        picked.refused.extend(
            checked
                .refused
                .into_iter()
                .map(|(id, why)| format!("{id}: {why}")),
        );
        if !picked.refused.is_empty() {
            tracing::info!(target_name = %self.name, refused = ?picked.refused, "hosts not fit to remove are kept");
        }
        if checked.fitting.is_empty() && picked.launching.is_empty() {
            let why = if picked.refused.is_empty() {
                "no victim was given".to_owned()
            } else {
                picked.refused.join("; ")
            };
            return Err(self.fail(format!(
                "scale-in to {desired} not started: no host can be removed safely ({why})"
            )));
        }
        let hosts: Vec<TaskId> = checked
            .fitting
            .iter()
            .map(|(id, _)| TaskId::from(id.as_str()))
            .chain(picked.launching.iter().map(|id| TaskId::from(id.as_str())))
            .collect();
        let now = self.clock.now();
        let id = d.next_id(&self.name, now);
        // Asked for more than could go: the removal reaches only what it holds.
        let to = current.saturating_sub(count(hosts.len())).max(desired);
        let (w, created) =
            Workflow::hosts(id, &self.name, current, to, hosts, checked.services, now);
        let mut events = vec![created];
        for refused in &picked.refused {
            events.push(Event {
                at: now,
                step: w.step,
                event: "refused".into(),
                detail: refused.clone(),
            });
        }
        tracing::info!(
            target_name = %self.name,
            workflow = %w.id,
            from = current,
            to = w.to,
            victims = ?w.victims.iter().map(|v| v.task.as_str()).collect::<Vec<_>>(),
            "host removal started"
        );
        d.save(&self.name, &w, &events)?;
        d.set(Some(w));
        d.drive(self, &snap).await?;
        match d.current() {
            Some(Workflow {
                id,
                step,
                status: Status::Failed { error },
                ..
            }) => Err(self.fail(format!(
                "host removal {id} failed at {}: {error} (redrive it, or scale out to cancel it)",
                step.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// Sorts the victims asked for: at most `drop`, in the group, not protected, and
    /// either launching or in service with an ACTIVE container instance.
    fn pick(&self, snap: &Snapshot, victims: &[TaskId], drop: usize) -> Picked {
        let mut picked = Picked::default();
        let mut seen = BTreeSet::new();
        for victim in victims {
            let id = victim.as_str();
            if picked.active.len() + picked.launching.len() == drop || !seen.insert(id) {
                continue;
            }
            let Some(inst) = snap.instance(id) else {
                picked.refused.push(format!(
                    "{id}: not an instance of group {}",
                    snap.group.name
                ));
                continue;
            };
            if inst.protected_from_scale_in {
                picked
                    .refused
                    .push(format!("{id}: protected from scale-in"));
                continue;
            }
            let host = snap.host(id);
            match (inst.lifecycle_state, host) {
                (InstanceLifecycleState::Pending | InstanceLifecycleState::PendingWait, None) => {
                    picked.launching.push(id.to_owned())
                }
                (InstanceLifecycleState::InService, Some(h))
                    if h.status == ContainerInstanceStatus::Active =>
                {
                    picked.active.push((id.to_owned(), h.arn.clone()));
                }
                (lifecycle, h) => picked.refused.push(format!(
                    "{id}: {lifecycle:?} with container instance {}",
                    h.map_or_else(|| "none".to_owned(), |h| format!("{:?}", h.status))
                )),
            }
        }
        picked
    }

    /// Sets the container instances `arns` to `status` (at most 10 per call): the ARNs
    /// ECS refused, with its reason.
    async fn set_status(
        &self,
        arns: &[String],
        status: ContainerInstanceStatus,
    ) -> Result<BTreeMap<String, String>, Outcome> {
        let mut refused = BTreeMap::new();
        for batch in arns.chunks(UPDATE_CONTAINER_INSTANCES_STATE) {
            let failures = self
                .ecs
                .update_container_instances_state(&self.spec.cluster, batch, status)
                .await
                .map_err(|e| aws_outcome(&e))?;
            refused.extend(failures.into_iter().map(|f| (f.arn.to_string(), f.reason)));
        }
        Ok(refused)
    }

    /// Whether victim `id` is proven to hold no task: launching without a container
    /// instance, or in service with a DRAINING container instance that holds nothing.
    fn proven_empty(snap: &Snapshot, id: &str) -> Result<(), String> {
        let Some(inst) = snap.instance(id) else {
            return Err("no longer an instance of the group".into());
        };
        match (inst.lifecycle_state, snap.host(id)) {
            (InstanceLifecycleState::Pending | InstanceLifecycleState::PendingWait, None) => Ok(()),
            (InstanceLifecycleState::Pending | InstanceLifecycleState::PendingWait, Some(_)) => {
                Err("registered with the cluster before it could be terminated".into())
            }
            (InstanceLifecycleState::InService, None) => {
                Err("in service without a container instance: it cannot be proven drained".into())
            }
            (InstanceLifecycleState::InService, Some(h)) => match h.status {
                ContainerInstanceStatus::Draining if is_empty(h) => Ok(()),
                ContainerInstanceStatus::Draining => {
                    Err(format!("still holds {} tasks", tasks_on(h)))
                }
                ContainerInstanceStatus::Active => {
                    Err("its container instance was set ACTIVE again".into())
                }
                other => Err(format!("its container instance is {other:?}")),
            },
            (
                InstanceLifecycleState::Terminating
                | InstanceLifecycleState::TerminatingWait
                | InstanceLifecycleState::Terminated,
                _,
            ) => Err("terminated by someone else".into()),
            (InstanceLifecycleState::Other, _) => Err("left service (standby or detached)".into()),
        }
    }

    /// The container instance of victim `id` if it is DRAINING and in service: one to
    /// set ACTIVE again when the victim is kept.
    fn still_draining(snap: &Snapshot, id: &str) -> Option<String> {
        let inst = snap.instance(id)?;
        let h = snap.host(id)?;
        (matches!(
            inst.lifecycle_state,
            InstanceLifecycleState::InService | InstanceLifecycleState::Other
        ) && h.status == ContainerInstanceStatus::Draining)
            .then(|| h.arn.clone())
    }

    /// Keeps `kept` (victim, reason), after setting ACTIVE again those still DRAINING.
    async fn keep_all(
        &self,
        w: &mut Workflow,
        snap: &Snapshot,
        kept: Vec<(TaskId, String)>,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let arns: Vec<String> = kept
            .iter()
            .filter_map(|(id, _)| Self::still_draining(snap, id.as_str()))
            .collect();
        if let Err(o) = self
            .set_status(&arns, ContainerInstanceStatus::Active)
            .await
        {
            return o;
        }
        let now = self.clock.now();
        for (id, why) in kept {
            tracing::warn!(target_name = %self.name, instance = %id, why, "host dropped from the removal and kept");
            events.extend(w.keep(&id, &why, now));
        }
        Outcome::Done
    }

    /// The effect of a host removal's current step.
    async fn host_step(
        &self,
        d: &Durable,
        w: &mut Workflow,
        snap: &Snapshot,
    ) -> Result<(Outcome, Vec<Event>), TargetError> {
        let now = self.clock.now();
        let mut events = Vec::new();
        let outcome = match w.step {
            Step::MarkDraining => {
                let mut to_drain = Vec::new();
                let mut by_arn = BTreeMap::new();
                for v in w.remaining() {
                    if let Some(h) = snap.host(v.task.as_str())
                        && h.status == ContainerInstanceStatus::Active
                    {
                        to_drain.push(h.arn.clone());
                        by_arn.insert(h.arn.clone(), v.task.clone());
                    }
                }
                match self
                    .set_status(&to_drain, ContainerInstanceStatus::Draining)
                    .await
                {
                    Err(o) => o,
                    Ok(refused) => {
                        for (arn, reason) in refused {
                            if let Some(id) = by_arn.get(&arn) {
                                events.extend(w.keep(
                                    id,
                                    &format!("ECS did not set it DRAINING: {reason}"),
                                    now,
                                ));
                            }
                        }
                        Outcome::Done
                    }
                }
            }
            Step::WaitDrained => {
                let since = w.deregistered_at.unwrap_or(now);
                // The first check comes after ECS has taken the DRAINING state (and
                // never on the snapshot read before it was set); launching victims
                // alone have nothing to drain.
                let first = add(
                    since,
                    d.settings
                        .first_check_after
                        .max(std::time::Duration::from_secs(1)),
                );
                let registered = w.remaining().any(|v| snap.host(v.task.as_str()).is_some());
                if now < first && registered {
                    return Ok((Outcome::Wait { until: first }, events));
                }
                // Still draining: worth waiting for. A victim gone, re-activated or
                // left service never will be: the recheck keeps it.
                let draining = w.remaining().any(|v| {
                    let id = v.task.as_str();
                    snap.instance(id)
                        .is_some_and(|i| i.lifecycle_state == InstanceLifecycleState::InService)
                        && snap.host(id).is_some_and(|h| {
                            h.status == ContainerInstanceStatus::Draining && !is_empty(h)
                        })
                });
                let any_empty = w
                    .remaining()
                    .any(|v| Self::proven_empty(snap, v.task.as_str()).is_ok());
                if elapsed(since, now) >= self.spec.drain_timeout || !(draining || any_empty) {
                    Outcome::Done
                } else if draining {
                    Outcome::Wait {
                        until: add(now, d.settings.check_every),
                    }
                } else {
                    match self.below_minimum(&w.services).await {
                        Err(e) => aws_outcome(&e),
                        Ok(None) => Outcome::Done,
                        Ok(Some(why)) => {
                            tracing::debug!(target_name = %self.name, workflow = %w.id, why, "hosts drained, waiting for the services");
                            Outcome::Wait {
                                until: add(now, d.settings.check_every),
                            }
                        }
                    }
                }
            }
            Step::Recheck => {
                let mut kept: Vec<(TaskId, String)> = w
                    .remaining()
                    .filter_map(|v| {
                        Self::proven_empty(snap, v.task.as_str())
                            .err()
                            .map(|why| (v.task.clone(), why))
                    })
                    .collect();
                let timeout = self.spec.drain_timeout.as_secs();
                for (_, why) in &mut kept {
                    if why.starts_with("still holds") {
                        why.push_str(&format!(" after the drain timeout ({timeout} s)"));
                    }
                }
                if kept.len() < w.remaining().count() {
                    match self.below_minimum(&w.services).await {
                        Err(e) => return Ok((aws_outcome(&e), events)),
                        Ok(None) => {}
                        Ok(Some(why)) => {
                            let why = format!("after the drain timeout ({timeout} s), {why}");
                            kept = w
                                .remaining()
                                .map(|v| (v.task.clone(), why.clone()))
                                .collect();
                        }
                    }
                }
                self.keep_all(w, snap, kept, &mut events).await
            }
            Step::Terminate => {
                let mut result = Outcome::Done;
                let mut kept = Vec::new();
                for v in w.remaining() {
                    let id = v.task.as_str();
                    let gone = snap.instance(id).is_none_or(|i| {
                        matches!(
                            i.lifecycle_state,
                            InstanceLifecycleState::Terminating
                                | InstanceLifecycleState::TerminatingWait
                        )
                    });
                    if gone {
                        // Terminated already (by this step, before a crash): never twice.
                        continue;
                    }
                    if let Err(why) = Self::proven_empty(snap, id) {
                        kept.push((v.task.clone(), why));
                        continue;
                    }
                    match self.asg.terminate_instance(id, true).await {
                        Ok(()) => {
                            tracing::info!(target_name = %self.name, instance = id, "host drained and terminated");
                        }
                        Err(e) => {
                            result = aws_outcome(&e);
                            break;
                        }
                    }
                }
                if !kept.is_empty() {
                    let o = self.keep_all(w, snap, kept, &mut events).await;
                    if result == Outcome::Done {
                        result = o;
                    }
                }
                result
            }
            Step::Undo => {
                let arns: Vec<String> = w
                    .victims
                    .iter()
                    .filter_map(|v| Self::still_draining(snap, v.task.as_str()))
                    .collect();
                match self
                    .set_status(&arns, ContainerInstanceStatus::Active)
                    .await
                {
                    Ok(_) => Outcome::Done,
                    Err(o) => o,
                }
            }
            Step::Deregister
            | Step::Protect
            | Step::LowerDesired
            | Step::StopTasks
            | Step::Release
            | Step::Done => Outcome::Done,
        };
        Ok((outcome, events))
    }

    /// At shutdown: a removal kept in memory would be lost, so one that may still be
    /// cancelled is cancelled and undone (its hosts set ACTIVE again); one already
    /// terminating is left to finish. One in a durable journal is left for the next
    /// capstan to resume. Best effort: errors are logged.
    pub(super) async fn abandon(&self) {
        let Ok(d) = self.live() else { return };
        let Some(mut w) = d.current() else { return };
        if !d.in_memory {
            tracing::info!(target_name = %self.name, workflow = %w.id, step = w.step.as_str(), "shutdown: the host removal stays in its journal and resumes at the next start");
            return;
        }
        let Some(event) = w.cancel(self.clock.now()) else {
            tracing::info!(target_name = %self.name, workflow = %w.id, step = w.step.as_str(), "shutdown while hosts are being terminated: left as it is");
            return;
        };
        let undone = async {
            d.save(&self.name, &w, &[event])?;
            d.set(Some(w));
            let snap = self.snapshot().await?;
            d.drive(self, &snap).await
        };
        if let Err(e) = undone.await {
            tracing::warn!(target_name = %self.name, error = %e, "shutdown: cannot undo the host removal; hosts may be left DRAINING");
        }
        if let Some(w) = d.current() {
            tracing::warn!(target_name = %self.name, workflow = %w.id, step = w.step.as_str(), "shutdown: hosts left DRAINING");
        }
    }
}

impl<E: Ecs, A: AutoScaling> Steps for AsgTarget<E, A> {
    type View = Snapshot;

    fn target_name(&self) -> &str {
        &self.name
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn effect(
        &self,
        d: &Durable,
        w: &mut Workflow,
        snap: &Snapshot,
    ) -> Result<(Outcome, Vec<Event>), TargetError> {
        self.host_step(d, w, snap).await
    }
}
