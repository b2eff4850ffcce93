//! The world model's tests, one module per file beside this one, linked into one test binary
//! (one link of the crate and its dependencies instead of one per file).
//! Run one file's tests with `cargo test -p capstan-world --test integration FILE::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

mod cluster;
mod ecs_scheduler;
mod elb_draining;
mod instance_targets;
mod invariants;
mod limits_faults;
mod protection;
