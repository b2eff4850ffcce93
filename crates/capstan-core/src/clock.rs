//! Time. The only module allowed to read the wall clock.
//!
//! Everything time-dependent takes a [`Clock`]. Production uses [`SystemClock`]; tests
//! and the simulator use [`VirtualClock`], which only moves when told to.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the wall clock
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when [`advance`](VirtualClock::advance) or
/// [`set`](VirtualClock::set) is called. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    /// Nanoseconds since the Unix epoch, shared between clones.
    nanos: Arc<AtomicI64>,
}

impl VirtualClock {
    /// A virtual clock starting at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            nanos: Arc::new(AtomicI64::new(to_nanos(start))),
        }
    }

    /// A virtual clock starting at 2026-01-01T00:00:00Z, handy for tests.
    pub fn at_epoch() -> Self {
        Self::new(Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let delta = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(delta, Ordering::SeqCst);
    }

    /// Jumps to `to` (forward or backward).
    pub fn set(&self, to: Timestamp) {
        self.nanos.store(to_nanos(to), Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        let n = self.nanos.load(Ordering::SeqCst);
        Timestamp::from_nanosecond(i128::from(n)).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

fn to_nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX)
}

/// `later - earlier` as a [`Duration`], zero if `later` is not after `earlier`.
pub fn elapsed(earlier: Timestamp, later: Timestamp) -> Duration {
    let d = later.duration_since(earlier);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// `t + d`, saturating at the largest representable instant.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the smallest representable instant.
pub fn sub(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_only_when_told() {
        let c = VirtualClock::at_epoch();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(90));
        assert_eq!(elapsed(t0, c.now()), Duration::from_secs(90));
        let shared = c.clone();
        shared.advance(Duration::from_secs(10));
        assert_eq!(elapsed(t0, c.now()), Duration::from_secs(100));
    }

    #[test]
    fn elapsed_never_negative() {
        let c = VirtualClock::at_epoch();
        let t0 = c.now();
        c.advance(Duration::from_secs(5));
        assert_eq!(elapsed(c.now(), t0), Duration::ZERO);
    }
}
