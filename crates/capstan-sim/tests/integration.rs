//! The simulator's integration tests, one module per file beside this one, linked into one test binary
//! (one link of the crate and its dependencies instead of one per file).
//! Run one file's tests with `cargo test -p capstan-sim --test integration FILE::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "baseline/support.rs"]
mod support;

mod baseline_managed;
mod baseline_props;
mod baseline_spec;
mod baseline_step;
mod baseline_target_tracking;
mod baseline_timing;
mod report;
mod report_plot;
mod scenario;
mod trace;
mod workload;
