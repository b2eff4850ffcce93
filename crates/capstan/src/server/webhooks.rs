//! Alert webhooks: `POST /webhooks/alertmanager` (Alertmanager webhook payload version
//! 4) and `POST /webhooks/grafana` (Grafana unified alerting's webhook contact point).
//!
//! Owns: parsing both payloads (strict on what capstan uses, tolerant of extra fields;
//! a malformed body is answered 400 naming the JSON field, e.g. `alerts[0].status`, and
//! changes nothing; a body over [`MAX_WEBHOOK_BODY`] is answered 413), the webhook auth
//! (the listener's token and an optional per-webhook token, both compared in constant
//! time and never logged), mapping each alert to services ([`AlertRoutes`]: a label,
//! `service` by default, else the selectors of the services' `alert` policies), storing
//! the state per (service, fingerprint) in the shared observations with the time from a
//! [`Clock`], and calling the [`OnChange`] hook for every service whose alert state
//! changed (so its loop evaluates at once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use capstan_core::alerts::{AlertOrigin, AlertSelector, AlertState, AlertStatus};
use capstan_core::clock::Clock;
use capstan_core::metrics::SharedObservations;
use capstan_core::planner::Engine;
use capstan_core::policy::Policy;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::ServerState;
use crate::config::{Config, Secret, TokenSource, WebhookSpec};

/// The largest webhook body accepted (bytes); a larger one is answered 413.
pub const MAX_WEBHOOK_BODY: usize = 256 * 1024;

/// The label naming an alert's service unless configured otherwise.
pub const DEFAULT_SERVICE_LABEL: &str = "service";

/// The most of Grafana's `valueString` kept per alert (bytes).
const MAX_VALUE_STRING: usize = 1024;

/// Called with a service's name after a webhook changed its alert state.
pub type OnChange = Arc<dyn Fn(&str) + Send + Sync>;

/// Settings of one webhook route (`[webhooks.alertmanager]`, `[webhooks.grafana]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// A token for this route only: accepted as `Authorization: Bearer TOKEN` besides
    /// the listener's token.
    pub token: Option<Secret>,
    /// The label naming the service an alert is for.
    pub service_label: String,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            token: None,
            service_label: DEFAULT_SERVICE_LABEL.to_owned(),
        }
    }
}

/// A webhook's `token_file` could not be read or is empty.
#[derive(Debug, thiserror::Error)]
#[error("webhooks.{route}.token_file {path}: {reason}")]
pub struct WebhookTokenError {
    /// `alertmanager` or `grafana`.
    pub route: &'static str,
    /// The file, as configured.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl WebhookSettings {
    /// The settings of `spec` (the `[webhooks.ROUTE]` table): a `token_file` is read now,
    /// a final newline dropped.
    pub fn resolve(route: &'static str, spec: &WebhookSpec) -> Result<Self, WebhookTokenError> {
        let token = match &spec.token {
            None => None,
            Some(TokenSource::Inline(token)) => Some(token.clone()),
            Some(TokenSource::File(path)) => {
                let fail = |reason: String| WebhookTokenError {
                    route,
                    path: path.display().to_string(),
                    reason,
                };
                let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
                let token = text.strip_suffix('\n').unwrap_or(&text);
                let token = token.strip_suffix('\r').unwrap_or(token);
                if token.trim().is_empty() {
                    return Err(fail("the file is empty".into()));
                }
                Some(Secret::new(token))
            }
        };
        Ok(Self {
            token,
            service_label: spec.service_label.clone(),
        })
    }
}

/// Which services exist and which alerts their `alert` policies select.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRoutes {
    services: BTreeSet<String>,
    selectors: Vec<(String, AlertSelector)>,
}

impl AlertRoutes {
    /// Routes to `services`, plus alerts matched by `selectors` (service, selector).
    pub fn new(
        services: impl IntoIterator<Item = String>,
        selectors: Vec<(String, AlertSelector)>,
    ) -> Self {
        Self {
            services: services.into_iter().collect(),
            selectors,
        }
    }

    /// The routes of these engines: every service, and the selectors of their `alert`
    /// policies.
    pub fn from_engines<'a>(engines: impl IntoIterator<Item = &'a Engine>) -> Self {
        let mut routes = Self::default();
        for engine in engines {
            routes.services.insert(engine.service.clone());
            for p in &engine.policies {
                if let Policy::Alert(a) = &p.policy {
                    routes
                        .selectors
                        .push((engine.service.clone(), a.selector.clone()));
                }
            }
        }
        routes
    }

    /// The services `labels` are for, and the unknown service the label named, if any.
    /// An alert with `service_label` is for the service it names only (none if that
    /// service is unknown); an alert without it is for every service with an `alert`
    /// policy selecting it.
    fn resolve(
        &self,
        labels: &BTreeMap<String, String>,
        service_label: &str,
    ) -> (Vec<String>, Option<String>) {
        if let Some(name) = labels.get(service_label) {
            return if self.services.contains(name) {
                (vec![name.clone()], None)
            } else {
                (Vec::new(), Some(name.clone()))
            };
        }
        let mut out: Vec<String> = Vec::new();
        for (service, selector) in &self.selectors {
            if selector.matches(labels) && !out.contains(service) {
                out.push(service.clone());
            }
        }
        (out, None)
    }
}

/// The webhook part of the listener's state (see the [module docs](self)).
pub struct Webhooks {
    setup: RwLock<Setup>,
    obs: SharedObservations,
    clock: Arc<dyn Clock>,
    on_change: Option<OnChange>,
}

/// What a reload may change: both routes' settings and the routing.
#[derive(Debug, Clone)]
struct Setup {
    alertmanager: WebhookSettings,
    grafana: WebhookSettings,
    routes: AlertRoutes,
}

impl Setup {
    fn settings(&self, origin: AlertOrigin) -> &WebhookSettings {
        match origin {
            AlertOrigin::Alertmanager => &self.alertmanager,
            AlertOrigin::Grafana => &self.grafana,
        }
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("setup", &*self.setup())
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Webhooks storing alert state in `obs` (the observations the loops evaluate), at
    /// times read from `clock`, routed by `routes`; default settings for both routes.
    pub fn new(obs: SharedObservations, clock: Arc<dyn Clock>, routes: AlertRoutes) -> Self {
        Self {
            setup: RwLock::new(Setup {
                alertmanager: WebhookSettings::default(),
                grafana: WebhookSettings::default(),
                routes,
            }),
            obs,
            clock,
            on_change: None,
        }
    }

    /// The webhooks of `config` (its `[webhooks]` settings, its services and their
    /// `alert` policies), storing state in `obs` at times from `clock`.
    pub fn from_config(
        config: &Config,
        obs: SharedObservations,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WebhookTokenError> {
        let routes = AlertRoutes::from_engines(config.services.iter().map(|s| &s.engine));
        Ok(Self::new(obs, clock, routes)
            .alertmanager(WebhookSettings::resolve(
                "alertmanager",
                &config.webhooks.alertmanager,
            )?)
            .grafana(WebhookSettings::resolve(
                "grafana",
                &config.webhooks.grafana,
            )?))
    }

    /// Settings of `POST /webhooks/alertmanager`.
    #[must_use]
    pub fn alertmanager(mut self, settings: WebhookSettings) -> Self {
        self.setup
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .alertmanager = settings;
        self
    }

    /// Settings of `POST /webhooks/grafana`.
    #[must_use]
    pub fn grafana(mut self, settings: WebhookSettings) -> Self {
        self.setup
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .grafana = settings;
        self
    }

    /// Calls `hook` with each service whose alert state a request changed, after the
    /// state is stored (to wake the service's loop).
    #[must_use]
    pub fn on_change(mut self, hook: OnChange) -> Self {
        self.on_change = Some(hook);
        self
    }

    /// Replaces the routes.
    pub fn set_routes(&self, routes: AlertRoutes) {
        self.setup
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .routes = routes;
    }

    /// Takes the settings and routes of a reloaded `config` (token files read again).
    /// On an error nothing changes. Alert state already stored is kept.
    pub fn reload(&self, config: &Config) -> Result<(), WebhookTokenError> {
        let setup = Setup {
            alertmanager: WebhookSettings::resolve("alertmanager", &config.webhooks.alertmanager)?,
            grafana: WebhookSettings::resolve("grafana", &config.webhooks.grafana)?,
            routes: AlertRoutes::from_engines(config.services.iter().map(|s| &s.engine)),
        };
        *self.setup.write().unwrap_or_else(PoisonError::into_inner) = setup;
        Ok(())
    }

    fn setup(&self) -> std::sync::RwLockReadGuard<'_, Setup> {
        self.setup.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `alerts` and returns the summary answered to the caller.
    fn apply(&self, origin: AlertOrigin, alerts: Vec<Incoming>) -> serde_json::Value {
        let now = self.clock.now();
        let received = alerts.len();
        let mut applied: BTreeMap<String, u64> = BTreeMap::new();
        let mut unknown: BTreeMap<String, u64> = BTreeMap::new();
        let mut unmatched = 0u64;
        let mut changed: BTreeSet<String> = BTreeSet::new();
        {
            let setup = self.setup();
            let label = &setup.settings(origin).service_label;
            let mut obs = self.obs.lock().unwrap_or_else(PoisonError::into_inner);
            for alert in alerts {
                let (services, unknown_name) = setup.routes.resolve(&alert.state.labels, label);
                if services.is_empty() {
                    match unknown_name {
                        Some(name) => *unknown.entry(name).or_default() += 1,
                        None => unmatched += 1,
                    }
                    continue;
                }
                let mut state = alert.state;
                state.received_at = now;
                for service in services {
                    if obs
                        .alerts_mut()
                        .record(&service, &alert.fingerprint, state.clone())
                    {
                        tracing::info!(
                            service = %service,
                            alert = %state.alertname(),
                            fingerprint = %alert.fingerprint,
                            status = ?state.status,
                            "alert state changed"
                        );
                        changed.insert(service.clone());
                    }
                    *applied.entry(service).or_default() += 1;
                }
            }
        }
        if let Some(hook) = &self.on_change {
            for service in &changed {
                hook(service);
            }
        }
        json!({
            "received": received,
            "applied": applied,
            "changed": changed,
            "unknown_services": unknown,
            "unmatched": unmatched,
        })
    }
}

/// One parsed alert, before routing.
struct Incoming {
    fingerprint: String,
    state: AlertState,
}

/// `firing` / `resolved`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Firing,
    Resolved,
}

impl From<Status> for AlertStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Firing => AlertStatus::Firing,
            Status::Resolved => AlertStatus::Resolved,
        }
    }
}

/// Alertmanager's webhook payload, version 4.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Fields read only to check their type.
struct AmPayload {
    version: Option<String>,
    group_key: Option<String>,
    truncated_alerts: Option<u64>,
    status: Status,
    receiver: Option<String>,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    external_url: Option<String>,
    alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct AmAlert {
    status: Status,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: Option<String>,
}

/// Grafana unified alerting's webhook payload (version 1).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct GrafanaPayload {
    receiver: Option<String>,
    status: Status,
    org_id: Option<i64>,
    alerts: Vec<GrafanaAlert>,
    group_key: Option<String>,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    external_url: Option<String>,
    version: Option<String>,
    title: Option<String>,
    state: Option<String>,
    message: Option<String>,
    truncated_alerts: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct GrafanaAlert {
    status: Status,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    values: Option<BTreeMap<String, Option<f64>>>,
    value_string: Option<String>,
    fingerprint: Option<String>,
    #[serde(rename = "silenceURL")]
    silence_url: Option<String>,
    #[serde(rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(rename = "panelURL")]
    panel_url: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
}

/// A rejected body: the message and the JSON field at fault.
#[derive(Debug, PartialEq, Eq)]
pub struct BadPayload {
    /// What is wrong.
    pub message: String,
    /// The field, as a path (`alerts[0].status`), or `body` for the whole body.
    pub field: String,
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadPayload> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let parent = if path.is_empty() || path == "." {
            None
        } else {
            Some(path)
        };
        // A missing field is reported at its parent: name the field itself.
        let missing = inner
            .to_string()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next().map(str::to_owned));
        let syntax = inner.is_syntax() || inner.is_eof();
        let field = match (parent, missing) {
            _ if syntax => "body".to_owned(),
            (Some(parent), Some(name)) => format!("{parent}.{name}"),
            (None, Some(name)) => name,
            (Some(parent), None) => parent,
            (None, None) => "body".to_owned(),
        };
        let message = if syntax {
            format!("the body is not valid JSON: {inner}")
        } else {
            inner.to_string()
        };
        BadPayload { message, field }
    })
}

fn check_version(version: Option<&str>, want: &str) -> Result<(), BadPayload> {
    match version {
        Some(v) if v != want => Err(BadPayload {
            message: format!("unsupported payload version {v:?} (expected {want:?})"),
            field: "version".to_owned(),
        }),
        _ => Ok(()),
    }
}

fn value_text(
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    annotations
        .get("value")
        .or_else(|| labels.get("value"))
        .cloned()
}

/// A fingerprint for an alert that came without one: FNV-1a over its sorted labels.
fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

fn fingerprint_of(given: Option<String>, labels: &BTreeMap<String, String>) -> String {
    given
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| label_fingerprint(labels))
}

/// Parses an Alertmanager body into alerts (nothing is stored on error).
fn parse_alertmanager(body: &[u8]) -> Result<Vec<Incoming>, BadPayload> {
    let p: AmPayload = parse(body)?;
    check_version(p.version.as_deref(), "4")?;
    Ok(p.alerts
        .into_iter()
        .map(|a| Incoming {
            fingerprint: fingerprint_of(a.fingerprint, &a.labels),
            state: AlertState {
                origin: AlertOrigin::Alertmanager,
                status: a.status.into(),
                value_text: value_text(&a.annotations, &a.labels),
                labels: a.labels,
                values: BTreeMap::new(),
                value_string: None,
                group_key: p.group_key.clone(),
                received_at: capstan_core::Timestamp::UNIX_EPOCH,
            },
        })
        .collect())
}

/// Parses a Grafana body into alerts (nothing is stored on error).
fn parse_grafana(body: &[u8]) -> Result<Vec<Incoming>, BadPayload> {
    let p: GrafanaPayload = parse(body)?;
    check_version(p.version.as_deref(), "1")?;
    Ok(p.alerts
        .into_iter()
        .map(|a| {
            let values = a
                .values
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.filter(|v| v.is_finite()).map(|v| (k, v)))
                .collect();
            let value_string = a.value_string.filter(|s| !s.is_empty()).map(|mut s| {
                if s.len() > MAX_VALUE_STRING {
                    let mut end = MAX_VALUE_STRING;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                }
                s
            });
            Incoming {
                fingerprint: fingerprint_of(a.fingerprint, &a.labels),
                state: AlertState {
                    origin: AlertOrigin::Grafana,
                    status: a.status.into(),
                    value_text: value_text(&a.annotations, &a.labels),
                    labels: a.labels,
                    values,
                    value_string,
                    group_key: p.group_key.clone(),
                    received_at: capstan_core::Timestamp::UNIX_EPOCH,
                },
            }
        })
        .collect())
}

fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    super::error(status, message, field)
}

/// True when the request may use the webhook: no token configured at all, or the
/// bearer token is the listener's or this webhook's.
fn authorized(headers: &HeaderMap, listener: Option<&Secret>, own: Option<&Secret>) -> bool {
    if listener.is_none() && own.is_none() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    // Both compared (constant time each), so the answer's timing does not tell which.
    let a = listener.is_some_and(|t| bool::from(given.as_bytes().ct_eq(t.expose().as_bytes())));
    let b = own.is_some_and(|t| bool::from(given.as_bytes().ct_eq(t.expose().as_bytes())));
    a | b
}

async fn handle(
    state: ServerState,
    origin: AlertOrigin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(hooks) = state.alerts.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "alert webhooks are not enabled on this listener".into(),
            None,
        );
    };
    let own = hooks.setup().settings(origin).token.clone();
    if !authorized(&headers, state.token.as_ref(), own.as_ref()) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer TOKEN)".into(),
            None,
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {MAX_WEBHOOK_BODY} bytes")
            } else {
                rejection.body_text()
            };
            return error(status, message, None);
        }
    };
    let parsed = match origin {
        AlertOrigin::Alertmanager => parse_alertmanager(&body),
        AlertOrigin::Grafana => parse_grafana(&body),
    };
    match parsed {
        Ok(alerts) => {
            let summary = hooks.apply(origin, alerts);
            tracing::debug!(origin = ?origin, summary = %summary, "webhook applied");
            (StatusCode::OK, axum::Json(summary)).into_response()
        }
        Err(bad) => {
            tracing::debug!(origin = ?origin, field = %bad.field, "webhook body rejected: {}", bad.message);
            error(StatusCode::BAD_REQUEST, bad.message, Some(&bad.field))
        }
    }
}

/// The webhook routes. They check the listener's token or their own themselves (not
/// through the listener's auth layer), and take bodies up to [`MAX_WEBHOOK_BODY`].
pub(super) fn router() -> axum::Router<ServerState> {
    axum::Router::new()
        .route("/webhooks/alertmanager", axum::routing::post(alertmanager))
        .route("/webhooks/grafana", axum::routing::post(grafana))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
}

/// `POST /webhooks/alertmanager`.
async fn alertmanager(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(state, AlertOrigin::Alertmanager, headers, body).await
}

/// `POST /webhooks/grafana`.
async fn grafana(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(state, AlertOrigin::Grafana, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_name_the_field() {
        let bad = |body: &str| match parse_alertmanager(body.as_bytes()) {
            Err(b) => b.field,
            Ok(_) => "accepted".to_owned(),
        };
        assert_eq!(
            bad(r#"{"version":"4","status":"firing","alerts":[{"status":"burning","labels":{}}]}"#),
            "alerts[0].status"
        );
        assert_eq!(
            bad(
                r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"a":1}}]}"#
            ),
            "alerts[0].labels.a"
        );
        assert_eq!(bad(r#"{"version":"4","status":"firing"}"#), "alerts");
        assert_eq!(
            bad(r#"{"version":"4","status":"firing","alerts":[{"labels":{}}]}"#),
            "alerts[0].status"
        );
        assert_eq!(
            bad(r#"{"version":"3","status":"firing","alerts":[]}"#),
            "version"
        );
        assert_eq!(bad("not json"), "body");
        assert_eq!(
            bad(r#"{"version":"4","status":"firing","alerts":[],"extra":{"x":[1]}}"#),
            "accepted"
        );
    }

    #[test]
    fn missing_fingerprints_are_derived_from_labels() {
        let a = BTreeMap::from([("alertname".to_owned(), "X".to_owned())]);
        let b = BTreeMap::from([("alertname".to_owned(), "Y".to_owned())]);
        assert_eq!(fingerprint_of(None, &a), fingerprint_of(None, &a));
        assert_ne!(fingerprint_of(None, &a), fingerprint_of(None, &b));
        assert_eq!(fingerprint_of(Some("abc".into()), &a), "abc");
    }
}
