//! The compiler: walks the spanned TOML tree and builds [`Config`], recording every
//! error (unknown keys, wrong types, bad values, broken references) instead of stopping
//! at the first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use capstan_core::model::Bounds;
use capstan_core::planner::{Cooldowns, Engine, Fallback, PlannerConfig, RateLimit, RateLimits};
use capstan_core::victim::{VictimOrder, VictimPolicy};
use capstan_sim::metric::SimMetric;
use capstan_sources::NatsSpec;
use capstan_sources::{
    CommandSpec, HttpSpec, MissingKey, PushSpec, RedisSpec, SimulatedSpec, SourceKind, SourceSpec,
    StreamMetric, ValueKind,
};
use capstan_sources::{RabbitmqSpec, SqlEngine, SqlSpec};
use capstan_targets::spec::Ec2ClusterSpec;
use capstan_targets::{
    AsgTargetSpec, EcsServiceSpec, ProcessSpec, Scales, SimulatedTargetSpec, TargetSpec,
};
use toml::de::{DeTable, DeValue};

use super::policies::compile_policies;
use super::reader::{Ctx, KeyPath, Node, Read, Str, Table, list, suggest, type_error};
use super::schema;
use super::{Config, LogFormat, LogSpec, Secret, ServerSpec, ServiceSpec, TokenSource, defaults};

/// Compiles a parsed document. Errors are recorded in `ctx`; the result is only
/// meaningful when none were.
pub(crate) fn compile_document(ctx: &mut Ctx<'_>, root: &DeTable<'_>) -> Option<Config> {
    let top = Table::new(KeyPath::root(), 0..0, root, schema::ROOT);
    let log = compile_log(ctx, &top);
    let server = compile_server(ctx, &top);
    let store = super::store::compile_store(ctx, &top);
    let webhooks = super::webhooks::compile_webhooks(ctx, &top);
    let (mut sources, explicit) = compile_sources(ctx, &top);
    // Every name written under [sources], even one whose settings are broken, so a
    // policy referring to it is not reported as well.
    let names: Vec<String> = top
        .node("sources")
        .and_then(|n| n.get_ref().as_table())
        .map(|m| m.iter().map(|(k, _)| k.get_ref().to_string()).collect())
        .unwrap_or_default();
    let services = compile_services(ctx, &top, &names);
    fit_retention(ctx, &mut sources, &explicit, &services);
    let ship_to_cloudwatch = super::aws::compile_ships(ctx, &top);
    top.finish(ctx);
    Some(Config {
        log,
        server,
        store,
        webhooks,
        sources,
        services,
        ship_to_cloudwatch,
    })
}

fn compile_log(ctx: &mut Ctx<'_>, top: &Table<'_, '_>) -> LogSpec {
    let mut spec = LogSpec::default();
    let Some(t) = top.table(ctx, "log", schema::LOG) else {
        return spec;
    };
    if let Some(f) = t.choice(ctx, "format", schema::LOG_FORMATS, "log format") {
        spec.format = if f == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    if let Some(level) = t.opt::<Str>(ctx, "level") {
        match tracing_subscriber::EnvFilter::builder().parse(&level.value) {
            Ok(_) => spec.level = level.value,
            Err(e) => ctx.error(
                &level.span,
                &t.path_of("level"),
                format!(
                    "bad log filter {}: {}",
                    level.shown(),
                    level.detail(&e.to_string(), "not a valid filter directive")
                ),
            ),
        }
    }
    t.finish(ctx);
    spec
}

/// `[server]`: a listener beyond loopback needs a token (security by default).
fn compile_server(ctx: &mut Ctx<'_>, top: &Table<'_, '_>) -> ServerSpec {
    let mut spec = ServerSpec::default();
    let Some(t) = top.table(ctx, "server", schema::SERVER) else {
        return spec;
    };
    if let Some(listen) = t.opt::<Str>(ctx, "listen") {
        match listen.value.parse::<std::net::SocketAddr>() {
            Ok(addr) => spec.listen = addr,
            Err(_) => ctx.error(
                &listen.span,
                &t.path_of("listen"),
                format!(
                    "bad listen address {}: expected IP:PORT, e.g. \"127.0.0.1:9120\" or \"[::1]:9120\"",
                    listen.shown()
                ),
            ),
        }
    }
    let token = t.opt::<Str>(ctx, "token");
    let token_file = t.opt::<Str>(ctx, "token_file");
    match (token, token_file) {
        (Some(_), Some(_)) => ctx.error(
            &t.span_of("token_file"),
            &t.path_of("token_file"),
            "set `token` or `token_file`, not both",
        ),
        (Some(token), None) => {
            if token.value.trim().is_empty() {
                ctx.error(&token.span, &t.path_of("token"), "the token is empty");
            } else {
                spec.token = Some(TokenSource::Inline(Secret::new(token.value)));
            }
        }
        (None, Some(file)) => {
            if file.value.trim().is_empty() {
                ctx.error(&file.span, &t.path_of("token_file"), "the path is empty");
            } else {
                spec.token = Some(TokenSource::File(PathBuf::from(file.value)));
            }
        }
        (None, None) => {}
    }
    if spec.token.is_none() && !spec.listen.ip().is_loopback() && t.has("listen") {
        ctx.error(
            &t.span_of("listen"),
            &t.path_of("listen"),
            format!(
                "listening beyond loopback ({}) needs a bearer token: set `token` or `token_file`",
                spec.listen
            ),
        );
    }
    t.finish(ctx);
    spec
}

mod kafka;

mod web;

/// Where each source that sets `retention` sets it.
type ExplicitRetention = BTreeMap<String, (std::ops::Range<usize>, KeyPath)>;

fn compile_sources(ctx: &mut Ctx<'_>, top: &Table<'_, '_>) -> (Vec<SourceSpec>, ExplicitRetention) {
    let mut explicit = ExplicitRetention::new();
    let Some(node) = top.node("sources") else {
        return (Vec::new(), explicit);
    };
    let path = top.path_of("sources");
    let DeValue::Table(map) = node.get_ref() else {
        type_error(ctx, &path, node, "a table of sources (`[sources.NAME]`)");
        return (Vec::new(), explicit);
    };
    let mut out = Vec::new();
    for (name, value) in map.iter() {
        let name = name.get_ref().as_ref();
        let spath = path.key(name);
        if name.trim().is_empty() {
            ctx.error(&value.span(), &spath, "a source name cannot be empty");
        }
        let Some(t) = Table::of(ctx, spath, value, schema::SOURCE) else {
            continue;
        };
        if t.has("retention") {
            explicit.insert(
                name.to_owned(),
                (t.span_of("retention"), t.path_of("retention")),
            );
        }
        if let Some(spec) = compile_source(ctx, name, t) {
            out.push(spec);
        }
    }
    (out, explicit)
}

/// Sets each source's window to what the policies reading it need, unless the source
/// sets `retention`; a set `retention` too short for them is an error.
///
/// A policy reading the newest N samples of a source (its datapoints) needs N samples
/// in the window: N intervals of history. The default keeps one interval more (a late
/// read still leaves N samples) and at least [`defaults::MIN_RETENTION`].
fn fit_retention(
    ctx: &mut Ctx<'_>,
    sources: &mut [SourceSpec],
    explicit: &ExplicitRetention,
    services: &[ServiceSpec],
) {
    // Per source: the most samples a policy reads, and which policy of which service.
    let mut needs: BTreeMap<&str, (u32, &str, &str)> = BTreeMap::new();
    for service in services {
        for p in &service.engine.policies {
            for (source, n) in p.policy.samples_needed() {
                let entry =
                    needs
                        .entry(source)
                        .or_insert((0, service.name.as_str(), p.name.as_str()));
                if n > entry.0 {
                    *entry = (n, service.name.as_str(), p.name.as_str());
                }
            }
        }
    }
    for source in sources.iter_mut() {
        let need = needs.get(source.name.as_str()).copied();
        // A source no policy reads keeps its newest sample.
        let n = need.map_or(1, |(n, _, _)| n);
        let span = source.interval.saturating_mul(n);
        match explicit.get(&source.name) {
            Some((at, path)) => {
                // A retention already reported as invalid is not checked again.
                if let Some((_, service, policy)) = need
                    && source.retention < span
                    && !ctx.has_error_at(path, 0)
                {
                    ctx.error(
                        at,
                        path,
                        format!(
                            "{} keeps fewer than the {n} samples policy `{policy}` of service `{service}` reads (at a {} interval it needs at least {}); raise it or leave it out",
                            capstan_core::planner::human(source.retention),
                            capstan_core::planner::human(source.interval),
                            capstan_core::planner::human(span),
                        ),
                    );
                }
            }
            None => {
                source.retention = source
                    .interval
                    .saturating_mul(n.saturating_add(1))
                    .max(defaults::MIN_RETENTION);
            }
        }
    }
}

fn compile_source(ctx: &mut Ctx<'_>, name: &str, mut t: Table<'_, '_>) -> Option<SourceSpec> {
    let kind = t.req_choice(ctx, "kind", schema::SOURCE_KINDS, "source kind");
    match kind {
        Some("command") => t.allow(schema::SOURCE_COMMAND),
        Some("http") => t.allow(schema::SOURCE_HTTP),
        Some("redis") => t.allow(schema::SOURCE_REDIS),
        Some("postgres" | "mysql") => t.allow(schema::SOURCE_SQL),
        Some("rabbitmq") => t.allow(schema::SOURCE_RABBITMQ),
        Some("nats") => t.allow(schema::SOURCE_NATS),
        Some("prometheus") => t.allow(schema::SOURCE_PROMETHEUS),
        Some("kafka") => t.allow(schema::SOURCE_KAFKA),
        Some("sqs") => t.allow(schema::SOURCE_SQS),
        Some("cloudwatch") => t.allow(schema::SOURCE_CLOUDWATCH),
        Some("ecs") => t.allow(schema::SOURCE_ECS),
        Some("ecs_cluster") => t.allow(schema::SOURCE_ECS_CLUSTER),
        Some("push") => t.allow(schema::SOURCE_PUSH),
        Some("simulated") => t.allow(schema::SOURCE_SIMULATED),
        // Unknown kind: accept every kind's keys so only the kind is reported.
        _ => {
            t.allow(schema::SOURCE_COMMAND);
            t.allow(schema::SOURCE_HTTP);
            t.allow(schema::SOURCE_REDIS);
            t.allow(schema::SOURCE_SQL);
            t.allow(schema::SOURCE_RABBITMQ);
            t.allow(schema::SOURCE_NATS);
            t.allow(schema::SOURCE_PROMETHEUS);
            t.allow(schema::SOURCE_KAFKA);
            t.allow(schema::SOURCE_SQS);
            t.allow(schema::SOURCE_CLOUDWATCH);
            t.allow(schema::SOURCE_ECS);
            t.allow(schema::SOURCE_ECS_CLUSTER);
            t.allow(schema::SOURCE_PUSH);
            t.allow(schema::SOURCE_SIMULATED);
        }
    }
    let interval = t
        .opt_positive(ctx, "interval")
        .unwrap_or(defaults::SOURCE_INTERVAL);
    let timeout = t
        .opt_positive(ctx, "timeout")
        .unwrap_or_else(|| interval.min(defaults::SOURCE_TIMEOUT_CAP));
    let max_age = t
        .opt_positive(ctx, "max_age")
        .unwrap_or_else(|| interval.saturating_mul(3));
    // Without `retention`, set from the policies reading the source (`fit_retention`).
    let retention = t
        .opt_positive(ctx, "retention")
        .unwrap_or(defaults::MIN_RETENTION);
    let retries = t
        .opt::<u32>(ctx, "retries")
        .unwrap_or(capstan_sources::retry::DEFAULT_RETRIES);
    let value = match t.choice(ctx, "value", schema::VALUE_KINDS, "value kind") {
        Some("any") => ValueKind::Any,
        _ => ValueKind::Count,
    };
    let kind = match kind {
        Some("command") => compile_command_source(ctx, &t).map(SourceKind::Command),
        Some("http") => compile_http_source(ctx, &t).map(SourceKind::Http),
        Some("redis") => compile_redis_source(ctx, &t).map(SourceKind::Redis),
        Some("postgres") => compile_sql_source(ctx, &t, SqlEngine::Postgres).map(SourceKind::Sql),
        Some("mysql") => compile_sql_source(ctx, &t, SqlEngine::MySql).map(SourceKind::Sql),
        Some("rabbitmq") => compile_rabbitmq_source(ctx, &t).map(SourceKind::Rabbitmq),
        Some("nats") => compile_nats_source(ctx, &t).map(SourceKind::Nats),
        Some("prometheus") => web::compile_prometheus_source(ctx, &t).map(SourceKind::Prometheus),
        Some("sqs") => super::aws::compile_sqs_source(ctx, &t).map(SourceKind::Sqs),
        Some("cloudwatch") => {
            super::aws::compile_cloudwatch_source(ctx, &t).map(SourceKind::Cloudwatch)
        }
        Some("ecs") => super::aws::compile_ecs_source(ctx, &t).map(SourceKind::Cloudwatch),
        Some("ecs_cluster") => {
            super::aws::compile_ecs_cluster_source(ctx, &t).map(SourceKind::EcsCluster)
        }
        Some("kafka") => kafka::compile_kafka_source(ctx, &t).map(SourceKind::Kafka),
        Some("push") => {
            if !t.has("ttl") {
                t.missing(ctx, "ttl");
            }
            t.opt_positive(ctx, "ttl")
                .map(|ttl| SourceKind::Push(PushSpec { ttl }))
        }
        Some("simulated") => compile_simulated_source(ctx, &t).map(SourceKind::Simulated),
        _ => None,
    };
    t.finish(ctx);
    Some(SourceSpec {
        name: name.to_owned(),
        interval,
        timeout,
        max_age,
        retention,
        value,
        retries,
        kind: kind?,
    })
}

/// A `simulated` source: the metric must be one the simulator offers.
fn compile_simulated_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<SimulatedSpec> {
    let metric: Str = t.req(ctx, "metric")?;
    if let Err(e) = metric.value.parse::<SimMetric>() {
        let names: Vec<&str> = SimMetric::ALL.iter().map(|m| m.name()).collect();
        let hint = suggest(&metric.value, names.iter().copied())
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        ctx.error(&metric.span, &t.path_of("metric"), format!("{e}{hint}"));
        return None;
    }
    Some(SimulatedSpec {
        metric: metric.value,
    })
}

/// A non-empty command line at `key`.
fn command_line(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str) -> Option<Vec<String>> {
    let command: Vec<Str> = t.req(ctx, key)?;
    let Some(program) = command.first() else {
        ctx.error(
            &t.span_of(key),
            &t.path_of(key),
            "must name a program (e.g. [\"sh\", \"-c\", \"...\"])",
        );
        return None;
    };
    if program.value.trim().is_empty() {
        ctx.error(
            &program.span,
            &t.path_of(key).index(0),
            "the program name is empty",
        );
        return None;
    }
    Some(command.into_iter().map(|s| s.value).collect())
}

fn string_map(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str) -> BTreeMap<String, String> {
    t.opt::<BTreeMap<String, Str>>(ctx, key)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect()
}

fn compile_command_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<CommandSpec> {
    let command = command_line(ctx, t, "command");
    let env = string_map(ctx, t, "env");
    Some(CommandSpec {
        command: command?,
        env,
    })
}

fn compile_http_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<HttpSpec> {
    let url = t
        .req::<Str>(ctx, "url")
        .and_then(|u| match check_url(&u.value) {
            Ok(()) => Some(u.value),
            Err(why) => {
                ctx.error(
                    &u.span,
                    &t.path_of("url"),
                    format!(
                        "bad URL {}: {}",
                        shown_redis_url(&u),
                        u.detail(&why, "expected an absolute http or https URL")
                    ),
                );
                None
            }
        });
    let pointer = t.opt::<Str>(ctx, "pointer").and_then(|p| {
        if p.value.is_empty() || p.value.starts_with('/') {
            Some(p.value)
        } else {
            ctx.error(
                &p.span,
                &t.path_of("pointer"),
                format!(
                    "bad JSON pointer {}: it must be empty (the whole body) or start with `/`",
                    p.shown()
                ),
            );
            None
        }
    });
    let headers = web::headers(ctx, t);
    let auth = web::auth(ctx, t, &headers);
    let format = web::body_format(ctx, t, t.has("pointer"));
    Some(HttpSpec {
        url: url?,
        pointer: pointer.unwrap_or_default(),
        headers,
        format: format?,
        auth,
    })
}

fn compile_redis_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<RedisSpec> {
    let url = t
        .req::<Str>(ctx, "url")
        .and_then(|u| match check_redis_url(&u.value) {
            Ok(()) => Some(u.value),
            Err(why) => {
                ctx.error(
                    &u.span,
                    &t.path_of("url"),
                    format!(
                        "bad URL {}: {}",
                        shown_redis_url(&u),
                        u.detail(&why, "expected redis://HOST[:PORT][/DB] or rediss://")
                    ),
                );
                None
            }
        });
    let db = t.opt::<u32>(ctx, "db").map(i64::from);
    let password = t.opt::<Str>(ctx, "password").map(|p| p.value);
    let password_file = t
        .opt::<Str>(ctx, "password_file")
        .map(|p| std::path::PathBuf::from(p.value));
    if password.is_some() && password_file.is_some() {
        ctx.error(
            &t.span_of("password_file"),
            &t.path_of("password_file"),
            "set `password` or `password_file`, not both",
        );
    }
    let key = t.req::<Str>(ctx, "key").and_then(|k| {
        if k.value.is_empty() {
            ctx.error(&k.span, &t.path_of("key"), "the key name is empty");
            None
        } else {
            Some(k.value)
        }
    });
    let consumer_group = t.opt::<Str>(ctx, "consumer_group").map(|g| g.value);
    let stream = match t.choice(
        ctx,
        "stream_metric",
        schema::REDIS_STREAM_METRICS,
        "stream metric",
    ) {
        Some("length") => StreamMetric::Length,
        Some("pending_entries") => StreamMetric::PendingEntries,
        Some("lag") => StreamMetric::Lag,
        _ if consumer_group.is_some() => StreamMetric::PendingEntries,
        _ => StreamMetric::Length,
    };
    if stream.needs_group() && consumer_group.is_none() {
        ctx.error(
            &t.span_of("stream_metric"),
            &t.path_of("stream_metric"),
            format!(
                "stream_metric \"{}\" reads a consumer group: set `consumer_group`",
                stream.name()
            ),
        );
    }
    let missing_key = match t.choice(ctx, "missing_key", schema::REDIS_MISSING_KEY, "missing_key") {
        Some("error") => MissingKey::Error,
        _ => MissingKey::Zero,
    };
    Some(RedisSpec {
        url: url?,
        db,
        password,
        password_file,
        key: key?,
        consumer_group,
        stream,
        missing_key,
    })
}

fn compile_sql_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, engine: SqlEngine) -> Option<SqlSpec> {
    let url = t
        .req::<Str>(ctx, "url")
        .and_then(|u| match check_sql_url(engine, &u.value) {
            Ok(()) => Some(u.value),
            Err(why) => {
                let expected = match engine {
                    SqlEngine::Postgres => {
                        "expected postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE"
                    }
                    SqlEngine::MySql => "expected mysql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE",
                };
                ctx.error(
                    &u.span,
                    &t.path_of("url"),
                    format!(
                        "bad URL {}: {}",
                        shown_redis_url(&u),
                        u.detail(&why, expected)
                    ),
                );
                None
            }
        });
    let password = t.opt::<Str>(ctx, "password").map(|p| p.value);
    let password_file = t
        .opt::<Str>(ctx, "password_file")
        .map(|p| std::path::PathBuf::from(p.value));
    if password.is_some() && password_file.is_some() {
        ctx.error(
            &t.span_of("password_file"),
            &t.path_of("password_file"),
            "set `password` or `password_file`, not both",
        );
    }
    let query = t.req::<Str>(ctx, "query").and_then(|q| {
        if q.value.trim().is_empty() {
            ctx.error(&q.span, &t.path_of("query"), "the query is empty");
            None
        } else {
            Some(q.value)
        }
    });
    Some(SqlSpec {
        engine,
        url: url?,
        password,
        password_file,
        query: query?,
    })
}

fn compile_rabbitmq_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<RabbitmqSpec> {
    let url = t
        .req::<Str>(ctx, "url")
        .and_then(|u| match check_amqp_url(&u.value) {
            Ok(()) => Some(u.value),
            Err(why) => {
                ctx.error(
                    &u.span,
                    &t.path_of("url"),
                    format!(
                        "bad URL {}: {}",
                        shown_redis_url(&u),
                        u.detail(
                            &why,
                            "expected amqp://[USER[:PASSWORD]@]HOST[:PORT][/VHOST]"
                        )
                    ),
                );
                None
            }
        });
    let password = t.opt::<Str>(ctx, "password").map(|p| p.value);
    let password_file = t
        .opt::<Str>(ctx, "password_file")
        .map(|p| std::path::PathBuf::from(p.value));
    if password.is_some() && password_file.is_some() {
        ctx.error(
            &t.span_of("password_file"),
            &t.path_of("password_file"),
            "set `password` or `password_file`, not both",
        );
    }
    let queue = t.req::<Str>(ctx, "queue").and_then(|q| {
        if q.value.is_empty() || q.value.len() > 255 {
            ctx.error(
                &q.span,
                &t.path_of("queue"),
                "a queue name is 1 to 255 bytes long",
            );
            None
        } else {
            Some(q.value)
        }
    });
    Some(RabbitmqSpec {
        url: url?,
        password,
        password_file,
        queue: queue?,
    })
}

/// Checks that `url` is an `amqp://` or `amqps://` URL with a host and a valid port.
fn check_amqp_url(url: &str) -> Result<(), String> {
    check_server_url(
        url,
        &["amqp", "amqps"],
        "amqp or amqps",
        "\"amqp://capstan@127.0.0.1:5672/%2f\"",
    )
    .map(|_| ())
}

fn compile_nats_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<NatsSpec> {
    let url = t.req::<Str>(ctx, "url").and_then(|u| {
        let scheme = u.value.split_once("://").map(|(s, _)| s);
        if matches!(scheme, Some("nats" | "tls")) {
            Some(u.value)
        } else {
            ctx.error(
                &u.span,
                &t.path_of("url"),
                format!(
                    "bad URL {}: {}",
                    shown_redis_url(&u),
                    u.detail(
                        "the scheme must be nats or tls",
                        "expected nats://HOST[:PORT] or tls://HOST[:PORT]"
                    )
                ),
            );
            None
        }
    });
    let mut name = |key: &str| {
        t.req::<Str>(ctx, key).and_then(|n| {
            let bad = n.value.is_empty()
                || n.value.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
                });
            if bad {
                ctx.error(
                    &n.span,
                    &t.path_of(key),
                    "a JetStream name is not empty and has no spaces, `.`, `*`, `>` or slashes",
                );
                None
            } else {
                Some(n.value)
            }
        })
    };
    let stream = name("stream");
    let consumer = name("consumer");
    let text = |ctx: &mut Ctx<'_>, key: &str| t.opt::<Str>(ctx, key).map(|s| s.value);
    let path = |ctx: &mut Ctx<'_>, key: &str| {
        t.opt::<Str>(ctx, key)
            .map(|s| std::path::PathBuf::from(s.value))
    };
    let token = text(ctx, "token");
    let token_file = path(ctx, "token_file");
    let user = text(ctx, "user");
    let password = text(ctx, "password");
    let password_file = path(ctx, "password_file");
    let credentials_file = path(ctx, "credentials_file");
    let mut both = |a: bool, b: bool, key: &str, msg: &str| {
        if a && b {
            ctx.error(&t.span_of(key), &t.path_of(key), msg.to_owned());
        }
    };
    both(
        token.is_some(),
        token_file.is_some(),
        "token_file",
        "set `token` or `token_file`, not both",
    );
    both(
        password.is_some(),
        password_file.is_some(),
        "password_file",
        "set `password` or `password_file`, not both",
    );
    let has_password = password.is_some() || password_file.is_some();
    both(
        user.is_some() != has_password,
        true,
        if user.is_some() { "user" } else { "password" },
        "`user` and a password (`password` or `password_file`) go together",
    );
    let ways = usize::from(token.is_some() || token_file.is_some())
        + usize::from(user.is_some())
        + usize::from(credentials_file.is_some());
    both(
        ways > 1,
        true,
        "url",
        "use one of `token`, `user` with a password, or `credentials_file`",
    );
    Some(NatsSpec {
        url: url?,
        stream: stream?,
        consumer: consumer?,
        token,
        token_file,
        user,
        password,
        password_file,
        credentials_file,
    })
}

/// Checks that `url` is a URL of `engine` (`postgres://` or `postgresql://`; `mysql://`
/// or `mariadb://`) with a host and a valid port.
fn check_sql_url(engine: SqlEngine, url: &str) -> Result<(), String> {
    let (schemes, example) = match engine {
        SqlEngine::Postgres => (
            &["postgres", "postgresql"][..],
            "\"postgres://capstan@127.0.0.1:5432/app\"",
        ),
        SqlEngine::MySql => (
            &["mysql", "mariadb"][..],
            "\"mysql://capstan@127.0.0.1:3306/app\"",
        ),
    };
    check_server_url(url, schemes, &schemes.join(" or "), example).map(|_| ())
}

/// The checks every server URL of a source gets: a scheme among `schemes` (`use_`
/// says which, in the error), no spaces, a host and a valid port; `example` shows the
/// shape when there is no scheme at all. Returns what follows the host and port (path,
/// query, fragment).
fn check_server_url<'u>(
    url: &'u str,
    schemes: &[&str],
    use_: &str,
    example: &str,
) -> Result<&'u str, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("expected a URL like {example}"));
    };
    if !schemes.contains(&scheme) {
        return Err(format!("scheme `{scheme}` is not supported (use {use_})"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("URLs cannot contain spaces".to_owned());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (host_port, None),
    };
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(format!("bad port `{p}`"));
    }
    Ok(&rest[authority.len()..])
}

/// A redis URL for an error message: without credentials, or not at all if secret.
fn shown_redis_url(u: &Str) -> String {
    if u.secret {
        u.shown()
    } else {
        format!("{:?}", capstan_sources::error::redact_url_str(&u.value))
    }
}

/// Checks that `url` is a `redis://` or `rediss://` URL with a host, a valid port and
/// a numeric database (if any).
fn check_redis_url(url: &str) -> Result<(), String> {
    let after = check_server_url(
        url,
        &["redis", "rediss"],
        "redis, or rediss for TLS",
        "\"redis://127.0.0.1:6379/0\"",
    )?;
    let path = after.split(['?', '#']).next().unwrap_or_default();
    let db = path.trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("the database `{db}` is not a number"));
    }
    Ok(())
}

/// Checks that `url` is an absolute `http` or `https` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected an absolute URL like \"http://127.0.0.1:8080/stats\"".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "scheme `{scheme}` is not supported (use http or https)"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("URLs cannot contain spaces".to_owned());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err("unclosed `[` in the host".to_owned()),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(format!("bad port `{p}`"));
    }
    Ok(())
}

fn compile_services(
    ctx: &mut Ctx<'_>,
    top: &Table<'_, '_>,
    sources: &[String],
) -> Vec<ServiceSpec> {
    let Some(tables) = top.tables(ctx, "services", schema::SERVICE) else {
        if !top.has("services") {
            ctx.error(
                &top.span,
                &top.path_of("services"),
                "at least one `[[services]]` entry is required",
            );
        }
        return Vec::new();
    };
    if tables.is_empty() {
        ctx.error(
            &top.span_of("services"),
            &top.path_of("services"),
            "at least one `[[services]]` entry is required",
        );
    }
    let mut out: Vec<ServiceSpec> = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for t in tables {
        if let Some(name) = t.node("name").and_then(|n| n.get_ref().as_str()) {
            let line = ctx.position(t.span_of("name").start).0;
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
                ctx.error(
                    &t.span_of("name"),
                    &t.path_of("name"),
                    format!("duplicate service name {name:?} (first defined on line {first})"),
                );
            } else {
                seen.push((name.to_owned(), line));
            }
        }
        if let Some(s) = compile_service(ctx, t, sources) {
            out.push(s);
        }
    }
    out
}

fn compile_service(ctx: &mut Ctx<'_>, t: Table<'_, '_>, sources: &[String]) -> Option<ServiceSpec> {
    let name = t.req::<Str>(ctx, "name").and_then(|n| {
        if n.value.trim().is_empty() {
            ctx.error(
                &n.span,
                &t.path_of("name"),
                "a service name cannot be empty",
            );
            None
        } else {
            Some(n.value)
        }
    });
    let min = t.opt::<u32>(ctx, "min");
    let max = t.req::<u32>(ctx, "max");
    if max == Some(0) {
        ctx.error(
            &t.span_of("max"),
            &t.path_of("max"),
            "must be at least 1 (a service that may never run is not a service)",
        );
    }
    let min = min.unwrap_or(defaults::SERVICE_MIN);
    if let Some(max) = max
        && max >= 1
        && min > max
    {
        let (span, path) = if t.has("min") {
            (t.span_of("min"), t.path_of("min"))
        } else {
            (t.span_of("max"), t.path_of("max"))
        };
        ctx.error(
            &span,
            &path,
            format!("min ({min}) is greater than max ({max})"),
        );
    }
    let interval = t
        .opt_positive(ctx, "interval")
        .unwrap_or(defaults::SERVICE_INTERVAL);
    let dry_run = t.opt::<bool>(ctx, "dry_run").unwrap_or(false);
    let target = t
        .req_table(ctx, "target", schema::TARGET)
        .and_then(|target| compile_target(ctx, target, name.as_deref()));
    // An `ec2_cluster` target scales hosts: their "sessions" are the tasks on them,
    // which the target moves elsewhere before a host goes, and the work registry knows
    // tasks, not hosts.
    let hosts = matches!(target, Some(TargetSpec::Ec2Cluster(_)));
    let only_for_tasks = |ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str| {
        if hosts && t.has(key) {
            ctx.error(
                &t.span_of(key),
                &t.path_of(key),
                "does not apply to an ec2_cluster target (it drains hosts for the target's drain_timeout and never cuts their tasks off)",
            );
        }
    };
    let cooldown = compile_cooldown(ctx, &t);
    let (stabilization, victims, drain_deadline) = t
        .table(ctx, "scale_in", schema::SCALE_IN)
        .map(|s| {
            let d = s
                .opt::<Duration>(ctx, "stabilization")
                .unwrap_or(defaults::STABILIZATION);
            only_for_tasks(ctx, &s, "drain_deadline");
            let deadline = s.opt_positive(ctx, "drain_deadline");
            let victims = victim_order(ctx, &s).map(|mut v| {
                // With a deadline the operator accepts cutting work: busy tasks may go
                // (after every idle one).
                v.allow_busy = deadline.is_some();
                v
            });
            s.finish(ctx);
            (d, victims, deadline)
        })
        .unwrap_or((defaults::STABILIZATION, Some(VictimPolicy::default()), None));
    // A host with tasks may go (after every empty one, fewest tasks first): the target
    // removes it only once its tasks run elsewhere.
    let victims = victims.map(|mut v| {
        v.allow_busy |= hosts;
        v
    });
    let target = target.map(|mut target| {
        match &mut target {
            TargetSpec::Process(p) => p.drain_deadline = drain_deadline,
            TargetSpec::Ecs(e) => e.drain_deadline = drain_deadline,
            TargetSpec::Simulated(_) | TargetSpec::Ec2Cluster(_) => {}
        }
        target
    });
    if hosts && t.has("work") {
        ctx.error(
            &t.span_of("work"),
            &t.path_of("work"),
            "does not apply to an ec2_cluster target (tasks report their work to services scaling tasks, not hosts)",
        );
    }
    let work_ttl = t
        .table(ctx, "work", schema::WORK)
        .map(|w| {
            let ttl = match w.opt::<Duration>(ctx, "ttl") {
                Some(ttl) => match capstan_core::work::check_ttl(ttl) {
                    Ok(()) => ttl,
                    Err(reason) => {
                        ctx.error(&w.span_of("ttl"), &w.path_of("ttl"), reason);
                        defaults::WORK_TTL
                    }
                },
                None => defaults::WORK_TTL,
            };
            w.finish(ctx);
            ttl
        })
        .unwrap_or(defaults::WORK_TTL);
    let rate_limits = compile_rate_limits(ctx, &t);
    let fallback = compile_fallback(ctx, &t);
    let policies = compile_policies(ctx, &t, sources);
    t.finish(ctx);
    let max = max?;
    let name = name?;
    let policies = policies.map(|p| super::policies::bind_service(p, &name));
    Some(ServiceSpec {
        name: name.clone(),
        interval,
        work_ttl,
        victims: victims?,
        target: target?,
        engine: Engine {
            service: name,
            policies: policies?,
            planner: PlannerConfig {
                bounds: Bounds { min, max },
                cooldown,
                stabilization,
                rate_limits,
                fallback: fallback?,
                dry_run,
            },
        },
    })
}

/// `scale_in.order`: the keys ordering idle victims (default: zone balance, newest);
/// `None` after an error.
fn victim_order(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<VictimPolicy> {
    if !t.has("order") {
        return Some(VictimPolicy::default());
    }
    let names = t.opt::<Vec<Str>>(ctx, "order")?;
    let mut order = Vec::with_capacity(names.len());
    for name in names.iter().map(|n| n.value.as_str()) {
        match name.parse::<VictimOrder>() {
            Ok(key) if order.contains(&key) => {
                ctx.error(
                    &t.span_of("order"),
                    &t.path_of("order"),
                    format!("{name:?} is listed twice"),
                );
                return None;
            }
            Ok(key) => order.push(key),
            Err(e) => {
                ctx.error(&t.span_of("order"), &t.path_of("order"), e.to_string());
                return None;
            }
        }
    }
    Some(VictimPolicy {
        order,
        allow_busy: false,
    })
}

/// `protect_minutes`: 1 to 2880 (what ECS accepts), the default when absent; `None`
/// after an error.
fn protect_minutes(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<u32> {
    match t.opt::<u32>(ctx, "protect_minutes") {
        Some(m) if !(1..=2880).contains(&m) => {
            ctx.error(
                &t.span_of("protect_minutes"),
                &t.path_of("protect_minutes"),
                format!("{m} is outside 1 to 2880 minutes (what ECS accepts)"),
            );
            None
        }
        Some(m) => Some(m),
        None => Some(defaults::PROTECT_MINUTES),
    }
}

/// A `kind = "ecs"` target of the service named `service`.
fn compile_ecs_target(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    service: Option<&str>,
) -> Option<TargetSpec> {
    let name =
        |ctx: &mut Ctx<'_>, key: &str, required: bool| super::aws::word(ctx, t, key, required);
    let cluster = name(ctx, "cluster", true);
    let ecs_service = if t.has("service") {
        name(ctx, "service", false)
    } else {
        service.map(str::to_owned)
    };
    // `Some(None)`: no target group; `None`: an error.
    let target_group = if t.has("target_group") {
        match name(ctx, "target_group", false) {
            Some(arn) if !arn.starts_with("arn:") || !arn.contains(":targetgroup/") => {
                ctx.error(
                    &t.span_of("target_group"),
                    &t.path_of("target_group"),
                    "expected a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)",
                );
                None
            }
            Some(arn) => Some(Some(arn)),
            None => None,
        }
    } else {
        Some(None)
    };
    let drain_timeout = t
        .opt_positive(ctx, "drain_timeout")
        .unwrap_or(defaults::DRAIN_TIMEOUT);
    let protect_minutes = protect_minutes(ctx, t);
    let protection = compile_protection(ctx, t);
    let first_check_after = t
        .opt::<Duration>(ctx, "first_check_after")
        .unwrap_or(defaults::FIRST_CHECK_AFTER);
    let check_every = t
        .opt_positive(ctx, "check_every")
        .unwrap_or(defaults::CHECK_EVERY);
    let aws = super::aws::compile_aws(ctx, t);
    let (cluster, ecs_service, protect_minutes, target_group, protection) = (
        cluster?,
        ecs_service?,
        protect_minutes?,
        target_group?,
        protection?,
    );
    let mut spec = capstan_targets::EcsTargetSpec::new(&cluster, &ecs_service);
    spec.target_group = target_group;
    spec.drain_timeout = drain_timeout;
    spec.protect_minutes = protect_minutes;
    Some(TargetSpec::Ecs(EcsServiceSpec {
        target: spec,
        region: aws.region,
        endpoint_url: aws.endpoint_url,
        profile: aws.profile,
        protection,
        first_check_after,
        check_every,
        drain_deadline: None,
    }))
}

/// A `kind = "ec2_cluster"` target: the hosts of an ECS cluster, the instances of its
/// Auto Scaling group.
fn compile_ec2_cluster_target(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<TargetSpec> {
    let cluster = super::aws::word(ctx, t, "cluster", true);
    // Auto Scaling group names may hold spaces; the API takes names, not ARNs.
    let group = t.req::<Str>(ctx, "group").and_then(|g| {
        let why = if g.value.trim().is_empty() {
            "must not be empty"
        } else if g.value.starts_with("arn:") {
            "expected the Auto Scaling group's name, not its ARN"
        } else {
            return Some(g.value);
        };
        ctx.error(&g.span, &t.path_of("group"), why);
        None
    });
    let warmup = t
        .opt::<Duration>(ctx, "warmup")
        .unwrap_or(AsgTargetSpec::DEFAULT_WARMUP);
    let drain_timeout = t
        .opt_positive(ctx, "drain_timeout")
        .unwrap_or(AsgTargetSpec::DEFAULT_DRAIN_TIMEOUT);
    let minimum_running = t
        .opt::<BTreeMap<String, u32>>(ctx, "minimum_running")
        .unwrap_or_default();
    let termination_hook = t.opt::<Str>(ctx, "termination_hook").and_then(|h| {
        if h.value.trim().is_empty() {
            ctx.error(&h.span, &t.path_of("termination_hook"), "must not be empty");
            None
        } else {
            Some(h.value)
        }
    });
    let hook_heartbeat_every = t
        .opt_positive(ctx, "hook_heartbeat_every")
        .unwrap_or(AsgTargetSpec::DEFAULT_HOOK_HEARTBEAT_EVERY);
    let host_order = t
        .opt::<Str>(ctx, "host_order")
        .and_then(
            |o| match o.value.parse::<capstan_core::hosts::HostOrder>() {
                Ok(order) => Some(order),
                Err(e) => {
                    ctx.error(&o.span, &t.path_of("host_order"), e.to_string());
                    None
                }
            },
        )
        .unwrap_or_default();
    let aws = super::aws::compile_aws(ctx, t);
    let mut target = AsgTargetSpec::new(&cluster?, &group?);
    target.host_order = host_order;
    target.warmup = warmup;
    target.drain_timeout = drain_timeout;
    target.minimum_running = minimum_running;
    target.termination_hook = termination_hook;
    target.hook_heartbeat_every = hook_heartbeat_every;
    Some(TargetSpec::Ec2Cluster(Ec2ClusterSpec {
        target,
        region: aws.region,
        endpoint_url: aws.endpoint_url,
        profile: aws.profile,
    }))
}

/// `protection` of an `ecs` target: `Some(None)` when absent, `Some(Some(settings))`
/// when present (each key defaulting), `None` after an error.
fn compile_protection(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
) -> Option<Option<capstan_core::protection::ProtectionSettings>> {
    let Some(p) = t.table(ctx, "protection", schema::PROTECTION) else {
        return if t.has("protection") {
            None
        } else {
            Some(None)
        };
    };
    let mut settings = capstan_core::protection::ProtectionSettings::default();
    let keys = ["protect_for", "extend_at", "release_after_idle"];
    let mut ok = true;
    for key in keys {
        if let Some(d) = p.opt_positive(ctx, key) {
            match key {
                "protect_for" => settings.protect_for = d,
                "extend_at" => settings.extend_at = d,
                _ => settings.release_after_idle = d,
            }
        } else if p.has(key) {
            ok = false;
        }
    }
    if ok && let Err(reason) = settings.validate() {
        // The error starts with the field at fault.
        let key = keys
            .into_iter()
            .find(|k| reason.starts_with(k))
            .unwrap_or("protect_for");
        let (span, path) = if p.has(key) {
            (p.span_of(key), p.path_of(key))
        } else {
            (t.span_of("protection"), t.path_of("protection"))
        };
        ctx.error(&span, &path, reason);
        ok = false;
    }
    p.finish(ctx);
    ok.then_some(Some(settings))
}

fn compile_target(
    ctx: &mut Ctx<'_>,
    mut t: Table<'_, '_>,
    service: Option<&str>,
) -> Option<TargetSpec> {
    let kind = t.req_choice(ctx, "kind", schema::TARGET_KINDS, "target kind");
    match kind {
        Some("simulated") => t.allow(schema::TARGET_SIMULATED),
        Some("process") => t.allow(schema::TARGET_PROCESS),
        Some("ecs") => t.allow(schema::TARGET_ECS),
        Some("ec2_cluster") => t.allow(schema::TARGET_EC2_CLUSTER),
        _ => {
            t.allow(schema::TARGET_PROCESS);
            t.allow(schema::TARGET_SIMULATED);
            t.allow(schema::TARGET_ECS);
            t.allow(schema::TARGET_EC2_CLUSTER);
        }
    }
    let spec = match kind {
        Some("process") => {
            let command = command_line(ctx, &t, "command");
            let env = string_map(ctx, &t, "env");
            let workdir = t.opt::<Str>(ctx, "workdir").and_then(|w| {
                if w.value.is_empty() {
                    ctx.error(
                        &w.span,
                        &t.path_of("workdir"),
                        "cannot be empty (leave it out to use capstan's own)",
                    );
                    None
                } else {
                    Some(PathBuf::from(w.value))
                }
            });
            let stop_timeout = t
                .opt::<Duration>(ctx, "stop_timeout")
                .unwrap_or(defaults::STOP_TIMEOUT);
            let restart_delay = t
                .opt::<Duration>(ctx, "restart_delay")
                .unwrap_or(defaults::RESTART_DELAY);
            let drain_timeout = t
                .opt::<Duration>(ctx, "drain_timeout")
                .unwrap_or(defaults::DRAIN_TIMEOUT);
            command.map(|command| {
                TargetSpec::Process(ProcessSpec {
                    command,
                    env,
                    workdir,
                    stop_timeout,
                    restart_delay,
                    drain_timeout,
                    drain_deadline: None,
                })
            })
        }
        Some("simulated") => {
            let scales = if t.has("scales") {
                match t.choice(ctx, "scales", schema::SIMULATED_SCALES, "simulated scale") {
                    Some("hosts") => Some(Scales::Hosts),
                    Some(_) => Some(Scales::Tasks),
                    None => None,
                }
            } else {
                Some(Scales::Tasks)
            };
            // Keys of the other kind of simulated target are refused, not ignored.
            let only_for = |ctx: &mut Ctx<'_>, key: &str, which: &str| {
                if t.has(key) {
                    ctx.error(
                        &t.span_of(key),
                        &t.path_of(key),
                        format!("applies only to scales = \"{which}\""),
                    );
                }
            };
            match scales {
                Some(Scales::Tasks) => only_for(ctx, "warmup", "hosts"),
                Some(Scales::Hosts) => only_for(ctx, "protect_minutes", "tasks"),
                None => {}
            }
            let drain_timeout = t
                .opt_positive(ctx, "drain_timeout")
                .unwrap_or(match scales {
                    Some(Scales::Hosts) => defaults::HOST_DRAIN_TIMEOUT,
                    _ => defaults::DRAIN_TIMEOUT,
                });
            let warmup = t
                .opt::<Duration>(ctx, "warmup")
                .unwrap_or(defaults::HOST_WARMUP);
            let protect_minutes = protect_minutes(ctx, &t);
            match (scales, protect_minutes) {
                (Some(scales), Some(protect_minutes)) => {
                    Some(TargetSpec::Simulated(SimulatedTargetSpec {
                        scales,
                        drain_timeout,
                        protect_minutes,
                        warmup,
                    }))
                }
                _ => None,
            }
        }
        Some("ecs") => compile_ecs_target(ctx, &t, service),
        Some("ec2_cluster") => compile_ec2_cluster_target(ctx, &t),
        _ => None,
    };
    t.finish(ctx);
    spec
}

fn compile_cooldown(ctx: &mut Ctx<'_>, service: &Table<'_, '_>) -> Cooldowns {
    let mut c = Cooldowns {
        out: defaults::COOLDOWN_OUT,
        r#in: defaults::COOLDOWN_IN,
    };
    if let Some(t) = service.table(ctx, "cooldown", schema::COOLDOWN) {
        if let Some(d) = t.opt(ctx, "out") {
            c.out = d;
        }
        if let Some(d) = t.opt(ctx, "in") {
            c.r#in = d;
        }
        t.finish(ctx);
    }
    c
}

fn compile_rate_limits(ctx: &mut Ctx<'_>, service: &Table<'_, '_>) -> RateLimits {
    let mut limits = RateLimits::default();
    if let Some(t) = service.table(ctx, "rate_limit", schema::RATE_LIMIT) {
        limits.out = t
            .table(ctx, "out", schema::RATE_LIMIT_DIRECTION)
            .and_then(|d| compile_rate_limit(ctx, d));
        limits.r#in = t
            .table(ctx, "in", schema::RATE_LIMIT_DIRECTION)
            .and_then(|d| compile_rate_limit(ctx, d));
        t.finish(ctx);
    }
    limits
}

fn compile_rate_limit(ctx: &mut Ctx<'_>, t: Table<'_, '_>) -> Option<RateLimit> {
    let tasks = t.opt::<u32>(ctx, "tasks");
    if tasks == Some(0) {
        ctx.error(
            &t.span_of("tasks"),
            &t.path_of("tasks"),
            "must be at least 1",
        );
    }
    let percent = t.opt::<f64>(ctx, "percent");
    if percent.is_some_and(|p| p <= 0.0) {
        ctx.error(
            &t.span_of("percent"),
            &t.path_of("percent"),
            "must be greater than 0",
        );
    }
    let period = t
        .opt_positive(ctx, "period")
        .unwrap_or(defaults::RATE_LIMIT_PERIOD);
    if !t.has("tasks") && !t.has("percent") {
        ctx.error(&t.span, &t.path, "set `tasks`, `percent` or both");
    }
    t.finish(ctx);
    Some(RateLimit {
        tasks,
        percent,
        period,
    })
}

fn compile_fallback(ctx: &mut Ctx<'_>, service: &Table<'_, '_>) -> Option<Fallback> {
    let Some(node) = service.node("fallback") else {
        return Some(Fallback::default());
    };
    let path = service.path_of("fallback");
    match node.get_ref() {
        DeValue::String(_) => {
            let s = Str::read(ctx, &path, node)?;
            if s.value == "hold" {
                Some(Fallback::Hold)
            } else {
                ctx.error_with(
                    &s.span,
                    &path,
                    format!(
                        "unknown fallback {}; valid: \"hold\", {{ tasks = N }}, {{ last_known_for = \"5m\" }}",
                        s.shown()
                    ),
                    suggest(&s.value, ["hold"]),
                );
                None
            }
        }
        DeValue::Table(_) => {
            let t = Table::of(ctx, path.clone(), node, schema::FALLBACK)?;
            let tasks = t.opt::<u32>(ctx, "tasks");
            let last_known = t.opt_positive(ctx, "last_known_for");
            let result = match (t.has("tasks"), t.has("last_known_for")) {
                (true, true) => {
                    ctx.error(
                        &t.span,
                        &path,
                        "set either `tasks` or `last_known_for`, not both",
                    );
                    None
                }
                (false, false) => {
                    if t.entries().next().is_none() {
                        ctx.error(&t.span, &path, "set `tasks` or `last_known_for`");
                    }
                    None
                }
                (true, false) => tasks.map(Fallback::Tasks),
                (false, true) => last_known.map(Fallback::LastKnownFor),
            };
            t.finish(ctx);
            result
        }
        _ => {
            type_error(
                ctx,
                &path,
                node,
                "\"hold\", { tasks = N } or { last_known_for = \"5m\" }",
            );
            None
        }
    }
}

/// Names the defined sources for an error message.
pub(crate) fn known_sources(sources: &[String]) -> String {
    if sources.is_empty() {
        "no sources are defined".to_owned()
    } else {
        let names: Vec<&str> = sources.iter().map(String::as_str).collect();
        format!("defined sources: {}", list(&names))
    }
}

/// Reads a required reference to a source at `key`; an unknown name is reported (with
/// the closest defined name) but still returned, so the policy can be checked further.
pub(crate) fn source_ref(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    key: &str,
    sources: &[String],
) -> Option<String> {
    let s: Str = t.req(ctx, key)?;
    check_source_ref(ctx, &s, &t.path_of(key), sources);
    Some(s.value)
}

/// Reports `s` if it names no defined source.
pub(crate) fn check_source_ref(ctx: &mut Ctx<'_>, s: &Str, path: &KeyPath, sources: &[String]) {
    if sources.contains(&s.value) {
        return;
    }
    let suggestion = if s.secret {
        None
    } else {
        suggest(&s.value, sources.iter().map(String::as_str))
    };
    let message = if suggestion.is_some() {
        format!("unknown source {}", s.shown())
    } else {
        format!("unknown source {} ({})", s.shown(), known_sources(sources))
    };
    ctx.error_with(&s.span, path, message, suggestion);
}

/// The span of the deepest node named by `relative` (`out.steps[1].upper`) under
/// `node`, for locating errors reported by a policy's own validation.
pub(crate) fn locate(node: &Node<'_>, relative: &str) -> std::ops::Range<usize> {
    let mut current = node;
    for segment in relative.split('.').filter(|s| !s.is_empty()) {
        let (key, indices) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            match current.get_ref().as_table().and_then(|t| t.get(key)) {
                Some(next) => current = next,
                None => return current.span(),
            }
        }
        for index in indices.split('[').filter(|s| !s.is_empty()) {
            let Ok(i) = index.trim_end_matches(']').parse::<usize>() else {
                return current.span();
            };
            match current.get_ref().as_array().and_then(|a| a.get(i)) {
                Some(next) => current = next,
                None => return current.span(),
            }
        }
    }
    current.span()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:8080/stats",
            "https://example.org",
            "http://user:pw@host/x?y#z",
            "http://[::1]:9000/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("127.0.0.1:8080", "absolute"),
            ("ftp://host/", "scheme `ftp`"),
            ("http:///path", "host is missing"),
            ("http://host:port/", "bad port"),
            ("http://ho st/", "spaces"),
            ("http://[::1/", "unclosed"),
        ] {
            let err = check_url(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn sql_urls() {
        for ok in [
            "postgres://capstan@127.0.0.1:5432/app",
            "postgresql://u:pw@db.internal/app?sslmode=require",
            "postgres://[::1]:5433/app",
        ] {
            assert_eq!(check_sql_url(SqlEngine::Postgres, ok), Ok(()), "{ok}");
        }
        for ok in [
            "mysql://root@127.0.0.1:3306/test",
            "mariadb://db.internal/app",
        ] {
            assert_eq!(check_sql_url(SqlEngine::MySql, ok), Ok(()), "{ok}");
        }
        for (engine, bad, why) in [
            (SqlEngine::Postgres, "127.0.0.1:5432", "like"),
            (SqlEngine::Postgres, "mysql://host/app", "scheme `mysql`"),
            (SqlEngine::MySql, "postgres://host/app", "scheme `postgres`"),
            (SqlEngine::Postgres, "postgres:///app", "host is missing"),
            (SqlEngine::MySql, "mysql://host:port/app", "bad port"),
            (SqlEngine::MySql, "mysql://host/my app", "spaces"),
        ] {
            let err = check_sql_url(engine, bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn redis_urls() {
        for ok in [
            "redis://127.0.0.1:6379/0",
            "rediss://cache.internal",
            "redis://:pw@host:6380/15",
            "redis://user:pw@host",
        ] {
            assert_eq!(check_redis_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("127.0.0.1:6379", "like"),
            ("http://host/", "scheme `http`"),
            ("redis:///0", "host is missing"),
            ("redis://host:port/0", "bad port"),
            ("redis://host/jobs", "database `jobs`"),
        ] {
            let err = check_redis_url(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn locate_finds_the_deepest_existing_node() {
        let text = "[p]\nout = { steps = [ { lower = 1 }, { upper = 2 } ] }\n";
        let doc = DeTable::parse(text).unwrap();
        let p = doc.get_ref().get("p").unwrap();
        let at = |rel: &str| {
            let s = locate(p, rel);
            &text[s]
        };
        assert_eq!(at("out.steps[1].upper"), "2");
        assert_eq!(at("out.steps[0].upper"), "{ lower = 1 }");
        assert_eq!(at("out.steps[5]"), "[ { lower = 1 }, { upper = 2 } ]");
        assert_eq!(at("nope"), "[p]");
        assert_eq!(at(""), "[p]");
    }
}
