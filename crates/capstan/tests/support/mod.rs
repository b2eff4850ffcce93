//! Helpers shared by the tests that run the real `capstan` binary against moto: start it
//! with moto's credentials and nothing from the machine's AWS set-up, and wait until
//! its work registry knows a service's tasks.

// Each test file uses its own part of this module.
#![allow(dead_code)]

pub mod recipe;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use capstan_testkit::moto::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use reqwest::StatusCode;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Starts `capstan run --config DIR/capstan.toml` with moto's credentials, and nothing
/// read from the machine's AWS config files or instance metadata.
///
/// # Panics
/// If the binary does not start.
pub fn start(dir: &Path) -> Child {
    moto_credentials(&mut Command::new(env!("CARGO_BIN_EXE_capstan")), dir)
        .arg("run")
        .arg("--config")
        .arg(dir.join("capstan.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("capstan starts")
}

/// Gives `command` moto's credentials from the environment, as in production, and
/// keeps it from reading anything of the machine's AWS set-up (the shared files, taken
/// to be under `dir` where there are none, a profile, instance metadata).
pub fn moto_credentials<'a>(command: &'a mut Command, dir: &Path) -> &'a mut Command {
    command
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
}

/// An HTTP client for capstan's API: every request times out after 10 s (a request
/// that hangs fails the test with a message instead of running into the harness's
/// timeout), and no connection is kept idle, so none made to a killed capstan is reused
/// for its successor on the same port.
///
/// # Panics
/// If the client cannot be built.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

/// Kills `child` with SIGKILL (no orderly shutdown) and reaps it.
pub async fn sigkill(child: &mut Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
}

/// The URL of `task`'s registry routes in service `api` (its short id: the ARN's last
/// part).
pub fn task_url(base: &str, task: &str) -> String {
    let short = task.rsplit('/').next().unwrap_or(task);
    format!("{base}/api/v1/services/api/tasks/{short}")
}

/// Waits until every task in `tasks` is known to the registry of service `api`.
///
/// # Panics
/// After 30 s.
pub async fn ready(http: &reqwest::Client, base: &str, tasks: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_error = None;
    loop {
        let mut known = 0;
        for task in tasks {
            match http
                .get(format!("{}/work", task_url(base, task)))
                .send()
                .await
            {
                Ok(r) => known += usize::from(r.status() == StatusCode::OK),
                // Not listening yet (refused), or too slow under load: asked again.
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        if known == tasks.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "capstan never became ready (last request error: {last_error:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
