//! Threshold / composite: several metrics, each with a min and a max. Scale up if any is
//! above its max, down only if all are below their min, else hold. Asymmetric
//! datapoints; step sizes fixed, linear or exponential while the condition persists;
//! optional jitter from a seeded RNG.
//!
//! - Up when *any* metric's newest `datapoints.out` samples are all above its max.
//! - Else down when *every* metric's newest `datapoints.in` samples are all below its min.
//! - Else hold (which blocks other policies' scale-in).
//!
//! The step is `step_out` / `step_in`, grown while the same direction keeps firing on
//! consecutive evaluations (linear: step × k on the k-th firing; exponential:
//! step × 2^(k−1), saturating). A firing counts towards the growth only once the
//! previous one took effect (the desired count moved since): while the planner holds an
//! ask back (cooldown, stabilization, rate limit, max), the same step is asked again
//! instead of doubling into a jump to the bound. The step is then multiplied by a jitter factor uniform in
//! [1 − f, 1 + f) drawn from the state's seeded RNG (rounded to nearest, at least 1). The
//! streak resets when the direction changes, when the policy holds, and when data is
//! missing. Up asks `capacity.desired + step`; down asks `capacity.desired − step`
//! (saturating at 0). Any unusable metric → no data; on a last-known value the policy may
//! go up but holds instead of going down.

use std::fmt::Write as _;

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::target_tracking::{Data, Num, Streak, read, to_count, validate_datapoints};
use super::{Ask, Datapoints, Outcome, PolicyError, PolicyInput};

/// One metric's band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricBounds {
    /// Source name.
    pub metric: String,
    /// Below this (for `datapoints.in` samples) the metric allows scale-in.
    pub min: f64,
    /// Above this (for `datapoints.out` samples) the metric asks for scale-out.
    pub max: f64,
}

/// How the step grows while the condition persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    /// Always the configured step.
    #[default]
    Fixed,
    /// step × k on the k-th consecutive firing.
    Linear,
    /// step × 2^(k−1) on the k-th consecutive firing.
    Exponential,
}

/// Random variation of the step size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Jitter {
    /// The step is multiplied by a uniform factor in [1 − fraction, 1 + fraction].
    pub fraction: f64,
    /// RNG seed (same seed, same sequence).
    pub seed: u64,
}

impl Jitter {
    /// The error of a `fraction` outside [0, 1), if any.
    pub fn check(&self) -> Option<PolicyError> {
        (!self.fraction.is_finite() || !(0.0..1.0).contains(&self.fraction)).then(|| {
            PolicyError::new(
                "jitter.fraction",
                format!("must be at least 0 and below 1 (got {})", self.fraction),
            )
        })
    }
}

/// Settings of a threshold / composite policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// The metrics and their bands.
    pub metrics: Vec<MetricBounds>,
    /// Consecutive samples needed per direction.
    pub datapoints: Datapoints,
    /// Tasks added per firing (before growth and jitter), ≥ 1.
    pub step_out: u32,
    /// Tasks removed per firing (before growth and jitter), ≥ 1.
    pub step_in: u32,
    /// Growth while the condition persists.
    pub growth: Growth,
    /// Optional jitter.
    pub jitter: Option<Jitter>,
}

/// Streak and RNG of a threshold policy.
#[derive(Debug, Clone)]
pub struct ThresholdState {
    /// +1 while firing up, −1 while firing down, 0 otherwise.
    pub direction: i8,
    /// Consecutive firings in `direction` that took effect.
    pub streak: u32,
    /// The desired count at the last firing: the next one grows the step only if the
    /// count has moved since.
    pub last_desired: Option<u32>,
    /// Seeded RNG for jitter.
    pub rng: ChaCha8Rng,
}

impl ThresholdState {
    /// The initial state of `policy`.
    pub fn new(policy: &Threshold) -> Self {
        Self::seeded(policy.jitter.map_or(0, |j| j.seed))
    }

    /// A fresh state whose jitter RNG is seeded with `seed` (also used by the `alert`
    /// policy, which steps the same way).
    pub fn seeded(seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            direction: 0,
            streak: 0,
            last_desired: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Threshold {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        if self.metrics.is_empty() {
            errors.push(PolicyError::new("metrics", "must list at least one metric"));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if m.metric.trim().is_empty() {
                errors.push(PolicyError::new(
                    format!("metrics[{i}].metric"),
                    "must name a source",
                ));
            } else if let Some(j) = self.metrics[..i].iter().position(|o| o.metric == m.metric) {
                errors.push(PolicyError::new(
                    format!("metrics[{i}].metric"),
                    format!("`{}` is already listed at metrics[{j}]", m.metric),
                ));
            }
            let finite = m.min.is_finite() && m.max.is_finite();
            if !m.min.is_finite() {
                errors.push(PolicyError::new(
                    format!("metrics[{i}].min"),
                    format!("must be a finite number (got {})", m.min),
                ));
            }
            if !m.max.is_finite() {
                errors.push(PolicyError::new(
                    format!("metrics[{i}].max"),
                    format!("must be a finite number (got {})", m.max),
                ));
            }
            if finite && m.min >= m.max {
                errors.push(PolicyError::new(
                    format!("metrics[{i}].max"),
                    format!("must be above min ({} ≤ {})", Num(m.max), Num(m.min)),
                ));
            }
        }
        validate_datapoints(self.datapoints, &mut errors);
        if self.step_out == 0 {
            errors.push(PolicyError::new("step_out", "must be at least 1"));
        }
        if self.step_in == 0 {
            errors.push(PolicyError::new("step_in", "must be at least 1"));
        }
        errors.extend(self.jitter.and_then(|j| j.check()));
        errors
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, input: &PolicyInput<'_>, state: &mut ThresholdState) -> Outcome {
        // Read every metric first: any unusable one means no decision.
        let mut data = Vec::with_capacity(self.metrics.len());
        let mut missing: Vec<String> = Vec::new();
        let mut why_missing: Vec<String> = Vec::new();
        for m in &self.metrics {
            match read(input, &m.metric) {
                Ok(d) => data.push((m, d)),
                Err(why) => {
                    missing.push(m.metric.clone());
                    why_missing.push(why);
                }
            }
        }
        if !missing.is_empty() || data.is_empty() {
            state.reset();
            let why = if why_missing.is_empty() {
                "no metrics configured".to_owned()
            } else {
                why_missing.join("; ")
            };
            return (Ask::NoData { sources: missing }, why, false);
        }
        let degraded = data.iter().any(|(_, d)| d.is_degraded());
        let desired = input.capacity.desired;
        let (out_n, in_n) = (self.datapoints.out, self.datapoints.r#in);

        // Up: any metric above its max for `out_n` samples.
        let mut short: Vec<String> = Vec::new();
        for (m, d) in &data {
            match d.streak(out_n, |v| v > m.max) {
                Streak::Met => {
                    let step = state.fire(self, 1, desired);
                    let count = desired.saturating_add(step);
                    let why = format!(
                        "up: {} {} > max {} ({}) → +{step}{} → {count}",
                        m.metric,
                        Num(d.newest()),
                        Num(m.max),
                        window(d, out_n),
                        self.growth_note(state.streak),
                    );
                    return (Ask::Desired { count }, mark(why, degraded), degraded);
                }
                Streak::Short { have } => short.push(format!(
                    "{} above max {} for {have} of {out_n} datapoints",
                    m.metric,
                    Num(m.max)
                )),
                Streak::Broken => {}
            }
        }

        // Down: every metric below its min for `in_n` samples.
        let mut all_below = true;
        for (m, d) in &data {
            match d.streak(in_n, |v| v < m.min) {
                Streak::Met => {}
                Streak::Short { have } => {
                    all_below = false;
                    short.push(format!(
                        "{} below min {} for {have} of {in_n} datapoints",
                        m.metric,
                        Num(m.min)
                    ));
                }
                Streak::Broken => all_below = false,
            }
        }
        let mut values = String::with_capacity(40 * data.len());
        for (i, (m, d)) in data.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                values,
                "{sep}{} {} in [{}, {}]",
                m.metric,
                Num(d.newest()),
                Num(m.min),
                Num(m.max)
            );
        }
        if all_below {
            if degraded {
                state.reset();
                let why = format!(
                    "every metric below its min ({values}); no scale-in on a last-known value: hold"
                );
                return (Ask::Hold, mark(why, degraded), degraded);
            }
            let step = state.fire(self, -1, desired);
            let count = desired.saturating_sub(step);
            let why = format!(
                "down: every metric below its min for {in_n} datapoints ({values}) → −{step}{} → {count}",
                self.growth_note(state.streak)
            );
            return (Ask::Desired { count }, why, false);
        }
        state.reset();
        let mut why = format!("hold: {values}");
        if !short.is_empty() {
            why.push_str(&format!(" ({})", short.join("; ")));
        }
        (Ask::Hold, mark(why, degraded), degraded)
    }

    fn growth_note(&self, streak: u32) -> String {
        let growth = match self.growth {
            Growth::Fixed => return String::new(),
            Growth::Linear => "linear",
            Growth::Exponential => "exponential",
        };
        format!(" (firing #{streak}, {growth})")
    }

    /// The step for the `streak`-th consecutive firing in one direction, before jitter.
    pub fn grown_step(&self, base: u32, streak: u32) -> u32 {
        grow(self.growth, base, streak)
    }
}

/// The step for the `streak`-th consecutive firing with `growth`, before jitter.
pub fn grow(growth: Growth, base: u32, streak: u32) -> u32 {
    let k = streak.max(1);
    match growth {
        Growth::Fixed => base,
        Growth::Linear => base.saturating_mul(k),
        Growth::Exponential => {
            let factor = 1u64.checked_shl(k - 1).unwrap_or(u64::MAX);
            u32::try_from(u64::from(base).saturating_mul(factor)).unwrap_or(u32::MAX)
        }
    }
}

impl ThresholdState {
    /// Ends the current streak (the condition stopped or data went missing).
    pub fn reset(&mut self) {
        self.direction = 0;
        self.streak = 0;
        self.last_desired = None;
    }

    /// Records one firing in `direction` (+1 up, −1 down) at desired count `desired` and
    /// returns the step to take: grown by the streak, jittered, at least 1. The streak
    /// grows only if the count moved since the last firing (the last step took effect).
    fn fire(&mut self, policy: &Threshold, direction: i8, desired: u32) -> u32 {
        let base = if direction > 0 {
            policy.step_out
        } else {
            policy.step_in
        };
        self.step(direction, desired, base, policy.growth, policy.jitter)
    }

    /// Records one firing in `direction` at desired count `desired` and returns the step
    /// to take from `base`: grown by `growth` over the streak (which grows only if the
    /// count moved since the last firing), jittered, at least 1.
    pub fn step(
        &mut self,
        direction: i8,
        desired: u32,
        base: u32,
        growth: Growth,
        jitter: Option<Jitter>,
    ) -> u32 {
        if self.direction != direction {
            self.direction = direction;
            self.streak = 1;
        } else if self.last_desired != Some(desired) {
            self.streak = self.streak.saturating_add(1);
        }
        self.last_desired = Some(desired);
        let step = grow(growth, base, self.streak);
        match jitter {
            Some(j) if j.fraction.is_finite() && j.fraction > 0.0 && j.fraction < 1.0 => {
                // u in [0, 1): factor in [1 − f, 1 + f).
                let u: f64 = self.rng.random();
                let factor = 1.0 - j.fraction + 2.0 * j.fraction * u;
                to_count((f64::from(step) * factor).round()).max(1)
            }
            _ => step.max(1),
        }
    }
}

/// "for 4 datapoints" or "last-known value".
fn window(data: &Data<'_>, n: u32) -> String {
    match data {
        Data::LastKnown(_) => "last-known value".to_owned(),
        Data::Fresh(_) => format!("for {n} datapoints"),
    }
}

fn mark(mut why: String, degraded: bool) -> String {
    if degraded {
        why.push_str(" [last-known value]");
    }
    why
}
