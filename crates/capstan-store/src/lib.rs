//! capstan's state store.
//!
//! For now this crate holds the decision log: the [`DecisionLog`] trait that the control
//! loop records every decision into, and [`MemoryStore`], an in-memory implementation
//! that keeps the newest decisions of each service in a bounded ring buffer (lost when
//! capstan stops). The durable stores (SQLite embedded by default, PostgreSQL for
//! several replicas) and the rest of the durable state (scale-in workflow journal,
//! sessions, leases) come in a later issue behind the same kind of trait.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use capstan_core::decision::Decision;

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
}

/// Where decisions are recorded, so operators (API, web page, CLI) can read why a
/// service scaled.
pub trait DecisionLog: Send + Sync {
    /// Records one decision of `decision.service`.
    fn record(&self, decision: &Decision) -> Result<(), StoreError>;

    /// The newest decisions of `service`, newest first, at most `limit`.
    fn recent(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError>;
}

/// How many decisions per service a [`MemoryStore`] keeps by default (a day of
/// 15-second evaluations is 5760).
pub const DEFAULT_PER_SERVICE: usize = 1000;

/// An in-memory decision log keeping the newest `per_service` decisions of each service.
#[derive(Debug)]
pub struct MemoryStore {
    /// How many decisions each service keeps; older ones are dropped.
    per_service: usize,
    /// Decisions per service, oldest first. The lock is held only to copy in or out.
    decisions: Mutex<HashMap<String, VecDeque<Decision>>>,
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
            decisions: Mutex::new(HashMap::new()),
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
        let mut all = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ring = all.entry(decision.service.clone()).or_default();
        while ring.len() >= self.per_service {
            ring.pop_front();
        }
        ring.push_back(decision.clone());
        Ok(())
    }

    fn recent(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        let all = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(all
            .get(service)
            .map(|ring| ring.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use capstan_core::Duration;
    use capstan_core::clock::{Clock, VirtualClock};
    use capstan_core::decision::{Action, Rule};
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
