//! What the simulator sees of the world without going through the rate-limited API:
//! every task with its routing flags, the events of each step, service counts and the
//! cluster's hosts.

use jiff::Timestamp;
use serde::Serialize;

use capstan_aws_api::{AutoScalingInstance, ContainerInstanceStatus, DesiredStatus, TaskStatus};

/// Names one task in [`World`](crate::World) calls without looking its ARN up: where
/// the world keeps it, and its uid. A handle of a task the world has since forgotten
/// names nothing (its slot may hold another task by then, with another uid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskHandle {
    /// The task's slot in the world.
    pub(crate) slot: u32,
    /// The task's uid ([`TaskInfo::uid`]).
    pub(crate) uid: u64,
}

/// One task as the simulator sees it (no API limits, no throttling).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInfo {
    /// Task ARN.
    pub arn: String,
    /// Names this task in [`World::set_work_many`](crate::World::set_work_many).
    #[serde(skip)]
    pub handle: TaskHandle,
    /// A number that names this task alone for the world's whole life (never reused,
    /// unlike list positions): comparing two of them is as good as comparing ARNs,
    /// and cheaper.
    pub uid: u64,
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

/// A service's task counts, as the simulator sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServiceCounts {
    /// `desiredCount`.
    pub desired: u32,
    /// Tasks in RUNNING (including RUNNING tasks being replaced or drained by a
    /// deployment, as long as they are not yet told to stop).
    pub running: u32,
    /// Tasks in PROVISIONING, PENDING or ACTIVATING.
    pub pending: u32,
    /// Tasks told to stop and not yet STOPPED (DEACTIVATING, STOPPING,
    /// DEPROVISIONING).
    pub stopping: u32,
    /// Tasks the scheduler wants but cannot place (no container instance has room).
    pub unplaced: u32,
}

/// One container instance of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceState {
    /// Container instance ARN.
    pub arn: String,
    /// EC2 instance id.
    pub ec2_instance_id: String,
    /// Auto Scaling group.
    pub group: String,
    /// Status.
    pub status: ContainerInstanceStatus,
    /// Availability zone.
    pub zone: String,
    /// Registered CPU units.
    pub registered_cpu: u32,
    /// Registered memory, MiB.
    pub registered_memory: u32,
    /// CPU units reserved by tasks not yet STOPPED.
    pub reserved_cpu: u32,
    /// Memory reserved by tasks not yet STOPPED, MiB.
    pub reserved_memory: u32,
    /// ARNs of the tasks on it that are not yet STOPPED.
    pub tasks: Vec<String>,
}

/// One Auto Scaling group of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupState {
    /// Group name.
    pub name: String,
    /// Desired capacity.
    pub desired: u32,
    /// Minimum size.
    pub min: u32,
    /// Maximum size.
    pub max: u32,
    /// Its instances not yet terminated, with their lifecycle states.
    pub instances: Vec<AutoScalingInstance>,
}

/// A cluster's hosts and capacity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterState {
    /// Cluster name.
    pub name: String,
    /// Registered container instances (ACTIVE and DRAINING).
    pub instances: Vec<InstanceState>,
    /// CPU reserved over CPU registered, in percent, over ACTIVE container instances
    /// (CloudWatch `CPUReservation`); 0 without any.
    pub cpu_reservation_percent: f64,
    /// Memory reserved over memory registered, in percent, over ACTIVE container
    /// instances (`MemoryReservation`); 0 without any.
    pub memory_reservation_percent: f64,
    /// Tasks of the cluster's services that no container instance has room for.
    pub unplaced_tasks: u32,
    /// CPU units those unplaced tasks need.
    pub unplaced_cpu: u64,
    /// Memory those unplaced tasks need, MiB.
    pub unplaced_memory: u64,
    /// Its Auto Scaling groups.
    pub groups: Vec<GroupState>,
}
