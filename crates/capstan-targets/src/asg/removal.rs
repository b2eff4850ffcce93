//! The host removal in progress of an EC2 cluster target, and the hosts it still owes
//! an ACTIVE state: started by `scale_in`, moved along by each observation, cancelled
//! by `scale_out` and by shutdown. In memory only.

use std::collections::{BTreeMap, BTreeSet};

use capstan_aws_api::limits::UPDATE_CONTAINER_INSTANCES_STATE;
use capstan_aws_api::{AutoScaling, ContainerInstanceStatus, Ecs, InstanceLifecycleState};
use capstan_core::Timestamp;
use capstan_core::clock::elapsed;
use capstan_core::model::TaskId;

use super::{AsgTarget, RemovalProgress, Snapshot, is_empty, tasks_on};
use crate::TargetError;
use crate::count;

/// What the target remembers between calls.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The removal in progress.
    removal: Option<Removal>,
    /// Container instances (ARN → EC2 instance id) to set ACTIVE again.
    reactivate: BTreeMap<String, String>,
    /// Instances held by the termination hook (EC2 instance id → when its wait began
    /// or its heartbeat was last recorded).
    pub(super) hooked: BTreeMap<String, Timestamp>,
}

impl State {
    /// The removal in progress, as reported outside.
    pub(super) fn progress(&self) -> Option<RemovalProgress> {
        self.removal.as_ref().map(|r| RemovalProgress {
            to: r.to(),
            draining: r
                .victims
                .iter()
                .map(|v| TaskId::from(v.instance_id.as_str()))
                .collect(),
            terminated: r.terminated,
        })
    }

    /// The desired capacity to report while a removal is in progress.
    pub(super) fn reported_desired(&self) -> Option<u32> {
        self.removal.as_ref().map(Removal::to)
    }
}

/// One removal in progress.
#[derive(Debug)]
struct Removal {
    /// The desired capacity asked for.
    requested: u32,
    /// The group's desired capacity when it started.
    base: u32,
    /// The hosts still to terminate.
    victims: Vec<Victim>,
    /// Hosts it terminated so far.
    terminated: u32,
}

impl Removal {
    /// The desired capacity it scales in to: lowered by the hosts still in it and
    /// those terminated, never below the count asked for.
    fn to(&self) -> u32 {
        self.base
            .saturating_sub(count(self.victims.len()).saturating_add(self.terminated))
            .max(self.requested)
    }
}

/// One host being removed.
#[derive(Debug)]
struct Victim {
    /// EC2 instance id.
    instance_id: String,
    /// Its container instance, set DRAINING by us; `None` for an instance still
    /// launching (nothing to drain).
    host: Option<String>,
    /// When it was chosen.
    since: Timestamp,
}

/// What to do with a victim after looking at it.
#[derive(Debug)]
enum Step {
    /// Still draining.
    Wait,
    /// Terminated now.
    Terminated,
    /// Out of the removal, kept; `reactivate`: set its container instance ACTIVE again.
    Drop {
        /// Why.
        why: String,
        /// Whether to set it ACTIVE again.
        reactivate: bool,
    },
}

/// What one observation's step of the removal did (its snapshot predates it).
#[derive(Debug, Default)]
pub(super) struct Advanced {
    /// Hosts terminated now.
    pub terminated: u32,
    /// Hosts (EC2 instance ids) set ACTIVE again now.
    pub reactivated: BTreeSet<String>,
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
    /// `scale_out` with the state locked.
    pub(super) async fn scale_out_locked(
        &self,
        state: &mut State,
        desired: u32,
    ) -> Result<(), TargetError> {
        let snap = self.snapshot().await?;
        let group = &snap.group;
        let reported = state.reported_desired().unwrap_or(group.desired);
        if desired < reported {
            return Err(self.invalid(format!(
                "scale out to {desired} is below the desired capacity {reported}; scale in instead"
            )));
        }
        if let Some(r) = state.removal.take() {
            tracing::info!(target_name = %self.name, to = desired, draining = r.victims.len(), "scale-out cancels the host removal in progress");
            for v in r.victims {
                if let Some(host) = v.host {
                    state.reactivate.insert(host, v.instance_id);
                }
            }
        }
        self.flush(state).await;
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
        state: &mut State,
        desired: u32,
        victims: &[TaskId],
    ) -> Result<(), TargetError> {
        self.spec.validate().map_err(|e| self.invalid(e))?;
        if let Some(r) = &state.removal {
            if r.to() == desired {
                return Ok(());
            }
            return Err(self.fail(format!(
                "scale-in to {desired} waits: the host removal down to {} is still in progress",
                r.to()
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
        let (fitting, refused) = self
            .safe_to_remove(&snap, std::mem::take(&mut picked.active))
            .await?;
        picked
            .refused
            .extend(refused.into_iter().map(|(id, why)| format!("{id}: {why}")));
        if !picked.refused.is_empty() {
            tracing::info!(target_name = %self.name, refused = ?picked.refused, "hosts not fit to remove are kept");
        }
        if fitting.is_empty() && picked.launching.is_empty() {
            let why = if picked.refused.is_empty() {
                "no victim was given".to_owned()
            } else {
                picked.refused.join("; ")
            };
            return Err(self.fail(format!(
                "scale-in to {desired} not started: no host can be removed safely ({why})"
            )));
        }
        let drained = self.drain(state, &fitting).await?;
        let now = self.clock.now();
        let mut chosen: Vec<Victim> = Vec::new();
        for (id, host) in drained {
            state.reactivate.remove(&host);
            chosen.push(Victim {
                instance_id: id,
                host: Some(host),
                since: now,
            });
        }
        chosen.extend(picked.launching.into_iter().map(|id| Victim {
            instance_id: id,
            host: None,
            since: now,
        }));
        tracing::info!(
            target_name = %self.name,
            from = current,
            victims = ?chosen.iter().map(|v| v.instance_id.as_str()).collect::<Vec<_>>(),
            "host removal started"
        );
        state.removal = Some(Removal {
            requested: desired,
            base: current,
            victims: chosen,
            terminated: 0,
        });
        // A fresh look: launching victims and hosts already empty go at once.
        match self.snapshot().await {
            Ok(snap) => {
                self.advance(state, &snap).await;
            }
            Err(e) => {
                tracing::warn!(target_name = %self.name, error = %e, "cannot look at the hosts being removed yet; trying again at the next observation");
            }
        }
        Ok(())
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

    /// Sets the hosts DRAINING (at most 10 per call): those ECS took. On an error,
    /// the hosts already set DRAINING are set ACTIVE again (best effort).
    async fn drain(
        &self,
        state: &mut State,
        hosts: &[(String, String)],
    ) -> Result<Vec<(String, String)>, TargetError> {
        let mut drained = Vec::with_capacity(hosts.len());
        for batch in hosts.chunks(UPDATE_CONTAINER_INSTANCES_STATE) {
            let arns: Vec<String> = batch.iter().map(|(_, arn)| arn.clone()).collect();
            match self
                .ecs
                .update_container_instances_state(
                    &self.spec.cluster,
                    &arns,
                    ContainerInstanceStatus::Draining,
                )
                .await
            {
                Ok(failures) => {
                    let failed: BTreeMap<&str, &str> = failures
                        .iter()
                        .map(|f| (&*f.arn, f.reason.as_str()))
                        .collect();
                    for (id, arn) in batch {
                        match failed.get(arn.as_str()) {
                            None => drained.push((id.clone(), arn.clone())),
                            Some(reason) => {
                                tracing::info!(target_name = %self.name, instance = %id, reason, "ECS did not set the host DRAINING: kept");
                            }
                        }
                    }
                }
                Err(e) => {
                    for (id, arn) in drained {
                        state.reactivate.insert(arn, id);
                    }
                    self.flush(state).await;
                    return Err(TargetError::aws(&self.name, &e));
                }
            }
        }
        Ok(drained)
    }

    /// Moves the removal in progress along, then sets ACTIVE again the hosts owed it.
    /// Errors are logged; the step is tried again next time.
    pub(super) async fn advance(&self, state: &mut State, snap: &Snapshot) -> Advanced {
        let mut terminated_now = 0;
        if let Some(mut r) = state.removal.take() {
            let now = self.clock.now();
            for v in std::mem::take(&mut r.victims) {
                match self.step(&v, snap, now).await {
                    Step::Wait => r.victims.push(v),
                    Step::Terminated => {
                        tracing::info!(target_name = %self.name, instance = %v.instance_id, "host drained and terminated");
                        r.terminated += 1;
                        terminated_now += 1;
                    }
                    Step::Drop { why, reactivate } => {
                        tracing::warn!(target_name = %self.name, instance = %v.instance_id, why, "host dropped from the removal and kept");
                        if let (true, Some(host)) = (reactivate, v.host) {
                            state.reactivate.insert(host, v.instance_id);
                        }
                    }
                }
            }
            if r.victims.is_empty() {
                tracing::info!(target_name = %self.name, to = r.to(), terminated = r.terminated, "host removal ended");
            } else {
                state.removal = Some(r);
            }
        }
        let reactivated = self.flush(state).await;
        Advanced {
            terminated: terminated_now,
            reactivated,
        }
    }

    /// One look at a victim.
    async fn step(&self, v: &Victim, snap: &Snapshot, now: Timestamp) -> Step {
        let drop = |why: &str, reactivate: bool| Step::Drop {
            why: why.to_owned(),
            reactivate,
        };
        let Some(inst) = snap.instance(&v.instance_id) else {
            return drop("no longer an instance of the group", false);
        };
        match inst.lifecycle_state {
            InstanceLifecycleState::Pending | InstanceLifecycleState::PendingWait => {
                return self.terminate(v).await;
            }
            InstanceLifecycleState::InService => {}
            InstanceLifecycleState::Terminating
            | InstanceLifecycleState::TerminatingWait
            | InstanceLifecycleState::Terminated => {
                return drop("terminated by someone else", false);
            }
            InstanceLifecycleState::Other => {
                return drop("left service (standby or detached)", true);
            }
        }
        let Some(h) = snap.host(&v.instance_id) else {
            if v.host.is_none() {
                // In service, but its container instance not registered: no task.
                return self.terminate(v).await;
            }
            return drop(
                "its container instance is gone: it cannot be proven drained",
                false,
            );
        };
        if v.host.is_none() {
            return drop("registered before it could be terminated", false);
        }
        match h.status {
            ContainerInstanceStatus::Draining => {}
            ContainerInstanceStatus::Active => {
                return drop("its container instance was set ACTIVE again", false);
            }
            other => {
                return Step::Drop {
                    why: format!("its container instance is {other:?}"),
                    reactivate: false,
                };
            }
        }
        if is_empty(h) {
            return self.terminate(v).await;
        }
        if elapsed(v.since, now) >= self.spec.drain_timeout {
            return Step::Drop {
                why: format!(
                    "still holds {} tasks after the drain timeout ({} s)",
                    tasks_on(h),
                    self.spec.drain_timeout.as_secs()
                ),
                reactivate: true,
            };
        }
        Step::Wait
    }

    /// Terminates a victim through the group, lowering its desired capacity.
    async fn terminate(&self, v: &Victim) -> Step {
        match self.asg.terminate_instance(&v.instance_id, true).await {
            Ok(()) => Step::Terminated,
            Err(e) if e.is_retryable() => {
                tracing::warn!(target_name = %self.name, instance = %v.instance_id, error = %e, "cannot terminate the drained host yet; trying again at the next observation");
                Step::Wait
            }
            Err(e) => Step::Drop {
                why: format!("cannot be terminated: {e}"),
                reactivate: true,
            },
        }
    }

    /// Sets ACTIVE again the hosts owed it (at most 10 per call): the EC2 instance ids
    /// set ACTIVE. What fails stays owed.
    async fn flush(&self, state: &mut State) -> BTreeSet<String> {
        let mut done = BTreeSet::new();
        while !state.reactivate.is_empty() {
            let batch: Vec<String> = state
                .reactivate
                .keys()
                .take(UPDATE_CONTAINER_INSTANCES_STATE)
                .cloned()
                .collect();
            match self
                .ecs
                .update_container_instances_state(
                    &self.spec.cluster,
                    &batch,
                    ContainerInstanceStatus::Active,
                )
                .await
            {
                Ok(failures) => {
                    // A failure is a host ECS no longer knows: nothing left to do.
                    let gone: BTreeSet<&str> = failures.iter().map(|f| &*f.arn).collect();
                    for f in &failures {
                        tracing::info!(target_name = %self.name, host = %f.arn, reason = %f.reason, "host to set ACTIVE again is gone");
                    }
                    for arn in &batch {
                        if let Some(id) = state.reactivate.remove(arn)
                            && !gone.contains(arn.as_str())
                        {
                            done.insert(id);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target_name = %self.name, error = %e, hosts = batch.len(), "cannot set kept hosts ACTIVE again; trying again at the next observation");
                    break;
                }
            }
        }
        done
    }

    /// Undoes what is safe to undo of the removal in progress (see `shutdown`).
    pub(super) async fn abandon(&self, state: &mut State) {
        if let Some(r) = state.removal.take() {
            for v in r.victims {
                if let Some(host) = v.host {
                    state.reactivate.insert(host, v.instance_id);
                }
            }
        }
        self.flush(state).await;
        if !state.reactivate.is_empty() {
            tracing::warn!(target_name = %self.name, hosts = ?state.reactivate.values().collect::<Vec<_>>(), "shutdown: hosts left DRAINING");
        }
    }
}
