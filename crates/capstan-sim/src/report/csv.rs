//! The per-step CSV of a run, written through a buffer while the run goes.

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
    line: Line,
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
            line: Line::default(),
        };
        let header: Vec<&str> = CSV_COLUMNS
            .iter()
            .copied()
            .chain(SimMetric::ALL.iter().map(|m| metric_column(*m)))
            .collect();
        sink.line
            .bytes
            .extend_from_slice(header.join(",").as_bytes());
        sink.flush_line()?;
        Ok(sink)
    }

    /// Appends the row of one step.
    pub(crate) fn row(&mut self, rec: &StepRecord) -> Result<(), ReportError> {
        let l = &mut self.line;
        l.float(rec.elapsed_s);
        l.time(rec);
        l.float(rec.demand);
        l.float(rec.needed);
        l.int(rec.desired);
        l.int(rec.running);
        l.int(rec.pending);
        l.int(rec.stopping);
        l.opt_int(rec.hosts);
        l.opt_float(rec.metric);
        l.opt_float(rec.metric_target);
        l.int(rec.completed);
        l.int(rec.failed_requests);
        l.int(rec.interrupted_sessions);
        l.int(rec.interrupted_messages);
        l.int(u8::from(rec.slo_violated));
        l.opt_int(rec.action.map(|(_, to)| to));
        for m in SimMetric::ALL {
            l.opt_float(rec.frame.get(m));
        }
        l.bytes.pop(); // the last comma
        self.flush_line()
    }

    fn flush_line(&mut self) -> Result<(), ReportError> {
        self.line.bytes.push(b'\n');
        let res = self.out.write_all(&self.line.bytes);
        self.line.bytes.clear();
        res.map_err(|e| ReportError::io("writing CSV", &self.path, e))
    }

    /// Flushes the buffer to the file.
    pub(crate) fn finish(mut self) -> Result<(), ReportError> {
        self.out
            .flush()
            .map_err(|e| ReportError::io("writing CSV", &self.path, e))
    }
}

/// One row being built: each cell is followed by a comma. Numbers are printed in their
/// shortest round-trip form; non-finite floats and absent values leave the cell empty.
#[derive(Default)]
struct Line {
    bytes: Vec<u8>,
    floats: zmij::Buffer,
    ints: itoa::Buffer,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Line {
    fn float(&mut self, v: f64) {
        if v.is_finite() {
            let text = if v == v.trunc() && v.abs() < 1e15 {
                self.ints.format(v as i64)
            } else {
                self.floats.format_finite(v)
            };
            self.bytes.extend_from_slice(text.as_bytes());
        }
        self.bytes.push(b',');
    }

    fn opt_float(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.float(v),
            None => self.bytes.push(b','),
        }
    }

    fn int<I: itoa::Integer>(&mut self, v: I) {
        self.bytes.extend_from_slice(self.ints.format(v).as_bytes());
        self.bytes.push(b',');
    }

    fn opt_int<I: itoa::Integer>(&mut self, v: Option<I>) {
        match v {
            Some(v) => self.int(v),
            None => self.bytes.push(b','),
        }
    }

    fn time(&mut self, rec: &StepRecord) {
        // Writing into a Vec cannot fail.
        let _ = write!(self.bytes, "{},", rec.at);
    }
}
