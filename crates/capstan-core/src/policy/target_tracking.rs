//! Target tracking: keep a metric at a target value.
//!
//! Per-task metrics (CPU %, requests per task): desired = ceil(running × value / target).
//! Totals (queue depth): desired = ceil(total / target), the target being per task.
//!
//! # The tolerance band
//!
//! Both modes compare the *load per running task* with the target: in `per_task` mode
//! that is the value itself; in `total` mode it is total ÷ running (with nobody running,
//! any positive total is an infinite load and a total of 0 is no load). Nothing changes
//! while the load lies within `target × (1 ± tolerance)`:
//!
//! - scale-out when the newest `datapoints.out` samples are **all** above
//!   `target × (1 + tolerance)`; the count is computed from the newest sample;
//! - scale-in when the newest `datapoints.in` samples are **all** below
//!   `target × (1 − tolerance)`; the count is computed from the *largest* of those samples,
//!   so a brief dip never removes more than the whole window supports;
//! - otherwise hold (which also blocks other policies' scale-in), including while a
//!   breach has lasted for fewer samples than required ("2 of 3 datapoints").
//!
//! Counts are computed from `capacity.running` (AWS computes from running tasks) and
//! rounded up, so a scale-out never adds too little and a scale-in never lands the load
//! per task above the target. A scale-out never asks for fewer than `capacity.desired`
//! (tasks already pending absorb it: hold), and a scale-in never asks for more. From 0
//! running tasks in `per_task` mode, any positive value asks for 1 task (AWS adds the
//! smallest amount from zero, then scales proportionally); `total` mode needs no special
//! case. With `disable_scale_in`, everything except a scale-out (or missing data) is an
//! abstention, so another policy owns scale-in.
//!
//! This module also holds the window-reading helpers every metric-driven policy shares
//! ([`read`], [`Data`]): freshness, the `last_known` fallback, and safe count rounding.

use std::fmt;

use serde::Serialize;

use super::{Ask, Datapoints, Outcome, PolicyError, PolicyInput};
use crate::metrics::{Freshness, Series};
use crate::model::Sample;

/// Whether the metric is per task or a total over the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingMode {
    /// The metric is an average per task (CPU %, requests per task).
    PerTask,
    /// The metric is a total (queue depth); the target is per task.
    Total,
}

/// Settings of a target tracking policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetTracking {
    /// Source name of the metric.
    pub metric: String,
    /// Per-task or total.
    pub mode: TrackingMode,
    /// The value to hold (per task in `total` mode). > 0.
    pub target: f64,
    /// Relative band around the target inside which nothing changes (0.1 = ±10%).
    pub tolerance: f64,
    /// Consecutive breaching samples needed per direction.
    pub datapoints: Datapoints,
    /// Never ask for fewer tasks (abstain instead), so another policy owns scale-in.
    pub disable_scale_in: bool,
}

impl TargetTracking {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        if self.metric.trim().is_empty() {
            errors.push(PolicyError::new("metric", "must name a source"));
        }
        validate_target("target", self.target, &mut errors);
        validate_tolerance("tolerance", self.tolerance, &mut errors);
        validate_datapoints(self.datapoints, &mut errors);
        errors
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Outcome {
        match read(input, &self.metric) {
            Ok(data) => self.tracker(self.target).run(&data, input, ""),
            Err(why) => (
                Ask::NoData {
                    sources: vec![self.metric.clone()],
                },
                why,
                false,
            ),
        }
    }

    fn tracker(&self, target: f64) -> Tracker<'_> {
        Tracker {
            metric: &self.metric,
            mode: self.mode,
            target,
            tolerance: self.tolerance,
            datapoints: self.datapoints,
            disable_scale_in: self.disable_scale_in,
        }
    }
}

/// Checks a target value (finite, > 0).
pub(super) fn validate_target(field: &str, target: f64, errors: &mut Vec<PolicyError>) {
    if !target.is_finite() || target <= 0.0 {
        errors.push(PolicyError::new(
            field,
            format!("must be a finite number above 0 (got {target})"),
        ));
    }
}

/// Checks a tolerance (finite, in [0, 1)).
pub(super) fn validate_tolerance(field: &str, tolerance: f64, errors: &mut Vec<PolicyError>) {
    if !tolerance.is_finite() || !(0.0..1.0).contains(&tolerance) {
        errors.push(PolicyError::new(
            field,
            format!("must be at least 0 and below 1 (0.1 = ±10%; got {tolerance})"),
        ));
    }
}

/// Checks both datapoint counts (≥ 1).
pub(super) fn validate_datapoints(datapoints: Datapoints, errors: &mut Vec<PolicyError>) {
    if datapoints.out == 0 {
        errors.push(PolicyError::new("datapoints.out", "must be at least 1"));
    }
    if datapoints.r#in == 0 {
        errors.push(PolicyError::new("datapoints.in", "must be at least 1"));
    }
}

/// The target-tracking computation, borrowed from a policy's settings so that other
/// policies (backlog per task, with its dynamic target) run the very same code.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tracker<'a> {
    /// Source name, for reasons.
    pub metric: &'a str,
    /// Per-task or total.
    pub mode: TrackingMode,
    /// The target (> 0).
    pub target: f64,
    /// Relative tolerance in [0, 1).
    pub tolerance: f64,
    /// Datapoints per direction.
    pub datapoints: Datapoints,
    /// Abstain instead of asking for fewer (or holding).
    pub disable_scale_in: bool,
}

/// Relative slack on the band's edges so that float noise (`3 × 0.1 / 3`) never counts as
/// a breach.
const EDGE_SLACK: f64 = 1e-9;

impl Tracker<'_> {
    /// Builds a tracker for `metric` in `total` mode with `target` per task (used by the
    /// backlog policy).
    pub(super) fn total<'a>(
        metric: &'a str,
        target: f64,
        tolerance: f64,
        datapoints: Datapoints,
    ) -> Tracker<'a> {
        Tracker {
            metric,
            mode: TrackingMode::Total,
            target,
            tolerance,
            datapoints,
            disable_scale_in: false,
        }
    }

    /// Load per running task for a sample `value`.
    fn load(&self, value: f64, running: u32) -> f64 {
        match self.mode {
            TrackingMode::PerTask if running > 0 => value,
            TrackingMode::Total if running > 0 => value / f64::from(running),
            // Nobody running: any positive value is load nobody carries.
            _ if value > 0.0 => f64::INFINITY,
            _ => 0.0,
        }
    }

    /// The band's edges in the metric's own terms, so that the per-sample test is one
    /// comparison: a sample breaches upward when `value > out` and downward when
    /// `value < in`. Equivalent to comparing [`load`](Self::load) with
    /// `high × (1 + slack)` and `low × (1 − slack)`.
    fn value_edges(&self, running: u32, high: f64, low: f64) -> (f64, f64) {
        let (high, low) = (high * (1.0 + EDGE_SLACK), low * (1.0 - EDGE_SLACK));
        match self.mode {
            TrackingMode::PerTask if running > 0 => (high, low),
            TrackingMode::Total if running > 0 => {
                let r = f64::from(running);
                (high * r, low * r)
            }
            // Nobody running: any positive value breaches upward (infinite load), and only
            // a value ≤ 0 breaches downward (no load, below any positive edge). The
            // smallest positive float makes `value < in` mean `value ≤ 0`.
            _ => (0.0, f64::from_bits(1)),
        }
    }

    /// The count that brings the load back to the target, with its explanation.
    fn desired_for(&self, value: f64, running: u32) -> (u32, String) {
        let metric = self.metric;
        let (v, t) = (Num(value), Num(self.target));
        match self.mode {
            TrackingMode::PerTask if running == 0 => {
                let n = u32::from(value > 0.0);
                (
                    n,
                    format!(
                        "{metric} {v} per task with 0 running → {n} (from zero: the smallest step)"
                    ),
                )
            }
            TrackingMode::PerTask => {
                let n = ceil_count(f64::from(running) * (value / self.target));
                (
                    n,
                    format!("{metric} {v} per task × {running} running / {t} → {n}"),
                )
            }
            TrackingMode::Total => {
                let n = ceil_count(value / self.target);
                (n, format!("{metric} {v} total / {t} per task → {n}"))
            }
        }
    }

    /// Runs target tracking on `data`. `prefix` is put before the reason (e.g. how a
    /// dynamic target was obtained).
    pub(super) fn run(&self, data: &Data<'_>, input: &PolicyInput<'_>, prefix: &str) -> Outcome {
        let degraded = data.is_degraded();
        let (ask, reason) = self.decide(data, input);
        let ask = match ask {
            Ask::Desired { count } if count > input.capacity.desired => ask,
            Ask::NoData { .. } => ask,
            _ if self.disable_scale_in => Ask::Abstain,
            other => other,
        };
        let mut full = String::with_capacity(prefix.len() + reason.len() + 40);
        full.push_str(prefix);
        full.push_str(&reason);
        if degraded {
            full.push_str(" [last-known value]");
        }
        if self.disable_scale_in && ask == Ask::Abstain {
            full.push_str(" (scale-in disabled: abstain)");
        }
        (ask, full, degraded)
    }

    fn decide(&self, data: &Data<'_>, input: &PolicyInput<'_>) -> (Ask, String) {
        let running = input.capacity.running;
        let desired = input.capacity.desired;
        let high = self.target * (1.0 + self.tolerance);
        let low = self.target * (1.0 - self.tolerance);
        let unit = match self.mode {
            TrackingMode::PerTask => "",
            TrackingMode::Total => " per task",
        };
        let out_n = self.datapoints.out;
        let in_n = self.datapoints.r#in;
        let (out_edge, in_edge) = self.value_edges(running, high, low);

        match data.streak(out_n, |v| v > out_edge) {
            Streak::Met => {
                let (want, why) = self.desired_for(data.newest(), running);
                let window = data.describe_window(out_n, "above", high, unit);
                if want > desired {
                    return (Ask::Desired { count: want }, format!("{why} ({window})"));
                }
                return (
                    Ask::Hold,
                    format!("{why} ({window}); {desired} already desired: hold"),
                );
            }
            Streak::Short { have } => {
                return (
                    Ask::Hold,
                    format!(
                        "{} above {}{unit} for {have} of {out_n} datapoints: hold",
                        self.metric,
                        Num(high)
                    ),
                );
            }
            Streak::Broken => {}
        }

        match data.streak(in_n, |v| v < in_edge) {
            Streak::Met => {
                let (want, why) = self.desired_for(data.max_of(in_n), running);
                let window = data.describe_window(in_n, "below", low, unit);
                if want >= desired {
                    (
                        Ask::Hold,
                        format!("{why} ({window}); not below the {desired} desired: hold"),
                    )
                } else if data.is_degraded() {
                    (
                        Ask::Hold,
                        format!("{why} ({window}); no scale-in on a last-known value: hold"),
                    )
                } else {
                    (Ask::Desired { count: want }, format!("{why} ({window})"))
                }
            }
            Streak::Short { have } => (
                Ask::Hold,
                format!(
                    "{} below {}{unit} for {have} of {in_n} datapoints: hold",
                    self.metric,
                    Num(low)
                ),
            ),
            Streak::Broken => {
                let newest = data.newest();
                let load = self.load(newest, running);
                if load <= high * (1.0 + EDGE_SLACK) && load >= low * (1.0 - EDGE_SLACK) {
                    (
                        Ask::Hold,
                        format!(
                            "{} {}{unit} within {} ±{}%: hold",
                            self.metric,
                            Num(load),
                            Num(self.target),
                            Num(self.tolerance * 100.0)
                        ),
                    )
                } else {
                    let (dir, n, edge) = if load > high {
                        ("above", out_n, high)
                    } else {
                        ("below", in_n, low)
                    };
                    (
                        Ask::Hold,
                        format!(
                            "{} {}{unit}, but not all of the last {n} datapoints {dir} {}{unit}: hold",
                            self.metric,
                            Num(load),
                            Num(edge)
                        ),
                    )
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading metric windows (shared by every metric-driven policy).
// ---------------------------------------------------------------------------------------

/// The usable data of one source.
#[derive(Debug, Clone, Copy)]
pub(super) enum Data<'a> {
    /// The source is fresh: its whole window.
    Fresh(&'a Series),
    /// The source is not fresh, but its newest sample is within the `last_known` TTL: that
    /// value alone stands for every datapoint, and the result is degraded.
    LastKnown(Sample),
}

/// Whether the newest N samples all satisfy a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Streak {
    /// N samples (or the last-known value) all satisfy it.
    Met,
    /// Some sample does not.
    Broken,
    /// All present samples do, but there are fewer than N.
    Short {
        /// How many samples there are.
        have: usize,
    },
}

/// Reads `source` for a policy: fresh data, the last-known fallback, or why neither is
/// usable (naming the source and its freshness).
pub(super) fn read<'a>(input: &PolicyInput<'a>, source: &'a str) -> Result<Data<'a>, String> {
    let view = input.metrics.view(source, input.now);
    let freshness = view.freshness();
    if let (Freshness::Fresh, Some(series)) = (&freshness, view.series) {
        return Ok(Data::Fresh(series));
    }
    if let Some(sample) = input.last_known.and_then(|ttl| view.latest_within(ttl)) {
        return Ok(Data::LastKnown(sample));
    }
    let mut why = match freshness {
        Freshness::Fresh | Freshness::Missing => format!("{source} has no data"),
        Freshness::Stale { age_s } => {
            format!("{source} is stale (newest sample {}s old)", Num(age_s))
        }
        Freshness::Failing { failure } => format!(
            "{source} is failing ({} failed read(s) in a row: {})",
            failure.streak, failure.reason
        ),
    };
    if let Some(ttl) = input.last_known {
        why.push_str(&format!(
            "; no sample within the last-known limit of {}s",
            Num(ttl.as_secs_f64())
        ));
    }
    Err(why)
}

impl Data<'_> {
    /// True when this is a last-known value rather than fresh data.
    pub(super) fn is_degraded(&self) -> bool {
        matches!(self, Data::LastKnown(_))
    }

    /// The newest value.
    pub(super) fn newest(&self) -> f64 {
        match self {
            // A fresh series always holds a sample; 0 is never reached in practice.
            Data::Fresh(series) => series.latest().map_or(0.0, |s| s.value),
            Data::LastKnown(s) => s.value,
        }
    }

    /// Whether the newest `n` samples all satisfy `pred` (the last-known value stands for
    /// all `n`).
    pub(super) fn streak(&self, n: u32, pred: impl Fn(f64) -> bool) -> Streak {
        match self {
            Data::LastKnown(s) => {
                if pred(s.value) {
                    Streak::Met
                } else {
                    Streak::Broken
                }
            }
            Data::Fresh(series) => {
                let n = to_usize(n);
                let (older, newer) = tail(series, n);
                // Newest first: a breach usually ends at the newest sample.
                let all = newer
                    .iter()
                    .rev()
                    .chain(older.iter().rev())
                    .all(|s| pred(s.value));
                let have = older.len() + newer.len();
                match (all, have >= n) {
                    (false, _) => Streak::Broken,
                    (true, true) => Streak::Met,
                    (true, false) => Streak::Short { have },
                }
            }
        }
    }

    /// Folds the newest `n` values (the last-known value once).
    pub(super) fn fold<T>(&self, n: u32, init: T, mut f: impl FnMut(T, f64) -> T) -> T {
        match self {
            Data::LastKnown(s) => f(init, s.value),
            Data::Fresh(series) => {
                let (older, newer) = tail(series, to_usize(n));
                let acc = older.iter().fold(init, |acc, s| f(acc, s.value));
                newer.iter().fold(acc, |acc, s| f(acc, s.value))
            }
        }
    }

    /// The largest of the newest `n` values.
    pub(super) fn max_of(&self, n: u32) -> f64 {
        self.fold(n, f64::NEG_INFINITY, f64::max)
    }

    /// How many of the newest `n` samples there are (1 for a last-known value).
    pub(super) fn count(&self, n: u32) -> usize {
        match self {
            Data::LastKnown(_) => 1,
            Data::Fresh(series) => series.samples().len().min(to_usize(n)),
        }
    }

    /// "3 of 3 datapoints above 55".
    fn describe_window(&self, n: u32, dir: &str, edge: f64, unit: &str) -> String {
        match self {
            Data::LastKnown(_) => format!("last-known value {dir} {}{unit}", Num(edge)),
            Data::Fresh(_) => format!("{n} of {n} datapoints {dir} {}{unit}", Num(edge)),
        }
    }
}

/// The newest `n` samples of `series` as two slices (older part, newer part), oldest
/// first, without copying: the window is a ring buffer.
fn tail(series: &Series, n: usize) -> (&[Sample], &[Sample]) {
    let (a, b) = series.samples().as_slices();
    let start = (a.len() + b.len()).saturating_sub(n);
    if start >= a.len() {
        (&[], &b[start - a.len()..])
    } else {
        (&a[start..], b)
    }
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Rounds up, treating values within 1e-9 (relative) of an integer as that integer, so
/// float noise (`3.0000000000000004`) does not add a task.
pub(super) fn ceil_tolerant(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() <= 1e-9 * r.abs().max(1.0) {
        r
    } else {
        x.ceil()
    }
}

/// A non-negative float as a task count: NaN and negatives are 0, huge values saturate
/// at `u32::MAX`, fractions are cut.
pub(super) fn to_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range and non-negative: the cast is exact after truncation.
        x as u32
    }
}

/// `ceil(x)` as a task count (see [`ceil_tolerant`], [`to_count`]).
pub(super) fn ceil_count(x: f64) -> u32 {
    to_count(ceil_tolerant(x))
}

/// A number for reasons: integers without decimals, others with at most three.
#[derive(Debug, Clone, Copy)]
pub(super) struct Num(pub f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x.is_infinite() {
            return f.write_str(if x > 0.0 { "+∞" } else { "−∞" });
        }
        // Integers print as integers (fast); others rounded to three decimals and then
        // printed in their shortest form.
        let r = (x * 1000.0).round() / 1000.0;
        if r.fract() == 0.0 && r.abs() < 1e15 {
            // |r| < 1e15: exact as an i64.
            return write!(f, "{}", r as i64);
        }
        write!(f, "{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short() {
        assert_eq!(Num(80.0).to_string(), "80");
        assert_eq!(Num(0.1).to_string(), "0.1");
        assert_eq!(Num(33.333_333).to_string(), "33.333");
        assert_eq!(Num(-0.0001).to_string(), "0");
        assert_eq!(Num(f64::INFINITY).to_string(), "+∞");
    }

    #[test]
    fn counts_saturate_and_never_nan() {
        assert_eq!(to_count(f64::NAN), 0);
        assert_eq!(to_count(-3.0), 0);
        assert_eq!(to_count(1e300), u32::MAX);
        assert_eq!(to_count(f64::INFINITY), u32::MAX);
        assert_eq!(ceil_count(3.000_000_000_000_000_4), 3);
        assert_eq!(ceil_count(3.01), 4);
        assert_eq!(ceil_count(0.0), 0);
    }
}
