//! ECS capacity provider managed scaling (AWS-SEMANTICS §6): the reservation metric on
//! hand-made clusters, the alarms' timing, the warm-up, the 15-minute scale-in rule,
//! bounds, managed termination protection, settings, and the view of a world's group.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use capstan_aws_api::AutoScaling;
use capstan_core::clock::VirtualClock;
use capstan_sim::baseline::managed::reservation;
use capstan_sim::baseline::{
    Baseline, BaselineSpec, ClusterView, HostState, HostView, ManagedScalingSpec, TaskGroup,
    managed_protection,
};
use capstan_sim::metric::Frame;
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, LaunchType, ServiceSpec, World, WorldConfig,
};
use jiff::Timestamp;
use serde_json::json;

/// 2025-01-01T00:00:00Z, a whole minute.
const T0: i64 = 1_735_689_600;
/// The default group's instance size.
const CPU: u32 = 4096;
const MEM: u32 = 7482;

fn at(t: i64) -> Timestamp {
    Timestamp::from_second(T0 + t).unwrap()
}

fn spec(extra: serde_json::Value) -> BaselineSpec {
    let mut v = json!({ "kind": "aws-managed-scaling", "min": 0, "max": 10 });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

fn host(id: &str, state: HostState, launched: i64, tasks: u32) -> HostView {
    HostView {
        instance_id: id.into(),
        state,
        launched_at: at(launched),
        tasks,
        protected: false,
    }
}

fn tasks(count: u32) -> Vec<TaskGroup> {
    vec![TaskGroup {
        count,
        cpu: 1024,
        memory: 2048,
    }]
}

fn view(hosts: Vec<HostView>, unplaced: Vec<TaskGroup>) -> ClusterView {
    ClusterView {
        desired: u32::try_from(
            hosts
                .iter()
                .filter(|h| h.state != HostState::Draining)
                .count(),
        )
        .unwrap(),
        instance_cpu: CPU,
        instance_memory: MEM,
        hosts,
        unplaced,
    }
}

/// `n` ACTIVE hosts launched an hour before `T0`, with `tasks[i]` tasks each.
fn active(tasks: &[u32]) -> Vec<HostView> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, n)| host(&format!("i-{i}"), HostState::Active, -3600, *n))
        .collect()
}

#[test]
fn reservation_is_needed_over_running_instances() {
    let r = |v: &ClusterView| reservation(v, 1, 10_000);
    // Every instance runs a task: 100 %.
    let full = r(&view(active(&[3, 1, 2]), vec![]));
    assert_eq!((full.running, full.needed, full.percent), (3, 3, 100.0));
    // One of four empty: 75 %.
    let one_empty = r(&view(active(&[3, 1, 2, 0]), vec![]));
    assert_eq!((one_empty.busy, one_empty.percent), (3, 75.0));
    // Four unplaced tasks, 3 fit per instance (memory): 2 more instances, (2 + 2) / 2.
    let short = r(&view(active(&[3, 3]), tasks(4)));
    assert_eq!((short.extra, short.needed, short.percent), (2, 4, 200.0));
    // Step sizes bound the instances added.
    let v = view(active(&[3, 3]), tasks(4));
    assert_eq!(reservation(&v, 3, 10).percent, 250.0);
    assert_eq!(reservation(&v, 1, 1).percent, 150.0);
    // Launching instances count as running; DRAINING ones do not count at all.
    let mut hosts = active(&[2, 0]);
    hosts.push(host("i-new", HostState::Launching, 0, 0));
    hosts.push(host("i-old", HostState::Draining, -3600, 2));
    let r3 = r(&view(hosts, tasks(1)));
    assert_eq!((r3.running, r3.busy, r3.extra), (3, 1, 1));
    assert!((r3.percent - 200.0 / 3.0).abs() < 1e-9);
    // From zero: 200 with tasks to place, else 100.
    assert_eq!(r(&view(vec![], tasks(1))).percent, 200.0);
    assert_eq!(r(&view(vec![], vec![])).percent, 100.0);
    // A task larger than an instance is left out.
    let big = vec![TaskGroup {
        count: 2,
        cpu: 1024,
        memory: MEM + 1,
    }];
    assert_eq!(r(&view(active(&[1]), big)).percent, 100.0);
    // Mixed sizes: the large ones first, small ones in their left-over room.
    let mixed = vec![
        TaskGroup {
            count: 2,
            cpu: 1000,
            memory: 1000,
        },
        TaskGroup {
            count: 2,
            cpu: 3000,
            memory: 1000,
        },
    ];
    assert_eq!(r(&view(active(&[1]), mixed)).extra, 2);
}

/// A cluster driven by the baseline one second at a time: new instances launch when it
/// scales out and turn ACTIVE after `launch_s`; scale-in removes empty ACTIVE instances
/// (as managed termination protection lets the group do).
struct Sim {
    baseline: Baseline,
    t: i64,
    desired: u32,
    hosts: Vec<HostView>,
    unplaced: Vec<TaskGroup>,
    launch_s: i64,
    actions: Vec<(i64, u32, u32, String)>,
}

impl Sim {
    fn new(spec: &BaselineSpec, hosts: Vec<HostView>, unplaced: Vec<TaskGroup>) -> Self {
        let desired = u32::try_from(hosts.len()).unwrap();
        Self {
            baseline: Baseline::new("managed", spec).unwrap(),
            t: -1,
            desired,
            hosts,
            unplaced,
            launch_s: 180,
            actions: Vec::new(),
        }
    }

    fn view(&self) -> ClusterView {
        ClusterView {
            desired: self.desired,
            ..view(self.hosts.clone(), self.unplaced.clone())
        }
    }

    fn step(&mut self) {
        self.t += 1;
        let t = self.t;
        for h in &mut self.hosts {
            let launched = h.launched_at.as_second() - T0;
            if h.state == HostState::Launching && t - launched >= self.launch_s {
                h.state = HostState::Active;
            }
        }
        let v = self.view();
        let Some(a) = self.baseline.step_cluster(at(t), &v) else {
            return;
        };
        self.actions.push((t, self.desired, a.to, a.reason.clone()));
        while self.hosts.len() < a.to as usize {
            let id = format!("i-{t}-{}", self.hosts.len());
            self.hosts.push(host(&id, HostState::Launching, t, 0));
        }
        while self.hosts.len() > a.to as usize {
            let Some(empty) = self.hosts.iter().rposition(|h| h.tasks == 0) else {
                break;
            };
            self.hosts.remove(empty);
        }
        self.desired = a.to;
    }

    fn run_until(&mut self, end: i64) {
        while self.t < end {
            self.step();
        }
    }
}

#[test]
fn scale_out_on_the_first_datapoint_above_target() {
    let mut s = Sim::new(&spec(json!({})), active(&[3, 3]), tasks(3));
    s.run_until(600);
    // [0, 60) is published at 120 s (60 s delay): AlarmHigh 1 of 1 fires then.
    assert_eq!(s.actions.len(), 1, "{:?}", s.actions);
    let (t, from, to, reason) = &s.actions[0];
    assert_eq!((*t, *from, *to), (120, 2, 3));
    assert!(
        reason.starts_with("AlarmHigh CapacityProviderReservation 150 > 100 for 1 of 1"),
        "{reason}"
    );
    assert!(reason.contains("ceil(2 × 150 / 100) = 3"), "{reason}");
}

#[test]
fn warm_up_blocks_scale_out_until_the_newest_instance_is_warm() {
    // An instance launched 100 s before the start: nothing until it is 300 s old.
    let mut hosts = active(&[3, 3]);
    hosts[1].launched_at = at(-100);
    let mut s = Sim::new(&spec(json!({})), hosts, tasks(3));
    s.run_until(600);
    assert_eq!(s.actions.first().map(|a| (a.0, a.2)), Some((240, 3)));

    // The instance that scale-out launched blocks the next one for its warm-up.
    let mut s = Sim::new(&spec(json!({})), active(&[3, 3]), tasks(3));
    s.run_until(129);
    assert_eq!(s.actions.len(), 1);
    s.unplaced = tasks(6); // now 2 more instances needed beside the 2 busy ones
    s.run_until(419);
    assert_eq!(s.actions.len(), 1, "blocked while warming: {:?}", s.actions);
    s.run_until(420);
    assert_eq!(s.actions.len(), 2);
    let (t, from, to, reason) = &s.actions[1];
    assert_eq!((*t, *from, *to), (420, 3, 4), "{reason}");

    // A warm-up of 0 lets the lagging datapoint scale out again at once (why AWS has
    // the warm-up).
    let mut s = Sim::new(
        &spec(json!({ "instance_warmup_s": 0 })),
        active(&[3, 3]),
        tasks(3),
    );
    s.run_until(180);
    assert_eq!(s.actions.len(), 2, "{:?}", s.actions);
    assert_eq!(s.actions[1].0, 180);
}

#[test]
fn from_zero_instances_the_group_goes_to_two() {
    let mut s = Sim::new(&spec(json!({})), vec![], tasks(1));
    s.run_until(200);
    assert_eq!(s.actions.len(), 1);
    assert_eq!((s.actions[0].0, s.actions[0].2), (120, 2));
    assert!(s.actions[0].3.contains("200 > 100"), "{}", s.actions[0].3);
    // Within max.
    let mut s = Sim::new(&spec(json!({ "max": 1 })), vec![], tasks(1));
    s.run_until(200);
    assert_eq!(s.actions.first().map(|a| a.2), Some(1));
    assert!(
        s.actions[0].3.ends_with("clamped to max 1"),
        "{}",
        s.actions[0].3
    );
}

#[test]
fn scale_in_needs_fifteen_datapoints_below_target() {
    let mut s = Sim::new(&spec(json!({})), active(&[2, 1, 0, 0]), vec![]);
    s.run_until(959);
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    s.run_until(960);
    // Periods [0, 15 min) all at 50 %, the newest published at 16 min.
    let (t, from, to, reason) = s.actions.last().unwrap();
    assert_eq!((*t, *from, *to), (960, 4, 2));
    assert!(
        reason.starts_with("AlarmLow CapacityProviderReservation 50 < 100 for 15 of 15"),
        "{reason}"
    );
    // Back at 100 %: nothing more.
    s.run_until(3600);
    assert_eq!(s.actions.len(), 1, "{:?}", s.actions);
}

#[test]
fn one_datapoint_at_target_restarts_the_fifteen() {
    let mut s = Sim::new(&spec(json!({})), active(&[2, 1, 0]), vec![]);
    s.run_until(599);
    s.hosts[2].tasks = 1; // [600, 660) at 100 %
    s.run_until(659);
    s.hosts[2].tasks = 0;
    s.run_until(1619);
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    // 15 low periods from [660, 720) to [1500, 1560), the newest published at 1620.
    s.run_until(1620);
    assert_eq!(s.actions.len(), 1);
    assert_eq!((s.actions[0].0, s.actions[0].2), (1620, 2));
}

#[test]
fn scale_in_waits_fifteen_minutes_after_a_scale_out() {
    let mut s = Sim::new(&spec(json!({})), active(&[3, 3]), tasks(3));
    s.run_until(120);
    assert_eq!(s.actions.len(), 1);
    // The tasks found room after all: the new instance stays empty.
    s.unplaced.clear();
    s.run_until(3600);
    assert_eq!(s.actions.len(), 2, "{:?}", s.actions);
    let (t, from, to, _) = &s.actions[1];
    assert_eq!((*from, *to), (3, 2));
    assert!(*t >= 120 + 900, "scale-in at {t}");
    // [120, 180) is the first period below the target: 15 of them end at 1020,
    // published at 1080.
    assert_eq!(*t, 1080);
}

#[test]
fn scale_in_never_goes_below_the_instances_running_tasks() {
    let mut s = Sim::new(&spec(json!({})), active(&[1, 0, 0, 0]), vec![]);
    s.run_until(899);
    // Tasks land on three instances just before AlarmLow fires on the old datapoints.
    for h in &mut s.hosts[..3] {
        h.tasks = 1;
    }
    s.run_until(960);
    let (t, from, to, reason) = s.actions.last().unwrap();
    assert_eq!((*t, *from, *to), (960, 4, 3));
    assert!(
        reason.contains("ceil(4 × 25 / 100) = 1, kept at the 3 instances running tasks"),
        "{reason}"
    );
}

#[test]
fn results_stay_within_the_group_bounds() {
    // Scale-out clamped to max.
    let mut s = Sim::new(&spec(json!({ "max": 3 })), active(&[3, 3]), tasks(12));
    s.run_until(200);
    assert_eq!(s.actions.first().map(|a| a.2), Some(3));
    // At max: nothing.
    let mut s = Sim::new(&spec(json!({ "max": 2 })), active(&[3, 3]), tasks(12));
    s.run_until(600);
    assert!(s.actions.is_empty());
    // Scale-in held at min.
    let mut s = Sim::new(&spec(json!({ "min": 3 })), active(&[1, 0, 0, 0]), vec![]);
    s.run_until(1000);
    let a = s.actions.first().unwrap();
    assert_eq!(a.2, 3);
    assert!(a.3.ends_with("held at min 3"), "{}", a.3);
    // At min: nothing.
    let mut s = Sim::new(&spec(json!({ "min": 2 })), active(&[1, 0]), vec![]);
    s.run_until(2000);
    assert!(s.actions.is_empty());
}

#[test]
fn target_capacity_below_100_keeps_spare_instances() {
    // 9 busy of 9 at target 90: 100 > 90 → ceil(9 × 100 / 90) = 10.
    let hosts = active(&[1; 9]);
    let mut s = Sim::new(&spec(json!({ "target_capacity": 90 })), hosts, vec![]);
    s.run_until(3600);
    assert_eq!(s.actions.len(), 1, "{:?}", s.actions);
    assert_eq!(s.actions[0].2, 10);
    // 9 of 10 is 90: not below the target, so the spare instance stays.
    assert_eq!(s.baseline.reservation().unwrap().percent, 90.0);
}

#[test]
fn managed_termination_protection_follows_the_tasks() {
    let mut hosts = active(&[2, 0, 1, 0]);
    hosts[1].protected = true;
    hosts[2].protected = true;
    hosts.push(host("i-new", HostState::Launching, 0, 0));
    let mut draining = host("i-drain", HostState::Draining, -3600, 0);
    draining.protected = true;
    hosts.push(draining);
    let changes = managed_protection(&view(hosts, vec![]));
    assert_eq!(
        changes,
        vec![("i-0".to_owned(), true), ("i-1".to_owned(), false)]
    );
}

#[test]
fn settings_have_aws_defaults_and_field_named_errors() {
    let BaselineSpec::AwsManagedScaling(s) = spec(json!({})) else {
        panic!("managed scaling expected");
    };
    assert_eq!(
        s,
        ManagedScalingSpec {
            target_capacity: 100,
            min: 0,
            max: 10,
            instance_warmup_s: 300,
            minimum_scaling_step_size: 1,
            maximum_scaling_step_size: 10_000,
            publish_delay_s: 60,
        }
    );
    assert_eq!(spec(json!({})).kind(), "aws-managed-scaling");
    let err = |extra| Baseline::new("m", &spec(extra)).unwrap_err().to_string();
    assert_eq!(
        err(json!({ "target_capacity": 0 })),
        "baseline \"m\": target_capacity: must be from 1 to 100 percent (got 0)"
    );
    assert!(err(json!({ "target_capacity": 101 })).contains("target_capacity"));
    assert!(
        err(json!({ "instance_warmup_s": 10_001 }))
            .contains("instance_warmup_s: must be at most 10000 s")
    );
    assert!(
        err(json!({ "minimum_scaling_step_size": 0 }))
            .contains("minimum_scaling_step_size: must be from 1 to 10000")
    );
    assert!(
        err(json!({ "maximum_scaling_step_size": 10_001 })).contains("maximum_scaling_step_size")
    );
    assert!(
        err(json!({ "minimum_scaling_step_size": 5, "maximum_scaling_step_size": 2 }))
            .contains("must not be above maximum_scaling_step_size (5 > 2)")
    );
    assert!(err(json!({ "min": 4, "max": 2 })).contains("min: must not be above max"));
    let unknown: Result<BaselineSpec, _> = serde_json::from_value(json!({
        "kind": "aws-managed-scaling", "min": 0, "max": 1, "target": 50,
    }));
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `target`")
    );
}

#[test]
fn managed_scaling_acts_only_on_clusters() {
    let mut m = Baseline::new("m", &spec(json!({}))).unwrap();
    assert!(m.acts_on_cluster());
    assert_eq!(m.bounds(), (0, 10));
    assert_eq!(
        m.alarms()
            .into_iter()
            .map(|a| a.0.to_owned())
            .collect::<Vec<_>>(),
        vec!["AlarmHigh", "AlarmLow"]
    );
    assert_eq!(m.metric().1, 100.0);
    assert!(m.reservation().is_none());
    for t in 0..600 {
        assert!(m.step(at(t), &Frame::default(), 1, 1).is_none());
    }
    let tt: BaselineSpec = serde_json::from_value(json!({
        "kind": "aws-target-tracking", "metric": "cpu", "target": 50.0, "min": 1, "max": 4,
    }))
    .unwrap();
    let mut b = Baseline::new("tt", &tt).unwrap();
    assert!(!b.acts_on_cluster());
    assert!(b.step_cluster(at(0), &view(vec![], tasks(5))).is_none());
    assert!(b.reservation().is_none());
}

/// Resolves a world future (they are ready at once).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("world futures are ready at once"),
    }
}

#[test]
fn view_of_a_world_group() {
    let clock = VirtualClock::at_epoch();
    let world = World::new(
        WorldConfig {
            rate_limits: false,
            ..WorldConfig::default()
        },
        clock.clone(),
    );
    let group = AutoScalingGroupSpec {
        desired: 3,
        ..AutoScalingGroupSpec::default()
    };
    world
        .add_cluster(ClusterSpec {
            name: "default".into(),
            groups: vec![group.clone()],
        })
        .unwrap();
    world
        .add_service(ServiceSpec {
            launch_type: LaunchType::Ec2,
            desired: 2,
            ..ServiceSpec::default()
        })
        .unwrap();
    // 12 tasks wanted: 3 fit per instance, so 3 wait for room.
    ready(capstan_aws_api::Ecs::update_desired_count(
        &world, "default", "app", 12,
    ))
    .unwrap();
    ready(world.set_desired_capacity("asg", 4)).unwrap();
    let cs = world.cluster_state("default").unwrap();
    let unplaced = TaskGroup::from_totals(cs.unplaced_tasks, cs.unplaced_cpu, cs.unplaced_memory);
    assert_eq!(
        unplaced,
        TaskGroup {
            count: 3,
            cpu: 1024,
            memory: 2048
        }
    );
    let v = ClusterView::from_world(&cs, &group, vec![unplaced]).unwrap();
    assert_eq!(v.desired, 4);
    assert_eq!((v.instance_cpu, v.instance_memory), (CPU, MEM));
    let states: Vec<HostState> = v.hosts.iter().map(|h| h.state).collect();
    assert_eq!(
        states,
        vec![
            HostState::Active,
            HostState::Active,
            HostState::Active,
            HostState::Launching
        ]
    );
    assert_eq!(v.hosts.iter().map(|h| h.tasks).sum::<u32>(), 9);
    let r = reservation(&v, 1, 10_000);
    assert_eq!((r.running, r.busy, r.extra), (4, 3, 1));
    assert_eq!(r.percent, 100.0);
    // Once launched, the new instance takes the waiting tasks.
    clock.advance(Duration::from_secs(180));
    world.advance();
    let cs = world.cluster_state("default").unwrap();
    let v = ClusterView::from_world(&cs, &group, vec![]).unwrap();
    assert!(
        v.hosts
            .iter()
            .all(|h| h.state == HostState::Active && h.tasks == 3)
    );
    let missing = AutoScalingGroupSpec {
        name: "nope".into(),
        ..group
    };
    assert!(ClusterView::from_world(&cs, &missing, vec![]).is_none());
}
