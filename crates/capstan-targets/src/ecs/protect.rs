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

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_aws_api::Ecs;
use capstan_aws_api::limits::GET_TASK_PROTECTION;
use capstan_core::Timestamp;
use capstan_core::clock::Clock;
use capstan_core::model::TaskId;
use capstan_core::protection::{
    CallOutcome, ProtectionManager, ProtectionSettings, ProtectionStats, TaskOutcome,
};
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
    /// and make the calls due. AWS errors are fed back as failed calls (retried with
    /// the manager's backoff); an error reading the protection at start-up is returned
    /// (and the reconciliation tried again next round).
    pub async fn step(&self) -> Result<usize, String> {
        let (tasks, pinned, reconciled) = {
            let s = self.shared();
            let Some(tasks) = s.tasks.clone() else {
                return Ok(0);
            };
            (tasks, s.pinned.clone(), s.reconciled)
        };
        if !reconciled {
            self.reconcile(&tasks).await?;
        }
        let arns: Vec<&str> = tasks.iter().map(TaskId::as_str).collect();
        let workloads = self.work.workloads_many(&arns);
        let now = self.clock.now();
        let calls = {
            let mut manager = self.manager();
            manager.set_pinned(pinned);
            manager.observe(now, tasks.iter().cloned().zip(workloads));
            manager.due(now)
        };
        let made = calls.len();
        for call in calls {
            let arns: Vec<Arc<str>> = call.tasks.iter().map(|t| t.0.clone()).collect();
            let minutes = if call.enable {
                call.expires_in_minutes
            } else {
                None
            };
            let result = self
                .ecs
                .update_task_protection(&self.cluster, &arns, minutes)
                .await;
            let outcome: CallOutcome = match result {
                Err(e) => Err(e.to_string()),
                Ok(result) => Ok(call
                    .tasks
                    .iter()
                    .map(|task| {
                        let failure = result.failures.iter().find(|f| *f.arn == *task.0);
                        let done = result.protected.iter().find(|p| *p.arn == *task.0);
                        let outcome = match (failure, done) {
                            (Some(f), _) if f.reason == TASK_NOT_VALID => TaskOutcome::Gone,
                            (Some(f), _) => TaskOutcome::Failed(format!(
                                "UpdateTaskProtection: task {task}: {}",
                                f.reason
                            )),
                            (None, Some(p)) if call.enable => match p.expires_at {
                                Some(expires_at) => TaskOutcome::Enabled { expires_at },
                                None => TaskOutcome::Failed(format!(
                                    "UpdateTaskProtection: task {task}: no expiry in the answer"
                                )),
                            },
                            (None, Some(_)) => TaskOutcome::Released,
                            (None, None) => TaskOutcome::Failed(format!(
                                "UpdateTaskProtection: task {task}: missing from the answer"
                            )),
                        };
                        (task.clone(), outcome)
                    })
                    .collect()),
            };
            if let Err(e) = &outcome {
                tracing::warn!(target_name = %self.name, error = %e, tasks = call.tasks.len(), enable = call.enable, "task protection call failed; retrying with backoff");
            } else {
                tracing::debug!(target_name = %self.name, tasks = call.tasks.len(), enable = call.enable, "task protection changed");
            }
            self.manager().applied(self.clock.now(), &call, outcome);
        }
        Ok(made)
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
            let now = self.clock.now();
            let wait = self
                .manager()
                .next_wakeup(now)
                .map_or(STEP_EVERY, |at| {
                    capstan_core::clock::elapsed(now, at).min(STEP_EVERY)
                })
                .max(Duration::from_millis(50));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
