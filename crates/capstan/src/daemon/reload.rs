//! Live reload: what asks for one (SIGHUP, a change of the config file, `POST
//! /api/v1/reload`) and what it reports.
//!
//! Every trigger sends a [`ReloadRequest`] to the daemon's main task, which owns the
//! running services and sources and applies the new file there (see
//! [`super::Daemon::reload`]): one reload at a time, in arrival order. The file is read
//! and validated first; an invalid file changes nothing (every error is logged, the last
//! good configuration keeps running, and `capstan_config_reloads_total{result="rejected"}`
//! counts it).
//!
//! The file watcher polls the file's content every [`WATCH_INTERVAL`] (cheap for a
//! config file, and it works the same for files replaced by rename, symlink swaps and
//! network file systems) and asks for a reload once a change has been stable for
//! [`DEBOUNCE`], so an editor's several writes make one reload.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::sources::SourceChanges;

/// How often the file watcher reads the config file.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a change must stay the same before it is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// What asked for a reload (logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The file changed.
    FileChange,
    /// `POST /api/v1/reload`.
    Api,
}

impl Trigger {
    /// Its name in logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::FileChange => "file change",
            Self::Api => "API",
        }
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    /// Services started.
    pub services_added: Vec<String>,
    /// Services whose policies, planner settings or interval changed: updated in place,
    /// cooldowns and stabilization kept.
    pub services_updated: Vec<String>,
    /// Services whose target changed: their loop was restarted.
    pub services_restarted: Vec<String>,
    /// Services stopped (their targets shut down).
    pub services_removed: Vec<String>,
    /// Sources added.
    pub sources_added: Vec<String>,
    /// Sources changed (their windows start afresh).
    pub sources_changed: Vec<String>,
    /// Sources removed.
    pub sources_removed: Vec<String>,
    /// Sources whose window length changed (their samples kept).
    pub sources_resized: Vec<String>,
    /// Sections that changed but only take effect at a restart (`server`, `log`,
    /// `store`, `ship_to_cloudwatch`).
    pub needs_restart: Vec<String>,
}

impl ReloadSummary {
    /// Records the source changes.
    pub fn sources(&mut self, changes: SourceChanges) {
        self.sources_added = changes.added;
        self.sources_changed = changes.changed;
        self.sources_removed = changes.removed;
        self.sources_resized = changes.resized;
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// capstan runs on its embedded default: there is no file to read again.
    #[error("capstan runs on its embedded default configuration: there is no file to reload")]
    NoFile,
    /// The file is invalid; each error names its place.
    #[error("the new configuration is invalid ({} errors); the last good one keeps running", .0.len())]
    Invalid(Vec<String>),
    /// The file is valid but could not be applied (a source or target could not be
    /// built); nothing was changed.
    #[error("the new configuration cannot be applied: {0}; the last good one keeps running")]
    Apply(String),
    /// The daemon is stopping.
    #[error("capstan is stopping")]
    Stopping,
}

/// The outcome of one reload.
pub type ReloadOutcome = Result<ReloadSummary, ReloadError>;

/// One reload asked of the daemon.
#[derive(Debug)]
pub struct ReloadRequest {
    /// What asked.
    pub trigger: Trigger,
    /// Where the outcome goes (dropped if nobody waits).
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Asks the daemon for reloads. Cloning shares it.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    requests: mpsc::Sender<ReloadRequest>,
}

impl ReloadHandle {
    /// A handle and the receiving end the daemon reads.
    pub fn channel() -> (Self, mpsc::Receiver<ReloadRequest>) {
        let (requests, receiver) = mpsc::channel(16);
        (Self { requests }, receiver)
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let (reply, outcome) = oneshot::channel();
        let request = ReloadRequest {
            trigger,
            reply: Some(reply),
        };
        if self.requests.send(request).await.is_err() {
            return Err(ReloadError::Stopping);
        }
        outcome.await.unwrap_or(Err(ReloadError::Stopping))
    }

    /// Asks for a reload without waiting for it.
    async fn ask(&self, trigger: Trigger) -> bool {
        self.requests
            .send(ReloadRequest {
                trigger,
                reply: None,
            })
            .await
            .is_ok()
    }
}

/// Asks for a reload on every SIGHUP until `cancel`.
pub fn spawn_sighup(handle: ReloadHandle, cancel: CancellationToken) -> std::io::Result<()> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                got = hangup.recv() => {
                    if got.is_none() || !handle.ask(Trigger::Signal).await {
                        break;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Watches `path` and asks for a reload when its content changed and then stayed the
/// same for [`DEBOUNCE`], until `cancel`. A file that cannot be read is not a change
/// (it is being replaced); the reload that follows reports a file that stays unreadable.
pub fn spawn_watcher(path: PathBuf, handle: ReloadHandle, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut seen = tokio::fs::read(&path).await.ok();
        let mut ticks = tokio::time::interval(WATCH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let Ok(now) = tokio::fs::read(&path).await else {
                continue;
            };
            if seen.as_ref() == Some(&now) {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(DEBOUNCE) => {}
            }
            let Ok(settled) = tokio::fs::read(&path).await else {
                continue;
            };
            if settled != now {
                // Still being written: look again at the next tick.
                continue;
            }
            seen = Some(settled);
            tracing::info!(path = %path.display(), "configuration file changed");
            if !handle.ask(Trigger::FileChange).await {
                break;
            }
        }
    });
}
