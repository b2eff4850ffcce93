//! The state of a blue/green host rotation of an ECS cluster: moving its hosts from
//! one Auto Scaling group (`from`, A) to another (`to`, B). Owns the rotation's phases,
//! its progress (hosts removed, skipped, still to go) and what it waits for and why;
//! pure and serializable, so the store keeps it and a restart resumes it. The driver
//! that acts on AWS is `capstan_targets::rotate`.
//!
//! Phases, in order: [`Phase::ScaleUp`] (B raised to A's size), [`Phase::WaitActive`]
//! (B's instances registered ACTIVE), [`Phase::Remove`] (A's hosts removed one at a
//! time through the safe removal), [`Phase::ZeroFrom`] (A set to 0), [`Phase::Done`].

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The most notes a rotation keeps (the oldest go first).
pub const NOTES_KEPT: usize = 200;

/// Where a rotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Raising B's desired capacity to the size to reach.
    ScaleUp,
    /// Waiting for B's instances to be in service with ACTIVE container instances.
    WaitActive,
    /// Removing A's hosts one at a time (drain, then terminate).
    Remove,
    /// Setting A's desired capacity to 0.
    ZeroFrom,
    /// Finished.
    Done,
}

impl Phase {
    /// Its name, as the API and the CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleUp => "scale_up",
            Self::WaitActive => "wait_active",
            Self::Remove => "remove",
            Self::ZeroFrom => "zero_from",
            Self::Done => "done",
        }
    }
}

/// Whether a rotation still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Still moving (or waiting).
    Running,
    /// Stopped on an error it cannot get past; nothing more is done.
    Failed {
        /// What went wrong, with what to do about it.
        error: String,
    },
    /// Finished.
    Done,
}

impl Status {
    /// `running`, `failed` or `done`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Failed { .. } => "failed",
            Self::Done => "done",
        }
    }
}

/// A host of A left in place, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// EC2 instance id.
    pub instance: String,
    /// Why it was not removed.
    pub reason: String,
}

/// Something the rotation did or met, with when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// When.
    pub at: Timestamp,
    /// What.
    pub message: String,
}

/// How far a rotation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Hosts of A removed.
    pub removed: u32,
    /// Hosts of A skipped (left in place, with a reason).
    pub skipped: u32,
    /// Hosts of A to handle in all (removed + skipped + still to go); 0 before the
    /// removal started.
    pub total: u32,
}

impl Progress {
    /// Handled (removed or skipped) over total, 0 to 1; 1 with nothing to handle.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        (f64::from(self.removed) + f64::from(self.skipped)) / f64::from(self.total)
    }
}

/// One rotation. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Unique id.
    pub id: String,
    /// The ECS cluster.
    pub cluster: String,
    /// The group whose hosts go (A).
    pub from: String,
    /// The group whose hosts replace them (B).
    pub to: String,
    /// Where it is.
    pub phase: Phase,
    /// Running, failed or done.
    pub status: Status,
    /// The size B is raised to: max(B's desired, A's instances in service), fixed at
    /// the start.
    pub size: Option<u32>,
    /// Hosts of A to handle in all (set when the removal starts, grown if A gains
    /// instances).
    pub total: u32,
    /// Hosts of A removed (terminated after draining), in order.
    pub removed: Vec<String>,
    /// Hosts of A left in place, with why.
    pub skipped: Vec<Skipped>,
    /// The host being removed now.
    pub current: Option<String>,
    /// The host whose removal was last refused (the next pick tries others first).
    pub last_refused: Option<String>,
    /// What it waits for now, and why (e.g. "host i-1 refused: service api would drop
    /// below 10").
    pub waiting: Option<String>,
    /// What happened, newest last (at most [`NOTES_KEPT`]).
    pub notes: Vec<Note>,
    /// When it was created.
    pub created: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
}

impl Rotation {
    /// A new rotation of `cluster`'s hosts from group `from` to group `to`, at `now`.
    pub fn new(id: &str, cluster: &str, from: &str, to: &str, now: Timestamp) -> Self {
        Self {
            id: id.to_owned(),
            cluster: cluster.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            phase: Phase::ScaleUp,
            status: Status::Running,
            size: None,
            total: 0,
            removed: Vec::new(),
            skipped: Vec::new(),
            current: None,
            last_refused: None,
            waiting: None,
            notes: Vec::new(),
            created: now,
            updated: now,
        }
    }

    /// Checks the names of a rotation asked for, naming the field at fault.
    pub fn check_request(cluster: &str, from: &str, to: &str) -> Result<(), String> {
        for (field, v) in [("cluster", cluster), ("from", from), ("to", to)] {
            if v.trim().is_empty() {
                return Err(format!("{field}: must not be empty"));
            }
        }
        if from == to {
            return Err(format!(
                "from and to are the same group {from:?}: a rotation moves hosts to another group"
            ));
        }
        Ok(())
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }

    /// Whether it rotates `cluster` from `from` to `to`.
    pub fn is_for(&self, cluster: &str, from: &str, to: &str) -> bool {
        self.cluster == cluster && self.from == from && self.to == to
    }

    /// Whether it involves `group` of `cluster` (as A or B).
    pub fn involves(&self, cluster: &str, group: &str) -> bool {
        self.cluster == cluster && (self.from == group || self.to == group)
    }

    /// How far it got.
    pub fn progress(&self) -> Progress {
        let removed = count(self.removed.len());
        let skipped = count(self.skipped.len());
        Progress {
            removed,
            skipped,
            total: self.total.max(removed.saturating_add(skipped)),
        }
    }

    /// Whether `instance` was already handled (removed or skipped).
    pub fn handled(&self, instance: &str) -> bool {
        self.removed.iter().any(|r| r == instance)
            || self.skipped.iter().any(|s| s.instance == instance)
    }

    /// Records a note at `now`.
    pub fn note(&mut self, message: impl Into<String>, now: Timestamp) {
        self.notes.push(Note {
            at: now,
            message: message.into(),
        });
        let excess = self.notes.len().saturating_sub(NOTES_KEPT);
        self.notes.drain(..excess);
        self.updated = now;
    }

    /// Waits for `why`; a new reason is also noted.
    pub fn wait(&mut self, why: impl Into<String>, now: Timestamp) {
        let why = why.into();
        if self.waiting.as_deref() != Some(why.as_str()) {
            self.note(format!("waiting: {why}"), now);
            self.waiting = Some(why);
        }
        self.updated = now;
    }

    /// Moves on to `phase`.
    pub fn enter(&mut self, phase: Phase, now: Timestamp) {
        if self.phase != phase {
            self.note(format!("phase {}", phase.as_str()), now);
        }
        self.phase = phase;
        self.waiting = None;
        if phase == Phase::Done && self.is_running() {
            self.status = Status::Done;
        }
        self.updated = now;
    }

    /// Stops it with `error`.
    pub fn fail(&mut self, error: impl Into<String>, now: Timestamp) {
        let error = error.into();
        self.note(format!("failed: {error}"), now);
        self.status = Status::Failed { error };
        self.waiting = None;
        self.updated = now;
    }

    /// Starts removing `instance`.
    pub fn start_host(&mut self, instance: &str, now: Timestamp) {
        self.current = Some(instance.to_owned());
        self.note(format!("removing host {instance}"), now);
    }

    /// Records `instance` as removed (the current host is cleared if it was it).
    pub fn host_removed(&mut self, instance: &str, how: &str, now: Timestamp) {
        if self.current.as_deref() == Some(instance) {
            self.current = None;
        }
        if self.last_refused.as_deref() == Some(instance) {
            self.last_refused = None;
        }
        if !self.handled(instance) {
            self.removed.push(instance.to_owned());
        }
        self.waiting = None;
        self.note(format!("host {instance} removed: {how}"), now);
    }

    /// Records `instance` as skipped, left in place for `reason` (the current host is
    /// cleared if it was it).
    pub fn skip_host(&mut self, instance: &str, reason: &str, now: Timestamp) {
        if self.current.as_deref() == Some(instance) {
            self.current = None;
        }
        if !self.handled(instance) {
            self.skipped.push(Skipped {
                instance: instance.to_owned(),
                reason: reason.to_owned(),
            });
        }
        self.waiting = None;
        self.note(
            format!("host {instance} skipped, left running: {reason}"),
            now,
        );
    }

    /// The removal of the current host `instance` was refused for `why`: it is put
    /// back (not current any more), others are tried first, and the rotation waits.
    pub fn host_refused(&mut self, instance: &str, why: &str, now: Timestamp) {
        if self.current.as_deref() == Some(instance) {
            self.current = None;
        }
        self.last_refused = Some(instance.to_owned());
        self.wait(format!("host {instance} refused: {why}"), now);
    }

    /// A one-line summary: phase, progress and what it waits for.
    pub fn summary(&self) -> String {
        let p = self.progress();
        let mut s = format!(
            "{} {}: {} removed, {} skipped of {}",
            self.status.as_str(),
            self.phase.as_str(),
            p.removed,
            p.skipped,
            p.total
        );
        if let Some(c) = &self.current {
            s.push_str(&format!(", removing {c}"));
        }
        if let Some(w) = &self.waiting {
            s.push_str(&format!("; waiting: {w}"));
        }
        if let Status::Failed { error } = &self.status {
            s.push_str(&format!("; error: {error}"));
        }
        s
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn rot() -> Rotation {
        Rotation::new("r1", "c", "a", "b", t(0))
    }

    #[test]
    fn a_new_rotation_starts_scaling_up_and_running() {
        let r = rot();
        assert_eq!(r.phase, Phase::ScaleUp);
        assert!(r.is_running());
        assert!(r.is_for("c", "a", "b"));
        assert!(!r.is_for("c", "b", "a"));
        assert!(r.involves("c", "a") && r.involves("c", "b"));
        assert!(!r.involves("c", "z") && !r.involves("d", "a"));
        assert_eq!(
            r.progress(),
            Progress {
                removed: 0,
                skipped: 0,
                total: 0
            }
        );
        assert!((r.progress().fraction() - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(Rotation::check_request("c", "a", "b"), Ok(()));
        assert_eq!(
            Rotation::check_request(" ", "a", "b").unwrap_err(),
            "cluster: must not be empty"
        );
        assert_eq!(
            Rotation::check_request("c", "", "b").unwrap_err(),
            "from: must not be empty"
        );
        assert!(
            Rotation::check_request("c", "a", "a")
                .unwrap_err()
                .contains("same group")
        );
    }

    #[test]
    fn hosts_removed_skipped_and_refused_show_in_progress() {
        let mut r = rot();
        r.enter(Phase::Remove, t(1));
        r.total = 4;
        r.start_host("i-1", t(2));
        assert_eq!(r.current.as_deref(), Some("i-1"));
        r.host_refused("i-1", "service api would drop below 10", t(3));
        assert_eq!(r.current, None);
        assert_eq!(r.last_refused.as_deref(), Some("i-1"));
        assert_eq!(
            r.waiting.as_deref(),
            Some("host i-1 refused: service api would drop below 10")
        );
        r.start_host("i-1", t(4));
        r.host_removed("i-1", "drained and terminated", t(5));
        r.host_removed("i-1", "again", t(6));
        r.skip_host("i-2", "not a container instance", t(7));
        assert_eq!(r.removed, vec!["i-1".to_owned()]);
        assert_eq!(r.skipped.len(), 1);
        assert!(r.handled("i-2") && !r.handled("i-3"));
        let p = r.progress();
        assert_eq!((p.removed, p.skipped, p.total), (1, 1, 4));
        assert!((p.fraction() - 0.5).abs() < 1e-9);
        assert_eq!(r.last_refused, None);
        assert!(r.summary().contains("1 removed, 1 skipped of 4"));
        assert_eq!(r.updated, t(7));
    }

    #[test]
    fn waiting_notes_each_new_reason_once() {
        let mut r = rot();
        r.wait("b: 1 of 4 ACTIVE", t(1));
        r.wait("b: 1 of 4 ACTIVE", t(2));
        r.wait("b: 2 of 4 ACTIVE", t(3));
        assert_eq!(r.notes.len(), 2);
        r.enter(Phase::Remove, t(4));
        assert_eq!(r.waiting, None);
    }

    #[test]
    fn done_and_failed_end_it() {
        let mut r = rot();
        r.enter(Phase::Done, t(1));
        assert_eq!(r.status, Status::Done);
        let mut r = rot();
        r.fail("group a has min 1", t(1));
        assert_eq!(r.status.as_str(), "failed");
        assert!(!r.is_running());
        assert!(r.summary().contains("error: group a has min 1"));
        // Done after failing stays failed.
        r.enter(Phase::Done, t(2));
        assert_eq!(r.status.as_str(), "failed");
    }

    #[test]
    fn notes_are_bounded() {
        let mut r = rot();
        for i in 0..(NOTES_KEPT + 10) {
            r.note(format!("n{i}"), t(1));
        }
        assert_eq!(r.notes.len(), NOTES_KEPT);
        assert_eq!(r.notes[0].message, "n10");
    }

    #[test]
    fn it_round_trips_through_json() {
        let mut r = rot();
        r.size = Some(4);
        r.skip_host("i-9", "why", t(1));
        r.fail("boom", t(2));
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""phase":"scale_up""#), "{text}");
        assert!(text.contains(r#""state":"failed""#), "{text}");
        let back: Rotation = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
