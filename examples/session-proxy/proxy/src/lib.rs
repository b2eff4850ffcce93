//! The session-proxy recipe's app (examples/session-proxy/): a TCP proxy that forwards
//! each connection (a session) to one upstream address and reports its live sessions
//! to capstan's work registry, so that capstan's scale-in stops only idle tasks; and a
//! load generator ([`load`]) that opens long sessions and closes them.
//!
//! A session is reported before it is forwarded: a task that capstan is draining for
//! scale-in answers `409`, and the proxy then closes the connection at once, so the
//! client reconnects through the load balancer to another task. Asked to stop (SIGTERM),
//! the proxy stops accepting and waits for its sessions to end.

pub mod load;
pub mod report;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::RwLock;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use report::{Registry, ReportError};

/// How the proxy forwards and reports.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where every session is forwarded (`host:port`).
    pub upstream: String,
    /// capstan's work registry; `None` reports nothing.
    pub registry: Option<Registry>,
    /// How often the full set of sessions is reported (renewing them): well under the
    /// registry's TTL.
    pub sync_every: Duration,
    /// How long a new session waits for capstan to take its report (capstan
    /// unreachable, or not knowing a task that just started) before it is forwarded
    /// anyway, to be reported by the next full report.
    pub report_wait: Duration,
    /// How long a stopping proxy waits for its sessions to end before it closes them.
    pub grace: Duration,
}

impl Settings {
    /// Forwards to `upstream`, reporting to `registry`: full report every minute,
    /// 5 s for a report, 110 s of grace (ECS sends SIGKILL 120 s after SIGTERM at most).
    pub fn new(upstream: &str, registry: Option<Registry>) -> Self {
        Self {
            upstream: upstream.to_owned(),
            registry,
            sync_every: Duration::from_secs(60),
            report_wait: Duration::from_secs(5),
            grace: Duration::from_secs(110),
        }
    }
}

/// The live sessions of a proxy, shared with whoever watches it.
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<Mutex<BTreeSet<String>>>);

impl Sessions {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sessions are open now.
    pub fn count(&self) -> usize {
        self.set().len()
    }

    /// Their ids.
    pub fn ids(&self) -> Vec<String> {
        self.set().iter().cloned().collect()
    }

    fn insert(&self, id: &str) {
        self.set().insert(id.to_owned());
    }

    fn remove(&self, id: &str) {
        self.set().remove(id);
    }
}

/// What a proxy did, once it has stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sessions forwarded.
    pub forwarded: u64,
    /// Connections closed at once because the task is draining (capstan's `409`).
    pub refused: u64,
    /// Sessions still open when the proxy was killed or its grace ran out: cut off.
    pub cut: usize,
}

/// A proxy bound to its port, ready to [`serve`](Proxy::serve).
#[derive(Debug)]
pub struct Proxy {
    listener: TcpListener,
    settings: Settings,
    sessions: Sessions,
}

/// What [`Proxy::serve`]'s connection tasks share.
struct Shared {
    settings: Settings,
    sessions: Sessions,
    /// Starts and ends take it shared, the full report exclusively: a full report
    /// never races a start or an end, so it never re-adds a session just ended nor
    /// drops one just started.
    reports: RwLock<()>,
    next_id: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    /// Fired when the proxy is killed: every connection closes.
    kill: CancellationToken,
}

impl Proxy {
    /// Listens on `addr`.
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs, settings: Settings) -> std::io::Result<Self> {
        Ok(Self::from_listener(
            TcpListener::bind(addr).await?,
            settings,
        ))
    }

    /// Serves on a listener already bound.
    pub fn from_listener(listener: TcpListener, settings: Settings) -> Self {
        Self {
            listener,
            settings,
            sessions: Sessions::default(),
        }
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Its live sessions (a handle that stays valid while it serves).
    pub fn sessions(&self) -> Sessions {
        self.sessions.clone()
    }

    /// Forwards sessions until `stop` (then stops accepting and waits up to the grace
    /// for the sessions to end, as on SIGTERM) or `kill` (closes every session at
    /// once, as SIGKILL would). Returns what it did.
    pub async fn serve(self, stop: CancellationToken, kill: CancellationToken) -> Summary {
        let shared = Arc::new(Shared {
            settings: self.settings,
            sessions: self.sessions,
            reports: RwLock::new(()),
            next_id: AtomicU64::new(1),
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            kill: kill.child_token(),
        });
        let syncing = tokio::spawn(sync_loop(Arc::clone(&shared)));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = kill.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((client, _)) => {
                        connections.spawn(session(Arc::clone(&shared), client));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: pause, then go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(self.listener);
        if !kill.is_cancelled() {
            let open = shared.sessions.count();
            if open > 0 {
                tracing::info!(open, "stopping: waiting for the sessions to end");
            }
            let drained = async { while connections.join_next().await.is_some() {} };
            tokio::select! {
                () = drained => {}
                () = kill.cancelled() => {}
                () = tokio::time::sleep(shared.settings.grace) => {}
            }
        }
        let cut = shared.sessions.count();
        if cut > 0 {
            tracing::warn!(cut, "closing the sessions still open");
        }
        shared.kill.cancel();
        connections.shutdown().await;
        syncing.abort();
        Summary {
            forwarded: shared.forwarded.load(Ordering::Relaxed),
            refused: shared.refused.load(Ordering::Relaxed),
            cut,
        }
    }
}

/// Reports the full set of sessions every `sync_every`, from the start (which also
/// clears what an earlier run of the proxy in the same task left behind).
async fn sync_loop(shared: Arc<Shared>) {
    let Some(registry) = shared.settings.registry.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(shared.settings.sync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let _exclusive = shared.reports.write().await;
        let ids = shared.sessions.ids();
        if let Err(e) = registry.sync(&ids).await {
            tracing::warn!(error = %e, sessions = ids.len(), "full report refused");
        }
    }
}

/// How a session's start report went.
enum Started {
    /// capstan holds it.
    Reported,
    /// The task is draining: refuse the session.
    Draining,
    /// Not reported (capstan unreachable or refusing): forwarded anyway, the next full
    /// report carries it.
    Unreported,
}

async fn report_start(shared: &Shared, registry: &Registry, id: &str) -> Started {
    let deadline = tokio::time::Instant::now() + shared.settings.report_wait;
    let mut pause = Duration::from_millis(50);
    loop {
        let result = {
            let _shared = shared.reports.read().await;
            registry.start(id).await
        };
        match result {
            Ok(()) => return Started::Reported,
            Err(e) if e.is_draining() => return Started::Draining,
            Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, session = id, "start report: retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::warn!(error = %e, session = id, "session not reported: forwarded anyway");
                return Started::Unreported;
            }
        }
    }
}

/// One session: reported, forwarded until either side closes (or the proxy is
/// killed), then reported ended.
async fn session(shared: Arc<Shared>, mut client: TcpStream) {
    let id = format!("s{}", shared.next_id.fetch_add(1, Ordering::Relaxed));
    // Live before it is reported, so a full report in between keeps it.
    shared.sessions.insert(&id);
    if let Some(registry) = &shared.settings.registry {
        match report_start(&shared, registry, &id).await {
            Started::Reported | Started::Unreported => {}
            Started::Draining => {
                shared.sessions.remove(&id);
                shared.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(session = id, "draining: session refused");
                return;
            }
        }
    }
    let upstream = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect(&shared.settings.upstream),
    )
    .await;
    match upstream {
        Ok(Ok(mut upstream)) => {
            shared.forwarded.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, session = id, "session ended with an error");
                    }
                }
                // Killed: the session is cut, and nothing is reported (as after SIGKILL).
                () = shared.kill.cancelled() => return,
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, upstream = shared.settings.upstream, "upstream refused")
        }
        Err(_) => tracing::warn!(upstream = shared.settings.upstream, "upstream timed out"),
    }
    shared.sessions.remove(&id);
    if let Some(registry) = &shared.settings.registry {
        let _shared = shared.reports.read().await;
        if let Err(e) = registry.end(&id).await {
            // The next full report drops it.
            tracing::debug!(error = %e, session = id, "end report refused");
        }
    }
}
