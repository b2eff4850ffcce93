//! The core's integration and property tests, one module per file beside this one, linked into one test binary
//! (one link of the crate and its dependencies instead of one per file).
//! Run one file's tests with `cargo test -p capstan-core --test integration FILE::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod carry;
mod controls;
mod hosts_props;
mod planner_engine;
mod planner_props;
mod planner_sentence;
mod planner_table;
mod policy_alert;
mod policy_backlog;
mod policy_scheduled;
mod policy_step;
mod policy_target_tracking;
mod policy_threshold;
mod restore;
