//! What the simulator sees of the world without going through the rate-limited API:
//! every task with its routing flags, and the events of each step.

use jiff::Timestamp;
use serde::Serialize;

use capstan_aws_api::{DesiredStatus, TaskStatus};

/// One task as the simulator sees it (no API limits, no throttling).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInfo {
    /// Task ARN.
    pub arn: String,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub service: String,
    /// Lifecycle state.
    pub status: TaskStatus,
    /// Desired status.
    pub desired_status: DesiredStatus,
    /// Availability zone.
    pub zone: String,
    /// Container instance ARN (EC2 launch type).
    pub host: Option<String>,
    /// Private IP (its id in the target group).
    pub ip: String,
    /// Created.
    pub created_at: Timestamp,
    /// Reached RUNNING.
    pub started_at: Option<Timestamp>,
    /// Scale-in protection, until when.
    pub protected_until: Option<Timestamp>,
    /// The load balancer sends it new requests and sessions now: registered and
    /// healthy, or deregistering but still inside the routing lag.
    pub routable: bool,
    /// The application takes new work (e.g. pulls from a queue): RUNNING, or
    /// DEACTIVATING before SIGTERM.
    pub accepting: bool,
    /// SIGTERM has been sent; the application finishes what it has until SIGKILL.
    pub terminating: bool,
    /// CPU units reserved.
    pub cpu: u32,
    /// Memory reserved, MiB.
    pub memory: u32,
}

/// Something that happened in the world during [`World::advance`](crate::World::advance).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A task was created (PROVISIONING).
    TaskCreated {
        /// Task ARN.
        arn: String,
        /// Service.
        service: String,
        /// When.
        at: Timestamp,
    },
    /// A task reached RUNNING.
    TaskRunning {
        /// Task ARN.
        arn: String,
        /// Service.
        service: String,
        /// When.
        at: Timestamp,
    },
    /// A task got SIGTERM (entered STOPPING): it takes no new work and must finish
    /// what it has before `kill_at`.
    TaskSigterm {
        /// Task ARN.
        arn: String,
        /// Service.
        service: String,
        /// When.
        at: Timestamp,
        /// When SIGKILL follows if it has not exited.
        kill_at: Timestamp,
    },
    /// A task's containers are gone (after SIGKILL or exit): whatever it still held is
    /// lost.
    TaskStopped {
        /// Task ARN.
        arn: String,
        /// Service.
        service: String,
        /// When.
        at: Timestamp,
        /// `stoppedReason`.
        reason: String,
    },
    /// A container instance became ACTIVE.
    InstanceActive {
        /// EC2 instance id.
        instance_id: String,
        /// When.
        at: Timestamp,
    },
    /// An instance was terminated.
    InstanceTerminated {
        /// EC2 instance id.
        instance_id: String,
        /// When.
        at: Timestamp,
    },
}
