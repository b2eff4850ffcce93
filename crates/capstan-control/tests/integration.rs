//! The control loop's integration tests, one module per file beside this one, linked into one test binary
//! (one link of the crate and its dependencies instead of one per file).
//! Run one file's tests with `cargo test -p capstan-control --test integration FILE::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod process_target;
mod registry_loop;
mod restart;
