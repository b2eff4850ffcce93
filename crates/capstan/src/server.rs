//! The HTTP listener `capstan run` starts (`[server]`): health, metrics, pushed values.
//!
//! Routes (see `docs/http.md`):
//! - `GET /healthz`: `ok`, never authenticated (for load balancers and probes);
//! - `GET /metrics`: the [`exporter`]'s Prometheus text;
//! - `POST /api/v1/metrics/{name}`: a value for the `push` source `name`, as JSON
//!   `{"value": 12.5}` (with `Content-Type: application/json`) or as a plain-text
//!   number (any other content type). 200 with the stored value; 400 with a JSON error
//!   naming the field for a bad body; 404 for a name that is no push source; a refused
//!   push changes nothing.
//!
//! - `GET /` (and `/app.js`, `/app.css`): the [`web`] page, never authenticated itself
//!   (the API calls it makes carry the token).
//!
//! Auth: with a token configured, every route but `/healthz` and the page needs
//! `Authorization: Bearer TOKEN`, compared in constant time; otherwise 401. The config
//! refuses a listener beyond loopback without a token. The token is never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use capstan_sources::{PushError, PushStore};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, ServerSpec, TokenSource};
use crate::daemon::reload::{ReloadError, ReloadHandle, Trigger};

pub mod api;
pub mod exporter;
pub mod rotations;
pub mod web;
pub mod webhooks;
pub mod work;
pub mod workflows;

pub use exporter::{Exporter, ExportingLog};

/// The largest push body accepted (bytes); a larger one is answered 413.
pub const MAX_PUSH_BODY: usize = 4096;

/// The Content-Type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the routes share.
#[derive(Clone)]
pub struct ServerState {
    /// Required on every route but `/healthz` when set.
    pub token: Option<Secret>,
    /// `/metrics`.
    pub exporter: Arc<Exporter>,
    /// Where pushed values go.
    pub push: PushStore,
    /// Asks the daemon to reload its configuration (`POST /api/v1/reload`); without it
    /// the route answers 503.
    pub reload: Option<ReloadHandle>,
    /// The services behind the JSON API and `/readyz` ([`api`]); without them those
    /// routes answer 503.
    pub services: Option<api::Services>,
    /// Alert webhooks (`POST /webhooks/alertmanager`, `POST /webhooks/grafana`);
    /// without them those routes answer 404.
    pub alerts: Option<Arc<webhooks::Webhooks>>,
}

impl ServerState {
    /// The state of a listener with `token` (none: open), exporting through `exporter`
    /// and storing pushed values in `push`. Further parts (API, webhooks) are added
    /// with the `with_*` methods.
    pub fn new(token: Option<Secret>, exporter: Arc<Exporter>, push: PushStore) -> Self {
        Self {
            token,
            exporter,
            push,
            reload: None,
            services: None,
            alerts: None,
        }
    }

    /// Serves the alert webhooks through `hooks`.
    #[must_use]
    pub fn with_alerts(mut self, hooks: Arc<webhooks::Webhooks>) -> Self {
        self.alerts = Some(hooks);
        self
    }

    /// Serves the JSON API and `/readyz` over `services`.
    #[must_use]
    pub fn with_services(mut self, services: api::Services) -> Self {
        self.services = Some(services);
        self
    }

    /// Serves `POST /api/v1/reload` through `handle`.
    #[must_use]
    pub fn with_reload(mut self, handle: ReloadHandle) -> Self {
        self.reload = Some(handle);
        self
    }
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("token", &self.token)
            .field("push", &self.push)
            .finish_non_exhaustive()
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `token_file` could not be read or is empty.
    #[error("server.token_file {path}: {reason}")]
    TokenFile {
        /// The file, as configured.
        path: String,
        /// Why.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The token of `spec`: the inline one, or the content of `token_file` (read now, a
/// final newline dropped).
pub fn resolve_token(spec: &ServerSpec) -> Result<Option<Secret>, ServerError> {
    match &spec.token {
        None => Ok(None),
        Some(TokenSource::Inline(token)) => Ok(Some(token.clone())),
        Some(TokenSource::File(path)) => {
            let fail = |reason: String| ServerError::TokenFile {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let token = text.strip_suffix('\n').unwrap_or(&text);
            let token = token.strip_suffix('\r').unwrap_or(token);
            if token.trim().is_empty() {
                return Err(fail("the file is empty".into()));
            }
            Ok(Some(Secret::new(token)))
        }
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// The routes, with auth applied.
pub fn router(state: ServerState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/metrics/{name}",
            post(push).layer(DefaultBodyLimit::max(MAX_PUSH_BODY)),
        )
        .route("/api/v1/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .merge(api::router(&state))
        .merge(webhooks::router())
        .merge(web::router())
        .with_state(state)
}

/// Serves `router` on `listener` until `cancel` fires (requests in flight finish).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<ServerState>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.exporter.render(),
    )
        .into_response()
}

/// A JSON error: `{"error": message, "field": field}` (`field` only when one is at fault).
fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    let body = match field {
        Some(field) => json!({ "error": message, "field": field }),
        None => json!({ "error": message }),
    };
    (status, axum::Json(body)).into_response()
}

async fn require_token(State(state): State<ServerState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.expose().as_bytes())));
    if ok {
        return next.run(request).await;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "a valid bearer token is required (Authorization: Bearer TOKEN)".into(),
        None,
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The pushed value in `body`: JSON `{"value": N}` when the content type is JSON, else
/// a plain-text number. Err: the message and the field at fault.
fn parse_push(headers: &HeaderMap, body: &[u8]) -> Result<f64, (String, &'static str)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        let text = std::str::from_utf8(body)
            .map_err(|_| ("the body is not UTF-8 text".to_owned(), "body"))?
            .trim();
        return text.parse::<f64>().map_err(|_| {
            let shown: String = text.chars().take(40).collect();
            (
                format!("expected one number as plain text (or a JSON body with Content-Type: application/json), found {shown:?}"),
                "body",
            )
        });
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| (format!("the body is not valid JSON: {e}"), "body"))?;
    let Value::Object(map) = value else {
        return Err((
            "expected a JSON object like {\"value\": 12.5}".to_owned(),
            "body",
        ));
    };
    if let Some(other) = map.keys().find(|k| k.as_str() != "value") {
        return Err((
            format!("unknown field {other:?}: the body holds only \"value\""),
            "body",
        ));
    }
    match map.get("value") {
        None => Err(("missing field \"value\"".to_owned(), "value")),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| ("not representable as a number".to_owned(), "value")),
        Some(other) => Err((
            format!("expected a number, found {}", json_type(other)),
            "value",
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn push(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.push.contains(&name) {
        return error(
            StatusCode::NOT_FOUND,
            PushError::UnknownSource(name).to_string(),
            None,
        );
    }
    let value = match parse_push(&headers, &body) {
        Ok(value) => value,
        Err((message, field)) => {
            return error(StatusCode::BAD_REQUEST, message, Some(field));
        }
    };
    match state.push.push(&name, value) {
        Ok(()) => {
            tracing::debug!(source = %name, value, "value pushed");
            (
                StatusCode::OK,
                axum::Json(json!({ "source": name, "value": value })),
            )
                .into_response()
        }
        Err(e @ PushError::UnknownSource(_)) => error(StatusCode::NOT_FOUND, e.to_string(), None),
        Err(e @ PushError::Rejected { .. }) => {
            error(StatusCode::BAD_REQUEST, e.to_string(), Some("value"))
        }
    }
}

/// `POST /api/v1/reload`: reads the config file again and applies it. 200 with what
/// changed; 422 with every error of an invalid file (nothing changed); 409 when there
/// is no file to reload or it cannot be applied; 503 while stopping.
async fn reload(State(state): State<ServerState>) -> Response {
    let Some(handle) = &state.reload else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload is not available here".into(),
            None,
        );
    };
    match handle.reload(Trigger::Api).await {
        Ok(summary) => (
            StatusCode::OK,
            axum::Json(json!({ "reloaded": true, "changes": summary })),
        )
            .into_response(),
        Err(ReloadError::Invalid(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "reloaded": false,
                "error": "the new configuration is invalid; the last good one keeps running",
                "errors": errors,
            })),
        )
            .into_response(),
        Err(e @ (ReloadError::NoFile | ReloadError::Apply(_))) => {
            error(StatusCode::CONFLICT, e.to_string(), None)
        }
        Err(e @ ReloadError::Stopping) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None)
        }
    }
}
