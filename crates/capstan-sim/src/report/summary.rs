//! Per-run summaries and the scenario summary file (`summary.json`).

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

use super::ReportError;

/// The figures of one run (one policy set on one trace); see the module documentation
/// for the definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's name: `capstan`, `aws-target-tracking`, `aws-step`, a config's name…
    pub name: String,
    /// Task-hours billed: ∫ (running + pending + stopping) dt / 3600.
    #[serde(serialize_with = "sig6")]
    pub task_hours: f64,
    /// `task_hours` × `cost_per_task_hour`, dollars.
    #[serde(serialize_with = "sig6")]
    pub cost: f64,
    /// The price used for `cost`, dollars per task-hour.
    #[serde(serialize_with = "sig6")]
    pub cost_per_task_hour: f64,
    /// Minutes during which the service's SLO was violated.
    #[serde(serialize_with = "sig6")]
    pub slo_violation_minutes: f64,
    /// Median latency of completed work, seconds (0 without samples).
    #[serde(serialize_with = "sig6")]
    pub p50_latency_s: f64,
    /// 95th percentile latency, seconds (0 without samples).
    #[serde(serialize_with = "sig6")]
    pub p95_latency_s: f64,
    /// 99th percentile latency, seconds (0 without samples).
    #[serde(serialize_with = "sig6")]
    pub p99_latency_s: f64,
    /// How many latencies the percentiles are computed from.
    pub latency_samples: u64,
    /// Sessions cut because their task stopped.
    pub interrupted_sessions: u64,
    /// Requests that failed (sent to or cut on a stopping task).
    pub failed_requests: u64,
    /// Messages whose processing was cut (returned to the queue).
    pub interrupted_messages: u64,
    /// Work finished normally (requests, messages, sessions).
    pub completed: u64,
    /// Steps in which the desired count was changed.
    pub scaling_actions: u64,
    /// Largest max(0, running − needed), tasks.
    #[serde(serialize_with = "sig6")]
    pub peak_over_provisioning: f64,
    /// Time-weighted mean of max(0, running − needed), tasks.
    #[serde(serialize_with = "sig6")]
    pub mean_over_provisioning: f64,
    /// Most tasks billed at once (running + pending + stopping).
    pub peak_tasks: u32,
    /// Most tasks in RUNNING at once.
    pub peak_running: u32,
    /// Time-weighted mean of the tasks in RUNNING.
    #[serde(serialize_with = "sig6")]
    pub mean_running: f64,
    /// Container-instance hours (EC2 cluster runs), else `null`.
    #[serde(serialize_with = "sig6_opt")]
    pub host_hours: Option<f64>,
    /// Most container instances at once (EC2 cluster runs), else `null`.
    pub peak_hosts: Option<u32>,
    /// Simulated time covered, hours.
    #[serde(serialize_with = "sig6")]
    pub duration_hours: f64,
    /// Steps recorded.
    pub steps: u64,
}

/// The summary of one scenario: every run on the same trace and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// The seed of the run.
    pub seed: u64,
    /// One entry per policy set, in the order they ran.
    pub runs: Vec<RunSummary>,
}

impl Summary {
    /// The summary as pretty JSON with a final newline: fields in declaration order,
    /// floats rounded to 6 significant digits, so equal inputs give identical bytes.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self)
            .expect("a summary of strings, integers and floats always serializes");
        json.push('\n');
        json
    }

    /// Writes `DIR/summary.json`, creating `dir` if needed.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        fs::create_dir_all(dir).map_err(|e| ReportError::io("creating directory", dir, e))?;
        let path = dir.join("summary.json");
        fs::write(&path, self.to_json()).map_err(|e| ReportError::io("writing", path, e))
    }

    /// Parses a summary written by [`Summary::to_json`]; errors name the place.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ReportError> {
        serde_json::from_str(text).map_err(|e| ReportError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        })
    }

    /// Reads a `summary.json` file.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = fs::read_to_string(path).map_err(|e| ReportError::io("reading", path, e))?;
        Self::from_json(&text, path)
    }
}

/// `x` rounded to 6 significant digits (non-finite values and zero unchanged, -0 → 0).
pub(crate) fn round_sig6(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return if x == 0.0 { 0.0 } else { x };
    }
    format!("{x:.5e}").parse().unwrap_or(x)
}

fn sig6<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_sig6(*x))
}

fn sig6_opt<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(v) => s.serialize_some(&round_sig6(*v)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::round_sig6;

    #[test]
    fn rounds_to_six_significant_digits() {
        assert_eq!(round_sig6(0.1 + 0.2), 0.3);
        assert_eq!(round_sig6(123_456_789.0), 123_457_000.0);
        assert_eq!(round_sig6(1.234_564_9e-9), 1.234_56e-9);
        assert_eq!(round_sig6(-2.000_000_4), -2.0);
        assert_eq!(round_sig6(-0.0).to_bits(), 0.0_f64.to_bits());
        assert!(round_sig6(f64::NAN).is_nan());
    }
}
