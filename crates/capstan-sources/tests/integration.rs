//! The sources' integration tests, one module per file beside this one, linked into one
//! test binary (one link of the sources' clients instead of one per file).
//! Run one file's tests with `cargo test -p capstan-sources --test integration redis::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

mod cloudwatch;
mod command;
mod ecs_cluster;
mod http;
mod http_formats;
mod kafka;
mod nats;
mod poller;
mod poller_logs;
mod poller_retry;
mod poller_shared;
mod prometheus;
mod push_poller;
mod rabbitmq;
mod redis;
mod sql;
mod sqs;
