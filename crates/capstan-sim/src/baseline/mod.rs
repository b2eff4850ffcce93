//! Emulations of AWS's own scaling, run by the simulator on the same trace as capstan:
//! Application Auto Scaling target tracking and step scaling, each behind the CloudWatch
//! alarms that drive it (AWS-SEMANTICS §0–§2), and ECS capacity provider managed scaling
//! of an EC2 cluster's Auto Scaling group (§6). For a service, the runner feeds a
//! [`Baseline`] one [`Frame`] per simulated second with the service's running and desired
//! counts ([`Baseline::step`]), and calls `UpdateService` with the count it returns; ECS
//! then picks the victims blind, as it does for AWS's own policies. For a cluster
//! ([`Baseline::acts_on_cluster`]), the runner feeds it a [`ClusterView`] per simulated
//! second ([`Baseline::step_cluster`]) and calls `SetDesiredCapacity` on the group with
//! the count it returns (see the [`managed`] module for termination protection and
//! draining).
//!
//! Pure and synchronous: no world, no clock of its own, time only from the `now` passed
//! in.
//!
//! # What happens each minute
//!
//! The metric becomes 1-minute CloudWatch datapoints published `publish_delay_s` after
//! their period ends ([`CloudWatchMetric`]). Once a minute, when a datapoint is due, every
//! alarm evaluates its newest published datapoints ([`Alarm`]), and each alarm in `ALARM`
//! invokes its policy, again every minute for as long as it stays there (§0).
//!
//! # Target tracking (§1)
//!
//! Two alarms on 60 s periods: `AlarmHigh` (above the target, 3 of 3) and `AlarmLow`
//! (below `low_ratio` × target, 15 of 15; not created with `disable_scale_in`). Both
//! act on the newest datapoint `v` and the **running** count `r`:
//! `new = ceil(r × v / target)` (never adds too little, never removes too much).
//!
//! - Scale-out whenever `AlarmHigh` is in `ALARM` and `new` is above the desired count.
//!   During the scale-out cooldown, `new` is computed from the running count when the
//!   cooldown started (the capacity the lagging datapoints were measured on), and only a
//!   larger count goes through: the capacity the cooldown's scale-out added counts as
//!   desired. A scale-out during the cooldown restarts it, keeping that base (⚠ our
//!   reading of "won't increase again unless a larger scale-out is triggered").
//! - Scale-in when `AlarmLow` is in `ALARM`, no scale-in cooldown runs, and `new` is
//!   below the desired count. `new` already keeps the metric at or below the target, so
//!   "skip the scale-in when removing a task would push the metric back over the target"
//!   is this formula (⚠ documented approximation of AWS's "gradual" scale-in).
//! - From zero (nothing running or desired): one datapoint above the target is enough;
//!   the service gets one task (or `min`), then proportional scaling as above. That first
//!   step starts no cooldown.
//!
//! # Step scaling (§2)
//!
//! Your own alarms (threshold, comparison, M of N, missing-data treatment). When an alarm
//! fires, its breaching datapoints are reduced by the policy's aggregation (⚠ AWS says
//! only "the metric's recent datapoints"), the band holding `value − threshold` is chosen
//! with AWS's inclusive/exclusive ends, and its adjustment (change, percent with AWS's
//! rounding and `min_adjustment_magnitude`, exact) is applied to the desired count. The
//! band selection and rounding are capstan-core's
//! ([`StepAlarm::select`](capstan_core::policy::StepAlarm::select),
//! [`percent_adjustment`](capstan_core::policy::step::percent_adjustment)). While the
//! scale-out alarm is in `ALARM`, the scale-in alarm does not act (the larger capacity
//! wins).
//!
//! # Shared rules
//!
//! - Cooldowns: during the scale-out cooldown a step adjustment starts from the count
//!   before the scale-out that started it (+2 done, then +3 adds only +1); a scale-in is
//!   blocked until the scale-in cooldown ends; a scale-out cancels the scale-in cooldown,
//!   and a scale-in ends the scale-out cooldown (its base no longer holds).
//! - Clamping: results stay in `[min, max]`. Desired below `min`: a scale-out goes to at
//!   least `min`, a scale-in leaves it. Above `max`: a scale-in goes to at most `max`, a
//!   scale-out leaves it.
//! - Missing data: an alarm in `INSUFFICIENT_DATA` does nothing, and no policy scales in
//!   when the newest datapoint is missing.
//!
//! # Managed scaling (§6)
//!
//! `CapacityProviderReservation` (instances needed over instances running, percent)
//! tracked at `target_capacity` by `AlarmHigh` (1 of 1) and `AlarmLow` (15 of 15, and
//! only 15 minutes after any scale-out), with the instance warm-up blocking scale-out.
//! See [`managed`].

mod cloudwatch;
pub mod managed;
mod step;
mod target_tracking;

use std::fmt;

use jiff::Timestamp;
use serde::Deserialize;

use crate::metric::{Frame, SimMetric};

pub use cloudwatch::{
    Alarm, AlarmRule, AlarmState, CloudWatchMetric, Comparison, Evaluation, MissingData, PERIOD_MS,
    Statistic,
};
pub use managed::{
    ClusterView, HostState, HostView, ManagedScalingSpec, Reservation, TaskGroup,
    managed_protection,
};
pub use step::{AdjustmentType, AlarmSteps, MetricAggregation, StepAdjustmentSpec, StepSpec};
pub use target_tracking::TargetTrackingSpec;

/// Datapoints `AlarmHigh` needs, of as many (fixed by AWS).
pub const HIGH_DATAPOINTS: u32 = 3;
/// Datapoints `AlarmLow` needs, of as many (fixed by AWS).
pub const LOW_DATAPOINTS: u32 = 15;
/// AWS's default cooldowns and CloudWatch publishing delay, seconds.
const DEFAULT_COOLDOWN_S: u32 = 300;
const DEFAULT_PUBLISH_DELAY_S: u32 = 60;
/// The longest alarm window CloudWatch accepts: period × evaluation periods ≤ 1 day (§0).
const MAX_EVALUATION_PERIODS: u32 = 1440;
/// The longest publishing delay accepted, seconds.
const MAX_PUBLISH_DELAY_S: u32 = 3600;

fn default_cooldown_s() -> u32 {
    DEFAULT_COOLDOWN_S
}

fn default_publish_delay_s() -> u32 {
    DEFAULT_PUBLISH_DELAY_S
}

/// An AWS baseline as a scenario describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BaselineSpec {
    /// Application Auto Scaling target tracking (`kind = "aws-target-tracking"`).
    AwsTargetTracking(TargetTrackingSpec),
    /// Application Auto Scaling step scaling with your alarms (`kind = "aws-step"`).
    AwsStep(StepSpec),
    /// ECS capacity provider managed scaling of an EC2 cluster's Auto Scaling group
    /// (`kind = "aws-managed-scaling"`); driven by [`Baseline::step_cluster`].
    AwsManagedScaling(ManagedScalingSpec),
}

impl BaselineSpec {
    /// The `kind` tag (`aws-target-tracking`, `aws-step`, `aws-managed-scaling`), a
    /// natural run name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AwsTargetTracking(_) => "aws-target-tracking",
            Self::AwsStep(_) => "aws-step",
            Self::AwsManagedScaling(_) => "aws-managed-scaling",
        }
    }

    /// Every problem with the settings, each naming its field.
    pub fn validate(&self) -> Vec<FieldProblem> {
        match self {
            Self::AwsTargetTracking(s) => s.validate(),
            Self::AwsStep(s) => s.validate(),
            Self::AwsManagedScaling(s) => s.validate(),
        }
    }
}

/// One problem with a baseline's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field, as written in the scenario (`target`, `out.steps[1].upper`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldProblem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Settings a baseline cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineError {
    /// The baseline's name.
    pub baseline: String,
    /// Every problem found (at least one).
    pub problems: Vec<FieldProblem>,
}

impl fmt::Display for BaselineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "baseline \"{}\": ", self.baseline)?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for BaselineError {}

/// A change of desired count AWS would make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineAction {
    /// The new desired count.
    pub to: u32,
    /// Why, as a sentence ("AlarmHigh cpu 78.1 > 60 for 3 of 3 datapoints: ceil(4 ×
    /// 78.1 / 60) = 6").
    pub reason: String,
}

/// A running emulation of one AWS scaling setup.
#[derive(Debug, Clone)]
pub struct Baseline {
    name: String,
    metric: SimMetric,
    cloudwatch: CloudWatchMetric,
    delay_ms: i64,
    last_ms: Option<i64>,
    next_eval_ms: Option<i64>,
    engine: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    TargetTracking(target_tracking::Engine),
    Step(step::Engine),
    Managed(managed::Engine),
}

impl Baseline {
    /// A baseline named `name` (the run's name in reports) from its settings, which are
    /// checked first.
    pub fn new(name: &str, spec: &BaselineSpec) -> Result<Self, BaselineError> {
        let problems = spec.validate();
        if !problems.is_empty() {
            return Err(BaselineError {
                baseline: name.to_owned(),
                problems,
            });
        }
        let (metric, statistic, delay_s, engine, periods) = match spec {
            BaselineSpec::AwsTargetTracking(s) => (
                s.metric,
                s.statistic,
                s.publish_delay_s,
                Engine::TargetTracking(target_tracking::Engine::new(s)),
                LOW_DATAPOINTS,
            ),
            BaselineSpec::AwsStep(s) => {
                let engine = step::Engine::new(s);
                let periods = engine.evaluation_periods();
                (
                    s.metric,
                    s.statistic,
                    s.publish_delay_s,
                    Engine::Step(engine),
                    periods,
                )
            }
            // CapacityProviderReservation is not a service metric; CPU reservation is
            // the closest simulated one, named for plots only.
            BaselineSpec::AwsManagedScaling(s) => (
                SimMetric::CpuReservation,
                Statistic::Average,
                s.publish_delay_s,
                Engine::Managed(managed::Engine::new(s)),
                LOW_DATAPOINTS,
            ),
        };
        // The alarm windows, the periods the delay spans, the period being filled.
        let keep = periods as usize + delay_s.div_ceil(60) as usize + 2;
        Ok(Self {
            name: name.to_owned(),
            metric,
            cloudwatch: CloudWatchMetric::new(statistic, delay_s, keep),
            delay_ms: i64::from(delay_s) * 1000,
            last_ms: None,
            next_eval_ms: None,
            engine,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The metric it acts on and its target (target tracking) or threshold (step
    /// scaling: the scale-out alarm's, else the scale-in alarm's), for plots. Managed
    /// scaling acts on `CapacityProviderReservation`, which is no [`SimMetric`]: it
    /// reports [`SimMetric::CpuReservation`] with its target capacity, and the metric
    /// itself is [`Baseline::reservation`].
    pub fn metric(&self) -> (SimMetric, f64) {
        let level = match &self.engine {
            Engine::TargetTracking(e) => e.target(),
            Engine::Step(e) => e.threshold(),
            Engine::Managed(e) => e.target(),
        };
        (self.metric, level)
    }

    /// Whether it scales a cluster's Auto Scaling group (managed scaling), driven by
    /// [`Baseline::step_cluster`], rather than a service, driven by [`Baseline::step`].
    pub fn acts_on_cluster(&self) -> bool {
        matches!(self.engine, Engine::Managed(_))
    }

    /// Managed scaling: the `CapacityProviderReservation` of the latest
    /// [`ClusterView`], with what it is made of. `None` for other kinds and before the
    /// first view.
    pub fn reservation(&self) -> Option<Reservation> {
        match &self.engine {
            Engine::Managed(e) => e.last(),
            _ => None,
        }
    }

    /// The `[min, max]` it keeps the desired count in.
    pub fn bounds(&self) -> (u32, u32) {
        match &self.engine {
            Engine::TargetTracking(e) => e.bounds(),
            Engine::Step(e) => e.bounds(),
            Engine::Managed(e) => e.bounds(),
        }
    }

    /// Its alarms and their current states.
    pub fn alarms(&self) -> Vec<(&str, AlarmState)> {
        match &self.engine {
            Engine::TargetTracking(e) => e.alarms(),
            Engine::Step(e) => e.alarms(),
            Engine::Managed(e) => e.alarms(),
        }
        .into_iter()
        .map(|a| (a.name(), a.state()))
        .collect()
    }

    /// Called once per simulated second with every simulated metric, and the service's
    /// running and desired counts. Returns a new desired count when AWS would change it
    /// now, with the reason. Runs every alarm evaluation due since the previous call (at
    /// most one a minute), so larger steps work too; a `now` not after the previous one
    /// is ignored. A managed scaling baseline does nothing here (see
    /// [`Baseline::step_cluster`]).
    pub fn step(
        &mut self,
        now: Timestamp,
        frame: &Frame,
        running: u32,
        desired: u32,
    ) -> Option<BaselineAction> {
        if self.acts_on_cluster() || !self.tick(now) {
            return None;
        }
        self.cloudwatch.record(now, frame.get(self.metric));
        self.evaluate_due(now, desired, |engine, at, cw, current| match engine {
            Engine::TargetTracking(e) => e.evaluate(at, cw, running, current),
            Engine::Step(e) => e.evaluate(at, cw, current),
            Engine::Managed(_) => None,
        })
    }

    /// Managed scaling, called once per simulated second with the group and its
    /// cluster: computes `CapacityProviderReservation`, and returns the group's new
    /// desired capacity when AWS would change it now (`to`), with the reason. Runs every
    /// alarm evaluation due since the previous call, like [`Baseline::step`]; a `now`
    /// not after the previous one is ignored. Other kinds do nothing here.
    pub fn step_cluster(
        &mut self,
        now: Timestamp,
        cluster: &ClusterView,
    ) -> Option<BaselineAction> {
        if !self.acts_on_cluster() || !self.tick(now) {
            return None;
        }
        let percent = match &mut self.engine {
            Engine::Managed(e) => e.measure(cluster),
            _ => return None,
        };
        self.cloudwatch.record(now, Some(percent));
        self.evaluate_due(
            now,
            cluster.desired,
            |engine, at, cw, current| match engine {
                Engine::Managed(e) => e.evaluate(at, cw, cluster, current),
                _ => None,
            },
        )
    }

    /// Moves to `now`; false (and nothing to do) if `now` is not after the previous
    /// call.
    fn tick(&mut self, now: Timestamp) -> bool {
        let now_ms = now.as_millisecond();
        if self.last_ms.is_some_and(|last| now_ms <= last) {
            return false;
        }
        self.last_ms = Some(now_ms);
        true
    }

    /// Runs every alarm evaluation due up to `now` with `evaluate(engine, at,
    /// datapoints, desired)`, chaining their actions; the last one wins unless it leaves
    /// `desired` as it was.
    fn evaluate_due(
        &mut self,
        now: Timestamp,
        desired: u32,
        mut evaluate: impl FnMut(&mut Engine, i64, &CloudWatchMetric, u32) -> Option<BaselineAction>,
    ) -> Option<BaselineAction> {
        let now_ms = now.as_millisecond();
        let mut next = self
            .next_eval_ms
            .unwrap_or_else(|| first_evaluation(now_ms, self.delay_ms));
        let mut current = desired;
        let mut result: Option<BaselineAction> = None;
        while next <= now_ms {
            let action = evaluate(&mut self.engine, next, &self.cloudwatch, current);
            if let Some(a) = action {
                current = a.to;
                result = Some(match result {
                    None => a,
                    Some(prev) => BaselineAction {
                        to: a.to,
                        reason: format!("{}; then {}", prev.reason, a.reason),
                    },
                });
            }
            next += PERIOD_MS;
        }
        self.next_eval_ms = Some(next);
        result.filter(|a| a.to != desired)
    }
}

/// The first alarm evaluation at or after `now_ms`: evaluations happen when a datapoint
/// is due, `delay` after each whole minute.
fn first_evaluation(now_ms: i64, delay_ms: i64) -> i64 {
    let k = (now_ms - delay_ms).div_euclid(PERIOD_MS);
    let at = k * PERIOD_MS + delay_ms;
    if at < now_ms { at + PERIOD_MS } else { at }
}

/// The running cooldowns of one policy set (§1, §2).
#[derive(Debug, Clone, Copy, Default)]
struct Cooldowns {
    /// Until when the scale-out cooldown runs, and the count its scale-outs start from.
    out: Option<(i64, u32)>,
    /// Until when the scale-in cooldown runs.
    r#in: Option<i64>,
}

impl Cooldowns {
    /// The base of the running scale-out cooldown at `at`, and its end.
    fn out_base(&self, at: i64) -> Option<(u32, i64)> {
        self.out
            .filter(|(until, _)| at < *until)
            .map(|(until, base)| (base, until))
    }

    /// The end of the running scale-in cooldown at `at`.
    fn in_until(&self, at: i64) -> Option<i64> {
        self.r#in.filter(|until| at < *until)
    }

    /// A scale-out at `at` from `base`: starts (or restarts, keeping its base) the
    /// scale-out cooldown; cancels the scale-in cooldown.
    fn scaled_out(&mut self, at: i64, base: u32, cooldown_s: u32) {
        let base = self.out_base(at).map_or(base, |(b, _)| b);
        self.out = Some((at + i64::from(cooldown_s) * 1000, base));
        self.r#in = None;
    }

    /// A scale-in at `at`: starts the scale-in cooldown; ends the scale-out cooldown.
    fn scaled_in(&mut self, at: i64, cooldown_s: u32) {
        self.r#in = Some(at + i64::from(cooldown_s) * 1000);
        self.out = None;
    }
}

/// AWS's clamping of a scale-out from `desired` to `count` (§2): `None` when nothing
/// changes; else the new count and a note when the bounds moved it.
fn clamp_out(desired: u32, count: u32, min: u32, max: u32) -> Option<(u32, String)> {
    if desired >= max {
        return None;
    }
    let to = count.clamp(min, max);
    let note = if to > count {
        format!(", raised to min {min}")
    } else if to < count {
        format!(", clamped to max {max}")
    } else {
        String::new()
    };
    (to > desired).then_some((to, note))
}

/// AWS's clamping of a scale-in from `desired` to `count` (§2), as [`clamp_out`].
fn clamp_in(desired: u32, count: u32, min: u32, max: u32) -> Option<(u32, String)> {
    if desired <= min {
        return None;
    }
    let to = count.clamp(min, max);
    let note = if to > count {
        format!(", held at min {min}")
    } else if to < count {
        format!(", lowered to max {max}")
    } else {
        String::new()
    };
    (to < desired).then_some((to, note))
}

/// `ceil(base × value / target)`, where a product within float noise of an integer
/// counts as that integer (4 × 75 / 60 is 5, not 6), saturating at `u32::MAX` and 0.
fn ceil_ratio(base: u32, value: f64, target: f64) -> u32 {
    let x = f64::from(base) * value / target;
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let r = x.round();
    let c = if (x - r).abs() <= 1e-9 * r.max(1.0) {
        r
    } else {
        x.ceil()
    };
    // Saturating float-to-int conversion.
    c as u32
}

/// A number for reasons: integers without decimals, others with at most three.
#[derive(Debug, Clone, Copy)]
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = (self.0 * 1000.0).round() / 1000.0;
        if r.fract() == 0.0 && r.abs() < 1e15 {
            // |r| < 1e15: exact as an i64.
            return write!(f, "{}", r as i64);
        }
        write!(f, "{r}")
    }
}

/// A millisecond instant for reasons.
fn instant(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| format!("{ms} ms"), |t| t.to_string())
}

/// Checks `min ≤ max`.
fn check_bounds(min: u32, max: u32, problems: &mut Vec<FieldProblem>) {
    if min > max {
        problems.push(FieldProblem::new(
            "min",
            format!("must not be above max ({min} > {max})"),
        ));
    }
}

/// Checks the publishing delay.
fn check_delay(delay_s: u32, problems: &mut Vec<FieldProblem>) {
    if delay_s > MAX_PUBLISH_DELAY_S {
        problems.push(FieldProblem::new(
            "publish_delay_s",
            format!("must be at most {MAX_PUBLISH_DELAY_S} s (got {delay_s})"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_ratio_ignores_float_noise_and_saturates() {
        assert_eq!(ceil_ratio(4, 75.0, 60.0), 5);
        assert_eq!(ceil_ratio(4, 78.1, 60.0), 6);
        assert_eq!(ceil_ratio(3, 70.0, 70.0), 3);
        assert_eq!(ceil_ratio(10, 0.1 * 3.0, 0.3), 10);
        assert_eq!(ceil_ratio(0, 90.0, 60.0), 0);
        assert_eq!(ceil_ratio(5, -1.0, 60.0), 0);
        assert_eq!(ceil_ratio(u32::MAX, 1e9, 1.0), u32::MAX);
    }

    #[test]
    fn clamping_follows_aws_rules() {
        // Inside the bounds.
        assert_eq!(clamp_out(4, 6, 1, 10).map(|c| c.0), Some(6));
        assert_eq!(clamp_in(4, 2, 1, 10).map(|c| c.0), Some(2));
        // Clamped at the bounds.
        assert_eq!(
            clamp_out(4, 12, 1, 10),
            Some((10, ", clamped to max 10".into()))
        );
        assert_eq!(clamp_in(4, 0, 1, 10), Some((1, ", held at min 1".into())));
        // Below min: a scale-out goes to min at least, a scale-in leaves it.
        assert_eq!(
            clamp_out(1, 2, 3, 10),
            Some((3, ", raised to min 3".into()))
        );
        assert_eq!(clamp_out(1, 5, 3, 10).map(|c| c.0), Some(5));
        assert_eq!(clamp_in(1, 0, 3, 10), None);
        // Above max: a scale-in goes to max at most, a scale-out leaves it.
        assert_eq!(
            clamp_in(12, 11, 1, 10),
            Some((10, ", lowered to max 10".into()))
        );
        assert_eq!(clamp_in(12, 8, 1, 10).map(|c| c.0), Some(8));
        assert_eq!(clamp_out(12, 20, 1, 10), None);
        // Nothing to do.
        assert_eq!(clamp_out(6, 6, 1, 10), None);
        assert_eq!(clamp_in(6, 7, 1, 10), None);
    }

    #[test]
    fn evaluations_fall_when_datapoints_are_due() {
        // With a 60 s delay, every whole minute a datapoint is due.
        assert_eq!(first_evaluation(0, 60_000), 0);
        assert_eq!(first_evaluation(1_000, 60_000), 60_000);
        assert_eq!(first_evaluation(60_000, 60_000), 60_000);
        assert_eq!(first_evaluation(60_001, 60_000), 120_000);
        assert_eq!(first_evaluation(1_000, 30_000), 30_000);
        assert_eq!(first_evaluation(31_000, 30_000), 90_000);
        assert_eq!(first_evaluation(-1_000, 0), 0);
    }

    #[test]
    fn cooldowns_keep_their_base_and_cancel_each_other() {
        let mut c = Cooldowns::default();
        c.scaled_in(0, 300);
        assert_eq!(c.in_until(1_000), Some(300_000));
        c.scaled_out(60_000, 4, 300);
        assert_eq!(c.in_until(60_000), None);
        assert_eq!(c.out_base(60_000), Some((4, 360_000)));
        // A second scale-out inside the cooldown restarts it but keeps the base.
        c.scaled_out(120_000, 6, 300);
        assert_eq!(c.out_base(400_000), Some((4, 420_000)));
        assert_eq!(c.out_base(420_000), None);
        c.scaled_out(130_000, 6, 300);
        c.scaled_in(140_000, 0);
        assert_eq!(c.out_base(140_000), None);
        assert_eq!(c.in_until(140_000), None);
    }
}
