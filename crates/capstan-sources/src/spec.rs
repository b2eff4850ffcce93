//! Typed, validated settings of a source, as compiled from the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

/// What values a source may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueKind {
    /// A count (queue depth, sessions): finite and ≥ 0.
    #[default]
    Count,
    /// Any finite number (may be negative, e.g. a temperature delta).
    Any,
}

/// One source, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Name policies refer to.
    pub name: String,
    /// Time between reads.
    pub interval: Duration,
    /// A read that takes longer is abandoned (and a command is killed).
    pub timeout: Duration,
    /// A sample older than this is stale.
    pub max_age: Duration,
    /// How much history is kept for the policies.
    pub retention: Duration,
    /// Which values are valid.
    pub value: ValueKind,
    /// How many times a read failing with a transient error (connect, timeout, server)
    /// is tried again within one interval (0: never); see [`crate::retry`].
    pub retries: u32,
    /// The kind and its own settings.
    pub kind: SourceKind,
}

/// The kinds of source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// Run a program and read one number from its standard output.
    Command(CommandSpec),
    /// GET a URL and pick a number from the JSON body.
    Http(HttpSpec),
    /// The length of a Redis key (list, set, sorted set, hash, stream or a stream's
    /// consumer group).
    Redis(RedisSpec),
    /// One SQL query returning one number (`postgres` and `mysql`).
    Sql(SqlSpec),
    /// The backlog of a NATS JetStream consumer.
    Nats(NatsSpec),
    /// Values POSTed to capstan's listener, used until they are older than a ttl.
    Push(PushSpec),
    /// The ready messages of a RabbitMQ queue (AMQP passive declare).
    Rabbitmq(RabbitmqSpec),
    /// One PromQL instant query giving one sample.
    Prometheus(PrometheusSpec),
    /// A Kafka consumer group's lag.
    Kafka(crate::kafka::KafkaSpec),
    /// The backlog of an SQS queue (visible, optionally in-flight and delayed).
    Sqs(crate::sqs::SqsSpec),
    /// The latest datapoint of a CloudWatch metric or expression (also the `ecs`
    /// presets).
    Cloudwatch(crate::cloudwatch::CloudWatchSpec),
    /// An ECS cluster's CPU or memory reservation, or its tasks waiting for a host,
    /// read from ECS.
    EcsCluster(crate::ecs_cluster::EcsClusterSpec),
    /// A metric of the simulator's world (`capstan simulate` only; `capstan run`
    /// refuses it).
    Simulated(SimulatedSpec),
}

/// A `push` source: values POSTed to `/api/v1/metrics/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSpec {
    /// A value older than this is not used (the read fails, the planner holds).
    pub ttl: Duration,
}

/// A `simulated` source: one metric of the simulated service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedSpec {
    /// The simulated metric's name (`queue_depth`, `cpu`, ...).
    pub metric: String,
}

/// A `command` source.
#[derive(Clone, PartialEq)]
pub struct CommandSpec {
    /// Program and arguments (no shell unless you name one).
    pub command: Vec<String>,
    /// Extra environment for the program.
    pub env: BTreeMap<String, String>,
}

/// An `http` source.
#[derive(Clone, PartialEq, Default)]
pub struct HttpSpec {
    /// The URL to GET.
    pub url: String,
    /// JSON pointer (RFC 6901) to the number; empty = the whole body is the number.
    pub pointer: String,
    /// Extra request headers (values may hold secrets: never logged).
    pub headers: BTreeMap<String, String>,
    /// How the body is read.
    pub format: BodyFormat,
    /// Basic or bearer authentication.
    pub auth: HttpAuth,
}

/// How an `http` source reads the response body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// JSON; the number is at [`HttpSpec::pointer`].
    #[default]
    Json,
    /// YAML; the number is at [`HttpSpec::pointer`] (the same JSON-pointer syntax).
    Yaml,
    /// Prometheus text exposition: the one sample of `metric` whose labels match.
    Prometheus {
        /// The metric (sample) name, e.g. `jobs_waiting` or `http_requests_total`.
        metric: String,
        /// Labels the sample must have, with these exact values.
        labels: BTreeMap<String, String>,
    },
}

/// How an HTTP request (the `http` and `prometheus` sources) authenticates. At most one
/// way: basic (`username` with a password) or bearer (a token). Secrets are never shown.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HttpAuth {
    /// The basic-auth user name.
    pub username: Option<String>,
    /// The basic-auth password.
    pub password: Option<String>,
    /// A file holding the basic-auth password (read when the source is built; a final
    /// newline is dropped).
    pub password_file: Option<std::path::PathBuf>,
    /// A bearer token.
    pub token: Option<String>,
    /// A file holding the bearer token (read when the source is built; a final newline
    /// is dropped).
    pub token_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("HttpAuth")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("password_file", &self.password_file)
            .field("token", &hidden(&self.token))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// A `prometheus` source: one PromQL instant query.
#[derive(Clone, PartialEq)]
pub struct PrometheusSpec {
    /// The server's base URL (`http://127.0.0.1:9090`, or with a path prefix);
    /// `/api/v1/query` is appended.
    pub url: String,
    /// The PromQL expression; it must give exactly one sample (or a scalar).
    pub query: String,
    /// What an empty result means.
    pub on_empty: OnEmpty,
    /// Extra request headers (values may hold secrets: never logged).
    pub headers: BTreeMap<String, String>,
    /// Basic or bearer authentication.
    pub auth: HttpAuth,
}

impl std::fmt::Debug for PrometheusSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSpec")
            .field("url", &crate::error::redact_url_str(&self.url))
            .field("query", &self.query)
            .field("on_empty", &self.on_empty)
            .field("headers", &Redacted(&self.headers))
            .field("auth", &self.auth)
            .finish()
    }
}

/// What a `prometheus` source reads when its query gives no sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnEmpty {
    /// A `not_found` error (the series may be gone because its exporter is down).
    #[default]
    Error,
    /// 0 (for a series that exists only while there is something to count).
    Zero,
}

/// A `redis` source.
#[derive(Clone, PartialEq)]
pub struct RedisSpec {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: String,
    /// The database index; overrides the URL's.
    pub db: Option<i64>,
    /// The password; overrides the URL's (a secret: never shown).
    pub password: Option<String>,
    /// A file holding the password (read when the source is built; a final newline is
    /// dropped); overrides the URL's.
    pub password_file: Option<std::path::PathBuf>,
    /// The key whose length is read.
    pub key: String,
    /// For a stream: the consumer group whose pending entries or lag is read.
    pub consumer_group: Option<String>,
    /// For a stream: what is read.
    pub stream: StreamMetric,
    /// What a missing key means.
    pub missing_key: MissingKey,
}

/// A `postgres` or `mysql` source.
#[derive(Clone, PartialEq)]
pub struct SqlSpec {
    /// Which server speaks at `url`.
    pub engine: SqlEngine,
    /// `postgres://[user[:password]@]host[:port]/database[?params]`, or `mysql://...`.
    pub url: String,
    /// The password; overrides the URL's (a secret: never shown).
    pub password: Option<String>,
    /// A file holding the password (read when the source is built; a final newline is
    /// dropped); overrides the URL's.
    pub password_file: Option<std::path::PathBuf>,
    /// The query: its first row's first column is the value.
    pub query: String,
}

/// A `rabbitmq` source.
#[derive(Clone, PartialEq)]
pub struct RabbitmqSpec {
    /// `amqp://[user[:password]@]host[:port][/vhost]`, or `amqps://` for TLS.
    pub url: String,
    /// The password; overrides the URL's (a secret: never shown).
    pub password: Option<String>,
    /// A file holding the password (read when the source is built; a final newline is
    /// dropped); overrides the URL's.
    pub password_file: Option<std::path::PathBuf>,
    /// The queue whose ready messages are counted.
    pub queue: String,
}

impl std::fmt::Debug for RabbitmqSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitmqSpec")
            .field("url", &crate::error::redact_url_str(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("queue", &self.queue)
            .finish()
    }
}

/// A `nats` source.
#[derive(Clone, PartialEq)]
pub struct NatsSpec {
    /// `nats://[user:password@]host[:port]`, or `tls://` for TLS.
    pub url: String,
    /// The stream the consumer reads.
    pub stream: String,
    /// The durable consumer whose backlog (pending + unacknowledged) is read.
    pub consumer: String,
    /// A token (a secret: never shown).
    pub token: Option<String>,
    /// A file holding the token (read when the source is built; a final newline is
    /// dropped).
    pub token_file: Option<std::path::PathBuf>,
    /// The user name (with `password` or `password_file`).
    pub user: Option<String>,
    /// The password (a secret: never shown).
    pub password: Option<String>,
    /// A file holding the password (read when the source is built).
    pub password_file: Option<std::path::PathBuf>,
    /// A NATS credentials file (JWT and NKey seed, `.creds`), read when the source is
    /// built.
    pub credentials_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for NatsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsSpec")
            .field("url", &crate::error::redact_url_str(&self.url))
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("token", &hidden(&self.token))
            .field("token_file", &self.token_file)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("password_file", &self.password_file)
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// The SQL server a `postgres` or `mysql` source talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlEngine {
    /// PostgreSQL (`kind = "postgres"`).
    Postgres,
    /// MySQL or MariaDB (`kind = "mysql"`).
    MySql,
}

impl SqlEngine {
    /// The server's name for messages: `PostgreSQL`, `MySQL`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MySQL",
        }
    }
}

impl std::fmt::Debug for SqlSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSpec")
            .field("engine", &self.engine)
            .field("url", &crate::error::redact_url_str(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("query", &self.query)
            .finish()
    }
}

/// What a `redis` source reads from a stream (KEDA's `streamLength`,
/// `pendingEntriesCount` and `lagCount`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamMetric {
    /// `XLEN`: every entry in the stream.
    #[default]
    Length,
    /// `XPENDING` summary: entries delivered to the group's consumers and not yet
    /// acknowledged.
    PendingEntries,
    /// `XINFO GROUPS` `lag`: entries not yet delivered to the group (Redis 7 or later).
    Lag,
}

impl StreamMetric {
    /// Every value, as written in the configuration.
    pub const NAMES: &[&str] = &["length", "pending_entries", "lag"];

    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::PendingEntries => "pending_entries",
            Self::Lag => "lag",
        }
    }

    /// Whether it reads a consumer group.
    pub fn needs_group(self) -> bool {
        !matches!(self, Self::Length)
    }
}

/// What a `redis` source reads when its key does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// 0: Redis deletes an emptied list, set, sorted set or hash, so a drained queue
    /// has no key.
    #[default]
    Zero,
    /// A `not_found` error (for a key that must exist).
    Error,
}

/// Shows the names of a map's entries and hides their values (which may be secrets).
struct Redacted<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("command", &self.command)
            .field("env", &Redacted(&self.env))
            .finish()
    }
}

impl std::fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSpec")
            .field("url", &crate::error::redact_url_str(&self.url))
            .field("pointer", &self.pointer)
            .field("headers", &Redacted(&self.headers))
            .field("format", &self.format)
            .field("auth", &self.auth)
            .finish()
    }
}

impl std::fmt::Debug for RedisSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSpec")
            .field("url", &crate::error::redact_url_str(&self.url))
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("key", &self.key)
            .field("consumer_group", &self.consumer_group)
            .field("stream", &self.stream)
            .field("missing_key", &self.missing_key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_header_and_env_values() {
        let http = HttpSpec {
            url: "http://u:s3cret@127.0.0.1/x".into(),
            pointer: String::new(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer s3cret".into())]),
            format: BodyFormat::Json,
            auth: HttpAuth {
                username: Some("u".into()),
                password: Some("s3cret".into()),
                ..HttpAuth::default()
            },
        };
        let cmd = CommandSpec {
            command: vec!["true".into()],
            env: BTreeMap::from([("TOKEN".into(), "s3cret".into())]),
        };
        for shown in [format!("{http:?}"), format!("{cmd:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
