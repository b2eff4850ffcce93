//! Task scale-in protection for one service: which of its tasks capstan holds
//! protected, which protections to set, extend or release, and which calls for that are
//! in flight or waiting to be retried.
//!
//! ECS does not stop a task that has scale-in protection when the service scales in.
//! Applications report their workloads in progress per task; a task with work is
//! protected so a scale-in cannot kill it mid-workload, and released once it has been
//! idle for a while so it can be stopped again. The timeline of one task, with the
//! default [`ProtectionSettings`]:
//!
//! - **enable**: at its first workload, protection is set for `protect_for` (60 min);
//! - **extend**: once a protection has been in force for `extend_at` (50 min), that is
//!   when `expires - now <= protect_for - extend_at`, it is set again for another
//!   `protect_for`, as long as the task still has work (or is still within its idle
//!   grace);
//! - **release**: once the task has had no work for `release_after_idle` (15 s)
//!   without a break, the protection is turned off. Work coming back within that grace
//!   cancels the release.
//!
//! A protection that expires (`now >= expires`) without an extension having succeeded
//! counts as gone: the task is unprotected, and is enabled again if it has work.
//!
//! The manager does no I/O and reads no clock: every method takes `now`. A driver asks
//! [`ProtectionManager::due`] for the calls to make, makes them (UpdateTaskProtection)
//! and feeds each outcome back through [`ProtectionManager::applied`]. A call lists at
//! most [`MAX_TASKS_PER_CALL`] tasks because UpdateTaskProtection accepts at most 10
//! tasks per request; everything due at the same instant is coalesced into as few calls
//! as that allows. A call not yet answered is in flight and is not emitted again; a
//! failed one is retried after a deterministic backoff (1 s, doubling up to 60 s).
//!
//! Several services of one cluster each have a manager, but their calls can share
//! requests: an UpdateTaskProtection request takes up to 10 tasks of any services of its
//! cluster. [`coalesce`] packs the calls the managers emitted at the same moment into
//! as few requests as the limit allows (calls with the same `enable` and
//! `expires_in_minutes` only), and [`split_outcomes`] hands each call back the outcome
//! of its own tasks, so every manager still sees only its own calls.
//!
//! After a restart, [`ProtectionManager::reconcile`] feeds in what GetTaskProtection
//! reports. ECS does not say who set a protection, so capstan cannot tell the ones it
//! set before the restart from ones the application set itself: it **adopts every
//! protection it finds**. A protected task with work is held and extended on schedule
//! from its expiry; a protected task without work starts its idle grace and is released
//! after `release_after_idle`. An application that manages its own protections should
//! therefore not be managed by capstan as well.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use crate::clock::{add, sub};
use crate::model::TaskId;

/// The most tasks one protection call lists (UpdateTaskProtection's limit per request).
pub const MAX_TASKS_PER_CALL: usize = 10;

/// The longest protection ECS accepts, in minutes (48 h).
pub const MAX_PROTECTION_MINUTES: u32 = 2880;

/// The longest accepted `release_after_idle`.
pub const MAX_RELEASE_AFTER_IDLE: Duration = Duration::from_secs(24 * 3600);

/// The wait before the first retry of a failed call; each further failure doubles it.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between retries of a failed call.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// How long protections last and when they are extended and released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectionSettings {
    /// How long each enable protects a task: a whole number of minutes, 1 to 2880.
    pub protect_for: Duration,
    /// How long a protection is in force before it is extended: more than zero and
    /// less than `protect_for`.
    pub extend_at: Duration,
    /// How long a task must be idle without a break before its protection is released:
    /// more than zero, at most 24 h.
    pub release_after_idle: Duration,
}

impl Default for ProtectionSettings {
    /// 60 min protections, extended after 50 min, released after 15 s idle.
    fn default() -> Self {
        Self {
            protect_for: Duration::from_secs(60 * 60),
            extend_at: Duration::from_secs(50 * 60),
            release_after_idle: Duration::from_secs(15),
        }
    }
}

impl ProtectionSettings {
    /// Checks the settings; the error names the field and says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let pf = self.protect_for;
        let secs = pf.as_secs();
        if pf.subsec_nanos() != 0
            || !secs.is_multiple_of(60)
            || secs == 0
            || secs / 60 > u64::from(MAX_PROTECTION_MINUTES)
        {
            return Err(format!(
                "protect_for must be a whole number of minutes from 1 to \
                 {MAX_PROTECTION_MINUTES}, got {pf:?}"
            ));
        }
        if self.extend_at.is_zero() || self.extend_at >= pf {
            return Err(format!(
                "extend_at must be more than zero and less than protect_for ({pf:?}), got {:?}",
                self.extend_at
            ));
        }
        if self.release_after_idle.is_zero() || self.release_after_idle > MAX_RELEASE_AFTER_IDLE {
            return Err(format!(
                "release_after_idle must be more than zero and at most \
                 {MAX_RELEASE_AFTER_IDLE:?}, got {:?}",
                self.release_after_idle
            ));
        }
        Ok(())
    }

    /// `protect_for` in whole minutes (valid settings only; saturates otherwise).
    fn minutes(&self) -> u32 {
        u32::try_from(self.protect_for.as_secs() / 60).unwrap_or(u32::MAX)
    }

    /// How long before its expiry a protection is due for extension.
    fn extend_before_expiry(&self) -> Duration {
        self.protect_for.saturating_sub(self.extend_at)
    }
}

/// One UpdateTaskProtection call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionCall {
    /// The manager's number for this call, unique per manager: an answer is matched to
    /// the tasks still waiting for this very call, so a late or repeated answer (or one
    /// for a task forgotten and seen again) changes nothing.
    pub id: u64,
    /// `true` to set (or extend) protection, `false` to release it.
    pub enable: bool,
    /// How long the protection lasts, in minutes: `Some` for an enable, `None` for a
    /// release.
    pub expires_in_minutes: Option<u32>,
    /// The tasks, 1 to [`MAX_TASKS_PER_CALL`] of them, sorted by id.
    pub tasks: Vec<TaskId>,
}

/// What a call did for one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// An enable took effect: the task is protected until `expires_at` (the expiry ECS
    /// reports).
    Enabled {
        /// When the protection ends unless extended.
        expires_at: Timestamp,
    },
    /// A release took effect: the task is no longer protected.
    Released,
    /// ECS no longer knows the task (TASK_NOT_VALID: stopped or gone). It is forgotten.
    Gone,
    /// The call failed for this task; it is retried after a backoff.
    Failed(String),
}

/// The answer to a whole call: `Ok` with each task's outcome, or `Err` when the whole
/// call failed (every task is then retried after a backoff). A task of the call missing
/// from the list, or given an outcome of the wrong kind (`Released` for an enable,
/// `Enabled` for a release), counts as failed.
pub type CallOutcome = Result<Vec<(TaskId, TaskOutcome)>, String>;

/// Counts for metrics. The `pending_*` gauges are taken at the latest `now` the manager
/// was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtectionStats {
    /// Tasks the manager holds protected.
    pub protected: usize,
    /// Tasks with an enable (or extension) due, in flight or waiting to be retried.
    pub pending_enable: usize,
    /// Tasks with a release due, in flight or waiting to be retried.
    pub pending_release: usize,
    /// Protections set on tasks that had none (successful enables).
    pub enables: u64,
    /// Protections extended (successful enables of a held protection).
    pub extensions: u64,
    /// Protections released.
    pub releases: u64,
    /// Tasks reported gone (TASK_NOT_VALID) and forgotten.
    pub gone: u64,
    /// Failed task outcomes (each task of a failed call counts once).
    pub failures: u64,
}

/// A call emitted for a task and not yet answered.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    call: u64,
    enable: bool,
    /// The task was held when the enable was emitted.
    extension: bool,
}

/// What the manager knows of one task.
#[derive(Debug, Clone)]
struct Entry {
    /// Workloads in progress.
    work: u32,
    /// When `work` last became 0 (meaningful only while it is 0).
    idle_since: Timestamp,
    /// Expiry of the protection held, if any.
    held: Option<Timestamp>,
    in_flight: Option<InFlight>,
    /// After a failure: no call for this task before this instant.
    retry_at: Option<Timestamp>,
    /// Failures since the last success (sets the backoff).
    consecutive_failures: u32,
}

impl Entry {
    fn new(now: Timestamp, work: u32) -> Self {
        Self {
            work,
            idle_since: now,
            held: None,
            in_flight: None,
            retry_at: None,
            consecutive_failures: 0,
        }
    }

    fn set_work(&mut self, now: Timestamp, work: u32) {
        if work == 0 && self.work > 0 {
            self.idle_since = now;
        }
        self.work = work;
    }

    /// The protection held at `now`, if it has not expired.
    fn held_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.held.filter(|&h| h > now)
    }
}

/// What a task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Enable,
    Release,
}

/// The protection state of the tasks of one service; see the module documentation.
#[derive(Debug, Clone)]
pub struct ProtectionManager {
    settings: ProtectionSettings,
    minutes: u32,
    /// The id of the next call emitted.
    next_call: u64,
    tasks: BTreeMap<TaskId, Entry>,
    /// Tasks reported gone, ignored until an observation no longer lists them.
    tombstones: BTreeSet<TaskId>,
    /// Tasks whose protection must not be released for now (see
    /// [`ProtectionManager::set_pinned`]).
    pinned: BTreeSet<TaskId>,
    /// The latest `now` given (for [`ProtectionManager::stats`]).
    last_now: Timestamp,
    enables: u64,
    extensions: u64,
    releases: u64,
    gone: u64,
    failures: u64,
}

impl ProtectionManager {
    /// A manager with no tasks. Fails (naming the field) if the settings are invalid.
    pub fn new(settings: ProtectionSettings) -> Result<Self, String> {
        settings.validate()?;
        Ok(Self {
            settings,
            minutes: settings.minutes(),
            next_call: 0,
            tasks: BTreeMap::new(),
            tombstones: BTreeSet::new(),
            pinned: BTreeSet::new(),
            last_now: Timestamp::MIN,
            enables: 0,
            extensions: 0,
            releases: 0,
            gone: 0,
            failures: 0,
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &ProtectionSettings {
        &self.settings
    }

    /// Tasks whose protection must not be released until the next call (e.g. while a
    /// scale-in relies on them staying protected): a release they need waits, nothing
    /// else changes (no enable is made for them, their idle grace keeps running), and
    /// a release due meanwhile is made once they are no longer pinned.
    pub fn set_pinned(&mut self, tasks: BTreeSet<TaskId>) {
        self.pinned = tasks;
    }

    fn touch(&mut self, now: Timestamp) {
        self.last_now = self.last_now.max(now);
    }

    /// Takes the full set of running tasks of the service with their workloads in
    /// progress. Tasks not listed are gone and forgotten (no call is made for them).
    /// A task listed twice keeps its last count. A task reported [`TaskOutcome::Gone`]
    /// is ignored for as long as observations still list it.
    pub fn observe(&mut self, now: Timestamp, tasks: impl IntoIterator<Item = (TaskId, u32)>) {
        self.touch(now);
        let mut seen = BTreeSet::new();
        for (task, work) in tasks {
            if !self.tombstones.contains(&task) {
                self.set_one(now, &task, work);
            }
            seen.insert(task);
        }
        self.tasks.retain(|t, _| seen.contains(t));
        self.tombstones.retain(|t| seen.contains(t));
    }

    /// Takes a change of one task's workloads in progress between observations. An
    /// unknown task is added.
    pub fn set_work(&mut self, now: Timestamp, task: &TaskId, workloads: u32) {
        self.touch(now);
        if !self.tombstones.contains(task) {
            self.set_one(now, task, workloads);
        }
    }

    fn set_one(&mut self, now: Timestamp, task: &TaskId, work: u32) {
        match self.tasks.get_mut(task) {
            Some(e) => e.set_work(now, work),
            None => {
                self.tasks.insert(task.clone(), Entry::new(now, work));
            }
        }
    }

    /// Takes what GetTaskProtection reports for a task at start-up (`None`: not
    /// protected). Call it after the first [`observe`](Self::observe) so the task's work
    /// is known; an unknown task is added with no work.
    ///
    /// Every protection found is adopted, whoever set it (see the module
    /// documentation): with work, the task is held and extended on schedule from the
    /// reported expiry; without work, its idle grace starts now and it is released
    /// after `release_after_idle`. An unprotected task with work gets an enable.
    pub fn reconcile(&mut self, now: Timestamp, task: &TaskId, protected_until: Option<Timestamp>) {
        self.touch(now);
        if self.tombstones.contains(task) {
            return;
        }
        let e = self
            .tasks
            .entry(task.clone())
            .or_insert_with(|| Entry::new(now, 0));
        e.held = protected_until.filter(|&h| h > now);
        if e.held.is_some() && e.work == 0 {
            e.idle_since = now;
        }
    }

    /// The instant a held protection expiring at `expires` is due for extension.
    fn extend_time(&self, expires: Timestamp) -> Timestamp {
        sub(expires, self.settings.extend_before_expiry())
    }

    /// The instant an idle task's release is due.
    fn release_time(&self, e: &Entry) -> Timestamp {
        add(e.idle_since, self.settings.release_after_idle)
    }

    /// What the task needs at `now`, ignoring calls in flight and backoffs.
    fn need(&self, e: &Entry, now: Timestamp) -> Option<Need> {
        match e.held_at(now) {
            None => (e.work > 0).then_some(Need::Enable),
            Some(expires) => {
                if e.work == 0 && self.release_time(e) <= now {
                    Some(Need::Release)
                } else if self.extend_time(expires) <= now {
                    Some(Need::Enable)
                } else {
                    None
                }
            }
        }
    }

    /// The earliest instant the task will need something if nothing changes (possibly
    /// before `now`: it needs it already), ignoring calls in flight and backoffs.
    /// Consistent with [`need`](Self::need): `need(e, now)` is `Some` exactly when this
    /// is `Some(t)` with `t <= now`.
    fn need_time(&self, e: &Entry, now: Timestamp) -> Option<Timestamp> {
        match e.held_at(now) {
            None => (e.work > 0).then_some(now),
            Some(expires) => {
                let extend = self.extend_time(expires);
                Some(if e.work == 0 {
                    extend.min(self.release_time(e))
                } else {
                    extend
                })
            }
        }
    }

    /// The calls to make now: all enables due (sorted by task id, in calls of at most
    /// [`MAX_TASKS_PER_CALL`] tasks), then all releases due, likewise. The tasks of the
    /// calls returned are in flight until [`applied`](Self::applied) answers them and
    /// are not returned again before that; a task waiting out a retry backoff is not
    /// returned before its backoff ends. Protections that have expired are dropped.
    pub fn due(&mut self, now: Timestamp) -> Vec<ProtectionCall> {
        self.touch(now);
        let mut enable = Vec::new();
        let mut release = Vec::new();
        for (task, e) in &self.tasks {
            if e.in_flight.is_some() || e.retry_at.is_some_and(|r| r > now) {
                continue;
            }
            match self.need(e, now) {
                Some(Need::Enable) => enable.push(task.clone()),
                Some(Need::Release) if !self.pinned.contains(task) => {
                    release.push(task.clone());
                }
                Some(Need::Release) | None => {}
            }
        }
        for e in self.tasks.values_mut() {
            if e.held.is_some_and(|h| h <= now) {
                e.held = None;
            }
        }
        let mut out = Vec::new();
        for (tasks, is_enable) in [(enable, true), (release, false)] {
            for chunk in tasks.chunks(MAX_TASKS_PER_CALL) {
                let id = self.next_call;
                self.next_call += 1;
                for task in chunk {
                    if let Some(e) = self.tasks.get_mut(task) {
                        e.in_flight = Some(InFlight {
                            call: id,
                            enable: is_enable,
                            extension: is_enable && e.held.is_some(),
                        });
                    }
                }
                out.push(ProtectionCall {
                    id,
                    enable: is_enable,
                    expires_in_minutes: is_enable.then_some(self.minutes),
                    tasks: chunk.to_vec(),
                });
            }
        }
        out
    }

    /// Takes the outcome of a call returned by [`due`](Self::due). Only tasks still
    /// waiting for this call (same [`ProtectionCall::id`]) are affected: answering a
    /// call twice does nothing the second time, and tasks forgotten meanwhile are
    /// skipped.
    pub fn applied(&mut self, now: Timestamp, call: &ProtectionCall, outcome: CallOutcome) {
        self.touch(now);
        let (mut per_task, whole_error) = match outcome {
            Ok(list) => (list.into_iter().collect::<HashMap<_, _>>(), None),
            Err(message) => (HashMap::new(), Some(message)),
        };
        for task in &call.tasks {
            let Some(e) = self.tasks.get_mut(task) else {
                continue;
            };
            let Some(flight) = e.in_flight.filter(|f| f.call == call.id) else {
                continue;
            };
            e.in_flight = None;
            let result = match (whole_error.as_ref(), per_task.remove(task)) {
                (Some(_), _) | (None, None) | (None, Some(TaskOutcome::Failed(_))) => None,
                (None, Some(TaskOutcome::Enabled { expires_at })) if flight.enable => {
                    Some(Some(expires_at))
                }
                (None, Some(TaskOutcome::Released)) if !flight.enable => Some(None),
                (None, Some(TaskOutcome::Gone)) => {
                    self.tasks.remove(task);
                    self.tombstones.insert(task.clone());
                    self.gone += 1;
                    continue;
                }
                (None, Some(_)) => None, // an outcome of the wrong kind
            };
            match result {
                Some(held) => {
                    e.held = held.filter(|&h| h > now);
                    e.retry_at = None;
                    e.consecutive_failures = 0;
                    if !flight.enable {
                        self.releases += 1;
                    } else if flight.extension {
                        self.extensions += 1;
                    } else {
                        self.enables += 1;
                    }
                }
                None => {
                    e.consecutive_failures = e.consecutive_failures.saturating_add(1);
                    e.retry_at = Some(add(now, backoff(e.consecutive_failures)));
                    self.failures += 1;
                }
            }
        }
    }

    /// The expiry of the protection the manager holds for `task`, if any. A task held
    /// is one with live work or within its idle grace: the scale-in workflow must not
    /// release it. Expired protections are dropped by every call that takes `now`, so
    /// after [`due`](Self::due) no expiry in the past is reported.
    pub fn holds(&self, task: &TaskId) -> Option<Timestamp> {
        self.tasks.get(task).and_then(|e| e.held)
    }

    /// The earliest instant at or after `now` at which a call will become due if
    /// nothing changes (an extension, a release, the end of a retry backoff); `now`
    /// itself if something is due already. `None` if nothing is scheduled (calls in
    /// flight wait for their answer).
    pub fn next_wakeup(&self, now: Timestamp) -> Option<Timestamp> {
        self.tasks
            .iter()
            .filter(|(_, e)| e.in_flight.is_none())
            .filter(|(task, e)| {
                !(self.pinned.contains(*task) && self.need(e, now) == Some(Need::Release))
            })
            .filter_map(|(_, e)| {
                let t = self.need_time(e, now)?;
                let t = match e.retry_at {
                    Some(r) => t.max(r),
                    None => t,
                };
                // An idle task whose protection expires before the backoff ends needs
                // nothing any more.
                if e.work == 0 && e.held_at(now).is_some_and(|h| t >= h) {
                    return None;
                }
                Some(t.max(now))
            })
            .min()
    }

    /// Counts for metrics (gauges at the latest `now` given).
    pub fn stats(&self) -> ProtectionStats {
        let now = self.last_now;
        let mut s = ProtectionStats {
            enables: self.enables,
            extensions: self.extensions,
            releases: self.releases,
            gone: self.gone,
            failures: self.failures,
            ..ProtectionStats::default()
        };
        for e in self.tasks.values() {
            if e.held_at(now).is_some() {
                s.protected += 1;
            }
            let need = match e.in_flight {
                Some(f) if f.enable => Some(Need::Enable),
                Some(_) => Some(Need::Release),
                None => self.need(e, now),
            };
            match need {
                Some(Need::Enable) => s.pending_enable += 1,
                Some(Need::Release) => s.pending_release += 1,
                None => {}
            }
        }
        s
    }
}

/// One UpdateTaskProtection request carrying the tasks of one or more
/// [`ProtectionCall`]s (of one or several managers) with the same parameters; see
/// [`coalesce`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedCall {
    /// `true` to set (or extend) protection, `false` to release it.
    pub enable: bool,
    /// How long the protection lasts, in minutes (`None` for a release).
    pub expires_in_minutes: Option<u32>,
    /// The tasks, 1 to [`MAX_TASKS_PER_CALL`], each with the position of the call it
    /// came from in the slice given to [`coalesce`].
    pub tasks: Vec<(usize, TaskId)>,
}

/// Packs `calls` (made at the same moment, for tasks of one cluster) into as few
/// requests as [`MAX_TASKS_PER_CALL`] allows: calls with the same `enable` and
/// `expires_in_minutes` share requests, so each such group takes ⌈tasks / 10⌉ of them.
/// Enables come first (shortest protection first), then releases, as one manager's
/// [`ProtectionManager::due`] orders them; within a group, tasks keep the order of the
/// calls and of the tasks in each call. Every task of every call is in exactly one
/// request. For the calls of one manager the requests list the same tasks as its calls.
pub fn coalesce(calls: &[&ProtectionCall]) -> Vec<MergedCall> {
    // Keyed by (is a release, minutes): enables first, shortest first.
    type Group = (bool, Option<u32>);
    let mut groups: BTreeMap<Group, Vec<(usize, TaskId)>> = BTreeMap::new();
    for (i, call) in calls.iter().enumerate() {
        let minutes = if call.enable {
            call.expires_in_minutes
        } else {
            None
        };
        groups
            .entry((!call.enable, minutes))
            .or_default()
            .extend(call.tasks.iter().map(|t| (i, t.clone())));
    }
    let mut out = Vec::new();
    for ((release, minutes), tasks) in groups {
        for chunk in tasks.chunks(MAX_TASKS_PER_CALL) {
            out.push(MergedCall {
                enable: !release,
                expires_in_minutes: minutes,
                tasks: chunk.to_vec(),
            });
        }
    }
    out
}

/// Hands each of `calls` the outcome of its own tasks, from `outcomes`, the answers to
/// `merged` (what [`coalesce`] made of `calls`, answered in the same order; an answer
/// missing at the end counts as a failed request). A call whose every task was in
/// failed requests gets that failure as a whole (`Err`, the first request's message);
/// otherwise each task gets its outcome in its request, a task of a failed request
/// [`TaskOutcome::Failed`] with that request's message, and a task its request's answer
/// does not list is left out (the manager counts it as failed).
pub fn split_outcomes(
    calls: &[&ProtectionCall],
    merged: &[MergedCall],
    outcomes: Vec<CallOutcome>,
) -> Vec<CallOutcome> {
    let mut lists: Vec<Vec<(TaskId, TaskOutcome)>> = vec![Vec::new(); calls.len()];
    let mut whole_error: Vec<Option<String>> = vec![None; calls.len()];
    let mut answered: Vec<usize> = vec![0; calls.len()];
    let mut outcomes = outcomes.into_iter();
    for request in merged {
        let outcome = outcomes
            .next()
            .unwrap_or_else(|| Err("UpdateTaskProtection: no answer to this request".to_owned()));
        match outcome {
            Ok(list) => {
                let by_task: HashMap<TaskId, TaskOutcome> = list.into_iter().collect();
                for (i, task) in &request.tasks {
                    let Some(slot) = lists.get_mut(*i) else {
                        continue;
                    };
                    answered[*i] += 1;
                    // A task named twice (two calls for the same task) gets the one
                    // answer twice.
                    if let Some(o) = by_task.get(task) {
                        slot.push((task.clone(), o.clone()));
                    }
                }
            }
            Err(message) => {
                for (i, task) in &request.tasks {
                    let Some(slot) = lists.get_mut(*i) else {
                        continue;
                    };
                    slot.push((task.clone(), TaskOutcome::Failed(message.clone())));
                    if let Some(first) = whole_error.get_mut(*i) {
                        first.get_or_insert_with(|| message.clone());
                    }
                }
            }
        }
    }
    lists
        .into_iter()
        .zip(whole_error)
        .zip(answered)
        .map(|((list, error), answered)| match error {
            Some(message) if answered == 0 => Err(message),
            _ => Ok(list),
        })
        .collect()
}

/// The wait after the `n`th consecutive failure (n >= 1): 1 s, 2 s, 4 s ... up to 60 s.
fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(6);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    /// `t0 + s` seconds.
    fn at(s: u64) -> Timestamp {
        add(t0(), Duration::from_secs(s))
    }

    fn id(s: &str) -> TaskId {
        TaskId::from(s)
    }

    fn manager() -> ProtectionManager {
        ProtectionManager::new(ProtectionSettings::default()).unwrap()
    }

    fn enabled(call: &ProtectionCall, expires_at: Timestamp) -> CallOutcome {
        Ok(call
            .tasks
            .iter()
            .map(|t| (t.clone(), TaskOutcome::Enabled { expires_at }))
            .collect())
    }

    fn released(call: &ProtectionCall) -> CallOutcome {
        Ok(call
            .tasks
            .iter()
            .map(|t| (t.clone(), TaskOutcome::Released))
            .collect())
    }

    /// Protects `a` at `at(0)` (work 1), answered at once with a 60 min expiry.
    fn protected_a() -> ProtectionManager {
        let mut m = manager();
        m.set_work(at(0), &id("a"), 1);
        let calls = m.due(at(0));
        assert_eq!(calls.len(), 1);
        m.applied(at(0), &calls[0], enabled(&calls[0], at(60 * MIN)));
        m
    }

    #[test]
    fn first_workload_is_enabled_extended_at_50_min_and_released_15_s_after_idle() {
        let mut m = manager();
        let a = id("a");
        m.set_work(at(0), &a, 1);
        let calls = m.due(at(0));
        assert_eq!(
            calls,
            vec![ProtectionCall {
                id: 0,
                enable: true,
                expires_in_minutes: Some(60),
                tasks: vec![a.clone()],
            }]
        );
        // In flight: not emitted again.
        assert!(m.due(at(1)).is_empty());
        assert_eq!(m.holds(&a), None);
        assert_eq!(m.stats().pending_enable, 1);
        m.applied(at(1), &calls[0], enabled(&calls[0], at(1 + 60 * MIN)));
        assert_eq!(m.holds(&a), Some(at(1 + 60 * MIN)));
        assert_eq!(m.stats().protected, 1);
        assert_eq!(m.stats().enables, 1);

        // Nothing until 50 min after the protection was set.
        assert_eq!(m.next_wakeup(at(1)), Some(at(1 + 50 * MIN)));
        assert!(m.due(at(50 * MIN)).is_empty());
        let ext = m.due(at(1 + 50 * MIN));
        assert_eq!(ext.len(), 1);
        assert!(ext[0].enable);
        assert_eq!(ext[0].expires_in_minutes, Some(60));
        assert_eq!(ext[0].tasks, vec![a.clone()]);
        let t = 1 + 50 * MIN;
        m.applied(at(t), &ext[0], enabled(&ext[0], at(t + 60 * MIN)));
        assert_eq!(m.holds(&a), Some(at(t + 60 * MIN)));
        let s = m.stats();
        assert_eq!((s.enables, s.extensions), (1, 1));

        // Idle: released 15 s later, not at 14 s.
        let idle = t + 100;
        m.set_work(at(idle), &a, 0);
        assert_eq!(m.next_wakeup(at(idle)), Some(at(idle + 15)));
        assert!(m.due(at(idle + 14)).is_empty());
        let rel = m.due(at(idle + 15));
        assert_eq!(rel.len(), 1);
        assert!(!rel[0].enable);
        assert_eq!(rel[0].expires_in_minutes, None);
        assert_eq!(rel[0].tasks, vec![a.clone()]);
        assert_eq!(m.stats().pending_release, 1);
        m.applied(at(idle + 16), &rel[0], released(&rel[0]));
        assert_eq!(m.holds(&a), None);
        assert_eq!(m.stats().releases, 1);
        assert_eq!(m.stats().protected, 0);
        assert!(m.due(at(idle + 1000)).is_empty());
        assert_eq!(m.next_wakeup(at(idle + 1000)), None);
    }

    #[test]
    fn a_pinned_task_is_not_released_until_unpinned() {
        let mut m = protected_a();
        let a = id("a");
        m.set_pinned([a.clone()].into());
        m.set_work(at(100), &a, 0);
        assert!(m.due(at(200)).is_empty(), "pinned: no release");
        assert_eq!(
            m.next_wakeup(at(200)),
            None,
            "nothing scheduled while pinned"
        );
        assert_eq!(m.holds(&a), Some(at(60 * MIN)));
        m.set_pinned(BTreeSet::new());
        let rel = m.due(at(201));
        assert_eq!(rel.len(), 1, "released once unpinned");
        assert!(!rel[0].enable);
        // Pinning a task the manager does not hold enables nothing.
        let mut m = manager();
        m.set_pinned([id("b")].into());
        m.observe(at(0), [(id("b"), 0)]);
        assert!(m.due(at(0)).is_empty());
    }

    #[test]
    fn work_returning_within_the_grace_cancels_the_release() {
        let mut m = protected_a();
        let a = id("a");
        m.set_work(at(100), &a, 0);
        m.set_work(at(110), &a, 2);
        assert!(m.due(at(115)).is_empty());
        assert!(m.due(at(200)).is_empty());
        assert_eq!(m.holds(&a), Some(at(60 * MIN)));
        // Next is the extension, not a release.
        assert_eq!(m.next_wakeup(at(200)), Some(at(50 * MIN)));
        // Idle again: the grace starts over from the new idle instant.
        m.observe(at(300), [(a.clone(), 0)]);
        assert!(m.due(at(314)).is_empty());
        assert_eq!(m.due(at(315)).len(), 1);
    }

    #[test]
    fn an_idle_task_within_its_grace_is_still_extended() {
        let mut m = protected_a();
        let a = id("a");
        m.set_work(at(50 * MIN - 5), &a, 0);
        let calls = m.due(at(50 * MIN));
        assert_eq!(calls.len(), 1);
        assert!(calls[0].enable);
        // The release follows once the grace is over and the extension is answered.
        m.applied(at(50 * MIN), &calls[0], enabled(&calls[0], at(110 * MIN)));
        let rel = m.due(at(50 * MIN + 10));
        assert_eq!(rel.len(), 1);
        assert!(!rel[0].enable);
    }

    #[test]
    fn twenty_five_tasks_make_three_calls_retried_after_backoff_and_gone_forgotten() {
        let mut m = manager();
        let ids: Vec<TaskId> = (0..25).map(|i| id(&format!("t{i:02}"))).collect();
        m.observe(at(0), ids.iter().map(|t| (t.clone(), 1)));
        let calls = m.due(at(0));
        let sizes: Vec<usize> = calls.iter().map(|c| c.tasks.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert!(
            calls
                .iter()
                .all(|c| c.enable && c.expires_in_minutes == Some(60))
        );
        let all: Vec<TaskId> = calls.iter().flat_map(|c| c.tasks.clone()).collect();
        assert_eq!(all, ids, "sorted by task id, each task once");
        // In flight: nothing repeated, whatever the time.
        assert!(m.due(at(1)).is_empty());
        assert!(m.due(at(1000)).is_empty());
        assert_eq!(m.next_wakeup(at(1)), None);

        // First call succeeds.
        m.applied(at(1), &calls[0], enabled(&calls[0], at(60 * MIN)));
        assert!(m.due(at(1)).is_empty());

        // Second call fails as a whole: retried after 1 s, then 2 s.
        m.applied(at(2), &calls[1], Err("throttled".into()));
        assert_eq!(m.stats().failures, 10);
        assert_eq!(m.next_wakeup(at(2)), Some(at(3)));
        assert!(m.due(at(2)).is_empty());
        let retry = m.due(at(3));
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].tasks, calls[1].tasks);
        assert_ne!(retry[0].id, calls[1].id);
        m.applied(at(3), &retry[0], Err("throttled".into()));
        assert!(m.due(at(4)).is_empty());
        let retry2 = m.due(at(5));
        assert_eq!(retry2.len(), 1);
        // A late answer to the old call changes nothing.
        m.applied(at(5), &calls[1], enabled(&calls[1], at(60 * MIN)));
        assert_eq!(m.holds(&calls[1].tasks[0]), None);
        m.applied(at(5), &retry2[0], enabled(&retry2[0], at(60 * MIN)));
        assert_eq!(m.holds(&calls[1].tasks[0]), Some(at(60 * MIN)));

        // Third call: one gone, one failed, the rest fine.
        let third = &calls[2];
        let mut outcome: Vec<(TaskId, TaskOutcome)> = third
            .tasks
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    TaskOutcome::Enabled {
                        expires_at: at(60 * MIN),
                    },
                )
            })
            .collect();
        outcome[0].1 = TaskOutcome::Gone;
        outcome[1].1 = TaskOutcome::Failed("internal error".into());
        m.applied(at(6), third, Ok(outcome));
        let s = m.stats();
        assert_eq!(s.gone, 1);
        assert_eq!(s.failures, 21);
        assert_eq!(s.enables, 23);
        assert_eq!(s.protected, 23);
        assert_eq!(m.holds(&third.tasks[0]), None);
        // The gone task is not enabled again while the listing still shows it.
        m.observe(at(7), ids.iter().map(|t| (t.clone(), 1)));
        let again = m.due(at(7));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].tasks, vec![third.tasks[1].clone()]);
    }

    #[test]
    fn missing_or_mismatched_outcomes_count_as_failures() {
        let mut m = manager();
        m.observe(at(0), [(id("a"), 1), (id("b"), 1)]);
        let calls = m.due(at(0));
        m.applied(at(0), &calls[0], Ok(vec![(id("a"), TaskOutcome::Released)]));
        assert_eq!(m.stats().failures, 2);
        assert_eq!(m.holds(&id("a")), None);
        assert_eq!(m.due(at(1))[0].tasks, vec![id("a"), id("b")]);
    }

    #[test]
    fn observe_forgets_absent_tasks_and_late_answers_for_them() {
        let mut m = manager();
        m.observe(at(0), [(id("a"), 1), (id("b"), 1)]);
        let calls = m.due(at(0));
        m.observe(at(1), [(id("b"), 1)]);
        m.applied(at(2), &calls[0], enabled(&calls[0], at(60 * MIN)));
        assert_eq!(m.holds(&id("a")), None);
        assert_eq!(m.holds(&id("b")), Some(at(60 * MIN)));
        assert_eq!(m.stats().enables, 1);
    }

    #[test]
    fn an_expired_protection_counts_as_unprotected() {
        let mut m = protected_a();
        let a = id("a");
        let ext = m.due(at(50 * MIN));
        assert_eq!(ext.len(), 1);
        // No answer until after the expiry.
        assert!(m.due(at(60 * MIN)).is_empty());
        assert_eq!(m.holds(&a), None);
        assert_eq!(m.stats().protected, 0);
        m.applied(at(60 * MIN), &ext[0], Err("timeout".into()));
        let again = m.due(at(60 * MIN + 1));
        assert_eq!(again.len(), 1);
        m.applied(
            at(60 * MIN + 1),
            &again[0],
            enabled(&again[0], at(120 * MIN)),
        );
        let s = m.stats();
        // The second call set a protection on an unprotected task: an enable.
        assert_eq!((s.enables, s.extensions), (2, 0));

        // An idle task whose protection expires needs no release.
        let mut m = protected_a();
        m.set_work(at(10), &a, 0);
        let rel = m.due(at(25));
        assert_eq!(rel.len(), 1);
        m.applied(at(25), &rel[0], Err("throttled".into()));
        // Expired before the retry is answered: nothing to do any more.
        assert!(m.due(at(60 * MIN)).is_empty());
        assert_eq!(m.next_wakeup(at(60 * MIN)), None);
    }

    #[test]
    fn reconcile_adopts_protections_and_enables_unprotected_work() {
        let mut m = manager();
        let (a, b, c, d, e) = (id("a"), id("b"), id("c"), id("d"), id("e"));
        m.observe(
            at(0),
            [
                (a.clone(), 1),
                (b.clone(), 0),
                (c.clone(), 2),
                (d.clone(), 1),
                (e.clone(), 0),
            ],
        );
        // a: protected with work: adopted, extended 10 min before its expiry.
        m.reconcile(at(0), &a, Some(at(30 * MIN)));
        // b: protected, no work: released after the idle grace.
        m.reconcile(at(0), &b, Some(at(45 * MIN)));
        // c: unprotected with work: enabled.
        m.reconcile(at(0), &c, None);
        // d: a protection already expired counts as none.
        m.reconcile(at(0), &d, Some(at(0)));
        // e: unprotected and idle: nothing.
        m.reconcile(at(0), &e, None);
        assert_eq!(m.holds(&a), Some(at(30 * MIN)));
        assert_eq!(m.holds(&b), Some(at(45 * MIN)));
        assert_eq!(m.holds(&d), None);

        let calls = m.due(at(0));
        assert_eq!(calls.len(), 1);
        assert!(calls[0].enable);
        assert_eq!(calls[0].tasks, vec![c.clone(), d.clone()]);
        m.applied(at(0), &calls[0], enabled(&calls[0], at(60 * MIN)));

        assert!(m.due(at(14)).is_empty());
        let rel = m.due(at(15));
        assert_eq!(rel.len(), 1);
        assert!(!rel[0].enable);
        assert_eq!(rel[0].tasks, vec![b.clone()]);
        m.applied(at(15), &rel[0], released(&rel[0]));

        assert_eq!(m.next_wakeup(at(15)), Some(at(20 * MIN)));
        let ext = m.due(at(20 * MIN));
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].tasks, vec![a.clone()]);
        m.applied(at(20 * MIN), &ext[0], enabled(&ext[0], at(80 * MIN)));
        let s = m.stats();
        assert_eq!((s.enables, s.extensions, s.releases), (2, 1, 1));
    }

    #[test]
    fn reconcile_of_an_unknown_task_adds_it_idle() {
        let mut m = manager();
        m.reconcile(at(0), &id("x"), Some(at(30 * MIN)));
        assert_eq!(m.holds(&id("x")), Some(at(30 * MIN)));
        assert_eq!(m.due(at(15)).len(), 1);
    }

    #[test]
    fn settings_are_validated_naming_the_field() {
        let ok = ProtectionSettings::default();
        assert_eq!(ok.validate(), Ok(()));
        let with = |f: fn(&mut ProtectionSettings)| {
            let mut s = ProtectionSettings::default();
            f(&mut s);
            s.validate()
        };
        let err = |r: Result<(), String>, field: &str| {
            let e = r.unwrap_err();
            assert!(e.starts_with(field), "{e}");
        };
        err(
            with(|s| s.protect_for = Duration::from_secs(90)),
            "protect_for",
        );
        err(with(|s| s.protect_for = Duration::ZERO), "protect_for");
        err(
            with(|s| s.protect_for = Duration::from_millis(60_500)),
            "protect_for",
        );
        err(
            with(|s| s.protect_for = Duration::from_secs(2881 * 60)),
            "protect_for",
        );
        assert_eq!(
            with(|s| s.protect_for = Duration::from_secs(2880 * 60)),
            Ok(())
        );
        err(with(|s| s.extend_at = Duration::ZERO), "extend_at");
        err(
            with(|s| s.extend_at = Duration::from_secs(3600)),
            "extend_at",
        );
        err(
            with(|s| s.release_after_idle = Duration::ZERO),
            "release_after_idle",
        );
        err(
            with(|s| s.release_after_idle = Duration::from_secs(25 * 3600)),
            "release_after_idle",
        );
        let bad = ProtectionSettings {
            extend_at: Duration::from_secs(7200),
            ..ProtectionSettings::default()
        };
        assert!(ProtectionManager::new(bad).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    /// A manager whose tasks `prefix-0..n` all have work at `at(0)`.
    fn busy(prefix: &str, n: usize, settings: ProtectionSettings) -> ProtectionManager {
        let mut m = ProtectionManager::new(settings).unwrap();
        m.observe(at(0), (0..n).map(|i| (id(&format!("{prefix}-{i:02}")), 1)));
        m
    }

    /// Answers a merged request: every task enabled until `until`, or released.
    fn answer(request: &MergedCall, until: Timestamp) -> CallOutcome {
        Ok(request
            .tasks
            .iter()
            .map(|(_, t)| {
                let o = if request.enable {
                    TaskOutcome::Enabled { expires_at: until }
                } else {
                    TaskOutcome::Released
                };
                (t.clone(), o)
            })
            .collect())
    }

    #[test]
    fn two_managers_with_six_tasks_each_share_two_requests() {
        let mut a = busy("a", 6, ProtectionSettings::default());
        let mut b = busy("b", 6, ProtectionSettings::default());
        let (ca, cb) = (a.due(at(0)), b.due(at(0)));
        assert_eq!((ca.len(), cb.len()), (1, 1));
        let calls = [&ca[0], &cb[0]];
        let merged = coalesce(&calls);
        let sizes: Vec<usize> = merged.iter().map(|m| m.tasks.len()).collect();
        assert_eq!(sizes, vec![10, 2], "10 + 2, not 6 + 6");
        assert!(
            merged
                .iter()
                .all(|m| m.enable && m.expires_in_minutes == Some(60))
        );
        // The first request holds a's 6 tasks and 4 of b's; the second b's last 2.
        assert_eq!(merged[0].tasks.iter().filter(|(i, _)| *i == 0).count(), 6);
        assert_eq!(merged[1].tasks.iter().filter(|(i, _)| *i == 1).count(), 2);

        let outcomes = merged.iter().map(|m| answer(m, at(60 * MIN))).collect();
        let split = split_outcomes(&calls, &merged, outcomes);
        a.applied(at(0), &ca[0], split[0].clone());
        b.applied(at(0), &cb[0], split[1].clone());
        for m in [&a, &b] {
            let s = m.stats();
            assert_eq!((s.protected, s.enables, s.failures), (6, 6, 0));
        }

        // Idle: both release in the same two requests.
        a.observe(at(1), (0..6).map(|i| (id(&format!("a-{i:02}")), 0)));
        b.observe(at(1), (0..6).map(|i| (id(&format!("b-{i:02}")), 0)));
        let (ca, cb) = (a.due(at(16)), b.due(at(16)));
        let calls = [&ca[0], &cb[0]];
        let merged = coalesce(&calls);
        assert_eq!(merged.len(), 2);
        assert!(
            merged
                .iter()
                .all(|m| !m.enable && m.expires_in_minutes.is_none())
        );
        let outcomes = merged.iter().map(|m| answer(m, at(0))).collect();
        let split = split_outcomes(&calls, &merged, outcomes);
        a.applied(at(16), &ca[0], split[0].clone());
        b.applied(at(16), &cb[0], split[1].clone());
        assert_eq!((a.stats().releases, b.stats().releases), (6, 6));
        assert_eq!((a.stats().protected, b.stats().protected), (0, 0));
    }

    #[test]
    fn requests_never_mix_enables_releases_or_durations() {
        let short = ProtectionSettings {
            protect_for: Duration::from_secs(30 * 60),
            extend_at: Duration::from_secs(20 * 60),
            ..ProtectionSettings::default()
        };
        let mut a = busy("a", 3, ProtectionSettings::default());
        let mut b = busy("b", 3, short);
        let mut c = protected_a();
        c.set_work(at(0), &id("a"), 0);
        let (ca, cb, cc) = (a.due(at(0)), b.due(at(0)), c.due(at(15)));
        let calls = [&ca[0], &cb[0], &cc[0]];
        let merged = coalesce(&calls);
        let shape: Vec<(bool, Option<u32>, usize)> = merged
            .iter()
            .map(|m| (m.enable, m.expires_in_minutes, m.tasks.len()))
            .collect();
        assert_eq!(
            shape,
            vec![(true, Some(30), 3), (true, Some(60), 3), (false, None, 1)]
        );
        // One manager's calls come back as they were.
        let mut m = busy("m", 25, ProtectionSettings::default());
        let calls = m.due(at(0));
        let refs: Vec<&ProtectionCall> = calls.iter().collect();
        let merged = coalesce(&refs);
        assert_eq!(merged.len(), calls.len());
        for (r, c) in merged.iter().zip(&calls) {
            let tasks: Vec<TaskId> = r.tasks.iter().map(|(_, t)| t.clone()).collect();
            assert_eq!(tasks, c.tasks);
            assert_eq!(
                (r.enable, r.expires_in_minutes),
                (c.enable, c.expires_in_minutes)
            );
        }
    }

    #[test]
    fn a_failed_request_fails_only_its_own_tasks() {
        let mut a = busy("a", 6, ProtectionSettings::default());
        let mut b = busy("b", 6, ProtectionSettings::default());
        let (ca, cb) = (a.due(at(0)), b.due(at(0)));
        let calls = [&ca[0], &cb[0]];
        let merged = coalesce(&calls);
        // The second request (b's last two tasks) fails as a whole; in the first, one of
        // a's tasks is gone.
        let mut first = answer(&merged[0], at(60 * MIN)).unwrap();
        first[0].1 = TaskOutcome::Gone;
        let outcomes = vec![Ok(first), Err("throttled".to_owned())];
        let split = split_outcomes(&calls, &merged, outcomes);
        a.applied(at(0), &ca[0], split[0].clone());
        b.applied(at(0), &cb[0], split[1].clone());
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.protected, sa.gone, sa.failures), (5, 1, 0));
        assert_eq!((sb.protected, sb.gone, sb.failures), (4, 0, 2));
        // b's two are retried after the backoff, alone.
        assert!(b.due(at(0)).is_empty());
        assert_eq!(b.due(at(1))[0].tasks.len(), 2);

        // A call all of whose tasks were in failed requests fails as a whole.
        let outcomes = vec![Err("boom".to_owned()), answer(&merged[1], at(60 * MIN))];
        let split = split_outcomes(&calls, &merged, outcomes);
        assert_eq!(split[0], Err("boom".to_owned()));
        let Ok(b_list) = &split[1] else {
            panic!("b had tasks in the second request: {:?}", split[1]);
        };
        let failed = b_list
            .iter()
            .filter(|(_, o)| *o == TaskOutcome::Failed("boom".to_owned()))
            .count();
        assert_eq!((b_list.len(), failed), (6, 4));
        // A missing answer counts as a failed request.
        let split = split_outcomes(&calls, &merged, Vec::new());
        assert!(split.iter().all(Result::is_err), "{split:?}");
    }

    fn arb_calls() -> impl Strategy<Value = Vec<ProtectionCall>> {
        prop::collection::vec(
            (
                any::<bool>(),
                prop::sample::select(vec![5u32, 60]),
                1usize..=MAX_TASKS_PER_CALL,
            ),
            0..8,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (enable, minutes, n))| ProtectionCall {
                    id: i as u64,
                    enable,
                    expires_in_minutes: enable.then_some(minutes),
                    tasks: (0..n).map(|k| id(&format!("s{i}-{k}"))).collect(),
                })
                .collect()
        })
    }

    const TASKS: usize = 12;

    fn task(i: usize) -> TaskId {
        id(&format!("task-{i:02}"))
    }

    #[derive(Debug, Clone)]
    enum Step {
        Advance(u64),
        SetWork(usize, u32),
        Observe(Vec<Option<u32>>),
        Reconcile(usize, Option<u64>),
        /// Answer one pending call (by index): a whole failure, or per task a kind
        /// (0-5 success, 6 gone, 7 failed, 8 missing) and an expiry offset.
        Apply {
            pick: usize,
            whole_fail: bool,
            kinds: Vec<u8>,
            expiry: u64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u64..40).prop_map(Step::Advance),
            1 => (0u64..4000).prop_map(Step::Advance),
            3 => (0..TASKS, 0u32..3).prop_map(|(t, w)| Step::SetWork(t, w)),
            1 => prop::collection::vec(prop::option::weighted(0.8, 0u32..3), TASKS)
                .prop_map(Step::Observe),
            1 => (0..TASKS, prop::option::of(0u64..4000)).prop_map(|(t, p)| Step::Reconcile(t, p)),
            4 => (0usize..100, prop::bool::weighted(0.15), prop::collection::vec(0u8..9, 1..6), 0u64..4200)
                .prop_map(|(pick, whole_fail, kinds, expiry)| Step::Apply { pick, whole_fail, kinds, expiry }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn coalesced_requests_carry_every_task_once_in_as_few_requests_as_allowed(
            calls in arb_calls(),
            failed in prop::collection::vec(any::<bool>(), 16),
        ) {
            let refs: Vec<&ProtectionCall> = calls.iter().collect();
            let merged = coalesce(&refs);
            let mut seen: Vec<(usize, TaskId)> = Vec::new();
            let mut per_group: BTreeMap<(bool, Option<u32>), (usize, usize)> = BTreeMap::new();
            for m in &merged {
                prop_assert!(!m.tasks.is_empty() && m.tasks.len() <= MAX_TASKS_PER_CALL);
                let g = per_group.entry((m.enable, m.expires_in_minutes)).or_default();
                g.0 += 1;
                g.1 += m.tasks.len();
                for (i, t) in &m.tasks {
                    let c = &calls[*i];
                    prop_assert_eq!((c.enable, c.expires_in_minutes), (m.enable, m.expires_in_minutes));
                    prop_assert!(c.tasks.contains(t));
                    seen.push((*i, t.clone()));
                }
            }
            let mut all: Vec<(usize, TaskId)> = calls
                .iter()
                .enumerate()
                .flat_map(|(i, c)| c.tasks.iter().map(move |t| (i, t.clone())))
                .collect();
            seen.sort();
            all.sort();
            prop_assert_eq!(seen, all);
            for ((_, _), (requests, tasks)) in per_group {
                prop_assert_eq!(requests, tasks.div_ceil(MAX_TASKS_PER_CALL));
            }
            // Enables before releases.
            let kinds: Vec<bool> = merged.iter().map(|m| !m.enable).collect();
            prop_assert!(kinds.windows(2).all(|w| w[0] <= w[1]));

            // Each call gets exactly its tasks' outcomes back.
            let outcomes: Vec<CallOutcome> = merged
                .iter()
                .zip(&failed)
                .map(|(m, &f)| if f { Err("failed".to_owned()) } else { answer(m, at(60 * MIN)) })
                .collect();
            let split = split_outcomes(&refs, &merged, outcomes);
            prop_assert_eq!(split.len(), calls.len());
            for (i, (call, outcome)) in calls.iter().zip(&split).enumerate() {
                let requests: Vec<usize> = merged
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.tasks.iter().any(|(j, _)| *j == i))
                    .map(|(r, _)| r)
                    .collect();
                let all_failed = requests.iter().all(|&r| failed.get(r).copied().unwrap_or(true));
                match outcome {
                    Err(_) => prop_assert!(all_failed),
                    Ok(list) => {
                        prop_assert!(!all_failed);
                        let tasks: Vec<&TaskId> = list.iter().map(|(t, _)| t).collect();
                        prop_assert_eq!(tasks, call.tasks.iter().collect::<Vec<_>>());
                        for (_, o) in list {
                            let ok = matches!(
                                (o, call.enable),
                                (TaskOutcome::Enabled { .. }, true)
                                    | (TaskOutcome::Released, false)
                                    | (TaskOutcome::Failed(_), _)
                            );
                            prop_assert!(ok, "{:?} for an enable={}", o, call.enable);
                        }
                    }
                }
            }
        }


        #[test]
        fn calls_respect_the_invariants(steps in prop::collection::vec(step(), 1..120)) {
            let mut m = manager();
            let mut now = at(0);
            let mut pending: Vec<ProtectionCall> = Vec::new();
            let mut work: BTreeMap<TaskId, u32> = BTreeMap::new();
            for s in steps {
                match s {
                    Step::Advance(secs) => now = add(now, Duration::from_secs(secs)),
                    Step::SetWork(i, w) => {
                        m.set_work(now, &task(i), w);
                        work.insert(task(i), w);
                    }
                    Step::Observe(list) => {
                        let seen: Vec<(TaskId, u32)> = list
                            .iter()
                            .enumerate()
                            .filter_map(|(i, w)| w.map(|w| (task(i), w)))
                            .collect();
                        work = seen.iter().cloned().collect();
                        m.observe(now, seen);
                    }
                    Step::Reconcile(i, until) => {
                        let until = until.map(|s| add(sub(now, Duration::from_secs(100)), Duration::from_secs(s)));
                        m.reconcile(now, &task(i), until);
                    }
                    Step::Apply { pick, whole_fail, kinds, expiry } => {
                        if pending.is_empty() {
                            continue;
                        }
                        let call = pending.remove(pick % pending.len());
                        let outcome = if whole_fail {
                            Err("whole call failed".to_string())
                        } else {
                            let expires_at = add(sub(now, Duration::from_secs(100)), Duration::from_secs(expiry));
                            Ok(call
                                .tasks
                                .iter()
                                .enumerate()
                                .filter_map(|(i, t)| {
                                    let o = match kinds[i % kinds.len()] {
                                        0..=5 if call.enable => TaskOutcome::Enabled { expires_at },
                                        0..=5 => TaskOutcome::Released,
                                        6 => TaskOutcome::Gone,
                                        7 => TaskOutcome::Failed("no".into()),
                                        _ => return None,
                                    };
                                    Some((t.clone(), o))
                                })
                                .collect())
                        };
                        m.applied(now, &call, outcome);
                    }
                }

                // The manager's view of work is what it was told.
                for (t, e) in &m.tasks {
                    prop_assert_eq!(e.work, work.get(t).copied().unwrap_or(0));
                }
                // Before due: who is idle-free of calls and should be held or enabled.
                let must_be_covered: Vec<TaskId> = m
                    .tasks
                    .iter()
                    .filter(|(_, e)| {
                        e.work > 0 && e.in_flight.is_none() && e.retry_at.is_none_or(|r| r <= now)
                    })
                    .map(|(t, _)| t.clone())
                    .collect();
                let was_in_flight: BTreeSet<TaskId> = m
                    .tasks
                    .iter()
                    .filter(|(_, e)| e.in_flight.is_some())
                    .map(|(t, _)| t.clone())
                    .collect();
                let held_before: BTreeMap<TaskId, Option<Timestamp>> =
                    m.tasks.keys().map(|t| (t.clone(), m.holds(t))).collect();

                let calls = m.due(now);

                let mut emitted = BTreeSet::new();
                let mut enabling = BTreeSet::new();
                for c in &calls {
                    prop_assert!((1..=MAX_TASKS_PER_CALL).contains(&c.tasks.len()));
                    prop_assert_eq!(c.expires_in_minutes, c.enable.then_some(60));
                    prop_assert!(c.tasks.windows(2).all(|w| w[0] < w[1]));
                    for t in &c.tasks {
                        prop_assert!(emitted.insert(t.clone()), "{} in two calls", t);
                        prop_assert!(!was_in_flight.contains(t), "{} already in flight", t);
                        if c.enable {
                            enabling.insert(t.clone());
                        } else {
                            prop_assert_eq!(work.get(t).copied().unwrap_or(0), 0, "release of a busy task");
                            prop_assert!(held_before[t].is_some_and(|h| h > now), "release of an unheld task");
                        }
                    }
                }
                for t in &must_be_covered {
                    prop_assert!(
                        m.holds(t).is_some_and(|h| h > now) || enabling.contains(t),
                        "{} has work but is neither held nor being enabled", t
                    );
                }
                for t in m.tasks.keys() {
                    prop_assert!(m.holds(t).is_none_or(|h| h > now), "stale hold for {}", t);
                }
                // Everything due was emitted; the next wakeup is later and not spurious.
                if let Some(w) = m.next_wakeup(now) {
                    prop_assert!(w > now);
                    let mut probe = m.clone();
                    prop_assert!(!probe.due(w).is_empty(), "nothing due at the wakeup {}", w);
                }
                let s = m.stats();
                prop_assert_eq!(s.protected, m.tasks.values().filter(|e| e.held.is_some()).count());
                pending.extend(calls);
            }
        }
    }
}
