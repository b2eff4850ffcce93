//! Step scaling with AWS's exact semantics (AWS-SEMANTICS §2).
//!
//! Bands are offsets from a threshold. Above the threshold a band's lower end is
//! inclusive and its upper end exclusive; below it, lower exclusive and upper inclusive.
//! A missing bound is −∞ / +∞. Adjustments: `change`, `percent` (AWS rounding, with
//! `min_adjustment`), `exact`.
//!
//! # Evaluation
//!
//! An alarm fires when its newest `datapoints` samples each fall inside some band of its
//! list (and there are at least that many samples). Those samples are then aggregated
//! (average, minimum or maximum) and the band holding `aggregated − threshold` gives the
//! adjustment. Each bound is placed by its own sign: a bound ≥ 0 is inclusive as a lower
//! end and a bound > 0 exclusive as an upper end; a bound ≤ 0 is inclusive as an upper
//! end and a bound < 0 exclusive as a lower end. That is AWS's rule, and it puts a value
//! sitting exactly on a boundary into the band farther from the threshold. Only a
//! boundary at the threshold itself can lie in two bands (`(…, 0]` and `[0, …)`): the
//! scale-out alarm then takes the upper band and the scale-in alarm the lower one.
//!
//! The scale-out alarm is checked first and wins when both fire. Neither firing: the
//! policy abstains (an idle step policy has no opinion).
//!
//! # Adjustments
//!
//! The scale-out alarm adjusts from `input.baseline` (during a scale-out cooldown, the
//! count before the scale-out that started it: AWS counts capacity added inside the
//! cooldown toward the next step, so +2 then +3 adds only +1 more); it never asks for
//! fewer than `capacity.desired` (it holds instead). The scale-in alarm adjusts from
//! `capacity.desired`, so it never removes more than the current count supports.
//!
//! - `change(n)`: base + n.
//! - `percent(p)`: raw = base × p / 100, then: |raw| ≥ 1 rounds toward zero; 0 < |raw| < 1
//!   becomes ±1; then, if `min_adjustment` is set and |adj| is smaller, adj = ±min
//!   (the sign of `p`; this also applies from a base of 0).
//! - `exact(n)`: n. Zero is allowed (ECS services may scale to zero), unlike AWS's
//!   `ExactCapacity`, which must be positive.
//!
//! The result saturates at 0 and at `u32::MAX`.

use std::fmt::Write as _;

use serde::Serialize;

use super::target_tracking::{Data, Num, Streak, read};
use super::{Ask, Outcome, PolicyError, PolicyInput};

/// How the recent datapoints are reduced to one value before a band is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Mean (AWS default).
    #[default]
    Average,
    /// Smallest.
    Minimum,
    /// Largest.
    Maximum,
}

/// What a band does to capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Adjustment {
    /// Add (or, negative, remove) this many tasks (`ChangeInCapacity`).
    Change(i64),
    /// Change by this percentage of current capacity (`PercentChangeInCapacity`).
    Percent(f64),
    /// Set capacity to this (`ExactCapacity`).
    Exact(u32),
}

/// One band of a step list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepBand {
    /// Lower bound as an offset from the threshold; `None` = −∞.
    pub lower: Option<f64>,
    /// Upper bound as an offset from the threshold; `None` = +∞.
    pub upper: Option<f64>,
    /// What to do when the aggregated value falls in this band.
    pub adjustment: Adjustment,
}

impl StepBand {
    /// Whether `offset` (value − threshold) lies in this band, with AWS's ends: a lower
    /// bound ≥ 0 is inclusive (< 0 exclusive); an upper bound ≤ 0 is inclusive (> 0
    /// exclusive).
    pub fn contains(&self, offset: f64) -> bool {
        let above_lower = match self.lower {
            None => true,
            Some(l) if l >= 0.0 => offset >= l,
            Some(l) => offset > l,
        };
        let below_upper = match self.upper {
            None => true,
            Some(u) if u <= 0.0 => offset <= u,
            Some(u) => offset < u,
        };
        above_lower && below_upper
    }
}

impl std::fmt::Display for StepBand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.lower {
            None => f.write_str("(−∞")?,
            Some(l) if l >= 0.0 => write!(f, "[{}", Num(l))?,
            Some(l) => write!(f, "({}", Num(l))?,
        }
        match self.upper {
            None => f.write_str(", +∞)"),
            Some(u) if u <= 0.0 => write!(f, ", {}]", Num(u)),
            Some(u) => write!(f, ", {})", Num(u)),
        }
    }
}

/// One alarm with its band list (the scale-out list or the scale-in list).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAlarm {
    /// The alarm threshold the band offsets are relative to.
    pub threshold: f64,
    /// The bands (no gaps, no overlaps).
    pub bands: Vec<StepBand>,
    /// Consecutive datapoints that must fall in some band before the alarm fires (≥ 1).
    pub datapoints: u32,
}

impl StepAlarm {
    /// The index of the band holding `offset` (value − threshold). When two bands hold it
    /// (they meet exactly at the threshold), `prefer_upper` picks the higher one.
    pub fn select(&self, offset: f64, prefer_upper: bool) -> Option<usize> {
        let mut found: Option<usize> = None;
        for (i, band) in self.bands.iter().enumerate() {
            if !band.contains(offset) {
                continue;
            }
            found = match found {
                None => Some(i),
                Some(j) => {
                    let higher = lower_key(band) > lower_key(&self.bands[j]);
                    if higher == prefer_upper {
                        Some(i)
                    } else {
                        Some(j)
                    }
                }
            };
        }
        found
    }

    /// The union of the bands as one band, when they form one interval without gaps
    /// (always true for a validated list); `None` otherwise. Each bound keeps its own
    /// inclusive/exclusive end, so `coverage().contains(x)` equals "some band contains x".
    pub fn coverage(&self) -> Option<StepBand> {
        let first = self.bands.first()?;
        let mut lower = first.lower;
        let mut upper = first.upper;
        for b in &self.bands {
            if b.lower.is_some_and(f64::is_nan) || b.upper.is_some_and(f64::is_nan) {
                return None;
            }
            lower = match (lower, b.lower) {
                (Some(x), Some(y)) => Some(x.min(y)),
                _ => None,
            };
            upper = match (upper, b.upper) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            };
        }
        // Without gaps, every finite upper bound below the top is some band's lower bound:
        // the chain from the lowest band then climbs to the top without a hole.
        let chained = self.bands.iter().all(|b| match b.upper {
            None => true,
            Some(u) if Some(u) == upper => true,
            Some(u) => self.bands.iter().any(|o| o.lower == Some(u)),
        });
        chained.then_some(StepBand {
            lower,
            upper,
            adjustment: Adjustment::Change(0),
        })
    }

    /// Checks this alarm's settings; `field` is its path (`out` or `in`).
    pub fn validate(&self, field: &str) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        if !self.threshold.is_finite() {
            errors.push(PolicyError::new(
                format!("{field}.threshold"),
                format!("must be a finite number (got {})", self.threshold),
            ));
        }
        if self.datapoints == 0 {
            errors.push(PolicyError::new(
                format!("{field}.datapoints"),
                "must be at least 1",
            ));
        }
        if self.bands.is_empty() {
            errors.push(PolicyError::new(
                format!("{field}.steps"),
                "must hold at least one band",
            ));
            return errors;
        }

        // Each band on its own.
        let mut null_lower: Option<usize> = None;
        let mut null_upper: Option<usize> = None;
        let mut sound = true;
        for (i, band) in self.bands.iter().enumerate() {
            let path = format!("{field}.steps[{i}]");
            for (name, bound) in [("lower", band.lower), ("upper", band.upper)] {
                if bound.is_some_and(|b| !b.is_finite()) {
                    errors.push(PolicyError::new(
                        format!("{path}.{name}"),
                        "must be a finite number (leave it out for an open end)",
                    ));
                    sound = false;
                }
            }
            match (band.lower, band.upper) {
                (None, None) => {
                    errors.push(PolicyError::new(
                        path.clone(),
                        "lower and upper bounds cannot both be open",
                    ));
                    sound = false;
                }
                (Some(l), Some(u)) if u <= l => {
                    errors.push(PolicyError::new(
                        format!("{path}.upper"),
                        format!("must be above the lower bound ({} ≤ {})", Num(u), Num(l)),
                    ));
                    sound = false;
                }
                _ => {}
            }
            if band.lower.is_none() {
                if let Some(j) = null_lower {
                    errors.push(PolicyError::new(
                        format!("{path}.lower"),
                        format!(
                            "only one band may have an open lower bound (also {field}.steps[{j}])"
                        ),
                    ));
                    sound = false;
                } else {
                    null_lower = Some(i);
                }
            }
            if band.upper.is_none() {
                if let Some(j) = null_upper {
                    errors.push(PolicyError::new(
                        format!("{path}.upper"),
                        format!(
                            "only one band may have an open upper bound (also {field}.steps[{j}])"
                        ),
                    ));
                    sound = false;
                } else {
                    null_upper = Some(i);
                }
            }
            match band.adjustment {
                Adjustment::Percent(p) if !p.is_finite() || p < -100.0 => {
                    errors.push(PolicyError::new(
                        format!("{path}.percent"),
                        format!("must be a finite percentage of at least -100 (got {p})"),
                    ));
                }
                _ => {}
            }
        }

        // AWS: a negative lower bound needs a band open below; a positive upper bound
        // needs a band open above.
        if null_lower.is_none()
            && let Some(i) = self
                .bands
                .iter()
                .position(|b| b.lower.is_some_and(|l| l < 0.0))
        {
            errors.push(PolicyError::new(
                format!("{field}.steps[{i}].lower"),
                "a negative lower bound requires a band with an open lower bound (down to −∞)",
            ));
        }
        if null_upper.is_none()
            && let Some(i) = self
                .bands
                .iter()
                .position(|b| b.upper.is_some_and(|u| u > 0.0))
        {
            errors.push(PolicyError::new(
                format!("{field}.steps[{i}].upper"),
                "a positive upper bound requires a band with an open upper bound (up to +∞)",
            ));
        }

        // Gaps and overlaps between neighbours, in order of their lower bounds.
        if sound {
            let mut order: Vec<usize> = (0..self.bands.len()).collect();
            order.sort_by(|&a, &b| lower_key(&self.bands[a]).total_cmp(&lower_key(&self.bands[b])));
            for pair in order.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let (prev, next) = (&self.bands[a], &self.bands[b]);
                let next_lower = lower_key(next);
                let path = format!("{field}.steps[{b}]");
                match prev.upper {
                    None => errors.push(PolicyError::new(
                        path,
                        format!("overlaps {field}.steps[{a}], which is open above"),
                    )),
                    Some(u) if u > next_lower => errors.push(PolicyError::new(
                        path,
                        format!(
                            "overlaps {field}.steps[{a}] ({} > {})",
                            Num(u),
                            Num(next_lower)
                        ),
                    )),
                    Some(u) if u < next_lower => errors.push(PolicyError::new(
                        path,
                        format!(
                            "leaves a gap after {field}.steps[{a}] (from {} to {})",
                            Num(u),
                            Num(next_lower)
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        errors
    }
}

/// A band's lower bound for ordering (−∞ when open).
fn lower_key(band: &StepBand) -> f64 {
    band.lower.unwrap_or(f64::NEG_INFINITY)
}

/// Settings of a step scaling policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepScaling {
    /// Source name of the metric.
    pub metric: String,
    /// Reduction of the breaching datapoints.
    pub aggregation: Aggregation,
    /// Scale-out alarm and bands.
    pub out: Option<StepAlarm>,
    /// Scale-in alarm and bands.
    pub r#in: Option<StepAlarm>,
    /// Minimum magnitude of a `percent` adjustment (`MinAdjustmentMagnitude`).
    pub min_adjustment: Option<u32>,
}

/// The result of checking one alarm.
enum Check {
    /// The alarm fires: the aggregated value and the band it falls in.
    Fired { aggregated: f64, band: usize },
    /// Not firing; `Some(have)` when every present sample is in a band but there are
    /// fewer than the datapoints needed.
    Quiet(Option<usize>),
}

impl StepScaling {
    /// Checks the settings (AWS's rules: no gaps, no overlaps, ...).
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        if self.metric.trim().is_empty() {
            errors.push(PolicyError::new("metric", "must name a source"));
        }
        if self.out.is_none() && self.r#in.is_none() {
            errors.push(PolicyError::new(
                "out",
                "a step policy needs a scale-out list, a scale-in list, or both",
            ));
        }
        if let Some(out) = &self.out {
            errors.extend(out.validate("out"));
        }
        if let Some(r#in) = &self.r#in {
            errors.extend(r#in.validate("in"));
        }
        if let Some(min) = self.min_adjustment {
            if min == 0 {
                errors.push(PolicyError::new("min_adjustment", "must be at least 1"));
            }
            let any_percent = self
                .out
                .iter()
                .chain(self.r#in.iter())
                .flat_map(|a| a.bands.iter())
                .any(|b| matches!(b.adjustment, Adjustment::Percent(_)));
            if !any_percent {
                errors.push(PolicyError::new(
                    "min_adjustment",
                    "applies only to `percent` adjustments, and no band uses one",
                ));
            }
        }
        errors
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Outcome {
        let data = match read(input, &self.metric) {
            Ok(d) => d,
            Err(why) => {
                return (
                    Ask::NoData {
                        sources: vec![self.metric.clone()],
                    },
                    why,
                    false,
                );
            }
        };
        let degraded = data.is_degraded();
        let desired = input.capacity.desired;
        let mut notes = String::new();

        if let Some(out) = &self.out {
            match self.check(out, &data, true) {
                Check::Fired { aggregated, band } => {
                    let (count, mut why) =
                        self.apply(out, &data, aggregated, band, input.baseline, "out");
                    let ask = if count > desired {
                        Ask::Desired { count }
                    } else {
                        let _ = write!(why, "; {desired} already desired: hold");
                        Ask::Hold
                    };
                    return (ask, mark(why, degraded), degraded);
                }
                Check::Quiet(short) => note(&mut notes, "out", short, out.datapoints),
            }
        }
        if let Some(r#in) = &self.r#in {
            match self.check(r#in, &data, false) {
                Check::Fired { aggregated, band } => {
                    let (count, mut why) = self.apply(r#in, &data, aggregated, band, desired, "in");
                    let ask = if degraded && count < desired {
                        why.push_str("; no scale-in on a last-known value: hold");
                        Ask::Hold
                    } else {
                        Ask::Desired { count }
                    };
                    return (ask, mark(why, degraded), degraded);
                }
                Check::Quiet(short) => note(&mut notes, "in", short, r#in.datapoints),
            }
        }
        let mut why = format!("{} {}: no alarm fires", self.metric, Num(data.newest()));
        if !notes.is_empty() {
            let _ = write!(why, " ({notes})");
        }
        (Ask::Abstain, mark(why, degraded), degraded)
    }

    fn check(&self, alarm: &StepAlarm, data: &Data<'_>, prefer_upper: bool) -> Check {
        let streak = match alarm.coverage() {
            // One interval: one test per sample.
            Some(cover) => data.streak(alarm.datapoints, |v| cover.contains(v - alarm.threshold)),
            None => data.streak(alarm.datapoints, |v| {
                alarm.bands.iter().any(|b| b.contains(v - alarm.threshold))
            }),
        };
        match streak {
            Streak::Met => {}
            Streak::Broken => return Check::Quiet(None),
            Streak::Short { have } => return Check::Quiet(Some(have)),
        }
        let n = alarm.datapoints;
        let aggregated = match self.aggregation {
            Aggregation::Average => {
                let count = data.count(n).max(1);
                // Mean as sum / count; count is small enough to be exact in f64.
                data.fold(n, 0.0, |acc, v| acc + v) / count as f64
            }
            Aggregation::Minimum => data.fold(n, f64::INFINITY, f64::min),
            Aggregation::Maximum => data.fold(n, f64::NEG_INFINITY, f64::max),
        };
        match alarm.select(aggregated - alarm.threshold, prefer_upper) {
            Some(band) => Check::Fired { aggregated, band },
            // Unreachable for validated lists (their union is an interval, and each
            // sample lies in it); never act on it.
            None => Check::Quiet(None),
        }
    }

    /// The count after applying band `band` of `alarm` to `base`, and the reason.
    fn apply(
        &self,
        alarm: &StepAlarm,
        data: &Data<'_>,
        aggregated: f64,
        band: usize,
        base: u32,
        side: &str,
    ) -> (u32, String) {
        let mut why = String::with_capacity(128);
        let _ = write!(why, "{} {} (", self.metric, Num(aggregated));
        match data {
            Data::LastKnown(_) => why.push_str("last-known value"),
            Data::Fresh(_) if alarm.datapoints == 1 => why.push_str("1 datapoint"),
            Data::Fresh(_) => {
                let reduce = match self.aggregation {
                    Aggregation::Average => "average",
                    Aggregation::Minimum => "minimum",
                    Aggregation::Maximum => "maximum",
                };
                let _ = write!(why, "{reduce} of {} datapoints", alarm.datapoints);
            }
        }
        let _ = write!(
            why,
            ") is {} from threshold {}, {side} band ",
            Num(aggregated - alarm.threshold),
            Num(alarm.threshold)
        );
        let Some(b) = alarm.bands.get(band) else {
            return (base, why);
        };
        let _ = write!(why, "{b}: ");
        let count = match b.adjustment {
            Adjustment::Change(n) => {
                let count = add_signed(base, n);
                let sign = if n >= 0 { "+" } else { "" };
                let _ = write!(why, "{sign}{n} from {base} → {count}");
                count
            }
            Adjustment::Percent(p) => {
                let adj = percent_adjustment(base, p, self.min_adjustment);
                let count = add_signed(base, adj);
                let raw = f64::from(base) * p / 100.0;
                let sign = if adj >= 0 { "+" } else { "" };
                let _ = write!(
                    why,
                    "{}% of {base} = {} → {sign}{adj} → {count}",
                    Num(p),
                    Num(raw)
                );
                count
            }
            Adjustment::Exact(n) => {
                let _ = write!(why, "exactly {n}");
                n
            }
        };
        (count, why)
    }
}

/// Adds "out: 2 of 3 datapoints in its bands" to `notes`.
fn note(notes: &mut String, side: &str, short: Option<usize>, needed: u32) {
    if let Some(have) = short {
        if !notes.is_empty() {
            notes.push_str("; ");
        }
        let _ = write!(notes, "{side}: {have} of {needed} datapoints in its bands");
    }
}

fn mark(mut why: String, degraded: bool) -> String {
    if degraded {
        why.push_str(" [last-known value]");
    }
    why
}

/// `base + delta`, saturating at 0 and `u32::MAX`.
pub fn add_signed(base: u32, delta: i64) -> u32 {
    let sum = i64::from(base).saturating_add(delta);
    u32::try_from(sum.max(0)).unwrap_or(u32::MAX)
}

/// AWS's `PercentChangeInCapacity` adjustment of `base` by `percent`: raw = base × p / 100;
/// |raw| ≥ 1 rounds toward zero, 0 < |raw| < 1 becomes ±1, then `min_adjustment` raises
/// the magnitude (with the sign of `percent`). Values within 1e-12 (relative) of a non-zero
/// integer count as that integer: that covers the float noise of `base × p / 100` (a few
/// ulps) without rounding up a real fraction such as 234050.99999 (30% of 11 is 3.3 → 3,
/// but 7% of 100 computed as 7.000000000000001 is 7).
pub fn percent_adjustment(base: u32, percent: f64, min_adjustment: Option<u32>) -> i64 {
    if percent.is_nan() || percent == 0.0 {
        return 0;
    }
    let raw = f64::from(base) * percent / 100.0;
    let snapped = {
        let r = raw.round();
        if r != 0.0 && (raw - r).abs() <= 1e-12 * r.abs() {
            r
        } else {
            raw
        }
    };
    let rounded = if snapped == 0.0 {
        0.0
    } else if snapped.abs() < 1.0 {
        snapped.signum()
    } else {
        snapped.trunc()
    };
    // Saturating float-to-int conversion (finite or ±∞ alike).
    let mut adj = rounded as i64;
    if let Some(min) = min_adjustment {
        let min = i64::from(min);
        if adj.abs() < min {
            adj = if percent > 0.0 { min } else { -min };
        }
    }
    adj
}

/// The count a step policy computes for the aggregated `value` against `alarm`, from
/// `base` (for table tests and the simulator's AWS baseline).
pub fn adjusted_count(
    alarm: &StepAlarm,
    value: f64,
    base: u32,
    min_adjustment: Option<u32>,
    prefer_upper: bool,
) -> Option<u32> {
    let band = alarm
        .bands
        .get(alarm.select(value - alarm.threshold, prefer_upper)?)?;
    Some(match band.adjustment {
        Adjustment::Change(n) => add_signed(base, n),
        Adjustment::Percent(p) => add_signed(base, percent_adjustment(base, p, min_adjustment)),
        Adjustment::Exact(n) => n,
    })
}
