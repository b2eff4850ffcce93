//! Threshold / composite: several metrics, each with a min and a max. Scale up if any is
//! above its max, down only if all are below their min, else hold. Asymmetric
//! datapoints; step sizes fixed, linear or exponential while the condition persists;
//! optional jitter from a seeded RNG.

use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Datapoints, Outcome, PolicyError, PolicyInput};

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
    /// Consecutive firings in `direction`.
    pub streak: u32,
    /// Seeded RNG for jitter.
    pub rng: ChaCha8Rng,
}

impl ThresholdState {
    /// The initial state of `policy`.
    pub fn new(policy: &Threshold) -> Self {
        use rand::SeedableRng;
        Self {
            direction: 0,
            streak: 0,
            rng: ChaCha8Rng::seed_from_u64(policy.jitter.map_or(0, |j| j.seed)),
        }
    }
}

impl Threshold {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        unimplemented!("threshold validate")
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, _input: &PolicyInput<'_>, _state: &mut ThresholdState) -> Outcome {
        unimplemented!("threshold evaluate")
    }
}
