//! The EC2 cluster host target: scales the Auto Scaling group behind an ECS cluster,
//! with the group's instances as its "tasks", through the narrow AWS traits ([`Ecs`]
//! and [`AutoScaling`]), so the same code runs against AWS and the world model.
//!
//! # Observe
//!
//! `DescribeAutoScalingGroups` gives the group; `ListContainerInstances` and
//! `DescribeContainerInstances` (at most 100 per call) the cluster's container
//! instances, joined to the group's instances by EC2 instance id (container instances
//! of other groups are ignored). One [`Task`] per instance of the group: id = EC2
//! instance id, zone, `started_at` = launch time, `sessions` = running + pending tasks
//! on it (so the core's victim choice prefers emptier hosts), `protected` = instance
//! scale-in protection, and a state:
//! - launching (`Pending`, `Pending:Wait`, or in service without an ACTIVE or
//!   DRAINING container instance yet) → pending; one in service without any container
//!   instance is also reported protected, so it is never chosen for scale-in: the
//!   ECS agent has not registered it yet, or it is not a container instance at all,
//!   and capstan cannot prove it holds no work;
//! - in service with an ACTIVE container instance → running;
//! - in service with a DRAINING container instance (ours or anyone's) → draining;
//! - terminating, or its container instance deregistering → stopping.
//!
//! Capacity: desired = the group's desired capacity (while a removal is in progress,
//! the count being scaled in to), running = instances running as above, pending =
//! instances launching.
//!
//! Observing also moves the removal in progress along (see below); a failed step is
//! logged and tried again on the next observation.
//!
//! # Scale out
//!
//! A removal in progress is cancelled first (its hosts not yet terminated are set
//! ACTIVE again). Then `SetDesiredCapacity`, at most the group's max. Refused
//! ([`TargetError::Failed`], "warming up") while an instance of the group launched less
//! than `warmup` ago, as ECS managed scaling does (AWS-SEMANTICS §6): its capacity is
//! not in the metrics yet. Auto Scaling's API does not report launch times: without
//! one, an instance's age counts from its container instance's registration with the
//! cluster, and one still launching (not registered yet) is warming. An instance in
//! service that never registered does not hold scale-out (it adds nothing to wait for).
//! A host's `started_at` is likewise its launch, else its registration.
//!
//! # Safe host removal
//!
//! Lowering the desired capacity alone lets Auto Scaling pick the instance and kill its
//! tasks. This target removes exactly the victims it is given, and only once their
//! tasks run elsewhere:
//!
//! 1. keep the victims that are in service with an ACTIVE container instance and not
//!    protected, no more than the drop in desired count and never below the group's
//!    min; a launching victim has no task and is terminated at once;
//! 2. check the victims together, in the order given, with core's
//!    [`plan_given`](capstan_core::hosts::plan_given) (reads in `safety`): every task
//!    on them (exact CPU and memory from `DescribeTasks`, static host ports) must fit
//!    on the remaining ACTIVE hosts, none may be protected or standalone, and every
//!    service with a task on them must keep its minimum healthy count
//!    (`minimumHealthyPercent` × desired) on the other hosts, or have room above its
//!    desired count (`maximumPercent`) to start the replacements first; with
//!    [`AsgTarget::with_work`], no task on them may have live sessions or workloads
//!    (the work registry's, by task ARN). A victim that may not go is kept, and the
//!    scale-in's error or log says why for each;
//! 3. the rest is a durable workflow (see `removal`), journaled like the ECS
//!    target's task scale-in: **mark draining** (`UpdateContainerInstancesState`
//!    DRAINING, at most 10 per call: ECS replaces their service tasks elsewhere
//!    within each service's minimum healthy percent) → **wait drained** (every victim
//!    holds no task, running, pending or still stopping, and every service that had
//!    a task on them runs at least its minimum again) → **recheck** (a victim still
//!    holding tasks after `drain_timeout` is set ACTIVE again and kept; so is one
//!    whose container instance someone set ACTIVE again or that disappeared: it cannot
//!    be proven drained) → **terminate** (`TerminateInstanceInAutoScalingGroup` with
//!    `ShouldDecrementDesiredCapacity`, so the group does not replace it; never twice,
//!    never an instance not proven empty) → done. Each observation runs its due
//!    steps. A step that keeps failing leaves it failed, holding the target, until
//!    [`AsgTarget::redrive`] or a scale-out cancels it.
//!
//! A scale-in asked while another one is in progress fails unless it asks for the
//! same count. With [`AsgTarget::with_workflows`] the removal is kept in a durable
//! journal and a restarted capstan resumes it; by default it lives in memory (see
//! [`Target::shutdown`]).
//!
//! # Terminations capstan did not start
//!
//! With `termination_hook`, capstan owns the group's `EC2_INSTANCE_TERMINATING`
//! lifecycle hook: a host that Auto Scaling is terminating for anyone else is set
//! DRAINING, its hook heartbeated while tasks remain, and completed with `CONTINUE`
//! once it is empty (see `hook`).
//!
//! # Errors
//!
//! Every AWS error becomes [`TargetError::Failed`] naming the operation (e.g.
//! `DescribeAutoScalingGroups: throttled: Rate exceeded`).

mod hook;
mod removal;
mod safety;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::limits::DESCRIBE_CONTAINER_INSTANCES;
use capstan_aws_api::{
    AutoScaling, AutoScalingGroup, AutoScalingInstance, ContainerInstance, ContainerInstanceStatus,
    Ecs, InstanceLifecycleState,
};
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::hosts::HostOrder;
use capstan_core::model::{Capacity, Task, TaskId, TaskState};
use tokio::sync::Mutex;

use crate::{Observed, Target, TargetError};

use crate::durable::Durable;
use capstan_core::workflow::WorkflowSettings;
use removal::State;

/// The settings of an EC2 cluster host target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgTargetSpec {
    /// ECS cluster name or ARN.
    pub cluster: String,
    /// The Auto Scaling group whose instances are the cluster's hosts.
    pub group: String,
    /// No new scale-out while an instance launched less than this ago (default 300 s,
    /// ECS's `instanceWarmupPeriod`).
    pub warmup: Duration,
    /// How long a host may take to drain before it is set ACTIVE again and kept
    /// (default 1 h).
    pub drain_timeout: Duration,
    /// Per service (by name): the fewest running tasks it must keep on the other hosts
    /// while a host drains, instead of its `minimumHealthyPercent` × desired count.
    pub minimum_running: BTreeMap<String, u32>,
    /// The group's `EC2_INSTANCE_TERMINATING` lifecycle hook capstan completes once a
    /// terminating host is drained (lifecycle-hook mode; see `hook`), if any.
    pub termination_hook: Option<String>,
    /// How often the hook's heartbeat is recorded while a host drains (default 5 min;
    /// below the hook's `HeartbeatTimeout`).
    pub hook_heartbeat_every: Duration,
    /// Which ACTIVE hosts go first on scale-in (default `least_reserved`): reported as
    /// each host's place in this order (see the module docs).
    pub host_order: HostOrder,
}

impl AsgTargetSpec {
    /// The default `warmup`.
    pub const DEFAULT_WARMUP: Duration = Duration::from_secs(300);
    /// The default `drain_timeout`.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);
    /// The default `hook_heartbeat_every`.
    pub const DEFAULT_HOOK_HEARTBEAT_EVERY: Duration = Duration::from_secs(300);

    /// Settings for `group` under `cluster`, with the defaults.
    pub fn new(cluster: &str, group: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            group: group.to_owned(),
            warmup: Self::DEFAULT_WARMUP,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            minimum_running: BTreeMap::new(),
            termination_hook: None,
            hook_heartbeat_every: Self::DEFAULT_HOOK_HEARTBEAT_EVERY,
            host_order: HostOrder::default(),
        }
    }

    /// Checks the settings, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster.is_empty() {
            return Err("cluster: must not be empty".into());
        }
        if self.group.is_empty() {
            return Err("group: must not be empty".into());
        }
        if self.drain_timeout.is_zero() {
            return Err("drain_timeout: must be above 0".into());
        }
        if self.termination_hook.as_deref() == Some("") {
            return Err("termination_hook: must not be empty".into());
        }
        if self.hook_heartbeat_every.is_zero() {
            return Err("hook_heartbeat_every: must be above 0".into());
        }
        Ok(())
    }
}

/// A host removal in progress, as [`AsgTarget::removal_in_progress`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalProgress {
    /// The desired capacity it scales in to.
    pub to: u32,
    /// The hosts (EC2 instance ids) it still removes.
    pub draining: Vec<TaskId>,
    /// Its workflow's id.
    pub workflow: String,
    /// Its current step.
    pub step: &'static str,
    /// Why it failed, if it did (it holds the target until redriven).
    pub error: Option<String>,
}

/// One host of the group as the latest observation saw it (for the API's host view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    /// EC2 instance id.
    pub id: String,
    /// Its scaling state (running, draining, pending, stopping).
    pub state: TaskState,
    /// Availability zone.
    pub zone: String,
    /// CPU units registered by its container instance (0 before it registers).
    pub cpu_registered: u32,
    /// CPU units reserved by tasks on it.
    pub cpu_reserved: u32,
    /// Memory registered, MiB (0 before it registers).
    pub memory_registered: u32,
    /// Memory reserved by tasks on it, MiB.
    pub memory_reserved: u32,
    /// Tasks on it (running and pending).
    pub tasks: u32,
}

/// The hosts of the group as the latest observation saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsView {
    /// When they were observed.
    pub at: capstan_core::Timestamp,
    /// The ECS cluster.
    pub cluster: String,
    /// The Auto Scaling group.
    pub group: String,
    /// One per instance of the group (terminated ones and those in states capstan does
    /// not act on left out), in the group's order.
    pub hosts: Vec<HostView>,
}

/// Scales the hosts of one ECS cluster. See the [module docs](self).
pub struct AsgTarget<E, A> {
    /// The target's name.
    name: String,
    /// Settings.
    spec: AsgTargetSpec,
    /// ECS (container instances).
    ecs: E,
    /// EC2 Auto Scaling (the group).
    asg: A,
    /// Where "now" comes from (warm-up, drain timeout).
    clock: Arc<dyn Clock>,
    /// What the termination hook waits on. Held for the whole of each operation, so
    /// operations on one target run one at a time.
    state: Mutex<State>,
    /// The host removal workflow (see `removal`).
    durable: Durable,
    /// The live work of the tasks on the hosts (the work registry's), if known: a host
    /// running a task with live work is never removed.
    work: Option<Arc<dyn crate::WorkCounts>>,
    /// The hosts of the latest observation (swapped in whole, read by the API).
    view: std::sync::Mutex<Option<Arc<HostsView>>>,
}

impl<E, A> std::fmt::Debug for AsgTarget<E, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsgTarget")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// What one observation read.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The group.
    group: AutoScalingGroup,
    /// The cluster's container instances, by EC2 instance id.
    hosts: BTreeMap<String, ContainerInstance>,
}

impl Snapshot {
    /// The group's instance `id`, unless terminated.
    fn instance(&self, id: &str) -> Option<&AutoScalingInstance> {
        self.group.instances.iter().find(|i| {
            i.instance_id == id && i.lifecycle_state != InstanceLifecycleState::Terminated
        })
    }

    /// The container instance of EC2 instance `id`.
    fn host(&self, id: &str) -> Option<&ContainerInstance> {
        self.hosts.get(id)
    }

    /// The scaling state of the group's instance `i`; `None` if it is gone or in a
    /// state capstan does not act on.
    fn state(&self, i: &AutoScalingInstance) -> Option<TaskState> {
        host_state(
            i.lifecycle_state,
            self.host(&i.instance_id).map(|h| h.status),
        )
    }
}

/// The scaling state of an instance in `lifecycle` whose container instance (if
/// registered) is in `status`; `None` for a terminated instance or one in a state
/// capstan does not act on (standby, warm pool, ...).
pub fn host_state(
    lifecycle: InstanceLifecycleState,
    status: Option<ContainerInstanceStatus>,
) -> Option<TaskState> {
    use ContainerInstanceStatus as C;
    use InstanceLifecycleState as L;
    match (lifecycle, status) {
        (L::Pending | L::PendingWait, _) => Some(TaskState::Pending),
        (L::InService, None | Some(C::Registering)) => Some(TaskState::Pending),
        (L::InService, Some(C::Active)) => Some(TaskState::Running),
        (L::InService, Some(C::Draining)) => Some(TaskState::Draining),
        (L::InService, Some(C::Deregistering | C::Inactive)) => Some(TaskState::Stopping),
        (L::Terminating | L::TerminatingWait, _) => Some(TaskState::Stopping),
        (L::Terminated | L::Other, _) => None,
    }
}

/// Tasks on a container instance (running and pending).
fn tasks_on(h: &ContainerInstance) -> u32 {
    h.running_tasks.saturating_add(h.pending_tasks)
}

/// Whether a container instance holds no task at all: none running or pending, and
/// nothing reserved (tasks still stopping reserve their share until STOPPED).
fn is_empty(h: &ContainerInstance) -> bool {
    tasks_on(h) == 0
        && h.remaining_cpu >= h.registered_cpu
        && h.remaining_memory >= h.registered_memory
}

impl<E: Ecs, A: AutoScaling> AsgTarget<E, A> {
    /// A target named `name` scaling `spec.group` under `spec.cluster`, calling `ecs`
    /// and `asg`. Reads the system clock; use [`with_clock`](Self::with_clock) for
    /// another.
    pub fn new(name: &str, spec: AsgTargetSpec, ecs: E, asg: A) -> Self {
        Self {
            name: name.to_owned(),
            spec,
            ecs,
            asg,
            clock: Arc::new(SystemClock),
            state: Mutex::new(State::default()),
            durable: Durable::in_memory(WorkflowSettings::default()),
            work: None,
            view: std::sync::Mutex::new(None),
        }
    }

    /// The same target, reading the live work of the tasks on its hosts from `work`
    /// (by task ARN): a host running a task with live sessions or workloads is never
    /// chosen for removal.
    #[must_use]
    pub fn with_work(mut self, work: Arc<dyn crate::WorkCounts>) -> Self {
        self.work = Some(work);
        self
    }

    /// The same target, reading time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The settings.
    pub fn spec(&self) -> &AsgTargetSpec {
        &self.spec
    }

    /// The hosts as the latest successful observation saw them, with their CPU and
    /// memory reservation; `None` before the first one. Cheap: clones an `Arc`.
    pub fn hosts_view(&self) -> Option<Arc<HostsView>> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps the hosts of `snap` for [`hosts_view`](Self::hosts_view).
    fn keep_view(&self, snap: &Snapshot) {
        let hosts = snap
            .group
            .instances
            .iter()
            .filter_map(|i| {
                let state = snap.state(i)?;
                let host = snap.host(&i.instance_id);
                Some(HostView {
                    id: i.instance_id.clone(),
                    state,
                    zone: i.availability_zone.clone(),
                    cpu_registered: host.map_or(0, |h| h.registered_cpu),
                    cpu_reserved: host
                        .map_or(0, |h| h.registered_cpu.saturating_sub(h.remaining_cpu)),
                    memory_registered: host.map_or(0, |h| h.registered_memory),
                    memory_reserved: host.map_or(0, |h| {
                        h.registered_memory.saturating_sub(h.remaining_memory)
                    }),
                    tasks: host.map_or(0, tasks_on),
                })
            })
            .collect();
        let view = HostsView {
            at: self.clock.now(),
            cluster: self.spec.cluster.clone(),
            group: self.spec.group.clone(),
            hosts,
        };
        *self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(view));
    }

    /// The host removal holding the target (running or failed), if any.
    pub async fn removal_in_progress(&self) -> Option<RemovalProgress> {
        self.progress()
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

    /// `DescribeAutoScalingGroups` for the group.
    async fn group(&self) -> Result<AutoScalingGroup, TargetError> {
        self.asg
            .describe_group(&self.spec.group)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))
    }

    /// Reads the group and the cluster's container instances.
    async fn snapshot(&self) -> Result<Snapshot, TargetError> {
        let group = self.group().await?;
        let arns = self
            .ecs
            .list_container_instances(&self.spec.cluster, None)
            .await
            .map_err(|e| TargetError::aws(&self.name, &e))?;
        let mut hosts = BTreeMap::new();
        for batch in arns.chunks(DESCRIBE_CONTAINER_INSTANCES) {
            let (found, _missing) = self
                .ecs
                .describe_container_instances(&self.spec.cluster, batch)
                .await
                .map_err(|e| TargetError::aws(&self.name, &e))?;
            hosts.extend(found.into_iter().map(|h| (h.ec2_instance_id.clone(), h)));
        }
        Ok(Snapshot { group, hosts })
    }

    /// The hosts and capacity to report.
    fn observed(&self, snap: &Snapshot) -> Observed {
        let now = self.clock.now();
        // Each ACTIVE host's place in `host_order`, reported as its "sessions", so the
        // victim choice (fewest first) takes hosts in that order.
        let rank: BTreeMap<String, u32> = capstan_core::hosts::removal_order(
            &safety::hosts(snap)
                .into_iter()
                .filter(|h| snap.instance(&h.id).is_some())
                .collect::<Vec<_>>(),
            |h| snap.host(&h.id).map_or(0, |c| tasks_on(c) as usize),
            self.spec.host_order,
        )
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id.to_string(), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
        let mut capacity = Capacity {
            desired: self.reported_desired().unwrap_or(snap.group.desired),
            running: 0,
            pending: 0,
        };
        let tasks = snap
            .group
            .instances
            .iter()
            .filter_map(|i| {
                let state = snap.state(i)?;
                match state {
                    TaskState::Running => capacity.running += 1,
                    TaskState::Pending => capacity.pending += 1,
                    _ => {}
                }
                Some(Task {
                    id: TaskId::from(i.instance_id.as_str()),
                    // Auto Scaling's API has no launch times: the registration
                    // with the cluster, else this observation.
                    started_at: i
                        .launched_at
                        .or_else(|| snap.host(&i.instance_id).map(|h| h.registered_at))
                        .unwrap_or(now),
                    zone: Some(i.availability_zone.as_str().into()),
                    state,
                    sessions: match state {
                        TaskState::Running => rank.get(&i.instance_id).copied(),
                        _ => None,
                    }
                    .unwrap_or_else(|| snap.host(&i.instance_id).map_or(0, tasks_on)),
                    // In service without a container instance: the ECS agent has
                    // not registered yet, or it is not a container instance at all.
                    // Not proven empty of work, so never a victim (pick refuses it).
                    protected: i.protected_from_scale_in
                        || (i.lifecycle_state == InstanceLifecycleState::InService
                            && snap.host(&i.instance_id).is_none()),
                    healthy: true,
                })
            })
            .collect();
        Observed { capacity, tasks }
    }
}

impl<E: Ecs, A: AutoScaling> Target for AsgTarget<E, A> {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads the group and its hosts, and runs the removal's due steps (read again
    /// after a step ran, so what is reported follows it).
    async fn observe(&self) -> Result<Observed, TargetError> {
        let mut state = self.state.lock().await;
        let mut snap = self.snapshot().await?;
        if self.drive_removal(&snap).await? {
            snap = self.snapshot().await?;
        }
        self.tend_hooked(&mut state, &snap).await;
        self.keep_view(&snap);
        Ok(self.observed(&snap))
    }

    /// Cancels a removal in progress, then raises the group's desired capacity to
    /// `desired` (at most its max), unless an instance is still warming up.
    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        let _state = self.state.lock().await;
        self.scale_out_locked(desired).await
    }

    /// Starts the safe removal of `victims` (EC2 instance ids) of the module docs.
    /// Returns once they are DRAINING; the rest goes on at each observation.
    async fn scale_in(&self, desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        let _state = self.state.lock().await;
        self.scale_in_locked(desired, victims).await
    }

    /// Leaves the group as it is. A removal kept in a durable journal is left for the
    /// next capstan. One kept in memory would be lost: if it may still be cancelled,
    /// its hosts still DRAINING are set ACTIVE again (their tasks already moved stay
    /// where they are); one already terminating is left to finish. Best effort: errors
    /// are logged.
    async fn shutdown(&self) {
        let _state = self.state.lock().await;
        self.abandon().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_state_maps_to_a_scaling_state() {
        use ContainerInstanceStatus as C;
        use InstanceLifecycleState as L;
        let cases = [
            (L::Pending, None, Some(TaskState::Pending)),
            (L::PendingWait, None, Some(TaskState::Pending)),
            (L::InService, None, Some(TaskState::Pending)),
            (L::InService, Some(C::Registering), Some(TaskState::Pending)),
            (L::InService, Some(C::Active), Some(TaskState::Running)),
            (L::InService, Some(C::Draining), Some(TaskState::Draining)),
            (
                L::InService,
                Some(C::Deregistering),
                Some(TaskState::Stopping),
            ),
            (L::InService, Some(C::Inactive), Some(TaskState::Stopping)),
            (L::Terminating, Some(C::Draining), Some(TaskState::Stopping)),
            (
                L::TerminatingWait,
                Some(C::Active),
                Some(TaskState::Stopping),
            ),
            (L::Terminated, None, None),
            (L::Other, Some(C::Active), None),
        ];
        for (lifecycle, status, want) in cases {
            assert_eq!(
                host_state(lifecycle, status),
                want,
                "{lifecycle:?} {status:?}"
            );
        }
    }

    #[test]
    fn spec_defaults_and_validation_name_the_field() {
        let ok = AsgTargetSpec::new("c", "g");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.warmup, Duration::from_secs(300));
        assert_eq!(ok.drain_timeout, Duration::from_secs(3600));
        let mut bad = ok.clone();
        bad.cluster.clear();
        assert_eq!(bad.validate().unwrap_err(), "cluster: must not be empty");
        let mut bad = ok.clone();
        bad.group.clear();
        assert_eq!(bad.validate().unwrap_err(), "group: must not be empty");
        let mut bad = ok;
        bad.drain_timeout = Duration::ZERO;
        assert_eq!(
            bad.validate().unwrap_err(),
            "drain_timeout: must be above 0"
        );
    }
}
