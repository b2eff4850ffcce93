//! The work registry: the live sessions and workloads the tasks of each service report,
//! durable, and what scale-in reads to never stop a task with live work.
//!
//! Reports come from the API (`PUT .../tasks/{task}/sessions/{id}` and friends). Each
//! one is checked against what the service's target last reported (the task must be
//! one of its tasks; a task being drained takes no new work: [`WorkError::Draining`]),
//! turned into a [`WorkOp`], written to the [`WorkLog`] and only then applied to the
//! in-memory [`WorkBook`] and answered: a report that was answered survives a crash.
//!
//! One writer thread does every write: it takes all the ops waiting when it is free
//! and commits them in one transaction (group commit), so thousands of reports per
//! second cost one `fsync` per batch, not one each. Ops are applied to the book in the
//! order they were committed.
//!
//! Entries expire at their TTL (the report's own, else the service's `work.ttl`);
//! [`WorkRegistry::sweep`] drops expired entries from memory and from the store. The
//! entries of a task the target no longer reports are forgotten at the next
//! observation.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use capstan_core::Timestamp;
use capstan_core::clock::Clock;
use capstan_core::model::{Task, TaskId, TaskState};
use capstan_core::work::{
    Applied, DEFAULT_TTL, EntryView, WorkBook, WorkCount, WorkKind, WorkOp, expiry,
};
use capstan_store::{StoreError, WorkLog};
use capstan_targets::WorkCounts;
use tokio::sync::{mpsc, oneshot};

/// How many ops the writer commits in one transaction at most.
pub const MAX_BATCH: usize = 4096;

/// A report the registry refused or could not make durable. Every variant names the
/// service (and the task when one is at fault).
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// No service of that name is configured.
    #[error("unknown service {service}")]
    UnknownService {
        /// The name asked for.
        service: String,
    },
    /// The task is not one of the tasks the service's target reports.
    #[error("unknown task {task} of service {service}: {detail}")]
    UnknownTask {
        /// The service.
        service: String,
        /// The task asked for.
        task: String,
        /// What the registry knows (how many tasks, observed when).
        detail: String,
    },
    /// The task is being drained for scale-in and takes no new work.
    #[error(
        "task {task} of service {service} is draining for scale-in and takes no new sessions or workloads; route the work to another task"
    )]
    Draining {
        /// The service.
        service: String,
        /// The task.
        task: String,
    },
    /// The report could not be made durable; nothing changed.
    #[error("service {service}: the report was not stored, nothing changed: {source}")]
    Store {
        /// The service.
        service: String,
        /// The store's error.
        source: StoreError,
    },
    /// The registry's writer has stopped (capstan is shutting down).
    #[error("the work registry is shut down")]
    Closed,
}

/// What the registry knows about one service's tasks.
#[derive(Debug, Default)]
struct Known {
    /// The TTL of a report that names none.
    ttl: Duration,
    /// When the target was last observed; `None` before the first observation.
    observed_at: Option<Timestamp>,
    /// Every task the target reported then, by its full id.
    tasks: HashSet<TaskId>,
    /// The short form of each task id (the part after the last `/` of an ECS task ARN).
    short: HashMap<Arc<str>, TaskId>,
    /// Tasks draining (observed draining or stopping, or chosen as victims since).
    draining: HashSet<TaskId>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    renewed: AtomicU64,
    ended: AtomicU64,
    unknown_ends: AtomicU64,
    refused_draining: AtomicU64,
    unknown_tasks: AtomicU64,
    expired: AtomicU64,
    forgotten: AtomicU64,
    batches: AtomicU64,
    write_errors: AtomicU64,
}

/// A snapshot of the registry's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkStats {
    /// Entries started (new sessions and workloads).
    pub started: u64,
    /// Reports that renewed an entry already live (including heartbeats, per entry).
    pub renewed: u64,
    /// Entries ended by their report.
    pub ended: u64,
    /// Ends of entries the registry did not hold (already ended or expired).
    pub unknown_ends: u64,
    /// Reports refused because their task is draining.
    pub refused_draining: u64,
    /// Reports naming a task the target does not report.
    pub unknown_tasks: u64,
    /// Entries dropped at their expiry.
    pub expired: u64,
    /// Entries dropped because their task is gone.
    pub forgotten: u64,
    /// Transactions committed by the writer.
    pub batches: u64,
    /// Transactions that failed (their reports were answered with an error).
    pub write_errors: u64,
}

/// One batch for the writer: ops and, for a report, who waits for the outcome.
struct Job {
    ops: Vec<WorkOp>,
    reply: Option<oneshot::Sender<Result<Vec<Applied>, String>>>,
}

struct Shared {
    book: Mutex<WorkBook>,
    known: RwLock<HashMap<Arc<str>, Known>>,
    clock: Arc<dyn Clock>,
    counters: Counters,
}

/// The work registry. Cheap to clone (shared). See the [module docs](self).
#[derive(Clone)]
pub struct WorkRegistry {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for WorkRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkRegistry").finish_non_exhaustive()
    }
}

/// The outcome of a start or renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    /// True when the entry did not exist before (a start, not a renewal).
    pub new: bool,
    /// Until when the report holds.
    pub expires: Timestamp,
    /// The task's live work after the report.
    pub count: WorkCount,
}

impl WorkRegistry {
    /// Opens the registry over `log`, loading the entries still live, and starts its
    /// writer thread (it stops when the last clone of the registry is dropped).
    pub fn open(log: Arc<dyn WorkLog>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let mut book = WorkBook::new();
        for op in log.load(clock.now())? {
            book.apply(&op);
        }
        let shared = Arc::new(Shared {
            book: Mutex::new(book),
            known: RwLock::new(HashMap::new()),
            clock,
            counters: Counters::default(),
        });
        let (queue, rx) = mpsc::unbounded_channel();
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("capstan-work-writer".into())
            .spawn(move || write_loop(&writer, log.as_ref(), rx))
            .map_err(|e| StoreError::Work {
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self { shared, queue })
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Known>> {
        self.shared
            .known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn known_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Known>> {
        self.shared
            .known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, WorkBook> {
        self.shared
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Declares `service` (or updates its TTL): reports for it are accepted once its
    /// target has been observed.
    pub fn configure(&self, service: &str, ttl: Option<Duration>) {
        let mut known = self.known_mut();
        let entry = known.entry(Arc::from(service)).or_default();
        entry.ttl = ttl.unwrap_or(DEFAULT_TTL);
    }

    /// Forgets `service` (removed from the configuration); its stored entries stay
    /// until they expire, so a service configured again finds them.
    pub fn remove(&self, service: &str) {
        self.known_mut().remove(service);
    }

    /// Whether `service` is configured.
    pub fn has_service(&self, service: &str) -> bool {
        self.known().contains_key(service)
    }

    /// Records what the target of `service` reports: its tasks and their states.
    /// Entries of tasks no longer reported are forgotten (in the background); draining
    /// and stopping tasks refuse new work.
    pub fn observed(&self, service: &str, tasks: &[Task]) {
        let now = self.shared.clock.now();
        let gone: Vec<TaskId> = {
            let mut known = self.known_mut();
            let Some(entry) = known.get_mut(service) else {
                return;
            };
            entry.observed_at = Some(now);
            // Most observations report the same tasks as the last one: nothing to
            // rebuild then (this runs for every service at every tick).
            let same = entry.tasks.len() == tasks.len()
                && tasks.iter().all(|t| entry.tasks.contains(&t.id));
            if !same {
                entry.tasks = tasks.iter().map(|t| t.id.clone()).collect();
                entry.short = tasks
                    .iter()
                    .filter_map(|t| {
                        let (_, short) = t.id.as_str().rsplit_once('/')?;
                        Some((Arc::from(short), t.id.clone()))
                    })
                    .collect();
            }
            entry.draining.clear();
            entry.draining.extend(
                tasks
                    .iter()
                    .filter(|t| matches!(t.state, TaskState::Draining | TaskState::Stopping))
                    .map(|t| t.id.clone()),
            );
            let book = self.book();
            book.tasks(service)
                .into_iter()
                .filter(|t| !entry.tasks.contains(t))
                .collect()
        };
        if !gone.is_empty() {
            let service: Arc<str> = Arc::from(service);
            let ops = gone
                .into_iter()
                .map(|task| WorkOp::Forget {
                    service: service.clone(),
                    task,
                })
                .collect();
            // Not awaited: a forget lost in a crash is redone at the next observation.
            let _ = self.queue.send(Job { ops, reply: None });
        }
    }

    /// Marks `victims` of `service` draining (chosen for scale-in): they refuse new
    /// work from now on, until an observation reports them running again.
    pub fn mark_draining(&self, service: &str, victims: &[TaskId]) {
        if let Some(entry) = self.known_mut().get_mut(service) {
            entry.draining.extend(victims.iter().cloned());
        }
    }

    /// The full id of `task` of `service` (given in full or by its short form), checked
    /// against the target's last observation.
    pub fn resolve(&self, service: &str, task: &str) -> Result<TaskId, WorkError> {
        let known = self.known();
        let entry = known
            .get(service)
            .ok_or_else(|| WorkError::UnknownService {
                service: service.to_owned(),
            })?;
        let id = TaskId::from(task);
        if entry.tasks.contains(&id) {
            return Ok(id);
        }
        if let Some(full) = entry.short.get(task) {
            return Ok(full.clone());
        }
        self.shared
            .counters
            .unknown_tasks
            .fetch_add(1, Ordering::Relaxed);
        let detail = match entry.observed_at {
            None => "the service's target has not been observed yet; retry shortly".to_owned(),
            Some(at) => format!(
                "not among the {} tasks its target reported at {at}; a task that just \
                 started is known from the next observation",
                entry.tasks.len()
            ),
        };
        Err(WorkError::UnknownTask {
            service: service.to_owned(),
            task: task.to_owned(),
            detail,
        })
    }

    /// The TTL of a report for `service` that names none.
    fn ttl_of(&self, service: &str) -> Duration {
        self.known().get(service).map_or(DEFAULT_TTL, |k| k.ttl)
    }

    fn is_draining(&self, service: &str, task: &TaskId) -> bool {
        self.known()
            .get(service)
            .is_some_and(|k| k.draining.contains(task))
    }

    fn refuse_draining(&self, service: &str, task: &TaskId) -> WorkError {
        self.shared
            .counters
            .refused_draining
            .fetch_add(1, Ordering::Relaxed);
        WorkError::Draining {
            service: service.to_owned(),
            task: task.to_string(),
        }
    }

    /// Writes `ops` durably, then applies them; gives what each changed.
    async fn commit(&self, service: &str, ops: Vec<WorkOp>) -> Result<Vec<Applied>, WorkError> {
        let (reply, done) = oneshot::channel();
        self.queue
            .send(Job {
                ops,
                reply: Some(reply),
            })
            .map_err(|_| WorkError::Closed)?;
        match done.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(reason)) => Err(WorkError::Store {
                service: service.to_owned(),
                source: StoreError::Work { reason },
            }),
            Err(_) => Err(WorkError::Closed),
        }
    }

    /// Starts (or renews) the entry `kind`/`id` of `task`, holding for `ttl` (the
    /// service's default when `None`). A task that is draining refuses a new entry but
    /// accepts the renewal of one it holds.
    pub async fn start(
        &self,
        service: &str,
        task: &TaskId,
        kind: WorkKind,
        id: &str,
        ttl: Option<Duration>,
    ) -> Result<Reported, WorkError> {
        let now = self.shared.clock.now();
        if self.is_draining(service, task) && !self.book().holds(service, task, kind, id, now) {
            return Err(self.refuse_draining(service, task));
        }
        let expires = expiry(now, ttl.unwrap_or_else(|| self.ttl_of(service)));
        let op = WorkOp::Put {
            service: Arc::from(service),
            task: task.clone(),
            kind,
            id: Arc::from(id),
            expires,
        };
        let applied = self.commit(service, vec![op]).await?;
        let new = applied.first().is_some_and(|a| a.added > 0);
        let counter = if new {
            &self.shared.counters.started
        } else {
            &self.shared.counters.renewed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(Reported {
            new,
            expires,
            count: self.count(service, task),
        })
    }

    /// Ends the entry `kind`/`id` of `task`. Idempotent: ending an entry the registry
    /// does not hold (ended before, expired) changes nothing and gives `false` (and is
    /// counted). Accepted from a draining task: that is how it drains.
    pub async fn end(
        &self,
        service: &str,
        task: &TaskId,
        kind: WorkKind,
        id: &str,
    ) -> Result<bool, WorkError> {
        let op = WorkOp::End {
            service: Arc::from(service),
            task: task.clone(),
            kind,
            id: Arc::from(id),
        };
        let applied = self.commit(service, vec![op]).await?;
        let existed = applied.first().is_some_and(|a| a.removed > 0);
        let counter = if existed {
            &self.shared.counters.ended
        } else {
            &self.shared.counters.unknown_ends
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(existed)
    }

    /// Sets the full set of `kind` entries of `task` to `ids` (a periodic report of
    /// everything the task holds), each holding for `ttl`. A draining task may report a
    /// set that drops or keeps entries, not one that adds any.
    pub async fn replace(
        &self,
        service: &str,
        task: &TaskId,
        kind: WorkKind,
        ids: Vec<Arc<str>>,
        ttl: Option<Duration>,
    ) -> Result<Applied, WorkError> {
        let now = self.shared.clock.now();
        if self.is_draining(service, task) {
            let book = self.book();
            if ids
                .iter()
                .any(|id| !book.holds(service, task, kind, id, now))
            {
                drop(book);
                return Err(self.refuse_draining(service, task));
            }
        }
        let expires = expiry(now, ttl.unwrap_or_else(|| self.ttl_of(service)));
        let op = WorkOp::Replace {
            service: Arc::from(service),
            task: task.clone(),
            kind,
            ids,
            expires,
        };
        let applied = self
            .commit(service, vec![op])
            .await?
            .first()
            .copied()
            .unwrap_or_default();
        let c = &self.shared.counters;
        c.started.fetch_add(applied.added as u64, Ordering::Relaxed);
        c.renewed
            .fetch_add(applied.renewed as u64, Ordering::Relaxed);
        c.ended.fetch_add(applied.removed as u64, Ordering::Relaxed);
        Ok(applied)
    }

    /// Renews every entry of `task` for `ttl`; gives how many were renewed.
    pub async fn heartbeat(
        &self,
        service: &str,
        task: &TaskId,
        ttl: Option<Duration>,
    ) -> Result<usize, WorkError> {
        let now = self.shared.clock.now();
        let expires = expiry(now, ttl.unwrap_or_else(|| self.ttl_of(service)));
        let op = WorkOp::Heartbeat {
            service: Arc::from(service),
            task: task.clone(),
            expires,
        };
        let renewed = self
            .commit(service, vec![op])
            .await?
            .first()
            .map_or(0, |a| a.renewed);
        self.shared
            .counters
            .renewed
            .fetch_add(renewed as u64, Ordering::Relaxed);
        Ok(renewed)
    }

    /// The live work of `task` of `service` now.
    pub fn count(&self, service: &str, task: &TaskId) -> WorkCount {
        let now = self.shared.clock.now();
        self.book().count(service, task, now)
    }

    /// The live entries of `task` of `service` now.
    pub fn entries(&self, service: &str, task: &TaskId) -> Vec<EntryView> {
        let now = self.shared.clock.now();
        self.book().entries(service, task, now)
    }

    /// Whether `task` of `service` refuses new work (draining).
    pub fn draining(&self, service: &str, task: &TaskId) -> bool {
        self.is_draining(service, task)
    }

    /// The live work of every task of `service` together.
    pub fn service_total(&self, service: &str) -> WorkCount {
        let now = self.shared.clock.now();
        self.book().service_total(service, now)
    }

    /// The configured services.
    pub fn services(&self) -> Vec<String> {
        self.known().keys().map(ToString::to_string).collect()
    }

    /// Drops the entries that have expired, from memory now and from the store in the
    /// background; gives how many.
    pub fn sweep(&self) -> usize {
        let now = self.shared.clock.now();
        let removed = self.book().expire(now);
        self.shared
            .counters
            .expired
            .fetch_add(removed as u64, Ordering::Relaxed);
        let _ = self.queue.send(Job {
            ops: vec![WorkOp::Expire { now }],
            reply: None,
        });
        removed
    }

    /// Waits until every op queued before this call is committed and applied.
    pub async fn flush(&self) -> Result<(), WorkError> {
        self.commit("", Vec::new()).await.map(|_| ())
    }

    /// The counters.
    pub fn stats(&self) -> WorkStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkStats {
            started: get(&c.started),
            renewed: get(&c.renewed),
            ended: get(&c.ended),
            unknown_ends: get(&c.unknown_ends),
            refused_draining: get(&c.refused_draining),
            unknown_tasks: get(&c.unknown_tasks),
            expired: get(&c.expired),
            forgotten: get(&c.forgotten),
            batches: get(&c.batches),
            write_errors: get(&c.write_errors),
        }
    }

    /// The live work of `service`'s tasks, for a target's drain logic.
    pub fn counts_for(&self, service: &str) -> Arc<dyn WorkCounts> {
        Arc::new(ServiceWork {
            registry: self.clone(),
            service: Arc::from(service),
        })
    }

    /// The live work of tasks by ARN, whichever service reported them (for the EC2
    /// host target, which sees the tasks of every service on a host).
    pub fn counts_any(&self) -> Arc<dyn WorkCounts> {
        Arc::new(AnyServiceWork {
            registry: self.clone(),
        })
    }
}

/// The live work of any service's tasks, by task ARN, read from the registry: what
/// the EC2 host target asks about the tasks on a host.
struct AnyServiceWork {
    registry: WorkRegistry,
}

impl WorkCounts for AnyServiceWork {
    fn work(&self, task_arn: &str) -> u32 {
        self.work_many(&[task_arn]).into_iter().sum()
    }

    fn work_many(&self, task_arns: &[&str]) -> Vec<u32> {
        let now = self.registry.shared.clock.now();
        let book = self.registry.book();
        task_arns
            .iter()
            .map(|arn| book.count_any(&TaskId::from(*arn), now))
            .collect()
    }
}

/// The live work of one service's tasks, read from the registry.
struct ServiceWork {
    registry: WorkRegistry,
    service: Arc<str>,
}

impl WorkCounts for ServiceWork {
    fn work(&self, task_arn: &str) -> u32 {
        self.registry
            .count(&self.service, &TaskId::from(task_arn))
            .total()
    }

    fn work_many(&self, task_arns: &[&str]) -> Vec<u32> {
        let now = self.registry.shared.clock.now();
        let book = self.registry.book();
        task_arns
            .iter()
            .map(|arn| book.count(&self.service, &TaskId::from(*arn), now).total())
            .collect()
    }

    fn workloads_many(&self, task_arns: &[&str]) -> Vec<u32> {
        let now = self.registry.shared.clock.now();
        let book = self.registry.book();
        task_arns
            .iter()
            .map(|arn| {
                book.count(&self.service, &TaskId::from(*arn), now)
                    .workloads
            })
            .collect()
    }
}

/// The writer thread: commits every job waiting, in order, as one transaction, then
/// applies the ops to the book and answers each job.
fn write_loop(shared: &Shared, log: &dyn WorkLog, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut size = jobs[0].ops.len();
        while size < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.ops.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let ops: Vec<WorkOp> = jobs.iter().flat_map(|j| j.ops.iter().cloned()).collect();
        let result = log.write(&ops);
        shared.counters.batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                let mut book = shared.book.lock().unwrap_or_else(PoisonError::into_inner);
                let mut answers = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let applied: Vec<Applied> = job.ops.iter().map(|op| book.apply(op)).collect();
                    if job.reply.is_none() {
                        let forgotten: usize = job
                            .ops
                            .iter()
                            .zip(&applied)
                            .filter(|(op, _)| matches!(op, WorkOp::Forget { .. }))
                            .map(|(_, a)| a.removed)
                            .sum();
                        shared
                            .counters
                            .forgotten
                            .fetch_add(forgotten as u64, Ordering::Relaxed);
                    }
                    answers.push((job.reply, applied));
                }
                drop(book);
                for (reply, applied) in answers {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(applied));
                    }
                }
            }
            Err(e) => {
                shared.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, ops = ops.len(), "work registry: cannot store reports; they were refused");
                let reason = e.to_string();
                for job in jobs {
                    if let Some(reply) = job.reply {
                        let _ = reply.send(Err(reason.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_core::VirtualClock;
    use capstan_store::SqliteWorkLog;

    fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: TaskId::from(id),
            started_at: Timestamp::from_second(1_700_000_000).unwrap(),
            zone: None,
            state,
            sessions: 0,
            protected: false,
            healthy: true,
        }
    }

    fn arn(n: u32) -> String {
        format!("arn:aws:ecs:eu-west-1:123456789012:task/prod/{n:032x}")
    }

    fn registry(path: &std::path::Path, clock: &VirtualClock) -> WorkRegistry {
        let log = Arc::new(SqliteWorkLog::open(path).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let reg = WorkRegistry::open(log, clock).unwrap();
        reg.configure("api", Some(Duration::from_secs(60)));
        reg
    }

    #[tokio::test]
    async fn reports_are_checked_durable_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        let clock = VirtualClock::new(Timestamp::from_second(1_700_000_000).unwrap());
        let reg = registry(&path, &clock);
        // Before the first observation every task is unknown, and says why.
        let e = reg.resolve("api", &arn(1)).unwrap_err().to_string();
        assert!(e.contains("not been observed yet"), "{e}");
        assert!(matches!(
            reg.resolve("web", "t").unwrap_err(),
            WorkError::UnknownService { .. }
        ));
        reg.observed(
            "api",
            &[
                task(&arn(1), TaskState::Running),
                task(&arn(2), TaskState::Running),
            ],
        );
        // The short id resolves to the full ARN.
        let t1 = reg.resolve("api", &format!("{:032x}", 1)).unwrap();
        assert_eq!(t1.as_str(), arn(1));
        let e = reg.resolve("api", "nope").unwrap_err().to_string();
        assert!(e.contains("not among the 2 tasks"), "{e}");

        let r = reg
            .start("api", &t1, WorkKind::Session, "s1", None)
            .await
            .unwrap();
        assert!(r.new);
        assert_eq!(r.count.sessions, 1);
        let again = reg
            .start("api", &t1, WorkKind::Session, "s1", None)
            .await
            .unwrap();
        assert!(!again.new, "a duplicate start renews");
        reg.start(
            "api",
            &t1,
            WorkKind::Workload,
            "job",
            Some(Duration::from_secs(300)),
        )
        .await
        .unwrap();
        assert!(!reg.end("api", &t1, WorkKind::Session, "zzz").await.unwrap());
        assert_eq!(reg.stats().unknown_ends, 1);
        assert_eq!(reg.count("api", &t1).total(), 2);

        // Another registry on the same file (a restart) sees what was answered.
        drop(reg);
        let reg = registry(&path, &clock);
        assert_eq!(reg.count("api", &t1).total(), 2);
        // The session expires after the service's 60 s, the workload after its own 300 s.
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            reg.count("api", &t1),
            WorkCount {
                sessions: 0,
                workloads: 1
            }
        );
        assert_eq!(reg.sweep(), 1);
        clock.advance(Duration::from_secs(240));
        assert_eq!(reg.count("api", &t1).total(), 0);
    }

    #[tokio::test]
    async fn a_draining_task_refuses_new_work_but_may_end_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = VirtualClock::new(Timestamp::from_second(1_700_000_000).unwrap());
        let reg = registry(&dir.path().join("capstan.db"), &clock);
        reg.observed(
            "api",
            &[
                task("t1", TaskState::Running),
                task("t2", TaskState::Draining),
            ],
        );
        let (t1, t2) = (TaskId::from("t1"), TaskId::from("t2"));
        reg.start("api", &t1, WorkKind::Session, "a", None)
            .await
            .unwrap();
        let e = reg
            .start("api", &t2, WorkKind::Session, "b", None)
            .await
            .unwrap_err();
        assert!(matches!(e, WorkError::Draining { .. }), "{e}");
        // A victim chosen before the next observation refuses new work at once...
        reg.mark_draining("api", std::slice::from_ref(&t1));
        assert!(matches!(
            reg.start("api", &t1, WorkKind::Session, "c", None)
                .await
                .unwrap_err(),
            WorkError::Draining { .. }
        ));
        // ...but renews, reports a smaller set and ends what it holds.
        reg.start("api", &t1, WorkKind::Session, "a", None)
            .await
            .unwrap();
        assert!(matches!(
            reg.replace(
                "api",
                &t1,
                WorkKind::Session,
                vec!["a".into(), "new".into()],
                None
            )
            .await
            .unwrap_err(),
            WorkError::Draining { .. }
        ));
        reg.replace("api", &t1, WorkKind::Session, vec!["a".into()], None)
            .await
            .unwrap();
        assert!(reg.end("api", &t1, WorkKind::Session, "a").await.unwrap());
        assert_eq!(reg.stats().refused_draining, 3);
        // Observed running again (its scale-in was cancelled): it takes work again.
        reg.observed("api", &[task("t1", TaskState::Running)]);
        reg.start("api", &t1, WorkKind::Session, "d", None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn entries_of_a_gone_task_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        let clock = VirtualClock::new(Timestamp::from_second(1_700_000_000).unwrap());
        let reg = registry(&path, &clock);
        reg.observed(
            "api",
            &[
                task("t1", TaskState::Running),
                task("t2", TaskState::Running),
            ],
        );
        for t in ["t1", "t2"] {
            reg.start("api", &TaskId::from(t), WorkKind::Session, "s", None)
                .await
                .unwrap();
        }
        reg.observed("api", &[task("t2", TaskState::Running)]);
        reg.flush().await.unwrap();
        assert_eq!(reg.count("api", &TaskId::from("t1")).total(), 0);
        assert_eq!(reg.stats().forgotten, 1);
        assert_eq!(
            SqliteWorkLog::open(&path)
                .unwrap()
                .stored_entries()
                .unwrap(),
            1
        );
        let counts = reg.counts_for("api");
        assert_eq!(counts.work_many(&["t1", "t2"]), vec![0, 1]);
        // By ARN alone (the EC2 host target's view): the same counts, and none for a
        // task no service reported.
        let any = reg.counts_any();
        assert_eq!(any.work_many(&["t1", "t2", "t9"]), vec![0, 1, 0]);
        assert_eq!(any.work("t2"), 1);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        struct Broken;
        impl WorkLog for Broken {
            fn write(&self, _: &[WorkOp]) -> Result<(), StoreError> {
                Err(StoreError::Work {
                    reason: "disk full".into(),
                })
            }
            fn load(&self, _: Timestamp) -> Result<Vec<WorkOp>, StoreError> {
                Ok(Vec::new())
            }
        }
        let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(
            Timestamp::from_second(1_700_000_000).unwrap(),
        ));
        let reg = WorkRegistry::open(Arc::new(Broken), clock).unwrap();
        reg.configure("api", None);
        reg.observed("api", &[task("t1", TaskState::Running)]);
        let t1 = TaskId::from("t1");
        let e = reg
            .start("api", &t1, WorkKind::Session, "a", None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(reg.count("api", &t1).total(), 0);
        assert_eq!(reg.stats().write_errors, 1);
    }
}
