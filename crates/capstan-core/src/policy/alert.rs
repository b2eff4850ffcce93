//! The `alert` policy: scale on alerts received from Alertmanager or Grafana.
//!
//! The policy reads the service's alert state ([`AlertBook`](crate::alerts::AlertBook),
//! carried by the [`Observations`](crate::metrics::Observations)), never the
//! notifications themselves, so duplicates and re-notifications of one alert change
//! nothing by themselves:
//!
//! - Among the service's alerts matching the selector (`alert` name and/or `match`
//!   labels), a resolved one received more than `forget_after` ago is forgotten.
//! - Nothing left (never seen, or forgotten) → abstain.
//! - Any firing alert whose value is above `threshold` (or without a value, or without a
//!   threshold) → up: `desired + step`, the step grown like the threshold policy's
//!   (fixed, linear, exponential; the streak grows only when the desired count moved
//!   since the last firing, so an ask held back by a cooldown is asked again rather than
//!   compounded), jittered, and capped at `max_step`.
//! - Otherwise (every matching alert resolved, or firing at or below the threshold) →
//!   down: `desired − in_step` (`in_step = 0`: abstain instead).
//!
//! The reason names the alert (name and short fingerprint), its value and where the
//! value came from, and why the policy asks what it asks.

use std::time::Duration;

use serde::Serialize;

use super::target_tracking::Num;
use super::threshold::{Growth, Jitter, ThresholdState};
use super::{Ask, Outcome, PolicyError, PolicyInput};
use crate::alerts::{AlertSelector, AlertState, AlertStatus, ValueOrigin};
use crate::clock::elapsed;

/// Settings of an `alert` policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The service whose alerts the policy reads (set by the config compiler).
    pub service: String,
    /// Which alerts count.
    pub selector: AlertSelector,
    /// Above this value a firing alert asks for scale-out; at or below it, scale-in.
    /// None: every firing alert asks for scale-out.
    pub threshold: Option<f64>,
    /// The Grafana query ref (`values` key, `var='KEY'` in `valueString`) that holds the
    /// alert's value; None: the only one.
    pub value_key: Option<String>,
    /// Tasks added per firing before growth and jitter (≥ 1).
    pub step: u32,
    /// How the step grows while the alert keeps firing.
    pub growth: Growth,
    /// The largest step ever asked (after growth and jitter); None: unbounded.
    pub max_step: Option<u32>,
    /// Optional jitter of the step.
    pub jitter: Option<Jitter>,
    /// Tasks removed per evaluation once the alert is resolved or below the threshold;
    /// 0: no scale-in (abstain).
    pub in_step: u32,
    /// A resolved alert received longer ago than this is forgotten (the policy abstains).
    pub forget_after: Duration,
}

impl Alert {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        if self.selector.alertname.is_none() && self.selector.labels.is_empty() {
            errors.push(PolicyError::new(
                "alert",
                "name the alert (`alert = \"QueueHigh\"`) and/or give `match` labels",
            ));
        }
        if self
            .selector
            .alertname
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            errors.push(PolicyError::new("alert", "cannot be empty"));
        }
        if let Some(t) = self.threshold
            && !t.is_finite()
        {
            errors.push(PolicyError::new(
                "threshold",
                format!("must be a finite number (got {t})"),
            ));
        }
        if self.step == 0 {
            errors.push(PolicyError::new("step", "must be at least 1"));
        }
        if let Some(max) = self.max_step
            && max < self.step
        {
            errors.push(PolicyError::new(
                "max_step",
                format!("must be at least step ({max} < {})", self.step),
            ));
        }
        errors.extend(self.jitter.and_then(|j| j.check()));
        if self.forget_after.is_zero() {
            errors.push(PolicyError::new("forget_after", "must be above zero"));
        }
        errors
    }

    /// The state a fresh policy starts with.
    pub fn initial_state(&self) -> ThresholdState {
        ThresholdState::seeded(self.jitter.map_or(0, |j| j.seed))
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, input: &PolicyInput<'_>, state: &mut ThresholdState) -> Outcome {
        let now = input.now;
        let desired = input.capacity.desired;
        let what = self.selector.describe();
        let alerts: Vec<(&str, &AlertState)> = input
            .metrics
            .alerts()
            .service(&self.service)
            .filter(|(_, a)| self.selector.matches(&a.labels))
            .filter(|(_, a)| {
                a.status == AlertStatus::Firing || elapsed(a.received_at, now) <= self.forget_after
            })
            .collect();
        if alerts.is_empty() {
            state.reset();
            return (
                Ask::Abstain,
                format!(
                    "no alert {what} for this service (none received, or resolved and forgotten)"
                ),
                false,
            );
        }

        // The hottest firing alert above the threshold: one without a value first, then
        // the highest value.
        let mut hottest: Option<Candidate<'_>> = None;
        for &(fp, a) in &alerts {
            if a.status != AlertStatus::Firing {
                continue;
            }
            let value = a.value(self.value_key.as_deref());
            let above = match (value, self.threshold) {
                (Some((v, _)), Some(t)) => v > t,
                _ => true,
            };
            if !above {
                continue;
            }
            let hotter = match (&hottest, value) {
                (None, _) => true,
                (Some((_, _, Some(_))), None) => true,
                (Some((_, _, Some((best, _)))), Some((v, _))) => v > *best,
                (Some((_, _, None)), _) => false,
            };
            if hotter {
                hottest = Some((fp, a, value));
            }
        }

        if let Some((fp, a, value)) = hottest {
            let grown = state.step(1, desired, self.step, self.growth, self.jitter);
            let step = self.max_step.map_or(grown, |m| grown.min(m));
            let count = desired.saturating_add(step);
            let why = match (value, self.threshold) {
                (None, _) => "firing without a value".to_owned(),
                (Some((v, from)), Some(t)) => {
                    format!(
                        "firing, value {} ({}) > threshold {}",
                        Num(v),
                        origin(from),
                        Num(t)
                    )
                }
                (Some((v, from)), None) => {
                    format!("firing, value {} ({}), no threshold", Num(v), origin(from))
                }
            };
            let capped = if step < grown {
                format!(" (capped at max_step {step})")
            } else {
                String::new()
            };
            let growth = match self.growth {
                Growth::Fixed => String::new(),
                Growth::Linear => format!(" (firing #{}, linear)", state.streak),
                Growth::Exponential => format!(" (firing #{}, exponential)", state.streak),
            };
            return (
                Ask::Desired { count },
                format!(
                    "up: alert {} [{}] {why} → +{step}{growth}{capped} → {count}",
                    name_of(a, &what),
                    short(fp)
                ),
                false,
            );
        }

        // Nothing above: say why with the most recently received matching alert.
        let Some(&(fp, latest)) = alerts.iter().max_by_key(|(_, a)| a.received_at) else {
            state.reset();
            return (Ask::Abstain, format!("no alert {what}"), false);
        };
        let why = match latest.status {
            AlertStatus::Resolved => format!(
                "resolved {} s ago",
                elapsed(latest.received_at, now).as_secs()
            ),
            AlertStatus::Firing => {
                match (latest.value(self.value_key.as_deref()), self.threshold) {
                    (Some((v, from)), Some(t)) => format!(
                        "firing, value {} ({}) ≤ threshold {}",
                        Num(v),
                        origin(from),
                        Num(t)
                    ),
                    _ => "firing".to_owned(),
                }
            }
        };
        let subject = format!("alert {} [{}] {why}", name_of(latest, &what), short(fp));
        if self.in_step == 0 {
            state.reset();
            return (
                Ask::Abstain,
                format!("{subject}; scale-in disabled (in_step = 0)"),
                false,
            );
        }
        state.step(-1, desired, self.in_step, Growth::Fixed, None);
        let count = desired.saturating_sub(self.in_step);
        (
            Ask::Desired { count },
            format!("down: {subject} → −{} → {count}", self.in_step),
            false,
        )
    }
}

/// A firing alert above the threshold: fingerprint, state, value.
type Candidate<'a> = (&'a str, &'a AlertState, Option<(f64, ValueOrigin)>);

fn name_of<'a>(a: &'a AlertState, fallback: &'a str) -> &'a str {
    match a.alertname() {
        "" => fallback,
        name => name,
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint
        .char_indices()
        .nth(12)
        .map_or(fingerprint, |(i, _)| &fingerprint[..i])
}

fn origin(from: ValueOrigin) -> &'static str {
    match from {
        ValueOrigin::Values => "values",
        ValueOrigin::ValueString => "valueString",
        ValueOrigin::Annotation => "value annotation",
    }
}
