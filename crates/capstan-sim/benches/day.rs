//! One simulated day of a 100-task service at 1-second resolution, through capstan's
//! control loop and ECS target on the world model (no baseline, no files).
//!
//! `cargo bench -p capstan-sim --bench day`

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use capstan_core::testing::{one_policy, planner_config, total_tracking};
use capstan_sim::metric::SimMetric;
use capstan_sim::run::{self, CapstanRun, RunOptions, SimSource};
use capstan_sim::scenario::Scenario;

/// The allocator the `capstan` binary uses (about 10 % faster here than the system's).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

/// 50 messages a second of 2 s each keep ~100 workers busy; capstan tracks 2 waiting or
/// busy messages per task between 80 and 120 tasks.
const SCENARIO: &str = r#"
name = "bench-100-tasks"
duration_s = 86400
[service]
name = "worker"
desired = 100
[workload]
kind = "queue"
processing = { kind = "fixed", s = 2.0 }
slo_age_s = 60.0
[trace]
kind = "sine"
mean = 50.0
amplitude = 5.0
period_s = 86400
"#;

#[divan::bench(sample_count = 5)]
fn one_day_100_tasks(bencher: divan::Bencher) {
    let scenario = Scenario::parse(SCENARIO, "bench.toml", Path::new(".")).unwrap();
    let mut planner = planner_config(80, 120);
    planner.stabilization = Duration::from_secs(60);
    let capstan = [CapstanRun {
        name: "capstan".into(),
        engine: one_policy("worker", "queue", total_tracking("queue", 1.1), planner),
        interval: Duration::from_secs(10),
        sources: vec![SimSource {
            name: "queue".into(),
            metric: SimMetric::QueueTotal,
            interval: Duration::from_secs(5),
            max_age: Duration::from_secs(15),
            retention: Duration::from_secs(900),
        }],
        drain_timeout: Duration::from_secs(600),
        protect_minutes: 10,
        hosts: None,
    }];
    bencher.bench(|| run::run(&scenario, &capstan, &RunOptions::default()).unwrap());
}
