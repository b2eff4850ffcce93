//! The durable side of blue/green host rotations ([`Rotation`]): each rotation's latest
//! state, so a restart resumes the running ones and operators can list them.
//!
//! [`SqliteRotationStore`] keeps them in the capstan database, table `rotations` (its
//! own connection; created on open if missing; the state as JSON);
//! [`MemoryRotationStore`] in memory. Finished (done or failed) rotations are kept up
//! to [`FINISHED_KEPT`]; older ones are deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use capstan_core::rotation::Rotation;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite::{connect, describe};
use crate::{StoreError, StoreKind, StoreSpec};

/// Finished rotations kept; older ones are deleted.
pub const FINISHED_KEPT: usize = 200;

/// Where rotations are kept. See the [module docs](self).
pub trait RotationStore: Send + Sync {
    /// Creates or replaces `r`.
    fn save(&self, r: &Rotation) -> Result<(), StoreError>;

    /// One rotation.
    fn get(&self, id: &str) -> Result<Option<Rotation>, StoreError>;

    /// The newest rotations first, at most `limit`.
    fn list(&self, limit: usize) -> Result<Vec<Rotation>, StoreError>;

    /// The running rotations, oldest first.
    fn active(&self) -> Result<Vec<Rotation>, StoreError>;
}

/// Opens the rotation store of the store `spec` names (the same file as the
/// decisions).
pub fn open_rotations(spec: &StoreSpec) -> Result<Arc<dyn RotationStore>, StoreError> {
    match &spec.kind {
        StoreKind::Sqlite { path } => Ok(Arc::new(SqliteRotationStore::open(path)?)),
        StoreKind::Memory => Ok(Arc::new(MemoryRotationStore::default())),
    }
}

fn error(reason: String) -> StoreError {
    StoreError::Workflow {
        reason: format!("(rotations) {reason}"),
    }
}

/// Newest first.
fn newest_first(out: &mut [Rotation]) {
    out.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
}

/// Rotations in memory.
#[derive(Debug, Default)]
pub struct MemoryRotationStore {
    rotations: Mutex<BTreeMap<String, Rotation>>,
}

impl RotationStore for MemoryRotationStore {
    fn save(&self, r: &Rotation) -> Result<(), StoreError> {
        let mut all = self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.insert(r.id.clone(), r.clone());
        let mut finished: Vec<(capstan_core::Timestamp, String)> = all
            .values()
            .filter(|x| !x.is_running())
            .map(|x| (x.created, x.id.clone()))
            .collect();
        finished.sort();
        let excess = finished.len().saturating_sub(FINISHED_KEPT);
        for (_, id) in finished.into_iter().take(excess) {
            all.remove(&id);
        }
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Rotation>, StoreError> {
        let all = self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(all.get(id).cloned())
    }

    fn list(&self, limit: usize) -> Result<Vec<Rotation>, StoreError> {
        let all = self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Rotation> = all.values().cloned().collect();
        newest_first(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    fn active(&self) -> Result<Vec<Rotation>, StoreError> {
        let all = self
            .rotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Rotation> = all.values().filter(|r| r.is_running()).cloned().collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}

/// Rotations in the capstan SQLite database.
#[derive(Debug)]
pub struct SqliteRotationStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteRotationStore {
    /// Opens (creating or migrating if needed) the capstan database at `path`, and its
    /// `rotations` table.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS rotations (
                 id TEXT PRIMARY KEY,
                 cluster TEXT NOT NULL,
                 status TEXT NOT NULL,
                 state TEXT NOT NULL,
                 created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS rotations_status ON rotations (status, created_ms);",
        )
        .map_err(|e| error(format!("{}: {}", path.display(), describe(&e))))?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn fail(&self, e: &rusqlite::Error) -> StoreError {
        error(format!("{}: {}", self.path.display(), describe(e)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn parse(&self, id: &str, state: &str) -> Result<Rotation, StoreError> {
        serde_json::from_str(state).map_err(|e| {
            error(format!(
                "{}: rotation {id}: unreadable state: {e}",
                self.path.display()
            ))
        })
    }

    fn query(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Rotation>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).map_err(|e| self.fail(&e))?;
        let rows: Vec<(String, String)> = stmt
            .query_map(p, |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.fail(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(&e))?;
        rows.iter().map(|(id, s)| self.parse(id, s)).collect()
    }
}

impl RotationStore for SqliteRotationStore {
    fn save(&self, r: &Rotation) -> Result<(), StoreError> {
        let state = serde_json::to_string(r)
            .map_err(|e| error(format!("rotation {}: cannot write its state: {e}", r.id)))?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.fail(&e))?;
        tx.execute(
            "INSERT INTO rotations (id, cluster, status, state, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state,
                 updated_ms = excluded.updated_ms",
            params![
                r.id,
                r.cluster,
                r.status.as_str(),
                state,
                r.created.as_millisecond(),
                r.updated.as_millisecond()
            ],
        )
        .map_err(|e| self.fail(&e))?;
        if !r.is_running() {
            tx.execute(
                "DELETE FROM rotations WHERE id IN (
                     SELECT id FROM rotations WHERE status != 'running'
                     ORDER BY created_ms DESC, id DESC LIMIT -1 OFFSET ?1)",
                params![i64::try_from(FINISHED_KEPT).unwrap_or(i64::MAX)],
            )
            .map_err(|e| self.fail(&e))?;
        }
        tx.commit().map_err(|e| self.fail(&e))
    }

    fn get(&self, id: &str) -> Result<Option<Rotation>, StoreError> {
        let state: Option<String> = self
            .conn()
            .query_row("SELECT state FROM rotations WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.fail(&e))?;
        state.map(|s| self.parse(id, &s)).transpose()
    }

    fn list(&self, limit: usize) -> Result<Vec<Rotation>, StoreError> {
        self.query(
            "SELECT id, state FROM rotations ORDER BY created_ms DESC, id DESC LIMIT ?1",
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    fn active(&self) -> Result<Vec<Rotation>, StoreError> {
        self.query(
            "SELECT id, state FROM rotations WHERE status = 'running' ORDER BY created_ms, id",
            [],
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use capstan_core::Timestamp;
    use capstan_core::rotation::Phase;

    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn round_trip(store: &dyn RotationStore) {
        let mut a = Rotation::new("a", "c", "blue", "green", t(1));
        let b = Rotation::new("b", "c", "green", "blue", t(2));
        store.save(&a).unwrap();
        store.save(&b).unwrap();
        a.enter(Phase::Remove, t(3));
        a.start_host("i-1", t(3));
        store.save(&a).unwrap();
        assert_eq!(store.get("a").unwrap(), Some(a.clone()));
        assert_eq!(store.get("zz").unwrap(), None);
        let ids = |v: Vec<Rotation>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list(10).unwrap()), ["b", "a"]);
        assert_eq!(ids(store.list(1).unwrap()), ["b"]);
        assert_eq!(ids(store.active().unwrap()), ["a", "b"]);
        a.fail("boom", t(4));
        store.save(&a).unwrap();
        assert_eq!(ids(store.active().unwrap()), ["b"]);
        assert_eq!(store.get("a").unwrap().unwrap().status.as_str(), "failed");
    }

    fn bounded(store: &dyn RotationStore) {
        for i in 0..(FINISHED_KEPT + 5) {
            let mut r = Rotation::new(&format!("r{i:04}"), "c", "a", "b", t(i as i64));
            r.enter(Phase::Done, t(i as i64));
            store.save(&r).unwrap();
        }
        let running = Rotation::new("live", "c", "a", "b", t(-1));
        store.save(&running).unwrap();
        let all = store.list(10_000).unwrap();
        assert_eq!(all.len(), FINISHED_KEPT + 1);
        assert!(store.get("r0000").unwrap().is_none());
        assert!(store.get("live").unwrap().is_some());
    }

    #[test]
    fn memory_store_round_trip_and_bound() {
        round_trip(&MemoryRotationStore::default());
        bounded(&MemoryRotationStore::default());
    }

    #[test]
    fn sqlite_store_round_trip_bound_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        round_trip(&SqliteRotationStore::open(&path).unwrap());
        let again = SqliteRotationStore::open(&path).unwrap();
        assert_eq!(again.active().unwrap().len(), 1, "kept across a reopen");
        let other = dir.path().join("other.db");
        bounded(&SqliteRotationStore::open(&other).unwrap());
    }
}
