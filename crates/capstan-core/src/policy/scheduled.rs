//! Scheduled bounds: cron windows in an IANA time zone (DST-correct) that set min/max or
//! an exact count while active. AWS's rules: below the new min → raise to it; above the
//! new max → lower to it; not subject to cooldowns (the planner applies them last).
//!
//! An action is active at `now` when its newest cron occurrence at or before `now`, read
//! on the wall clock of `timezone`, is less than `duration` ago: the window is
//! `[occurrence, occurrence + duration)`. Wall-clock times follow DST: `30 8 * * MON-FRI`
//! in `America/New_York` starts at 13:30Z in winter and 12:30Z in summer. A time that
//! does not exist on a spring-forward day (02:00 in Europe/Berlin on the last Sunday of
//! March) fires at the first instant after the gap (03:00 local), as croner schedules
//! fixed-time jobs; a repeated hour on a fall-back day fires once, at its first instance.
//! When several windows are active, the one that started most recently wins. Active →
//! [`Ask::Bounds`] (exact n → min = max = n); none → abstain.

use std::time::Duration;

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::{Ask, Outcome, PolicyError, PolicyInput};
use crate::clock::elapsed;

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

/// Two actions are the same when written the same (the parsed cron follows its text).
impl PartialEq for ScheduledAction {
    fn eq(&self, other: &Self) -> bool {
        self.cron_text == other.cron_text
            && self.duration == other.duration
            && self.min == other.min
            && self.max == other.max
            && self.exact == other.exact
    }
}

/// Settings of a scheduled policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// Time zone the cron expressions are read in.
    pub timezone: TimeZone,
    /// The windows.
    pub actions: Vec<ScheduledAction>,
}

impl ScheduledAction {
    /// An action from a cron expression (5 fields, see [`parse_cron`]).
    pub fn new(
        cron_text: &str,
        duration: Duration,
        min: Option<u32>,
        max: Option<u32>,
        exact: Option<u32>,
    ) -> Result<Self, PolicyError> {
        Ok(Self {
            cron_text: cron_text.to_owned(),
            cron: parse_cron(cron_text)?,
            duration,
            min,
            max,
            exact,
        })
    }

    /// The bounds this action sets (exact n → min = max = n).
    pub fn bounds(&self) -> (Option<u32>, Option<u32>) {
        match self.exact {
            Some(n) => (Some(n), Some(n)),
            None => (self.min, self.max),
        }
    }

    /// The start of the window active at `now` (the newest occurrence at or before `now`,
    /// if `now` is less than `duration` after it), read in `tz`. `Err` when the cron has no
    /// occurrence within the search limit.
    pub fn active_since(&self, tz: &TimeZone, now: Timestamp) -> Result<Option<Zoned>, CronError> {
        let zoned = now.to_zoned(tz.clone());
        let start = self.cron.find_previous_occurrence(&zoned, true)?;
        let since = elapsed(start.timestamp(), now);
        Ok((since < self.duration).then_some(start))
    }
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week).
/// Month and weekday names (`JAN`, `MON-FRI`) are accepted, case-insensitively, and so are
/// `@daily`-style nicknames; a day-of-month and a day-of-week both restricted match
/// when either does (classic cron). Errors carry the parser's message; an expression that
/// names no real date (`0 0 31 2 *`) is an error too.
pub fn parse_cron(text: &str) -> Result<croner::Cron, PolicyError> {
    cron_expression(text).map_err(|why| PolicyError::new("cron", format!("`{text}`: {why}")))
}

/// Parses a cron expression as the configuration takes it: exactly 5 fields (minute
/// hour day-of-month month day-of-week) or an `@nickname`, naming at least one real
/// date. The error is the reason alone (the caller names the place).
pub fn cron_expression(text: &str) -> Result<croner::Cron, String> {
    let trimmed = text.trim();
    if !trimmed.starts_with('@') {
        let fields = trimmed.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
            ));
        }
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(trimmed)
        .map_err(|e| e.to_string())?;
    if !ever_occurs(&cron) {
        return Err("never matches a real date".to_owned());
    }
    Ok(cron)
}

/// Whether `cron` has an occurrence (an expression like `0 0 31 2 *` names no real date;
/// evaluating it would search in vain every time, so it is rejected up front).
fn ever_occurs(cron: &croner::Cron) -> bool {
    // A fixed reference keeps validation deterministic; leap days recur within 8 years.
    let reference = Timestamp::from_second(1_767_225_600)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::UTC);
    cron.find_next_occurrence(&reference, true).is_ok()
}

fn never_matches(text: &str, field: impl Into<String>) -> PolicyError {
    PolicyError::new(field, format!("`{text}` never matches a real date"))
}

impl Scheduled {
    /// Checks the settings.
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        if self.actions.is_empty() {
            errors.push(PolicyError::new("actions", "must list at least one action"));
        }
        for (i, a) in self.actions.iter().enumerate() {
            let path = format!("actions[{i}]");
            if a.min.is_none() && a.max.is_none() && a.exact.is_none() {
                errors.push(PolicyError::new(path.clone(), "must set min, max or exact"));
            }
            if a.exact.is_some() && (a.min.is_some() || a.max.is_some()) {
                errors.push(PolicyError::new(
                    format!("{path}.exact"),
                    "cannot be combined with min or max (exact sets both)",
                ));
            }
            if let (Some(min), Some(max)) = (a.min, a.max)
                && min > max
            {
                errors.push(PolicyError::new(
                    format!("{path}.max"),
                    format!("must be at least min ({max} < {min})"),
                ));
            }
            if !ever_occurs(&a.cron) {
                errors.push(never_matches(&a.cron_text, format!("{path}.cron")));
            }
            if a.duration.is_zero() {
                errors.push(PolicyError::new(
                    format!("{path}.duration"),
                    "must be longer than 0",
                ));
            }
        }
        errors
    }

    /// Evaluates the policy.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Outcome {
        let mut best: Option<(&ScheduledAction, Zoned)> = None;
        let mut errors: Vec<String> = Vec::new();
        for action in &self.actions {
            match action.active_since(&self.timezone, input.now) {
                Ok(Some(start)) => {
                    if best
                        .as_ref()
                        .is_none_or(|(_, b)| start.timestamp() > b.timestamp())
                    {
                        best = Some((action, start));
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(format!("`{}`: {e}", action.cron_text)),
            }
        }
        let tz = self.timezone.iana_name().unwrap_or("UTC");
        let Some((action, start)) = best else {
            let mut why = format!("no scheduled window active ({tz})");
            if !errors.is_empty() {
                why.push_str(&format!("; {}", errors.join("; ")));
            }
            return (Ask::Abstain, why, false);
        };
        let (min, max) = action.bounds();
        let end = start
            .timestamp()
            .checked_add(action.duration)
            .unwrap_or(Timestamp::MAX)
            .to_zoned(self.timezone.clone());
        let set = match (action.exact, min, max) {
            (Some(n), _, _) => format!("exactly {n}"),
            (None, Some(lo), Some(hi)) => format!("min {lo}, max {hi}"),
            (None, Some(lo), None) => format!("min {lo}"),
            (None, None, Some(hi)) => format!("max {hi}"),
            (None, None, None) => "nothing".to_owned(),
        };
        let why = format!(
            "schedule `{}` ({tz}) active since {} until {}: {set}",
            action.cron_text,
            start.strftime("%Y-%m-%d %H:%M %Z"),
            end.strftime("%Y-%m-%d %H:%M %Z"),
        );
        (Ask::Bounds { min, max }, why, false)
    }
}
