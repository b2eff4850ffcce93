//! The per-step CSV of a run, written through a buffer while the run goes.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::ReportError;
use crate::metric::SimMetric;
use crate::record::StepRecord;

/// The CSV's leading columns (the step record's fields), named with their units; the
/// columns of every [`SimMetric`] follow, named by [`metric_column`].
///
/// `time` is RFC 3339; `slo_violated` is 0 or 1; `action_to` is the new desired count
/// of a scaling action in the step, else empty; `hosts`, `metric` and `metric_target`
/// are empty where they do not apply. `metric` and `metric_target` are in the unit of
/// the run's main policy metric.
pub const CSV_COLUMNS: [&str; 17] = [
    "elapsed_s",
    "time",
    "demand_per_s",
    "needed",
    "desired",
    "running",
    "pending",
    "stopping",
    "hosts",
    "metric",
    "metric_target",
    "completed",
    "failed_requests",
    "interrupted_sessions",
    "interrupted_messages",
    "slo_violated",
    "action_to",
];

/// The CSV column of a simulated metric: its name, with a unit suffix where it is not a
/// plain count (`oldest_age_s`, `cpu_pct`, `request_rate_per_s`, …).
pub fn metric_column(m: SimMetric) -> &'static str {
    match m {
        SimMetric::QueueDepth => "queue_depth",
        SimMetric::QueueTotal => "queue_total",
        SimMetric::OldestAge => "oldest_age_s",
        SimMetric::ProcessingTime => "processing_time_s",
        SimMetric::BacklogPerTask => "backlog_per_task",
        SimMetric::Cpu => "cpu_pct",
        SimMetric::Memory => "memory_pct",
        SimMetric::RequestRate => "request_rate_per_s",
        SimMetric::RequestsPerTarget => "requests_per_target_per_min",
        SimMetric::Sessions => "sessions",
        SimMetric::SessionsPerTask => "sessions_per_task",
        SimMetric::InFlight => "in_flight",
        SimMetric::RunningTasks => "running_tasks",
        SimMetric::CpuReservation => "cpu_reservation_pct",
        SimMetric::MemoryReservation => "memory_reservation_pct",
        SimMetric::PendingTasks => "pending_tasks",
    }
}

/// A CSV file being written, one row per step.
#[derive(Debug)]
pub(crate) struct CsvSink {
    path: PathBuf,
    out: BufWriter<File>,
    line: String,
}

impl CsvSink {
    /// Creates the file (and its directory) and writes the header.
    pub(crate) fn create(path: &Path) -> Result<Self, ReportError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| ReportError::io("creating directory", dir, e))?;
        }
        let file = File::create(path).map_err(|e| ReportError::io("creating CSV", path, e))?;
        let mut sink = Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, file),
            line: String::with_capacity(512),
        };
        let header: Vec<&str> = CSV_COLUMNS
            .iter()
            .copied()
            .chain(SimMetric::ALL.iter().map(|m| metric_column(*m)))
            .collect();
        sink.line.push_str(&header.join(","));
        sink.line.push('\n');
        sink.flush_line()?;
        Ok(sink)
    }

    /// Appends the row of one step.
    pub(crate) fn row(&mut self, rec: &StepRecord) -> Result<(), ReportError> {
        let l = &mut self.line;
        // Writing into a String cannot fail.
        let _ = write!(
            l,
            "{},{},{},{},{},{},{},{},",
            rec.elapsed_s,
            rec.at,
            rec.demand,
            rec.needed,
            rec.desired,
            rec.running,
            rec.pending,
            rec.stopping
        );
        opt(l, rec.hosts);
        opt(l, rec.metric.filter(|v| v.is_finite()));
        opt(l, rec.metric_target.filter(|v| v.is_finite()));
        let _ = write!(
            l,
            "{},{},{},{},{},",
            rec.completed,
            rec.failed_requests,
            rec.interrupted_sessions,
            rec.interrupted_messages,
            u8::from(rec.slo_violated)
        );
        if let Some((_, to)) = rec.action {
            let _ = write!(l, "{to}");
        }
        for m in SimMetric::ALL {
            l.push(',');
            if let Some(v) = rec.frame.get(m) {
                let _ = write!(l, "{v}");
            }
        }
        l.push('\n');
        self.flush_line()
    }

    fn flush_line(&mut self) -> Result<(), ReportError> {
        let res = self.out.write_all(self.line.as_bytes());
        self.line.clear();
        res.map_err(|e| ReportError::io("writing CSV", &self.path, e))
    }

    /// Flushes the buffer to the file.
    pub(crate) fn finish(mut self) -> Result<(), ReportError> {
        self.out
            .flush()
            .map_err(|e| ReportError::io("writing CSV", &self.path, e))
    }
}

/// Writes `v` (if any) and a comma.
fn opt<T: std::fmt::Display>(l: &mut String, v: Option<T>) {
    if let Some(v) = v {
        let _ = write!(l, "{v}");
    }
    l.push(',');
}
