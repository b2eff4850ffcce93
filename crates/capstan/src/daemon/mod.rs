//! The `run` command: pollers, one control loop per service, live reload, graceful
//! shutdown.
//!
//! [`run_with`] binds the HTTP listener (`[server]`: `/healthz`, `/metrics`, pushed
//! values, `POST /api/v1/reload`; see [`crate::server`]), starts the pollers of every
//! source ([`sources`]: feeding the shared metric windows and the exporter), builds
//! each service's target and runs one control loop per service ([`services`]), all on
//! the system clock. Its main task then waits for a reload ([`reload`]: SIGHUP, the
//! config file changing, the API), a control loop ending on its own, or its
//! cancellation token (the binary bridges SIGINT and SIGTERM to it with
//! [`shutdown_signal`]).
//!
//! Reload: the file is read and validated; if invalid, every error is logged and the
//! running configuration stays. If valid, the difference is applied: new services
//! start, removed ones stop (their targets shut down), services whose policies, planner
//! settings or interval changed are updated in place (cooldowns, stabilization and
//! unchanged policies' state kept), services whose target changed are restarted;
//! sources are restarted as a whole if any changed (unchanged sources keep their
//! windows). `[server]`, `[log]`, `[store]` and `ship_to_cloudwatch` changes take
//! effect at the next start (the reload says so). Targets and sources are built before anything is
//! changed, so a reload that cannot be applied changes nothing.
//!
//! Dry-run (`--dry-run`, or `dry_run = true` per service): decisions are computed,
//! logged, recorded and exported, and nothing is changed. `--once` evaluates every
//! service once, after every source has been read once (or failed), and returns.
//!
//! Shutdown, in order:
//!
//! 1. the control loops, the pollers and the listener stop (no new decision is made);
//! 2. the CloudWatch shippers flush what is left, including the pollers' last reads
//!    (at most [`FINAL_FLUSH_TIMEOUT`]);
//! 3. every target's [`shutdown`](Target::shutdown) runs, all at once, and is awaited.
//!
//! What is left behind, per target kind: a local-process target stops every worker it
//! started (SIGTERM, SIGKILL after `stop_timeout`) and reaps it, so no worker outlives
//! capstan (a later capstan could not adopt them). See
//! [`capstan_targets::process`].
//! An `ec2_cluster` target keeps its host removal in memory: its shutdown sets the
//! hosts it left DRAINING ACTIVE again (best effort; hosts already terminated stay
//! terminated), and a capstan killed mid-removal leaves them DRAINING (see
//! [`capstan_targets::asg`] and `docs/config.md`).
//!
//! Host rotations ([`rotations`]: `POST /api/v1/rotations`, `capstan cluster rotate`) run
//! on a task of their own, kept in the store and resumed after a restart; at the stop,
//! a host still draining for one is set ACTIVE again.
//!
//! A control loop that ends on its own (a bug: loops only end when cancelled) is an
//! error: everything is shut down the same way and [`run`] returns
//! [`DaemonError::LoopEnded`], so the process exits non-zero and a supervisor restarts
//! it, rather than leaving a service silently unscaled.

pub mod protection;
pub mod reload;
pub mod rotations;
pub mod services;
pub mod sources;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_control::registry::Registry;
use capstan_control::{StoreJournal, WorkRegistry};
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::metrics::{Freshness, Observations, SharedObservations};
use capstan_sources::SourceKind;
use capstan_sources::error::SourceError;
use capstan_sources::poller::Hooks;
use capstan_sources::{PushStore, ReadObserver};
use capstan_store::DecisionLog;
use capstan_targets::{Target, TargetError, TargetSpec};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::server::api;
use crate::server::webhooks::{WebhookTokenError, Webhooks};
use crate::server::{self, Exporter, ExportingLog, ServerError, ServerState};

use reload::{ReloadError, ReloadHandle, ReloadOutcome, ReloadRequest, ReloadSummary};
use services::{Change, Services, TargetFactory, Wakers};
use sources::Sources;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A source could not be set up.
    #[error("cannot start the sources: {0}")]
    Sources(#[from] SourceError),
    /// The HTTP listener could not start (token file, address in use).
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The decision store could not be opened.
    #[error("cannot open the decision store: {0}")]
    Store(#[from] capstan_store::StoreError),
    /// A webhook's token file could not be read.
    #[error(transparent)]
    Webhook(#[from] WebhookTokenError),
    /// A service's target could not be set up.
    #[error("service {service}: cannot set up its target: {source}")]
    Target {
        /// The service.
        service: String,
        /// Why.
        source: TargetError,
    },
    /// The configuration uses a `simulated` source or target, which only exist inside
    /// `capstan simulate`.
    #[error("{what} is of kind \"simulated\", which only runs inside `capstan simulate`")]
    SimulatedOnly {
        /// Which source or service.
        what: String,
    },
    /// A control loop ended before capstan was asked to stop.
    #[error("service {service}: control loop ended unexpectedly: {reason}")]
    LoopEnded {
        /// The service.
        service: String,
        /// How it ended (e.g. the panic message).
        reason: String,
    },
}

/// Refuses sources and targets of kind `simulated` before anything starts.
fn refuse_simulated(config: &Config) -> Result<(), DaemonError> {
    if let Some(s) = config
        .sources
        .iter()
        .find(|s| matches!(s.kind, SourceKind::Simulated(_)))
    {
        return Err(DaemonError::SimulatedOnly {
            what: format!("source {}", s.name),
        });
    }
    if let Some(s) = config
        .services
        .iter()
        .find(|s| matches!(s.target, TargetSpec::Simulated(_)))
    {
        return Err(DaemonError::SimulatedOnly {
            what: format!("service {}'s target", s.name),
        });
    }
    Ok(())
}

/// How `capstan run` runs.
#[derive(Clone)]
pub struct RunOptions {
    /// The configuration to start with.
    pub config: Config,
    /// The file it came from: watched, and read again on reload. `None` (the embedded
    /// default): nothing to reload.
    pub path: Option<PathBuf>,
    /// Every service in dry-run, whatever its own `dry_run` says.
    pub dry_run: bool,
    /// Evaluate every service once, then stop.
    pub once: bool,
    /// Builds targets instead of the configuration (tests: the world model).
    pub targets: Option<TargetFactory>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("path", &self.path)
            .field("dry_run", &self.dry_run)
            .field("once", &self.once)
            .field("targets", &self.targets.is_some())
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Runs `config` (not from a file: no reload), as configured, until stopped.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            path: None,
            dry_run: false,
            once: false,
            targets: None,
        }
    }
}

/// Sets every service of `config` to dry-run.
fn force_dry_run(config: &mut Config) {
    for service in &mut config.services {
        service.engine.planner.dry_run = true;
    }
}

/// Runs `config` until `cancel` fires (see [`run_with`]).
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), DaemonError> {
    run_with(RunOptions::new(config), cancel).await
}

/// Runs as `options` say until `cancel` fires (or, with `once`, until every service
/// was evaluated once), then shuts down in order (see the [module docs](self)). Must be
/// called within a Tokio runtime.
pub async fn run_with(options: RunOptions, cancel: CancellationToken) -> Result<(), DaemonError> {
    let RunOptions {
        mut config,
        path,
        dry_run,
        once,
        targets,
    } = options;
    refuse_simulated(&config)?;
    if dry_run {
        force_dry_run(&mut config);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let exporter = Arc::new(Exporter::new(&config.sources, Arc::clone(&clock)));
    // Decisions go to the store (SQLite by default): history survives restarts, and
    // each loop starts with the cooldowns its last carried-out changes left running.
    let store = capstan_store::open(&config.store)?;
    let log: Arc<dyn DecisionLog> = Arc::new(ExportingLog::new(store, Arc::clone(&exporter)));
    // The sessions and workloads the tasks report, in the same store: what was
    // answered before a restart is there after it.
    let work = WorkRegistry::open(capstan_store::open_work(&config.store)?, Arc::clone(&clock))?;
    // Scale-in workflows: journaled in the same store, resumed after a restart; this
    // capstan takes the store's fencing token.
    let journal = StoreJournal::acquire(capstan_store::open_workflows(&config.store)?)?;
    // Blue/green host rotations: kept in the same store, resumed after a restart.
    let rotations = rotations::Rotations::new(
        capstan_store::open_rotations(&config.store)?,
        Arc::clone(&clock),
        &config,
        Some(work.counts_any()),
    );
    exporter.export_work(work.clone());
    let protection = services::ProtectionBoard::default();
    exporter.export_protection(Arc::clone(&protection));
    let push = PushStore::new(Arc::clone(&clock));
    let token = server::resolve_token(&config.server)?;
    let listener = server::bind(config.server.listen).await?;
    // Stops the loops, pollers, listener and reload triggers.
    let stop = cancel.child_token();

    // Every read is exported and wakes the services that use the source.
    let wakers = Arc::new(Wakers::default());
    let mut observers: Vec<Arc<dyn ReadObserver>> = vec![exporter.clone(), wakers.clone()];
    // ship_to_cloudwatch: shippers on tasks of their own, fed by the same reads. They
    // stop after the pollers (their own token), so the last reads are shipped too.
    let mut shippers = Shippers {
        stop: CancellationToken::new(),
        tasks: JoinSet::new(),
    };
    if let Some(shipping) = capstan_sources::ship::spawn_sdk(
        &config.ship_to_cloudwatch,
        capstan_sources::ship::ShipOptions::default(),
        &shippers.stop,
        {
            let exporter = Arc::clone(&exporter);
            Arc::new(move |n| exporter.count_unshipped(n))
        },
    ) {
        observers.push(shipping.observer);
        shippers.tasks = shipping.tasks;
    }
    let sources = Sources::start(
        &config.sources,
        Arc::clone(&obs),
        Arc::clone(&clock),
        push.clone(),
        Hooks {
            push: Some(push.clone()),
            observer: Some(Arc::new(capstan_sources::ship::Observers(observers))),
        },
        &stop,
    )?;
    let address = listener
        .local_addr()
        .map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
    tracing::info!(address = %address, auth = token.is_some(), "HTTP listener started");
    let (reload_handle, reloads) = ReloadHandle::channel();
    // Alert webhooks store their state in the windows the loops read, and wake the
    // services whose alert state changed.
    let hooks = Arc::new(
        Webhooks::from_config(&config, Arc::clone(&obs), Arc::clone(&clock))?.on_change({
            let wakers = Arc::clone(&wakers);
            Arc::new(move |service: &str| {
                wakers.wake(service);
            })
        }),
    );
    // Each service's handle: the API's pauses and overrides in, its status out.
    let registry = Arc::new(Registry::new());
    // The running services' targets, for the workflow API.
    let target_board = services::TargetBoard::default();
    let app = server::router(
        ServerState::new(token, Arc::clone(&exporter), push)
            .with_reload(reload_handle.clone())
            .with_alerts(Arc::clone(&hooks))
            .with_services(
                api::Services::new(Arc::clone(&registry), Arc::clone(&log), Arc::clone(&clock))
                    .with_work(work.clone())
                    .with_workflows(server::workflows::Workflows {
                        store: Arc::clone(journal.store()),
                        redrive: services::redriver(Arc::clone(&target_board)),
                    })
                    .with_rotations(rotations.clone())
                    .with_targets(Arc::clone(&target_board)),
            ),
    );
    let sweeper = tokio::spawn(sweep_work(work.clone(), stop.clone()));
    let rotator = (!once).then(|| tokio::spawn(rotations.clone().run(stop.clone())));
    let listening = stop.clone();
    let listener_task = tokio::spawn(async move {
        if let Err(e) = server::serve(listener, app, listening).await {
            tracing::error!(error = %e, "the HTTP listener failed");
        }
    });
    tracing::info!(
        sources = config.sources.len(),
        services = config.services.len(),
        dry_run,
        "capstan started"
    );

    let mut services = Services::new(
        Arc::clone(&clock),
        Arc::clone(&obs),
        Arc::clone(&log),
        stop.clone(),
    )
    .with_factory(targets)
    .with_wakers(wakers)
    .with_registry(registry)
    .with_work(work)
    .with_protection_board(protection)
    .with_journal(Arc::new(journal))
    .with_targets(target_board);
    let mut daemon = Daemon {
        hooks,
        path,
        dry_run,
        exporter,
        sources,
        config: config.clone(),
        rotations,
    };
    if once {
        wait_for_first_reads(&obs, &daemon.config, clock.as_ref(), &cancel).await;
    }
    let mut failed = None;
    for service in config.services {
        match services.build_target(&service) {
            Ok(target) if once => services.start_once(service, target),
            Ok(target) => services.start(service, target),
            Err(source) => {
                failed = Some(DaemonError::Target {
                    service: service.name,
                    source,
                });
                break;
            }
        }
    }
    let outcome = match failed {
        Some(e) => Err(e),
        None if once => {
            services.wait_all().await;
            Ok(())
        }
        None => {
            if let Some(path) = &daemon.path {
                reload::spawn_watcher(path.clone(), reload_handle.clone(), stop.clone());
            }
            if let Err(e) = reload::spawn_sighup(reload_handle, stop.clone()) {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with the API or by editing the file");
            }
            daemon.serve(&mut services, reloads, &cancel).await
        }
    };
    if outcome.is_ok() {
        tracing::info!("shutting down: stopping the control loops, then the targets");
    }
    stop.cancel();
    if let Err(e) = listener_task.await {
        tracing::error!(reason = %panic_reason(e), "the HTTP listener failed");
    }
    daemon.sources.stop().await;
    shippers.finish().await;
    services.stop_all().await;
    let _ = sweeper.await;
    if let Some(rotator) = rotator {
        let _ = rotator.await;
    }
    tracing::info!("capstan stopped");
    outcome
}

/// How often expired work entries are dropped (they stop counting at their expiry
/// anyway; this only frees memory and store rows).
pub const WORK_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Drops expired work entries every [`WORK_SWEEP_EVERY`] until `stop`.
async fn sweep_work(work: WorkRegistry, stop: CancellationToken) {
    let mut every = tokio::time::interval(WORK_SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {
                let expired = work.sweep();
                if expired > 0 {
                    tracing::debug!(expired, "work entries expired");
                }
            }
        }
    }
    if let Err(e) = work.flush().await {
        tracing::warn!(error = %e, "work registry: last writes failed");
    }
}

/// What the main task owns besides the services.
struct Daemon {
    /// The alert webhooks (their tokens and routes follow reloads).
    hooks: Arc<Webhooks>,
    path: Option<PathBuf>,
    dry_run: bool,
    exporter: Arc<Exporter>,
    sources: Sources,
    /// The configuration in force.
    config: Config,
    /// The host rotations (they follow the configuration's `ec2_cluster` targets).
    rotations: rotations::Rotations,
}

impl Daemon {
    /// Handles reloads until `cancel` fires or a loop ends on its own.
    async fn serve(
        &mut self,
        services: &mut Services,
        mut reloads: tokio::sync::mpsc::Receiver<ReloadRequest>,
        cancel: &CancellationToken,
    ) -> Result<(), DaemonError> {
        loop {
            // Biased: the loops also end on `cancel`, and that is no failure.
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                Some((service, reason)) = services.next_failure() => {
                    tracing::error!(service = %service, reason = %reason, "control loop ended unexpectedly; shutting down");
                    return Err(DaemonError::LoopEnded { service, reason });
                }
                Some(request) = reloads.recv() => {
                    let outcome = self.reload(services, request.trigger);
                    if let Some(reply) = request.reply {
                        let _ = reply.send(outcome);
                    }
                }
            }
        }
    }

    /// Reads the file again and applies it (see the [module docs](self)).
    fn reload(&mut self, services: &mut Services, trigger: reload::Trigger) -> ReloadOutcome {
        let outcome = self.try_reload(services);
        self.exporter.record_reload(outcome.is_ok());
        match &outcome {
            Ok(summary) if summary.is_empty() => {
                tracing::info!(
                    trigger = trigger.label(),
                    "configuration reloaded: nothing changed"
                );
            }
            Ok(summary) => {
                tracing::info!(trigger = trigger.label(), changes = ?summary, "configuration reloaded");
                if !summary.needs_restart.is_empty() {
                    tracing::warn!(sections = ?summary.needs_restart, "these changes take effect at the next start");
                }
            }
            Err(ReloadError::Invalid(errors)) => {
                for error in errors {
                    tracing::error!(trigger = trigger.label(), error = %error, "configuration reload rejected");
                }
                tracing::error!(
                    trigger = trigger.label(),
                    errors = errors.len(),
                    "the new configuration is invalid; the last good one keeps running"
                );
            }
            Err(e) => {
                tracing::error!(trigger = trigger.label(), error = %e, "configuration reload failed")
            }
        }
        outcome
    }

    fn try_reload(&mut self, services: &mut Services) -> ReloadOutcome {
        let Some(path) = &self.path else {
            return Err(ReloadError::NoFile);
        };
        let mut new = config::load(path).map_err(|errors| {
            ReloadError::Invalid(errors.errors.iter().map(ToString::to_string).collect())
        })?;
        refuse_simulated(&new).map_err(|e| ReloadError::Apply(e.to_string()))?;
        if self.dry_run {
            force_dry_run(&mut new);
        }
        let mut summary = ReloadSummary::default();
        if new.server != self.config.server {
            summary.needs_restart.push("server".into());
        }
        if new.log != self.config.log {
            summary.needs_restart.push("log".into());
        }
        if new.ship_to_cloudwatch != self.config.ship_to_cloudwatch {
            summary.needs_restart.push("ship_to_cloudwatch".into());
        }
        if new.store != self.config.store {
            summary.needs_restart.push("store".into());
        }
        // The webhooks' token files first (read again): nothing changes if one cannot
        // be read. Put back as they were if a later step fails.
        self.hooks
            .reload(&new)
            .map_err(|e| ReloadError::Apply(e.to_string()))?;
        let restore_hooks = |hooks: &Webhooks, old: &Config| {
            if let Err(e) = hooks.reload(old) {
                tracing::warn!(error = %e, "cannot put the webhooks' previous settings back");
            }
        };
        // Build every new target first: nothing changes if one cannot be built.
        let changes: Vec<Option<Change>> =
            new.services.iter().map(|s| services.change(s)).collect();
        let mut built = Vec::new();
        for (spec, change) in new.services.iter().zip(&changes) {
            if matches!(change, None | Some(Change::Target)) {
                match services.build_target(spec) {
                    Ok(target) => built.push((spec.clone(), target, change.is_some())),
                    Err(e) => {
                        discard(built);
                        restore_hooks(&self.hooks, &self.config);
                        return Err(ReloadError::Apply(format!("service {}: {e}", spec.name)));
                    }
                }
            }
        }
        match self.sources.reload(&new.sources) {
            Ok(changes) => summary.sources(changes),
            Err(e) => {
                discard(built);
                restore_hooks(&self.hooks, &self.config);
                return Err(ReloadError::Apply(e.to_string()));
            }
        }
        let removed: Vec<String> = services
            .names()
            .filter(|name| !new.services.iter().any(|s| s.name == *name))
            .map(str::to_owned)
            .collect();
        for name in removed {
            services.remove(&name);
            summary.services_removed.push(name);
        }
        for (spec, target, restart) in built {
            if restart {
                services.stop_loop(&spec.name);
                summary.services_restarted.push(spec.name.clone());
            } else {
                summary.services_added.push(spec.name.clone());
            }
            services.start(spec, target);
        }
        for (spec, change) in new.services.iter().zip(changes) {
            if change == Some(Change::Settings) && services.update(spec.clone()) {
                summary.services_updated.push(spec.name.clone());
            }
        }
        self.rotations.configure(&new);
        self.config = new;
        Ok(summary)
    }
}

/// Shuts down targets built for a reload that was not applied.
fn discard(built: Vec<(crate::config::ServiceSpec, services::AnyTarget, bool)>) {
    for (_, target, _) in built {
        tokio::spawn(async move { target.shutdown().await });
    }
}

/// `--once`: waits until every source was read once (or failed), at most the longest
/// source's timeout with its retries and a grace of 2 s.
async fn wait_for_first_reads(
    obs: &SharedObservations,
    config: &Config,
    clock: &dyn Clock,
    cancel: &CancellationToken,
) {
    let longest = config
        .sources
        .iter()
        .map(|s| s.timeout.saturating_mul(s.retries.saturating_add(1)))
        .max()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + longest + Duration::from_secs(2);
    loop {
        let all_read = {
            let obs = obs.lock().unwrap_or_else(PoisonError::into_inner);
            let now = clock.now();
            config.sources.iter().all(|s| {
                obs.series(&s.name)
                    .is_some_and(|series| !matches!(series.freshness(now), Freshness::Missing))
            })
        };
        if all_read || tokio::time::Instant::now() >= deadline || cancel.is_cancelled() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The CloudWatch shippers: stopped after the pollers.
struct Shippers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// How long the shippers' final flush may take at shutdown before it is abandoned
/// (what it did not ship is then lost, and logged as such).
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

impl Shippers {
    /// Has the shippers flush what the (stopped) pollers last read, bounded by
    /// [`FINAL_FLUSH_TIMEOUT`].
    async fn finish(mut self) {
        self.stop.cancel();
        let flushed = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, async {
            while let Some(ended) = self.tasks.join_next().await {
                if let Err(e) = ended {
                    tracing::error!(reason = %panic_reason(e), "a CloudWatch shipper failed");
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!(
                timeout_s = FINAL_FLUSH_TIMEOUT.as_secs(),
                "the final flush to CloudWatch did not finish in time; its values are lost"
            );
            self.tasks.abort_all();
        }
    }
}

fn panic_reason(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "cancelled".to_owned();
    }
    let panic = e.into_panic();
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .map_or_else(|| "panicked".to_owned(), |m| format!("panicked: {m}"))
}

/// Installs handlers for SIGINT and SIGTERM **now** and returns a future that resolves
/// with the name of the first of them to arrive.
///
/// Call it before starting anything that must be cleaned up: from then on, these
/// signals no longer kill the process, so a signal that arrives during start-up is not
/// lost (the future then resolves at once when awaited).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use tokio::time::Instant;

    use super::*;
    use crate::config;

    fn alive(pid: i32) -> bool {
        kill(Pid::from_raw(pid), None).is_ok()
    }

    fn pids(path: &std::path::Path) -> Vec<i32> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    #[tokio::test]
    async fn run_refuses_simulated_sources_and_targets_before_starting() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/config/valid/simulated.toml"
        ))
        .unwrap();
        let config = config::compile(&text, "simulated.toml", &|_| None).unwrap();
        let err = run(config.clone(), CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "source backlog is of kind \"simulated\", which only runs inside `capstan simulate`"
        );
        let mut config = config;
        config.sources.clear();
        let err = run(config, CancellationToken::new()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "service worker's target is of kind \"simulated\", which only runs inside `capstan simulate`"
        );
    }

    #[tokio::test]
    async fn run_keeps_the_minimum_and_stops_every_worker_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[store]
kind = "memory"

[sources.q]
kind = "command"
command = ["echo", "0"]
interval = "100ms"

[[services]]
name = "svc"
min = 2
max = 3
interval = "100ms"
target = {{ kind = "process", command = ["sh", "-c", "echo $$ >> {dir}/pids; exec sleep 1000"], stop_timeout = "5s" }}

[[services.policies]]
kind = "target_tracking"
metric = "q"
mode = "total"
target = 10
"#,
            dir = dir.path().display()
        );
        let config = config::compile(&text, "test.toml", &|_| None).unwrap();
        let cancel = CancellationToken::new();
        let daemon = tokio::spawn(run(config, cancel.clone()));

        let file = dir.path().join("pids");
        let deadline = Instant::now() + Duration::from_secs(20);
        while pids(&file).len() < 2 {
            assert!(Instant::now() < deadline, "workers did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = pids(&file);
        assert!(started.iter().all(|&p| alive(p)));

        cancel.cancel();
        daemon.await.unwrap().unwrap();
        assert_eq!(pids(&file).len(), 2, "nothing else started");
        assert!(
            started.iter().all(|&p| !alive(p)),
            "every worker stopped and reaped"
        );
    }

    #[tokio::test]
    async fn a_bad_target_fails_start_up_with_the_service_named() {
        let text = r#"
[server]
listen = "127.0.0.1:0"

[store]
kind = "memory"

[sources.q]
kind = "command"
command = ["echo", "0"]

[[services]]
name = "svc"
max = 2
target = { kind = "process", command = ["true"] }

[[services.policies]]
kind = "target_tracking"
metric = "q"
mode = "total"
target = 10
"#;
        let mut config = config::compile(text, "test.toml", &|_| None).unwrap();
        let TargetSpec::Process(spec) = &mut config.services[0].target else {
            panic!("expected a process target");
        };
        spec.command.clear();
        let err = run(config, CancellationToken::new()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "service svc: cannot set up its target: target svc: the worker command is empty"
        );
    }

    #[tokio::test]
    async fn shutdown_signal_resolves_on_sigterm() {
        let signal = shutdown_signal().unwrap();
        kill(Pid::this(), Signal::SIGTERM).unwrap();
        assert_eq!(signal.await, "SIGTERM");
    }
}
