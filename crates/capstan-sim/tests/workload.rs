//! Workloads driven by hand-built task lists: queue throughput (Little's law), exact
//! failure and interruption counts when tasks stop or get SIGTERM, routing, metrics,
//! determinism for a seed, and conservation of every arrival.
#![allow(clippy::unwrap_used)]

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use capstan_aws_api::{DesiredStatus, TaskStatus};
use capstan_sim::metric::SimMetric;
use capstan_sim::trace::{Demand, Trace, TraceSpec};
use capstan_sim::workload::{
    Arrivals, Dist, Losses, StepOutcome, TaskLoad, Totals, Workload, WorkloadSpec,
};
use capstan_world::{Event, TaskHandle, TaskInfo};

fn start() -> Timestamp {
    "2026-03-01T00:00:00Z".parse().unwrap()
}

fn task(i: usize) -> TaskInfo {
    TaskInfo {
        arn: format!("arn:aws:ecs:eu-west-1:000000000000:task/default/{i:032x}"),
        handle: TaskHandle::default(),
        uid: i as u64 + 1,
        cluster: "default".into(),
        service: "app".into(),
        status: TaskStatus::Running,
        desired_status: DesiredStatus::Running,
        zone: "eu-west-1a".into(),
        host: None,
        ip: format!("10.0.0.{i}"),
        created_at: start(),
        started_at: Some(start()),
        protected_until: None,
        routable: true,
        accepting: true,
        terminating: false,
        cpu: 1024,
        memory: 2048,
    }
}

fn queue(processing: Dist, concurrency: u32, arrivals: Arrivals) -> WorkloadSpec {
    WorkloadSpec::Queue {
        processing,
        concurrency,
        slo_age_s: 30.0,
        cpu_base_pct: 2.0,
        cpu_busy_pct: 90.0,
        memory_base_pct: 30.0,
        memory_busy_pct: 60.0,
        arrivals,
    }
}

fn requests(duration: Dist, capacity: u32, arrivals: Arrivals) -> WorkloadSpec {
    WorkloadSpec::Requests {
        duration,
        capacity,
        slo_latency_s: 2.0,
        cpu_base_pct: 0.0,
        cpu_per_request_pct: None,
        memory_base_pct: 30.0,
        memory_per_request_pct: 1.0,
        arrivals,
    }
}

fn sessions(duration: Dist, max_per_task: Option<u32>, arrivals: Arrivals) -> WorkloadSpec {
    WorkloadSpec::Sessions {
        duration,
        cpu_per_session_pct: 5.0,
        memory_per_session_pct: 4.0,
        cpu_base_pct: 2.0,
        memory_base_pct: 20.0,
        max_per_task,
        arrivals,
    }
}

/// A workload, its tasks, and virtual time in whole seconds.
struct Sim {
    w: Workload,
    tasks: Vec<TaskInfo>,
    t: i64,
    /// Sums of every step's outcome and every event's losses.
    steps: StepOutcome,
    losses: Losses,
}

impl Sim {
    fn new(spec: &WorkloadSpec, tasks: usize, seed: u64) -> Self {
        Self {
            w: Workload::new(spec, seed).unwrap(),
            tasks: (0..tasks).map(task).collect(),
            t: 0,
            steps: StepOutcome::default(),
            losses: Losses::default(),
        }
    }

    fn now(&self) -> Timestamp {
        start() + SignedDuration::from_secs(self.t)
    }

    fn step_with(&mut self, demand: Demand) -> StepOutcome {
        self.step_long(demand, 1)
    }

    fn step_long(&mut self, demand: Demand, seconds: i64) -> StepOutcome {
        self.t += seconds;
        let out = self
            .w
            .step(self.now(), seconds as f64, &demand, &self.tasks);
        self.steps.arrived += out.arrived;
        self.steps.completed += out.completed;
        self.steps.failed_requests += out.failed_requests;
        self.steps.rejected += out.rejected;
        if !out.latencies.is_empty() {
            // Latencies are those of exactly the work completed in the step.
            assert_eq!(
                out.latencies.iter().map(|l| l.1).sum::<u64>(),
                out.completed
            );
        }
        out
    }

    fn step(&mut self, rate: f64) -> StepOutcome {
        self.step_with(Demand {
            rate,
            processing_time_s: None,
        })
    }

    fn run(&mut self, rate: f64, seconds: u32) -> StepOutcome {
        let mut sum = StepOutcome::default();
        for _ in 0..seconds {
            let o = self.step(rate);
            sum.arrived += o.arrived;
            sum.completed += o.completed;
            sum.failed_requests += o.failed_requests;
            sum.rejected += o.rejected;
            sum.slo_violated |= o.slo_violated;
            sum.latencies.extend(o.latencies);
        }
        sum
    }

    fn event(&mut self, e: Event) -> Losses {
        let l = self.w.on_event(&e);
        self.losses.failed_requests += l.failed_requests;
        self.losses.interrupted_sessions += l.interrupted_sessions;
        self.losses.interrupted_messages += l.interrupted_messages;
        l
    }

    fn sigterm(&mut self, i: usize) -> Losses {
        self.tasks[i].terminating = true;
        self.tasks[i].accepting = false;
        self.tasks[i].status = TaskStatus::Stopping;
        self.event(Event::TaskSigterm {
            arn: self.tasks[i].arn.clone(),
            service: "app".into(),
            at: self.now(),
            kill_at: self.now() + SignedDuration::from_secs(30),
        })
    }

    /// The task's containers stop; the world lists it as DEPROVISIONING afterwards.
    fn stop(&mut self, i: usize) -> Losses {
        let l = self.event(Event::TaskStopped {
            arn: self.tasks[i].arn.clone(),
            service: "app".into(),
            at: self.now(),
            reason: "Scaling activity initiated by deployment".into(),
        });
        let t = &mut self.tasks[i];
        t.status = TaskStatus::Deprovisioning;
        t.routable = false;
        t.accepting = false;
        t.terminating = true;
        l
    }

    fn load_of(&self, i: usize) -> TaskLoad {
        self.w
            .load()
            .find(|(arn, _)| *arn == self.tasks[i].arn)
            .map_or(TaskLoad::default(), |(_, l)| l)
    }

    fn metric(&self, m: SimMetric) -> Option<f64> {
        self.w.frame(&self.tasks).get(m)
    }

    /// Every arrival is accounted for exactly once, and the per-step and per-event
    /// counts add up to the totals.
    fn check_conservation(&self) {
        let t: Totals = self.w.totals();
        assert_eq!(t.arrived, t.accounted(), "{t:?}");
        assert_eq!(self.steps.arrived, t.arrived);
        assert_eq!(self.steps.completed, t.completed);
        assert_eq!(
            self.steps.failed_requests + self.losses.failed_requests,
            t.failed_requests
        );
        assert_eq!(self.steps.rejected, t.rejected);
        assert_eq!(self.losses.interrupted_sessions, t.interrupted_sessions);
        assert_eq!(self.losses.interrupted_messages, t.interrupted_messages);
        let held: u64 = self
            .w
            .load()
            .map(|(_, l)| u64::from(l.in_flight + l.sessions))
            .sum();
        assert_eq!(held, t.in_flight + t.sessions);
    }
}

#[test]
fn a_saturated_queue_runs_at_tasks_times_concurrency_over_processing_time() {
    // 4 tasks × 2 slots ÷ 2 s = 4 messages per second, exactly, with fixed times.
    let mut s = Sim::new(&queue(Dist::Fixed { s: 2.0 }, 2, Arrivals::Even), 4, 1);
    s.run(100.0, 10);
    let out = s.run(100.0, 100);
    assert_eq!(out.completed, 400);
    assert_eq!(s.metric(SimMetric::InFlight), Some(8.0));
    assert_eq!(s.metric(SimMetric::Cpu), Some(90.0));
    assert_eq!(s.metric(SimMetric::Memory), Some(60.0));
    assert_eq!(s.metric(SimMetric::ProcessingTime), Some(2.0));
    assert!(out.slo_violated, "the backlog grows old");
    s.check_conservation();

    // Exponential times: the same throughput on average (Little's law).
    let mut s = Sim::new(
        &queue(Dist::Exponential { mean_s: 2.0 }, 2, Arrivals::Poisson),
        4,
        9,
    );
    s.run(50.0, 60);
    let out = s.run(50.0, 3000);
    let per_s = out.completed as f64 / 3000.0;
    assert!((per_s - 4.0).abs() < 0.15, "throughput {per_s}");
    let mean_pt = s.metric(SimMetric::ProcessingTime).unwrap();
    assert!((mean_pt - 2.0).abs() < 0.6, "processing time {mean_pt}");
    s.check_conservation();
}

#[test]
fn a_light_queue_keeps_up_with_the_latency_of_processing_alone() {
    let mut s = Sim::new(&queue(Dist::Fixed { s: 2.0 }, 1, Arrivals::Even), 4, 1);
    let out = s.run(1.0, 100);
    assert_eq!(out.arrived, 100);
    assert_eq!(out.completed, 98, "the last two are still being processed");
    assert!(out.latencies.iter().all(|&(l, _)| (l - 2.0).abs() < 1e-9));
    assert!(!out.slo_violated);
    // Little: 1 per second × 2 s = 2 in flight, nothing waiting.
    assert_eq!(s.metric(SimMetric::InFlight), Some(2.0));
    assert_eq!(s.metric(SimMetric::QueueDepth), Some(0.0));
    assert_eq!(s.metric(SimMetric::OldestAge), Some(0.0));
    assert_eq!(s.metric(SimMetric::QueueTotal), Some(2.0));
    assert_eq!(s.metric(SimMetric::BacklogPerTask), Some(0.5));
    assert_eq!(s.metric(SimMetric::RequestRate), Some(1.0));
    assert_eq!(s.metric(SimMetric::RunningTasks), Some(4.0));
    // Two of four tasks busy (one slot each): CPU (2·90 + 2·2) ÷ 4.
    assert_eq!(s.metric(SimMetric::Cpu), Some(46.0));
    assert_eq!(s.metric(SimMetric::Sessions), None);
    assert_eq!(s.metric(SimMetric::RequestsPerTarget), None);
    assert_eq!(
        s.w.needed(&Demand {
            rate: 1.0,
            processing_time_s: None
        }),
        2.0
    );
    s.check_conservation();
}

#[test]
fn a_queue_without_workers_grows_old_and_violates_its_slo() {
    let mut s = Sim::new(&queue(Dist::Fixed { s: 1.0 }, 1, Arrivals::Even), 0, 1);
    let out = s.run(2.0, 30);
    assert!(!out.slo_violated, "29.5 s old is within 30 s");
    assert_eq!(s.metric(SimMetric::QueueDepth), Some(60.0));
    assert_eq!(s.metric(SimMetric::OldestAge), Some(29.5));
    assert_eq!(s.metric(SimMetric::BacklogPerTask), None, "no running task");
    assert_eq!(s.metric(SimMetric::Cpu), None);
    assert!(s.step(2.0).slo_violated);
    // A worker arrives and drains it, oldest first.
    s.tasks.push(task(0));
    let out = s.step(0.0);
    assert_eq!(out.completed, 1);
    assert!(
        (out.latencies[0].0 - 31.5).abs() < 1e-9,
        "{:?}",
        out.latencies
    );
    s.check_conservation();
}

#[test]
fn only_accepting_tasks_pull_messages() {
    let mut s = Sim::new(&queue(Dist::Fixed { s: 5.0 }, 1, Arrivals::Even), 3, 1);
    s.tasks[1].accepting = false; // DEACTIVATING after SIGTERM, say
    s.tasks[2].status = TaskStatus::Pending;
    s.tasks[2].accepting = false;
    s.run(1.0, 3);
    assert_eq!(s.load_of(0).in_flight, 1);
    assert_eq!(s.load_of(1).in_flight, 0);
    assert_eq!(s.load_of(2).in_flight, 0);
    assert_eq!(s.metric(SimMetric::QueueDepth), Some(2.0));
    assert_eq!(s.metric(SimMetric::RunningTasks), Some(2.0));
    s.check_conservation();
}

#[test]
fn messages_cut_by_a_stopping_task_go_back_to_the_queue_and_complete_once() {
    let mut s = Sim::new(&queue(Dist::Fixed { s: 100.0 }, 3, Arrivals::Even), 2, 1);
    s.run(1.0, 6); // 6 messages, 3 on each task
    assert_eq!(s.load_of(0).in_flight, 3);
    assert_eq!(s.sigterm(0), Losses::default());
    // SIGTERM: it finishes what it has, pulls nothing new.
    s.run(1.0, 2);
    assert_eq!(s.load_of(0).in_flight, 3);
    assert_eq!(s.metric(SimMetric::QueueDepth), Some(2.0));
    let lost = s.stop(0);
    assert_eq!(
        lost,
        Losses {
            interrupted_messages: 3,
            ..Losses::default()
        }
    );
    assert_eq!(s.load_of(0), TaskLoad::default());
    // Back in the queue with their first arrival: the oldest is 7.5 s old.
    assert_eq!(s.metric(SimMetric::QueueDepth), Some(5.0));
    assert_eq!(s.metric(SimMetric::OldestAge), Some(7.5));
    // A second stop event of the same task loses nothing more.
    assert_eq!(s.stop(0), Losses::default());
    // A new worker takes them, oldest first; every message completes exactly once.
    s.tasks.push(task(7));
    s.run(0.0, 300);
    assert_eq!(s.w.totals().completed, 8);
    assert_eq!(s.w.totals().interrupted_messages, 3);
    assert_eq!(s.metric(SimMetric::QueueTotal), Some(0.0));
    s.check_conservation();
}

#[test]
fn requests_fail_exactly_when_sent_to_a_terminating_task_or_cut_by_its_stop() {
    let mut s = Sim::new(
        &requests(Dist::Fixed { s: 100.0 }, 10, Arrivals::Even),
        2,
        1,
    );
    let out = s.run(2.0, 5);
    assert_eq!(
        (out.arrived, out.completed, out.failed_requests),
        (10, 0, 0)
    );
    assert_eq!(s.load_of(0).in_flight, 5);
    assert_eq!(s.load_of(1).in_flight, 5);
    // Task 1 gets SIGTERM while the load balancer still routes to it.
    s.sigterm(1);
    let out = s.step(2.0);
    assert_eq!(
        out.failed_requests, 1,
        "least outstanding: one each, task 1's fails"
    );
    assert!(out.slo_violated);
    assert_eq!(s.load_of(0).in_flight, 6);
    assert_eq!(s.load_of(1).in_flight, 5);
    // The terminating task holds fewer, so it attracts more: 6 and 5 in flight,
    // 3 new ones bring both to 7.
    let out = s.step(3.0);
    assert_eq!(out.failed_requests, 2);
    assert_eq!(s.load_of(0).in_flight, 7);
    // Its stop cuts exactly what it still serves.
    let lost = s.stop(1);
    assert_eq!(
        lost,
        Losses {
            failed_requests: 5,
            ..Losses::default()
        }
    );
    let out = s.step(0.0);
    assert!(
        out.slo_violated,
        "failures from the stop count against the SLO"
    );
    assert_eq!(out.failed_requests, 0, "but are reported once, by on_event");
    assert!(!s.step(0.0).slo_violated);
    s.check_conservation();
    assert_eq!(s.w.totals().failed_requests, 1 + 2 + 5);
}

#[test]
fn requests_with_no_routable_task_are_rejected() {
    let mut s = Sim::new(&requests(Dist::Fixed { s: 0.5 }, 10, Arrivals::Even), 2, 1);
    for t in &mut s.tasks {
        t.routable = false;
    }
    let out = s.run(3.0, 4);
    assert_eq!(out.rejected, 12);
    assert!(out.slo_violated);
    assert_eq!(s.metric(SimMetric::RequestsPerTarget), None);
    s.tasks[1].routable = true;
    let out = s.run(3.0, 4);
    assert_eq!((out.rejected, out.completed), (0, 12));
    assert!(!out.slo_violated);
    assert!(out.latencies.iter().all(|&(l, _)| (l - 0.5).abs() < 1e-9));
    assert_eq!(s.load_of(0).in_flight, 0);
    // 12 routed requests in the last 60 s, one routable target.
    assert_eq!(s.metric(SimMetric::RequestsPerTarget), Some(12.0));
    s.check_conservation();
}

#[test]
fn requests_over_capacity_slow_down_and_break_the_latency_slo() {
    // One task serving 4 at full speed; 8 per second of 1 s each: 8 in flight, CPU
    // would be 200 %: new requests take 2 s, then more in flight, and so on.
    let mut s = Sim::new(&requests(Dist::Fixed { s: 1.0 }, 4, Arrivals::Even), 1, 1);
    let out = s.run(2.0, 30);
    assert!(!out.slo_violated);
    assert!(out.latencies.iter().all(|&(l, _)| (l - 1.0).abs() < 1e-9));
    assert_eq!(s.metric(SimMetric::Cpu), Some(50.0));
    let out = s.run(8.0, 30);
    assert!(out.slo_violated);
    assert!(out.latencies.iter().any(|&(l, _)| l > 2.0));
    assert_eq!(
        s.metric(SimMetric::Cpu),
        Some(100.0),
        "capped at the reservation"
    );
    assert_eq!(
        s.w.needed(&Demand {
            rate: 8.0,
            processing_time_s: None
        }),
        2.0
    );
    s.check_conservation();
}

#[test]
fn sessions_are_interrupted_exactly_when_their_task_stops() {
    let mut s = Sim::new(
        &sessions(Dist::Fixed { s: 3600.0 }, Some(10), Arrivals::Even),
        3,
        1,
    );
    let out = s.run(1.0, 12);
    assert_eq!(out.arrived, 12);
    assert_eq!(s.load_of(0).sessions, 4);
    assert_eq!(s.metric(SimMetric::Sessions), Some(12.0));
    assert_eq!(s.metric(SimMetric::SessionsPerTask), Some(4.0));
    // 2 % + 4 × 5 % CPU; 20 % + 4 × 4 % memory.
    assert_eq!(s.metric(SimMetric::Cpu), Some(22.0));
    assert_eq!(s.metric(SimMetric::Memory), Some(36.0));
    assert_eq!(s.metric(SimMetric::InFlight), None);
    // SIGTERM: no new sessions land there (they are refused), the old ones stay.
    s.sigterm(2);
    assert_eq!(s.sigterm(2), Losses::default());
    let out = s.step(3.0);
    assert_eq!(out.rejected, 1);
    assert!(out.slo_violated);
    assert_eq!(s.load_of(2).sessions, 4);
    assert_eq!(
        s.stop(2),
        Losses {
            interrupted_sessions: 4,
            ..Losses::default()
        }
    );
    assert_eq!(s.metric(SimMetric::Sessions), Some(10.0));
    // The stopped task, still listed while deprovisioning, gets nothing new.
    s.run(1.0, 5);
    assert_eq!(s.load_of(2), TaskLoad::default());
    assert_eq!(s.w.load().count(), 2);
    s.check_conservation();
}

#[test]
fn sessions_are_refused_when_every_task_is_full() {
    let mut s = Sim::new(
        &sessions(Dist::Fixed { s: 3600.0 }, Some(10), Arrivals::Even),
        3,
        1,
    );
    let out = s.run(4.0, 10);
    assert_eq!(out.rejected, 10);
    assert!(out.slo_violated);
    for i in 0..3 {
        assert_eq!(s.load_of(i).sessions, 10);
    }
    // Sessions end after their duration, freeing room.
    s.run(0.0, 3600);
    assert_eq!(s.metric(SimMetric::Sessions), Some(0.0));
    assert_eq!(s.w.totals().completed, 30);
    assert_eq!(
        s.w.needed(&Demand {
            rate: 0.01,
            processing_time_s: None
        }),
        3.6
    );
    s.check_conservation();
}

#[test]
fn sessions_per_task_default_to_what_fits_in_cpu_and_memory() {
    // 20 % + 4 % per session: 20 sessions fit in memory before CPU (2 % + 5 %: 19).
    let w = Workload::new(
        &sessions(
            Dist::Exponential { mean_s: 1900.0 },
            None,
            Arrivals::Poisson,
        ),
        1,
    )
    .unwrap();
    let need = w.needed(&Demand {
        rate: 0.1,
        processing_time_s: None,
    });
    assert!((need - 10.0).abs() < 1e-9, "{need}");
}

#[test]
fn durations_can_come_from_the_trace() {
    let spec = queue(Dist::Trace, 1, Arrivals::Even);
    let mut s = Sim::new(&spec, 1, 1);
    let with_time = Trace::open(
        &TraceSpec::Constant {
            rate: 1.0,
            processing_time_s: Some(3.0),
        },
        std::path::Path::new("."),
        1,
    )
    .unwrap();
    s.w.check_trace(&with_time).unwrap();
    let without = Trace::open(
        &TraceSpec::Constant {
            rate: 1.0,
            processing_time_s: None,
        },
        std::path::Path::new("."),
        1,
    )
    .unwrap();
    assert_eq!(
        s.w.check_trace(&without).unwrap_err().to_string(),
        "processing: kind \"trace\" takes times from the trace, but the trace gives none: \
         add a processing_time column to the CSV or processing_time_s to the trace"
    );
    let demand = Demand {
        rate: 0.25,
        processing_time_s: Some(3.0),
    };
    let mut latencies = Vec::new();
    for _ in 0..40 {
        latencies.extend(s.step_with(demand).latencies);
    }
    assert!(!latencies.is_empty());
    assert!(latencies.iter().all(|&(l, _)| (l - 3.0).abs() < 1e-9));
    assert_eq!(s.w.needed(&demand), 0.75);
}

#[test]
fn a_csv_trace_drives_a_queue_with_its_processing_times() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces");
    let mut trace = Trace::open(
        &TraceSpec::Csv {
            path: "minutes.csv".into(),
            processing_time_s: None,
        },
        &base,
        1,
    )
    .unwrap();
    let mut s = Sim::new(&queue(Dist::Trace, 100, Arrivals::Even), 1, 1);
    s.w.check_trace(&trace).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    let length = trace.length().unwrap().as_secs();
    for t in 0..length {
        let demand = trace.demand_at(t as f64).unwrap();
        for (latency, n) in s.step_with(demand).latencies {
            *seen.entry((latency * 10.0).round() as u64).or_insert(0) += n;
        }
    }
    for (latency, n) in s.run(0.0, 10).latencies {
        *seen.entry((latency * 10.0).round() as u64).or_insert(0) += n;
    }
    // Minute 0: 30 messages of 6 s; minute 1: 90 of 6 s (held); minute 2: none;
    // minute 3: 135 of 7 s.
    assert_eq!(seen, [(60, 30 + 90), (70, 135)].into_iter().collect());
    let end = trace.demand_at(length as f64).unwrap();
    assert!((s.w.needed(&end) - 2.25 * 7.0 / 100.0).abs() < 1e-12);
}

#[test]
fn a_run_is_reproducible_for_its_seed() {
    let spec = requests(
        Dist::LogNormal {
            median_s: 0.3,
            p95_s: 3.0,
        },
        8,
        Arrivals::Poisson,
    );
    let run = |seed| {
        let mut s = Sim::new(&spec, 5, seed);
        let mut outs = Vec::new();
        for k in 0..600 {
            outs.push(s.step(20.0 + f64::from(k % 50)));
            if k == 300 {
                s.sigterm(3);
            }
            if k == 320 {
                s.stop(3);
            }
        }
        (outs, s.w.frame(&s.tasks), s.w.totals())
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a.2, run(43).2);
}

#[test]
fn stratified_durations_follow_the_distribution() {
    // Many requests a step: each batch is split in strata; the completed latencies
    // still follow the log-normal's median and 95th percentile.
    let mut s = Sim::new(
        &requests(
            Dist::LogNormal {
                median_s: 0.5,
                p95_s: 4.0,
            },
            1000,
            Arrivals::Poisson,
        ),
        10,
        3,
    );
    let out = s.run(200.0, 600);
    let mut lat = out.latencies;
    lat.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = lat.iter().map(|l| l.1).sum();
    let quantile = |q: f64| {
        let mut seen = 0;
        for &(l, n) in &lat {
            seen += n;
            if seen as f64 >= q * total as f64 {
                return l;
            }
        }
        f64::NAN
    };
    assert!(
        (quantile(0.5) - 0.5).abs() < 0.05,
        "median {}",
        quantile(0.5)
    );
    assert!((quantile(0.95) - 4.0).abs() < 0.4, "p95 {}", quantile(0.95));
    s.check_conservation();
}

#[test]
fn unknown_tasks_and_other_events_change_nothing() {
    let mut s = Sim::new(&requests(Dist::Fixed { s: 1.0 }, 1, Arrivals::Even), 1, 1);
    s.run(1.0, 3);
    let stop_unknown = Event::TaskStopped {
        arn: "arn:nope".into(),
        service: "app".into(),
        at: s.now(),
        reason: String::new(),
    };
    assert_eq!(s.event(stop_unknown), Losses::default());
    let running = Event::TaskRunning {
        arn: s.tasks[0].arn.clone(),
        service: "app".into(),
        at: s.now(),
    };
    assert_eq!(s.event(running), Losses::default());
    // A step that does not move time forward does nothing.
    let again = s.w.step(
        s.now(),
        1.0,
        &Demand {
            rate: 100.0,
            processing_time_s: None,
        },
        &s.tasks,
    );
    assert_eq!(again, StepOutcome::default());
    s.check_conservation();
}

/// One action of a random run.
#[derive(Debug, Clone)]
enum Op {
    Step(f64),
    Add,
    Sigterm(usize),
    Stop(usize),
    Unroute(usize),
    Forget(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0.0f64..30.0).prop_map(Op::Step),
        1 => Just(Op::Add),
        1 => (0usize..8).prop_map(Op::Sigterm),
        1 => (0usize..8).prop_map(Op::Stop),
        1 => (0usize..8).prop_map(Op::Unroute),
        1 => (0usize..8).prop_map(Op::Forget),
    ]
}

fn spec_strategy() -> impl Strategy<Value = WorkloadSpec> {
    let dist = prop_oneof![
        (0.1f64..5.0).prop_map(|s| Dist::Fixed { s }),
        (0.1f64..5.0).prop_map(|mean_s| Dist::Exponential { mean_s }),
        (0.1f64..2.0, 1.0f64..5.0).prop_map(|(m, f)| Dist::LogNormal {
            median_s: m,
            p95_s: m * f
        }),
        (0.0f64..2.0, 0.1f64..4.0).prop_map(|(a, w)| Dist::Uniform {
            min_s: a,
            max_s: a + w
        }),
    ];
    let arrivals = prop_oneof![Just(Arrivals::Poisson), Just(Arrivals::Even)];
    (dist, 1u32..4, arrivals, 0usize..3).prop_map(|(d, n, a, kind)| match kind {
        0 => queue(d, n, a),
        1 => requests(d, n, a),
        _ => sessions(d, Some(n * 3), a),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_arrival_is_accounted_for_exactly_once(
        spec in spec_strategy(),
        seed in 0u64..1000,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut s = Sim::new(&spec, 2, seed);
        let mut next = 2;
        for op in ops {
            match op {
                Op::Step(rate) => { s.step(rate); }
                Op::Add => { s.tasks.push(task(next)); next += 1; }
                Op::Sigterm(i) if i < s.tasks.len() => { s.sigterm(i); }
                Op::Stop(i) if i < s.tasks.len() => { s.stop(i); }
                Op::Unroute(i) if i < s.tasks.len() => { s.tasks[i].routable = false; }
                Op::Forget(i) if i < s.tasks.len() && s.tasks[i].status == TaskStatus::Deprovisioning => {
                    s.tasks.remove(i);
                }
                _ => {}
            }
            s.check_conservation();
        }
        // Everything ends once arrivals stop and enough tasks remain.
        for k in 0..20 {
            s.tasks.push(task(next + k));
        }
        // Overloaded requests may run for hours (slowed down): long steps.
        let idle = Demand { rate: 0.0, processing_time_s: None };
        for _ in 0..5000 {
            let t = s.w.totals();
            if t.waiting + t.in_flight + t.sessions == 0 {
                break;
            }
            s.step_long(idle, 60);
        }
        s.check_conservation();
        let t = s.w.totals();
        prop_assert_eq!(t.waiting + t.in_flight + t.sessions, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// A runner that passes only `load_changes` on makes exactly the calls one
    /// comparing `load` against its last copy would, in the same order.
    #[test]
    fn load_changes_are_the_changes_of_load(
        spec in spec_strategy(),
        seed in 0u64..1000,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut s = Sim::new(&spec, 2, seed);
        let mut next = 2;
        let mut copy: std::collections::HashMap<String, u32> = Default::default();
        for op in ops {
            match op {
                Op::Step(rate) => { s.step(rate); }
                Op::Add => { s.tasks.push(task(next)); next += 1; }
                Op::Sigterm(i) if i < s.tasks.len() => { s.sigterm(i); }
                Op::Stop(i) if i < s.tasks.len() => { s.stop(i); }
                Op::Unroute(i) if i < s.tasks.len() => { s.tasks[i].routable = false; }
                Op::Forget(i) if i < s.tasks.len() && s.tasks[i].status == TaskStatus::Deprovisioning => {
                    s.tasks.remove(i);
                }
                _ => {}
            }
            let mut want = Vec::new();
            for (arn, l) in s.w.load() {
                let n = l.in_flight + l.sessions;
                if copy.get(arn) != Some(&n) {
                    want.push((arn.to_owned(), l));
                    copy.insert(arn.to_owned(), n);
                }
            }
            let got: Vec<(String, TaskLoad)> =
                s.w.load_changes().map(|(a, _, l)| (a.to_owned(), l)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(s.w.load_changes().count(), 0);
        }
    }
}
