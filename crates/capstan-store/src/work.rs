//! The durable side of the work registry: every [`WorkOp`] is written here before the
//! registry applies it and answers, and [`WorkLog::load`] gives back the live entries
//! after a restart.
//!
//! [`SqliteWorkLog`] keeps the entries in the `work` table of the capstan database (its
//! own connection, so registry writes never wait behind the decision log's lock; WAL
//! lets both write the same file). [`WorkLog::write`] runs a whole batch of ops in one
//! transaction with `synchronous = FULL`: once it returns, the batch survives a crash of
//! the process or of the machine, and the registry's writer batches every report that
//! arrived while the previous commit ran (group commit). [`MemoryWorkLog`] keeps
//! nothing: the `memory` store loses the registry when capstan stops.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use capstan_core::Timestamp;
use capstan_core::model::TaskId;
use capstan_core::work::{WorkKind, WorkOp};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::sqlite::{connect, describe};
use crate::{StoreError, StoreKind, StoreSpec};

/// Where the work registry's changes are made durable.
pub trait WorkLog: Send + Sync {
    /// Writes `ops`, in order, as one atomic, durable change.
    fn write(&self, ops: &[WorkOp]) -> Result<(), StoreError>;

    /// Every entry still live at `now`, as [`WorkOp::Put`]s.
    fn load(&self, now: Timestamp) -> Result<Vec<WorkOp>, StoreError>;
}

/// Opens the work log of the store `spec` names (the same file as the decision log).
pub fn open_work(spec: &StoreSpec) -> Result<std::sync::Arc<dyn WorkLog>, StoreError> {
    match &spec.kind {
        StoreKind::Sqlite { path } => Ok(std::sync::Arc::new(SqliteWorkLog::open(path)?)),
        StoreKind::Memory => Ok(std::sync::Arc::new(MemoryWorkLog)),
    }
}

/// A work log that keeps nothing (the `memory` store): the registry lives only in
/// capstan's memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryWorkLog;

impl WorkLog for MemoryWorkLog {
    fn write(&self, _ops: &[WorkOp]) -> Result<(), StoreError> {
        Ok(())
    }

    fn load(&self, _now: Timestamp) -> Result<Vec<WorkOp>, StoreError> {
        Ok(Vec::new())
    }
}

/// The work log in the capstan SQLite database.
#[derive(Debug)]
pub struct SqliteWorkLog {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn kind_code(kind: WorkKind) -> i64 {
    match kind {
        WorkKind::Session => 0,
        WorkKind::Workload => 1,
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

impl SqliteWorkLog {
    /// Opens (creating or migrating if needed) the capstan database at `path`. Errors
    /// name the path and the reason, like the decision log's.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn error(&self, reason: String) -> StoreError {
        StoreError::Work {
            reason: format!("{}: {reason}", self.path.display()),
        }
    }

    /// How many entries the file holds (live or expired but not yet swept).
    pub fn stored_entries(&self) -> Result<u64, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.query_row("SELECT count(*) FROM work", [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.error(describe(&e)))
    }
}

fn write_op(tx: &rusqlite::Transaction<'_>, op: &WorkOp) -> rusqlite::Result<()> {
    match op {
        WorkOp::Put {
            service,
            task,
            kind,
            id,
            expires,
        } => {
            tx.prepare_cached(
                "INSERT INTO work (service, task, kind, id, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (service, task, kind, id) DO UPDATE SET expires_ms = excluded.expires_ms",
            )?
            .execute(params![
                &**service,
                task.as_str(),
                kind_code(*kind),
                &**id,
                ms(*expires)
            ])?;
        }
        WorkOp::End {
            service,
            task,
            kind,
            id,
        } => {
            tx.prepare_cached(
                "DELETE FROM work WHERE service = ?1 AND task = ?2 AND kind = ?3 AND id = ?4",
            )?
            .execute(params![&**service, task.as_str(), kind_code(*kind), &**id])?;
        }
        WorkOp::Replace {
            service,
            task,
            kind,
            ids,
            expires,
        } => {
            tx.prepare_cached("DELETE FROM work WHERE service = ?1 AND task = ?2 AND kind = ?3")?
                .execute(params![&**service, task.as_str(), kind_code(*kind)])?;
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO work (service, task, kind, id, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for id in ids {
                insert.execute(params![
                    &**service,
                    task.as_str(),
                    kind_code(*kind),
                    &**id,
                    ms(*expires)
                ])?;
            }
        }
        WorkOp::Heartbeat {
            service,
            task,
            expires,
        } => {
            tx.prepare_cached(
                "UPDATE work SET expires_ms = max(expires_ms, ?3) WHERE service = ?1 AND task = ?2",
            )?
            .execute(params![&**service, task.as_str(), ms(*expires)])?;
        }
        WorkOp::Forget { service, task } => {
            tx.prepare_cached("DELETE FROM work WHERE service = ?1 AND task = ?2")?
                .execute(params![&**service, task.as_str()])?;
        }
        WorkOp::Expire { now } => {
            tx.prepare_cached("DELETE FROM work WHERE expires_ms <= ?1")?
                .execute(params![ms(*now)])?;
        }
    }
    Ok(())
}

impl WorkLog for SqliteWorkLog {
    fn write(&self, ops: &[WorkOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error(describe(&e)))?;
        for op in ops {
            write_op(&tx, op).map_err(|e| self.error(describe(&e)))?;
        }
        tx.commit().map_err(|e| self.error(describe(&e)))
    }

    fn load(&self, now: Timestamp) -> Result<Vec<WorkOp>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stmt = conn
            .prepare("SELECT service, task, kind, id, expires_ms FROM work WHERE expires_ms > ?1")
            .map_err(|e| self.error(describe(&e)))?;
        let rows = stmt
            .query_map([ms(now)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.error(describe(&e)))?;
        let mut out = Vec::new();
        for row in rows {
            let (service, task, kind, id, expires) = row.map_err(|e| self.error(describe(&e)))?;
            let kind = match kind {
                0 => WorkKind::Session,
                1 => WorkKind::Workload,
                other => {
                    return Err(self.error(format!(
                        "work entry {service}/{task}/{id} has an unknown kind {other}"
                    )));
                }
            };
            let expires = Timestamp::from_millisecond(expires).map_err(|e| {
                self.error(format!("work entry {service}/{task}/{id}: bad expiry: {e}"))
            })?;
            out.push(WorkOp::Put {
                service: service.into(),
                task: TaskId::from(task),
                kind,
                id: id.into(),
                expires,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_core::work::WorkBook;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn put(task: &str, id: &str, expires: i64) -> WorkOp {
        WorkOp::Put {
            service: "api".into(),
            task: TaskId::from(task),
            kind: WorkKind::Session,
            id: id.into(),
            expires: t(expires),
        }
    }

    fn counts(book: &WorkBook, now: i64) -> Vec<u32> {
        ["t1", "t2"]
            .iter()
            .map(|k| book.count("api", &TaskId::from(*k), t(now)).total())
            .collect()
    }

    #[test]
    fn what_is_written_is_loaded_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        let ops = vec![
            put("t1", "a", 100),
            put("t1", "b", 100),
            put("t2", "c", 50),
            WorkOp::Put {
                service: "api".into(),
                task: TaskId::from("t2"),
                kind: WorkKind::Workload,
                id: "job".into(),
                expires: t(100),
            },
            WorkOp::End {
                service: "api".into(),
                task: TaskId::from("t1"),
                kind: WorkKind::Session,
                id: "b".into(),
            },
            WorkOp::Heartbeat {
                service: "api".into(),
                task: TaskId::from("t2"),
                expires: t(200),
            },
            WorkOp::Replace {
                service: "api".into(),
                task: TaskId::from("t1"),
                kind: WorkKind::Session,
                ids: vec!["x".into(), "y".into()],
                expires: t(150),
            },
        ];
        let mut book = WorkBook::new();
        {
            let log = SqliteWorkLog::open(&path).unwrap();
            log.write(&ops[..3]).unwrap();
            log.write(&ops[3..]).unwrap();
        }
        for op in &ops {
            book.apply(op);
        }
        let log = SqliteWorkLog::open(&path).unwrap();
        let mut loaded = WorkBook::new();
        for op in log.load(t(0)).unwrap() {
            loaded.apply(&op);
        }
        for now in [0, 120, 160, 199] {
            assert_eq!(counts(&loaded, now), counts(&book, now), "at {now}");
        }
        assert_eq!(counts(&loaded, 0), vec![2, 2]);
        // Expired entries are neither loaded nor kept once swept.
        assert_eq!(log.load(t(160)).unwrap().len(), 2);
        log.write(&[WorkOp::Expire { now: t(160) }]).unwrap();
        assert_eq!(log.stored_entries().unwrap(), 2);
        log.write(&[WorkOp::Forget {
            service: "api".into(),
            task: TaskId::from("t2"),
        }])
        .unwrap();
        assert_eq!(log.stored_entries().unwrap(), 0);
    }

    #[test]
    fn a_version_1_file_is_migrated_and_keeps_its_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA application_id = {};
                 CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (1);
                 CREATE TABLE decisions (id INTEGER PRIMARY KEY, service TEXT NOT NULL,
                     seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, applied INTEGER NOT NULL,
                     body TEXT NOT NULL);
                 INSERT INTO decisions VALUES (1, 'api', 1, 0, 1, '{{}}');",
                crate::sqlite::APPLICATION_ID
            ))
            .unwrap();
        }
        let log = SqliteWorkLog::open(&path).unwrap();
        log.write(&[put("t1", "a", 10)]).unwrap();
        let conn = Connection::open(&path).unwrap();
        let (version, decisions): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT max(version) FROM schema_version), (SELECT count(*) FROM decisions)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, decisions), (crate::sqlite::SCHEMA_VERSION, 1));
    }
}
