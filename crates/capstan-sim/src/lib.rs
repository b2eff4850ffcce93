//! capstan's simulator: replays load through the very same control loop as `capstan
//! run`, side by side with emulations of AWS's own scaling, and reports how each did.
//!
//! The world (ECS, ELB, Auto Scaling on a virtual clock) is `capstan-world`; capstan's
//! side is `capstan_control::ServiceLoop` driving the ECS target of `capstan-targets`
//! against it. Nothing here copies policy or planner code, and nothing depends on the
//! AWS SDK.
//!
//! Module map:
//! - [`baseline`]: emulations of AWS's own scaling (target tracking, step scaling) behind
//!   their CloudWatch alarms, run on the same trace as capstan.
//! - [`metric`]: the metrics the simulated world offers, by name.
//! - [`record`]: one row of a run, what the report consumes.
//! - [`scenario`]: a scenario file: the service, its load, the policy sets to compare.
//! - [`run`]: the runner: every policy set on its own world, in parallel, reported.
//! - [`trace`]: load traces (CSV files and generators): demand over time, streamed.
//! - [`workload`]: what the tasks do with the demand (queue, requests, sessions), and
//!   the load, latency and losses that follow.
//! - [`report`]: run summaries (table, JSON), the streamed CSV, plots (PNG, SVG) and a
//!   progress bar.

pub mod baseline;
pub mod metric;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod trace;
pub mod workload;
