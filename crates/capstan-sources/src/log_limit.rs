//! Rate limits the poller's error logs per source and error class, while every failure
//! is still counted (the exporter's counters are exact; only log lines are dropped).
//!
//! The first failure of a class is logged; further failures of that class within
//! [`LOG_PERIOD`] of the last logged one are only counted, and the next one after the
//! period is logged with how many were left out. So a source failing every second
//! logs at most one line per class per minute.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ErrorClass;

/// At most one error line per source and class in this period.
pub const LOG_PERIOD: Duration = Duration::from_secs(60);

/// What to do with one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, saying that `suppressed` failures of its class were not logged since
    /// the last line (`since` before now).
    Log {
        /// Failures of this class not logged since the last line.
        suppressed: u64,
        /// Time since the last logged failure of this class, if any.
        since: Option<Duration>,
    },
    /// Count it only.
    Suppress,
}

/// One class's state.
#[derive(Debug, Clone, Copy, Default)]
struct ClassState {
    /// When a failure of this class was last logged.
    last_logged: Option<Instant>,
    /// Failures not logged since.
    suppressed: u64,
}

/// The log limiter of one source (or one group of sources sharing a read).
#[derive(Debug, Clone)]
pub struct LogLimiter {
    /// Minimum time between two lines of one class.
    period: Duration,
    /// By [`ErrorClass::ALL`] order.
    classes: [ClassState; ErrorClass::ALL.len()],
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(LOG_PERIOD)
    }
}

impl LogLimiter {
    /// A limiter allowing one line per class per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            classes: [ClassState::default(); ErrorClass::ALL.len()],
        }
    }

    /// Records a failure of `class` at `now`: log it or count it.
    pub fn failure(&mut self, class: ErrorClass, now: Instant) -> Verdict {
        let index = ErrorClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        let state = &mut self.classes[index];
        match state.last_logged {
            Some(at) if now.saturating_duration_since(at) < self.period => {
                state.suppressed = state.suppressed.saturating_add(1);
                Verdict::Suppress
            }
            last => {
                state.last_logged = Some(now);
                Verdict::Log {
                    suppressed: std::mem::take(&mut state.suppressed),
                    since: last.map(|at| now.saturating_duration_since(at)),
                }
            }
        }
    }

    /// Failures not logged so far, over every class.
    pub fn suppressed(&self) -> u64 {
        self.classes.iter().map(|c| c.suppressed).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_class_per_period_with_the_count_left_out() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut l = LogLimiter::default();
        assert_eq!(
            l.failure(ErrorClass::Connect, at(0)),
            Verdict::Log {
                suppressed: 0,
                since: None
            }
        );
        for s in 1..60 {
            assert_eq!(l.failure(ErrorClass::Connect, at(s)), Verdict::Suppress);
        }
        // Another class has its own budget.
        assert!(matches!(
            l.failure(ErrorClass::Auth, at(30)),
            Verdict::Log { suppressed: 0, .. }
        ));
        assert_eq!(l.suppressed(), 59);
        assert_eq!(
            l.failure(ErrorClass::Connect, at(60)),
            Verdict::Log {
                suppressed: 59,
                since: Some(Duration::from_secs(60))
            }
        );
        assert_eq!(l.suppressed(), 0);
        assert_eq!(l.failure(ErrorClass::Connect, at(61)), Verdict::Suppress);
    }
}
