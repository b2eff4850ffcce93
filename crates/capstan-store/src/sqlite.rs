//! The SQLite decision log: decisions survive a restart, so cooldowns and rate limits
//! are honoured after one and operators can page through history.
//!
//! This module owns the database file's schema (created or migrated at open, its version
//! in the `schema_version` table, the file marked with capstan's `application_id`), the
//! write policy and retention:
//!
//! - every carried-out change (scale-out, scale-in) is committed before
//!   [`record`](DecisionLog::record) returns, together with any holds waiting;
//! - a hold is written only when its reason (rule, winner, bounds, steps, asks without
//!   their free text) differs from that service's previous hold since the last change,
//!   and holds are written in batches (at most [`HOLD_BATCH`] rows or
//!   [`HOLD_BATCH_AGE`] of decision time waiting, and before every read);
//! - each service keeps its newest `retention` rows, pruned every [`PRUNE_EVERY`] of
//!   decision time, not per insert, and spread over the records that follow
//!   ([`PRUNE_CHUNK`] services each) so that no record waits for a whole round.
//!
//! Each row carries its service's own number (`seq`, 1, 2, 3, ...), the id pages use:
//! newest first is a walk down the `(service, seq)` index, and pruning a service is one
//! range delete below its newest number minus `retention`, whatever the history's size.
//!
//! The database runs in WAL mode with `synchronous = FULL`: a committed change survives
//! a crash of the process or of the machine.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration as StdDuration;

use capstan_core::decision::{Action, Decision};
use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::{DecisionLog, Page, StoreError, is_applied_change};

/// The schema version this build writes. A file with a newer version is refused.
pub const SCHEMA_VERSION: i64 = 3;

/// Marks a capstan database (`PRAGMA application_id`, "CAPS" in ASCII).
pub const APPLICATION_ID: i32 = 0x4341_5053;

/// How many holds may wait before they are written.
pub const HOLD_BATCH: usize = 1024;

/// How long (decision time) a hold may wait before it is written.
pub const HOLD_BATCH_AGE: StdDuration = StdDuration::from_secs(1);

/// How many holds may wait while writes fail; older ones are dropped.
pub const MAX_PENDING: usize = 64 * HOLD_BATCH;

/// How often (decision time) services over their retention are pruned.
pub const PRUNE_EVERY: StdDuration = StdDuration::from_secs(60);

/// How many services one record prunes at most while a prune round is in progress.
pub const PRUNE_CHUNK: usize = 32;

/// How many decisions each service keeps by default.
pub const DEFAULT_RETENTION: usize = 10_000;

/// A decision log in an SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    /// The database file.
    path: PathBuf,
    /// Decisions kept per service.
    retention: usize,
    /// The connection and the write buffers. Held for one write or one read.
    inner: Mutex<Inner>,
}

/// What the lock protects.
#[derive(Debug)]
struct Inner {
    /// The connection.
    conn: Connection,
    /// Holds waiting to be written, oldest first: (service, instant ms, json).
    pending: Vec<(String, i64, String)>,
    /// Each service's previous hold reason since its last change.
    last_hold: HashMap<String, String>,
    /// Services written since the last prune round started.
    touched: HashSet<String>,
    /// Services of the prune round in progress still to prune.
    to_prune: HashSet<String>,
    /// When (decision time) the last prune ran; `None` until the first write.
    last_prune: Option<Timestamp>,
}

impl SqliteStore {
    /// Opens (creating if needed) the capstan database at `path`, keeping `retention`
    /// decisions per service (at least 1).
    ///
    /// Errors name the path and the reason: its directory does not exist, the file
    /// cannot be opened or written, it is not a capstan database, or its schema is newer
    /// than this build.
    pub fn open(path: &Path, retention: usize) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            retention: retention.max(1),
            inner: Mutex::new(Inner {
                conn,
                pending: Vec::new(),
                last_hold: HashMap::new(),
                touched: HashSet::new(),
                to_prune: HashSet::new(),
                last_prune: None,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decisions kept per service.
    pub fn retention(&self) -> usize {
        self.retention
    }

    /// Writes the holds waiting in the batch.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.flush().map_err(|reason| self.error("", reason))
    }

    /// Deletes now, for each service written since the last prune, the rows beyond its
    /// newest `retention` (after writing the waiting holds). Runs by itself every
    /// [`PRUNE_EVERY`] of decision time, spread over the following records
    /// ([`PRUNE_CHUNK`] services each).
    pub fn prune(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.flush().map_err(|reason| self.error("", reason))?;
        inner.start_prune_round();
        inner
            .prune_some(self.retention, usize::MAX)
            .map_err(|reason| self.error("", reason))
    }

    /// How many rows `service` has in the file (holds waiting are not counted).
    pub fn stored_rows(&self, service: &str) -> Result<u64, StoreError> {
        let inner = self.lock();
        inner
            .conn
            .query_row(
                "SELECT count(*) FROM decisions WHERE service = ?1",
                [service],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.error(service, describe(&e)))
    }

    /// The lock; a panic elsewhere leaves at worst an unwritten batch, still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A decisions error naming the file.
    fn error(&self, service: &str, reason: String) -> StoreError {
        StoreError::Decisions {
            service: service.to_owned(),
            reason: format!("{}: {reason}", self.path.display()),
        }
    }

    /// Rows of `service` (flushing first) by `sql`, which selects (seq, body).
    fn read(
        &self,
        service: &str,
        sql: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Decision)>, StoreError> {
        let mut inner = self.lock();
        inner.flush().map_err(|r| self.error(service, r))?;
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = inner
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.error(service, describe(&e)))?;
        let rows = stmt
            .query_map(params![service, before, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.error(service, describe(&e)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(|e| self.error(service, describe(&e)))?;
            let decision: Decision = serde_json::from_str(&body).map_err(|e| {
                self.error(service, format!("decision {id} cannot be read back: {e}"))
            })?;
            out.push((u64::try_from(id).unwrap_or(0), decision));
        }
        Ok(out)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let mut inner = self.lock();
        if let Err(reason) = inner.flush() {
            tracing::warn!(
                path = %self.path.display(),
                %reason,
                held = inner.pending.len(),
                "decision log: holds not written at close"
            );
        }
    }
}

impl DecisionLog for SqliteStore {
    fn record(&self, decision: &Decision) -> Result<(), StoreError> {
        let service = decision.service.as_str();
        let body = serde_json::to_string(decision)
            .map_err(|e| self.error(service, format!("cannot serialize: {e}")))?;
        let at = decision.at.as_millisecond();
        let mut inner = self.lock();
        let result = match decision.action {
            Action::Hold { .. } => {
                let key = hold_key(decision);
                if inner.last_hold.get(service) == Some(&key) {
                    return Ok(());
                }
                inner.last_hold.insert(service.to_owned(), key);
                inner.pending.push((service.to_owned(), at, body));
                let too_old = inner.pending.first().is_some_and(|(_, first, _)| {
                    at.saturating_sub(*first)
                        >= i64::try_from(HOLD_BATCH_AGE.as_millis()).unwrap_or(i64::MAX)
                });
                if inner.pending.len() >= HOLD_BATCH || too_old {
                    inner.flush()
                } else {
                    Ok(())
                }
            }
            Action::ScaleOut { .. } | Action::ScaleIn { .. } => {
                inner.last_hold.remove(service);
                inner.write_change(service, at, &body, is_applied_change(decision))
            }
        };
        result.map_err(|reason| self.error(service, reason))?;
        let due = inner
            .last_prune
            .is_none_or(|last| decision.at.duration_since(last).unsigned_abs() >= PRUNE_EVERY);
        if inner.last_prune.is_none() {
            inner.last_prune = Some(decision.at);
        } else if due {
            inner.last_prune = Some(decision.at);
            inner.start_prune_round();
        }
        inner
            .prune_some(self.retention, PRUNE_CHUNK)
            .map_err(|reason| self.error(service, reason))
    }

    fn recent(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        Ok(self
            .read(
                service,
                "SELECT seq, body FROM decisions WHERE service = ?1 AND seq < ?2 \
                 ORDER BY seq DESC LIMIT ?3",
                None,
                limit,
            )?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    fn page(&self, service: &str, before: Option<u64>, limit: usize) -> Result<Page, StoreError> {
        let rows = self.read(
            service,
            "SELECT seq, body FROM decisions WHERE service = ?1 AND seq < ?2 \
             ORDER BY seq DESC LIMIT ?3",
            before,
            limit.saturating_add(1),
        )?;
        Ok(Page::from_newest(rows, None, limit))
    }

    fn ping(&self) -> Result<(), StoreError> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT version FROM schema_version", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|_| ())
            .map_err(|e| self.error("", describe(&e)))
    }

    fn last_applied(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        Ok(self
            .read(
                service,
                "SELECT seq, body FROM decisions WHERE service = ?1 AND seq < ?2 \
                 AND applied = 1 ORDER BY seq DESC LIMIT ?3",
                None,
                limit,
            )?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }
}

impl Inner {
    /// Writes the waiting holds and one change in one transaction.
    fn write_change(
        &mut self,
        service: &str,
        at: i64,
        body: &str,
        applied: bool,
    ) -> Result<(), String> {
        self.write(Some((service, at, body, applied)))
    }

    /// Writes the waiting holds in one transaction. On failure they are kept.
    fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.write(None)
    }

    /// Writes the waiting holds and `change`, if any, in one transaction. On failure
    /// nothing is written and the holds stay waiting (the oldest dropped beyond
    /// [`MAX_PENDING`], so a store that keeps failing cannot eat the memory).
    fn write(&mut self, change: Option<(&str, i64, &str, bool)>) -> Result<(), String> {
        let result = self.write_once(change);
        if result.is_err() && self.pending.len() > MAX_PENDING {
            let extra = self.pending.len() - MAX_PENDING;
            self.pending.drain(..extra);
        }
        result
    }

    fn write_once(&mut self, change: Option<(&str, i64, &str, bool)>) -> Result<(), String> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| describe(&e))?;
        {
            let mut insert = tx.prepare_cached(INSERT_ONE).map_err(|e| describe(&e))?;
            for (s, at, body) in &self.pending {
                insert
                    .execute(params![s, at, 0, body])
                    .map_err(|e| describe(&e))?;
            }
            if let Some((service, at, body, applied)) = change {
                insert
                    .execute(params![service, at, i64::from(applied), body])
                    .map_err(|e| describe(&e))?;
            }
        }
        tx.commit().map_err(|e| describe(&e))?;
        let pending = std::mem::take(&mut self.pending);
        self.touched.extend(pending.into_iter().map(|(s, _, _)| s));
        if let Some((service, ..)) = change {
            self.touched.insert(service.to_owned());
        }
        Ok(())
    }

    /// Adds the services written since the last round to the round to prune.
    fn start_prune_round(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        self.to_prune.extend(touched);
    }

    /// Deletes the rows beyond the newest `retention` of at most `max` services of the
    /// round in progress. On failure they stay in the round.
    fn prune_some(&mut self, retention: usize, max: usize) -> Result<(), String> {
        if self.to_prune.is_empty() {
            return Ok(());
        }
        let chunk: Vec<String> = self.to_prune.iter().take(max).cloned().collect();
        for service in &chunk {
            self.to_prune.remove(service);
        }
        let result = self.delete_beyond(&chunk, retention);
        if result.is_err() {
            self.to_prune.extend(chunk);
        }
        result
    }

    /// Deletes the rows of each of `services` beyond its newest `retention`.
    fn delete_beyond(&mut self, services: &[String], retention: usize) -> Result<(), String> {
        let keep = i64::try_from(retention).unwrap_or(i64::MAX);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| describe(&e))?;
        {
            let mut delete = tx
                .prepare_cached(
                    "DELETE FROM decisions WHERE service = ?1 AND seq <= \
                     (SELECT max(seq) FROM decisions WHERE service = ?1) - ?2",
                )
                .map_err(|e| describe(&e))?;
            for service in services {
                delete
                    .execute(params![service, keep])
                    .map_err(|e| describe(&e))?;
            }
        }
        tx.commit().map_err(|e| describe(&e))
    }
}

/// What makes two holds of a service the same for the log: the count, the rule, the
/// winner, the bounds, the steps and each policy's ask, but not the free-text reasons
/// (which carry the metric values of the moment) nor the observed capacity.
fn hold_key(d: &Decision) -> String {
    use std::fmt::Write as _;
    let mut key = format!(
        "{}|{:?}|{:?}|{}|{}|{}|{}",
        d.action.desired(),
        d.rule,
        d.winner,
        d.combined,
        d.min,
        d.max,
        d.dry_run
    );
    for s in &d.steps {
        let _ = write!(key, "|{:?}:{}>{}", s.kind, s.from, s.to);
    }
    for a in &d.asks {
        let _ = write!(key, "|{}={:?}/{}", a.policy, a.ask, a.degraded);
    }
    key
}

/// Inserts one decision of a service with the next number of that service (an index
/// seek: the write transaction is exclusive, so numbers never collide).
const INSERT_ONE: &str = "INSERT INTO decisions (service, seq, at_ms, applied, body) \
     VALUES (?1, coalesce((SELECT max(seq) FROM decisions WHERE service = ?1), 0) + 1, \
     ?2, ?3, ?4)";

/// Creates or migrates the schema; refuses foreign files and newer schemas.
/// Opens a connection to the capstan database at `path` (creating and migrating it if
/// needed), as every part of the store does: its directory must exist, it must be a
/// file, a busy database is waited for up to 5 s. Errors name the path and the reason.
pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let fail = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(fail(format!("directory {} does not exist", dir.display())));
    }
    if path.is_dir() {
        return Err(fail("it is a directory, not a file".into()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(format!("cannot open: {}", describe(&e))))?;
    conn.busy_timeout(StdDuration::from_secs(5))
        .map_err(|e| fail(describe(&e)))?;
    migrate(&conn).map_err(fail)?;
    Ok(conn)
}

pub(crate) fn migrate(conn: &Connection) -> Result<(), String> {
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| describe(&e))?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| describe(&e))?;
    if tables > 0 && app != APPLICATION_ID {
        return Err(
            "not a capstan database (an SQLite file of something else); \
             point [store] path at another file"
                .into(),
        );
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| format!("cannot switch to WAL: {}", describe(&e)))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| describe(&e))?;
    let version: Option<i64> = if tables > 0 {
        conn.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .optional()
            .map_err(|e| format!("schema version unreadable: {}", describe(&e)))?
            .flatten()
    } else {
        None
    };
    match version {
        Some(v) if v > SCHEMA_VERSION => Err(format!(
            "schema version {v} is newer than this capstan's ({SCHEMA_VERSION}); \
             run a newer capstan or use another file"
        )),
        Some(SCHEMA_VERSION) => Ok(()),
        _ => conn
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 PRAGMA application_id = {APPLICATION_ID};
                 CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS decisions (
                     id INTEGER PRIMARY KEY,
                     service TEXT NOT NULL,
                     seq INTEGER NOT NULL,
                     at_ms INTEGER NOT NULL,
                     applied INTEGER NOT NULL,
                     body TEXT NOT NULL
                 );
                 CREATE UNIQUE INDEX IF NOT EXISTS decisions_by_service
                     ON decisions (service, seq);
                 CREATE INDEX IF NOT EXISTS applied_by_service ON decisions (service, seq)
                     WHERE applied = 1;
                 CREATE TABLE IF NOT EXISTS work (
                     service TEXT NOT NULL,
                     task TEXT NOT NULL,
                     kind INTEGER NOT NULL,
                     id TEXT NOT NULL,
                     expires_ms INTEGER NOT NULL,
                     PRIMARY KEY (service, task, kind, id)
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS work_by_expiry ON work (expires_ms);
                 CREATE TABLE IF NOT EXISTS workflows (
                     id TEXT PRIMARY KEY,
                     service TEXT NOT NULL,
                     status TEXT NOT NULL,
                     state TEXT NOT NULL,
                     fence INTEGER NOT NULL,
                     created_ms INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS workflows_by_service
                     ON workflows (service, created_ms);
                 CREATE TABLE IF NOT EXISTS workflow_journal (
                     id TEXT NOT NULL,
                     seq INTEGER NOT NULL,
                     at_ms INTEGER NOT NULL,
                     step TEXT NOT NULL,
                     event TEXT NOT NULL,
                     detail TEXT NOT NULL,
                     PRIMARY KEY (id, seq)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS workflow_fence (
                     id INTEGER PRIMARY KEY,
                     token INTEGER NOT NULL
                 );
                 INSERT OR IGNORE INTO workflow_fence (id, token) VALUES (0, 0);
                 DELETE FROM schema_version;
                 INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION});
                 COMMIT;"
            ))
            .map_err(|e| format!("cannot create the schema: {}", describe(&e))),
    }
}

/// An SQLite error in words, with the usual causes spelled out.
pub(crate) fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "not a capstan database (not an SQLite file)".into()
        }
        Some(rusqlite::ErrorCode::ReadOnly) => format!("not writable ({e})"),
        Some(rusqlite::ErrorCode::CannotOpen) => format!("cannot be opened ({e})"),
        Some(rusqlite::ErrorCode::PermissionDenied) => format!("permission denied ({e})"),
        _ => e.to_string(),
    }
}
