//! Configuration: TOML parsed once into real types.
//!
//! Owns the file format (see `docs/config.md`), `${ENV}` interpolation, and the compiler
//! that turns the spanned TOML tree into [`Config`], collecting every error with its key
//! path and line:column (unknown keys get the closest valid key suggested).
//!
//! - [`load`] reads a file and compiles it with the process environment;
//!   [`compile`] is the pure function underneath (tests pass their own environment).
//! - [`error`]: [`ConfigError`] and [`ConfigErrors`] (`FILE:LINE:COL: KEY.PATH: message`).
//! - [`duration`]: the `"1h30m"` syntax. [`interpolate`]: `${NAME}`.
//! - [`schema`]: the one list of accepted keys per table (the docs are checked against it).
//! - [`defaults`]: every default value.
//! - `reader`, `compile`, `policies`: the spanned-table reader and the compiler itself.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use capstan_core::planner::Engine;
use capstan_sources::{SourceKind, SourceSpec};
use capstan_targets::TargetSpec;
use toml::de::DeTable;

mod aws;
mod compile;
pub mod duration;
pub mod error;
pub mod interpolate;
mod policies;
mod reader;
pub mod schema;
pub mod store;
pub mod webhooks;

pub use error::{ConfigError, ConfigErrors};
pub use webhooks::{WebhookSpec, WebhooksSpec};

/// Every default value of the configuration, in one place.
pub mod defaults {
    use std::time::Duration;

    use capstan_core::policy::Datapoints;

    /// `sources.NAME.interval`.
    pub const SOURCE_INTERVAL: Duration = Duration::from_secs(5);
    /// `sources.NAME.timeout` is `min(interval, this)` unless set.
    pub const SOURCE_TIMEOUT_CAP: Duration = Duration::from_secs(10);
    /// `server.listen`.
    pub const SERVER_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9120),
    );
    /// The shortest default `sources.NAME.retention` (the default is what the policies
    /// reading the source need: their most datapoints plus one, in intervals).
    pub const MIN_RETENTION: Duration = Duration::from_secs(60);
    /// `services[].min`.
    pub const SERVICE_MIN: u32 = 1;
    /// `services[].interval`.
    pub const SERVICE_INTERVAL: Duration = Duration::from_secs(10);
    /// `services[].cooldown.out`.
    pub const COOLDOWN_OUT: Duration = Duration::from_secs(30);
    /// `services[].cooldown.in`.
    pub const COOLDOWN_IN: Duration = Duration::from_secs(60);
    /// `services[].scale_in.stabilization`.
    pub const STABILIZATION: Duration = Duration::from_secs(60);
    /// `services[].rate_limit.*.period`.
    pub const RATE_LIMIT_PERIOD: Duration = Duration::from_secs(60);
    /// `target.stop_timeout` of a process target.
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
    /// `target.drain_timeout` of a simulated target.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
    /// `target.drain_timeout` of a simulated target with `scales = "hosts"`.
    pub const HOST_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);
    /// `target.warmup` of a simulated target with `scales = "hosts"` (ECS managed
    /// scaling's default instance warm-up).
    pub const HOST_WARMUP: Duration = Duration::from_secs(300);
    /// `target.protect_minutes` of a simulated target.
    pub const PROTECT_MINUTES: u32 = 10;
    /// `target.restart_delay` of a process target.
    pub const RESTART_DELAY: Duration = Duration::from_secs(1);
    /// `first_check_after` of an `ecs` target.
    pub const FIRST_CHECK_AFTER: Duration = Duration::from_secs(10);
    /// `check_every` of an `ecs` target.
    pub const CHECK_EVERY: Duration = Duration::from_secs(5);
    /// `work.ttl` of a service.
    pub const WORK_TTL: Duration = capstan_core::work::DEFAULT_TTL;
    /// `tolerance` of target tracking and backlog per task.
    pub const TOLERANCE: f64 = 0.1;
    /// `datapoints` of target tracking, threshold and backlog per task (AWS's target
    /// tracking alarms: 3 to scale out, 15 to scale in).
    pub const DATAPOINTS: Datapoints = Datapoints { out: 3, r#in: 15 };
    /// `out.datapoints` / `in.datapoints` of a step policy.
    pub const STEP_DATAPOINTS: u32 = 1;
    /// `target_refresh` of backlog per task.
    pub const TARGET_REFRESH: Duration = Duration::from_secs(3600);
    /// `target_min` of backlog per task.
    pub const BACKLOG_TARGET_MIN: f64 = 1.0;
    /// `forget_after` of an alert policy: a resolved alert is forgotten after 10 min.
    pub const ALERT_FORGET_AFTER: Duration = Duration::from_secs(600);
    /// `target_max` of backlog per task.
    pub const BACKLOG_TARGET_MAX: f64 = 1_000_000.0;
}

/// The candidate closest to `word` when it is close enough to be a likely typo (the
/// rule behind every "did you mean" of the configuration).
pub fn suggest_name(word: &str, candidates: &[&str]) -> Option<String> {
    reader::suggest(word, candidates.iter().copied())
}

/// Reads `path` and compiles it, taking `${NAME}` values from the process environment.
/// A relative `[store] path` is resolved against the directory of `path`.
///
/// Errors name the file as `path` is written.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::whole_file(&origin, format!("cannot read the file: {e}")))?;
    let mut config = compile(&text, &origin, &|name| std::env::var(name).ok())?;
    config.store = store::resolve_store(&config.store, path);
    Ok(config)
}

/// Compiles configuration `text` (read from `origin`, used in messages), taking
/// `${NAME}` values from `env`. Pure: no I/O.
///
/// Every error is reported: TOML syntax errors (then nothing else is checked), unknown
/// keys, wrong types, bad values, references to undefined sources, and each policy's own
/// validation.
pub fn compile(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut ctx = reader::Ctx::new(origin, text, env);
    // Only the first syntax error is reported: what follows it cannot be trusted (the
    // parser's recovery mostly reports echoes of the first mistake).
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let path = reader::KeyPath::root();
            ctx.error(&span, &path, format!("TOML syntax error: {}", e.message()));
            return Err(ConfigErrors {
                errors: ctx.into_errors(),
            });
        }
    };
    let config = compile::compile_document(&mut ctx, root.get_ref());
    match config {
        Some(c) if ctx.error_count() == 0 => Ok(c),
        _ => Err(ConfigErrors {
            errors: ctx.into_errors(),
        }),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: how capstan logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    /// Output format.
    pub format: LogFormat,
    /// Filter directive, e.g. `info` or `capstan=debug` (overridden by `RUST_LOG`).
    pub level: String,
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// A secret string (the listener's bearer token): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself (to compare, never to log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Where the bearer token of the listener comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `token`, written in the file (usually as `${ENV}`).
    Inline(Secret),
    /// `token_file`: read when `capstan run` starts (a final newline is dropped).
    File(std::path::PathBuf),
}

/// `[server]`: the HTTP listener (`/healthz`, `/metrics`, the push endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Address and port to listen on.
    pub listen: std::net::SocketAddr,
    /// The bearer token every route but `/healthz` requires; `None` only on loopback.
    pub token: Option<TokenSource>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            listen: defaults::SERVER_LISTEN,
            token: None,
        }
    }
}

/// One `[[services]]` entry.
///
/// `Debug` redacts the target's environment values (they may hold secrets).
#[derive(Clone)]
pub struct ServiceSpec {
    /// Unique service name.
    pub name: String,
    /// Time between evaluations.
    pub interval: Duration,
    /// How long a work report (session, workload, heartbeat) of the service's tasks
    /// holds when it names no TTL (`work.ttl`).
    pub work_ttl: Duration,
    /// How scale-in victims are chosen (`scale_in.order`): idle tasks only, in this
    /// order.
    pub victims: capstan_core::victim::VictimPolicy,
    /// Policies and planner (bounds, cooldowns, ...).
    pub engine: Engine,
    /// What is scaled.
    pub target: TargetSpec,
}

/// A whole, valid configuration.
///
/// `Debug` redacts environment values and HTTP header values (they may hold secrets).
#[derive(Clone)]
pub struct Config {
    /// Logging.
    pub log: LogSpec,
    /// The HTTP listener.
    pub server: ServerSpec,
    /// Where decisions are kept (`[store]`). A relative SQLite path is as written
    /// by [`compile`] and resolved against the file's directory by [`load`].
    pub store: capstan_store::StoreSpec,
    /// The alert webhooks' settings.
    pub webhooks: WebhooksSpec,
    /// Sources, in file order.
    pub sources: Vec<SourceSpec>,
    /// Services, in file order.
    pub services: Vec<ServiceSpec>,
    /// The `ship_to_cloudwatch` settings of the sources that have them, by source name.
    pub ship_to_cloudwatch: std::collections::BTreeMap<String, capstan_sources::ship::ShipSpec>,
}

impl Config {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceSpec> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }
}

const REDACTED: &str = "<redacted>";

fn redact_values(map: &mut std::collections::BTreeMap<String, String>) {
    for v in map.values_mut() {
        REDACTED.clone_into(v);
    }
}

impl fmt::Debug for ServiceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut target = self.target.clone();
        match &mut target {
            TargetSpec::Process(p) => redact_values(&mut p.env),
            TargetSpec::Simulated(_) | TargetSpec::Ecs(_) | TargetSpec::Ec2Cluster(_) => {}
        }
        f.debug_struct("ServiceSpec")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .field("engine", &self.engine)
            .field("target", &target)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources: Vec<SourceSpec> = self
            .sources
            .iter()
            .cloned()
            .map(|mut s| {
                match &mut s.kind {
                    SourceKind::Command(c) => redact_values(&mut c.env),
                    SourceKind::Http(h) => redact_values(&mut h.headers),
                    // RedisSpec's, SqlSpec's and RabbitmqSpec's own Debug hide the
                    // password and the URL's credentials.
                    SourceKind::Redis(_)
                    | SourceKind::Sql(_)
                    | SourceKind::Rabbitmq(_)
                    // NatsSpec's Debug hides the token, password and URL credentials.
                    | SourceKind::Nats(_)
                    // PrometheusSpec's Debug hides header values, the password,
                    // the token and the URL's credentials.
                    | SourceKind::Prometheus(_)
                    // KafkaSpec's Debug hides the SASL password.
                    | SourceKind::Kafka(_)
                    // The AWS sources hold no secrets (credentials come from the
                    // standard chain).
                    | SourceKind::Sqs(_)
                    | SourceKind::Cloudwatch(_)
                    | SourceKind::EcsCluster(_)
                    | SourceKind::Push(_)
                    | SourceKind::Simulated(_) => {}
                }
                s
            })
            .collect();
        f.debug_struct("Config")
            .field("log", &self.log)
            .field("server", &self.server)
            .field("store", &self.store)
            .field("webhooks", &self.webhooks)
            .field("sources", &sources)
            .field("services", &self.services)
            .field("ship_to_cloudwatch", &self.ship_to_cloudwatch)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_targets::Scales;

    #[test]
    fn debug_never_shows_secrets() {
        let text = r#"
[sources.api]
kind = "http"
url = "http://127.0.0.1:1/x"
headers = { Authorization = "Bearer ${TOKEN}" }

[sources.cmd]
kind = "command"
command = ["true"]
env = { PASSWORD = "${TOKEN}" }

[[services]]
name = "w"
max = 2
target = { kind = "process", command = ["true"], env = { KEY = "${TOKEN}" } }
[[services.policies]]
kind = "target_tracking"
metric = "api"
mode = "total"
target = 1
"#;
        let env = |n: &str| (n == "TOKEN").then(|| "hunter2".to_owned());
        let config = match compile(text, "t.toml", &env) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Authorization"));
        let service = format!("{:?}", config.services[0]);
        assert!(!service.contains("hunter2"), "{service}");
        // The values themselves are intact.
        match &config.sources[0].kind {
            SourceKind::Http(h) => assert_eq!(h.headers["Authorization"], "Bearer hunter2"),
            SourceKind::Command(_)
            | SourceKind::Redis(_)
            | SourceKind::Sql(_)
            | SourceKind::Rabbitmq(_)
            | SourceKind::Nats(_)
            | SourceKind::Prometheus(_)
            | SourceKind::Kafka(_)
            | SourceKind::Sqs(_)
            | SourceKind::Cloudwatch(_)
            | SourceKind::EcsCluster(_)
            | SourceKind::Push(_)
            | SourceKind::Simulated(_) => {
                panic!("expected http")
            }
        }
    }

    #[test]
    fn simulated_targets_scale_tasks_or_hosts_with_their_own_defaults() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/config/valid/simulated.toml"
        ))
        .unwrap();
        let config = compile(&text, "simulated.toml", &|_| None).unwrap();
        let target = |name: &str| match &config.service(name).unwrap().target {
            TargetSpec::Simulated(t) => t.clone(),
            _ => panic!("expected a simulated target"),
        };
        let tasks = target("worker");
        assert_eq!(tasks.scales, Scales::Tasks);
        assert_eq!(tasks.drain_timeout, defaults::DRAIN_TIMEOUT);
        assert_eq!(tasks.protect_minutes, defaults::PROTECT_MINUTES);
        let hosts = target("hosts");
        assert_eq!(hosts.scales, Scales::Hosts);
        assert_eq!(hosts.warmup, Duration::from_secs(240));
        assert_eq!(hosts.drain_timeout, Duration::from_secs(1800));
        // Without drain_timeout, a host gets an hour (its tasks must move), not a
        // task's ten minutes.
        let text = text.replace(", drain_timeout = \"30m\"", "");
        let config = compile(&text, "simulated.toml", &|_| None).unwrap();
        match &config.service("hosts").unwrap().target {
            TargetSpec::Simulated(t) => {
                assert_eq!(t.drain_timeout, defaults::HOST_DRAIN_TIMEOUT);
            }
            _ => panic!("expected a simulated target"),
        }
    }

    #[test]
    fn ecs_targets_default_their_service_name_and_scale_in_settings() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/config/valid/ecs.toml"
        ))
        .unwrap();
        let config = compile(&text, "ecs.toml", &|_| None).unwrap();
        let target = |name: &str| match &config.service(name).unwrap().target {
            TargetSpec::Ecs(t) => t.clone(),
            _ => panic!("expected an ecs target"),
        };
        let web = target("web");
        assert_eq!(web.target.cluster, "prod");
        assert_eq!(web.target.service, "web-v2");
        assert_eq!(web.target.protect_minutes, 20);
        assert_eq!(web.target.drain_timeout, Duration::from_secs(900));
        assert!(web.target.target_group.is_some());
        assert_eq!(web.region.as_deref(), Some("eu-west-1"));
        assert_eq!(web.profile.as_deref(), Some("scaler"));
        assert_eq!(web.first_check_after, Duration::from_secs(20));
        assert_eq!(web.check_every, Duration::from_secs(2));
        assert_eq!(web.drain_deadline, Some(Duration::from_secs(3600)));
        let protection = web.protection.unwrap();
        assert_eq!(protection.protect_for, Duration::from_secs(7200));
        assert_eq!(protection.extend_at, Duration::from_secs(6000));
        assert_eq!(protection.release_after_idle, Duration::from_secs(30));
        let service = config.service("web").unwrap();
        assert_eq!(service.work_ttl, Duration::from_secs(120));
        assert!(
            service.victims.allow_busy,
            "a drain deadline allows busy victims"
        );
        assert_eq!(
            service.victims.order,
            vec![
                capstan_core::victim::VictimOrder::Oldest,
                capstan_core::victim::VictimOrder::ZoneBalance
            ]
        );
        let worker = target("worker");
        assert_eq!(worker.protection, None);
        assert_eq!(worker.drain_deadline, None);
        assert_eq!(worker.first_check_after, defaults::FIRST_CHECK_AFTER);
        assert!(!config.service("worker").unwrap().victims.allow_busy);
        assert_eq!(
            config.service("worker").unwrap().work_ttl,
            defaults::WORK_TTL
        );
        assert_eq!(worker.target.service, "worker");
        assert_eq!(worker.target.target_group, None);
        assert_eq!(worker.target.protect_minutes, defaults::PROTECT_MINUTES);
        assert_eq!(worker.target.drain_timeout, defaults::DRAIN_TIMEOUT);
        assert_eq!(worker.region, None);
        assert_eq!(
            worker.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(worker.target.validate(), Ok(()));
    }

    #[test]
    fn a_window_keeps_what_the_policies_reading_it_need() {
        let text = r#"
[sources.cpu]
kind = "command"
command = ["echo", "1"]
interval = "30s"

[sources.mem]
kind = "command"
command = ["echo", "1"]
interval = "10s"

[sources.jobs]
kind = "command"
command = ["echo", "1"]
interval = "1s"

[sources.proc]
kind = "command"
command = ["echo", "1"]
interval = "1s"

[sources.exported]
kind = "command"
command = ["echo", "1"]
interval = "2m"

[sources.kept]
kind = "command"
command = ["echo", "1"]
interval = "1s"
retention = "1h"

[[services]]
name = "api"
max = 10
target = { kind = "process", command = ["true"] }
policies = [
  { kind = "step", metric = "cpu", out = { threshold = 60, datapoints = 4, steps = [{ lower = 0, change = 1 }] }, in = { threshold = 20, datapoints = 2, steps = [{ upper = 0, change = -1 }] } },
  { kind = "threshold", metrics = [{ metric = "cpu", min = 10, max = 90 }, { metric = "mem", min = 10, max = 90 }], datapoints = { out = 3, in = 12 } },
  { kind = "backlog_per_task", backlog = "jobs", processing_time = "proc", acceptable_latency = "1m", datapoints = { out = 1, in = 2 } },
  { kind = "target_tracking", metric = "kept", mode = "total", target = 5 },
]
"#;
        let config = compile(text, "test.toml", &|_| None).unwrap();
        let retention = |name: &str| {
            config
                .sources
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .retention
        };
        // The threshold's 12 in-datapoints win over the step's 4: (12 + 1) × 30 s.
        assert_eq!(retention("cpu"), Duration::from_secs(390));
        // (12 + 1) × 10 s.
        assert_eq!(retention("mem"), Duration::from_secs(130));
        // A few samples at 1 s: the one-minute floor.
        assert_eq!(retention("jobs"), defaults::MIN_RETENTION);
        assert_eq!(retention("proc"), defaults::MIN_RETENTION);
        // Read by no policy: one sample and one interval of slack.
        assert_eq!(retention("exported"), Duration::from_secs(240));
        // Set explicitly and long enough: kept.
        assert_eq!(retention("kept"), Duration::from_secs(3600));
    }

    #[test]
    fn unreadable_file_is_one_error() {
        let err = load(Path::new("/nonexistent/capstan.toml")).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err.to_string()
                .starts_with("/nonexistent/capstan.toml: cannot read the file:")
        );
    }
}
