//! The durable side of the scale-in workflows: each workflow's latest state (JSON,
//! opaque here) and the append-only journal of its steps, so a crash resumes from the
//! store and operators can read what happened.
//!
//! Writes are fenced: [`WorkflowStore::acquire`] hands this process a token greater
//! than every one handed out before (persisted), and a [`save`](WorkflowStore::save)
//! carrying an older token than the newest fails with [`StoreError::Fenced`]: a capstan
//! that another one took over from cannot move a workflow any more.
//!
//! [`SqliteWorkflowStore`] keeps them in the capstan database (its own connection; each
//! save is one transaction with `synchronous = FULL`); [`MemoryWorkflowStore`] in
//! memory. Finished workflows are kept up to [`FINISHED_KEPT`] per service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use capstan_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::sqlite::{connect, describe};
use crate::{StoreError, StoreKind, StoreSpec};

/// Finished (done or cancelled) workflows kept per service; older ones are deleted.
pub const FINISHED_KEPT: usize = 1000;

/// One workflow as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWorkflow {
    /// Unique id.
    pub id: String,
    /// The service.
    pub service: String,
    /// `running`, `failed`, `done` or `cancelled`.
    pub status: String,
    /// Its state, as JSON text.
    pub state: String,
    /// The fencing token of the capstan that wrote it.
    pub fence: u64,
    /// When it was created.
    pub created: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
}

impl StoredWorkflow {
    fn finished(&self) -> bool {
        matches!(self.status.as_str(), "done" | "cancelled")
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Its number in the workflow's journal (1, 2, 3, ...), assigned by the store.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// The step.
    pub step: String,
    /// What happened.
    pub event: String,
    /// Details.
    pub detail: String,
}

/// Where workflows are kept. See the [module docs](self).
pub trait WorkflowStore: Send + Sync {
    /// A new fencing token, greater than every one handed out before.
    fn acquire(&self) -> Result<u64, StoreError>;

    /// Creates or replaces `w` and appends `journal` (their `seq` assigned in order),
    /// in one durable transaction. Fails with [`StoreError::Fenced`] (nothing written)
    /// when `w.fence` is older than the newest token.
    fn save(&self, w: &StoredWorkflow, journal: &[JournalEntry]) -> Result<(), StoreError>;

    /// The workflows not finished (not done, not cancelled), oldest first.
    fn active(&self) -> Result<Vec<StoredWorkflow>, StoreError>;

    /// One workflow.
    fn get(&self, id: &str) -> Result<Option<StoredWorkflow>, StoreError>;

    /// The newest workflows first, of `service` or all, at most `limit`.
    fn list(&self, service: Option<&str>, limit: usize) -> Result<Vec<StoredWorkflow>, StoreError>;

    /// The journal of `id`, oldest first.
    fn journal(&self, id: &str) -> Result<Vec<JournalEntry>, StoreError>;
}

/// Opens the workflow store of the store `spec` names (the same file as the decisions).
pub fn open_workflows(spec: &StoreSpec) -> Result<Arc<dyn WorkflowStore>, StoreError> {
    match &spec.kind {
        StoreKind::Sqlite { path } => Ok(Arc::new(SqliteWorkflowStore::open(path)?)),
        StoreKind::Memory => Ok(Arc::new(MemoryWorkflowStore::default())),
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn fenced(token: u64, newest: u64) -> StoreError {
    StoreError::Fenced { token, newest }
}

/// Workflows in memory.
#[derive(Debug, Default)]
pub struct MemoryWorkflowStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    fence: u64,
    workflows: BTreeMap<String, StoredWorkflow>,
    journals: BTreeMap<String, Vec<JournalEntry>>,
}

impl WorkflowStore for MemoryWorkflowStore {
    fn acquire(&self) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.fence += 1;
        Ok(inner.fence)
    }

    fn save(&self, w: &StoredWorkflow, journal: &[JournalEntry]) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if w.fence < inner.fence {
            return Err(fenced(w.fence, inner.fence));
        }
        inner.workflows.insert(w.id.clone(), w.clone());
        let lines = inner.journals.entry(w.id.clone()).or_default();
        for e in journal {
            let seq = lines.len() as u64 + 1;
            lines.push(JournalEntry { seq, ..e.clone() });
        }
        if w.finished() {
            let mut finished: Vec<(Timestamp, String)> = inner
                .workflows
                .values()
                .filter(|x| x.service == w.service && x.finished())
                .map(|x| (x.created, x.id.clone()))
                .collect();
            finished.sort();
            let excess = finished.len().saturating_sub(FINISHED_KEPT);
            for (_, id) in finished.into_iter().take(excess) {
                inner.workflows.remove(&id);
                inner.journals.remove(&id);
            }
        }
        Ok(())
    }

    fn active(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<StoredWorkflow> = inner
            .workflows
            .values()
            .filter(|w| !w.finished())
            .cloned()
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn get(&self, id: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(inner.workflows.get(id).cloned())
    }

    fn list(&self, service: Option<&str>, limit: usize) -> Result<Vec<StoredWorkflow>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<StoredWorkflow> = inner
            .workflows
            .values()
            .filter(|w| service.is_none_or(|s| w.service == s))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        out.truncate(limit);
        Ok(out)
    }

    fn journal(&self, id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(inner.journals.get(id).cloned().unwrap_or_default())
    }
}

/// Workflows in the capstan SQLite database.
#[derive(Debug)]
pub struct SqliteWorkflowStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteWorkflowStore {
    /// Opens (creating or migrating if needed) the capstan database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn error(&self, id: &str, e: &rusqlite::Error) -> StoreError {
        StoreError::Workflow {
            reason: if id.is_empty() {
                format!("{}: {}", self.path.display(), describe(e))
            } else {
                format!("{}: workflow {id}: {}", self.path.display(), describe(e))
            },
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredWorkflow> {
    let at = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    Ok(StoredWorkflow {
        id: r.get(0)?,
        service: r.get(1)?,
        status: r.get(2)?,
        state: r.get(3)?,
        fence: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
        created: at(r.get(5)?),
        updated: at(r.get(6)?),
    })
}

const COLUMNS: &str = "id, service, status, state, fence, created_ms, updated_ms";

impl WorkflowStore for SqliteWorkflowStore {
    fn acquire(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error("", &e))?;
        tx.execute(
            "UPDATE workflow_fence SET token = token + 1 WHERE id = 0",
            [],
        )
        .map_err(|e| self.error("", &e))?;
        let token: i64 = tx
            .query_row("SELECT token FROM workflow_fence WHERE id = 0", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.error("", &e))?;
        tx.commit().map_err(|e| self.error("", &e))?;
        Ok(u64::try_from(token).unwrap_or(0))
    }

    fn save(&self, w: &StoredWorkflow, journal: &[JournalEntry]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error(&w.id, &e))?;
        let newest: i64 = tx
            .query_row("SELECT token FROM workflow_fence WHERE id = 0", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.error(&w.id, &e))?;
        let newest = u64::try_from(newest).unwrap_or(0);
        if w.fence < newest {
            return Err(fenced(w.fence, newest));
        }
        tx.prepare_cached(
            "INSERT INTO workflows (id, service, status, state, fence, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state,
                 fence = excluded.fence, updated_ms = excluded.updated_ms",
        )
        .and_then(|mut s| {
            s.execute(params![
                w.id,
                w.service,
                w.status,
                w.state,
                i64::try_from(w.fence).unwrap_or(i64::MAX),
                ms(w.created),
                ms(w.updated)
            ])
        })
        .map_err(|e| self.error(&w.id, &e))?;
        if !journal.is_empty() {
            let last: i64 = tx
                .query_row(
                    "SELECT coalesce(max(seq), 0) FROM workflow_journal WHERE id = ?1",
                    [&w.id],
                    |r| r.get(0),
                )
                .map_err(|e| self.error(&w.id, &e))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO workflow_journal (id, seq, at_ms, step, event, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.error(&w.id, &e))?;
            for (i, e) in journal.iter().enumerate() {
                let seq = last + i64::try_from(i).unwrap_or(i64::MAX) + 1;
                insert
                    .execute(params![w.id, seq, ms(e.at), e.step, e.event, e.detail])
                    .map_err(|err| self.error(&w.id, &err))?;
            }
        }
        if w.finished() {
            tx.execute(
                "DELETE FROM workflow_journal WHERE id IN (
                     SELECT id FROM workflows WHERE service = ?1 AND status IN ('done', 'cancelled')
                     ORDER BY created_ms DESC, id DESC LIMIT -1 OFFSET ?2)",
                params![w.service, i64::try_from(FINISHED_KEPT).unwrap_or(i64::MAX)],
            )
            .map_err(|e| self.error(&w.id, &e))?;
            tx.execute(
                "DELETE FROM workflows WHERE id IN (
                     SELECT id FROM workflows WHERE service = ?1 AND status IN ('done', 'cancelled')
                     ORDER BY created_ms DESC, id DESC LIMIT -1 OFFSET ?2)",
                params![w.service, i64::try_from(FINISHED_KEPT).unwrap_or(i64::MAX)],
            )
            .map_err(|e| self.error(&w.id, &e))?;
        }
        tx.commit().map_err(|e| self.error(&w.id, &e))
    }

    fn active(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM workflows WHERE status NOT IN ('done', 'cancelled')
                 ORDER BY created_ms, id"
            ))
            .map_err(|e| self.error("", &e))?;
        let rows = stmt.query_map([], row).map_err(|e| self.error("", &e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.error("", &e))
    }

    fn get(&self, id: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM workflows WHERE id = ?1"),
            [id],
            row,
        )
        .optional()
        .map_err(|e| self.error(id, &e))
    }

    fn list(&self, service: Option<&str>, limit: usize) -> Result<Vec<StoredWorkflow>, StoreError> {
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM workflows WHERE ?1 IS NULL OR service = ?1
                 ORDER BY created_ms DESC, id DESC LIMIT ?2"
            ))
            .map_err(|e| self.error("", &e))?;
        let rows = stmt
            .query_map(params![service, limit], row)
            .map_err(|e| self.error("", &e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.error("", &e))
    }

    fn journal(&self, id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT seq, at_ms, step, event, detail FROM workflow_journal WHERE id = ?1
                 ORDER BY seq",
            )
            .map_err(|e| self.error(id, &e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(JournalEntry {
                    seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    at: Timestamp::from_millisecond(r.get(1)?).unwrap_or(Timestamp::UNIX_EPOCH),
                    step: r.get(2)?,
                    event: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .map_err(|e| self.error(id, &e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.error(id, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn wf(id: &str, service: &str, status: &str, fence: u64, created: i64) -> StoredWorkflow {
        StoredWorkflow {
            id: id.into(),
            service: service.into(),
            status: status.into(),
            state: format!("{{\"id\":\"{id}\"}}"),
            fence,
            created: t(created),
            updated: t(created),
        }
    }

    fn line(event: &str) -> JournalEntry {
        JournalEntry {
            seq: 0,
            at: t(1),
            step: "deregister".into(),
            event: event.into(),
            detail: String::new(),
        }
    }

    fn round_trip(store: &dyn WorkflowStore) {
        let fence = store.acquire().unwrap();
        store
            .save(
                &wf("a", "api", "running", fence, 1),
                &[line("created"), line("started")],
            )
            .unwrap();
        store
            .save(&wf("b", "web", "failed", fence, 2), &[line("failed")])
            .unwrap();
        store.save(&wf("c", "api", "done", fence, 3), &[]).unwrap();
        let mut a = wf("a", "api", "running", fence, 1);
        a.state = "{\"step\":2}".into();
        store.save(&a, &[line("done")]).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().state, "{\"step\":2}");
        assert_eq!(store.get("zz").unwrap(), None);
        let seqs: Vec<u64> = store.journal("a").unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(store.journal("a").unwrap()[2].event, "done");
        let active: Vec<String> = store.active().unwrap().into_iter().map(|w| w.id).collect();
        assert_eq!(active, vec!["a", "b"]);
        let listed: Vec<String> = store
            .list(Some("api"), 10)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(listed, vec!["c", "a"]);
        assert_eq!(store.list(None, 2).unwrap().len(), 2);
    }

    fn fencing(store: &dyn WorkflowStore) {
        let old = store.acquire().unwrap();
        let new = store.acquire().unwrap();
        assert!(new > old);
        let e = store
            .save(&wf("f", "api", "running", old, 1), &[line("x")])
            .unwrap_err();
        assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
        assert!(e.to_string().contains("another capstan"), "{e}");
        assert_eq!(store.get("f").unwrap(), None, "nothing written");
        assert!(store.journal("f").unwrap().is_empty(), "no journal written");
        store.save(&wf("f", "api", "running", new, 1), &[]).unwrap();
        // The newer token is not fenced off by a write of the older one either.
        assert!(matches!(
            store.save(&wf("f", "api", "failed", old, 1), &[]),
            Err(StoreError::Fenced { token, newest }) if token == old && newest == new
        ));
        assert_eq!(store.get("f").unwrap().unwrap().status, "running");
    }

    /// Saves `FINISHED_KEPT + 5` finished workflows of `api` (and a running one and a
    /// finished one of `web`): the oldest five finished of `api` go, with their journals.
    fn retention(store: &dyn WorkflowStore) {
        let fence = store.acquire().unwrap();
        store
            .save(&wf("live", "api", "running", fence, 0), &[])
            .unwrap();
        store
            .save(&wf("other", "web", "cancelled", fence, 0), &[line("x")])
            .unwrap();
        for i in 0..(FINISHED_KEPT as i64 + 5) {
            let status = if i % 2 == 0 { "done" } else { "cancelled" };
            store
                .save(
                    &wf(&format!("w{i}"), "api", status, fence, i + 1),
                    &[line("x")],
                )
                .unwrap();
        }
        let all = store.list(Some("api"), usize::MAX).unwrap();
        assert_eq!(
            all.len(),
            FINISHED_KEPT + 1,
            "the running one is never pruned"
        );
        for i in 0..5 {
            assert!(store.get(&format!("w{i}")).unwrap().is_none(), "w{i}");
            assert!(store.journal(&format!("w{i}")).unwrap().is_empty(), "w{i}");
        }
        assert!(store.get("w5").unwrap().is_some());
        assert_eq!(store.journal("w5").unwrap().len(), 1);
        assert!(store.get("live").unwrap().is_some());
        assert!(
            store.get("other").unwrap().is_some(),
            "another service's kept"
        );
        assert_eq!(store.journal("other").unwrap().len(), 1);
    }

    #[test]
    fn memory_store_round_trip_and_fencing() {
        round_trip(&MemoryWorkflowStore::default());
        fencing(&MemoryWorkflowStore::default());
    }

    #[test]
    fn sqlite_store_round_trip_fencing_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        round_trip(&SqliteWorkflowStore::open(&path).unwrap());
        let store = SqliteWorkflowStore::open(&dir.path().join("f.db")).unwrap();
        fencing(&store);
        // The newest token survives a reopen: the old one stays fenced off.
        let newest = store.acquire().unwrap();
        drop(store);
        let store = SqliteWorkflowStore::open(&dir.path().join("f.db")).unwrap();
        assert!(store.acquire().unwrap() > newest);
        assert!(matches!(
            store.save(&wf("g", "api", "running", newest, 1), &[line("x")]),
            Err(StoreError::Fenced { .. })
        ));
        assert_eq!(store.get("g").unwrap(), None, "nothing written");
        assert!(store.journal("g").unwrap().is_empty());
        // What was written before the reopen is still there.
        let store = SqliteWorkflowStore::open(&path).unwrap();
        assert_eq!(store.journal("a").unwrap().len(), 3);
    }

    #[test]
    fn finished_workflows_are_kept_up_to_the_bound() {
        retention(&MemoryWorkflowStore::default());
        let dir = tempfile::tempdir().unwrap();
        retention(&SqliteWorkflowStore::open(&dir.path().join("capstan.db")).unwrap());
    }

    #[test]
    fn a_version_2_file_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA application_id = {};
                 CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (2);
                 CREATE TABLE decisions (id INTEGER PRIMARY KEY, service TEXT NOT NULL,
                     seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, applied INTEGER NOT NULL,
                     body TEXT NOT NULL);
                 INSERT INTO decisions VALUES (1, 'api', 1, 0, 1, '{{}}');
                 CREATE TABLE work (service TEXT NOT NULL, task TEXT NOT NULL,
                     kind INTEGER NOT NULL, id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
                     PRIMARY KEY (service, task, kind, id)) WITHOUT ROWID;
                 INSERT INTO work VALUES ('api', 't1', 0, 'a', 10);",
                crate::sqlite::APPLICATION_ID
            ))
            .unwrap();
        }
        let store = SqliteWorkflowStore::open(&path).unwrap();
        let fence = store.acquire().unwrap();
        assert_eq!(fence, 1, "the fence starts at 0 in a migrated file");
        store
            .save(&wf("a", "api", "running", fence, 1), &[line("created")])
            .unwrap();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let (version, decisions, work): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT max(version) FROM schema_version),
                        (SELECT count(*) FROM decisions), (SELECT count(*) FROM work)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(version, crate::sqlite::SCHEMA_VERSION);
        assert_eq!(version, 3);
        assert_eq!((decisions, work), (1, 1));
        let store = SqliteWorkflowStore::open(&path).unwrap();
        assert_eq!(store.journal("a").unwrap().len(), 1);
    }
}
