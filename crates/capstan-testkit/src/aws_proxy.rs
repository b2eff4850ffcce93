//! [`AwsProxy`]: an HTTP proxy in front of moto for the AWS behaviour moto lacks.
//!
//! Every request is forwarded to moto unchanged, except:
//! - **ECS task protection** (`UpdateTaskProtection`, `GetTaskProtection`), which moto
//!   does not implement: the proxy answers them itself from memory, in ECS's JSON
//!   shapes. This part is a hand-written fake (no real implementation exists outside
//!   AWS). A task moto does not know, or knows as STOPPED, is a `TASK_NOT_VALID`
//!   failure, as ECS answers (the proxy asks moto with `DescribeTasks`, so set moto's
//!   task transitions to manual, or the check advances the tasks).
//! - **Injected faults**: [`AwsProxy::fail_next`] makes the next calls of an operation
//!   fail with a given status and error code (throttling, 5xx) in the protocol's own
//!   error shape, so retry paths are tested on the wire.
//!
//! It counts the calls of each operation ([`AwsProxy::calls`]). The operation is read
//! from `X-Amz-Target` (JSON protocols: ECS), the `Action` form field (query
//! protocols: ELBv2, EC2, Auto Scaling) or the path (rpc-v2-cbor).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use capstan_core::clock::{Clock, SystemClock};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The `X-Amz-Target` prefix of ECS operations.
const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113.";

/// ECS's default protection period when `expiresInMinutes` is left out.
const DEFAULT_PROTECTION: Duration = Duration::from_secs(120 * 60);

#[derive(Debug)]
struct Fault {
    operation: String,
    remaining: usize,
    status: u16,
    code: String,
}

#[derive(Debug, Default)]
struct Shared {
    /// Protected task ARN → when the protection lapses (seconds since the epoch).
    protection: HashMap<String, f64>,
    faults: Vec<Fault>,
    calls: BTreeMap<String, usize>,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    shared: Mutex<Shared>,
}

impl Proxy {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A proxy on `127.0.0.1:<free port>` in front of a moto server. Stops on drop.
pub struct AwsProxy {
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    _shutdown: oneshot::Sender<()>,
}

impl std::fmt::Debug for AwsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.proxy.upstream)
            .finish_non_exhaustive()
    }
}

impl AwsProxy {
    /// Starts a proxy forwarding to `upstream` (moto's endpoint URL). Must be called
    /// within a Tokio runtime.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            shared: Mutex::new(Shared::default()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&proxy));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            proxy,
            _shutdown: tx,
        })
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL to give AWS clients.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` calls of `operation` (e.g. `"UpdateService"`) fail with HTTP
    /// `status` and error `code` (e.g. `"ThrottlingException"`), without reaching moto.
    pub fn fail_next(&self, operation: &str, times: usize, status: u16, code: &str) {
        self.proxy.lock().faults.push(Fault {
            operation: operation.to_owned(),
            remaining: times,
            status,
            code: code.to_owned(),
        });
    }

    /// How many calls of `operation` reached the proxy (failed ones included).
    pub fn calls(&self, operation: &str) -> usize {
        self.proxy.lock().calls.get(operation).copied().unwrap_or(0)
    }

    /// When the protection of `task_arn` lapses (seconds since the epoch), if it is
    /// protected now.
    pub fn protected_until(&self, task_arn: &str) -> Option<f64> {
        let until = self.proxy.lock().protection.get(task_arn).copied()?;
        (until > now_secs()).then_some(until)
    }
}

/// Now, in seconds since the epoch: ECS's protection expiry is wall-clock time.
fn now_secs() -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let millis = SystemClock.now().as_millisecond() as f64;
    millis / 1000.0
}

/// The operation a request calls.
fn operation(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if let Some(op) = uri.path().split("/operation/").nth(1) {
        return op.to_owned();
    }
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("")
        .to_owned()
}

/// An error answer in the request's protocol.
fn error(headers: &HeaderMap, status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if json {
        let body = json!({ "__type": code, "message": message }).to_string();
        (
            status,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            body,
        )
            .into_response()
    } else {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
        );
        (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
    }
}

async fn handle(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = operation(&headers, &uri, &body);
    let fault = {
        let mut shared = proxy.lock();
        *shared.calls.entry(op.clone()).or_default() += 1;
        let fault = shared
            .faults
            .iter_mut()
            .find(|f| f.operation == op && f.remaining > 0);
        fault.map(|f| {
            f.remaining -= 1;
            (f.status, f.code.clone())
        })
    };
    if let Some((status, code)) = fault {
        return error(&headers, status, &code, "injected by the test proxy");
    }
    match op.as_str() {
        "UpdateTaskProtection" | "GetTaskProtection" => {
            protection(&proxy, &op, &headers, &body).await
        }
        _ => match forward(&proxy, method, &uri, &headers, body).await {
            Ok(response) => response,
            Err(e) => error(&headers, 502, "ProxyError", &e),
        },
    }
}

async fn forward(
    proxy: &Proxy,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", proxy.upstream);
    let mut request = proxy.client.request(method, url).body(body);
    for (name, value) in headers {
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::CONNECTION {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != header::CONTENT_LENGTH
            && name != header::CONNECTION
            && name != header::TRANSFER_ENCODING
        {
            out.insert(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, out, bytes).into_response())
}

/// The tasks among `tasks` that moto knows and has not stopped.
async fn live_tasks(
    proxy: &Proxy,
    headers: &HeaderMap,
    cluster: &str,
    tasks: &[String],
) -> Result<Vec<String>, String> {
    let body = json!({ "cluster": cluster, "tasks": tasks }).to_string();
    let mut request = proxy
        .client
        .post(format!("{}/", proxy.upstream))
        .header("x-amz-target", format!("{ECS_TARGET}DescribeTasks"))
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .body(body);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    let value: Value = answer.json().await.map_err(|e| e.to_string())?;
    Ok(value["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["lastStatus"].as_str() != Some("STOPPED"))
                .filter_map(|t| t["taskArn"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

async fn protection(proxy: &Proxy, op: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(
            headers,
            400,
            "InvalidParameterException",
            "body is not JSON",
        );
    };
    let cluster = request["cluster"].as_str().unwrap_or("default");
    let tasks: Vec<String> = request["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let live = match live_tasks(proxy, headers, cluster, &tasks).await {
        Ok(live) => live,
        Err(e) => return error(headers, 502, "ProxyError", &e),
    };
    let now = now_secs();
    let mut shared = proxy.lock();
    if op == "UpdateTaskProtection" {
        let enabled = request["protectionEnabled"].as_bool().unwrap_or(false);
        let minutes = request["expiresInMinutes"].as_f64();
        for task in &live {
            if enabled {
                let period = minutes.map_or(DEFAULT_PROTECTION.as_secs_f64(), |m| m * 60.0);
                shared.protection.insert(task.clone(), now + period);
            } else {
                shared.protection.remove(task);
            }
        }
    }
    let protected: Vec<Value> = live
        .iter()
        .map(|task| match shared.protection.get(task) {
            Some(until) if *until > now => json!({
                "taskArn": task, "protectionEnabled": true, "expirationDate": until
            }),
            _ => json!({ "taskArn": task, "protectionEnabled": false }),
        })
        .collect();
    let failures: Vec<Value> = tasks
        .iter()
        .filter(|t| !live.contains(t))
        .map(|t| json!({ "arn": t, "reason": "TASK_NOT_VALID", "detail": "The task is not running" }))
        .collect();
    let body = json!({ "protectedTasks": protected, "failures": failures }).to_string();
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}
