//! The AWS operations capstan needs, as narrow traits with plain types.
//!
//! Every AWS call capstan makes goes through one of these traits: [`Ecs`], [`Elb`]
//! (ELBv2 target groups), [`AutoScaling`] (EC2 Auto Scaling groups), [`Sqs`] (queue
//! counts) and [`CloudWatch`] (metric reads and custom metrics). Implementations: the
//! official AWS SDK (`capstan-aws-sdk`, used by the daemon, proven on the wire against
//! moto where moto speaks the protocol), and for ECS, ELBv2 and Auto Scaling the world
//! model of `capstan-world` (used by the simulator and by behaviour tests), which
//! follows AWS's documented semantics on a virtual clock. This crate holds only the
//! contract: no SDK, no I/O.
//!
//! Conventions shared by every trait:
//! - Resources are named by the strings AWS uses (ARNs or names, as the operation
//!   accepts); the types carry what capstan reads, nothing more. The task
//!   identifiers read on every observation (task ARNs, zones, private IPs) are
//!   `Arc<str>`, so they are shared, not copied, from the client to the target and on
//!   to the core's task ids.
//! - Batch limits are AWS's (see [`limits`]); an implementation rejects a larger batch
//!   with [`AwsErrorKind::InvalidParameter`] rather than splitting it silently, so
//!   callers batch explicitly and the world model can count calls as AWS would.
//! - Errors are [`AwsError`]s that name the operation and say whether a retry may
//!   help ([`AwsError::is_retryable`]).
//! - Futures are `Send` so callers can run on Tokio.
//!
//! Module map: [`error`], [`ecs`], [`elb`], [`autoscaling`], [`sqs`], [`cloudwatch`],
//! [`limits`].

pub mod autoscaling;
pub mod cloudwatch;
pub mod ecs;
pub mod elb;
pub mod error;
pub mod sqs;

pub use autoscaling::{
    AutoScaling, AutoScalingGroup, AutoScalingInstance, InstanceLifecycleState,
    LifecycleActionResult,
};
pub use cloudwatch::{CloudWatch, Datapoint, Dimension, MetricDatum, MetricQuery};
pub use ecs::{
    ContainerInstance, ContainerInstanceStatus, DeploymentRollout, DesiredStatus, Ecs,
    EcsDeployment, EcsService, EcsTask, Failure, HealthStatus, ProtectionResult, TaskProtection,
    TaskStatus,
};
pub use elb::{Elb, TargetHealth, TargetHealthState, TargetRef};
pub use error::{AwsError, AwsErrorKind};
pub use sqs::{QueueCounts, Sqs};

/// AWS's per-call batch limits (AWS-SEMANTICS §8).
pub mod limits {
    /// `DescribeServices`: at most 10 services per call.
    pub const DESCRIBE_SERVICES: usize = 10;
    /// `DescribeTasks`: at most 100 tasks per call.
    pub const DESCRIBE_TASKS: usize = 100;
    /// `UpdateTaskProtection`: at most 10 tasks per call.
    pub const UPDATE_TASK_PROTECTION: usize = 10;
    /// `GetTaskProtection`: at most 100 tasks per call.
    pub const GET_TASK_PROTECTION: usize = 100;
    /// `DescribeContainerInstances`: at most 100 container instances per call.
    pub const DESCRIBE_CONTAINER_INSTANCES: usize = 100;
    /// `UpdateContainerInstancesState`: at most 10 container instances per call.
    pub const UPDATE_CONTAINER_INSTANCES_STATE: usize = 10;
    /// `ExpiresInMinutes` of task protection: 1 to 2880 (default 120).
    pub const PROTECTION_MINUTES: std::ops::RangeInclusive<u32> = 1..=2880;
    /// The default `ExpiresInMinutes` of task protection.
    pub const PROTECTION_DEFAULT_MINUTES: u32 = 120;
    /// `PutMetricData`: at most 1000 datums per call.
    pub const PUT_METRIC_DATA: usize = 1000;
}
