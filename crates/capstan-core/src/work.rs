//! The work registry's book: which live sessions and workloads in progress each task
//! of each service reports, and until when each report holds.
//!
//! Applications report their work through capstan's API (a session opened or closed,
//! a workload started or finished). Each entry carries an expiry: a report holds for
//! its TTL and is renewed by the next report of the same entry or by a heartbeat of its
//! task, so a task that crashes or stops reporting cannot pin itself forever. An expired
//! entry counts as gone at once (every count is taken at an instant), and
//! [`WorkBook::expire`] drops it from memory.
//!
//! Every change is a [`WorkOp`]: the same value is written to the durable store and
//! then applied to the book, so the book after a restart (the store's entries replayed
//! as [`WorkOp::Put`]) is the book before it.
//!
//! Pure: no I/O, no clock (every query takes `now`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::add;
use crate::model::TaskId;

/// The longest session, workload or task id accepted (bytes).
pub const MAX_ID_LEN: usize = 256;

/// The shortest TTL of a report.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// The longest TTL of a report.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The TTL of a report that names none, unless the service sets its own.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// The most sessions one bulk report may list.
pub const MAX_BULK: usize = 10_000;

/// What kind of work an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// A live session (a connection, a logged-in user, a websocket...).
    Session,
    /// A workload in progress (a job, a request being processed...).
    Workload,
}

impl WorkKind {
    /// `session` or `workload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Workload => "workload",
        }
    }
}

/// Checks a session, workload or task id from outside: 1 to [`MAX_ID_LEN`] bytes, no
/// control characters and no whitespace. The error says what is wrong.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "is {} bytes long, the longest accepted is {MAX_ID_LEN}",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "contains {c:?}; control characters and whitespace are not accepted"
        ));
    }
    Ok(())
}

/// Checks a report's TTL: between [`MIN_TTL`] and [`MAX_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(format!(
            "{}s is outside {}s..={}s",
            ttl.as_secs_f64(),
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs()
        ));
    }
    Ok(())
}

/// The instant a report made at `now` with `ttl` expires.
pub fn expiry(now: Timestamp, ttl: Duration) -> Timestamp {
    add(now, ttl)
}

/// One change to the book, as written to the store and then applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkOp {
    /// An entry starts, or is renewed until `expires`.
    Put {
        /// The service.
        service: Arc<str>,
        /// The task holding the work.
        task: TaskId,
        /// Session or workload.
        kind: WorkKind,
        /// The entry's id.
        id: Arc<str>,
        /// Until when the report holds.
        expires: Timestamp,
    },
    /// An entry ends (nothing happens if the book does not hold it).
    End {
        /// The service.
        service: Arc<str>,
        /// The task.
        task: TaskId,
        /// Session or workload.
        kind: WorkKind,
        /// The entry's id.
        id: Arc<str>,
    },
    /// The task's entries of `kind` become exactly `ids`, each until `expires` (a bulk
    /// report of the full set).
    Replace {
        /// The service.
        service: Arc<str>,
        /// The task.
        task: TaskId,
        /// Session or workload.
        kind: WorkKind,
        /// The full set.
        ids: Vec<Arc<str>>,
        /// Until when the report holds.
        expires: Timestamp,
    },
    /// Every entry of the task is renewed until `expires`.
    Heartbeat {
        /// The service.
        service: Arc<str>,
        /// The task.
        task: TaskId,
        /// Until when its entries hold.
        expires: Timestamp,
    },
    /// The task is gone: all its entries go.
    Forget {
        /// The service.
        service: Arc<str>,
        /// The task.
        task: TaskId,
    },
    /// Every entry that expired at or before `now` goes.
    Expire {
        /// The instant.
        now: Timestamp,
    },
}

/// How many live sessions and workloads a task holds at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkCount {
    /// Live sessions.
    pub sessions: u32,
    /// Workloads in progress.
    pub workloads: u32,
}

impl WorkCount {
    /// Sessions plus workloads (0 = idle).
    pub fn total(&self) -> u32 {
        self.sessions.saturating_add(self.workloads)
    }
}

/// One live entry, as listed by [`WorkBook::entries`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    /// Session or workload.
    pub kind: WorkKind,
    /// Its id.
    pub id: String,
    /// Until when its report holds.
    pub expires: Timestamp,
}

/// The entries of one task: id → expiry, per kind.
#[derive(Debug, Clone, Default)]
struct TaskWork {
    sessions: HashMap<Arc<str>, Timestamp>,
    workloads: HashMap<Arc<str>, Timestamp>,
}

impl TaskWork {
    fn of(&mut self, kind: WorkKind) -> &mut HashMap<Arc<str>, Timestamp> {
        match kind {
            WorkKind::Session => &mut self.sessions,
            WorkKind::Workload => &mut self.workloads,
        }
    }

    fn get(&self, kind: WorkKind) -> &HashMap<Arc<str>, Timestamp> {
        match kind {
            WorkKind::Session => &self.sessions,
            WorkKind::Workload => &self.workloads,
        }
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.workloads.is_empty()
    }

    fn live(map: &HashMap<Arc<str>, Timestamp>, now: Timestamp) -> u32 {
        let n = map.values().filter(|e| **e > now).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn count(&self, now: Timestamp) -> WorkCount {
        WorkCount {
            sessions: Self::live(&self.sessions, now),
            workloads: Self::live(&self.workloads, now),
        }
    }
}

/// What applying one op changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Entries that did not exist before.
    pub added: usize,
    /// Entries that existed and were renewed.
    pub renewed: usize,
    /// Entries removed.
    pub removed: usize,
}

/// Every service's tasks' live work. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct WorkBook {
    services: HashMap<Arc<str>, HashMap<TaskId, TaskWork>>,
}

impl WorkBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `op`, saying what it changed.
    pub fn apply(&mut self, op: &WorkOp) -> Applied {
        let mut applied = Applied::default();
        match op {
            WorkOp::Put {
                service,
                task,
                kind,
                id,
                expires,
            } => {
                let map = self.task_mut(service, task).of(*kind);
                if map.insert(id.clone(), *expires).is_some() {
                    applied.renewed = 1;
                } else {
                    applied.added = 1;
                }
            }
            WorkOp::End {
                service,
                task,
                kind,
                id,
            } => {
                if let Some(work) = self.task_of(service, task)
                    && work.of(*kind).remove(id).is_some()
                {
                    applied.removed = 1;
                }
                self.drop_if_empty(service, task);
            }
            WorkOp::Replace {
                service,
                task,
                kind,
                ids,
                expires,
            } => {
                let map = self.task_mut(service, task).of(*kind);
                let mut fresh: HashMap<Arc<str>, Timestamp> = HashMap::with_capacity(ids.len());
                for id in ids {
                    if map.remove(id).is_some() {
                        applied.renewed += 1;
                    } else if !fresh.contains_key(id) {
                        applied.added += 1;
                    }
                    fresh.insert(id.clone(), *expires);
                }
                applied.removed = map.len();
                *map = fresh;
                self.drop_if_empty(service, task);
            }
            WorkOp::Heartbeat {
                service,
                task,
                expires,
            } => {
                if let Some(work) = self.task_of(service, task) {
                    for e in work
                        .sessions
                        .values_mut()
                        .chain(work.workloads.values_mut())
                    {
                        *e = (*e).max(*expires);
                        applied.renewed += 1;
                    }
                }
            }
            WorkOp::Forget { service, task } => {
                if let Some(tasks) = self.services.get_mut(service) {
                    if let Some(work) = tasks.remove(task) {
                        applied.removed = work.sessions.len() + work.workloads.len();
                    }
                    if tasks.is_empty() {
                        self.services.remove(service);
                    }
                }
            }
            WorkOp::Expire { now } => applied.removed = self.expire(*now),
        }
        applied
    }

    fn task_mut(&mut self, service: &Arc<str>, task: &TaskId) -> &mut TaskWork {
        self.services
            .entry(service.clone())
            .or_default()
            .entry(task.clone())
            .or_default()
    }

    fn task_of(&mut self, service: &str, task: &TaskId) -> Option<&mut TaskWork> {
        self.services.get_mut(service)?.get_mut(task)
    }

    fn drop_if_empty(&mut self, service: &str, task: &TaskId) {
        if let Some(tasks) = self.services.get_mut(service) {
            if tasks.get(task).is_some_and(TaskWork::is_empty) {
                tasks.remove(task);
            }
            if tasks.is_empty() {
                self.services.remove(service);
            }
        }
    }

    /// Drops every entry that expired at or before `now`; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let mut removed = 0;
        self.services.retain(|_, tasks| {
            tasks.retain(|_, work| {
                for map in [&mut work.sessions, &mut work.workloads] {
                    let before = map.len();
                    map.retain(|_, e| *e > now);
                    removed += before - map.len();
                }
                !work.is_empty()
            });
            !tasks.is_empty()
        });
        removed
    }

    /// The live work of `task` of `service` at `now`.
    /// The live work of `task` at `now`, whichever service it was reported under (a
    /// task id is the task's ARN: one service's).
    pub fn count_any(&self, task: &TaskId, now: Timestamp) -> u32 {
        self.services
            .values()
            .filter_map(|tasks| tasks.get(task))
            .map(|w| w.count(now).total())
            .sum()
    }

    /// The live work of `task` of `service` at `now`.
    pub fn count(&self, service: &str, task: &TaskId, now: Timestamp) -> WorkCount {
        self.services
            .get(service)
            .and_then(|tasks| tasks.get(task))
            .map(|w| w.count(now))
            .unwrap_or_default()
    }

    /// Whether `task` holds the live entry `kind`/`id` at `now`.
    pub fn holds(
        &self,
        service: &str,
        task: &TaskId,
        kind: WorkKind,
        id: &str,
        now: Timestamp,
    ) -> bool {
        self.services
            .get(service)
            .and_then(|tasks| tasks.get(task))
            .and_then(|w| w.get(kind).get(id))
            .is_some_and(|e| *e > now)
    }

    /// The live entries of `task`, sessions then workloads, each sorted by id.
    pub fn entries(&self, service: &str, task: &TaskId, now: Timestamp) -> Vec<EntryView> {
        let Some(work) = self.services.get(service).and_then(|t| t.get(task)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for kind in [WorkKind::Session, WorkKind::Workload] {
            let mut ids: Vec<EntryView> = work
                .get(kind)
                .iter()
                .filter(|(_, e)| **e > now)
                .map(|(id, e)| EntryView {
                    kind,
                    id: id.to_string(),
                    expires: *e,
                })
                .collect();
            ids.sort_by(|a, b| a.id.cmp(&b.id));
            out.extend(ids);
        }
        out
    }

    /// The tasks of `service` the book holds entries for (live or not yet expired
    /// from memory).
    pub fn tasks(&self, service: &str) -> Vec<TaskId> {
        self.services
            .get(service)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The live work of every task of `service` together.
    pub fn service_total(&self, service: &str, now: Timestamp) -> WorkCount {
        let mut total = WorkCount::default();
        if let Some(tasks) = self.services.get(service) {
            for w in tasks.values() {
                let c = w.count(now);
                total.sessions = total.sessions.saturating_add(c.sessions);
                total.workloads = total.workloads.saturating_add(c.workloads);
            }
        }
        total
    }

    /// Every entry in memory, as the [`WorkOp::Put`]s that rebuild the book (what a
    /// store holds).
    pub fn puts(&self) -> Vec<WorkOp> {
        let mut out = Vec::new();
        for (service, tasks) in &self.services {
            for (task, work) in tasks {
                for kind in [WorkKind::Session, WorkKind::Workload] {
                    for (id, expires) in work.get(kind) {
                        out.push(WorkOp::Put {
                            service: service.clone(),
                            task: task.clone(),
                            kind,
                            id: id.clone(),
                            expires: *expires,
                        });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn put(task: &str, kind: WorkKind, id: &str, expires: Timestamp) -> WorkOp {
        WorkOp::Put {
            service: "api".into(),
            task: TaskId::from(task),
            kind,
            id: id.into(),
            expires,
        }
    }

    fn end(task: &str, kind: WorkKind, id: &str) -> WorkOp {
        WorkOp::End {
            service: "api".into(),
            task: TaskId::from(task),
            kind,
            id: id.into(),
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("s-1:a/b").is_ok());
        assert!(check_id("").unwrap_err().contains("empty"));
        assert!(check_id("a b").unwrap_err().contains("whitespace"));
        assert!(
            check_id(&"x".repeat(257))
                .unwrap_err()
                .contains("257 bytes")
        );
        assert!(check_ttl(Duration::from_secs(1)).is_ok());
        assert!(check_ttl(Duration::from_millis(500)).is_err());
        assert!(check_ttl(Duration::from_secs(90_000)).is_err());
    }

    #[test]
    fn start_renew_end_and_idempotence() {
        let mut book = WorkBook::new();
        let task = TaskId::from("t1");
        assert_eq!(
            book.apply(&put("t1", WorkKind::Session, "a", t(60))).added,
            1
        );
        assert_eq!(
            book.apply(&put("t1", WorkKind::Session, "a", t(90)))
                .renewed,
            1
        );
        book.apply(&put("t1", WorkKind::Workload, "job", t(60)));
        assert_eq!(
            book.count("api", &task, t(0)),
            WorkCount {
                sessions: 1,
                workloads: 1
            }
        );
        assert_eq!(book.apply(&end("t1", WorkKind::Session, "a")).removed, 1);
        // An end for an entry the book does not hold changes nothing.
        assert_eq!(
            book.apply(&end("t1", WorkKind::Session, "a")),
            Applied::default()
        );
        assert_eq!(
            book.apply(&end("t9", WorkKind::Session, "a")),
            Applied::default()
        );
        assert_eq!(book.count("api", &task, t(0)).total(), 1);
        book.apply(&end("t1", WorkKind::Workload, "job"));
        assert!(book.tasks("api").is_empty(), "an empty task is dropped");
    }

    #[test]
    fn entries_expire_at_their_instant() {
        let mut book = WorkBook::new();
        let task = TaskId::from("t1");
        book.apply(&put("t1", WorkKind::Session, "a", t(60)));
        book.apply(&put("t1", WorkKind::Session, "b", t(120)));
        assert_eq!(book.count("api", &task, t(59)).sessions, 2);
        assert_eq!(book.count("api", &task, t(60)).sessions, 1, "expired at 60");
        assert!(!book.holds("api", &task, WorkKind::Session, "a", t(60)));
        assert_eq!(book.expire(t(60)), 1);
        assert_eq!(book.entries("api", &task, t(0)).len(), 1);
        // A heartbeat renews every entry of the task, never shortens one.
        book.apply(&WorkOp::Heartbeat {
            service: "api".into(),
            task: task.clone(),
            expires: t(300),
        });
        assert_eq!(book.count("api", &task, t(299)).sessions, 1);
        assert_eq!(book.expire(t(300)), 1);
        assert!(book.tasks("api").is_empty());
    }

    #[test]
    fn replace_sets_the_full_set() {
        let mut book = WorkBook::new();
        let task = TaskId::from("t1");
        book.apply(&put("t1", WorkKind::Session, "a", t(60)));
        book.apply(&put("t1", WorkKind::Session, "b", t(60)));
        book.apply(&put("t1", WorkKind::Workload, "w", t(60)));
        let applied = book.apply(&WorkOp::Replace {
            service: "api".into(),
            task: task.clone(),
            kind: WorkKind::Session,
            ids: vec!["b".into(), "c".into(), "c".into()],
            expires: t(100),
        });
        assert_eq!(
            applied,
            Applied {
                added: 1,
                renewed: 1,
                removed: 1
            }
        );
        let ids: Vec<String> = book
            .entries("api", &task, t(0))
            .into_iter()
            .map(|e| format!("{}:{}", e.kind.as_str(), e.id))
            .collect();
        assert_eq!(ids, vec!["session:b", "session:c", "workload:w"]);
        // The same report again changes nothing but the expiry.
        let again = book.apply(&WorkOp::Replace {
            service: "api".into(),
            task,
            kind: WorkKind::Session,
            ids: vec!["b".into(), "c".into()],
            expires: t(100),
        });
        assert_eq!(again.added + again.removed, 0);
    }

    #[test]
    fn forget_drops_the_task() {
        let mut book = WorkBook::new();
        book.apply(&put("t1", WorkKind::Session, "a", t(60)));
        book.apply(&put("t2", WorkKind::Session, "a", t(60)));
        let applied = book.apply(&WorkOp::Forget {
            service: "api".into(),
            task: TaskId::from("t1"),
        });
        assert_eq!(applied.removed, 1);
        assert_eq!(book.tasks("api"), vec![TaskId::from("t2")]);
        assert_eq!(book.service_total("api", t(0)).sessions, 1);
    }

    fn op_strategy() -> impl Strategy<Value = WorkOp> {
        let task = prop::sample::select(vec!["t1", "t2", "t3"]);
        let id = prop::sample::select(vec!["a", "b", "c", "d"]);
        let kind = prop::sample::select(vec![WorkKind::Session, WorkKind::Workload]);
        prop_oneof![
            (task.clone(), kind.clone(), id.clone(), 0i64..200).prop_map(|(tk, k, i, e)| put(
                tk,
                k,
                i,
                t(e)
            )),
            (task.clone(), kind, id.clone()).prop_map(|(tk, k, i)| end(tk, k, i)),
            (task.clone(), prop::collection::vec(id, 0..4), 0i64..200).prop_map(|(tk, ids, e)| {
                WorkOp::Replace {
                    service: "api".into(),
                    task: TaskId::from(tk),
                    kind: WorkKind::Session,
                    ids: ids.into_iter().map(Arc::from).collect(),
                    expires: t(e),
                }
            }),
            (task.clone(), 0i64..200).prop_map(|(tk, e)| WorkOp::Heartbeat {
                service: "api".into(),
                task: TaskId::from(tk),
                expires: t(e),
            }),
            task.prop_map(|tk| WorkOp::Forget {
                service: "api".into(),
                task: TaskId::from(tk),
            }),
            (0i64..200).prop_map(|e| WorkOp::Expire { now: t(e) }),
        ]
    }

    proptest! {
        /// Replaying the book's entries as puts (what a restart does from the store)
        /// gives the same counts at every instant, and an expired entry never counts.
        #[test]
        fn replay_of_puts_rebuilds_the_book(ops in prop::collection::vec(op_strategy(), 0..60)) {
            let mut book = WorkBook::new();
            for op in &ops {
                book.apply(op);
            }
            let mut replayed = WorkBook::new();
            for op in book.puts() {
                replayed.apply(&op);
            }
            for task in ["t1", "t2", "t3"] {
                let task = TaskId::from(task);
                for at in [0i64, 50, 100, 150, 199, 250] {
                    prop_assert_eq!(book.count("api", &task, t(at)), replayed.count("api", &task, t(at)));
                }
                prop_assert_eq!(book.count("api", &task, t(250)).total(), 0);
            }
        }
    }
}
