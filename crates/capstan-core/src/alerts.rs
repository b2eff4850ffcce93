//! Alert state received from alerting systems (Alertmanager, Grafana), per service and
//! per alert fingerprint, for the [`alert`](crate::policy::alert) policy to evaluate.
//!
//! Owns: [`AlertState`] (the newest notification of one alert: status, labels, the
//! values it carried, when it was received), [`AlertBook`] (every service's alerts,
//! bounded), [`AlertSelector`] (which alerts a policy or a service cares about) and
//! [`AlertState::value`] (which number of a notification counts as the alert's value).
//!
//! The book stores *state*, not notifications: a re-notification of the same alert
//! (same fingerprint) replaces the previous entry, and [`AlertBook::record`] says whether
//! anything that matters to a policy changed (so a duplicate does not wake a loop).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::clock::elapsed;

/// The most alerts kept per service; beyond it the oldest resolved (then the oldest
/// received) entries are dropped.
pub const MAX_ALERTS_PER_SERVICE: usize = 1024;

/// How long a resolved alert is kept in the book at most (policies forget it earlier,
/// after their own `forget_after`).
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Whether an alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The alert's condition holds.
    Firing,
    /// The alert's condition no longer holds.
    Resolved,
}

/// Which alerting system sent a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertOrigin {
    /// Prometheus Alertmanager (webhook payload version 4).
    Alertmanager,
    /// Grafana unified alerting (webhook contact point).
    Grafana,
}

/// The newest notification of one alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertState {
    /// Who sent it.
    pub origin: AlertOrigin,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The alert's labels (`alertname` among them).
    pub labels: BTreeMap<String, String>,
    /// Grafana's `values` (query ref → number); empty for Alertmanager.
    pub values: BTreeMap<String, f64>,
    /// Grafana's `valueString`, if any (at most 1 KiB kept).
    pub value_string: Option<String>,
    /// The `value` annotation, else the `value` label, if any.
    pub value_text: Option<String>,
    /// The notification group (`groupKey`), if given.
    pub group_key: Option<String>,
    /// When capstan received it (from its clock).
    pub received_at: Timestamp,
}

/// Where an alert's value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueOrigin {
    /// Grafana's `values` map.
    Values,
    /// Grafana's `valueString`.
    ValueString,
    /// The `value` annotation or label.
    Annotation,
}

impl AlertState {
    /// The alert's name (`alertname` label; empty if absent).
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// The alert's value: Grafana's `values[key]` (with `key`) or its only value (without),
    /// else a number parsed from `valueString` (`var='KEY' ... value=N`, or the only
    /// `value=N`), else the `value` annotation/label parsed as a number. None when no
    /// number is found.
    pub fn value(&self, key: Option<&str>) -> Option<(f64, ValueOrigin)> {
        let from_values = match key {
            Some(k) => self.values.get(k).copied(),
            None if self.values.len() == 1 => self.values.values().next().copied(),
            None => None,
        };
        if let Some(v) = from_values.filter(|v| v.is_finite()) {
            return Some((v, ValueOrigin::Values));
        }
        if let Some(v) = self
            .value_string
            .as_deref()
            .and_then(|s| parse_value_string(s, key))
        {
            return Some((v, ValueOrigin::ValueString));
        }
        self.value_text
            .as_deref()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .map(|v| (v, ValueOrigin::Annotation))
    }

    /// True when `other` differs in what a policy looks at (status, labels, values),
    /// ignoring when it was received.
    pub fn differs_from(&self, other: &AlertState) -> bool {
        self.status != other.status
            || self.labels != other.labels
            || self.values != other.values
            || self.value_string != other.value_string
            || self.value_text != other.value_text
    }
}

/// A number from Grafana's `valueString`, e.g.
/// `[ var='B' labels={queue=jobs} value=523 ], [ var='C' labels={} value=1 ]`: the
/// `value=` of the entry with `var='KEY'`, or, without a key, the only `value=` there is.
pub fn parse_value_string(text: &str, key: Option<&str>) -> Option<f64> {
    let entries: Vec<&str> = text.split("], [").collect();
    let number = |entry: &str| -> Option<f64> {
        let at = entry.rfind("value=")?;
        let rest = &entry[at + "value=".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
            .unwrap_or(rest.len());
        rest[..end].parse::<f64>().ok().filter(|v| v.is_finite())
    };
    match key {
        Some(k) => {
            let needle = format!("var='{k}'");
            entries
                .iter()
                .find(|e| e.contains(&needle))
                .and_then(|e| number(e))
        }
        None => {
            if text.matches("value=").count() == 1 {
                number(text)
            } else {
                None
            }
        }
    }
}

/// Which alerts something cares about: an `alertname` and/or label matchers (exact
/// equality). An empty selector matches every alert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertSelector {
    /// The `alertname` label must be this.
    pub alertname: Option<String>,
    /// Each of these labels must have exactly this value.
    pub labels: BTreeMap<String, String>,
}

impl AlertSelector {
    /// True when `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.alertname
            .as_deref()
            .is_none_or(|name| labels.get("alertname").map(String::as_str) == Some(name))
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }

    /// `QueueHigh{queue="jobs"}`-like text for reasons and logs.
    pub fn describe(&self) -> String {
        let mut out = self.alertname.clone().unwrap_or_default();
        if !self.labels.is_empty() {
            let inner: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            out.push('{');
            out.push_str(&inner.join(","));
            out.push('}');
        }
        if out.is_empty() {
            out.push_str("any alert");
        }
        out
    }
}

/// Every service's alerts, by fingerprint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertBook {
    by_service: BTreeMap<String, BTreeMap<String, AlertState>>,
}

impl AlertBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `state` as the newest of alert `fingerprint` of `service`. Returns true
    /// when it changed what a policy sees (a new alert, or another status, labels or
    /// value); a duplicate only refreshes `received_at`. Old resolved entries are pruned
    /// and the service's alerts stay within [`MAX_ALERTS_PER_SERVICE`].
    pub fn record(&mut self, service: &str, fingerprint: &str, state: AlertState) -> bool {
        let now = state.received_at;
        let alerts = self.by_service.entry(service.to_owned()).or_default();
        let changed = alerts
            .get(fingerprint)
            .is_none_or(|old| old.differs_from(&state));
        alerts.insert(fingerprint.to_owned(), state);
        alerts.retain(|_, a| {
            a.status == AlertStatus::Firing || elapsed(a.received_at, now) <= RESOLVED_RETENTION
        });
        while alerts.len() > MAX_ALERTS_PER_SERVICE {
            let victim = alerts
                .iter()
                .filter(|(f, _)| f.as_str() != fingerprint)
                .min_by_key(|(_, a)| (a.status == AlertStatus::Firing, a.received_at))
                .map(|(f, _)| f.clone());
            match victim {
                Some(f) => {
                    alerts.remove(&f);
                }
                None => break,
            }
        }
        changed
    }

    /// The alerts of `service`, by fingerprint.
    pub fn service(&self, service: &str) -> impl Iterator<Item = (&str, &AlertState)> {
        self.by_service
            .get(service)
            .into_iter()
            .flat_map(|m| m.iter().map(|(f, a)| (f.as_str(), a)))
    }

    /// Services with at least one alert.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.by_service.keys().map(String::as_str)
    }

    /// Number of alerts stored in all.
    pub fn len(&self) -> usize {
        self.by_service.values().map(BTreeMap::len).sum()
    }

    /// True when no alert is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: AlertStatus, at: Timestamp) -> AlertState {
        AlertState {
            origin: AlertOrigin::Alertmanager,
            status,
            labels: BTreeMap::from([("alertname".to_owned(), "QueueHigh".to_owned())]),
            values: BTreeMap::new(),
            value_string: None,
            value_text: Some("12".into()),
            group_key: None,
            received_at: at,
        }
    }

    #[test]
    fn duplicates_do_not_count_as_changes() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut book = AlertBook::new();
        assert!(book.record("api", "f1", state(AlertStatus::Firing, t0)));
        let later = t0 + jiff::SignedDuration::from_secs(30);
        assert!(!book.record("api", "f1", state(AlertStatus::Firing, later)));
        assert_eq!(
            book.service("api").next().map(|(_, a)| a.received_at),
            Some(later)
        );
        assert!(book.record("api", "f1", state(AlertStatus::Resolved, later)));
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn the_book_stays_bounded_and_keeps_firing_alerts_longest() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut book = AlertBook::new();
        book.record("api", "firing", state(AlertStatus::Firing, t0));
        for i in 0..(MAX_ALERTS_PER_SERVICE + 10) {
            book.record("api", &format!("r{i}"), state(AlertStatus::Resolved, t0));
        }
        assert_eq!(book.len(), MAX_ALERTS_PER_SERVICE);
        assert!(book.service("api").any(|(f, _)| f == "firing"));
        // Resolved alerts age out of the book.
        let much_later = t0 + jiff::SignedDuration::from_secs(25 * 3600);
        book.record("api", "new", state(AlertStatus::Firing, much_later));
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn values_come_from_values_then_value_string_then_annotation() {
        let mut a = state(AlertStatus::Firing, Timestamp::UNIX_EPOCH);
        assert_eq!(a.value(None), Some((12.0, ValueOrigin::Annotation)));
        a.value_string = Some(
            "[ var='B' labels={queue=jobs} value=523 ], [ var='C' labels={queue=jobs} value=1 ]"
                .into(),
        );
        assert_eq!(a.value(Some("B")), Some((523.0, ValueOrigin::ValueString)));
        // Two values and no key: the string is ambiguous, the annotation is used.
        assert_eq!(a.value(None), Some((12.0, ValueOrigin::Annotation)));
        a.values = BTreeMap::from([("B".to_owned(), 7.5), ("C".to_owned(), 1.0)]);
        assert_eq!(a.value(Some("B")), Some((7.5, ValueOrigin::Values)));
        a.values.remove("C");
        assert_eq!(a.value(None), Some((7.5, ValueOrigin::Values)));
        a.value_text = Some("n/a".into());
        a.values.clear();
        a.value_string = None;
        assert_eq!(a.value(None), None);
    }

    #[test]
    fn selectors_match_by_name_and_labels() {
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "QueueHigh".to_owned()),
            ("queue".to_owned(), "jobs".to_owned()),
        ]);
        let mut s = AlertSelector {
            alertname: Some("QueueHigh".into()),
            labels: BTreeMap::new(),
        };
        assert!(s.matches(&labels));
        s.labels.insert("queue".into(), "mail".into());
        assert!(!s.matches(&labels));
        s.labels.insert("queue".into(), "jobs".into());
        assert!(s.matches(&labels));
        s.alertname = Some("Other".into());
        assert!(!s.matches(&labels));
        assert_eq!(
            AlertSelector {
                alertname: Some("QueueHigh".into()),
                labels: BTreeMap::from([("queue".to_owned(), "jobs".to_owned())]),
            }
            .describe(),
            "QueueHigh{queue=\"jobs\"}"
        );
    }
}
