//! The settings the HTTP-speaking sources share (headers; basic or bearer auth), the
//! `http` source's body format (`json`, `yaml`, `prometheus` with `metric` and
//! `labels`), and the `prometheus` source.

use std::collections::BTreeMap;
use std::path::PathBuf;

use capstan_sources::{BodyFormat, HttpAuth, OnEmpty, PrometheusSpec};

use super::super::reader::{Ctx, Str, Table};
use super::super::schema;
use super::{check_url, string_map};

/// `headers`, each name checked (`token` characters of RFC 9110).
pub(super) fn headers(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> BTreeMap<String, String> {
    let headers = string_map(ctx, t, "headers");
    for (name, node) in t
        .node("headers")
        .and_then(|n| n.get_ref().as_table())
        .into_iter()
        .flat_map(|m| m.iter())
    {
        let name = name.get_ref().as_ref();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            ctx.error(
                &node.span(),
                &t.path_of("headers").key(name),
                "not a valid HTTP header name",
            );
        }
    }
    headers
}

/// `username` with `password` / `password_file`, or `token` / `token_file`: at most
/// one way, and not together with an `Authorization` header.
pub(super) fn auth(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    headers: &BTreeMap<String, String>,
) -> HttpAuth {
    let text = |ctx: &mut Ctx<'_>, key: &str| t.opt::<Str>(ctx, key).map(|s| s.value);
    let path =
        |ctx: &mut Ctx<'_>, key: &str| t.opt::<Str>(ctx, key).map(|s| PathBuf::from(s.value));
    let auth = HttpAuth {
        username: text(ctx, "username"),
        password: text(ctx, "password"),
        password_file: path(ctx, "password_file"),
        token: text(ctx, "token"),
        token_file: path(ctx, "token_file"),
    };
    let mut refuse = |when: bool, key: &str, message: &str| {
        if when {
            ctx.error(&t.span_of(key), &t.path_of(key), message.to_owned());
        }
    };
    refuse(
        auth.password.is_some() && auth.password_file.is_some(),
        "password_file",
        "set `password` or `password_file`, not both",
    );
    refuse(
        auth.token.is_some() && auth.token_file.is_some(),
        "token_file",
        "set `token` or `token_file`, not both",
    );
    let has_password = auth.password.is_some() || auth.password_file.is_some();
    let has_token = auth.token.is_some() || auth.token_file.is_some();
    refuse(
        auth.username.is_some() && !has_password,
        "username",
        "`username` needs `password` or `password_file` (basic auth)",
    );
    refuse(
        auth.username.is_none() && has_password,
        if auth.password.is_some() {
            "password"
        } else {
            "password_file"
        },
        "a password needs `username` (basic auth)",
    );
    refuse(
        auth.username.as_deref().is_some_and(|u| u.contains(':')),
        "username",
        "a basic-auth user name cannot contain `:`",
    );
    refuse(
        has_token && (auth.username.is_some() || has_password),
        if auth.token.is_some() {
            "token"
        } else {
            "token_file"
        },
        "use basic auth (`username` and a password) or a bearer `token`, not both",
    );
    refuse(
        (has_token || auth.username.is_some())
            && headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization")),
        "headers",
        "set an `Authorization` header or `username`/`token`, not both",
    );
    auth
}

/// The `http` source's `format`, with `metric` and `labels` for `prometheus`.
/// `pointer_set` says whether `pointer` was written (it does not go with `prometheus`).
pub(super) fn body_format(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    pointer_set: bool,
) -> Option<BodyFormat> {
    let format = t.choice(ctx, "format", schema::HTTP_FORMATS, "body format");
    if format == Some("prometheus") {
        if pointer_set {
            ctx.error(
                &t.span_of("pointer"),
                &t.path_of("pointer"),
                "`pointer` is for json and yaml; format \"prometheus\" picks a sample by \
                 `metric` and `labels`",
            );
        }
        if !t.has("metric") {
            t.missing(ctx, "metric");
        }
        let metric = t.opt::<Str>(ctx, "metric").and_then(|m| {
            if valid_name(&m.value, true) {
                Some(m.value)
            } else {
                ctx.error(
                    &m.span,
                    &t.path_of("metric"),
                    format!(
                        "{} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                        m.shown()
                    ),
                );
                None
            }
        });
        let labels = string_map(ctx, t, "labels");
        let mut ok = true;
        for name in labels.keys() {
            if !valid_name(name, false) {
                ctx.error(
                    &t.span_of("labels"),
                    &t.path_of("labels").key(name),
                    "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                );
                ok = false;
            }
        }
        return Some(BodyFormat::Prometheus {
            metric: metric?,
            labels,
        })
        .filter(|_| ok);
    }
    for key in ["metric", "labels"] {
        if t.has(key) {
            ctx.error(
                &t.span_of(key),
                &t.path_of(key),
                format!("`{key}` is only for format = \"prometheus\""),
            );
        }
    }
    Some(if format == Some("yaml") {
        BodyFormat::Yaml
    } else {
        BodyFormat::Json
    })
}

/// A metric name (`colon` allowed) or a label name.
fn valid_name(name: &str, colon: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    let mut chars = name.chars();
    chars.next().is_some_and(ok) && chars.all(|c| ok(c) || c.is_ascii_digit())
}

/// A `prometheus` source.
pub(super) fn compile_prometheus_source(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
) -> Option<PrometheusSpec> {
    let url = t.req::<Str>(ctx, "url").and_then(|u| {
        let why = check_url(&u.value).err().or_else(|| {
            u.value
                .contains(['?', '#'])
                .then(|| "the server's base URL has no query or fragment".to_owned())
        });
        match why {
            None => Some(u.value),
            Some(why) => {
                ctx.error(
                    &u.span,
                    &t.path_of("url"),
                    format!(
                        "bad URL {}: {}",
                        shown_url(&u),
                        u.detail(
                            &why,
                            "expected the server's base URL, like \"http://127.0.0.1:9090\""
                        )
                    ),
                );
                None
            }
        }
    });
    let query = t.req::<Str>(ctx, "query").and_then(|q| {
        if q.value.trim().is_empty() {
            ctx.error(&q.span, &t.path_of("query"), "the query is empty");
            None
        } else {
            Some(q.value)
        }
    });
    let on_empty = match t.choice(ctx, "on_empty", schema::ON_EMPTY, "on_empty") {
        Some("zero") => OnEmpty::Zero,
        _ => OnEmpty::Error,
    };
    let headers = headers(ctx, t);
    let auth = auth(ctx, t, &headers);
    Some(PrometheusSpec {
        url: url?,
        query: query?,
        on_empty,
        headers,
        auth,
    })
}

/// A URL for an error message: without credentials, or not at all if secret.
fn shown_url(u: &Str) -> String {
    if u.secret {
        u.shown()
    } else {
        format!("{:?}", capstan_sources::error::redact_url_str(&u.value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use capstan_sources::{BodyFormat, HttpAuth, OnEmpty, SourceKind};

    use crate::config::compile;

    #[test]
    fn the_valid_fixture_compiles_to_these_settings_and_hides_its_secrets() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/config/valid/prometheus.toml"
        ))
        .expect("the fixture");
        let env = |n: &str| (n == "API_TOKEN").then(|| "tok-hunter2".to_owned());
        let config = match compile(&text, "prometheus.toml", &env) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let kind = |name: &str| {
            config
                .sources
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.kind.clone())
                .expect("the source")
        };
        let SourceKind::Prometheus(render) = kind("render") else {
            panic!("render is not a prometheus source");
        };
        assert_eq!(render.url, "http://127.0.0.1:9090");
        assert_eq!(render.query, "sum(jobs_waiting{queue=\"render\"})");
        assert_eq!(render.on_empty, OnEmpty::Zero);
        assert_eq!(render.auth, HttpAuth::default());
        let SourceKind::Prometheus(tenant) = kind("tenant") else {
            panic!("tenant is not a prometheus source");
        };
        assert_eq!(tenant.on_empty, OnEmpty::Error);
        assert_eq!(tenant.headers["X-Scope-OrgID"], "team-a");
        assert_eq!(tenant.auth.username.as_deref(), Some("capstan"));
        assert_eq!(
            tenant.auth.password_file.as_deref(),
            Some(std::path::Path::new("/run/secrets/prometheus"))
        );
        let SourceKind::Http(status) = kind("status") else {
            panic!("status is not an http source");
        };
        assert_eq!(status.format, BodyFormat::Yaml);
        assert_eq!(status.pointer, "/queues/0/depth");
        assert_eq!(status.auth.token.as_deref(), Some("tok-hunter2"));
        let SourceKind::Http(exporter) = kind("exporter") else {
            panic!("exporter is not an http source");
        };
        assert_eq!(
            exporter.format,
            BodyFormat::Prometheus {
                metric: "jobs_waiting".into(),
                labels: BTreeMap::from([("queue".to_owned(), "mail".to_owned())]),
            }
        );
        assert_eq!(exporter.auth.password.as_deref(), Some("tok-hunter2"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
