//! The summary as an aligned terminal table.

use super::summary::{RunSummary, Summary};

/// How a run's cell in one column reads.
type Cell = fn(&RunSummary) -> String;

/// The columns added when a run has hosts (EC2 cluster scenarios), after `cost`.
const HOST_COLUMNS: [(&str, Cell); 2] = [
    ("host-h", |r| {
        r.host_hours
            .map_or_else(|| "-".to_owned(), |h| format!("{h:.2}"))
    }),
    ("peak hosts", |r| {
        r.peak_hosts
            .map_or_else(|| "-".to_owned(), |h| h.to_string())
    }),
];

/// The table's columns: header, and how a run's cell reads.
const COLUMNS: [(&str, Cell); 16] = [
    ("run", |r| r.name.clone()),
    ("task-h", |r| format!("{:.2}", r.task_hours)),
    ("cost", |r| format!("${:.2}", r.cost)),
    ("SLO min", |r| format!("{:.1}", r.slo_violation_minutes)),
    ("p50", |r| latency(r, r.p50_latency_s)),
    ("p95", |r| latency(r, r.p95_latency_s)),
    ("p99", |r| latency(r, r.p99_latency_s)),
    ("sessions cut", |r| r.interrupted_sessions.to_string()),
    ("5xx", |r| r.failed_requests.to_string()),
    ("msgs cut", |r| r.interrupted_messages.to_string()),
    ("actions", |r| r.scaling_actions.to_string()),
    ("over peak", |r| format!("{:.1}", r.peak_over_provisioning)),
    ("over mean", |r| format!("{:.2}", r.mean_over_provisioning)),
    ("peak tasks", |r| r.peak_tasks.to_string()),
    ("mean running", |r| format!("{:.1}", r.mean_running)),
    ("completed", |r| r.completed.to_string()),
];

/// An aligned table of the runs: a title line, a header, a rule, then one row per run
/// (name left-aligned, figures right-aligned; latencies in ms / s / minutes, `-` when
/// the run reported none; over-provisioning in tasks). With EC2 cluster runs, host-hours
/// and peak hosts follow the cost.
pub fn table(summary: &Summary) -> String {
    let with_hosts = summary.runs.iter().any(|r| r.host_hours.is_some());
    let mut columns: Vec<(&str, Cell)> = COLUMNS.to_vec();
    if with_hosts {
        columns.splice(3..3, HOST_COLUMNS);
    }
    let rows: Vec<Vec<String>> = summary
        .runs
        .iter()
        .map(|r| columns.iter().map(|(_, cell)| cell(r)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (head, _))| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .fold(head.chars().count(), usize::max)
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|(h, _)| (*h).to_owned()).collect();
    let mut out = format!("scenario {} (seed {})\n", summary.scenario, summary.seed);
    push_row(&mut out, &header, &widths);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    push_row(&mut out, &rule, &widths);
    for row in &rows {
        push_row(&mut out, row, &widths);
    }
    out
}

fn push_row(out: &mut String, cells: &[String], widths: &[usize]) {
    let line: Vec<String> = cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(i, (cell, w))| {
            if i == 0 {
                format!("{cell:<w$}")
            } else {
                format!("{cell:>w$}")
            }
        })
        .collect();
    out.push_str(line.join("  ").trim_end());
    out.push('\n');
}

fn latency(run: &RunSummary, seconds: f64) -> String {
    if run.latency_samples == 0 {
        "-".to_owned()
    } else {
        human_duration(seconds)
    }
}

/// A duration in the unit that reads best: `0.4 ms`, `350 ms`, `2.50 s`, `42.0 s`,
/// `3m 05s`, `2h 10m`.
pub(crate) fn human_duration(seconds: f64) -> String {
    match seconds {
        s if s < 0.01 => format!("{:.1} ms", s * 1e3),
        s if s < 1.0 => format!("{:.0} ms", s * 1e3),
        s if s < 10.0 => format!("{s:.2} s"),
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => {
            let whole = s.round() as u64;
            format!("{}m {:02}s", whole / 60, whole % 60)
        }
        s => {
            let minutes = (s / 60.0).round() as u64;
            format!("{}h {:02}m", minutes / 60, minutes % 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(human_duration(0.0004), "0.4 ms");
        assert_eq!(human_duration(0.35), "350 ms");
        assert_eq!(human_duration(2.5), "2.50 s");
        assert_eq!(human_duration(42.0), "42.0 s");
        assert_eq!(human_duration(185.0), "3m 05s");
        assert_eq!(human_duration(7800.0), "2h 10m");
    }
}
