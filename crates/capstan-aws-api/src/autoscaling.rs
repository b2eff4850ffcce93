//! EC2 Auto Scaling: the group operations capstan calls to add and remove hosts of an
//! ECS cluster.

use std::future::Future;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::AwsError;

/// An instance's lifecycle state in its group (the ones capstan tells apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum InstanceLifecycleState {
    /// Launching.
    Pending,
    /// Launching, held by a launch lifecycle hook.
    #[serde(rename = "Pending:Wait")]
    PendingWait,
    /// In service.
    InService,
    /// Terminating.
    Terminating,
    /// Terminating, held by a termination lifecycle hook.
    #[serde(rename = "Terminating:Wait")]
    TerminatingWait,
    /// Gone.
    Terminated,
    /// Any state capstan does not act on (standby, detaching, warm pool, ...).
    Other,
}

/// One instance of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoScalingInstance {
    /// EC2 instance id.
    pub instance_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Lifecycle state.
    pub lifecycle_state: InstanceLifecycleState,
    /// `Healthy` or `Unhealthy`.
    pub healthy: bool,
    /// Instance scale-in protection.
    pub protected_from_scale_in: bool,
    /// When it was launched; `None` when the answer does not say (Auto Scaling's own
    /// API never does: only EC2's `DescribeInstances` has `LaunchTime`).
    pub launched_at: Option<Timestamp>,
}

/// One Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoScalingGroup {
    /// Group name.
    pub name: String,
    /// Minimum size.
    pub min: u32,
    /// Maximum size.
    pub max: u32,
    /// Desired capacity.
    pub desired: u32,
    /// Its instances (terminated ones are gone from the list).
    pub instances: Vec<AutoScalingInstance>,
}

/// How a lifecycle action ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleActionResult {
    /// Go on (launch: put in service; terminate: terminate).
    Continue,
    /// Give up (launch: terminate the instance; terminate: terminate, skipping the
    /// remaining hooks).
    Abandon,
}

/// The EC2 Auto Scaling operations capstan calls. `group` is a group name.
pub trait AutoScaling: Send + Sync + 'static {
    /// `DescribeAutoScalingGroups` for one group.
    fn describe_group(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<AutoScalingGroup, AwsError>> + Send;

    /// `SetDesiredCapacity` (without honouring the group's cooldown). Must be within
    /// the group's min and max.
    fn set_desired_capacity(
        &self,
        group: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `SetInstanceProtection` for instances of the group.
    fn set_instance_protection(
        &self,
        group: &str,
        instance_ids: &[String],
        protected: bool,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `TerminateInstanceInAutoScalingGroup`; with `decrement_desired` the group does
    /// not replace it. Termination lifecycle hooks apply.
    fn terminate_instance(
        &self,
        instance_id: &str,
        decrement_desired: bool,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `CompleteLifecycleAction` for an instance waiting on `hook`.
    fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
        result: LifecycleActionResult,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `RecordLifecycleActionHeartbeat`: restarts the hook's heartbeat timeout.
    fn record_lifecycle_action_heartbeat(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}
