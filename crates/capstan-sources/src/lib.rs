//! capstan's metric sources.
//!
//! One module per source kind behind the [`Source`] trait, and the poller that reads
//! each source on its interval, validates the value at the boundary (NaN, infinite, or
//! negative where a count is expected is a failed read) and feeds the shared metric
//! windows.
//!
//! Module map:
//! - [`spec`]: the compiled settings of a source ([`SourceSpec`]).
//! - [`error`]: [`SourceError`] (which source failed), [`ReadError`] (why) and
//!   [`ErrorClass`] (the class errors are counted by: auth, not_found, timeout, ...).
//! - [`aws`]: what the AWS sources share (settings, error classes) and how they get
//!   their SDK clients (the `aws` cargo feature, on by default).
//! - [`cloudwatch`]: the latest datapoint of a CloudWatch metric or expression, and
//!   the `ecs` presets (service CPU and memory, requests per target).
//! - [`command`]: runs a program and reads one number from its standard output.
//! - [`http`]: GETs a URL and picks a number from the body (JSON or YAML at a pointer,
//!   or one sample of a Prometheus text exposition).
//! - [`formats`]: the YAML and Prometheus-text body formats of the `http` source.
//! - [`prometheus`]: one PromQL instant query giving one number.
//! - [`kafka`]: a Kafka consumer group's lag (rdkafka).
//! - [`nats`]: the backlog of a NATS JetStream consumer (pending + unacknowledged).
//! - [`push`]: values POSTed to capstan's listener ([`push::PushStore`]), with a ttl.
//! - [`rabbitmq`]: the ready messages of a RabbitMQ queue (AMQP).
//! - [`redis`]: the length of a Redis key by its type, or a stream consumer group's
//!   pending entries or lag.
//! - [`ship`]: `ship_to_cloudwatch`, publishing every value read as a CloudWatch
//!   custom metric in batches, off the poller's task.
//! - [`ecs_cluster`]: an ECS cluster's CPU or memory reservation over its ACTIVE
//!   container instances, or the tasks its services want and ECS could not place.
//! - [`sqs`]: the backlog of an SQS queue (visible, in flight, delayed).
//! - [`sql`]: one SQL query returning one number (PostgreSQL, MySQL/MariaDB).
//! - [`validate`]: the boundary check every value passes before it becomes a sample.
//! - [`web`] (private): the HTTP client the `http` and `prometheus` sources share
//!   (headers, basic/bearer auth, bounded GET).
//! - [`poller`]: one task per source, reading on its interval into the metric windows.
//! - [`retry`]: which failures are retried within an interval, and the backoff.
//! - [`log_limit`]: the poller's error logs, rate-limited per source and class.
//!
//! Adding a kind: implement [`Source`] in a new module, add its settings to
//! [`SourceKind`] and its constructor to [`build`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod aws;
pub mod cloudwatch;
pub mod command;
pub mod ecs_cluster;
pub mod error;
pub mod formats;
pub mod http;
pub mod kafka;
pub mod log_limit;
pub mod nats;
pub mod poller;
pub mod prometheus;
pub mod push;
pub mod rabbitmq;
pub mod redis;
pub mod retry;
pub mod ship;
pub mod spec;
pub mod sql;
pub mod sqs;
pub mod validate;
mod web;

pub use error::{ErrorClass, ReadError, SourceError};
pub use kafka::{KafkaSpec, OffsetReset, SaslMechanism};
pub use poller::{Hooks, ReadObserver, read_once, run_poller, spawn_all, spawn_all_with};
pub use push::{PushError, PushStore};
pub use spec::NatsSpec;
pub use spec::{BodyFormat, HttpAuth, OnEmpty, PrometheusSpec};
pub use spec::{
    CommandSpec, HttpSpec, MissingKey, PushSpec, RedisSpec, SimulatedSpec, SourceKind, SourceSpec,
    StreamMetric, ValueKind,
};
pub use spec::{RabbitmqSpec, SqlEngine, SqlSpec};

/// A boxed, `Send` future, so that sources can be held as `Box<dyn Source>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A metric source: something that can be asked for one number.
///
/// Contract for implementations:
/// - `read` returns the raw value; range checks (finite, non-negative counts) are done
///   once by [`read_once`], not by each source.
/// - A source enforces its own `timeout` where it can give a more precise error or must
///   clean up (a command kills its process); [`read_once`] adds a backstop.
/// - Dropping the future abandons the read and must not leak anything (processes,
///   connections beyond the client's pool).
/// - Errors never carry secrets (header values, passwords in URLs).
pub trait Source: Send + Sync {
    /// Reads the current value once.
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>>;
}

/// Builds the source described by `spec`, checking the settings it needs.
///
/// Fails with [`ReadError::Config`] if the interval or timeout is zero, or the kind's
/// own settings are unusable (empty command, malformed URL or header, bad JSON pointer).
pub fn build(spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
    build_with(spec, None)
}

/// [`build`], with the store `push` sources read from (without one, a `push` source
/// is a [`ReadError::Config`] error).
pub fn build_with(
    spec: &SourceSpec,
    push: Option<&PushStore>,
) -> Result<Box<dyn Source>, SourceError> {
    let fail = |reason: String| SourceError::new(&spec.name, ReadError::Config(reason));
    if spec.interval == Duration::ZERO {
        return Err(fail("interval must be greater than zero".into()));
    }
    if spec.timeout == Duration::ZERO {
        return Err(fail("timeout must be greater than zero".into()));
    }
    let source: Box<dyn Source> = match &spec.kind {
        SourceKind::Command(c) => {
            Box::new(command::CommandSource::new(c, spec.timeout).map_err(fail)?)
        }
        SourceKind::Http(h) => Box::new(http::HttpSource::new(h, spec.timeout).map_err(fail)?),
        SourceKind::Redis(r) => Box::new(redis::RedisSource::new(r, spec.timeout).map_err(fail)?),
        SourceKind::Sql(s) => Box::new(sql::SqlSource::new(s, spec.timeout).map_err(fail)?),
        SourceKind::Kafka(k) => Box::new(kafka::KafkaSource::new(k, spec.timeout).map_err(fail)?),
        SourceKind::Nats(n) => Box::new(nats::NatsSource::new(n, spec.timeout).map_err(fail)?),
        SourceKind::Rabbitmq(r) => {
            Box::new(rabbitmq::RabbitmqSource::new(r, spec.timeout).map_err(fail)?)
        }
        SourceKind::Prometheus(p) => {
            Box::new(prometheus::PrometheusSource::new(p, spec.timeout).map_err(fail)?)
        }
        #[cfg(feature = "aws")]
        SourceKind::Sqs(s) => Box::new(sqs::build_sdk(s, spec.timeout)),
        #[cfg(feature = "aws")]
        SourceKind::Cloudwatch(c) => Box::new(cloudwatch::build_sdk(c, spec.timeout)),
        #[cfg(feature = "aws")]
        SourceKind::EcsCluster(e) => Box::new(ecs_cluster::build_sdk(e, spec.timeout)),
        #[cfg(not(feature = "aws"))]
        SourceKind::Sqs(_) | SourceKind::Cloudwatch(_) | SourceKind::EcsCluster(_) => {
            return Err(fail("capstan was built without the `aws` feature".into()));
        }
        SourceKind::Push(p) => match push {
            Some(store) => Box::new(push::PushSource::new(&spec.name, p, spec.value, store)),
            None => return Err(fail("a push source needs capstan's listener".into())),
        },
        SourceKind::Simulated(s) => {
            return Err(fail(format!(
                "kind \"simulated\" (metric {}) only exists inside `capstan simulate`",
                s.metric
            )));
        }
    };
    Ok(source)
}
