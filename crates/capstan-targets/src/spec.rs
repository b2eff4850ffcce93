//! Typed settings of a target, as compiled from the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The kinds of target.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// Local processes.
    Process(ProcessSpec),
    /// The simulator's world model (`capstan simulate` only; `capstan run` refuses it).
    Simulated,
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
