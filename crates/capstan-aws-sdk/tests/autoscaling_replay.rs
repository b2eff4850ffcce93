//! `SdkAutoScaling` through the real SDK client with replayed HTTP exchanges: the
//! operations moto lacks (`CompleteLifecycleAction`, `RecordLifecycleActionHeartbeat`),
//! the request parameters moto does not show (`HonorCooldown`, batches of
//! `SetInstanceProtection`), lifecycle states moto never reports, and AWS's refusals.
//! Each test checks the exact query-protocol form capstan sends and reads back an
//! answer of Auto Scaling's documented shape.

use std::collections::BTreeMap;

use aws_sdk_autoscaling::config::retry::RetryConfig;
use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use capstan_aws_api::{AutoScaling, AwsErrorKind, InstanceLifecycleState, LifecycleActionResult};
use capstan_aws_sdk::SdkAutoScaling;

const NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

/// A success answer of `operation` with `result` inside its `…Result` element.
fn ok(operation: &str, result: &str) -> http::Response<SdkBody> {
    let body = format!(
        r#"<{operation}Response xmlns="{NS}"><{operation}Result>{result}</{operation}Result><ResponseMetadata><RequestId>7c6e177f-f082-11e1-ac58-3714bEXAMPLE</RequestId></ResponseMetadata></{operation}Response>"#
    );
    answer(200, body)
}

/// An error answer with `code` and `message`.
fn refused(status: u16, code: &str, message: &str) -> http::Response<SdkBody> {
    let body = format!(
        r#"<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>7c6e177f-f082-11e1-ac58-3714bEXAMPLE</RequestId></ErrorResponse>"#
    );
    answer(status, body)
}

fn answer(status: u16, body: String) -> http::Response<SdkBody> {
    http::Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(SdkBody::from(body))
        .expect("a response")
}

fn replay(answers: Vec<http::Response<SdkBody>>) -> StaticReplayClient {
    let request = || {
        http::Request::builder()
            .uri("https://autoscaling.us-east-1.amazonaws.com/")
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

fn client(http: &StaticReplayClient) -> SdkAutoScaling {
    let config = aws_sdk_autoscaling::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .build();
    SdkAutoScaling::from_client(aws_sdk_autoscaling::Client::from_conf(config))
}

/// `text` with `+` and `%XX` escapes of a form body decoded.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII hex");
                out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8")
}

/// The form parameters of each request sent (query protocol: a URL-encoded body).
fn sent(http: &StaticReplayClient) -> Vec<BTreeMap<String, String>> {
    http.actual_requests()
        .map(|r| {
            let body = std::str::from_utf8(r.body().bytes().expect("an in-memory body"))
                .expect("a UTF-8 body")
                .to_owned();
            body.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn completing_a_lifecycle_action_sends_the_hook_instance_and_result() {
    let http = replay(vec![
        ok("CompleteLifecycleAction", ""),
        ok("CompleteLifecycleAction", ""),
    ]);
    let asg = client(&http);
    asg.complete_lifecycle_action(
        "web-hosts",
        "drain",
        "i-0a1b2c",
        LifecycleActionResult::Continue,
    )
    .await
    .expect("continue");
    asg.complete_lifecycle_action(
        "web-hosts",
        "drain",
        "i-0a1b2c",
        LifecycleActionResult::Abandon,
    )
    .await
    .expect("abandon");
    let want = |result| {
        form(&[
            ("Action", "CompleteLifecycleAction"),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupName", "web-hosts"),
            ("LifecycleHookName", "drain"),
            ("InstanceId", "i-0a1b2c"),
            ("LifecycleActionResult", result),
        ])
    };
    assert_eq!(sent(&http), vec![want("CONTINUE"), want("ABANDON")]);
}

#[tokio::test]
async fn a_heartbeat_sends_the_hook_and_instance() {
    let http = replay(vec![ok("RecordLifecycleActionHeartbeat", "")]);
    client(&http)
        .record_lifecycle_action_heartbeat("web-hosts", "drain", "i-0a1b2c")
        .await
        .expect("heartbeat");
    assert_eq!(
        sent(&http),
        vec![form(&[
            ("Action", "RecordLifecycleActionHeartbeat"),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupName", "web-hosts"),
            ("LifecycleHookName", "drain"),
            ("InstanceId", "i-0a1b2c"),
        ])]
    );
}

#[tokio::test]
async fn a_lifecycle_action_for_an_instance_not_waiting_is_a_conflict_naming_it() {
    let http = replay(vec![
        refused(
            400,
            "ValidationError",
            "No active Lifecycle Action found with instance ID i-0a1b2c",
        ),
        refused(
            400,
            "ValidationError",
            "No active Lifecycle Action found with instance ID i-0a1b2c",
        ),
    ]);
    let asg = client(&http);
    let err = asg
        .complete_lifecycle_action(
            "web-hosts",
            "drain",
            "i-0a1b2c",
            LifecycleActionResult::Continue,
        )
        .await
        .expect_err("not waiting");
    assert_eq!(err.kind, AwsErrorKind::Conflict);
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "CompleteLifecycleAction: not allowed in the current state: ValidationError: No active Lifecycle Action found with instance ID i-0a1b2c"
    );
    let err = asg
        .record_lifecycle_action_heartbeat("web-hosts", "drain", "i-0a1b2c")
        .await
        .expect_err("not waiting");
    assert_eq!(err.kind, AwsErrorKind::Conflict);
    assert_eq!(err.operation, "RecordLifecycleActionHeartbeat");
}

#[tokio::test]
async fn throttling_and_out_of_range_capacity_keep_their_kinds() {
    let http = replay(vec![
        refused(400, "Throttling", "Rate exceeded"),
        refused(
            400,
            "ValidationError",
            "New SetDesiredCapacity value 11 is above max value 10 for the AutoScalingGroup.",
        ),
    ]);
    let asg = client(&http);
    let err = asg
        .set_desired_capacity("web-hosts", 3)
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, AwsErrorKind::Throttling);
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "SetDesiredCapacity: throttled: Throttling: Rate exceeded"
    );
    let err = asg
        .set_desired_capacity("web-hosts", 11)
        .await
        .expect_err("above max");
    assert_eq!(err.kind, AwsErrorKind::InvalidParameter, "{err}");
    // Cooldowns are capstan's: never honoured by the call.
    let want = |n| {
        form(&[
            ("Action", "SetDesiredCapacity"),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupName", "web-hosts"),
            ("DesiredCapacity", n),
            ("HonorCooldown", "false"),
        ])
    };
    assert_eq!(sent(&http), vec![want("3"), want("11")]);
}

#[tokio::test]
async fn termination_sends_the_decrement_flag_and_unknown_instances_are_not_found() {
    let http = replay(vec![
        ok(
            "TerminateInstanceInAutoScalingGroup",
            "<Activity><ActivityId>a1</ActivityId><StatusCode>InProgress</StatusCode></Activity>",
        ),
        refused(
            400,
            "ValidationError",
            "Instance Id not found - No managed instance found for instance ID: i-gone",
        ),
    ]);
    let asg = client(&http);
    asg.terminate_instance("i-0a1b2c", true)
        .await
        .expect("terminate");
    let err = asg
        .terminate_instance("i-gone", false)
        .await
        .expect_err("unknown instance");
    assert_eq!(err.kind, AwsErrorKind::NotFound);
    assert!(err.to_string().contains("i-gone"), "{err}");
    assert_eq!(
        sent(&http),
        vec![
            form(&[
                ("Action", "TerminateInstanceInAutoScalingGroup"),
                ("Version", "2011-01-01"),
                ("InstanceId", "i-0a1b2c"),
                ("ShouldDecrementDesiredCapacity", "true"),
            ]),
            form(&[
                ("Action", "TerminateInstanceInAutoScalingGroup"),
                ("Version", "2011-01-01"),
                ("InstanceId", "i-gone"),
                ("ShouldDecrementDesiredCapacity", "false"),
            ]),
        ]
    );
}

#[tokio::test]
async fn protecting_more_than_fifty_instances_takes_several_calls() {
    let http = replay(vec![
        ok("SetInstanceProtection", ""),
        ok("SetInstanceProtection", ""),
    ]);
    let ids: Vec<String> = (0..51).map(|i| format!("i-{i:04}")).collect();
    client(&http)
        .set_instance_protection("web-hosts", &ids, true)
        .await
        .expect("protect");
    let sent = sent(&http);
    assert_eq!(sent.len(), 2);
    let members = |req: &BTreeMap<String, String>| -> Vec<String> {
        (1..)
            .map_while(|n| req.get(&format!("InstanceIds.member.{n}")).cloned())
            .collect()
    };
    assert_eq!(members(&sent[0]), ids[..50].to_vec());
    assert_eq!(members(&sent[1]), ids[50..].to_vec());
    for req in &sent {
        assert_eq!(
            req.get("Action").map(String::as_str),
            Some("SetInstanceProtection")
        );
        assert_eq!(
            req.get("AutoScalingGroupName").map(String::as_str),
            Some("web-hosts")
        );
        assert_eq!(
            req.get("ProtectedFromScaleIn").map(String::as_str),
            Some("true")
        );
    }
}

#[tokio::test]
async fn describing_reads_hook_and_warm_pool_states_and_refuses_a_partial_instance() {
    let member = |id: &str, state: &str, health: &str, protected: bool| {
        format!(
            "<member><InstanceId>{id}</InstanceId><InstanceType>t3.micro</InstanceType><AvailabilityZone>us-east-1b</AvailabilityZone><LifecycleState>{state}</LifecycleState><HealthStatus>{health}</HealthStatus><ProtectedFromScaleIn>{protected}</ProtectedFromScaleIn></member>"
        )
    };
    let group = |instances: &str| {
        format!(
            "<AutoScalingGroups><member><AutoScalingGroupName>web-hosts</AutoScalingGroupName><MinSize>1</MinSize><MaxSize>10</MaxSize><DesiredCapacity>4</DesiredCapacity><DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>us-east-1b</member></AvailabilityZones><HealthCheckType>EC2</HealthCheckType><CreatedTime>2026-01-01T00:00:00Z</CreatedTime><Instances>{instances}</Instances></member></AutoScalingGroups>"
        )
    };
    let full = [
        member("i-1", "Pending:Wait", "Healthy", false),
        member("i-2", "Terminating:Wait", "Unhealthy", false),
        member("i-3", "Warmed:Stopped", "Healthy", false),
        member("i-4", "InService", "Healthy", true),
    ]
    .concat();
    let partial = "<member><InstanceId>i-9</InstanceId><AvailabilityZone>us-east-1b</AvailabilityZone><HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>";
    let http = replay(vec![
        ok("DescribeAutoScalingGroups", &group(&full)),
        ok("DescribeAutoScalingGroups", &group(partial)),
    ]);
    let asg = client(&http);
    let g = asg.describe_group("web-hosts").await.expect("describe");
    assert_eq!((g.min, g.max, g.desired), (1, 10, 4));
    let read: Vec<(&str, InstanceLifecycleState, bool, bool)> = g
        .instances
        .iter()
        .map(|i| {
            (
                i.instance_id.as_str(),
                i.lifecycle_state,
                i.healthy,
                i.protected_from_scale_in,
            )
        })
        .collect();
    assert_eq!(
        read,
        vec![
            ("i-1", InstanceLifecycleState::PendingWait, true, false),
            ("i-2", InstanceLifecycleState::TerminatingWait, false, false),
            ("i-3", InstanceLifecycleState::Other, true, false),
            ("i-4", InstanceLifecycleState::InService, true, true),
        ]
    );
    let err = asg
        .describe_group("web-hosts")
        .await
        .expect_err("an instance without a lifecycle state");
    assert_eq!(
        err.to_string(),
        "DescribeAutoScalingGroups: MalformedResponse: group web-hosts: instance i-9 has no LifecycleState"
    );
    let asked = form(&[
        ("Action", "DescribeAutoScalingGroups"),
        ("Version", "2011-01-01"),
        ("AutoScalingGroupNames.member.1", "web-hosts"),
    ]);
    assert_eq!(sent(&http), vec![asked.clone(), asked]);
}
