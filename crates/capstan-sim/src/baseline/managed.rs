//! ECS capacity provider managed scaling (AWS-SEMANTICS §6): the Auto Scaling group
//! under an EC2 cluster follows `CapacityProviderReservation` through a target
//! tracking policy.
//!
//! # The metric
//!
//! Every call of [`Baseline::step_cluster`](super::Baseline::step_cluster) computes
//! `CapacityProviderReservation = M / N × 100` from a [`ClusterView`]:
//! - `N`, instances running: the group's instances launching or with an ACTIVE
//!   container instance (DRAINING and terminating ones are on their way out);
//! - `M`, instances needed: those running at least one (non-daemon) task, plus the
//!   instances the unplaced tasks need, found by bin-packing them (CPU and memory,
//!   first-fit decreasing) onto empty instances of the group's size. Tasks that do not
//!   fit on an empty instance at all are left out, as ECS leaves out tasks too large for
//!   the smallest instance type. When more instances are needed, their number is kept
//!   within `[minimum_scaling_step_size, maximum_scaling_step_size]`.
//! - From zero instances with tasks to place the metric is 200 (the group goes to two
//!   instances); with nothing running and nothing to place it is 100.
//!
//! Placed tasks are never moved: an instance with a task is needed, so the metric is
//! below 100 only when some instance is empty, and scale-in only ever removes empty
//! instances' worth of capacity. (⚠ ECS publishes one value a minute; the datapoint
//! here is the average of the values of each second of the minute.)
//!
//! # The policy
//!
//! Two alarms on 60 s periods of the metric: `AlarmHigh` above `target_capacity`, 1 of
//! 1 datapoints, and `AlarmLow` below it, 15 of 15 (⚠ the datapoint counts are a
//! community report, AWS-SEMANTICS §6; `AlarmLow`'s threshold at the target itself is
//! what users observe). At each evaluation (once a minute, when a datapoint is due):
//! - `AlarmHigh` in ALARM: the group goes to `ceil(N × v / target)` (`v` the newest
//!   datapoint), or to 2 from zero instances, unless an instance launched less than
//!   `instance_warmup_s` ago: then nothing happens this minute (the alarm stays in ALARM
//!   and fires again next minute).
//! - `AlarmLow` in ALARM, and no scale-out in the last 15 minutes: the group goes to
//!   `ceil(N × v / target)`, never below the number of instances running tasks (⚠ AWS
//!   lowers the desired capacity step by step each minute; we go at once to the count).
//! - Results stay in the group's `[min, max]` with the target tracking clamping rules.
//!
//! # Managed termination protection and managed draining (what the runner does)
//!
//! Lowering the group's desired capacity lets Auto Scaling pick the instances to
//! terminate (zone balance, then oldest), blind to tasks. ECS's answers, which the runner
//! reproduces in the world:
//! - **Managed termination protection**: ECS keeps scale-in protection on every
//!   instance running non-daemon tasks and takes it off empty ones, so the group only
//!   terminates empty instances. Each second, before applying an action, apply
//!   [`managed_protection`] with `SetInstanceProtection`. The policy never asks for
//!   fewer instances than those running tasks, so nothing waits on a protected
//!   instance for long.
//! - **Managed draining**: set `managed_draining = true` on the world's group spec: an
//!   instance the group terminates is set DRAINING and held until its tasks have moved.

use jiff::Timestamp;
use serde::Deserialize;

use capstan_aws_api::{ContainerInstanceStatus, InstanceLifecycleState};
use capstan_world::{AutoScalingGroupSpec, ClusterState};

use super::cloudwatch::{
    Alarm, AlarmRule, AlarmState, CloudWatchMetric, Comparison, Evaluation, MissingData,
};
use super::{
    BaselineAction, FieldProblem, LOW_DATAPOINTS, Num, ceil_ratio, check_bounds, check_delay,
    clamp_in, clamp_out, default_publish_delay_s,
};

/// `AlarmHigh`'s datapoints, of as many (⚠ community report).
pub const MANAGED_HIGH_DATAPOINTS: u32 = 1;
/// How long after a scale-out scale-in waits, milliseconds (15 minutes).
const SCALE_IN_AFTER_OUT_MS: i64 = 15 * 60_000;
/// The metric from zero instances with tasks to place.
const FROM_ZERO_PERCENT: f64 = 200.0;
/// Instances the group goes to from zero.
const FROM_ZERO_INSTANCES: u32 = 2;
/// ECS's largest instance warm-up and step size.
const MAX_WARMUP_S: u32 = 10_000;
const MAX_STEP: u32 = 10_000;

fn default_target_capacity() -> u32 {
    100
}

fn default_warmup_s() -> u32 {
    300
}

fn default_min_step() -> u32 {
    1
}

fn default_max_step() -> u32 {
    MAX_STEP
}

/// Settings of ECS managed scaling on one capacity provider (its Auto Scaling group).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedScalingSpec {
    /// `targetCapacity`, percent (1 to 100; default 100: no spare instance).
    #[serde(default = "default_target_capacity")]
    pub target_capacity: u32,
    /// The group's minimum size.
    pub min: u32,
    /// The group's maximum size.
    pub max: u32,
    /// `instanceWarmupPeriod`, seconds (0 to 10000; default 300): no scale-out while an
    /// instance launched less than this ago.
    #[serde(default = "default_warmup_s")]
    pub instance_warmup_s: u32,
    /// `minimumScalingStepSize` (1 to 10000; default 1).
    #[serde(default = "default_min_step")]
    pub minimum_scaling_step_size: u32,
    /// `maximumScalingStepSize` (1 to 10000; default 10000).
    #[serde(default = "default_max_step")]
    pub maximum_scaling_step_size: u32,
    /// How long after its minute ends a datapoint is published, seconds (⚠ default 60).
    #[serde(default = "default_publish_delay_s")]
    pub publish_delay_s: u32,
}

impl ManagedScalingSpec {
    /// Every problem with the settings.
    pub fn validate(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if !(1..=100).contains(&self.target_capacity) {
            problems.push(FieldProblem::new(
                "target_capacity",
                format!(
                    "must be from 1 to 100 percent (got {})",
                    self.target_capacity
                ),
            ));
        }
        if self.instance_warmup_s > MAX_WARMUP_S {
            problems.push(FieldProblem::new(
                "instance_warmup_s",
                format!(
                    "must be at most {MAX_WARMUP_S} s (got {})",
                    self.instance_warmup_s
                ),
            ));
        }
        for (field, v) in [
            ("minimum_scaling_step_size", self.minimum_scaling_step_size),
            ("maximum_scaling_step_size", self.maximum_scaling_step_size),
        ] {
            if !(1..=MAX_STEP).contains(&v) {
                problems.push(FieldProblem::new(
                    field,
                    format!("must be from 1 to {MAX_STEP} (got {v})"),
                ));
            }
        }
        if self.minimum_scaling_step_size > self.maximum_scaling_step_size {
            problems.push(FieldProblem::new(
                "minimum_scaling_step_size",
                format!(
                    "must not be above maximum_scaling_step_size ({} > {})",
                    self.minimum_scaling_step_size, self.maximum_scaling_step_size
                ),
            ));
        }
        check_bounds(self.min, self.max, &mut problems);
        check_delay(self.publish_delay_s, &mut problems);
        problems
    }
}

/// Where one instance of the group is, as managed scaling counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Launching, or in service without a registered container instance yet.
    Launching,
    /// In service with an ACTIVE container instance.
    Active,
    /// In service with a DRAINING container instance.
    Draining,
}

/// One instance of the group (terminating ones are left out of the view).
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    /// EC2 instance id.
    pub instance_id: String,
    /// Where it is.
    pub state: HostState,
    /// When it was launched.
    pub launched_at: Timestamp,
    /// Non-daemon tasks on it not yet stopped.
    pub tasks: u32,
    /// Whether it has instance scale-in protection now.
    pub protected: bool,
}

/// Tasks with the same CPU and memory reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskGroup {
    /// How many.
    pub count: u32,
    /// CPU units each.
    pub cpu: u32,
    /// Memory each, MiB.
    pub memory: u32,
}

impl TaskGroup {
    /// `count` tasks of the average size of `cpu` and `memory` in total (rounded up),
    /// e.g. from [`ClusterState`]'s unplaced totals; exact when the tasks are alike.
    pub fn from_totals(count: u32, cpu: u64, memory: u64) -> Self {
        let avg = |total: u64| {
            if count == 0 {
                0
            } else {
                u32::try_from(total.div_ceil(u64::from(count))).unwrap_or(u32::MAX)
            }
        };
        Self {
            count,
            cpu: avg(cpu),
            memory: avg(memory),
        }
    }
}

/// What managed scaling sees of one Auto Scaling group and its cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// The group's desired capacity.
    pub desired: u32,
    /// CPU units each instance of the group registers.
    pub instance_cpu: u32,
    /// Memory each instance registers, MiB.
    pub instance_memory: u32,
    /// The group's instances not terminating.
    pub hosts: Vec<HostView>,
    /// Tasks of the cluster's services that no instance has room for.
    pub unplaced: Vec<TaskGroup>,
}

impl ClusterView {
    /// The view of the world's group `group` in `cluster` (`None` if the cluster has no
    /// such group). `unplaced` are the tasks waiting for room, grouped by size: from each
    /// service's unplaced count and task size, or
    /// `TaskGroup::from_totals(cluster.unplaced_tasks, cluster.unplaced_cpu,
    /// cluster.unplaced_memory)` when every service has the same task size.
    pub fn from_world(
        cluster: &ClusterState,
        group: &AutoScalingGroupSpec,
        unplaced: Vec<TaskGroup>,
    ) -> Option<Self> {
        let g = cluster.groups.iter().find(|g| g.name == group.name)?;
        let hosts = g
            .instances
            .iter()
            .filter_map(|i| {
                let ci = cluster
                    .instances
                    .iter()
                    .find(|c| c.ec2_instance_id == i.instance_id);
                let state = match (i.lifecycle_state, ci.map(|c| c.status)) {
                    (InstanceLifecycleState::Pending | InstanceLifecycleState::PendingWait, _)
                    | (InstanceLifecycleState::InService, None) => HostState::Launching,
                    (InstanceLifecycleState::InService, Some(ContainerInstanceStatus::Active)) => {
                        HostState::Active
                    }
                    (
                        InstanceLifecycleState::InService,
                        Some(ContainerInstanceStatus::Draining),
                    ) => HostState::Draining,
                    _ => return None,
                };
                Some(HostView {
                    instance_id: i.instance_id.clone(),
                    state,
                    // The world model always reports launch times.
                    launched_at: i.launched_at?,
                    tasks: ci.map_or(0, |c| u32::try_from(c.tasks.len()).unwrap_or(u32::MAX)),
                    protected: i.protected_from_scale_in,
                })
            })
            .collect();
        Some(Self {
            desired: g.desired,
            instance_cpu: group.instance_cpu,
            instance_memory: group.instance_memory,
            hosts,
            unplaced,
        })
    }

    /// `N`: instances launching or ACTIVE.
    pub fn running(&self) -> u32 {
        count(
            self.hosts
                .iter()
                .filter(|h| matches!(h.state, HostState::Launching | HostState::Active)),
        )
    }

    /// ACTIVE instances running at least one task.
    pub fn busy(&self) -> u32 {
        count(
            self.hosts
                .iter()
                .filter(|h| h.state == HostState::Active && h.tasks > 0),
        )
    }
}

fn count<T>(it: impl Iterator<Item = T>) -> u32 {
    u32::try_from(it.count()).unwrap_or(u32::MAX)
}

/// `CapacityProviderReservation` and what it is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    /// `N`: instances launching or ACTIVE.
    pub running: u32,
    /// ACTIVE instances running at least one task.
    pub busy: u32,
    /// Instances the unplaced tasks need, within the step sizes (0 if none).
    pub extra: u32,
    /// `M` = busy + extra.
    pub needed: u32,
    /// The metric, percent.
    pub percent: f64,
}

/// `CapacityProviderReservation` of `view` with the given step sizes (see the module
/// docs).
pub fn reservation(view: &ClusterView, min_step: u32, max_step: u32) -> Reservation {
    let running = view.running();
    let busy = view.busy();
    let raw = instances_for(&view.unplaced, view.instance_cpu, view.instance_memory);
    let extra = if raw == 0 {
        0
    } else {
        raw.min(max_step).max(min_step)
    };
    let needed = busy.saturating_add(extra);
    let percent = match (running, needed) {
        (0, 0) => 100.0,
        (0, _) => FROM_ZERO_PERCENT,
        (n, m) => f64::from(m) * 100.0 / f64::from(n),
    };
    Reservation {
        running,
        busy,
        extra,
        needed,
        percent,
    }
}

/// How many tasks of `size` (cpu, memory) fit in `room`; a zero dimension does not
/// limit.
fn slots(room: (u32, u32), size: (u32, u32)) -> u64 {
    let per = |free: u32, need: u32| free.checked_div(need).map_or(u64::MAX, u64::from);
    per(room.0, size.0).min(per(room.1, size.1))
}

/// Empty instances of `cpu` × `memory` that `groups` need: first-fit decreasing by
/// memory then CPU, filling the free room of the instances already opened before
/// opening new ones. Tasks larger than an instance are left out.
fn instances_for(groups: &[TaskGroup], cpu: u32, memory: u32) -> u32 {
    let mut sorted: Vec<TaskGroup> = groups
        .iter()
        .copied()
        .filter(|g| g.count > 0 && g.cpu <= cpu && g.memory <= memory)
        .collect();
    sorted.sort_by_key(|g| std::cmp::Reverse((g.memory, g.cpu)));
    // Free room of each opened instance.
    let mut open: Vec<(u32, u32)> = Vec::new();
    for g in sorted {
        let size = (g.cpu, g.memory);
        let mut left = u64::from(g.count);
        for room in open.iter_mut() {
            if left == 0 {
                break;
            }
            let n = slots(*room, size).min(left);
            take(room, size, n);
            left -= n;
        }
        // Every task left opens fresh instances, `per` tasks each.
        let per = slots((cpu, memory), size).max(1);
        while left > 0 {
            let n = per.min(left);
            let mut room = (cpu, memory);
            take(&mut room, size, n);
            open.push(room);
            left -= n;
        }
    }
    count(open.iter())
}

/// Takes `n` tasks of `size` out of `room`.
fn take(room: &mut (u32, u32), size: (u32, u32), n: u64) {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    room.0 = room.0.saturating_sub(size.0.saturating_mul(n));
    room.1 = room.1.saturating_sub(size.1.saturating_mul(n));
}

/// The scale-in protection changes managed termination protection makes now: protect
/// ACTIVE instances running tasks, unprotect ACTIVE instances without any. Each entry is
/// an instance id and the protection to set (`SetInstanceProtection`); instances that
/// already have it are left out, as are launching and DRAINING ones.
pub fn managed_protection(view: &ClusterView) -> Vec<(String, bool)> {
    view.hosts
        .iter()
        .filter(|h| h.state == HostState::Active)
        .filter(|h| (h.tasks > 0) != h.protected)
        .map(|h| (h.instance_id.clone(), h.tasks > 0))
        .collect()
}

/// A running managed scaling policy.
#[derive(Debug, Clone)]
pub(super) struct Engine {
    target: f64,
    min: u32,
    max: u32,
    warmup_ms: i64,
    min_step: u32,
    max_step: u32,
    high: Alarm,
    low: Alarm,
    last_out_ms: Option<i64>,
    last: Option<Reservation>,
}

impl Engine {
    /// The policy of validated settings.
    pub(super) fn new(spec: &ManagedScalingSpec) -> Self {
        let target = f64::from(spec.target_capacity);
        let alarm = |name: &str, comparison: Comparison, n: u32| {
            Alarm::new(
                name,
                AlarmRule {
                    threshold: target,
                    comparison,
                    datapoints: n,
                    evaluation_periods: n,
                    missing: MissingData::Missing,
                },
            )
        };
        Self {
            target,
            min: spec.min,
            max: spec.max,
            warmup_ms: i64::from(spec.instance_warmup_s) * 1000,
            min_step: spec.minimum_scaling_step_size,
            max_step: spec.maximum_scaling_step_size,
            high: alarm(
                "AlarmHigh",
                Comparison::GreaterThanThreshold,
                MANAGED_HIGH_DATAPOINTS,
            ),
            low: alarm("AlarmLow", Comparison::LessThanThreshold, LOW_DATAPOINTS),
            last_out_ms: None,
            last: None,
        }
    }

    pub(super) fn target(&self) -> f64 {
        self.target
    }

    pub(super) fn bounds(&self) -> (u32, u32) {
        (self.min, self.max)
    }

    pub(super) fn alarms(&self) -> Vec<&Alarm> {
        vec![&self.high, &self.low]
    }

    /// The reservation of the latest view.
    pub(super) fn last(&self) -> Option<Reservation> {
        self.last
    }

    /// Computes the metric of `view` (and remembers it).
    pub(super) fn measure(&mut self, view: &ClusterView) -> f64 {
        let r = reservation(view, self.min_step, self.max_step);
        self.last = Some(r);
        r.percent
    }

    /// One evaluation of both alarms at `at` (ms), and the policy's action.
    pub(super) fn evaluate(
        &mut self,
        at: i64,
        cw: &CloudWatchMetric,
        view: &ClusterView,
        desired: u32,
    ) -> Option<BaselineAction> {
        let high = self
            .high
            .evaluate(&cw.window_at(at, MANAGED_HIGH_DATAPOINTS as usize));
        let low = self
            .low
            .evaluate(&cw.window_at(at, LOW_DATAPOINTS as usize));
        if high.state == AlarmState::Alarm {
            return self.scale_out(at, &high, view, desired);
        }
        if low.state == AlarmState::Alarm {
            return self.scale_in(at, &low, view, desired);
        }
        None
    }

    /// The instance launched less than the warm-up ago at `at`, if any.
    fn warming<'a>(&self, at: i64, view: &'a ClusterView) -> Option<&'a HostView> {
        view.hosts
            .iter()
            .filter(|h| h.state != HostState::Draining)
            .find(|h| at - h.launched_at.as_millisecond() < self.warmup_ms)
    }

    fn scale_out(
        &mut self,
        at: i64,
        high: &Evaluation,
        view: &ClusterView,
        desired: u32,
    ) -> Option<BaselineAction> {
        let v = high.newest?;
        if let Some(h) = self.warming(at, view) {
            tracing::debug!(instance = %h.instance_id, "managed scaling: scale-out blocked while an instance warms up");
            return None;
        }
        let n = view.running();
        let (count, how) = if n == 0 {
            (
                FROM_ZERO_INSTANCES,
                format!("no instance: {FROM_ZERO_INSTANCES}"),
            )
        } else {
            let c = ceil_ratio(n, v, self.target);
            (
                c,
                format!("ceil({n} × {} / {}) = {c}", Num(v), Num(self.target)),
            )
        };
        let (to, note) = clamp_out(desired, count, self.min, self.max)?;
        self.last_out_ms = Some(at);
        Some(BaselineAction {
            to,
            reason: format!(
                "AlarmHigh CapacityProviderReservation {} > {} for {} of {} datapoints: {how}{note}",
                Num(v),
                Num(self.target),
                high.breaching,
                high.periods,
            ),
        })
    }

    fn scale_in(
        &mut self,
        at: i64,
        low: &Evaluation,
        view: &ClusterView,
        desired: u32,
    ) -> Option<BaselineAction> {
        let v = low.newest?;
        if self
            .last_out_ms
            .is_some_and(|out| at - out < SCALE_IN_AFTER_OUT_MS)
        {
            return None;
        }
        let n = view.running();
        let busy = view.busy();
        let c = ceil_ratio(n, v, self.target);
        let count = c.max(busy);
        let floor = if count > c {
            format!(", kept at the {busy} instances running tasks")
        } else {
            String::new()
        };
        let (to, note) = clamp_in(desired, count, self.min, self.max)?;
        Some(BaselineAction {
            to,
            reason: format!(
                "AlarmLow CapacityProviderReservation {} < {} for {} of {} datapoints: ceil({n} × {} / {}) = {c}{floor}{note}",
                Num(v),
                Num(self.target),
                low.breaching,
                low.periods,
                Num(v),
                Num(self.target),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(count: u32, cpu: u32, memory: u32) -> TaskGroup {
        TaskGroup { count, cpu, memory }
    }

    #[test]
    fn first_fit_decreasing_fills_opened_instances_first() {
        // 3 per instance by memory.
        assert_eq!(instances_for(&[g(7, 1024, 2048)], 4096, 7482), 3);
        assert_eq!(instances_for(&[g(6, 1024, 2048)], 4096, 7482), 2);
        // Big ones first; small ones go into their left-over room.
        assert_eq!(
            instances_for(&[g(2, 1000, 1000), g(2, 3000, 1000)], 4096, 7482),
            2
        );
        // Too large for an instance: left out.
        assert_eq!(instances_for(&[g(5, 1024, 8000)], 4096, 7482), 0);
        assert_eq!(instances_for(&[g(0, 1024, 2048)], 4096, 7482), 0);
        // Zero-sized tasks still need an instance to run on.
        assert_eq!(instances_for(&[g(9, 0, 0)], 4096, 7482), 1);
    }

    fn spec() -> ManagedScalingSpec {
        ManagedScalingSpec {
            target_capacity: 100,
            min: 0,
            max: 10,
            instance_warmup_s: 300,
            minimum_scaling_step_size: 1,
            maximum_scaling_step_size: MAX_STEP,
            publish_delay_s: 0,
        }
    }

    fn four_with_one_busy() -> ClusterView {
        let host = |i: u32, tasks| HostView {
            instance_id: format!("i-{i}"),
            state: HostState::Active,
            launched_at: Timestamp::UNIX_EPOCH,
            tasks,
            protected: false,
        };
        ClusterView {
            desired: 4,
            instance_cpu: 4096,
            instance_memory: 7482,
            hosts: vec![host(0, 1), host(1, 0), host(2, 0), host(3, 0)],
            unplaced: Vec::new(),
        }
    }

    #[test]
    fn scale_in_is_held_for_fifteen_minutes_after_any_scale_out() {
        // Datapoints at 25 % for 25 minutes, published at once.
        let mut cw = CloudWatchMetric::new(super::super::Statistic::Average, 0, 30);
        for s in 0..1500 {
            cw.record(Timestamp::from_second(s).unwrap_or_default(), Some(25.0));
        }
        let view = four_with_one_busy();
        let mut e = Engine::new(&spec());
        // A scale-out at 5 min (as if from an earlier burst): held until 20 min.
        e.last_out_ms = Some(5 * 60_000);
        assert_eq!(e.evaluate(15 * 60_000, &cw, &view, 4), None);
        assert_eq!(e.low.state(), AlarmState::Alarm);
        let a = e.evaluate(20 * 60_000 - 1, &cw, &view, 4);
        assert_eq!(a, None);
        let a = e.evaluate(20 * 60_000, &cw, &view, 4).map(|a| a.to);
        assert_eq!(a, Some(1));
        // Without a scale-out it goes at once.
        let mut e = Engine::new(&spec());
        assert_eq!(
            e.evaluate(15 * 60_000, &cw, &view, 4).map(|a| a.to),
            Some(1)
        );
    }

    #[test]
    fn totals_average_rounds_up() {
        assert_eq!(TaskGroup::from_totals(3, 3072, 6145), g(3, 1024, 2049));
        assert_eq!(TaskGroup::from_totals(0, 10, 10), g(0, 0, 0));
    }
}
