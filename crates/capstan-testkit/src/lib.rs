//! capstan-testkit: support for capstan's tests (dev only).
//!
//! Module map:
//! - [`aws_proxy`]: [`AwsProxy`](aws_proxy::AwsProxy), a proxy in front of moto that
//!   fakes ECS task protection (which moto lacks), injects throttling and 5xx faults
//!   and counts calls per operation.
//! - [`files`]: the fixture files of a folder, in name order.
//! - [`http`]: [`MetricServer`](http::MetricServer), a real HTTP server serving a
//!   metric as JSON that the test changes at run time.
//! - [`moto`]: a private moto (AWS) server per test process, with names unique per
//!   handle, dummy credentials and `reset()`; [`moto_ecs`]: an ECS service with
//!   running tasks and a target group on it.
//! - [`kafka`]: a private `tansu` Kafka-protocol broker per test process, with unique
//!   topic and group names per handle, and helpers to create topics, produce records
//!   and commit a group's offsets.
//! - [`prometheus`]: private Prometheus and Alertmanager servers with the test's
//!   configuration, on free ports.
//! - [`process`]: whether a pid is alive; waiting on a watch channel for a state.
//! - [`servers`]: real servers (Redis today) for integration tests: the one running on
//!   its standard port or a private instance, with per-test isolation; plus a port
//!   where nothing listens and a server that never answers.
//! - [`venv`]: Python tools (moto, tansu) in a project-local virtual environment.

pub mod aws_proxy;
pub mod files;
pub mod http;
pub mod kafka;
pub mod moto;
pub mod moto_ecs;
pub mod process;
pub mod prometheus;
pub mod servers;
pub mod venv;
