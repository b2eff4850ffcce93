//! capstan's scaling targets behind one [`Target`] trait.
//!
//! A target reports the service's capacity and tasks, raises the desired count, and
//! lowers it by stopping exactly the victims the core chose
//! ([`capstan_core::victim::choose`]). Every kind of target implements the same trait:
//! local processes ([`process::ProcessTarget`]), ECS services ([`ecs::EcsTarget`],
//! against AWS or the simulator's world model), the hosts of EC2 clusters
//! ([`asg::AsgTarget`]), so the control loop is written once.
//!
//! Module map:
//! - [`spec`]: the typed settings of each target kind, as compiled from the config.
//! - [`process`]: the local-process target.
//! - [`ecs`]: the ECS service target (safe, session-aware scale-in).
//! - [`asg`]: the EC2 cluster host target (safe host removal: drain, then terminate).
//! - [`durable`]: the durable workflow engine both scale-ins run in.

pub mod asg;
pub mod durable;
pub mod ecs;
pub mod process;
pub mod rotate;
pub mod spec;

use std::future::Future;

use capstan_core::model::{Capacity, Task, TaskId};

pub use asg::{AsgTarget, AsgTargetSpec};
pub use ecs::{EcsTarget, EcsTargetSpec, WorkCounts};
pub use process::ProcessTarget;
pub use spec::{EcsServiceSpec, ProcessSpec, Scales, SimulatedTargetSpec, TargetSpec};

/// What a target reports about its service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Desired, running and pending counts.
    pub capacity: Capacity,
    /// The service's tasks, including those that are stopping (never those already
    /// stopped).
    pub tasks: Vec<Task>,
}

/// A failed operation on a target. Every variant names the target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A worker could not be started.
    #[error("target {target}: cannot start task {task}: {reason}")]
    Spawn {
        /// The target's name.
        target: String,
        /// The task that failed to start.
        task: TaskId,
        /// Why.
        reason: String,
    },
    /// Scale-in named a task this target never had.
    #[error("target {target}: unknown task {task}")]
    UnknownTask {
        /// The target's name.
        target: String,
        /// The task asked for.
        task: TaskId,
    },
    /// The request does not make sense for the current state (e.g. a "scale out" to
    /// fewer tasks than desired).
    #[error("target {target}: {reason}")]
    Invalid {
        /// The target's name.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// The target has been shut down (or its supervisor is gone) and takes no more
    /// requests.
    #[error("target {target}: shut down, no longer takes requests")]
    Closed {
        /// The target's name.
        target: String,
    },
    /// The system behind the target refused or failed the request (an API error, a
    /// fault injected by the simulator).
    #[error("target {target}: {reason}")]
    Failed {
        /// The target's name.
        target: String,
        /// Why.
        reason: String,
    },
}

impl TargetError {
    /// An AWS call of `target` failed: [`TargetError::Failed`] whose reason is the AWS
    /// error (it names the operation).
    pub fn aws(target: &str, e: &capstan_aws_api::AwsError) -> Self {
        Self::Failed {
            target: target.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// `n` as a count of tasks or hosts (saturating).
pub(crate) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A scalable service: what the control loop observes and changes.
///
/// Contract:
/// - [`observe`](Target::observe) is cheap and side-effect free.
/// - [`scale_out`](Target::scale_out) raises the desired count; the target starts the
///   new tasks itself (and, like ECS, replaces tasks that exit on their own).
/// - [`scale_in`](Target::scale_in) lowers the desired count and stops exactly the
///   `victims` (never another task), so the victims are not replaced. If fewer victims
///   are given than the drop in desired count, the surplus tasks keep running until
///   they exit on their own.
/// - [`shutdown`](Target::shutdown) is called once when capstan stops; each kind
///   documents what it leaves behind.
///
/// The futures are `Send` so a loop driving a target can be spawned on Tokio.
pub trait Target: Send + Sync + 'static {
    /// The target's name (the service it scales), used in errors and logs.
    fn name(&self) -> &str;

    /// The service's capacity and tasks now.
    fn observe(&self) -> impl Future<Output = Result<Observed, TargetError>> + Send;

    /// Raises the desired count to `desired`.
    fn scale_out(&self, desired: u32) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Lowers the desired count to `desired`, stopping exactly `victims`.
    fn scale_in(
        &self,
        desired: u32,
        victims: &[TaskId],
    ) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// What to do with what the target owns when capstan stops.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}
