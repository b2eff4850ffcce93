//! A decision and its explanation: every policy's ask, every cap, cooldown and limit
//! that changed the number, and the rule that won. Structured (serde) and as one
//! sentence.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::Capacity;
use crate::policy::{Ask, Recommendation};

/// What the decision does to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Raise the desired count.
    ScaleOut {
        /// Desired before.
        from: u32,
        /// Desired after.
        to: u32,
    },
    /// Lower the desired count.
    ScaleIn {
        /// Desired before.
        from: u32,
        /// Desired after.
        to: u32,
    },
    /// Leave it.
    Hold {
        /// The desired count kept.
        at: u32,
    },
}

impl Action {
    /// The desired count after the action.
    pub fn desired(&self) -> u32 {
        match *self {
            Action::ScaleOut { to, .. } | Action::ScaleIn { to, .. } => to,
            Action::Hold { at } => at,
        }
    }
}

/// The rule by which the policies' asks were combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// At least one policy asked for more: the largest ask won.
    LargestScaleOut,
    /// Every voting policy asked for fewer: the largest of the smaller asks won.
    ScaleInAllAgree,
    /// Some policy holds (or asks for the current count): nothing to do.
    Hold,
    /// No policy voted.
    NoVotes,
}

/// Which step of the planner changed the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A source had no usable data; the fallback was applied.
    Fallback,
    /// Scale-in refused because some input was missing, stale or degraded.
    MissingData,
    /// Scale-in held at the highest recommendation of the stabilization window.
    Stabilization,
    /// Scale-out cooldown active and the ask was not larger than the last scale-out.
    OutCooldown,
    /// Scale-in cooldown active.
    InCooldown,
    /// Scale-out rate limit.
    RateLimitOut,
    /// Scale-in rate limit.
    RateLimitIn,
    /// Raised to the minimum (static or scheduled).
    Min,
    /// Lowered to the maximum (static or scheduled).
    Max,
    /// Dry-run: computed, not applied.
    DryRun,
    /// Held because an operator paused this direction.
    Paused,
    /// Scale-in shortened: fewer tasks could go than asked (the others hold live
    /// sessions or workloads, or are protected).
    BusyTasks,
}

/// One adjustment the planner made to the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Which rule.
    pub kind: StepKind,
    /// The count before this step.
    pub from: u32,
    /// The count after this step.
    pub to: u32,
    /// Human-readable detail ("scale-in cooldown until 12:03:00Z").
    pub detail: String,
}

/// The outcome of one evaluation of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Service name.
    pub service: String,
    /// Evaluation time.
    pub at: Timestamp,
    /// Capacity observed before deciding.
    pub capacity: Capacity,
    /// Every policy's recommendation, in configuration order.
    pub asks: Vec<Recommendation>,
    /// How the asks were combined.
    pub rule: Rule,
    /// The policy whose ask won, if any.
    pub winner: Option<String>,
    /// The combined count before the planner's steps.
    pub combined: u32,
    /// The bounds in force (static, or overridden by a scheduled window or an
    /// operator's override).
    pub min: u32,
    /// See `min`.
    pub max: u32,
    /// Each cap, cooldown, limit or fallback applied, in order.
    pub steps: Vec<Step>,
    /// What to do.
    pub action: Action,
    /// True when the decision is not applied.
    pub dry_run: bool,
}

impl Decision {
    /// The decision as one line: the action, the rule that won with the winner's ask and
    /// reason, then every step in order, e.g.
    /// `worker: scale out 3 → 6 — queue asked 7 (650 total / 100 per task → 7), largest of
    /// 2 asks; capped 7 → 6 by max 6`. A dry-run starts with `[dry-run] `.
    pub fn sentence(&self) -> String {
        let mut out = String::new();
        if self.dry_run {
            out.push_str("[dry-run] ");
        }
        let _ = match self.action {
            Action::ScaleOut { from, to } => {
                write!(out, "{}: scale out {from} → {to}", self.service)
            }
            Action::ScaleIn { from, to } => write!(out, "{}: scale in {from} → {to}", self.service),
            Action::Hold { at } => write!(out, "{}: hold at {at}", self.service),
        };
        out.push_str(" — ");
        let winner = self
            .winner
            .as_deref()
            .and_then(|w| self.asks.iter().find(|r| r.policy == w));
        let votes = self.asks.iter().filter(|r| casts_vote(&r.ask)).count();
        match (self.rule, winner) {
            (Rule::NoVotes, _) => out.push_str("no policy voted"),
            (_, None) => {
                let _ = write!(out, "combined {}", self.combined);
            }
            (rule, Some(rec)) => {
                push_ask(&mut out, rec);
                match rule {
                    Rule::LargestScaleOut if votes > 1 => {
                        let _ = write!(out, ", largest of {votes} asks");
                    }
                    Rule::ScaleInAllAgree if votes > 1 => {
                        let _ = write!(out, ", largest of {votes} asks, all lower");
                    }
                    _ => {}
                }
            }
        }
        for step in &self.steps {
            let (from, to, detail) = (step.from, step.to, &step.detail);
            let _ = match step.kind {
                StepKind::Fallback => write!(out, "; {detail}"),
                StepKind::MissingData => write!(out, "; scale-in to {from} refused: {detail}"),
                StepKind::Paused if from < to => {
                    write!(out, "; scale-in to {from} held at {to}: {detail}")
                }
                StepKind::Stabilization | StepKind::InCooldown => {
                    write!(out, "; scale-in to {from} held at {to}: {detail}")
                }
                StepKind::OutCooldown | StepKind::Paused => {
                    write!(out, "; scale-out to {from} held at {to}: {detail}")
                }
                StepKind::RateLimitOut => {
                    write!(out, "; scale-out limited {from} → {to}: {detail}")
                }
                StepKind::RateLimitIn => write!(out, "; scale-in limited {from} → {to}: {detail}"),
                StepKind::Min => write!(out, "; raised {from} → {to} by {detail}"),
                StepKind::Max => write!(out, "; capped {from} → {to} by {detail}"),
                StepKind::BusyTasks => {
                    write!(out, "; scale-in to {from} shortened to {to}: {detail}")
                }
                // Shown as the `[dry-run]` prefix.
                StepKind::DryRun => Ok(()),
            };
        }
        out
    }
}

/// Whether the planner counts this ask as a vote (`NoData` votes through the fallback).
fn casts_vote(ask: &Ask) -> bool {
    matches!(ask, Ask::Desired { .. } | Ask::Hold | Ask::NoData { .. })
}

/// `name asked 6 (reason)`, `name holds (reason)`, `name cannot decide (reason)`, ...
fn push_ask(out: &mut String, rec: &Recommendation) {
    let name = &rec.policy;
    let _ = match &rec.ask {
        Ask::Desired { count } => write!(out, "{name} asked {count}"),
        Ask::Hold => write!(out, "{name} holds"),
        Ask::Abstain => write!(out, "{name} abstains"),
        Ask::NoData { .. } => write!(out, "{name} cannot decide"),
        Ask::Bounds { .. } => write!(out, "{name} sets bounds"),
    };
    if !rec.reason.is_empty() {
        let _ = write!(out, " ({})", rec.reason);
    }
}
