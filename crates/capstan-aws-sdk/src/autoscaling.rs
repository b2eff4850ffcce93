//! [`AutoScaling`] through `aws-sdk-autoscaling`: the EC2 Auto Scaling group behind an
//! ECS cluster (its instances, desired capacity, scale-in protection, terminating one
//! instance, and lifecycle hook actions).
//!
//! Reading answers: a field capstan needs that the answer lacks (an instance without an
//! id, a lifecycle state, a health status, its protection; a group without min, max or
//! desired capacity; a negative size) is a `MalformedResponse` error naming the group
//! or instance and the field, never a guessed value. A group `DescribeAutoScalingGroups`
//! does not list is [`AwsErrorKind::NotFound`]. The SDK itself fills a required field
//! an answer lacks with a zero value before capstan sees it (its "error correction"):
//! an empty id, zone or health and its placeholder lifecycle state are caught, but a
//! missing `ProtectedFromScaleIn` reads as `false` and a missing size as 0, which
//! cannot be told from real ones (AWS always sends them; an emulator might not).
//!
//! Lifecycle states ([`lifecycle_state`]): `Pending` and `Pending:Proceed` are
//! [`InstanceLifecycleState::Pending`] (launching; no hook is waiting on capstan),
//! `Terminating` and `Terminating:Proceed` are [`InstanceLifecycleState::Terminating`];
//! the `:Wait` states, `InService` and `Terminated` are their own. Every other state
//! (`Standby`, `EnteringStandby`, `Detaching`, `Detached`, `Quarantined`,
//! `Terminating:Retained`, the root volume replacement states, every `Warmed:*` warm
//! pool state, and any state AWS adds later) is [`InstanceLifecycleState::Other`]:
//! capstan does not act on those instances, and one instance in a new state must not
//! blind it to the whole group.
//!
//! Launch time: neither `DescribeAutoScalingGroups` nor `DescribeAutoScalingInstances`
//! reports when an instance launched (only EC2's `DescribeInstances` has `LaunchTime`),
//! so every instance's `launched_at` is `None`, never a time capstan made up. The host
//! target measures warm-up from the container instance's registration instead.
//!
//! Errors: Auto Scaling answers most refusals with `ValidationError`; [`refine`] gives
//! the ones capstan tells apart the kind the world model gives them (a missing group,
//! instance or hook is [`AwsErrorKind::NotFound`]; a lifecycle action for an instance
//! that is not waiting is [`AwsErrorKind::Conflict`]).
//!
//! Calls are not paced on this side: no token buckets are known for Auto Scaling
//! (AWS-SEMANTICS §8 gives ECS's only), and capstan makes a few calls per group per
//! decision; a throttled call comes back as a retryable error.

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup as SdkGroup, Instance as SdkInstance, LifecycleState,
};
use capstan_aws_api::{
    AutoScaling, AutoScalingGroup, AutoScalingInstance, AwsError, AwsErrorKind,
    InstanceLifecycleState, LifecycleActionResult,
};

use crate::config::{LazyClient, SharedConfig};
use crate::error::{from_sdk, malformed};

/// The lifecycle state the SDK fills in when an answer has none (its "error
/// correction" of a missing required field).
const SDK_NO_VALUE: &str = "no value was set";

/// The most instance ids `SetInstanceProtection` takes in one call; longer lists are
/// sent in several calls.
pub const SET_INSTANCE_PROTECTION_BATCH: usize = 50;

/// The Auto Scaling client, made from a [`SharedConfig`] on first use.
#[derive(Debug, Clone)]
pub struct SdkAutoScaling {
    client: LazyClient<Client>,
}

impl SdkAutoScaling {
    /// A client on `config` (loaded on the first call). Clones share the client.
    pub fn new(config: SharedConfig) -> Self {
        Self {
            client: LazyClient::new(config, Client::new),
        }
    }

    /// A client made from an SDK client (tests with a replayed HTTP client).
    pub fn from_client(client: Client) -> Self {
        Self {
            client: LazyClient::ready(client, Client::new),
        }
    }

    /// The configuration it uses.
    pub fn config(&self) -> &SharedConfig {
        self.client.config()
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }
}

/// An Auto Scaling lifecycle state as the [`InstanceLifecycleState`] capstan tells
/// apart (see the module documentation for the choices).
pub fn lifecycle_state(state: &LifecycleState) -> InstanceLifecycleState {
    match state {
        LifecycleState::Pending | LifecycleState::PendingProceed => InstanceLifecycleState::Pending,
        LifecycleState::PendingWait => InstanceLifecycleState::PendingWait,
        LifecycleState::InService => InstanceLifecycleState::InService,
        LifecycleState::Terminating | LifecycleState::TerminatingProceed => {
            InstanceLifecycleState::Terminating
        }
        LifecycleState::TerminatingWait => InstanceLifecycleState::TerminatingWait,
        LifecycleState::Terminated => InstanceLifecycleState::Terminated,
        _ => InstanceLifecycleState::Other,
    }
}

/// A size Auto Scaling reports as `i32`, as `u32`.
fn size(what: &str, n: Option<i32>) -> Result<u32, AwsError> {
    const OP: &str = "DescribeAutoScalingGroups";
    let n = n.ok_or_else(|| malformed(OP, format!("{what} is missing")))?;
    u32::try_from(n).map_err(|_| malformed(OP, format!("{what} is {n}, not a size")))
}

/// One instance of a `DescribeAutoScalingGroups` group as an [`AutoScalingInstance`].
pub fn read_instance(group: &str, instance: &SdkInstance) -> Result<AutoScalingInstance, AwsError> {
    const OP: &str = "DescribeAutoScalingGroups";
    let id = instance
        .instance_id()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| malformed(OP, format!("group {group}: an instance has no InstanceId")))?;
    let what = format!("group {group}: instance {id}");
    let zone = instance
        .availability_zone()
        .filter(|z| !z.is_empty())
        .ok_or_else(|| malformed(OP, format!("{what} has no AvailabilityZone")))?;
    let state = instance
        .lifecycle_state()
        .filter(|s| !matches!(s.as_str(), "" | SDK_NO_VALUE))
        .ok_or_else(|| malformed(OP, format!("{what} has no LifecycleState")))?;
    let healthy = match instance.health_status().filter(|h| !h.is_empty()) {
        Some(h) if h.eq_ignore_ascii_case("Healthy") => true,
        Some(h) if h.eq_ignore_ascii_case("Unhealthy") => false,
        Some(h) => return Err(malformed(OP, format!("{what} has HealthStatus {h:?}"))),
        None => return Err(malformed(OP, format!("{what} has no HealthStatus"))),
    };
    // Not guessed: capstan picks scale-in victims by it.
    let protected = instance
        .protected_from_scale_in()
        .ok_or_else(|| malformed(OP, format!("{what} has no ProtectedFromScaleIn")))?;
    Ok(AutoScalingInstance {
        instance_id: id.to_owned(),
        availability_zone: zone.to_owned(),
        lifecycle_state: lifecycle_state(state),
        healthy,
        protected_from_scale_in: protected,
        launched_at: None,
    })
}

/// One `DescribeAutoScalingGroups` group as an [`AutoScalingGroup`].
pub fn read_group(group: &SdkGroup) -> Result<AutoScalingGroup, AwsError> {
    const OP: &str = "DescribeAutoScalingGroups";
    let name = group
        .auto_scaling_group_name()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| malformed(OP, "a group has no AutoScalingGroupName"))?;
    let instances = group
        .instances()
        .iter()
        .map(|i| read_instance(name, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AutoScalingGroup {
        name: name.to_owned(),
        min: size(&format!("group {name}: MinSize"), group.min_size())?,
        max: size(&format!("group {name}: MaxSize"), group.max_size())?,
        desired: size(
            &format!("group {name}: DesiredCapacity"),
            group.desired_capacity(),
        )?,
        instances,
    })
}

/// Auto Scaling's `ValidationError` with the kind the world model gives the same
/// refusal: a group, instance or hook that does not exist is
/// [`AwsErrorKind::NotFound`], a lifecycle action for an instance that is not waiting
/// is [`AwsErrorKind::Conflict`]. Every other error is returned as it is.
pub fn refine(mut error: AwsError) -> AwsError {
    let Some(text) = error.message.strip_prefix("ValidationError: ") else {
        return error;
    };
    if error.kind != AwsErrorKind::InvalidParameter {
        return error;
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("no active lifecycle action") {
        error.kind = AwsErrorKind::Conflict;
    } else if lower.contains("not found")
        || lower.contains("is not part of")
        || lower.contains("no lifecycle hook")
    {
        error.kind = AwsErrorKind::NotFound;
    }
    error
}

fn sdk_result(result: LifecycleActionResult) -> &'static str {
    match result {
        LifecycleActionResult::Continue => "CONTINUE",
        LifecycleActionResult::Abandon => "ABANDON",
    }
}

impl AutoScaling for SdkAutoScaling {
    async fn describe_group(&self, group: &str) -> Result<AutoScalingGroup, AwsError> {
        const OP: &str = "DescribeAutoScalingGroups";
        let out = self
            .client()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| refine(from_sdk(OP, e)))?;
        // AWS answers an empty list (no error) for a name it does not know.
        let found = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group))
            .ok_or_else(|| {
                AwsError::new(
                    OP,
                    AwsErrorKind::NotFound,
                    format!("Auto Scaling group {group} does not exist"),
                )
            })?;
        read_group(found)
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), AwsError> {
        const OP: &str = "SetDesiredCapacity";
        let desired = i32::try_from(desired).map_err(|_| {
            AwsError::new(
                OP,
                AwsErrorKind::InvalidParameter,
                format!("group {group}: DesiredCapacity {desired} is too large"),
            )
        })?;
        self.client()
            .await
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(desired)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| refine(from_sdk(OP, e)))?;
        Ok(())
    }

    async fn set_instance_protection(
        &self,
        group: &str,
        instance_ids: &[String],
        protected: bool,
    ) -> Result<(), AwsError> {
        const OP: &str = "SetInstanceProtection";
        // Setting protection again is harmless, so a failed batch can be retried whole.
        for batch in instance_ids.chunks(SET_INSTANCE_PROTECTION_BATCH) {
            self.client()
                .await
                .set_instance_protection()
                .auto_scaling_group_name(group)
                .set_instance_ids(Some(batch.to_vec()))
                .protected_from_scale_in(protected)
                .send()
                .await
                .map_err(|e| refine(from_sdk(OP, e)))?;
        }
        Ok(())
    }

    async fn terminate_instance(
        &self,
        instance_id: &str,
        decrement_desired: bool,
    ) -> Result<(), AwsError> {
        const OP: &str = "TerminateInstanceInAutoScalingGroup";
        self.client()
            .await
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(decrement_desired)
            .send()
            .await
            .map_err(|e| refine(from_sdk(OP, e)))?;
        Ok(())
    }

    async fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
        result: LifecycleActionResult,
    ) -> Result<(), AwsError> {
        const OP: &str = "CompleteLifecycleAction";
        self.client()
            .await
            .complete_lifecycle_action()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(instance_id)
            .lifecycle_action_result(sdk_result(result))
            .send()
            .await
            .map_err(|e| refine(from_sdk(OP, e)))?;
        Ok(())
    }

    async fn record_lifecycle_action_heartbeat(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> Result<(), AwsError> {
        const OP: &str = "RecordLifecycleActionHeartbeat";
        self.client()
            .await
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| refine(from_sdk(OP, e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lifecycle_state_is_read() {
        use InstanceLifecycleState as S;
        for (text, want) in [
            ("Pending", S::Pending),
            ("Pending:Proceed", S::Pending),
            ("Pending:Wait", S::PendingWait),
            ("InService", S::InService),
            ("Terminating", S::Terminating),
            ("Terminating:Proceed", S::Terminating),
            ("Terminating:Wait", S::TerminatingWait),
            ("Terminated", S::Terminated),
            ("Terminating:Retained", S::Other),
            ("Standby", S::Other),
            ("EnteringStandby", S::Other),
            ("Detaching", S::Other),
            ("Detached", S::Other),
            ("Quarantined", S::Other),
            ("ReplacingRootVolume", S::Other),
            ("ReplacingRootVolume:Wait", S::Other),
            ("RootVolumeReplaced", S::Other),
            ("Warmed:Pending:Wait", S::Other),
            ("Warmed:Running", S::Other),
            ("Warmed:Terminating:Wait", S::Other),
            ("SomethingNew", S::Other),
        ] {
            assert_eq!(lifecycle_state(&LifecycleState::from(text)), want, "{text}");
        }
    }

    fn instance() -> aws_sdk_autoscaling::types::builders::InstanceBuilder {
        SdkInstance::builder()
            .instance_id("i-0a")
            .availability_zone("us-east-1a")
            .lifecycle_state(LifecycleState::InService)
            .health_status("Healthy")
            .protected_from_scale_in(true)
    }

    #[test]
    fn an_instance_is_read_and_one_missing_what_capstan_needs_is_named() {
        let i = read_instance("web", &instance().build()).unwrap();
        assert_eq!(i.instance_id, "i-0a");
        assert_eq!(i.availability_zone, "us-east-1a");
        assert_eq!(i.lifecycle_state, InstanceLifecycleState::InService);
        assert!(i.healthy && i.protected_from_scale_in);
        assert_eq!(i.launched_at, None);
        let unhealthy = instance().health_status("Unhealthy").build();
        assert!(!read_instance("web", &unhealthy).unwrap().healthy);

        let err = read_instance("web", &instance().set_protected_from_scale_in(None).build())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DescribeAutoScalingGroups: MalformedResponse: group web: instance i-0a has no ProtectedFromScaleIn"
        );
        let err = read_instance("web", &instance().health_status("Meh").build()).unwrap_err();
        assert!(err.to_string().contains("HealthStatus \"Meh\""), "{err}");
        // What the SDK puts in for a missing state or health.
        let placeholder = instance()
            .lifecycle_state(LifecycleState::from(SDK_NO_VALUE))
            .build();
        let err = read_instance("web", &placeholder).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("instance i-0a has no LifecycleState"),
            "{err}"
        );
        let err = read_instance("web", &instance().health_status("").build()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("instance i-0a has no HealthStatus"),
            "{err}"
        );
        let err = read_instance("web", &instance().set_instance_id(None).build()).unwrap_err();
        assert!(
            err.to_string().contains("an instance has no InstanceId"),
            "{err}"
        );
    }

    #[test]
    fn a_group_without_sizes_or_with_a_negative_one_is_malformed() {
        let g = SdkGroup::builder()
            .auto_scaling_group_name("web")
            .min_size(1)
            .max_size(4)
            .desired_capacity(2)
            .instances(instance().build())
            .build();
        let group = read_group(&g).unwrap();
        assert_eq!((group.min, group.max, group.desired), (1, 4, 2));
        assert_eq!(group.instances.len(), 1);
        let g = SdkGroup::builder()
            .auto_scaling_group_name("web")
            .min_size(1)
            .max_size(4)
            .build();
        let err = read_group(&g).unwrap_err();
        assert!(
            err.to_string()
                .contains("group web: DesiredCapacity is missing"),
            "{err}"
        );
        let g = SdkGroup::builder()
            .auto_scaling_group_name("web")
            .min_size(-1)
            .max_size(4)
            .desired_capacity(0)
            .build();
        let err = read_group(&g).unwrap_err();
        assert!(
            err.to_string().contains("MinSize is -1, not a size"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_get_the_kind_of_the_refusal() {
        let validation = |m: &str| {
            AwsError::new(
                "Op",
                AwsErrorKind::InvalidParameter,
                format!("ValidationError: {m}"),
            )
        };
        let kind = |m: &str| refine(validation(m)).kind;
        assert_eq!(
            kind("No active Lifecycle Action found with instance ID i-0a"),
            AwsErrorKind::Conflict
        );
        assert_eq!(
            kind("AutoScalingGroup name not found - AutoScalingGroup 'web' not found"),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            kind("Instance Id not found - No managed instance found for instance ID: i-0a"),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            kind("The instance i-0a is not part of Auto Scaling group web."),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            kind("New SetDesiredCapacity value 11 is above max value 10 for the AutoScalingGroup."),
            AwsErrorKind::InvalidParameter
        );
        // Only Auto Scaling's ValidationError is refined.
        let other = AwsError::new("Op", AwsErrorKind::Throttling, "Throttling: not found");
        assert_eq!(refine(other.clone()), other);
    }
}
