//! Durations drawn from distributions, Poisson arrival counts, and the inverse normal
//! CDF they need: everything seeded, nothing allocated.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::WorkloadError;

/// z of the normal distribution's 95th percentile.
const Z95: f64 = 1.644_853_626_951_472_2;

/// A distribution of durations (processing times, request or session durations), in
/// seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always `s`.
    Fixed {
        /// The duration, seconds (> 0).
        s: f64,
    },
    /// Exponential (memoryless) with mean `mean_s`.
    Exponential {
        /// Mean, seconds (> 0).
        mean_s: f64,
    },
    /// Log-normal given by its median and 95th percentile (a long right tail).
    #[serde(alias = "lognormal")]
    LogNormal {
        /// Median, seconds (> 0).
        median_s: f64,
        /// 95th percentile, seconds (≥ `median_s`).
        p95_s: f64,
    },
    /// Uniform between `min_s` and `max_s`.
    Uniform {
        /// Lower bound, seconds (≥ 0).
        min_s: f64,
        /// Upper bound, seconds (≥ `min_s`, > 0).
        max_s: f64,
    },
    /// The trace's `processing_time` at the moment the work starts.
    Trace,
}

/// A validated [`Dist`], ready to sample by quantile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sampler {
    /// Always this many seconds.
    Fixed(f64),
    /// Exponential with this mean.
    Exponential(f64),
    /// `exp(mu + sigma·z)`.
    LogNormal { mu: f64, sigma: f64 },
    /// `min + u·span`.
    Uniform { min: f64, span: f64 },
    /// The trace's processing time.
    Trace,
}

impl Sampler {
    /// Validates `dist`, naming fields under `field` (e.g. `processing`).
    pub(crate) fn new(dist: &Dist, field: &str) -> Result<Self, WorkloadError> {
        let f = |name: &str| format!("{field}.{name}");
        Ok(match *dist {
            Dist::Fixed { s } => Self::Fixed(positive(&f("s"), s)?),
            Dist::Exponential { mean_s } => Self::Exponential(positive(&f("mean_s"), mean_s)?),
            Dist::LogNormal { median_s, p95_s } => {
                let median = positive(&f("median_s"), median_s)?;
                let p95 = positive(&f("p95_s"), p95_s)?;
                if p95 < median {
                    return Err(WorkloadError::invalid(
                        f("p95_s"),
                        format!("must be ≥ median_s ({median}), got {p95}"),
                    ));
                }
                Self::LogNormal {
                    mu: median.ln(),
                    sigma: (p95 / median).ln() / Z95,
                }
            }
            Dist::Uniform { min_s, max_s } => {
                let min = non_negative(&f("min_s"), min_s)?;
                let max = positive(&f("max_s"), max_s)?;
                if max < min {
                    return Err(WorkloadError::invalid(
                        f("max_s"),
                        format!("must be ≥ min_s ({min}), got {max}"),
                    ));
                }
                Self::Uniform {
                    min,
                    span: max - min,
                }
            }
            Dist::Trace => Self::Trace,
        })
    }

    /// The duration at quantile `u` ∈ (0, 1); `trace` is the trace's current value.
    pub(crate) fn quantile(self, u: f64, trace: f64) -> f64 {
        match self {
            Self::Fixed(s) => s,
            Self::Exponential(mean) => -mean * (1.0 - u).ln(),
            Self::LogNormal { mu, sigma } => (mu + sigma * inverse_normal(u)).exp(),
            Self::Uniform { min, span } => min + u * span,
            Self::Trace => trace,
        }
    }

    /// The mean duration; `trace` is the trace's current value.
    pub(crate) fn mean(self, trace: f64) -> f64 {
        match self {
            Self::Fixed(s) => s,
            Self::Exponential(mean) => mean,
            Self::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Self::Uniform { min, span } => min + span / 2.0,
            Self::Trace => trace,
        }
    }

    /// Every draw gives the same value (no need to draw, or to split a batch).
    pub(crate) fn is_constant(self) -> bool {
        match self {
            Self::Fixed(_) | Self::Trace => true,
            Self::LogNormal { sigma, .. } => sigma == 0.0,
            Self::Uniform { span, .. } => span == 0.0,
            Self::Exponential(_) => false,
        }
    }

    /// Whether it reads the trace's processing time.
    pub(crate) fn uses_trace(self) -> bool {
        matches!(self, Self::Trace)
    }
}

/// Points of a [`Quantiles`] table.
const TABLE: usize = 1024;
/// Table intervals at each end computed exactly (where quantiles curve most).
const TAIL: usize = 8;

/// A sampler with its quantile function tabulated: a draw in the body of the
/// distribution is a table lookup with linear interpolation (between 1/1024-quantile
/// knots, within 0.1 % of the exact value) instead of logarithms and exponentials; the
/// outer 1/128 on each side is computed exactly, so tails stay right.
#[derive(Debug, Clone)]
pub(crate) struct Quantiles {
    sampler: Sampler,
    /// `table[k]` = quantile at k / TABLE (empty for constant samplers).
    table: Box<[f64]>,
}

impl Quantiles {
    /// Tabulates `sampler`.
    pub(crate) fn new(sampler: Sampler) -> Self {
        let table = if sampler.is_constant() {
            Box::default()
        } else {
            (0..=TABLE)
                .map(|k| sampler.quantile(k as f64 / TABLE as f64, 0.0))
                .collect()
        };
        Self { sampler, table }
    }

    /// The duration at quantile `u` ∈ (0, 1); `trace` is the trace's current value.
    #[inline]
    pub(crate) fn at(&self, u: f64, trace: f64) -> f64 {
        let x = u * TABLE as f64;
        let k = x as usize;
        if self.table.is_empty() || !(TAIL..TABLE - TAIL).contains(&k) {
            return self.sampler.quantile(u, trace);
        }
        let (a, b) = (self.table[k], self.table[k + 1]);
        a + (b - a) * (x - k as f64)
    }

    /// The sampler.
    pub(crate) fn sampler(&self) -> Sampler {
        self.sampler
    }
}

/// Two uniform draws in (0, 1) from one 64-bit draw (32 bits each).
#[inline]
pub(crate) fn two_units(rng: &mut ChaCha8Rng) -> (f64, f64) {
    const SCALE: f64 = 1.0 / 4_294_967_296.0;
    let r = rng.random::<u64>();
    (
        ((r >> 32) as f64 + 0.5) * SCALE,
        ((r & 0xffff_ffff) as f64 + 0.5) * SCALE,
    )
}

/// `v` if it is a finite number > 0, else an error naming `field`.
pub(crate) fn positive(field: &str, v: f64) -> Result<f64, WorkloadError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(WorkloadError::invalid(
            field,
            format!("must be > 0, got {v}"),
        ))
    }
}

/// `v` if it is a finite number ≥ 0, else an error naming `field`.
pub(crate) fn non_negative(field: &str, v: f64) -> Result<f64, WorkloadError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(WorkloadError::invalid(
            field,
            format!("must be ≥ 0, got {v}"),
        ))
    }
}

/// A uniform draw in the open interval (0, 1).
pub(crate) fn unit_open(rng: &mut ChaCha8Rng) -> f64 {
    ((rng.random::<u64>() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A Poisson-distributed count with mean `lambda`: exact (inversion) below 30, the
/// normal approximation above.
pub(crate) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    if !lambda.is_finite() || lambda <= 0.0 {
        return 0;
    }
    let u = unit_open(rng);
    if lambda < 30.0 {
        let mut p = (-lambda).exp();
        let mut cdf = p;
        let mut k = 0u64;
        while u > cdf && k < 200 {
            k += 1;
            p *= lambda / k as f64;
            cdf += p;
        }
        k
    } else {
        (lambda + lambda.sqrt() * inverse_normal(u))
            .round()
            .max(0.0) as u64
    }
}

/// Φ⁻¹(p), the standard normal quantile, by Acklam's rational approximation (relative
/// error below 1.2e-9). `p` outside (0, 1) gives ±∞.
pub(crate) fn inverse_normal(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn inverse_normal_matches_known_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.95, Z95),
            (0.975, 1.959_963_984_540_054),
            (0.001, -3.090_232_306_167_813_5),
            (0.999_9, 3.719_016_485_455_709),
        ] {
            assert!((inverse_normal(p) - z).abs() < 1e-8, "Φ⁻¹({p})");
        }
        assert_eq!(inverse_normal(0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn log_normal_hits_its_median_and_p95() {
        let s = Sampler::new(
            &Dist::LogNormal {
                median_s: 2.0,
                p95_s: 10.0,
            },
            "d",
        )
        .expect("valid");
        assert!((s.quantile(0.5, 0.0) - 2.0).abs() < 1e-9);
        assert!((s.quantile(0.95, 0.0) - 10.0).abs() < 1e-6);
        assert!(s.mean(0.0) > 2.0);
    }

    #[test]
    fn tabulated_quantiles_stay_close_to_the_exact_ones() {
        for dist in [
            Dist::Exponential { mean_s: 3.0 },
            Dist::LogNormal {
                median_s: 0.2,
                p95_s: 4.0,
            },
            Dist::Uniform {
                min_s: 1.0,
                max_s: 5.0,
            },
        ] {
            let s = Sampler::new(&dist, "d").expect("valid");
            let q = Quantiles::new(s);
            for i in 1..10_000 {
                let u = f64::from(i) / 10_000.0;
                let (exact, table) = (s.quantile(u, 0.0), q.at(u, 0.0));
                assert!(
                    (table - exact).abs() <= 2e-3 * exact + 1e-9,
                    "{dist:?} at {u}"
                );
            }
        }
        let fixed = Quantiles::new(Sampler::Fixed(2.0));
        assert_eq!(fixed.at(0.3, 0.0), 2.0);
        assert_eq!(Quantiles::new(Sampler::Trace).at(0.9, 7.0), 7.0);
    }

    #[test]
    fn poisson_means_and_variances_are_right() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for lambda in [0.3, 4.0, 29.0, 31.0, 500.0] {
            let n = 40_000;
            let draws: Vec<f64> = (0..n).map(|_| poisson(&mut rng, lambda) as f64).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                (mean - lambda).abs() < 0.05 * lambda + 0.02,
                "mean {mean} for {lambda}"
            );
            assert!(
                (var - lambda).abs() < 0.1 * lambda + 0.05,
                "var {var} for {lambda}"
            );
        }
        assert_eq!(poisson(&mut rng, 0.0), 0);
        assert_eq!(poisson(&mut rng, f64::NAN), 0);
    }

    #[test]
    fn invalid_parameters_name_their_field() {
        let e = Sampler::new(&Dist::Exponential { mean_s: -1.0 }, "processing")
            .expect_err("negative mean");
        assert_eq!(e.to_string(), "processing.mean_s: must be > 0, got -1");
        let e = Sampler::new(
            &Dist::Uniform {
                min_s: 3.0,
                max_s: 2.0,
            },
            "duration",
        )
        .expect_err("max < min");
        assert_eq!(e.to_string(), "duration.max_s: must be ≥ min_s (3), got 2");
        let e = Sampler::new(
            &Dist::LogNormal {
                median_s: 1.0,
                p95_s: f64::NAN,
            },
            "duration",
        )
        .expect_err("NaN");
        assert_eq!(e.to_string(), "duration.p95_s: must be > 0, got NaN");
    }
}
