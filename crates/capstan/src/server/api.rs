//! The JSON API over the services: status, decisions, pause/resume, override of
//! min/max, the OpenAPI document, and `/readyz`.
//!
//! Routes (see `docs/http.md` and `docs/openapi.json`, served at
//! `/api/v1/openapi.json`):
//! - `GET /readyz` (never authenticated): 200 when the services are loaded and the
//!   decision store answers, else 503 with why;
//! - `GET /api/v1/services`, `GET /api/v1/services/{name}`;
//! - `GET /api/v1/services/{name}/decisions?limit=N&before=ID` (newest first, `next`
//!   cursor);
//! - `POST /api/v1/services/{name}/pause` and `.../resume` (`{"direction": "in" | "out" |
//!   "both"}`, default both);
//! - `PUT /api/v1/services/{name}/override` (`{"min": 2, "max": 10, "for": "30m"}`) and
//!   `DELETE .../override`;
//! - `GET /api/v1/services/{name}/history?window=1h|6h|24h&points=N`,
//!   `GET .../tasks` and `GET .../hosts` (`ec2_cluster` services): what the web page
//!   charts and lists (see `views`);
//! - the scale-in workflows (`/api/v1/workflows...`, see `workflows`) and the host
//!   rotations (`/api/v1/rotations...`, see `rotations`).
//!
//! The controls are written into the service's [`ServiceHandle`]; its loop reads them
//! at its next tick. Every error is `{"error": ..., "field": ...}` (`field` when one is
//! at fault): 400 for a bad query or body, 404 for an unknown service, 503 when the
//! listener has no services (e.g. `capstan` started without them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use capstan_control::registry::{DecisionSummary, ServiceHandle, ServiceStatus};
use capstan_control::{Registry, WorkRegistry};
use capstan_core::Timestamp;
use capstan_core::clock::{Clock, add};
use capstan_core::controls::{Controls, Direction, MAX_OVERRIDE_FOR, MAX_OVERRIDE_TASKS, Override};
use capstan_core::decision::Decision;
use capstan_store::{DecisionLog, StoreError};
use serde_json::{Map, Value, json};

use super::{ServerState, error, json_type, require_token, rotations, work, workflows};
use crate::config::duration;

mod views;

/// The OpenAPI 3.1 document of every route, as checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// The largest request body of the API (bytes); a larger one is answered 413.
pub const MAX_API_BODY: usize = 4096;

/// How many decisions a page holds unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 50;

/// The largest `limit` of a page of decisions.
pub const MAX_PAGE: usize = 500;

/// How many recent decisions `GET /api/v1/services/{name}` shows.
pub const DETAIL_DECISIONS: usize = 20;

/// The shortest override.
pub const MIN_OVERRIDE_FOR: Duration = Duration::from_secs(1);

/// What the API reads and writes: the registry of services, the decision log and the
/// clock that dates overrides.
#[derive(Clone)]
pub struct Services {
    /// Every service's handle.
    pub registry: Arc<Registry>,
    /// Where the loops record their decisions.
    pub log: Arc<dyn DecisionLog>,
    /// "Now" for overrides (the same clock as the loops).
    pub clock: Arc<dyn Clock>,
    /// Where tasks report their sessions and workloads; without it those routes
    /// answer 503.
    pub work: Option<WorkRegistry>,
    /// The scale-in workflows; without them those routes answer 503.
    pub workflows: Option<workflows::Workflows>,
    /// The blue/green host rotations; without them those routes answer 503.
    pub rotations: Option<crate::daemon::rotations::Rotations>,
    /// The running services' targets (the hosts of `ec2_cluster` services); without
    /// them `GET .../hosts` answers 404 for every service.
    pub targets: Option<crate::daemon::services::TargetBoard>,
}

impl Services {
    /// The API over `registry` and `log`, dating overrides by `clock`.
    pub fn new(registry: Arc<Registry>, log: Arc<dyn DecisionLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            registry,
            log,
            clock,
            work: None,
            workflows: None,
            rotations: None,
            targets: None,
        }
    }

    /// Shows the hosts of the `ec2_cluster` services among the targets on `board`.
    #[must_use]
    pub fn with_targets(mut self, board: crate::daemon::services::TargetBoard) -> Self {
        self.targets = Some(board);
        self
    }

    /// Serves the workflow routes from `workflows`.
    #[must_use]
    pub fn with_workflows(mut self, workflows: workflows::Workflows) -> Self {
        self.workflows = Some(workflows);
        self
    }

    /// Serves the host rotation routes from `rotations`.
    #[must_use]
    pub fn with_rotations(mut self, rotations: crate::daemon::rotations::Rotations) -> Self {
        self.rotations = Some(rotations);
        self
    }

    /// Serves the work registry's routes from `work`.
    #[must_use]
    pub fn with_work(mut self, work: WorkRegistry) -> Self {
        self.work = Some(work);
        self
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("services", &self.registry.len())
            .finish_non_exhaustive()
    }
}

/// One route of the API: method, path (as in the OpenAPI document), whether it needs
/// the token, and its handler. The router is built from this table, so a test can
/// check that the OpenAPI document lists every route.
pub struct ApiRoute {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The path, with `{name}` parameters.
    pub path: &'static str,
    /// True when the route needs the bearer token (when one is configured).
    pub protected: bool,
    /// The handler.
    pub handler: MethodRouter<ServerState>,
}

fn route(
    method: &'static str,
    path: &'static str,
    protected: bool,
    handler: MethodRouter<ServerState>,
) -> ApiRoute {
    ApiRoute {
        method,
        path,
        protected,
        handler,
    }
}

/// Every route of the API.
pub fn routes() -> Vec<ApiRoute> {
    const SERVICE: &str = "/api/v1/services/{name}";
    vec![
        route("GET", "/readyz", false, get(readyz)),
        route("GET", "/api/v1/openapi.json", true, get(openapi)),
        route("GET", "/api/v1/services", true, get(list)),
        route("GET", SERVICE, true, get(detail)),
        route(
            "GET",
            "/api/v1/services/{name}/decisions",
            true,
            get(decisions),
        ),
        route("POST", "/api/v1/services/{name}/pause", true, post(pause)),
        route("POST", "/api/v1/services/{name}/resume", true, post(resume)),
        route(
            "PUT",
            "/api/v1/services/{name}/override",
            true,
            put(set_override),
        ),
        route(
            "DELETE",
            "/api/v1/services/{name}/override",
            true,
            delete(clear_override),
        ),
        route(
            "GET",
            "/api/v1/services/{name}/history",
            true,
            get(views::history),
        ),
        route(
            "GET",
            "/api/v1/services/{name}/tasks",
            true,
            get(views::tasks),
        ),
        route(
            "GET",
            "/api/v1/services/{name}/hosts",
            true,
            get(views::hosts),
        ),
        route(
            "PUT",
            "/api/v1/services/{name}/tasks/{task}/sessions/{id}",
            true,
            put(work::session_start),
        ),
        route(
            "DELETE",
            "/api/v1/services/{name}/tasks/{task}/sessions/{id}",
            true,
            delete(work::session_end),
        ),
        route(
            "PUT",
            "/api/v1/services/{name}/tasks/{task}/sessions",
            true,
            put(work::sessions_replace).layer(DefaultBodyLimit::max(work::MAX_BULK_BODY)),
        ),
        route(
            "POST",
            "/api/v1/services/{name}/tasks/{task}/workloads/{id}",
            true,
            post(work::workload_start),
        ),
        route(
            "DELETE",
            "/api/v1/services/{name}/tasks/{task}/workloads/{id}",
            true,
            delete(work::workload_end),
        ),
        route(
            "POST",
            "/api/v1/services/{name}/tasks/{task}/heartbeat",
            true,
            post(work::heartbeat),
        ),
        route(
            "GET",
            "/api/v1/services/{name}/tasks/{task}/work",
            true,
            get(work::task_work),
        ),
        route("GET", "/api/v1/workflows", true, get(workflows::list)),
        route("GET", "/api/v1/workflows/{id}", true, get(workflows::show)),
        route(
            "POST",
            "/api/v1/workflows/{id}/redrive",
            true,
            post(workflows::redrive),
        ),
        route("POST", "/api/v1/rotations", true, post(rotations::start)),
        route("GET", "/api/v1/rotations", true, get(rotations::list)),
        route("GET", "/api/v1/rotations/{id}", true, get(rotations::show)),
    ]
}

/// The API's routes, the protected ones behind [`require_token`]; merged into the
/// listener's router.
pub fn router(state: &ServerState) -> Router<ServerState> {
    let mut open = Router::new();
    let mut protected = Router::new();
    for r in routes() {
        if r.protected {
            protected = protected.route(r.path, r.handler);
        } else {
            open = open.route(r.path, r.handler);
        }
    }
    let protected = protected
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    open.merge(protected)
}

/// A refused request: answered `{"error": message, "field": field}`.
#[derive(Debug)]
struct ApiError {
    /// The status.
    status: StatusCode,
    /// Why.
    message: String,
    /// The body field or query parameter at fault, if one is.
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: String) -> Self {
        Self {
            status,
            message,
            field: None,
        }
    }
}

impl From<(String, String)> for ApiError {
    /// A 400 naming the field.
    fn from((message, field): (String, String)) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
            field: Some(field),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the decision store failed: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.message, self.field.as_deref())
    }
}

/// The services, or the 503 to answer without them.
fn services(state: &ServerState) -> Result<&Services, ApiError> {
    state.services.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service API is not available: no services are loaded".into(),
        )
    })
}

/// The handle of `name`, or a 404.
fn handle(services: &Services, name: &str) -> Result<Arc<ServiceHandle>, ApiError> {
    services
        .registry
        .get(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no service named {name:?}")))
}

async fn readyz(State(state): State<ServerState>) -> Response {
    let Some(services) = &state.services else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "error": "the configuration is not loaded" })),
        )
            .into_response();
    };
    match services.log.ping() {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({ "ready": true, "services": services.registry.len() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "ready": false,
                "error": format!("the decision store does not answer: {e}"),
            })),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The JSON of a service's status and controls at `now`.
fn service_json(name: &str, status: &ServiceStatus, controls: &Controls, now: Timestamp) -> Value {
    let capacity = status.capacity;
    json!({
        "name": name,
        "configured": { "min": status.config.min, "max": status.config.max },
        "effective": { "min": status.effective.min, "max": status.effective.max },
        "desired": status.desired,
        "running": capacity.map(|c| c.running),
        "pending": capacity.map(|c| c.pending),
        "dry_run": status.dry_run,
        "paused": { "in": controls.paused.scale_in, "out": controls.paused.scale_out },
        "override": controls.bounds_override.map(|o| override_json(&o, now)),
        "last_decision": status.last_decision.as_ref().map(summary_json),
        "last_change": status.last_change.as_ref().map(summary_json),
        "sources": status.sources.iter().map(|(name, freshness)| {
            let mut v = serde_json::to_value(freshness).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut v {
                map.insert("name".into(), name.as_str().into());
            }
            v
        }).collect::<Vec<_>>(),
        "last_tick": status.last_tick.map(|t| t.to_string()),
        "last_error": status.last_error,
    })
}

fn override_json(o: &Override, now: Timestamp) -> Value {
    json!({
        "min": o.min,
        "max": o.max,
        "since": o.since.to_string(),
        "until": o.until.to_string(),
        "active": o.active(now),
    })
}

fn summary_json(s: &DecisionSummary) -> Value {
    let mut action = serde_json::to_value(s.action).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut action {
        map.insert("desired".into(), s.action.desired().into());
    }
    json!({
        "at": s.at.to_string(),
        "action": action,
        "winner": s.winner,
        "sentence": s.sentence,
        "dry_run": s.dry_run,
    })
}

/// A decision as the API shows it: its id, its sentence and every field.
fn decision_json(id: u64, d: &Decision) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), id.into());
    map.insert("sentence".into(), d.sentence().into());
    if let Ok(Value::Object(fields)) = serde_json::to_value(d) {
        map.extend(fields);
    }
    Value::Object(map)
}

async fn list(State(state): State<ServerState>) -> Result<Response, ApiError> {
    let services = services(&state)?;
    let now = services.clock.now();
    let all: Vec<Value> = services
        .registry
        .list()
        .iter()
        .map(|h| service_json(h.name(), &h.status(), &h.controls(), now))
        .collect();
    Ok(axum::Json(json!({ "services": all })).into_response())
}

async fn detail(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let services = services(&state)?;
    let h = handle(services, &name)?;
    let page = services.log.page(&name, None, DETAIL_DECISIONS)?;
    let mut body = service_json(&name, &h.status(), &h.controls(), services.clock.now());
    if let Value::Object(map) = &mut body {
        map.insert(
            "decisions".into(),
            page.decisions
                .iter()
                .map(|(id, d)| decision_json(*id, d))
                .collect(),
        );
    }
    Ok(axum::Json(body).into_response())
}

/// The `limit` and `before` of a decisions query. Err: the message and the parameter.
fn parse_page_query(
    query: &HashMap<String, String>,
) -> Result<(usize, Option<u64>), (String, String)> {
    if let Some(other) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "limit" | "before"))
    {
        return Err((
            format!("unknown query parameter {other:?}: use limit and before"),
            "query".into(),
        ));
    }
    let limit = match query.get("limit") {
        None => DEFAULT_PAGE,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err((
                    format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                    "limit".into(),
                ));
            }
        },
    };
    let before = match query.get("before") {
        None => None,
        Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            (
                "before must be a decision id (a whole number), as given in next".to_owned(),
                "before".into(),
            )
        })?),
    };
    Ok((limit, before))
}

async fn decisions(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let services = services(&state)?;
    handle(services, &name)?;
    let Ok(Query(query)) = query else {
        return Err((
            "the query string cannot be read".to_owned(),
            "query".to_owned(),
        )
            .into());
    };
    let (limit, before) = parse_page_query(&query)?;
    let page = services.log.page(&name, before, limit)?;
    let decisions: Vec<Value> = page
        .decisions
        .iter()
        .map(|(id, d)| decision_json(*id, d))
        .collect();
    Ok(axum::Json(json!({
        "service": name,
        "decisions": decisions,
        "next": page.next_before,
    }))
    .into_response())
}

/// The JSON object of a request body; an empty body is an empty object. Err: the
/// message and the field.
pub(crate) fn body_object(body: &[u8]) -> Result<Map<String, Value>, (String, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err((
            format!("expected a JSON object, found {}", json_type(&other)),
            "body".into(),
        )),
        Err(e) => Err((format!("the body is not valid JSON: {e}"), "body".into())),
    }
}

/// Rejects any key of `map` not in `known`.
pub(crate) fn only(map: &Map<String, Value>, known: &[&str]) -> Result<(), (String, String)> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(other) => Err((
            format!("unknown field {other:?}: expected {}", known.join(", ")),
            other.clone(),
        )),
        None => Ok(()),
    }
}

/// The `direction` of a pause/resume body (default both).
fn parse_direction(body: &[u8]) -> Result<Direction, (String, String)> {
    let map = body_object(body)?;
    only(&map, &["direction"])?;
    match map.get("direction") {
        None => Ok(Direction::Both),
        Some(Value::String(s)) => match s.as_str() {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            "both" => Ok(Direction::Both),
            other => Err((
                format!("expected \"in\", \"out\" or \"both\", found {other:?}"),
                "direction".into(),
            )),
        },
        Some(other) => Err((
            format!(
                "expected \"in\", \"out\" or \"both\", found {}",
                json_type(other)
            ),
            "direction".into(),
        )),
    }
}

async fn pause(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    pause_or_resume(&state, &name, &body, true)
}

async fn resume(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    pause_or_resume(&state, &name, &body, false)
}

fn pause_or_resume(
    state: &ServerState,
    name: &str,
    body: &[u8],
    pause: bool,
) -> Result<Response, ApiError> {
    let services = services(state)?;
    let h = handle(services, name)?;
    let direction = parse_direction(body)?;
    let controls = if pause {
        h.pause(direction)
    } else {
        h.resume(direction)
    };
    let paused = controls.paused;
    if pause {
        tracing::info!(service = %name, direction = direction.as_str(), paused_in = paused.scale_in, paused_out = paused.scale_out, "paused by operator");
    } else {
        tracing::info!(service = %name, direction = direction.as_str(), paused_in = paused.scale_in, paused_out = paused.scale_out, "resumed by operator");
    }
    Ok(axum::Json(json!({
        "service": name,
        "paused": { "in": paused.scale_in, "out": paused.scale_out },
    }))
    .into_response())
}

/// A count field of an override body: a whole number within the hard limit.
fn count_field(map: &Map<String, Value>, key: &str) -> Result<Option<u32>, (String, String)> {
    let Some(value) = map.get(key) else {
        return Ok(None);
    };
    let wrong = || {
        (
            format!(
                "{key} must be a whole number from 0 to {MAX_OVERRIDE_TASKS}, found {}",
                match value {
                    Value::Number(n) => n.to_string(),
                    other => json_type(other).to_owned(),
                }
            ),
            key.to_owned(),
        )
    };
    let n = value.as_u64().ok_or_else(wrong)?;
    let n = u32::try_from(n).map_err(|_| wrong())?;
    if n > MAX_OVERRIDE_TASKS {
        return Err(wrong());
    }
    Ok(Some(n))
}

/// The override in `body`, checked against the service's configured bounds, from `now`.
fn parse_override(
    body: &[u8],
    configured: capstan_core::model::Bounds,
    now: Timestamp,
) -> Result<Override, (String, String)> {
    let map = body_object(body)?;
    only(&map, &["min", "max", "for"])?;
    let min = count_field(&map, "min")?;
    let max = count_field(&map, "max")?;
    if min.is_none() && max.is_none() {
        return Err(("give min, max or both".into(), "min".into()));
    }
    if max == Some(0) {
        return Err(("max must be at least 1".into(), "max".into()));
    }
    let (lo, hi) = (min.unwrap_or(configured.min), max.unwrap_or(configured.max));
    if lo > hi {
        let (field, message) = match (min, max) {
            (Some(_), Some(_)) | (Some(_), None) => (
                "min",
                format!(
                    "min ({lo}) is greater than max ({hi}{})",
                    if max.is_none() { ", configured" } else { "" }
                ),
            ),
            _ => (
                "max",
                format!("max ({hi}) is less than min ({lo}, configured)"),
            ),
        };
        return Err((message, field.into()));
    }
    let for_ = match map.get("for") {
        None => {
            return Err((
                "missing field \"for\": how long, e.g. \"30m\"".into(),
                "for".into(),
            ));
        }
        Some(Value::String(text)) => {
            duration::parse(text).map_err(|e| (format!("for: {e}"), "for".to_owned()))?
        }
        Some(other) => {
            return Err((
                format!(
                    "for must be a duration like \"30m\", found {}",
                    json_type(other)
                ),
                "for".into(),
            ));
        }
    };
    if !(MIN_OVERRIDE_FOR..=MAX_OVERRIDE_FOR).contains(&for_) {
        return Err((
            format!(
                "for must be from {} to {}",
                duration::format(MIN_OVERRIDE_FOR),
                duration::format(MAX_OVERRIDE_FOR)
            ),
            "for".into(),
        ));
    }
    Ok(Override {
        min,
        max,
        since: now,
        until: add(now, for_),
    })
}

async fn set_override(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let services = services(&state)?;
    let h = handle(services, &name)?;
    let now = services.clock.now();
    let o = parse_override(&body, h.status().config, now)?;
    h.set_override(o);
    tracing::info!(service = %name, min = ?o.min, max = ?o.max, until = %o.until, "override of min/max set by operator");
    Ok(axum::Json(json!({ "service": name, "override": override_json(&o, now) })).into_response())
}

async fn clear_override(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let services = services(&state)?;
    let h = handle(services, &name)?;
    let removed = h.clear_override();
    tracing::info!(service = %name, removed = removed.is_some(), "override of min/max removed by operator");
    let now = services.clock.now();
    Ok(axum::Json(json!({
        "service": name,
        "removed": removed.map(|o| override_json(&o, now)),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use capstan_core::model::Bounds;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn field(body: &str) -> String {
        parse_override(body.as_bytes(), Bounds { min: 1, max: 10 }, at(0))
            .unwrap_err()
            .1
    }

    #[test]
    fn override_bodies_are_checked_field_by_field() {
        let o = parse_override(
            br#"{"min": 2, "max": 8, "for": "30m"}"#,
            Bounds { min: 1, max: 10 },
            at(0),
        )
        .unwrap();
        assert_eq!((o.min, o.max, o.until), (Some(2), Some(8), at(1800)));
        assert_eq!(field(r#"{"min": 9, "max": 8, "for": "1m"}"#), "min");
        assert_eq!(field(r#"{"min": 11, "for": "1m"}"#), "min");
        assert_eq!(field(r#"{"max": 0, "for": "1m"}"#), "max");
        assert_eq!(field(r#"{"max": 99999, "for": "1m"}"#), "max");
        assert_eq!(field(r#"{"max": -1, "for": "1m"}"#), "max");
        assert_eq!(field(r#"{"min": 1.5, "for": "1m"}"#), "min");
        assert_eq!(field(r#"{"min": 2}"#), "for");
        assert_eq!(field(r#"{"min": 2, "for": "8d"}"#), "for");
        assert_eq!(field(r#"{"min": 2, "for": "soon"}"#), "for");
        assert_eq!(field(r#"{"min": 2, "for": 30}"#), "for");
        assert_eq!(field(r#"{"for": "1m"}"#), "min");
        assert_eq!(field(r#"{"min": 2, "for": "1m", "until": 3}"#), "until");
        assert_eq!(field("[1]"), "body");
    }

    #[test]
    fn directions_default_to_both() {
        assert_eq!(parse_direction(b"").unwrap(), Direction::Both);
        assert_eq!(parse_direction(b"{}").unwrap(), Direction::Both);
        assert_eq!(
            parse_direction(br#"{"direction":"in"}"#).unwrap(),
            Direction::In
        );
        assert_eq!(
            parse_direction(br#"{"direction":"up"}"#).unwrap_err().1,
            "direction"
        );
        assert_eq!(
            parse_direction(br#"{"direction":1}"#).unwrap_err().1,
            "direction"
        );
        assert_eq!(parse_direction(b"{").unwrap_err().1, "body");
    }

    #[test]
    fn page_queries_name_the_parameter() {
        let q = |pairs: &[(&str, &str)]| {
            parse_page_query(
                &pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert_eq!(q(&[]).unwrap(), (DEFAULT_PAGE, None));
        assert_eq!(
            q(&[("limit", "5"), ("before", "77")]).unwrap(),
            (5, Some(77))
        );
        assert_eq!(q(&[("limit", "0")]).unwrap_err().1, "limit");
        assert_eq!(q(&[("limit", "501")]).unwrap_err().1, "limit");
        assert_eq!(q(&[("before", "x")]).unwrap_err().1, "before");
        assert_eq!(q(&[("page", "2")]).unwrap_err().1, "query");
    }
}
