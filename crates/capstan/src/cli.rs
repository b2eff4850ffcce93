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
    let _ = writeln!(out, "action:   {action}{dry}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
