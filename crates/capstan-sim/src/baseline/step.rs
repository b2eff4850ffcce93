//! AWS step scaling (AWS-SEMANTICS §2) on your own alarms: bands relative to the
//! threshold, change / percent / exact adjustments, cooldowns. Band selection and
//! percent rounding are capstan-core's, which follow AWS exactly.

use std::cmp::Ordering;

use capstan_core::policy::step::{add_signed, percent_adjustment};
use capstan_core::policy::{Adjustment, StepAlarm, StepBand};
use serde::Deserialize;

use super::cloudwatch::{
    Alarm, AlarmRule, AlarmState, CloudWatchMetric, Comparison, Evaluation, MissingData, Statistic,
};
use super::{
    BaselineAction, Cooldowns, FieldProblem, MAX_EVALUATION_PERIODS, Num, check_bounds,
    check_delay, clamp_in, clamp_out, default_cooldown_s, default_publish_delay_s, instant,
};
use crate::metric::SimMetric;

fn one() -> u32 {
    1
}

/// How a step's `adjustment` is read (`AdjustmentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdjustmentType {
    /// Add this many tasks (negative: remove).
    #[serde(alias = "ChangeInCapacity")]
    ChangeInCapacity,
    /// Change by this percentage of the current count, with AWS's rounding.
    #[serde(alias = "PercentChangeInCapacity")]
    PercentChangeInCapacity,
    /// Set the count to this (non-negative).
    #[serde(alias = "ExactCapacity")]
    ExactCapacity,
}

/// How the breaching datapoints are reduced before a step is chosen
/// (`MetricAggregationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricAggregation {
    /// Mean (AWS default).
    #[default]
    #[serde(alias = "Average")]
    Average,
    /// Smallest.
    #[serde(alias = "Minimum")]
    Minimum,
    /// Largest.
    #[serde(alias = "Maximum")]
    Maximum,
}

impl MetricAggregation {
    fn name(self) -> &'static str {
        match self {
            Self::Average => "average",
            Self::Minimum => "minimum",
            Self::Maximum => "maximum",
        }
    }

    /// The reduction of `values`; `None` when there are none.
    fn reduce(self, values: &[f64]) -> Option<f64> {
        let first = *values.first()?;
        Some(match self {
            // Exact: a handful of datapoints.
            Self::Average => values.iter().sum::<f64>() / values.len() as f64,
            Self::Minimum => values.iter().copied().fold(first, f64::min),
            Self::Maximum => values.iter().copied().fold(first, f64::max),
        })
    }
}

/// One step: bounds as offsets from the alarm threshold (`None`: −∞ / +∞) and its
/// adjustment (`StepAdjustment`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepAdjustmentSpec {
    /// `MetricIntervalLowerBound`.
    #[serde(default)]
    pub lower: Option<f64>,
    /// `MetricIntervalUpperBound`.
    #[serde(default)]
    pub upper: Option<f64>,
    /// `ScalingAdjustment`, read as the alarm's `adjustment_type` says.
    pub adjustment: i64,
}

/// One alarm and the step policy it invokes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSteps {
    /// The alarm threshold.
    pub threshold: f64,
    /// How datapoints are compared with it.
    pub comparison: Comparison,
    /// Datapoints looked at (N, `EvaluationPeriods`), 1 by default.
    #[serde(default = "one")]
    pub evaluation_periods: u32,
    /// Breaching datapoints needed (M, `DatapointsToAlarm`); N by default.
    #[serde(default)]
    pub datapoints: Option<u32>,
    /// Treatment of missing datapoints (`missing` by default).
    #[serde(default)]
    pub missing_data: MissingData,
    /// Reduction of the breaching datapoints (`average` by default).
    #[serde(default)]
    pub aggregation: MetricAggregation,
    /// How the steps' adjustments are read.
    pub adjustment_type: AdjustmentType,
    /// Smallest change of a percent adjustment (`MinAdjustmentMagnitude`).
    #[serde(default)]
    pub min_adjustment_magnitude: Option<u32>,
    /// The steps (no gaps, no overlaps).
    pub steps: Vec<StepAdjustmentSpec>,
    /// This policy's cooldown, seconds; the baseline's `cooldown_s` by default.
    #[serde(default)]
    pub cooldown_s: Option<u32>,
}

impl AlarmSteps {
    fn datapoints_to_alarm(&self) -> u32 {
        self.datapoints.unwrap_or(self.evaluation_periods)
    }

    /// The adjustment of `step` as capstan-core models it (only for checked settings;
    /// out-of-range values are pinned so the band checks still run).
    fn adjustment(&self, step: &StepAdjustmentSpec) -> Adjustment {
        match self.adjustment_type {
            AdjustmentType::ChangeInCapacity => Adjustment::Change(step.adjustment),
            AdjustmentType::PercentChangeInCapacity => {
                // Exact: |adjustment| ≤ 2^53 after pinning at -100.
                Adjustment::Percent(step.adjustment.clamp(-100, 1 << 53) as f64)
            }
            AdjustmentType::ExactCapacity => {
                Adjustment::Exact(u32::try_from(step.adjustment.max(0)).unwrap_or(u32::MAX))
            }
        }
    }

    /// The bands as capstan-core's step alarm.
    fn to_core(&self) -> StepAlarm {
        StepAlarm {
            threshold: self.threshold,
            bands: self
                .steps
                .iter()
                .map(|s| StepBand {
                    lower: s.lower,
                    upper: s.upper,
                    adjustment: self.adjustment(s),
                })
                .collect(),
            datapoints: self.datapoints_to_alarm().max(1),
        }
    }

    fn validate(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        let n = self.evaluation_periods;
        if n == 0 || n > MAX_EVALUATION_PERIODS {
            problems.push(FieldProblem::new(
                format!("{field}.evaluation_periods"),
                format!(
                    "must be 1 to {MAX_EVALUATION_PERIODS} (60 s periods, at most one day; got {n})"
                ),
            ));
        }
        match self.datapoints {
            Some(0) => problems.push(FieldProblem::new(
                format!("{field}.datapoints"),
                "must be at least 1",
            )),
            Some(m) if m > n => problems.push(FieldProblem::new(
                format!("{field}.datapoints"),
                format!("must not exceed evaluation_periods ({m} > {n})"),
            )),
            _ => {}
        }
        for (i, step) in self.steps.iter().enumerate() {
            let path = format!("{field}.steps[{i}].adjustment");
            let a = step.adjustment;
            match self.adjustment_type {
                AdjustmentType::PercentChangeInCapacity if a < -100 => {
                    problems.push(FieldProblem::new(
                        path,
                        format!("a percentage must be at least -100 (got {a})"),
                    ));
                }
                AdjustmentType::PercentChangeInCapacity if a > 1 << 53 => {
                    problems.push(FieldProblem::new(
                        path,
                        format!("percentage too large (got {a})"),
                    ));
                }
                AdjustmentType::ExactCapacity if a < 0 || a > i64::from(u32::MAX) => {
                    problems.push(FieldProblem::new(
                        path,
                        format!("an exact capacity must be 0 to {} (got {a})", u32::MAX),
                    ));
                }
                _ => {}
            }
        }
        match self.min_adjustment_magnitude {
            Some(0) => problems.push(FieldProblem::new(
                format!("{field}.min_adjustment_magnitude"),
                "must be at least 1",
            )),
            Some(_) if self.adjustment_type != AdjustmentType::PercentChangeInCapacity => {
                problems.push(FieldProblem::new(
                    format!("{field}.min_adjustment_magnitude"),
                    "applies only to adjustment_type = \"percent-change-in-capacity\"",
                ));
            }
            _ => {}
        }
        // Threshold, band bounds, gaps and overlaps: capstan-core's checks, AWS's rules.
        problems.extend(
            self.to_core()
                .validate(field)
                .into_iter()
                .map(|e| FieldProblem::new(e.field, e.message)),
        );
    }
}

/// Settings of AWS step scaling on one simulated metric: a scale-out alarm, a scale-in
/// alarm, or both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The metric both alarms watch.
    pub metric: SimMetric,
    /// The CloudWatch statistic of its datapoints (`average` by default).
    #[serde(default)]
    pub statistic: Statistic,
    /// The scale-out alarm and its policy.
    #[serde(default)]
    pub out: Option<AlarmSteps>,
    /// The scale-in alarm and its policy.
    #[serde(default, rename = "in")]
    pub r#in: Option<AlarmSteps>,
    /// Cooldown of both policies, seconds (ECS default 300).
    #[serde(default = "default_cooldown_s")]
    pub cooldown_s: u32,
    /// Minimum capacity.
    pub min: u32,
    /// Maximum capacity.
    pub max: u32,
    /// How long after its period ends a datapoint is published, seconds (⚠ about 60 s).
    #[serde(default = "default_publish_delay_s")]
    pub publish_delay_s: u32,
}

impl StepSpec {
    /// Every problem with the settings.
    pub fn validate(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if self.out.is_none() && self.r#in.is_none() {
            problems.push(FieldProblem::new(
                "out",
                "step scaling needs an `out` alarm, an `in` alarm, or both",
            ));
        }
        if let Some(out) = &self.out {
            out.validate("out", &mut problems);
        }
        if let Some(r#in) = &self.r#in {
            r#in.validate("in", &mut problems);
        }
        check_bounds(self.min, self.max, &mut problems);
        check_delay(self.publish_delay_s, &mut problems);
        problems
    }
}

/// One alarm with its policy, running.
#[derive(Debug, Clone)]
struct Side {
    alarm: Alarm,
    bands: StepAlarm,
    aggregation: MetricAggregation,
    min_adjustment: Option<u32>,
    cooldown_s: u32,
    /// Whether a value on a boundary shared at the threshold takes the upper band.
    prefer_upper: bool,
}

impl Side {
    fn new(name: &str, spec: &AlarmSteps, cooldown_s: u32, prefer_upper: bool) -> Self {
        Self {
            alarm: Alarm::new(
                name,
                AlarmRule {
                    threshold: spec.threshold,
                    comparison: spec.comparison,
                    datapoints: spec.datapoints_to_alarm(),
                    evaluation_periods: spec.evaluation_periods,
                    missing: spec.missing_data,
                },
            ),
            bands: spec.to_core(),
            aggregation: spec.aggregation,
            min_adjustment: spec.min_adjustment_magnitude,
            cooldown_s: spec.cooldown_s.unwrap_or(cooldown_s),
            prefer_upper,
        }
    }

    fn evaluate(&mut self, at: i64, cw: &CloudWatchMetric) -> Evaluation {
        let n = self.alarm.rule().evaluation_periods as usize;
        self.alarm.evaluate(&cw.window_at(at, n))
    }
}

/// The settings an invocation needs besides its alarm.
#[derive(Debug, Clone, Copy)]
struct Limits {
    metric: SimMetric,
    min: u32,
    max: u32,
}

/// A running step scaling setup.
#[derive(Debug, Clone)]
pub(super) struct Engine {
    limits: Limits,
    out: Option<Side>,
    r#in: Option<Side>,
    cooldowns: Cooldowns,
}

impl Engine {
    /// The setup of validated settings.
    pub(super) fn new(spec: &StepSpec) -> Self {
        Self {
            limits: Limits {
                metric: spec.metric,
                min: spec.min,
                max: spec.max,
            },
            out: spec
                .out
                .as_ref()
                .map(|s| Side::new("out", s, spec.cooldown_s, true)),
            r#in: spec
                .r#in
                .as_ref()
                .map(|s| Side::new("in", s, spec.cooldown_s, false)),
            cooldowns: Cooldowns::default(),
        }
    }

    fn sides(&self) -> impl Iterator<Item = &Side> {
        self.out.iter().chain(self.r#in.iter())
    }

    /// The longest alarm window, in periods.
    pub(super) fn evaluation_periods(&self) -> u32 {
        self.sides()
            .map(|s| s.alarm.rule().evaluation_periods)
            .max()
            .unwrap_or(1)
    }

    /// The scale-out alarm's threshold, else the scale-in alarm's.
    pub(super) fn threshold(&self) -> f64 {
        self.sides().next().map_or(0.0, |s| s.bands.threshold)
    }

    pub(super) fn bounds(&self) -> (u32, u32) {
        (self.limits.min, self.limits.max)
    }

    pub(super) fn alarms(&self) -> Vec<&Alarm> {
        self.sides().map(|s| &s.alarm).collect()
    }

    /// One evaluation of both alarms at `at` (ms), and the action of the policy whose
    /// alarm is in `ALARM` (the scale-out one first: while it fires, the scale-in policy
    /// does not act).
    pub(super) fn evaluate(
        &mut self,
        at: i64,
        cw: &CloudWatchMetric,
        desired: u32,
    ) -> Option<BaselineAction> {
        let out = self.out.as_mut().map(|s| s.evaluate(at, cw));
        let r#in = self.r#in.as_mut().map(|s| s.evaluate(at, cw));
        if let (Some(side), Some(e)) = (&self.out, out)
            && e.state == AlarmState::Alarm
        {
            return invoke(side, &e, self.limits, &mut self.cooldowns, at, desired);
        }
        if let (Some(side), Some(e)) = (&self.r#in, r#in)
            && e.state == AlarmState::Alarm
        {
            return invoke(side, &e, self.limits, &mut self.cooldowns, at, desired);
        }
        None
    }
}

/// Runs `side`'s policy for the alarm evaluation `e`.
fn invoke(
    side: &Side,
    e: &Evaluation,
    limits: Limits,
    cooldowns: &mut Cooldowns,
    at: i64,
    desired: u32,
) -> Option<BaselineAction> {
    let value = side.aggregation.reduce(&e.breaching_values)?;
    let threshold = side.bands.threshold;
    let offset = value - threshold;
    let band = *side
        .bands
        .bands
        .get(side.bands.select(offset, side.prefer_upper)?)?;
    let rule = side.alarm.rule();
    let sign = if offset >= 0.0 { "+" } else { "" };
    let head = format!(
        "{} alarm {} {} {} for {} of {} datapoints: {} {} is {sign}{} from the threshold, band {band}: ",
        side.alarm.name(),
        limits.metric,
        rule.comparison.symbol(),
        Num(threshold),
        e.breaching,
        e.periods,
        side.aggregation.name(),
        Num(value),
        Num(offset),
    );
    match direction(band.adjustment, desired) {
        Ordering::Greater => {
            let cooldown = cooldowns.out_base(at);
            let base = cooldown.map_or(desired, |(b, _)| b);
            let (count, how) = apply(band.adjustment, base, side.min_adjustment);
            let (to, note) = clamp_out(desired, count, limits.min, limits.max)?;
            cooldowns.scaled_out(at, desired, side.cooldown_s);
            let during = cooldown.map_or(String::new(), |(b, until)| {
                format!(
                    " (scale-out cooldown until {}: from {b}, the count before the scale-out that started it)",
                    instant(until)
                )
            });
            Some(BaselineAction {
                to,
                reason: format!("{head}{how}{during}{note}"),
            })
        }
        Ordering::Less => {
            // Never on a missing newest datapoint; never during the scale-in cooldown.
            e.newest?;
            if cooldowns.in_until(at).is_some() {
                return None;
            }
            let (count, how) = apply(band.adjustment, desired, side.min_adjustment);
            let (to, note) = clamp_in(desired, count, limits.min, limits.max)?;
            cooldowns.scaled_in(at, side.cooldown_s);
            Some(BaselineAction {
                to,
                reason: format!("{head}{how}{note}"),
            })
        }
        Ordering::Equal => None,
    }
}

/// Whether `adjustment` adds (`Greater`) or removes (`Less`) capacity from `desired`.
fn direction(adjustment: Adjustment, desired: u32) -> Ordering {
    match adjustment {
        Adjustment::Change(n) => n.cmp(&0),
        Adjustment::Percent(p) => p.partial_cmp(&0.0).unwrap_or(Ordering::Equal),
        Adjustment::Exact(n) => n.cmp(&desired),
    }
}

/// The count `adjustment` gives from `base`, and how, for the reason.
fn apply(adjustment: Adjustment, base: u32, min_adjustment: Option<u32>) -> (u32, String) {
    match adjustment {
        Adjustment::Change(n) => {
            let count = add_signed(base, n);
            let sign = if n >= 0 { "+" } else { "" };
            (count, format!("{sign}{n} from {base} = {count}"))
        }
        Adjustment::Percent(p) => {
            let adj = percent_adjustment(base, p, min_adjustment);
            let plain = percent_adjustment(base, p, None);
            let count = add_signed(base, adj);
            let sign = if adj >= 0 { "+" } else { "" };
            let raw = f64::from(base) * p / 100.0;
            let min = match min_adjustment {
                Some(m) if adj != plain => format!(" (min adjustment {m})"),
                _ => String::new(),
            };
            (
                count,
                format!(
                    "{}% of {base} = {} → {sign}{adj}{min} = {count}",
                    Num(p),
                    Num(raw)
                ),
            )
        }
        Adjustment::Exact(n) => (n, format!("exactly {n}")),
    }
}
