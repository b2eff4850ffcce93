//! The real binary scaling an ECS service through the AWS SDK (`kind = "ecs"`), on moto
//! behind the testkit's `AwsProxy` (which fakes task protection, missing from moto,
//! and injects throttling). Credentials come from the standard chain: the environment,
//! as in production; the shared files and instance metadata are turned off.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use capstan_testkit::aws_proxy::AwsProxy;
use capstan_testkit::moto::{self, ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use capstan_testkit::moto_ecs::EcsFixture;
use tokio::process::Command;
use tokio::time::Instant;

/// A config scaling the fixture's service on a queue of 45 at 10 per task: 5 tasks.
fn config(fixture: &EcsFixture, endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[store]
kind = "memory"

[sources.depth]
kind = "command"
command = ["echo", "45"]
interval = "1s"

[[services]]
name = "web"
min = 1
max = 10
interval = "1s"
{extra}
target = {{ kind = "ecs", cluster = "{cluster}", service = "{service}", target_group = "{tg}", endpoint_url = "{endpoint}", region = "{REGION}" }}

[[services.policies]]
kind = "target_tracking"
metric = "depth"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 1 }}
"#,
        cluster = fixture.cluster,
        service = fixture.service,
        tg = fixture.target_group,
    )
}

fn capstan(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.arg("run")
        .arg("--config")
        .arg(dir.join("capstan.toml"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .kill_on_drop(true);
    cmd
}

async fn setup(moto: &Moto, extra: &str) -> (EcsFixture, AwsProxy, tempfile::TempDir) {
    let fixture = moto.ecs_service(2, 2);
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("capstan.toml"),
        config(&fixture, &proxy.endpoint_url(), extra),
    )
    .unwrap();
    (fixture, proxy, dir)
}

/// Runs `capstan run` with `args` to its end: its log.
async fn run(dir: &Path, args: &[&str]) -> String {
    let child = capstan(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn once_scales_the_ecs_service_through_the_sdk() {
    let moto = moto::moto();
    let (fixture, proxy, dir) = setup(&moto, "").await;
    let log = run(dir.path(), &["--once"]).await;
    assert!(log.contains("web: scale out 2 → 5"), "{log}");
    assert_eq!(fixture.desired_count(&moto), 5, "{log}");
    assert_eq!(proxy.calls("UpdateService"), 1, "{log}");
    // It observed through the SDK: the service, its tasks and their protection.
    assert!(proxy.calls("DescribeServices") >= 1);
    assert!(proxy.calls("DescribeTasks") >= 1);
    assert!(proxy.calls("GetTaskProtection") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_reads_aws_and_changes_nothing() {
    let moto = moto::moto();
    let (fixture, proxy, dir) = setup(&moto, "").await;
    let log = run(dir.path(), &["--once", "--dry-run"]).await;
    assert!(log.contains("web: scale out 2 → 5"), "{log}");
    assert_eq!(fixture.desired_count(&moto), 2, "{log}");
    assert_eq!(proxy.calls("UpdateService"), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_scale_out_is_kept_and_retried_until_it_lands() {
    let moto = moto::moto();
    let (fixture, proxy, dir) = setup(&moto, "").await;
    proxy.fail_next("UpdateService", 2, 400, "ThrottlingException");
    let mut child = capstan(dir.path(), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fixture.desired_count(&moto) != 5 {
        assert!(
            Instant::now() < deadline,
            "desired {} after 30 s; UpdateService called {} times",
            fixture.desired_count(&moto),
            proxy.calls("UpdateService")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two throttled attempts, then the one that landed; nothing dropped or doubled.
    assert_eq!(proxy.calls("UpdateService"), 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut log = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(
        log.contains("UpdateService: throttled"),
        "the throttling is logged with the operation:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_service_is_a_clear_error_naming_it() {
    let moto = moto::moto();
    let (mut fixture, _proxy, dir) = setup(&moto, "").await;
    fixture.service = format!("{}-missing", fixture.service);
    let endpoint = moto.endpoint_url();
    std::fs::write(
        dir.path().join("capstan.toml"),
        config(&fixture, &endpoint, ""),
    )
    .unwrap();
    let log = run(dir.path(), &["--once"]).await;
    assert!(
        log.contains(&format!(
            "DescribeServices: not found: service {} in cluster {}",
            fixture.service, fixture.cluster
        )),
        "{log}"
    );
}
