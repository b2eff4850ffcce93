//! The driver of a blue/green host rotation (the state is
//! [`capstan_core::rotation::Rotation`]): moves an ECS cluster's hosts from Auto
//! Scaling group A (`from`) to group B (`to`) through the narrow AWS traits, so the
//! same code runs against AWS and the world model. Owns the order of the phases and
//! what each one checks; each host of A goes through the safe removal of
//! [`AsgTarget`] (never terminated unless capstan proved it drained).
//!
//! [`Rotator::step`] does one pass and says when it wants the next one; the caller
//! saves the rotation after each pass, so a restart resumes it with a new
//! [`Rotator`]:
//!
//! 1. **scale_up**: group A must exist and have min 0 (the rotation ends with it at
//!    0), group B must exist, and so must the cluster. The size to reach is
//!    max(B's desired, A's instances in service), fixed once; above B's max it fails
//!    naming B's max. `SetDesiredCapacity` B.
//! 2. **wait_active**: until B has that many instances in service whose container
//!    instances in the cluster are ACTIVE.
//! 3. **remove**: one host of A at a time. A host in service with an ACTIVE container
//!    instance is given to the A target's `scale_in(desired - 1, [host])` (safety
//!    check, DRAINING, terminate-with-decrement once empty), then observed on each
//!    pass until it is gone from the group. A refusal is the wait reason and the host
//!    is tried again later (others first); never an error. An instance that is not a
//!    container instance of the cluster, not in service, or whose container instance
//!    disappeared while draining is skipped, with the reason, and never terminated.
//!    A host left DRAINING by an earlier run (capstan restarted mid-drain) is set
//!    ACTIVE again and its removal starts over, safety check included.
//! 4. **zero_from**: `SetDesiredCapacity` A to 0, or, when skipped hosts are still in
//!    it, to their count, so Auto Scaling terminates none of them (they are listed in
//!    the rotation's notes).
//!
//! AWS errors that may pass (throttling, 5xx, transport) are the wait reason and
//! retried; any other fails the rotation with the error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::limits::DESCRIBE_CONTAINER_INSTANCES;
use capstan_aws_api::{
    AutoScaling, AutoScalingGroup, AutoScalingInstance, AwsError, AwsErrorKind, ContainerInstance,
    ContainerInstanceStatus, Ecs, InstanceLifecycleState,
};
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::model::TaskId;
use capstan_core::rotation::{Phase, Rotation};

use crate::asg::{AsgTarget, AsgTargetSpec};
use crate::{Target, TargetError};

/// How often a rotation is looked at while it waits (B's instances, a draining host).
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// How long after an AWS error that may pass the pass is tried again.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(10);
/// How long after a refused host removal the next one is tried.
pub const DEFAULT_REFUSED_RETRY: Duration = Duration::from_secs(30);

/// Why a pass stopped early.
enum Stop {
    /// Try again later; the reason becomes the wait reason.
    Retry(String),
    /// The rotation cannot go on.
    Fail(String),
}

/// Whether an instance of a group is gone or going (terminating or terminated).
fn gone(i: &AutoScalingInstance) -> bool {
    matches!(
        i.lifecycle_state,
        InstanceLifecycleState::Terminating
            | InstanceLifecycleState::TerminatingWait
            | InstanceLifecycleState::Terminated
    )
}

/// Tasks on a container instance (running and pending).
fn tasks_on(h: &ContainerInstance) -> u32 {
    h.running_tasks.saturating_add(h.pending_tasks)
}

/// Drives rotations of one cluster from one group to another. See the
/// [module docs](self).
pub struct Rotator<E, A> {
    /// The A target's settings (cluster, group A, drain timeout, service minimums).
    spec: AsgTargetSpec,
    /// Group B.
    to: String,
    /// ECS.
    ecs: E,
    /// EC2 Auto Scaling.
    asg: A,
    /// Where "now" comes from.
    clock: Arc<dyn Clock>,
    /// Group A's host target: the safe removal of each host.
    target: AsgTarget<E, A>,
    /// Wait between passes while waiting.
    poll: Duration,
    /// Wait after an AWS error that may pass.
    retry: Duration,
    /// Wait after a refused host removal.
    refused_retry: Duration,
}

impl<E, A> std::fmt::Debug for Rotator<E, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator")
            .field("spec", &self.spec)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl<E: Ecs + Clone, A: AutoScaling + Clone> Rotator<E, A> {
    /// A driver of rotations of `spec.cluster` from `spec.group` (A) to group `to`
    /// (B), calling `ecs` and `asg`; A's hosts are removed by an [`AsgTarget`] with
    /// `spec`. Reads the system clock; see [`with_clock`](Self::with_clock).
    pub fn new(spec: AsgTargetSpec, to: &str, ecs: E, asg: A) -> Self {
        let name = format!("rotation of {} from {} to {to}", spec.cluster, spec.group);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let target = AsgTarget::new(&name, spec.clone(), ecs.clone(), asg.clone())
            .with_clock(Arc::clone(&clock));
        Self {
            spec,
            to: to.to_owned(),
            ecs,
            asg,
            clock,
            target,
            poll: DEFAULT_POLL,
            retry: DEFAULT_RETRY,
            refused_retry: DEFAULT_REFUSED_RETRY,
        }
    }

    /// The same driver (and its A target), reading time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.target = self.target.with_clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// The same driver with other waits: between passes while waiting, after an AWS
    /// error that may pass, after a refused host removal.
    #[must_use]
    pub fn with_intervals(mut self, poll: Duration, retry: Duration, refused: Duration) -> Self {
        self.poll = poll;
        self.retry = retry;
        self.refused_retry = refused;
        self
    }

    /// The same driver, whose removals read the live work of the tasks on A's hosts
    /// from `work` (by task ARN): a host running a task with live work waits.
    #[must_use]
    pub fn with_work(mut self, work: Arc<dyn crate::WorkCounts>) -> Self {
        self.target = self.target.with_work(work);
        self
    }

    /// Whether this driver is for `r` (same cluster, A and B).
    pub fn drives(&self, r: &Rotation) -> bool {
        r.is_for(&self.spec.cluster, &self.spec.group, &self.to)
    }

    /// Hosts of A still draining in this driver's removal, if any.
    pub async fn draining(&self) -> Vec<String> {
        self.target
            .removal_in_progress()
            .await
            .map(|p| p.draining.into_iter().map(|t| t.to_string()).collect())
            .unwrap_or_default()
    }

    /// Stops driving: a host still DRAINING is set ACTIVE again (its removal starts
    /// over, safety check included, when the rotation resumes). Best effort.
    pub async fn shutdown(&self) {
        self.target.shutdown().await;
    }

    /// Does one pass of `r` and returns how long to wait before the next one; `None`
    /// once it is done or failed (or was not running).
    pub async fn step(&self, r: &mut Rotation) -> Option<Duration> {
        if !r.is_running() {
            return None;
        }
        let now = self.clock.now();
        if !self.drives(r) {
            r.fail(
                format!(
                    "this driver rotates cluster {} from {} to {}, not the rotation asked for",
                    self.spec.cluster, self.spec.group, self.to
                ),
                now,
            );
            return None;
        }
        let outcome = match r.phase {
            Phase::ScaleUp => self.scale_up(r).await,
            Phase::WaitActive => self.wait_active(r).await,
            Phase::Remove => self.remove(r).await,
            Phase::ZeroFrom => self.zero_from(r).await,
            Phase::Done => {
                r.enter(Phase::Done, now);
                Ok(Duration::ZERO)
            }
        };
        let now = self.clock.now();
        match outcome {
            Ok(next) => r.is_running().then_some(next),
            Err(Stop::Retry(why)) => {
                r.wait(why, now);
                Some(self.retry)
            }
            Err(Stop::Fail(error)) => {
                r.fail(error, now);
                None
            }
        }
    }

    /// An AWS error of `what`: retried if it may pass, else the rotation fails.
    fn aws(what: &str, e: &AwsError) -> Stop {
        if e.is_retryable() {
            Stop::Retry(format!("{what}: {e}; trying again"))
        } else {
            Stop::Fail(format!("{what}: {e}"))
        }
    }

    /// `DescribeAutoScalingGroups` for `group`; a missing group fails the rotation.
    async fn group(&self, group: &str) -> Result<AutoScalingGroup, Stop> {
        match self.asg.describe_group(group).await {
            Ok(g) => Ok(g),
            Err(e) if e.kind == AwsErrorKind::NotFound => Err(Stop::Fail(format!(
                "Auto Scaling group {group} (of cluster {}) not found: {e}",
                self.spec.cluster
            ))),
            Err(e) => Err(Self::aws(&format!("reading group {group}"), &e)),
        }
    }

    /// The cluster's container instances by EC2 instance id; a missing cluster fails
    /// the rotation.
    async fn hosts(&self) -> Result<BTreeMap<String, ContainerInstance>, Stop> {
        let cluster = &self.spec.cluster;
        let what = format!("reading the container instances of cluster {cluster}");
        let arns = match self.ecs.list_container_instances(cluster, None).await {
            Ok(a) => a,
            Err(e) if e.kind == AwsErrorKind::NotFound => {
                return Err(Stop::Fail(format!("cluster {cluster} not found: {e}")));
            }
            Err(e) => return Err(Self::aws(&what, &e)),
        };
        let mut hosts = BTreeMap::new();
        for batch in arns.chunks(DESCRIBE_CONTAINER_INSTANCES) {
            let (found, _missing) = self
                .ecs
                .describe_container_instances(cluster, batch)
                .await
                .map_err(|e| Self::aws(&what, &e))?;
            hosts.extend(found.into_iter().map(|h| (h.ec2_instance_id.clone(), h)));
        }
        Ok(hosts)
    }

    /// `SetDesiredCapacity` of `group`.
    async fn set_desired(&self, group: &str, desired: u32) -> Result<(), Stop> {
        self.asg
            .set_desired_capacity(group, desired)
            .await
            .map_err(|e| Self::aws(&format!("setting group {group} to {desired}"), &e))
    }

    /// Phase scale_up: see the module docs.
    async fn scale_up(&self, r: &mut Rotation) -> Result<Duration, Stop> {
        let a = self.group(&r.from).await?;
        let b = self.group(&r.to).await?;
        self.hosts().await?;
        if a.min > 0 {
            return Err(Stop::Fail(min_above_zero(&a)));
        }
        let in_service = count(
            a.instances
                .iter()
                .filter(|i| i.lifecycle_state == InstanceLifecycleState::InService)
                .count(),
        );
        let size = match r.size {
            Some(size) => size,
            None => {
                let size = b.desired.max(in_service);
                r.size = Some(size);
                r.note(
                    format!(
                        "size to reach: {size} (group {} has {in_service} in service, group {} desires {})",
                        a.name, b.name, b.desired
                    ),
                    self.clock.now(),
                );
                size
            }
        };
        if size > b.max {
            return Err(Stop::Fail(format!(
                "group {} has max size {}, below the {size} hosts to reach (group {} has {in_service} in service): raise its max to at least {size}",
                b.name, b.max, a.name
            )));
        }
        if b.desired < size {
            self.set_desired(&b.name, size).await?;
            r.note(
                format!("group {} set to {size} (was {})", b.name, b.desired),
                self.clock.now(),
            );
        }
        r.enter(Phase::WaitActive, self.clock.now());
        Ok(Duration::ZERO)
    }

    /// Phase wait_active: see the module docs.
    async fn wait_active(&self, r: &mut Rotation) -> Result<Duration, Stop> {
        let b = self.group(&r.to).await?;
        let hosts = self.hosts().await?;
        let size = r.size.unwrap_or(0);
        let ready = count(
            b.instances
                .iter()
                .filter(|i| {
                    i.lifecycle_state == InstanceLifecycleState::InService
                        && hosts
                            .get(&i.instance_id)
                            .is_some_and(|h| h.status == ContainerInstanceStatus::Active)
                })
                .count(),
        );
        let now = self.clock.now();
        if ready >= size {
            r.note(
                format!(
                    "group {}: {ready} instances in service and ACTIVE in cluster {}",
                    b.name, r.cluster
                ),
                now,
            );
            r.enter(Phase::Remove, now);
            return Ok(Duration::ZERO);
        }
        r.wait(
            format!(
                "group {}: {ready} of {size} instances in service with an ACTIVE container instance in cluster {}",
                b.name, r.cluster
            ),
            now,
        );
        Ok(self.poll)
    }

    /// Phase remove: see the module docs.
    async fn remove(&self, r: &mut Rotation) -> Result<Duration, Stop> {
        // A failed removal holds the A target: it is redriven (it resumes at the step
        // it failed at), and its error is the wait reason meanwhile.
        if let Some(p) = self.target.removal_in_progress().await
            && let Some(error) = p.error
        {
            let hosts = p
                .draining
                .iter()
                .map(TaskId::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let resumed = match self.target.redrive(&p.workflow).await {
                Ok(_) => "redriven".to_owned(),
                Err(e) => format!("cannot redrive it: {}", reason(&e)),
            };
            return Err(Stop::Retry(format!(
                "the removal of host {hosts} failed at {}: {error}; {resumed}",
                p.step
            )));
        }
        if let Some(current) = r.current.clone()
            && self.draining().await.contains(&current)
            && let Err(e) = self.target.observe().await
        {
            return Err(Stop::Retry(format!(
                "looking at host {current}: {}",
                reason(&e)
            )));
        }
        let a = self.group(&r.from).await?;
        let hosts = self.hosts().await?;
        let now = self.clock.now();
        let live: Vec<&AutoScalingInstance> = a.instances.iter().filter(|i| !gone(i)).collect();
        let handled = r.removed.len() + r.skipped.len();
        let unhandled = live.iter().filter(|i| !r.handled(&i.instance_id)).count();
        r.total = r.total.max(count(handled + unhandled));
        if let Some(current) = r.current.clone() {
            return self.tend(r, &current, &a, &hosts).await;
        }
        // The next host: one left DRAINING by an earlier run first, then not the one
        // refused last, then the emptiest.
        let mut candidates: Vec<&AutoScalingInstance> = live
            .into_iter()
            .filter(|i| !r.handled(&i.instance_id))
            .collect();
        candidates.sort_by_key(|i| {
            let h = hosts.get(&i.instance_id);
            (
                !h.is_some_and(|h| h.status == ContainerInstanceStatus::Draining),
                r.last_refused.as_deref() == Some(i.instance_id.as_str()),
                h.map_or(0, tasks_on),
                i.instance_id.clone(),
            )
        });
        for i in candidates {
            let id = &i.instance_id;
            match (i.lifecycle_state, hosts.get(id)) {
                (InstanceLifecycleState::InService, Some(h))
                    if matches!(
                        h.status,
                        ContainerInstanceStatus::Active | ContainerInstanceStatus::Draining
                    ) =>
                {
                    r.start_host(id, now);
                    return self.begin(r, id, &a, h).await;
                }
                (InstanceLifecycleState::InService, Some(h)) => {
                    r.skip_host(id, &format!("its container instance is {:?}", h.status), now);
                }
                (InstanceLifecycleState::InService, None) => r.skip_host(
                    id,
                    &format!(
                        "in service but not a container instance of cluster {}: capstan cannot prove it holds no work",
                        r.cluster
                    ),
                    now,
                ),
                (state, _) => r.skip_host(id, &format!("not in service ({state:?})"), now),
            }
        }
        r.enter(Phase::ZeroFrom, now);
        Ok(Duration::ZERO)
    }

    /// Starts the removal of host `id` of A (container instance `h`).
    async fn begin(
        &self,
        r: &mut Rotation,
        id: &str,
        a: &AutoScalingGroup,
        h: &ContainerInstance,
    ) -> Result<Duration, Stop> {
        if a.desired == 0 {
            return Err(Stop::Retry(format!(
                "group {} has desired capacity 0 while host {id} is in it: someone else is scaling it in",
                a.name
            )));
        }
        if h.status == ContainerInstanceStatus::Draining {
            // Left DRAINING by an earlier run (or anyone): put back, so the removal
            // starts over with its safety check.
            match self
                .ecs
                .update_container_instances_state(
                    &r.cluster,
                    std::slice::from_ref(&h.arn),
                    ContainerInstanceStatus::Active,
                )
                .await
            {
                Ok(failures) if failures.is_empty() => r.note(
                    format!(
                        "host {id} was left DRAINING; set ACTIVE again so its removal starts over"
                    ),
                    self.clock.now(),
                ),
                Ok(failures) => {
                    let why = failures
                        .iter()
                        .map(|f| f.reason.as_str())
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(Stop::Retry(format!(
                        "host {id} is DRAINING and ECS did not set it ACTIVE again: {why}"
                    )));
                }
                Err(e) => return Err(Self::aws(&format!("setting host {id} ACTIVE again"), &e)),
            }
        }
        let desired = a.desired - 1;
        let now = self.clock.now();
        match self.target.scale_in(desired, &[TaskId::from(id)]).await {
            Ok(()) => {
                r.wait(
                    format!("host {id} draining ({} tasks on it)", tasks_on(h)),
                    now,
                );
                Ok(self.poll)
            }
            Err(e) => {
                r.host_refused(id, &reason(&e), now);
                Ok(self.refused_retry)
            }
        }
    }

    /// Follows the removal of the current host `id`.
    async fn tend(
        &self,
        r: &mut Rotation,
        id: &str,
        a: &AutoScalingGroup,
        hosts: &BTreeMap<String, ContainerInstance>,
    ) -> Result<Duration, Stop> {
        let now = self.clock.now();
        let draining = self.draining().await.iter().any(|d| d == id);
        let Some(inst) = a.instances.iter().find(|i| i.instance_id == id && !gone(i)) else {
            r.host_removed(id, "drained and terminated", now);
            return Ok(Duration::ZERO);
        };
        if draining {
            let left = hosts.get(id).map_or(0, tasks_on);
            r.wait(format!("host {id} draining ({left} tasks on it)"), now);
            return Ok(self.poll);
        }
        match (inst.lifecycle_state, hosts.get(id)) {
            (InstanceLifecycleState::InService, Some(h))
                if h.status == ContainerInstanceStatus::Draining =>
            {
                // Not in this driver's removal: an earlier run's (restart).
                self.begin(r, id, a, h).await
            }
            (InstanceLifecycleState::InService, Some(h))
                if h.status == ContainerInstanceStatus::Active =>
            {
                r.host_refused(
                    id,
                    "its removal ended without terminating it (drain timeout, or set ACTIVE again by someone); it is tried again later",
                    now,
                );
                Ok(self.refused_retry)
            }
            (InstanceLifecycleState::InService, Some(h)) => {
                r.skip_host(
                    id,
                    &format!(
                        "its container instance became {:?} while it drained",
                        h.status
                    ),
                    now,
                );
                Ok(Duration::ZERO)
            }
            (InstanceLifecycleState::InService, None) => {
                r.skip_host(
                    id,
                    "its container instance disappeared while it drained: capstan cannot prove it is drained, so it is not terminated",
                    now,
                );
                Ok(Duration::ZERO)
            }
            (state, _) => {
                r.skip_host(
                    id,
                    &format!("left service ({state:?}) while it drained"),
                    now,
                );
                Ok(Duration::ZERO)
            }
        }
    }

    /// Phase zero_from: see the module docs.
    async fn zero_from(&self, r: &mut Rotation) -> Result<Duration, Stop> {
        let a = self.group(&r.from).await?;
        if a.min > 0 {
            return Err(Stop::Fail(min_above_zero(&a)));
        }
        let live: Vec<&AutoScalingInstance> = a.instances.iter().filter(|i| !gone(i)).collect();
        let now = self.clock.now();
        if live.iter().any(|i| !r.handled(&i.instance_id)) {
            r.note(
                format!("group {} has new instances: removing them too", a.name),
                now,
            );
            r.enter(Phase::Remove, now);
            return Ok(Duration::ZERO);
        }
        let keep = count(live.len());
        if a.desired != keep {
            self.set_desired(&a.name, keep).await?;
        }
        let now = self.clock.now();
        if keep == 0 {
            r.note(format!("group {} set to 0", a.name), now);
        } else {
            let kept: Vec<&str> = live.iter().map(|i| i.instance_id.as_str()).collect();
            r.note(
                format!(
                    "group {} left at {keep}, not 0: its skipped hosts {} are kept (Auto Scaling would terminate them); remove them by hand once they are known to be empty",
                    a.name,
                    kept.join(", ")
                ),
                now,
            );
        }
        r.enter(Phase::Done, now);
        Ok(Duration::ZERO)
    }
}

/// Why a rotation ending with group `a` at 0 cannot go on.
fn min_above_zero(a: &AutoScalingGroup) -> String {
    format!(
        "group {} has min size {}: a rotation ends with it at 0; set its min size to 0 first",
        a.name, a.min
    )
}

/// The reason of a target error, without the target's name.
fn reason(e: &TargetError) -> String {
    match e {
        TargetError::Failed { reason, .. } | TargetError::Invalid { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
