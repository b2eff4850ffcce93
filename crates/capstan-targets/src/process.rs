//! The local-process target: keeps N copies of a command running on this machine.
//!
//! Each copy (a *worker*) is one task, named `<service>-<seq>` (`worker-1`, `worker-2`,
//! ...; a replacement gets a new number, like a replaced ECS task gets a new id).
//!
//! # How workers run
//!
//! - Started with the configured program and arguments (no shell unless the command
//!   names one), the configured environment plus `CAPSTAN_TASK_ID=<task id>`, the
//!   configured working directory, standard input from `/dev/null`, and standard output
//!   and error **inherited** from capstan (so a worker's output lands wherever capstan's
//!   does; workers that want their lines attributed print `$CAPSTAN_TASK_ID` themselves).
//! - Each worker leads its own process group. Signals go to the whole group, so a shell
//!   script and the programs it runs stop together, and a Ctrl-C in capstan's terminal
//!   reaches capstan only: capstan then stops the workers itself, in order.
//! - A worker is its process group, like a container: when its main process exits, for
//!   whatever reason, anything left in its group is killed (SIGKILL).
//!
//! # Desired count and restarts
//!
//! Like ECS keeps `desiredCount`, a worker that exits on its own is replaced after
//! `restart_delay`. Quick repeated exits double the delay each time, up to 16×; a worker
//! that stayed up for at least 16 × `restart_delay` (and at least 10 s) resets the
//! doubling. A replacement waiting for its delay counts as *pending*. A worker that
//! cannot even be started (missing program) is retried the same way.
//!
//! Scale-in stops exactly the victims it is given and lowers the desired count so they
//! are not replaced; replacements still waiting are cancelled first when the count
//! drops. Stopping a worker: SIGTERM to its group, SIGKILL after `stop_timeout`, then
//! it is reaped. A worker being stopped shows as [`TaskState::Stopping`] and is not
//! counted as running.
//!
//! # Drain, then stop
//!
//! With a work registry ([`ProcessTarget::with_work`]: the sessions and workloads the
//! workers report to capstan), a victim is not stopped at once: it shows as
//! [`TaskState::Draining`] (the registry refuses it new work) and is checked every
//! [`DRAIN_CHECK`]; once it holds no live work it gets its SIGTERM. A victim still busy
//! `drain_timeout` after it was chosen is kept: it is running again and the desired
//! count goes back up by one, so no session or workload is cut off — unless the service
//! sets a `drain_deadline`: then a victim still busy at the deadline gets its SIGTERM
//! anyway (the operator accepted cutting its work). A scale-out cancels
//! every drain in progress first (the draining workers serve again).
//!
//! # Shutdown
//!
//! [`Target::shutdown`] stops every worker (SIGTERM, SIGKILL after `stop_timeout`) and
//! waits until all are reaped. This is the state capstan leaves on SIGINT/SIGTERM: **no
//! worker is left running**, because a later capstan could not adopt them (it cannot
//! know their state, and it starts its own). If capstan itself is killed with SIGKILL it
//! cannot clean up: its workers keep running and must be stopped by hand (each one's
//! environment holds its `CAPSTAN_TASK_ID`).
//!
//! # Design
//!
//! A supervisor task owns the workers. [`ProcessTarget`] is a cheap, cloneable handle:
//! it sends requests over a channel and reads the supervisor's latest [`ProcessSnapshot`]
//! from a watch channel. Each worker has a keeper task that awaits its exit (or a stop
//! request, which it carries out) and reports back. All timing uses `tokio::time`, so
//! tests can pause time. A new target starts with a desired count of 0 and no workers.
//! The target must be created inside a Tokio runtime.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use capstan_core::Timestamp;
use capstan_core::clock::Clock;
use capstan_core::model::{Capacity, Task, TaskId, TaskState};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::spec::ProcessSpec;
use crate::{Observed, Target, TargetError, WorkCounts};

/// A worker that stayed up at least this long (or 16 × `restart_delay`, whichever is
/// longer) resets the restart back-off.
const MIN_STABLE_UPTIME: Duration = Duration::from_secs(10);

/// How often draining victims are checked for live work.
pub const DRAIN_CHECK: Duration = Duration::from_secs(1);

/// The largest back-off multiplier of `restart_delay`.
const MAX_BACKOFF_FACTOR: u32 = 16;

/// The delay before a restart, given how many quick exits in a row (`streak` ≥ 1) led
/// to it: `base`, `2 × base`, `4 × base`, ... up to `16 × base`.
pub fn restart_backoff(base: Duration, streak: u32) -> Duration {
    let exponent = streak
        .saturating_sub(1)
        .min(MAX_BACKOFF_FACTOR.trailing_zeros());
    base.saturating_mul(1 << exponent)
}

/// The streak of a worker that exited on its own after `uptime`, its own streak being
/// `previous` (0 for a worker started by a scale-out): one more if it exited quickly,
/// back to 1 if it had stayed up long enough.
pub fn next_streak(previous: u32, uptime: Duration, base: Duration) -> u32 {
    if uptime >= stable_uptime(base) {
        1
    } else {
        previous.saturating_add(1)
    }
}

/// How long a worker must stay up for its exit not to count as a quick crash.
fn stable_uptime(base: Duration) -> Duration {
    base.saturating_mul(MAX_BACKOFF_FACTOR)
        .max(MIN_STABLE_UPTIME)
}

/// One worker as seen from outside the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its task id.
    pub id: TaskId,
    /// The operating-system process id of its main process (also its process group).
    pub pid: u32,
    /// When it was started, by the target's clock.
    pub started_at: Timestamp,
    /// True once it has been told to stop.
    pub stopping: bool,
    /// True while it drains before its stop (a scale-in victim with live work).
    pub draining: bool,
}

/// The supervisor's state after its latest change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessSnapshot {
    /// The desired count.
    pub desired: u32,
    /// Live workers (running or stopping), oldest first.
    pub workers: Vec<WorkerInfo>,
    /// Replacements waiting for their restart delay.
    pub restarts_pending: u32,
}

impl ProcessSnapshot {
    /// The snapshot as the [`Target`] trait reports it.
    pub fn observed(&self) -> Observed {
        let running = self.workers.iter().filter(|w| !w.stopping).count();
        Observed {
            capacity: Capacity {
                desired: self.desired,
                running: u32::try_from(running).unwrap_or(u32::MAX),
                pending: self.restarts_pending,
            },
            tasks: self
                .workers
                .iter()
                .map(|w| Task {
                    id: w.id.clone(),
                    started_at: w.started_at,
                    zone: None,
                    state: if w.stopping {
                        TaskState::Stopping
                    } else if w.draining {
                        TaskState::Draining
                    } else {
                        TaskState::Running
                    },
                    sessions: 0,
                    protected: false,
                    healthy: true,
                })
                .collect(),
        }
    }
}

/// Keeps N copies of a command running. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ProcessTarget {
    /// The service name (task ids are `<name>-<seq>`).
    name: Arc<str>,
    /// Requests to the supervisor.
    requests: mpsc::Sender<Request>,
    /// The supervisor's latest state; closed when the supervisor has finished.
    snapshot: watch::Receiver<ProcessSnapshot>,
}

/// A request to the supervisor.
enum Request {
    ScaleOut {
        desired: u32,
        reply: oneshot::Sender<Result<(), TargetError>>,
    },
    ScaleIn {
        desired: u32,
        victims: Vec<TaskId>,
        reply: oneshot::Sender<Result<(), TargetError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl ProcessTarget {
    /// A target for service `name` running `spec`'s command, with task start times read
    /// from `clock`. Starts its supervisor on the current Tokio runtime (so it must be
    /// called inside one); no worker runs until the first scale-out.
    pub fn new<C: Clock>(name: &str, spec: ProcessSpec, clock: C) -> Result<Self, TargetError> {
        Self::with_work(name, spec, clock, None)
    }

    /// Like [`new`](Self::new), with the live work of each worker read from `work`:
    /// scale-in victims drain until idle before they stop (see the
    /// [module docs](self#drain-then-stop)).
    pub fn with_work<C: Clock>(
        name: &str,
        spec: ProcessSpec,
        clock: C,
        work: Option<Arc<dyn WorkCounts>>,
    ) -> Result<Self, TargetError> {
        if spec.command.is_empty() {
            return Err(TargetError::Invalid {
                target: name.to_owned(),
                reason: "the worker command is empty".to_owned(),
            });
        }
        let (requests, requests_rx) = mpsc::channel(16);
        let (snapshot_tx, snapshot) = watch::channel(ProcessSnapshot::default());
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            name: name.to_owned(),
            spec,
            clock: Arc::new(clock),
            work,
            desired: 0,
            next_seq: 1,
            workers: BTreeMap::new(),
            restarts: Vec::new(),
            exits_tx,
            exits_rx,
            snapshot: snapshot_tx,
        };
        tokio::spawn(supervisor.run(requests_rx));
        Ok(Self {
            name: Arc::from(name),
            requests,
            snapshot,
        })
    }

    /// The supervisor's latest state, or `None` once the target has shut down.
    pub fn snapshot(&self) -> Option<ProcessSnapshot> {
        if self.snapshot.has_changed().is_err() {
            return None;
        }
        Some(self.snapshot.borrow().clone())
    }

    /// A receiver that sees every change of the supervisor's state (closed at shutdown).
    pub fn subscribe(&self) -> watch::Receiver<ProcessSnapshot> {
        self.snapshot.clone()
    }

    fn closed(&self) -> TargetError {
        TargetError::Closed {
            target: self.name.to_string(),
        }
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), TargetError>>) -> Request,
    ) -> Result<(), TargetError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .await
            .map_err(|_| self.closed())?;
        answer.await.map_err(|_| self.closed())?
    }
}

impl Target for ProcessTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Result<Observed, TargetError> {
        self.snapshot()
            .map(|s| s.observed())
            .ok_or_else(|| self.closed())
    }

    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        self.ask(|reply| Request::ScaleOut { desired, reply }).await
    }

    async fn scale_in(&self, desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        let victims = victims.to_vec();
        self.ask(|reply| Request::ScaleIn {
            desired,
            victims,
            reply,
        })
        .await
    }

    /// Stops every worker (SIGTERM, SIGKILL after `stop_timeout`) and waits until all
    /// are reaped. Later requests fail with [`TargetError::Closed`]. Calling it again
    /// is harmless.
    async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .requests
            .send(Request::Shutdown { reply })
            .await
            .is_ok()
        {
            // An error here means the supervisor finished (another shutdown won the race):
            // either way the workers are gone.
            let _ = done.await;
        }
        // Wait for the supervisor itself to finish (its snapshot sender then closes).
        let mut snapshot = self.snapshot.clone();
        while snapshot.changed().await.is_ok() {}
    }
}

/// A live worker, owned by the supervisor.
struct Worker {
    id: TaskId,
    pid: u32,
    started_at: Timestamp,
    /// Tokio time of the start, for the quick-crash back-off.
    started: Instant,
    /// Quick exits in a row of the workers this one replaces (0 after a scale-out).
    streak: u32,
    /// Tells the keeper to stop the worker; `None` once it has been told.
    stop: Option<oneshot::Sender<()>>,
    /// While it drains before its stop: until when it may (Tokio time).
    drain_until: Option<Instant>,
}

/// A replacement waiting for its delay.
#[derive(Debug, Clone, Copy)]
struct Restart {
    due: Instant,
    streak: u32,
}

/// A keeper's report: worker `seq` has exited and been reaped.
struct Exit {
    seq: u64,
    status: std::io::Result<ExitStatus>,
    /// True when it exited because it was told to stop.
    stopped: bool,
}

/// The task that owns the workers.
struct Supervisor {
    name: String,
    spec: ProcessSpec,
    clock: Arc<dyn Clock>,
    /// The live work of each worker; `None`: victims stop at once.
    work: Option<Arc<dyn WorkCounts>>,
    desired: u32,
    next_seq: u64,
    /// Live workers by sequence number.
    workers: BTreeMap<u64, Worker>,
    restarts: Vec<Restart>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits_rx: mpsc::UnboundedReceiver<Exit>,
    snapshot: watch::Sender<ProcessSnapshot>,
}

impl Supervisor {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        loop {
            let next_due = self.restarts.iter().map(|r| r.due).min();
            let draining = self.workers.values().any(|w| w.drain_until.is_some());
            tokio::select! {
                request = requests.recv() => match request {
                    Some(Request::ScaleOut { desired, reply }) => {
                        let result = self.scale_out(desired);
                        self.publish();
                        let _ = reply.send(result);
                    }
                    Some(Request::ScaleIn { desired, victims, reply }) => {
                        let result = self.scale_in(desired, &victims);
                        self.publish();
                        let _ = reply.send(result);
                    }
                    Some(Request::Shutdown { reply }) => {
                        self.stop_all().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        // Every handle is gone: nobody can shut us down any more.
                        self.stop_all().await;
                        return;
                    }
                },
                Some(exit) = self.exits_rx.recv() => {
                    self.on_exit(exit);
                    self.publish();
                }
                () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    self.restart_due();
                    self.publish();
                }
                () = tokio::time::sleep(DRAIN_CHECK), if draining => {
                    self.check_drains();
                    self.publish();
                }
            }
        }
    }

    fn publish(&self) {
        let snapshot = ProcessSnapshot {
            desired: self.desired,
            workers: self
                .workers
                .values()
                .map(|w| WorkerInfo {
                    id: w.id.clone(),
                    pid: w.pid,
                    started_at: w.started_at,
                    stopping: w.stop.is_none(),
                    draining: w.drain_until.is_some() && w.stop.is_some(),
                })
                .collect(),
            restarts_pending: u32::try_from(self.restarts.len()).unwrap_or(u32::MAX),
        };
        self.snapshot.send_replace(snapshot);
    }

    /// Workers not being stopped, plus replacements waiting.
    fn active(&self) -> usize {
        self.workers.values().filter(|w| w.stop.is_some()).count() + self.restarts.len()
    }

    fn desired(&self) -> usize {
        usize::try_from(self.desired).unwrap_or(usize::MAX)
    }

    fn scale_out(&mut self, desired: u32) -> Result<(), TargetError> {
        if desired < self.desired {
            return Err(TargetError::Invalid {
                target: self.name.clone(),
                reason: format!(
                    "scale out to {desired} is below the desired count {}; scale in instead",
                    self.desired
                ),
            });
        }
        self.cancel_drains();
        self.desired = desired;
        let mut first_error = None;
        while self.active() < self.desired() {
            if let Err(e) = self.spawn(0) {
                // Retried like a worker that exited at once.
                self.schedule_restart(1);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn scale_in(&mut self, desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        if desired > self.desired {
            return Err(TargetError::Invalid {
                target: self.name.clone(),
                reason: format!(
                    "scale in to {desired} is above the desired count {}; scale out instead",
                    self.desired
                ),
            });
        }
        let mut seqs = Vec::with_capacity(victims.len());
        for victim in victims {
            match self.seq_of(victim) {
                Some(seq) => seqs.push((seq, victim)),
                None => {
                    return Err(TargetError::UnknownTask {
                        target: self.name.clone(),
                        task: victim.clone(),
                    });
                }
            }
        }
        self.desired = desired;
        let drain_until =
            Instant::now() + self.spec.drain_deadline.unwrap_or(self.spec.drain_timeout);
        for (seq, victim) in seqs {
            if self.work.is_some() {
                if let Some(worker) = self.workers.get_mut(&seq)
                    && worker.stop.is_some()
                    && worker.drain_until.is_none()
                {
                    tracing::info!(service = %self.name, task = %victim, pid = worker.pid, "draining worker before its stop");
                    worker.drain_until = Some(drain_until);
                }
                continue;
            }
            match self.workers.get_mut(&seq) {
                Some(worker) => match worker.stop.take() {
                    Some(stop) => {
                        tracing::info!(service = %self.name, task = %victim, pid = worker.pid, "stopping worker (SIGTERM)");
                        let _ = stop.send(());
                    }
                    None => {
                        tracing::debug!(service = %self.name, task = %victim, "victim is already stopping")
                    }
                },
                None => {
                    tracing::debug!(service = %self.name, task = %victim, "victim has already exited")
                }
            }
        }
        // Cancel waiting replacements, the latest first, down to the desired count.
        self.restarts.sort_by_key(|r| r.due);
        while self.active() > self.desired() && self.restarts.pop().is_some() {}
        self.check_drains();
        Ok(())
    }

    /// Stops the draining victims that hold no live work; keeps (running again, one
    /// more desired) those still busy at their drain deadline.
    fn check_drains(&mut self) {
        let Some(work) = &self.work else {
            return;
        };
        let now = Instant::now();
        let draining: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.drain_until.is_some() && w.stop.is_some())
            .map(|(seq, _)| *seq)
            .collect();
        if draining.is_empty() {
            return;
        }
        let ids: Vec<&str> = draining
            .iter()
            .filter_map(|seq| self.workers.get(seq).map(|w| w.id.as_str()))
            .collect();
        let counts = work.work_many(&ids);
        let mut kept = 0u32;
        for (seq, busy) in draining.iter().zip(counts) {
            let Some(worker) = self.workers.get_mut(seq) else {
                continue;
            };
            if busy == 0 {
                if let Some(stop) = worker.stop.take() {
                    tracing::info!(service = %self.name, task = %worker.id, pid = worker.pid, "drained: stopping worker (SIGTERM)");
                    let _ = stop.send(());
                }
            } else if worker.drain_until.is_some_and(|until| now >= until) {
                if self.spec.drain_deadline.is_some() {
                    if let Some(stop) = worker.stop.take() {
                        tracing::warn!(service = %self.name, task = %worker.id, pid = worker.pid, live_work = busy, "drain deadline passed: stopping the worker, its work cut (SIGTERM)");
                        let _ = stop.send(());
                    }
                } else {
                    tracing::warn!(service = %self.name, task = %worker.id, pid = worker.pid, live_work = busy, "still busy at its drain timeout: kept running");
                    worker.drain_until = None;
                    kept += 1;
                }
            }
        }
        self.desired = self.desired.saturating_add(kept);
    }

    /// Every drain in progress is cancelled: its workers serve again (a scale-out).
    fn cancel_drains(&mut self) {
        for worker in self.workers.values_mut() {
            if worker.stop.is_some() && worker.drain_until.take().is_some() {
                tracing::info!(service = %self.name, task = %worker.id, "drain cancelled by a scale-out");
            }
        }
    }

    /// The sequence number of a task id this target issued, if it did.
    fn seq_of(&self, id: &TaskId) -> Option<u64> {
        let rest = id.0.strip_prefix(self.name.as_str())?.strip_prefix('-')?;
        let seq: u64 = rest.parse().ok()?;
        (seq >= 1 && seq < self.next_seq && rest == seq.to_string()).then_some(seq)
    }

    fn schedule_restart(&mut self, streak: u32) {
        let delay = restart_backoff(self.spec.restart_delay, streak);
        self.restarts.push(Restart {
            due: Instant::now() + delay,
            streak,
        });
    }

    fn on_exit(&mut self, exit: Exit) {
        let Some(worker) = self.workers.remove(&exit.seq) else {
            return;
        };
        let status = match &exit.status {
            Ok(status) => status.to_string(),
            Err(e) => format!("unknown status ({e})"),
        };
        if exit.stopped {
            tracing::info!(service = %self.name, task = %worker.id, pid = worker.pid, %status, "worker stopped");
            return;
        }
        let uptime = worker.started.elapsed();
        let streak = next_streak(worker.streak, uptime, self.spec.restart_delay);
        if self.active() < self.desired() {
            let delay = restart_backoff(self.spec.restart_delay, streak);
            tracing::warn!(
                service = %self.name, task = %worker.id, pid = worker.pid, %status,
                uptime_s = uptime.as_secs_f64(), restart_in_s = delay.as_secs_f64(),
                "worker exited on its own; replacing it"
            );
            self.schedule_restart(streak);
        } else {
            tracing::info!(service = %self.name, task = %worker.id, pid = worker.pid, %status, "surplus worker exited; not replaced");
        }
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        let (due, waiting): (Vec<Restart>, Vec<Restart>) =
            self.restarts.iter().partition(|r| r.due <= now);
        self.restarts = waiting;
        for restart in due {
            if self.active() >= self.desired() {
                continue;
            }
            if let Err(e) = self.spawn(restart.streak) {
                let streak = restart.streak.saturating_add(1);
                tracing::warn!(service = %self.name, error = %e, retry_in_s = restart_backoff(self.spec.restart_delay, streak).as_secs_f64(), "cannot start a replacement worker");
                self.schedule_restart(streak);
            }
        }
    }

    /// Starts one worker whose predecessors' streak is `streak`.
    fn spawn(&mut self, streak: u32) -> Result<(), TargetError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = TaskId::from(format!("{}-{seq}", self.name));
        let spawn_error = |reason: String| TargetError::Spawn {
            target: self.name.clone(),
            task: id.clone(),
            reason,
        };
        let Some((program, args)) = self.spec.command.split_first() else {
            return Err(spawn_error("the worker command is empty".to_owned()));
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .envs(&self.spec.env)
            .env("CAPSTAN_TASK_ID", id.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.spec.workdir {
            command.current_dir(dir);
        }
        let child = command
            .spawn()
            .map_err(|e| spawn_error(format!("{program}: {e}")))?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(service = %self.name, task = %id, pid, "worker started");
        let (stop, stop_rx) = oneshot::channel();
        tokio::spawn(keep(
            seq,
            child,
            stop_rx,
            self.spec.stop_timeout,
            self.exits_tx.clone(),
        ));
        self.workers.insert(
            seq,
            Worker {
                id,
                pid,
                started_at: self.clock.now(),
                started: Instant::now(),
                streak,
                stop: Some(stop),
                drain_until: None,
            },
        );
        Ok(())
    }

    /// Stops every worker and waits until all are reaped.
    async fn stop_all(&mut self) {
        self.desired = 0;
        self.restarts.clear();
        for worker in self.workers.values_mut() {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        if !self.workers.is_empty() {
            tracing::info!(service = %self.name, workers = self.workers.len(), "stopping all workers");
        }
        self.publish();
        while !self.workers.is_empty() {
            match self.exits_rx.recv().await {
                Some(exit) => {
                    self.on_exit(exit);
                    self.publish();
                }
                // Unreachable while we hold a sender; stop waiting rather than spin.
                None => break,
            }
        }
    }
}

/// Owns one worker process: waits for it to exit, or stops it when told to (or when the
/// supervisor is gone), then reports its exit.
async fn keep(
    seq: u64,
    mut child: Child,
    stop: oneshot::Receiver<()>,
    stop_timeout: Duration,
    exits: mpsc::UnboundedSender<Exit>,
) {
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    let (status, stopped) = tokio::select! {
        status = child.wait() => (status, false),
        _ = stop => {
            signal_group(group, Signal::SIGTERM);
            let status = match tokio::time::timeout(stop_timeout, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    signal_group(group, Signal::SIGKILL);
                    child.wait().await
                }
            };
            (status, true)
        }
    };
    // A worker is its process group: nothing in it outlives the main process.
    signal_group(group, Signal::SIGKILL);
    let _ = exits.send(Exit {
        seq,
        status,
        stopped,
    });
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    let Some(group) = group else { return };
    match killpg(group, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = group.as_raw(), %signal, error = %e, "cannot signal worker")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use capstan_core::clock::{VirtualClock, elapsed};
    use capstan_testkit::process::{alive, until};
    use nix::sys::signal::kill;

    use super::*;

    fn spec(script: &str, dir: &Path) -> ProcessSpec {
        ProcessSpec {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("DIR".to_owned(), dir.display().to_string())]),
            workdir: None,
            stop_timeout: Duration::from_secs(10),
            restart_delay: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(600),
            drain_deadline: None,
        }
    }

    fn id(s: &str) -> TaskId {
        TaskId::from(s)
    }

    fn ids(observed: &Observed) -> Vec<(String, TaskState)> {
        observed
            .tasks
            .iter()
            .map(|t| (t.id.to_string(), t.state))
            .collect()
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits (on real time: these tests run real processes) until `check` gives a value.
    async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A clock that follows Tokio time (paused in these tests) and records each read.
    #[derive(Clone)]
    struct TokioClock {
        base: Timestamp,
        start: Instant,
        reads: Arc<Mutex<Vec<Duration>>>,
    }

    impl TokioClock {
        fn new() -> Self {
            Self {
                base: VirtualClock::at_epoch().now(),
                start: Instant::now(),
                reads: Arc::default(),
            }
        }
        fn reads(&self) -> Vec<Duration> {
            self.reads.lock().unwrap().clone()
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            let since = self.start.elapsed();
            self.reads.lock().unwrap().push(since);
            capstan_core::clock::add(self.base, since)
        }
    }

    #[test]
    fn backoff_doubles_up_to_sixteen_times() {
        let base = Duration::from_millis(500);
        let got: Vec<u64> = (0..=7)
            .map(|s| restart_backoff(base, s).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![500, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn quick_exits_extend_the_streak_and_a_long_run_resets_it() {
        let base = Duration::from_secs(1);
        // Stable after max(16 × 1 s, 10 s) = 16 s.
        assert_eq!(next_streak(0, Duration::ZERO, base), 1);
        assert_eq!(next_streak(3, Duration::from_secs(15), base), 4);
        assert_eq!(next_streak(3, Duration::from_secs(16), base), 1);
        // A tiny delay still needs 10 s of uptime.
        let tiny = Duration::from_millis(10);
        assert_eq!(next_streak(2, Duration::from_secs(9), tiny), 3);
        assert_eq!(next_streak(2, Duration::from_secs(10), tiny), 1);
    }

    #[tokio::test]
    async fn empty_command_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("true", dir.path());
        s.command.clear();
        let err = ProcessTarget::new("svc", s, VirtualClock::at_epoch()).unwrap_err();
        assert_eq!(err.to_string(), "target svc: the worker command is empty");
    }

    #[tokio::test]
    async fn scale_out_starts_workers_with_task_id_env_and_workdir_and_shutdown_stops_them() {
        let dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut s = spec(
            r#"echo "$CAPSTAN_TASK_ID $FOO $(pwd)" >> "$DIR/ids"; exec sleep 1000"#,
            dir.path(),
        );
        s.env.insert("FOO".into(), "bar".into());
        s.workdir = Some(work.path().to_path_buf());
        let clock = VirtualClock::at_epoch();
        let target = ProcessTarget::new("svc", s, clock.clone()).unwrap();
        assert_eq!(target.observe().await.unwrap(), Observed::default());

        target.scale_out(3).await.unwrap();
        let observed = target.observe().await.unwrap();
        assert_eq!(
            observed.capacity,
            Capacity {
                desired: 3,
                running: 3,
                pending: 0
            }
        );
        assert_eq!(
            ids(&observed),
            vec![
                ("svc-1".into(), TaskState::Running),
                ("svc-2".into(), TaskState::Running),
                ("svc-3".into(), TaskState::Running)
            ]
        );
        assert!(
            observed
                .tasks
                .iter()
                .all(|t| t.started_at == clock.now() && t.sessions == 0)
        );

        let ids_file = dir.path().join("ids");
        let mut started = eventually("3 workers to start", || {
            let l = lines(&ids_file);
            (l.len() == 3).then_some(l)
        })
        .await;
        started.sort();
        let cwd = std::fs::canonicalize(work.path()).unwrap();
        let expected: Vec<String> = (1..=3)
            .map(|i| format!("svc-{i} bar {}", cwd.display()))
            .collect();
        assert_eq!(started, expected);

        let pids: Vec<u32> = target
            .snapshot()
            .unwrap()
            .workers
            .iter()
            .map(|w| w.pid)
            .collect();
        assert!(pids.iter().all(|&p| alive(p)));

        target.shutdown().await;
        assert!(
            pids.iter().all(|&p| !alive(p)),
            "every worker is reaped by shutdown"
        );
        assert!(matches!(
            target.observe().await,
            Err(TargetError::Closed { .. })
        ));
        assert!(matches!(
            target.scale_out(4).await,
            Err(TargetError::Closed { .. })
        ));
        target.shutdown().await; // harmless the second time
    }

    #[tokio::test]
    async fn scale_in_stops_exactly_the_victims_with_sigterm_and_does_not_replace_them() {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"trap 'echo "term $CAPSTAN_TASK_ID" >> "$DIR/log"; exit 0' TERM
echo "started $CAPSTAN_TASK_ID" >> "$DIR/log"
while :; do sleep 1; done"#;
        let target =
            ProcessTarget::new("svc", spec(script, dir.path()), VirtualClock::at_epoch()).unwrap();
        target.scale_out(3).await.unwrap();
        let log = dir.path().join("log");
        eventually("3 workers to start", || {
            (lines(&log).len() == 3).then_some(())
        })
        .await;

        target
            .scale_in(1, &[id("svc-3"), id("svc-1")])
            .await
            .unwrap();
        let observed = target.observe().await.unwrap();
        assert_eq!(
            observed.capacity,
            Capacity {
                desired: 1,
                running: 1,
                pending: 0
            }
        );
        assert_eq!(
            ids(&observed),
            vec![
                ("svc-1".into(), TaskState::Stopping),
                ("svc-2".into(), TaskState::Running),
                ("svc-3".into(), TaskState::Stopping)
            ]
        );

        let mut rx = target.subscribe();
        let after = until(&mut rx, |s| s.workers.len() == 1).await;
        assert_eq!(after.workers[0].id, id("svc-2"));
        assert_eq!(after.restarts_pending, 0, "victims are not replaced");
        let mut terms: Vec<String> = lines(&log)
            .into_iter()
            .filter(|l| l.starts_with("term"))
            .collect();
        terms.sort();
        assert_eq!(terms, vec!["term svc-1", "term svc-3"]);
        target.shutdown().await;
        assert!(lines(&log).contains(&"term svc-2".to_owned()));
    }

    #[tokio::test]
    async fn bad_requests_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = ProcessTarget::new(
            "svc",
            spec("exec sleep 1000", dir.path()),
            VirtualClock::at_epoch(),
        )
        .unwrap();
        target.scale_out(2).await.unwrap();
        for bogus in ["other-1", "svc-3", "svc-0", "svc-01", "svc-", "svc-x"] {
            let err = target
                .scale_in(0, &[id("svc-1"), id(bogus)])
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), format!("target svc: unknown task {bogus}"));
        }
        let err = target.scale_out(1).await.unwrap_err();
        assert!(matches!(err, TargetError::Invalid { .. }), "{err}");
        let err = target.scale_in(3, &[]).await.unwrap_err();
        assert!(matches!(err, TargetError::Invalid { .. }), "{err}");
        let observed = target.observe().await.unwrap();
        assert_eq!(observed.capacity.desired, 2);
        assert_eq!(observed.capacity.running, 2);
        target.shutdown().await;
    }

    #[tokio::test]
    async fn a_worker_ignoring_sigterm_is_killed_after_stop_timeout() {
        let dir = tempfile::tempdir().unwrap();
        // Records the SIGTERM and carries on (the group's `sleep` dies of it, or, if the
        // signal caught it between fork and exec, ends within 0.1 s; the loop starts
        // another).
        let script = r#"trap 'echo term >> "$DIR/log"' TERM
echo ready >> "$DIR/log"
while :; do sleep 0.1; done"#;
        let mut s = spec(script, dir.path());
        s.stop_timeout = Duration::from_millis(1500);
        let target = ProcessTarget::new("svc", s, VirtualClock::at_epoch()).unwrap();
        target.scale_out(1).await.unwrap();
        let log = dir.path().join("log");
        eventually("the worker to be ready", || {
            (lines(&log) == ["ready"]).then_some(())
        })
        .await;
        let pid = target.snapshot().unwrap().workers[0].pid;

        let asked = Instant::now();
        target.scale_in(0, &[id("svc-1")]).await.unwrap();
        eventually("the SIGTERM to be recorded", || {
            lines(&log).contains(&"term".to_owned()).then_some(())
        })
        .await;
        assert!(alive(pid), "still running after SIGTERM");
        let mut rx = target.subscribe();
        until(&mut rx, |s| s.workers.is_empty()).await;
        assert!(
            asked.elapsed() >= Duration::from_millis(400),
            "killed only after stop_timeout"
        );
        assert!(!alive(pid));
        target.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashing_worker_is_replaced_with_a_doubling_delay() {
        let dir = tempfile::tempdir().unwrap();
        let clock = TokioClock::new();
        let target = ProcessTarget::new("svc", spec("exit 3", dir.path()), clock.clone()).unwrap();
        let mut rx = target.subscribe();
        target.scale_out(1).await.unwrap();
        // After the first crash, the replacement is pending.
        let waiting = until(&mut rx, |s| s.workers.is_empty()).await;
        assert_eq!(waiting.restarts_pending, 1);
        assert_eq!(
            waiting.observed().capacity,
            Capacity {
                desired: 1,
                running: 0,
                pending: 1
            }
        );
        while clock.reads().len() < 8 {
            rx.changed().await.unwrap();
        }
        let starts = clock.reads();
        let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(gaps[..7], [1, 2, 4, 8, 16, 16, 16]);
        let last = target.snapshot().unwrap();
        assert!(last.workers.len() + last.restarts_pending as usize == 1);
        let newest = last.workers.first().map(|w| w.id.to_string());
        assert!(newest.is_none_or(|id| id.starts_with("svc-")));
        target.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_ran_long_enough_is_replaced_after_the_base_delay() {
        let dir = tempfile::tempdir().unwrap();
        let clock = TokioClock::new();
        let target =
            ProcessTarget::new("svc", spec("exec sleep 1000", dir.path()), clock.clone()).unwrap();
        let mut rx = target.subscribe();
        target.scale_out(1).await.unwrap();
        let pid = target.snapshot().unwrap().workers[0].pid;
        tokio::time::advance(Duration::from_secs(60)).await;
        let killed_at = Instant::now();
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
        let replaced = until(&mut rx, |s| {
            s.workers.first().is_some_and(|w| w.id.as_str() == "svc-2")
        })
        .await;
        assert_eq!(replaced.restarts_pending, 0);
        assert_eq!(killed_at.elapsed(), Duration::from_secs(1));
        target.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_cannot_start_is_retried_and_scale_in_cancels_waiting_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("unused", dir.path());
        s.command = vec![dir.path().join("no-such-program").display().to_string()];
        s.restart_delay = Duration::from_secs(30);
        let target = ProcessTarget::new("svc", s, VirtualClock::at_epoch()).unwrap();
        let err = target.scale_out(3).await.unwrap_err();
        match &err {
            TargetError::Spawn {
                target,
                task,
                reason,
            } => {
                assert_eq!((target.as_str(), task.as_str()), ("svc", "svc-1"));
                assert!(reason.contains("no-such-program"), "{reason}");
            }
            other => panic!("expected a spawn error, got {other:?}"),
        }
        // Each one is waiting to be retried.
        assert_eq!(
            target.observe().await.unwrap().capacity,
            Capacity {
                desired: 3,
                running: 0,
                pending: 3
            }
        );
        target.scale_in(1, &[]).await.unwrap();
        assert_eq!(
            target.observe().await.unwrap().capacity,
            Capacity {
                desired: 1,
                running: 0,
                pending: 1
            }
        );
        // The retry comes after the delay, and fails again with a doubled delay.
        let mut rx = target.subscribe();
        let before = Instant::now();
        let retried = until(&mut rx, |s| {
            s.restarts_pending == 1 && Instant::now() > before
        })
        .await;
        assert_eq!(retried.workers.len(), 0);
        assert_eq!(before.elapsed(), Duration::from_secs(30));
        let before = Instant::now();
        until(&mut rx, |s| {
            s.restarts_pending == 1 && Instant::now() > before
        })
        .await;
        assert_eq!(before.elapsed(), Duration::from_secs(60));
        // Ids that were issued are known even though no worker has them.
        target.scale_in(0, &[id("svc-2")]).await.unwrap();
        assert_eq!(
            target.observe().await.unwrap().capacity,
            Capacity::default()
        );
        target.shutdown().await;
    }

    #[test]
    fn snapshot_reports_stopping_workers_apart() {
        let at = VirtualClock::at_epoch().now();
        let w = |n: u32, stopping| WorkerInfo {
            id: TaskId::from(format!("svc-{n}")),
            pid: n,
            started_at: at,
            stopping,
            draining: false,
        };
        let snap = ProcessSnapshot {
            desired: 2,
            workers: vec![w(1, true), w(2, false), w(3, false)],
            restarts_pending: 1,
        };
        let observed = snap.observed();
        assert_eq!(
            observed.capacity,
            Capacity {
                desired: 2,
                running: 2,
                pending: 1
            }
        );
        assert_eq!(observed.tasks[0].state, TaskState::Stopping);
        assert_eq!(elapsed(at, observed.tasks[2].started_at), Duration::ZERO);
    }
}
