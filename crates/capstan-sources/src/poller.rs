//! The poller: one task per source, reading it on its interval into the shared metric
//! windows.
//!
//! Expected flow, per source: declare its window (retention, max age); read at once,
//! then every `interval` (a late tick is delayed, never bunched up); each read goes
//! through [`read_once`] (timeout backstop, boundary validation); a value becomes a
//! [`Sample`] stamped with the [`Clock`]'s now, a failure is recorded with its reason, so
//! the window turns "failing" and the planner holds.
//!
//! Logging, per source: the first failure of a streak at WARN, the following ones at
//! DEBUG, the recovery once at INFO ("source queue recovered after 5 failed reads").
//!
//! Observers: a [`ReadObserver`] given through [`Hooks`] sees every read's outcome and
//! duration (the exporter counts them); it never changes what is recorded.
//!
//! Cancellation: every task stops as soon as the token is cancelled, abandoning a read
//! in progress (a command's processes are killed). Every `.await` is a cancellation
//! point; the windows are only written between them.

use std::collections::BTreeSet;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use capstan_core::Clock;
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::Sample;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::error::{ReadError, SourceError};
use crate::push::PushStore;
use crate::spec::SourceSpec;
use crate::validate::validate;
use crate::{Source, build_with};

/// Sees the outcome of every read the poller makes (after validation), e.g. to export
/// it as metrics. Called between `.await`s; must not block.
pub trait ReadObserver: Send + Sync {
    /// `source` was read in `took`: its value, or why it failed.
    fn observed(&self, source: &str, took: Duration, result: Result<f64, &ReadError>);
}

/// What [`spawn_all_with`] gives the pollers beyond the specs.
#[derive(Clone, Default)]
pub struct Hooks {
    /// The store `push` sources read from (without it a push source fails to build).
    pub push: Option<PushStore>,
    /// Sees every read.
    pub observer: Option<Arc<dyn ReadObserver>>,
}

/// [`read_once`] abandons a read this long after the source's own timeout. Sources
/// enforce their timeout themselves (with a more precise error); this catches one that
/// does not.
pub const BACKSTOP_GRACE: Duration = Duration::from_secs(1);

/// Shortest interval the poller runs at (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Reads `source` once: at most `spec.timeout` (plus [`BACKSTOP_GRACE`]), then checks
/// the value against `spec.value`. A rejected value is an error like any failed read.
pub async fn read_once(source: &dyn Source, spec: &SourceSpec) -> Result<f64, SourceError> {
    let limit = spec.timeout.saturating_add(BACKSTOP_GRACE);
    let read = match tokio::time::timeout(limit, source.read()).await {
        Ok(read) => read,
        Err(_) => Err(ReadError::Timeout(spec.timeout)),
    };
    read.and_then(|value| validate(value, spec.value))
        .map_err(|error| SourceError::new(&spec.name, error))
}

/// Builds every source of `specs`, declares their windows in `obs`, and spawns one
/// polling task per source ([`run_poller`]). Must be called within a Tokio runtime.
///
/// Nothing is spawned or declared if any source cannot be built or two share a name;
/// the first such error is returned.
pub fn spawn_all(
    specs: &[SourceSpec],
    obs: SharedObservations,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) -> Result<JoinSet<()>, SourceError> {
    spawn_all_with(specs, obs, clock, cancel, &Hooks::default())
}

/// [`spawn_all`] with [`Hooks`]: the push store and a read observer.
pub fn spawn_all_with(
    specs: &[SourceSpec],
    obs: SharedObservations,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
    hooks: &Hooks,
) -> Result<JoinSet<()>, SourceError> {
    let mut names = BTreeSet::new();
    let mut built = Vec::with_capacity(specs.len());
    for spec in specs {
        if !names.insert(spec.name.as_str()) {
            return Err(SourceError::new(
                &spec.name,
                ReadError::Config("two sources have this name".into()),
            ));
        }
        built.push((spec.clone(), build_with(spec, hooks.push.as_ref())?));
    }
    {
        let mut windows = lock(&obs);
        for spec in specs {
            windows.declare(&spec.name, spec.retention, spec.max_age);
        }
    }
    let mut tasks = JoinSet::new();
    for (spec, source) in built {
        tasks.spawn(run_poller_with(
            spec,
            source,
            Arc::clone(&obs),
            Arc::clone(&clock),
            cancel.clone(),
            hooks.observer.clone(),
        ));
    }
    Ok(tasks)
}

/// Polls one source until `cancel`: reads at once, then every `spec.interval`
/// (at least 1 ms), recording each value or failure in `obs` at `clock.now()`.
pub async fn run_poller(
    spec: SourceSpec,
    source: Box<dyn Source>,
    obs: SharedObservations,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    run_poller_with(spec, source, obs, clock, cancel, None).await;
}

/// [`run_poller`], telling `observer` about every read.
pub async fn run_poller_with(
    spec: SourceSpec,
    source: Box<dyn Source>,
    obs: SharedObservations,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
    observer: Option<Arc<dyn ReadObserver>>,
) {
    lock(&obs).declare(&spec.name, spec.retention, spec.max_age);
    let mut ticker = tokio::time::interval(spec.interval.max(MIN_INTERVAL));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut streak = Streak::default();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let started = tokio::time::Instant::now();
        let read = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            read = read_once(source.as_ref(), &spec) => read,
        };
        let now = clock.now();
        if let Some(observer) = &observer {
            observer.observed(
                &spec.name,
                started.elapsed(),
                read.as_ref().copied().map_err(|e| &e.error),
            );
        }
        match read {
            Ok(value) => {
                lock(&obs).push(&spec.name, Sample { value, at: now });
                tracing::debug!(source = %spec.name, value, "source read");
                if let Some(failed) = streak.succeeded() {
                    tracing::info!(
                        source = %spec.name,
                        failed_reads = failed,
                        "source {} recovered after {}",
                        spec.name,
                        plural(failed, "failed read"),
                    );
                }
            }
            Err(e) => {
                let reason = e.error.to_string();
                lock(&obs).fail(&spec.name, now, reason.as_str());
                let failed = streak.failed();
                if failed == 1 {
                    tracing::warn!(
                        source = %spec.name,
                        class = e.error.class().label(),
                        kind = e.error.label(),
                        "source {} read failed: {reason} (further failures in a row are logged at debug level)",
                        spec.name,
                    );
                } else {
                    tracing::debug!(
                        source = %spec.name,
                        class = e.error.class().label(),
                        kind = e.error.label(),
                        failed_reads = failed,
                        "source {} read failed again: {reason}",
                        spec.name,
                    );
                }
            }
        }
    }
    tracing::debug!(source = %spec.name, "source poller stopped");
}

/// Counts failed reads in a row, to log a streak's start and end once each.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    /// Failed reads since the last good one.
    failures: u32,
}

impl Streak {
    /// Records a failure; returns its number in the streak (1 = the first).
    pub fn failed(&mut self) -> u32 {
        self.failures = self.failures.saturating_add(1);
        self.failures
    }

    /// Records a success; returns how many failures it ends, if any.
    pub fn succeeded(&mut self) -> Option<u32> {
        let ended = std::mem::take(&mut self.failures);
        (ended > 0).then_some(ended)
    }

    /// Failed reads in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// "1 failed read", "5 failed reads".
fn plural(n: u32, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The windows, even if a panicking holder poisoned the lock: they are only ever
/// written whole, so they are still consistent.
fn lock(obs: &SharedObservations) -> MutexGuard<'_, Observations> {
    obs.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streak_counts_failures_in_a_row_and_reports_their_end() {
        let mut s = Streak::default();
        assert_eq!(s.succeeded(), None);
        assert_eq!(s.failed(), 1);
        assert_eq!(s.failed(), 2);
        assert_eq!(s.failed(), 3);
        assert_eq!(s.failures(), 3);
        assert_eq!(s.succeeded(), Some(3));
        assert_eq!(s.succeeded(), None);
        assert_eq!(s.failed(), 1);
    }

    #[test]
    fn plural_reads_well() {
        assert_eq!(plural(1, "failed read"), "1 failed read");
        assert_eq!(plural(5, "failed read"), "5 failed reads");
    }
}
