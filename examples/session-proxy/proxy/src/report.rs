//! The proxy's client of capstan's work registry (`/api/v1/services/{service}/tasks/{task}/sessions`):
//! a session's start and end, and the periodic report of the task's full set of
//! sessions, which renews them all and repairs any report that was lost.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::json;

/// A report capstan did not take.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// capstan answered with an error status (its body says why).
    #[error("capstan answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The answer's body (capstan's `{"error", "field"}`).
        body: String,
    },
    /// capstan could not be reached, or did not answer in time.
    #[error("capstan cannot be reached: {0}")]
    Transport(String),
    /// The capstan URL given cannot hold the registry's routes.
    #[error("`{0}` is not an http(s) base URL")]
    BadUrl(String),
}

impl ReportError {
    /// The task is draining for scale-in: it takes no new session (`409`).
    pub fn is_draining(&self) -> bool {
        matches!(self, Self::Status { status, .. } if *status == StatusCode::CONFLICT)
    }

    /// Worth trying again soon: capstan is unreachable, overloaded or does not know
    /// the task yet (`404` for a task that just started, until capstan's next
    /// observation of the service).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => {
                *status == StatusCode::NOT_FOUND
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            Self::BadUrl(_) => false,
        }
    }
}

/// Where and as whom the proxy reports its sessions.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    /// capstan's base URL, e.g. `http://capstan:9120/`.
    base: Url,
    /// The capstan service the task belongs to (`[[services]] name`).
    service: String,
    /// The task's id: its ECS task ARN (or only the task id).
    task: String,
    /// capstan's bearer token, when it has one.
    token: Option<String>,
    /// How long each report holds unless renewed (capstan's `ttl`).
    ttl: Duration,
}

impl Registry {
    /// A client reporting for `task` of `service` to capstan at `base` (`http://host:port`).
    ///
    /// # Errors
    /// If `base` is not an `http` or `https` URL.
    pub fn new(
        base: &str,
        service: &str,
        task: &str,
        token: Option<String>,
        ttl: Duration,
    ) -> Result<Self, ReportError> {
        let base = Url::parse(base).map_err(|_| ReportError::BadUrl(base.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ReportError::BadUrl(base.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ReportError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base,
            service: service.to_owned(),
            task: task.to_owned(),
            token,
            ttl,
        })
    }

    /// The task this client reports for.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// `.../tasks/{task}/{tail...}`, each part percent-encoded (a task ARN holds `/`).
    fn url(&self, tail: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend([
                "api",
                "v1",
                "services",
                &self.service,
                "tasks",
                &self.task,
            ]);
            path.extend(tail);
        }
        url
    }

    /// capstan's `ttl` for every report: whole seconds, at least one.
    fn ttl(&self) -> String {
        format!("{}s", self.ttl.as_secs().max(1))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(), ReportError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let answer = request
            .send()
            .await
            .map_err(|e| ReportError::Transport(e.to_string()))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let body = answer.text().await.unwrap_or_default();
        Err(ReportError::Status { status, body })
    }

    /// A session starts: `PUT .../sessions/{id}`.
    ///
    /// # Errors
    /// capstan's refusal ([`ReportError::is_draining`] when the task is draining) or
    /// an unreachable capstan.
    pub async fn start(&self, id: &str) -> Result<(), ReportError> {
        let url = self.url(&["sessions", id]);
        self.send(self.http.put(url).json(&json!({ "ttl": self.ttl() })))
            .await
    }

    /// A session ends: `DELETE .../sessions/{id}` (idempotent).
    ///
    /// # Errors
    /// capstan's refusal or an unreachable capstan.
    pub async fn end(&self, id: &str) -> Result<(), ReportError> {
        self.send(self.http.delete(self.url(&["sessions", id])))
            .await
    }

    /// The task's sessions are exactly `ids`: `PUT .../sessions`, which also renews
    /// them. A draining task refuses a set that adds a session it does not hold (a
    /// start that was never acknowledged); it then renews what capstan holds with a
    /// heartbeat instead.
    ///
    /// # Errors
    /// capstan's refusal or an unreachable capstan.
    pub async fn sync(&self, ids: &[String]) -> Result<(), ReportError> {
        let body = json!({ "sessions": ids, "ttl": self.ttl() });
        match self
            .send(self.http.put(self.url(&["sessions"])).json(&body))
            .await
        {
            Err(e) if e.is_draining() => {
                let body = json!({ "ttl": self.ttl() });
                self.send(self.http.post(self.url(&["heartbeat"])).json(&body))
                    .await
            }
            other => other,
        }
    }
}

/// The task's ARN from the ECS task metadata endpoint v4 (`$ECS_CONTAINER_METADATA_URI_V4/task`).
///
/// # Errors
/// If the endpoint cannot be read or its answer has no `TaskARN`.
pub async fn ecs_task_arn(metadata_uri: &str) -> Result<String, ReportError> {
    let url = format!("{}/task", metadata_uri.trim_end_matches('/'));
    let answer = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| ReportError::Transport(format!("{url}: {e}")))?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        return Err(ReportError::Status { status, body });
    }
    let task: serde_json::Value = answer
        .json()
        .await
        .map_err(|e| ReportError::Transport(format!("{url}: {e}")))?;
    task.get("TaskARN")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ReportError::Transport(format!("{url}: no TaskARN in the answer")))
}
