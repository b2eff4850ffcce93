//! `capstan run` end to end with the local-process target: the real binary, a `command`
//! source reading a number from a file the test writes, and worker processes that record
//! their own lifecycle. The number of workers follows the metric up and down, the victims
//! get SIGTERM, and SIGTERM to capstan stops every worker before it exits 0.
//!
//! Real processes on real time: every wait polls with a bounded deadline.

// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How long any one expectation may take to come true.
const DEADLINE: Duration = Duration::from_secs(30);

/// Records `started <id> <pid>` once its TERM trap is in place, and `term <id>` when it
/// gets SIGTERM, then exits.
const WORKER: &str = r#"#!/bin/sh
trap 'echo "term $CAPSTAN_TASK_ID" >> "$DIR/events"; exit 0' TERM
echo "started $CAPSTAN_TASK_ID $$" >> "$DIR/events"
while :; do sleep 0.1; done
"#;

fn config(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"
[log]
format = "text"
level = "info"

[server]
listen = "127.0.0.1:0"

[sources.depth]
kind = "command"
command = ["cat", "{dir}/depth"]
interval = "100ms"
timeout = "2s"
max_age = "5s"

[[services]]
name = "worker"
min = 1
max = 5
interval = "100ms"
target = {{ kind = "process", command = ["sh", "{dir}/worker.sh"], env = {{ DIR = "{dir}" }}, stop_timeout = "10s", restart_delay = "100ms" }}
cooldown = {{ out = "200ms", in = "200ms" }}
scale_in = {{ stabilization = "300ms" }}
fallback = "hold"

[[services.policies]]
kind = "target_tracking"
name = "depth"
metric = "depth"
mode = "total"
target = 10
datapoints = {{ out = 2, in = 3 }}
"#
    )
}

/// One worker as its own records tell.
#[derive(Debug, Clone)]
struct Worker {
    pid: u32,
    termed: bool,
}

/// A running `capstan run`; SIGTERMed (then killed) on drop if a test fails midway.
struct Capstan {
    child: Child,
    dir: PathBuf,
}

impl Capstan {
    fn start(dir: &Path) -> Self {
        let config_path = dir.join("capstan.toml");
        fs::write(&config_path, config(dir)).unwrap();
        let log = fs::File::create(dir.join("capstan.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            dir: dir.to_path_buf(),
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

    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "capstan did not exit\n--- capstan log ---\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Capstan {
    fn drop(&mut self) {
        // Only when a test failed midway: let capstan stop its workers (bounded by their
        // stop_timeout) rather than leave them behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(
                Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)),
                Signal::SIGTERM,
            );
            let _ = self.child.wait();
        }
    }
}

fn set_depth(dir: &Path, depth: u32) {
    // Write then rename, so the source never reads a half-written file.
    let tmp = dir.join("depth.tmp");
    fs::write(&tmp, format!("{depth}\n")).unwrap();
    fs::rename(&tmp, dir.join("depth")).unwrap();
}

fn workers(dir: &Path) -> BTreeMap<String, Worker> {
    let events = fs::read_to_string(dir.join("events")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in events.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["started", id, pid] => {
                out.insert(
                    (*id).to_owned(),
                    Worker {
                        pid: pid.parse().unwrap(),
                        termed: false,
                    },
                );
            }
            ["term", id] => {
                if let Some(w) = out.get_mut(*id) {
                    w.termed = true;
                }
            }
            _ => {}
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), None).is_ok()
}

/// Workers that started, have not been told to stop, and whose process exists.
fn live(dir: &Path) -> Vec<String> {
    workers(dir)
        .into_iter()
        .filter(|(_, w)| !w.termed && alive(w.pid))
        .map(|(id, _)| id)
        .collect()
}

async fn until_live(capstan: &Capstan, count: usize) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now_live = live(&capstan.dir);
        if now_live.len() == count {
            return now_live;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} live workers, have {now_live:?}\n--- events ---\n{}\n--- capstan log ---\n{}",
            fs::read_to_string(capstan.dir.join("events")).unwrap_or_default(),
            capstan.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn workers_follow_the_metric_and_capstan_stops_them_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("worker.sh"), WORKER).unwrap();
    set_depth(dir, 0);
    let mut capstan = Capstan::start(dir);

    // The minimum first.
    assert_eq!(until_live(&capstan, 1).await, vec!["worker-1"]);

    // 40 queued, 10 per worker: 4 workers.
    set_depth(dir, 40);
    let four = until_live(&capstan, 4).await;
    assert_eq!(four.len(), 4);
    assert!(four.contains(&"worker-1".to_owned()));

    // 5 queued: back to 1. The newest go; each victim got SIGTERM.
    set_depth(dir, 5);
    assert_eq!(until_live(&capstan, 1).await, vec!["worker-1"]);
    let all = workers(dir);
    for id in four.iter().filter(|id| *id != "worker-1") {
        assert!(all[id].termed, "{id} got SIGTERM: {all:?}");
        // The victim's process is gone (reaped), not just signalled.
        let deadline = Instant::now() + DEADLINE;
        while alive(all[id].pid) {
            assert!(Instant::now() < deadline, "{id} still running");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(!all["worker-1"].termed);
    assert!(
        capstan.log().contains("worker: scale in 4 → "),
        "the scale-in is logged with its reason:\n{}",
        capstan.log()
    );

    // SIGTERM to capstan: every worker is stopped and reaped, then capstan exits 0.
    capstan.signal(Signal::SIGTERM);
    let status = capstan.wait_exit().await;
    assert!(status.success(), "exit status {status}\n{}", capstan.log());
    let all = workers(dir);
    assert!(all["worker-1"].termed, "the last worker got SIGTERM too");
    let running: Vec<&String> = all
        .iter()
        .filter(|(_, w)| alive(w.pid))
        .map(|(id, _)| id)
        .collect();
    assert!(running.is_empty(), "workers left behind: {running:?}");
}
