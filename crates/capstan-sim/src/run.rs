//! The runner: one scenario, several policy sets, each on its own copy of the world
//! and the same trace.
//!
//! A run steps virtual time by the scenario's step. Each step: the world catches up
//! (task lifecycle, scheduler, draining), its events reach the workload (a stopped task
//! loses what it held), the trace gives the demand, the workload serves it on the tasks
//! the world offers, every task's work is reported back to the world (an idle draining
//! target finishes early) and to capstan's target (which never picks a busy victim),
//! the metrics are computed, and then the controller acts:
//!
//! - capstan: each `simulated` source is sampled into the metric windows at its own
//!   interval, and every service interval the very same
//!   [`ServiceLoop::tick`](capstan_control::ServiceLoop::tick) as `capstan run`
//!   evaluates the policies and carries the decision out through the ECS target of
//!   `capstan-targets`, which talks to the world through the AWS traits;
//! - an AWS baseline: AWS's alarms and policy see the metric as CloudWatch would, and
//!   set `desiredCount` through the same traits; ECS picks the victims, blind.
//!
//! Runs are independent and deterministic for the scenario's seed; they run on
//! parallel threads.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use capstan_aws_api::{Ecs, InstanceLifecycleState};
use capstan_control::ServiceLoop;
use capstan_core::clock::{self, Clock, VirtualClock};
use capstan_core::decision::Action;
use capstan_core::metrics::{Observations, SharedObservations};
use capstan_core::model::Sample;
use capstan_core::planner::Engine;
use capstan_store::{DecisionLog, MemoryStore};
use capstan_targets::asg::{AsgTarget, AsgTargetSpec};
use capstan_targets::ecs::{EcsTarget, EcsTargetSpec, WorkCounts};
use capstan_world::World;
use jiff::Timestamp;

use crate::baseline::{Baseline, BaselineSpec};
use crate::metric::{Frame, SimMetric};
use crate::record::StepRecord;
use crate::report::{RecorderOptions, RunRecorder, RunSeries, RunSummary, Summary};
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::workload::Workload;

mod hosts;

use hosts::{AwsHosts, CapstanHosts, HostScaler};

/// A simulation that could not run, naming the run and the reason.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario, its trace, workload or a baseline is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A run failed while running.
    #[error("run {run}: {reason}")]
    Run {
        /// The run.
        run: String,
        /// Why.
        reason: String,
    },
    /// The report could not be written.
    #[error("{0}")]
    Report(String),
}

/// One simulated source of a capstan config: the name policies use and the metric it
/// reads.
#[derive(Debug, Clone)]
pub struct SimSource {
    /// The source's name in the config.
    pub name: String,
    /// The simulated metric it reads.
    pub metric: SimMetric,
    /// Time between reads.
    pub interval: Duration,
    /// Samples older than this are stale.
    pub max_age: Duration,
    /// History kept.
    pub retention: Duration,
}

/// One capstan policy set to run: a compiled service of a capstan config.
#[derive(Debug, Clone)]
pub struct CapstanRun {
    /// The run's name in reports (`capstan`, or the config's file name with
    /// `--compare`).
    pub name: String,
    /// The service's engine (policies and planner), as `capstan run` would build it.
    pub engine: Engine,
    /// Time between evaluations.
    pub interval: Duration,
    /// Its sources, each mapped to a simulated metric.
    pub sources: Vec<SimSource>,
    /// How long a scale-in victim may take to drain before it is kept.
    pub drain_timeout: Duration,
    /// How long the tasks that stay are protected while ECS stops the victims.
    pub protect_minutes: u32,
    /// The config's service that scales the EC2 cluster's hosts, if any (EC2 cluster
    /// scenarios only).
    pub hosts: Option<HostsRun>,
}

/// capstan's host scaling in an EC2 cluster scenario: a compiled service of the config
/// whose target scales the cluster's Auto Scaling group (its first group).
#[derive(Debug, Clone)]
pub struct HostsRun {
    /// The service's engine (its policies read the same sources as the service's).
    pub engine: Engine,
    /// Time between evaluations.
    pub interval: Duration,
    /// How long a host may take to drain (its tasks to move) before it is kept.
    pub drain_timeout: Duration,
    /// No new scale-out while a host launched less than this ago.
    pub warmup: Duration,
}

/// Sees every step of every run as it happens (`capstan demo`'s live table). Called
/// from each run's own thread, after the step is recorded; a slow observer slows the
/// run down (which is how the demo paces a run to real time).
pub trait StepObserver: Send + Sync {
    /// Run `run` (its name in reports) finished the step `record`.
    fn on_step(&self, run: &str, record: &StepRecord);
}

/// How to run and what to write.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Write `summary.json`, one CSV per run, and the plots here.
    pub out: Option<PathBuf>,
    /// Draw the plots (needs `out`).
    pub plots: bool,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// Replace the scenario's seed.
    pub seed: Option<u64>,
    /// Replace the scenario's duration.
    pub duration: Option<Duration>,
    /// Told of every step of every run.
    pub observer: Option<Arc<dyn StepObserver>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("out", &self.out)
            .field("plots", &self.plots)
            .field("progress", &self.progress)
            .field("seed", &self.seed)
            .field("duration", &self.duration)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// What a run's controller is.
enum Controller {
    Capstan(Box<CapstanSide>),
    Aws(Box<Baseline>),
}

/// capstan's side of a run: the real control loop on the world.
struct CapstanSide {
    service_loop: ServiceLoop<EcsTarget<World, World>, VirtualClock>,
    obs: SharedObservations,
    sources: Vec<(SimSource, Timestamp)>,
    interval: Duration,
    next_tick: Timestamp,
    plot: Option<(SimMetric, f64)>,
}

/// Work per task as the workload last reported it to the world, read by capstan's ECS
/// target (the simulator's stand-in for the session registry).
#[derive(Debug)]
struct SharedWork(World);

impl WorkCounts for SharedWork {
    fn work(&self, task_arn: &str) -> u32 {
        self.0.work(task_arn).unwrap_or(0)
    }

    fn work_many(&self, task_arns: &[&str]) -> Vec<u32> {
        self.0
            .work_many(task_arns.iter().copied())
            .into_iter()
            .map(|w| w.unwrap_or(0))
            .collect()
    }
}

/// Polls a future that never waits on anything outside the simulator (the world's
/// operations answer at once) to completion.
fn ready<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// What a tick of capstan's loop did: the change carried out, and the decision as a
/// sentence (`None` when no tick was due).
type Tick = (Option<(u32, u32)>, Option<String>);

/// Everything one run owns.
struct Run {
    name: String,
    clock: VirtualClock,
    world: World,
    workload: Workload,
    trace: Trace,
    controller: Controller,
    recorder: RunRecorder,
    cluster: String,
    service: String,
    /// Whether the service runs on an EC2 cluster (reservation metrics, hosts).
    on_cluster: bool,
    /// What scales the cluster's hosts, if anything.
    host_scaler: Option<HostScaler>,
    /// The world's tasks as last read, and the world's generation then.
    tasks: Vec<capstan_world::TaskInfo>,
    tasks_generation: Option<u64>,
    /// Billed hosts (the group's instances not terminated) and reservation as last
    /// read (EC2 only).
    hosts: Option<(u32, f64, f64)>,
}

/// Runs every policy set of `scenario` (the capstan runs and the scenario's baselines)
/// and writes the report. Everything is validated before the first step.
pub fn run(
    scenario: &Scenario,
    capstan: &[CapstanRun],
    options: &RunOptions,
) -> Result<Summary, SimError> {
    let seed = options.seed.unwrap_or(scenario.seed);
    // The workload and the trace are checked even when a run is missing, so a bad
    // scenario never gets as far as a first step.
    let workload = Workload::new(&scenario.workload, seed)
        .map_err(|e| SimError::Invalid(format!("{}: workload: {e}", scenario.origin)))?;
    let trace = Trace::open(&scenario.trace, &scenario.base_dir, seed)
        .map_err(|e| SimError::Invalid(format!("{}: trace: {e}", scenario.origin)))?;
    workload
        .check_trace(&trace)
        .map_err(|e| SimError::Invalid(format!("{}: workload: {e}", scenario.origin)))?;
    if capstan.is_empty() && scenario.baselines.is_empty() {
        return Err(SimError::Invalid(format!(
            "{}: nothing to run: no capstan config and no baselines",
            scenario.origin
        )));
    }
    if let Some(dir) = &options.out {
        std::fs::create_dir_all(dir).map_err(|e| {
            SimError::Report(format!(
                "{}: cannot create the output directory: {e}",
                dir.display()
            ))
        })?;
    }
    let mut runs = Vec::new();
    for c in capstan {
        if c.hosts.is_some() && host_group(scenario).is_none() {
            return Err(SimError::Invalid(format!(
                "{}: run {}: its config scales hosts, but the scenario has no [cluster] with an Auto Scaling group",
                scenario.origin, c.name
            )));
        }
        runs.push(build_run(
            scenario,
            seed,
            options,
            &c.name,
            false,
            |world, work, clock| capstan_side(scenario, c, world, work, clock),
        )?);
    }
    for b in &scenario.baselines {
        let invalid = |e: &dyn std::fmt::Display| {
            SimError::Invalid(format!(
                "{}: baselines \"{}\": {e}",
                scenario.origin, b.name
            ))
        };
        let baseline = Baseline::new(&b.name, &b.spec).map_err(|e| invalid(&e))?;
        if baseline.acts_on_cluster() {
            // Its step would never act on the service (the scenario refuses it too).
            return Err(invalid(&format!(
                "kind {} scales hosts: put it in a service baseline's `hosts` table",
                b.spec.kind()
            )));
        }
        let hosts = match &b.hosts {
            Some(spec) => {
                let group = host_group(scenario).ok_or_else(|| {
                    invalid(&"hosts: the scenario has no [cluster] with an Auto Scaling group")
                })?;
                let managed = BaselineSpec::AwsManagedScaling(spec.clone());
                let baseline = Baseline::new(&format!("{} hosts", b.name), &managed)
                    .map_err(|e| invalid(&e))?;
                Some((baseline, group.clone()))
            }
            None => None,
        };
        let managed_draining = hosts.is_some();
        runs.push(build_run(
            scenario,
            seed,
            options,
            &b.name,
            managed_draining,
            |_, _, _| {
                let scaler = hosts.map(|(baseline, group)| {
                    HostScaler::Aws(Box::new(AwsHosts {
                        baseline,
                        cluster: scenario.service.cluster.clone(),
                        group,
                        view: None,
                        generation: None,
                    }))
                });
                Ok((Controller::Aws(Box::new(baseline)), scaler))
            },
        )?);
    }
    let duration = match options
        .duration
        .or(scenario.duration_s.map(Duration::from_secs_f64))
    {
        Some(d) => d,
        None => runs
            .first()
            .and_then(|r| r.trace.length())
            .unwrap_or(Duration::from_secs(86_400)),
    };
    let steps = (duration.as_secs_f64() / scenario.step_s).round().max(1.0) as u64;
    let bar = options
        .progress
        .then(|| crate::report::progress_bar(steps * runs.len() as u64));

    let results: Vec<Result<(RunSummary, RunSeries), SimError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|r| {
                let bar = bar.clone();
                let observer = options.observer.clone();
                scope.spawn(move || r.run(steps, scenario.step(), bar.as_ref(), observer))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(SimError::Run {
                        run: "?".into(),
                        reason: "the run panicked".into(),
                    })
                })
            })
            .collect()
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let mut summaries = Vec::new();
    let mut series = Vec::new();
    for r in results {
        let (s, ser) = r?;
        summaries.push(s);
        series.push(ser);
    }
    let summary = Summary {
        scenario: scenario.name.clone(),
        seed,
        runs: summaries,
    };
    if let Some(dir) = &options.out {
        summary
            .write(dir)
            .map_err(|e| SimError::Report(e.to_string()))?;
        if options.plots {
            let named: Vec<(&str, &RunSeries)> = summary
                .runs
                .iter()
                .map(|r| r.name.as_str())
                .zip(series.iter())
                .collect();
            let title = format!("{} (seed {seed})", scenario.name);
            crate::report::plot(&title, &named, &dir.join("plot.png"), &dir.join("plot.svg"))
                .map_err(|e| SimError::Report(e.to_string()))?;
        }
    }
    Ok(summary)
}

/// The Auto Scaling group whose instances are the cluster's hosts: the cluster's first.
fn host_group(scenario: &Scenario) -> Option<&capstan_world::AutoScalingGroupSpec> {
    scenario.cluster.as_ref().and_then(|c| c.groups.first())
}

/// Builds one run's world, workload, trace and recorder around a controller (and what
/// scales the hosts). `managed_draining`: ECS managed draining on the hosts' group.
fn build_run(
    scenario: &Scenario,
    seed: u64,
    options: &RunOptions,
    name: &str,
    managed_draining: bool,
    controller: impl FnOnce(
        &World,
        &Arc<SharedWork>,
        &VirtualClock,
    ) -> Result<(Controller, Option<HostScaler>), SimError>,
) -> Result<Run, SimError> {
    let clock = VirtualClock::new(scenario.start);
    let mut world_config = scenario.world.clone();
    world_config.seed = seed;
    let world = World::new(world_config, clock.clone());
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        SimError::Invalid(format!("{}: {what}: {e}", scenario.origin))
    };
    if let Some(cluster) = &scenario.cluster {
        let mut cluster = cluster.clone();
        if let Some(group) = cluster.groups.first_mut() {
            group.managed_draining = managed_draining;
        }
        world
            .add_cluster(cluster)
            .map_err(|e| invalid("cluster", &e))?;
    }
    world
        .add_service(scenario.service.clone())
        .map_err(|e| invalid("service", &e))?;
    let workload = Workload::new(&scenario.workload, seed).map_err(|e| invalid("workload", &e))?;
    let trace =
        Trace::open(&scenario.trace, &scenario.base_dir, seed).map_err(|e| invalid("trace", &e))?;
    let work = Arc::new(SharedWork(world.clone()));
    let (controller, host_scaler) = controller(&world, &work, &clock)?;
    let csv = options
        .out
        .as_ref()
        .map(|dir| dir.join(format!("{name}.csv")));
    let recorder = RunRecorder::new(
        name,
        RecorderOptions {
            cost_per_task_hour: scenario.cost_per_task_hour,
            csv,
            ..RecorderOptions::default()
        },
    )
    .map_err(|e| SimError::Report(e.to_string()))?;
    Ok(Run {
        name: name.to_owned(),
        clock,
        world,
        workload,
        trace,
        controller,
        recorder,
        cluster: scenario.service.cluster.clone(),
        service: scenario.service.name.clone(),
        on_cluster: scenario.cluster.is_some(),
        host_scaler,
        tasks: Vec::new(),
        tasks_generation: None,
        hosts: None,
    })
}

/// capstan's side: the ECS target on the world and the control loop around it, and the
/// host loop on the Auto Scaling group target when the config scales hosts.
fn capstan_side(
    scenario: &Scenario,
    c: &CapstanRun,
    world: &World,
    work: &Arc<SharedWork>,
    clock: &VirtualClock,
) -> Result<(Controller, Option<HostScaler>), SimError> {
    let spec = EcsTargetSpec {
        target_group: scenario
            .service
            .target_group
            .as_ref()
            .map(|t| t.arn.clone()),
        protect_minutes: c.protect_minutes,
        drain_timeout: c.drain_timeout,
        ..EcsTargetSpec::new(&scenario.service.cluster, &scenario.service.name)
    };
    let counts: Arc<dyn WorkCounts> = work.clone();
    let elb = scenario
        .service
        .target_group
        .as_ref()
        .map(|_| world.clone());
    // The same durable scale-in workflow as `capstan run` (journaled in memory here).
    let settings = capstan_core::workflow::WorkflowSettings {
        drain_timeout: c.drain_timeout,
        ..capstan_core::workflow::WorkflowSettings::default()
    };
    let target = EcsTarget::new(&c.engine.service, spec, world.clone(), elb, Some(counts))
        .with_clock(clock.clone())
        .with_workflows(
            Arc::new(capstan_targets::ecs::durable::MemoryJournal::default()),
            settings,
        )
        .map_err(|e| SimError::Invalid(format!("service {}: {e}", c.engine.service)))?;
    let mut obs = Observations::new();
    for s in &c.sources {
        obs.declare(&s.name, s.retention, s.max_age);
    }
    let obs: SharedObservations = Arc::new(Mutex::new(obs));
    let log: Arc<dyn DecisionLog> = Arc::new(MemoryStore::default());
    let service_loop = ServiceLoop::new(
        c.engine.clone(),
        target,
        clock.clone(),
        obs.clone(),
        log.clone(),
    );
    let now = clock.now();
    let hosts = match (&c.hosts, host_group(scenario)) {
        (Some(h), Some(group)) => {
            let spec = AsgTargetSpec {
                warmup: h.warmup,
                drain_timeout: h.drain_timeout,
                ..AsgTargetSpec::new(&scenario.service.cluster, &group.name)
            };
            let target = AsgTarget::new(&h.engine.service, spec, world.clone(), world.clone())
                .with_clock(clock.clone());
            let service_loop =
                ServiceLoop::new(h.engine.clone(), target, clock.clone(), obs.clone(), log);
            Some(HostScaler::Capstan(Box::new(CapstanHosts {
                service_loop,
                interval: h.interval,
                next_tick: now,
            })))
        }
        _ => None,
    };
    let side = CapstanSide {
        service_loop,
        obs,
        sources: c.sources.iter().map(|s| (s.clone(), now)).collect(),
        interval: c.interval,
        next_tick: now,
        plot: scenario.plot.map(|p| (p.metric, p.target)),
    };
    Ok((Controller::Capstan(Box::new(side)), hosts))
}

impl Run {
    /// Runs `steps` steps of `step` and returns the summary and the plot series.
    fn run(
        mut self,
        steps: u64,
        step: Duration,
        bar: Option<&indicatif::ProgressBar>,
        observer: Option<Arc<dyn StepObserver>>,
    ) -> Result<(RunSummary, RunSeries), SimError> {
        let start = self.clock.now();
        let dt = step.as_secs_f64();
        for i in 0..steps {
            self.clock.advance(step);
            let now = self.clock.now();
            let elapsed = clock::elapsed(start, now).as_secs_f64();
            let rec = self
                .step(now, elapsed, dt)
                .map_err(|reason| SimError::Run {
                    run: self.name.clone(),
                    reason,
                })?;
            self.recorder
                .record(&rec)
                .map_err(|e| SimError::Report(e.to_string()))?;
            if let Some(observer) = &observer {
                observer.on_step(&self.name, &rec);
            }
            if let Some(bar) = bar
                && i % 1024 == 0
            {
                bar.inc(1024.min(steps - i));
            }
        }
        self.recorder
            .finish()
            .map_err(|e| SimError::Report(e.to_string()))
    }

    /// One step ending at `now`.
    fn step(&mut self, now: Timestamp, elapsed: f64, dt: f64) -> Result<StepRecord, String> {
        let mut failed = 0;
        let mut interrupted_sessions = 0;
        let mut interrupted_messages = 0;
        for event in self.world.advance() {
            let lost = self.workload.on_event(&event);
            failed += lost.failed_requests;
            interrupted_sessions += lost.interrupted_sessions;
            interrupted_messages += lost.interrupted_messages;
        }
        let demand = self.trace.demand_at(elapsed).map_err(|e| e.to_string())?;
        self.refresh();
        let tasks = &self.tasks;
        let outcome = self.workload.step(now, dt, &demand, tasks);
        // Only changes reach the world, all at once (it settles once after them);
        // capstan's target reads the work back from the world.
        self.world.set_work_many(
            self.workload
                .load_changes()
                .map(|(_, task, load)| (task, load.in_flight.saturating_add(load.sessions))),
        );
        for (latency, count) in &outcome.latencies {
            self.recorder.latency(*latency, *count);
        }
        let mut frame = self.workload.frame(tasks);
        self.cluster_metrics(&mut frame);

        let counts = self
            .world
            .service_counts(&self.cluster, &self.service)
            .ok_or_else(|| "the service disappeared from the world".to_owned())?;
        let (action, decision, metric) = match &mut self.controller {
            Controller::Capstan(side) => {
                let (action, decision) = side.step(now, &frame)?;
                (action, decision, side.plot)
            }
            Controller::Aws(baseline) => {
                let mut decision = None;
                let action = match baseline.step(now, &frame, counts.running, counts.desired) {
                    Some(a) => {
                        let from = counts.desired;
                        ready(
                            self.world
                                .update_desired_count(&self.cluster, &self.service, a.to),
                        )
                        .ok_or("the world did not answer at once")?
                        .map_err(|e| e.to_string())?;
                        tracing::debug!(run = %self.name, from, to = a.to, "{}", a.reason);
                        decision = Some(format!("{from} → {}: {}", a.to, a.reason));
                        (from != a.to).then_some((from, a.to))
                    }
                    None => None,
                };
                (action, decision, Some(baseline.metric()))
            }
        };
        let (host_action, host_decision) = match &mut self.host_scaler {
            Some(h) => h.step(now, &self.world)?,
            None => (None, None),
        };
        if let Some((from, to)) = host_action {
            tracing::debug!(run = %self.name, from, to, "hosts");
        }
        let decision = match (decision, host_decision) {
            (Some(d), Some(h)) => Some(format!("{d} | {h}")),
            (d, h) => d.or(h),
        };
        let counts = self
            .world
            .service_counts(&self.cluster, &self.service)
            .unwrap_or(counts);
        Ok(StepRecord {
            at: now,
            elapsed_s: elapsed,
            dt_s: dt,
            demand: demand.rate,
            needed: self.workload.needed(&demand),
            desired: counts.desired,
            running: counts.running,
            pending: counts.pending,
            stopping: counts.stopping,
            hosts: self.hosts.map(|(n, _, _)| n),
            metric: metric.and_then(|(m, _)| frame.get(m)),
            metric_target: metric.map(|(_, t)| t),
            frame,
            completed: outcome.completed,
            failed_requests: failed + outcome.failed_requests,
            interrupted_sessions: interrupted_sessions + outcome.interrupted_sessions,
            interrupted_messages: interrupted_messages + outcome.interrupted_messages,
            slo_violated: outcome.slo_violated,
            action,
            decision,
        })
    }

    /// Re-reads the world's tasks (and hosts) when anything they show may have changed.
    fn refresh(&mut self) {
        let generation = self.world.generation();
        if self.tasks_generation == Some(generation) {
            return;
        }
        self.tasks_generation = Some(generation);
        self.world
            .tasks_into(&self.cluster, &self.service, &mut self.tasks);
        if self.on_cluster {
            // Every instance launched and not yet terminated is billed, whatever its
            // container instance is doing.
            self.hosts = self.world.cluster_state(&self.cluster).map(|c| {
                let billed: usize = c
                    .groups
                    .iter()
                    .flat_map(|g| &g.instances)
                    .filter(|i| i.lifecycle_state != InstanceLifecycleState::Terminated)
                    .count();
                (
                    u32::try_from(billed).unwrap_or(u32::MAX),
                    c.cpu_reservation_percent,
                    c.memory_reservation_percent,
                )
            });
        }
    }

    /// Cluster reservation and tasks not yet running (EC2 scenarios).
    fn cluster_metrics(&self, frame: &mut Frame) {
        if let Some((_, cpu, memory)) = self.hosts {
            frame.set(SimMetric::CpuReservation, cpu);
            frame.set(SimMetric::MemoryReservation, memory);
        }
        if let Some(s) = self.world.service_counts(&self.cluster, &self.service) {
            let waiting = s.desired.saturating_sub(s.running);
            frame.set(SimMetric::PendingTasks, f64::from(waiting));
        }
    }
}

impl CapstanSide {
    /// Samples due sources, and ticks the control loop when its interval has come.
    /// Returns the desired-count change the tick carried out, if any, and the tick's
    /// decision as a sentence.
    fn step(&mut self, now: Timestamp, frame: &Frame) -> Result<Tick, String> {
        {
            let mut obs = self.obs.lock().unwrap_or_else(PoisonError::into_inner);
            for (source, due) in &mut self.sources {
                if now < *due {
                    continue;
                }
                *due = clock::add(now, source.interval);
                match frame.get(source.metric) {
                    Some(value) => obs.push(&source.name, Sample { value, at: now }),
                    None => obs.fail(
                        &source.name,
                        now,
                        format!("simulated metric {} has no value now", source.metric),
                    ),
                }
            }
        }
        // Between ticks, the scale-in workflow's due steps run (drain checks,
        // retries), as the daemon's pump runs them.
        if let Some(Err(e)) = ready(self.service_loop.target().advance_workflow()) {
            tracing::debug!(error = %e, "workflow step failed");
        }
        tick_due(
            &mut self.service_loop,
            now,
            self.interval,
            &mut self.next_tick,
        )
    }
}

/// Ticks `service_loop` if its `next_tick` has come (then due again `interval` later):
/// the desired-count change it carried out, if any, and the decision as a sentence.
/// As in the daemon, a failed tick is logged and tried again at the next interval.
fn tick_due<T: capstan_targets::Target>(
    service_loop: &mut ServiceLoop<T, VirtualClock>,
    now: Timestamp,
    interval: Duration,
    next_tick: &mut Timestamp,
) -> Result<Tick, String> {
    if now < *next_tick {
        return Ok((None, None));
    }
    *next_tick = clock::add(now, interval);
    let result = ready(service_loop.tick())
        .ok_or("the control loop waited on something the simulator cannot provide")?;
    Ok(match result {
        Ok(decision) => {
            let action = match decision.action {
                _ if decision.dry_run => None,
                Action::ScaleOut { from, to } | Action::ScaleIn { from, to } => Some((from, to)),
                Action::Hold { .. } => None,
            };
            (action, Some(decision.sentence()))
        }
        Err(e) => {
            tracing::debug!(service = %service_loop.service(), error = %e, "tick failed");
            (None, Some(format!("tick failed: {e}")))
        }
    })
}
