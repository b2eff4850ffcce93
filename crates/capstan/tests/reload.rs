//! Live reload of the real `capstan run` binary with local-process targets: a valid
//! edit of the file is applied without restarting the other loops (their workers keep
//! running), an invalid edit is rejected with its errors while the last good
//! configuration keeps running, and SIGHUP and `POST /api/v1/reload` reload too.
//!
//! Real processes on real time: every wait polls with a bounded deadline.

// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capstan_testkit::servers::free_port;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How long any one expectation may take to come true.
const DEADLINE: Duration = Duration::from_secs(30);

/// Records `started <id> <pid>` and `term <id>`.
const WORKER: &str = r#"#!/bin/sh
trap 'echo "term $CAPSTAN_TASK_ID" >> "$DIR/events"; exit 0' TERM
echo "started $CAPSTAN_TASK_ID $$" >> "$DIR/events"
while :; do sleep 0.1; done
"#;

/// The configuration: service `worker` with `min`, and service `second` if asked.
fn config(dir: &Path, port: u16, min: u32, second: bool) -> String {
    let d = dir.display();
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[sources.depth]
kind = "command"
command = ["echo", "0"]
interval = "200ms"

[[services]]
name = "worker"
min = {min}
max = 5
interval = "100ms"
target = {{ kind = "process", command = ["sh", "{d}/worker.sh"], env = {{ DIR = "{d}" }}, stop_timeout = "5s" }}

[[services.policies]]
kind = "target_tracking"
metric = "depth"
mode = "total"
target = 10
"#
    );
    if second {
        text.push_str(&format!(
            r#"
[[services]]
name = "second"
min = 1
max = 2
interval = "100ms"
target = {{ kind = "process", command = ["sh", "{d}/worker.sh"], env = {{ DIR = "{d}" }}, stop_timeout = "5s" }}

[[services.policies]]
kind = "target_tracking"
metric = "depth"
mode = "total"
target = 10
"#
        ));
    }
    text
}

/// Writes `text` to `path` at once (write, then rename), as editors and config
/// management do.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

struct Capstan {
    child: Child,
    dir: PathBuf,
    base: String,
    client: reqwest::Client,
}

impl Capstan {
    fn start(dir: &Path, port: u16) -> Self {
        let log = fs::File::create(dir.join("capstan.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .arg("run")
            .arg("--config")
            .arg(dir.join("capstan.toml"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            dir: dir.to_path_buf(),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("capstan.log")).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill(
            Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            signal,
        )
        .unwrap();
    }

    /// Live workers by task id (started, not told to stop).
    fn live(&self) -> BTreeMap<String, u32> {
        let events = fs::read_to_string(self.dir.join("events")).unwrap_or_default();
        let mut out = BTreeMap::new();
        for line in events.lines() {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["started", id, pid] => {
                    out.insert((*id).to_owned(), pid.parse().unwrap());
                }
                ["term", id] => {
                    out.remove(*id);
                }
                _ => {}
            }
        }
        out
    }

    async fn until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nworkers: {:?}\n--- capstan log ---\n{}",
                self.live(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metric(&self, line_start: &str) -> Option<f64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Capstan {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(
                Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)),
                Signal::SIGTERM,
            );
            let _ = self.child.wait();
        }
    }
}

fn count(live: &BTreeMap<String, u32>, service: &str) -> usize {
    live.keys()
        .filter(|id| id.starts_with(&format!("{service}-")))
        .count()
}

#[tokio::test]
async fn valid_edits_apply_in_place_and_invalid_ones_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("worker.sh"), WORKER).unwrap();
    let port = free_port();
    let path = dir.join("capstan.toml");
    write_config(&path, &config(dir, port, 1, false));
    let mut capstan = Capstan::start(dir, port);
    capstan
        .until("the first worker", |c| count(&c.live(), "worker") == 1)
        .await;
    let first = capstan.live();

    // A valid edit: a higher minimum (in place) and a new service.
    write_config(&path, &config(dir, port, 2, true));
    capstan
        .until("two workers and the new service", |c| {
            let live = c.live();
            count(&live, "worker") == 2 && count(&live, "second") == 1
        })
        .await;
    let live = capstan.live();
    for (id, pid) in &first {
        assert_eq!(
            live.get(id),
            Some(pid),
            "{id} kept running: its loop was not restarted"
        );
    }
    assert!(
        capstan.log().contains("configuration reloaded"),
        "{}",
        capstan.log()
    );
    assert_eq!(
        capstan
            .metric("capstan_config_reloads_total{result=\"applied\"}")
            .await,
        Some(1.0)
    );

    // An invalid edit: rejected with its error, the last good configuration runs on.
    let good = config(dir, port, 2, true);
    write_config(&path, &good.replace("min = 2", "min = \"two\""));
    capstan
        .until("the rejected reload", |c| {
            c.log().contains("configuration reload rejected")
        })
        .await;
    let log = capstan.log();
    assert!(
        log.contains("services[0].min"),
        "the error names the key:\n{log}"
    );
    assert_eq!(
        capstan
            .metric("capstan_config_reloads_total{result=\"rejected\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        capstan
            .metric("capstan_config_last_reload_successful")
            .await,
        Some(0.0)
    );
    for probe in ["healthz", "readyz"] {
        let health = capstan
            .client
            .get(format!("{}/{probe}", capstan.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "/{probe} stays green");
    }
    assert_eq!(capstan.live(), live, "nothing was started or stopped");

    // The API reloads the good file again: the second service goes away.
    write_config(&path, &config(dir, port, 2, false));
    let response = capstan
        .client
        .post(format!("{}/api/v1/reload", capstan.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    // The file watcher may have applied the change first; then the API's reload finds
    // nothing left to change.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloaded"], true, "{body}");
    capstan
        .until("the second service stopped", |c| {
            count(&c.live(), "second") == 0
        })
        .await;
    assert_eq!(count(&capstan.live(), "worker"), 2);

    // SIGHUP: a minimum of 3.
    write_config(&path, &config(dir, port, 3, false));
    capstan.signal(Signal::SIGHUP);
    capstan
        .until("three workers", |c| count(&c.live(), "worker") == 3)
        .await;

    capstan.signal(Signal::SIGTERM);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = capstan.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "capstan did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}\n{}", capstan.log());
    assert!(capstan.live().is_empty(), "every worker stopped");
}
