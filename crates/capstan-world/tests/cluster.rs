//! Container instances and EC2 Auto Scaling groups (AWS-SEMANTICS §6).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use capstan_aws_api::{
    AutoScaling, AwsErrorKind, ContainerInstanceStatus, DesiredStatus, Ecs, InstanceLifecycleState,
    LifecycleActionResult, TaskStatus,
};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, Event, HookSpec, HookTransition, LaunchType, ServiceSpec,
    World, WorldConfig,
};
use common::*;

fn group(desired: u32) -> AutoScalingGroupSpec {
    AutoScalingGroupSpec {
        desired,
        ..AutoScalingGroupSpec::default()
    }
}

fn cluster(w: &World, g: AutoScalingGroupSpec) {
    w.add_cluster(ClusterSpec {
        name: "default".into(),
        groups: vec![g],
    })
    .unwrap();
}

fn ec2(desired: u32) -> ServiceSpec {
    ServiceSpec {
        launch_type: LaunchType::Ec2,
        ..plain(desired)
    }
}

fn hook(name: &str, transition: HookTransition, secs: u64, default_continue: bool) -> HookSpec {
    HookSpec {
        name: name.into(),
        transition,
        heartbeat_timeout: Duration::from_secs(secs),
        default_continue,
    }
}

fn states(w: &World) -> Vec<(String, InstanceLifecycleState)> {
    ready(w.describe_group("asg"))
        .unwrap()
        .instances
        .into_iter()
        .map(|i| (i.instance_id, i.lifecycle_state))
        .collect()
}

fn host_of(w: &World, arn: &str) -> String {
    tasks(w)
        .into_iter()
        .find(|t| t.arn == arn)
        .and_then(|t| t.host)
        .unwrap()
}

#[test]
fn warm_cluster_places_tasks_spread_over_zones_and_tracks_reservation() {
    let (w, _c) = world(1);
    cluster(&w, group(2));
    let cs = w.cluster_state("default").unwrap();
    assert_eq!(cs.instances.len(), 2);
    assert!(
        cs.instances
            .iter()
            .all(|i| i.status == ContainerInstanceStatus::Active)
    );
    assert_ne!(cs.instances[0].zone, cs.instances[1].zone);
    assert_eq!(cs.groups[0].desired, 2);
    assert!(
        cs.groups[0]
            .instances
            .iter()
            .all(|i| i.lifecycle_state == InstanceLifecycleState::InService)
    );
    w.add_service(ec2(4)).unwrap();
    let cs = w.cluster_state("default").unwrap();
    assert_eq!(cs.instances[0].tasks.len(), 2);
    assert_eq!(cs.instances[1].tasks.len(), 2);
    assert_eq!(cs.cpu_reservation_percent, 50.0);
    let mem = 4.0 * 2048.0 * 100.0 / (2.0 * 7482.0);
    assert!((cs.memory_reservation_percent - mem).abs() < 1e-9);
    let arns = ready(w.list_container_instances("default", None)).unwrap();
    let (cis, failures) = ready(w.describe_container_instances("default", &arns)).unwrap();
    assert!(failures.is_empty());
    assert_eq!(cis[0].remaining_cpu, 4096 - 2048);
    assert_eq!(cis[0].running_tasks, 2);
}

#[test]
fn binpack_within_a_zone_and_unplaced_tasks_wait_for_a_new_instance() {
    let (w, c) = world_with(WorldConfig {
        zones: vec!["eu-west-1a".into()],
        rate_limits: false,
        ..WorldConfig::default()
    });
    cluster(&w, group(2));
    w.add_service(ec2(3)).unwrap();
    let cs = w.cluster_state("default").unwrap();
    assert_eq!(
        cs.instances
            .iter()
            .map(|i| i.tasks.len())
            .collect::<Vec<_>>(),
        vec![3, 0],
        "binpack fills one instance first"
    );
    // 3 per instance fit (memory 7482 / 2048): 8 wanted, 6 fit.
    ready(w.update_desired_count("default", "app", 8)).unwrap();
    let n = w.service_counts("default", "app").unwrap();
    assert_eq!((n.running, n.pending, n.unplaced), (3, 3, 2));
    let cs = w.cluster_state("default").unwrap();
    assert_eq!(cs.unplaced_tasks, 2);
    assert_eq!(cs.unplaced_memory, 4096);
    ready(w.set_desired_capacity("asg", 3)).unwrap();
    assert_eq!(
        states(&w).last().unwrap().1,
        InstanceLifecycleState::Pending
    );
    let ev = run(&w, &c, 180);
    assert!(ev.iter().any(|e| matches!(e, Event::InstanceActive { .. })));
    let n = w.service_counts("default", "app").unwrap();
    assert_eq!(n.unplaced, 0);
    assert_eq!(n.running + n.pending, 8);
    let e = ready(w.set_desired_capacity("asg", 11)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidParameter);
    let e = ready(w.set_desired_capacity("nope", 1)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
}

#[test]
fn draining_instance_gets_no_placements_and_replaces_tasks_keeping_min_healthy() {
    let (w, c) = world(1);
    cluster(&w, group(2));
    w.add_service(ServiceSpec {
        launch_type: LaunchType::Ec2,
        ..behind_lb(2, 10, 2)
    })
    .unwrap();
    let cs = w.cluster_state("default").unwrap();
    let (a, b) = (cs.instances[0].arn.clone(), cs.instances[1].arn.clone());
    let old = cs.instances[0].tasks[0].clone();
    let failures = ready(w.update_container_instances_state(
        "default",
        std::slice::from_ref(&a),
        ContainerInstanceStatus::Draining,
    ))
    .unwrap();
    assert!(failures.is_empty());
    // Replacement starts on the other instance; the old task keeps running.
    let n = w.service_counts("default", "app").unwrap();
    assert_eq!((n.running, n.pending), (2, 1));
    let new = tasks(&w)
        .into_iter()
        .find(|t| t.status.is_pending())
        .unwrap();
    assert_eq!(new.host.as_deref(), Some(b.as_str()));
    run(&w, &c, 59);
    let t_old = tasks(&w).into_iter().find(|t| t.arn == old).unwrap();
    assert_eq!(
        t_old.desired_status,
        DesiredStatus::Running,
        "min healthy 100 %"
    );
    run(&w, &c, 1);
    let t_old = tasks(&w).into_iter().find(|t| t.arn == old).unwrap();
    assert_eq!(
        t_old.status,
        TaskStatus::Deactivating,
        "replacement healthy: old goes"
    );
    // No new placements on the DRAINING instance.
    ready(w.update_desired_count("default", "app", 3)).unwrap();
    let newest = tasks(&w)
        .into_iter()
        .find(|t| t.status.is_pending())
        .unwrap();
    assert_eq!(newest.host.as_deref(), Some(b.as_str()));
    let e = ready(w.update_container_instances_state(
        "default",
        &vec![a.clone(); 11],
        ContainerInstanceStatus::Draining,
    ))
    .unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidParameter);
    let f = ready(w.update_container_instances_state(
        "default",
        &["ffff".into()],
        ContainerInstanceStatus::Active,
    ))
    .unwrap();
    assert_eq!(f[0].reason, "MISSING");
    let draining =
        ready(w.list_container_instances("default", Some(ContainerInstanceStatus::Draining)))
            .unwrap();
    assert_eq!(draining, vec![a]);
}

#[test]
fn pending_tasks_on_a_draining_instance_stop_at_once() {
    let (w, _c) = world_with(WorldConfig {
        zones: vec!["eu-west-1a".into()],
        rate_limits: false,
        ..WorldConfig::default()
    });
    cluster(&w, group(2));
    w.add_service(ec2(1)).unwrap();
    ready(w.update_desired_count("default", "app", 2)).unwrap();
    w.advance();
    let pending = tasks(&w)
        .into_iter()
        .find(|t| t.status.is_pending())
        .unwrap();
    let host = host_of(&w, &pending.arn);
    ready(w.update_container_instances_state(
        "default",
        std::slice::from_ref(&host),
        ContainerInstanceStatus::Draining,
    ))
    .unwrap();
    let ev = w.advance();
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::TaskStopped { arn, .. } if *arn == pending.arn))
    );
    assert!(
        !tasks(&w).iter().any(|t| t.arn == pending.arn),
        "STOPPED at once"
    );
}

#[test]
fn launch_hook_holds_pending_wait_until_completed_with_heartbeats() {
    let (w, c) = world(1);
    cluster(
        &w,
        AutoScalingGroupSpec {
            hooks: vec![hook("boot", HookTransition::Launching, 60, false)],
            ..group(1)
        },
    );
    ready(w.set_desired_capacity("asg", 2)).unwrap();
    let id = states(&w)[1].0.clone();
    run(&w, &c, 180);
    assert_eq!(states(&w)[1].1, InstanceLifecycleState::PendingWait);
    run(&w, &c, 50);
    ready(w.record_lifecycle_action_heartbeat("asg", "boot", &id)).unwrap();
    run(&w, &c, 50); // past the first timeout, within the renewed one
    assert_eq!(states(&w)[1].1, InstanceLifecycleState::PendingWait);
    ready(w.complete_lifecycle_action("asg", "boot", &id, LifecycleActionResult::Continue))
        .unwrap();
    assert_eq!(states(&w)[1].1, InstanceLifecycleState::InService);
    let ev = w.advance();
    assert!(matches!(&ev[..], [Event::InstanceActive { instance_id, .. }] if *instance_id == id));
    let e = ready(w.complete_lifecycle_action("asg", "boot", &id, LifecycleActionResult::Continue))
        .unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::Conflict, "not waiting any more");
    let e = ready(w.record_lifecycle_action_heartbeat("asg", "nohook", &id)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
}

#[test]
fn hook_timeout_applies_the_default_result() {
    let (w, c) = world(1);
    cluster(
        &w,
        AutoScalingGroupSpec {
            hooks: vec![hook("boot", HookTransition::Launching, 60, false)],
            termination_time: Duration::from_secs(30),
            ..group(0)
        },
    );
    ready(w.set_desired_capacity("asg", 1)).unwrap();
    let first = states(&w)[0].0.clone();
    run(&w, &c, 180 + 59);
    assert_eq!(states(&w)[0].1, InstanceLifecycleState::PendingWait);
    run(&w, &c, 1);
    // ABANDON: the launch fails, the instance terminates and the group tries again.
    let s = states(&w);
    assert_eq!(s[0], (first.clone(), InstanceLifecycleState::Terminating));
    assert_eq!(s[1].1, InstanceLifecycleState::Pending);
    let ev = run(&w, &c, 30);
    assert!(ev.iter().any(
        |e| matches!(e, Event::InstanceTerminated { instance_id, .. } if *instance_id == first)
    ));
    assert_eq!(states(&w).len(), 1);
}

#[test]
fn heartbeats_cannot_hold_an_instance_beyond_a_hundred_timeouts() {
    let (w, c) = world(1);
    cluster(
        &w,
        AutoScalingGroupSpec {
            hooks: vec![hook("boot", HookTransition::Launching, 30, true)],
            ..group(0)
        },
    );
    ready(w.set_desired_capacity("asg", 1)).unwrap();
    let id = states(&w)[0].0.clone();
    run(&w, &c, 180);
    for _ in 0..(3000 / 20 - 1) {
        run(&w, &c, 20);
        ready(w.record_lifecycle_action_heartbeat("asg", "boot", &id)).unwrap();
        assert_eq!(states(&w)[0].1, InstanceLifecycleState::PendingWait);
    }
    run(&w, &c, 20); // 3000 s = 100 × 30 s after the wait began
    assert_eq!(
        states(&w)[0].1,
        InstanceLifecycleState::InService,
        "CONTINUE"
    );
}

#[test]
fn terminate_hook_holds_terminating_wait_then_the_host_kills_its_tasks() {
    let (w, c) = world(1);
    cluster(
        &w,
        AutoScalingGroupSpec {
            hooks: vec![hook("drain", HookTransition::Terminating, 300, true)],
            ..group(2)
        },
    );
    w.add_service(ec2(2)).unwrap();
    ready(w.set_desired_capacity("asg", 1)).unwrap();
    let s = states(&w);
    let (victim, _) = s
        .iter()
        .find(|(_, st)| *st == InstanceLifecycleState::TerminatingWait)
        .unwrap()
        .clone();
    assert_eq!(s.len(), 2);
    run(&w, &c, 100);
    assert!(w.advance().is_empty());
    ready(w.complete_lifecycle_action("asg", "drain", &victim, LifecycleActionResult::Continue))
        .unwrap();
    let ev = w.advance();
    let killed: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, Event::TaskStopped { reason, .. } if reason.contains(&victim)))
        .collect();
    assert_eq!(killed.len(), 1, "its task dies with the host: {ev:?}");
    assert!(
        ev.iter().any(|e| matches!(e, Event::TaskCreated { .. })),
        "replaced"
    );
    let ev = run(&w, &c, 60);
    assert!(ev.iter().any(
        |e| matches!(e, Event::InstanceTerminated { instance_id, .. } if *instance_id == victim)
    ));
    assert_eq!(ready(w.describe_group("asg")).unwrap().instances.len(), 1);
}

#[test]
fn instance_protection_blocks_scale_in_but_not_manual_termination() {
    let (w, c) = world(1);
    cluster(&w, group(3));
    let ids: Vec<String> = states(&w).into_iter().map(|(i, _)| i).collect();
    ready(w.set_instance_protection("asg", &ids[..2], true)).unwrap();
    ready(w.set_desired_capacity("asg", 1)).unwrap();
    let s = states(&w);
    assert_eq!(
        s[2].1,
        InstanceLifecycleState::Terminating,
        "the unprotected one"
    );
    assert_eq!(s[0].1, InstanceLifecycleState::InService);
    assert_eq!(s[1].1, InstanceLifecycleState::InService);
    run(&w, &c, 60);
    // Both left are protected: desired stays 1, nothing terminates.
    let g = ready(w.describe_group("asg")).unwrap();
    assert_eq!((g.desired, g.instances.len()), (1, 2));
    ready(w.set_instance_protection("asg", &ids[1..2], false)).unwrap();
    assert_eq!(states(&w)[1].1, InstanceLifecycleState::Terminating);
    run(&w, &c, 60);
    // Manual termination ignores protection; without decrement the group replaces it.
    ready(w.terminate_instance(&ids[0], false)).unwrap();
    let s = states(&w);
    assert_eq!(s[0].1, InstanceLifecycleState::Terminating);
    assert_eq!(s[1].1, InstanceLifecycleState::Pending);
    run(&w, &c, 180);
    ready(w.set_desired_capacity("asg", 2)).unwrap();
    run(&w, &c, 180);
    let live: Vec<String> = states(&w).into_iter().map(|(i, _)| i).collect();
    ready(w.terminate_instance(&live[0], true)).unwrap();
    let g = ready(w.describe_group("asg")).unwrap();
    assert_eq!(g.desired, 1, "decremented, not replaced");
    assert_eq!(
        g.instances
            .iter()
            .filter(|i| i.lifecycle_state == InstanceLifecycleState::Pending)
            .count(),
        0
    );
    let e = ready(w.terminate_instance("i-nope", true)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
}

#[test]
fn decrement_below_min_is_refused() {
    let (w, _c) = world(1);
    cluster(&w, AutoScalingGroupSpec { min: 1, ..group(1) });
    let id = states(&w)[0].0.clone();
    let e = ready(w.terminate_instance(&id, true)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::InvalidParameter);
}

#[test]
fn managed_draining_holds_termination_until_tasks_moved() {
    let (w, c) = world(1);
    cluster(
        &w,
        AutoScalingGroupSpec {
            managed_draining: true,
            ..group(2)
        },
    );
    w.add_service(ec2(2)).unwrap();
    let cs = w.cluster_state("default").unwrap();
    let victim = cs.instances[0].ec2_instance_id.clone();
    let old = cs.instances[0].tasks[0].clone();
    ready(w.terminate_instance(&victim, true)).unwrap();
    assert_eq!(states(&w)[0].1, InstanceLifecycleState::TerminatingWait);
    let cs = w.cluster_state("default").unwrap();
    assert_eq!(cs.instances[0].status, ContainerInstanceStatus::Draining);
    // Replacement goes on the other instance; the old task stops once it runs.
    let ev = run(&w, &c, 60);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::TaskSigterm { arn, .. } if *arn == old))
    );
    assert!(
        !ev.iter().any(
            |e| matches!(e, Event::TaskStopped { reason, .. } if reason.contains("terminated"))
        ),
        "nothing killed by the host"
    );
    assert_eq!(states(&w)[0].1, InstanceLifecycleState::TerminatingWait);
    // The old task is STOPPED after deprovisioning (5 s): the instance may go.
    run(&w, &c, 5);
    assert_eq!(states(&w)[0].1, InstanceLifecycleState::Terminating);
    let ev = run(&w, &c, 60);
    assert!(ev.iter().any(
        |e| matches!(e, Event::InstanceTerminated { instance_id, .. } if *instance_id == victim)
    ));
    assert_eq!(states(&w).len(), 1);
    let n = w.service_counts("default", "app").unwrap();
    assert_eq!(n.running, 2);
}

#[test]
fn ec2_scale_in_takes_from_the_instance_with_most_tasks() {
    for seed in 0..10 {
        let (w, _c) = world_with(WorldConfig {
            seed,
            zones: vec!["eu-west-1a".into()],
            rate_limits: false,
        });
        cluster(&w, group(2));
        w.add_service(ec2(4)).unwrap(); // binpack: 3 on the first, 1 on the second
        let cs = w.cluster_state("default").unwrap();
        assert_eq!(cs.instances[0].tasks.len(), 3);
        let full = cs.instances[0].arn.clone();
        ready(w.update_desired_count("default", "app", 3)).unwrap();
        // The victim is DEPROVISIONING (still on its host) with desired STOPPED.
        let victim = tasks(&w)
            .into_iter()
            .find(|t| t.desired_status == DesiredStatus::Stopped)
            .unwrap();
        assert_eq!(victim.host.as_deref(), Some(full.as_str()), "seed {seed}");
    }
}

#[test]
fn group_scale_in_balances_zones_then_terminates_the_oldest() {
    let (w, c) = world(1);
    cluster(&w, group(3)); // one per zone
    ready(w.set_desired_capacity("asg", 4)).unwrap();
    run(&w, &c, 180);
    let g = ready(w.describe_group("asg")).unwrap();
    assert_eq!(
        g.instances[3].availability_zone,
        g.instances[0].availability_zone
    );
    ready(w.set_desired_capacity("asg", 3)).unwrap();
    let s = states(&w);
    assert_eq!(
        s[0].1,
        InstanceLifecycleState::Terminating,
        "oldest in the fullest zone"
    );
    assert!(
        s[1..]
            .iter()
            .all(|(_, st)| *st == InstanceLifecycleState::InService)
    );
}

/// The ARNs of the tasks of `services` on container instance `ci` that ECS keeps
/// running (desired RUNNING), sorted: what `ListTasks` by container instance answers.
fn live_on(w: &World, services: &[&str], ci: &str) -> Vec<String> {
    let mut arns: Vec<String> = services
        .iter()
        .flat_map(|s| w.tasks("default", s))
        .filter(|t| t.desired_status == DesiredStatus::Running && t.host.as_deref() == Some(ci))
        .map(|t| t.arn)
        .collect();
    arns.sort();
    arns
}

/// `list_instance_tasks` of `ci` (ARN or id), sorted.
fn listed_on(w: &World, ci: &str) -> Vec<String> {
    let mut arns: Vec<String> = ready(w.list_instance_tasks("default", ci))
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    arns.sort();
    arns
}

#[test]
fn list_instance_tasks_gives_each_instance_its_running_tasks_of_every_service() {
    let (w, c) = world(1);
    cluster(&w, group(2));
    w.add_service(ec2(2)).unwrap();
    w.add_service(ServiceSpec {
        name: "other".into(),
        ..ec2(2)
    })
    .unwrap();
    let services = ["app", "other"];
    let cis: Vec<String> = w
        .cluster_state("default")
        .unwrap()
        .instances
        .iter()
        .map(|i| i.arn.clone())
        .collect();
    assert_eq!(cis.len(), 2);
    // Pending at first, then running: listed either way, each on its own instance only.
    for secs in [0, 120] {
        run(&w, &c, secs);
        let mut all = Vec::new();
        for ci in &cis {
            let want = live_on(&w, &services, ci);
            assert!(!want.is_empty(), "each instance has tasks: {ci}");
            assert_eq!(listed_on(&w, ci), want, "by ARN, {ci} after {secs} s");
            let id = ci.rsplit('/').next().unwrap();
            assert_eq!(listed_on(&w, id), want, "by id, {id} after {secs} s");
            all.extend(want);
        }
        all.sort();
        let mut every: Vec<String> = services
            .iter()
            .flat_map(|s| w.tasks("default", s))
            .map(|t| t.arn)
            .collect();
        every.sort();
        assert_eq!(all, every, "tasks of both services, each on one instance");
    }
    assert!(
        tasks(&w).iter().all(|t| t.status == TaskStatus::Running),
        "running by now"
    );

    // A task told to stop leaves the list at once (it is still on its host while it
    // stops), and stays out once STOPPED; its replacement is listed where it lands.
    let victim = tasks(&w).into_iter().next().unwrap();
    let host = victim.host.clone().unwrap();
    ready(w.stop_task("default", &victim.arn, "bye")).unwrap();
    assert!(
        w.cluster_state("default")
            .unwrap()
            .instances
            .iter()
            .any(|i| i.arn == host && i.tasks.contains(&victim.arn)),
        "still on its host while stopping"
    );
    for secs in [0, 120] {
        run(&w, &c, secs);
        for ci in &cis {
            let listed = listed_on(&w, ci);
            assert!(!listed.contains(&victim.arn), "{ci} after {secs} s");
            assert_eq!(listed, live_on(&w, &services, ci));
        }
    }

    // An unknown container instance is refused (InvalidParameterException), as is an
    // unknown cluster (ClusterNotFoundException).
    for unknown in [
        "ffffffffffffffffffffffffffffffff",
        "arn:aws:ecs:eu-west-1:000000000000:container-instance/default/ffffffffffffffffffffffffffffffff",
        "nope",
    ] {
        let e = ready(w.list_instance_tasks("default", unknown)).unwrap_err();
        assert_eq!(e.kind, AwsErrorKind::InvalidParameter, "{unknown}: {e}");
        assert_eq!(e.operation, "ListTasks");
    }
    let e = ready(w.list_instance_tasks("elsewhere", &cis[0])).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::NotFound);
}
