//! A run's time series for plots, bounded in memory: when it holds `max_points`
//! points, adjacent pairs merge (keeping min, max and the time-weighted mean) and each
//! later point covers twice as many steps.

use serde::Serialize;

use crate::record::StepRecord;

/// Minimum, maximum and time-weighted mean of one quantity over a point's steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean weighted by step length (plain mean if every step had zero length).
    pub mean: f64,
    /// Seconds of steps the mean is weighted by.
    pub weight_s: f64,
    /// Steps contributing.
    pub steps: u64,
}

impl Stat {
    fn one(value: f64, dt_s: f64) -> Self {
        Self {
            min: value,
            max: value,
            mean: value,
            weight_s: dt_s,
            steps: 1,
        }
    }

    fn merge(self, other: Self) -> Self {
        let weight_s = self.weight_s + other.weight_s;
        let mean = if weight_s > 0.0 {
            (self.mean * self.weight_s + other.mean * other.weight_s) / weight_s
        } else {
            (self.mean * self.steps as f64 + other.mean * other.steps as f64)
                / (self.steps + other.steps) as f64
        };
        Self {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            mean,
            weight_s,
            steps: self.steps + other.steps,
        }
    }
}

fn merge_opt(a: Option<Stat>, b: Option<Stat>) -> Option<Stat> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.merge(b)),
        (a, b) => a.or(b),
    }
}

/// One point of a [`RunSeries`]: a run of consecutive steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Seconds since the run started at the beginning of the first step.
    pub start_s: f64,
    /// Seconds since the run started at the end of the last step.
    pub end_s: f64,
    /// Demand, arrivals per second.
    pub demand: Stat,
    /// Tasks the demand needs.
    pub needed: Stat,
    /// Desired count.
    pub desired: Stat,
    /// Tasks in RUNNING.
    pub running: Stat,
    /// Hosts billed (EC2 cluster runs), where defined.
    pub hosts: Option<Stat>,
    /// The main policy's metric, where defined.
    pub metric: Option<Stat>,
    /// The main policy's target for the metric, where defined.
    pub metric_target: Option<Stat>,
}

impl SeriesPoint {
    fn from_record(rec: &StepRecord) -> Self {
        let dt = rec.dt_s;
        let finite = |v: Option<f64>| v.filter(|v| v.is_finite()).map(|v| Stat::one(v, dt));
        Self {
            start_s: rec.elapsed_s - dt,
            end_s: rec.elapsed_s,
            demand: Stat::one(rec.demand, dt),
            needed: Stat::one(rec.needed, dt),
            desired: Stat::one(f64::from(rec.desired), dt),
            running: Stat::one(f64::from(rec.running), dt),
            hosts: rec.hosts.map(|h| Stat::one(f64::from(h), dt)),
            metric: finite(rec.metric),
            metric_target: finite(rec.metric_target),
        }
    }

    fn merge(self, next: Self) -> Self {
        Self {
            start_s: self.start_s.min(next.start_s),
            end_s: self.end_s.max(next.end_s),
            demand: self.demand.merge(next.demand),
            needed: self.needed.merge(next.needed),
            desired: self.desired.merge(next.desired),
            running: self.running.merge(next.running),
            hosts: merge_opt(self.hosts, next.hosts),
            metric: merge_opt(self.metric, next.metric),
            metric_target: merge_opt(self.metric_target, next.metric_target),
        }
    }

    /// Steps this point covers.
    pub fn steps(&self) -> u64 {
        self.running.steps
    }

    /// The middle of the point's time span, hours since the run started.
    pub fn mid_hours(&self) -> f64 {
        (self.start_s + self.end_s) / 2.0 / 3600.0
    }
}

/// The series of one run kept for plotting: at most `max_points` points of equal step
/// counts (except the last), in time order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSeries {
    max_points: usize,
    stride: u64,
    points: Vec<SeriesPoint>,
    pending: Option<SeriesPoint>,
}

impl RunSeries {
    /// An empty series keeping at most `max_points` (≥ 2) points.
    pub(crate) fn new(max_points: usize) -> Self {
        Self {
            max_points,
            stride: 1,
            points: Vec::with_capacity(max_points),
            pending: None,
        }
    }

    /// Adds one step.
    pub(crate) fn push(&mut self, rec: &StepRecord) {
        let point = SeriesPoint::from_record(rec);
        let pending = match self.pending.take() {
            Some(p) => p.merge(point),
            None => point,
        };
        if pending.steps() >= self.stride {
            self.points.push(pending);
            if self.points.len() >= self.max_points {
                self.halve();
            }
        } else {
            self.pending = Some(pending);
        }
    }

    /// Moves a partly filled last point into the points.
    pub(crate) fn seal(&mut self) {
        if let Some(p) = self.pending.take() {
            self.points.push(p);
        }
    }

    fn halve(&mut self) {
        let n = self.points.len();
        for i in 0..n.div_ceil(2) {
            let a = self.points[2 * i];
            self.points[i] = match self.points.get(2 * i + 1) {
                Some(b) => a.merge(*b),
                None => a,
            };
        }
        self.points.truncate(n.div_ceil(2));
        self.stride *= 2;
    }

    /// The points, in time order (a sealed series from [`RunRecorder::finish`](super::RunRecorder::finish)
    /// includes its last, partly filled point).
    pub fn points(&self) -> &[SeriesPoint] {
        &self.points
    }

    /// Number of points (at most [`max_points`](Self::max_points)).
    pub fn len(&self) -> usize {
        self.points.len() + usize::from(self.pending.is_some())
    }

    /// Whether no step was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on points.
    pub fn max_points(&self) -> usize {
        self.max_points
    }

    /// Steps per full point now.
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// The end of the last step, seconds since the run started (0 if empty).
    pub fn end_s(&self) -> f64 {
        self.pending
            .as_ref()
            .or(self.points.last())
            .map_or(0.0, |p| p.end_s)
    }
}
