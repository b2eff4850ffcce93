//! Task scale-in protection and deployments (AWS-SEMANTICS §4, E6–E10).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::{AwsErrorKind, DeploymentRollout, DesiredStatus, Ecs, TaskStatus};
use capstan_world::{Event, World};
use common::*;

fn live(w: &World) -> Vec<Arc<str>> {
    tasks(w)
        .into_iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .map(|t| Arc::from(t.arn))
        .collect()
}

#[test]
fn protected_tasks_survive_scale_in_until_expiry_then_stop() {
    let (w, c) = world(1);
    w.add_service(plain(4)).unwrap();
    let arns = live(&w);
    let keep = arns[..3].to_vec();
    let r = ready(w.update_task_protection("default", &keep, Some(10))).unwrap();
    assert_eq!(r.protected.len(), 3);
    assert!(r.failures.is_empty());
    ready(w.update_desired_count("default", "app", 1)).unwrap();
    let left = live(&w);
    assert_eq!(left, keep, "only the unprotected task stopped");
    let n = w.service_counts("default", "app").unwrap();
    assert_eq!(
        (n.desired, n.running),
        (1, 3),
        "running stays above desired"
    );
    assert!(
        tasks(&w)
            .iter()
            .all(|t| t.protected_until.is_some() || !keep.iter().any(|k| **k == *t.arn))
    );
    run(&w, &c, 599);
    assert_eq!(live(&w), keep);
    // At expiry the scheduler stops the excess (two of the three).
    let ev = run(&w, &c, 1);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::TaskSigterm { .. }))
            .count(),
        2
    );
    assert_eq!(live(&w).len(), 1);
    let p = ready(w.get_task_protection("default", &live(&w))).unwrap();
    assert!(!p.protected[0].enabled);
    assert_eq!(p.protected[0].expires_at, None);
}

#[test]
fn protection_call_limits_and_failures() {
    let (w, c) = world(1);
    w.add_service(plain(3)).unwrap();
    let arns = live(&w);
    let eleven: Vec<Arc<str>> = (0..11).map(|i| format!("t{i}").into()).collect();
    let e = ready(w.update_task_protection("default", &eleven, Some(5))).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidParameter);
    for bad in [0, 2881] {
        let e = ready(w.update_task_protection("default", &arns[..1], Some(bad))).unwrap_err();
        assert_eq!(e.kind, AwsErrorKind::InvalidParameter, "{bad} minutes");
    }
    let hundred_one: Vec<Arc<str>> = (0..101).map(|i| format!("t{i}").into()).collect();
    let e = ready(w.get_task_protection("default", &hundred_one)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidParameter);
    // Unknown and stopped tasks: TASK_NOT_VALID.
    ready(w.stop_task("default", &arns[2], "x")).unwrap();
    let asked = vec![arns[0].clone(), arns[2].clone(), "deadbeef".into()];
    let r = ready(w.update_task_protection("default", &asked, Some(60))).unwrap();
    assert_eq!(r.protected.len(), 1);
    let reasons: Vec<_> = r.failures.iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(reasons, vec!["TASK_NOT_VALID", "TASK_NOT_VALID"]);
    // Re-calling resets the expiry.
    let first = r.protected[0].expires_at.unwrap();
    run(&w, &c, 600);
    let r = ready(w.update_task_protection("default", &arns[..1], Some(60))).unwrap();
    let second = r.protected[0].expires_at.unwrap();
    assert_eq!(second.duration_since(first).as_secs(), 600);
    let p = ready(w.get_task_protection("default", &arns[..1])).unwrap();
    assert!(p.protected[0].enabled);
    assert_eq!(p.protected[0].expires_at, Some(second));
    // Release.
    let r = ready(w.update_task_protection("default", &arns[..1], None)).unwrap();
    assert!(!r.protected[0].enabled);
    let p = ready(w.get_task_protection("default", &arns[..1])).unwrap();
    assert!(!p.protected[0].enabled);
}

#[test]
fn protecting_more_tasks_than_desired_is_blocked_for_the_excess() {
    let (w, _c) = world(1);
    w.add_service(plain(4)).unwrap();
    let arns = live(&w);
    ready(w.update_task_protection("default", &arns[..1], Some(30))).unwrap();
    ready(w.update_desired_count("default", "app", 2)).unwrap();
    // Two more remain; one protected already: one more fits within desired 2.
    let rest: Vec<Arc<str>> = live(&w).into_iter().filter(|a| *a != arns[0]).collect();
    assert_eq!(rest.len(), 1);
    let mut asked = rest.clone();
    asked.push(arns[0].clone());
    let r = ready(w.update_task_protection("default", &asked, Some(30))).unwrap();
    assert_eq!(
        r.protected.len(),
        2,
        "the re-protected one does not count twice"
    );
    ready(w.update_desired_count("default", "app", 1)).unwrap();
    let r = ready(w.update_task_protection("default", &asked, Some(30))).unwrap();
    assert_eq!(r.protected.len(), 1);
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].reason, "DEPLOYMENT_BLOCKED");
    assert_eq!(r.failures[0].arn, asked[1]);
}

#[test]
fn deployment_replaces_tasks_within_min_healthy_and_max_percent() {
    let (w, c) = world(1);
    w.add_service(behind_lb(4, 10, 2)).unwrap();
    let old = live(&w);
    w.start_deployment("default", "app").unwrap();
    let s = ready(w.describe_service("default", "app")).unwrap();
    assert!(s.deployment_in_progress());
    assert_eq!(s.deployments.len(), 2);
    assert_eq!(s.deployments[0].status, "PRIMARY");
    assert_eq!(
        s.deployments[0].rollout_state,
        DeploymentRollout::InProgress
    );
    assert_eq!(
        s.deployments[0].pending, 4,
        "maximumPercent 200: all four at once"
    );
    assert_eq!(s.deployments[1].running, 4);
    let mut max_live = 0;
    for _ in 0..200 {
        run(&w, &c, 1);
        let ts = tasks(&w);
        let healthy_running = ts
            .iter()
            .filter(|t| t.status == TaskStatus::Running && t.routable)
            .count();
        let live_n = ts
            .iter()
            .filter(|t| t.desired_status == DesiredStatus::Running)
            .count();
        max_live = max_live.max(live_n);
        assert!(healthy_running >= 4, "minimumHealthyPercent 100");
        assert!(live_n <= 8, "maximumPercent 200");
    }
    assert_eq!(max_live, 8);
    let now_live = live(&w);
    assert!(now_live.iter().all(|a| !old.contains(a)), "all replaced");
    let s = ready(w.describe_service("default", "app")).unwrap();
    assert!(!s.deployment_in_progress());
    assert_eq!(s.deployments.len(), 1);
    assert_eq!(s.deployments[0].rollout_state, DeploymentRollout::Completed);
}

#[test]
fn deployment_with_low_max_percent_stops_old_tasks_first() {
    let (w, c) = world(1);
    w.add_service(capstan_world::ServiceSpec {
        minimum_healthy_percent: 50,
        maximum_percent: 100,
        ..plain(4)
    })
    .unwrap();
    w.start_deployment("default", "app").unwrap();
    // minimumHealthyPercent 50: two old tasks stop at once; maximumPercent counts
    // RUNNING and PENDING tasks only, so two new ones start at once too.
    let n = w.service_counts("default", "app").unwrap();
    assert_eq!((n.running, n.stopping, n.pending), (2, 2, 2));
    run(&w, &c, 60);
    let n = w.service_counts("default", "app").unwrap();
    assert_eq!(
        (n.running, n.pending),
        (2, 2),
        "then the other two old ones go"
    );
    run(&w, &c, 200);
    let s = ready(w.describe_service("default", "app")).unwrap();
    assert!(!s.deployment_in_progress());
    assert_eq!(s.running, 4);
}

#[test]
fn deployment_keeps_protected_old_tasks_until_protection_ends() {
    let (w, c) = world(1);
    w.add_service(plain(3)).unwrap();
    let old = live(&w);
    ready(w.update_task_protection("default", &old[..1], Some(20))).unwrap();
    w.start_deployment("default", "app").unwrap();
    run(&w, &c, 300);
    let still = live(&w);
    assert!(still.contains(&old[0]), "protected old task kept");
    assert!(!still.contains(&old[1]) && !still.contains(&old[2]));
    let s = ready(w.describe_service("default", "app")).unwrap();
    assert!(
        s.deployment_in_progress(),
        "the old task keeps it in progress"
    );
    c.advance(Duration::from_secs(20 * 60));
    run(&w, &c, 10);
    assert!(!live(&w).contains(&old[0]));
    let s = ready(w.describe_service("default", "app")).unwrap();
    assert!(!s.deployment_in_progress());
    assert_eq!(s.running, 3);
}
