//! [`AwsProxy`]: an HTTP proxy in front of moto for the AWS behaviour moto lacks.
//!
//! Every request is forwarded to moto unchanged, except:
//! - **ECS task protection** (`UpdateTaskProtection`, `GetTaskProtection`), which moto
//!   does not implement: the proxy answers them itself from memory, in ECS's JSON
//!   shapes. This part is a hand-written fake (no real implementation exists outside
//!   AWS). A task moto does not know, or knows as STOPPED, is a `TASK_NOT_VALID`
//!   failure, as ECS answers (the proxy asks moto with `DescribeTasks`, so set moto's
//!   task transitions to manual, or the check advances the tasks).
//! - **Finished rollouts** ([`AwsProxy::complete_rollouts`]): moto reports a service's
//!   deployment as `IN_PROGRESS` forever (and keeps its first counts), where ECS reaches
//!   `COMPLETED` once the tasks match; with this on, `DescribeServices` answers show
//!   every deployment `COMPLETED` with the service's counts. Also a hand-written fake.
//! - **Injected faults**: [`AwsProxy::fail_next`] makes the next calls of an operation
//!   fail with a given status and error code (throttling, 5xx) in the protocol's own
//!   error shape, so retry paths are tested on the wire; [`AwsProxy::fail_randomly`]
//!   fails a share of all calls, drawn from a seeded generator, with one of the
//!   [`FaultKind`]s, one of which lets the call reach moto and loses its answer.
//! - **Held calls** ([`AwsProxy::hold`]): the n-th call of an operation is held
//!   unanswered (after reaching moto, or before), and the test is told
//!   ([`AwsProxy::held`]), so it can kill the caller at exactly that point.
//!
//! It counts the calls of each operation ([`AwsProxy::calls`]) and keeps the bodies of
//! those that reached moto ([`AwsProxy::forwarded`]). The operation is read from
//! `X-Amz-Target` (JSON protocols: ECS), the `Action` form field (query protocols:
//! ELBv2, EC2, Auto Scaling) or the path (rpc-v2-cbor).

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
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

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

/// How a randomly failed call fails ([`AwsProxy::fail_randomly`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// HTTP 400 `ThrottlingException` (`Throttling` in query protocols), not forwarded.
    Throttled,
    /// HTTP 500 `InternalFailure`, not forwarded.
    Internal,
    /// HTTP 503 `ServiceUnavailable`, not forwarded.
    Unavailable,
    /// The call reaches moto and takes effect, and its answer is lost: HTTP 504, what a
    /// caller sees when its call times out after the service applied it. (The caller's
    /// own timeout is 30 s in capstan; this is the same uncertainty without the wait.)
    AnswerLost,
}

impl FaultKind {
    /// Every kind, in the order a random fault picks from.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Throttled,
        FaultKind::Internal,
        FaultKind::Unavailable,
        FaultKind::AnswerLost,
    ];
}

#[derive(Debug)]
struct RandomFaults {
    rate: f64,
    rng: ChaCha8Rng,
}

/// A call to hold unanswered ([`AwsProxy::hold`]).
#[derive(Debug)]
struct Hold {
    operation: String,
    /// Calls of the operation still to let through before the held one.
    skip: usize,
    /// Whether the held call reaches moto first.
    forward: bool,
    /// Whether a call is held now.
    reached: bool,
}

#[derive(Debug, Default)]
struct Shared {
    /// Protected task ARN → when the protection lapses (seconds since the epoch).
    protection: HashMap<String, f64>,
    faults: Vec<Fault>,
    random: Option<RandomFaults>,
    /// Faults injected at random, by kind.
    injected: BTreeMap<&'static str, usize>,
    hold: Option<Hold>,
    complete_rollouts: bool,
    calls: BTreeMap<String, usize>,
    /// The bodies of the calls that reached moto, by operation.
    forwarded: BTreeMap<String, Vec<Bytes>>,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    shared: Mutex<Shared>,
    /// Wakes [`AwsProxy::held`] when a call is held.
    held: Notify,
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
            held: Notify::new(),
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

    /// The bodies of the calls of `operation` that reached moto (including those whose
    /// answer a fault then lost), oldest first.
    pub fn forwarded(&self, operation: &str) -> Vec<Bytes> {
        self.proxy
            .lock()
            .forwarded
            .get(operation)
            .cloned()
            .unwrap_or_default()
    }

    /// From now on, each call fails with probability `rate` (0 to 1), with a
    /// [`FaultKind`] drawn uniformly; the draws come from a generator seeded with
    /// `seed`, so a failing run can be replayed (as far as the calls arrive in the same
    /// order). `rate` 0 turns it off.
    pub fn fail_randomly(&self, rate: f64, seed: u64) {
        self.proxy.lock().random = (rate > 0.0).then(|| RandomFaults {
            rate: rate.min(1.0),
            rng: ChaCha8Rng::seed_from_u64(seed),
        });
    }

    /// How many faults [`fail_randomly`](Self::fail_randomly) injected, by kind.
    pub fn injected(&self, kind: FaultKind) -> usize {
        self.proxy
            .lock()
            .injected
            .get(kind_name(kind))
            .copied()
            .unwrap_or(0)
    }

    /// Holds the `nth` (1-based) call of `operation` from now on unanswered for good,
    /// after it reached moto (`forward`) or before. Calls of the same operation after
    /// it pass again. [`held`](Self::held) waits for it.
    pub fn hold(&self, operation: &str, nth: usize, forward: bool) {
        self.proxy.lock().hold = Some(Hold {
            operation: operation.to_owned(),
            skip: nth.saturating_sub(1),
            forward,
            reached: false,
        });
    }

    /// Waits until the call set by [`hold`](Self::hold) is held.
    pub async fn held(&self) {
        loop {
            let notified = self.proxy.held.notified();
            if self.proxy.lock().hold.as_ref().is_some_and(|h| h.reached) {
                return;
            }
            notified.await;
        }
    }

    /// Turns on finished rollouts (see the module docs).
    pub fn complete_rollouts(&self) {
        self.proxy.lock().complete_rollouts = true;
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

fn kind_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Throttled => "throttled",
        FaultKind::Internal => "internal",
        FaultKind::Unavailable => "unavailable",
        FaultKind::AnswerLost => "answer_lost",
    }
}

/// The status and error code of a fault of `kind` in the request's protocol.
fn fault_answer(kind: FaultKind, headers: &HeaderMap) -> (u16, &'static str) {
    let query = !is_json(headers);
    match kind {
        FaultKind::Throttled if query => (400, "Throttling"),
        FaultKind::Throttled => (400, "ThrottlingException"),
        FaultKind::Internal => (500, "InternalFailure"),
        FaultKind::Unavailable => (503, "ServiceUnavailable"),
        FaultKind::AnswerLost => (504, "GatewayTimeout"),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
}

/// An error answer in the request's protocol.
fn error(headers: &HeaderMap, status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if is_json(headers) {
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

/// What the proxy does with one call, decided under the lock.
enum Plan {
    /// Answer with this fault, without reaching moto.
    Fail(u16, String),
    /// Reach moto, then answer 504.
    LoseAnswer,
    /// Hold unanswered, after reaching moto or not.
    Hold { forward: bool },
    /// Serve normally.
    Serve,
}

fn plan(shared: &mut Shared, op: &str, headers: &HeaderMap) -> Plan {
    *shared.calls.entry(op.to_owned()).or_default() += 1;
    if let Some(hold) = shared
        .hold
        .as_mut()
        .filter(|h| h.operation == op && !h.reached)
    {
        if hold.skip == 0 {
            hold.reached = true;
            return Plan::Hold {
                forward: hold.forward,
            };
        }
        hold.skip -= 1;
    }
    if let Some(f) = shared
        .faults
        .iter_mut()
        .find(|f| f.operation == op && f.remaining > 0)
    {
        f.remaining -= 1;
        return Plan::Fail(f.status, f.code.clone());
    }
    if let Some(random) = shared.random.as_mut()
        && random.rng.random_bool(random.rate)
    {
        let kind = FaultKind::ALL[random.rng.random_range(0..FaultKind::ALL.len())];
        *shared.injected.entry(kind_name(kind)).or_default() += 1;
        if kind == FaultKind::AnswerLost {
            return Plan::LoseAnswer;
        }
        let (status, code) = fault_answer(kind, headers);
        return Plan::Fail(status, code.to_owned());
    }
    Plan::Serve
}

async fn handle(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = operation(&headers, &uri, &body);
    let plan = plan(&mut proxy.lock(), &op, &headers);
    match plan {
        Plan::Fail(status, code) => error(&headers, status, &code, "injected by the test proxy"),
        Plan::LoseAnswer => {
            let _ = serve(&proxy, &op, method, &uri, &headers, body).await;
            let (status, code) = fault_answer(FaultKind::AnswerLost, &headers);
            error(&headers, status, code, "answer lost by the test proxy")
        }
        Plan::Hold { forward } => {
            if forward {
                let _ = serve(&proxy, &op, method, &uri, &headers, body).await;
            }
            proxy.held.notify_waiters();
            // Never answered: the caller is killed meanwhile (the connection's end
            // drops this future).
            std::future::pending::<Response>().await
        }
        Plan::Serve => serve(&proxy, &op, method, &uri, &headers, body).await,
    }
}

/// Serves a call: the protection fake, or moto (with the rollout fix).
async fn serve(
    proxy: &Proxy,
    op: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    proxy
        .lock()
        .forwarded
        .entry(op.to_owned())
        .or_default()
        .push(body.clone());
    match op {
        "UpdateTaskProtection" | "GetTaskProtection" => protection(proxy, op, headers, &body).await,
        _ => match forward(proxy, method, uri, headers, body).await {
            Ok(response) if op == "DescribeServices" && proxy.lock().complete_rollouts => {
                completed(response).await
            }
            Ok(response) => response,
            Err(e) => error(headers, 502, "ProxyError", &e),
        },
    }
}

/// A `DescribeServices` answer with every deployment `COMPLETED` at the service's
/// counts.
async fn completed(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::BAD_GATEWAY, "unreadable answer").into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if let Some(services) = value["services"].as_array_mut() {
        for service in services {
            let desired = service["desiredCount"].clone();
            let running = service["runningCount"].clone();
            if let Some(deployments) = service["deployments"].as_array_mut() {
                for d in deployments {
                    d["rolloutState"] = json!("COMPLETED");
                    d["desiredCount"] = desired.clone();
                    d["runningCount"] = running.clone();
                    d["pendingCount"] = json!(0);
                }
            }
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(value.to_string()))
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
