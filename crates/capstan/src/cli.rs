//! The `validate` and `explain` commands.
//!
//! - [`validate`] compiles a configuration file and prints `ok: N sources, M services`,
//!   or every error (`FILE:LINE:COL: KEY.PATH: message`), one per line.
//! - [`explain`] is the policy engine as a calculator: it takes metric values from the
//!   command line, runs one evaluation of a service's policies and planner at a given
//!   instant, and returns the decision with every reason, as text or JSON.
//!
//! Both are plain functions over paths and values; `main` only parses arguments.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use capstan_core::Timestamp;
use capstan_core::clock::sub;
use capstan_core::decision::{Action, Decision, Rule, StepKind};
use capstan_core::metrics::Observations;
use capstan_core::model::{Capacity, Sample};
use capstan_core::policy::Ask;
use capstan_sources::ValueKind;

use crate::config::{self, Config, ConfigErrors};

/// At most this many samples are pushed per source by `explain`.
const MAX_EXPLAIN_SAMPLES: u32 = 10_000;

/// Compiles `path` and prints the summary to stdout, or every error to stderr.
/// Exit status 0 when valid, 1 otherwise.
pub fn validate(path: &Path) -> ExitCode {
    match validate_report(path) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{} error{} in {}",
                errors.len(),
                plural(errors.len()),
                path.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Compiles `path` and returns `ok: N sources, M services`, or every error.
pub fn validate_report(path: &Path) -> Result<String, ConfigErrors> {
    config::load(path).map(|c| summary(&c))
}

/// `ok: 1 source, 2 services`.
pub fn summary(config: &Config) -> String {
    let (s, v) = (config.sources.len(), config.services.len());
    format!("ok: {s} source{}, {v} service{}", plural(s), plural(v))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Why `explain` could not produce a decision.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The configuration does not compile.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// `--at-values` is malformed or names something wrong.
    #[error("{0}")]
    Values(String),
    /// No service has that name.
    #[error("no service named {name:?} (services: {known})")]
    UnknownService {
        /// The name asked for.
        name: String,
        /// The services the file defines.
        known: String,
    },
    /// The decision could not be serialized.
    #[error("cannot write the decision as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses `--at-values`: `name=value` pairs separated by commas (spaces around them are
/// ignored; an empty string means no values). Values are numbers (`550`, `0.25`, `1e3`).
pub fn parse_values(text: &str) -> Result<Vec<(String, f64)>, ExplainError> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(ExplainError::Values(format!(
                "bad --at-values entry {part:?}: expected NAME=VALUE, e.g. queue=550"
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(ExplainError::Values(format!(
                "bad --at-values entry {part:?}: the source name is empty"
            )));
        }
        let number: f64 = value.parse().map_err(|_| {
            ExplainError::Values(format!("bad value for {name}: {value:?} is not a number"))
        })?;
        if !number.is_finite() {
            return Err(ExplainError::Values(format!(
                "bad value for {name}: {value:?} is not a finite number"
            )));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(ExplainError::Values(format!(
                "{name} is given more than once"
            )));
        }
        out.push((name.to_owned(), number));
    }
    Ok(out)
}

/// What `explain` evaluates.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainRequest {
    /// The service to evaluate.
    pub service: String,
    /// Metric values by source name; sources not listed have no data.
    pub values: Vec<(String, f64)>,
    /// Running tasks; defaults to `desired`, then to the service's `min`.
    pub running: Option<u32>,
    /// Desired count; defaults to `running`, then to the service's `min`.
    pub desired: Option<u32>,
    /// The evaluation instant (scheduled policies read it; samples are stamped with it).
    pub now: Timestamp,
}

/// Output form of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExplainFormat {
    /// The sentence and a breakdown, for people.
    #[default]
    Text,
    /// The whole [`Decision`] as pretty JSON.
    Json,
}

/// Loads `path` and explains the decision for `request`, rendered in `format`.
pub fn explain(
    path: &Path,
    request: &ExplainRequest,
    format: ExplainFormat,
) -> Result<String, ExplainError> {
    let config = config::load(path)?;
    let decision = decide(&config, request)?;
    match format {
        ExplainFormat::Text => Ok(render_text(&decision)),
        ExplainFormat::Json => Ok(serde_json::to_string_pretty(&decision)?),
    }
}

/// Runs one evaluation of `request.service` on a fresh engine (no cooldowns running, an
/// empty stabilization window).
///
/// Each given value is taken to have held steady for the source's whole retention: it
/// is pushed as one sample per source interval, the newest at `now`, so every policy's
/// datapoint requirement is met. Sources without a value have no data (the service's
/// fallback applies).
pub fn decide(config: &Config, request: &ExplainRequest) -> Result<Decision, ExplainError> {
    let Some(service) = config.service(&request.service) else {
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        return Err(ExplainError::UnknownService {
            name: request.service.clone(),
            known: names.join(", "),
        });
    };
    let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    let mut observations = Observations::new();
    for source in &config.sources {
        observations.declare(&source.name, source.retention, source.max_age);
    }
    for (name, value) in &request.values {
        let Some(source) = config.source(name) else {
            let hint = config::suggest_name(name, &known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            let list = if known.is_empty() {
                "no sources are defined".to_owned()
            } else {
                format!("known sources: {}", known.join(", "))
            };
            return Err(ExplainError::Values(format!(
                "unknown source {name:?} in --at-values{hint}; {list}"
            )));
        };
        if source.value == ValueKind::Count && *value < 0.0 {
            return Err(ExplainError::Values(format!(
                "bad value for {name}: {value} is negative, but the source counts (value = \"count\")"
            )));
        }
        let step = source.interval;
        let count = u32::try_from(source.retention.as_nanos() / step.as_nanos().max(1))
            .unwrap_or(MAX_EXPLAIN_SAMPLES)
            .min(MAX_EXPLAIN_SAMPLES);
        for k in (0..=count).rev() {
            let at = sub(request.now, step.saturating_mul(k));
            observations.push(name, Sample { value: *value, at });
        }
    }
    let min = service.engine.planner.bounds.min;
    let running = request.running.or(request.desired).unwrap_or(min);
    let desired = request.desired.or(request.running).unwrap_or(min);
    let capacity = Capacity {
        desired,
        running,
        pending: 0,
    };
    let mut state = service.engine.initial_state();
    Ok(service
        .engine
        .evaluate(&mut state, capacity, &observations, request.now))
}

/// The decision as a sentence followed by a breakdown: capacity and bounds, each
/// policy's ask and reason, how the asks were combined, each planner step, the action.
/// No trailing newline.
pub fn render_text(d: &Decision) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", d.sentence());
    let _ = writeln!(out);
    let _ = writeln!(out, "at:       {}", d.at);
    let _ = writeln!(
        out,
        "capacity: desired {}, running {}, pending {}",
        d.capacity.desired, d.capacity.running, d.capacity.pending
    );
    let _ = writeln!(out, "bounds:   min {}, max {}", d.min, d.max);
    let _ = writeln!(out);
    let _ = writeln!(out, "policies:");
    let width = d
        .asks
        .iter()
        .map(|r| r.policy.chars().count())
        .max()
        .unwrap_or(0);
    for r in &d.asks {
        let ask = match &r.ask {
            Ask::Desired { count } => format!("asks {count}"),
            Ask::Hold => "holds".to_owned(),
            Ask::Abstain => "abstains".to_owned(),
            Ask::NoData { sources } => format!("no data ({})", sources.join(", ")),
            Ask::Bounds { min, max } => {
                let show = |b: &Option<u32>| b.map_or_else(|| "-".to_owned(), |n| n.to_string());
                format!("bounds min {} max {}", show(min), show(max))
            }
        };
        let degraded = if r.degraded {
            " [last known value]"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:width$}  {ask}{degraded}: {}",
            r.policy,
            r.reason,
            width = width
        );
    }
    if d.asks.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let rule = match d.rule {
        Rule::LargestScaleOut => "largest scale-out ask wins",
        Rule::ScaleInAllAgree => "every policy allows scale-in; the largest ask wins",
        Rule::Hold => "some policy holds",
        Rule::NoVotes => "no policy voted",
    };
    let winner = d
        .winner
        .as_deref()
        .map(|w| format!(", winner: {w}"))
        .unwrap_or_default();
    let _ = writeln!(out, "combined: {} ({rule}{winner})", d.combined);
    let _ = writeln!(out);
    let _ = writeln!(out, "planner steps:");
    for s in &d.steps {
        let kind = match s.kind {
            StepKind::Fallback => "fallback",
            StepKind::MissingData => "missing data",
            StepKind::Stabilization => "stabilization",
            StepKind::OutCooldown => "scale-out cooldown",
            StepKind::InCooldown => "scale-in cooldown",
            StepKind::RateLimitOut => "scale-out rate limit",
            StepKind::RateLimitIn => "scale-in rate limit",
            StepKind::Min => "min",
            StepKind::Max => "max",
            StepKind::DryRun => "dry-run",
            StepKind::Paused => "paused by operator",
            StepKind::BusyTasks => "tasks with live work",
        };
        let _ = writeln!(out, "  {kind}: {} → {}: {}", s.from, s.to, s.detail);
    }
    if d.steps.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out);
    let action = match d.action {
        Action::ScaleOut { from, to } => format!("scale out {from} → {to}"),
        Action::ScaleIn { from, to } => format!("scale in {from} → {to}"),
        Action::Hold { at } => format!("hold at {at}"),
    };
    let dry = if d.dry_run {
        " (dry-run: not applied)"
    } else {
        ""
    };
    let _ = write!(out, "action:   {action}{dry}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[sources.queue]
kind = "command"
command = ["cat", "/tmp/depth"]
interval = "2s"

[sources.delta]
kind = "command"
command = ["./delta"]
value = "any"

[[services]]
name = "worker"
min = 1
max = 6
target = { kind = "process", command = ["./worker"] }

[[services.policies]]
kind = "target_tracking"
name = "queue"
metric = "queue"
mode = "total"
target = 20
datapoints = { out = 2, in = 3 }

[[services]]
name = "office"
max = 30
target = { kind = "process", command = ["./office"] }

[[services.policies]]
kind = "scheduled"
name = "hours"
timezone = "Europe/Paris"
actions = [{ cron = "0 8 * * MON-FRI", duration = "10h", min = 4 }]
"#;

    fn config() -> Config {
        config::compile(CONFIG, "t.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn request(service: &str, values: &[(&str, f64)]) -> ExplainRequest {
        ExplainRequest {
            service: service.to_owned(),
            values: values.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
            running: None,
            desired: None,
            now: at("2026-03-02T12:00:00Z"),
        }
    }

    #[test]
    fn explains_a_capped_scale_out() {
        let mut req = request("worker", &[("queue", 550.0)]);
        req.running = Some(3);
        let d = decide(&config(), &req).unwrap();
        assert_eq!(d.capacity.desired, 3, "desired defaults to running");
        assert_eq!(d.action, Action::ScaleOut { from: 3, to: 6 });
        assert_eq!(d.asks[0].ask, Ask::Desired { count: 28 });
        let text = render_text(&d);
        assert!(text.starts_with(&d.sentence()), "{text}");
        assert!(text.contains("queue  asks 28: "), "{text}");
        assert!(text.contains("max: 28 → 6"), "{text}");
        assert!(text.contains("action:   scale out 3 → 6"), "{text}");
    }

    #[test]
    fn a_missing_value_is_no_data_and_never_scales_in() {
        let mut req = request("worker", &[]);
        req.desired = Some(4);
        let d = decide(&config(), &req).unwrap();
        assert_eq!(d.capacity.running, 4, "running defaults to desired");
        assert!(matches!(d.asks[0].ask, Ask::NoData { .. }), "{:?}", d.asks);
        assert_eq!(d.action, Action::Hold { at: 4 });
        assert!(render_text(&d).contains("no data (queue)"));
    }

    #[test]
    fn capacity_defaults_to_min_and_scale_in_needs_agreement() {
        let d = decide(&config(), &request("worker", &[("queue", 0.0)])).unwrap();
        assert_eq!(d.capacity.desired, 1);
        assert_eq!(d.action, Action::Hold { at: 1 });
    }

    #[test]
    fn scheduled_policies_read_the_given_instant() {
        // Monday 2026-03-02, 12:00Z = 13:00 in Paris: inside the 08:00–18:00 window.
        let d = decide(&config(), &request("office", &[])).unwrap();
        assert_eq!(d.min, 4);
        assert_eq!(d.action, Action::ScaleOut { from: 1, to: 4 });
        // Sunday: outside.
        let mut req = request("office", &[]);
        req.now = at("2026-03-01T12:00:00Z");
        let d = decide(&config(), &req).unwrap();
        assert_eq!(d.action, Action::Hold { at: 1 });
    }

    #[test]
    fn unknown_names_are_errors_naming_the_known_ones() {
        let err = decide(&config(), &request("wroker", &[]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no service named \"wroker\" (services: worker, office)"
        );
        let err = decide(&config(), &request("worker", &[("queu", 1.0)]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown source \"queu\" in --at-values (did you mean `queue`?); known sources: queue, delta"
        );
        let err = decide(&config(), &request("worker", &[("queue", -1.0)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad value for queue: -1 is negative"),
            "{err}"
        );
        // An `any` source takes negative values.
        assert!(decide(&config(), &request("worker", &[("delta", -1.0)])).is_ok());
    }

    #[test]
    fn explain_reads_the_file_and_renders_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let mut req = request("worker", &[("queue", 100.0)]);
        req.running = Some(1);
        let json = explain(&path, &req, ExplainFormat::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["service"], "worker");
        assert_eq!(v["action"]["action"], "scale_out");
        assert_eq!(v["action"]["to"], 5);
        assert_eq!(v["asks"][0]["policy"], "queue");
        let text = explain(&path, &req, ExplainFormat::Text).unwrap();
        assert!(text.starts_with("worker: scale out 1 → 5"), "{text}");
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "[[services]]\nname = 3\n").unwrap();
        let err = explain(&broken, &req, ExplainFormat::Text).unwrap_err();
        assert!(matches!(err, ExplainError::Config(_)), "{err}");
    }

    #[test]
    fn validate_report_summarises_or_lists_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, CONFIG).unwrap();
        assert_eq!(validate_report(&path).unwrap(), "ok: 2 sources, 2 services");
        assert_eq!(validate(&path), ExitCode::SUCCESS);
        std::fs::write(&path, "[log]\nformat = 1\nlevl = \"x\"\n").unwrap();
        let errors = validate_report(&path).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors}");
        assert_eq!(validate(&path), ExitCode::FAILURE);
    }

    #[test]
    fn values_parse_with_clear_errors() {
        assert_eq!(
            parse_values("queue=550, cpu = 0.5,").unwrap(),
            vec![("queue".to_owned(), 550.0), ("cpu".to_owned(), 0.5)]
        );
        assert!(parse_values("").unwrap().is_empty());
        let err = |s: &str| parse_values(s).unwrap_err().to_string();
        assert_eq!(
            err("queue=abc"),
            "bad value for queue: \"abc\" is not a number"
        );
        assert_eq!(
            err("queue"),
            "bad --at-values entry \"queue\": expected NAME=VALUE, e.g. queue=550"
        );
        assert_eq!(
            err("=3"),
            "bad --at-values entry \"=3\": the source name is empty"
        );
        assert_eq!(
            err("q=inf"),
            "bad value for q: \"inf\" is not a finite number"
        );
        assert_eq!(
            err("q=NaN"),
            "bad value for q: \"NaN\" is not a finite number"
        );
        assert_eq!(err("q=1,q=2"), "q is given more than once");
    }
}
