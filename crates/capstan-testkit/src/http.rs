//! [`MetricServer`]: a real HTTP server on a loopback port that serves a metric as JSON,
//! for tests of anything that reads metrics over HTTP.
//!
//! The test sets the body, the status and an optional delay at any time, and reads back
//! what the last request sent (headers, path and query) and how many requests came.
//! The server stops accepting when the value is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

/// What the server answers and what it saw.
#[derive(Debug)]
struct Shared {
    /// Response body.
    body: String,
    /// Response status.
    status: StatusCode,
    /// Wait this long before answering (to test client timeouts).
    delay: Duration,
    /// Requests served so far at the metric path.
    requests: u64,
    /// Headers of the last request, lower-case names.
    last_headers: BTreeMap<String, String>,
    /// Path and query of the last request.
    last_uri: Option<String>,
}

/// An HTTP server on `127.0.0.1:<free port>` answering GET at one path with a JSON body
/// the test controls (any other path is 404). Stops accepting connections on drop.
#[derive(Debug)]
pub struct MetricServer {
    /// Where it listens.
    addr: SocketAddr,
    /// The path it serves, starting with "/".
    path: String,
    /// Shared with the handler.
    shared: Arc<Mutex<Shared>>,
    /// Dropping (or sending on) it shuts the server down.
    _shutdown: oneshot::Sender<()>,
}

impl MetricServer {
    /// Starts serving `path` (e.g. `"/metrics"`) with status 200 and body `0`. Must be
    /// called within a Tokio runtime.
    pub async fn start(path: &str) -> std::io::Result<Self> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let shared = Arc::new(Mutex::new(Shared {
            body: "0".to_owned(),
            status: StatusCode::OK,
            delay: Duration::ZERO,
            requests: 0,
            last_headers: BTreeMap::new(),
            last_uri: None,
        }));
        let app = Router::new()
            .route(&path, get(serve))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let signal = async {
                // Either a send or the sender's drop means stop.
                let _ = stopped.await;
            };
            // Serving ends only on shutdown; an accept error would end the test's server
            // early, which the test then sees as refused connections.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await;
        });
        Ok(Self {
            addr,
            path,
            shared,
            _shutdown: shutdown,
        })
    }

    /// The full URL of the metric, e.g. `http://127.0.0.1:41234/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `value` as the JSON body from now on.
    pub fn set_json(&self, value: &serde_json::Value) {
        self.lock().body = value.to_string();
    }

    /// Serves `body` verbatim (it need not be valid JSON) from now on.
    pub fn set_body(&self, body: impl Into<String>) {
        self.lock().body = body.into();
    }

    /// Answers with `status` from now on.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code (a mistake in the test).
    pub fn set_status(&self, status: u16) {
        #[allow(clippy::expect_used)] // the test's own constant, not outside input
        let status = StatusCode::from_u16(status).expect("a valid HTTP status code");
        self.lock().status = status;
    }

    /// Waits `delay` before answering each request from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// How many requests the metric path has received.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// The headers of the last request (lower-case names; values that are not text are
    /// shown lossily).
    pub fn last_headers(&self) -> BTreeMap<String, String> {
        self.lock().last_headers.clone()
    }

    /// The path and query of the last request, if any came.
    pub fn last_uri(&self) -> Option<String> {
        self.lock().last_uri.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one handler: records the request, waits the delay, answers.
async fn serve(State(shared): State<Arc<Mutex<Shared>>>, request: Request) -> Response {
    let (body, status, delay) = {
        let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.requests += 1;
        s.last_headers = request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        s.last_uri = request.uri().path_and_query().map(ToString::to_string);
        (s.body.clone(), s.status, s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
