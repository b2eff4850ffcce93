//! capstan's daemon run in-process on a config and a target factory (the world model
//! behind its services), with the calls the web tests make to it: a GET that waits for
//! the listener, a push to a push source, an orderly stop. Included with
//! `#[path = "support/in_process.rs"] mod in_process;`.

use std::time::Duration;

use capstan::config::Config;
use capstan::daemon::services::TargetFactory;
use capstan::daemon::{self, RunOptions};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A running daemon.
pub struct Daemon {
    /// Its base URL.
    pub base: String,
    /// A client for calls of the test's own.
    pub http: reqwest::Client,
    token: Option<&'static str>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

impl Daemon {
    /// Runs `config` (listening on `port`) with `targets`; requests carry `token`.
    pub fn start(
        config: Config,
        port: u16,
        targets: TargetFactory,
        token: Option<&'static str>,
    ) -> Self {
        let cancel = CancellationToken::new();
        let options = RunOptions {
            targets: Some(targets),
            ..RunOptions::new(config)
        };
        let task = tokio::spawn(daemon::run_with(options, cancel.clone()));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            token,
            cancel,
            task,
        }
    }

    fn authorized(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// `path` (with the token), once the listener answers (at most 20 s).
    pub async fn get(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let request = self.authorized(self.http.get(format!("{}{path}", self.base)));
            match request.send().await {
                Ok(r) if r.status().is_success() => return r.json().await.unwrap(),
                Ok(r) => {
                    let status = r.status();
                    assert!(
                        Instant::now() < deadline,
                        "{path}: {status} {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                Err(e) => assert!(Instant::now() < deadline, "{path}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pushes `value` to the push source `source` (at most 20 s for the listener).
    pub async fn push(&self, source: &str, value: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let request = self.authorized(
                self.http
                    .post(format!("{}/api/v1/metrics/{source}", self.base))
                    .json(&json!({ "value": value })),
            );
            if request.send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "capstan does not take the push");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it and waits for its orderly end.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}
