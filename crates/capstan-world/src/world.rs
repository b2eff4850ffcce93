//! [`World`]: the handle the simulator and the behaviour tests hold.

use std::sync::{Arc, Mutex, MutexGuard};

use capstan_aws_api::AwsError;
use capstan_core::clock::Clock;

use crate::error::WorldError;
use crate::faults::FaultRule;
use crate::limits::{ApiStats, Category};
use crate::spec::{ClusterSpec, ServiceSpec, WorldConfig};
use crate::state::State;
use crate::view::{ClusterState, Event, ServiceCounts, TaskHandle, TaskInfo};

/// A world of ECS services, target groups and Auto Scaling groups on a clock.
///
/// Cloning shares the same world. Every method first catches the world up to the
/// clock's "now" (firing the timers due in time order); the AWS trait
/// implementations ([`capstan_aws_api::Ecs`], [`capstan_aws_api::Elb`],
/// [`capstan_aws_api::AutoScaling`]) then take a token of the call's rate-limit
/// category (when [`WorldConfig::rate_limits`]), apply injected faults, and act; their
/// futures are ready at once.
#[derive(Clone)]
pub struct World {
    /// The state, shared between clones.
    state: Arc<Mutex<State>>,
    /// Where "now" comes from.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

impl World {
    /// An empty world reading time from `clock`.
    pub fn new(config: WorldConfig, clock: impl Clock) -> Self {
        let now = clock.now();
        Self {
            state: Arc::new(Mutex::new(State::new(config, now))),
            clock: Arc::new(clock),
        }
    }

    /// The state, caught up to now.
    fn lock(&self) -> MutexGuard<'_, State> {
        let now = self.clock.now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.catch_up(now);
        s
    }

    /// Adds a cluster (or more Auto Scaling groups to an existing one). Each group
    /// starts with `desired` instances InService and ACTIVE container instances.
    pub fn add_cluster(&self, spec: ClusterSpec) -> Result<(), WorldError> {
        self.lock().add_cluster(spec)
    }

    /// Adds a service (creating its cluster if needed). It starts with `desired` tasks
    /// already RUNNING and healthy in its target group (warm start, no events), zones
    /// balanced.
    pub fn add_service(&self, spec: ServiceSpec) -> Result<(), WorldError> {
        self.lock().add_service(spec)
    }

    /// Catches up to now and returns every event since the last call, in time order
    /// (including those that happened while API calls caught the world up).
    pub fn advance(&self) -> Vec<Event> {
        std::mem::take(&mut self.lock().events)
    }

    /// Every task of the service not yet STOPPED (including DEACTIVATING, STOPPING
    /// and DEPROVISIONING ones), in creation order. Empty for an unknown service.
    pub fn tasks(&self, cluster: &str, service: &str) -> Vec<TaskInfo> {
        self.lock().task_infos(cluster, service)
    }

    /// [`tasks`](Self::tasks) written over `out` (what it held is replaced): its
    /// entries are overwritten in place, so a caller that keeps its list from one read
    /// to the next allocates nothing once the strings fit.
    pub fn tasks_into(&self, cluster: &str, service: &str, out: &mut Vec<TaskInfo>) {
        self.lock().task_infos_into(cluster, service, out);
    }

    /// Tells the world how much work (requests, sessions, messages) the task holds
    /// now; 0 = idle, which lets a draining target go once the routing lag has passed
    /// and lets a task told to stop (SIGTERM) exit. Unknown tasks are ignored.
    pub fn set_work(&self, task_arn: &str, in_flight: u32) {
        let mut s = self.lock();
        if let Some(slot) = s.slot_of(task_arn) {
            s.set_work(slot, in_flight);
            s.settle();
        }
    }

    /// [`set_work`](Self::set_work) for several tasks at once, named by their
    /// [`TaskInfo::handle`] (no ARN lookup), with one lock and one settling of the world
    /// after all of them: what a caller telling the world every change of a step uses.
    /// Handles of tasks the world has forgotten are ignored.
    pub fn set_work_many(&self, work: impl IntoIterator<Item = (TaskHandle, u32)>) {
        let mut s = self.lock();
        let mut changed = false;
        for (handle, in_flight) in work {
            let slot = handle.slot as usize;
            if s.task(slot).is_some_and(|t| t.uid == handle.uid) {
                s.set_work(slot, in_flight);
                changed = true;
            }
        }
        if changed {
            s.settle();
        }
    }

    /// [`work`](Self::work) of each task of `task_arns`, in order, under one lock.
    pub fn work_many<'a>(&self, task_arns: impl IntoIterator<Item = &'a str>) -> Vec<Option<u32>> {
        let s = self.lock();
        task_arns
            .into_iter()
            .map(|arn| {
                s.slot_of(arn)
                    .and_then(|slot| s.task(slot))
                    .map(|t| t.in_flight)
            })
            .collect()
    }

    /// The work the task holds as last told by [`set_work`](Self::set_work) (0 once
    /// its containers have stopped); `None` for a task the world does not know (never
    /// existed, or STOPPED and forgotten).
    pub fn work(&self, task_arn: &str) -> Option<u32> {
        let s = self.lock();
        let slot = s.slot_of(task_arn)?;
        s.task(slot).map(|t| t.in_flight)
    }

    /// The service's desired, running, pending, stopping and unplaced counts.
    pub fn service_counts(&self, cluster: &str, service: &str) -> Option<ServiceCounts> {
        self.lock().counts(cluster, service)
    }

    /// The cluster's container instances, reservation and Auto Scaling groups.
    pub fn cluster_state(&self, cluster: &str) -> Option<ClusterState> {
        self.lock().cluster_view(cluster)
    }

    /// Forces a new deployment of the service (rolling replacement of every task
    /// within `minimumHealthyPercent` and `maximumPercent`).
    pub fn start_deployment(&self, cluster: &str, service: &str) -> Result<(), WorldError> {
        self.lock().start_deployment(cluster, service)
    }

    /// Adds a fault rule (see [`FaultRule`]).
    pub fn inject_fault(&self, rule: FaultRule) {
        self.lock().faults.inject(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Calls and throttled calls per operation so far.
    pub fn api_stats(&self) -> ApiStats {
        self.lock().stats.clone()
    }

    /// A number that changes whenever anything [`tasks`](Self::tasks),
    /// [`service_counts`](Self::service_counts) or
    /// [`cluster_state`](Self::cluster_state) show may have changed (after catching up
    /// to now): a caller may keep what it read while the number stays the same.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// One API call: catch up, take a rate-limit token, apply faults, act, and let the
    /// schedulers react.
    pub(crate) fn call<R>(
        &self,
        operation: &'static str,
        category: Category,
        act: impl FnOnce(&mut State) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        let mut s = self.lock();
        s.gate(operation, category)?;
        let r = act(&mut s);
        s.settle();
        r
    }
}
