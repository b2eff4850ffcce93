//! Scheduled bounds: cron windows in an IANA time zone (DST-correct) that set min/max or
//! an exact count while active. AWS's rules: below the new min → raise to it; above the
//! new max → lower to it; not subject to cooldowns (the planner applies them last).

use std::time::Duration;

use jiff::tz::TimeZone;

use super::{Outcome, PolicyError, PolicyInput};

/// One recurring window.
#[derive(Debug, Clone)]
pub struct ScheduledAction {
    /// The cron expression as written (5 fields: minute hour day-of-month month
    /// day-of-week).
    pub cron_text: String,
    /// The parsed expression.
    pub cron: croner::Cron,
    /// How long the window lasts after each occurrence.
    pub duration: Duration,
    /// Minimum while active.
    pub min: Option<u32>,
    /// Maximum while active.
    pub max: Option<u32>,
    /// Exact count while active (sets min = max).
    pub exact: Option<u32>,
}

/// Settings of a scheduled policy.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Time zone the cron expressions are read in.
    pub timezone: TimeZone,
    /// The windows.
    pub actions: Vec<ScheduledAction>,
}

impl Scheduled {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        unimplemented!("scheduled validate")
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, _input: &PolicyInput<'_>) -> Outcome {
        unimplemented!("scheduled evaluate")
    }
}
