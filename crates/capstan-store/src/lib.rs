//! capstan's state store.
//!
//! This crate holds the decision log: the [`DecisionLog`] trait that the control loop
//! records every decision into and the API pages through, [`SqliteStore`] (the default:
//! an SQLite file, history and cooldowns survive a restart), [`MemoryStore`] (newest
//! decisions of each service in a bounded ring buffer, lost when capstan stops), and
//! [`open`], which opens the store a [`StoreSpec`] (the config's `[store]`) names.
//! It also holds the work registry's durable entries ([`work`]: the [`WorkLog`] trait,
//! in the same SQLite file) and the scale-in workflows with their journals
//! ([`workflow`]: the [`WorkflowStore`] trait, fenced), and the blue/green host
//! rotations ([`rotation`]: the [`RotationStore`] trait).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

pub mod rotation;
pub mod sqlite;
pub mod work;
pub mod workflow;

pub use rotation::{MemoryRotationStore, RotationStore, SqliteRotationStore, open_rotations};
pub use sqlite::{DEFAULT_RETENTION, SqliteStore};
pub use work::{MemoryWorkLog, SqliteWorkLog, WorkLog, open_work};
pub use workflow::{
    JournalEntry, MemoryWorkflowStore, SqliteWorkflowStore, StoredWorkflow, WorkflowStore,
    open_workflows,
};

use capstan_core::Timestamp;
use capstan_core::decision::{Action, Decision};

/// A failure of the store. Names the service and the reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not record or read a decision.
    #[error("decision log of service {service}: {reason}")]
    Decisions {
        /// The service concerned.
        service: String,
        /// Why.
        reason: String,
    },
    /// The work registry's entries could not be written or read.
    #[error("work registry store {reason}")]
    Work {
        /// Why (names the file).
        reason: String,
    },
    /// A scale-in workflow could not be written or read.
    #[error("workflow store {reason}")]
    Workflow {
        /// Why (names the file and the workflow).
        reason: String,
    },
    /// A write carried a fencing token older than the newest handed out.
    #[error(
        "fenced off: this capstan's token {token} is older than {newest}: another capstan took over the store"
    )]
    Fenced {
        /// The token the write carried.
        token: u64,
        /// The newest token handed out.
        newest: u64,
    },
    /// The store could not be opened.
    #[error("decision store {path}: {reason}")]
    Open {
        /// The file (or other location) of the store.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Which store to open (the config's `[store]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// An SQLite file (relative paths are resolved by the caller, e.g. against the
    /// config file's directory).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// In memory: lost when capstan stops.
    Memory,
}

/// The store to open and how much history it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Which store.
    pub kind: StoreKind,
    /// Decisions kept per service.
    pub retention: usize,
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self {
            kind: StoreKind::Sqlite {
                path: PathBuf::from("capstan.db"),
            },
            retention: DEFAULT_RETENTION,
        }
    }
}

/// Opens the store `spec` names. Errors name the path and the reason (directory
/// missing, not writable, not a capstan database, newer schema version).
pub fn open(spec: &StoreSpec) -> Result<Arc<dyn DecisionLog>, StoreError> {
    match &spec.kind {
        StoreKind::Sqlite { path } => Ok(Arc::new(SqliteStore::open(path, spec.retention)?)),
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new(spec.retention))),
    }
}

/// Where decisions are recorded, so operators (API, web page, CLI) can read why a
/// service scaled.
pub trait DecisionLog: Send + Sync {
    /// Records one decision of `decision.service`.
    fn record(&self, decision: &Decision) -> Result<(), StoreError>;

    /// The newest decisions of `service`, newest first, at most `limit`.
    fn recent(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError>;

    /// One page of the decisions of `service` whose id is below `before` (all when
    /// `None`), newest first, at most `limit`. Each decision has an id that grows with
    /// every record; `next_before` is the id to pass as `before` for the next page, `None`
    /// when this page reaches the oldest decision kept.
    ///
    /// The default implementation reads [`recent`](Self::recent) and uses the
    /// decision's instant in milliseconds as its id; stores override it with their own ids.
    fn page(&self, service: &str, before: Option<u64>, limit: usize) -> Result<Page, StoreError> {
        let all = self.recent(service, usize::MAX)?;
        let items = all.into_iter().map(|d| {
            let id = u64::try_from(d.at.as_millisecond()).unwrap_or(0);
            (id, d)
        });
        Ok(Page::from_newest(items, before, limit))
    }

    /// The newest decisions of `service`, newest first, back to and including the first
    /// one at or before `since` (which was still in force at `since`), at most `limit`:
    /// what a restart needs to rebuild a window of time without reading all history.
    fn since(
        &self,
        service: &str,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Decision>, StoreError> {
        let mut out = Vec::new();
        let mut before = None;
        let mut size = 16usize;
        while out.len() < limit {
            let page = self.page(service, before, size.min(limit - out.len()))?;
            for (_, d) in page.decisions {
                let reached = d.at <= since;
                out.push(d);
                if reached {
                    return Ok(out);
                }
            }
            match page.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
            size = size.saturating_mul(4);
        }
        Ok(out)
    }

    /// Whether the store answers (for readiness).
    fn ping(&self) -> Result<(), StoreError> {
        self.recent("", 0).map(|_| ())
    }

    /// The newest decisions of `service` that were carried out (scale-out and scale-in,
    /// not dry-runs), newest first, at most `limit`: what cooldowns and rate limits need
    /// after a restart. Only carried-out changes are recorded by the control loop, so
    /// every non-dry-run change in the log counts.
    fn last_applied(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        Ok(self
            .recent(service, usize::MAX)?
            .into_iter()
            .filter(is_applied_change)
            .take(limit)
            .collect())
    }
}

/// Whether `d` is a change that was carried out (scale-out or scale-in, not a dry-run).
pub fn is_applied_change(d: &Decision) -> bool {
    !d.dry_run && !matches!(d.action, Action::Hold { .. })
}

/// One page of a service's decisions, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The decisions with their ids, newest first.
    pub decisions: Vec<(u64, Decision)>,
    /// The `before` of the next (older) page; `None` on the last page.
    pub next_before: Option<u64>,
}

impl Page {
    /// A page from `items` (id, decision) ordered newest first: those with an id below
    /// `before`, at most `limit`.
    pub fn from_newest(
        items: impl IntoIterator<Item = (u64, Decision)>,
        before: Option<u64>,
        limit: usize,
    ) -> Self {
        let mut decisions: Vec<(u64, Decision)> = items
            .into_iter()
            .filter(|(id, _)| before.is_none_or(|b| *id < b))
            .take(limit.saturating_add(1))
            .collect();
        let more = decisions.len() > limit;
        decisions.truncate(limit);
        let next_before = if more {
            decisions.last().map(|(id, _)| *id)
        } else {
            None
        };
        Self {
            decisions,
            next_before,
        }
    }
}

/// How many decisions per service a [`MemoryStore`] keeps by default (a day of
/// 15-second evaluations is 5760).
pub const DEFAULT_PER_SERVICE: usize = 1000;

/// Each service's kept decisions with their ids, oldest first.
type Rings = HashMap<String, VecDeque<(u64, Decision)>>;

/// An in-memory decision log keeping the newest `per_service` decisions of each service.
#[derive(Debug)]
pub struct MemoryStore {
    /// How many decisions each service keeps; older ones are dropped.
    per_service: usize,
    /// Decisions per service with their ids, oldest first, and the last id given. The
    /// lock is held only to copy in or out.
    decisions: Mutex<(u64, Rings)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_PER_SERVICE)
    }
}

impl MemoryStore {
    /// A store keeping at most `per_service` decisions per service (at least 1).
    pub fn new(per_service: usize) -> Self {
        Self {
            per_service: per_service.max(1),
            decisions: Mutex::new((0, HashMap::new())),
        }
    }

    /// How many decisions each service keeps.
    pub fn per_service(&self) -> usize {
        self.per_service
    }
}

impl DecisionLog for MemoryStore {
    fn record(&self, decision: &Decision) -> Result<(), StoreError> {
        // A panic elsewhere while holding the lock cannot leave a ring half-written
        // (each change is one push/pop), so a poisoned lock is still usable.
        let mut guard = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (last_id, all) = &mut *guard;
        *last_id += 1;
        let id = *last_id;
        let ring = all.entry(decision.service.clone()).or_default();
        while ring.len() >= self.per_service {
            ring.pop_front();
        }
        ring.push_back((id, decision.clone()));
        Ok(())
    }

    fn recent(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        let guard = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(guard
            .1
            .get(service)
            .map(|ring| {
                ring.iter()
                    .rev()
                    .take(limit)
                    .map(|(_, d)| d.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn page(&self, service: &str, before: Option<u64>, limit: usize) -> Result<Page, StoreError> {
        let guard = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(ring) = guard.1.get(service) else {
            return Ok(Page::default());
        };
        Ok(Page::from_newest(
            ring.iter().rev().map(|(id, d)| (*id, d.clone())),
            before,
            limit,
        ))
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn last_applied(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        let guard = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(guard
            .1
            .get(service)
            .map(|ring| {
                ring.iter()
                    .rev()
                    .map(|(_, d)| d)
                    .filter(|d| is_applied_change(d))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use capstan_core::Duration;
    use capstan_core::clock::{Clock, VirtualClock};
    use capstan_core::decision::Rule;
    use capstan_core::model::Capacity;

    use super::*;

    fn decision(service: &str, clock: &VirtualClock, desired: u32) -> Decision {
        clock.advance(Duration::from_secs(1));
        Decision {
            service: service.to_owned(),
            at: clock.now(),
            capacity: Capacity {
                desired,
                running: desired,
                pending: 0,
            },
            asks: Vec::new(),
            rule: Rule::NoVotes,
            winner: None,
            combined: desired,
            min: 0,
            max: 10,
            steps: Vec::new(),
            action: Action::Hold { at: desired },
            dry_run: false,
        }
    }

    fn desired(ds: &[Decision]) -> Vec<u32> {
        ds.iter().map(|d| d.capacity.desired).collect()
    }

    #[test]
    fn recent_is_newest_first_and_limited() {
        let clock = VirtualClock::at_epoch();
        let store = MemoryStore::new(10);
        for n in 1..=4 {
            store.record(&decision("a", &clock, n)).unwrap();
        }
        assert_eq!(desired(&store.recent("a", 10).unwrap()), vec![4, 3, 2, 1]);
        assert_eq!(desired(&store.recent("a", 2).unwrap()), vec![4, 3]);
        assert!(store.recent("a", 0).unwrap().is_empty());
        assert!(store.recent("unknown", 5).unwrap().is_empty());
    }

    #[test]
    fn each_service_keeps_its_own_bounded_ring() {
        let clock = VirtualClock::at_epoch();
        let store = MemoryStore::new(3);
        for n in 1..=5 {
            store.record(&decision("a", &clock, n)).unwrap();
        }
        store.record(&decision("b", &clock, 42)).unwrap();
        assert_eq!(desired(&store.recent("a", 10).unwrap()), vec![5, 4, 3]);
        assert_eq!(desired(&store.recent("b", 10).unwrap()), vec![42]);
        let recent_a = store.recent("a", 1).unwrap();
        assert_eq!(recent_a[0].service, "a");
    }

    #[test]
    fn pages_walk_every_kept_decision_newest_first() {
        let clock = VirtualClock::at_epoch();
        let store = MemoryStore::new(5);
        for n in 1..=7 {
            store.record(&decision("a", &clock, n)).unwrap();
            store.record(&decision("b", &clock, 100 + n)).unwrap();
        }
        let first = store.page("a", None, 2).unwrap();
        assert_eq!(
            first
                .decisions
                .iter()
                .map(|(_, d)| d.capacity.desired)
                .collect::<Vec<_>>(),
            vec![7, 6]
        );
        let mut seen = desired(
            &first
                .decisions
                .iter()
                .map(|(_, d)| d.clone())
                .collect::<Vec<_>>(),
        );
        let mut before = first.next_before;
        while let Some(b) = before {
            let page = store.page("a", Some(b), 2).unwrap();
            assert!(page.decisions.iter().all(|(id, _)| *id < b));
            seen.extend(page.decisions.iter().map(|(_, d)| d.capacity.desired));
            before = page.next_before;
        }
        assert_eq!(seen, vec![7, 6, 5, 4, 3]);
        assert!(store.page("x", None, 3).unwrap().decisions.is_empty());
        store.ping().unwrap();
    }

    #[test]
    fn since_stops_at_the_first_decision_at_or_before_the_instant() {
        let clock = VirtualClock::at_epoch();
        let store = MemoryStore::new(1000);
        let mut at = Vec::new();
        for n in 0..100 {
            let d = decision("a", &clock, n);
            at.push(d.at);
            store.record(&d).unwrap();
        }
        let got = store.since("a", at[40], 1000).unwrap();
        assert_eq!(got.len(), 60, "99 down to 40 inclusive");
        assert_eq!(got.last().map(|d| d.at), Some(at[40]));
        assert_eq!(got[0].capacity.desired, 99);
        let between = at[40]
            .checked_add(jiff::SignedDuration::from_millis(500))
            .unwrap();
        assert_eq!(store.since("a", between, 1000).unwrap().len(), 60);
        assert_eq!(store.since("a", at[40], 7).unwrap().len(), 7);
        assert_eq!(store.since("a", at[0], 1000).unwrap().len(), 100);
        assert!(store.since("b", at[0], 10).unwrap().is_empty());
    }

    #[test]
    fn last_applied_keeps_only_carried_out_changes() {
        let clock = VirtualClock::at_epoch();
        let store = MemoryStore::new(10);
        store.record(&decision("a", &clock, 1)).unwrap();
        let mut out = decision("a", &clock, 1);
        out.action = Action::ScaleOut { from: 1, to: 3 };
        store.record(&out).unwrap();
        let mut dry = decision("a", &clock, 3);
        dry.action = Action::ScaleIn { from: 3, to: 2 };
        dry.dry_run = true;
        store.record(&dry).unwrap();
        store.record(&decision("a", &clock, 3)).unwrap();
        let applied = store.last_applied("a", 5).unwrap();
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].action, Action::ScaleOut { from: 1, to: 3 });
    }

    #[test]
    fn a_zero_bound_still_keeps_the_newest() {
        let clock = VirtualClock::at_epoch();
        let store = MemoryStore::new(0);
        assert_eq!(store.per_service(), 1);
        store.record(&decision("a", &clock, 1)).unwrap();
        store.record(&decision("a", &clock, 2)).unwrap();
        assert_eq!(desired(&store.recent("a", 5).unwrap()), vec![2]);
    }

    #[test]
    fn shared_between_threads_as_a_trait_object() {
        let store: Arc<dyn DecisionLog> = Arc::new(MemoryStore::new(100));
        let handles: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|service| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let clock = VirtualClock::at_epoch();
                    for n in 0..50 {
                        store.record(&decision(service, &clock, n)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(store.recent("a", 100).unwrap().len(), 50);
        assert_eq!(store.recent("b", 1).unwrap()[0].capacity.desired, 49);
    }
}
