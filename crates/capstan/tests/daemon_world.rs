//! The daemon end to end with a real Redis and the world model of ECS behind the ECS
//! target: a Redis list grows → capstan raises the service's desiredCount → the model's
//! scheduler starts the tasks after their start-up delay → workers (one item per
//! running task every 100 ms) drain the list → capstan lowers the count after the
//! scale-in datapoints, stabilization and cooldown. Meanwhile the JSON API pauses
//! scale-in (the count holds while the list is empty) and resumes it.
//!
//! The world model runs on the system clock here (it catches up to now at every call),
//! as the daemon does: real time, every wait bounded by a deadline.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use capstan::config;
use capstan::daemon::services::world_targets;
use capstan::daemon::{self, RunOptions};
use capstan_core::clock::SystemClock;
use capstan_testkit::servers::{self, RedisServer, free_port};
use capstan_world::{ServiceCounts, ServiceSpec, World, WorldConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "prod";
const SERVICE: &str = "api";

fn config(redis: &RedisServer, key: &str, port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[store]
kind = "memory"

[sources.jobs]
kind = "redis"
url = "{url}"
key = "{key}"
interval = "200ms"

[[services]]
name = "api"
min = 1
max = 8
interval = "200ms"
# Replaced by the world model's ECS service in this test.
target = {{ kind = "process", command = ["true"] }}
cooldown = {{ out = "1s", in = "2s" }}
scale_in = {{ stabilization = "1s" }}

[[services.policies]]
kind = "target_tracking"
metric = "jobs"
mode = "total"
target = 10
datapoints = {{ out = 1, in = 3 }}
"#,
        url = redis.url()
    )
}

fn counts(world: &World) -> ServiceCounts {
    world.service_counts(CLUSTER, SERVICE).unwrap()
}

fn llen(redis: &RedisServer, key: &str) -> u32 {
    redis.command(&["LLEN", key]).unwrap().parse().unwrap()
}

async fn until(what: &str, world: &World, mut done: impl FnMut(&ServiceCounts) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_list_scales_the_world_models_ecs_service_out_and_back_in() {
    let redis = servers::redis();
    let key = redis.key("jobs");
    let world = World::new(WorldConfig::default(), SystemClock);
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: SERVICE.into(),
            desired: 1,
            startup: Duration::from_secs(2),
            stop_timeout: Duration::from_secs(1),
            deprovisioning: Duration::from_millis(200),
            ..ServiceSpec::default()
        })
        .unwrap();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}/api/v1/services");
    let client = reqwest::Client::new();
    let config = config::compile(&config(&redis, &key, port), "test.toml", &|_| None).unwrap();
    let targets = world_targets(world.clone(), CLUSTER);
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(
        RunOptions {
            targets: Some(targets),
            ..RunOptions::new(config)
        },
        cancel.clone(),
    ));

    // The workers: one item per running task every 100 ms, once told to start.
    let draining = CancellationToken::new();
    let workers = {
        let world = world.clone();
        let redis_url = redis.url();
        let key = key.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            let client = redis::Client::open(redis_url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            draining.cancelled().await;
            loop {
                let running = world
                    .service_counts(CLUSTER, SERVICE)
                    .map_or(0, |c| c.running);
                world.advance();
                let _: Option<Vec<String>> = redis::cmd("LPOP")
                    .arg(&key)
                    .arg(running.max(1))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // 37 items at 10 per task: desiredCount 4; the new tasks are not running yet.
    until("the steady minimum", &world, |c| {
        c.desired == 1 && c.running == 1
    })
    .await;
    let items: Vec<String> = (0..37).map(|i| format!("job-{i}")).collect();
    let mut args = vec!["RPUSH", key.as_str()];
    args.extend(items.iter().map(String::as_str));
    assert_eq!(redis.command(&args).unwrap(), "37");
    until("desiredCount 4", &world, |c| c.desired == 4).await;
    let at_raise = counts(&world);
    assert!(
        at_raise.running < 4,
        "the model starts tasks after their start-up delay: {at_raise:?}"
    );
    until("4 running tasks", &world, |c| c.running == 4).await;

    // The API shows the service; an operator pauses its scale-in.
    let listed: serde_json::Value = client.get(&api).send().await.unwrap().json().await.unwrap();
    assert!(listed.to_string().contains("\"api\""), "{listed}");
    let paused: serde_json::Value = client
        .post(format!("{api}/api/pause"))
        .json(&serde_json::json!({"direction": "in"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paused["paused"]["in"], true, "{paused}");

    // The workers drain the list; the pause holds the count.
    draining.cancel();
    let deadline = Instant::now() + Duration::from_secs(20);
    while llen(&redis, &key) > 0 {
        assert!(Instant::now() < deadline, "the list did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counts(&world).desired, 4, "scale-in is paused");
    let detail: serde_json::Value = client
        .get(format!("{api}/api"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        detail.to_string().contains("paused by operator"),
        "{detail}"
    );

    // Resumed: capstan scales back in to the minimum.
    let resumed = client
        .post(format!("{api}/api/resume"))
        .json(&serde_json::json!({"direction": "in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let drained_at = Instant::now();
    until("back to the minimum", &world, |c| c.desired == 1).await;
    assert!(drained_at.elapsed() < Duration::from_secs(10));
    until("one running task", &world, |c| {
        c.running == 1 && c.stopping == 0
    })
    .await;

    workers.abort();
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}
