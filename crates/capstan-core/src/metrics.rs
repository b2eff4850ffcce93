//! Metric windows: the recent samples of each source and whether they are fresh.
//!
//! Sources push samples (or failures) in; policies read a [`MetricView`] per source.
//! A source is *fresh* when its newest sample is no older than its `max_age` and no
//! failure was recorded after it. Policies never scale in on anything but fresh data.
//! The alert state received through webhooks ([`AlertBook`]) travels with the windows.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::alerts::AlertBook;
use crate::clock::{elapsed, sub};
use crate::model::Sample;

/// The window of one source.
#[derive(Debug, Clone)]
pub struct Series {
    /// Samples, oldest first, all within `retention` of the newest push.
    samples: VecDeque<Sample>,
    /// How long samples are kept.
    retention: Duration,
    /// Older than this, the newest sample is stale.
    max_age: Duration,
    /// The newest failure, if it is newer than the newest sample.
    failure: Option<Failure>,
}

/// A failed read of a source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// When the read failed.
    pub at: Timestamp,
    /// Why (already free of secrets).
    pub reason: String,
    /// How many reads in a row have failed.
    pub streak: u32,
}

/// How usable a source's data is now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Freshness {
    /// The newest sample is recent and no read failed since.
    Fresh,
    /// The newest sample is older than `max_age`.
    Stale {
        /// Age of the newest sample.
        age_s: f64,
    },
    /// The latest read failed.
    Failing {
        /// The failure.
        failure: Failure,
    },
    /// Nothing was ever read (or the source is unknown).
    Missing,
}

impl Series {
    /// An empty series keeping `retention` of history, stale after `max_age`.
    pub fn new(retention: Duration, max_age: Duration) -> Self {
        Self {
            samples: VecDeque::new(),
            retention,
            max_age,
            failure: None,
        }
    }

    /// Records a successful read. Samples older than the newest are dropped (a source's
    /// clock cannot run backwards).
    pub fn push(&mut self, sample: Sample) {
        if self.samples.back().is_some_and(|last| sample.at < last.at) {
            return;
        }
        self.failure = None;
        self.samples.push_back(sample);
        let horizon = sub(sample.at, self.retention);
        while self.samples.front().is_some_and(|s| s.at < horizon) {
            self.samples.pop_front();
        }
    }

    /// Records a failed read at `at`.
    pub fn fail(&mut self, at: Timestamp, reason: impl Into<String>) {
        let streak = self.failure.as_ref().map_or(0, |f| f.streak) + 1;
        self.failure = Some(Failure {
            at,
            reason: reason.into(),
            streak,
        });
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    /// The newest `n` samples, oldest first (fewer if the window holds fewer).
    pub fn last_n(
        &self,
        n: usize,
    ) -> impl DoubleEndedIterator<Item = Sample> + ExactSizeIterator + '_ {
        let skip = self.samples.len().saturating_sub(n);
        self.samples.iter().skip(skip).copied()
    }

    /// How usable the data is at `now`.
    pub fn freshness(&self, now: Timestamp) -> Freshness {
        if let Some(f) = &self.failure {
            return Freshness::Failing { failure: f.clone() };
        }
        match self.samples.back() {
            None => Freshness::Missing,
            Some(s) => {
                let age = elapsed(s.at, now);
                if age > self.max_age {
                    Freshness::Stale {
                        age_s: age.as_secs_f64(),
                    }
                } else {
                    Freshness::Fresh
                }
            }
        }
    }
}

/// The windows of every source, by source name.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// One series per source.
    series: BTreeMap<String, Series>,
    /// Alert state received through webhooks, per service (read by `alert` policies).
    alerts: AlertBook,
}

impl Observations {
    /// No sources yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a source (idempotent: an existing series is kept).
    pub fn declare(&mut self, source: &str, retention: Duration, max_age: Duration) {
        self.series
            .entry(source.to_owned())
            .or_insert_with(|| Series::new(retention, max_age));
    }

    /// Gives the window of `source` (declaring it if new) another retention and max
    /// age, keeping its samples (a reload that changed only how much history the
    /// policies need). A shorter retention drops the older samples at the next push.
    pub fn resize(&mut self, source: &str, retention: Duration, max_age: Duration) {
        let series = self
            .series
            .entry(source.to_owned())
            .or_insert_with(|| Series::new(retention, max_age));
        series.retention = retention;
        series.max_age = max_age;
    }

    /// Drops the window of `source` (a source removed or changed by a reload: its old
    /// values must not be read as the new query's).
    pub fn forget(&mut self, source: &str) {
        self.series.remove(source);
    }

    /// Records a sample for `source` (declaring it with 15 min retention and a 1 min
    /// max age if unknown).
    pub fn push(&mut self, source: &str, sample: Sample) {
        self.series_mut(source).push(sample);
    }

    /// Records a failed read of `source`.
    pub fn fail(&mut self, source: &str, at: Timestamp, reason: impl Into<String>) {
        self.series_mut(source).fail(at, reason);
    }

    fn series_mut(&mut self, source: &str) -> &mut Series {
        self.series
            .entry(source.to_owned())
            .or_insert_with(|| Series::new(Duration::from_secs(15 * 60), Duration::from_secs(60)))
    }

    /// The series of `source`, if declared.
    pub fn series(&self, source: &str) -> Option<&Series> {
        self.series.get(source)
    }

    /// A read-only view of `source` at `now`.
    pub fn view<'a>(&'a self, source: &'a str, now: Timestamp) -> MetricView<'a> {
        MetricView {
            name: source,
            series: self.series.get(source),
            now,
        }
    }

    /// Names of all declared sources.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }

    /// The alert state received through webhooks.
    pub fn alerts(&self) -> &AlertBook {
        &self.alerts
    }

    /// The alert state, to record a notification.
    pub fn alerts_mut(&mut self) -> &mut AlertBook {
        &mut self.alerts
    }
}

/// What a policy sees of one source.
#[derive(Debug, Clone, Copy)]
pub struct MetricView<'a> {
    /// The source's name.
    pub name: &'a str,
    /// Its series, if the source is known.
    pub series: Option<&'a Series>,
    /// Evaluation time.
    pub now: Timestamp,
}

impl<'a> MetricView<'a> {
    /// Freshness at `now`.
    pub fn freshness(&self) -> Freshness {
        self.series
            .map_or(Freshness::Missing, |s| s.freshness(self.now))
    }

    /// True when fresh.
    pub fn is_fresh(&self) -> bool {
        matches!(self.freshness(), Freshness::Fresh)
    }

    /// The newest sample, fresh or not.
    pub fn latest(&self) -> Option<Sample> {
        self.series.and_then(Series::latest)
    }

    /// The newest sample if it is no older than `ttl` (used by the `last_known`
    /// fallback).
    pub fn latest_within(&self, ttl: Duration) -> Option<Sample> {
        self.latest().filter(|s| elapsed(s.at, self.now) <= ttl)
    }

    /// The newest `n` samples, oldest first.
    pub fn last_n(&self, n: usize) -> Vec<Sample> {
        self.series.map_or_else(Vec::new, |s| s.last_n(n).collect())
    }
}

/// Metric windows shared between the pollers that write them and the loops that read
/// them. Critical sections are short and never held across an `.await`.
pub type SharedObservations = std::sync::Arc<std::sync::Mutex<Observations>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, VirtualClock};

    #[test]
    fn freshness_follows_age_and_failures() {
        let clock = VirtualClock::at_epoch();
        let mut obs = Observations::new();
        obs.declare("q", Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(obs.view("q", clock.now()).freshness(), Freshness::Missing);
        obs.push(
            "q",
            Sample {
                value: 3.0,
                at: clock.now(),
            },
        );
        assert!(obs.view("q", clock.now()).is_fresh());
        clock.advance(Duration::from_secs(11));
        assert!(matches!(
            obs.view("q", clock.now()).freshness(),
            Freshness::Stale { .. }
        ));
        obs.fail("q", clock.now(), "timeout");
        obs.fail("q", clock.now(), "timeout");
        match obs.view("q", clock.now()).freshness() {
            Freshness::Failing { failure } => assert_eq!(failure.streak, 2),
            other => panic!("expected failing, got {other:?}"),
        }
        obs.push(
            "q",
            Sample {
                value: 4.0,
                at: clock.now(),
            },
        );
        assert!(obs.view("q", clock.now()).is_fresh());
        assert!(matches!(
            obs.view("unknown", clock.now()).freshness(),
            Freshness::Missing
        ));
    }

    #[test]
    fn resizing_a_window_keeps_its_samples_and_prunes_at_the_next_push() {
        let mut obs = Observations::new();
        obs.declare("q", Duration::from_secs(100), Duration::from_secs(10));
        for s in 0..10 {
            obs.push(
                "q",
                Sample {
                    at: Timestamp::from_second(s * 10).unwrap(),
                    value: s as f64,
                },
            );
        }
        obs.resize("q", Duration::from_secs(1000), Duration::from_secs(10));
        assert_eq!(obs.series("q").unwrap().samples().len(), 10);
        obs.resize("q", Duration::from_secs(20), Duration::from_secs(10));
        assert_eq!(obs.series("q").unwrap().samples().len(), 10);
        obs.push(
            "q",
            Sample {
                at: Timestamp::from_second(100).unwrap(),
                value: 10.0,
            },
        );
        let kept: Vec<f64> = obs
            .series("q")
            .unwrap()
            .samples()
            .iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(kept, vec![8.0, 9.0, 10.0]);
    }

    #[test]
    fn retention_prunes_old_samples() {
        let clock = VirtualClock::at_epoch();
        let mut s = Series::new(Duration::from_secs(10), Duration::from_secs(5));
        for i in 0..30 {
            s.push(Sample {
                value: f64::from(i),
                at: clock.now(),
            });
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(s.samples().len(), 11);
        let last: Vec<f64> = s.last_n(3).map(|x| x.value).collect();
        assert_eq!(last, vec![27.0, 28.0, 29.0]);
    }
}
