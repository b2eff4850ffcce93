//! The SDK adapters' tests (moto and recorded answers), one module per file beside this one, linked into one test binary
//! (one link of the crate and its dependencies instead of one per file).
//! Run one file's tests with `cargo test -p capstan-aws-sdk --test integration FILE::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod autoscaling_moto;
mod autoscaling_replay;
mod ecs_moto;
mod ecs_replay;
