//! The blue/green host rotations' routes (see `docs/http.md`, "Host rotations"):
//!
//! - `POST /api/v1/rotations` `{"cluster": C, "from": A, "to": B}`: starts a rotation
//!   of cluster C's hosts from group A to group B; 202 with the rotation (the running
//!   one when the same three are asked again); 400 for a bad body or a cluster without
//!   an `ec2_cluster` target in the configuration; 409 while another rotation of the
//!   cluster runs;
//! - `GET /api/v1/rotations?limit=N`: the newest rotations first (default 50, at most
//!   500);
//! - `GET /api/v1/rotations/{id}`: one rotation, with its notes.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_core::rotation::{Rotation, Status};
use serde_json::{Value, json};

use super::{ServerState, error, json_type};
use crate::daemon::rotations::{Rotations, StartError};

/// The largest page.
pub const MAX_LIMIT: usize = 500;

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the rotation API is not available: no services are loaded".into(),
        None,
    )
}

fn store_failed(e: &capstan_store::StoreError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the rotation store failed: {e}"),
        None,
    )
}

fn rotations(state: &ServerState) -> Option<&Rotations> {
    state.services.as_ref().and_then(|s| s.rotations.as_ref())
}

/// A rotation as the API shows it; with `notes`, its notes too.
pub fn rotation_json(r: &Rotation, notes: bool) -> Value {
    let p = r.progress();
    let error = match &r.status {
        Status::Failed { error } => Some(error.clone()),
        _ => None,
    };
    let mut v = json!({
        "id": r.id,
        "cluster": r.cluster,
        "from": r.from,
        "to": r.to,
        "status": r.status.as_str(),
        "phase": r.phase.as_str(),
        "error": error,
        "size": r.size,
        "progress": {
            "removed": p.removed,
            "skipped": p.skipped,
            "total": p.total,
            "fraction": p.fraction(),
        },
        "removed": r.removed,
        "skipped": r.skipped.iter().map(|s| json!({
            "instance": s.instance,
            "reason": s.reason,
        })).collect::<Vec<_>>(),
        "current": r.current,
        "waiting": r.waiting,
        "created_at": r.created.to_string(),
        "updated_at": r.updated.to_string(),
    });
    if notes {
        v["notes"] = r
            .notes
            .iter()
            .map(|n| json!({"at": n.at.to_string(), "message": n.message}))
            .collect();
    }
    v
}

/// Reads the body `{"cluster", "from", "to"}`; else why, and the field at fault.
fn request(body: &[u8]) -> Result<(String, String, String), (String, Option<String>)> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| (format!("the body is not JSON: {e}"), None))?;
    let Some(obj) = v.as_object() else {
        return Err((
            format!(
                "the body must be an object {{\"cluster\", \"from\", \"to\"}}, not {}",
                json_type(&v)
            ),
            None,
        ));
    };
    if let Some(other) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "cluster" | "from" | "to"))
    {
        return Err((
            format!("unknown field {other:?}: use cluster, from and to"),
            Some(other.clone()),
        ));
    }
    let field = |name: &str| match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err((
            format!("{name} must be a string, not {}", json_type(other)),
            Some(name.to_owned()),
        )),
        None => Err((format!("{name} is missing"), Some(name.to_owned()))),
    };
    Ok((field("cluster")?, field("from")?, field("to")?))
}

/// `POST /api/v1/rotations`.
pub async fn start(State(state): State<ServerState>, body: Bytes) -> Response {
    let Some(rot) = rotations(&state) else {
        return unavailable();
    };
    let (cluster, from, to) = match request(&body) {
        Ok(r) => r,
        Err((message, field)) => {
            return error(StatusCode::BAD_REQUEST, message, field.as_deref());
        }
    };
    match rot.start(&cluster, &from, &to) {
        Ok((r, _new)) => {
            (StatusCode::ACCEPTED, axum::Json(rotation_json(&r, true))).into_response()
        }
        Err(StartError::Invalid { field, message }) => {
            error(StatusCode::BAD_REQUEST, message, Some(field))
        }
        Err(StartError::Busy(message)) => error(StatusCode::CONFLICT, message, Some("cluster")),
        Err(StartError::Store(e)) => store_failed(&e),
    }
}

/// `GET /api/v1/rotations`.
pub async fn list(
    State(state): State<ServerState>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(rot) = rotations(&state) else {
        return unavailable();
    };
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the query string cannot be read".into(),
            Some("query"),
        );
    };
    if let Some(other) = query.keys().find(|k| k.as_str() != "limit") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown query parameter {other:?}: use limit"),
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
    match rot.list(limit) {
        Ok(all) => axum::Json(json!({
            "rotations": all.iter().map(|r| rotation_json(r, false)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_failed(&e),
    }
}

/// `GET /api/v1/rotations/{id}`.
pub async fn show(State(state): State<ServerState>, Path(id): Path<String>) -> Response {
    let Some(rot) = rotations(&state) else {
        return unavailable();
    };
    match rot.get(&id) {
        Ok(Some(r)) => axum::Json(rotation_json(&r, true)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no rotation {id}"),
            Some("id"),
        ),
        Err(e) => store_failed(&e),
    }
}
