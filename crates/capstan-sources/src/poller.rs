//! The poller: one task per source, reading it on its interval into the shared metric
//! windows.
//!
//! Expected flow, per source: declare its window (retention, max age); read at once,
//! then every `interval` (a late tick is delayed, never bunched up); each read goes
//! through [`read_once`] (timeout backstop, boundary validation); a value becomes a
//! [`Sample`] stamped with the [`Clock`]'s now, a failure is recorded with its reason, so
//! the window turns "failing" and the planner holds.
//!
//! Retries: a failure of a transient class (connect, timeout, server) is tried again
//! within the same interval, up to `spec.retries` times, after an exponential backoff
//! with full jitter ([`crate::retry`]); a retry never starts after the interval has
//! passed. Every attempt is seen by the observer (so errors are counted per attempt);
//! the window gets the interval's outcome once.
//!
//! Sharing: sources identical except their name read once per interval and feed every
//! window ([`spawn_all`]).
//!
//! Logging, per source and error class ([`crate::log_limit`]): the first failure at
//! WARN, then at most one WARN per minute saying how many failures were left out (the
//! rest at TRACE); the end of a streak whose start was logged once at INFO ("source
//! queue recovered after 5 failed reads").
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
use crate::log_limit::{LogLimiter, Verdict};
use crate::push::PushStore;
use crate::retry::{Backoff, is_transient};
use crate::spec::{SourceKind, SourceSpec};
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
/// polling task per distinct query ([`run_poller`]). Must be called within a Tokio
/// runtime.
///
/// Sources whose settings are identical except their name, retention and max age (the
/// same kind settings, interval, timeout, value kind and retries) share one read: it is
/// made once per interval, by one source object (so one connection pool), and its
/// value or failure goes into every such source's window. `push` sources are never
/// shared (each reads its own name).
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
    for spec in specs {
        if !names.insert(spec.name.as_str()) {
            return Err(SourceError::new(
                &spec.name,
                ReadError::Config("two sources have this name".into()),
            ));
        }
    }
    let mut built = Vec::new();
    for group in share(specs) {
        let leader = &specs[group[0]];
        let source = build_with(leader, hooks.push.as_ref())?;
        let names = group.iter().map(|&i| specs[i].name.clone()).collect();
        built.push((leader.clone(), names, source));
    }
    {
        let mut windows = lock(&obs);
        for spec in specs {
            windows.declare(&spec.name, spec.retention, spec.max_age);
        }
    }
    let mut tasks = JoinSet::new();
    for (spec, names, source) in built {
        tasks.spawn(poll(
            Poll {
                spec,
                names,
                obs: Arc::clone(&obs),
                clock: Arc::clone(&clock),
                observer: hooks.observer.clone(),
            },
            source,
            cancel.clone(),
        ));
    }
    Ok(tasks)
}

/// The sources of `specs` grouped by identical query (indices into `specs`, in order;
/// each group's first is its leader).
fn share(specs: &[SourceSpec]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let shared = shareable(spec)
            .then(|| groups.iter_mut().find(|g| same_query(&specs[g[0]], spec)))
            .flatten();
        match shared {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// Whether a source's read may serve other sources (a push source reads its own name).
fn shareable(spec: &SourceSpec) -> bool {
    !matches!(spec.kind, SourceKind::Push(_) | SourceKind::Simulated(_))
}

/// Whether `a` and `b` read the same thing the same way (their names, retention and
/// max age may differ).
fn same_query(a: &SourceSpec, b: &SourceSpec) -> bool {
    shareable(a)
        && a.interval == b.interval
        && a.timeout == b.timeout
        && a.value == b.value
        && a.retries == b.retries
        && a.kind == b.kind
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
    let names = vec![spec.name.clone()];
    let poll_of = Poll {
        spec,
        names,
        obs,
        clock,
        observer,
    };
    poll(poll_of, source, cancel).await;
}

/// What one polling task reads and where it records.
struct Poll {
    /// The settings of the read (the leader's, for shared sources).
    spec: SourceSpec,
    /// The windows fed (one name, or every source sharing the read).
    names: Vec<String>,
    /// The windows.
    obs: SharedObservations,
    /// Stamps samples and failures.
    clock: Arc<dyn Clock>,
    /// Sees every attempt, once per name.
    observer: Option<Arc<dyn ReadObserver>>,
}

impl Poll {
    /// Tells the observer about one attempt, for every name.
    fn observe(&self, took: Duration, read: &Result<f64, SourceError>) {
        if let Some(observer) = &self.observer {
            for name in &self.names {
                observer.observed(name, took, read.as_ref().copied().map_err(|e| &e.error));
            }
        }
    }
}

/// The polling loop of one read (one source, or several sharing it): at each tick, up
/// to `1 + retries` attempts (transient failures only, with backoff, never past the
/// interval), then the value or the last failure into every window.
async fn poll(p: Poll, source: Box<dyn Source>, cancel: CancellationToken) {
    let label = p.names.join(", ");
    let interval = p.spec.interval.max(MIN_INTERVAL);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backoff = Backoff::for_interval(interval, Backoff::seed_of(&p.spec.name));
    let mut streak = Streak::default();
    let mut limiter = LogLimiter::default();
    // Whether the current streak's first failure was logged (its end is logged then).
    let mut streak_logged = false;
    'ticks: loop {
        let tick = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            tick = ticker.tick() => tick,
        };
        let mut attempt: u32 = 0;
        let read = loop {
            let started = tokio::time::Instant::now();
            let read = tokio::select! {
                biased;
                () = cancel.cancelled() => break 'ticks,
                read = read_once(source.as_ref(), &p.spec) => read,
            };
            p.observe(started.elapsed(), &read);
            let Err(e) = &read else { break read };
            let failed = streak.failed();
            let class = e.error.class();
            let retry = is_transient(class) && attempt < p.spec.retries;
            let delay = retry.then(|| backoff.delay(attempt));
            let now = tokio::time::Instant::now();
            let delay = delay.filter(|d| now + *d < tick + interval);
            let note = match delay {
                Some(d) => format!(
                    "; retry {} of {} in {:?}",
                    attempt + 1,
                    p.spec.retries,
                    round_ms(d)
                ),
                None => String::new(),
            };
            match limiter.failure(class, now) {
                Verdict::Log { suppressed, since } => {
                    if failed == 1 {
                        streak_logged = true;
                    }
                    let left_out = match (suppressed, since) {
                        (0, _) | (_, None) => String::new(),
                        (n, Some(since)) => format!(
                            " ({} of class {class} not logged in the last {})",
                            plural(n, "more failure"),
                            whole_seconds(since),
                        ),
                    };
                    tracing::warn!(
                        source = %label,
                        class = class.label(),
                        kind = e.error.label(),
                        failed_reads = failed,
                        suppressed,
                        "source {label} read failed: {}{note}{left_out}",
                        e.error,
                    );
                }
                Verdict::Suppress => {
                    tracing::trace!(
                        source = %label,
                        class = class.label(),
                        failed_reads = failed,
                        "source {label} read failed again: {}{note}",
                        e.error,
                    );
                }
            }
            let Some(delay) = delay else { break read };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break 'ticks,
                () = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        };
        let now = p.clock.now();
        match read {
            Ok(value) => {
                {
                    let mut windows = lock(&p.obs);
                    for name in &p.names {
                        windows.push(name, Sample { value, at: now });
                    }
                }
                tracing::debug!(source = %label, value, "source read");
                if let Some(failed) = streak.succeeded()
                    && std::mem::take(&mut streak_logged)
                {
                    tracing::info!(
                        source = %label,
                        failed_reads = failed,
                        "source {label} recovered after {}",
                        plural(u64::from(failed), "failed read"),
                    );
                }
            }
            Err(e) => {
                let reason = e.error.to_string();
                let mut windows = lock(&p.obs);
                for name in &p.names {
                    windows.fail(name, now, reason.as_str());
                }
            }
        }
    }
    tracing::debug!(source = %label, "source poller stopped");
}

/// `d` rounded to whole milliseconds, for log lines.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `d` as whole seconds, e.g. "60s".
fn whole_seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
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
fn plural(n: u64, what: &str) -> String {
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
