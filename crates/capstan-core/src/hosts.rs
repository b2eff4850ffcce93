//! EC2 cluster hosts: CPU and memory reservation, and which host may be removed.
//!
//! Pure functions over what an observation of an ECS cluster reads (its container
//! instances, the tasks on them, the services those belong to):
//!
//! - [`reservation`]: reserved / registered CPU and memory, per resource, over the
//!   ACTIVE hosts, as ECS's `CPUReservation` and `MemoryReservation` are defined.
//! - [`plan_removal`]: which host to remove, by a [`HostOrder`], and whether removing it
//!   is safe: every task on it must fit on the other ACTIVE hosts (CPU, memory, static
//!   host ports), and every service must keep at least its minimum healthy count while
//!   ECS moves its tasks. Hosts that are protected, run a protected task or a task with
//!   live sessions are never chosen (unless the caller allows busy hosts: a drain
//!   deadline is set). When no host can go, the [`Refusal`] says why, for the decision
//!   record.
//!
//! How ECS moves the tasks of a DRAINING host (AWS-SEMANTICS §6): no new placements on
//! it; its service tasks are replaced elsewhere within each service's
//! `minimumHealthyPercent` and `maximumPercent` — with room above the desired count
//! (`maximumPercent` > 100 %), the replacement starts before the old task stops, so the
//! service never drops below its minimum; without it, the old task stops first, and
//! the service keeps its minimum only if enough of its tasks run elsewhere. Standalone
//! tasks (not started by a service) are not moved at all: a host running one cannot be
//! emptied, so it is never chosen.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::model::TaskId;

/// CPU units (1024 = 1 vCPU) and memory (MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU units.
    pub cpu: u32,
    /// Memory, MiB.
    pub memory: u32,
}

impl Resources {
    /// `cpu` units and `memory` MiB.
    pub const fn new(cpu: u32, memory: u32) -> Self {
        Self { cpu, memory }
    }

    /// Whether `need` fits in `self` on both resources.
    pub fn holds(self, need: Resources) -> bool {
        need.cpu <= self.cpu && need.memory <= self.memory
    }

    fn minus(self, other: Resources) -> Resources {
        Resources::new(
            self.cpu.saturating_sub(other.cpu),
            self.memory.saturating_sub(other.memory),
        )
    }
}

/// A container instance's status, as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Takes new tasks.
    Active,
    /// Being emptied: takes no new task.
    Draining,
    /// Registering, deregistering, inactive or otherwise not placing tasks.
    Other,
}

/// One host of the cluster: a container instance and the EC2 instance behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The EC2 instance id.
    pub id: Arc<str>,
    /// The container instance's status.
    pub status: HostStatus,
    /// What the container instance registered.
    pub registered: Resources,
    /// What it has left after the tasks placed on it.
    pub remaining: Resources,
    /// When the instance launched, if known.
    pub launched_at: Option<Timestamp>,
    /// Whether the instance has Auto Scaling scale-in protection.
    pub protected: bool,
    /// Host ports taken on it (static port mappings of its tasks, and ports the agent
    /// reserves).
    pub used_ports: BTreeSet<u16>,
}

impl Host {
    /// What the tasks on it reserve.
    pub fn reserved(&self) -> Resources {
        self.registered.minus(self.remaining)
    }
}

/// One task on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTask {
    /// The task.
    pub id: TaskId,
    /// The EC2 instance id of the host it runs on.
    pub host: Arc<str>,
    /// The service that started it; `None` for a standalone task.
    pub service: Option<Arc<str>>,
    /// What it reserves.
    pub size: Resources,
    /// The static host ports it needs (dynamic ones, `hostPort` 0, are left out: any
    /// host has them).
    pub host_ports: Vec<u16>,
    /// Whether it is RUNNING (else pending: it counts for room, not for the minimum).
    pub running: bool,
    /// Whether it has ECS task scale-in protection.
    pub protected: bool,
    /// Live sessions and workloads reported for it.
    pub live_work: u32,
}

/// What a service must keep running while a host is emptied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFloor {
    /// The service's name.
    pub service: Arc<str>,
    /// Its desired count.
    pub desired: u32,
    /// Its deployment's `minimumHealthyPercent`.
    pub minimum_healthy_percent: u32,
    /// Its deployment's `maximumPercent`.
    pub maximum_percent: u32,
    /// A minimum running count set in capstan's config, which wins over the percent.
    pub minimum_override: Option<u32>,
}

impl ServiceFloor {
    /// The fewest running tasks it may have: the override, or
    /// ⌈`minimumHealthyPercent` × desired / 100⌉ (as ECS rounds it).
    pub fn minimum(&self) -> u32 {
        self.minimum_override.unwrap_or_else(|| {
            let n = u64::from(self.desired) * u64::from(self.minimum_healthy_percent);
            u32::try_from(n.div_ceil(100)).unwrap_or(u32::MAX)
        })
    }

    /// The most tasks ECS runs at once: ⌊`maximumPercent` × desired / 100⌋.
    pub fn maximum(&self) -> u32 {
        let n = u64::from(self.desired) * u64::from(self.maximum_percent);
        u32::try_from(n / 100).unwrap_or(u32::MAX)
    }
}

/// Reservation of a cluster over its ACTIVE hosts, percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reservation {
    /// Reserved / registered CPU × 100.
    pub cpu: f64,
    /// Reserved / registered memory × 100.
    pub memory: f64,
    /// ACTIVE hosts counted.
    pub hosts: u32,
}

/// The reservation over the ACTIVE hosts; `None` when they register no CPU or no
/// memory (no ACTIVE host: the value does not exist, which is not 0 %).
pub fn reservation(hosts: &[Host]) -> Option<Reservation> {
    let active: Vec<&Host> = hosts
        .iter()
        .filter(|h| h.status == HostStatus::Active)
        .collect();
    let sum = |f: fn(&Host) -> u32| active.iter().map(|h| u64::from(f(h))).sum::<u64>();
    let (cpu, memory) = (sum(|h| h.registered.cpu), sum(|h| h.registered.memory));
    if cpu == 0 || memory == 0 {
        return None;
    }
    let reserved_cpu = sum(|h| h.reserved().cpu);
    let reserved_memory = sum(|h| h.reserved().memory);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let pct = |part: u64, whole: u64| part as f64 * 100.0 / whole as f64;
    Some(Reservation {
        cpu: pct(reserved_cpu, cpu),
        memory: pct(reserved_memory, memory),
        hosts: u32::try_from(active.len()).unwrap_or(u32::MAX),
    })
}

/// The order in which hosts are tried for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostOrder {
    /// The host reserving the least (memory share, then CPU share, of its own
    /// registration) first: the fewest tasks to move.
    #[default]
    LeastReserved,
    /// Hosts running no task first, then as `least_reserved`.
    EmptyFirst,
    /// Earliest launched first.
    Oldest,
    /// Latest launched first.
    Newest,
}

impl HostOrder {
    /// Every order, as accepted in the config.
    pub const ALL: [HostOrder; 4] = [
        HostOrder::LeastReserved,
        HostOrder::EmptyFirst,
        HostOrder::Oldest,
        HostOrder::Newest,
    ];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostOrder::LeastReserved => "least_reserved",
            HostOrder::EmptyFirst => "empty_first",
            HostOrder::Oldest => "oldest",
            HostOrder::Newest => "newest",
        }
    }
}

impl fmt::Display for HostOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host order name that is not one of [`HostOrder::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown host order {0:?}; accepted: least_reserved, empty_first, oldest, newest")]
pub struct UnknownHostOrder(pub String);

impl FromStr for HostOrder {
    type Err = UnknownHostOrder;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostOrder::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownHostOrder(s.to_owned()))
    }
}

/// A removal found safe: the host, and where each of its tasks would go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The EC2 instance id of the host to remove.
    pub host: Arc<str>,
    /// Each task on it → the host it fits on.
    pub moves: Vec<(TaskId, Arc<str>)>,
}

/// Why a host may not go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Blocker {
    /// Not a container instance of the cluster (or not one of its hosts).
    Unknown,
    /// Not ACTIVE.
    NotActive,
    /// The instance has scale-in protection.
    InstanceProtected,
    /// It runs a task with ECS task scale-in protection.
    TaskProtected {
        /// The task.
        task: String,
    },
    /// It runs a task with live sessions or workloads (and no drain deadline is set).
    LiveWork {
        /// The task.
        task: String,
        /// Its live sessions and workloads.
        live: u32,
    },
    /// It runs a standalone task, which draining does not move.
    Standalone {
        /// The task.
        task: String,
    },
    /// A task does not fit on the other ACTIVE hosts.
    DoesNotFit {
        /// The task.
        task: String,
        /// What it needs.
        cpu: u32,
        /// What it needs, MiB.
        memory: u32,
    },
    /// A service would run fewer tasks than its minimum while the host drains.
    BelowMinimum {
        /// The service.
        service: String,
        /// Its running tasks on the other hosts.
        elsewhere: u32,
        /// Its minimum healthy count.
        minimum: u32,
    },
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Unknown => f.write_str("not a container instance of the cluster"),
            Blocker::NotActive => f.write_str("not ACTIVE"),
            Blocker::InstanceProtected => f.write_str("the instance has scale-in protection"),
            Blocker::TaskProtected { task } => write!(f, "task {task} is protected"),
            Blocker::LiveWork { task, live } => {
                write!(f, "task {task} has {live} live sessions or workloads")
            }
            Blocker::Standalone { task } => {
                write!(f, "standalone task {task} would not be moved by draining")
            }
            Blocker::DoesNotFit { task, cpu, memory } => write!(
                f,
                "task {task} ({cpu} CPU units, {memory} MiB) fits on no other ACTIVE host"
            ),
            Blocker::BelowMinimum {
                service,
                elsewhere,
                minimum,
            } => write!(
                f,
                "service {service} would run {elsewhere} tasks, below its minimum of {minimum}, with no room above its desired count to start replacements first"
            ),
        }
    }
}

/// No host can be removed: each candidate with the first reason it may not go, in the
/// order they were tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Host id → why not.
    pub hosts: Vec<(String, Blocker)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hosts.is_empty() {
            return f.write_str("no host to remove");
        }
        f.write_str("no host can be removed safely: ")?;
        for (i, (host, why)) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{host}: {why}")?;
        }
        Ok(())
    }
}

/// The host to remove, by `order`, and where its tasks would go; or why none may. With
/// `allow_busy` (a drain deadline is set), hosts running tasks with live work are
/// candidates too, after every idle one. Hosts that are not ACTIVE are never chosen.
pub fn plan_removal(
    hosts: &[Host],
    tasks: &[HostTask],
    services: &[ServiceFloor],
    order: HostOrder,
    allow_busy: bool,
) -> Result<Removal, Refusal> {
    let mut on: BTreeMap<&str, Vec<&HostTask>> = BTreeMap::new();
    for t in tasks {
        on.entry(&t.host).or_default().push(t);
    }
    let tasks_on = |h: &Host| on.get(&*h.id).map_or(&[][..], Vec::as_slice);
    let busy = |h: &Host| tasks_on(h).iter().any(|t| t.live_work > 0);
    let mut candidates: Vec<&Host> = hosts
        .iter()
        .filter(|h| h.status == HostStatus::Active)
        .collect();
    candidates.sort_by(|a, b| {
        busy(a)
            .cmp(&busy(b))
            .then_with(|| compare(order, a, b, tasks_on(a).len(), tasks_on(b).len()))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut refusal = Refusal { hosts: Vec::new() };
    for host in candidates {
        match check(host, hosts, tasks, &on, services, allow_busy) {
            Ok(moves) => {
                return Ok(Removal {
                    host: Arc::clone(&host.id),
                    moves,
                });
            }
            Err(why) => refusal.hosts.push((host.id.to_string(), why)),
        }
    }
    Err(refusal)
}

/// Which of `candidates` (host ids, in the order given) may go together, at most
/// `limit`: each is checked as [`plan_removal`] checks a host, against the cluster as it
/// will be once the hosts accepted before it are DRAINING (their tasks placed where
/// planned, counted there for room and for `maximumPercent`, but not as running: ECS
/// has yet to start them). A task planned onto a host that is accepted later moves on
/// with that host's tasks; each removal's moves are its own tasks, each at its final
/// place (never a host that goes). Gives the removals accepted, in order, and each candidate
/// refused with the first reason (one that is not in `hosts` is [`Blocker::Unknown`]).
/// Candidates past `limit` are not looked at.
pub fn plan_given(
    hosts: &[Host],
    tasks: &[HostTask],
    services: &[ServiceFloor],
    candidates: &[&str],
    allow_busy: bool,
    limit: usize,
) -> (Vec<Removal>, Vec<(String, Blocker)>) {
    let mut hosts = hosts.to_vec();
    let mut tasks = tasks.to_vec();
    let mut accepted: Vec<Removal> = Vec::new();
    let mut refused = Vec::new();
    for &id in candidates {
        if accepted.len() == limit {
            break;
        }
        if accepted.iter().any(|r| &*r.host == id) {
            continue;
        }
        let Some(at) = hosts.iter().position(|h| &*h.id == id) else {
            refused.push((id.to_owned(), Blocker::Unknown));
            continue;
        };
        let mut on: BTreeMap<&str, Vec<&HostTask>> = BTreeMap::new();
        for t in &tasks {
            on.entry(&t.host).or_default().push(t);
        }
        match check(&hosts[at], &hosts, &tasks, &on, services, allow_busy) {
            Err(why) => refused.push((id.to_owned(), why)),
            Ok(moves) => {
                hosts[at].status = HostStatus::Draining;
                let mut own = Vec::with_capacity(moves.len());
                for (task, to) in moves {
                    let Some(t) = tasks.iter_mut().find(|t| t.id == task) else {
                        continue;
                    };
                    if let Some(dest) = hosts.iter_mut().find(|h| h.id == to) {
                        dest.remaining = dest.remaining.minus(t.size);
                        dest.used_ports.extend(t.host_ports.iter().copied());
                    }
                    t.host = Arc::clone(&to);
                    t.running = false;
                    // A task planned onto this host by an earlier removal moves on: that
                    // removal's plan gets its final place (ECS never places a task on a
                    // DRAINING host).
                    match accepted
                        .iter_mut()
                        .flat_map(|r| r.moves.iter_mut())
                        .find(|(id, _)| *id == task)
                    {
                        Some(earlier) => earlier.1 = to,
                        None => own.push((task, to)),
                    }
                }
                accepted.push(Removal {
                    host: Arc::clone(&hosts[at].id),
                    moves: own,
                });
            }
        }
    }
    (accepted, refused)
}

/// `a` before `b` by `order` (ties left to the caller).
/// The ACTIVE `hosts` in the order [`plan_removal`] tries them (its `order`, then id,
/// with `tasks_on` giving a host's task count), as host ids.
pub fn removal_order(
    hosts: &[Host],
    tasks_on: impl Fn(&Host) -> usize,
    order: HostOrder,
) -> Vec<Arc<str>> {
    let mut active: Vec<&Host> = hosts
        .iter()
        .filter(|h| h.status == HostStatus::Active)
        .collect();
    active.sort_by(|a, b| {
        compare(order, a, b, tasks_on(a), tasks_on(b)).then_with(|| a.id.cmp(&b.id))
    });
    active.into_iter().map(|h| Arc::clone(&h.id)).collect()
}

fn compare(
    order: HostOrder,
    a: &Host,
    b: &Host,
    a_tasks: usize,
    b_tasks: usize,
) -> std::cmp::Ordering {
    // Share of its own registration, in parts per million: memory, then CPU.
    let share = |h: &Host| {
        let part = |r: u32, reg: u32| {
            (u64::from(r) * 1_000_000)
                .checked_div(u64::from(reg))
                .unwrap_or(0)
        };
        let reserved = h.reserved();
        (
            part(reserved.memory, h.registered.memory),
            part(reserved.cpu, h.registered.cpu),
        )
    };
    match order {
        HostOrder::LeastReserved => share(a).cmp(&share(b)),
        HostOrder::EmptyFirst => (a_tasks > 0)
            .cmp(&(b_tasks > 0))
            .then_with(|| share(a).cmp(&share(b))),
        // Unknown launch times last.
        HostOrder::Oldest => match (a.launched_at, b.launched_at) {
            (Some(x), Some(y)) => x.cmp(&y),
            (x, y) => x.is_none().cmp(&y.is_none()),
        },
        HostOrder::Newest => match (a.launched_at, b.launched_at) {
            (Some(x), Some(y)) => y.cmp(&x),
            (x, y) => x.is_none().cmp(&y.is_none()),
        },
    }
}

/// Whether `host` may go: where its tasks would go, or the first reason it may not.
fn check(
    host: &Host,
    hosts: &[Host],
    tasks: &[HostTask],
    on: &BTreeMap<&str, Vec<&HostTask>>,
    services: &[ServiceFloor],
    allow_busy: bool,
) -> Result<Vec<(TaskId, Arc<str>)>, Blocker> {
    if host.status != HostStatus::Active {
        return Err(Blocker::NotActive);
    }
    if host.protected {
        return Err(Blocker::InstanceProtected);
    }
    let mine = on.get(&*host.id).map_or(&[][..], Vec::as_slice);
    for t in mine {
        if t.protected {
            return Err(Blocker::TaskProtected {
                task: t.id.to_string(),
            });
        }
        if t.service.is_none() {
            return Err(Blocker::Standalone {
                task: t.id.to_string(),
            });
        }
        if t.live_work > 0 && !allow_busy {
            return Err(Blocker::LiveWork {
                task: t.id.to_string(),
                live: t.live_work,
            });
        }
    }
    // Every service keeps its minimum: enough of its tasks run elsewhere, or ECS can
    // start the replacements first (room above the desired count).
    let mut affected: BTreeSet<&str> = mine
        .iter()
        .filter(|t| t.running)
        .filter_map(|t| t.service.as_deref())
        .collect();
    for floor in services {
        if !affected.remove(&*floor.service) {
            continue;
        }
        let of = |t: &HostTask| t.service.as_deref() == Some(&*floor.service);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        // maximumPercent caps running and pending tasks together; only running ones
        // count for the minimum.
        let all = count(tasks.iter().filter(|t| of(t)).count());
        let running = count(tasks.iter().filter(|t| t.running && of(t)).count());
        let here = count(mine.iter().filter(|t| t.running && of(t)).count());
        let elsewhere = running - here.min(running);
        let minimum = floor.minimum();
        if elsewhere < minimum && floor.maximum() <= all {
            return Err(Blocker::BelowMinimum {
                service: floor.service.to_string(),
                elsewhere,
                minimum,
            });
        }
    }
    // Every task fits on the other ACTIVE hosts: largest first, each on the host with
    // the most memory left that holds it and has its ports free.
    let mut pool: Vec<(Arc<str>, Resources, BTreeSet<u16>)> = hosts
        .iter()
        .filter(|h| h.status == HostStatus::Active && h.id != host.id)
        .map(|h| (Arc::clone(&h.id), h.remaining, h.used_ports.clone()))
        .collect();
    let mut moving: Vec<&HostTask> = mine.to_vec();
    moving.sort_by(|a, b| {
        (b.size.memory, b.size.cpu)
            .cmp(&(a.size.memory, a.size.cpu))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut moves = Vec::with_capacity(moving.len());
    for t in moving {
        let best = pool
            .iter_mut()
            .filter(|(_, room, ports)| {
                room.holds(t.size) && t.host_ports.iter().all(|p| !ports.contains(p))
            })
            .max_by(|(a_id, a, _), (b_id, b, _)| {
                (a.memory, a.cpu)
                    .cmp(&(b.memory, b.cpu))
                    .then_with(|| b_id.cmp(a_id))
            });
        let Some((id, room, ports)) = best else {
            return Err(Blocker::DoesNotFit {
                task: t.id.to_string(),
                cpu: t.size.cpu,
                memory: t.size.memory,
            });
        };
        *room = room.minus(t.size);
        ports.extend(t.host_ports.iter().copied());
        moves.push((t.id.clone(), Arc::clone(id)));
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CPU: u32 = 4096;
    const MEM: u32 = 15_000;

    fn host(id: &str, launched: i64) -> Host {
        Host {
            id: id.into(),
            status: HostStatus::Active,
            registered: Resources::new(CPU, MEM),
            remaining: Resources::new(CPU, MEM),
            launched_at: Some(Timestamp::from_second(launched).unwrap()),
            protected: false,
            used_ports: BTreeSet::new(),
        }
    }

    fn task(id: &str, host: &str, service: &str, cpu: u32, memory: u32) -> HostTask {
        HostTask {
            id: TaskId(id.into()),
            host: host.into(),
            service: Some(service.into()),
            size: Resources::new(cpu, memory),
            host_ports: Vec::new(),
            running: true,
            protected: false,
            live_work: 0,
        }
    }

    /// Hosts with what `tasks` reserve taken off their remaining room.
    fn placed(mut hosts: Vec<Host>, tasks: &[HostTask]) -> Vec<Host> {
        for t in tasks {
            let h = hosts.iter_mut().find(|h| *h.id == *t.host).unwrap();
            h.remaining = h.remaining.minus(t.size);
            h.used_ports.extend(t.host_ports.iter().copied());
        }
        hosts
    }

    fn floor(service: &str, desired: u32, min: u32, max: u32) -> ServiceFloor {
        ServiceFloor {
            service: service.into(),
            desired,
            minimum_healthy_percent: min,
            maximum_percent: max,
            minimum_override: None,
        }
    }

    /// 3 hosts of 4096 CPU / 15,000 MiB; tasks of 1024 / 3,750 MiB: 3 on a, 2 on b,
    /// 1 on c.
    fn fixture() -> (Vec<Host>, Vec<HostTask>) {
        let tasks = vec![
            task("t1", "a", "web", 1024, 3750),
            task("t2", "a", "web", 1024, 3750),
            task("t3", "a", "worker", 1024, 3750),
            task("t4", "b", "web", 1024, 3750),
            task("t5", "b", "worker", 1024, 3750),
            task("t6", "c", "worker", 1024, 3750),
        ];
        let hosts = placed(vec![host("a", 1), host("b", 2), host("c", 3)], &tasks);
        (hosts, tasks)
    }

    #[test]
    fn reservation_is_exact_over_active_hosts() {
        let (mut hosts, _) = fixture();
        let r = reservation(&hosts).unwrap();
        // 6 × 1024 of 3 × 4096 CPU; 6 × 3750 of 3 × 15,000 MiB.
        assert!((r.cpu - 50.0).abs() < 1e-9, "{r:?}");
        assert!((r.memory - 50.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.hosts, 3);
        // A draining host is left out of both sums.
        hosts[0].status = HostStatus::Draining;
        let r = reservation(&hosts).unwrap();
        assert!((r.cpu - 37.5).abs() < 1e-9, "{r:?}");
        assert_eq!(r.hosts, 2);
        hosts.iter_mut().for_each(|h| h.status = HostStatus::Other);
        assert_eq!(reservation(&hosts), None);
    }

    #[test]
    fn least_reserved_goes_first_and_its_tasks_move() {
        let (hosts, tasks) = fixture();
        let services = [floor("web", 3, 50, 200), floor("worker", 3, 50, 200)];
        let r = plan_removal(&hosts, &tasks, &services, HostOrder::LeastReserved, false).unwrap();
        assert_eq!(&*r.host, "c");
        assert_eq!(r.moves.len(), 1);
        assert_ne!(&*r.moves[0].1, "c");
        let r = plan_removal(&hosts, &tasks, &services, HostOrder::Oldest, false).unwrap();
        assert_eq!(&*r.host, "a");
        let r = plan_removal(&hosts, &tasks, &services, HostOrder::Newest, false).unwrap();
        assert_eq!(&*r.host, "c");
    }

    #[test]
    fn given_hosts_go_together_only_while_the_rest_holds_their_tasks() {
        // 6 tasks of 1024 CPU: a and b alone each fit elsewhere; both together would
        // leave 6 tasks for c's 4 slots.
        let (hosts, tasks) = fixture();
        let services = [floor("web", 3, 0, 200), floor("worker", 3, 0, 200)];
        let (ok, refused) = plan_given(&hosts, &tasks, &services, &["b", "a"], false, 2);
        assert_eq!(ok.len(), 1, "{ok:?}");
        assert_eq!(&*ok[0].host, "b");
        assert!(ok[0].moves.iter().all(|(_, to)| &**to != "b"));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, "a");
        assert!(
            matches!(refused[0].1, Blocker::DoesNotFit { .. }),
            "{refused:?}"
        );
        // The limit: only the first candidate is looked at.
        let (ok, refused) = plan_given(&hosts, &tasks, &services, &["c", "b"], false, 1);
        assert_eq!((ok.len(), refused.len()), (1, 0));
        assert_eq!(&*ok[0].host, "c");
        // Unknown and repeated candidates.
        let (ok, refused) = plan_given(&hosts, &tasks, &services, &["x", "c", "c"], false, 3);
        assert_eq!(ok.len(), 1);
        assert_eq!(refused, vec![("x".to_owned(), Blocker::Unknown)]);
    }

    #[test]
    fn given_hosts_keep_each_service_at_its_minimum_together() {
        // web: 2 tasks on each of a, b, c (6, minimum 50 % = 3, maximum 100 %: no room
        // to start replacements first). a alone leaves 4 running; a then b would leave
        // 2, since a's tasks are not running anywhere yet.
        let mut tasks = Vec::new();
        for (i, h) in ["a", "a", "b", "b", "c", "c"].iter().enumerate() {
            tasks.push(task(&format!("w{i}"), h, "web", 512, 1000));
        }
        let hosts = placed(vec![host("a", 1), host("b", 2), host("c", 3)], &tasks);
        let services = [floor("web", 6, 50, 100)];
        let (ok, refused) = plan_given(&hosts, &tasks, &services, &["a", "b"], false, 2);
        assert_eq!(ok.len(), 1);
        assert_eq!(&*ok[0].host, "a");
        assert_eq!(
            refused,
            vec![(
                "b".to_owned(),
                Blocker::BelowMinimum {
                    service: "web".into(),
                    elsewhere: 2,
                    minimum: 3
                }
            )]
        );
        // Alone, b may go.
        let (ok, _) = plan_given(&hosts, &tasks, &services, &["b"], false, 2);
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn empty_hosts_first() {
        let (mut hosts, tasks) = fixture();
        hosts.push(host("d", 0));
        let r = plan_removal(&hosts, &tasks, &[], HostOrder::EmptyFirst, false).unwrap();
        assert_eq!(&*r.host, "d");
        assert!(r.moves.is_empty());
    }

    #[test]
    fn a_host_whose_tasks_do_not_fit_is_refused_and_says_why() {
        // Two hosts, each 3 of 4 slots of memory full: neither can take the other's 3.
        let tasks = vec![
            task("t1", "a", "web", 1024, 3750),
            task("t2", "a", "web", 1024, 3750),
            task("t3", "a", "web", 1024, 3750),
            task("t4", "b", "web", 1024, 3750),
            task("t5", "b", "web", 1024, 3750),
            task("t6", "b", "web", 1024, 3750),
        ];
        let hosts = placed(vec![host("a", 1), host("b", 2)], &tasks);
        let e = plan_removal(&hosts, &tasks, &[], HostOrder::LeastReserved, false).unwrap_err();
        assert_eq!(e.hosts.len(), 2);
        assert!(matches!(e.hosts[0].1, Blocker::DoesNotFit { .. }), "{e}");
        assert!(
            e.to_string().contains("fits on no other ACTIVE host"),
            "{e}"
        );
    }

    #[test]
    fn a_static_port_taken_elsewhere_blocks_the_move() {
        let mut t1 = task("t1", "a", "web", 256, 512);
        t1.host_ports = vec![80];
        let mut t2 = task("t2", "b", "web", 256, 512);
        t2.host_ports = vec![80];
        let tasks = vec![t1, t2];
        let hosts = placed(vec![host("a", 1), host("b", 2)], &tasks);
        let services = [floor("web", 2, 0, 100)];
        let e =
            plan_removal(&hosts, &tasks, &services, HostOrder::LeastReserved, false).unwrap_err();
        assert!(
            e.hosts
                .iter()
                .all(|(_, b)| matches!(b, Blocker::DoesNotFit { .. })),
            "{e}"
        );
    }

    #[test]
    fn the_seed_example_needs_ten_running_elsewhere() {
        // 20 desired at 50 % minimum, no room above desired (maximumPercent 100): a host
        // with 11 of its tasks leaves 9 < 10; one with 10 leaves 10.
        let big = |h: &str, n: usize, from: usize| -> Vec<HostTask> {
            (from..from + n)
                .map(|i| task(&format!("t{i}"), h, "api", 10, 10))
                .collect()
        };
        let mut tasks = big("a", 11, 0);
        tasks.extend(big("b", 9, 11));
        let hosts = placed(vec![host("a", 1), host("b", 2), host("c", 3)], &tasks);
        let services = [floor("api", 20, 50, 100)];
        let r = plan_removal(&hosts, &tasks, &services, HostOrder::Oldest, false).unwrap();
        // a (11 tasks) is refused: 9 elsewhere; b (9) may go: 11 elsewhere.
        assert_eq!(&*r.host, "b");
        // A per-service minimum of 12 refuses both hosts with tasks (c, empty, may go).
        let mut twelve = services.clone();
        twelve[0].minimum_override = Some(12);
        let two = placed(vec![host("a", 1), host("b", 2)], &tasks);
        let e = plan_removal(&two, &tasks, &twelve, HostOrder::Oldest, false).unwrap_err();
        assert_eq!(e.hosts.len(), 2, "{e}");
        assert_eq!(
            e.hosts[0].1,
            Blocker::BelowMinimum {
                service: "api".into(),
                elsewhere: 9,
                minimum: 12
            }
        );
        // With room above the desired count, ECS starts replacements first: allowed.
        let roomy = [floor("api", 20, 50, 200)];
        let r = plan_removal(&hosts, &tasks, &roomy, HostOrder::Oldest, false).unwrap();
        assert_eq!(&*r.host, "a");
    }

    #[test]
    fn protected_busy_and_standalone_hosts_are_never_chosen() {
        let (mut hosts, mut tasks) = fixture();
        hosts[2].protected = true; // c
        tasks[3].protected = true; // t4 on b
        tasks[0].live_work = 2; // t1 on a
        let e = plan_removal(&hosts, &tasks, &[], HostOrder::LeastReserved, false).unwrap_err();
        let why: BTreeMap<String, Blocker> = e.hosts.into_iter().collect();
        assert_eq!(why["c"], Blocker::InstanceProtected);
        assert_eq!(why["b"], Blocker::TaskProtected { task: "t4".into() });
        assert_eq!(
            why["a"],
            Blocker::LiveWork {
                task: "t1".into(),
                live: 2
            }
        );
        // A drain deadline allows the busy host.
        let r = plan_removal(&hosts, &tasks, &[], HostOrder::LeastReserved, true).unwrap();
        assert_eq!(&*r.host, "a");
        let (hosts, mut tasks) = fixture();
        tasks[5].service = None; // t6 on c: standalone
        let r = plan_removal(&hosts, &tasks, &[], HostOrder::LeastReserved, false).unwrap();
        assert_ne!(&*r.host, "c");
    }

    #[test]
    fn removal_order_follows_each_order_and_skips_hosts_not_active() {
        let (mut hosts, tasks) = fixture();
        hosts.push(host("d", 4));
        hosts.push(Host {
            status: HostStatus::Draining,
            ..host("e", 0)
        });
        let n = |h: &Host| tasks.iter().filter(|t| *t.host == *h.id).count();
        let ids = |order| -> Vec<String> {
            removal_order(&hosts, n, order)
                .iter()
                .map(|id| id.to_string())
                .collect()
        };
        // d is empty; c reserves the least of the others, a the most.
        assert_eq!(ids(HostOrder::LeastReserved), ["d", "c", "b", "a"]);
        assert_eq!(ids(HostOrder::EmptyFirst), ["d", "c", "b", "a"]);
        assert_eq!(ids(HostOrder::Oldest), ["a", "b", "c", "d"]);
        assert_eq!(ids(HostOrder::Newest), ["d", "c", "b", "a"]);
    }

    #[test]
    fn order_names_round_trip() {
        for o in HostOrder::ALL {
            assert_eq!(o.as_str().parse::<HostOrder>().unwrap(), o);
        }
        let e = "biggest".parse::<HostOrder>().unwrap_err();
        assert!(e.to_string().contains("least_reserved"), "{e}");
    }
}
