//! What the web page charts and lists of one service, read-only:
//!
//! - `GET /api/v1/services/{name}/history?window=1h|6h|24h&points=N`: the service's
//!   bounded history (kept by its loop, see [`capstan_core::history`]) downsampled to
//!   at most `points` points (default [`DEFAULT_POINTS`], at most [`MAX_POINTS`]), and
//!   the changes carried out in the window (at most [`MAX_DECISIONS`], the newest),
//!   oldest first;
//! - `GET /api/v1/services/{name}/tasks`: the tasks of the latest observation with the
//!   work registry's live sessions and workloads;
//! - `GET /api/v1/services/{name}/hosts`: an `ec2_cluster` service's hosts with their
//!   CPU and memory reservation, and the host removal in progress (404 for any other
//!   kind of service).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_core::Timestamp;
use capstan_core::clock::sub;
use capstan_core::decision::Action;
use capstan_core::model::TaskState;
use serde_json::{Value, json};

use super::{ApiError, ServerState, handle, services};

/// How many points `history` gives unless `points` says otherwise.
pub const DEFAULT_POINTS: usize = 360;

/// The largest `points` of `history`.
pub const MAX_POINTS: usize = 1000;

/// The most decisions `history` lists.
pub const MAX_DECISIONS: usize = 200;

/// The windows `history` accepts, by name.
pub const WINDOWS: [(&str, Duration); 3] = [
    ("1h", Duration::from_secs(3600)),
    ("6h", Duration::from_secs(6 * 3600)),
    ("24h", Duration::from_secs(24 * 3600)),
];

/// The `window` and `points` of a history query. Err: the message and the parameter.
fn parse_history_query(
    query: &HashMap<String, String>,
) -> Result<(Duration, usize), (String, String)> {
    if let Some(other) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "window" | "points"))
    {
        return Err((
            format!("unknown query parameter {other:?}: use window and points"),
            "query".into(),
        ));
    }
    let window = match query.get("window") {
        None => WINDOWS[0].1,
        Some(text) => WINDOWS
            .iter()
            .find(|(name, _)| *name == text.trim())
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                let shown: String = text.chars().take(20).collect();
                (
                    format!("window must be 1h, 6h or 24h, found {shown:?}"),
                    "window".to_owned(),
                )
            })?,
    };
    let points = match query.get("points") {
        None => DEFAULT_POINTS,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_POINTS).contains(&n) => n,
            _ => {
                return Err((
                    format!("points must be a whole number from 1 to {MAX_POINTS}"),
                    "points".into(),
                ));
            }
        },
    };
    Ok((window, points))
}

/// `GET /api/v1/services/{name}/history`.
pub(super) async fn history(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let services = services(&state)?;
    let h = handle(services, &name)?;
    let Ok(Query(query)) = query else {
        return Err((
            "the query string cannot be read".to_owned(),
            "query".to_owned(),
        )
            .into());
    };
    let (window, max_points) = parse_history_query(&query)?;
    let now = services.clock.now();
    let sampled = h.history(now, window, max_points);
    let start = sub(now, window);
    // The changes carried out (indexed in the store: holds are never scanned), newest
    // first; those in the window, oldest first.
    let mut changes: Vec<Value> = services
        .log
        .last_applied(&name, MAX_DECISIONS)?
        .iter()
        .filter(|d| d.at > start && d.at <= now)
        .filter_map(|d| {
            let (action, from, to) = match d.action {
                Action::ScaleOut { from, to } => ("scale_out", from, to),
                Action::ScaleIn { from, to } => ("scale_in", from, to),
                Action::Hold { .. } => return None,
            };
            Some(json!({
                "at": d.at.to_string(),
                "action": action,
                "from": from,
                "to": to,
                "winner": d.winner,
                "sentence": d.sentence(),
            }))
        })
        .collect();
    changes.reverse();
    Ok(axum::Json(json!({
        "service": name,
        "window_s": window.as_secs(),
        "step_s": sampled.step.as_secs(),
        "points": sampled.points,
        "decisions": changes,
    }))
    .into_response())
}

/// A task state as the API shows it.
fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "pending",
        TaskState::Running => "running",
        TaskState::Draining => "draining",
        TaskState::Stopping => "stopping",
        TaskState::Stopped => "stopped",
    }
}

/// `GET /api/v1/services/{name}/tasks`.
pub(super) async fn tasks(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let services = services(&state)?;
    let h = handle(services, &name)?;
    let observed = h.tasks();
    let tasks: Vec<Value> = observed
        .tasks
        .iter()
        .map(|t| {
            // Live counts from the registry; without one, what the target reported.
            let (sessions, workloads, draining) = match &services.work {
                Some(work) => {
                    let count = work.count(&name, &t.id);
                    (count.sessions, count.workloads, work.draining(&name, &t.id))
                }
                None => (t.sessions, 0, false),
            };
            json!({
                "id": t.id.as_str(),
                "state": state_name(t.state),
                "zone": t.zone.as_deref(),
                "started_at": t.started_at.to_string(),
                "sessions": sessions,
                "workloads": workloads,
                "protected": t.protected,
                "draining": draining || t.state == TaskState::Draining,
                "healthy": t.healthy,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "service": name,
        "observed_at": observed.at.map(|t: Timestamp| t.to_string()),
        "tasks": tasks,
    }))
    .into_response())
}

/// `GET /api/v1/services/{name}/hosts`.
pub(super) async fn hosts(
    State(state): State<ServerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let services = services(&state)?;
    handle(services, &name)?;
    let target = services.targets.as_ref().and_then(|board| {
        board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&name)
            .cloned()
    });
    let not_hosts = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "service {name:?} has no hosts: only an ec2_cluster service (the EC2 hosts of an ECS cluster) has"
            ),
        )
    };
    let Some(target) = target else {
        return Err(not_hosts());
    };
    let Some(report) = target.hosts().await else {
        return Err(not_hosts());
    };
    let hosts: Vec<Value> = report
        .view
        .as_ref()
        .map(|v| {
            v.hosts
                .iter()
                .map(|h| {
                    json!({
                        "id": h.id,
                        "state": state_name(h.state),
                        "zone": h.zone,
                        "cpu": { "registered": h.cpu_registered, "reserved": h.cpu_reserved },
                        "memory": {
                            "registered": h.memory_registered,
                            "reserved": h.memory_reserved,
                        },
                        "tasks": h.tasks,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let removal = report.removal.as_ref().map(|r| {
        json!({
            "workflow": r.workflow,
            "step": r.step,
            "hosts": r.draining.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "to": r.to,
            "error": r.error,
        })
    });
    Ok(axum::Json(json!({
        "service": name,
        "cluster": report.cluster,
        "group": report.view.as_ref().map(|v| v.group.clone()),
        "observed_at": report.view.as_ref().map(|v| v.at.to_string()),
        "hosts": hosts,
        "removal": removal,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_queries_name_the_parameter() {
        let q = |pairs: &[(&str, &str)]| {
            parse_history_query(
                &pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert_eq!(q(&[]).unwrap(), (Duration::from_secs(3600), DEFAULT_POINTS));
        assert_eq!(
            q(&[("window", "24h"), ("points", "1000")]).unwrap(),
            (Duration::from_secs(86_400), 1000)
        );
        assert_eq!(q(&[("window", "2h")]).unwrap_err().1, "window");
        assert_eq!(q(&[("window", "")]).unwrap_err().1, "window");
        assert_eq!(q(&[("points", "0")]).unwrap_err().1, "points");
        assert_eq!(q(&[("points", "1001")]).unwrap_err().1, "points");
        assert_eq!(q(&[("points", "-3")]).unwrap_err().1, "points");
        assert_eq!(q(&[("step", "1")]).unwrap_err().1, "query");
    }
}
