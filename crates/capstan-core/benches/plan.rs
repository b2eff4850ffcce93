//! Benchmark: one evaluate-and-plan of a service with three policies (target tracking on
//! a queue, step scaling on cpu, threshold on cpu and memory) over a 15-minute window of
//! 1-second samples per source (900 samples each), plus the planner alone.
//!
//! Run with `cargo bench -p capstan-core --bench plan`.

use std::time::Duration;

use capstan_core::Timestamp;
use capstan_core::clock::{Clock, VirtualClock, sub};
use capstan_core::metrics::Observations;
use capstan_core::model::{Bounds, Capacity, Sample};
use capstan_core::planner::{
    Cooldowns, Engine, EngineState, Fallback, PlannerConfig, RateLimit, RateLimits, plan,
};
use capstan_core::policy::{Ask, Growth, Jitter};
use capstan_core::testing::{recommendation, steady, three_policies};

fn main() {
    // Show the decision being measured, so a change that turns it into something trivial
    // (every policy without data, say) is visible next to the figures.
    let now = VirtualClock::at_epoch().now();
    let engine = engine();
    let obs = observations(now);
    let mut state = warmed_state(&engine, &obs, now);
    println!(
        "{}",
        engine
            .evaluate(&mut state, capacity(), &obs, now)
            .sentence()
    );
    divan::main();
}

const WINDOW: usize = 900;

fn planner_config() -> PlannerConfig {
    PlannerConfig {
        bounds: Bounds { min: 2, max: 20 },
        cooldown: Cooldowns {
            out: Duration::from_secs(60),
            r#in: Duration::from_secs(300),
        },
        stabilization: Duration::from_secs(300),
        rate_limits: RateLimits {
            out: Some(RateLimit {
                tasks: Some(4),
                percent: Some(50.0),
                period: Duration::from_secs(60),
            }),
            r#in: Some(RateLimit {
                tasks: Some(1),
                percent: None,
                period: Duration::from_secs(120),
            }),
        },
        fallback: Fallback::Hold,
        dry_run: false,
    }
}

fn engine() -> Engine {
    three_policies(
        "worker",
        planner_config(),
        Growth::Linear,
        Some(Jitter {
            fraction: 0.2,
            seed: 42,
        }),
    )
}

/// Three sources with 900 one-second samples each, ending at `now`.
fn observations(now: Timestamp) -> Observations {
    let mut obs = Observations::new();
    for name in ["queue", "cpu", "memory"] {
        obs.declare(name, Duration::from_secs(15 * 60), Duration::from_secs(30));
    }
    let start = sub(now, Duration::from_secs(WINDOW as u64 - 1));
    let mut at = start;
    for i in 0..WINDOW {
        let x = i as f64;
        obs.push(
            "queue",
            Sample {
                value: 600.0 + 150.0 * (x / 60.0).sin(),
                at,
            },
        );
        obs.push(
            "cpu",
            Sample {
                value: 62.0 + 8.0 * (x / 45.0).sin(),
                at,
            },
        );
        obs.push(
            "memory",
            Sample {
                value: 50.0 + 10.0 * (x / 90.0).cos(),
                at,
            },
        );
        at = capstan_core::clock::add(at, Duration::from_secs(1));
    }
    obs
}

fn capacity() -> Capacity {
    steady(5)
}

/// A state with some history: a few evaluations already applied.
fn warmed_state(engine: &Engine, obs: &Observations, now: Timestamp) -> EngineState {
    let mut state = engine.initial_state();
    let mut at = sub(now, Duration::from_secs(600));
    for _ in 0..10 {
        let d = engine.evaluate(&mut state, capacity(), obs, at);
        state.applied(&d, at);
        at = capstan_core::clock::add(at, Duration::from_secs(60));
    }
    state
}

/// One `Engine::evaluate`: three policies over 900 samples per source, then the planner.
#[divan::bench]
fn evaluate_three_policies(bencher: divan::Bencher) {
    let now = VirtualClock::at_epoch().now();
    let engine = engine();
    let obs = observations(now);
    let state = warmed_state(&engine, &obs, now);
    bencher
        .with_inputs(|| state.clone())
        .bench_local_refs(|state| engine.evaluate(state, capacity(), &obs, now));
}

/// The planner alone, from three ready recommendations.
#[divan::bench]
fn plan_only(bencher: divan::Bencher) {
    let now = VirtualClock::at_epoch().now();
    let engine = engine();
    let obs = observations(now);
    let state = warmed_state(&engine, &obs, now).planner;
    let asks = vec![
        recommendation(
            "queue",
            Ask::Desired { count: 7 },
            "queue 650 total / 100 per task → 7",
        ),
        recommendation(
            "cpu-step",
            Ask::Desired { count: 6 },
            "cpu 62 in [60, 70) → +1",
        ),
        recommendation("cpu-mem", Ask::Hold, "within bounds"),
    ];
    let config = engine.planner.clone();
    bencher
        .with_inputs(|| (state.clone(), asks.clone()))
        .bench_local_values(|(mut state, asks)| {
            plan(&config, &mut state, "worker", capacity(), asks, now)
        });
}
