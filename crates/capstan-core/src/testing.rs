//! Builders shared by capstan's tests and benchmarks (feature `test-support`, off by
//! default): steady capacities, a plain planner configuration, recommendations,
//! one-second metric windows and a few ready-made engines.
//!
//! Nothing here is used by the daemon; it only saves the tests from repeating the same
//! struct literals. Enable it from a dev-dependency:
//! `capstan-core = { ..., features = ["test-support"] }`.

use std::time::Duration;

use jiff::Timestamp;

use crate::clock::{Clock, VirtualClock};
use crate::metrics::Observations;
use crate::model::{Bounds, Capacity, Sample};
use crate::planner::{Cooldowns, Engine, Fallback, PlannerConfig, RateLimits};
use crate::policy::{
    Adjustment, Aggregation, Ask, Datapoints, Growth, Jitter, MetricBounds, NamedPolicy, Policy,
    Recommendation, StepAlarm, StepBand, StepScaling, TargetTracking, Threshold, TrackingMode,
};

/// `desired` tasks, all running, none pending.
pub fn steady(desired: u32) -> Capacity {
    Capacity {
        desired,
        running: desired,
        pending: 0,
    }
}

/// A planner with bounds `min..=max` and nothing else: no cooldowns, no stabilization,
/// no rate limits, hold on missing data, not a dry run.
pub fn planner_config(min: u32, max: u32) -> PlannerConfig {
    PlannerConfig {
        bounds: Bounds { min, max },
        cooldown: Cooldowns::default(),
        stabilization: Duration::ZERO,
        rate_limits: RateLimits::default(),
        fallback: Fallback::Hold,
        dry_run: false,
    }
}

/// A recommendation from `policy` that is not degraded.
pub fn recommendation(policy: &str, ask: Ask, reason: &str) -> Recommendation {
    Recommendation {
        policy: policy.to_owned(),
        ask,
        reason: reason.to_owned(),
        degraded: false,
    }
}

/// Observations of `source` (window 15 minutes, max age 30 s) holding `values` one
/// second apart from the virtual epoch, the last at the returned instant.
pub fn window(source: &str, values: &[f64]) -> (Observations, Timestamp) {
    let clock = VirtualClock::at_epoch();
    let mut obs = Observations::new();
    obs.declare(source, Duration::from_secs(900), Duration::from_secs(30));
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            clock.advance(Duration::from_secs(1));
        }
        obs.push(
            source,
            Sample {
                value: *v,
                at: clock.now(),
            },
        );
    }
    (obs, clock.now())
}

/// An engine for `service` with the single policy `name`.
pub fn one_policy(service: &str, name: &str, policy: Policy, planner: PlannerConfig) -> Engine {
    Engine {
        service: service.into(),
        policies: vec![NamedPolicy {
            name: name.into(),
            policy,
        }],
        planner,
    }
}

/// Target tracking of the total of `metric` at `target` per task, tolerance 10%, one
/// datapoint each way, scale-in allowed.
pub fn total_tracking(metric: &str, target: f64) -> Policy {
    Policy::TargetTracking(TargetTracking {
        metric: metric.into(),
        mode: TrackingMode::Total,
        target,
        tolerance: 0.1,
        datapoints: Datapoints { out: 1, r#in: 1 },
        disable_scale_in: false,
    })
}

/// An engine for `service` with three policies: target tracking on `queue` (100 per
/// task), step scaling on `cpu` (out above 60, in below 30) and a threshold on `cpu` and
/// `memory` whose growth and jitter are given.
pub fn three_policies(
    service: &str,
    planner: PlannerConfig,
    growth: Growth,
    jitter: Option<Jitter>,
) -> Engine {
    let band = |lower: Option<f64>, upper: Option<f64>, adjustment| StepBand {
        lower,
        upper,
        adjustment,
    };
    Engine {
        service: service.into(),
        policies: vec![
            NamedPolicy {
                name: "queue".into(),
                policy: Policy::TargetTracking(TargetTracking {
                    metric: "queue".into(),
                    mode: TrackingMode::Total,
                    target: 100.0,
                    tolerance: 0.1,
                    datapoints: Datapoints { out: 3, r#in: 15 },
                    disable_scale_in: false,
                }),
            },
            NamedPolicy {
                name: "cpu-step".into(),
                policy: Policy::Step(StepScaling {
                    metric: "cpu".into(),
                    aggregation: Aggregation::Average,
                    out: Some(StepAlarm {
                        threshold: 60.0,
                        bands: vec![
                            band(Some(0.0), Some(10.0), Adjustment::Change(1)),
                            band(Some(10.0), None, Adjustment::Change(3)),
                        ],
                        datapoints: 2,
                    }),
                    r#in: Some(StepAlarm {
                        threshold: 30.0,
                        bands: vec![
                            band(Some(-10.0), Some(0.0), Adjustment::Change(-1)),
                            band(None, Some(-10.0), Adjustment::Percent(-50.0)),
                        ],
                        datapoints: 10,
                    }),
                    min_adjustment: Some(1),
                }),
            },
            NamedPolicy {
                name: "cpu-mem".into(),
                policy: Policy::Threshold(Threshold {
                    metrics: vec![
                        MetricBounds {
                            metric: "cpu".into(),
                            min: 20.0,
                            max: 80.0,
                        },
                        MetricBounds {
                            metric: "memory".into(),
                            min: 30.0,
                            max: 85.0,
                        },
                    ],
                    datapoints: Datapoints { out: 4, r#in: 10 },
                    step_out: 1,
                    step_in: 1,
                    growth,
                    jitter,
                }),
            },
        ],
        planner,
    }
}
