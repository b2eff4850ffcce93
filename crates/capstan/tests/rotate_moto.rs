//! `capstan cluster rotate` end to end: the real binary (daemon and CLI) on moto. An ECS
//! cluster with group blue of 1 empty host and group green, the daemon scaling green
//! (`kind = "ec2_cluster"`); the CLI starts the rotation (`--detach`), green's target is
//! held while it runs (its refusal names the rotation), the test plays the ECS agent
//! for green's new host, and the same command run again follows the rotation to its
//! end: blue's host drained and terminated, blue at 0, exit 0. A cluster without an
//! `ec2_cluster` target is refused with 400 naming it.
//!
//! moto facts this lives with: instances appear at once, every one `InService`; no ECS
//! agent registers them (the test does).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::ec2_cluster_moto::Aws;
use crate::support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use capstan_aws_api::AutoScaling;
use capstan_testkit::moto::{self, REGION};
use capstan_testkit::servers::free_port;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{client, start};
use tokio::time::Instant;

const ZONE: &str = "us-east-1a";

fn config(port: u16, cluster: &str, group: &str, endpoint: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
kind = "memory"

[sources.load]
kind = "push"
ttl = "1h"
interval = "100ms"
value = "any"

[[services]]
name = "green"
min = 1
max = 2
interval = "200ms"
cooldown = {{ out = "0s", in = "0s" }}
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

/// Runs `capstan ARGS` (the CLI), at most 60 s.
async fn cli(args: &[&str], dir: &Path) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .env_remove("CAPSTAN_TOKEN")
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the CLI ends within 60 s")
        .unwrap()
}

/// Waits until the latest evaluation of service `green` failed with an error holding
/// `part`: the error.
async fn until_error(http: &reqwest::Client, base: &str, part: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    loop {
        if let Ok(answer) = http
            .get(format!("{base}/api/v1/services/green"))
            .send()
            .await
        {
            last = answer.json().await.unwrap_or_default();
            if let Some(error) = last["last_error"].as_str()
                && error.contains(part)
            {
                return error.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no error holding {part:?} after 30 s; the service: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/api/v1/rotations"))
        .send()
        .await
        .map_or(true, |a| a.status() != StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "capstan never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rotates_a_cluster_from_one_group_to_another() {
    let moto = moto::moto();
    let cluster = moto.name("rot");
    moto.ecs("CreateCluster", &json!({ "clusterName": cluster }));
    let blue = moto.autoscaling_group("blue", ZONE, 0, 2, 1);
    let green = moto.autoscaling_group("green", ZONE, 0, 2, 0);
    let aws = Aws::new(&moto, &cluster, &blue);
    assert_eq!(aws.register_new_instances(&moto).await.len(), 1);
    let blue_host = aws.asg.describe_group(&blue).await.unwrap().instances[0]
        .instance_id
        .clone();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("capstan.toml"),
        config(port, &cluster, &green, &moto.endpoint_url()),
    )
    .unwrap();
    let mut capstan = start(dir.path());
    let http = client();
    until_up(&http, &base).await;

    // A cluster without an ec2_cluster target: 400 naming it.
    let answer = http
        .post(format!("{base}/api/v1/rotations"))
        .json(&json!({"cluster": "nope", "from": blue, "to": green}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cluster nope has no ec2_cluster target"),
        "{body}"
    );

    let rotate = [
        "cluster",
        "rotate",
        "--cluster",
        &cluster,
        "--from",
        &blue,
        "--to",
        &green,
        "--url",
        &base,
    ];
    let mut detached = rotate.to_vec();
    detached.extend(["--detach", "--json"]);
    let out = cli(&detached, dir.path()).await;
    assert!(out.status.success(), "{out:?}");
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(started["status"], "running", "{started}");

    // Asked again: the same rotation.
    let again = cli(&detached, dir.path()).await;
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["id"], id.as_str());

    // Green's own target is held while the rotation runs.
    let pushed = http
        .post(format!("{base}/api/v1/metrics/load"))
        .json(&json!({ "value": 15.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::OK);
    let error = until_error(&http, &base, "held while rotation").await;
    assert!(error.contains(&id), "{error}");

    // The ECS agent of green's new host registers it; the rotation goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while aws.register(&moto, &green).await.is_empty() && aws.hosts().await.len() < 2 {
        assert!(Instant::now() < deadline, "green never got a host");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same command again follows it to its end.
    let out = cli(&rotate, dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("rotation {id}"))
            && stdout.contains("done (1 removed, 0 skipped of 1)"),
        "{stdout}"
    );
    let blue_now = aws.asg.describe_group(&blue).await.unwrap();
    assert_eq!(blue_now.desired, 0);
    assert!(blue_now.instances.is_empty(), "{blue_now:?}");

    let shown: Value = http
        .get(format!("{base}/api/v1/rotations/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["removed"], json!([blue_host]), "{shown}");
    assert_eq!(shown["phase"], "done");
    let listed = cli(&["cluster", "rotations", "--url", &base], dir.path()).await;
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));

    support::sigkill(&mut capstan).await;
}
