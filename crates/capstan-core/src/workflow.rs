//! The scale-in workflow: the durable state machine that stops exactly the chosen
//! victims of one scale-in, cutting nobody off. It has two kinds ([`Kind`]): the
//! tasks of an ECS service, and the hosts of an EC2 cluster.
//!
//! Steps of a task scale-in, in order ([`Step`]):
//!
//! 1. **mark draining**: the work registry refuses new sessions and workloads on the
//!    victims (`409`), so the application routes new work elsewhere;
//! 2. **deregister** the victims from every target group of the service;
//! 3. **wait drained**: checked first `first_check_after` the deregistration, then every
//!    `check_every`, until each victim has left `draining` (or is idle), at most
//!    `drain_timeout`;
//! 4. **recheck**: a victim that is not idle (or no longer running, or protected by
//!    someone else) is registered again, un-marked and dropped from this scale-in
//!    ("kept"); if none is left, the workflow skips to the end;
//! 5. **protect** every other running task (temporary protection, recorded before the
//!    call so it can be released after a crash);
//! 6. **lower desired** by the number of victims left (the count seen before is
//!    recorded first, so a retry after a crash never lowers it twice);
//! 7. **stop tasks**: `StopTask` on exactly the victims;
//! 8. **release** the temporary protection this workflow added (never one held for
//!    live work);
//! 9. **done**.
//!
//! Why this order: lowering `desiredCount` alone lets ECS pick which tasks stop, blind
//! to who is connected; `StopTask` alone makes ECS start replacements; and ECS refuses
//! to protect more tasks than the desired count, so the others are protected before the
//! count drops, and the victims (unprotected) are the only ones ECS may stop.
//!
//! Steps of a host removal ([`Kind::Hosts`], victims are EC2 instance ids):
//!
//! 1. **mark draining**: their container instances are set DRAINING, so ECS moves
//!    their service tasks to the other hosts within each service's minimum healthy
//!    percent;
//! 2. **wait drained**: checked every `check_every` until every victim holds no task
//!    and every service that had a task on them runs at least its minimum elsewhere,
//!    at most `drain_timeout`;
//! 3. **recheck**: a victim still holding tasks, gone, or set ACTIVE by someone else
//!    is kept (set ACTIVE again when it was still DRAINING);
//! 4. **terminate** each victim left through its Auto Scaling group, lowering the
//!    desired capacity; a victim already terminating is not terminated again, and
//!    one that cannot be proven empty at that moment is kept instead;
//! 5. **done**.
//!
//! A scale-out cancels a host removal before **terminate**: **undo** sets its hosts
//! ACTIVE again.
//!
//! Before **protect**, a scale-out cancels the workflow: the **undo** step registers
//! the victims again and un-marks them, then the workflow is cancelled. From **protect**
//! on it runs to its end.
//!
//! This module is pure: a driver runs each step's effect and reports an [`Outcome`];
//! [`Workflow::record`] moves the state on and gives the [`Event`]s to journal. The
//! driver writes the state and the events to the store before and after each step
//! (each step's effect is idempotent), so a crash at any point resumes from the store.
//! A step that keeps failing is retried with backoff and jitter, up to
//! `max_attempts`; then the workflow is **failed** at that step, and
//! [`Workflow::redrive`] resumes it from there.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::add;
use crate::model::TaskId;

/// One step of the workflow. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The victims refuse new work.
    MarkDraining,
    /// The victims leave their target groups.
    Deregister,
    /// Their connections drain.
    WaitDrained,
    /// Victims that got work are kept.
    Recheck,
    /// The other tasks are protected.
    Protect,
    /// The desired count drops by the victims left.
    LowerDesired,
    /// The victims are stopped.
    StopTasks,
    /// The host victims are terminated through their Auto Scaling group.
    Terminate,
    /// The temporary protection is released.
    Release,
    /// A cancelled workflow puts its victims back (registered, not draining).
    Undo,
    /// Nothing left to do.
    Done,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 11] = [
        Step::MarkDraining,
        Step::Deregister,
        Step::WaitDrained,
        Step::Recheck,
        Step::Protect,
        Step::LowerDesired,
        Step::StopTasks,
        Step::Terminate,
        Step::Release,
        Step::Undo,
        Step::Done,
    ];

    /// The step's name, as journaled.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::MarkDraining => "mark_draining",
            Step::Deregister => "deregister",
            Step::WaitDrained => "wait_drained",
            Step::Recheck => "recheck",
            Step::Protect => "protect",
            Step::LowerDesired => "lower_desired",
            Step::StopTasks => "stop_tasks",
            Step::Terminate => "terminate",
            Step::Release => "release",
            Step::Undo => "undo",
            Step::Done => "done",
        }
    }

    /// The step after this one on the way to done, in a workflow of `kind`.
    fn next(self, kind: Kind) -> Step {
        match (kind, self) {
            (Kind::Tasks, Step::MarkDraining) => Step::Deregister,
            (Kind::Tasks, Step::Deregister) => Step::WaitDrained,
            (Kind::Tasks, Step::WaitDrained) => Step::Recheck,
            (Kind::Tasks, Step::Recheck) => Step::Protect,
            (Kind::Tasks, Step::Protect) => Step::LowerDesired,
            (Kind::Tasks, Step::LowerDesired) => Step::StopTasks,
            (Kind::Tasks, Step::StopTasks) => Step::Release,
            (Kind::Hosts, Step::MarkDraining | Step::Deregister) => Step::WaitDrained,
            (Kind::Hosts, Step::WaitDrained) => Step::Recheck,
            (Kind::Hosts, Step::Recheck | Step::Protect | Step::LowerDesired) => Step::Terminate,
            (_, Step::StopTasks | Step::Terminate | Step::Release | Step::Undo | Step::Done) => {
                Step::Done
            }
        }
    }

    /// Whether a scale-out may still cancel a workflow of `kind` at this step: a task
    /// scale-in before **protect**, a host removal before **terminate**.
    pub fn cancellable(self, kind: Kind) -> bool {
        match kind {
            Kind::Tasks => self < Step::Protect,
            Kind::Hosts => self < Step::Terminate,
        }
    }
}

/// What a workflow removes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The tasks of an ECS service (the victims are task ARNs).
    #[default]
    Tasks,
    /// The hosts of an EC2 cluster (the victims are EC2 instance ids).
    Hosts,
}

/// Where the workflow stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    /// Running its current step (or waiting to run it).
    Running,
    /// Stopped at its current step after `error`; [`Workflow::redrive`] resumes it.
    Failed {
        /// The last error.
        error: String,
    },
    /// Finished.
    Done,
    /// Cancelled (by a scale-out) and undone.
    Cancelled,
}

impl Status {
    /// `running`, `failed`, `done` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Failed { .. } => "failed",
            Status::Done => "done",
            Status::Cancelled => "cancelled",
        }
    }
}

/// A load-balancer target of a victim: how to deregister and register it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbTarget {
    /// The target group's ARN.
    pub group: String,
    /// The target's id (an IP address, or an instance id).
    pub id: String,
    /// Its port, when the group needs one.
    pub port: Option<u16>,
}

/// One victim of the workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    /// The task.
    pub task: TaskId,
    /// Its targets in the service's target groups (filled by the deregister step).
    #[serde(default)]
    pub targets: Vec<LbTarget>,
    /// Why it was dropped from the scale-in and kept running, if it was.
    #[serde(default)]
    pub kept: Option<String>,
}

/// How long to wait and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowSettings {
    /// The first drain check, after the deregistration.
    pub first_check_after: Duration,
    /// The later drain checks.
    pub check_every: Duration,
    /// How long a victim may take to drain before it is kept.
    pub drain_timeout: Duration,
    /// With a drain deadline (the service's `scale_in.drain_deadline`): how long a busy
    /// victim may take to drain before it is stopped anyway, its work cut (and counted);
    /// replaces `drain_timeout`. `None`: a busy victim is never cut, it is kept.
    pub cut_after: Option<Duration>,
    /// How many times a step is tried before the workflow fails.
    pub max_attempts: u32,
    /// The wait before the first retry; doubles with each further one.
    pub retry_first: Duration,
    /// The longest wait between retries.
    pub retry_max: Duration,
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        Self {
            first_check_after: Duration::from_secs(10),
            check_every: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(600),
            cut_after: None,
            max_attempts: 8,
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// What running a step's effect gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step is complete: go on.
    Done,
    /// Not yet (a drain check): run the step again at `until`.
    Wait {
        /// When to check again.
        until: Timestamp,
    },
    /// It failed in a way that may pass (throttled, a timeout, a 5xx): retry later.
    Retry {
        /// What failed.
        error: String,
    },
    /// It failed in a way retrying cannot fix: the workflow fails at this step.
    Fail {
        /// What failed.
        error: String,
    },
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// The step concerned.
    pub step: Step,
    /// `created`, `started`, `done`, `waiting`, `retry`, `failed`, `kept`, `redrive`,
    /// `cancel`, `finished`.
    pub event: String,
    /// Details (an error, a victim, a count).
    pub detail: String,
}

/// One scale-in. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    /// Unique id.
    pub id: String,
    /// What it removes.
    #[serde(default)]
    pub kind: Kind,
    /// The service (for a host removal, the EC2 cluster target).
    pub service: String,
    /// The desired count when it was decided.
    pub from: u32,
    /// The desired count it was asked to reach.
    pub to: u32,
    /// The victims, in the order chosen.
    pub victims: Vec<Victim>,
    /// The current step.
    pub step: Step,
    /// Where it stands.
    pub status: Status,
    /// Failed attempts of the current step.
    pub attempts: u32,
    /// The current step runs no earlier than this (a wait or a retry backoff).
    pub not_before: Option<Timestamp>,
    /// When the victims were deregistered (a host removal: set DRAINING).
    pub deregistered_at: Option<Timestamp>,
    /// The tasks this workflow protected (to release at the end).
    #[serde(default)]
    pub protected: Vec<TaskId>,
    /// The desired count seen just before lowering it.
    pub lowered_from: Option<u32>,
    /// A host removal: the services that had a task on the victims when they were
    /// chosen (each must be back at its minimum before a host goes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
}

impl Workflow {
    /// A workflow of `service` from `from` to `to`, stopping `victims`.
    pub fn new(
        id: String,
        service: &str,
        from: u32,
        to: u32,
        victims: Vec<TaskId>,
        now: Timestamp,
    ) -> (Self, Event) {
        let detail = format!(
            "scale in {from} → {to}, victims: {}",
            victims
                .iter()
                .map(TaskId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let w = Self {
            id,
            kind: Kind::Tasks,
            service: service.to_owned(),
            from,
            to,
            victims: victims
                .into_iter()
                .map(|task| Victim {
                    task,
                    targets: Vec::new(),
                    kept: None,
                })
                .collect(),
            step: Step::MarkDraining,
            status: Status::Running,
            attempts: 0,
            not_before: None,
            deregistered_at: None,
            protected: Vec::new(),
            lowered_from: None,
            services: Vec::new(),
            created_at: now,
        };
        let event = w.event(now, "created", detail);
        (w, event)
    }

    /// A host removal of the EC2 cluster target `target`, from desired capacity `from`
    /// to `to`, terminating `hosts` (EC2 instance ids) once drained; `services` had a
    /// task on them.
    pub fn hosts(
        id: String,
        target: &str,
        from: u32,
        to: u32,
        hosts: Vec<TaskId>,
        services: Vec<String>,
        now: Timestamp,
    ) -> (Self, Event) {
        let (mut w, mut event) = Self::new(id, target, from, to, hosts, now);
        w.kind = Kind::Hosts;
        w.services = services;
        event.detail = event.detail.replacen("victims", "hosts", 1);
        (w, event)
    }

    fn event(&self, at: Timestamp, event: &str, detail: String) -> Event {
        Event {
            at,
            step: self.step,
            event: event.to_owned(),
            detail,
        }
    }

    /// Whether it is still running (not failed, done or cancelled).
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }

    /// Whether it still holds the service (running or failed): other scale-ins wait.
    pub fn is_active(&self) -> bool {
        matches!(self.status, Status::Running | Status::Failed { .. })
    }

    /// The victims not kept.
    pub fn remaining(&self) -> impl Iterator<Item = &Victim> {
        self.victims.iter().filter(|v| v.kept.is_none())
    }

    /// How many victims are left.
    pub fn remaining_count(&self) -> u32 {
        u32::try_from(self.remaining().count()).unwrap_or(u32::MAX)
    }

    /// Whether its current step should run at `now`.
    pub fn due(&self, now: Timestamp) -> bool {
        self.is_running() && self.not_before.is_none_or(|t| t <= now)
    }

    /// The journal line written before the current step's effect runs.
    pub fn starting(&self, now: Timestamp) -> Event {
        self.event(now, "started", format!("attempt {}", self.attempts + 1))
    }

    /// Drops `task` from the scale-in, keeping it running, for `reason`.
    pub fn keep(&mut self, task: &TaskId, reason: &str, now: Timestamp) -> Option<Event> {
        let v = self
            .victims
            .iter_mut()
            .find(|v| v.task == *task && v.kept.is_none())?;
        v.kept = Some(reason.to_owned());
        Some(self.event(now, "kept", format!("{task}: {reason}")))
    }

    /// Takes the outcome of the current step's effect: the state moves on and the
    /// journal lines to write come back.
    pub fn record(
        &mut self,
        outcome: Outcome,
        now: Timestamp,
        settings: &WorkflowSettings,
    ) -> Vec<Event> {
        if !self.is_running() {
            return Vec::new();
        }
        match outcome {
            Outcome::Done => {
                let mut events = vec![self.event(now, "done", String::new())];
                self.attempts = 0;
                self.not_before = None;
                let drain_starts = match self.kind {
                    Kind::Tasks => Step::Deregister,
                    Kind::Hosts => Step::MarkDraining,
                };
                if self.step == drain_starts && self.deregistered_at.is_none() {
                    self.deregistered_at = Some(now);
                }
                self.step = match (self.kind, self.step) {
                    // Nothing left to stop: release what was protected, if anything.
                    (
                        Kind::Tasks,
                        Step::Recheck | Step::Protect | Step::LowerDesired | Step::StopTasks,
                    ) if self.remaining_count() == 0 => Step::Release,
                    // No host left to remove.
                    (Kind::Hosts, _) if self.remaining_count() == 0 => Step::Done,
                    (kind, step) => step.next(kind),
                };
                if self.step == Step::Done {
                    let undone = self.victims.iter().all(|v| v.kept.is_some());
                    self.status = if undone && self.protected.is_empty() && self.cancelled() {
                        Status::Cancelled
                    } else {
                        Status::Done
                    };
                    let stopped = self.remaining_count();
                    events.push(self.event(
                        now,
                        "finished",
                        format!(
                            "{}: {stopped} of {} victims stopped",
                            self.status.as_str(),
                            self.victims.len()
                        ),
                    ));
                }
                events
            }
            Outcome::Wait { until } => {
                self.not_before = Some(until);
                vec![self.event(now, "waiting", format!("next check at {until}"))]
            }
            Outcome::Retry { error } => {
                self.attempts += 1;
                if self.attempts >= settings.max_attempts {
                    self.status = Status::Failed {
                        error: error.clone(),
                    };
                    self.not_before = None;
                    vec![self.event(
                        now,
                        "failed",
                        format!("after {} attempts: {error}", self.attempts),
                    )]
                } else {
                    let wait = self.backoff(settings);
                    let at = add(now, wait);
                    self.not_before = Some(at);
                    vec![self.event(
                        now,
                        "retry",
                        format!("attempt {} failed: {error}; retry at {at}", self.attempts),
                    )]
                }
            }
            Outcome::Fail { error } => {
                self.attempts += 1;
                self.status = Status::Failed {
                    error: error.clone(),
                };
                self.not_before = None;
                vec![self.event(now, "failed", error)]
            }
        }
    }

    /// Whether the workflow went through its undo step (was cancelled).
    fn cancelled(&self) -> bool {
        self.victims
            .iter()
            .all(|v| v.kept.as_deref() == Some(CANCELLED))
    }

    /// The wait before retry number `attempts`: `retry_first` doubling up to
    /// `retry_max`, then between 80 % and 100 % of it, decided by the workflow's id and
    /// the attempt (the same on every run).
    fn backoff(&self, settings: &WorkflowSettings) -> Duration {
        let exp = self.attempts.saturating_sub(1).min(20);
        let base = settings
            .retry_first
            .saturating_mul(1u32 << exp)
            .min(settings.retry_max);
        // FNV-1a over the id and the attempt.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.id.bytes().chain(self.attempts.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let fraction = 0.8 + 0.2 * ((h >> 11) as f64 / (1u64 << 53) as f64);
        base.mul_f64(fraction)
    }

    /// Resumes a failed workflow at the step it failed at, attempts counted afresh.
    pub fn redrive(&mut self, now: Timestamp) -> Result<Event, String> {
        let Status::Failed { error } = &self.status else {
            return Err(format!(
                "workflow {} is {}, only a failed workflow can be redriven",
                self.id,
                self.status.as_str()
            ));
        };
        let detail = format!("resumed at {} after: {error}", self.step.as_str());
        self.status = Status::Running;
        self.attempts = 0;
        self.not_before = None;
        Ok(self.event(now, "redrive", detail))
    }

    /// Cancels the workflow for a scale-out, if it has not reached **protect**: every
    /// victim is kept and the **undo** step puts them back. Gives the journal line, or
    /// `None` when it is too late to cancel (or already over).
    pub fn cancel(&mut self, now: Timestamp) -> Option<Event> {
        if !self.is_active() || !self.step.cancellable(self.kind) {
            return None;
        }
        for v in &mut self.victims {
            v.kept = Some(CANCELLED.to_owned());
        }
        let from = self.step;
        self.step = Step::Undo;
        self.status = Status::Running;
        self.attempts = 0;
        self.not_before = None;
        Some(self.event(
            now,
            "cancel",
            format!("a scale-out cancelled it at {}", from.as_str()),
        ))
    }

    /// The desired count to report while the workflow runs: what it will leave.
    pub fn target_count(&self) -> u32 {
        self.from
            .saturating_sub(self.remaining_count())
            .max(self.to)
    }
}

/// The reason given to victims of a cancelled workflow.
pub const CANCELLED: &str = "cancelled by a scale-out";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: u64) -> Timestamp {
        add(
            Timestamp::from_second(1_700_000_000).unwrap(),
            Duration::from_secs(s),
        )
    }

    fn wf() -> Workflow {
        Workflow::new(
            "wf-1".into(),
            "api",
            6,
            3,
            vec!["a".into(), "b".into(), "c".into()],
            t(0),
        )
        .0
    }

    #[test]
    fn every_step_in_order_to_done() {
        let s = WorkflowSettings::default();
        let mut w = wf();
        let mut seen = vec![w.step];
        for i in 0..20 {
            if !w.is_running() {
                break;
            }
            w.record(Outcome::Done, t(i), &s);
            seen.push(w.step);
        }
        assert_eq!(
            seen,
            vec![
                Step::MarkDraining,
                Step::Deregister,
                Step::WaitDrained,
                Step::Recheck,
                Step::Protect,
                Step::LowerDesired,
                Step::StopTasks,
                Step::Release,
                Step::Done
            ]
        );
        assert_eq!(w.status, Status::Done);
        assert_eq!(w.deregistered_at, Some(t(1)));
        assert_eq!(w.target_count(), 3);
    }

    #[test]
    fn kept_victims_shrink_the_scale_in_and_none_left_skips_to_release() {
        let s = WorkflowSettings::default();
        let mut w = wf();
        for i in 0..3 {
            w.record(Outcome::Done, t(i), &s);
        }
        assert_eq!(w.step, Step::Recheck);
        let e = w.keep(&"b".into(), "got a session", t(3)).unwrap();
        assert_eq!(e.event, "kept");
        assert_eq!(w.remaining_count(), 2);
        assert_eq!(w.target_count(), 4);
        // Keeping every victim: straight to release, then done.
        w.keep(&"a".into(), "busy", t(3));
        w.keep(&"c".into(), "busy", t(3));
        w.record(Outcome::Done, t(4), &s);
        assert_eq!(w.step, Step::Release);
        let events = w.record(Outcome::Done, t(5), &s);
        assert_eq!(w.status, Status::Done);
        assert!(events.last().unwrap().detail.contains("0 of 3"));
        assert_eq!(w.target_count(), 6);
    }

    #[test]
    fn retries_back_off_with_jitter_then_fail_and_redrive_resumes_there() {
        let s = WorkflowSettings {
            max_attempts: 4,
            ..WorkflowSettings::default()
        };
        let mut w = wf();
        w.record(Outcome::Done, t(0), &s);
        assert_eq!(w.step, Step::Deregister);
        let mut waits = Vec::new();
        for _ in 0..3 {
            w.record(
                Outcome::Retry {
                    error: "throttled".into(),
                },
                t(10),
                &s,
            );
            let wait = w.not_before.unwrap().duration_since(t(10));
            waits.push(wait.as_secs_f64());
        }
        for (i, wait) in waits.iter().enumerate() {
            let base = f64::from(1u32 << i);
            assert!((0.8 * base..=base).contains(wait), "{waits:?}");
        }
        assert!(!w.due(t(10)));
        let events = w.record(
            Outcome::Retry {
                error: "throttled".into(),
            },
            t(20),
            &s,
        );
        assert_eq!(events[0].event, "failed");
        assert!(matches!(w.status, Status::Failed { .. }));
        assert!(w.is_active() && !w.is_running() && !w.due(t(1000)));
        // Redrive: the same step, afresh.
        let e = w.redrive(t(30)).unwrap();
        assert!(e.detail.contains("deregister"), "{e:?}");
        assert_eq!(
            (w.step, w.attempts, w.is_running()),
            (Step::Deregister, 0, true)
        );
        assert!(w.redrive(t(31)).is_err(), "only a failed one");
    }

    #[test]
    fn a_scale_out_cancels_before_protect_only() {
        let s = WorkflowSettings::default();
        let mut w = wf();
        w.record(Outcome::Done, t(0), &s);
        w.record(Outcome::Done, t(1), &s);
        let e = w.cancel(t(2)).unwrap();
        assert!(e.detail.contains("wait_drained"));
        assert_eq!(w.step, Step::Undo);
        assert_eq!(w.target_count(), 6);
        w.record(Outcome::Done, t(3), &s);
        assert_eq!(w.status, Status::Cancelled);

        let mut w = wf();
        for i in 0..5 {
            w.record(Outcome::Done, t(i), &s);
        }
        assert_eq!(w.step, Step::LowerDesired);
        assert!(w.cancel(t(6)).is_none(), "past protect: runs to its end");
    }

    #[test]
    fn the_state_survives_a_json_round_trip() {
        let s = WorkflowSettings::default();
        let mut w = wf();
        w.record(Outcome::Done, t(0), &s);
        w.victims[0].targets.push(LbTarget {
            group: "tg".into(),
            id: "10.0.0.1".into(),
            port: Some(8080),
        });
        w.protected.push("d".into());
        let json = serde_json::to_string(&w).unwrap();
        let back: Workflow = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w);
    }

    fn hosts() -> Workflow {
        Workflow::hosts(
            "hosts-1".into(),
            "cluster",
            4,
            2,
            vec!["i-1".into(), "i-2".into()],
            vec!["api".into()],
            t(0),
        )
        .0
    }

    #[test]
    fn a_host_removal_drains_then_terminates() {
        let s = WorkflowSettings::default();
        let mut w = hosts();
        assert_eq!(w.kind, Kind::Hosts);
        let mut seen = vec![w.step];
        while w.is_running() {
            w.record(Outcome::Done, t(seen.len() as u64), &s);
            seen.push(w.step);
        }
        assert_eq!(
            seen,
            vec![
                Step::MarkDraining,
                Step::WaitDrained,
                Step::Recheck,
                Step::Terminate,
                Step::Done
            ]
        );
        assert_eq!(w.status, Status::Done);
        assert_eq!(
            w.deregistered_at,
            Some(t(1)),
            "drain starts at mark draining"
        );
        assert_eq!(w.target_count(), 2);
    }

    #[test]
    fn a_host_removal_with_every_host_kept_ends_without_terminating() {
        let s = WorkflowSettings::default();
        let mut w = hosts();
        w.record(Outcome::Done, t(0), &s);
        w.record(Outcome::Done, t(1), &s);
        assert_eq!(w.step, Step::Recheck);
        w.keep(&"i-1".into(), "still holds 2 tasks", t(2));
        w.keep(&"i-2".into(), "gone", t(2));
        w.record(Outcome::Done, t(2), &s);
        assert_eq!((w.step, &w.status), (Step::Done, &Status::Done));
        assert_eq!(w.target_count(), 4);
    }

    #[test]
    fn a_host_removal_is_cancelled_before_terminate_only() {
        let s = WorkflowSettings::default();
        let mut w = hosts();
        for i in 0..3 {
            w.record(Outcome::Done, t(i), &s);
        }
        assert_eq!(w.step, Step::Terminate);
        assert!(w.cancel(t(4)).is_none(), "terminating: runs to its end");
        let mut w = hosts();
        w.record(Outcome::Done, t(0), &s);
        assert!(w.cancel(t(1)).is_some());
        assert_eq!(w.step, Step::Undo);
        w.record(Outcome::Done, t(2), &s);
        assert_eq!(w.status, Status::Cancelled);
    }

    #[test]
    fn a_task_workflow_stored_before_kinds_existed_reads_as_tasks() {
        let mut json = serde_json::to_value(wf()).unwrap();
        let obj = json.as_object_mut().unwrap();
        assert_eq!(obj.remove("kind"), Some(serde_json::json!("tasks")));
        assert!(!obj.contains_key("services"), "empty: not written");
        let back: Workflow = serde_json::from_value(json).unwrap();
        assert_eq!(back, wf());
        let h = hosts();
        let back: Workflow = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            4 => Just(Outcome::Done),
            1 => (0u64..100).prop_map(|s| Outcome::Wait { until: t(1000 + s) }),
            2 => Just(Outcome::Retry { error: "x".into() }),
            1 => Just(Outcome::Fail { error: "y".into() }),
        ]
    }

    proptest! {
        /// Whatever the outcomes, for both kinds: steps only move forward (undo
        /// aside), a failed workflow moved on only through a redrive, the point of no
        /// return (protect, terminate) is never left behind by a cancel, a host removal
        /// never visits a task step (nor a task scale-in a host one), and the count
        /// reported stays between `to` and `from`.
        #[test]
        fn steps_only_move_forward(
            hosts_kind in any::<bool>(),
            outcomes in prop::collection::vec(outcome(), 1..60),
            cancel_at in 0usize..60,
            keep_at in 0usize..60,
        ) {
            let s = WorkflowSettings { max_attempts: 3, ..WorkflowSettings::default() };
            let mut w = if hosts_kind { hosts() } else { wf() };
            let victim = w.victims[0].task.clone();
            let (no_return, foreign) = if hosts_kind {
                (Step::Terminate, vec![Step::Deregister, Step::Protect, Step::LowerDesired, Step::StopTasks, Step::Release])
            } else {
                (Step::Protect, vec![Step::Terminate])
            };
            let mut protect_reached = false;
            for (i, o) in outcomes.into_iter().enumerate() {
                let before = w.step;
                if i == cancel_at {
                    let cancelled = w.cancel(t(i as u64)).is_some();
                    prop_assert!(!cancelled || !protect_reached);
                }
                if i == keep_at {
                    w.keep(&victim, "busy", t(i as u64));
                }
                if !w.is_running() && w.is_active() {
                    w.redrive(t(i as u64)).unwrap();
                }
                let step = w.step;
                w.record(o, t(i as u64), &s);
                if w.step >= no_return && w.step != Step::Undo && w.step != Step::Done {
                    protect_reached = true;
                }
                prop_assert!(!foreign.contains(&w.step), "{:?} in a {:?} workflow", w.step, w.kind);
                prop_assert!(w.step >= step || w.step == Step::Done, "{before:?} → {step:?} → {:?}", w.step);
                prop_assert!(w.target_count() >= w.to && w.target_count() <= w.from);
                if w.status == Status::Cancelled {
                    prop_assert!(!protect_reached);
                }
            }
        }
    }
}
