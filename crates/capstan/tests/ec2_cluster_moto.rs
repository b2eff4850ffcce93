//! The real binary scaling the EC2 hosts of an ECS cluster (`kind = "ec2_cluster"`)
//! through the AWS SDK, on moto: an ECS cluster and an Auto Scaling group of 1 to 4
//! instances, each registered with the cluster as a container instance (the test plays
//! the ECS agent: moto starts none). A pushed load raises the group's desired capacity
//! in two steps; a low one removes the empty hosts safely: set DRAINING, then
//! terminated through the group with its desired capacity lowered. A host left DRAINING
//! (as by a capstan killed during a removal) is refused by the next scale-in until it is
//! set ACTIVE again, with a store in memory; with the SQLite store, a capstan killed
//! with SIGKILL during the removal is resumed by the next one from its journal.
//!
//! moto facts this lives with: instances appear and go at once, every one `InService`;
//! a container instance stays registered after its EC2 instance is terminated.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use capstan_aws_api::{AutoScaling, AutoScalingGroup, ContainerInstanceStatus, Ecs};
use capstan_aws_sdk::{SdkAutoScaling, SdkEcs, SharedConfig, static_config};
use capstan_testkit::moto::{self, ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use capstan_testkit::servers::free_port;
use reqwest::StatusCode;
use serde_json::json;
use support::{client, sigkill, start};
use tokio::time::Instant;

const ZONE: &str = "us-east-1a";

fn config(port: u16, cluster: &str, group: &str, endpoint: &str, store: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
{store}

[sources.load]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[[services]]
name = "hosts"
min = 1
max = 4
interval = "200ms"
cooldown = {{ out = "0s", in = "0s" }}
scale_in = {{ stabilization = "0s" }}
target = {{ kind = "ec2_cluster", cluster = "{cluster}", group = "{group}", warmup = "0s", endpoint_url = "{endpoint}", region = "{REGION}" }}

[[services.policies]]
kind = "target_tracking"
metric = "load"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 1 }}
"#
    )
}

/// A group of `min..=max` at `desired` in the test's zone: its name.
fn create_group(moto: &Moto, name: &str, min: u32, max: u32, desired: u32) -> String {
    moto.autoscaling_group(name, ZONE, min, max, desired)
}

/// The test's own SDK clients on moto, for one cluster and its group (the rotation
/// and recipe tests use them too).
pub(crate) struct Aws {
    pub(crate) ecs: SdkEcs,
    pub(crate) asg: SdkAutoScaling,
    cluster: String,
    group: String,
}

impl Aws {
    pub(crate) fn new(moto: &Moto, cluster: &str, group: &str) -> Self {
        let config = SharedConfig::ready(static_config(
            &moto.endpoint_url(),
            REGION,
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
        ));
        Self {
            ecs: SdkEcs::new(config.clone()),
            asg: SdkAutoScaling::new(config),
            cluster: cluster.to_owned(),
            group: group.to_owned(),
        }
    }

    pub(crate) async fn group(&self) -> AutoScalingGroup {
        self.asg.describe_group(&self.group).await.unwrap()
    }

    /// The cluster's container instances' status, by EC2 instance id.
    pub(crate) async fn hosts(&self) -> BTreeMap<String, ContainerInstanceStatus> {
        self.container_instances()
            .await
            .into_iter()
            .map(|(id, (status, _))| (id, status))
            .collect()
    }

    /// Sets the container instance of EC2 instance `id` to `status`, as an operator
    /// (or a capstan) does.
    async fn set_status(&self, id: &str, status: ContainerInstanceStatus) {
        let arn = self.container_instances().await[id].1.clone();
        let failures = self
            .ecs
            .update_container_instances_state(&self.cluster, &[arn], status)
            .await
            .unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }

    /// The cluster's container instances' status and ARN, by EC2 instance id.
    async fn container_instances(&self) -> BTreeMap<String, (ContainerInstanceStatus, String)> {
        let arns = self
            .ecs
            .list_container_instances(&self.cluster, None)
            .await
            .unwrap();
        if arns.is_empty() {
            return BTreeMap::new();
        }
        let (found, missing) = self
            .ecs
            .describe_container_instances(&self.cluster, &arns)
            .await
            .unwrap();
        assert!(missing.is_empty(), "{missing:?}");
        found
            .into_iter()
            .map(|h| (h.ec2_instance_id, (h.status, h.arn)))
            .collect()
    }

    /// Registers every instance of the group not registered yet with the cluster, as
    /// the ECS agent does when an instance boots: the ids registered now.
    pub(crate) async fn register_new_instances(&self, moto: &Moto) -> Vec<String> {
        self.register(moto, &self.group).await
    }

    /// Registers every instance of group `group` not registered yet with the cluster:
    /// the ids registered now.
    pub(crate) async fn register(&self, moto: &Moto, group: &str) -> Vec<String> {
        let known = self.hosts().await;
        let mut registered = Vec::new();
        for i in self.asg.describe_group(group).await.unwrap().instances {
            if known.contains_key(&i.instance_id) {
                continue;
            }
            moto.register_container_instance(&self.cluster, &i.instance_id);
            registered.push(i.instance_id);
        }
        registered
    }

    /// Waits until the group's desired capacity is `desired`: the group.
    async fn until_desired(&self, desired: u32, what: &str) -> AutoScalingGroup {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let group = self.group().await;
            if group.desired == desired {
                return group;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: desired capacity {} after 30 s, expected {desired}",
                group.desired
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Pushes `value` to the push source `load`, trying again while capstan is not
/// listening yet (at most 30 s).
async fn push(http: &reqwest::Client, base: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http
            .post(format!("{base}/api/v1/metrics/load"))
            .json(&json!({ "value": value }))
            .send()
            .await
        {
            Ok(answer) => {
                assert_eq!(answer.status(), StatusCode::OK, "push {value}");
                return;
            }
            Err(e) => assert!(Instant::now() < deadline, "capstan never took a push: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the latest evaluation of service `hosts` failed with an error holding
/// every one of `parts`: the error.
async fn until_error(http: &reqwest::Client, base: &str, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = serde_json::Value::Null;
    loop {
        if let Ok(answer) = http
            .get(format!("{base}/api/v1/services/hosts"))
            .send()
            .await
        {
            last = answer.json().await.unwrap_or_default();
            if let Some(error) = last["last_error"].as_str()
                && parts.iter().all(|p| error.contains(p))
            {
                return error.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no error holding {parts:?} after 30 s; the service: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops capstan with SIGTERM and waits for its orderly exit.
async fn stop(mut child: tokio::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

fn write_config(dir: &Path, port: u16, cluster: &str, group: &str, endpoint: &str) {
    std::fs::write(
        dir.join("capstan.toml"),
        config(port, cluster, group, endpoint, "kind = \"memory\""),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_load_scales_the_cluster_hosts_out_and_back_in() {
    let moto = moto::moto();
    let cluster = moto.name("hosts");
    moto.ecs("CreateCluster", &json!({ "clusterName": cluster }));
    let group = create_group(&moto, "hosts", 1, 4, 1);
    let aws = Aws::new(&moto, &cluster, &group);
    let first = aws.register_new_instances(&moto).await;
    assert_eq!(first.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    write_config(dir.path(), port, &cluster, &group, &moto.endpoint_url());
    let capstan = start(dir.path());
    let http = client();

    // 25 at 10 per host: 3 hosts.
    push(&http, &base, 25.0).await;
    let group_now = aws.until_desired(3, "first scale-out").await;
    assert_eq!(group_now.instances.len(), 3);
    let new = aws.register_new_instances(&moto).await;
    assert_eq!(new.len(), 2);

    // 40: 4 hosts. The hosts just registered do not hold this second step (warmup =
    // "0s"; with the default 5 minutes they would).
    push(&http, &base, 40.0).await;
    aws.until_desired(4, "second scale-out").await;
    let new = aws.register_new_instances(&moto).await;
    assert_eq!(new.len(), 1);

    // The work registry is not used for hosts: the service is not declared there.
    let answer = http
        .put(format!(
            "{base}/api/v1/services/hosts/tasks/{}/sessions/s-1",
            first[0]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);

    // 5: back to 1 host. Every host is empty, so any 3 may go: each is set DRAINING,
    // then terminated through the group with its desired capacity lowered.
    push(&http, &base, 5.0).await;
    let group_now = aws.until_desired(1, "scale-in").await;
    assert_eq!(group_now.instances.len(), 1, "{group_now:?}");
    let kept = &group_now.instances[0].instance_id;
    let hosts = aws.hosts().await;
    assert_eq!(hosts.len(), 4, "{hosts:?}");
    for (id, status) in &hosts {
        let want = if id == kept {
            ContainerInstanceStatus::Active
        } else {
            ContainerInstanceStatus::Draining
        };
        assert_eq!(*status, want, "{id}: {hosts:?}");
    }

    stop(capstan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_left_draining_is_refused_until_set_active_again() {
    let moto = moto::moto();
    let cluster = moto.name("left");
    moto.ecs("CreateCluster", &json!({ "clusterName": cluster }));
    let group = create_group(&moto, "left", 1, 4, 2);
    let aws = Aws::new(&moto, &cluster, &group);
    let mut ids = aws.register_new_instances(&moto).await;
    ids.sort();
    assert_eq!(ids.len(), 2);
    // What a capstan killed during a host removal leaves behind: a host DRAINING.
    let left = &ids[0];
    aws.set_status(left, ContainerInstanceStatus::Draining)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    write_config(dir.path(), port, &cluster, &group, &moto.endpoint_url());
    let capstan = start(dir.path());
    let http = client();

    // 5: one host is enough. The draining host is the victim chosen first, and the
    // target removes only ACTIVE hosts: the scale-in fails, naming it, and nothing
    // changes.
    push(&http, &base, 5.0).await;
    let error = until_error(
        &http,
        &base,
        &[
            left,
            "no host can be removed safely",
            "container instance Draining",
        ],
    )
    .await;
    let group_now = aws.group().await;
    assert_eq!(group_now.desired, 2, "{error}");
    assert_eq!(group_now.instances.len(), 2, "{error}");
    assert_eq!(
        aws.hosts().await[left],
        ContainerInstanceStatus::Draining,
        "{error}"
    );

    // An operator sets it ACTIVE again: the scale-in goes through.
    aws.set_status(left, ContainerInstanceStatus::Active).await;
    let group_now = aws
        .until_desired(1, "scale-in after the host is ACTIVE again")
        .await;
    assert_eq!(group_now.instances.len(), 1);

    stop(capstan).await;
}

/// The host removal is a journaled workflow: capstan is killed with SIGKILL while its
/// victim is DRAINING (before the first drain check), and the next capstan on the same
/// SQLite store resumes that removal: the host is terminated once, the group lowered
/// once, and the workflow API shows the one host workflow done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_removal_killed_mid_drain_is_resumed_from_the_store() {
    let moto = moto::moto();
    let cluster = moto.name("resume");
    moto.ecs("CreateCluster", &json!({ "clusterName": cluster }));
    let group = create_group(&moto, "resume", 1, 4, 2);
    let aws = Aws::new(&moto, &cluster, &group);
    assert_eq!(aws.register_new_instances(&moto).await.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("capstan.toml"),
        config(
            port,
            &cluster,
            &group,
            &moto.endpoint_url(),
            "path = \"capstan.db\"",
        ),
    )
    .unwrap();
    let mut first = start(dir.path());
    let http = client();
    push(&http, &base, 5.0).await;
    // A victim set DRAINING: the removal is under way; kill capstan there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim = loop {
        let hosts = aws.hosts().await;
        if let Some((id, _)) = hosts
            .iter()
            .find(|(_, s)| **s == ContainerInstanceStatus::Draining)
        {
            break id.clone();
        }
        assert!(Instant::now() < deadline, "no host set DRAINING: {hosts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    sigkill(&mut first).await;
    let group_now = aws.group().await;
    assert_eq!(group_now.desired, 2, "killed before the termination");

    // The next capstan: the same removal, resumed (no second DRAINING, no new pick).
    let second = start(dir.path());
    let group_now = aws.until_desired(1, "the resumed removal").await;
    let left: Vec<&str> = group_now
        .instances
        .iter()
        .map(|i| i.instance_id.as_str())
        .collect();
    assert_eq!(left.len(), 1, "{group_now:?}");
    assert_ne!(left[0], victim, "the victim went, not the other host");
    let workflows: serde_json::Value = http
        .get(format!("{base}/api/v1/workflows?service=hosts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = workflows["workflows"].as_array().unwrap();
    assert_eq!(list.len(), 1, "one removal, resumed: {workflows}");
    assert_eq!(list[0]["status"], "done", "{workflows}");
    assert_eq!(list[0]["kind"], "hosts", "{workflows}");
    assert_eq!(
        list[0]["victims"][0]["task"],
        victim.as_str(),
        "{workflows}"
    );
    // Held a little longer: nothing else is removed or lowered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let group_now = aws.group().await;
    assert_eq!((group_now.desired, group_now.instances.len()), (1, 1));
    stop(second).await;
}
