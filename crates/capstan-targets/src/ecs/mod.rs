//! The ECS service target: scales one ECS service through the narrow AWS traits
//! ([`Ecs`], and [`Elb`] for its target group), so the same code runs against the AWS
//! SDK and against the simulator's world model.
//!
//! # Observe
//!
//! `DescribeServices` gives the capacity (desired, running, pending). `ListTasks`
//! (the service's tasks ECS wants running) and `DescribeTasks` (at most 100 per call)
//! give the tasks: id = task ARN, start time, zone, and a state from ECS's
//! `lastStatus` — PROVISIONING, PENDING, ACTIVATING → pending; RUNNING → running (or
//! draining while this target drains it); DEACTIVATING → draining; STOPPING,
//! DEPROVISIONING → stopping. The victims of the scale-in workflow are described too
//! while it holds them, even once ECS no longer lists them.
//! Sessions come from [`WorkCounts`] (0 without it); protection from
//! `GetTaskProtection` (at most 100 per call).
//!
//! Observing also moves the scale-in in progress along (see below), and while one is in
//! progress the reported desired count is the count being scaled in to, so the planner
//! does not start another scale-in for the same tasks. A failed step of the scale-in is
//! logged and tried again on the next observation; it does not fail the observation.
//!
//! # Scale out
//!
//! `UpdateService` with the new `desiredCount` (re-sending the same count is harmless).
//! A scale-in workflow that has not reached its protect step is cancelled first: its
//! victims that ECS still runs are registered in their target groups again. The
//! desired count is never lowered by a scale-out: cancelling a scale-in whose count was
//! not lowered yet keeps the count the service has.
//!
//! # Scale in that cuts nobody off
//!
//! Lowering `desiredCount` alone lets ECS pick which tasks stop, blind to who is
//! connected (AWS-SEMANTICS §4). This target stops exactly the victims it is given, and
//! only once they are drained, as a workflow of steps (see [`durable`]): mark the
//! victims draining → deregister them from the service's target groups → wait until
//! each is out of its groups and idle (at most the drain timeout) → recheck (a victim
//! with live work, protected (for a workload or by someone else) or gone is registered
//! again and kept) → protect every other task → lower `desiredCount` by the victims
//! left → `StopTask` them → release the protection it added. Every scale-in runs this workflow: kept in
//! the journal given to [`EcsTarget::with_workflows`] (durable: a restart resumes it),
//! or, by default, in a journal in memory that lives and dies with the target.
//!
//! While an ECS deployment is in progress, a new scale-in is refused, as AWS holds
//! scale-in (AWS-SEMANTICS §1). A scale-in asked while a workflow holds the service
//! fails unless it asks for the same count.
//!
//! # Errors
//!
//! Every AWS error of an observation or a scale-out becomes [`TargetError::Failed`]
//! naming the operation (e.g. `UpdateService: throttled: Rate exceeded`); the next call
//! starts afresh. A workflow step that fails is retried with backoff, then left failed
//! until [`EcsTarget::redrive`].
//!
//! # Target groups
//!
//! The durable scale-in (see [`durable`]) drains both kinds of target group: IP target
//! groups (awsvpc networking: Fargate, or EC2 with awsvpc), where a victim is found by
//! its private IP, and instance target groups (EC2 with bridge or host networking),
//! where it is found by the EC2 instance behind its container instance
//! (`DescribeContainerInstances`) together with one of its host ports
//! (`networkBindings`): tasks sharing an instance are told apart by port. A victim
//! that is not registered in any group has nothing to drain.

mod calls;
pub mod durable;
pub mod protect;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::limits::PROTECTION_MINUTES;
use capstan_aws_api::{DesiredStatus, Ecs, EcsService, EcsTask, Elb, TaskStatus};
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::model::{Capacity, Task, TaskId, TaskState};
use capstan_core::workflow::WorkflowSettings;
use tokio::sync::Mutex;

use crate::{Observed, Target, TargetError};

/// The settings of an ECS service target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsTargetSpec {
    /// Cluster name or ARN.
    pub cluster: String,
    /// Service name or ARN.
    pub service: String,
    /// The ARN of the target group the service's tasks are registered in, if it is
    /// behind a load balancer: victims are drained from it before they stop.
    pub target_group: Option<String>,
    /// How long the tasks that must survive a scale-in are protected while ECS stops
    /// the victims (1 to 2880 minutes; default 10).
    pub protect_minutes: u32,
    /// How long to wait, from its deregistration, for a victim to drain (out of the
    /// target group and idle) before giving up on that victim (it is registered again
    /// and kept running; default 10 minutes).
    pub drain_timeout: Duration,
}

impl EcsTargetSpec {
    /// The default `protect_minutes`.
    pub const DEFAULT_PROTECT_MINUTES: u32 = 10;
    /// The default `drain_timeout`.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

    /// Settings for `service` in `cluster`, without a target group, with the defaults.
    pub fn new(cluster: &str, service: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            target_group: None,
            protect_minutes: Self::DEFAULT_PROTECT_MINUTES,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
        }
    }

    /// Checks the settings, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster.is_empty() {
            return Err("cluster: must not be empty".into());
        }
        if self.service.is_empty() {
            return Err("service: must not be empty".into());
        }
        if self.target_group.as_deref() == Some("") {
            return Err("target_group: must not be empty when set".into());
        }
        if !PROTECTION_MINUTES.contains(&self.protect_minutes) {
            return Err(format!(
                "protect_minutes: {} is outside ECS's range {} to {}",
                self.protect_minutes,
                PROTECTION_MINUTES.start(),
                PROTECTION_MINUTES.end()
            ));
        }
        Ok(())
    }
}

/// How much live work each task holds (sessions and workloads in progress). The
/// simulator implements it from its workload model, the session registry from what
/// applications report. Without it every task is considered idle.
pub trait WorkCounts: Send + Sync + 'static {
    /// The live work of task `task_arn` (0 = idle).
    fn work(&self, task_arn: &str) -> u32;

    /// The live work of each task of `task_arns`, in order: what one observation
    /// asks for every task. Implementations that pay per call (a lock, a query) do
    /// it once here.
    fn work_many(&self, task_arns: &[&str]) -> Vec<u32> {
        task_arns.iter().map(|arn| self.work(arn)).collect()
    }

    /// The workloads in progress of each task of `task_arns` (jobs, not sessions):
    /// what task protection is managed on. By default all live work counts.
    fn workloads_many(&self, task_arns: &[&str]) -> Vec<u32> {
        self.work_many(task_arns)
    }
}

/// Scales one ECS service. See the [module docs](self).
pub struct EcsTarget<E, L> {
    /// The target's name (the service it scales, as configured).
    name: String,
    /// Settings.
    spec: EcsTargetSpec,
    /// ECS.
    ecs: E,
    /// ELBv2, to drain victims from the target group.
    elb: Option<L>,
    /// Live work per task.
    work: Option<Arc<dyn WorkCounts>>,
    /// Where "now" comes from (drain and protection timeouts).
    clock: Arc<dyn Clock>,
    /// Held for the whole of each operation, so operations on one target (and the
    /// workflow steps they run) go one at a time.
    busy: Mutex<()>,
    /// The task-protection manager of the service's workloads, when it manages them.
    protector: Option<Arc<protect::Protector<E>>>,
    /// The scale-in workflows and the journal they are kept in.
    durable: crate::durable::Durable,
}

impl<E, L> std::fmt::Debug for EcsTarget<E, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsTarget")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("load_balancer", &self.elb.is_some())
            .field("work_counts", &self.work.is_some())
            .finish_non_exhaustive()
    }
}

impl<E: Ecs, L: Elb> EcsTarget<E, L> {
    /// A target named `name` scaling `spec.service`, calling `ecs` (and `elb` for the
    /// target group), with live work per task from `work`. Reads the system clock; use
    /// [`with_clock`](Self::with_clock) for another. Its scale-in workflows are kept in
    /// memory (lost with the target, see [`Target::shutdown`]), with `spec`'s drain
    /// timeout and the default checks; [`with_workflows`](Self::with_workflows) keeps
    /// them in a durable journal instead.
    pub fn new(
        name: &str,
        spec: EcsTargetSpec,
        ecs: E,
        elb: Option<L>,
        work: Option<Arc<dyn WorkCounts>>,
    ) -> Self {
        let settings = WorkflowSettings {
            drain_timeout: spec.drain_timeout,
            ..WorkflowSettings::default()
        };
        Self {
            name: name.to_owned(),
            spec,
            ecs,
            elb,
            work,
            clock: Arc::new(SystemClock),
            busy: Mutex::new(()),
            protector: None,
            durable: crate::durable::Durable::in_memory(settings),
        }
    }

    /// The same target, also managing the scale-in protection of its tasks' workloads
    /// in progress (see [`protect`]): call it after [`with_clock`](Self::with_clock),
    /// and run [`protector`](Self::protector)'s loop, or join it to its cluster's
    /// [`ClusterProtector`](protect::ClusterProtector) so the services of one cluster
    /// share their calls. Needs the tasks' work counts.
    pub fn with_protection(
        mut self,
        settings: capstan_core::protection::ProtectionSettings,
    ) -> Result<Self, String>
    where
        E: Clone,
    {
        let work = self
            .work
            .clone()
            .ok_or("task protection needs the tasks' workloads (the work registry)")?;
        let protector = protect::Protector::new(
            &self.name,
            &self.spec.cluster,
            self.ecs.clone(),
            work,
            settings,
            Arc::clone(&self.clock),
        )?;
        self.protector = Some(Arc::new(protector));
        Ok(self)
    }

    /// The task-protection driver, when the target manages protection.
    pub fn protector(&self) -> Option<&Arc<protect::Protector<E>>> {
        self.protector.as_ref()
    }

    /// The same target, reading time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The settings.
    pub fn spec(&self) -> &EcsTargetSpec {
        &self.spec
    }

    /// The ECS client.
    pub fn ecs(&self) -> &E {
        &self.ecs
    }

    /// A [`TargetError::Failed`] of this target.
    fn fail(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Failed {
            target: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// A [`TargetError::Invalid`] of this target.
    fn invalid(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Invalid {
            target: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Reads the service, its tasks and their protection; `extra` are tasks to
    /// describe even if ECS no longer lists them (the victims of a scale-in).
    async fn snapshot(&self, extra: &[Arc<str>]) -> Result<Snapshot, TargetError> {
        let (cluster, service) = (&self.spec.cluster, &self.spec.service);
        let svc = self
            .ecs
            .describe_service(cluster, service)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        let listed = self
            .ecs
            .list_tasks(cluster, service, DesiredStatus::Running)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        // The extra tasks ECS no longer lists (few: the victims of one scale-in).
        let unlisted: Vec<&Arc<str>> = if extra.is_empty() {
            Vec::new()
        } else {
            let listed_set: HashSet<&str> = listed.iter().map(|a| &**a).collect();
            extra
                .iter()
                .filter(|a| !listed_set.contains(&***a))
                .collect()
        };
        let described = if unlisted.is_empty() {
            calls::describe_tasks(&self.ecs, cluster, &listed).await
        } else {
            let mut arns = Vec::with_capacity(listed.len() + unlisted.len());
            arns.extend(listed.iter().cloned());
            arns.extend(unlisted.iter().map(|a| Arc::clone(a)));
            calls::describe_tasks(&self.ecs, cluster, &arns).await
        }
        .map_err(|e| TargetError::aws(&self.name, &e))?;
        // The unlisted ones are taken out; the live ones stay where they are.
        let mut live = described;
        let mut others: Vec<EcsTask> = Vec::with_capacity(unlisted.len());
        if !unlisted.is_empty() {
            others.extend(live.extract_if(.., |t| unlisted.iter().any(|u| **u == t.arn)));
        }
        let protected = calls::protected_tasks(&self.ecs, cluster, &listed)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        Ok(Snapshot {
            service: svc,
            live,
            others,
            protected,
        })
    }

    /// Tells the protection manager the running tasks (and ends its pins once no
    /// scale-in needs them).
    fn set_protector_tasks(&self, snap: &Snapshot) {
        if let Some(protector) = &self.protector {
            protector.set_tasks(
                snap.live
                    .iter()
                    .filter(|t| snap.is_running(&t.arn))
                    .map(|t| TaskId(t.arn.clone()))
                    .collect(),
            );
            if self.durable_view().is_none() {
                protector.unpin();
            }
        }
    }

    /// The tasks and capacity to report, given the snapshot and the workflow.
    fn observed(&self, snap: &Snapshot) -> Observed {
        let durable = self.durable_view();
        let draining: BTreeSet<&str> = match &durable {
            Some((_, victims)) => victims.iter().map(|a| &**a).collect(),
            None => BTreeSet::new(),
        };
        let shown: Vec<(&EcsTask, TaskState)> = snap
            .live
            .iter()
            .chain(&snap.others)
            .filter_map(|t| Some((t, task_state(t.last_status)?)))
            .collect();
        let work = match &self.work {
            Some(w) => w.work_many(&shown.iter().map(|(t, _)| &*t.arn).collect::<Vec<_>>()),
            None => Vec::new(),
        };
        let now = self.clock.now();
        let tasks = shown
            .iter()
            .enumerate()
            .map(|(i, (t, state))| {
                let state = if *state == TaskState::Running && draining.contains(&*t.arn) {
                    TaskState::Draining
                } else {
                    *state
                };
                Task {
                    id: TaskId(t.arn.clone()),
                    // A task reporting neither time (only emulators do) orders as
                    // the newest.
                    started_at: t.started_at.or(t.created_at).unwrap_or(now),
                    zone: Some(Arc::clone(&t.availability_zone)),
                    state,
                    sessions: work.get(i).copied().unwrap_or(0),
                    protected: snap.protected.contains(&*t.arn),
                    // UNKNOWN (no health check, or not yet known) counts as healthy.
                    healthy: t.health != capstan_aws_api::HealthStatus::Unhealthy,
                }
            })
            .collect();
        Observed {
            capacity: Capacity {
                desired: durable.as_ref().map_or(snap.service.desired, |(to, _)| *to),
                running: snap.service.running,
                pending: snap.service.pending,
            },
            tasks,
        }
    }
}

/// What one observation read.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// `DescribeServices`.
    service: EcsService,
    /// The tasks ECS wants running (`ListTasks` with desired status RUNNING).
    live: Vec<EcsTask>,
    /// Other tasks asked for (victims ECS is stopping or has stopped).
    others: Vec<EcsTask>,
    /// The live tasks that are protected from scale-in.
    protected: BTreeSet<Arc<str>>,
}

impl Snapshot {
    /// The live task `arn`, if ECS still wants it running.
    fn live_task(&self, arn: &str) -> Option<&EcsTask> {
        self.live.iter().find(|t| *t.arn == *arn)
    }

    /// Whether `arn` is RUNNING and ECS wants it to keep running.
    fn is_running(&self, arn: &str) -> bool {
        self.live_task(arn).is_some_and(|t| {
            t.last_status == TaskStatus::Running && t.desired_status == DesiredStatus::Running
        })
    }
}

/// The scaling state of an ECS `lastStatus`; `None` for a stopped task.
pub fn task_state(status: TaskStatus) -> Option<TaskState> {
    match status {
        TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating => {
            Some(TaskState::Pending)
        }
        TaskStatus::Running => Some(TaskState::Running),
        TaskStatus::Deactivating => Some(TaskState::Draining),
        TaskStatus::Stopping | TaskStatus::Deprovisioning => Some(TaskState::Stopping),
        TaskStatus::Stopped => None,
    }
}

impl<E: Ecs, L: Elb> Target for EcsTarget<E, L> {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads the service and its tasks, and runs the workflow's due steps (a step's
    /// error is logged and retried at its next due time).
    async fn observe(&self) -> Result<Observed, TargetError> {
        let _busy = self.busy.lock().await;
        // A target stopped at a failpoint is dead (tests).
        let d = self.durable()?;
        let extra: Vec<Arc<str>> = self
            .durable_view()
            .map(|(_, victims)| victims.into_iter().collect())
            .unwrap_or_default();
        let snap = self.snapshot(&extra).await?;
        if let Err(e) = self.drive(d, &snap).await {
            tracing::warn!(target_name = %self.name, error = %e, "scale-in workflow step failed; trying again at the next observation");
        }
        // What the steps did shows in the next observation; this one reports the
        // workflow's current view.
        self.set_protector_tasks(&snap);
        Ok(self.observed(&snap))
    }

    /// Raises `desiredCount` to `desired`, cancelling a scale-in workflow that may
    /// still be cancelled (its victims are registered again). Never lowers the count:
    /// cancelling a scale-in whose count was not lowered yet keeps the count the
    /// service has.
    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        let _busy = self.busy.lock().await;
        // The count the planner saw: the workflow's target while one runs.
        let reported = self.durable_view().map(|(to, _)| to);
        let (cluster, service) = (&self.spec.cluster, &self.spec.service);
        let svc = self
            .ecs
            .describe_service(cluster, service)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        let reported = reported.unwrap_or(svc.desired);
        if desired < reported {
            return Err(self.invalid(format!(
                "scale out to {desired} is below the desired count {reported}; scale in instead"
            )));
        }
        self.durable_cancel().await?;
        // Never lowered here: a cancelled scale-in keeps the tasks the service has.
        let to = desired.max(svc.desired);
        self.ecs
            .update_desired_count(cluster, service, to)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))
    }

    /// Starts the scale-in workflow of the module docs and runs its steps that are due
    /// at once; the rest goes on at each observation (or
    /// [`advance_workflow`](Self::advance_workflow)).
    async fn scale_in(&self, desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        let _busy = self.busy.lock().await;
        self.durable_scale_in(desired, victims).await
    }

    /// Leaves the service as it is: its desired count and tasks stay, nothing is
    /// stopped (ECS keeps running the service without capstan). A workflow in a
    /// durable journal is left there, to be resumed by the next capstan. One kept in
    /// memory would be lost, so it is undone where that is safe: a workflow that has
    /// not protected anything yet is cancelled, its victims registered in their target
    /// groups again. Past that, ECS may already be stopping the victims: the
    /// protection it added is left to lapse after `protect_minutes`, so ECS cannot
    /// pick another task meanwhile. Best effort: errors are logged.
    async fn shutdown(&self) {
        let _busy = self.busy.lock().await;
        self.durable_shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_last_status_maps_to_a_scaling_state() {
        use TaskStatus::*;
        let cases = [
            (Provisioning, Some(TaskState::Pending)),
            (Pending, Some(TaskState::Pending)),
            (Activating, Some(TaskState::Pending)),
            (Running, Some(TaskState::Running)),
            (Deactivating, Some(TaskState::Draining)),
            (Stopping, Some(TaskState::Stopping)),
            (Deprovisioning, Some(TaskState::Stopping)),
            (Stopped, None),
        ];
        for (status, want) in cases {
            assert_eq!(task_state(status), want, "{status:?}");
        }
    }

    #[test]
    fn spec_validation_names_the_field() {
        let ok = EcsTargetSpec::new("c", "s");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.protect_minutes, 10);
        assert_eq!(ok.drain_timeout, Duration::from_secs(600));
        let mut bad = ok.clone();
        bad.protect_minutes = 0;
        let err = bad.validate().unwrap_err();
        assert!(err.starts_with("protect_minutes: 0 is outside"), "{err}");
        bad.protect_minutes = 2881;
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.service.clear();
        assert_eq!(bad.validate().unwrap_err(), "service: must not be empty");
        let mut bad = ok.clone();
        bad.cluster.clear();
        assert_eq!(bad.validate().unwrap_err(), "cluster: must not be empty");
        let mut bad = ok;
        bad.target_group = Some(String::new());
        assert!(bad.validate().unwrap_err().starts_with("target_group:"));
    }
}
