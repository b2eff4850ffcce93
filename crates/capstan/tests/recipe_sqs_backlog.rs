//! The `sqs-backlog` recipe end to end (examples/sqs-backlog/): the shipped
//! `capstan.toml`, 60 times faster, run in-process on the world model's ECS service
//! `jobs/worker`, its `sqs` source reading a queue on moto, its `push` source fed by the
//! recipe's workers (`capstan-example-sqs`), one worker per RUNNING task of the model.
//! The recipe's producer sends 50 jobs a (sped-up) minute of 5 s each, then 10 s each.
//!
//! Checked: the backlog builds and capstan scales out; the target in the decisions'
//! reasons is acceptable latency ÷ the pushed processing time (60 s ÷ 5 s = 12 per task,
//! then 60 s ÷ 10 s = 6 once the jobs get longer); the count stays within 1..10; once
//! the producer stops the queue drains and the service returns to 1; every job sent is
//! processed at least once.
//!
//! The daemon's `sqs` source takes its credentials from the SDK's standard chain, i.e.
//! the process environment, which a test cannot set for itself. So the test runs its
//! body in a child process of this test binary (the `#[ignore]`d test below) started
//! with moto's credentials in its environment and nothing from the machine's AWS set-up.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::daemon::services::world_targets_as_configured;
use capstan::daemon::{self, RunOptions};
use capstan_aws_api::ecs::{DesiredStatus, TaskStatus};
use capstan_core::clock::SystemClock;
use capstan_example_sqs::aws_sdk_sqs;
use capstan_example_sqs::aws_sdk_sqs::types::QueueAttributeName;
use capstan_example_sqs::{ProcessingTime, ProducerSettings, Push, WorkerSettings};
use capstan_testkit::moto::{self, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use capstan_testkit::servers::free_port;
use capstan_world::{ServiceCounts, ServiceSpec, World, WorldConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::recipe::Recipe;

/// The recipe runs this many times faster: a minute in a second.
const SPEEDUP: u32 = 60;
const CLUSTER: &str = "jobs";
const SERVICE: &str = "worker";
const TOKEN: &str = "recipe-sqs-backlog-token";
/// Set in the child's environment: the body runs only there.
const CHILD: &str = "CAPSTAN_TEST_RECIPE_SQS_BACKLOG_CHILD";
const CHILD_TEST: &str = "recipe_sqs_backlog::body_in_a_child_process_with_moto_credentials";

#[tokio::test]
async fn the_shipped_recipe_scales_workers_on_the_backlog_and_the_pushed_processing_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    crate::support::moto_credentials(&mut child, dir.path())
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .env_remove("AWS_REGION")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(100), child.output())
        .await
        .expect("the child test ends within 100 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the recipe's test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}\n{stderr}"
    );
    println!("{stderr}");
}

/// The test's body; run by the test above in a child process (alone it does nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the body of the_shipped_recipe_scales_workers_..., run in a child process"]
async fn body_in_a_child_process_with_moto_credentials() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let moto = moto::moto();
    let endpoint = moto.endpoint_url();
    let sdk = capstan_aws_sdk::static_config(&endpoint, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = moto.name("jobs");
    let queue_url = sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();

    // The ECS service as the recipe's README describes it: Fargate tasks that take a
    // minute to start and get 30 s between SIGTERM and SIGKILL (sped up).
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: SERVICE.into(),
            desired: 1,
            startup: Duration::from_secs(60) / SPEEDUP,
            stop_timeout: Duration::from_secs(30) / SPEEDUP,
            deprovisioning: Duration::from_millis(100),
            ..ServiceSpec::default()
        })
        .unwrap();

    // The shipped config, sped up; the test's listener, token, store and queue.
    let port = free_port();
    let mut recipe = Recipe::load("sqs-backlog", "capstan.toml").accelerate(SPEEDUP);
    recipe.take("server.token_file");
    let config = recipe
        .set("server.listen", format!("127.0.0.1:{port}"))
        .set("server.token", "${CAPSTAN_TOKEN}")
        .set("store.kind", "memory")
        .set("sources.backlog.queue", queue.clone())
        .set("sources.backlog.region", REGION)
        .set("sources.backlog.endpoint_url", endpoint.clone())
        // Sped up, the read's timeout would be 166 ms; moto on a busy test machine can
        // take longer than that (SQS answers in tens of ms, against 10 s).
        .set("sources.backlog.timeout", "2s")
        .compile(&[("CAPSTAN_TOKEN", TOKEN)]);
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(
        RunOptions {
            targets: Some(world_targets_as_configured(
                world.clone(),
                Arc::new(SystemClock),
            )),
            ..RunOptions::new(config)
        },
        cancel.clone(),
    ));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Counts stay within the recipe's bounds the whole time.
    until("the first task running", Duration::from_secs(20), || {
        counts(&world).running == 1
    })
    .await;
    let bounds = Arc::new(Mutex::new(Bounds::default()));
    let sampler = tokio::spawn(sample(world.clone(), Arc::clone(&bounds)));

    // One worker per RUNNING task, stopped when the model stops its task.
    let processed: Arc<Mutex<BTreeMap<u64, u32>>> = Arc::default();
    let supervisor_stop = CancellationToken::new();
    let supervisor = tokio::spawn(supervise(
        world.clone(),
        sqs.clone(),
        WorkerSettings {
            queue_url: queue_url.clone(),
            push: Some(Push {
                url: format!("{base}/api/v1/metrics/proc_time"),
                token: Some(TOKEN.into()),
            }),
            window: 10,
            visibility_timeout: Duration::from_secs(10),
            // Long polling: an idle worker waits in moto rather than asking it again.
            wait: Duration::from_secs(1),
            speedup: SPEEDUP,
        },
        Arc::clone(&processed),
        supervisor_stop.clone(),
    ));

    // The producer: 50 jobs a (sped-up) minute, 5 s each.
    let processing = ProcessingTime::new(5000);
    let producer_stop = CancellationToken::new();
    let producer = {
        let sqs = sqs.clone();
        let settings = ProducerSettings {
            queue_url: queue_url.clone(),
            per_minute: 50.0,
            processing: processing.clone(),
            jitter: 0.0,
            seed: 3,
            speedup: SPEEDUP,
        };
        let stop = producer_stop.clone();
        tokio::spawn(async move { capstan_example_sqs::produce(&sqs, &settings, &stop).await })
    };

    // One task does 12 jobs a minute of the 50 sent: the backlog builds, capstan scales
    // out on a target of 60 s ÷ 5 s = 12 per task (the measured sleep is a little
    // longer than 5 s ÷ 60, so a little under 12).
    let mut seen = Targets::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        seen.read(&http, &base).await;
        if counts(&world).desired >= 3 && !seen.all.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scale-out on the backlog: {:?}, targets {:?}",
            counts(&world),
            seen.all
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = seen.all[0];
    assert!(
        (9.0..=12.05).contains(&first),
        "the first target is 60 s ÷ about 5 s: {first} ({:?})",
        seen.all
    );
    let detail = service(&http, &base).await;
    assert_eq!(
        detail["last_change"]["action"]["action"], "scale_out",
        "{detail}"
    );

    // The jobs get twice as long: the workers push about 10 s ÷ 60, and once the target
    // is refreshed (every 10 min ÷ 60) it is 60 s ÷ 10 s = 6 per task.
    processing.set(10_000);
    let switched = seen.all.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        seen.read(&http, &base).await;
        if seen.all[switched..].iter().any(|t| (4.5..=6.5).contains(t)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target never followed the longer processing time: {:?}",
            &seen.all[switched..]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peak_before_stop = bounds.lock().unwrap().max_desired;

    // The producer stops; the queue drains and the service goes back to 1 task.
    producer_stop.cancel();
    let sent = producer.await.unwrap().unwrap();
    assert!(sent > 100, "the producer sent {sent} jobs");
    until("every job sent processed", Duration::from_secs(40), || {
        processed.lock().unwrap().len() as u64 == sent
    })
    .await;
    until("back to 1 task", Duration::from_secs(30), || {
        let c = counts(&world);
        c.desired == 1 && c.running == 1 && c.pending == 0
    })
    .await;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attribute = |name: QueueAttributeName| -> u64 {
        attributes.attributes().unwrap()[&name].parse().unwrap()
    };
    assert_eq!(
        attribute(QueueAttributeName::ApproximateNumberOfMessages)
            + attribute(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        0,
        "the queue is empty"
    );

    // No job lost: every id sent was processed, at least once; none made up.
    let processed = processed.lock().unwrap().clone();
    assert_eq!(
        processed.keys().copied().collect::<Vec<_>>(),
        (0..sent).collect::<Vec<_>>(),
        "every job sent, and only those, processed"
    );
    let repeats: u32 = processed.values().map(|n| n - 1).sum();

    supervisor_stop.cancel();
    let stats = supervisor.await.unwrap();
    sampler.abort();
    cancel.cancel();
    daemon.await.unwrap().unwrap();

    let bounds = bounds.lock().unwrap().clone();
    assert!(
        bounds.min_desired >= 1 && bounds.max_desired <= 10 && bounds.max_running <= 10,
        "the count left 1..10: {bounds:?}"
    );
    assert!(bounds.max_desired >= 3, "{bounds:?}");
    assert!(
        stats.workers >= 3,
        "a worker ran on each task: {} workers",
        stats.workers
    );
    assert!(stats.pushes > 0, "the workers pushed their processing time");
    eprintln!(
        "sqs-backlog recipe: {sent} jobs sent, all processed ({repeats} twice or more); \
         {} workers, {} pushes ({} failed); targets {:?}; desired peaked at {} \
         ({peak_before_stop} before the producer stopped)",
        stats.workers,
        stats.pushes,
        stats.push_failures,
        seen.distinct(),
        bounds.max_desired
    );
}

fn counts(world: &World) -> ServiceCounts {
    world.service_counts(CLUSTER, SERVICE).unwrap()
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The extremes of the service's counts.
#[derive(Debug, Clone, Default)]
struct Bounds {
    min_desired: u32,
    max_desired: u32,
    max_running: u32,
}

async fn sample(world: World, bounds: Arc<Mutex<Bounds>>) {
    let first = counts(&world);
    *bounds.lock().unwrap() = Bounds {
        min_desired: first.desired,
        max_desired: first.desired,
        max_running: first.running,
    };
    loop {
        world.advance();
        let c = counts(&world);
        {
            let mut b = bounds.lock().unwrap();
            b.min_desired = b.min_desired.min(c.desired);
            b.max_desired = b.max_desired.max(c.desired);
            b.max_running = b.max_running.max(c.running);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the workers did, together.
#[derive(Debug, Default)]
struct WorkStats {
    workers: usize,
    pushes: u64,
    push_failures: u64,
}

/// Starts a worker for each RUNNING task of the model and stops it (it finishes its job,
/// as on SIGTERM) once the model stops that task; at `stop`, stops every worker.
async fn supervise(
    world: World,
    sqs: aws_sdk_sqs::Client,
    settings: WorkerSettings,
    processed: Arc<Mutex<BTreeMap<u64, u32>>>,
    stop: CancellationToken,
) -> WorkStats {
    type Worker = (
        CancellationToken,
        tokio::task::JoinHandle<
            Result<capstan_example_sqs::WorkerStats, capstan_example_sqs::Error>,
        >,
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut live: HashMap<String, Worker> = HashMap::new();
    let mut ended = Vec::new();
    let mut workers = 0;
    while !stop.is_cancelled() {
        let tasks = world.tasks(CLUSTER, SERVICE);
        for task in &tasks {
            let runs =
                task.status == TaskStatus::Running && task.desired_status == DesiredStatus::Running;
            if runs && !live.contains_key(&task.arn) {
                let cancel = CancellationToken::new();
                let handle = {
                    let (sqs, http, settings) = (sqs.clone(), http.clone(), settings.clone());
                    let (cancel, processed) = (cancel.clone(), Arc::clone(&processed));
                    tokio::spawn(async move {
                        capstan_example_sqs::work(&sqs, &http, &settings, &cancel, |job| {
                            *processed.lock().unwrap().entry(job.id).or_default() += 1;
                        })
                        .await
                    })
                };
                workers += 1;
                live.insert(task.arn.clone(), (cancel, handle));
            }
        }
        // A task no longer RUNNING (or told to stop): its worker stops.
        let gone: Vec<String> = live
            .keys()
            .filter(|arn| {
                !tasks.iter().any(|t| {
                    &t.arn == *arn
                        && t.status == TaskStatus::Running
                        && t.desired_status == DesiredStatus::Running
                })
            })
            .cloned()
            .collect();
        for arn in gone {
            let (cancel, handle) = live.remove(&arn).unwrap();
            cancel.cancel();
            ended.push(handle);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (cancel, handle) in live.into_values() {
        cancel.cancel();
        ended.push(handle);
    }
    let mut stats = WorkStats {
        workers,
        ..WorkStats::default()
    };
    for handle in ended {
        let s = handle.await.unwrap().unwrap();
        stats.pushes += s.processed - s.push_failures.min(s.processed);
        stats.push_failures += s.push_failures;
    }
    stats
}

/// The service's detail (`GET /api/v1/services/worker`).
async fn service(http: &reqwest::Client, base: &str) -> serde_json::Value {
    http.get(format!("{base}/api/v1/services/{SERVICE}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The dynamic targets the decisions' reasons name, in the order they were refreshed.
#[derive(Debug, Default)]
struct Targets {
    /// Every refresh seen (`target N per task = ..., refreshed`), oldest first.
    all: Vec<f64>,
    /// The decision ids already read.
    read_ids: std::collections::BTreeSet<String>,
}

impl Targets {
    /// Reads the newest decisions and keeps the targets of those not read yet.
    async fn read(&mut self, http: &reqwest::Client, base: &str) {
        let detail = service(http, base).await;
        let Some(decisions) = detail["decisions"].as_array() else {
            return;
        };
        // Newest first in the answer: oldest first here.
        for decision in decisions.iter().rev() {
            let id = decision["id"].to_string();
            if !self.read_ids.insert(id) {
                continue;
            }
            self.all.extend(refreshed_targets(&decision.to_string()));
        }
    }

    fn distinct(&self) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::new();
        for t in &self.all {
            if out.last() != Some(t) {
                out.push(*t);
            }
        }
        out
    }
}

/// The N of each `target N per task = ..., refreshed` in `text`.
fn refreshed_targets(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("target ") {
        rest = &rest[at + "target ".len()..];
        let Some((number, after)) = rest.split_once(" per task = ") else {
            continue;
        };
        let refreshed = after
            .split(';')
            .next()
            .is_some_and(|r| r.contains("refreshed"));
        if let (Ok(n), true) = (number.parse::<f64>(), refreshed) {
            out.push(n);
        }
    }
    out
}
