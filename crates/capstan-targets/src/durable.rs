//! The durable workflow engine the targets share: where workflows are kept
//! ([`Journal`]), the failpoints tests crash a target at, and the loop that runs a
//! workflow's due steps, writing its state and journal before and after each one
//! ([`Durable::drive`]). What each step does is the target's ([`Steps`]): the ECS
//! service target's task scale-in ([`ecs::durable`](crate::ecs::durable)) and the EC2
//! cluster target's host removal ([`asg`](crate::asg)).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use capstan_aws_api::{AwsError, AwsErrorKind};
use capstan_core::Timestamp;
use capstan_core::workflow::{Event, Outcome, Step, Workflow, WorkflowSettings};

use crate::TargetError;

/// Where workflows are kept: their latest state and their journal.
pub trait Journal: Send + Sync + 'static {
    /// Writes `workflow`'s state and appends `events`, durably, in one go.
    fn save(&self, workflow: &Workflow, events: &[Event]) -> Result<(), String>;

    /// The workflows of `service` still active (running or failed), oldest first.
    fn active(&self, service: &str) -> Result<Vec<Workflow>, String>;
}

/// A [`Journal`] in memory (tests and the simulator): lost when dropped, kept across
/// targets that share it (a "restart" of the target).
#[derive(Debug, Default)]
pub struct MemoryJournal {
    inner: Mutex<HashMap<String, (Workflow, Vec<Event>)>>,
}

impl MemoryJournal {
    /// Every workflow and its journal, by id.
    pub fn all(&self) -> Vec<(Workflow, Vec<Event>)> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = inner.values().cloned().collect();
        all.sort_by(|a, b| {
            a.0.created_at
                .cmp(&b.0.created_at)
                .then(a.0.id.cmp(&b.0.id))
        });
        all
    }
}

impl Journal for MemoryJournal {
    fn save(&self, workflow: &Workflow, events: &[Event]) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = inner
            .entry(workflow.id.clone())
            .or_insert_with(|| (workflow.clone(), Vec::new()));
        entry.0 = workflow.clone();
        entry.1.extend_from_slice(events);
        Ok(())
    }

    fn active(&self, service: &str) -> Result<Vec<Workflow>, String> {
        Ok(self
            .all()
            .into_iter()
            .map(|(w, _)| w)
            .filter(|w| w.service == service && w.is_active())
            .collect())
    }
}

/// Before or after a step's effect: where a failpoint can stop the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// The step's start is journaled; its effect has not run.
    Before,
    /// The effect ran; its outcome is not journaled yet.
    After,
}

/// A test hook: returns true to make the target stop dead at that boundary (as if the
/// process were killed there): nothing more runs and every later call fails.
pub type Failpoint = Arc<dyn Fn(Step, Boundary) -> bool + Send + Sync>;

/// What a target does at each step of its workflows.
pub(crate) trait Steps: Sync {
    /// What the steps read (one observation of the system).
    type View: Sync;

    /// The target's name.
    fn target_name(&self) -> &str;

    /// Now, on the target's clock.
    fn now(&self) -> Timestamp;

    /// Runs the effect of `w`'s current step: the outcome, and any journal lines of
    /// its own (victims kept). `Err` only when the journal cannot be written.
    fn effect(
        &self,
        d: &Durable,
        w: &mut Workflow,
        view: &Self::View,
    ) -> impl Future<Output = Result<(Outcome, Vec<Event>), TargetError>> + Send;

    /// Called once the workflow is over (done, cancelled).
    fn finished(&self, _w: &Workflow) {}
}

/// A target's workflows: settings, journal and the one holding it.
pub(crate) struct Durable {
    pub(crate) journal: Arc<dyn Journal>,
    /// Whether the journal is the target's own memory: lost with the target, so
    /// shutdown undoes what it safely can.
    pub(crate) in_memory: bool,
    pub(crate) settings: WorkflowSettings,
    /// The workflow holding the target, if any.
    current: Mutex<Option<Workflow>>,
    pub(crate) failpoint: Option<Failpoint>,
    /// Set once a failpoint fired: the target is "dead".
    dead: AtomicBool,
    /// Ids handed out by this target.
    next_id: AtomicU64,
}

impl Durable {
    /// Workflows kept in a journal in memory of the target's own.
    pub(crate) fn in_memory(settings: WorkflowSettings) -> Self {
        Self::new(Arc::new(MemoryJournal::default()), true, settings, None)
    }

    /// Workflows kept in `journal`; `current` is the one to resume.
    pub(crate) fn new(
        journal: Arc<dyn Journal>,
        in_memory: bool,
        settings: WorkflowSettings,
        current: Option<Workflow>,
    ) -> Self {
        Self {
            journal,
            in_memory,
            settings,
            current: Mutex::new(current),
            failpoint: None,
            dead: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        }
    }

    /// Keeps the workflows of target `name` in `journal` with `settings` from now on
    /// (the failpoint stays), resuming the oldest active one found there.
    pub(crate) fn use_journal(
        &mut self,
        name: &str,
        journal: Arc<dyn Journal>,
        settings: WorkflowSettings,
    ) -> Result<(), String> {
        let current = journal.active(name)?.into_iter().next();
        let failpoint = self.failpoint.take();
        *self = Self::new(journal, false, settings, current);
        self.failpoint = failpoint;
        Ok(())
    }

    /// These workflows, unless a failpoint stopped target `name`.
    pub(crate) fn alive(&self, name: &str) -> Result<&Self, TargetError> {
        if self.is_dead() {
            return Err(TargetError::Failed {
                target: name.to_owned(),
                reason: "stopped at a failpoint".into(),
            });
        }
        Ok(self)
    }

    /// The workflow holding the target, if any.
    pub(crate) fn current(&self) -> Option<Workflow> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set(&self, w: Option<Workflow>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = w;
    }

    /// Whether a failpoint stopped the target.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// A new workflow id for target `name` at `now`.
    pub(crate) fn next_id(&self, name: &str, now: Timestamp) -> String {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        format!("{name}-{}-{n}", now.as_millisecond())
    }

    /// Writes `w` and `events` to the journal.
    pub(crate) fn save(
        &self,
        name: &str,
        w: &Workflow,
        events: &[Event],
    ) -> Result<(), TargetError> {
        self.journal
            .save(w, events)
            .map_err(|e| TargetError::Failed {
                target: name.to_owned(),
                reason: format!("workflow journal: {e}"),
            })
    }

    /// Stops the target dead if its failpoint says so at `step`, `at`.
    fn crash_at(&self, name: &str, step: Step, at: Boundary) -> Result<(), TargetError> {
        if self.failpoint.as_ref().is_some_and(|f| f(step, at)) {
            self.dead.store(true, Ordering::SeqCst);
            return Err(TargetError::Failed {
                target: name.to_owned(),
                reason: format!("stopped at a failpoint {at:?} {}", step.as_str()),
            });
        }
        Ok(())
    }

    /// Resumes the failed workflow `id` from the step it failed at.
    pub(crate) fn redrive(
        &self,
        name: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Workflow, TargetError> {
        let invalid = |reason: String| TargetError::Invalid {
            target: name.to_owned(),
            reason,
        };
        let mut w = self
            .current()
            .filter(|w| w.id == id)
            .ok_or_else(|| invalid(format!("no active workflow {id}")))?;
        let event = w.redrive(now).map_err(invalid)?;
        self.save(name, &w, &[event])?;
        self.set(Some(w.clone()));
        Ok(w)
    }

    /// Runs the workflow's due steps, one after another, until it waits, retries,
    /// fails or ends: before each step's effect its start is journaled, after it the
    /// outcome and the new state.
    pub(crate) async fn drive<S: Steps>(&self, s: &S, view: &S::View) -> Result<(), TargetError> {
        let name = s.target_name();
        for _ in 0..32 {
            let now = s.now();
            let Some(mut w) = self.current() else {
                return Ok(());
            };
            if !w.due(now) {
                return Ok(());
            }
            let step = w.step;
            self.save(name, &w, &[w.starting(now)])?;
            self.crash_at(name, step, Boundary::Before)?;
            let (outcome, mut events) = s.effect(self, &mut w, view).await?;
            self.crash_at(name, step, Boundary::After)?;
            events.extend(w.record(outcome, s.now(), &self.settings));
            self.save(name, &w, &events)?;
            if !w.is_active() {
                tracing::info!(target_name = %name, workflow = %w.id, status = w.status.as_str(), "workflow finished");
                s.finished(&w);
                self.set(None);
                return Ok(());
            }
            let going = w.is_running() && w.step != step;
            self.set(Some(w));
            if !going {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Whether an AWS error may pass on a retry.
pub(crate) fn transient(kind: &AwsErrorKind) -> bool {
    matches!(
        kind,
        AwsErrorKind::Throttling | AwsErrorKind::Server | AwsErrorKind::Transport
    )
}

/// A step's outcome for an AWS error: retried when it may pass, failed otherwise.
pub(crate) fn aws_outcome(e: &AwsError) -> Outcome {
    if transient(&e.kind) {
        Outcome::Retry {
            error: e.to_string(),
        }
    } else {
        Outcome::Fail {
            error: e.to_string(),
        }
    }
}
