//! AWS target tracking (AWS-SEMANTICS §1): `AlarmHigh` 3 of 3 above the target,
//! `AlarmLow` 15 of 15 below `low_ratio` × target, capacity from the running count.

use serde::Deserialize;

use super::cloudwatch::{
    Alarm, AlarmRule, AlarmState, CloudWatchMetric, Comparison, Evaluation, MissingData, Statistic,
};
use super::{
    BaselineAction, Cooldowns, FieldProblem, HIGH_DATAPOINTS, LOW_DATAPOINTS, Num, ceil_ratio,
    check_bounds, check_delay, clamp_in, clamp_out, default_cooldown_s, default_publish_delay_s,
    instant,
};
use crate::metric::SimMetric;

fn default_low_ratio() -> f64 {
    0.9
}

/// Settings of an AWS target tracking policy on one simulated metric.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTrackingSpec {
    /// The metric tracked.
    pub metric: SimMetric,
    /// Its target value (> 0).
    pub target: f64,
    /// The CloudWatch statistic of its datapoints (`average` by default, as ECS's CPU and
    /// memory metrics).
    #[serde(default)]
    pub statistic: Statistic,
    /// Scale-out cooldown, seconds (ECS default 300).
    #[serde(default = "default_cooldown_s")]
    pub scale_out_cooldown_s: u32,
    /// Scale-in cooldown, seconds (ECS default 300).
    #[serde(default = "default_cooldown_s")]
    pub scale_in_cooldown_s: u32,
    /// Never scale in (`DisableScaleIn`).
    #[serde(default)]
    pub disable_scale_in: bool,
    /// `AlarmLow`'s threshold as a fraction of the target (⚠ 0.9 is the commonly observed
    /// value; AWS says "usually more than 10% below").
    #[serde(default = "default_low_ratio")]
    pub low_ratio: f64,
    /// Minimum capacity.
    pub min: u32,
    /// Maximum capacity.
    pub max: u32,
    /// How long after its period ends a datapoint is published, seconds (⚠ about 60 s for
    /// ECS and ALB metrics).
    #[serde(default = "default_publish_delay_s")]
    pub publish_delay_s: u32,
}

impl TargetTrackingSpec {
    /// Every problem with the settings.
    pub fn validate(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if !(self.target.is_finite() && self.target > 0.0) {
            problems.push(FieldProblem::new(
                "target",
                format!("must be a positive finite number (got {})", self.target),
            ));
        }
        if !(self.low_ratio > 0.0 && self.low_ratio < 1.0) {
            problems.push(FieldProblem::new(
                "low_ratio",
                format!(
                    "must be above 0 and below 1 (AlarmLow sits below the target; got {})",
                    self.low_ratio
                ),
            ));
        }
        check_bounds(self.min, self.max, &mut problems);
        check_delay(self.publish_delay_s, &mut problems);
        problems
    }
}

/// A running target tracking policy.
#[derive(Debug, Clone)]
pub(super) struct Engine {
    metric: SimMetric,
    target: f64,
    min: u32,
    max: u32,
    out_cooldown_s: u32,
    in_cooldown_s: u32,
    high: Alarm,
    low: Option<Alarm>,
    cooldowns: Cooldowns,
}

impl Engine {
    /// The policy of validated settings.
    pub(super) fn new(spec: &TargetTrackingSpec) -> Self {
        let high = Alarm::new(
            "AlarmHigh",
            AlarmRule {
                threshold: spec.target,
                comparison: Comparison::GreaterThanThreshold,
                datapoints: HIGH_DATAPOINTS,
                evaluation_periods: HIGH_DATAPOINTS,
                missing: MissingData::Missing,
            },
        );
        let low = (!spec.disable_scale_in).then(|| {
            Alarm::new(
                "AlarmLow",
                AlarmRule {
                    threshold: spec.low_ratio * spec.target,
                    comparison: Comparison::LessThanThreshold,
                    datapoints: LOW_DATAPOINTS,
                    evaluation_periods: LOW_DATAPOINTS,
                    missing: MissingData::Missing,
                },
            )
        });
        Self {
            metric: spec.metric,
            target: spec.target,
            min: spec.min,
            max: spec.max,
            out_cooldown_s: spec.scale_out_cooldown_s,
            in_cooldown_s: spec.scale_in_cooldown_s,
            high,
            low,
            cooldowns: Cooldowns::default(),
        }
    }

    pub(super) fn target(&self) -> f64 {
        self.target
    }

    pub(super) fn bounds(&self) -> (u32, u32) {
        (self.min, self.max)
    }

    pub(super) fn alarms(&self) -> Vec<&Alarm> {
        std::iter::once(&self.high)
            .chain(self.low.as_ref())
            .collect()
    }

    /// One evaluation of both alarms at `at` (ms), and the policy's action.
    pub(super) fn evaluate(
        &mut self,
        at: i64,
        cw: &CloudWatchMetric,
        running: u32,
        desired: u32,
    ) -> Option<BaselineAction> {
        let high = self
            .high
            .evaluate(&cw.window_at(at, HIGH_DATAPOINTS as usize));
        let low = self
            .low
            .as_mut()
            .map(|a| a.evaluate(&cw.window_at(at, LOW_DATAPOINTS as usize)));
        if running == 0 && desired == 0 {
            return self.first_task(&high);
        }
        if high.state == AlarmState::Alarm {
            return self.scale_out(at, &high, running, desired);
        }
        match low {
            Some(low) if low.state == AlarmState::Alarm => {
                self.scale_in(at, &low, running, desired)
            }
            _ => None,
        }
    }

    /// Nothing running or desired: one datapoint above the target adds the smallest
    /// amount (§1).
    fn first_task(&mut self, high: &Evaluation) -> Option<BaselineAction> {
        let v = high.newest.filter(|v| *v > self.target)?;
        let (to, note) = clamp_out(0, 1, self.min, self.max)?;
        // A scale-out: it cancels a scale-in cooldown, and starts no cooldown of its own.
        self.cooldowns.r#in = None;
        Some(BaselineAction {
            to,
            reason: format!(
                "AlarmHigh {} {} > {} with nothing running: first datapoint, smallest step 0 → 1{note}",
                self.metric,
                Num(v),
                Num(self.target)
            ),
        })
    }

    fn scale_out(
        &mut self,
        at: i64,
        high: &Evaluation,
        running: u32,
        desired: u32,
    ) -> Option<BaselineAction> {
        let v = high
            .newest
            .or_else(|| high.breaching_values.last().copied())?;
        let cooldown = self.cooldowns.out_base(at);
        let base = cooldown.map_or(running, |(b, _)| b);
        let count = ceil_ratio(base, v, self.target);
        let (to, note) = clamp_out(desired, count, self.min, self.max)?;
        self.cooldowns.scaled_out(at, running, self.out_cooldown_s);
        let during = cooldown.map_or(String::new(), |(b, until)| {
            format!(
                " (scale-out cooldown until {}: from the {b} running when it started)",
                instant(until)
            )
        });
        Some(BaselineAction {
            to,
            reason: format!(
                "AlarmHigh {} {} > {} for {} of {} datapoints: ceil({base} × {} / {}) = {count}{during}{note}",
                self.metric,
                Num(v),
                Num(self.target),
                high.breaching,
                high.periods,
                Num(v),
                Num(self.target),
            ),
        })
    }

    fn scale_in(
        &mut self,
        at: i64,
        low: &Evaluation,
        running: u32,
        desired: u32,
    ) -> Option<BaselineAction> {
        // Never on a missing newest datapoint; never during the scale-in cooldown.
        let v = low.newest?;
        if self.cooldowns.in_until(at).is_some() {
            return None;
        }
        let count = ceil_ratio(running, v, self.target);
        let (to, note) = clamp_in(desired, count, self.min, self.max)?;
        self.cooldowns.scaled_in(at, self.in_cooldown_s);
        let threshold = self.low.as_ref().map_or(0.0, |a| a.rule().threshold);
        Some(BaselineAction {
            to,
            reason: format!(
                "AlarmLow {} {} < {} for {} of {} datapoints: ceil({running} × {} / {}) = {count}{note}",
                self.metric,
                Num(v),
                Num(threshold),
                low.breaching,
                low.periods,
                Num(v),
                Num(self.target),
            ),
        })
    }
}
