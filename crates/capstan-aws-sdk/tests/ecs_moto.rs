//! `SdkEcs` and `SdkElb` on the wire against moto (capstan-testkit's `moto`), and the
//! ECS service target over them.
//!
//! moto speaks ECS's JSON and ELBv2's query protocols, so these tests prove the calls
//! are well-formed and the answers read right. What moto lacks comes from the testkit's
//! `AwsProxy` in front of it: task protection (a hand-written fake, named as such) and
//! injected throttling. moto facts these tests live with: `UpdateService` changes the
//! counts but starts no tasks (tasks are started with `RunTask`, grouped as the
//! service's); `ListTasks` ignores `serviceName` (each test has its own cluster); a
//! deregistered target goes straight to `unused`.

use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::{
    AwsErrorKind, DesiredStatus, Ecs, Elb, TargetHealthState, TargetRef, TaskStatus,
};
use capstan_aws_sdk::{SdkEcs, SdkElb, SharedConfig, static_config};
use capstan_core::model::{TaskId, TaskState};
use capstan_targets::{EcsTarget, EcsTargetSpec, Target, TargetError};
use capstan_testkit::aws_proxy::AwsProxy;
use capstan_testkit::moto::{self, ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use capstan_testkit::moto_ecs::{EcsFixture, PORT};
use serde_json::json;

fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    static_config(endpoint, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
}

/// The service of the fixture with its task ARNs as the traits take them.
struct World {
    cluster: String,
    service: String,
    tasks: Vec<Arc<str>>,
    target_group: String,
    fixture: EcsFixture,
}

fn world(moto: &Moto, desired: u32, tasks: u32) -> World {
    let fixture = moto.ecs_service(desired, tasks);
    World {
        cluster: fixture.cluster.clone(),
        service: fixture.service.clone(),
        tasks: fixture
            .tasks
            .iter()
            .map(|t| Arc::from(t.as_str()))
            .collect(),
        target_group: fixture.target_group.clone(),
        fixture,
    }
}

fn clients(endpoint: &str) -> (SdkEcs, SdkElb) {
    let config = SharedConfig::ready(sdk_config(endpoint));
    (SdkEcs::new(config.clone()), SdkElb::new(config))
}

#[tokio::test]
async fn ecs_operations_on_the_wire() {
    let moto = moto::moto();
    let endpoint = moto.endpoint_url();
    let w = world(&moto, 2, 3);
    let (ecs, _) = clients(&endpoint);

    let svc = ecs
        .describe_service(&w.cluster, &w.service)
        .await
        .expect("describe");
    assert_eq!(svc.name, w.service);
    assert_eq!(svc.desired, 2);
    assert_eq!(
        svc.deployments.first().map(|d| d.status.as_str()),
        Some("PRIMARY")
    );
    assert_eq!(svc.status, "ACTIVE");

    // Missing service and cluster: NotFound, naming what is missing.
    let err = ecs
        .describe_service(&w.cluster, "nope")
        .await
        .expect_err("missing service");
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("service nope in cluster"), "{err}");
    let err = ecs
        .describe_service(&moto.name("no-cluster"), &w.service)
        .await
        .expect_err("missing cluster");
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");

    // UpdateService sets desiredCount; sending it again is harmless.
    ecs.update_desired_count(&w.cluster, &w.service, 5)
        .await
        .expect("update");
    ecs.update_desired_count(&w.cluster, &w.service, 5)
        .await
        .expect("update again");
    assert_eq!(w.fixture.desired_count(&moto), 5);

    // ListTasks, every page; DescribeTasks reads what the target needs.
    let mut listed = ecs
        .list_tasks(&w.cluster, &w.service, DesiredStatus::Running)
        .await
        .expect("list");
    listed.sort();
    let mut want = w.tasks.clone();
    want.sort();
    assert_eq!(listed, want);
    let (tasks, failures) = ecs
        .describe_tasks(&w.cluster, &listed)
        .await
        .expect("describe tasks");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(tasks.len(), 3);
    for t in &tasks {
        assert_eq!(t.last_status, TaskStatus::Running, "{t:?}");
        assert_eq!(t.desired_status, DesiredStatus::Running);
        assert_eq!(t.service.as_deref(), Some(w.service.as_str()));
        let ip = t.private_ip.as_deref().expect("an awsvpc task has an IP");
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    }
    // An unknown task is not an error (AWS lists it as a MISSING failure; moto leaves
    // it out).
    let unknown: Arc<str> = Arc::from(format!("{}-gone", w.tasks[0]).as_str());
    let (tasks, failures) = ecs
        .describe_tasks(&w.cluster, &[Arc::clone(&w.tasks[0]), Arc::clone(&unknown)])
        .await
        .expect("describe with an unknown task");
    assert_eq!(tasks.len(), 1);
    assert!(failures.iter().all(|f| f.arn == unknown), "{failures:?}");
    // Over AWS's batch limit: refused before any call.
    let many: Vec<Arc<str>> = (0..101)
        .map(|i| Arc::from(format!("t{i}").as_str()))
        .collect();
    let err = ecs
        .describe_tasks(&w.cluster, &many)
        .await
        .expect_err("101 tasks");
    assert_eq!(err.kind, AwsErrorKind::InvalidParameter);

    // StopTask: the task stops and leaves the RUNNING list.
    ecs.stop_task(&w.cluster, &w.tasks[0], "scale-in by capstan")
        .await
        .expect("stop");
    let (stopped, _) = ecs
        .describe_tasks(&w.cluster, &w.tasks[..1])
        .await
        .expect("describe stopped");
    assert_eq!(stopped[0].desired_status, DesiredStatus::Stopped);
    assert_eq!(
        stopped[0].stopped_reason.as_deref(),
        Some("scale-in by capstan")
    );
    let running = ecs
        .list_tasks(&w.cluster, &w.service, DesiredStatus::Running)
        .await
        .expect("list");
    assert_eq!(running.len(), 2);
    assert!(!running.contains(&w.tasks[0]));
    let gone = ecs
        .list_tasks(&w.cluster, &w.service, DesiredStatus::Stopped)
        .await
        .expect("list stopped");
    assert_eq!(gone, vec![Arc::clone(&w.tasks[0])]);
}

#[tokio::test]
async fn elb_operations_on_the_wire() {
    let moto = moto::moto();
    let endpoint = moto.endpoint_url();
    let w = world(&moto, 2, 2);
    let (ecs, elb) = clients(&endpoint);
    let (tasks, _) = ecs
        .describe_tasks(&w.cluster, &w.tasks)
        .await
        .expect("tasks");
    let targets: Vec<TargetRef> = tasks
        .iter()
        .map(|t| TargetRef {
            id: t.private_ip.as_deref().expect("an IP").to_owned(),
            port: PORT,
        })
        .collect();

    assert!(
        elb.describe_target_health(&w.target_group)
            .await
            .expect("empty group")
            .is_empty()
    );
    elb.register_targets(&w.target_group, &targets)
        .await
        .expect("register");
    let mut health = elb
        .describe_target_health(&w.target_group)
        .await
        .expect("health");
    health.sort_by(|a, b| a.target.cmp(&b.target));
    let mut want = targets.clone();
    want.sort();
    assert_eq!(
        health.iter().map(|h| h.target.clone()).collect::<Vec<_>>(),
        want
    );
    for h in &health {
        assert_ne!(h.state, TargetHealthState::Unused, "{h:?}");
    }
    elb.deregister_targets(&w.target_group, &targets[..1])
        .await
        .expect("deregister");
    let health = elb
        .describe_target_health(&w.target_group)
        .await
        .expect("health");
    let first = health.iter().find(|h| h.target == targets[0]);
    // moto drops a deregistered target at once (AWS keeps it `draining` for the delay).
    assert!(
        first.is_none_or(|h| matches!(
            h.state,
            TargetHealthState::Unused | TargetHealthState::Draining
        )),
        "{first:?}"
    );

    assert_eq!(
        elb.deregistration_delay(&w.target_group)
            .await
            .expect("delay"),
        Duration::from_secs(300)
    );
    moto.query(
        "elasticloadbalancing",
        &[
            ("Action", "ModifyTargetGroupAttributes"),
            ("Version", "2015-12-01"),
            ("TargetGroupArn", &w.target_group),
            (
                "Attributes.member.1.Key",
                "deregistration_delay.timeout_seconds",
            ),
            ("Attributes.member.1.Value", "30"),
        ],
    );
    assert_eq!(
        elb.deregistration_delay(&w.target_group)
            .await
            .expect("delay"),
        Duration::from_secs(30)
    );
    let missing = format!(
        "{}x",
        w.target_group.trim_end_matches(char::is_alphanumeric)
    );
    let err = elb
        .describe_target_health(&missing)
        .await
        .expect_err("missing group");
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn task_protection_through_the_proxy() {
    let moto = moto::moto();
    let w = world(&moto, 2, 2);
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let (ecs, _) = clients(&proxy.endpoint_url());
    let gone: Arc<str> = Arc::from(format!("{}-gone", w.tasks[0]).as_str());
    let asked = [Arc::clone(&w.tasks[0]), Arc::clone(&gone)];
    let out = ecs
        .update_task_protection(&w.cluster, &asked, Some(60))
        .await
        .expect("protect");
    assert_eq!(out.protected.len(), 1);
    assert!(out.protected[0].enabled);
    assert!(out.protected[0].expires_at.is_some());
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].reason, "TASK_NOT_VALID");
    assert!(proxy.protected_until(&w.tasks[0]).is_some());

    let out = ecs
        .get_task_protection(&w.cluster, &w.tasks)
        .await
        .expect("get");
    let enabled: Vec<bool> = w
        .tasks
        .iter()
        .map(|t| out.protected.iter().any(|p| p.arn == *t && p.enabled))
        .collect();
    assert_eq!(enabled, vec![true, false]);

    ecs.update_task_protection(&w.cluster, &w.tasks[..1], None)
        .await
        .expect("release");
    assert!(proxy.protected_until(&w.tasks[0]).is_none());
    let err = ecs
        .update_task_protection(&w.cluster, &w.tasks[..1], Some(0))
        .await
        .expect_err("0 minutes");
    assert_eq!(err.kind, AwsErrorKind::InvalidParameter);
    let eleven: Vec<Arc<str>> = (0..11)
        .map(|i| Arc::from(format!("t{i}").as_str()))
        .collect();
    let err = ecs
        .update_task_protection(&w.cluster, &eleven, Some(5))
        .await
        .expect_err("11 tasks");
    assert_eq!(err.kind, AwsErrorKind::InvalidParameter);
    assert_eq!(
        proxy.calls("UpdateTaskProtection"),
        2,
        "refused batches send nothing"
    );
}

#[tokio::test]
async fn throttling_is_a_retryable_error_naming_the_operation() {
    let moto = moto::moto();
    let w = world(&moto, 2, 0);
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let (ecs, elb) = clients(&proxy.endpoint_url());
    proxy.fail_next("UpdateService", 1, 400, "ThrottlingException");
    let err = ecs
        .update_desired_count(&w.cluster, &w.service, 3)
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, AwsErrorKind::Throttling);
    assert!(err.is_retryable());
    assert!(
        err.to_string().starts_with("UpdateService: throttled"),
        "{err}"
    );
    // One attempt per call: capstan's loop owns the retry.
    assert_eq!(proxy.calls("UpdateService"), 1);
    ecs.update_desired_count(&w.cluster, &w.service, 3)
        .await
        .expect("second try");
    assert_eq!(w.fixture.desired_count(&moto), 3);

    proxy.fail_next("DescribeTargetHealth", 1, 503, "ServiceUnavailable");
    let err = elb
        .describe_target_health(&w.target_group)
        .await
        .expect_err("unavailable");
    assert_eq!(err.kind, AwsErrorKind::Server, "{err}");
    proxy.fail_next("DescribeTargetHealth", 1, 400, "Throttling");
    let err = elb
        .describe_target_health(&w.target_group)
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, AwsErrorKind::Throttling, "{err}");
}

#[tokio::test]
async fn the_ecs_target_observes_and_scales_through_the_sdk() {
    let moto = moto::moto();
    let w = world(&moto, 3, 3);
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.expect("proxy");
    let (ecs, elb) = clients(&proxy.endpoint_url());
    let mut spec = EcsTargetSpec::new(&w.cluster, &w.service);
    spec.target_group = Some(w.target_group.clone());
    let target = EcsTarget::new("web", spec, ecs, Some(elb), None);

    let seen = target.observe().await.expect("observe");
    assert_eq!(seen.capacity.desired, 3);
    assert_eq!(seen.tasks.len(), 3);
    assert!(seen.tasks.iter().all(|t| t.state == TaskState::Running));
    let mut ids: Vec<TaskId> = seen.tasks.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    let mut want: Vec<TaskId> = w.tasks.iter().map(|a| TaskId(Arc::clone(a))).collect();
    want.sort();
    assert_eq!(ids, want);

    // Scale out: UpdateService with the new count; a throttled call fails the step
    // (the loop keeps the decision and retries) and the next one lands.
    proxy.fail_next("UpdateService", 1, 400, "ThrottlingException");
    let err = target.scale_out(5).await.expect_err("throttled");
    assert!(matches!(err, TargetError::Failed { .. }), "{err}");
    assert!(
        err.to_string().contains("UpdateService: throttled"),
        "{err}"
    );
    target.scale_out(5).await.expect("scale out");
    assert_eq!(w.fixture.desired_count(&moto), 5);

    // moto keeps the service's deployment IN_PROGRESS: scale-in is held, as AWS holds
    // it during a deployment, and nothing is changed.
    let victim = [TaskId(Arc::clone(&w.tasks[0]))];
    let err = target.scale_in(4, &victim).await.expect_err("held");
    assert!(err.to_string().contains("deployment"), "{err}");
    assert_eq!(w.fixture.desired_count(&moto), 5);
    assert_eq!(proxy.calls("DeregisterTargets"), 0);
}

/// `ListTasks` by container instance: a cluster of two container instances (over two
/// moto EC2 instances) with bridge-mode tasks of two service groups placed on them
/// with `StartTask`. moto facts: it matches `containerInstance` as a substring of each
/// task's container instance ARN (so an ARN or an id both work), and answers an
/// unknown container instance with an empty list where AWS refuses it
/// (`InvalidParameterException`), so that case is the world's test only.
#[tokio::test]
async fn tasks_on_one_container_instance_are_listed() {
    let moto = moto::moto();
    moto.manual_ecs_tasks();
    let (ecs, _) = clients(&moto.endpoint_url());
    let cluster = moto.name("ec2-cluster");
    moto.ecs("CreateCluster", &json!({ "clusterName": cluster }));
    let family = moto.name("bridge");
    moto.ecs(
        "RegisterTaskDefinition",
        &json!({
            "family": family,
            "networkMode": "bridge",
            "requiresCompatibilities": ["EC2"],
            "containerDefinitions": [{
                "name": "app", "image": "app", "essential": true,
                "cpu": 256, "memory": 512,
                "portMappings": [{ "containerPort": PORT, "hostPort": 0 }]
            }]
        }),
    );
    let mut instances = Vec::new();
    for _ in 0..2 {
        let out = moto.query(
            "ec2",
            &[
                ("Action", "RunInstances"),
                ("Version", "2016-11-15"),
                ("ImageId", "ami-12c6146b"),
                ("InstanceType", "t3.medium"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
            ],
        );
        let ec2_id = moto::xml_field(&out, "instanceId").expect("an instance id");
        let out = moto.ecs(
            "RegisterContainerInstance",
            &json!({
                "cluster": cluster,
                "instanceIdentityDocument": json!({ "instanceId": ec2_id }).to_string(),
            }),
        );
        let arn = out["containerInstance"]["containerInstanceArn"]
            .as_str()
            .unwrap_or_else(|| panic!("no container instance ARN in {out}"));
        instances.push(arn.to_owned());
    }
    // Instance 0: two tasks of "web", one of "worker"; instance 1: one of "worker".
    let start = |instances: &[&String], group: &str| -> Vec<Arc<str>> {
        let out = moto.ecs(
            "StartTask",
            &json!({
                "cluster": cluster,
                "taskDefinition": family,
                "containerInstances": instances,
                "group": format!("service:{group}"),
                "startedBy": "capstan-test",
            }),
        );
        out["tasks"]
            .as_array()
            .unwrap_or_else(|| panic!("no tasks in {out}"))
            .iter()
            .map(|t| Arc::from(t["taskArn"].as_str().expect("a task ARN")))
            .collect()
    };
    let web = start(&[&instances[0], &instances[0]], "web");
    let worker = start(&[&instances[0], &instances[1]], "worker");
    let sorted = |mut v: Vec<Arc<str>>| {
        v.sort();
        v
    };
    let on_first = sorted(vec![
        Arc::clone(&web[0]),
        Arc::clone(&web[1]),
        Arc::clone(&worker[0]),
    ]);
    let on_second = vec![Arc::clone(&worker[1])];

    let listed = ecs
        .list_instance_tasks(&cluster, &instances[0])
        .await
        .expect("list by ARN");
    assert_eq!(sorted(listed), on_first);
    let id = instances[1].rsplit('/').next().expect("an id");
    let listed = ecs
        .list_instance_tasks(&cluster, id)
        .await
        .expect("list by id");
    assert_eq!(listed, on_second);
    // What DescribeTasks says agrees: each listed task is on that instance.
    let (described, failures) = ecs
        .describe_tasks(&cluster, &on_first)
        .await
        .expect("describe");
    assert!(failures.is_empty(), "{failures:?}");
    for t in &described {
        assert_eq!(
            t.container_instance.as_deref(),
            Some(instances[0].as_str()),
            "{t:?}"
        );
    }

    // A stopped task leaves the list (desiredStatus RUNNING).
    ecs.stop_task(&cluster, &web[0], "scale-in by capstan")
        .await
        .expect("stop");
    let listed = ecs
        .list_instance_tasks(&cluster, &instances[0])
        .await
        .expect("list after stop");
    assert_eq!(
        sorted(listed),
        sorted(vec![Arc::clone(&web[1]), Arc::clone(&worker[0])])
    );
}

/// `ListServices` and `DescribeServices` on moto: a cluster with two services (a
/// replica service and a daemon) and a second cluster with a service of the same name.
/// Each cluster lists its own; describing the first cluster's two services and an
/// unknown one gives the two and a `MISSING` failure; an unknown cluster is NotFound.
/// moto facts: it answers `ListServices` in one page (the paging is the replay test's)
/// and lists INACTIVE (deleted) services too, which AWS does not, so deletion is the
/// world's test only.
#[tokio::test]
async fn services_of_a_cluster_are_listed_and_described() {
    let moto = moto::moto();
    let (ecs, _) = clients(&moto.endpoint_url());
    let first = moto.name("svc-first");
    let second = moto.name("svc-second");
    let family = moto.name("svc-def");
    moto.ecs(
        "RegisterTaskDefinition",
        &json!({
            "family": family,
            "networkMode": "bridge",
            "requiresCompatibilities": ["EC2"],
            "containerDefinitions": [{
                "name": "app", "image": "app", "essential": true,
                "cpu": 256, "memory": 512
            }]
        }),
    );
    let create = |cluster: &str, name: &str, strategy: &str, desired: u32| -> Arc<str> {
        let body = json!({
            "cluster": cluster,
            "serviceName": name,
            "taskDefinition": family,
            "launchType": "EC2",
            "schedulingStrategy": strategy,
            "desiredCount": desired,
        });
        let out = moto.ecs("CreateService", &body);
        Arc::from(
            out["service"]["serviceArn"]
                .as_str()
                .unwrap_or_else(|| panic!("no service ARN in {out}")),
        )
    };
    for cluster in [&first, &second] {
        moto.ecs("CreateCluster", &json!({ "clusterName": cluster }));
    }
    let web = create(&first, "web", "REPLICA", 2);
    let agent = create(&first, "agent", "DAEMON", 0);
    let other_web = create(&second, "web", "REPLICA", 1);

    let sorted = |mut v: Vec<Arc<str>>| {
        v.sort();
        v
    };
    let listed = ecs.list_services(&first).await.expect("list first");
    assert_eq!(
        sorted(listed),
        sorted(vec![Arc::clone(&web), Arc::clone(&agent)])
    );
    let listed = ecs.list_services(&second).await.expect("list second");
    assert_eq!(listed, vec![Arc::clone(&other_web)]);

    let asked = [Arc::clone(&web), Arc::from("ghost"), Arc::from("agent")];
    let (found, failures) = ecs
        .describe_services(&first, &asked)
        .await
        .expect("describe");
    let mut read: Vec<(&str, &str, u32)> = found
        .iter()
        .map(|s| (s.name.as_str(), s.arn.as_str(), s.desired))
        .collect();
    read.sort();
    assert_eq!(read, vec![("agent", &*agent, 0), ("web", &*web, 2)]);
    assert!(found.iter().all(|s| s.status == "ACTIVE"), "{found:?}");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "MISSING");
    assert!(failures[0].arn.ends_with("/ghost"), "{failures:?}");
    // The single DescribeServices reads the same service the same way.
    let single = ecs.describe_service(&first, "web").await.expect("single");
    assert_eq!(found.iter().find(|s| s.name == "web"), Some(&single));

    let err = ecs
        .list_services(&moto.name("no-cluster"))
        .await
        .expect_err("missing cluster");
    assert_eq!(err.kind, AwsErrorKind::NotFound, "{err}");
    assert_eq!(err.operation, "ListServices");
}
