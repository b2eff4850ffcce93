//! The service registry shared by the control loops and the HTTP API.
//!
//! One [`ServiceHandle`] per service holds two small records, each behind its own short
//! lock that is never held across an `.await`:
//! - the operator's [`Controls`] (pause, override of min/max), written by the API and
//!   read by the loop at the start of each tick;
//! - a [`ServiceStatus`] snapshot, written by the loop after each tick (or failed tick)
//!   and read by the API;
//! - the service's bounded [`History`] (counts and each policy's metric against its
//!   target, tick by tick; see [`capstan_core::history`] for its memory bound), written
//!   by the loop after each tick and downsampled for the API;
//! - the tasks of the latest observation, published by the loop as one `Arc` swapped
//!   in (the API clones the `Arc`, never the tasks, under the lock).
//!
//! The [`Registry`] maps names to handles under a read-mostly lock taken only to find
//! or list handles (a list clones the `Arc`s out and releases it), so 10,000 services
//! ticking every second and an API listing them never wait on each other for long. A
//! handle outlives a reload of its service: registering a name again returns the same
//! handle, so pauses and overrides survive a configuration change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use capstan_core::Timestamp;
use capstan_core::controls::{Controls, Direction, Override};
use capstan_core::decision::{Action, Decision};
use capstan_core::history::{Downsampled, History, Tick};
use capstan_core::model::{Bounds, Capacity, Task};

/// Every service's handle, by name.
#[derive(Debug, Default)]
pub struct Registry {
    /// Handles by service name (sorted, so listings are stable).
    services: RwLock<BTreeMap<String, Arc<ServiceHandle>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle of `name`, created if it is new, with its configured `bounds` and
    /// `dry_run` set (an existing handle keeps its controls and status).
    pub fn register(&self, name: &str, bounds: Bounds, dry_run: bool) -> Arc<ServiceHandle> {
        let handle = {
            let mut all = self
                .services
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                all.entry(name.to_owned())
                    .or_insert_with(|| Arc::new(ServiceHandle::new(name))),
            )
        };
        handle.configure(bounds, dry_run);
        handle
    }

    /// Forgets `name` (a service removed by a reload); gives its handle back.
    pub fn remove(&self, name: &str) -> Option<Arc<ServiceHandle>> {
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
    }

    /// The handle of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ServiceHandle>> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every handle, sorted by name.
    pub fn list(&self) -> Vec<Arc<ServiceHandle>> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// How many services are registered.
    pub fn len(&self) -> usize {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no service is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The last decision of a service, in short.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionSummary {
    /// When it was made.
    pub at: Timestamp,
    /// What it did.
    pub action: Action,
    /// The policy whose ask won, if any.
    pub winner: Option<String>,
    /// Its one-line explanation ([`Decision::sentence`]).
    pub sentence: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
}

impl DecisionSummary {
    /// The summary of `decision`.
    pub fn of(decision: &Decision) -> Self {
        Self {
            at: decision.at,
            action: decision.action,
            winner: decision.winner.clone(),
            sentence: decision.sentence(),
            dry_run: decision.dry_run,
        }
    }
}

/// What the API shows of a service: its configuration and the outcome of its latest
/// tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    /// The configured bounds.
    pub config: Bounds,
    /// The bounds in force at the latest decision (configured, scheduled or
    /// overridden); the configured ones before the first decision.
    pub effective: Bounds,
    /// The capacity the latest tick observed (before its decision).
    pub capacity: Option<Capacity>,
    /// The desired count after the latest decision.
    pub desired: Option<u32>,
    /// Whether the service runs in dry-run mode.
    pub dry_run: bool,
    /// The latest decision.
    pub last_decision: Option<DecisionSummary>,
    /// The latest decision that changed the desired count (a scale-out or scale-in):
    /// why the service last scaled.
    pub last_change: Option<DecisionSummary>,
    /// How usable each source its policies read was at the latest evaluation, by
    /// source name.
    pub sources: Vec<(String, capstan_core::metrics::Freshness)>,
    /// When the latest tick ended (successful or not).
    pub last_tick: Option<Timestamp>,
    /// Why the latest tick failed, if it did (cleared by a successful one).
    pub last_error: Option<String>,
}

/// One service's shared state: operator controls in, status out.
#[derive(Debug)]
pub struct ServiceHandle {
    /// The service's name.
    name: String,
    /// Set by the API, read by the loop at each tick.
    controls: Mutex<Controls>,
    /// Written by the loop after each tick, read by the API.
    status: Mutex<ServiceStatus>,
    /// Written by the loop after each tick, downsampled for the API.
    history: Mutex<History>,
    /// The tasks of the latest observation and when it was made.
    tasks: Mutex<ObservedTasks>,
}

/// The tasks of a service's latest observation, as the loop published them.
#[derive(Debug, Clone, Default)]
pub struct ObservedTasks {
    /// When they were observed; `None` before the first observation.
    pub at: Option<Timestamp>,
    /// The tasks, their sessions being the larger of the target's count and the work
    /// registry's total at that time.
    pub tasks: Arc<[Task]>,
}

impl ServiceHandle {
    /// A handle for `name` with no controls and an empty status (bounds 0..=0 until
    /// [`configure`](Self::configure)d).
    pub fn new(name: &str) -> Self {
        let bounds = Bounds { min: 0, max: 0 };
        Self {
            name: name.to_owned(),
            controls: Mutex::new(Controls::NONE),
            status: Mutex::new(ServiceStatus {
                config: bounds,
                effective: bounds,
                capacity: None,
                desired: None,
                dry_run: false,
                last_decision: None,
                last_change: None,
                sources: Vec::new(),
                last_tick: None,
                last_error: None,
            }),
            history: Mutex::new(History::new()),
            tasks: Mutex::new(ObservedTasks::default()),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock_controls(&self) -> std::sync::MutexGuard<'_, Controls> {
        // Every change is one assignment: a poisoned lock holds a whole value.
        self.controls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, ServiceStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The operator's controls as they are.
    pub fn controls(&self) -> Controls {
        *self.lock_controls()
    }

    /// The controls for a tick at `now`: an override that has expired is dropped first
    /// (and the drop logged).
    pub fn controls_at(&self, now: Timestamp) -> Controls {
        let mut controls = self.lock_controls();
        if let Some(expired) = controls.bounds_override
            && controls.expire(now)
        {
            tracing::info!(
                service = %self.name,
                min = ?expired.min,
                max = ?expired.max,
                until = %expired.until,
                "override of min/max expired; the configured bounds are back"
            );
        }
        *controls
    }

    /// Pauses `direction`; gives the controls after.
    pub fn pause(&self, direction: Direction) -> Controls {
        let mut controls = self.lock_controls();
        controls.pause(direction);
        *controls
    }

    /// Resumes `direction`; gives the controls after.
    pub fn resume(&self, direction: Direction) -> Controls {
        let mut controls = self.lock_controls();
        controls.resume(direction);
        *controls
    }

    /// Sets (or replaces) the override of min/max.
    pub fn set_override(&self, o: Override) {
        self.lock_controls().bounds_override = Some(o);
    }

    /// Removes the override; gives the one removed.
    pub fn clear_override(&self) -> Option<Override> {
        self.lock_controls().bounds_override.take()
    }

    /// A copy of the status.
    pub fn status(&self) -> ServiceStatus {
        self.lock_status().clone()
    }

    /// Sets the configured bounds and dry-run mode (at start and on reload).
    pub fn configure(&self, bounds: Bounds, dry_run: bool) {
        let mut status = self.lock_status();
        status.config = bounds;
        if status.last_decision.is_none() {
            status.effective = bounds;
        }
        status.dry_run = dry_run;
    }

    /// Records a tick that decided (and carried out) `decision` at `now`.
    pub fn record_decision(&self, decision: &Decision, now: Timestamp) {
        let summary = DecisionSummary::of(decision);
        let mut status = self.lock_status();
        status.effective = Bounds {
            min: decision.min,
            max: decision.max,
        };
        status.capacity = Some(decision.capacity);
        status.desired = Some(decision.action.desired());
        status.dry_run = decision.dry_run;
        if !matches!(decision.action, capstan_core::decision::Action::Hold { .. }) {
            status.last_change = Some(summary.clone());
        }
        status.last_decision = Some(summary);
        status.last_tick = Some(now);
        status.last_error = None;
    }

    /// Adds a tick to the service's history.
    pub fn record_history(&self, tick: &Tick<'_>) {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(tick);
    }

    /// The history over `window` ending at `now`, in at most `max_points` points (see
    /// [`History::points`]).
    pub fn history(
        &self,
        now: Timestamp,
        window: std::time::Duration,
        max_points: usize,
    ) -> Downsampled {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .points(now, window, max_points)
    }

    /// Publishes how usable each source the policies read was at the latest
    /// evaluation.
    pub fn publish_sources(&self, sources: Vec<(String, capstan_core::metrics::Freshness)>) {
        self.lock_status().sources = sources;
    }

    /// Publishes the tasks observed at `at` (replacing the previous ones).
    pub fn publish_tasks(&self, tasks: Arc<[Task]>, at: Timestamp) {
        *self.tasks.lock().unwrap_or_else(PoisonError::into_inner) = ObservedTasks {
            at: Some(at),
            tasks,
        };
    }

    /// The tasks of the latest observation.
    pub fn tasks(&self) -> ObservedTasks {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a tick that failed at `now` with `error`.
    pub fn record_error(&self, error: String, now: Timestamp) {
        let mut status = self.lock_status();
        status.last_tick = Some(now);
        status.last_error = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_again_keeps_the_handle_and_its_controls() {
        let registry = Registry::new();
        let a = registry.register("a", Bounds { min: 1, max: 5 }, false);
        a.pause(Direction::In);
        registry.register("b", Bounds { min: 0, max: 2 }, true);
        let again = registry.register("a", Bounds { min: 2, max: 8 }, false);
        assert!(Arc::ptr_eq(&a, &again));
        assert!(again.controls().paused.scale_in);
        assert_eq!(again.status().config, Bounds { min: 2, max: 8 });
        let names: Vec<_> = registry
            .list()
            .iter()
            .map(|h| h.name().to_owned())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(registry.remove("a").is_some());
        assert!(registry.get("a").is_none());
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn an_expired_override_is_dropped_at_the_tick() {
        let handle = ServiceHandle::new("a");
        let since = Timestamp::from_second(100).unwrap();
        let until = Timestamp::from_second(160).unwrap();
        handle.set_override(Override {
            min: Some(3),
            max: None,
            since,
            until,
        });
        assert!(handle.controls_at(since).bounds_override.is_some());
        assert!(handle.controls_at(until).bounds_override.is_none());
        assert!(handle.controls().bounds_override.is_none());
    }
}
