//! Property tests of host removal planning over arbitrary clusters: a planned removal
//! only picks a host that may go (ACTIVE, unprotected, no protected, standalone or busy
//! task unless allowed), places every one of its tasks on another ACTIVE host within
//! that host's room and free ports, and keeps every service at its minimum or with room
//! to start replacements first; a refusal names every ACTIVE host; reservation stays
//! within 0–100 % whenever the hosts are not over-committed.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use capstan_core::Timestamp;
use capstan_core::hosts::{
    Host, HostOrder, HostStatus, HostTask, Resources, ServiceFloor, plan_given, plan_removal,
    reservation,
};
use capstan_core::model::TaskId;
use proptest::prelude::*;

const SERVICES: [&str; 3] = ["web", "worker", "api"];

#[derive(Debug, Clone)]
struct Cluster {
    hosts: Vec<Host>,
    tasks: Vec<HostTask>,
    services: Vec<ServiceFloor>,
}

fn status() -> impl Strategy<Value = HostStatus> {
    prop_oneof![
        6 => Just(HostStatus::Active),
        1 => Just(HostStatus::Draining),
        1 => Just(HostStatus::Other),
    ]
}

fn cluster() -> impl Strategy<Value = Cluster> {
    let host = (
        status(),
        1u32..=8,
        2u32..=16,
        0i64..1000,
        proptest::bool::weighted(0.1),
    );
    let task = (
        0usize..6,
        proptest::option::weighted(0.9, 0usize..3),
        1u32..=8,
        1u32..=16,
        proptest::option::weighted(0.2, prop_oneof![Just(80u16), Just(443u16)]),
        proptest::bool::weighted(0.9),
        proptest::bool::weighted(0.1),
        prop_oneof![4 => Just(0u32), 1 => 1u32..4],
    );
    let floor = (
        0u32..30,
        0u32..=100,
        100u32..=200,
        proptest::option::of(0u32..10),
    );
    (
        proptest::collection::vec(host, 1..6),
        proptest::collection::vec(task, 0..24),
        proptest::collection::vec(floor, 3),
    )
        .prop_map(|(hosts, tasks, floors)| {
            let mut hosts: Vec<Host> = hosts
                .into_iter()
                .enumerate()
                .map(|(i, (status, cpu, mem, launched, protected))| Host {
                    id: format!("i-{i}").into(),
                    status,
                    registered: Resources::new(cpu * 512, mem * 1000),
                    remaining: Resources::new(cpu * 512, mem * 1000),
                    launched_at: Some(Timestamp::from_second(launched).unwrap()),
                    protected,
                    used_ports: BTreeSet::new(),
                })
                .collect();
            let n = hosts.len();
            let mut out = Vec::new();
            for (i, (h, service, cpu, mem, port, running, protected, live)) in
                tasks.into_iter().enumerate()
            {
                let host = &mut hosts[h % n];
                let size = Resources::new(cpu * 128, mem * 250);
                // Only what the host has room for is on it (ECS places nothing else).
                let free_port = port.is_none_or(|p| !host.used_ports.contains(&p));
                if !host.remaining.holds(size) || !free_port {
                    continue;
                }
                host.remaining = Resources::new(
                    host.remaining.cpu - size.cpu,
                    host.remaining.memory - size.memory,
                );
                host.used_ports.extend(port);
                out.push(HostTask {
                    id: TaskId(format!("t{i}").into()),
                    host: Arc::clone(&host.id),
                    service: service.map(|s| SERVICES[s].into()),
                    size,
                    host_ports: port.into_iter().collect(),
                    running,
                    protected,
                    live_work: live,
                });
            }
            let services = floors
                .into_iter()
                .enumerate()
                .map(|(i, (desired, min, max, over))| ServiceFloor {
                    service: SERVICES[i].into(),
                    desired,
                    minimum_healthy_percent: min,
                    maximum_percent: max,
                    minimum_override: over,
                })
                .collect();
            Cluster {
                hosts,
                tasks: out,
                services,
            }
        })
}

fn order() -> impl Strategy<Value = HostOrder> {
    proptest::sample::select(HostOrder::ALL.to_vec())
}

proptest! {
    #[test]
    fn a_planned_removal_is_safe(c in cluster(), order in order(), allow_busy: bool) {
        let Ok(removal) = plan_removal(&c.hosts, &c.tasks, &c.services, order, allow_busy) else {
            return Ok(());
        };
        let host = c.hosts.iter().find(|h| h.id == removal.host).unwrap();
        prop_assert_eq!(host.status, HostStatus::Active);
        prop_assert!(!host.protected);
        let mine: Vec<&HostTask> = c.tasks.iter().filter(|t| t.host == host.id).collect();
        for t in &mine {
            prop_assert!(!t.protected, "{} is protected", t.id);
            prop_assert!(t.service.is_some(), "{} is standalone", t.id);
            prop_assert!(allow_busy || t.live_work == 0, "{} is busy", t.id);
        }
        // Every task placed once, on another ACTIVE host, within its room and ports.
        let moved: BTreeSet<&TaskId> = removal.moves.iter().map(|(t, _)| t).collect();
        let expected: BTreeSet<&TaskId> = mine.iter().map(|t| &t.id).collect();
        prop_assert_eq!(moved, expected);
        let mut room: BTreeMap<&str, (Resources, BTreeSet<u16>)> = c
            .hosts
            .iter()
            .map(|h| (&*h.id, (h.remaining, h.used_ports.clone())))
            .collect();
        for (task, to) in &removal.moves {
            let t = mine.iter().find(|t| t.id == *task).unwrap();
            let dest = c.hosts.iter().find(|h| h.id == *to).unwrap();
            prop_assert!(dest.id != host.id);
            prop_assert_eq!(dest.status, HostStatus::Active);
            let (free, ports) = room.get_mut(&**to).unwrap();
            prop_assert!(free.holds(t.size), "{} does not fit on {}", t.id, to);
            *free = Resources::new(free.cpu - t.size.cpu, free.memory - t.size.memory);
            for p in &t.host_ports {
                prop_assert!(ports.insert(*p), "port {} taken on {}", p, to);
            }
        }
        // Every service keeps its minimum, or ECS can start replacements first.
        for f in &c.services {
            let running = |t: &HostTask| t.running && t.service.as_deref() == Some(&*f.service);
            let here = mine.iter().filter(|t| running(t)).count();
            if here == 0 {
                continue;
            }
            let total = c.tasks.iter().filter(|t| running(t)).count();
            let elsewhere = u32::try_from(total - here).unwrap();
            let total = u32::try_from(total).unwrap();
            prop_assert!(
                elsewhere >= f.minimum() || f.maximum() > total,
                "{} drops to {} of {}", f.service, elsewhere, f.minimum()
            );
        }
    }

    #[test]
    fn hosts_given_go_together_safely(
        c in cluster(),
        picks in proptest::collection::vec(0usize..8, 0..6),
        limit in 0usize..4,
        allow_busy: bool,
    ) {
        let ids: Vec<String> = picks.iter().map(|i| format!("i-{i}")).collect();
        let given: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (ok, refused) = plan_given(&c.hosts, &c.tasks, &c.services, &given, allow_busy, limit);
        prop_assert!(ok.len() <= limit);
        let gone: BTreeSet<&str> = ok.iter().map(|r| &*r.host).collect();
        prop_assert_eq!(gone.len(), ok.len(), "a host accepted twice");
        for r in &refused {
            prop_assert!(!gone.contains(r.0.as_str()));
        }
        // Every task of every accepted host placed once, on an ACTIVE host that stays,
        // all of them together within each destination's room and free ports.
        let mut room: BTreeMap<&str, (Resources, BTreeSet<u16>)> = c
            .hosts
            .iter()
            .map(|h| (&*h.id, (h.remaining, h.used_ports.clone())))
            .collect();
        for r in &ok {
            let host = c.hosts.iter().find(|h| h.id == r.host).unwrap();
            prop_assert_eq!(host.status, HostStatus::Active);
            prop_assert!(!host.protected);
            let mine: BTreeSet<&TaskId> =
                c.tasks.iter().filter(|t| t.host == host.id).map(|t| &t.id).collect();
            let moved: BTreeSet<&TaskId> = r.moves.iter().map(|(t, _)| t).collect();
            prop_assert_eq!(moved, mine);
            for (task, to) in &r.moves {
                let t = c.tasks.iter().find(|t| t.id == *task).unwrap();
                prop_assert!(!t.protected && t.service.is_some());
                prop_assert!(allow_busy || t.live_work == 0);
                prop_assert!(!gone.contains(&**to), "{} moved to {}, which goes too", t.id, to);
                let dest = c.hosts.iter().find(|h| h.id == *to).unwrap();
                prop_assert_eq!(dest.status, HostStatus::Active);
                let (free, ports) = room.get_mut(&**to).unwrap();
                prop_assert!(free.holds(t.size), "{} does not fit on {}", t.id, to);
                *free = Resources::new(free.cpu - t.size.cpu, free.memory - t.size.memory);
                for p in &t.host_ports {
                    prop_assert!(ports.insert(*p), "port {} taken on {}", p, to);
                }
            }
        }
        // Every service keeps its minimum on the hosts that stay, or has room above
        // its desired count to start the replacements first.
        for f in &c.services {
            let of = |t: &HostTask| t.service.as_deref() == Some(&*f.service);
            let leaving = c.tasks.iter().filter(|t| t.running && of(t) && gone.contains(&*t.host)).count();
            if leaving == 0 {
                continue;
            }
            let stays = c.tasks.iter().filter(|t| t.running && of(t) && !gone.contains(&*t.host)).count();
            let all = c.tasks.iter().filter(|t| of(t)).count();
            prop_assert!(
                u32::try_from(stays).unwrap() >= f.minimum() || f.maximum() > u32::try_from(all).unwrap(),
                "{} drops to {} of {}", f.service, stays, f.minimum()
            );
        }
    }

    #[test]
    fn a_refusal_names_every_active_host(c in cluster(), order in order(), allow_busy: bool) {
        if let Err(refusal) = plan_removal(&c.hosts, &c.tasks, &c.services, order, allow_busy) {
            let named: BTreeSet<&str> = refusal.hosts.iter().map(|(h, _)| h.as_str()).collect();
            let active: BTreeSet<&str> = c
                .hosts
                .iter()
                .filter(|h| h.status == HostStatus::Active)
                .map(|h| &*h.id)
                .collect();
            prop_assert_eq!(named, active);
        }
    }

    #[test]
    fn reservation_stays_within_bounds(c in cluster()) {
        match reservation(&c.hosts) {
            Some(r) => {
                prop_assert!((0.0..=100.0).contains(&r.cpu), "{:?}", r);
                prop_assert!((0.0..=100.0).contains(&r.memory), "{:?}", r);
                prop_assert!(r.hosts >= 1);
            }
            None => prop_assert!(c.hosts.iter().all(|h| h.status != HostStatus::Active)),
        }
    }
}
