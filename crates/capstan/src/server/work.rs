//! The work registry's routes: tasks report their live sessions and workloads, so
//! scale-in never stops a task with live work (see `docs/http.md`, "Work registry").
//!
//! - `PUT /api/v1/services/{name}/tasks/{task}/sessions/{id}`: a session starts (201) or
//!   is renewed (200); body optional: `{"ttl": "5m"}`;
//! - `DELETE .../sessions/{id}`: it ends (204, also when it was not known);
//! - `PUT /api/v1/services/{name}/tasks/{task}/sessions`: the full set,
//!   `{"sessions": ["a", "b"], "ttl": "5m"}` (200; idempotent);
//! - `POST /api/v1/services/{name}/tasks/{task}/workloads/{id}` and `DELETE ...`: a
//!   workload in progress starts or ends, like a session;
//! - `POST /api/v1/services/{name}/tasks/{task}/heartbeat`: every entry of the task is
//!   renewed (`{"ttl": ...}` optional);
//! - `GET /api/v1/services/{name}/tasks/{task}/work`: the task's live entries.
//!
//! `{task}` is the id the target reports (an ECS task ARN, percent-encoded, or just its
//! last part, the task id; a process target's `<service>-<n>`). Answers: 400 for a bad
//! id or body (naming the field), 404 for an unknown service or task (naming it), 409
//! when the task is draining for scale-in and the report would add work, 503 when the
//! report could not be stored (nothing changed). A 2xx answer is sent only once the
//! report is durable.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_control::{WorkError, WorkRegistry};
use capstan_core::model::TaskId;
use capstan_core::work::{MAX_BULK, WorkKind, check_id, check_ttl};
use serde_json::{Map, Value, json};

use super::api::{body_object, only};
use super::{ServerState, error, json_type};
use crate::config::duration;

/// The largest body of a bulk session report (bytes).
pub const MAX_BULK_BODY: usize = 1 << 20;

/// A refused report: status, message, and the field at fault.
struct Refused(StatusCode, String, Option<&'static str>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, self.1, self.2)
    }
}

impl From<WorkError> for Refused {
    fn from(e: WorkError) -> Self {
        let (status, field) = match &e {
            WorkError::UnknownService { .. } => (StatusCode::NOT_FOUND, Some("service")),
            WorkError::UnknownTask { .. } => (StatusCode::NOT_FOUND, Some("task")),
            WorkError::Draining { .. } => (StatusCode::CONFLICT, Some("task")),
            WorkError::Store { .. } | WorkError::Closed => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        Self(status, e.to_string(), field)
    }
}

fn bad(message: String, field: &'static str) -> Refused {
    Refused(StatusCode::BAD_REQUEST, message, Some(field))
}

/// The registry, or 503.
fn registry(state: &ServerState) -> Result<&WorkRegistry, Refused> {
    state
        .services
        .as_ref()
        .and_then(|s| s.work.as_ref())
        .ok_or_else(|| {
            Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the work registry is not available: no services are loaded".into(),
                None,
            )
        })
}

/// Checks the service, the task (resolved to the target's full id) and the entry id.
fn locate(
    work: &WorkRegistry,
    service: &str,
    task: &str,
    id: Option<(&str, &'static str)>,
) -> Result<TaskId, Refused> {
    if !work.has_service(service) {
        return Err(WorkError::UnknownService {
            service: service.to_owned(),
        }
        .into());
    }
    check_id(task).map_err(|e| bad(format!("task id {e}"), "task"))?;
    if let Some((id, field)) = id {
        check_id(id).map_err(|e| bad(format!("{field} id {e}"), field))?;
    }
    Ok(work.resolve(service, task)?)
}

/// The optional `ttl` of a body object.
fn ttl_of(map: &Map<String, Value>) -> Result<Option<Duration>, Refused> {
    match map.get("ttl") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let ttl = duration::parse(text).map_err(|e| bad(format!("ttl: {e}"), "ttl"))?;
            check_ttl(ttl).map_err(|e| bad(format!("ttl: {e}"), "ttl"))?;
            Ok(Some(ttl))
        }
        Some(other) => Err(bad(
            format!(
                "ttl: expected a duration such as \"5m\", found {}",
                json_type(other)
            ),
            "ttl",
        )),
    }
}

/// The `ttl` of a body that may hold only a `ttl`.
fn ttl_body(body: &[u8]) -> Result<Option<Duration>, Refused> {
    let map = body_object(body).map_err(|(m, _)| bad(m, "body"))?;
    only(&map, &["ttl"]).map_err(|(m, _)| bad(m, "body"))?;
    ttl_of(&map)
}

async fn start(
    state: &ServerState,
    (service, task, id): (String, String, String),
    kind: WorkKind,
    body: &[u8],
) -> Result<Response, Refused> {
    let work = registry(state)?;
    let field = kind.as_str();
    let task = locate(work, &service, &task, Some((&id, field)))?;
    let ttl = ttl_body(body)?;
    let reported = work.start(&service, &task, kind, &id, ttl).await?;
    let status = if reported.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({
            "service": service,
            "task": task.as_str(),
            field: id,
            "expires_at": reported.expires.to_string(),
            "sessions": reported.count.sessions,
            "workloads": reported.count.workloads,
        })),
    )
        .into_response())
}

async fn end(
    state: &ServerState,
    (service, task, id): (String, String, String),
    kind: WorkKind,
) -> Result<Response, Refused> {
    let work = registry(state)?;
    let task = locate(work, &service, &task, Some((&id, kind.as_str())))?;
    work.end(&service, &task, kind, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT .../sessions/{id}`.
pub async fn session_start(
    State(state): State<ServerState>,
    Path(path): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    start(&state, path, WorkKind::Session, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE .../sessions/{id}`.
pub async fn session_end(
    State(state): State<ServerState>,
    Path(path): Path<(String, String, String)>,
) -> Response {
    end(&state, path, WorkKind::Session)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST .../workloads/{id}`.
pub async fn workload_start(
    State(state): State<ServerState>,
    Path(path): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    start(&state, path, WorkKind::Workload, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE .../workloads/{id}`.
pub async fn workload_end(
    State(state): State<ServerState>,
    Path(path): Path<(String, String, String)>,
) -> Response {
    end(&state, path, WorkKind::Workload)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `PUT .../tasks/{task}/sessions`: the full set.
pub async fn sessions_replace(
    State(state): State<ServerState>,
    Path((service, task)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    replace(&state, &service, &task, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn replace(
    state: &ServerState,
    service: &str,
    task: &str,
    body: &[u8],
) -> Result<Response, Refused> {
    let work = registry(state)?;
    let task = locate(work, service, task, None)?;
    let map = body_object(body).map_err(|(m, _)| bad(m, "body"))?;
    only(&map, &["sessions", "ttl"]).map_err(|(m, _)| bad(m, "body"))?;
    let ttl = ttl_of(&map)?;
    let Some(list) = map.get("sessions") else {
        return Err(bad(
            "sessions: required, the full list of the task's session ids".into(),
            "sessions",
        ));
    };
    let Value::Array(items) = list else {
        return Err(bad(
            format!(
                "sessions: expected an array of ids, found {}",
                json_type(list)
            ),
            "sessions",
        ));
    };
    if items.len() > MAX_BULK {
        return Err(bad(
            format!(
                "sessions: {} ids, at most {MAX_BULK} in one report",
                items.len()
            ),
            "sessions",
        ));
    }
    let mut ids: Vec<Arc<str>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(id) = item else {
            return Err(bad(
                format!(
                    "sessions[{i}]: expected a string, found {}",
                    json_type(item)
                ),
                "sessions",
            ));
        };
        check_id(id).map_err(|e| bad(format!("sessions[{i}]: session id {e}"), "sessions"))?;
        ids.push(Arc::from(id.as_str()));
    }
    let applied = work
        .replace(service, &task, WorkKind::Session, ids, ttl)
        .await?;
    let count = work.count(service, &task);
    Ok(axum::Json(json!({
        "service": service,
        "task": task.as_str(),
        "sessions": count.sessions,
        "added": applied.added,
        "renewed": applied.renewed,
        "removed": applied.removed,
    }))
    .into_response())
}

/// `POST .../tasks/{task}/heartbeat`.
pub async fn heartbeat(
    State(state): State<ServerState>,
    Path((service, task)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    async {
        let work = registry(&state)?;
        let task = locate(work, &service, &task, None)?;
        let ttl = ttl_body(&body)?;
        let renewed = work.heartbeat(&service, &task, ttl).await?;
        Ok::<_, Refused>(
            axum::Json(json!({
                "service": service,
                "task": task.as_str(),
                "renewed": renewed,
            }))
            .into_response(),
        )
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET .../tasks/{task}/work`.
pub async fn task_work(
    State(state): State<ServerState>,
    Path((service, task)): Path<(String, String)>,
) -> Response {
    let result = (|| {
        let work = registry(&state)?;
        let task = locate(work, &service, &task, None)?;
        let count = work.count(&service, &task);
        let entries: Vec<Value> = work
            .entries(&service, &task)
            .into_iter()
            .map(|e| json!({ "kind": e.kind.as_str(), "id": e.id, "expires_at": e.expires.to_string() }))
            .collect();
        Ok::<_, Refused>(
            axum::Json(json!({
                "service": service,
                "task": task.as_str(),
                "draining": work.draining(&service, &task),
                "sessions": count.sessions,
                "workloads": count.workloads,
                "entries": entries,
            }))
            .into_response(),
        )
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}
