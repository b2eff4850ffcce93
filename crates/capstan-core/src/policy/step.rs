//! Step scaling with AWS's exact semantics (AWS-SEMANTICS §2).
//!
//! Bands are offsets from a threshold. Above the threshold a band's lower end is
//! inclusive and its upper end exclusive; below it, lower exclusive and upper inclusive.
//! A missing bound is −∞ / +∞. Adjustments: `change`, `percent` (AWS rounding, with
//! `min_adjustment`), `exact`.

use serde::Serialize;

use super::{Outcome, PolicyError, PolicyInput};

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

impl StepScaling {
    /// Checks the settings (AWS's rules: no gaps, no overlaps, ...).
    pub fn validate(&self) -> Vec<PolicyError> {
        unimplemented!("step validate")
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, _input: &PolicyInput<'_>) -> Outcome {
        unimplemented!("step evaluate")
    }
}
