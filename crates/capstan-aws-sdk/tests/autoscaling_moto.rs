//! `SdkAutoScaling` on the wire against moto (capstan-testkit's `moto`).
//!
//! moto speaks Auto Scaling's query protocol, so these tests prove the calls are
//! well-formed and the answers read right. moto facts they live with: desired capacity
//! and protection apply at once (instances appear and go without a launch or
//! termination phase, every one `InService` and `Healthy`); a scale-in takes only
//! unprotected instances; lifecycle hooks are not enforced, and the lifecycle action
//! calls are not implemented (tests/autoscaling_replay.rs covers those).

use std::collections::BTreeSet;

use capstan_aws_api::{AutoScaling, AutoScalingGroup, AwsErrorKind, InstanceLifecycleState};
use capstan_aws_sdk::{SdkAutoScaling, SharedConfig, static_config};
use capstan_testkit::moto::{self, ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};

const ZONE: &str = "us-east-1a";

fn client(moto: &Moto) -> SdkAutoScaling {
    let config = static_config(
        &moto.endpoint_url(),
        REGION,
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
    );
    SdkAutoScaling::new(SharedConfig::ready(config))
}

/// A group of `min..=max` at `desired` in the test's zone: its name.
fn create_group(moto: &Moto, name: &str, min: u32, max: u32, desired: u32) -> String {
    moto.autoscaling_group(name, ZONE, min, max, desired)
}

fn ids(group: &AutoScalingGroup) -> BTreeSet<String> {
    group
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect()
}

fn protected(group: &AutoScalingGroup) -> BTreeSet<String> {
    group
        .instances
        .iter()
        .filter(|i| i.protected_from_scale_in)
        .map(|i| i.instance_id.clone())
        .collect()
}

#[tokio::test]
async fn group_operations_on_the_wire() {
    let moto = moto::moto();
    let name = create_group(&moto, "hosts", 0, 5, 1);
    let asg = client(&moto);

    // DescribeAutoScalingGroups reads the sizes and each instance.
    let group = asg.describe_group(&name).await.expect("describe");
    assert_eq!(group.name, name);
    assert_eq!((group.min, group.max, group.desired), (0, 5, 1));
    assert_eq!(group.instances.len(), 1);
    let first = &group.instances[0];
    assert!(first.instance_id.starts_with("i-"), "{first:?}");
    assert_eq!(first.availability_zone, ZONE);
    assert_eq!(first.lifecycle_state, InstanceLifecycleState::InService);
    assert!(first.healthy);
    assert!(!first.protected_from_scale_in);
    // Auto Scaling does not report launch times.
    assert_eq!(first.launched_at, None);

    // SetDesiredCapacity: moto launches the instances at once.
    asg.set_desired_capacity(&name, 4).await.expect("scale out");
    let group = asg.describe_group(&name).await.expect("describe");
    assert_eq!(group.desired, 4);
    assert_eq!(group.instances.len(), 4);
    let all = ids(&group);
    assert_eq!(all.len(), 4, "distinct ids: {all:?}");

    // SetInstanceProtection on two instances; then off on one of them.
    let mut listed = all.iter().cloned();
    let (a, b) = (
        listed.next().expect("an instance"),
        listed.next().expect("a second instance"),
    );
    asg.set_instance_protection(&name, &[a.clone(), b.clone()], true)
        .await
        .expect("protect");
    let group = asg.describe_group(&name).await.expect("describe");
    assert_eq!(protected(&group), BTreeSet::from([a.clone(), b.clone()]));
    asg.set_instance_protection(&name, std::slice::from_ref(&b), false)
        .await
        .expect("unprotect");
    let group = asg.describe_group(&name).await.expect("describe");
    assert_eq!(protected(&group), BTreeSet::from([a.clone()]));
    // No instances: nothing to send.
    asg.set_instance_protection(&name, &[], true)
        .await
        .expect("nothing to protect");

    // A scale-in keeps the protected instance.
    asg.set_desired_capacity(&name, 3).await.expect("scale in");
    let group = asg.describe_group(&name).await.expect("describe");
    assert_eq!((group.desired, group.instances.len()), (3, 3));
    assert!(ids(&group).contains(&a), "the protected instance stays");

    // TerminateInstanceInAutoScalingGroup with decrement: one instance fewer, not
    // replaced.
    let victim = ids(&group)
        .into_iter()
        .find(|i| *i != a)
        .expect("an unprotected instance");
    asg.terminate_instance(&victim, true)
        .await
        .expect("terminate with decrement");
    let group = asg.describe_group(&name).await.expect("describe");
    assert_eq!((group.desired, group.instances.len()), (2, 2));
    assert!(!ids(&group).contains(&victim));

    // Without decrement: the group replaces it.
    let victim = ids(&group)
        .into_iter()
        .find(|i| *i != a)
        .expect("an unprotected instance");
    let before = ids(&group);
    asg.terminate_instance(&victim, false)
        .await
        .expect("terminate without decrement");
    let group = asg.describe_group(&name).await.expect("describe");
    assert_eq!((group.desired, group.instances.len()), (2, 2));
    let after = ids(&group);
    assert!(!after.contains(&victim));
    assert_eq!(
        after.difference(&before).count(),
        1,
        "a replacement launched"
    );
}

#[tokio::test]
async fn a_missing_group_is_not_found_naming_it() {
    let moto = moto::moto();
    // Another group exists: it is not taken for the missing one.
    create_group(&moto, "present", 0, 1, 0);
    let missing = moto.name("absent");
    let err = client(&moto)
        .describe_group(&missing)
        .await
        .expect_err("no such group");
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!(
            "DescribeAutoScalingGroups: not found: Auto Scaling group {missing} does not exist"
        )
    );
}
