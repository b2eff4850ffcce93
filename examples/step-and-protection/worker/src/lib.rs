//! The step-and-protection recipe's app: an HTTP worker whose requests each take some
//! time, and that reports every request in progress to capstan's work registry as a
//! workload (`POST .../tasks/{task}/workloads/{id}`, renewed while it runs, `DELETE`d
//! when it ends), so capstan protects its ECS task from scale-in while it works and
//! releases the protection once it is idle.
//!
//! Routes: `GET /work?ms=N` serves one request that takes `N` ms (the worker's default
//! without `ms`, at most its maximum) and answers `200` with `{"task", "ms"}`;
//! `GET /healthz` answers `200` (the load balancer's health check).
//!
//! A request is served whatever capstan answers: the report is what protects the task,
//! never a condition of the request. A report that capstan cannot take yet (the task is
//! not known to it yet, capstan restarting or unreachable) is tried again every 250 ms
//! while the request runs; a `409` (the task is draining for a scale-in: the load
//! balancer has stopped sending it requests, this one came in just before) is not.
//!
//! [`Worker::run`] serves until its token is cancelled, then stops taking connections
//! and gives the requests in flight `grace` to finish; those still running then are
//! answered `503` (the task is being stopped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where and as whom the worker reports its requests: capstan's work registry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// capstan's base URL, e.g. `http://capstan.internal:9120`.
    pub url: String,
    /// The capstan service the task belongs to (`[[services]] name`).
    pub service: String,
    /// The task's id: its ECS task ARN, or only the ARN's last part.
    pub task: String,
    /// The bearer token of capstan's listener, if it has one.
    pub token: Option<String>,
}

impl Registry {
    /// The URL of one workload of this task.
    fn workload_url(&self, id: &str) -> String {
        let task = self.task.rsplit('/').next().unwrap_or(&self.task);
        format!(
            "{}/api/v1/services/{}/tasks/{task}/workloads/{id}",
            self.url.trim_end_matches('/'),
            self.service
        )
    }
}

/// How the worker serves and reports.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The registry to report to; `None` serves without reporting.
    pub registry: Option<Registry>,
    /// How long a request without `ms` takes.
    pub request_time: Duration,
    /// The longest a request may ask for with `ms`.
    pub max_request_time: Duration,
    /// The TTL each report asks for; a request running longer is renewed every
    /// `ttl / 3`, so a worker that dies cannot hold its task for more than `ttl`.
    pub ttl: Duration,
    /// How long requests in flight may still run once the worker is told to stop.
    pub grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            registry: None,
            request_time: Duration::from_millis(200),
            max_request_time: Duration::from_secs(600),
            ttl: Duration::from_secs(600),
            grace: Duration::from_secs(25),
        }
    }
}

/// What the worker has done so far.
#[derive(Debug, Default)]
pub struct Stats {
    served: AtomicU64,
    aborted: AtomicU64,
    reported: AtomicU64,
    refused: AtomicU64,
}

impl Stats {
    /// Requests answered `200`.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Requests cut because the worker was stopped (answered `503`).
    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Requests capstan took as workloads.
    pub fn reported(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }

    /// Requests capstan refused as workloads because the task was draining (`409`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A worker: its settings, an HTTP client for capstan, its counters.
#[derive(Debug, Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: Settings,
    http: reqwest::Client,
    stats: Stats,
    next_id: AtomicU64,
    /// Cancelled `grace` after the worker is told to stop: requests still running end.
    kill: CancellationToken,
    /// A prefix making workload ids unique across the worker's restarts.
    instance: String,
}

/// The error of [`Worker::new`] and [`Worker::run`].
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Worker {
    /// A worker with `settings`; `instance` prefixes its workload ids (e.g. the
    /// process id), so that ids stay unique when a task restarts its worker.
    ///
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn new(settings: Settings, instance: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error(format!("HTTP client: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                http,
                stats: Stats::default(),
                next_id: AtomicU64::new(0),
                kill: CancellationToken::new(),
                instance: instance.to_owned(),
            }),
        })
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The worker's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/work", get(work))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves on `listener` until `stop` is cancelled, then gives the requests in
    /// flight `grace` to finish and answers `503` to those still running.
    ///
    /// # Errors
    /// If the listener fails.
    pub async fn run(&self, listener: TcpListener, stop: CancellationToken) -> Result<(), Error> {
        let kill = self.shared.kill.clone();
        let grace = self.shared.settings.grace;
        let killer = tokio::spawn({
            let stop = stop.clone();
            let kill = kill.clone();
            async move {
                stop.cancelled().await;
                tokio::time::sleep(grace).await;
                kill.cancel();
            }
        });
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .map_err(|e| Error(format!("serving: {e}")));
        killer.abort();
        // Connections still open (kept alive) are answered 503 from now on.
        kill.cancel();
        served
    }
}

#[derive(Debug, Deserialize)]
struct WorkQuery {
    ms: Option<u64>,
}

async fn work(State(w): State<Arc<Shared>>, Query(q): Query<WorkQuery>) -> Response {
    if w.kill.is_cancelled() {
        return stopped();
    }
    let settings = &w.settings;
    let time =
        q.ms.map_or(settings.request_time, Duration::from_millis)
            .min(settings.max_request_time);
    let id = format!(
        "{}-{}",
        w.instance,
        w.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let outcome = tokio::select! {
        biased;
        () = w.kill.cancelled() => false,
        () = tokio::time::sleep(time) => true,
        () = hold(&w, &id) => true,
    };
    // Ended (or cut): the task no longer holds this workload. Idempotent (204 also
    // for one never taken); one that cannot be sent expires after its TTL.
    if let Some(registry) = &settings.registry {
        let _ = authorized(w.http.delete(registry.workload_url(&id)), registry)
            .send()
            .await;
    }
    if !outcome {
        w.stats.aborted.fetch_add(1, Ordering::Relaxed);
        return stopped();
    }
    w.stats.served.fetch_add(1, Ordering::Relaxed);
    let task = settings.registry.as_ref().map(|r| r.task.as_str());
    (
        StatusCode::OK,
        axum::Json(json!({ "task": task, "ms": time.as_millis() as u64 })),
    )
        .into_response()
}

fn stopped() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
}

fn authorized(request: reqwest::RequestBuilder, registry: &Registry) -> reqwest::RequestBuilder {
    match &registry.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Reports workload `id` and keeps it alive for as long as this future runs: it never
/// completes. Retried every 250 ms until capstan takes it, renewed every `ttl / 3`
/// after; given up on a `409` (draining) or another refusal.
async fn hold(w: &Shared, id: &str) {
    let Some(registry) = &w.settings.registry else {
        return std::future::pending().await;
    };
    let url = registry.workload_url(id);
    let ttl = w.settings.ttl;
    let body = json!({ "ttl": format!("{}s", ttl.as_secs().max(1)) });
    let mut taken = false;
    loop {
        let answer = authorized(w.http.post(&url).json(&body), registry)
            .send()
            .await;
        let wait = match answer.map(|r| r.status()) {
            Ok(s) if s.is_success() => {
                if !taken {
                    taken = true;
                    w.stats.reported.fetch_add(1, Ordering::Relaxed);
                }
                (ttl / 3).max(Duration::from_secs(1))
            }
            Ok(StatusCode::CONFLICT) => {
                w.stats.refused.fetch_add(1, Ordering::Relaxed);
                return std::future::pending().await;
            }
            // Not known yet (a task that just started), or capstan cannot store it now.
            Ok(StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE) | Err(_) => {
                Duration::from_millis(250)
            }
            // Refused otherwise (a wrong token, service or id): retrying will not help.
            Ok(_) => return std::future::pending().await,
        };
        tokio::time::sleep(wait).await;
    }
}

/// The task's ARN from the ECS task metadata endpoint (`$ECS_CONTAINER_METADATA_URI_V4/task`,
/// its `TaskARN`).
///
/// # Errors
/// If the endpoint cannot be read or has no `TaskARN`.
pub async fn ecs_task_arn(metadata_uri: &str) -> Result<String, Error> {
    let url = format!("{}/task", metadata_uri.trim_end_matches('/'));
    let body: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Error(format!("{url}: {e}")))?
        .json()
        .await
        .map_err(|e| Error(format!("{url}: {e}")))?;
    body.get("TaskARN")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error(format!("{url}: no TaskARN in the answer")))
}
