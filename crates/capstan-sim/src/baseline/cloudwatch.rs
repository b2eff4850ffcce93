//! CloudWatch as the AWS baselines see it (AWS-SEMANTICS §0): per-second samples rolled
//! up into 1-minute datapoints that become visible only some time after their period
//! ends, and alarms that look at the newest visible datapoints once a minute.
//!
//! # Datapoints
//!
//! Periods are 60 s long and aligned to whole minutes (as CloudWatch aligns them). A
//! sample recorded at instant `t` belongs to the period holding `t`; it stands for the
//! time since the previous sample (at most 60 s; the first sample stands for 1 s), which
//! weights `Average` and `Sum` when the simulator steps by more than a second. A period
//! without a sample has no datapoint (*missing*). The datapoint of the period
//! `[s, s + 60)` is published at `s + 60 + publish_delay` (⚠ AWS publishes ECS and ALB
//! metrics about a minute late: the delay is a parameter, 60 s by default).
//!
//! # Alarms
//!
//! An alarm compares each of its newest `evaluation_periods` published datapoints with
//! its threshold (M of N). Missing datapoints are handled as `missing_data` says:
//! `breaching` / `not-breaching` count them as such; `missing` and `ignore` leave them
//! missing. Then, in order:
//! 1. every datapoint missing: `missing` → `INSUFFICIENT_DATA`, `ignore` → state kept;
//! 2. at least M breaching → `ALARM`;
//! 3. fewer than M breaching even if every missing one breached → `OK`;
//! 4. otherwise the missing datapoints would decide: the state is kept (⚠ CloudWatch
//!    then reaches back for older datapoints; keeping the state is our approximation,
//!    and it never turns a partial window into a fresh `ALARM`).
//!
//! Alarms start in `INSUFFICIENT_DATA`.

use std::collections::VecDeque;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Length of a CloudWatch period used by the baselines, milliseconds.
pub const PERIOD_MS: i64 = 60_000;

/// How a period's samples become one datapoint (CloudWatch statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Statistic {
    /// Time-weighted mean of the samples.
    #[default]
    #[serde(alias = "Average")]
    Average,
    /// Sum of the samples, each weighted by the seconds it stands for (a per-second rate
    /// becomes a per-minute count).
    #[serde(alias = "Sum")]
    Sum,
    /// Smallest sample.
    #[serde(alias = "Minimum")]
    Minimum,
    /// Largest sample.
    #[serde(alias = "Maximum")]
    Maximum,
    /// Number of samples.
    #[serde(alias = "SampleCount")]
    SampleCount,
}

impl Statistic {
    /// AWS's name of the statistic.
    pub fn name(self) -> &'static str {
        match self {
            Self::Average => "Average",
            Self::Sum => "Sum",
            Self::Minimum => "Minimum",
            Self::Maximum => "Maximum",
            Self::SampleCount => "SampleCount",
        }
    }
}

/// The samples of one period.
#[derive(Debug, Clone, Copy)]
struct Period {
    start_ms: i64,
    weighted: f64,
    weight: f64,
    min: f64,
    max: f64,
    count: u64,
}

impl Period {
    fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            weighted: 0.0,
            weight: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            count: 0,
        }
    }

    fn add(&mut self, value: f64, weight_s: f64) {
        self.weighted += value * weight_s;
        self.weight += weight_s;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.count += 1;
    }

    fn value(&self, statistic: Statistic) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        Some(match statistic {
            Statistic::Average if self.weight > 0.0 => self.weighted / self.weight,
            Statistic::Average => return None,
            Statistic::Sum => self.weighted,
            Statistic::Minimum => self.min,
            Statistic::Maximum => self.max,
            // Exact: a sample count stays far below 2^53.
            Statistic::SampleCount => self.count as f64,
        })
    }
}

/// CloudWatch's view of one per-second metric: 1-minute datapoints of one statistic,
/// each visible `publish_delay` after its period ends. Keeps only the newest periods
/// (memory stays flat however long the run).
#[derive(Debug, Clone)]
pub struct CloudWatchMetric {
    statistic: Statistic,
    delay_ms: i64,
    keep: usize,
    periods: VecDeque<Period>,
    last_ms: Option<i64>,
}

impl CloudWatchMetric {
    /// A metric with no data yet, reduced by `statistic`, published `publish_delay_s`
    /// after each period ends, remembering the newest `keep_periods` periods (at least
    /// the alarms' evaluation periods plus the periods the delay spans).
    pub fn new(statistic: Statistic, publish_delay_s: u32, keep_periods: usize) -> Self {
        Self {
            statistic,
            delay_ms: i64::from(publish_delay_s) * 1000,
            keep: keep_periods.max(1),
            periods: VecDeque::new(),
            last_ms: None,
        }
    }

    /// The statistic of the datapoints.
    pub fn statistic(&self) -> Statistic {
        self.statistic
    }

    /// Records the metric's value at `now` (`None`: no value, nothing is published for
    /// this instant). A sample not later than the previous one is ignored.
    pub fn record(&mut self, now: Timestamp, value: Option<f64>) {
        let now_ms = now.as_millisecond();
        let weight_s = match self.last_ms {
            Some(last) if now_ms <= last => return,
            Some(last) => ((now_ms - last) as f64 / 1000.0).min(60.0),
            None => 1.0,
        };
        self.last_ms = Some(now_ms);
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return;
        };
        let start_ms = now_ms.div_euclid(PERIOD_MS) * PERIOD_MS;
        if self.periods.back().is_none_or(|p| p.start_ms != start_ms) {
            self.periods.push_back(Period::new(start_ms));
            while self.periods.len() > self.keep {
                self.periods.pop_front();
            }
        }
        if let Some(p) = self.periods.back_mut() {
            p.add(value, weight_s);
        }
    }

    /// The start of the newest period whose datapoint is published at `at`.
    pub fn newest_published(&self, at: Timestamp) -> Timestamp {
        let start_ms = self.newest_published_ms(at.as_millisecond());
        Timestamp::from_millisecond(start_ms).unwrap_or(Timestamp::MIN)
    }

    fn newest_published_ms(&self, at_ms: i64) -> i64 {
        (at_ms - self.delay_ms - PERIOD_MS).div_euclid(PERIOD_MS) * PERIOD_MS
    }

    /// The datapoint of the period starting at `period_start` (published or not); `None`
    /// when missing or no longer kept.
    pub fn datapoint(&self, period_start: Timestamp) -> Option<f64> {
        self.datapoint_ms(period_start.as_millisecond())
    }

    fn datapoint_ms(&self, start_ms: i64) -> Option<f64> {
        self.periods
            .iter()
            .rev()
            .find(|p| p.start_ms == start_ms)
            .and_then(|p| p.value(self.statistic))
    }

    /// The datapoints of the `n` newest periods published at `at`, oldest first; `None`
    /// where a datapoint is missing.
    pub fn window(&self, at: Timestamp, n: usize) -> Vec<Option<f64>> {
        self.window_at(at.as_millisecond(), n)
    }

    /// [`Self::window`] at a millisecond instant.
    pub(super) fn window_at(&self, at_ms: i64, n: usize) -> Vec<Option<f64>> {
        let newest = self.newest_published_ms(at_ms);
        (0..n)
            .rev()
            .map(|back| self.datapoint_ms(newest - back as i64 * PERIOD_MS))
            .collect()
    }
}

/// How an alarm compares a datapoint with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Comparison {
    /// Breaching when above the threshold.
    #[serde(alias = "GreaterThanThreshold")]
    GreaterThanThreshold,
    /// Breaching when at or above the threshold.
    #[serde(alias = "GreaterThanOrEqualToThreshold")]
    GreaterThanOrEqualToThreshold,
    /// Breaching when below the threshold.
    #[serde(alias = "LessThanThreshold")]
    LessThanThreshold,
    /// Breaching when at or below the threshold.
    #[serde(alias = "LessThanOrEqualToThreshold")]
    LessThanOrEqualToThreshold,
}

impl Comparison {
    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::GreaterThanThreshold => value > threshold,
            Self::GreaterThanOrEqualToThreshold => value >= threshold,
            Self::LessThanThreshold => value < threshold,
            Self::LessThanOrEqualToThreshold => value <= threshold,
        }
    }

    /// The operator, for reasons (`>`, `≥`, `<`, `≤`).
    pub fn symbol(self) -> &'static str {
        match self {
            Self::GreaterThanThreshold => ">",
            Self::GreaterThanOrEqualToThreshold => "≥",
            Self::LessThanThreshold => "<",
            Self::LessThanOrEqualToThreshold => "≤",
        }
    }

    /// Whether breaching means "above" (the side a scale-out alarm usually watches).
    pub fn is_upper(self) -> bool {
        matches!(
            self,
            Self::GreaterThanThreshold | Self::GreaterThanOrEqualToThreshold
        )
    }
}

/// How an alarm treats a missing datapoint (`TreatMissingData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingData {
    /// Neither breaching nor not; all missing → `INSUFFICIENT_DATA` (AWS default).
    #[default]
    Missing,
    /// Neither breaching nor not; all missing → the state is kept.
    Ignore,
    /// Counts as breaching.
    Breaching,
    /// Counts as not breaching.
    #[serde(alias = "notBreaching")]
    NotBreaching,
}

/// The state of an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AlarmState {
    /// Not breaching.
    Ok,
    /// Breaching: the alarm's action (a scaling policy) runs, and runs again every
    /// minute while the state lasts.
    Alarm,
    /// Not enough data to tell (the initial state).
    InsufficientData,
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
        })
    }
}

/// What an alarm checks: threshold, comparison, M of N, missing-data treatment. The
/// period is always 60 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmRule {
    /// The threshold.
    pub threshold: f64,
    /// How datapoints are compared with it.
    pub comparison: Comparison,
    /// Breaching datapoints needed (M, `DatapointsToAlarm`).
    pub datapoints: u32,
    /// Datapoints looked at (N, `EvaluationPeriods`).
    pub evaluation_periods: u32,
    /// Treatment of missing datapoints.
    pub missing: MissingData,
}

/// The outcome of one alarm evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The state after the evaluation.
    pub state: AlarmState,
    /// Breaching datapoints (missing ones counted as breaching included).
    pub breaching: u32,
    /// Datapoints still missing after the treatment.
    pub missing: u32,
    /// Datapoints looked at.
    pub periods: u32,
    /// The values of the present breaching datapoints, oldest first.
    pub breaching_values: Vec<f64>,
    /// The newest datapoint of the window, if present.
    pub newest: Option<f64>,
}

/// A CloudWatch alarm on a 60 s period.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    name: String,
    rule: AlarmRule,
    state: AlarmState,
}

impl Alarm {
    /// A new alarm in `INSUFFICIENT_DATA`.
    pub fn new(name: &str, rule: AlarmRule) -> Self {
        Self {
            name: name.to_owned(),
            rule,
            state: AlarmState::InsufficientData,
        }
    }

    /// Its name (`AlarmHigh`, `out`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it checks.
    pub fn rule(&self) -> &AlarmRule {
        &self.rule
    }

    /// Its current state.
    pub fn state(&self) -> AlarmState {
        self.state
    }

    /// Evaluates the newest datapoints (oldest first; only the last
    /// `evaluation_periods` count, and fewer count as missing) and moves to the
    /// resulting state.
    pub fn evaluate(&mut self, window: &[Option<f64>]) -> Evaluation {
        let n = self.rule.evaluation_periods as usize;
        let window = &window[window.len().saturating_sub(n)..];
        let mut breaching = 0u32;
        // Periods absent from a short window are missing too.
        let mut missing = u32::try_from(n - window.len()).unwrap_or(u32::MAX);
        let mut breaching_values = Vec::new();
        for point in window {
            match point {
                Some(v) if self.rule.comparison.breaches(*v, self.rule.threshold) => {
                    breaching += 1;
                    breaching_values.push(*v);
                }
                Some(_) => {}
                None => missing += 1,
            }
        }
        match self.rule.missing {
            MissingData::Breaching => {
                breaching += missing;
                missing = 0;
            }
            MissingData::NotBreaching => missing = 0,
            MissingData::Missing | MissingData::Ignore => {}
        }
        let m = self.rule.datapoints;
        let all_missing = missing as usize == n;
        self.state = if all_missing {
            match self.rule.missing {
                MissingData::Ignore => self.state,
                _ => AlarmState::InsufficientData,
            }
        } else if breaching >= m {
            AlarmState::Alarm
        } else if breaching + missing < m {
            AlarmState::Ok
        } else {
            self.state
        };
        Evaluation {
            state: self.state,
            breaching,
            missing,
            periods: self.rule.evaluation_periods,
            breaching_values,
            newest: window.last().copied().flatten(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn datapoints_are_minute_periods_published_late() {
        let mut m = CloudWatchMetric::new(Statistic::Average, 60, 10);
        for s in 0..120 {
            m.record(at(s), Some(if s < 60 { 10.0 } else { 20.0 }));
        }
        assert_eq!(m.datapoint(at(0)), Some(10.0));
        assert_eq!(m.datapoint(at(60)), Some(20.0));
        // Period [0, 60) is published at 120, [60, 120) at 180.
        assert_eq!(m.window(at(119), 1), vec![None]);
        assert_eq!(m.newest_published(at(120)), at(0));
        assert_eq!(m.window(at(120), 2), vec![None, Some(10.0)]);
        assert_eq!(m.window(at(180), 2), vec![Some(10.0), Some(20.0)]);
    }

    #[test]
    fn statistics_weight_samples_by_the_time_they_stand_for() {
        let run = |stat| {
            let mut m = CloudWatchMetric::new(stat, 0, 4);
            // 0 s: 1 (1 s), 10 s: 4 (10 s), 40 s: 1 (30 s), 41 s: no value.
            m.record(at(0), Some(1.0));
            m.record(at(10), Some(4.0));
            m.record(at(40), Some(1.0));
            m.record(at(41), None);
            m.datapoint(at(0)).unwrap()
        };
        assert_eq!(run(Statistic::Sum), 1.0 + 40.0 + 30.0);
        assert_eq!(run(Statistic::Average), 71.0 / 41.0);
        assert_eq!(run(Statistic::Minimum), 1.0);
        assert_eq!(run(Statistic::Maximum), 4.0);
        assert_eq!(run(Statistic::SampleCount), 3.0);
    }

    #[test]
    fn old_periods_are_forgotten_and_late_samples_ignored() {
        let mut m = CloudWatchMetric::new(Statistic::Maximum, 0, 2);
        for s in (0..300).step_by(30) {
            m.record(at(s), Some(s as f64));
        }
        m.record(at(10), Some(1000.0));
        assert_eq!(m.datapoint(at(0)), None);
        assert_eq!(m.datapoint(at(180)), Some(210.0));
        assert_eq!(m.datapoint(at(240)), Some(270.0));
    }

    fn rule(m: u32, n: u32, missing: MissingData) -> AlarmRule {
        AlarmRule {
            threshold: 50.0,
            comparison: Comparison::GreaterThanThreshold,
            datapoints: m,
            evaluation_periods: n,
            missing,
        }
    }

    #[test]
    fn m_of_n_with_missing_data() {
        use AlarmState::{Alarm as A, InsufficientData, Ok};
        let (x, o, g) = (Some(60.0), Some(40.0), None);
        let cases: &[(MissingData, &[Option<f64>], AlarmState, AlarmState)] = &[
            // (treatment, window, state before, state after), M = 2 of N = 3.
            (MissingData::Missing, &[x, o, x], InsufficientData, A),
            (MissingData::Missing, &[o, o, x], A, Ok),
            (MissingData::Missing, &[g, g, g], A, InsufficientData),
            (
                MissingData::Missing,
                &[g, g, x],
                InsufficientData,
                InsufficientData,
            ),
            (MissingData::Missing, &[g, g, x], Ok, Ok),
            (MissingData::Missing, &[g, o, o], A, Ok),
            (MissingData::Missing, &[g, x, o], A, A),
            (MissingData::Ignore, &[g, g, g], A, A),
            (MissingData::Ignore, &[g, g, g], Ok, Ok),
            (MissingData::Breaching, &[g, g, o], Ok, A),
            (MissingData::Breaching, &[g, o, o], A, Ok),
            (MissingData::NotBreaching, &[g, g, g], A, Ok),
            (MissingData::NotBreaching, &[x, g, x], Ok, A),
        ];
        for (treat, window, before, after) in cases {
            let mut a = Alarm::new("a", rule(2, 3, *treat));
            a.state = *before;
            let e = a.evaluate(window);
            assert_eq!(e.state, *after, "{treat:?} {window:?} from {before}");
            assert_eq!(a.state(), *after);
        }
    }

    #[test]
    fn alarms_start_without_data_and_short_windows_count_as_missing() {
        let mut a = Alarm::new("a", rule(3, 3, MissingData::Missing));
        assert_eq!(a.state(), AlarmState::InsufficientData);
        let e = a.evaluate(&[Some(60.0), Some(70.0)]);
        assert_eq!(
            (e.state, e.breaching, e.missing),
            (AlarmState::InsufficientData, 2, 1)
        );
        let e = a.evaluate(&[Some(1.0), Some(60.0), Some(70.0), Some(80.0)]);
        assert_eq!(e.state, AlarmState::Alarm);
        assert_eq!(e.breaching_values, vec![60.0, 70.0, 80.0]);
        assert_eq!(e.newest, Some(80.0));
    }

    #[test]
    fn comparisons_at_the_threshold() {
        assert!(!Comparison::GreaterThanThreshold.breaches(50.0, 50.0));
        assert!(Comparison::GreaterThanOrEqualToThreshold.breaches(50.0, 50.0));
        assert!(!Comparison::LessThanThreshold.breaches(50.0, 50.0));
        assert!(Comparison::LessThanOrEqualToThreshold.breaches(50.0, 50.0));
        assert!(Comparison::LessThanThreshold.breaches(49.9, 50.0));
    }
}
