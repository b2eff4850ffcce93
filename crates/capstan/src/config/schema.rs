//! The one list of every key the compiler accepts, per table, and of every accepted
//! enumerated value.
//!
//! The compiler builds each table reader from these lists (a key read but not listed is
//! a bug caught by a debug assertion; a key written but not listed is reported as
//! unknown), and a test checks that every key listed here appears in `docs/config.md`
//! under the section named by [`TableKeys::section`], so the reference cannot drift.

/// The keys of one table, and where `docs/config.md` documents them.
#[derive(Debug, Clone, Copy)]
pub struct TableKeys {
    /// The heading text of the section of `docs/config.md` that documents the table.
    pub section: &'static str,
    /// The accepted keys.
    pub keys: &'static [&'static str],
}

/// The top level of the file.
pub const ROOT: &[&str] = &["log", "server", "store", "webhooks", "sources", "services"];
/// `[log]`.
pub const LOG: &[&str] = &["format", "level"];
/// `[server]`.
pub const SERVER: &[&str] = &["listen", "token", "token_file"];
/// `[store]`.
pub const STORE: &[&str] = &["kind", "path", "retention"];
/// `kind` of `[store]`.
pub const STORE_KINDS: &[&str] = &["sqlite", "memory"];
/// `[webhooks]`.
pub const WEBHOOKS: &[&str] = &["alertmanager", "grafana"];
/// `[webhooks.alertmanager]` and `[webhooks.grafana]`.
pub const WEBHOOK: &[&str] = &["token", "token_file", "service_label"];
/// `[sources.NAME]`, keys of every kind.
pub const SOURCE: &[&str] = &[
    "kind",
    "ship_to_cloudwatch",
    "interval",
    "timeout",
    "max_age",
    "retention",
    "value",
    "retries",
];
/// `[sources.NAME]` with `kind = "command"`.
pub const SOURCE_COMMAND: &[&str] = &["command", "env"];
/// `[sources.NAME]` with `kind = "http"`.
pub const SOURCE_HTTP: &[&str] = &[
    "url",
    "pointer",
    "headers",
    "format",
    "metric",
    "labels",
    "username",
    "password",
    "password_file",
    "token",
    "token_file",
];
/// `[sources.NAME]` with `kind = "prometheus"`.
pub const SOURCE_PROMETHEUS: &[&str] = &[
    "url",
    "query",
    "on_empty",
    "headers",
    "username",
    "password",
    "password_file",
    "token",
    "token_file",
];
/// `[sources.NAME]` with `kind = "redis"`.
pub const SOURCE_REDIS: &[&str] = &[
    "url",
    "db",
    "password",
    "password_file",
    "key",
    "consumer_group",
    "stream_metric",
    "missing_key",
];
/// `stream_metric` of a redis source.
pub const REDIS_STREAM_METRICS: &[&str] = &["length", "pending_entries", "lag"];
/// `missing_key` of a redis source.
pub const REDIS_MISSING_KEY: &[&str] = &["zero", "error"];
/// `[sources.NAME]` with `kind = "postgres"` or `kind = "mysql"`.
pub const SOURCE_SQL: &[&str] = &["url", "password", "password_file", "query"];
/// `[sources.NAME]` with `kind = "rabbitmq"`.
pub const SOURCE_RABBITMQ: &[&str] = &["url", "password", "password_file", "queue"];
/// `[sources.NAME]` with `kind = "nats"`.
pub const SOURCE_NATS: &[&str] = &[
    "url",
    "stream",
    "consumer",
    "token",
    "token_file",
    "user",
    "password",
    "password_file",
    "credentials_file",
];
/// `[sources.NAME]` with `kind = "kafka"`.
pub const SOURCE_KAFKA: &[&str] = &[
    "brokers",
    "group",
    "topic",
    "offset_reset",
    "lag_threshold",
    "cap_at_partitions",
    "exclude_persistent_lag",
    "sasl_mechanism",
    "username",
    "password",
    "password_file",
    "tls",
];
/// `offset_reset` of a `kafka` source.
pub const KAFKA_OFFSET_RESET: &[&str] = &["latest", "earliest"];
/// `sasl_mechanism` of a `kafka` source.
pub const KAFKA_SASL_MECHANISMS: &[&str] = &["plain", "scram-sha-256", "scram-sha-512"];
/// `[sources.NAME]` with `kind = "push"`.
pub const SOURCE_PUSH: &[&str] = &["ttl"];
/// `[sources.NAME]` of kind `simulated`.
pub const SOURCE_SIMULATED: &[&str] = &["metric"];
/// The AWS settings of the `sqs`, `cloudwatch` and `ecs` kinds and of
/// `ship_to_cloudwatch`.
const AWS_KEYS: [&str; 3] = ["region", "endpoint_url", "profile"];
/// `[sources.NAME]` with `kind = "sqs"`.
pub const SOURCE_SQS: &[&str] = &[
    "queue",
    "queue_url",
    "include_in_flight",
    "include_delayed",
    AWS_KEYS[0],
    AWS_KEYS[1],
    AWS_KEYS[2],
];
/// `[sources.NAME]` with `kind = "ecs_cluster"`.
pub const SOURCE_ECS_CLUSTER: &[&str] =
    &["cluster", "metric", AWS_KEYS[0], AWS_KEYS[1], AWS_KEYS[2]];
/// `metric` of an `ecs_cluster` source.
pub const ECS_CLUSTER_METRICS: &[&str] =
    &["cpu_reservation", "memory_reservation", "pending_tasks"];
/// `[sources.NAME]` with `kind = "cloudwatch"`.
pub const SOURCE_CLOUDWATCH: &[&str] = &[
    "namespace",
    "metric",
    "dimensions",
    "stat",
    "expression",
    "period",
    "lookback",
    "on_empty",
    AWS_KEYS[0],
    AWS_KEYS[1],
    AWS_KEYS[2],
];
/// `[sources.NAME]` with `kind = "ecs"`.
pub const SOURCE_ECS: &[&str] = &[
    "metric",
    "cluster",
    "service",
    "target_group",
    "stat",
    "period",
    "lookback",
    "on_empty",
    AWS_KEYS[0],
    AWS_KEYS[1],
    AWS_KEYS[2],
];
/// `[sources.NAME.ship_to_cloudwatch]`.
pub const SHIP_TO_CLOUDWATCH: &[&str] = &[
    "namespace",
    "metric",
    "dimensions",
    AWS_KEYS[0],
    AWS_KEYS[1],
    AWS_KEYS[2],
];
/// `on_empty` of a `cloudwatch` or `ecs` source.
pub const CLOUDWATCH_ON_EMPTY: &[&str] = &["error", "zero"];
/// `metric` of an `ecs` source.
pub const ECS_METRICS: &[&str] = &["cpu", "memory", "requests_per_target"];
/// `[[services]]`.
pub const SERVICE: &[&str] = &[
    "name",
    "min",
    "max",
    "interval",
    "dry_run",
    "target",
    "cooldown",
    "scale_in",
    "rate_limit",
    "fallback",
    "work",
    "policies",
];
/// `work` of a service.
pub const WORK: &[&str] = &["ttl"];
/// `target`, keys of every kind.
pub const TARGET: &[&str] = &["kind"];
/// `target` with `kind = "process"`.
pub const TARGET_PROCESS: &[&str] = &[
    "command",
    "env",
    "workdir",
    "stop_timeout",
    "restart_delay",
    "drain_timeout",
];
/// `target` of kind `simulated`.
pub const TARGET_SIMULATED: &[&str] = &["scales", "drain_timeout", "protect_minutes", "warmup"];
/// `target` with `kind = "ecs"`.
pub const TARGET_ECS: &[&str] = &[
    "cluster",
    "service",
    "target_group",
    "protect_minutes",
    "drain_timeout",
    "first_check_after",
    "check_every",
    "protection",
    "region",
    "endpoint_url",
    "profile",
];
/// `target` with `kind = "ec2_cluster"`.
pub const TARGET_EC2_CLUSTER: &[&str] = &[
    "cluster",
    "group",
    "warmup",
    "drain_timeout",
    "minimum_running",
    "termination_hook",
    "hook_heartbeat_every",
    "host_order",
    "region",
    "endpoint_url",
    "profile",
];
/// `protection` of an `ecs` target.
pub const PROTECTION: &[&str] = &["protect_for", "extend_at", "release_after_idle"];
/// What a `simulated` target scales.
pub const SIMULATED_SCALES: &[&str] = &["tasks", "hosts"];
/// `cooldown`.
pub const COOLDOWN: &[&str] = &["out", "in"];
/// `scale_in`.
pub const SCALE_IN: &[&str] = &["stabilization", "order", "drain_deadline"];
/// `rate_limit`.
pub const RATE_LIMIT: &[&str] = &["out", "in"];
/// `rate_limit.out` and `rate_limit.in`.
pub const RATE_LIMIT_DIRECTION: &[&str] = &["tasks", "percent", "period"];
/// `fallback` written as a table.
pub const FALLBACK: &[&str] = &["tasks", "last_known_for"];
/// `[[services.policies]]`, keys of every kind.
pub const POLICY: &[&str] = &["kind", "name"];
/// `datapoints` of a policy.
pub const DATAPOINTS: &[&str] = &["out", "in"];
/// `kind = "target_tracking"`.
pub const TARGET_TRACKING: &[&str] = &[
    "metric",
    "mode",
    "target",
    "tolerance",
    "datapoints",
    "disable_scale_in",
];
/// `kind = "step"`.
pub const STEP: &[&str] = &["metric", "aggregation", "min_adjustment", "out", "in"];
/// `out` and `in` of a step policy.
pub const STEP_ALARM: &[&str] = &["threshold", "datapoints", "steps"];
/// One entry of `steps`.
pub const STEP_BAND: &[&str] = &["lower", "upper", "change", "percent", "exact"];
/// `kind = "threshold"`.
pub const THRESHOLD: &[&str] = &["metrics", "datapoints", "step", "jitter"];
/// One entry of `metrics` of a threshold policy.
pub const THRESHOLD_METRIC: &[&str] = &["metric", "min", "max"];
/// `step` of a threshold policy.
pub const THRESHOLD_STEP: &[&str] = &["out", "in", "growth"];
/// `jitter` of a threshold policy.
pub const JITTER: &[&str] = &["fraction", "seed"];
/// `kind = "backlog_per_task"`.
pub const BACKLOG: &[&str] = &[
    "backlog",
    "processing_time",
    "acceptable_latency",
    "target_refresh",
    "target_min",
    "target_max",
    "tolerance",
    "datapoints",
];
/// `kind = "alert"`.
pub const ALERT: &[&str] = &[
    "alert",
    "match",
    "threshold",
    "value_key",
    "step",
    "growth",
    "max_step",
    "jitter",
    "in_step",
    "forget_after",
];
/// `kind = "scheduled"`.
pub const SCHEDULED: &[&str] = &["timezone", "actions"];
/// One entry of `actions` of a scheduled policy.
pub const SCHEDULED_ACTION: &[&str] = &["cron", "duration", "min", "max", "exact"];

/// `[log] format`.
pub const LOG_FORMATS: &[&str] = &["text", "json"];
/// `kind` of a source.
pub const SOURCE_KINDS: &[&str] = &[
    "command",
    "http",
    "redis",
    "postgres",
    "mysql",
    "rabbitmq",
    "nats",
    "prometheus",
    "kafka",
    "sqs",
    "cloudwatch",
    "ecs",
    "ecs_cluster",
    "push",
    "simulated",
];
/// `format` of an `http` source.
pub const HTTP_FORMATS: &[&str] = &["json", "yaml", "prometheus"];
/// `on_empty` of a `prometheus` source.
pub const ON_EMPTY: &[&str] = &["error", "zero"];
/// `value` of a source.
pub const VALUE_KINDS: &[&str] = &["count", "any"];
/// `kind` of a target.
pub const TARGET_KINDS: &[&str] = &["process", "ecs", "ec2_cluster", "simulated"];
/// `kind` of a policy.
pub const POLICY_KINDS: &[&str] = &[
    "target_tracking",
    "step",
    "threshold",
    "backlog_per_task",
    "scheduled",
    "alert",
];
/// `mode` of a target tracking policy.
pub const TRACKING_MODES: &[&str] = &["total", "per_task"];
/// `aggregation` of a step policy.
pub const AGGREGATIONS: &[&str] = &["average", "minimum", "maximum"];
/// `step.growth` of a threshold policy.
pub const GROWTHS: &[&str] = &["fixed", "linear", "exponential"];

/// Every table with the heading of its section in `docs/config.md`.
pub const ALL: &[TableKeys] = &[
    TableKeys {
        section: "Top level",
        keys: ROOT,
    },
    TableKeys {
        section: "`[log]`",
        keys: LOG,
    },
    TableKeys {
        section: "`[server]`",
        keys: SERVER,
    },
    TableKeys {
        section: "`[store]`",
        keys: STORE,
    },
    TableKeys {
        section: "`[webhooks]`",
        keys: WEBHOOKS,
    },
    TableKeys {
        section: "`[webhooks]`",
        keys: WEBHOOK,
    },
    TableKeys {
        section: "`[sources.NAME]`",
        keys: SOURCE,
    },
    TableKeys {
        section: "`kind = \"command\"`",
        keys: SOURCE_COMMAND,
    },
    TableKeys {
        section: "`kind = \"http\"`",
        keys: SOURCE_HTTP,
    },
    TableKeys {
        section: "`kind = \"redis\"`",
        keys: SOURCE_REDIS,
    },
    TableKeys {
        section: "`kind = \"postgres\"`",
        keys: SOURCE_SQL,
    },
    TableKeys {
        section: "`kind = \"rabbitmq\"`",
        keys: SOURCE_RABBITMQ,
    },
    TableKeys {
        section: "`kind = \"nats\"`",
        keys: SOURCE_NATS,
    },
    TableKeys {
        section: "`kind = \"kafka\"`",
        keys: SOURCE_KAFKA,
    },
    TableKeys {
        section: "`kind = \"prometheus\"`",
        keys: SOURCE_PROMETHEUS,
    },
    TableKeys {
        section: "`kind = \"push\"`",
        keys: SOURCE_PUSH,
    },
    TableKeys {
        section: "`kind = \"sqs\"`",
        keys: SOURCE_SQS,
    },
    TableKeys {
        section: "`kind = \"cloudwatch\"`",
        keys: SOURCE_CLOUDWATCH,
    },
    TableKeys {
        section: "`kind = \"ecs\"`",
        keys: SOURCE_ECS,
    },
    TableKeys {
        section: "`kind = \"ecs_cluster\"`",
        keys: SOURCE_ECS_CLUSTER,
    },
    TableKeys {
        section: "`ship_to_cloudwatch`",
        keys: SHIP_TO_CLOUDWATCH,
    },
    TableKeys {
        section: "`kind = \"simulated\"`",
        keys: SOURCE_SIMULATED,
    },
    TableKeys {
        section: "`[[services]]`",
        keys: SERVICE,
    },
    TableKeys {
        section: "`target`",
        keys: TARGET,
    },
    TableKeys {
        section: "`target`",
        keys: TARGET_PROCESS,
    },
    TableKeys {
        section: "`target`",
        keys: TARGET_SIMULATED,
    },
    TableKeys {
        section: "`target`",
        keys: TARGET_ECS,
    },
    TableKeys {
        section: "`target`",
        keys: TARGET_EC2_CLUSTER,
    },
    TableKeys {
        section: "`cooldown`",
        keys: COOLDOWN,
    },
    TableKeys {
        section: "`scale_in`",
        keys: SCALE_IN,
    },
    TableKeys {
        section: "`rate_limit`",
        keys: RATE_LIMIT,
    },
    TableKeys {
        section: "`rate_limit`",
        keys: RATE_LIMIT_DIRECTION,
    },
    TableKeys {
        section: "`fallback`",
        keys: FALLBACK,
    },
    TableKeys {
        section: "`[[services.policies]]`",
        keys: POLICY,
    },
    TableKeys {
        section: "`[[services.policies]]`",
        keys: DATAPOINTS,
    },
    TableKeys {
        section: "`kind = \"target_tracking\"`",
        keys: TARGET_TRACKING,
    },
    TableKeys {
        section: "`kind = \"step\"`",
        keys: STEP,
    },
    TableKeys {
        section: "`kind = \"step\"`",
        keys: STEP_ALARM,
    },
    TableKeys {
        section: "`kind = \"step\"`",
        keys: STEP_BAND,
    },
    TableKeys {
        section: "`kind = \"threshold\"`",
        keys: THRESHOLD,
    },
    TableKeys {
        section: "`kind = \"threshold\"`",
        keys: THRESHOLD_METRIC,
    },
    TableKeys {
        section: "`kind = \"threshold\"`",
        keys: THRESHOLD_STEP,
    },
    TableKeys {
        section: "`kind = \"threshold\"`",
        keys: JITTER,
    },
    TableKeys {
        section: "`kind = \"backlog_per_task\"`",
        keys: BACKLOG,
    },
    TableKeys {
        section: "`kind = \"scheduled\"`",
        keys: SCHEDULED,
    },
    TableKeys {
        section: "`kind = \"alert\"`",
        keys: ALERT,
    },
    TableKeys {
        section: "`kind = \"scheduled\"`",
        keys: SCHEDULED_ACTION,
    },
];

/// Every list of enumerated values with the section of `docs/config.md` that lists them.
pub const ALL_VALUES: &[TableKeys] = &[
    TableKeys {
        section: "`[log]`",
        keys: LOG_FORMATS,
    },
    TableKeys {
        section: "`[sources.NAME]`",
        keys: SOURCE_KINDS,
    },
    TableKeys {
        section: "`[sources.NAME]`",
        keys: VALUE_KINDS,
    },
    TableKeys {
        section: "`kind = \"cloudwatch\"`",
        keys: CLOUDWATCH_ON_EMPTY,
    },
    TableKeys {
        section: "`kind = \"ecs\"`",
        keys: ECS_METRICS,
    },
    TableKeys {
        section: "`kind = \"redis\"`",
        keys: REDIS_STREAM_METRICS,
    },
    TableKeys {
        section: "`kind = \"redis\"`",
        keys: REDIS_MISSING_KEY,
    },
    TableKeys {
        section: "`kind = \"kafka\"`",
        keys: KAFKA_OFFSET_RESET,
    },
    TableKeys {
        section: "`kind = \"kafka\"`",
        keys: KAFKA_SASL_MECHANISMS,
    },
    TableKeys {
        section: "`target`",
        keys: TARGET_KINDS,
    },
    TableKeys {
        section: "`[[services.policies]]`",
        keys: POLICY_KINDS,
    },
    TableKeys {
        section: "`kind = \"target_tracking\"`",
        keys: TRACKING_MODES,
    },
    TableKeys {
        section: "`kind = \"step\"`",
        keys: AGGREGATIONS,
    },
    TableKeys {
        section: "`kind = \"threshold\"`",
        keys: GROWTHS,
    },
];
