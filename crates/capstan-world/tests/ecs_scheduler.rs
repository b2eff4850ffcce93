//! The ECS service scheduler and task lifecycle (AWS-SEMANTICS §4).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, HashSet};

use capstan_aws_api::{AwsErrorKind, DesiredStatus, Ecs, TaskStatus};
use capstan_world::{Event, ServiceCounts};
use common::*;

fn counts(world: &capstan_world::World) -> ServiceCounts {
    world.service_counts("default", "app").unwrap()
}

#[test]
fn warm_start_runs_desired_tasks_balanced_over_zones() {
    let (w, _c) = world(1);
    w.add_service(plain(6)).unwrap();
    let ts = tasks(&w);
    assert_eq!(ts.len(), 6);
    assert!(ts.iter().all(|t| t.status == TaskStatus::Running));
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for t in &ts {
        *per_zone.entry(t.zone.clone()).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    let ips: HashSet<_> = ts.iter().map(|t| t.ip.clone()).collect();
    assert_eq!(ips.len(), 6, "IPs are unique");
    assert!(
        ts[0]
            .arn
            .starts_with("arn:aws:ecs:eu-west-1:000000000000:task/default/")
    );
    assert_eq!(ts[0].arn.rsplit('/').next().unwrap().len(), 32);
    assert!(w.advance().is_empty(), "a warm start has no events");
}

#[test]
fn scheduler_follows_desired_count_up_with_startup_delay() {
    let (w, c) = world(1);
    w.add_service(plain(2)).unwrap();
    let t0 = now(&c);
    ready(w.update_desired_count("default", "app", 5)).unwrap();
    let n = counts(&w);
    assert_eq!((n.desired, n.running, n.pending), (5, 2, 3));
    let created: Vec<_> = w
        .advance()
        .into_iter()
        .filter(|e| matches!(e, Event::TaskCreated { .. }))
        .collect();
    assert_eq!(created.len(), 3);
    // Start-up is 60 s: PROVISIONING, then PENDING, then ACTIVATING, all pending.
    let ev = run(&w, &c, 59);
    assert!(!ev.iter().any(|e| matches!(e, Event::TaskRunning { .. })));
    let statuses: HashSet<_> = tasks(&w).iter().map(|t| t.status).collect();
    assert!(statuses.contains(&TaskStatus::Activating));
    assert_eq!(counts(&w).pending, 3);
    let ev = run(&w, &c, 1);
    let running: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, Event::TaskRunning { .. }))
        .collect();
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|e| secs_since(t0, at(e)) == 60.0));
    let n = counts(&w);
    assert_eq!((n.running, n.pending, n.stopping), (5, 0, 0));
}

#[test]
fn scheduler_follows_desired_count_down_and_releases_tasks() {
    let (w, c) = world(1);
    w.add_service(plain(5)).unwrap();
    ready(w.update_desired_count("default", "app", 2)).unwrap();
    // No target group: straight to STOPPING; idle tasks exit on SIGTERM.
    let ev = w.advance();
    let sigterms = ev
        .iter()
        .filter(|e| matches!(e, Event::TaskSigterm { .. }))
        .count();
    let stopped = ev
        .iter()
        .filter(|e| matches!(e, Event::TaskStopped { .. }))
        .count();
    assert_eq!((sigterms, stopped), (3, 3));
    let n = counts(&w);
    assert_eq!((n.running, n.stopping), (2, 3));
    assert!(
        tasks(&w)
            .iter()
            .filter(|t| t.status == TaskStatus::Deprovisioning)
            .all(|t| t.desired_status == DesiredStatus::Stopped)
    );
    run(&w, &c, 5); // deprovisioning
    let n = counts(&w);
    assert_eq!((n.running, n.stopping), (2, 0));
    assert_eq!(tasks(&w).len(), 2);
}

#[test]
fn scale_in_stops_pending_tasks_first_and_at_once() {
    let (w, c) = world(1);
    w.add_service(plain(2)).unwrap();
    let old: HashSet<String> = tasks(&w).into_iter().map(|t| t.arn).collect();
    ready(w.update_desired_count("default", "app", 4)).unwrap();
    run(&w, &c, 10);
    ready(w.update_desired_count("default", "app", 2)).unwrap();
    let ev = w.advance();
    let stopped: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, Event::TaskStopped { .. }))
        .collect();
    assert_eq!(stopped.len(), 2);
    assert!(!ev.iter().any(|e| matches!(e, Event::TaskSigterm { .. })));
    let left: HashSet<String> = tasks(&w).into_iter().map(|t| t.arn).collect();
    assert_eq!(left, old, "the pending ones went, STOPPED at once");
}

/// Zone of each task by ARN.
fn zones(world: &capstan_world::World) -> BTreeMap<String, String> {
    tasks(world).into_iter().map(|t| (t.arn, t.zone)).collect()
}

#[test]
fn scale_in_balances_zones_and_is_blind_to_work() {
    let mut busy_stopped_somewhere = false;
    for seed in 0..20 {
        let (w, _c) = world(seed);
        w.add_service(plain(7)).unwrap(); // 3 + 2 + 2
        let before = zones(&w);
        // One busy task per zone.
        let mut busy = HashSet::new();
        let mut seen = HashSet::new();
        for t in tasks(&w) {
            if seen.insert(t.zone.clone()) {
                w.set_work(&t.arn, 10);
                busy.insert(t.arn);
            }
        }
        ready(w.update_desired_count("default", "app", 3)).unwrap();
        let live: Vec<_> = tasks(&w)
            .into_iter()
            .filter(|t| t.desired_status == DesiredStatus::Running)
            .collect();
        let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
        for t in &live {
            *per_zone.entry(t.zone.clone()).or_default() += 1;
        }
        assert_eq!(
            per_zone.values().copied().collect::<Vec<_>>(),
            vec![1, 1, 1],
            "seed {seed}: zones stay balanced"
        );
        let stopped: Vec<_> = before
            .keys()
            .filter(|a| !live.iter().any(|t| &t.arn == *a))
            .collect();
        assert_eq!(stopped.len(), 4);
        busy_stopped_somewhere |= stopped.iter().any(|a| busy.contains(*a));
    }
    assert!(
        busy_stopped_somewhere,
        "ECS's choice ignores the work a task holds"
    );
}

#[test]
fn same_seed_same_world() {
    let run_once = |seed| {
        let (w, c) = world(seed);
        w.add_service(plain(9)).unwrap();
        ready(w.update_desired_count("default", "app", 4)).unwrap();
        run(&w, &c, 30);
        ready(w.update_desired_count("default", "app", 8)).unwrap();
        run(&w, &c, 90);
        tasks(&w)
            .into_iter()
            .map(|t| (t.arn, t.ip, t.zone, t.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(run_once(7), run_once(7));
    assert_ne!(run_once(7), run_once(8));
}

#[test]
fn stop_task_is_replaced_by_the_scheduler() {
    let (w, c) = world(1);
    w.add_service(plain(3)).unwrap();
    let victim = tasks(&w)[0].arn.clone();
    ready(w.stop_task("default", &victim, "manual")).unwrap();
    let ev = w.advance();
    assert!(ev.iter().any(
        |e| matches!(e, Event::TaskStopped { arn, reason, .. } if *arn == victim && reason == "manual")
    ));
    assert!(ev.iter().any(|e| matches!(e, Event::TaskCreated { .. })));
    let n = counts(&w);
    assert_eq!((n.desired, n.running, n.pending), (3, 2, 1));
    run(&w, &c, 60);
    assert_eq!(counts(&w).running, 3);
    let e = ready(w.stop_task("default", "nope", "x")).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
    assert_eq!(e.operation, "StopTask");
}

#[test]
fn events_come_in_time_order_and_none_are_lost() {
    let (w, c) = world(3);
    w.add_service(behind_lb(4, 30, 5)).unwrap();
    for t in tasks(&w) {
        w.set_work(&t.arn, 1);
    }
    ready(w.update_desired_count("default", "app", 1)).unwrap();
    // Events of catch-ups made by API calls are kept for the next advance().
    c.advance(std::time::Duration::from_secs(40));
    ready(w.describe_service("default", "app")).unwrap();
    c.advance(std::time::Duration::from_secs(40));
    let _ = w.tasks("default", "app");
    ready(w.update_desired_count("default", "app", 3)).unwrap();
    c.advance(std::time::Duration::from_secs(100));
    let ev = w.advance();
    assert!(ev.windows(2).all(|p| at(&p[0]) <= at(&p[1])), "{ev:#?}");
    let count = |f: fn(&Event) -> bool| ev.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, Event::TaskSigterm { .. })), 3);
    assert_eq!(count(|e| matches!(e, Event::TaskStopped { .. })), 3);
    assert_eq!(count(|e| matches!(e, Event::TaskCreated { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::TaskRunning { .. })), 2);
    // Per task: SIGTERM before TaskStopped; created before running.
    for e in &ev {
        if let Event::TaskStopped {
            arn: a, at: stop, ..
        } = e
        {
            let term = ev
                .iter()
                .find(|x| matches!(x, Event::TaskSigterm { arn, .. } if arn == a))
                .unwrap();
            assert!(at(term) <= *stop);
        }
    }
    assert!(w.advance().is_empty());
}

#[test]
fn list_and_describe_follow_aws() {
    let (w, c) = world(1);
    w.add_service(plain(2)).unwrap();
    w.add_service(capstan_world::ServiceSpec {
        name: "other".into(),
        ..plain(3)
    })
    .unwrap();
    let mine = ready(w.list_tasks("default", "app", DesiredStatus::Running)).unwrap();
    assert_eq!(mine.len(), 2, "ListTasks filters by service (unlike moto)");
    let victim = mine[0].clone();
    ready(w.stop_task("default", &victim, "bye")).unwrap();
    run(&w, &c, 10);
    let stopped = ready(w.list_tasks("default", "app", DesiredStatus::Stopped)).unwrap();
    assert_eq!(stopped, vec![victim.clone()]);
    let (found, failures) = ready(w.describe_tasks(
        "default",
        &[
            victim.clone(),
            "arn:aws:ecs:eu-west-1:000000000000:task/default/ffff".into(),
        ],
    ))
    .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].last_status, TaskStatus::Stopped);
    assert_eq!(found[0].stopped_reason.as_deref(), Some("bye"));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].reason, "MISSING");
    let too_many: Vec<std::sync::Arc<str>> = (0..101).map(|i| format!("t{i}").into()).collect();
    let e = ready(w.describe_tasks("default", &too_many)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidParameter);
    let e = ready(w.describe_service("default", "ghost")).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
    let e = ready(w.describe_service("nowhere", "app")).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
    let e = ready(w.list_tasks("default", "ghost", DesiredStatus::Running)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
    // Stopped tasks are forgotten after an hour.
    run(&w, &c, 3600);
    let (_, failures) = ready(w.describe_tasks("default", std::slice::from_ref(&victim))).unwrap();
    assert_eq!(failures.len(), 1);
}

#[test]
fn update_service_is_idempotent_and_describe_reports_counts() {
    let (w, c) = world(1);
    w.add_service(plain(2)).unwrap();
    let before = w.generation();
    ready(w.update_desired_count("default", "app", 2)).unwrap();
    assert_eq!(
        w.generation(),
        before,
        "same desired count: nothing changes"
    );
    assert!(w.advance().is_empty());
    ready(w.update_desired_count("default", "app", 4)).unwrap();
    ready(w.update_desired_count("default", "app", 4)).unwrap();
    let s = ready(w.describe_service("default", "app")).unwrap();
    assert_eq!((s.desired, s.running, s.pending), (4, 2, 2));
    assert_eq!(s.deployments.len(), 1);
    assert!(!s.deployment_in_progress());
    assert!(s.cluster.ends_with(":cluster/default"));
    run(&w, &c, 60);
    let s = ready(w.describe_service("default", "app")).unwrap();
    assert_eq!((s.running, s.pending), (4, 0));
}

#[test]
fn bad_specs_are_rejected_with_the_field() {
    let (w, _c) = world(1);
    let e = w
        .add_service(capstan_world::ServiceSpec {
            task_cpu: 0,
            ..plain(1)
        })
        .unwrap_err();
    assert!(e.to_string().contains("task_cpu"), "{e}");
    let e = w
        .add_service(capstan_world::ServiceSpec {
            stop_timeout: std::time::Duration::from_secs(121),
            ..plain(1)
        })
        .unwrap_err();
    assert!(e.to_string().contains("stop_timeout"), "{e}");
    w.add_service(plain(1)).unwrap();
    let e = w.add_service(plain(1)).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    let (w, _c) = world_with(capstan_world::WorldConfig {
        zones: vec![],
        ..capstan_world::WorldConfig::default()
    });
    let e = w.add_service(plain(1)).unwrap_err();
    assert!(e.to_string().contains("zones"), "{e}");
}

/// `ListServices` gives each cluster's services and no other's; `DescribeServices` of
/// known and unknown services (by name or ARN) gives the known ones, each as the
/// single `DescribeServices` reports it, and a `MISSING` failure per unknown one. An
/// unknown cluster is `ClusterNotFoundException`; more than 10 services is refused.
/// Both go through the rate limits and faults as every call does.
#[test]
fn services_are_listed_and_described_per_cluster() {
    use std::sync::Arc;
    let (w, _c) = world(1);
    let spec = |cluster: &str, name: &str, desired: u32| capstan_world::ServiceSpec {
        cluster: cluster.into(),
        name: name.into(),
        ..plain(desired)
    };
    w.add_service(spec("default", "app", 2)).unwrap();
    w.add_service(spec("default", "worker", 1)).unwrap();
    w.add_service(spec("batch", "app", 3)).unwrap();

    let listed = ready(w.list_services("default")).unwrap();
    let arn = |cluster: &str, name: &str| -> Arc<str> {
        format!("arn:aws:ecs:eu-west-1:000000000000:service/{cluster}/{name}").into()
    };
    assert_eq!(
        listed,
        vec![arn("default", "app"), arn("default", "worker")],
        "the services of that cluster only"
    );
    let other = ready(w.list_services("arn:aws:ecs:eu-west-1:000000000000:cluster/batch")).unwrap();
    assert_eq!(other, vec![arn("batch", "app")], "by cluster ARN too");

    let asked: Vec<Arc<str>> = vec![
        Arc::clone(&listed[1]),
        "ghost".into(),
        "app".into(),
        arn("default", "phantom"),
    ];
    let (found, failures) = ready(w.describe_services("default", &asked)).unwrap();
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["worker", "app"]);
    assert_eq!(
        found[1],
        ready(w.describe_service("default", "app")).unwrap()
    );
    assert_eq!(
        found[1].desired, 2,
        "the default cluster's app, not batch's"
    );
    let missing: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| (&*f.arn, f.reason.as_str()))
        .collect();
    assert_eq!(
        missing,
        vec![
            ("ghost", "MISSING"),
            (&*arn("default", "phantom"), "MISSING")
        ]
    );
    let (found, failures) = ready(w.describe_services("batch", &[])).unwrap();
    assert!(found.is_empty() && failures.is_empty());

    let e = ready(w.list_services("nowhere")).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
    assert_eq!(e.operation, "ListServices");
    let e = ready(w.describe_services("nowhere", &asked)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
    assert_eq!(e.operation, "DescribeServices");
    let eleven: Vec<Arc<str>> = (0..11).map(|i| format!("s{i}").into()).collect();
    let e = ready(w.describe_services("default", &eleven)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidParameter);

    w.inject_fault(capstan_world::FaultRule::times(
        "ListServices",
        AwsErrorKind::Server,
        1,
    ));
    let e = ready(w.list_services("default")).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::Server);
    ready(w.list_services("default")).unwrap();
    let stats = w.api_stats();
    assert_eq!(stats.calls("ListServices"), 5);
    assert_eq!(stats.faulted("ListServices"), 1);
    assert_eq!(stats.calls("DescribeServices"), 5);
}

/// `ListServices` and `DescribeServices` draw on the same bucket (service reads: 100
/// burst, 20 per second), apart from the task reads.
#[test]
fn service_reads_share_one_bucket() {
    let (w, c) = world_with(capstan_world::WorldConfig {
        rate_limits: true,
        ..capstan_world::WorldConfig::default()
    });
    w.add_service(plain(1)).unwrap();
    for i in 0..50 {
        ready(w.list_services("default")).unwrap_or_else(|e| panic!("list {i}: {e}"));
        ready(w.describe_services("default", &["app".into()]))
            .unwrap_or_else(|e| panic!("describe {i}: {e}"));
    }
    let e = ready(w.list_services("default")).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::Throttling);
    assert_eq!(e.operation, "ListServices");
    assert!(ready(w.describe_service("default", "app")).is_err());
    ready(w.list_tasks("default", "app", DesiredStatus::Running)).unwrap();
    c.advance(std::time::Duration::from_secs(1));
    for _ in 0..20 {
        ready(w.list_services("default")).unwrap();
    }
    assert!(ready(w.list_services("default")).is_err());
}
