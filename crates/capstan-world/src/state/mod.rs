//! The world's mutable state and its clockwork: the entities (services, tasks, target
//! registrations, clusters, container instances, Auto Scaling groups), the timer
//! queue, and the catch-up loop that fires timers in time order and lets the
//! schedulers react after each one.
//!
//! Everything here runs under the [`World`](crate::World)'s lock and never reads a
//! clock: the caller passes "now" to [`State::catch_up`].

mod asg;
mod asg_api;
mod build;
mod ecs_api;
mod elb_api;
mod protection;
mod scheduler;
mod target;
mod task;
mod views;

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::{
    ContainerInstanceStatus, DeploymentRollout, DesiredStatus, InstanceLifecycleState, TaskStatus,
};
use capstan_core::clock;
use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use capstan_aws_api::{AwsError, AwsErrorKind};

use crate::error::WorldError;
use crate::faults::Faults;
use crate::limits::{ApiStats, Buckets, Category};
use crate::spec::{AutoScalingGroupSpec, ServiceSpec, TargetGroupSpec, WorldConfig};
use crate::view::{Event, ServiceCounts};

/// The Region in every ARN the world makes.
pub(crate) const REGION: &str = "eu-west-1";
/// The account in every ARN the world makes.
pub(crate) const ACCOUNT: &str = "000000000000";
/// How long a STOPPED task stays visible to `DescribeTasks` and `ListTasks` (AWS keeps
/// stopped tasks for at least an hour).
const STOPPED_RETENTION: Duration = Duration::from_secs(3600);
/// The longest managed draining holds a terminating instance (AWS-SEMANTICS §6).
const MANAGED_DRAIN_MAX: Duration = Duration::from_secs(48 * 3600);
/// The longest any lifecycle hook may hold an instance (AWS-SEMANTICS §6).
const HOOK_WAIT_MAX: Duration = Duration::from_secs(48 * 3600);

/// A task's registration in its service's target group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Target {
    /// The port it is registered on.
    pub(crate) port: u16,
    /// Registration number (a re-registration gets a new one, invalidating old timers).
    pub(crate) reg: u64,
    /// Where the registration is.
    pub(crate) phase: TargetPhase,
}

/// The state of a registered target (`unused` is the absence of a [`Target`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TargetPhase {
    /// Registered, health checks not yet passed.
    Initial,
    /// Receives new requests.
    Healthy,
    /// Deregistering: new requests still arrive until `routing_until`; unused at
    /// `drain_until` at the latest.
    Draining {
        /// End of the routing lag.
        routing_until: Timestamp,
        /// End of the deregistration delay.
        drain_until: Timestamp,
    },
}

/// One ECS task.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    /// Unique for the world's life (slots are reused, uids never).
    pub(crate) uid: u64,
    /// The id part of the ARN (32 hex digits).
    pub(crate) id: String,
    /// Task ARN (shared with what the API returns).
    pub(crate) arn: Arc<str>,
    /// Service index.
    pub(crate) service: usize,
    /// Serial of the deployment that started it.
    pub(crate) deployment: u64,
    /// `lastStatus`.
    pub(crate) status: TaskStatus,
    /// `desiredStatus`.
    pub(crate) desired: DesiredStatus,
    /// Zone index.
    pub(crate) zone: usize,
    /// Instance index (EC2 launch type).
    pub(crate) host: Option<usize>,
    /// Private IP (shared with what the API returns; awsvpc tasks report it, bridge
    /// tasks have none of their own).
    pub(crate) ip: Arc<str>,
    /// The host port its container port is mapped to (bridge networking on a host).
    pub(crate) host_port: Option<u16>,
    /// Created.
    pub(crate) created_at: Timestamp,
    /// Reached RUNNING.
    pub(crate) started_at: Option<Timestamp>,
    /// Told to stop.
    pub(crate) stopping_at: Option<Timestamp>,
    /// Reached STOPPED.
    pub(crate) stopped_at: Option<Timestamp>,
    /// `stoppedReason`.
    pub(crate) stopped_reason: Option<String>,
    /// Scale-in protection until (only while in the future).
    pub(crate) protected_until: Option<Timestamp>,
    /// Work it holds now.
    pub(crate) in_flight: u32,
    /// Target group registration.
    pub(crate) target: Option<Target>,
    /// SIGKILL time while STOPPING.
    pub(crate) kill_at: Option<Timestamp>,
    /// CPU units reserved.
    pub(crate) cpu: u32,
    /// Memory reserved, MiB.
    pub(crate) memory: u32,
}

impl Task {
    /// Still meant to run (not yet told to stop).
    pub(crate) fn live(&self) -> bool {
        self.desired == DesiredStatus::Running
    }

    /// Protected from scale-in at `now`.
    pub(crate) fn protected(&self, now: Timestamp) -> bool {
        self.protected_until.is_some_and(|u| u > now)
    }
}

/// One deployment of a service.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    /// Deployment id (`ecs-svc/…`).
    pub(crate) id: String,
    /// Serial, stamped on its tasks.
    pub(crate) serial: u64,
    /// Rollout state.
    pub(crate) rollout: DeploymentRollout,
}

/// One ECS service.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    /// Its spec.
    pub(crate) spec: ServiceSpec,
    /// Cluster index.
    pub(crate) cluster: usize,
    /// Service ARN.
    pub(crate) arn: String,
    /// Its name (shared with what the API returns).
    pub(crate) name: Arc<str>,
    /// `desiredCount`.
    pub(crate) desired: u32,
    /// Slots of its tasks not yet STOPPED, in creation order.
    pub(crate) tasks: Vec<usize>,
    /// Slots of its STOPPED tasks still visible.
    pub(crate) stopped: Vec<usize>,
    /// Deployments, newest (PRIMARY) first; never empty.
    pub(crate) deployments: Vec<Deployment>,
    /// Tasks wanted but not placed at the last scheduling.
    pub(crate) unplaced: u32,
    /// Target group index.
    pub(crate) target_group: Option<usize>,
}

/// One target group.
#[derive(Debug, Clone)]
pub(crate) struct TargetGroup {
    /// Its spec.
    pub(crate) spec: TargetGroupSpec,
    /// The service registering its tasks in it.
    pub(crate) service: usize,
}

/// One ECS cluster.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// Name.
    pub(crate) name: String,
    /// ARN.
    pub(crate) arn: String,
    /// Service indexes.
    pub(crate) services: Vec<usize>,
    /// Group indexes.
    pub(crate) groups: Vec<usize>,
    /// Instance indexes with a registered container instance (ACTIVE or DRAINING), in
    /// registration order.
    pub(crate) hosts: Vec<usize>,
}

/// A registered ECS container instance.
#[derive(Debug, Clone)]
pub(crate) struct ContainerInst {
    /// ARN.
    pub(crate) arn: String,
    /// Status.
    pub(crate) status: ContainerInstanceStatus,
    /// Registered.
    pub(crate) registered_at: Timestamp,
    /// CPU units registered.
    pub(crate) registered_cpu: u32,
    /// Memory registered, MiB.
    pub(crate) registered_memory: u32,
    /// CPU reserved by tasks on it not yet STOPPED.
    pub(crate) reserved_cpu: u32,
    /// Memory reserved by tasks on it not yet STOPPED.
    pub(crate) reserved_memory: u32,
}

/// A lifecycle hook an instance is waiting on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HookWait {
    /// Hook index in the group's spec.
    pub(crate) hook: usize,
    /// When the heartbeat timeout passes.
    pub(crate) deadline: Timestamp,
    /// The latest the wait may last (min(48 h, 100 × heartbeat) from its start).
    pub(crate) limit: Timestamp,
}

/// One EC2 instance of an Auto Scaling group.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    /// EC2 instance id.
    pub(crate) id: String,
    /// Group index.
    pub(crate) group: usize,
    /// Cluster index.
    pub(crate) cluster: usize,
    /// Zone index.
    pub(crate) zone: usize,
    /// Lifecycle state.
    pub(crate) lifecycle: InstanceLifecycleState,
    /// Launched.
    pub(crate) launched_at: Timestamp,
    /// Instance scale-in protection.
    pub(crate) protected: bool,
    /// Its container instance once registered.
    pub(crate) ci: Option<ContainerInst>,
    /// Slots of tasks on it not yet STOPPED.
    pub(crate) tasks: Vec<usize>,
    /// Lifecycle hooks it waits on.
    pub(crate) waits: Vec<HookWait>,
    /// Managed draining holds its termination until this instant (or its tasks are
    /// gone).
    pub(crate) drain_until: Option<Timestamp>,
}

/// One Auto Scaling group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Its spec (min and max are the group's current bounds).
    pub(crate) spec: AutoScalingGroupSpec,
    /// Cluster index.
    pub(crate) cluster: usize,
    /// Desired capacity.
    pub(crate) desired: u32,
    /// Instance indexes not yet terminated, in launch order.
    pub(crate) instances: Vec<usize>,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TimerKind {
    /// A starting task moves on to `to`.
    Startup {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
        /// The next status.
        to: TaskStatus,
    },
    /// A target's health checks pass.
    TargetHealthy {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
        /// Registration number.
        reg: u64,
    },
    /// A draining target's routing lag ends.
    RoutingLagEnd {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
        /// Registration number.
        reg: u64,
    },
    /// A draining target's deregistration delay ends.
    DrainEnd {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
        /// Registration number.
        reg: u64,
    },
    /// SIGKILL for a STOPPING task.
    Kill {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
    },
    /// A DEPROVISIONING task becomes STOPPED.
    Deprovisioned {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
    },
    /// A task's protection lapses.
    ProtectionEnd {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
    },
    /// A STOPPED task is forgotten.
    Forget {
        /// Task slot.
        slot: usize,
        /// Task uid.
        uid: u64,
    },
    /// A Pending instance finished launching.
    InstanceLaunched {
        /// Instance index.
        inst: usize,
    },
    /// A lifecycle hook's heartbeat timeout (valid if the wait still has `deadline`).
    HookTimeout {
        /// Instance index.
        inst: usize,
        /// Hook index.
        hook: usize,
        /// The deadline this timer was set for.
        deadline: Timestamp,
    },
    /// Managed draining's 48 h limit, or the end of a drain check.
    DrainLimit {
        /// Instance index.
        inst: usize,
    },
    /// A Terminating instance is gone.
    InstanceGone {
        /// Instance index.
        inst: usize,
    },
}

/// A scheduled [`TimerKind`].
#[derive(Debug, Clone, Copy)]
struct Timer {
    /// When it fires.
    at: Timestamp,
    /// Insertion number: timers at the same instant fire in insertion order.
    seq: u64,
    /// What it does.
    kind: TimerKind,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The whole mutable world.
#[derive(Debug)]
pub(crate) struct State {
    /// Settings.
    pub(crate) config: WorldConfig,
    /// `config.zones`, shared with what the API returns.
    zone_names: Vec<Arc<str>>,
    /// The instant the world has caught up to.
    pub(crate) now: Timestamp,
    /// The world's random choices (ids, arbitrary victims).
    pub(crate) rng: ChaCha8Rng,
    /// Draws of injected faults (separate, so faults do not change the world's ids).
    pub(crate) fault_rng: ChaCha8Rng,
    /// Pending timers.
    timers: BinaryHeap<Reverse<Timer>>,
    /// Next timer insertion number.
    timer_seq: u64,
    /// Events not yet returned by `advance`.
    pub(crate) events: Vec<Event>,
    /// Something changed since the schedulers last ran.
    dirty: bool,
    /// Bumped on every change a view could show.
    pub(crate) generation: u64,
    /// The service counts last computed: (generation then, service index, counts).
    /// Valid while the generation stays the same.
    pub(crate) counts_cache: Option<(u64, usize, ServiceCounts)>,
    /// Task slots (`None` = free).
    pub(crate) tasks: Vec<Option<Task>>,
    /// Free task slots.
    free: Vec<usize>,
    /// Task id (its 32 hex digits as a number) → slot.
    task_ids: HashMap<TaskKey, usize, BuildHasherDefault<IdHasher>>,
    /// Next task uid.
    next_uid: u64,
    /// Next task IP number.
    next_ip: u32,
    /// Next target registration number.
    next_reg: u64,
    /// Next deployment serial.
    pub(crate) next_deployment: u64,
    /// Clusters.
    pub(crate) clusters: Vec<Cluster>,
    /// Services.
    pub(crate) services: Vec<Service>,
    /// Target groups.
    pub(crate) target_groups: Vec<TargetGroup>,
    /// Every instance ever launched.
    pub(crate) instances: Vec<Instance>,
    /// EC2 instance id → index.
    pub(crate) instance_ids: HashMap<String, usize>,
    /// Container instance id (32 hex) → instance index.
    pub(crate) container_ids: HashMap<String, usize>,
    /// Auto Scaling groups.
    pub(crate) groups: Vec<Group>,
    /// Rate-limit buckets.
    pub(crate) buckets: Buckets,
    /// Calls per operation.
    pub(crate) stats: ApiStats,
    /// Injected faults.
    pub(crate) faults: Faults,
}

impl State {
    /// An empty world at `now`.
    pub(crate) fn new(config: WorldConfig, now: Timestamp) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let fault_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_fa17_5eed_fa17);
        let zone_names = config.zones.iter().map(|z| Arc::from(z.as_str())).collect();
        Self {
            config,
            zone_names,
            now,
            rng,
            fault_rng,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            events: Vec::new(),
            dirty: false,
            generation: 0,
            counts_cache: None,
            tasks: Vec::new(),
            free: Vec::new(),
            task_ids: HashMap::default(),
            next_uid: 1,
            next_ip: 1,
            next_reg: 1,
            next_deployment: 1,
            clusters: Vec::new(),
            services: Vec::new(),
            target_groups: Vec::new(),
            instances: Vec::new(),
            instance_ids: HashMap::new(),
            container_ids: HashMap::new(),
            groups: Vec::new(),
            buckets: Buckets::new(now),
            stats: ApiStats::default(),
            faults: Faults::default(),
        }
    }

    /// Fires every timer due by `now` in time order (letting the schedulers react after
    /// each), then moves the world to `now`. A clock that went backwards is ignored.
    pub(crate) fn catch_up(&mut self, now: Timestamp) {
        while let Some(Reverse(next)) = self.timers.peek() {
            if next.at > now {
                break;
            }
            let Some(Reverse(timer)) = self.timers.pop() else {
                break;
            };
            self.now = self.now.max(timer.at);
            self.fire(timer.kind);
            self.settle();
        }
        self.now = self.now.max(now);
        self.settle();
    }

    /// Records that something changed: the schedulers run again and views are stale.
    pub(crate) fn changed(&mut self) {
        self.dirty = true;
        self.generation += 1;
    }

    /// Runs the service schedulers, the groups and the instance waits until nothing
    /// changes (bounded, so a bug cannot spin forever).
    pub(crate) fn settle(&mut self) {
        let mut rounds = 0;
        while self.dirty && rounds < 32 {
            self.dirty = false;
            rounds += 1;
            for s in 0..self.services.len() {
                self.schedule_service(s);
            }
            for g in 0..self.groups.len() {
                self.reconcile_group(g);
            }
            self.check_terminating_waits();
        }
    }

    /// Schedules `kind` at `at` (never before now).
    pub(crate) fn at(&mut self, at: Timestamp, kind: TimerKind) {
        let at = at.max(self.now);
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            kind,
        }));
    }

    /// Schedules `kind` `after` from now.
    pub(crate) fn after(&mut self, after: Duration, kind: TimerKind) {
        self.at(clock::add(self.now, after), kind);
    }

    /// Fires one timer.
    fn fire(&mut self, kind: TimerKind) {
        match kind {
            TimerKind::Startup { slot, uid, to } => {
                if self.task_is(slot, uid) {
                    self.on_startup(slot, to);
                }
            }
            TimerKind::TargetHealthy { slot, uid, reg } => {
                if self.task_is(slot, uid) {
                    self.on_target_healthy(slot, reg);
                }
            }
            TimerKind::RoutingLagEnd { slot, uid, reg } => {
                if self.task_is(slot, uid) {
                    self.on_routing_lag_end(slot, reg);
                }
            }
            TimerKind::DrainEnd { slot, uid, reg } => {
                if self.task_is(slot, uid) {
                    self.on_drain_end(slot, reg);
                }
            }
            TimerKind::Kill { slot, uid } => {
                if self.task_is(slot, uid) {
                    self.on_kill(slot);
                }
            }
            TimerKind::Deprovisioned { slot, uid } => {
                if self.task_is(slot, uid) {
                    self.on_deprovisioned(slot);
                }
            }
            TimerKind::ProtectionEnd { slot, uid } => {
                if self.task_is(slot, uid) {
                    self.on_protection_end(slot);
                }
            }
            TimerKind::Forget { slot, uid } => {
                if self.task_is(slot, uid) {
                    self.forget(slot);
                }
            }
            TimerKind::InstanceLaunched { inst } => self.on_instance_launched(inst),
            TimerKind::HookTimeout {
                inst,
                hook,
                deadline,
            } => self.on_hook_timeout(inst, hook, deadline),
            TimerKind::DrainLimit { inst } => self.changed_if_waiting(inst),
            TimerKind::InstanceGone { inst } => self.on_instance_gone(inst),
        }
    }

    /// Whether `slot` holds the task with `uid`.
    fn task_is(&self, slot: usize, uid: u64) -> bool {
        self.task(slot).is_some_and(|t| t.uid == uid)
    }

    /// The task in `slot`.
    pub(crate) fn task(&self, slot: usize) -> Option<&Task> {
        self.tasks.get(slot).and_then(Option::as_ref)
    }

    /// The task in `slot`, mutably.
    pub(crate) fn task_mut(&mut self, slot: usize) -> Option<&mut Task> {
        self.tasks.get_mut(slot).and_then(Option::as_mut)
    }

    /// Stores a new task, reusing a free slot.
    fn insert_task(&mut self, task: Task) -> usize {
        let slot = match self.free.pop() {
            Some(slot) if slot < self.tasks.len() => slot,
            _ => {
                self.tasks.push(None);
                self.tasks.len() - 1
            }
        };
        if let Some(key) = task_key(&task.id) {
            self.task_ids.insert(key, slot);
        }
        if let Some(cell) = self.tasks.get_mut(slot) {
            *cell = Some(task);
        }
        slot
    }

    /// Removes a STOPPED task for good.
    fn forget(&mut self, slot: usize) {
        let Some(task) = self.tasks.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Some(key) = task_key(&task.id) {
            self.task_ids.remove(&key);
        }
        if let Some(svc) = self.services.get_mut(task.service) {
            svc.stopped.retain(|s| *s != slot);
        }
        self.free.push(slot);
    }

    /// A fresh task uid.
    fn new_uid(&mut self) -> u64 {
        let uid = self.next_uid;
        self.next_uid += 1;
        uid
    }

    /// A fresh, unique private IP (`10.0.x.y` for the first 64 516 tasks).
    fn new_ip(&mut self) -> Arc<str> {
        let n = self.next_ip;
        self.next_ip = self.next_ip.wrapping_add(1);
        let (hi, lo) = (n / 254, n % 254 + 1);
        format!("10.{}.{}.{}", hi / 256, hi % 256, lo).into()
    }

    /// A fresh registration number.
    fn new_reg(&mut self) -> u64 {
        let r = self.next_reg;
        self.next_reg += 1;
        r
    }

    /// `digits` random lowercase hex digits.
    pub(crate) fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            let v: u64 = self.rng.random();
            s.push_str(&format!("{v:016x}"));
        }
        s.truncate(digits);
        s
    }

    /// The zone name of index `zone`.
    pub(crate) fn zone_name(&self, zone: usize) -> &str {
        self.config.zones.get(zone).map_or("", String::as_str)
    }

    /// The name of zone `zone`, shared (what the API returns).
    pub(crate) fn zone_arc(&self, zone: usize) -> Arc<str> {
        self.zone_names
            .get(zone)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    /// Queues an event.
    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// A task id (32 hex digits) as two numbers: cheap to compare and to hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TaskKey(u128, u128);

impl std::hash::Hash for TaskKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Fold, then mix (the ids are random hex, but ASCII digits leave the low bits
        // of each byte poorly spread).
        let x =
            (self.0 as u64) ^ ((self.0 >> 64) as u64) ^ (self.1 as u64) ^ ((self.1 >> 64) as u64);
        let h = (x ^ (x >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        state.write_u64(h ^ (h >> 32));
    }
}

/// The key of a task id or ARN (ids are 32 characters), if it can be one.
fn task_key(id_or_arn: &str) -> Option<TaskKey> {
    // Only the last 32 characters can be the id (after a `/` in an ARN).
    let b = id_or_arn.as_bytes();
    let tail = match b.len() {
        32 => b,
        n if n > 32 && b.get(n - 33) == Some(&b'/') => b.get(n - 32..)?,
        _ => return None,
    };
    let id: &[u8; 32] = tail.try_into().ok()?;
    let (a, b) = id.split_at(16);
    Some(TaskKey(
        u128::from_le_bytes(a.try_into().ok()?),
        u128::from_le_bytes(b.try_into().ok()?),
    ))
}

/// Passes the task key's own hash through.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl State {
    /// The slot of the task (not yet forgotten) named by ARN or id.
    pub(crate) fn slot_of(&self, id_or_arn: &str) -> Option<usize> {
        self.task_ids.get(&task_key(id_or_arn)?).copied()
    }
}

/// The last `/`-separated part of a name or ARN (`…:task/CLUSTER/ID` → `ID`).
pub(crate) fn short(name_or_arn: &str) -> &str {
    // Fast path for task ARNs: `…/` followed by 32 hex digits.
    let b = name_or_arn.as_bytes();
    if b.len() > 32
        && b.get(b.len() - 33) == Some(&b'/')
        && let Some(tail) = name_or_arn.get(b.len() - 32..)
        && !tail.contains('/')
    {
        return tail;
    }
    name_or_arn.rsplit('/').next().unwrap_or(name_or_arn)
}

/// The part of an ECS ARN after `kind/` (`…:cluster/NAME` → `NAME`), or the input.
pub(crate) fn cluster_name(name_or_arn: &str) -> &str {
    // A plain name (the common case) needs no substring search.
    if !name_or_arn.as_bytes().contains(&b':') {
        return name_or_arn;
    }
    name_or_arn
        .split_once(":cluster/")
        .map_or(name_or_arn, |(_, n)| n)
}

impl State {
    /// The gate every API call passes: counts the call, takes a rate-limit token (when
    /// limits are on) and applies injected faults.
    pub(crate) fn gate(
        &mut self,
        operation: &'static str,
        category: Category,
    ) -> Result<(), AwsError> {
        self.stats.entry(operation).calls += 1;
        if self.config.rate_limits && !self.buckets.take(category, self.now) {
            self.stats.entry(operation).throttled += 1;
            return Err(AwsError::new(
                operation,
                AwsErrorKind::Throttling,
                "Rate exceeded",
            ));
        }
        if let Some(e) = self.faults.check(operation, &mut self.fault_rng) {
            let stats = self.stats.entry(operation);
            stats.faulted += 1;
            if e.kind == AwsErrorKind::Throttling {
                stats.throttled += 1;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Forces a new deployment: a new PRIMARY deployment, IN_PROGRESS, replacing every
    /// task of the older ones (see the scheduler).
    pub(crate) fn start_deployment(
        &mut self,
        cluster: &str,
        service: &str,
    ) -> Result<(), WorldError> {
        let si = self
            .find_cluster(cluster)
            .and_then(|c| self.find_service(c, service))
            .ok_or_else(|| WorldError::NotFound {
                what: format!("service {cluster}/{service}"),
            })?;
        let serial = self.next_deployment;
        self.next_deployment += 1;
        let id = format!("ecs-svc/{}", self.decimal(19));
        if let Some(s) = self.services.get_mut(si) {
            s.deployments.insert(
                0,
                Deployment {
                    id,
                    serial,
                    rollout: DeploymentRollout::InProgress,
                },
            );
        }
        self.changed();
        self.settle();
        Ok(())
    }
}
