//! The `run` command: pollers, one control loop per service, graceful shutdown.
//!
//! [`run`] binds the HTTP listener (`[server]`: `/healthz`, `/metrics`, pushed values;
//! see [`crate::server`]), starts one poller per source (feeding the shared metric
//! windows and the exporter), builds each service's target, and spawns one
//! [`ServiceLoop`] per service (its decisions counted by the exporter), all on the
//! system clock. It returns when its cancellation token fires (the binary bridges SIGINT and
//! SIGTERM to it with [`shutdown_signal`]), after an orderly shutdown:
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
//!
//! A control loop that ends on its own (a bug: loops only end when cancelled) is an
//! error: everything is shut down the same way and [`run`] returns
//! [`DaemonError::LoopEnded`], so the process exits non-zero and a supervisor restarts
//! it, rather than leaving a service silently unscaled.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_control::ServiceLoop;
use capstan_core::clock::{Clock, SystemClock};
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_sources::SourceKind;
use capstan_sources::error::SourceError;
use capstan_sources::poller::{self, Hooks};
use capstan_sources::{PushStore, ReadObserver};
use capstan_store::{DecisionLog, MemoryStore};
use capstan_targets::{ProcessTarget, Target, TargetError, TargetSpec};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::server::{self, Exporter, ExportingLog, ServerError, ServerState};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A source could not be set up.
    #[error("cannot start the sources: {0}")]
    Sources(#[from] SourceError),
    /// The HTTP listener could not start (token file, address in use).
    #[error(transparent)]
    Server(#[from] ServerError),
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

/// Runs `config` until `cancel` fires, then shuts down in order (see the
/// [module docs](self)). Must be called within a Tokio runtime.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), DaemonError> {
    refuse_simulated(&config)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let obs: SharedObservations = Arc::new(Mutex::new(Observations::new()));
    let exporter = Arc::new(Exporter::new(&config.sources, Arc::clone(&clock)));
    let log: Arc<dyn DecisionLog> = Arc::new(ExportingLog::new(
        Arc::new(MemoryStore::default()),
        Arc::clone(&exporter),
    ));
    let push = PushStore::new(Arc::clone(&clock));
    push.declare_all(&config.sources);
    let token = server::resolve_token(&config.server)?;
    let listener = server::bind(config.server.listen).await?;
    // Stops the loops, pollers and listener: on `cancel`, or when a loop ends on its own.
    let stop = cancel.child_token();

    let mut observer: Arc<dyn ReadObserver> = exporter.clone();
    // ship_to_cloudwatch: shippers on tasks of their own, fed by the same reads. They
    // stop after the pollers (their own token), so the last reads are shipped too.
    let ship_stop = CancellationToken::new();
    let mut shippers = JoinSet::new();
    if let Some(shipping) = capstan_sources::ship::spawn_sdk(
        &config.ship_to_cloudwatch,
        capstan_sources::ship::ShipOptions::default(),
        &ship_stop,
        {
            let exporter = Arc::clone(&exporter);
            Arc::new(move |n| exporter.count_unshipped(n))
        },
    ) {
        observer = Arc::new(capstan_sources::ship::Observers(vec![
            observer,
            shipping.observer,
        ]));
        shippers = shipping.tasks;
    }
    let shipping = Shippers {
        stop: ship_stop,
        tasks: shippers,
    };
    let mut pollers = poller::spawn_all_with(
        &config.sources,
        Arc::clone(&obs),
        Arc::clone(&clock),
        stop.clone(),
        &Hooks {
            push: Some(push.clone()),
            observer: Some(observer),
        },
    )?;
    let address = listener
        .local_addr()
        .map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
    tracing::info!(address = %address, auth = token.is_some(), "HTTP listener started");
    let app = server::router(ServerState::new(token, exporter, push));
    let listening = stop.clone();
    pollers.spawn(async move {
        if let Err(e) = server::serve(listener, app, listening).await {
            tracing::error!(error = %e, "the HTTP listener failed");
        }
    });
    tracing::info!(
        sources = config.sources.len(),
        services = config.services.len(),
        "capstan started"
    );

    let mut targets: Vec<ProcessTarget> = Vec::with_capacity(config.services.len());
    let mut loops = JoinSet::new();
    let mut names = HashMap::new();
    for service in config.services {
        let target = match &service.target {
            TargetSpec::Process(spec) => {
                ProcessTarget::new(&service.name, spec.clone(), Arc::clone(&clock))
            }
            TargetSpec::Simulated(_) => {
                stop.cancel();
                finish(loops, pollers, shipping, targets).await;
                return Err(DaemonError::SimulatedOnly {
                    what: format!("service {}'s target", service.name),
                });
            }
        };
        let target = match target {
            Ok(target) => target,
            Err(source) => {
                stop.cancel();
                finish(loops, pollers, shipping, targets).await;
                return Err(DaemonError::Target {
                    service: service.name,
                    source,
                });
            }
        };
        targets.push(target.clone());
        let service_loop = ServiceLoop::new(
            service.engine,
            target,
            Arc::clone(&clock),
            Arc::clone(&obs),
            Arc::clone(&log),
        );
        let handle = loops.spawn(service_loop.run(service.interval, stop.clone()));
        names.insert(handle.id(), service.name);
    }

    // Biased: the loops also end on `cancel` (through `stop`), and that is no failure.
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => Ok(()),
        Some(ended) = loops.join_next_with_id() => {
            let (id, reason) = match ended {
                Ok((id, _)) => (id, "it returned".to_owned()),
                Err(e) => (e.id(), panic_reason(e)),
            };
            let service = names.get(&id).cloned().unwrap_or_default();
            tracing::error!(service = %service, reason = %reason, "control loop ended unexpectedly; shutting down");
            Err(DaemonError::LoopEnded { service, reason })
        }
    };
    if outcome.is_ok() {
        tracing::info!("shutting down: stopping the control loops, then the targets");
    }
    stop.cancel();
    finish(loops, pollers, shipping, targets).await;
    tracing::info!("capstan stopped");
    outcome
}

/// How long the shippers' final flush may take at shutdown before it is abandoned
/// (what it did not ship is then lost, and logged as such).
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

/// The CloudWatch shippers: stopped after the pollers.
struct Shippers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// Waits for the (already cancelled) loops and pollers, has the shippers flush what the
/// pollers last read (bounded by [`FINAL_FLUSH_TIMEOUT`]), then shuts every target down
/// concurrently and waits for all of them.
async fn finish<L: 'static>(
    mut loops: JoinSet<L>,
    mut pollers: JoinSet<()>,
    mut shippers: Shippers,
    targets: Vec<ProcessTarget>,
) {
    while let Some(ended) = loops.join_next().await {
        if let Err(e) = ended {
            tracing::error!(reason = %panic_reason(e), "a control loop failed");
        }
    }
    while let Some(ended) = pollers.join_next().await {
        if let Err(e) = ended {
            tracing::error!(reason = %panic_reason(e), "a poller failed");
        }
    }
    shippers.stop.cancel();
    let flushed = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, async {
        while let Some(ended) = shippers.tasks.join_next().await {
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
        shippers.tasks.abort_all();
    }
    let mut shutdowns = JoinSet::new();
    for target in targets {
        shutdowns.spawn(async move {
            target.shutdown().await;
            tracing::info!(service = %target.name(), "target shut down");
        });
    }
    while shutdowns.join_next().await.is_some() {}
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
