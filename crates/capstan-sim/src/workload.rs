//! Workloads: what a service's tasks do with the demand of a trace — work through a
//! queue, serve requests, or hold long sessions — and the load, queue, latency and
//! loss figures that follow.
//!
//! # Model
//!
//! Work is kept in aggregate: items that arrive and start together on one task form a
//! cohort with one finish time, held in a timing wheel keyed by the second it finishes.
//! A step costs O(tasks + cohorts finishing), not O(items). Durations are drawn by
//! stratified sampling: a batch of `n` items on one task is split into at most 4 equal
//! cohorts, each drawn from its own quarter of the distribution, so every item's
//! duration follows the distribution while a large batch costs 4 draws. Quantiles come
//! from a 1024-point table with linear interpolation (within 0.1 % of the exact value;
//! the outer 1/128 on each side is computed exactly).
//!
//! Arrivals per step are a seeded Poisson count (random instants within the step) or,
//! with `arrivals = "even"`, exactly rate × step with fractions carried over (mid-step).
//! Everything random comes from one ChaCha8 generator seeded at [`Workload::new`]: a run
//! is reproducible for its seed.
//!
//! Task flags come from the world ([`TaskInfo`]) each step: `routable` (the load
//! balancer sends it new requests and sessions), `accepting` (the application takes new
//! work, e.g. pulls messages), `terminating` (SIGTERM received: it finishes what it has
//! and takes nothing new). A [`Event::TaskSigterm`] counts as `terminating` at once.
//!
//! ## Queue (`kind = "queue"`)
//!
//! Messages wait in one FIFO queue (runs of equal arrival time). A task that accepts
//! work pulls messages whenever one of its `concurrency` slots is free: at the start of
//! a step, and at the instant a message finishes (so a saturated queue runs at exactly
//! tasks × concurrency ÷ processing time). A message's latency is its wait plus its
//! processing. CPU = base + (busy − base) × busy slots ÷ concurrency, memory likewise.
//! SLO: violated in a step that ends with the oldest waiting message older than
//! `slo_age_s`. A task that stops mid-message loses the work: the message is
//! *interrupted* and goes back to the front of the queue (its age counts from its first
//! arrival, as SQS's does). `needed` = rate × mean processing time ÷ concurrency.
//!
//! ## Requests (`kind = "requests"`)
//!
//! Each request goes to a routable task, least outstanding requests first (as an ALB
//! with that algorithm; ties in turn). None routable: *rejected* (503). Routed to a
//! task that got SIGTERM but is still routable (the deregistration lag): *failed* at
//! once (5xx). In flight on a task when it stops: *failed*. CPU = base + in flight ×
//! `cpu_per_request_pct` (default: `capacity` requests fill the task); a request that
//! starts while its task is above 100 % runs slower in proportion (its duration × CPU
//! ÷ 100). Latency = duration (no queueing at the task). SLO: violated in a step where
//! more than 1 % of the requests completed took longer than `slo_latency_s`, or any
//! request failed or was rejected. `needed` = rate × mean duration ÷ capacity.
//!
//! ## Sessions (`kind = "sessions"`)
//!
//! A new session lands on a routable task with the fewest sessions that has room
//! (`max_per_task`); none with room, or landing on a task that got SIGTERM: *rejected*.
//! A session lives for its drawn duration on that task; if the task stops first it is
//! *interrupted*. CPU and memory = base + sessions × per-session share. SLO: violated in
//! a step where a session could not be placed. `needed` = expected live sessions (rate ×
//! mean duration) ÷ sessions per task (`max_per_task`, or what fits until CPU or
//! memory reaches 100 %).
//!
//! CPU and memory are reported per task capped at 100 % (Fargate enforces the
//! reservation; running out of memory is not modelled), averaged over RUNNING tasks.
//!
//! ## Counting
//!
//! [`Workload::step`] reports what happened inside the step (completions, rejections,
//! requests failed on arrival); [`Workload::on_event`] reports what a stopped task
//! lost. Nothing is counted twice: arrived = completed + failed + rejected +
//! interrupted sessions + waiting + in flight + live sessions, always (see
//! [`Totals`]).

pub(crate) mod dist;
mod spec;
mod tasks;
mod wheel;

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use capstan_aws_api::TaskStatus;
use capstan_world::{Event, TaskHandle, TaskInfo};

use crate::metric::{Frame, SimMetric};
use crate::trace::{Demand, Trace};

pub use dist::Dist;
pub use spec::{Arrivals, WorkloadSpec};

use dist::{Quantiles, poisson, two_units};
use spec::{Model, Usage};
use tasks::{NONE, Slot, TaskTable, water_fill};
use wheel::{Cohort, Wheel, ceil};

/// Cohorts a batch of items on one task is split into, at most.
const STRATA: u64 = 4;
/// Float noise tolerated when comparing times.
const EPS: f64 = 1e-9;
/// Most latency entries reserved ahead for a step (a 1 KiB block).
const MAX_LATENCY_ROOM: usize = 64;
/// Processing time used by `{ kind = "trace" }` before the trace ever gave one (only
/// when [`Workload::check_trace`] was skipped).
const FALLBACK_TRACE_TIME: f64 = 1.0;

/// A workload spec that cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    /// A parameter is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The parameter (`capacity`, `processing.mean_s`).
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl WorkloadError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The work one task holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TaskLoad {
    /// Messages being processed or requests being served.
    pub in_flight: u32,
    /// Live sessions.
    pub sessions: u32,
}

/// What happened during one [`Workload::step`].
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct StepOutcome {
    /// Items that arrived (messages, requests, new sessions).
    pub arrived: u64,
    /// Work finished normally (messages processed, requests served, sessions ended).
    pub completed: u64,
    /// Requests sent to a task that got SIGTERM (5xx).
    pub failed_requests: u64,
    /// Requests or sessions no task could take (none routable, or no room).
    pub rejected: u64,
    /// Always 0 here: sessions are interrupted by [`Workload::on_event`].
    pub interrupted_sessions: u64,
    /// Always 0 here: messages are interrupted by [`Workload::on_event`].
    pub interrupted_messages: u64,
    /// The workload's SLO was violated in this step (rules in the module docs).
    pub slo_violated: bool,
    /// Latencies of the work completed in this step: (seconds, count).
    pub latencies: Vec<(f64, u64)>,
}

/// What a stopped task lost ([`Workload::on_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Losses {
    /// Requests in flight on it (5xx).
    pub failed_requests: u64,
    /// Sessions on it.
    pub interrupted_sessions: u64,
    /// Messages it was processing (back in the queue).
    pub interrupted_messages: u64,
}

/// Counts since the start of the run, and the work held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Items that arrived.
    pub arrived: u64,
    /// Work finished normally.
    pub completed: u64,
    /// Requests failed (sent to a terminating task, or in flight when it stopped).
    pub failed_requests: u64,
    /// Requests or sessions no task could take.
    pub rejected: u64,
    /// Sessions cut by their task stopping.
    pub interrupted_sessions: u64,
    /// Message processings cut by their task stopping (the messages were requeued, so
    /// they are also counted in `waiting`, `in_flight` or `completed`).
    pub interrupted_messages: u64,
    /// Messages waiting in the queue now.
    pub waiting: u64,
    /// Messages or requests being worked on now.
    pub in_flight: u64,
    /// Live sessions now.
    pub sessions: u64,
}

impl Totals {
    /// Every arrival, by where it is or how it ended; equals `arrived`.
    pub fn accounted(&self) -> u64 {
        self.completed
            + self.failed_requests
            + self.rejected
            + self.interrupted_sessions
            + self.waiting
            + self.in_flight
            + self.sessions
    }
}

/// The work a task holding `busy` items reports under `model`.
fn task_load(model: Model, busy: u64) -> TaskLoad {
    let n = u32::try_from(busy).unwrap_or(u32::MAX);
    match model {
        Model::Sessions { .. } => TaskLoad {
            in_flight: 0,
            sessions: n,
        },
        Model::Queue { .. } | Model::Requests { .. } => TaskLoad {
            in_flight: n,
            sessions: 0,
        },
    }
}

/// Messages that arrived together, waiting.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    arrival: f64,
    count: u64,
}

/// Sums over the last 60 one-second buckets.
#[derive(Debug, Clone)]
struct Rolling {
    sums: [f64; 60],
    /// The second last written.
    second: i64,
}

impl Rolling {
    fn new() -> Self {
        Self {
            sums: [0.0; 60],
            second: 0,
        }
    }

    /// Adds `v` to the second ending at `t`.
    fn add(&mut self, t: f64, v: f64) {
        let sec = ceil(t - EPS);
        if sec > self.second {
            for k in self.second + 1..=sec.min(self.second + 60) {
                self.sums[k.rem_euclid(60) as usize] = 0.0;
            }
            self.second = sec;
        }
        self.sums[sec.rem_euclid(60) as usize] += v;
    }

    /// The sum over the last 60 s.
    fn total(&self) -> f64 {
        self.sums.iter().sum()
    }
}

/// The tasks of a list as the metrics see them.
#[derive(Debug, Clone, Copy, Default)]
struct Census {
    /// Length of the list.
    tasks: usize,
    /// Tasks in RUNNING.
    running: u32,
    /// Tasks the load balancer routes to.
    routable: u32,
    /// CPU summed over running tasks, percent.
    cpu: f64,
    /// Memory summed over running tasks, percent.
    memory: f64,
}

/// Where a batch of new work starts.
#[derive(Debug, Clone, Copy)]
enum When {
    /// Every item arrived at `arrival` and starts at `start`.
    At { arrival: f64, start: f64 },
    /// Items arrive during the step (t0, t0 + dt] and start at once.
    During { t0: f64, dt: f64 },
}

/// A workload being simulated for one service.
#[derive(Debug)]
pub struct Workload {
    model: Model,
    /// The work's durations, tabulated.
    quantiles: Quantiles,
    /// CPU and memory of a task by the work it holds.
    usage: Usage,
    arrivals: Arrivals,
    rng: ChaCha8Rng,
    /// Fractional arrivals carried over (even arrivals).
    carry: f64,
    /// The instant of second 0.
    origin: Option<Timestamp>,
    /// Seconds since `origin` at the end of the last step.
    t: f64,
    tasks: TaskTable,
    wheel: Wheel,
    /// Waiting messages, oldest first.
    queue: VecDeque<Run>,
    totals: Totals,
    /// The trace's latest processing time.
    trace_time: Option<f64>,
    /// Arrivals in the last 60 s.
    arrived_60: Rolling,
    /// Requests or sessions routed to a target in the last 60 s.
    routed_60: Rolling,
    /// Processing seconds and count of messages completed in the last 60 s.
    processing_60: (Rolling, Rolling),
    /// Processing seconds and count of the messages completed in the current step.
    processed: (f64, f64),
    /// The last known mean processing time.
    last_processing: Option<f64>,
    /// Requests failed by stopped tasks since the last step (for the SLO).
    event_failures: u64,
    /// Where ties start (turns).
    turn: usize,
    /// The census of the list the last step saw, until an event changes the load.
    census: Option<Census>,
    /// Completed work slower than the SLO in the current step.
    slow: u64,
    /// Room to reserve for a step's latencies (from the last step's count), so that
    /// the list is allocated once per step instead of grown.
    latency_room: usize,
    // Buffers reused every step.
    due: Vec<Cohort>,
    cand: Vec<u32>,
    levels: Vec<u64>,
    caps: Vec<u64>,
    give: Vec<u64>,
}

impl Workload {
    /// Validates `spec` (errors name the field) and sets up an idle workload whose
    /// random draws follow `seed`.
    pub fn new(spec: &WorkloadSpec, seed: u64) -> Result<Self, WorkloadError> {
        let model = Model::new(spec)?;
        let (WorkloadSpec::Queue { arrivals, .. }
        | WorkloadSpec::Requests { arrivals, .. }
        | WorkloadSpec::Sessions { arrivals, .. }) = *spec;
        Ok(Self {
            model,
            quantiles: Quantiles::new(model.sampler()),
            usage: model.usage(),
            arrivals,
            rng: ChaCha8Rng::seed_from_u64(seed),
            carry: 0.0,
            origin: None,
            t: 0.0,
            tasks: TaskTable::default(),
            wheel: Wheel::new(),
            queue: VecDeque::new(),
            totals: Totals::default(),
            trace_time: None,
            arrived_60: Rolling::new(),
            routed_60: Rolling::new(),
            processing_60: (Rolling::new(), Rolling::new()),
            processed: (0.0, 0.0),
            last_processing: None,
            event_failures: 0,
            turn: 0,
            census: None,
            slow: 0,
            latency_room: 0,
            due: Vec::new(),
            cand: Vec::new(),
            levels: Vec::new(),
            caps: Vec::new(),
            give: Vec::new(),
        })
    }

    /// Checks that `trace` gives a processing time if this workload reads one
    /// (`{ kind = "trace" }`).
    pub fn check_trace(&self, trace: &Trace) -> Result<(), WorkloadError> {
        if self.model.sampler().uses_trace() && !trace.provides_processing_time() {
            let field = match self.model {
                Model::Queue { .. } => "processing",
                Model::Requests { .. } | Model::Sessions { .. } => "duration",
            };
            return Err(WorkloadError::invalid(
                field,
                "kind \"trace\" takes times from the trace, but the trace gives none: add a \
                 processing_time column to the CSV or processing_time_s to the trace",
            ));
        }
        Ok(())
    }

    /// Advances the work to `now`, the end of a step of `dt_s` seconds: arrivals from
    /// `demand`, routing over `tasks` (the service's tasks as the world lists them),
    /// progress and completion. Time is taken from `now` (the first step starts at
    /// `now − dt_s`); a step that does not move time forward does nothing.
    pub fn step(
        &mut self,
        now: Timestamp,
        dt_s: f64,
        demand: &Demand,
        tasks: &[TaskInfo],
    ) -> StepOutcome {
        let mut out = StepOutcome {
            latencies: Vec::with_capacity(self.latency_room),
            ..StepOutcome::default()
        };
        let origin = *self.origin.get_or_insert_with(|| {
            SignedDuration::try_from_secs_f64(dt_s)
                .ok()
                .and_then(|d| now.checked_sub(d).ok())
                .unwrap_or(now)
        });
        let t1 = now.duration_since(origin).as_secs_f64();
        let t0 = self.t;
        self.tasks.sync(tasks);
        if t1.is_nan() || t1 <= t0 + EPS {
            self.census = Some(self.census(tasks, true));
            return out;
        }
        if let Some(p) = demand
            .processing_time_s
            .filter(|p| p.is_finite() && *p > 0.0)
        {
            self.trace_time = Some(p);
        }
        let before = self.totals;
        let n = self.arrivals(demand.rate, t1 - t0);
        self.totals.arrived += n;
        self.slow = 0;
        match self.model {
            Model::Queue { slo_age, .. } => {
                self.step_queue(t0, t1, n, &mut out);
                out.slo_violated = self.queue.front().is_some_and(|r| t1 - r.arrival > slo_age);
            }
            Model::Requests { .. } | Model::Sessions { .. } => {
                self.collect(t1, &mut out);
                let routed = self.route(t0, t1, n);
                self.routed_60.add(t1, routed as f64);
                self.collect(t1, &mut out);
            }
        }
        self.arrived_60.add(t1, n as f64);
        let after = self.totals;
        out.arrived = n;
        out.completed = after.completed - before.completed;
        out.failed_requests = after.failed_requests - before.failed_requests;
        out.rejected = after.rejected - before.rejected;
        match self.model {
            Model::Queue { .. } => {
                let (done_s, done) = std::mem::take(&mut self.processed);
                self.processing_60.0.add(t1, done_s);
                self.processing_60.1.add(t1, done);
                let (secs, count) = (&self.processing_60.0, &self.processing_60.1);
                if count.total() > 0.0 {
                    self.last_processing = Some(secs.total() / count.total());
                }
            }
            Model::Requests { .. } => {
                out.slo_violated = self.slow * 100 > out.completed
                    || out.failed_requests > 0
                    || out.rejected > 0
                    || self.event_failures > 0;
                self.event_failures = 0;
            }
            Model::Sessions { .. } => out.slo_violated = out.rejected > 0,
        }
        self.t = t1;
        self.census = Some(self.census(tasks, true));
        // Room for a few more than this step's count, within what the allocator's
        // per-thread cache serves (a larger block costs a heap consolidation).
        let n = out.latencies.len();
        self.latency_room = (n + n / 4 + 4).min(MAX_LATENCY_ROOM);
        out
    }

    /// Applies a world event: SIGTERM (the task takes no new work and finishes what it
    /// has) or a stop (whatever it still holds is lost: requests fail, sessions are
    /// interrupted, messages are interrupted and go back to the queue). Returns the
    /// losses; other events change nothing.
    pub fn on_event(&mut self, event: &Event) -> Losses {
        let mut losses = Losses::default();
        self.census = None;
        match event {
            Event::TaskSigterm { arn, .. } => {
                if let Some(i) = self.tasks.find(arn) {
                    let s = &mut self.tasks.slots[i as usize];
                    s.sigterm = true;
                    s.terminating = true;
                    s.accepting = false;
                }
            }
            Event::TaskStopped { arn, .. } => {
                let Some(i) = self.tasks.find(arn) else {
                    return losses;
                };
                let slot = &self.tasks.slots[i as usize];
                if !slot.live {
                    return losses;
                }
                let gen_ = slot.gen_;
                if let Model::Queue { .. } = self.model {
                    self.requeue(i, gen_);
                }
                let held = self.tasks.stop(i);
                match self.model {
                    Model::Queue { .. } => {
                        self.totals.in_flight -= held;
                        self.totals.waiting += held;
                        self.totals.interrupted_messages += held;
                        losses.interrupted_messages = held;
                    }
                    Model::Requests { .. } => {
                        self.totals.in_flight -= held;
                        self.totals.failed_requests += held;
                        self.event_failures += held;
                        losses.failed_requests = held;
                    }
                    Model::Sessions { .. } => {
                        self.totals.sessions -= held;
                        self.totals.interrupted_sessions += held;
                        losses.interrupted_sessions = held;
                    }
                }
            }
            _ => {}
        }
        losses
    }

    /// The work each task holds now (for `World::set_work`: in flight + sessions), for
    /// every task whose containers run.
    pub fn load(&self) -> impl Iterator<Item = (&str, TaskLoad)> + '_ {
        let model = self.model;
        self.tasks
            .slots
            .iter()
            .filter(|s| s.live)
            .map(move |s| (s.arn.as_str(), task_load(model, s.busy)))
    }

    /// What [`load`](Self::load) gives, less the tasks whose work is the same as at the
    /// last call: each task whose containers run comes once when first seen, then
    /// whenever its work changed since the previous call. In the same order as
    /// [`load`](Self::load). A caller that passes work on to `World::set_work` (or
    /// keeps its own copy) each step needs only these: a step costs O(changes) on its
    /// side instead of a lookup per task.
    pub fn load_changes(&mut self) -> impl Iterator<Item = (&str, TaskHandle, TaskLoad)> + '_ {
        let model = self.model;
        self.tasks.slots.iter_mut().filter_map(move |s| {
            let load = task_load(model, s.busy);
            let n = load.in_flight.saturating_add(load.sessions);
            if !s.live || s.reported == Some(n) {
                return None;
            }
            s.reported = Some(n);
            let s: &Slot = s;
            Some((s.arn.as_str(), s.handle, load))
        })
    }

    /// Every simulated metric this workload defines, now. `tasks` is the list given to
    /// the last step: CPU and memory are averaged over its RUNNING tasks, as counted
    /// during that step (a list of another length, or an event since, makes it match
    /// `tasks` afresh by ARN). Cluster metrics and pending tasks are the world's and
    /// stay unset.
    pub fn frame(&self, tasks: &[TaskInfo]) -> Frame {
        let mut f = Frame::default();
        let c = match self.census {
            Some(c) if c.tasks == tasks.len() => c,
            _ => self.census(tasks, false),
        };
        let running = c.running;
        f.set(SimMetric::RunningTasks, f64::from(running));
        if running > 0 {
            f.set(SimMetric::Cpu, c.cpu / f64::from(running));
            f.set(SimMetric::Memory, c.memory / f64::from(running));
        }
        let routable = c.routable;
        let window = self.t.min(60.0);
        if window > 0.0 {
            f.set(SimMetric::RequestRate, self.arrived_60.total() / window);
        }
        let per_running = |v: f64| (running > 0).then(|| v / f64::from(running));
        match self.model {
            Model::Queue { .. } => {
                let total = (self.totals.waiting + self.totals.in_flight) as f64;
                f.set(SimMetric::QueueDepth, self.totals.waiting as f64);
                f.set(SimMetric::QueueTotal, total);
                f.set(
                    SimMetric::OldestAge,
                    self.queue
                        .front()
                        .map_or(0.0, |r| (self.t - r.arrival).max(0.0)),
                );
                if let Some(p) = self.last_processing {
                    f.set(SimMetric::ProcessingTime, p);
                }
                if let Some(b) = per_running(total) {
                    f.set(SimMetric::BacklogPerTask, b);
                }
                f.set(SimMetric::InFlight, self.totals.in_flight as f64);
            }
            Model::Requests { .. } => {
                f.set(SimMetric::InFlight, self.totals.in_flight as f64);
                if routable > 0 {
                    f.set(
                        SimMetric::RequestsPerTarget,
                        self.routed_60.total() / f64::from(routable),
                    );
                }
            }
            Model::Sessions { .. } => {
                let live = self.totals.sessions as f64;
                f.set(SimMetric::Sessions, live);
                if let Some(s) = per_running(live) {
                    f.set(SimMetric::SessionsPerTask, s);
                }
                if routable > 0 {
                    f.set(
                        SimMetric::RequestsPerTarget,
                        self.routed_60.total() / f64::from(routable),
                    );
                }
            }
        }
        f
    }

    /// Tasks `demand` needs at full efficiency: the work it keeps busy (rate × mean
    /// duration, by Little's law) over what one task handles (concurrency, capacity,
    /// or sessions per task).
    pub fn needed(&self, demand: &Demand) -> f64 {
        let rate = if demand.rate.is_finite() {
            demand.rate.max(0.0)
        } else {
            0.0
        };
        let trace = demand
            .processing_time_s
            .or(self.trace_time)
            .unwrap_or(FALLBACK_TRACE_TIME);
        rate * self.model.sampler().mean(trace) / self.model.per_task()
    }

    /// Counts since the start, and the work held now.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Counts running and routable tasks of `tasks` and sums CPU and memory over the
    /// running ones. `by_position`: `tasks` is the list the last sync matched, entry for
    /// entry (no ARN comparison needed).
    fn census(&self, tasks: &[TaskInfo], by_position: bool) -> Census {
        let mut c = Census {
            tasks: tasks.len(),
            ..Census::default()
        };
        for (i, t) in tasks.iter().enumerate() {
            let slot = if by_position {
                self.tasks
                    .order
                    .get(i)
                    .filter(|&&k| k != NONE)
                    .map(|&k| &self.tasks.slots[k as usize])
            } else {
                self.tasks.slot_of(i, t)
            }
            .filter(|s| s.live);
            if t.routable && slot.is_some() {
                c.routable += 1;
            }
            if t.status == TaskStatus::Running {
                c.running += 1;
                let (cpu, memory) = self.usage.at(slot.map_or(0, |s| s.busy));
                c.cpu += cpu;
                c.memory += memory;
            }
        }
        c
    }

    /// Arrivals in a step of `dt` seconds at `rate` per second.
    fn arrivals(&mut self, rate: f64, dt: f64) -> u64 {
        let mean = if rate.is_finite() && rate > 0.0 {
            rate * dt
        } else {
            0.0
        };
        match self.arrivals {
            Arrivals::Poisson => poisson(&mut self.rng, mean),
            Arrivals::Even => {
                self.carry += mean;
                let n = (self.carry + EPS).floor();
                self.carry = (self.carry - n).max(0.0);
                n as u64
            }
        }
    }

    /// The trace's processing time now.
    fn trace_time(&self) -> f64 {
        self.trace_time.unwrap_or(FALLBACK_TRACE_TIME)
    }

    /// Starts `count` items on task slot `task`, their durations stretched by `slowdown`.
    fn start(&mut self, task: u32, count: u64, when: When, slowdown: f64) {
        let constant = self.quantiles.sampler().is_constant();
        let trace = self.trace_time();
        let gen_ = self.tasks.slots[task as usize].gen_;
        let strata = if constant { 1 } else { count.min(STRATA) };
        let (each, extra) = if strata == 1 {
            (count, 0)
        } else {
            (count / strata, count % strata)
        };
        let width = 1.0 / strata as f64;
        let random =
            !constant || matches!(when, When::During { .. }) && self.arrivals == Arrivals::Poisson;
        for j in 0..strata {
            let n = each + u64::from(j < extra);
            let (u, v) = if random {
                two_units(&mut self.rng)
            } else {
                (0.5, 0.5)
            };
            let d = self.quantiles.at((j as f64 + u) * width, trace) * slowdown;
            let (arrival, start) = match when {
                When::At { arrival, start } => (arrival, start),
                When::During { t0, dt } => {
                    let a = match self.arrivals {
                        Arrivals::Even => t0 + dt / 2.0,
                        Arrivals::Poisson => t0 + v * dt,
                    };
                    (a, a)
                }
            };
            self.wheel.push(Cohort {
                task,
                gen_,
                count: n,
                arrival,
                start,
                finish: start + d,
            });
        }
    }

    /// Completes every cohort finishing by `t1` (and, for a queue, refills the freed
    /// slots at once).
    fn collect(&mut self, t1: f64, out: &mut StepOutcome) {
        let mut due = std::mem::take(&mut self.due);
        loop {
            self.wheel.drain(t1, &mut due);
            if due.is_empty() {
                break;
            }
            for c in due.drain(..) {
                let slot = &mut self.tasks.slots[c.task as usize];
                if slot.gen_ != c.gen_ {
                    continue; // its task stopped: already counted as lost
                }
                slot.busy -= c.count;
                let accepting = slot.accepting;
                self.totals.completed += c.count;
                let latency = c.finish - c.arrival;
                match self.model {
                    Model::Queue { concurrency, .. } => {
                        self.totals.in_flight -= c.count;
                        out.latencies.push((latency, c.count));
                        self.processed.0 += (c.finish - c.start) * c.count as f64;
                        self.processed.1 += c.count as f64;
                        if accepting && self.totals.waiting > 0 {
                            let busy = self.tasks.slots[c.task as usize].busy;
                            let free = u64::from(concurrency).saturating_sub(busy);
                            self.pull(c.task, free, c.finish);
                        }
                    }
                    Model::Requests { slo_latency, .. } => {
                        self.totals.in_flight -= c.count;
                        out.latencies.push((latency, c.count));
                        if latency > slo_latency + EPS {
                            self.slow += c.count;
                        }
                    }
                    Model::Sessions { .. } => self.totals.sessions -= c.count,
                }
            }
        }
        self.due = due;
    }

    /// One step of a queue: arrivals join the queue; idle slots pull; completions free
    /// slots that pull again.
    fn step_queue(&mut self, t0: f64, t1: f64, n: u64, out: &mut StepOutcome) {
        let Model::Queue { concurrency, .. } = self.model else {
            return;
        };
        if n > 0 {
            self.queue.push_back(Run {
                arrival: t0 + (t1 - t0) / 2.0,
                count: n,
            });
            self.totals.waiting += n;
        }
        for k in 0..self.tasks.order.len() {
            if self.totals.waiting == 0 {
                break;
            }
            let i = self.tasks.order[k];
            if i == NONE {
                continue;
            }
            let s = &self.tasks.slots[i as usize];
            let free = u64::from(concurrency).saturating_sub(s.busy);
            if s.accepting && free > 0 {
                self.pull(i, free, t0);
            }
        }
        self.collect(t1, out);
    }

    /// Task slot `task` takes up to `free` messages from the queue at time `at`.
    fn pull(&mut self, task: u32, free: u64, at: f64) {
        let mut free = free;
        while free > 0 {
            let Some(run) = self.queue.front_mut() else {
                break;
            };
            let k = run.count.min(free);
            let arrival = run.arrival;
            run.count -= k;
            if run.count == 0 {
                self.queue.pop_front();
            }
            free -= k;
            self.totals.waiting -= k;
            self.totals.in_flight += k;
            self.tasks.slots[task as usize].busy += k;
            self.start(
                task,
                k,
                When::At {
                    arrival,
                    start: at.max(arrival),
                },
                1.0,
            );
        }
    }

    /// Puts the messages task slot `task` (generation `gen_`) was processing back at
    /// the front of the queue, in arrival order.
    fn requeue(&mut self, task: u32, gen_: u32) {
        let lost: Vec<Run> = self
            .wheel
            .iter()
            .filter(|c| c.task == task && c.gen_ == gen_)
            .map(|c| Run {
                arrival: c.arrival,
                count: c.count,
            })
            .collect();
        for run in lost {
            let at = self.queue.partition_point(|r| r.arrival <= run.arrival);
            self.queue.insert(at, run);
        }
    }

    /// Routes `n` requests or sessions arriving in (t0, t1] to routable tasks, least
    /// outstanding first. Returns how many reached a task.
    fn route(&mut self, t0: f64, t1: f64, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let cap = match self.model {
            Model::Sessions { max_per_task, .. } => max_per_task.map_or(u64::MAX, u64::from),
            _ => u64::MAX,
        };
        self.cand.clear();
        self.levels.clear();
        self.caps.clear();
        for &i in &self.tasks.order {
            if i != NONE && self.tasks.slots[i as usize].routable {
                self.cand.push(i);
                self.levels.push(self.tasks.slots[i as usize].busy);
                self.caps.push(cap);
            }
        }
        self.give.clear();
        self.give.resize(self.cand.len(), 0);
        let placed = water_fill(&self.levels, &self.caps, n, self.turn, &mut self.give);
        self.turn = self.turn.wrapping_add(1);
        self.totals.rejected += n - placed;
        for k in 0..self.cand.len() {
            let (i, g) = (self.cand[k], self.give[k]);
            if g == 0 {
                continue;
            }
            let slot = &mut self.tasks.slots[i as usize];
            match self.model {
                Model::Requests {
                    cpu_base, cpu_per, ..
                } => {
                    if slot.terminating {
                        self.totals.failed_requests += g;
                        continue;
                    }
                    slot.busy += g;
                    let cpu = cpu_base + slot.busy as f64 * cpu_per;
                    self.totals.in_flight += g;
                    self.start(
                        i,
                        g,
                        When::During { t0, dt: t1 - t0 },
                        (cpu / 100.0).max(1.0),
                    );
                }
                Model::Sessions { .. } => {
                    if slot.terminating {
                        self.totals.rejected += g;
                        continue;
                    }
                    slot.busy += g;
                    self.totals.sessions += g;
                    self.start(i, g, When::During { t0, dt: t1 - t0 }, 1.0);
                }
                Model::Queue { .. } => {}
            }
        }
        placed
    }
}
