//! The `kafka` source's settings: brokers (a list or a comma-separated string), group,
//! topic, offset_reset, lag_threshold with cap_at_partitions, exclude_persistent_lag,
//! SASL (mechanism, username, password or password_file) and tls.

use std::path::PathBuf;

use capstan_sources::{KafkaSpec, OffsetReset, SaslMechanism};
use toml::de::DeValue;

use super::super::reader::{Ctx, Str, Table, type_error};
use super::super::schema;

/// Compiles the keys of a `kind = "kafka"` source, reporting every error.
pub(super) fn compile_kafka_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<KafkaSpec> {
    let brokers = brokers(ctx, t);
    let group = t.req::<Str>(ctx, "group").and_then(|g| {
        if g.value.trim().is_empty() {
            ctx.error(&g.span, &t.path_of("group"), "the group name is empty");
            None
        } else {
            Some(g.value)
        }
    });
    let topic = match t.opt::<Str>(ctx, "topic") {
        Some(s) if valid_topic(&s.value) => Some(Some(s.value)),
        Some(s) => {
            ctx.error(
                &s.span,
                &t.path_of("topic"),
                "a Kafka topic name is 1 to 249 letters, digits, `.`, `_` or `-` (not `.` or `..`)",
            );
            None
        }
        None => Some(None),
    };
    let offset_reset = match t.choice(
        ctx,
        "offset_reset",
        schema::KAFKA_OFFSET_RESET,
        "offset_reset",
    ) {
        Some("earliest") => OffsetReset::Earliest,
        _ => OffsetReset::Latest,
    };
    let lag_threshold = t.opt::<u64>(ctx, "lag_threshold");
    if lag_threshold == Some(0) {
        ctx.error(
            &t.span_of("lag_threshold"),
            &t.path_of("lag_threshold"),
            "must be greater than zero",
        );
    }
    let cap_at_partitions = t.opt::<bool>(ctx, "cap_at_partitions");
    if cap_at_partitions.is_some() && !t.has("lag_threshold") {
        ctx.error(
            &t.span_of("cap_at_partitions"),
            &t.path_of("cap_at_partitions"),
            "`cap_at_partitions` needs `lag_threshold` (the cap is partitions × lag_threshold)",
        );
    }
    let exclude_persistent_lag = t
        .opt::<bool>(ctx, "exclude_persistent_lag")
        .unwrap_or(false);
    let sasl_mechanism = t
        .choice(
            ctx,
            "sasl_mechanism",
            schema::KAFKA_SASL_MECHANISMS,
            "sasl_mechanism",
        )
        .map(|m| match m {
            "plain" => SaslMechanism::Plain,
            "scram-sha-256" => SaslMechanism::ScramSha256,
            _ => SaslMechanism::ScramSha512,
        });
    let username = t.opt::<Str>(ctx, "username").map(|s| s.value);
    let password = t.opt::<Str>(ctx, "password").map(|s| s.value);
    let password_file = t
        .opt::<Str>(ctx, "password_file")
        .map(|s| PathBuf::from(s.value));
    let mut refuse = |when: bool, key: &str, message: &str| {
        if when {
            ctx.error(&t.span_of(key), &t.path_of(key), message.to_owned());
        }
    };
    refuse(
        password.is_some() && password_file.is_some(),
        "password_file",
        "set `password` or `password_file`, not both",
    );
    let has_password = password.is_some() || password_file.is_some();
    let sasl = t.has("sasl_mechanism");
    refuse(
        sasl && (username.is_none() || !has_password),
        "sasl_mechanism",
        "`sasl_mechanism` needs `username` and a password (`password` or `password_file`)",
    );
    refuse(
        !sasl && (username.is_some() || has_password),
        if username.is_some() {
            "username"
        } else if password.is_some() {
            "password"
        } else {
            "password_file"
        },
        "`username` and a password are for SASL: set `sasl_mechanism`",
    );
    let tls = t.opt::<bool>(ctx, "tls").unwrap_or(false);
    Some(KafkaSpec {
        brokers: brokers?,
        group: group?,
        topic: topic?,
        offset_reset,
        lag_threshold,
        cap_at_partitions: cap_at_partitions.unwrap_or(true),
        exclude_persistent_lag,
        sasl_mechanism,
        username,
        password,
        password_file,
        tls,
    })
}

/// `brokers`: a list of `host:port`, or one string of them separated by commas.
fn brokers(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<Vec<String>> {
    let Some(node) = t.node("brokers") else {
        t.missing(ctx, "brokers");
        return None;
    };
    let path = t.path_of("brokers");
    let items: Vec<Str> = match node.get_ref() {
        DeValue::String(_) => {
            let s = t.req::<Str>(ctx, "brokers")?;
            s.value
                .split(',')
                .map(|b| Str {
                    value: b.trim().to_owned(),
                    secret: s.secret,
                    span: s.span.clone(),
                })
                .collect()
        }
        DeValue::Array(_) => t.req::<Vec<Str>>(ctx, "brokers")?,
        _ => {
            type_error(
                ctx,
                &path,
                node,
                "a list of host:port or a comma-separated string",
            );
            return None;
        }
    };
    if items.is_empty() {
        ctx.error(&node.span(), &path, "no broker given");
        return None;
    }
    let mut ok = true;
    for b in &items {
        let valid = b.value.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(['/', '@', ' ']) && port.parse::<u16>().is_ok()
        });
        if !valid {
            ctx.error(
                &b.span,
                &path,
                format!("broker {} is not host:port", b.shown()),
            );
            ok = false;
        }
    }
    ok.then(|| items.into_iter().map(|b| b.value).collect())
}

/// Whether `topic` is a valid Kafka topic name.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
