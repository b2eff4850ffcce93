//! The report of a simulation: per-run summaries (terminal table and JSON), a CSV time
//! series streamed while the run goes, and a stacked plot (PNG and SVG) of demand, tasks
//! and the policy metric for every run.
//!
//! A [`RunRecorder`] takes one [`StepRecord`](crate::record::StepRecord) per simulated
//! step and keeps only fixed-size state: running sums, a latency histogram, a
//! [`RunSeries`] of at most `max_points` points and a buffered CSV writer. Memory stays
//! flat however long the trace is. [`RunRecorder::finish`] returns the run's
//! [`RunSummary`] and its [`RunSeries`]; a [`Summary`] gathers the runs of one scenario.
//!
//! # Definitions
//!
//! Every step `s` lasts `dt_s` seconds; the values of a record hold for its whole step.
//!
//! - **task-hours** = Σ (running + pending + stopping) · dt / 3600: AWS bills a Fargate
//!   task from the start of its image pull until it has stopped, so starting and
//!   stopping tasks count.
//! - **cost** = task-hours × `cost_per_task_hour` (dollars).
//! - **SLO-violation minutes** = Σ dt of the steps whose `slo_violated` is set, / 60.
//! - **latency percentiles** (p50, p95, p99, seconds) of the completed work reported
//!   through [`RunRecorder::latency`], from an HDR histogram with 3 significant digits
//!   (relative error ≤ 0.1 %, microsecond resolution, fixed memory). They are 0 when no
//!   latency was reported (`latency_samples` = 0).
//! - **over-provisioning** = max(0, running − needed) tasks per step; **peak** is its
//!   maximum, **mean** its time-weighted mean Σ over · dt / Σ dt.
//! - **scaling actions** = number of steps with an `action`.
//! - **peak tasks** = the maximum of running + pending + stopping (tasks billed at once);
//!   **peak running** the maximum of running; **mean running** = Σ running · dt / Σ dt.
//! - **host-hours** = Σ hosts · dt / 3600 for EC2-cluster runs (absent on Fargate).
//! - **completed**, **failed requests**, **interrupted sessions**, **interrupted
//!   messages**: sums over the steps.
//!
//! Means over a run of zero duration are 0.
//!
//! # Files
//!
//! - `summary.json` ([`Summary::write`]): `{"scenario", "seed", "runs": [{"name",
//!   "task_hours", "cost", "slo_violation_minutes", "p50_latency_s", "p95_latency_s",
//!   "p99_latency_s", …}]}`; field order is fixed and floats are rounded to 6
//!   significant digits, so the same run gives byte-identical files.
//! - the CSV ([`RecorderOptions::csv`]): one row per step, columns named with their unit
//!   (see [`CSV_COLUMNS`] and [`metric_column`]); empty cells where a value does not
//!   apply.
//! - the plot ([`plot`]): three panels sharing the time axis in hours.

mod csv;
mod plot;
mod progress;
mod recorder;
mod series;
mod summary;
mod table;

use std::io;
use std::path::PathBuf;

pub use csv::{CSV_COLUMNS, metric_column};
pub use plot::plot;
pub use progress::progress_bar;
pub use recorder::{DEFAULT_COST_PER_TASK_HOUR, DEFAULT_MAX_POINTS, RecorderOptions, RunRecorder};
pub use series::{RunSeries, SeriesPoint, Stat};
pub use summary::{RunSummary, Summary};
pub use table::table;

/// What can go wrong while recording, writing or reading a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A recorder option is out of range.
    #[error("report option `{field}`: {reason}")]
    InvalidOption {
        /// The option's field name.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A step record carries a value the report cannot account for.
    #[error("run \"{run}\", step {step}: `{field}` {reason}")]
    InvalidRecord {
        /// The run's name.
        run: String,
        /// Index of the record in the run, from 0.
        step: u64,
        /// The record's field.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// Latencies that are not finite, non-negative seconds were reported.
    #[error(
        "run \"{run}\": {count} latencies were not finite non-negative seconds (the first was {first})"
    )]
    InvalidLatency {
        /// The run's name.
        run: String,
        /// How many such latencies (with their counts).
        count: u64,
        /// The first offending value.
        first: f64,
    },
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done ("writing CSV", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A summary file is not valid JSON of the expected shape.
    #[error("{}:{line}:{column}: {reason}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// Drawing a plot failed.
    #[error("plot {}: {reason}", .path.display())]
    Plot {
        /// The image being drawn.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl ReportError {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
