//! Typed settings of a target, as compiled from the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The kinds of target.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// Local processes.
    Process(ProcessSpec),
    /// The simulator's ECS service (`capstan simulate` only; `capstan run` refuses it).
    Simulated(SimulatedTargetSpec),
}

/// A `simulated` target: the simulator's ECS service, scaled through the ECS target
/// with these settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedTargetSpec {
    /// How long a scale-in victim may take to drain (its requests to finish, its
    /// sessions to end) before it is put back and kept.
    pub drain_timeout: std::time::Duration,
    /// How long the tasks that stay are protected while ECS stops the victims, minutes.
    pub protect_minutes: u32,
}

/// A `process` target: keep N copies of a command running.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// Program and arguments of each worker.
    pub command: Vec<String>,
    /// Extra environment (each worker also gets `CAPSTAN_TASK_ID`).
    pub env: BTreeMap<String, String>,
    /// Working directory (default: capstan's own).
    pub workdir: Option<PathBuf>,
    /// Time between SIGTERM and SIGKILL when a worker is stopped.
    pub stop_timeout: Duration,
    /// Delay before restarting a worker that exited (doubles on quick repeated exits,
    /// up to 16×).
    pub restart_delay: Duration,
}
