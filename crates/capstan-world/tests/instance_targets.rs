//! Instance target groups (bridge networking on the EC2 launch type, AWS-SEMANTICS §5):
//! each task is registered as (its instance's EC2 id, its own dynamic host port), so
//! tasks sharing an instance are separate targets; deregistering one drains only it,
//! for the deregistration delay while busy, at once (after the routing lag) when idle.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use capstan_aws_api::{
    AwsErrorKind, Ecs, EcsTask, Elb, TargetHealth, TargetHealthState, TargetRef, TaskStatus,
};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, LaunchType, NetworkMode, ServiceSpec, World, WorldError,
};
use common::*;

/// One instance with room for four tasks, and a bridge-mode service of `desired` tasks
/// behind a target group (delay 300 s, routing lag 5 s).
fn bridge_world(desired: u32) -> (World, capstan_core::clock::VirtualClock) {
    let (w, c) = world(1);
    w.add_cluster(ClusterSpec {
        name: "default".into(),
        groups: vec![AutoScalingGroupSpec {
            desired: 1,
            ..AutoScalingGroupSpec::default()
        }],
    })
    .unwrap();
    w.add_service(ServiceSpec {
        launch_type: LaunchType::Ec2,
        network_mode: NetworkMode::Bridge,
        ..behind_lb(desired, 300, 5)
    })
    .unwrap();
    (w, c)
}

fn described(w: &World) -> Vec<EcsTask> {
    let arns: Vec<Arc<str>> = tasks(w).iter().map(|t| Arc::from(t.arn.as_str())).collect();
    ready(w.describe_tasks("default", &arns)).unwrap().0
}

fn instance_id(w: &World) -> String {
    w.cluster_state("default").unwrap().instances[0]
        .ec2_instance_id
        .clone()
}

fn health(w: &World) -> Vec<TargetHealth> {
    ready(w.describe_target_health(&tg())).unwrap()
}

fn state_of(w: &World, port: u16) -> Option<TargetHealthState> {
    health(w)
        .into_iter()
        .find(|h| h.target.port == port)
        .map(|h| h.state)
}

#[test]
fn bridge_tasks_report_host_ports_and_are_instance_targets() {
    let (w, _c) = bridge_world(3);
    let id = instance_id(&w);
    let ts = described(&w);
    assert_eq!(ts.len(), 3);
    let mut ports: Vec<u16> = ts.iter().flat_map(|t| t.host_ports.clone()).collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![32768, 32769, 32770], "one dynamic port each");
    for t in &ts {
        assert_eq!(t.private_ip, None, "no ENI of its own");
        assert_eq!(t.host_ports.len(), 1);
        assert!(t.container_instance.is_some());
    }
    // The container instance's EC2 id is what the target group knows the tasks by.
    let ci = ts[0].container_instance.as_deref().unwrap().to_owned();
    let (cis, _) = ready(w.describe_container_instances("default", &[ci])).unwrap();
    assert_eq!(cis[0].ec2_instance_id, id);
    let mut hs = health(&w);
    hs.sort_by_key(|h| h.target.port);
    let targets: Vec<(String, u16)> = hs
        .iter()
        .map(|h| (h.target.id.clone(), h.target.port))
        .collect();
    assert_eq!(
        targets,
        ports.iter().map(|p| (id.clone(), *p)).collect::<Vec<_>>()
    );
    assert!(hs.iter().all(|h| h.state == TargetHealthState::Healthy));
}

#[test]
fn deregistering_one_instance_target_drains_only_that_task() {
    let (w, c) = bridge_world(3);
    let id = instance_id(&w);
    let ts = described(&w);
    let (busy, idle, other) = (&ts[0], &ts[1], &ts[2]);
    let port = |t: &EcsTask| t.host_ports[0];
    w.set_work(&busy.arn, 2);
    let refs: Vec<TargetRef> = [busy, idle]
        .iter()
        .map(|t| TargetRef {
            id: id.clone(),
            port: port(t),
        })
        .collect();
    ready(w.deregister_targets(&tg(), &refs)).unwrap();
    assert_eq!(state_of(&w, port(busy)), Some(TargetHealthState::Draining));
    assert_eq!(state_of(&w, port(idle)), Some(TargetHealthState::Draining));
    assert_eq!(
        state_of(&w, port(other)),
        Some(TargetHealthState::Healthy),
        "the other task on the same instance stays registered"
    );
    // Idle: gone once the routing lag is over; busy: draining for the whole delay.
    run(&w, &c, 6);
    assert_eq!(state_of(&w, port(idle)), None);
    assert_eq!(state_of(&w, port(busy)), Some(TargetHealthState::Draining));
    run(&w, &c, 290);
    assert_eq!(state_of(&w, port(busy)), Some(TargetHealthState::Draining));
    run(&w, &c, 10);
    assert_eq!(state_of(&w, port(busy)), None, "unused after the delay");
    // The tasks keep running; registered again, a target starts over at initial.
    assert!(tasks(&w).iter().all(|t| t.status == TaskStatus::Running));
    ready(w.register_targets(
        &tg(),
        &[TargetRef {
            id: id.clone(),
            port: port(idle),
        }],
    ))
    .unwrap();
    assert_eq!(state_of(&w, port(idle)), Some(TargetHealthState::Initial));
    run(&w, &c, 10);
    assert_eq!(state_of(&w, port(idle)), Some(TargetHealthState::Healthy));
}

#[test]
fn an_instance_target_on_a_port_no_task_has_is_invalid() {
    let (w, _c) = bridge_world(2);
    let id = instance_id(&w);
    for target in [
        TargetRef {
            id: id.clone(),
            port: 8080,
        },
        TargetRef {
            id: "i-0000000000000000".into(),
            port: 32768,
        },
    ] {
        let e = ready(w.deregister_targets(&tg(), std::slice::from_ref(&target))).unwrap_err();
        assert_eq!(e.kind, AwsErrorKind::NotFound, "{target:?}");
        assert!(e.to_string().contains("InvalidTarget"), "{e}");
    }
    // Nothing was touched.
    assert!(
        health(&w)
            .iter()
            .all(|h| h.state == TargetHealthState::Healthy)
    );
}

#[test]
fn a_host_port_is_held_until_its_task_stops_then_reused() {
    let (w, c) = bridge_world(2);
    let gone = described(&w)
        .into_iter()
        .find(|t| t.host_ports == vec![32768])
        .unwrap()
        .arn;
    ready(w.stop_task("default", &gone, "test")).unwrap();
    run(&w, &c, 120);
    let ports = |w: &World| -> Vec<u16> {
        let mut p: Vec<u16> = described(w)
            .into_iter()
            .filter(|t| t.arn != gone)
            .flat_map(|t| t.host_ports)
            .collect();
        p.sort_unstable();
        p
    };
    // The replacement started while the stopping task still held 32768.
    assert_eq!(ports(&w), vec![32769, 32770]);
    // Now that it is STOPPED, the next task gets its port.
    ready(w.update_desired_count("default", "app", 3)).unwrap();
    run(&w, &c, 1);
    assert_eq!(ports(&w), vec![32768, 32769, 32770]);
}

#[test]
fn bridge_networking_needs_the_ec2_launch_type() {
    let (w, _c) = world(1);
    let e = w
        .add_service(ServiceSpec {
            network_mode: NetworkMode::Bridge,
            ..behind_lb(1, 300, 5)
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            WorldError::InvalidSpec {
                field: "network_mode",
                ..
            }
        ),
        "{e}"
    );
}
