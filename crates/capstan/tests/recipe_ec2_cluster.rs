//! The `ec2-cluster` recipe end to end (`examples/ec2-cluster/`), its shipped
//! configuration unchanged:
//!
//! - on the world model's cluster, compiled as `capstan run` compiles it and run on a
//!   virtual clock by the real `ecs_cluster` sources and control loop on the EC2 host
//!   target (the rig of `ec2_cluster_policy`): a memory-heavy service grows past what
//!   three hosts hold → its tasks wait and memory reservation is high → two hosts are
//!   added; it shrinks → both reservations low for 10 minutes → hosts are removed one
//!   at a time, each drained first, down to the recipe's minimum of 2. Every minute
//!   every service runs its desired count (minimum healthy 100 %), no task dies with
//!   its host and no instance is terminated twice;
//! - on the wire, the real binary with the same file (its clusters, group and endpoint
//!   pointed at moto; its workers' service left out) reads the cluster's reservation
//!   and pending tasks and decides.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_aws_api::Ecs;
use capstan_core::decision::Action;
use capstan_testkit::moto::{self, REGION};
use capstan_testkit::servers::free_port;
use serde_json::json;
use tokio::time::Instant;

use crate::ec2_cluster_moto::Aws;
use crate::ec2_cluster_policy::{CLUSTER, MINUTE, Rig, cache, web};
use crate::support::recipe::Recipe;
use crate::support::{client, start};

const RECIPE: &str = "ec2-cluster";

/// Every service of the rig's cluster runs at least its desired count (their minimum
/// healthy percent is 100).
fn assert_services_whole(rig: &Rig, when: &str) {
    for service in ["cache", "web"] {
        let counts = rig.world.service_counts(CLUSTER, service).unwrap();
        assert!(
            counts.running >= counts.desired,
            "{when}: {service} runs {} of {}",
            counts.running,
            counts.desired
        );
    }
}

#[tokio::test]
async fn the_recipe_adds_hosts_for_memory_and_removes_them_one_drained_host_at_a_time() {
    let config = Recipe::load(RECIPE, "capstan.toml").compile(&[]);
    // Three hosts of 8 GiB: 4 cache tasks (2 GiB) and 4 web tasks (512 MiB) reserve
    // 42 % of the memory, inside the recipe's 40–80 % band.
    let mut rig = Rig::new(&config, async |rig: &mut Rig| {
        rig.add(cache(4));
        rig.add(web(4));
    })
    .await;
    assert_eq!(rig.desired().await, 3);

    // The cache grows to 10 tasks: 11 of 2 GiB do not fit on 3 hosts of 8 GiB: memory
    // reservation is above 80 % and a task waits for room.
    rig.world
        .update_desired_count(CLUSTER, "cache", 10)
        .await
        .unwrap();
    let mut out = None;
    for minute in 1..=10 {
        let decision = rig.minute().await.unwrap();
        if let Action::ScaleOut { from, to } = decision.action {
            out = Some((minute, from, to, decision.sentence()));
            break;
        }
    }
    let (minute, from, to, why) = out.expect("no scale-out in 10 minutes");
    assert_eq!((from, to), (3, 5), "{why}");
    assert!(
        minute >= 3,
        "after the datapoints, not at once: minute {minute}"
    );
    assert!(
        why.contains("reservation") || why.contains("pending"),
        "the reason names the policy: {why}"
    );
    // The two new hosts join and the waiting tasks are placed on them. Until they
    // count in the reservation (memory is still above 80 % of the 3 hosts), a further
    // scale-out is asked and refused: the new hosts are warming up (5 minutes).
    let mut refused = 0;
    for _ in 0..10 {
        if let Err(e) = rig.minute().await {
            assert!(e.contains("warming up"), "{e}");
            refused += 1;
        }
    }
    assert!(
        refused <= 5,
        "refused for longer than the warm-up: {refused} minutes"
    );
    assert_eq!(rig.desired().await, 5);
    assert_eq!(rig.running("cache"), 10);
    assert_services_whole(&rig, "after the scale-out");

    // The cache shrinks to 2: 6 GiB of 40 reserved, CPU far below 40 %: the hosts go,
    // one at a time, down to the recipe's minimum of 2.
    rig.world
        .update_desired_count(CLUSTER, "cache", 2)
        .await
        .unwrap();
    let mut removals = Vec::new();
    for minute in 1..=120 {
        let decision = rig.minute().await.unwrap();
        assert_services_whole(&rig, &format!("minute {minute} of the scale-in"));
        if let Action::ScaleIn { from, to, .. } = decision.action {
            removals.push((minute, from, to));
        }
        if rig.desired().await == 2 && rig.lifecycle().await.len() == 2 {
            break;
        }
    }
    eprintln!("scale-out 3 → 5 at minute {minute}; scale-ins (minute, from, to): {removals:?}");
    assert_eq!(rig.desired().await, 2, "removals: {removals:?}");
    assert!(
        removals.iter().all(|(_, from, to)| from - to == 1),
        "one host at a time: {removals:?}"
    );
    // The first removal waits for 10 low datapoints and the 10-minute stabilization.
    assert!(removals[0].0 >= 10, "{removals:?}");
    let terminated = rig.terminated();
    let distinct: BTreeSet<&String> = terminated.iter().collect();
    assert_eq!(terminated.len(), 3, "{terminated:?}");
    assert_eq!(
        distinct.len(),
        3,
        "an instance terminated twice: {terminated:?}"
    );
    assert_eq!(rig.killed_with_a_host(), 0);
    assert_eq!(rig.running("cache"), 2);
    assert_eq!(rig.running("web"), 4);
}

/// On moto: the recipe's file with its cluster, group and endpoint set to moto's, run
/// by the real binary. Its three `ecs_cluster` sources read the cluster and the service
/// decides to hold (reservation 0 %, but one datapoint is not the 10 a scale-in needs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_file_reads_a_cluster_on_the_wire() {
    let moto = moto::moto();
    let cluster = moto.name("prod");
    moto.ecs("CreateCluster", &json!({ "clusterName": cluster }));
    let group = moto.autoscaling_group(&moto.name("prod-asg"), "us-east-1a", 2, 4, 2);
    let aws = Aws::new(&moto, &cluster, &group);
    assert_eq!(aws.register_new_instances(&moto).await.len(), 2);
    assert_eq!(aws.hosts().await.len(), 2);

    let port = free_port();
    let endpoint = moto.endpoint_url();
    // The hosts' service alone: the workers' queue and service are not on moto.
    let mut recipe = Recipe::load(RECIPE, "capstan.toml").only_services(&["prod-hosts"]);
    recipe.take("sources.backlog");
    recipe.take("sources.proc_time");
    let mut recipe = recipe
        .set("server.listen", format!("127.0.0.1:{port}"))
        .set(
            "store",
            toml::Table::from_iter([("kind".into(), "memory".into())]),
        )
        .set("services.0.interval", "1s")
        .set("services.0.target.cluster", cluster.as_str())
        .set("services.0.target.group", group.as_str())
        .set("services.0.target.endpoint_url", endpoint.as_str())
        .set("services.0.target.region", REGION);
    for source in ["cpu_reservation", "memory_reservation", "pending"] {
        recipe = recipe
            .set(&format!("sources.{source}.interval"), "1s")
            .set(&format!("sources.{source}.cluster"), cluster.as_str())
            .set(&format!("sources.{source}.endpoint_url"), endpoint.as_str())
            .set(&format!("sources.{source}.region"), REGION);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("capstan.toml"), recipe.text()).unwrap();
    let mut capstan = start(dir.path());

    let http = client();
    let url = format!("http://127.0.0.1:{port}/api/v1/services/prod-hosts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let service = loop {
        if let Ok(answer) = http.get(&url).send().await {
            let service: serde_json::Value = answer.json().await.unwrap_or_default();
            if service["last_decision"].is_object() {
                break service;
            }
        }
        assert!(Instant::now() < deadline, "no decision in 30 s");
        tokio::time::sleep(MINUTE / 600).await;
    };
    assert!(service["last_error"].is_null(), "{service}");
    assert_eq!(service["desired"], 2, "{service}");
    let sources = service["sources"].to_string();
    for source in ["cpu_reservation", "memory_reservation", "pending"] {
        assert!(sources.contains(source), "{source} missing: {service}");
    }
    crate::support::sigkill(&mut capstan).await;
}
