//! Elastic Load Balancing v2: the target-group operations capstan calls to drain a task
//! before it stops.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::error::AwsError;

/// A target in a target group: an IP (awsvpc tasks) or an instance id, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TargetRef {
    /// IP address or instance id.
    pub id: String,
    /// Port.
    pub port: u16,
}

/// A target's health state (AWS-SEMANTICS §5, `TargetHealthStateEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetHealthState {
    /// Registered; health checks not yet passed.
    Initial,
    /// Receives requests.
    Healthy,
    /// Fails health checks.
    Unhealthy,
    /// Unhealthy and deregistering.
    UnhealthyDraining,
    /// Not registered (or deregistration finished).
    Unused,
    /// Deregistering: no new requests, in-flight ones continue until the
    /// deregistration delay ends or it is idle.
    Draining,
    /// Health checks disabled.
    Unavailable,
}

/// One target's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetHealth {
    /// The target.
    pub target: TargetRef,
    /// Its state.
    pub state: TargetHealthState,
    /// AWS's reason code (e.g. `Target.DeregistrationInProgress`), if any.
    pub reason: Option<String>,
}

/// The ELBv2 operations capstan calls. `target_group` is a target group ARN.
pub trait Elb: Send + Sync + 'static {
    /// `DescribeTargetHealth` for every target of the group (including draining ones).
    fn describe_target_health(
        &self,
        target_group: &str,
    ) -> impl Future<Output = Result<Vec<TargetHealth>, AwsError>> + Send;

    /// `RegisterTargets`.
    fn register_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `DeregisterTargets`: the targets become `draining` for the deregistration
    /// delay (or `unused` at once when idle).
    fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// The group's `deregistration_delay.timeout_seconds`
    /// (`DescribeTargetGroupAttributes`).
    fn deregistration_delay(
        &self,
        target_group: &str,
    ) -> impl Future<Output = Result<Duration, AwsError>> + Send;
}
