//! Recording one run: running sums, a latency histogram, the bounded series and the
//! streamed CSV.

use std::path::PathBuf;

use hdrhistogram::Histogram;

use super::ReportError;
use super::csv::CsvSink;
use super::series::RunSeries;
use super::summary::RunSummary;
use crate::record::StepRecord;

/// Default price of a task-hour: a 1 vCPU / 2 GB Linux/x86 Fargate task on demand in
/// us-east-1 (0.04048 per vCPU-hour + 2 × 0.004445 per GB-hour), dollars.
pub const DEFAULT_COST_PER_TASK_HOUR: f64 = 0.04937;

/// Default bound on the points kept per run for plots.
pub const DEFAULT_MAX_POINTS: usize = 2000;

/// Largest latency the histogram takes, microseconds (about 31 years).
const MAX_LATENCY_US: f64 = 1e15;

/// `micros` (finite, ≥ 0) rounded half away from zero, at most [`MAX_LATENCY_US`]:
/// `micros.round().min(MAX_LATENCY_US)` with a cast and a compare instead of a libm
/// call (this runs for every latency reported).
fn round_micros(micros: f64) -> u64 {
    if micros >= MAX_LATENCY_US {
        return MAX_LATENCY_US as u64;
    }
    // Below 2^53 the integer part and the fraction are exact.
    let whole = micros as u64;
    if micros - whole as f64 >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// How a run is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecorderOptions {
    /// Dollars per task-hour for the cost column (finite, ≥ 0).
    pub cost_per_task_hour: f64,
    /// Where to stream the per-step CSV, if anywhere.
    pub csv: Option<PathBuf>,
    /// Points kept for plots (≥ 2); see [`RunSeries`].
    pub max_points: usize,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        Self {
            cost_per_task_hour: DEFAULT_COST_PER_TASK_HOUR,
            csv: None,
            max_points: DEFAULT_MAX_POINTS,
        }
    }
}

impl RecorderOptions {
    fn validate(&self) -> Result<(), ReportError> {
        if !self.cost_per_task_hour.is_finite() || self.cost_per_task_hour < 0.0 {
            return Err(ReportError::InvalidOption {
                field: "cost_per_task_hour",
                reason: format!(
                    "must be a finite number ≥ 0 (dollars per task-hour), got {}",
                    self.cost_per_task_hour
                ),
            });
        }
        if self.max_points < 2 {
            return Err(ReportError::InvalidOption {
                field: "max_points",
                reason: format!("must be at least 2, got {}", self.max_points),
            });
        }
        Ok(())
    }
}

/// Time-weighted sums over the steps.
#[derive(Debug, Default)]
struct Totals {
    steps: u64,
    seconds: f64,
    task_seconds: f64,
    slo_seconds: f64,
    running_seconds: f64,
    over_seconds: f64,
    peak_over: f64,
    peak_tasks: u32,
    peak_running: u32,
    host_seconds: Option<f64>,
    peak_hosts: Option<u32>,
    completed: u64,
    failed_requests: u64,
    interrupted_sessions: u64,
    interrupted_messages: u64,
    scaling_actions: u64,
}

impl Totals {
    fn add(&mut self, rec: &StepRecord) {
        let dt = rec.dt_s;
        let billed = rec
            .running
            .saturating_add(rec.pending)
            .saturating_add(rec.stopping);
        let over = (f64::from(rec.running) - rec.needed).max(0.0);
        self.steps += 1;
        self.seconds += dt;
        self.task_seconds += f64::from(billed) * dt;
        if rec.slo_violated {
            self.slo_seconds += dt;
        }
        self.running_seconds += f64::from(rec.running) * dt;
        self.over_seconds += over * dt;
        self.peak_over = self.peak_over.max(over);
        self.peak_tasks = self.peak_tasks.max(billed);
        self.peak_running = self.peak_running.max(rec.running);
        if let Some(h) = rec.hosts {
            *self.host_seconds.get_or_insert(0.0) += f64::from(h) * dt;
            self.peak_hosts = Some(self.peak_hosts.unwrap_or(0).max(h));
        }
        self.completed += rec.completed;
        self.failed_requests += rec.failed_requests;
        self.interrupted_sessions += rec.interrupted_sessions;
        self.interrupted_messages += rec.interrupted_messages;
        self.scaling_actions += u64::from(rec.action.is_some());
    }

    /// `sum / seconds`, 0 for a run of zero length.
    fn mean(&self, sum: f64) -> f64 {
        if self.seconds > 0.0 {
            sum / self.seconds
        } else {
            0.0
        }
    }
}

/// Records one run step by step, in fixed memory (see the module documentation).
#[derive(Debug)]
pub struct RunRecorder {
    name: String,
    cost_per_task_hour: f64,
    totals: Totals,
    latencies: Histogram<u64>,
    bad_latencies: u64,
    first_bad_latency: Option<f64>,
    series: RunSeries,
    csv: Option<CsvSink>,
}

impl RunRecorder {
    /// A recorder for the run `name`; creates and opens the CSV if one is asked for.
    pub fn new(name: &str, opts: RecorderOptions) -> Result<Self, ReportError> {
        opts.validate()?;
        if name.trim().is_empty() {
            return Err(ReportError::InvalidOption {
                field: "name",
                reason: "a run needs a non-empty name".to_owned(),
            });
        }
        let csv = opts.csv.as_deref().map(CsvSink::create).transpose()?;
        let latencies = Histogram::new(3).map_err(|e| ReportError::InvalidOption {
            field: "latency histogram",
            reason: e.to_string(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            cost_per_task_hour: opts.cost_per_task_hour,
            totals: Totals::default(),
            latencies,
            bad_latencies: 0,
            first_bad_latency: None,
            series: RunSeries::new(opts.max_points),
            csv,
        })
    }

    /// Accounts for one simulated step (call once per step, in time order).
    pub fn record(&mut self, rec: &StepRecord) -> Result<(), ReportError> {
        self.check(rec)?;
        self.totals.add(rec);
        self.series.push(rec);
        if let Some(csv) = &mut self.csv {
            csv.row(rec)?;
        }
        Ok(())
    }

    fn check(&self, rec: &StepRecord) -> Result<(), ReportError> {
        let bad = |field: &'static str, reason: String| ReportError::InvalidRecord {
            run: self.name.clone(),
            step: self.totals.steps,
            field,
            reason,
        };
        let non_negative = |field, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("must be finite and ≥ 0, got {v}")))
            }
        };
        non_negative("dt_s", rec.dt_s)?;
        non_negative("demand", rec.demand)?;
        non_negative("needed", rec.needed)?;
        if !rec.elapsed_s.is_finite() {
            return Err(bad(
                "elapsed_s",
                format!("must be finite, got {}", rec.elapsed_s),
            ));
        }
        Ok(())
    }

    /// Records `count` pieces of completed work that took `seconds` each (for the
    /// latency percentiles). Values that are not finite and ≥ 0 make
    /// [`finish`](Self::finish) fail.
    pub fn latency(&mut self, seconds: f64, count: u64) {
        if count == 0 {
            return;
        }
        let micros = seconds * 1e6;
        let ok = micros.is_finite()
            && micros >= 0.0
            && self.latencies.record_n(round_micros(micros), count).is_ok();
        if !ok {
            self.bad_latencies += count;
            self.first_bad_latency.get_or_insert(seconds);
        }
    }

    /// Flushes the CSV and returns the run's summary and plot series.
    pub fn finish(mut self) -> Result<(RunSummary, RunSeries), ReportError> {
        if let Some(csv) = self.csv.take() {
            csv.finish()?;
        }
        if let Some(first) = self.first_bad_latency {
            return Err(ReportError::InvalidLatency {
                run: self.name,
                count: self.bad_latencies,
                first,
            });
        }
        let summary = self.summary();
        self.series.seal();
        Ok((summary, self.series))
    }

    fn percentile(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let v = self.latencies.value_at_quantile(q);
        self.latencies.median_equivalent(v) as f64 / 1e6
    }

    fn summary(&self) -> RunSummary {
        let t = &self.totals;
        let task_hours = t.task_seconds / 3600.0;
        RunSummary {
            name: self.name.clone(),
            task_hours,
            cost: task_hours * self.cost_per_task_hour,
            cost_per_task_hour: self.cost_per_task_hour,
            slo_violation_minutes: t.slo_seconds / 60.0,
            p50_latency_s: self.percentile(0.50),
            p95_latency_s: self.percentile(0.95),
            p99_latency_s: self.percentile(0.99),
            latency_samples: self.latencies.len(),
            interrupted_sessions: t.interrupted_sessions,
            failed_requests: t.failed_requests,
            interrupted_messages: t.interrupted_messages,
            completed: t.completed,
            scaling_actions: t.scaling_actions,
            peak_over_provisioning: t.peak_over,
            mean_over_provisioning: t.mean(t.over_seconds),
            peak_tasks: t.peak_tasks,
            peak_running: t.peak_running,
            mean_running: t.mean(t.running_seconds),
            host_hours: t.host_seconds.map(|s| s / 3600.0),
            peak_hosts: t.peak_hosts,
            duration_hours: t.seconds / 3600.0,
            steps: t.steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reference(micros: f64) -> u64 {
        micros.round().min(MAX_LATENCY_US) as u64
    }

    #[test]
    fn rounding_matches_the_library_at_the_edges() {
        for x in [
            0.0,
            0.49999999999999994,
            0.5,
            1.5,
            2.5,
            1_999_999.5,
            4_503_599_627_370_495.5,
            MAX_LATENCY_US - 0.5,
            MAX_LATENCY_US,
            MAX_LATENCY_US + 1.0,
            1e300,
        ] {
            assert_eq!(round_micros(x), reference(x), "{x}");
        }
    }

    proptest! {
        #[test]
        fn rounding_matches_the_library(seconds in 0.0f64..1e10, half in any::<bool>()) {
            let x = if half { (seconds * 1e6).trunc() + 0.5 } else { seconds * 1e6 };
            prop_assert_eq!(round_micros(x), reference(x));
        }
    }
}
