//! The `push` source: values POSTed to capstan (`POST /api/v1/metrics/{name}`) rather
//! than read from a server.
//!
//! Owns the [`PushStore`] (the newest accepted value of every push source, stamped with
//! the store's [`Clock`]) and the [`PushSource`] the poller reads from it. The HTTP side
//! lives in the `capstan` binary's listener; it only calls [`PushStore::push`].
//!
//! Rules:
//! - A pushed value passes the same boundary check as any read ([`validate`]: finite,
//!   not negative for a count) plus a size cap ([`MAX_ABS_VALUE`]); a rejected push
//!   changes nothing (the previous value stays).
//! - A value older than the source's `ttl` is not used: the read fails with a
//!   `not_found` error ("no value pushed within the ttl"), so the window turns failing
//!   and the planner holds scale-in, exactly as for a server that went away. Before the
//!   first push the read fails the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_core::Clock;
use capstan_core::clock::elapsed;
use jiff::Timestamp;

use crate::error::ReadError;
use crate::spec::{PushSpec, SourceKind, SourceSpec, ValueKind};
use crate::validate::validate;
use crate::{BoxFuture, Source};

/// The largest magnitude a pushed value may have (a counter gone wild, or a unit
/// mistake, is refused rather than scaling on it).
pub const MAX_ABS_VALUE: f64 = 1e15;

/// Why a push was refused. Nothing is stored when a push is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    /// No push source has this name.
    #[error("no push source is named {0:?}")]
    UnknownSource(String),
    /// The value breaks a rule (not finite, a negative count, too large).
    #[error("value {value} rejected: {reason}")]
    Rejected {
        /// The value as pushed.
        value: f64,
        /// Which rule it breaks.
        reason: String,
    },
}

/// One push source's settings and newest value.
#[derive(Debug, Clone)]
struct Slot {
    /// Which values are valid.
    value_kind: ValueKind,
    /// The newest accepted value and when it arrived.
    latest: Option<(f64, Timestamp)>,
}

/// The newest pushed value of every push source. Cheap to clone (shared).
#[derive(Clone)]
pub struct PushStore {
    /// Where "now" comes from (virtual in tests).
    clock: Arc<dyn Clock>,
    /// Slots by source name; the lock is held only to copy a value in or out.
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

impl std::fmt::Debug for PushStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("PushStore")
            .field("sources", &slots.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PushStore {
    /// An empty store stamping values with `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            slots: Arc::default(),
        }
    }

    /// Declares the push source `name` (values checked as `value_kind`). Declaring it
    /// again keeps its value.
    pub fn declare(&self, name: &str, value_kind: ValueKind) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .entry(name.to_owned())
            .and_modify(|s| s.value_kind = value_kind)
            .or_insert(Slot {
                value_kind,
                latest: None,
            });
    }

    /// Declares every `push` source of `specs` (building a [`PushSource`] also does).
    pub fn declare_all(&self, specs: &[SourceSpec]) {
        for spec in specs {
            if matches!(spec.kind, SourceKind::Push(_)) {
                self.declare(&spec.name, spec.value);
            }
        }
    }

    /// Whether `name` is a declared push source.
    pub fn contains(&self, name: &str) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.contains_key(name)
    }

    /// Stores `value` as the newest value of `name`, stamped now. Refused (and nothing
    /// changed) for an unknown name or a value that breaks the rules.
    pub fn push(&self, name: &str, value: f64) -> Result<(), PushError> {
        let now = self.clock.now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots
            .get_mut(name)
            .ok_or_else(|| PushError::UnknownSource(name.to_owned()))?;
        let value = check(value, slot.value_kind)?;
        slot.latest = Some((value, now));
        Ok(())
    }

    /// The newest value of `name` and when it arrived.
    pub fn latest(&self, name: &str) -> Option<(f64, Timestamp)> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.get(name).and_then(|s| s.latest)
    }

    /// The value of `name` if it is at most `ttl` old.
    pub fn fresh(&self, name: &str, ttl: Duration) -> Result<f64, ReadError> {
        let target = format!("push source {name}");
        let Some((value, at)) = self.latest(name) else {
            return Err(ReadError::NotFound {
                target,
                what: "a pushed value (none since capstan started)".to_owned(),
            });
        };
        let age = elapsed(at, self.clock.now());
        if age > ttl {
            return Err(ReadError::NotFound {
                target,
                what: format!(
                    "a value pushed within the ttl of {}s (the last is {}s old)",
                    ttl.as_secs_f64(),
                    age.as_secs_f64()
                ),
            });
        }
        Ok(value)
    }
}

/// The boundary check of a pushed value.
fn check(value: f64, kind: ValueKind) -> Result<f64, PushError> {
    let value = validate(value, kind).map_err(|e| match e {
        ReadError::Rejected { value, reason } => PushError::Rejected {
            value,
            reason: reason.to_owned(),
        },
        other => PushError::Rejected {
            value,
            reason: other.to_string(),
        },
    })?;
    if value.abs() > MAX_ABS_VALUE {
        return Err(PushError::Rejected {
            value,
            reason: format!("larger than {MAX_ABS_VALUE:e}"),
        });
    }
    Ok(value)
}

/// A `push` source: reads the newest pushed value from a [`PushStore`].
#[derive(Debug, Clone)]
pub struct PushSource {
    /// Where the values are.
    store: PushStore,
    /// The source's name.
    name: String,
    /// A value older than this is not used.
    ttl: Duration,
}

impl PushSource {
    /// The source `name` reading from `store` (which it declares `name` in).
    pub fn new(name: &str, spec: &PushSpec, value_kind: ValueKind, store: &PushStore) -> Self {
        store.declare(name, value_kind);
        Self {
            store: store.clone(),
            name: name.to_owned(),
            ttl: spec.ttl,
        }
    }
}

impl Source for PushSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        let read = self.store.fresh(&self.name, self.ttl);
        Box::pin(async move { read })
    }
}

#[cfg(test)]
mod tests {
    use capstan_core::clock::VirtualClock;

    use super::*;
    use crate::ErrorClass;

    fn store() -> (Arc<VirtualClock>, PushStore) {
        let clock = Arc::new(VirtualClock::at_epoch());
        let store = PushStore::new(Arc::clone(&clock) as Arc<dyn Clock>);
        (clock, store)
    }

    #[tokio::test]
    async fn a_value_is_read_until_its_ttl_then_the_read_fails_not_found() {
        let (clock, store) = store();
        let spec = PushSpec {
            ttl: Duration::from_secs(60),
        };
        let source = PushSource::new("jobs", &spec, ValueKind::Count, &store);
        let before = source.read().await.unwrap_err();
        assert_eq!(before.class(), ErrorClass::NotFound);
        store.push("jobs", 12.5).unwrap();
        clock.advance(Duration::from_secs(60));
        assert_eq!(source.read().await.unwrap(), 12.5);
        clock.advance(Duration::from_secs(1));
        let stale = source.read().await.unwrap_err();
        assert_eq!(stale.class(), ErrorClass::NotFound);
        assert!(stale.to_string().contains("ttl of 60s"), "{stale}");
        store.push("jobs", 3.0).unwrap();
        assert_eq!(source.read().await.unwrap(), 3.0);
    }

    #[test]
    fn a_rejected_push_changes_nothing() {
        let (_clock, store) = store();
        store.declare("jobs", ValueKind::Count);
        store.push("jobs", 7.0).unwrap();
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e16] {
            assert!(
                matches!(store.push("jobs", bad), Err(PushError::Rejected { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            store.push("nope", 1.0),
            Err(PushError::UnknownSource("nope".into()))
        );
        assert_eq!(store.latest("jobs").map(|l| l.0), Some(7.0));
        store.declare("delta", ValueKind::Any);
        store.push("delta", -4.0).unwrap();
    }
}
