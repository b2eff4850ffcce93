//! The ECS operations moto lacks (`UpdateTaskProtection`, `GetTaskProtection`) and
//! answers it does not give (a bridge-mode task's `networkBindings`, `ListTasks` and
//! `ListServices` answers over several pages, a DRAINING service) through the real SDK
//! client with a replayed HTTP exchange: each test checks the exact request capstan
//! sends (operation, JSON body) and reads back an answer of ECS's documented shape.

use std::sync::Arc;

use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use capstan_aws_api::{AwsErrorKind, Ecs};
use capstan_aws_sdk::SdkEcs;
use serde_json::{Value, json};

fn answer(status: u16, body: &Value) -> http::Response<SdkBody> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(SdkBody::from(body.to_string()))
        .expect("a response")
}

fn replay(answers: Vec<http::Response<SdkBody>>) -> StaticReplayClient {
    let request = || {
        http::Request::builder()
            .uri("https://ecs.us-east-1.amazonaws.com/")
            .body(SdkBody::empty())
            .expect("a request")
    };
    StaticReplayClient::new(
        answers
            .into_iter()
            .map(|a| ReplayEvent::new(request(), a))
            .collect(),
    )
}

fn client(http: &StaticReplayClient) -> SdkEcs {
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .build();
    SdkEcs::from_client(aws_sdk_ecs::Client::from_conf(config))
}

/// The operation (from `X-Amz-Target`) and JSON body of each request sent.
fn sent(http: &StaticReplayClient) -> Vec<(String, Value)> {
    http.actual_requests()
        .map(|r| {
            let target = r
                .headers()
                .get("x-amz-target")
                .expect("an X-Amz-Target header")
                .to_owned();
            let body = serde_json::from_slice(r.body().bytes().expect("an in-memory body"))
                .expect("a JSON body");
            (target, body)
        })
        .collect()
}

const T1: &str = "arn:aws:ecs:us-east-1:123456789012:task/prod/1111";
const T2: &str = "arn:aws:ecs:us-east-1:123456789012:task/prod/2222";

#[tokio::test]
async fn protecting_sends_enabled_and_minutes_and_reads_expiry_and_failures() {
    let http = replay(vec![answer(
        200,
        &json!({
            "protectedTasks": [
                { "taskArn": T1, "protectionEnabled": true, "expirationDate": 1_767_229_200.0 }
            ],
            "failures": [
                { "arn": T2, "reason": "TASK_NOT_VALID", "detail": "The task is not running" }
            ]
        }),
    )]);
    let ecs = client(&http);
    let tasks: Vec<Arc<str>> = vec![Arc::from(T1), Arc::from(T2)];
    let out = ecs
        .update_task_protection("prod", &tasks, Some(60))
        .await
        .expect("protect");
    assert_eq!(
        sent(&http),
        vec![(
            "AmazonEC2ContainerServiceV20141113.UpdateTaskProtection".to_owned(),
            json!({
                "cluster": "prod",
                "tasks": [T1, T2],
                "protectionEnabled": true,
                "expiresInMinutes": 60
            })
        )]
    );
    assert_eq!(out.protected.len(), 1);
    assert_eq!(&*out.protected[0].arn, T1);
    assert!(out.protected[0].enabled);
    assert_eq!(
        out.protected[0].expires_at.map(|t| t.as_second()),
        Some(1_767_229_200)
    );
    assert_eq!(out.failures.len(), 1);
    assert_eq!(&*out.failures[0].arn, T2);
    assert_eq!(out.failures[0].reason, "TASK_NOT_VALID");
}

#[tokio::test]
async fn releasing_sends_disabled_without_minutes() {
    let http = replay(vec![answer(
        200,
        &json!({
            "protectedTasks": [{ "taskArn": T1, "protectionEnabled": false }],
            "failures": []
        }),
    )]);
    let ecs = client(&http);
    let out = ecs
        .update_task_protection("prod", &[Arc::from(T1)], None)
        .await
        .expect("release");
    assert_eq!(
        sent(&http)[0].1,
        json!({ "cluster": "prod", "tasks": [T1], "protectionEnabled": false })
    );
    assert!(!out.protected[0].enabled);
    assert_eq!(out.protected[0].expires_at, None);
}

#[tokio::test]
async fn reading_protection_sends_the_tasks_and_reads_each_state() {
    let http = replay(vec![answer(
        200,
        &json!({
            "protectedTasks": [
                { "taskArn": T1, "protectionEnabled": true, "expirationDate": 1_767_229_200 },
                { "taskArn": T2, "protectionEnabled": false }
            ],
            "failures": []
        }),
    )]);
    let ecs = client(&http);
    let out = ecs
        .get_task_protection("prod", &[Arc::from(T1), Arc::from(T2)])
        .await
        .expect("get");
    assert_eq!(
        sent(&http),
        vec![(
            "AmazonEC2ContainerServiceV20141113.GetTaskProtection".to_owned(),
            json!({ "cluster": "prod", "tasks": [T1, T2] })
        )]
    );
    let enabled: Vec<bool> = out.protected.iter().map(|p| p.enabled).collect();
    assert_eq!(enabled, vec![true, false]);
}

#[tokio::test]
async fn a_throttled_protection_call_is_a_retryable_error_naming_the_operation() {
    let http = replay(vec![answer(
        400,
        &json!({
            "__type": "com.amazonaws.ecs#ThrottlingException",
            "message": "Rate exceeded"
        }),
    )]);
    let ecs = client(&http);
    let err = ecs
        .update_task_protection("prod", &[Arc::from(T1)], Some(5))
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, AwsErrorKind::Throttling);
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "UpdateTaskProtection: throttled: ThrottlingException: Rate exceeded"
    );
}

/// A bridge-mode task on the EC2 launch type: `DescribeTasks` reports no network
/// interface, its container instance and, per container, the host port each binding
/// got (dynamic ports). Those are read, each once, in order; a binding given only as a
/// range is skipped.
#[tokio::test]
async fn a_bridge_task_is_read_with_its_container_instance_and_host_ports() {
    const CI: &str = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/abcd";
    let http = replay(vec![answer(
        200,
        &json!({
            "tasks": [{
                "taskArn": T1,
                "group": "service:web",
                "lastStatus": "RUNNING",
                "desiredStatus": "RUNNING",
                "launchType": "EC2",
                "containerInstanceArn": CI,
                "availabilityZone": "us-east-1a",
                "attachments": [],
                "containers": [
                    {
                        "name": "web",
                        "networkBindings": [
                            { "bindIP": "0.0.0.0", "containerPort": 8080, "hostPort": 32771, "protocol": "tcp" },
                            { "bindIP": "::", "containerPort": 8080, "hostPort": 32771, "protocol": "tcp" }
                        ],
                        "networkInterfaces": []
                    },
                    {
                        "name": "metrics",
                        "networkBindings": [
                            { "bindIP": "0.0.0.0", "containerPort": 9100, "hostPort": 32772, "protocol": "tcp" },
                            { "containerPortRange": "7000-7002", "hostPortRange": "40000-40002", "protocol": "tcp" }
                        ]
                    }
                ]
            }],
            "failures": []
        }),
    )]);
    let ecs = client(&http);
    let (tasks, failures) = ecs
        .describe_tasks("prod", &[Arc::from(T1)])
        .await
        .expect("describe");
    assert!(failures.is_empty());
    assert_eq!(
        sent(&http),
        vec![(
            "AmazonEC2ContainerServiceV20141113.DescribeTasks".to_owned(),
            json!({ "cluster": "prod", "tasks": [T1] })
        )]
    );
    let t = &tasks[0];
    assert_eq!(t.container_instance.as_deref(), Some(CI));
    assert_eq!(t.private_ip, None, "bridge networking: no task ENI");
    assert_eq!(t.host_ports, vec![32771, 32772]);
}

#[tokio::test]
async fn a_host_port_that_is_not_a_port_is_a_malformed_answer_naming_the_task() {
    for bad in [-1, 0, 70_000] {
        let http = replay(vec![answer(
            200,
            &json!({
                "tasks": [{
                    "taskArn": T1,
                    "lastStatus": "RUNNING",
                    "containers": [{
                        "name": "web",
                        "networkBindings": [{ "containerPort": 8080, "hostPort": bad }]
                    }]
                }],
                "failures": []
            }),
        )]);
        let err = client(&http)
            .describe_tasks("prod", &[Arc::from(T1)])
            .await
            .expect_err("malformed");
        assert_eq!(
            err.kind,
            AwsErrorKind::Other {
                code: "MalformedResponse".into()
            },
            "{bad}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "DescribeTasks: MalformedResponse: task {T1}: container web has a network binding with hostPort {bad}, not a port"
            )
        );
    }
}

/// `ListTasks` by container instance sends the instance and `desiredStatus` RUNNING
/// (and no service), and follows `nextToken` to the last page; moto answers in one
/// page, so the paging is checked here.
#[tokio::test]
async fn tasks_of_a_container_instance_are_listed_over_every_page() {
    const CI: &str = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/abcd";
    const T3: &str = "arn:aws:ecs:us-east-1:123456789012:task/prod/3333";
    let http = replay(vec![
        answer(200, &json!({ "taskArns": [T1, T2], "nextToken": "page-2" })),
        answer(200, &json!({ "taskArns": [T3] })),
    ]);
    let tasks = client(&http)
        .list_instance_tasks("prod", CI)
        .await
        .expect("list");
    assert_eq!(tasks, vec![Arc::from(T1), Arc::from(T2), Arc::from(T3)]);
    let op = "AmazonEC2ContainerServiceV20141113.ListTasks".to_owned();
    assert_eq!(
        sent(&http),
        vec![
            (
                op.clone(),
                json!({ "cluster": "prod", "containerInstance": CI, "desiredStatus": "RUNNING" })
            ),
            (
                op,
                json!({
                    "cluster": "prod",
                    "containerInstance": CI,
                    "desiredStatus": "RUNNING",
                    "nextToken": "page-2"
                })
            ),
        ]
    );
}

/// `ListTasks` by service still sends the service and the status asked for, and no
/// container instance (the paging is shared with `list_instance_tasks`).
#[tokio::test]
async fn tasks_of_a_service_are_listed_by_service_and_status() {
    let http = replay(vec![answer(200, &json!({ "taskArns": [T1] }))]);
    let tasks = client(&http)
        .list_tasks("prod", "web", capstan_aws_api::DesiredStatus::Stopped)
        .await
        .expect("list");
    assert_eq!(tasks, vec![Arc::from(T1)]);
    assert_eq!(
        sent(&http),
        vec![(
            "AmazonEC2ContainerServiceV20141113.ListTasks".to_owned(),
            json!({ "cluster": "prod", "serviceName": "web", "desiredStatus": "STOPPED" })
        )]
    );
}

/// AWS refuses a container instance it does not know with `InvalidParameterException`:
/// a client error naming the operation, not retried.
#[tokio::test]
async fn an_unknown_container_instance_is_an_invalid_parameter() {
    let http = replay(vec![answer(
        400,
        &json!({
            "__type": "com.amazonaws.ecs#InvalidParameterException",
            "message": "Container instance not found"
        }),
    )]);
    let err = client(&http)
        .list_instance_tasks("prod", "ffff")
        .await
        .expect_err("unknown instance");
    assert_eq!(err.kind, AwsErrorKind::InvalidParameter);
    assert_eq!(err.operation, "ListTasks");
    assert!(!err.is_retryable());
}

const S1: &str = "arn:aws:ecs:us-east-1:123456789012:service/prod/web";
const S2: &str = "arn:aws:ecs:us-east-1:123456789012:service/prod/worker";
const S3: &str = "arn:aws:ecs:us-east-1:123456789012:service/prod/agent";

/// `ListServices` asks for ECS's largest page (100; its default is 10), follows
/// `nextToken` to the last page and sends no filter (any launch type, any scheduling
/// strategy); moto answers in one page, so the paging is checked here.
#[tokio::test]
async fn services_of_a_cluster_are_listed_over_every_page() {
    let http = replay(vec![
        answer(
            200,
            &json!({ "serviceArns": [S1, S2], "nextToken": "page-2" }),
        ),
        answer(200, &json!({ "serviceArns": [S3] })),
    ]);
    let services = client(&http).list_services("prod").await.expect("list");
    assert_eq!(services, vec![Arc::from(S1), Arc::from(S2), Arc::from(S3)]);
    let op = "AmazonEC2ContainerServiceV20141113.ListServices".to_owned();
    assert_eq!(
        sent(&http),
        vec![
            (op.clone(), json!({ "cluster": "prod", "maxResults": 100 })),
            (
                op,
                json!({ "cluster": "prod", "maxResults": 100, "nextToken": "page-2" })
            ),
        ]
    );
}

/// `DescribeServices` sends the services asked for in one call and reads each service
/// found and each failure; the single `describe_service` is the same call with one
/// service, its `MISSING` failure a `NotFound` error.
#[tokio::test]
async fn services_are_described_with_failures_for_unknown_ones() {
    const GHOST: &str = "arn:aws:ecs:us-east-1:123456789012:service/prod/ghost";
    let web = json!({
        "serviceName": "web",
        "serviceArn": S1,
        "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
        "status": "ACTIVE",
        "desiredCount": 4,
        "runningCount": 3,
        "pendingCount": 1,
        "launchType": "EC2",
        "schedulingStrategy": "REPLICA",
        "deploymentConfiguration": { "minimumHealthyPercent": 50, "maximumPercent": 100 },
        "deployments": [{
            "id": "ecs-svc/1", "status": "PRIMARY", "rolloutState": "COMPLETED",
            "desiredCount": 4, "runningCount": 3, "pendingCount": 1
        }]
    });
    let agent = json!({
        "serviceName": "agent",
        "serviceArn": S3,
        "status": "DRAINING",
        "desiredCount": 0,
        "runningCount": 0,
        "pendingCount": 0,
        "schedulingStrategy": "DAEMON"
    });
    let http = replay(vec![
        answer(
            200,
            &json!({
                "services": [web, agent],
                "failures": [{ "arn": GHOST, "reason": "MISSING" }]
            }),
        ),
        answer(
            200,
            &json!({
                "services": [],
                "failures": [{ "arn": GHOST, "reason": "MISSING" }]
            }),
        ),
    ]);
    let ecs = client(&http);
    let asked: Vec<Arc<str>> = vec![Arc::from("web"), Arc::from(GHOST), Arc::from(S3)];
    let (found, failures) = ecs
        .describe_services("prod", &asked)
        .await
        .expect("describe");
    let read: Vec<(&str, &str, u32, u32, u32)> = found
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.status.as_str(),
                s.desired,
                s.running,
                s.pending,
            )
        })
        .collect();
    assert_eq!(
        read,
        vec![("web", "ACTIVE", 4, 3, 1), ("agent", "DRAINING", 0, 0, 0)]
    );
    assert_eq!(
        (found[0].minimum_healthy_percent, found[0].maximum_percent),
        (50, 100)
    );
    assert_eq!(found[1].cluster, "prod", "no clusterArn: the cluster asked");
    assert_eq!(failures.len(), 1);
    assert_eq!(&*failures[0].arn, GHOST);
    assert_eq!(failures[0].reason, "MISSING");

    let err = ecs
        .describe_service("prod", "ghost")
        .await
        .expect_err("missing");
    assert_eq!(err.kind, AwsErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "DescribeServices: not found: service ghost in cluster prod: MISSING"
    );
    let op = "AmazonEC2ContainerServiceV20141113.DescribeServices".to_owned();
    assert_eq!(
        sent(&http),
        vec![
            (
                op.clone(),
                json!({ "cluster": "prod", "services": ["web", GHOST, S3] })
            ),
            (op, json!({ "cluster": "prod", "services": ["ghost"] })),
        ]
    );

    // Over AWS's batch limit, or nothing asked: no call.
    let eleven: Vec<Arc<str>> = (0..11)
        .map(|i| Arc::from(format!("s{i}").as_str()))
        .collect();
    let err = ecs
        .describe_services("prod", &eleven)
        .await
        .expect_err("11 services");
    assert_eq!(err.kind, AwsErrorKind::InvalidParameter);
    let (found, failures) = ecs.describe_services("prod", &[]).await.expect("none");
    assert!(found.is_empty() && failures.is_empty());
    assert_eq!(sent(&http).len(), 2);
}
