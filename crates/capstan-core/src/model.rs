//! The things capstan reasons about: services, their tasks and capacity, and metric samples.

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The identifier of one task (an ECS task ARN, a local process's id, ...). Shared, not
/// copied: cloning it is a reference-count increment, as targets report every task on
/// every observation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub Arc<str>);

impl TaskId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TaskId {
    fn from(id: &str) -> Self {
        Self(Arc::from(id))
    }
}

impl From<String> for TaskId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a task is in its life, reduced to what scaling needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Starting: counted in `pending`, not yet serving.
    Pending,
    /// Serving.
    Running,
    /// Refusing new work and finishing what it has (deregistering, draining).
    Draining,
    /// Told to stop; gone soon.
    Stopping,
    /// Gone.
    Stopped,
}

/// One copy of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Its identifier.
    pub id: TaskId,
    /// When it started (or was asked to start).
    pub started_at: Timestamp,
    /// Availability zone (or host) it runs in, when known.
    pub zone: Option<Arc<str>>,
    /// Lifecycle state.
    pub state: TaskState,
    /// Live sessions or workloads it reports (0 = idle).
    pub sessions: u32,
    /// Whether the task is protected from scale-in.
    pub protected: bool,
    /// False only when the task's health check fails (ECS `healthStatus` UNHEALTHY):
    /// ECS is replacing it, so it is never chosen as a scale-in victim. A task without
    /// a health check (UNKNOWN) or whose target has no notion of health counts as
    /// healthy. Absent in older serialized tasks: healthy.
    #[serde(default = "healthy_by_default")]
    pub healthy: bool,
}

/// The health a [`Task`] has when nothing says otherwise.
fn healthy_by_default() -> bool {
    true
}

/// How many tasks a service has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capacity {
    /// The count the target is told to keep (ECS `desiredCount`).
    pub desired: u32,
    /// Tasks serving now.
    pub running: u32,
    /// Tasks starting.
    pub pending: u32,
}

/// Inclusive bounds on the desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Never fewer than this.
    pub min: u32,
    /// Never more than this.
    pub max: u32,
}

impl Bounds {
    /// `n` clamped into `[min, max]`.
    pub fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.min, self.max.max(self.min))
    }
}

/// One metric value at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The value (finite; validated at the source boundary).
    pub value: f64,
    /// When it was observed.
    pub at: Timestamp,
}

/// A service as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Unique name.
    pub name: String,
    /// Static bounds from the configuration.
    pub bounds: Bounds,
    /// Current capacity.
    pub capacity: Capacity,
    /// Current tasks.
    pub tasks: Vec<Task>,
}
