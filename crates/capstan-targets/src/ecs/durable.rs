//! The durable scale-in of the ECS target: each scale-in is a
//! [`Workflow`](capstan_core::workflow::Workflow) whose state and journal are written to
//! a [`Journal`] before and after every step, so a crash at any point resumes where it
//! stopped, and a step is never done twice (each effect is idempotent, and lowering the
//! desired count first records the count it lowers from).
//!
//! Every scale-in of the target runs the steps of [`capstan_core::workflow`] against
//! ECS and ELBv2, kept in the journal given to [`EcsTarget::with_workflows`] or, by
//! default, in a [`MemoryJournal`] of the target's own (lost with it): mark draining (the victims show
//! as draining, so the work registry refuses them new work) → deregister from the
//! target group → wait drained → recheck (a victim with live work, protected by someone
//! else or gone is registered again and kept) → protect the other tasks → lower
//! `desiredCount` → `StopTask` the victims → release the protection it added → done.
//! One workflow per service at a time; the observation drives it along. A scale-out
//! cancels it before the protect step (the victims are registered again); after that it
//! runs to its end. A deployment that starts while the workflow runs holds it at the
//! recheck (still cancellable) and before the count is lowered, until it is over. A step
//! that keeps failing leaves the workflow failed at that step until
//! [`EcsTarget::redrive`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use capstan_aws_api::{AwsErrorKind, Ecs, Elb, TargetHealthState, TargetRef};
use capstan_core::clock::add;
use capstan_core::model::TaskId;
use capstan_core::workflow::{Event, LbTarget, Outcome, Status, Step, Workflow, WorkflowSettings};

use super::calls::{self, TASK_NOT_VALID};
use super::{EcsTarget, Snapshot};
use crate::TargetError;
pub use crate::durable::{Boundary, Failpoint, Journal, MemoryJournal};
use crate::durable::{Durable, Steps, aws_outcome};

impl<E: Ecs, L: Elb> Steps for EcsTarget<E, L> {
    type View = Snapshot;

    fn target_name(&self) -> &str {
        &self.name
    }

    fn now(&self) -> capstan_core::Timestamp {
        self.clock.now()
    }

    async fn effect(
        &self,
        d: &Durable,
        w: &mut Workflow,
        snap: &Snapshot,
    ) -> Result<(Outcome, Vec<Event>), TargetError> {
        self.step_effect(d, w, snap).await
    }

    fn finished(&self, _w: &Workflow) {
        if let Some(p) = &self.protector {
            p.unpin();
        }
    }
}

impl<E: Ecs, L: Elb> EcsTarget<E, L> {
    /// The same target, keeping its scale-in workflows in `journal` with `settings`
    /// (see [`durable`](self::super::durable)) instead of in memory; an active workflow
    /// of this service found there is resumed at the next observation.
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

    /// The workflow holding the service, if any.
    pub fn workflow(&self) -> Option<Workflow> {
        self.durable.current()
    }

    /// Resumes the failed workflow `id` from the step it failed at.
    pub async fn redrive(&self, id: &str) -> Result<Workflow, TargetError> {
        let d = self.durable()?;
        let _busy = self.busy.lock().await;
        d.redrive(&self.name, id, self.clock.now())
    }

    /// The workflows, unless a failpoint stopped the target.
    pub(super) fn durable(&self) -> Result<&Durable, TargetError> {
        self.durable.alive(&self.name)
    }

    fn save(&self, d: &Durable, w: &Workflow, events: &[Event]) -> Result<(), TargetError> {
        d.save(&self.name, w, events)
    }

    /// Starts a workflow stopping `victims` to reach `desired`.
    pub(super) async fn durable_scale_in(
        &self,
        desired: u32,
        victims: &[TaskId],
    ) -> Result<(), TargetError> {
        let d = self.durable()?;
        if let Some(w) = d.current() {
            if w.to == desired && w.is_running() {
                return Ok(());
            }
            return Err(self.fail(format!(
                "scale-in to {desired} waits: workflow {} ({} at {}) holds the service",
                w.id,
                w.status.as_str(),
                w.step.as_str()
            )));
        }
        let snap = self.snapshot(&[]).await?;
        if snap.service.deployment_in_progress() {
            return Err(self.fail("scale-in held: a deployment is in progress"));
        }
        if desired >= snap.service.desired {
            return Err(self.invalid(format!(
                "scale in to {desired} is not below the desired count {}",
                snap.service.desired
            )));
        }
        let now = self.clock.now();
        let id = d.next_id(&self.name, now);
        let (w, created) = Workflow::new(
            id,
            &self.name,
            snap.service.desired,
            desired,
            victims.to_vec(),
            now,
        );
        self.save(d, &w, &[created])?;
        d.set(Some(w));
        self.drive(d, &snap).await
    }

    /// Cancels the workflow for a scale-out if it may still be cancelled, and runs its
    /// undo.
    pub(super) async fn durable_cancel(&self) -> Result<(), TargetError> {
        let d = self.durable()?;
        let Some(mut w) = d.current() else {
            return Ok(());
        };
        let Some(event) = w.cancel(self.clock.now()) else {
            return Ok(());
        };
        self.save(d, &w, &[event])?;
        d.set(Some(w));
        let snap = self.snapshot(&[]).await?;
        self.drive(d, &snap).await
    }

    /// Runs the workflow's due steps (see [`Durable::drive`]).
    pub(super) async fn drive(&self, d: &Durable, snap: &Snapshot) -> Result<(), TargetError> {
        d.drive(self, snap).await
    }

    /// Every target group the victims are drained from: the configured one and those
    /// `DescribeServices` lists for the service.
    fn groups(&self, snap: &Snapshot) -> Vec<String> {
        let mut groups: Vec<String> = self.spec.target_group.iter().cloned().collect();
        for g in &snap.service.target_groups {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        if self.elb.is_none() {
            groups.clear();
        }
        groups
    }

    /// The victims' targets in the service's target groups: an awsvpc victim's IP
    /// targets (its private IP, on every port the group reports for it), and a bridge
    /// or host networking victim's instance targets (the EC2 instance behind its
    /// container instance, on one of its own host ports: another task on the same
    /// instance has other host ports, so it is never taken for the victim).
    async fn lb_targets(
        &self,
        snap: &Snapshot,
        w: &Workflow,
    ) -> Result<HashMap<TaskId, Vec<LbTarget>>, Outcome> {
        let mut out: HashMap<TaskId, Vec<LbTarget>> = HashMap::new();
        let Some(elb) = &self.elb else {
            return Ok(out);
        };
        let groups = self.groups(snap);
        if groups.is_empty() {
            return Ok(out);
        }
        let victims: Vec<(&TaskId, &capstan_aws_api::EcsTask)> = w
            .remaining()
            .filter_map(|v| Some((&v.task, snap.live_task(v.task.as_str())?)))
            .collect();
        // The EC2 instances of the victims with host ports (asked only for them).
        let mut hosts: Vec<String> = victims
            .iter()
            .filter(|(_, t)| !t.host_ports.is_empty())
            .filter_map(|(_, t)| t.container_instance.as_deref().map(str::to_owned))
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        let instance_ids = if hosts.is_empty() {
            HashMap::new()
        } else {
            calls::ec2_instance_ids(&self.ecs, &self.spec.cluster, &hosts)
                .await
                .map_err(|e| aws_outcome(&e))?
        };
        for tg in groups {
            let health = elb
                .describe_target_health(&tg)
                .await
                .map_err(|e| aws_outcome(&e))?;
            for (task, t) in &victims {
                let ip = t.private_ip.as_deref();
                let instance = t
                    .container_instance
                    .as_deref()
                    .filter(|_| !t.host_ports.is_empty())
                    .and_then(|ci| instance_ids.get(ci))
                    .map(String::as_str);
                let found: Vec<LbTarget> = health
                    .iter()
                    .filter(|h| h.state != TargetHealthState::Unused)
                    .filter(|h| {
                        ip == Some(h.target.id.as_str())
                            || (instance == Some(h.target.id.as_str())
                                && t.host_ports.contains(&h.target.port))
                    })
                    .map(|h| LbTarget {
                        group: tg.clone(),
                        id: h.target.id.clone(),
                        port: Some(h.target.port),
                    })
                    .collect();
                if !found.is_empty() {
                    out.entry((*task).clone()).or_default().extend(found);
                }
            }
        }
        Ok(out)
    }

    /// Registers `targets` again (a kept or cancelled victim).
    async fn reregister(&self, targets: &[LbTarget]) -> Result<(), Outcome> {
        let Some(elb) = &self.elb else {
            return Ok(());
        };
        let mut by_group: HashMap<&str, Vec<TargetRef>> = HashMap::new();
        for t in targets {
            by_group.entry(&t.group).or_default().push(TargetRef {
                id: t.id.clone(),
                port: t.port.unwrap_or(0),
            });
        }
        for (group, refs) in by_group {
            elb.register_targets(group, &refs)
                .await
                .map_err(|e| aws_outcome(&e))?;
        }
        Ok(())
    }

    /// Runs the effect of `w`'s current step; the outcome and any journal lines of its
    /// own (victims kept).
    async fn step_effect(
        &self,
        d: &Durable,
        w: &mut Workflow,
        snap: &Snapshot,
    ) -> Result<(Outcome, Vec<Event>), TargetError> {
        let now = self.clock.now();
        let mut events = Vec::new();
        let outcome = match w.step {
            // The victims show as draining from the workflow's creation on (see
            // `observed`), which is what makes the registry refuse them new work.
            Step::MarkDraining => Outcome::Done,
            Step::Deregister => match self.lb_targets(snap, w).await {
                Err(o) => o,
                Ok(found) => {
                    for v in &mut w.victims {
                        if let Some(t) = found.get(&v.task)
                            && v.targets.is_empty()
                        {
                            v.targets = t.clone();
                        }
                    }
                    // Recorded before the call: a crash after it still knows what to
                    // register again.
                    self.save(d, w, &[])?;
                    let mut result = Outcome::Done;
                    if let Some(elb) = &self.elb {
                        // Only the targets still in their groups: after a crash that
                        // followed the call, the retry finds them gone and calls
                        // nothing (ELBv2 may refuse a target it no longer has).
                        let mut by_group: HashMap<&str, Vec<TargetRef>> = HashMap::new();
                        for t in w.remaining().flat_map(|v| {
                            let present = found.get(&v.task);
                            v.targets
                                .iter()
                                .filter(move |t| present.is_some_and(|p| p.contains(t)))
                        }) {
                            by_group.entry(&t.group).or_default().push(TargetRef {
                                id: t.id.clone(),
                                port: t.port.unwrap_or(0),
                            });
                        }
                        for (tg, refs) in by_group {
                            if let Err(e) = elb.deregister_targets(tg, &refs).await {
                                result = aws_outcome(&e);
                                break;
                            }
                        }
                    }
                    result
                }
            },
            Step::WaitDrained => self.wait_drained(d, w, snap).await,
            // A deployment that started after the workflow did: AWS holds scale-in
            // while one rolls (AWS-SEMANTICS §1), so the workflow waits here, where a
            // scale-out may still cancel it, and again before lowering the count.
            Step::Recheck | Step::LowerDesired
                if snap.service.deployment_in_progress()
                    && (w.step == Step::Recheck || w.lowered_from.is_none()) =>
            {
                events.push(Event {
                    at: now,
                    step: w.step,
                    event: "held".into(),
                    detail: "a deployment is in progress".into(),
                });
                Outcome::Wait {
                    until: add(now, d.settings.check_every),
                }
            }
            Step::Recheck => {
                let arns: Vec<&str> = w.remaining().map(|v| v.task.as_str()).collect();
                let work = self.work.as_ref().map(|c| c.work_many(&arns));
                let in_groups = match self.still_in_groups(w).await {
                    Ok(t) => t,
                    Err(o) => return Ok((o, events)),
                };
                let since = w.deregistered_at.unwrap_or(now);
                let cut = d
                    .settings
                    .cut_after
                    .is_some_and(|after| now >= add(since, after));
                let mut keep: Vec<(TaskId, String, Vec<LbTarget>)> = Vec::new();
                for (i, v) in w.remaining().enumerate() {
                    let busy = work.as_ref().and_then(|w| w.get(i)).copied().unwrap_or(0);
                    let arn = v.task.as_str();
                    let draining = in_groups.contains(&v.task);
                    let reason = if !snap.is_running(arn) {
                        Some("no longer running".to_owned())
                    } else if self
                        .protector
                        .as_ref()
                        .is_some_and(|p| p.holds(arn).is_some())
                    {
                        Some("protected for a workload".to_owned())
                    } else if snap.protected.contains(arn) {
                        // Protected by someone else since it was chosen (the
                        // application itself, through ECS): StopTask would ignore it.
                        Some("protected by someone else".to_owned())
                    } else if (busy > 0 || draining) && !cut {
                        Some(if busy > 0 {
                            format!("{busy} sessions or workloads still live")
                        } else {
                            "still draining in its target group".to_owned()
                        })
                    } else {
                        if busy > 0 || draining {
                            tracing::warn!(target_name = %self.name, task = arn, live_work = busy, "drain deadline passed: the victim is stopped with its work cut");
                            events.push(capstan_core::workflow::Event {
                                at: now,
                                step: w.step,
                                event: "cut".into(),
                                detail: format!(
                                    "{arn}: {busy} sessions or workloads cut after the drain deadline"
                                ),
                            });
                        }
                        None
                    };
                    if let Some(reason) = reason {
                        keep.push((v.task.clone(), reason, v.targets.clone()));
                    }
                }
                let mut result = Outcome::Done;
                for (task, reason, targets) in keep {
                    if snap.is_running(task.as_str())
                        && let Err(o) = self.reregister(&targets).await
                    {
                        result = o;
                        break;
                    }
                    events.extend(w.keep(&task, &reason, now));
                }
                result
            }
            Step::Protect => {
                let victims: BTreeSet<&str> = w.remaining().map(|v| v.task.as_str()).collect();
                let ours: BTreeSet<Arc<str>> = w.protected.iter().map(|t| t.0.clone()).collect();
                let to_protect: Vec<Arc<str>> = snap
                    .live
                    .iter()
                    .filter(|t| !victims.contains(&*t.arn))
                    .filter(|t| !snap.protected.contains(&t.arn) || ours.contains(&t.arn))
                    .map(|t| t.arn.clone())
                    .collect();
                if let Some(p) = &self.protector {
                    p.pin(
                        snap.live
                            .iter()
                            .filter(|t| !victims.contains(&*t.arn))
                            .map(|t| TaskId(t.arn.clone())),
                    );
                }
                for arn in &to_protect {
                    if !ours.contains(arn) {
                        w.protected.push(TaskId(arn.clone()));
                    }
                }
                // Recorded before the call: released after a crash, whatever happened.
                self.save(d, w, &[])?;
                let outcome = calls::update_protection(
                    &self.ecs,
                    &self.spec.cluster,
                    &to_protect,
                    Some(self.spec.protect_minutes),
                )
                .await;
                match outcome.error {
                    Some(error) => Outcome::Retry { error },
                    None => Outcome::Done,
                }
            }
            Step::LowerDesired => {
                let current = snap.service.desired;
                let from = match w.lowered_from {
                    Some(from) => from,
                    None => {
                        w.lowered_from = Some(current);
                        self.save(d, w, &[])?;
                        current
                    }
                };
                let target = from.saturating_sub(w.remaining_count()).max(w.to);
                if current != from {
                    // Lowered already (a retry after a crash), or changed by someone
                    // else: never lowered twice.
                    Outcome::Done
                } else {
                    match self
                        .ecs
                        .update_desired_count(&self.spec.cluster, &self.spec.service, target)
                        .await
                    {
                        Ok(()) => Outcome::Done,
                        Err(e) => aws_outcome(&e),
                    }
                }
            }
            Step::StopTasks => {
                let mut result = Outcome::Done;
                for v in w.remaining() {
                    let arn = v.task.as_str();
                    if !snap.is_running(arn) {
                        continue;
                    }
                    if let Err(e) = self
                        .ecs
                        .stop_task(&self.spec.cluster, arn, "capstan scale-in")
                        .await
                        && e.kind != AwsErrorKind::NotFound
                        && !e.to_string().contains(TASK_NOT_VALID)
                    {
                        result = aws_outcome(&e);
                        break;
                    }
                }
                result
            }
            Step::Release => {
                let held: Vec<Arc<str>> = w
                    .protected
                    .iter()
                    .filter(|t| {
                        self.protector
                            .as_ref()
                            .is_none_or(|p| p.holds(t.as_str()).is_none())
                    })
                    .map(|t| t.0.clone())
                    .collect();
                let outcome =
                    calls::update_protection(&self.ecs, &self.spec.cluster, &held, None).await;
                match outcome.error {
                    Some(error) => Outcome::Retry { error },
                    None => Outcome::Done,
                }
            }
            Step::Undo => {
                let targets: Vec<LbTarget> = w
                    .victims
                    .iter()
                    .filter(|v| snap.is_running(v.task.as_str()))
                    .flat_map(|v| v.targets.iter().cloned())
                    .collect();
                match self.reregister(&targets).await {
                    Ok(()) => Outcome::Done,
                    Err(o) => o,
                }
            }
            // Not a step of a task scale-in.
            Step::Terminate | Step::Done => Outcome::Done,
        };
        Ok((outcome, events))
    }

    /// The victims still in a target group (registered, or draining there).
    async fn still_in_groups(&self, w: &Workflow) -> Result<BTreeSet<TaskId>, Outcome> {
        let mut out = BTreeSet::new();
        let Some(elb) = &self.elb else {
            return Ok(out);
        };
        let groups: BTreeSet<&str> = w
            .remaining()
            .flat_map(|v| v.targets.iter().map(|t| t.group.as_str()))
            .collect();
        for tg in groups {
            let health = elb
                .describe_target_health(tg)
                .await
                .map_err(|e| aws_outcome(&e))?;
            for v in w.remaining() {
                let present = v.targets.iter().any(|t| {
                    t.group == tg
                        && health.iter().any(|x| {
                            x.target.id == t.id
                                && Some(x.target.port) == t.port
                                && x.state != TargetHealthState::Unused
                        })
                });
                if present {
                    out.insert(v.task.clone());
                }
            }
        }
        Ok(out)
    }

    /// The drain check: done when every victim left is idle (no session or workload in
    /// the registry) and out of its target groups (the load balancer lets an idle
    /// target go at once), or at the drain timeout (or deadline), where the recheck
    /// keeps (or cuts) the busy ones; otherwise wait for the next check.
    async fn wait_drained(&self, d: &Durable, w: &Workflow, snap: &Snapshot) -> Outcome {
        let now = self.clock.now();
        let since = w.deregistered_at.unwrap_or(now);
        let arns: Vec<&str> = w.remaining().map(|v| v.task.as_str()).collect();
        let work = self.work.as_ref().map(|c| c.work_many(&arns));
        let idle = |i: usize| work.as_ref().and_then(|w| w.get(i)).copied().unwrap_or(0) == 0;
        // Nothing in a target group and nothing live: nothing to wait for.
        if w.remaining()
            .enumerate()
            .all(|(i, v)| v.targets.is_empty() && idle(i))
        {
            return Outcome::Done;
        }
        let first = add(since, d.settings.first_check_after);
        if now < first {
            return Outcome::Wait { until: first };
        }
        let limit = d.settings.cut_after.unwrap_or(d.settings.drain_timeout);
        if now >= add(since, limit) {
            return Outcome::Done;
        }
        let in_groups = match self.still_in_groups(w).await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let drained = w.remaining().enumerate().all(|(i, v)| {
            !snap.is_running(v.task.as_str()) || (idle(i) && !in_groups.contains(&v.task))
        });
        if drained {
            Outcome::Done
        } else {
            Outcome::Wait {
                until: add(now, d.settings.check_every),
            }
        }
    }

    /// Runs the workflow's steps that are due now (between observations: a drain check,
    /// a retry), reading the service afresh. Does nothing (and calls nothing) when no
    /// workflow is due. Gives when the workflow next needs a step, if it waits.
    pub async fn advance_workflow(&self) -> Result<Option<capstan_core::Timestamp>, TargetError> {
        let d = self.durable()?;
        let now = self.clock.now();
        match d.current() {
            Some(w) if w.due(now) => {}
            Some(w) => return Ok(w.not_before),
            None => return Ok(None),
        }
        let _busy = self.busy.lock().await;
        let extra: Vec<Arc<str>> = self
            .durable_view()
            .map(|(_, victims)| victims.into_iter().collect())
            .unwrap_or_default();
        let snap = self.snapshot(&extra).await?;
        self.drive(d, &snap).await?;
        Ok(d.current().and_then(|w| w.not_before))
    }

    /// Whether a workflow of this target is active (the reported desired count is its
    /// target), and which victims it still has.
    pub(super) fn durable_view(&self) -> Option<(u32, BTreeSet<Arc<str>>)> {
        let w = self.durable.current()?;
        if w.step == Step::Undo {
            return None;
        }
        Some((
            w.target_count(),
            w.remaining().map(|v| v.task.0.clone()).collect(),
        ))
    }

    /// Whether the target runs scale-in workflows that need driving between
    /// observations ([`advance_workflow`](Self::advance_workflow)): always, every
    /// scale-in is one.
    pub fn workflow_capable(&self) -> bool {
        true
    }

    /// At shutdown: a workflow kept in memory would be lost, so one that may still be
    /// cancelled is cancelled and its undo run (victims registered again); one past
    /// its protect step is left (ECS may be stopping the victims; the protection it
    /// added lapses on its own). A workflow in a durable journal is left for the next
    /// capstan to resume.
    pub(super) async fn durable_shutdown(&self) {
        let Ok(d) = self.durable() else { return };
        let Some(w) = d.current() else { return };
        if !d.in_memory {
            tracing::info!(target_name = %self.name, workflow = %w.id, step = w.step.as_str(), "shutdown: the scale-in workflow stays in its journal and resumes at the next start");
            return;
        }
        if !w.step.cancellable(w.kind) || !w.is_active() {
            tracing::info!(target_name = %self.name, workflow = %w.id, step = w.step.as_str(), protected = w.protected.len(), "shutdown during a scale-in: ECS is stopping the victims; the protection added lapses on its own");
            return;
        }
        if let Err(e) = self.durable_cancel().await {
            tracing::warn!(target_name = %self.name, workflow = %w.id, error = %e, "shutdown: cannot undo the scale-in");
        }
        if let Some(w) = d.current() {
            tracing::warn!(target_name = %self.name, workflow = %w.id, step = w.step.as_str(), status = w.status.as_str(), "shutdown: the scale-in's undo is left unfinished");
        }
    }

    /// The failed workflow's error, if it is failed.
    pub fn workflow_error(&self) -> Option<String> {
        match self.workflow()?.status {
            Status::Failed { error } => Some(error),
            _ => None,
        }
    }
}
