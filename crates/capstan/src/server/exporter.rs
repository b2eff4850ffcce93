//! The `/metrics` exporter: capstan's sources and decisions in Prometheus format
//! (prometheus-client's OpenMetrics text).
//!
//! It is fed where things are already reported, never by repeating their logic:
//! - the poller's [`ReadObserver`] hook gives every read's value or error class and its
//!   duration;
//! - [`ExportingLog`] wraps the decision log the service loops record into, so every
//!   recorded decision updates the service's gauges and decision counter.
//!
//! Every configured source is exported from the start (value and age `NaN` until its
//! first good read, every error class at 0 so `rate()` works from the first scrape).
//! Ages are computed when scraped, on the exporter's [`Clock`].

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_control::WorkRegistry;

use crate::daemon::services::ProtectionBoard;
use capstan_core::clock::{Clock, elapsed};
use capstan_core::decision::{Action, Decision, Rule, StepKind};
use capstan_sources::{ErrorClass, ReadError, ReadObserver, SourceSpec};
use capstan_store::{DecisionLog, StoreError};
use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label of per-source metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    /// The source's name.
    source: String,
}

/// The labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// The source's name.
    source: String,
    /// The error class ([`ErrorClass::label`]).
    class: &'static str,
}

/// The label of per-service metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    /// The service's name.
    service: String,
}

/// The label of the work registry's event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkEventLabel {
    /// What happened ([`WORK_EVENTS`]).
    event: &'static str,
}

/// The events `capstan_work_events_total` counts.
pub const WORK_EVENTS: [&str; 10] = [
    "started",
    "renewed",
    "ended",
    "unknown_end",
    "refused_draining",
    "unknown_task",
    "expired",
    "forgotten",
    "store_batch",
    "store_error",
];

/// The labels of the task-protection counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtectionLabels {
    /// The service's name.
    service: String,
    /// `enable`, `extend`, `release`, `gone` or `failure`.
    change: &'static str,
}

/// The label of the reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    /// `applied` or `rejected`.
    result: &'static str,
}

/// The labels of the decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// The service's name.
    service: String,
    /// `out`, `in` or `hold`.
    direction: &'static str,
    /// A bounded reason ([`reason_label`]).
    reason: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Buckets of the read-duration histogram: 1 ms to about 33 s.
fn read_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// capstan's metrics, rendered by `/metrics`.
pub struct Exporter {
    /// Every metric, for rendering.
    registry: Registry,
    /// Where "now" comes from (ages).
    clock: Arc<dyn Clock>,
    /// `capstan_source_value`.
    value: Family<SourceLabel, F64Gauge>,
    /// `capstan_source_age_seconds`.
    age: Family<SourceLabel, F64Gauge>,
    /// `capstan_source_read_duration_seconds`.
    duration: Family<SourceLabel, Histogram, fn() -> Histogram>,
    /// `capstan_source_errors_total`.
    errors: Family<ErrorLabels, Counter>,
    /// `capstan_desired_tasks`.
    desired: Family<ServiceLabel, Gauge>,
    /// `capstan_running_tasks`.
    running: Family<ServiceLabel, Gauge>,
    /// `capstan_decisions_total`.
    decisions: Family<DecisionLabels, Counter>,
    /// `capstan_cloudwatch_unshipped_total`.
    unshipped: Counter,
    /// `capstan_config_reloads_total`.
    reloads: Family<ReloadLabels, Counter>,
    /// `capstan_config_last_reload_successful`.
    last_reload_ok: Gauge,
    /// When each source last read a good value.
    last_ok: Mutex<HashMap<String, Timestamp>>,
    /// `capstan_work_sessions`.
    work_sessions: Family<ServiceLabel, Gauge>,
    /// `capstan_work_workloads`.
    work_workloads: Family<ServiceLabel, Gauge>,
    /// `capstan_work_events_total`.
    work_events: Family<WorkEventLabel, Counter>,
    /// The work registry read at each scrape, once set.
    work: std::sync::OnceLock<WorkRegistry>,
    /// `capstan_protected_tasks`.
    protected: Family<ServiceLabel, Gauge>,
    /// `capstan_protection_changes_total`.
    protection_changes: Family<ProtectionLabels, Counter>,
    /// The services' task-protection counters read at each scrape, once set.
    protection: std::sync::OnceLock<ProtectionBoard>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter for `sources` (each exported at once), ages measured on `clock`.
    pub fn new(sources: &[SourceSpec], clock: Arc<dyn Clock>) -> Self {
        let mut registry = Registry::default();
        let value = Family::<SourceLabel, F64Gauge>::default();
        let age = Family::<SourceLabel, F64Gauge>::default();
        let duration: Family<SourceLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(read_buckets);
        let errors = Family::<ErrorLabels, Counter>::default();
        let desired = Family::<ServiceLabel, Gauge>::default();
        let running = Family::<ServiceLabel, Gauge>::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let unshipped = Counter::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        for result in ["applied", "rejected"] {
            let _ = reloads.get_or_create(&ReloadLabels { result });
        }
        registry.register(
            "capstan_config_reloads",
            "Configuration reloads by result (applied, or rejected: the last good configuration kept running)",
            reloads.clone(),
        );
        registry.register(
            "capstan_config_last_reload_successful",
            "1 if the last configuration reload was applied (or none was tried), 0 if it was rejected",
            last_reload_ok.clone(),
        );
        registry.register(
            "capstan_cloudwatch_unshipped",
            "Values of ship_to_cloudwatch sources given up on (AWS refused them, retries used up, or the buffer was full)",
            unshipped.clone(),
        );
        registry.register(
            "capstan_source_value",
            "The last value each source read",
            value.clone(),
        );
        registry.register(
            "capstan_source_age_seconds",
            "Seconds since each source last read a good value",
            age.clone(),
        );
        registry.register(
            "capstan_source_read_duration_seconds",
            "How long each read took",
            duration.clone(),
        );
        registry.register(
            "capstan_source_errors",
            "Failed reads by source and error class",
            errors.clone(),
        );
        registry.register(
            "capstan_desired_tasks",
            "The desired count of each service after its latest decision",
            desired.clone(),
        );
        registry.register(
            "capstan_running_tasks",
            "The running tasks each service's latest decision observed",
            running.clone(),
        );
        registry.register(
            "capstan_decisions",
            "Decisions by service, direction and reason",
            decisions.clone(),
        );
        let work_sessions = Family::<ServiceLabel, Gauge>::default();
        let work_workloads = Family::<ServiceLabel, Gauge>::default();
        let work_events = Family::<WorkEventLabel, Counter>::default();
        registry.register(
            "capstan_work_sessions",
            "Live sessions the service's tasks report",
            work_sessions.clone(),
        );
        registry.register(
            "capstan_work_workloads",
            "Workloads in progress the service's tasks report",
            work_workloads.clone(),
        );
        registry.register(
            "capstan_work_events",
            "Work registry events: entries started, renewed, ended, expired, forgotten (task gone); refused reports; store batches and errors",
            work_events.clone(),
        );
        let protected = Family::<ServiceLabel, Gauge>::default();
        let protection_changes = Family::<ProtectionLabels, Counter>::default();
        registry.register(
            "capstan_protected_tasks",
            "Tasks of the service capstan holds scale-in protected for their workloads",
            protected.clone(),
        );
        registry.register(
            "capstan_protection_changes",
            "Task protection changes capstan made: enable, extend, release; tasks found gone; failed changes",
            protection_changes.clone(),
        );
        for event in WORK_EVENTS {
            let _ = work_events.get_or_create(&WorkEventLabel { event });
        }
        for spec in sources {
            let label = SourceLabel {
                source: spec.name.clone(),
            };
            value.get_or_create(&label).set(f64::NAN);
            age.get_or_create(&label).set(f64::NAN);
            let _ = duration.get_or_create(&label);
            for class in ErrorClass::ALL {
                let _ = errors.get_or_create(&ErrorLabels {
                    source: spec.name.clone(),
                    class: class.label(),
                });
            }
        }
        Self {
            registry,
            clock,
            value,
            age,
            duration,
            errors,
            desired,
            running,
            decisions,
            unshipped,
            reloads,
            last_reload_ok,
            last_ok: Mutex::default(),
            work_sessions,
            work_workloads,
            work_events,
            work: std::sync::OnceLock::new(),
            protected,
            protection_changes,
            protection: std::sync::OnceLock::new(),
        }
    }

    /// Exports the task-protection counters of the services on `board` (read at each
    /// scrape). Only the first call has an effect.
    pub fn export_protection(&self, board: ProtectionBoard) {
        let _ = self.protection.set(board);
    }

    /// Brings the protection metrics up to date.
    fn render_protection(&self) {
        let Some(board) = self.protection.get() else {
            return;
        };
        let board = board.lock().unwrap_or_else(PoisonError::into_inner);
        for (service, stats) in board.iter() {
            let s = stats();
            self.protected
                .get_or_create(&ServiceLabel {
                    service: service.clone(),
                })
                .set(i64::try_from(s.protected).unwrap_or(i64::MAX));
            let values = [
                ("enable", s.enables),
                ("extend", s.extensions),
                ("release", s.releases),
                ("gone", s.gone),
                ("failure", s.failures),
            ];
            for (change, value) in values {
                let counter = self.protection_changes.get_or_create(&ProtectionLabels {
                    service: service.clone(),
                    change,
                });
                counter.inc_by(value.saturating_sub(counter.get()));
            }
        }
    }

    /// Exports the work registry's counts and events (read at each scrape). Only the
    /// first call has an effect.
    pub fn export_work(&self, work: WorkRegistry) {
        let _ = self.work.set(work);
    }

    /// Brings the work metrics up to date with the registry.
    fn render_work(&self) {
        let Some(work) = self.work.get() else {
            return;
        };
        for service in work.services() {
            let total = work.service_total(&service);
            let label = ServiceLabel { service };
            self.work_sessions
                .get_or_create(&label)
                .set(i64::from(total.sessions));
            self.work_workloads
                .get_or_create(&label)
                .set(i64::from(total.workloads));
        }
        let s = work.stats();
        let values = [
            s.started,
            s.renewed,
            s.ended,
            s.unknown_ends,
            s.refused_draining,
            s.unknown_tasks,
            s.expired,
            s.forgotten,
            s.batches,
            s.write_errors,
        ];
        for (event, value) in WORK_EVENTS.into_iter().zip(values) {
            let counter = self.work_events.get_or_create(&WorkEventLabel { event });
            counter.inc_by(value.saturating_sub(counter.get()));
        }
    }

    /// Counts a configuration reload: applied (`ok`) or rejected.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "applied" } else { "rejected" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        self.last_reload_ok.set(i64::from(ok));
    }

    /// Counts `n` values of `ship_to_cloudwatch` sources given up on.
    pub fn count_unshipped(&self, n: u64) {
        self.unshipped.inc_by(n);
    }

    /// Counts one recorded decision and sets its service's gauges.
    pub fn record_decision(&self, decision: &Decision) {
        let service = ServiceLabel {
            service: decision.service.clone(),
        };
        self.desired
            .get_or_create(&service)
            .set(i64::from(decision.action.desired()));
        self.running
            .get_or_create(&service)
            .set(i64::from(decision.capacity.running));
        let direction = match decision.action {
            Action::ScaleOut { .. } => "out",
            Action::ScaleIn { .. } => "in",
            Action::Hold { .. } => "hold",
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                service: decision.service.clone(),
                direction,
                reason: reason_label(decision),
            })
            .inc();
    }

    /// The metrics in OpenMetrics text format, ages as of now.
    pub fn render(&self) -> String {
        let now = self.clock.now();
        {
            let last = self.last_ok.lock().unwrap_or_else(PoisonError::into_inner);
            for (source, at) in last.iter() {
                self.age
                    .get_or_create(&SourceLabel {
                        source: source.clone(),
                    })
                    .set(elapsed(*at, now).as_secs_f64());
            }
        }
        self.render_work();
        self.render_protection();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl ReadObserver for Exporter {
    fn observed(&self, source: &str, took: Duration, result: Result<f64, &ReadError>) {
        let label = SourceLabel {
            source: source.to_owned(),
        };
        self.duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        match result {
            Ok(value) => {
                self.value.get_or_create(&label).set(value);
                let now = self.clock.now();
                self.last_ok
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(source.to_owned(), now);
            }
            Err(e) => {
                self.errors
                    .get_or_create(&ErrorLabels {
                        source: source.to_owned(),
                        class: e.class().label(),
                    })
                    .inc();
            }
        }
    }
}

/// The bounded `reason` of a decision: the last planner step that changed the number
/// (`max`, `in_cooldown`, `missing_data`, ...), else the rule that combined the asks
/// (`largest_scale_out`, `scale_in_all_agree`, `hold`, `no_votes`).
pub fn reason_label(decision: &Decision) -> &'static str {
    if let Some(step) = decision.steps.last() {
        return match step.kind {
            StepKind::Fallback => "fallback",
            StepKind::MissingData => "missing_data",
            StepKind::Stabilization => "stabilization",
            StepKind::OutCooldown => "out_cooldown",
            StepKind::InCooldown => "in_cooldown",
            StepKind::RateLimitOut => "rate_limit_out",
            StepKind::RateLimitIn => "rate_limit_in",
            StepKind::Min => "min",
            StepKind::Max => "max",
            StepKind::DryRun => "dry_run",
            StepKind::Paused => "paused",
            StepKind::BusyTasks => "busy_tasks",
        };
    }
    match decision.rule {
        Rule::LargestScaleOut => "largest_scale_out",
        Rule::ScaleInAllAgree => "scale_in_all_agree",
        Rule::Hold => "hold",
        Rule::NoVotes => "no_votes",
    }
}

/// A decision log that also feeds the [`Exporter`]: every decision the service loops
/// record is counted, then passed on.
pub struct ExportingLog {
    /// Where decisions are kept.
    inner: Arc<dyn DecisionLog>,
    /// What counts them.
    exporter: Arc<Exporter>,
}

impl ExportingLog {
    /// Wraps `inner`, counting into `exporter`.
    pub fn new(inner: Arc<dyn DecisionLog>, exporter: Arc<Exporter>) -> Self {
        Self { inner, exporter }
    }
}

impl DecisionLog for ExportingLog {
    fn record(&self, decision: &Decision) -> Result<(), StoreError> {
        self.exporter.record_decision(decision);
        self.inner.record(decision)
    }

    fn recent(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        self.inner.recent(service, limit)
    }

    fn page(
        &self,
        service: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<capstan_store::Page, StoreError> {
        self.inner.page(service, before, limit)
    }

    fn since(
        &self,
        service: &str,
        since: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<Decision>, StoreError> {
        self.inner.since(service, since, limit)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping()
    }

    fn last_applied(&self, service: &str, limit: usize) -> Result<Vec<Decision>, StoreError> {
        self.inner.last_applied(service, limit)
    }
}
