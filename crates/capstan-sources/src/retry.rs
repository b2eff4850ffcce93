//! Retries within one poll: which failures are worth another attempt
//! ([`is_transient`]) and how long to wait before it ([`Backoff`]: exponential with
//! full jitter, bounded by the source's interval).
//!
//! The randomness is a small seeded generator (SplitMix64), so a test or a caller can
//! replay the same delays; the poller seeds it from the source's name, which spreads
//! the retries of many sources that fail together.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::error::ErrorClass;

/// How many times a failed read is tried again within one interval when the source
/// does not say (`retries` in the configuration).
pub const DEFAULT_RETRIES: u32 = 2;

/// Shortest first backoff ceiling.
const MIN_BASE: Duration = Duration::from_millis(10);
/// Longest first backoff ceiling.
const MAX_BASE: Duration = Duration::from_secs(1);

/// Whether a failure of this class may go away on its own within an interval (the
/// server was unreachable, slow, or failed on its side). Wrong settings, refused
/// credentials, missing things and bad values are not retried: the next attempt would
/// fail the same way.
pub fn is_transient(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Server
    )
}

/// Exponential backoff with full jitter: before retry `n` (0 = the first retry) it
/// waits a uniformly random time in `[0, min(cap, base × 2ⁿ)]`.
///
/// For a source read every `interval`, `base` is `interval / 20` (kept within
/// 10 ms..1 s) and `cap` is `interval / 2`; the poller also never starts a retry after
/// the interval has passed, so retries never delay the next regular read.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The ceiling of the first delay.
    base: Duration,
    /// The ceiling of every delay.
    cap: Duration,
    /// SplitMix64 state.
    state: u64,
}

impl Backoff {
    /// A backoff with these bounds, its randomness seeded with `seed`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base,
            cap,
            state: seed,
        }
    }

    /// The backoff of a source read every `interval`, seeded with `seed`.
    pub fn for_interval(interval: Duration, seed: u64) -> Self {
        let base = (interval / 20).clamp(MIN_BASE, MAX_BASE);
        Self::new(base, interval / 2, seed)
    }

    /// A seed derived from a source's name (stable across runs).
    pub fn seed_of(name: &str) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        h.finish()
    }

    /// The ceiling of the delay before retry `attempt` (0 = the first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before retry `attempt`: uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        // 53 random bits as a fraction in [0, 1].
        let fraction = (self.next_u64() >> 11) as f64 / ((1u64 << 53) - 1) as f64;
        ceiling.mul_f64(fraction)
    }

    /// SplitMix64.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_timeout_and_server_failures_are_retried() {
        let retried: Vec<ErrorClass> = ErrorClass::ALL
            .into_iter()
            .filter(|c| is_transient(*c))
            .collect();
        assert_eq!(
            retried,
            vec![ErrorClass::Connect, ErrorClass::Timeout, ErrorClass::Server]
        );
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::for_interval(Duration::from_secs(10), 1);
        let ceilings: Vec<u128> = (0..6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(b.ceiling(200), Duration::from_secs(5));
        // Short intervals: the base is at least 10 ms, the cap half the interval.
        let short = Backoff::for_interval(Duration::from_millis(100), 1);
        assert_eq!(short.ceiling(0), Duration::from_millis(10));
        assert_eq!(short.ceiling(9), Duration::from_millis(50));
    }

    #[test]
    fn delays_are_spread_over_the_whole_range_and_replayable() {
        let mut a = Backoff::for_interval(Duration::from_secs(10), 42);
        let mut b = Backoff::for_interval(Duration::from_secs(10), 42);
        let delays: Vec<Duration> = (0..1000).map(|_| a.delay(3)).collect();
        let again: Vec<Duration> = (0..1000).map(|_| b.delay(3)).collect();
        assert_eq!(delays, again);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)));
        let below_1s = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(1))
            .count();
        let above_3s = delays
            .iter()
            .filter(|d| **d > Duration::from_secs(3))
            .count();
        // Uniform: about 250 each.
        assert!((180..320).contains(&below_1s), "{below_1s}");
        assert!((180..320).contains(&above_3s), "{above_3s}");
        let mut other = Backoff::for_interval(Duration::from_secs(10), 43);
        assert_ne!(other.delay(3), delays[0]);
    }
}
