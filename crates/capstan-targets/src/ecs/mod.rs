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
//! DEPROVISIONING → stopping. The victims of a scale-in in progress are described too
//! once ECS stops them, so they show as draining or stopping until they are gone.
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
//! A scale-in in progress is cancelled first: its victims that ECS still runs are
//! registered in the target group again and the protection it added is released. The
//! desired count is never lowered by a scale-out: cancelling a scale-in whose count was
//! not lowered yet keeps the count the service has.
//!
//! # Scale in that cuts nobody off
//!
//! Lowering `desiredCount` alone lets ECS pick which tasks stop, blind to who is
//! connected (AWS-SEMANTICS §4). This target stops exactly the victims it is given, and
//! only once they are idle: it drains them until idle. With steady traffic a task in
//! the load balancer is never idle, so a victim's work is let to end after the load
//! balancer stops sending it new work:
//!
//! 1. keep the victims, in the order given, that are RUNNING and not protected by
//!    someone else, and either idle (no work) or drainable: the target has a target
//!    group and the victim is registered in it (not `unused`). Without a target group
//!    (e.g. queue workers) nothing keeps new work off a busy victim, so only idle ones
//!    are kept ("busy, and no target group to drain it from"). The desired count drops
//!    only by the number kept (never below the asked count);
//! 2. with a target group: deregister the victims (their private IP, on every port the
//!    group reports) and wait, checked on each observation, until each victim is
//!    drained: its targets are `unused` or gone AND its work is 0 (its requests
//!    finished, its sessions ended; once deregistered only the load balancer's short
//!    routing lag can bring it new work). A victim with work whose targets are already
//!    `unused` keeps waiting. A victim still draining `drain_timeout` after its
//!    deregistration is registered again and dropped from the scale-in (kept running),
//!    so no session or request is ever cut off: a victim whose work never ends is
//!    simply not stopped. A victim the application protects meanwhile, or one without
//!    targets that gets work, is registered again and dropped too;
//! 3. once every victim left is drained, protect every other task of the service for
//!    `protect_minutes` (`UpdateTaskProtection`, at most 10 per call; a task that is
//!    gone meanwhile is skipped), then lower `desiredCount` so ECS stops exactly the
//!    unprotected victims. Once the victims are no longer running, release the
//!    protection this scale-in added — only that: a task the application protected
//!    itself keeps its protection. If ECS ends up keeping a victim (someone else raised
//!    the count), the victim is registered again; if the victims are still running
//!    when the protection lapses, the scale-in gives up the same way.
//!
//! While an ECS deployment is in progress, scale-in is held as AWS holds it
//! (AWS-SEMANTICS §1): a new scale-in fails, and one in progress waits before lowering
//! the count. A scale-in asked while another one is in progress fails unless it asks
//! for the same count. The scale-in lives in memory: if capstan stops meanwhile, see
//! [`Target::shutdown`].
//!
//! # Errors
//!
//! Every AWS error becomes [`TargetError::Failed`] naming the operation (e.g.
//! `UpdateService: throttled: Rate exceeded`); the next call starts afresh.
//!
//! # Target groups
//!
//! The durable scale-in (see [`durable`]) drains both kinds of target group: IP target
//! groups (awsvpc networking: Fargate, or EC2 with awsvpc), where a victim is found by
//! its private IP, and instance target groups (EC2 with bridge or host networking),
//! where it is found by the EC2 instance behind its container instance
//! (`DescribeContainerInstances`) together with one of its host ports
//! (`networkBindings`): tasks sharing an instance are told apart by port. A victim
//! that is not registered in any group has nothing to drain. The in-memory scale-in
//! (a target without a journal) finds IP targets only.

mod calls;
pub mod durable;
pub mod protect;
mod scale_in;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::limits::PROTECTION_MINUTES;
use capstan_aws_api::{DesiredStatus, Ecs, EcsService, EcsTask, Elb, TaskStatus};
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::model::{Capacity, Task, TaskId, TaskState};
use tokio::sync::Mutex;

use crate::{Observed, Target, TargetError};

use scale_in::State;

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

/// Where a scale-in in progress stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleInPhase {
    /// The victims are being deregistered from the target group and drained.
    Draining,
    /// The other tasks are protected and the desired count is lowered: ECS is
    /// stopping the victims.
    Stopping,
}

/// A scale-in in progress, as [`EcsTarget::scale_in_progress`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleInProgress {
    /// The desired count it scales in to.
    pub to: u32,
    /// The victims still in it.
    pub victims: Vec<TaskId>,
    /// Where it stands.
    pub phase: ScaleInPhase,
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
    /// The scale-in in progress and the clean-up still owed. Held for the whole of
    /// each operation, so operations on one target run one at a time.
    state: Mutex<State>,
    /// The task-protection manager of the service's workloads, when it manages them.
    protector: Option<Arc<protect::Protector<E>>>,
    /// The durable scale-in workflows, when the target keeps them in a journal.
    durable: Option<durable::Durable>,
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
    /// [`with_clock`](Self::with_clock) for another.
    pub fn new(
        name: &str,
        spec: EcsTargetSpec,
        ecs: E,
        elb: Option<L>,
        work: Option<Arc<dyn WorkCounts>>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            spec,
            ecs,
            elb,
            work,
            clock: Arc::new(SystemClock),
            state: Mutex::new(State::default()),
            protector: None,
            durable: None,
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

    /// The scale-in in progress, if any.
    pub async fn scale_in_progress(&self) -> Option<ScaleInProgress> {
        self.state.lock().await.progress()
    }

    /// The live work of a task (0 without a [`WorkCounts`]).
    fn work_of(&self, arn: &str) -> u32 {
        self.work.as_ref().map_or(0, |w| w.work(arn))
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

    /// The tasks and capacity to report, given the snapshot and the scale-in state.
    /// Tells the protection manager the running tasks (and ends its pins once no
    /// scale-in needs them).
    fn set_protector_tasks(&self, snap: &Snapshot, state: &State) {
        if let Some(protector) = &self.protector {
            protector.set_tasks(
                snap.live
                    .iter()
                    .filter(|t| snap.is_running(&t.arn))
                    .map(|t| TaskId(t.arn.clone()))
                    .collect(),
            );
            if state.progress().is_none() && self.durable_view().is_none() {
                protector.unpin();
            }
        }
    }

    fn observed(&self, snap: &Snapshot, state: &State) -> Observed {
        let durable = self.durable_view();
        let draining = match &durable {
            Some((_, victims)) => victims.iter().map(|a| &**a).collect(),
            None => state.victim_arns(),
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
                desired: durable
                    .as_ref()
                    .map(|(to, _)| *to)
                    .or(state.reported_desired())
                    .unwrap_or(snap.service.desired),
                running: snap.service.running,
                pending: snap.service.pending,
            },
            tasks,
        }
    }
}

/// What one observation read.
#[derive(Debug)]
struct Snapshot {
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

    /// Reads the service and its tasks, and moves the scale-in in progress along
    /// (its errors are logged and retried on the next observation).
    async fn observe(&self) -> Result<Observed, TargetError> {
        let mut state = self.state.lock().await;
        if let Some(d) = &self.durable {
            // A target stopped at a failpoint is dead (tests).
            self.durable()?;
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
            self.set_protector_tasks(&snap, &state);
            return Ok(self.observed(&snap, &state));
        }
        let snap = self.snapshot(&state.victim_list()).await?;
        self.advance(&mut state, &snap).await;
        self.set_protector_tasks(&snap, &state);
        Ok(self.observed(&snap, &state))
    }

    /// Raises `desiredCount` to `desired`, cancelling a scale-in in progress.
    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        let mut state = self.state.lock().await;
        if self.is_durable() {
            self.durable_cancel().await?;
        }
        self.scale_out_locked(&mut state, desired).await
    }

    /// Starts the safe scale-in of the module docs. Returns once the victims are
    /// deregistered (or, without a target group, once the count is lowered); the rest
    /// goes on at each observation.
    async fn scale_in(&self, desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        let mut state = self.state.lock().await;
        if self.is_durable() {
            return self.durable_scale_in(desired, victims).await;
        }
        self.scale_in_locked(&mut state, desired, victims).await
    }

    /// Leaves the service as it is: its desired count and tasks stay, nothing is
    /// stopped (ECS keeps running the service without capstan). A scale-in in progress
    /// lives only in memory, so it is undone where that is safe: victims still draining
    /// (the count not lowered yet) are registered in the target group again and any
    /// protection it added is released. Once the count is lowered, ECS is already
    /// stopping the victims: the protection it added is left to lapse after
    /// `protect_minutes`, so ECS cannot pick another task meanwhile. Best effort:
    /// errors are logged.
    async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        self.abandon(&mut state).await;
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
