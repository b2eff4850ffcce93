//! The `redis-queue-alerts` recipe end to end (examples/redis-queue-alerts/), on its
//! shipped files:
//!
//! - `capstan.toml` (every duration divided by 60) runs in-process on the world model's
//!   ECS service `worker` in cluster `jobs`, reading a real Redis list; a private real
//!   Prometheus scrapes its `/metrics` with the listener's token and evaluates the
//!   recipe's `rules.yml`; a private real Alertmanager posts the recipe's webhook with
//!   the webhook's own token (both tokens from files, as `prometheus.yml` and
//!   `alertmanager.yml` ship them). Only addresses, token file paths, the scrape and
//!   group intervals and the rule's `for` are rewritten for speed; the alert expression
//!   is the recipe's. The test's workers pop jobs, one per running task every 100 ms,
//!   while it lets them. Checked through the API's decisions: target tracking alone
//!   below the threshold; above it the alert fires and its policy wins scale-outs in
//!   growing exponential steps; drained, the alert resolves and the service scales
//!   back in to its minimum (the alert's own `in_step` first, target tracking last);
//!   a burst large enough for target tracking's ask to exceed the alert's, and target
//!   tracking wins while the alert fires.
//! - `capstan-cloudwatch.toml` runs as the real binary with `--once` on moto: the list
//!   length is shipped to CloudWatch and read back from moto's CloudWatch, and the
//!   dry-run service leaves moto's ECS service as it was.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::Uri;
use axum::response::IntoResponse;
use capstan::daemon::services::world_targets_as_configured;
use capstan_core::clock::SystemClock;
use capstan_testkit::aws_proxy::AwsProxy;
use capstan_testkit::moto::{self, Moto, REGION, xml_field};
use capstan_testkit::prometheus::{Alertmanager, Prometheus};
use capstan_testkit::servers::{self, RedisServer, free_port};
use capstan_world::{ServiceCounts, ServiceSpec, World, WorldConfig};
use ciborium::Value as Cbor;
use serde_json::Value;
use tokio::time::Instant;

use crate::in_process::Daemon;
use crate::support::recipe::{self, Recipe};

const RECIPE: &str = "redis-queue-alerts";
/// Every duration of the recipe's config divided by this: a minute is a second.
const FACTOR: u32 = 60;
const CLUSTER: &str = "jobs";
const SERVICE: &str = "worker";
/// The policies' names in the recipe.
const ALERT: &str = "queue-alert";
const TRACKING: &str = "queue-per-task";
const CAPSTAN_TOKEN: &str = "listener-secret";
const ALERTMANAGER_TOKEN: &str = "alertmanager-secret";

/// A shipped file of the recipe.
fn shipped(file: &str) -> String {
    let path = recipe::dir(RECIPE).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with each `(from, to)` replaced; every `from` must occur in it.
fn rewrite(file: &str, text: &str, changes: &[(&str, &str)]) -> String {
    changes.iter().fold(text.to_owned(), |text, (from, to)| {
        assert!(text.contains(from), "{file} no longer holds `{from}`");
        text.replace(from, to)
    })
}

fn counts(world: &World) -> ServiceCounts {
    world.service_counts(CLUSTER, SERVICE).unwrap()
}

/// Waits (at most 40 s) until the world model's service satisfies `done`.
async fn until(what: &str, world: &World, mut done: impl FnMut(&ServiceCounts) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        world.advance();
        let now = counts(world);
        if done(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn llen(redis: &RedisServer, key: &str) -> usize {
    redis.command(&["LLEN", key]).unwrap().parse().unwrap()
}

fn push_jobs(redis: &RedisServer, key: &str, n: usize) {
    let jobs: Vec<String> = (0..n).map(|i| format!("job-{i}")).collect();
    let mut args = vec!["RPUSH", key];
    args.extend(jobs.iter().map(String::as_str));
    redis.command(&args).unwrap();
}

/// The service's decisions, oldest first (the newest 500).
async fn decisions(daemon: &Daemon) -> Vec<Value> {
    let page = daemon
        .get(&format!("/api/v1/services/{SERVICE}/decisions?limit=500"))
        .await;
    let mut list = page["decisions"].as_array().unwrap().clone();
    list.reverse();
    list
}

/// The ask of `policy` in `decision`.
fn ask<'a>(decision: &'a Value, policy: &str) -> &'a Value {
    decision["asks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["policy"] == policy)
        .unwrap_or_else(|| panic!("no ask of {policy} in {decision}"))
}

fn is(decision: &Value, action: &str, winner: &str) -> bool {
    decision["action"]["action"] == action && decision["winner"] == winner
}

fn step_of(decision: &Value) -> i64 {
    decision["action"]["to"].as_i64().unwrap() - decision["action"]["from"].as_i64().unwrap()
}

/// Polls the decisions (at most 30 s) until `found` picks one out.
async fn decision_where(
    daemon: &Daemon,
    what: &str,
    found: impl Fn(&[Value]) -> Option<Value>,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = decisions(daemon).await;
        if let Some(d) = found(&list) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no decision {what} among:\n{}",
            sentences(&list)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sentences(list: &[Value]) -> String {
    list.iter()
        .filter(|d| d["action"]["action"] != "hold")
        .map(|d| d["sentence"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_alert_scales_out_in_growing_steps_and_target_tracking_wins_when_it_asks_more() {
    let redis = servers::redis();
    let key = redis.key("jobs");
    let world = World::new(WorldConfig::default(), SystemClock);
    // The scenario's task timings (45 s to start, 30 s to stop), divided by the factor.
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: SERVICE.into(),
            desired: 1,
            startup: Duration::from_millis(750),
            stop_timeout: Duration::from_millis(500),
            deprovisioning: Duration::from_millis(100),
            ..ServiceSpec::default()
        })
        .unwrap();

    // The shipped config, a minute a second; the test's listener, list and store.
    let port = free_port();
    let mut recipe = Recipe::load(RECIPE, "capstan.toml")
        .accelerate(FACTOR)
        .set("server.listen", format!("127.0.0.1:{port}"))
        .set("sources.queue.key", key.as_str());
    recipe.take("store");
    let config = recipe.set("store.kind", "memory").compile(&[
        ("CAPSTAN_TOKEN", CAPSTAN_TOKEN),
        ("ALERTMANAGER_TOKEN", ALERTMANAGER_TOKEN),
        ("REDIS_URL", &redis.url()),
    ]);
    let targets = world_targets_as_configured(world.clone(), Arc::new(SystemClock));
    let daemon = Daemon::start(config, port, targets, Some(CAPSTAN_TOKEN));
    until("the minimum", &world, |c| c.desired == 1 && c.running == 1).await;

    // The alerting stack on the shipped files, the tokens in files as they ship them.
    let secrets = tempfile::tempdir().unwrap();
    let capstan_token = secrets.path().join("capstan-token");
    std::fs::write(&capstan_token, format!("{CAPSTAN_TOKEN}\n")).unwrap();
    let webhook_token = secrets.path().join("capstan-webhook-token");
    std::fs::write(&webhook_token, format!("{ALERTMANAGER_TOKEN}\n")).unwrap();
    let capstan_addr = format!("127.0.0.1:{port}");
    let am_config = rewrite(
        "alertmanager.yml",
        &shipped("alertmanager.yml"),
        &[
            ("group_wait: 10s", "group_wait: 1s"),
            ("group_interval: 30s", "group_interval: 1s"),
            ("capstan.internal:9120", &capstan_addr),
            (
                "/etc/alertmanager/capstan-webhook-token",
                webhook_token.to_str().unwrap(),
            ),
        ],
    );
    let alertmanager = tokio::task::spawn_blocking(move || Alertmanager::start(&am_config))
        .await
        .unwrap();
    let prom_config = rewrite(
        "prometheus.yml",
        &shipped("prometheus.yml"),
        &[
            ("scrape_interval: 15s", "scrape_interval: 1s"),
            ("evaluation_interval: 15s", "evaluation_interval: 1s"),
            ("alertmanager.internal:9093", &alertmanager.address()),
            ("capstan.internal:9120", &capstan_addr),
            (
                "/etc/prometheus/capstan-token",
                capstan_token.to_str().unwrap(),
            ),
        ],
    );
    // The recipe's rule; only its `for` is divided by the factor.
    let rules = rewrite(
        "rules.yml",
        &shipped("rules.yml"),
        &[("for: 1m", "for: 1s")],
    );
    assert!(rules.contains(r#"expr: capstan_source_value{source="queue"} > 500"#));
    let prometheus = tokio::task::spawn_blocking(move || {
        Prometheus::start(&prom_config, &[("rules.yml", &rules)])
    })
    .await
    .unwrap();

    // The workers: each running task pops one job every 100 ms while they may.
    let working = Arc::new(AtomicBool::new(false));
    let workers = {
        let (world, working, key) = (world.clone(), Arc::clone(&working), key.clone());
        let client = redis::Client::open(redis.url()).unwrap();
        tokio::spawn(async move {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            loop {
                world.advance();
                let running = world
                    .service_counts(CLUSTER, SERVICE)
                    .map_or(0, |c| c.running);
                if working.load(Ordering::SeqCst) && running > 0 {
                    let _: Option<Vec<String>> = redis::cmd("LPOP")
                        .arg(&key)
                        .arg(running)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // 1. Under the threshold: target tracking alone (300 jobs at 100 a task: 3).
    push_jobs(&redis, &key, 300);
    until("3 tasks", &world, |c| c.desired == 3).await;
    let first = decision_where(&daemon, "scaling out to 3", |list| {
        list.iter().find(|d| is(d, "scale_out", TRACKING)).cloned()
    })
    .await;
    assert_eq!(first["action"]["to"], 3, "{first}");
    assert_eq!(ask(&first, ALERT)["ask"], "abstain", "{first}");

    // 2. A burst to 1000 jobs, the workers stuck: target tracking raises the count to
    // 10 at once; the alert fires a few seconds later and its steps take it further.
    push_jobs(&redis, &key, 700);
    until("the alert's scale-out to the max", &world, |c| {
        c.desired == 40
    })
    .await;
    let list = decisions(&daemon).await;
    let outs: Vec<&Value> = list
        .iter()
        .filter(|d| d["action"]["action"] == "scale_out")
        .collect();
    let to_ten = outs
        .iter()
        .position(|d| is(d, "scale_out", TRACKING) && d["action"]["to"] == 10)
        .unwrap_or_else(|| panic!("target tracking did not go to 10:\n{}", sentences(&list)));
    let by_alert: Vec<&Value> = outs[to_ten..]
        .iter()
        .copied()
        .filter(|d| is(d, "scale_out", ALERT))
        .collect();
    assert!(
        by_alert.len() >= 3,
        "the alert won fewer than 3 scale-outs:\n{}",
        sentences(&list)
    );
    for d in &by_alert {
        let reason = ask(d, ALERT)["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("up: alert RedisQueueHigh")
                && reason.contains("> threshold 500")
                && reason.contains("exponential"),
            "{reason}"
        );
    }
    // Exponential steps of 2 with ±20 % jitter: 2, then 3 to 5, then 6 to 10 (the
    // first three are below the max whatever the jitter).
    let steps: Vec<i64> = by_alert.iter().map(|d| step_of(d)).collect();
    assert_eq!(steps[0], 2, "{steps:?}");
    assert!((3..=5).contains(&steps[1]), "{steps:?}");
    assert!((6..=10).contains(&steps[2]), "{steps:?}");
    assert_eq!(by_alert[0]["action"]["from"], 10, "{}", sentences(&list));
    eprintln!("the burst's scale-outs:\n{}", sentences(&list));

    // 3. The workers drain the list; the alert resolves; back to the minimum.
    working.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while llen(&redis, &key) > 0 {
        assert!(Instant::now() < deadline, "the list did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until("back to the minimum", &world, |c| c.desired == 1).await;
    let list = decisions(&daemon).await;
    let last_out = list
        .iter()
        .rposition(|d| d["action"]["action"] == "scale_out")
        .unwrap();
    let ins: Vec<&Value> = list[last_out..]
        .iter()
        .filter(|d| d["action"]["action"] == "scale_in")
        .collect();
    assert!(
        ins.iter().any(|d| is(d, "scale_in", ALERT)
            && ask(d, ALERT)["reason"]
                .as_str()
                .unwrap()
                .starts_with("down: alert RedisQueueHigh")
            && ask(d, ALERT)["reason"]
                .as_str()
                .unwrap()
                .contains("resolved")),
        "no scale-in by the resolved alert:\n{}",
        sentences(&list)
    );
    let last_in = ins.last().unwrap();
    assert!(is(last_in, "scale_in", TRACKING), "{last_in}");
    assert_eq!(last_in["action"]["to"], 1, "{last_in}");
    assert_eq!(ask(last_in, ALERT)["ask"], "abstain", "{last_in}");
    until("one running task", &world, |c| {
        c.running == 1 && c.stopping == 0
    })
    .await;
    eprintln!("back in:\n{}", sentences(&list[last_out..]));

    // 4. A burst of 4500, the workers stuck again: target tracking asks 45 at once
    // (capped at the max of 40); once the alert fires again it asks 40 + 2, less: target
    // tracking wins while the alert fires.
    working.store(false, Ordering::SeqCst);
    push_jobs(&redis, &key, 4500);
    until("target tracking's scale-out to the max", &world, |c| {
        c.desired == 40
    })
    .await;
    let both = decision_where(
        &daemon,
        "won by target tracking while the alert fires",
        |list| {
            list.iter()
                .rev()
                .find(|d| {
                    d["winner"] == TRACKING
                        && ask(d, ALERT)["reason"]
                            .as_str()
                            .unwrap()
                            .starts_with("up: alert RedisQueueHigh")
                })
                .cloned()
        },
    )
    .await;
    assert_eq!(ask(&both, TRACKING)["count"], 45, "{both}");
    assert_eq!(ask(&both, ALERT)["count"], 42, "{both}");
    assert_eq!(both["combined"], 45, "{both}");
    assert_eq!(
        both["action"]["action"], "hold",
        "capped at the max: {both}"
    );

    workers.abort();
    drop(prometheus);
    drop(alertmanager);
    daemon.stop().await;
}

/// A CloudWatch endpoint for the SDK's rpc-v2-cbor `PutMetricData` that moto cannot
/// take: each call is decoded and put into moto's CloudWatch with the query protocol
/// (the same metric, dimensions, value and timestamp). Returns its URL and the number
/// of values relayed.
async fn cloudwatch_relay(moto: Arc<Moto>) -> (String, Arc<AtomicUsize>) {
    let relayed = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&relayed);
    let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
        let (moto, count) = (Arc::clone(&moto), Arc::clone(&count));
        async move {
            assert!(
                uri.path().ends_with("/operation/PutMetricData"),
                "{}",
                uri.path()
            );
            let body: Cbor = ciborium::from_reader(body.as_ref()).unwrap();
            let params = put_metric_data_params(&body);
            count.fetch_add(
                params.iter().filter(|(k, _)| k.ends_with(".Value")).count(),
                Ordering::SeqCst,
            );
            tokio::task::spawn_blocking(move || {
                let params: Vec<(&str, &str)> = params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                moto.query("monitoring", &params);
            })
            .await
            .unwrap();
            (
                [
                    ("smithy-protocol", "rpc-v2-cbor"),
                    ("content-type", "application/cbor"),
                ],
                vec![0xa0_u8],
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, relayed)
}

fn field<'a>(value: &'a Cbor, key: &str) -> Option<&'a Cbor> {
    match value {
        Cbor::Map(entries) => entries
            .iter()
            .find(|(k, _)| k == &Cbor::Text(key.to_owned()))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn text(value: Option<&Cbor>) -> String {
    match value {
        Some(Cbor::Text(s)) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn number(value: Option<&Cbor>) -> f64 {
    match value {
        Some(Cbor::Float(v)) => *v,
        Some(Cbor::Integer(i)) => f64::from(i32::try_from(*i).unwrap()),
        Some(Cbor::Tag(_, inner)) => number(Some(inner)),
        other => panic!("not a number: {other:?}"),
    }
}

/// The query-protocol form of a CBOR `PutMetricData` body.
fn put_metric_data_params(body: &Cbor) -> Vec<(String, String)> {
    let mut params = vec![
        ("Action".to_owned(), "PutMetricData".to_owned()),
        ("Version".to_owned(), "2010-08-01".to_owned()),
        ("Namespace".to_owned(), text(field(body, "Namespace"))),
    ];
    let Some(Cbor::Array(data)) = field(body, "MetricData") else {
        panic!("no MetricData in {body:?}");
    };
    for (i, datum) in data.iter().enumerate() {
        let m = format!("MetricData.member.{}", i + 1);
        params.push((format!("{m}.MetricName"), text(field(datum, "MetricName"))));
        params.push((
            format!("{m}.Value"),
            number(field(datum, "Value")).to_string(),
        ));
        if let Some(at) = field(datum, "Timestamp") {
            #[allow(clippy::cast_possible_truncation)]
            let ms = (number(Some(at)) * 1000.0) as i64;
            let at = jiff::Timestamp::from_millisecond(ms).unwrap();
            params.push((format!("{m}.Timestamp"), at.to_string()));
        }
        if let Some(Cbor::Array(dims)) = field(datum, "Dimensions") {
            for (j, d) in dims.iter().enumerate() {
                let n = format!("{m}.Dimensions.member.{}", j + 1);
                params.push((format!("{n}.Name"), text(field(d, "Name"))));
                params.push((format!("{n}.Value"), text(field(d, "Value"))));
            }
        }
    }
    params
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloudwatch_variant_ships_the_list_length_to_cloudwatch() {
    let redis = servers::redis();
    let key = redis.key("jobs");
    push_jobs(&redis, &key, 1234);
    let moto = Arc::new(moto::moto());
    let fixture = moto.ecs_service(1, 1);
    // moto lacks ECS task protection, which capstan's observation reads: the proxy has it.
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.unwrap();
    let (relay, relayed) = cloudwatch_relay(Arc::clone(&moto)).await;
    let queue = moto.name("jobs");

    // The shipped variant; the test's list, AWS endpoints and names. `${REDIS_URL}`
    // stays in the file: the binary reads it from its environment.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut recipe = Recipe::load(RECIPE, "capstan-cloudwatch.toml")
        .accelerate(FACTOR)
        .set("server.listen", format!("127.0.0.1:{port}"))
        .set("sources.queue.key", key.as_str())
        .set(
            "sources.queue.ship_to_cloudwatch.endpoint_url",
            relay.as_str(),
        )
        .set("sources.queue.ship_to_cloudwatch.region", REGION)
        .set(
            "sources.queue.ship_to_cloudwatch.dimensions.Queue",
            queue.as_str(),
        )
        .set("services.0.target.cluster", fixture.cluster.as_str())
        .set("services.0.target.service", fixture.service.as_str())
        .set("services.0.target.endpoint_url", proxy.endpoint_url())
        .set("services.0.target.region", REGION);
    recipe.take("store");
    let recipe = recipe.set("store.kind", "memory");
    let config = dir.path().join("capstan.toml");
    std::fs::write(&config, recipe.text()).unwrap();
    let log_path = dir.path().join("capstan.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut capstan = crate::support::moto_credentials(
        &mut tokio::process::Command::new(env!("CARGO_BIN_EXE_capstan")),
        dir.path(),
    )
    .arg("run")
    .arg("--config")
    .arg(&config)
    .env("RUST_LOG", "info")
    .env("REDIS_URL", redis.url())
    .stdin(Stdio::null())
    .stdout(log_file.try_clone().unwrap())
    .stderr(log_file)
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // capstan's dry-run service: 1234 jobs at 100 a task, target tracking would go to
    // 13 (after its 2 datapoints); nothing changes on ECS.
    let http = crate::support::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let detail = match http
            .get(format!("http://127.0.0.1:{port}/api/v1/services/{SERVICE}"))
            .send()
            .await
        {
            Ok(r) => r.json::<Value>().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        let last = &detail["last_decision"];
        if last["action"]["action"] == "scale_out" {
            assert_eq!(last["action"]["to"], 13, "{detail}");
            assert_eq!(last["dry_run"], true, "{detail}");
            assert_eq!(last["winner"], TRACKING, "{detail}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dry-run scale-out: {detail}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fixture.desired_count(&moto), 1, "{}", log());
    assert_eq!(proxy.calls("UpdateService"), 0, "{}", log());

    // Stopped, capstan flushes what it read to CloudWatch.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(capstan.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), capstan.wait())
        .await
        .expect("capstan stops")
        .unwrap();
    assert!(status.success(), "{status}\n{}", log());
    let log = log();
    assert!(log.contains("[dry-run] worker: scale out 1 → 13"), "{log}");
    assert!(!log.contains("not shipped"), "{log}");

    // The list length is in moto's CloudWatch.
    assert!(relayed.load(Ordering::SeqCst) >= 2, "{log}");
    let now = capstan_core::clock::Clock::now(&SystemClock);
    let start = (now - jiff::SignedDuration::from_secs(600)).to_string();
    let end = (now + jiff::SignedDuration::from_secs(60)).to_string();
    let stats = {
        let moto = Arc::clone(&moto);
        tokio::task::spawn_blocking(move || {
            moto.query(
                "monitoring",
                &[
                    ("Action", "GetMetricStatistics"),
                    ("Version", "2010-08-01"),
                    ("Namespace", "Jobs/Redis"),
                    ("MetricName", "ListLength"),
                    ("Dimensions.member.1.Name", "Queue"),
                    ("Dimensions.member.1.Value", &queue),
                    ("StartTime", &start),
                    ("EndTime", &end),
                    ("Period", "60"),
                    ("Statistics.member.1", "Maximum"),
                    ("Statistics.member.2", "SampleCount"),
                ],
            )
        })
        .await
        .unwrap()
    };
    let max: f64 = xml_field(&stats, "Maximum")
        .unwrap_or_else(|| panic!("no datapoint in moto: {stats}"))
        .parse()
        .unwrap();
    assert_eq!(max, 1234.0, "{stats}");
}
