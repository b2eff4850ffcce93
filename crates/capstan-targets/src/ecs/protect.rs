//! The task-protection driver of one ECS service: carries out what the pure
//! [`ProtectionManager`] decides (enable at a task's first workload, extend before
//! expiry, release after a quiet period) with `UpdateTaskProtection`, and reconciles with
//! `GetTaskProtection` once, when it first learns the service's tasks.
//!
//! It reads the service's running tasks from the target's observations
//! ([`Protector::set_tasks`]) and their workloads in progress from [`WorkCounts`], so a
//! [`step`](Protector::step) makes no call but the protection changes that are due. Run
//! it every second or so ([`Protector::run`]): a workload reported now is protected
//! within that second.
//!
//! The scale-in of the same target consults it: a task the manager holds for live work
//! is never released by a scale-in, and tasks the scale-in relies on staying protected
//! while ECS stops the victims are pinned ([`Protector::pin`]): the manager does not
//! release them until the scale-in is over.
//!
//! Several services of one cluster share their calls through a [`ClusterProtector`]:
//! it steps all their protectors together and sends the changes due at the same moment
//! with the same parameters (an enable for the same number of minutes, or a release) in
//! shared `UpdateTaskProtection` requests of at most 10 tasks, whatever service each
//! task belongs to ([`coalesce`]); each protector then gets back the outcome of its own
//! tasks ([`split_outcomes`]). What stays per service: the manager and its decisions,
//! the pins of the service's scale-in, a task gone (`TASK_NOT_VALID`) forgotten by its
//! own service only, a failed task retried on its own service's backoff, and the
//! counters ([`Protector::stats`]). A lone [`Protector`] ([`Protector::step`],
//! [`Protector::run`]) makes exactly the calls a cluster of one would.
//!
//! Requests go out one at a time; the client paces them on AWS's task-protection
//! bucket (200 burst, 80 per second per account and Region), and a throttled request
//! fails its tasks, which each service retries on its backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_aws_api::limits::GET_TASK_PROTECTION;
use capstan_aws_api::{Ecs, ProtectionResult};
use capstan_core::Timestamp;
use capstan_core::clock::Clock;
use capstan_core::model::TaskId;
use capstan_core::protection::{
    CallOutcome, ProtectionCall, ProtectionManager, ProtectionSettings, ProtectionStats,
    TaskOutcome, coalesce, split_outcomes,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::WorkCounts;
use super::calls::TASK_NOT_VALID;

/// How often [`Protector::run`] steps at most when nothing is due sooner.
pub const STEP_EVERY: Duration = Duration::from_secs(1);

/// What the driver shares with the target.
#[derive(Debug, Default)]
struct Shared {
    /// The running tasks of the latest observation; `None` before the first.
    tasks: Option<Vec<TaskId>>,
    /// Tasks the scale-in needs protected until it ends: never released meanwhile.
    pinned: BTreeSet<TaskId>,
    /// Whether the start-up reconciliation has run.
    reconciled: bool,
}

/// Manages the scale-in protection of one ECS service's tasks. See the
/// [module docs](self).
pub struct Protector<E> {
    name: String,
    cluster: String,
    ecs: E,
    work: Arc<dyn WorkCounts>,
    clock: Arc<dyn Clock>,
    manager: Mutex<ProtectionManager>,
    shared: Mutex<Shared>,
}

impl<E> std::fmt::Debug for Protector<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector")
            .field("name", &self.name)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl<E: Ecs> Protector<E> {
    /// A driver for the tasks of target `name` in `cluster`, with workloads from `work`.
    pub fn new(
        name: &str,
        cluster: &str,
        ecs: E,
        work: Arc<dyn WorkCounts>,
        settings: ProtectionSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            cluster: cluster.to_owned(),
            ecs,
            work,
            clock,
            manager: Mutex::new(ProtectionManager::new(settings)?),
            shared: Mutex::new(Shared::default()),
        })
    }

    /// The target's name (its service's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster its tasks run in.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The ECS client it was made with.
    pub fn ecs(&self) -> &E {
        &self.ecs
    }

    fn manager(&self) -> std::sync::MutexGuard<'_, ProtectionManager> {
        self.manager.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running tasks the target observed.
    pub fn set_tasks(&self, tasks: Vec<TaskId>) {
        self.shared().tasks = Some(tasks);
    }

    /// Keeps `tasks` protected (no release) until [`unpin`](Self::unpin).
    pub fn pin(&self, tasks: impl IntoIterator<Item = TaskId>) {
        self.shared().pinned.extend(tasks);
    }

    /// Ends every pin.
    pub fn unpin(&self) {
        self.shared().pinned.clear();
    }

    /// The expiry of the protection the manager holds on `task` for live work, if any.
    pub fn holds(&self, task: &str) -> Option<Timestamp> {
        self.manager().holds(&TaskId::from(task))
    }

    /// The manager's counters.
    pub fn stats(&self) -> ProtectionStats {
        self.manager().stats()
    }

    /// One round: reconcile at first, then feed the tasks' workloads to the manager
    /// and make the calls due (returns how many). AWS errors are fed back as failed
    /// calls (retried with the manager's backoff); an error reading the protection at
    /// start-up is returned (and the reconciliation tried again next round).
    pub async fn step(&self) -> Result<usize, String> {
        let calls = self.due_calls().await?;
        Ok(exchange(&self.ecs, &self.cluster, &[(self, calls)]).await)
    }

    /// The first half of a round: reconcile at first, then feed the tasks' workloads
    /// to the manager and take the calls due (now in flight until
    /// [`applied`](Self::applied)). Nothing before the first observation.
    async fn due_calls(&self) -> Result<Vec<ProtectionCall>, String> {
        let (tasks, pinned, reconciled) = {
            let s = self.shared();
            let Some(tasks) = s.tasks.clone() else {
                return Ok(Vec::new());
            };
            (tasks, s.pinned.clone(), s.reconciled)
        };
        if !reconciled {
            self.reconcile(&tasks).await?;
        }
        let arns: Vec<&str> = tasks.iter().map(TaskId::as_str).collect();
        let workloads = self.work.workloads_many(&arns);
        let now = self.clock.now();
        let mut manager = self.manager();
        manager.set_pinned(pinned);
        manager.observe(now, tasks.iter().cloned().zip(workloads));
        Ok(manager.due(now))
    }

    /// The second half of a round: the outcome of one of the calls
    /// [`due_calls`](Self::due_calls) gave.
    fn applied(&self, call: &ProtectionCall, outcome: CallOutcome) {
        match &outcome {
            Err(e) => {
                tracing::warn!(target_name = %self.name, error = %e, tasks = call.tasks.len(), enable = call.enable, "task protection call failed; retrying with backoff");
            }
            Ok(_) => {
                tracing::debug!(target_name = %self.name, tasks = call.tasks.len(), enable = call.enable, "task protection changed");
            }
        }
        self.manager().applied(self.clock.now(), call, outcome);
    }

    /// How long to wait before the next round: [`STEP_EVERY`], or less when the
    /// manager has something due sooner (at least 50 ms).
    fn wait(&self) -> Duration {
        let now = self.clock.now();
        self.manager()
            .next_wakeup(now)
            .map_or(STEP_EVERY, |at| {
                capstan_core::clock::elapsed(now, at).min(STEP_EVERY)
            })
            .max(Duration::from_millis(50))
    }

    /// Feeds what `GetTaskProtection` reports for `tasks` to the manager.
    async fn reconcile(&self, tasks: &[TaskId]) -> Result<(), String> {
        let arns: Vec<Arc<str>> = tasks.iter().map(|t| t.0.clone()).collect();
        let mut found = Vec::new();
        for batch in arns.chunks(GET_TASK_PROTECTION) {
            let result = self
                .ecs
                .get_task_protection(&self.cluster, batch)
                .await
                .map_err(|e| e.to_string())?;
            found.extend(result.protected);
        }
        let now = self.clock.now();
        let mut manager = self.manager();
        let mut adopted = 0;
        for p in found {
            let until = if p.enabled { p.expires_at } else { None };
            adopted += usize::from(until.is_some());
            manager.reconcile(now, &TaskId(p.arn), until);
        }
        drop(manager);
        self.shared().reconciled = true;
        tracing::info!(target_name = %self.name, tasks = tasks.len(), protected = adopted, "task protection reconciled");
        Ok(())
    }

    /// Steps every [`STEP_EVERY`] (sooner when the manager has something due) until
    /// `cancel`.
    pub async fn run(&self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.step().await {
                tracing::warn!(target_name = %self.name, error = %e, "cannot read task protection at start-up; trying again");
            }
            let wait = self.wait();
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// What one task's entry in an `UpdateTaskProtection` answer says of it, for an enable
/// (`enable`) or a release.
fn task_outcome(task: &TaskId, enable: bool, result: &ProtectionResult) -> TaskOutcome {
    let failure = result.failures.iter().find(|f| *f.arn == *task.0);
    let done = result.protected.iter().find(|p| *p.arn == *task.0);
    match (failure, done) {
        (Some(f), _) if f.reason == TASK_NOT_VALID => TaskOutcome::Gone,
        (Some(f), _) => {
            TaskOutcome::Failed(format!("UpdateTaskProtection: task {task}: {}", f.reason))
        }
        (None, Some(p)) if enable => match p.expires_at {
            Some(expires_at) => TaskOutcome::Enabled { expires_at },
            None => TaskOutcome::Failed(format!(
                "UpdateTaskProtection: task {task}: no expiry in the answer"
            )),
        },
        (None, Some(_)) => TaskOutcome::Released,
        (None, None) => TaskOutcome::Failed(format!(
            "UpdateTaskProtection: task {task}: missing from the answer"
        )),
    }
}

/// Makes the calls `members` took (each protector with its calls due) in shared
/// requests to `cluster` ([`coalesce`]), one at a time, and hands each protector the
/// outcome of its own calls. Returns how many requests were made.
async fn exchange<E: Ecs>(
    ecs: &E,
    cluster: &str,
    members: &[(&Protector<E>, Vec<ProtectionCall>)],
) -> usize {
    let owned: Vec<(&Protector<E>, &ProtectionCall)> = members
        .iter()
        .flat_map(|(p, calls)| calls.iter().map(move |c| (*p, c)))
        .collect();
    let calls: Vec<&ProtectionCall> = owned.iter().map(|(_, c)| *c).collect();
    let requests = coalesce(&calls);
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in &requests {
        let arns: Vec<Arc<str>> = request.tasks.iter().map(|(_, t)| t.0.clone()).collect();
        let outcome = match ecs
            .update_task_protection(cluster, &arns, request.expires_in_minutes)
            .await
        {
            Err(e) => Err(e.to_string()),
            Ok(result) => Ok(request
                .tasks
                .iter()
                .map(|(_, task)| (task.clone(), task_outcome(task, request.enable, &result)))
                .collect()),
        };
        outcomes.push(outcome);
    }
    for ((p, call), outcome) in owned
        .iter()
        .zip(split_outcomes(&calls, &requests, outcomes))
    {
        p.applied(call, outcome);
    }
    requests.len()
}

/// What one [`ClusterProtector::step`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClusterStep {
    /// `UpdateTaskProtection` requests made.
    pub calls: usize,
    /// The services whose protection could not be read at start-up (`GetTaskProtection`),
    /// with the error: they make no call this round and try again the next.
    pub errors: Vec<(String, String)>,
}

/// Drives the [`Protector`]s of the services of one cluster (one ECS client, one
/// cluster name) together so they share `UpdateTaskProtection` requests; see the
/// [module docs](self). Services join and leave it at any time.
pub struct ClusterProtector<E> {
    cluster: String,
    ecs: E,
    members: Mutex<BTreeMap<String, Arc<Protector<E>>>>,
    /// Wakes [`run`](Self::run) when a service joins.
    joined: Notify,
}

impl<E> std::fmt::Debug for ClusterProtector<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterProtector")
            .field("cluster", &self.cluster)
            .field("members", &self.members().len())
            .finish_non_exhaustive()
    }
}

impl<E> ClusterProtector<E> {
    /// A driver with no services yet for `cluster`, making its calls with `ecs` (the
    /// client its services use).
    pub fn new(cluster: &str, ecs: E) -> Self {
        Self {
            cluster: cluster.to_owned(),
            ecs,
            members: Mutex::new(BTreeMap::new()),
            joined: Notify::new(),
        }
    }

    /// The cluster it drives.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Protector<E>>>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `protector` (replacing one of the same service name). Fails, naming both
    /// clusters, if its tasks are in another cluster.
    pub fn join(&self, protector: Arc<Protector<E>>) -> Result<(), String> {
        if protector.cluster != self.cluster {
            return Err(format!(
                "service {} protects tasks of cluster {:?}, not of {:?}",
                protector.name, protector.cluster, self.cluster
            ));
        }
        self.lock().insert(protector.name.clone(), protector);
        self.joined.notify_one();
        Ok(())
    }

    /// Removes `protector`, if it is the one that joined under its name (a newer one
    /// of the same service stays). Returns whether it was removed.
    pub fn leave(&self, protector: &Arc<Protector<E>>) -> bool {
        let mut members = self.lock();
        match members.get(&protector.name) {
            Some(p) if Arc::ptr_eq(p, protector) => {
                members.remove(&protector.name);
                true
            }
            _ => false,
        }
    }

    /// The names of the services it drives, sorted.
    pub fn members(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Whether no service is left.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl<E: Ecs> ClusterProtector<E> {
    /// One round for every service (in name order): each protector reconciles at
    /// first and takes the calls due; they are made in shared requests; each
    /// protector gets its tasks' outcomes.
    pub async fn step(&self) -> ClusterStep {
        let members: Vec<Arc<Protector<E>>> = self.lock().values().cloned().collect();
        let mut due = Vec::with_capacity(members.len());
        let mut errors = Vec::new();
        for p in &members {
            match p.due_calls().await {
                Ok(calls) if calls.is_empty() => {}
                Ok(calls) => due.push((&**p, calls)),
                Err(e) => errors.push((p.name.clone(), e)),
            }
        }
        let calls = exchange(&self.ecs, &self.cluster, &due).await;
        ClusterStep { calls, errors }
    }

    /// Steps every [`STEP_EVERY`] (sooner when a service has something due, or has
    /// just joined) until `cancel`.
    pub async fn run(&self, cancel: CancellationToken) {
        loop {
            let step = self.step().await;
            for (service, e) in &step.errors {
                tracing::warn!(target_name = %service, cluster = %self.cluster, error = %e, "cannot read task protection at start-up; trying again");
            }
            let wait = self
                .lock()
                .values()
                .map(|p| p.wait())
                .min()
                .unwrap_or(STEP_EVERY);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.joined.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
