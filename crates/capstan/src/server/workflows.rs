//! The scale-in workflows' routes (see `docs/http.md`, "Scale-in workflows"):
//!
//! - `GET /api/v1/workflows?service=S&limit=N`: the newest workflows first (default
//!   50, at most 500), each with its status, step, counts and victims;
//! - `GET /api/v1/workflows/{id}`: one workflow and its whole journal;
//! - `POST /api/v1/workflows/{id}/redrive`: resumes a failed workflow from the step it
//!   failed at (409 if it is not failed, 404 if unknown).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_control::workflows::from_stored;
use capstan_core::workflow::{Status, Workflow};
use capstan_store::{StoredWorkflow, WorkflowStore};
use serde_json::{Value, json};

use super::{ServerState, error};
use crate::daemon::services::Redriver;

/// What the workflow routes read and act on.
#[derive(Clone)]
pub struct Workflows {
    /// Where workflows are kept.
    pub store: Arc<dyn WorkflowStore>,
    /// Resumes a failed workflow through its service's target.
    pub redrive: Redriver,
}

impl std::fmt::Debug for Workflows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflows").finish_non_exhaustive()
    }
}

/// The largest page.
pub const MAX_LIMIT: usize = 500;

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the workflow API is not available: no services are loaded".into(),
        None,
    )
}

fn store_failed(e: &capstan_store::StoreError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the workflow store failed: {e}"),
        None,
    )
}

/// A workflow as the API shows it (without its journal).
pub fn workflow_json(s: &StoredWorkflow, w: Option<&Workflow>) -> Value {
    let Some(w) = w else {
        return json!({
            "id": s.id, "service": s.service, "status": s.status,
            "created_at": s.created.to_string(), "updated_at": s.updated.to_string(),
            "error": "unreadable state",
        });
    };
    let error = match &w.status {
        Status::Failed { error } => Some(error.clone()),
        _ => None,
    };
    json!({
        "id": w.id,
        "kind": w.kind,
        "service": w.service,
        "status": w.status.as_str(),
        "step": w.step.as_str(),
        "error": error,
        "from": w.from,
        "to": w.to,
        "attempts": w.attempts,
        "not_before": w.not_before.map(|t| t.to_string()),
        "victims": w.victims.iter().map(|v| json!({
            "task": v.task.as_str(),
            "kept": v.kept,
            "targets": v.targets.len(),
        })).collect::<Vec<_>>(),
        "protected": w.protected.len(),
        "created_at": s.created.to_string(),
        "updated_at": s.updated.to_string(),
    })
}

/// `GET /api/v1/workflows`.
pub async fn list(
    State(state): State<ServerState>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(wf) = state.services.as_ref().and_then(|s| s.workflows.as_ref()) else {
        return unavailable();
    };
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the query string cannot be read".into(),
            Some("query"),
        );
    };
    if let Some(other) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "service" | "limit"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown query parameter {other:?}: use service and limit"),
            Some("query"),
        );
    }
    let limit = match query.get("limit").map(|l| l.trim().parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                Some("limit"),
            );
        }
    };
    match wf
        .store
        .list(query.get("service").map(String::as_str), limit)
    {
        Ok(rows) => {
            let items: Vec<Value> = rows
                .iter()
                .map(|s| workflow_json(s, from_stored(s).ok().as_ref()))
                .collect();
            axum::Json(json!({ "workflows": items })).into_response()
        }
        Err(e) => store_failed(&e),
    }
}

fn find(wf: &Workflows, id: &str) -> Result<StoredWorkflow, Box<Response>> {
    match wf.store.get(id) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no workflow {id:?}"),
            Some("id"),
        ))),
        Err(e) => Err(Box::new(store_failed(&e))),
    }
}

/// `GET /api/v1/workflows/{id}`.
pub async fn show(State(state): State<ServerState>, Path(id): Path<String>) -> Response {
    let Some(wf) = state.services.as_ref().and_then(|s| s.workflows.as_ref()) else {
        return unavailable();
    };
    let stored = match find(wf, &id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let journal = match wf.store.journal(&id) {
        Ok(j) => j,
        Err(e) => return store_failed(&e),
    };
    let mut body = workflow_json(&stored, from_stored(&stored).ok().as_ref());
    if let Value::Object(map) = &mut body {
        map.insert(
            "journal".into(),
            journal
                .iter()
                .map(|e| {
                    json!({
                        "seq": e.seq, "at": e.at.to_string(), "step": e.step,
                        "event": e.event, "detail": e.detail,
                    })
                })
                .collect(),
        );
    }
    axum::Json(body).into_response()
}

/// `POST /api/v1/workflows/{id}/redrive`.
pub async fn redrive(State(state): State<ServerState>, Path(id): Path<String>) -> Response {
    let Some(wf) = state.services.as_ref().and_then(|s| s.workflows.as_ref()) else {
        return unavailable();
    };
    let stored = match find(wf, &id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if stored.status != "failed" {
        return error(
            StatusCode::CONFLICT,
            format!(
                "workflow {id} is {}: only a failed workflow can be redriven",
                stored.status
            ),
            Some("id"),
        );
    }
    match (wf.redrive)(stored.service.clone(), id.clone()).await {
        Ok(w) => {
            tracing::info!(workflow = %id, service = %stored.service, step = w.step.as_str(), "workflow redriven by operator");
            let fresh = wf.store.get(&id).ok().flatten().unwrap_or(stored);
            axum::Json(workflow_json(&fresh, Some(&w))).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e, Some("id")),
    }
}
