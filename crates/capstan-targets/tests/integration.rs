//! The targets' integration tests, one module per file beside this one, linked into one test binary
//! (one link of the crate and its dependencies instead of one per file).
//! Run one file's tests with `cargo test -p capstan-targets --test integration FILE::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod asg_props;
mod asg_target;
mod ecs_protection;
mod ecs_target;
mod ecs_workflow;
mod rotate;
