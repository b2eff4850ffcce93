//! Target groups, DEACTIVATING and the stop path (AWS-SEMANTICS §4 E11–E13, §5).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use capstan_aws_api::{AwsErrorKind, Ecs, Elb, TargetHealthState, TargetRef, TaskStatus};
use capstan_world::{Event, TaskInfo, World};
use common::*;

fn task(w: &World, arn: &str) -> Option<TaskInfo> {
    tasks(w).into_iter().find(|t| t.arn == arn)
}

fn health(w: &World, ip: &str) -> Option<TargetHealthState> {
    ready(w.describe_target_health(&tg()))
        .unwrap()
        .into_iter()
        .find(|h| h.target.id == ip)
        .map(|h| h.state)
}

/// A one-task service behind a load balancer, scaled to zero: the task's ARN and IP.
fn one_task_scaled_in(w: &World, busy: bool) -> (String, String) {
    w.add_service(behind_lb(1, 300, 5)).unwrap();
    let t = tasks(w).remove(0);
    if busy {
        w.set_work(&t.arn, 3);
    }
    ready(w.update_desired_count("default", "app", 0)).unwrap();
    (t.arn, t.ip)
}

#[test]
fn warm_tasks_are_healthy_targets_and_routable() {
    let (w, _c) = world(1);
    w.add_service(behind_lb(3, 300, 5)).unwrap();
    let hs = ready(w.describe_target_health(&tg())).unwrap();
    assert_eq!(hs.len(), 3);
    assert!(hs.iter().all(|h| h.state == TargetHealthState::Healthy));
    assert!(hs.iter().all(|h| h.target.port == 8080));
    assert!(tasks(&w).iter().all(|t| t.routable && t.accepting));
    assert_eq!(
        ready(w.deregistration_delay(&tg())).unwrap(),
        Duration::from_secs(300)
    );
    let e = ready(w.describe_target_health("arn:nope")).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
}

#[test]
fn new_task_registers_initial_then_healthy_and_routable_only_when_healthy() {
    let (w, c) = world(1);
    w.add_service(behind_lb(0, 300, 5)).unwrap();
    ready(w.update_desired_count("default", "app", 1)).unwrap();
    let t = tasks(&w).remove(0);
    assert!(!t.routable);
    assert_eq!(health(&w, &t.ip), None, "not registered while PROVISIONING");
    run(&w, &c, 48); // ACTIVATING starts at 80 % of the 60 s start-up
    assert_eq!(task(&w, &t.arn).unwrap().status, TaskStatus::Activating);
    assert_eq!(health(&w, &t.ip), Some(TargetHealthState::Initial));
    assert!(!task(&w, &t.arn).unwrap().routable);
    run(&w, &c, 10); // health_check_time 10 s
    assert_eq!(health(&w, &t.ip), Some(TargetHealthState::Healthy));
    assert!(task(&w, &t.arn).unwrap().routable);
}

#[test]
fn busy_task_drains_for_the_whole_delay_and_routes_during_the_lag() {
    let (w, c) = world(1);
    let t0 = now(&c);
    let (arn, ip) = one_task_scaled_in(&w, true);
    let t = task(&w, &arn).unwrap();
    assert_eq!(t.status, TaskStatus::Deactivating);
    assert_eq!(health(&w, &ip), Some(TargetHealthState::Draining));
    assert!(t.routable, "the load balancer still routes during the lag");
    assert!(t.accepting && !t.terminating);
    run(&w, &c, 4);
    assert!(task(&w, &arn).unwrap().routable);
    run(&w, &c, 1);
    assert!(!task(&w, &arn).unwrap().routable, "lag over");
    // Busy: draining for the deregistration delay.
    let ev = run(&w, &c, 294);
    assert!(ev.is_empty());
    assert_eq!(health(&w, &ip), Some(TargetHealthState::Draining));
    let ev = run(&w, &c, 1);
    let Some(Event::TaskSigterm { at, kill_at, .. }) = ev.first() else {
        panic!("SIGTERM expected: {ev:?}");
    };
    assert_eq!(secs_since(t0, *at), 300.0);
    assert_eq!(secs_since(t0, *kill_at), 330.0, "stop_timeout 30 s");
    assert_eq!(health(&w, &ip), None, "unused: gone from the group");
    let t = task(&w, &arn).unwrap();
    assert!(t.terminating && !t.accepting && !t.routable);
    // Still busy: SIGKILL at kill_at.
    let ev = run(&w, &c, 29);
    assert!(ev.is_empty());
    assert_eq!(w.work(&arn), Some(3), "the work last set");
    let ev = run(&w, &c, 1);
    assert!(matches!(&ev[..], [Event::TaskStopped { at, .. }] if secs_since(t0, *at) == 330.0));
    assert_eq!(task(&w, &arn).unwrap().status, TaskStatus::Deprovisioning);
    assert_eq!(w.work(&arn), Some(0), "containers gone: no work");
    run(&w, &c, 5);
    assert!(task(&w, &arn).is_none(), "STOPPED tasks leave tasks()");
    assert_eq!(w.work(&arn), Some(0), "still known while STOPPED");
    run(&w, &c, 3600);
    assert_eq!(w.work(&arn), None, "forgotten an hour after STOPPED");
    assert_eq!(
        w.work("arn:aws:ecs:eu-west-1:000000000000:task/default/nope"),
        None
    );
}

#[test]
fn idle_task_drains_only_for_the_routing_lag() {
    let (w, c) = world(1);
    let t0 = now(&c);
    let (arn, ip) = one_task_scaled_in(&w, false);
    let ev = run(&w, &c, 4);
    assert!(ev.is_empty());
    assert_eq!(health(&w, &ip), Some(TargetHealthState::Draining));
    let ev = run(&w, &c, 1);
    // Idle after the lag: unused, SIGTERM, and an idle task exits at once.
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(matches!(&ev[0], Event::TaskSigterm { at, .. } if secs_since(t0, *at) == 5.0));
    assert!(matches!(&ev[1], Event::TaskStopped { at, .. } if secs_since(t0, *at) == 5.0));
    assert_eq!(health(&w, &ip), None);
    assert_eq!(task(&w, &arn).unwrap().status, TaskStatus::Deprovisioning);
}

#[test]
fn becoming_idle_ends_draining_after_the_lag_and_exits_early_after_sigterm() {
    let (w, c) = world(1);
    let t0 = now(&c);
    let (arn, _ip) = one_task_scaled_in(&w, true);
    run(&w, &c, 20);
    w.set_work(&arn, 0);
    let ev = w.advance();
    assert!(matches!(&ev[0], Event::TaskSigterm { at, .. } if secs_since(t0, *at) == 20.0));
    assert!(matches!(&ev[1], Event::TaskStopped { .. }));

    // Busy at SIGTERM, done 7 s later: exits then, before SIGKILL.
    let (w, c) = world(1);
    let t0 = now(&c);
    let (arn, _ip) = one_task_scaled_in(&w, true);
    run(&w, &c, 300);
    assert!(task(&w, &arn).unwrap().terminating);
    run(&w, &c, 7);
    w.set_work(&arn, 0);
    let ev = w.advance();
    assert!(matches!(&ev[..], [Event::TaskStopped { at, .. }] if secs_since(t0, *at) == 307.0));
}

#[test]
fn without_a_target_group_stop_goes_straight_to_sigterm() {
    let (w, c) = world(1);
    w.add_service(plain(1)).unwrap();
    let t = tasks(&w).remove(0);
    w.set_work(&t.arn, 1);
    ready(w.update_desired_count("default", "app", 0)).unwrap();
    let ev = w.advance();
    assert!(matches!(&ev[..], [Event::TaskSigterm { .. }]));
    assert_eq!(task(&w, &t.arn).unwrap().status, TaskStatus::Stopping);
    let ev = run(&w, &c, 30);
    assert!(
        matches!(&ev[..], [Event::TaskStopped { .. }]),
        "SIGKILL at 30 s"
    );
}

#[test]
fn capstan_deregistered_target_drains_while_the_task_keeps_running() {
    let (w, c) = world(1);
    w.add_service(behind_lb(2, 300, 5)).unwrap();
    let t = tasks(&w).remove(0);
    w.set_work(&t.arn, 2);
    let target = TargetRef {
        id: t.ip.clone(),
        port: 8080,
    };
    ready(w.deregister_targets(&tg(), std::slice::from_ref(&target))).unwrap();
    assert_eq!(health(&w, &t.ip), Some(TargetHealthState::Draining));
    let now_t = task(&w, &t.arn).unwrap();
    assert_eq!(now_t.status, TaskStatus::Running);
    assert!(now_t.routable, "routing lag");
    run(&w, &c, 5);
    assert!(!task(&w, &t.arn).unwrap().routable);
    run(&w, &c, 100);
    assert_eq!(health(&w, &t.ip), Some(TargetHealthState::Draining), "busy");
    w.set_work(&t.arn, 0);
    assert_eq!(health(&w, &t.ip), None, "idle after the lag: unused");
    let after = task(&w, &t.arn).unwrap();
    assert_eq!(after.status, TaskStatus::Running, "the task stays RUNNING");
    assert!(w.advance().is_empty(), "no stop, no replacement");
    // Registering again starts over.
    ready(w.register_targets(&tg(), std::slice::from_ref(&target))).unwrap();
    assert_eq!(health(&w, &t.ip), Some(TargetHealthState::Initial));
    run(&w, &c, 10);
    assert_eq!(health(&w, &t.ip), Some(TargetHealthState::Healthy));
    assert!(task(&w, &t.arn).unwrap().routable);
    // Then StopTask after capstan drained it: no target, straight to SIGTERM.
    ready(w.deregister_targets(&tg(), std::slice::from_ref(&target))).unwrap();
    run(&w, &c, 5);
    assert_eq!(health(&w, &t.ip), None);
    ready(w.stop_task("default", &t.arn, "capstan scale-in")).unwrap();
    let ev = w.advance();
    assert!(matches!(&ev[0], Event::TaskSigterm { .. }));
    // Unknown targets are refused.
    let ghost = TargetRef {
        id: "10.9.9.9".into(),
        port: 8080,
    };
    let e = ready(w.register_targets(&tg(), &[ghost])).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
}

#[test]
fn draining_target_still_lists_until_the_delay_even_if_task_dies_busy() {
    // Delay shorter than stop path: the delay bounds draining even when busy.
    let (w, c) = world(1);
    w.add_service(behind_lb(1, 20, 5)).unwrap();
    let t = tasks(&w).remove(0);
    w.set_work(&t.arn, 1);
    ready(w.update_desired_count("default", "app", 0)).unwrap();
    let ev = run(&w, &c, 20);
    assert!(matches!(&ev[..], [Event::TaskSigterm { .. }]));
    let ev = run(&w, &c, 30);
    assert!(matches!(&ev[..], [Event::TaskStopped { .. }]));
}
