//! Invariants under random operations: counts stay consistent, scale-in never stops a
//! protected task, events come in time order, and once nothing is protected the
//! service settles at its desired count.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::{ContainerInstanceStatus, DesiredStatus, Ecs, TaskStatus};
use capstan_core::clock::{Clock, VirtualClock};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, LaunchType, ServiceSpec, World, WorldConfig,
};
use common::*;
use jiff::Timestamp;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Desired(u32),
    Advance(u64),
    Protect(usize, u32),
    Release(usize),
    Work(usize, u32),
    Stop(usize),
    Drain(usize),
    Activate(usize),
    Deploy,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..10).prop_map(Op::Desired),
        4 => (1u64..300).prop_map(Op::Advance),
        2 => (0usize..16, 1u32..20).prop_map(|(i, m)| Op::Protect(i, m)),
        1 => (0usize..16).prop_map(Op::Release),
        2 => (0usize..16, 0u32..3).prop_map(|(i, n)| Op::Work(i, n)),
        1 => (0usize..16).prop_map(Op::Stop),
        1 => (0usize..4).prop_map(Op::Drain),
        1 => (0usize..4).prop_map(Op::Activate),
        1 => Just(Op::Deploy),
    ]
}

/// Live, protected tasks: ARN → protection end.
fn protected(w: &World) -> HashMap<String, Timestamp> {
    tasks(w)
        .into_iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .filter_map(|t| t.protected_until.map(|u| (t.arn, u)))
        .collect()
}

fn nth_task(w: &World, i: usize) -> Option<Arc<str>> {
    let ts = tasks(w);
    (!ts.is_empty()).then(|| Arc::from(ts[i % ts.len()].arn.as_str()))
}

fn nth_instance(w: &World, i: usize) -> Option<String> {
    let cs = w.cluster_state("default")?;
    (!cs.instances.is_empty()).then(|| cs.instances[i % cs.instances.len()].arn.clone())
}

/// Applies `op`; returns the task it released or stopped by hand, if any.
fn apply(w: &World, c: &VirtualClock, op: &Op) -> Option<Arc<str>> {
    match op {
        Op::Desired(n) => ready(w.update_desired_count("default", "app", *n)).unwrap(),
        Op::Advance(s) => c.advance(Duration::from_secs(*s)),
        Op::Protect(i, m) => {
            if let Some(a) = nth_task(w, *i) {
                ready(w.update_task_protection("default", &[a], Some(*m))).unwrap();
            }
        }
        Op::Release(i) => {
            let a = nth_task(w, *i)?;
            ready(w.update_task_protection("default", std::slice::from_ref(&a), None)).unwrap();
            return Some(a);
        }
        Op::Work(i, n) => {
            if let Some(a) = nth_task(w, *i) {
                w.set_work(&a, *n);
            }
        }
        Op::Stop(i) => {
            let a = nth_task(w, *i)?;
            ready(w.stop_task("default", &a, "test")).unwrap();
            return Some(a);
        }
        Op::Drain(i) | Op::Activate(i) => {
            if let Some(a) = nth_instance(w, *i) {
                let status = if matches!(op, Op::Drain(_)) {
                    ContainerInstanceStatus::Draining
                } else {
                    ContainerInstanceStatus::Active
                };
                ready(w.update_container_instances_state("default", &[a], status)).unwrap();
            }
        }
        Op::Deploy => w.start_deployment("default", "app").unwrap(),
    }
    None
}

fn check_counts(w: &World) -> Result<(), TestCaseError> {
    let ts = tasks(w);
    let n = w.service_counts("default", "app").unwrap();
    prop_assert_eq!((n.running + n.pending + n.stopping) as usize, ts.len());
    let running = ts
        .iter()
        .filter(|t| t.status == TaskStatus::Running)
        .count();
    prop_assert_eq!(n.running as usize, running);
    prop_assert!(ts.iter().all(|t| t.status != TaskStatus::Stopped));
    Ok(())
}

fn exercise(w: &World, c: &VirtualClock, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut last = c.now();
    // A list kept from one read to the next, as the simulator keeps it.
    let mut kept = Vec::new();
    for op in ops {
        let before = protected(w);
        let by_hand = apply(w, c, op);
        for e in w.advance() {
            prop_assert!(at(&e) >= last, "events in time order");
            last = at(&e);
        }
        check_counts(w)?;
        w.tasks_into("default", "app", &mut kept);
        prop_assert_eq!(&kept, &tasks(w), "tasks_into writes what tasks returns");
        let now = c.now();
        let live: Vec<String> = tasks(w)
            .into_iter()
            .filter(|t| t.desired_status == DesiredStatus::Running)
            .map(|t| t.arn)
            .collect();
        for (arn, until) in before {
            if until > now && by_hand.as_deref() != Some(arn.as_str()) {
                prop_assert!(live.contains(&arn), "protected task {} stopped", arn);
            }
        }
    }
    // Nothing protected, nothing busy, every host ACTIVE: the service settles.
    c.advance(Duration::from_secs(3600));
    w.advance();
    for t in tasks(w) {
        w.set_work(&t.arn, 0);
    }
    if let Some(cs) = w.cluster_state("default") {
        let arns: Vec<String> = cs.instances.into_iter().map(|i| i.arn).collect();
        for chunk in arns.chunks(10) {
            ready(w.update_container_instances_state(
                "default",
                chunk,
                ContainerInstanceStatus::Active,
            ))
            .unwrap();
        }
    }
    for _ in 0..4 {
        c.advance(Duration::from_secs(300));
        w.advance();
    }
    check_counts(w)?;
    let n = w.service_counts("default", "app").unwrap();
    prop_assert_eq!((n.running, n.pending, n.stopping), (n.desired, 0, 0));
    let s = ready(w.describe_service("default", "app")).unwrap();
    prop_assert!(!s.deployment_in_progress());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn fargate_service_stays_consistent(seed in 0u64..1000, ops in prop::collection::vec(op(), 1..40)) {
        let (w, c) = world(seed);
        w.add_service(behind_lb(3, 60, 5)).unwrap();
        exercise(&w, &c, &ops)?;
    }

    #[test]
    fn ec2_service_stays_consistent(seed in 0u64..1000, ops in prop::collection::vec(op(), 1..40)) {
        let (w, c) = world_with(WorldConfig { seed, rate_limits: false, ..WorldConfig::default() });
        w.add_cluster(ClusterSpec {
            name: "default".into(),
            groups: vec![AutoScalingGroupSpec { desired: 4, ..AutoScalingGroupSpec::default() }],
        }).unwrap();
        w.add_service(ServiceSpec { launch_type: LaunchType::Ec2, ..behind_lb(3, 60, 5) }).unwrap();
        exercise(&w, &c, &ops)?;
    }
}
