//! capstan's control loop: one per service, written once, generic over the clock and
//! the target.
//!
//! [`ServiceLoop::tick`] is one evaluation: observe the target → evaluate the pure
//! engine on the shared metric windows → carry the decision out through the target →
//! record it in the decision log → log its sentence. With a [`ServiceHandle`], each
//! tick also publishes the observed tasks there and adds a sample (counts, each
//! policy's metric and target) to the service's bounded history. [`ServiceLoop::run`] repeats it
//! every interval until cancelled. The daemon runs it on the system clock against real
//! targets; the simulator drives the same `tick` on virtual time against its world
//! model. The loop touches the outside world only through the [`Target`], the
//! [`Clock`], the shared observations and the [`DecisionLog`].

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use capstan_core::clock::Clock;
use capstan_core::controls::Controls;
use capstan_core::decision::{Action, Decision, Step as DecisionStep, StepKind};
use capstan_core::history::{self, Reading, Tick};
use capstan_core::metrics::SharedObservations;
use capstan_core::model::TaskState;
use capstan_core::planner::{Engine, EngineState};
use capstan_core::restore::RESTORE_LIMIT;
use capstan_core::victim::{self, VictimPolicy};
use capstan_store::{DecisionLog, StoreError};
use capstan_targets::{Target, TargetError};
use tokio_util::sync::CancellationToken;

pub mod registry;
pub mod work;
pub mod workflows;

pub use registry::{Registry, ServiceHandle};
pub use work::{WorkError, WorkRegistry};
pub use workflows::StoreJournal;

/// A tick that did not complete. The engine's state is not updated, so the next tick
/// starts from what the target reports then.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The target could not be observed; nothing was evaluated.
    #[error("service {service}: cannot observe the target: {source}")]
    Observe {
        /// The service.
        service: String,
        /// The target's error.
        source: TargetError,
    },
    /// The decision was made but the target failed to carry it out.
    #[error("service {service}: cannot carry out \"{sentence}\": {source}")]
    Execute {
        /// The service.
        service: String,
        /// The decision's sentence.
        sentence: String,
        /// The decision that was not carried out (not recorded in the log).
        decision: Box<Decision>,
        /// The target's error.
        source: TargetError,
    },
}

/// The control loop of one service.
///
/// Owns the service's engine state; shares the metric windows with the pollers (the
/// lock is held only while evaluating, never across an `.await`) and the decision log
/// with readers.
pub struct ServiceLoop<T: Target, C: Clock> {
    /// The pure decision engine: policies and planner settings.
    engine: Engine,
    /// What the engine remembers between ticks (policy streaks, cooldowns, history).
    state: EngineState,
    /// What is scaled.
    target: T,
    /// Where "now" comes from.
    clock: C,
    /// Metric windows written by the pollers.
    obs: SharedObservations,
    /// Where every decision is recorded.
    log: Arc<dyn DecisionLog>,
    /// Shared with the API: the operator's controls read at each tick, the status
    /// written after it. None: no controls, no status.
    handle: Option<Arc<ServiceHandle>>,
    /// The work registry the service's tasks report to: each observation is recorded
    /// there and the tasks' live work read from it. None: tasks count as idle unless
    /// the target counts their work itself.
    work: Option<WorkRegistry>,
    /// How scale-in victims are chosen.
    victims: VictimPolicy,
}

impl<T: Target, C: Clock> ServiceLoop<T, C> {
    /// A loop for `engine.service` scaling `target`, starting from the engine's initial
    /// state.
    pub fn new(
        engine: Engine,
        target: T,
        clock: C,
        obs: SharedObservations,
        log: Arc<dyn DecisionLog>,
    ) -> Self {
        let state = engine.initial_state();
        Self {
            engine,
            state,
            target,
            clock,
            obs,
            log,
            handle: None,
            work: None,
            victims: Self::default_victims(),
        }
    }

    /// A loop for `engine.service` after a restart: like [`new`](Self::new), but the
    /// planner's memory (last scale-out and scale-in, changes counted by rate limits,
    /// the scale-in stabilization window) is rebuilt from the newest decisions in `log`
    /// (see [`Engine::restore_state_with`]), so cooldowns and windows started before the
    /// restart are honoured.
    pub fn restore(
        engine: Engine,
        target: T,
        clock: C,
        obs: SharedObservations,
        log: Arc<dyn DecisionLog>,
    ) -> Result<Self, StoreError> {
        let applied = log.last_applied(&engine.service, RESTORE_LIMIT)?;
        let now = clock.now();
        let recent = if engine.planner.stabilization.is_zero() {
            Vec::new()
        } else {
            let cutoff = capstan_core::clock::sub(now, engine.planner.stabilization);
            log.since(&engine.service, cutoff, RESTORE_LIMIT)?
        };
        let state = engine.restore_state_with(&applied, &recent, now);
        let mut this = Self::new(engine, target, clock, obs, log);
        this.state = state;
        Ok(this)
    }

    /// Shares `handle` with the API: its controls (pause, override) are read at the
    /// start of each tick and its status is written after each tick.
    #[must_use]
    pub fn with_handle(mut self, handle: Arc<ServiceHandle>) -> Self {
        handle.configure(self.engine.planner.bounds, self.engine.planner.dry_run);
        self.handle = Some(handle);
        self
    }

    /// How victims are chosen unless [`with_victims`](Self::with_victims) says
    /// otherwise: idle tasks first, then tasks with live work (fewest first), newest
    /// first — the victims drain before they stop, which suits targets whose "work" is
    /// requests in flight behind a load balancer (the simulator's).
    pub fn default_victims() -> VictimPolicy {
        VictimPolicy {
            order: vec![victim::VictimOrder::Newest],
            allow_busy: true,
        }
    }

    /// Chooses scale-in victims by `policy` (see [`victim::select`]).
    #[must_use]
    pub fn with_victims(mut self, policy: VictimPolicy) -> Self {
        self.victims = policy;
        self
    }

    /// Changes how victims are chosen (a reloaded configuration).
    pub fn set_victims(&mut self, policy: VictimPolicy) {
        self.victims = policy;
    }

    /// Reads the tasks' live work from `work` (and tells it each observation, so it
    /// can check the tasks that report and refuse new work on draining ones). Victims
    /// of a scale-in are marked draining there before the target is asked to stop them.
    #[must_use]
    pub fn with_work(mut self, work: WorkRegistry) -> Self {
        self.work = Some(work);
        self
    }

    /// The handle shared with the API, if any.
    pub fn handle(&self) -> Option<&Arc<ServiceHandle>> {
        self.handle.as_ref()
    }

    /// Records a failed tick in the handle's status.
    fn note_error(&self, error: &LoopError) {
        if let Some(handle) = &self.handle {
            handle.record_error(error.to_string(), self.clock.now());
        }
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.engine.service
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine's state after the latest tick.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// The target.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// Gives the target back (e.g. to shut it down).
    pub fn into_target(self) -> T {
        self.target
    }

    /// Continues with `engine` (a reloaded configuration of the same service), keeping
    /// what [`Engine::carry_state`] keeps: cooldowns, stabilization, rate limits and the
    /// state of unchanged policies.
    pub fn reconfigure(&mut self, engine: Engine) {
        let state = std::mem::take(&mut self.state);
        self.state = engine.carry_state(&self.engine, state);
        self.engine = engine;
        if let Some(handle) = &self.handle {
            handle.configure(self.engine.planner.bounds, self.engine.planner.dry_run);
        }
    }

    /// One evaluation: observe, decide, carry out, record, log.
    ///
    /// - A scale-out raises the target's desired count; a scale-in picks its victims
    ///   with [`victim::select`] among the observed tasks (as many as the desired count
    ///   drops) and has the target stop exactly those. If fewer may go (the others hold
    ///   live work or are protected), the scale-in is shortened (or held) and the
    ///   decision says why (a [`StepKind::BusyTasks`] step).
    /// - Holds and dry-runs carry out nothing.
    /// - Only a change the target carried out is recorded in the engine's state
    ///   (cooldowns, rate limits). A failed change is neither applied nor recorded in
    ///   the log; it comes back as [`LoopError::Execute`].
    pub async fn tick(&mut self) -> Result<Decision, LoopError> {
        let service = self.engine.service.clone();
        let mut observed = match self.target.observe().await {
            Ok(observed) => observed,
            Err(source) => {
                let e = LoopError::Observe {
                    service: service.clone(),
                    source,
                };
                self.note_error(&e);
                return Err(e);
            }
        };
        if let Some(work) = &self.work {
            work.observed(&service, &observed.tasks);
            for task in &mut observed.tasks {
                task.sessions = task.sessions.max(work.count(&service, &task.id).total());
            }
        }
        let now = self.clock.now();
        if let Some(handle) = &self.handle {
            handle.publish_tasks(Arc::from(observed.tasks.as_slice()), now);
        }
        let controls = self
            .handle
            .as_ref()
            .map_or(Controls::NONE, |h| h.controls_at(now));
        let (mut decision, readings) = {
            let obs = self.obs.lock().unwrap_or_else(PoisonError::into_inner);
            let decision =
                self.engine
                    .evaluate_with(&mut self.state, observed.capacity, &obs, now, &controls);
            // What each policy read, for the history (only when someone reads it).
            let readings: Vec<Reading> = if self.handle.is_some() {
                self.engine
                    .policies
                    .iter()
                    .zip(&self.state.policies)
                    .map(|(p, s)| history::reading(&p.policy, s, &obs, observed.capacity.desired))
                    .collect()
            } else {
                Vec::new()
            };
            // How usable each source was (for the API's health), in policy order.
            if let Some(handle) = &self.handle {
                let mut sources: Vec<(String, capstan_core::metrics::Freshness)> = Vec::new();
                for p in &self.engine.policies {
                    for name in p.policy.sources() {
                        if !sources.iter().any(|(n, _)| n == name) {
                            sources.push((name.to_owned(), obs.view(name, now).freshness()));
                        }
                    }
                }
                handle.publish_sources(sources);
            }
            (decision, readings)
        };
        // A scale-in stops only tasks that may go (idle, unless busy ones are allowed):
        // with fewer of them than the drop asks, it is shortened and says why.
        let victims = match decision.action {
            Action::ScaleIn { from, to } => {
                let count = observed.capacity.desired.saturating_sub(to);
                let chosen = victim::select(
                    &observed.tasks,
                    usize::try_from(count).unwrap_or(0),
                    &self.victims,
                );
                // Desired slots no reported task fills (a target that reports fewer
                // tasks than desired) may go without a victim.
                let reported = observed
                    .tasks
                    .iter()
                    .filter(|t| !matches!(t.state, TaskState::Stopping | TaskState::Stopped))
                    .count();
                let unfilled = observed
                    .capacity
                    .desired
                    .saturating_sub(u32::try_from(reported).unwrap_or(u32::MAX));
                let chosen_n = u32::try_from(chosen.victims.len()).unwrap_or(u32::MAX);
                let allowed = chosen_n.saturating_add(count.saturating_sub(chosen_n).min(unfilled));
                if let Some(short) = chosen.shortfall.as_ref().filter(|_| allowed < count) {
                    let shortened = observed.capacity.desired.saturating_sub(allowed);
                    decision.steps.push(DecisionStep {
                        kind: StepKind::BusyTasks,
                        from: to,
                        to: shortened,
                        detail: short.reason.clone(),
                    });
                    decision.action = if chosen.victims.is_empty() || shortened >= from {
                        Action::Hold { at: from }
                    } else {
                        Action::ScaleIn {
                            from,
                            to: shortened,
                        }
                    };
                }
                chosen.victims
            }
            _ => Vec::new(),
        };

        let result = if decision.dry_run {
            Ok(())
        } else {
            match decision.action {
                Action::ScaleOut { to, .. } => self.target.scale_out(to).await,
                Action::ScaleIn { to, .. } => {
                    tracing::debug!(
                        service = %service,
                        victims = ?victims.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                        "victims chosen"
                    );
                    if let Some(work) = &self.work {
                        work.mark_draining(&service, &victims);
                    }
                    self.target.scale_in(to, &victims).await
                }
                Action::Hold { .. } => Ok(()),
            }
        };
        if let Err(source) = result {
            let e = LoopError::Execute {
                service,
                sentence: decision.sentence(),
                decision: Box::new(decision),
                source,
            };
            self.note_error(&e);
            return Err(e);
        }
        self.state.applied(&decision, now);
        if let Some(handle) = &self.handle {
            handle.record_decision(&decision, now);
            let policies: Vec<(&str, Reading)> = self
                .engine
                .policies
                .iter()
                .map(|p| p.name.as_str())
                .zip(readings)
                .collect();
            handle.record_history(&Tick {
                at: now,
                // A dry run changes nothing: the target keeps its desired count.
                desired: if decision.dry_run {
                    observed.capacity.desired
                } else {
                    decision.action.desired()
                },
                running: observed.capacity.running,
                pending: observed.capacity.pending,
                policies: &policies,
            });
        }

        if let Err(e) = self.log.record(&decision) {
            tracing::warn!(service = %service, error = %e, "cannot record the decision");
        }
        let desired = decision.action.desired();
        match decision.action {
            Action::Hold { .. } => {
                tracing::debug!(service = %service, desired, "{}", decision.sentence());
            }
            Action::ScaleOut { .. } | Action::ScaleIn { .. } => {
                tracing::info!(service = %service, desired, dry_run = decision.dry_run, "{}", decision.sentence());
            }
        }
        Ok(decision)
    }

    /// Ticks, then waits `interval`, until `cancel` fires (which also interrupts a tick
    /// in progress: every `.await` of a tick is a cancellation point, and an interrupted
    /// tick applies nothing to the engine's state). A failed tick is logged with the
    /// service's name and the loop carries on. Gives the loop back so the caller can
    /// shut its target down or inspect its state.
    pub async fn run(mut self, interval: Duration, cancel: CancellationToken) -> Self {
        tracing::info!(service = %self.engine.service, interval_s = interval.as_secs_f64(), "control loop started");
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                result = self.tick() => {
                    if let Err(e) = result {
                        tracing::warn!(service = %self.engine.service, error = %e, "tick failed; trying again next interval");
                    }
                }
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
        tracing::info!(service = %self.engine.service, "control loop stopped");
        self
    }
}

#[cfg(test)]
mod tests;
