//! The run report: summary figures from hand-made steps, the JSON file, the table, the
//! streamed CSV and the bounded plot series.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use capstan_sim::metric::{Frame, SimMetric};
use capstan_sim::record::StepRecord;
use capstan_sim::report::{
    CSV_COLUMNS, RecorderOptions, ReportError, RunRecorder, RunSeries, RunSummary, Summary,
    metric_column, table,
};
use jiff::Timestamp;
use proptest::prelude::*;

const START: i64 = 1_700_000_000;

/// A step ending `elapsed` seconds into the run, `dt` long, with nothing going on.
fn step(elapsed: f64, dt: f64) -> StepRecord {
    StepRecord {
        at: Timestamp::from_second(START + elapsed as i64).unwrap(),
        elapsed_s: elapsed,
        dt_s: dt,
        demand: 0.0,
        needed: 0.0,
        desired: 0,
        running: 0,
        pending: 0,
        stopping: 0,
        hosts: None,
        metric: None,
        metric_target: None,
        frame: Frame::default(),
        completed: 0,
        failed_requests: 0,
        interrupted_sessions: 0,
        interrupted_messages: 0,
        slo_violated: false,
        action: None,
        decision: None,
    }
}

fn opts() -> RecorderOptions {
    RecorderOptions {
        cost_per_task_hour: 0.06,
        csv: None,
        max_points: 100,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Four steps whose figures are worked out by hand in `summary_math_by_hand`.
fn hand_made() -> Vec<StepRecord> {
    let mut s1 = step(60.0, 60.0);
    (s1.running, s1.pending, s1.needed, s1.desired) = (2, 1, 1.5, 3);
    s1.action = Some((2, 3));
    s1.completed = 10;
    let mut s2 = step(120.0, 60.0);
    (s2.running, s2.stopping, s2.needed, s2.desired) = (3, 1, 1.0, 3);
    s2.slo_violated = true;
    s2.failed_requests = 4;
    s2.interrupted_sessions = 1;
    let mut s3 = step(150.0, 30.0);
    (s3.running, s3.needed, s3.desired) = (3, 4.0, 5);
    s3.slo_violated = true;
    s3.action = Some((3, 5));
    s3.interrupted_messages = 2;
    s3.completed = 5;
    let mut s4 = step(180.0, 30.0);
    (s4.running, s4.needed, s4.desired) = (5, 5.0, 5);
    vec![s1, s2, s3, s4]
}

fn run(name: &str, records: &[StepRecord], opts: RecorderOptions) -> (RunSummary, RunSeries) {
    let mut rec = RunRecorder::new(name, opts).unwrap();
    for r in records {
        rec.record(r).unwrap();
    }
    rec.finish().unwrap()
}

#[test]
fn summary_math_by_hand() {
    let (s, _) = run("capstan", &hand_made(), opts());
    // Billed tasks 3, 4, 3, 5 for 60, 60, 30, 30 s: 660 task-seconds.
    assert!(close(s.task_hours, 660.0 / 3600.0), "{}", s.task_hours);
    assert!(close(s.cost, 660.0 / 3600.0 * 0.06));
    assert_eq!(s.cost_per_task_hour, 0.06);
    // Steps 2 and 3 violate: 90 s.
    assert!(close(s.slo_violation_minutes, 1.5));
    // Over-provisioning 0.5, 2, 0 (needs more than runs), 0.
    assert!(close(s.peak_over_provisioning, 2.0));
    assert!(close(
        s.mean_over_provisioning,
        (0.5 * 60.0 + 2.0 * 60.0) / 180.0
    ));
    assert_eq!(s.scaling_actions, 2);
    assert_eq!(s.peak_tasks, 5);
    assert_eq!(s.peak_running, 5);
    assert!(close(
        s.mean_running,
        (2.0 * 60.0 + 3.0 * 60.0 + 3.0 * 30.0 + 5.0 * 30.0) / 180.0
    ));
    assert_eq!(
        (
            s.completed,
            s.failed_requests,
            s.interrupted_sessions,
            s.interrupted_messages
        ),
        (15, 4, 1, 2)
    );
    assert_eq!((s.host_hours, s.peak_hosts), (None, None));
    assert!(close(s.duration_hours, 0.05));
    assert_eq!(s.steps, 4);
    assert_eq!(
        (s.latency_samples, s.p50_latency_s, s.p99_latency_s),
        (0, 0.0, 0.0)
    );
}

#[test]
fn hosts_are_counted_only_when_present() {
    let records: Vec<StepRecord> = [2, 4, 3]
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let mut r = step(600.0 * (i as f64 + 1.0), 600.0);
            r.hosts = Some(h);
            r
        })
        .collect();
    let (s, _) = run("ec2", &records, opts());
    assert!(close(s.host_hours.unwrap(), 9.0 * 600.0 / 3600.0));
    assert_eq!(s.peak_hosts, Some(4));
}

#[test]
fn an_empty_run_has_zero_means() {
    let (s, series) = run("idle", &[], opts());
    assert_eq!(
        (s.task_hours, s.mean_running, s.mean_over_provisioning),
        (0.0, 0.0, 0.0)
    );
    assert!(series.is_empty());
}

#[test]
fn latency_percentiles_from_the_histogram() {
    let mut rec = RunRecorder::new("capstan", opts()).unwrap();
    rec.latency(1.0, 50);
    rec.latency(2.0, 45);
    rec.latency(10.0, 4);
    rec.latency(60.0, 1);
    rec.latency(f64::NAN, 0); // a count of zero records nothing
    let (s, _) = rec.finish().unwrap();
    assert_eq!(s.latency_samples, 100);
    for (got, want) in [
        (s.p50_latency_s, 1.0),
        (s.p95_latency_s, 2.0),
        (s.p99_latency_s, 10.0),
    ] {
        assert!((got - want).abs() <= want * 1e-3, "{got} vs {want}");
    }
}

#[test]
fn invalid_latencies_fail_the_run_naming_it() {
    let mut rec = RunRecorder::new("aws-step", opts()).unwrap();
    rec.latency(0.5, 3);
    rec.latency(-1.0, 2);
    rec.latency(f64::INFINITY, 1);
    let err = rec.finish().unwrap_err();
    assert!(
        matches!(err, ReportError::InvalidLatency { count: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"aws-step\""), "{err}");
    assert!(err.to_string().contains("-1"), "{err}");
}

proptest! {
    #[test]
    fn percentiles_are_within_a_tenth_of_a_percent(
        mut values in prop::collection::vec(0.001f64..5000.0, 1..300),
    ) {
        let mut rec = RunRecorder::new("p", opts()).unwrap();
        for v in &values {
            rec.latency(*v, 1);
        }
        let (s, _) = rec.finish().unwrap();
        values.sort_by(f64::total_cmp);
        for (q, got) in [(0.5, s.p50_latency_s), (0.95, s.p95_latency_s), (0.99, s.p99_latency_s)] {
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let want = values[rank - 1];
            prop_assert!((got - want).abs() <= want * 1e-3 + 1e-6, "q{q}: {got} vs {want}");
        }
    }
}

#[test]
fn bad_records_and_options_are_refused_by_name() {
    let mut rec = RunRecorder::new("capstan", opts()).unwrap();
    rec.record(&step(1.0, 1.0)).unwrap();
    let mut bad = step(2.0, 1.0);
    bad.dt_s = f64::NAN;
    let err = rec.record(&bad).unwrap_err().to_string();
    assert!(
        err.contains("step 1") && err.contains("`dt_s`") && err.contains("NaN"),
        "{err}"
    );
    let mut bad = step(2.0, 1.0);
    bad.needed = -1.0;
    let err = rec.record(&bad).unwrap_err().to_string();
    assert!(err.contains("`needed`") && err.contains("≥ 0"), "{err}");

    let cases = [
        (
            RecorderOptions {
                cost_per_task_hour: f64::NAN,
                ..opts()
            },
            "cost_per_task_hour",
        ),
        (
            RecorderOptions {
                cost_per_task_hour: -0.1,
                ..opts()
            },
            "cost_per_task_hour",
        ),
        (
            RecorderOptions {
                max_points: 1,
                ..opts()
            },
            "max_points",
        ),
    ];
    for (o, field) in cases {
        let err = RunRecorder::new("x", o).unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }
    let err = RunRecorder::new(" ", opts()).unwrap_err().to_string();
    assert!(err.contains("name"), "{err}");
}

fn sample_summary() -> Summary {
    let (mut capstan, _) = run("capstan", &hand_made(), opts());
    capstan.p99_latency_s = 0.1 + 0.2; // float noise must not reach the file
    let (baseline, _) = run("aws-target-tracking", &hand_made()[..2], opts());
    Summary {
        scenario: "sqs-backlog".to_owned(),
        seed: 7,
        runs: vec![capstan, baseline],
    }
}

#[test]
fn json_keeps_the_field_names_scripts_read() {
    let json = sample_summary().to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["scenario"], "sqs-backlog");
    assert_eq!(v["seed"], 7);
    let run = &v["runs"][0];
    assert_eq!(run["name"], "capstan");
    for key in [
        "task_hours",
        "slo_violation_minutes",
        "p99_latency_s",
        "interrupted_sessions",
        "failed_requests",
        "scaling_actions",
    ] {
        assert!(run.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(run["scaling_actions"], 2);
    assert_eq!(run["failed_requests"], 4);
    assert_eq!(run["task_hours"].as_f64(), Some(0.183333));
    assert!(json.contains("\"p99_latency_s\": 0.3,"), "{json}");
    assert!(json.contains("\"host_hours\": null"), "{json}");
    // Stable order: as declared.
    let pos = |k: &str| json.find(&format!("\"{k}\"")).unwrap();
    assert!(pos("scenario") < pos("seed") && pos("seed") < pos("runs"));
    assert!(pos("name") < pos("task_hours") && pos("task_hours") < pos("cost"));
    assert!(json.ends_with("}\n"));
}

#[test]
fn json_is_byte_identical_for_the_same_input() {
    let a = sample_summary().to_json();
    let b = sample_summary().to_json();
    assert_eq!(a, b);
    // Reading the file back and writing it again changes nothing either.
    let back = Summary::from_json(&a, Path::new("summary.json")).unwrap();
    assert_eq!(back.to_json(), a);
}

#[test]
fn json_of_a_fixed_summary_is_exactly_this() {
    let summary = Summary {
        scenario: "redis-burst".to_owned(),
        seed: 1,
        runs: vec![RunSummary {
            name: "capstan".to_owned(),
            task_hours: 2.0 / 3.0,
            cost: 1e-7 * 3.0,
            cost_per_task_hour: 0.04937,
            slo_violation_minutes: 0.0,
            p50_latency_s: 123_456_789.0,
            p95_latency_s: 1.5,
            p99_latency_s: 2.25,
            latency_samples: 9,
            interrupted_sessions: 0,
            failed_requests: 0,
            interrupted_messages: 1,
            completed: 9,
            scaling_actions: 3,
            peak_over_provisioning: 1.0,
            mean_over_provisioning: 0.25,
            peak_tasks: 4,
            peak_running: 3,
            mean_running: 2.5,
            host_hours: Some(1.0 / 7.0),
            peak_hosts: Some(2),
            duration_hours: 1.0,
            steps: 3600,
        }],
    };
    let want = r#"{
  "scenario": "redis-burst",
  "seed": 1,
  "runs": [
    {
      "name": "capstan",
      "task_hours": 0.666667,
      "cost": 3e-7,
      "cost_per_task_hour": 0.04937,
      "slo_violation_minutes": 0.0,
      "p50_latency_s": 123457000.0,
      "p95_latency_s": 1.5,
      "p99_latency_s": 2.25,
      "latency_samples": 9,
      "interrupted_sessions": 0,
      "failed_requests": 0,
      "interrupted_messages": 1,
      "completed": 9,
      "scaling_actions": 3,
      "peak_over_provisioning": 1.0,
      "mean_over_provisioning": 0.25,
      "peak_tasks": 4,
      "peak_running": 3,
      "mean_running": 2.5,
      "host_hours": 0.142857,
      "peak_hosts": 2,
      "duration_hours": 1.0,
      "steps": 3600
    }
  ]
}
"#;
    assert_eq!(summary.to_json(), want);
}

#[test]
fn summary_file_is_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/nested");
    let summary = sample_summary();
    summary.write(&out).unwrap();
    let path = out.join("summary.json");
    assert_eq!(fs::read_to_string(&path).unwrap(), summary.to_json());
    let back = Summary::read(&path).unwrap();
    assert_eq!(back.runs.len(), 2);
    assert_eq!(back.runs[0].name, "capstan");

    fs::write(&path, "{\n  \"scenario\": \"x\",\n  \"seed\": -1\n}\n").unwrap();
    let err = Summary::read(&path).unwrap_err().to_string();
    assert!(err.contains("summary.json:3:"), "{err}");
    let err = Summary::read(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("reading") && err.contains("missing.json"),
        "{err}"
    );
}

#[test]
fn table_has_a_row_per_run_in_human_units() {
    let mut summary = sample_summary();
    let mut rec = RunRecorder::new("with-latency", opts()).unwrap();
    rec.latency(0.25, 10);
    rec.latency(185.0, 1);
    summary.runs.push(rec.finish().unwrap().0);
    let text = table(&summary);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 + 3, "{text}");
    assert_eq!(lines[0], "scenario sqs-backlog (seed 7)");
    for head in [
        "run",
        "task-h",
        "cost",
        "SLO min",
        "p50",
        "p99",
        "5xx",
        "actions",
        "over peak",
    ] {
        assert!(lines[1].contains(head), "{head} missing: {}", lines[1]);
    }
    assert!(lines[2].starts_with("---"));
    assert!(
        lines[3].starts_with("capstan ") && lines[3].contains("$0.01"),
        "{}",
        lines[3]
    );
    assert!(lines[4].starts_with("aws-target-tracking"));
    assert!(
        lines[5].contains("250 ms") && lines[5].contains("3m 05s"),
        "{}",
        lines[5]
    );
    // A run without latencies shows '-'; columns are right-aligned on the header.
    assert!(lines[3].contains(" - "), "{}", lines[3]);
    // Figures are right-aligned under their header: each cell ends where its header does.
    for head in [
        "task-h",
        "SLO min",
        "p95",
        "5xx",
        "actions",
        "mean running",
        "completed",
    ] {
        let end = lines[1].find(head).unwrap() + head.len();
        for row in &lines[3..] {
            let chars: Vec<char> = row.chars().collect();
            assert!(chars[end - 1] != ' ', "{head} in {row}");
            assert!(chars.get(end).is_none_or(|c| *c == ' '), "{head} in {row}");
        }
    }
}

#[test]
fn table_shows_hosts_only_when_a_run_has_them() {
    let mut summary = sample_summary();
    assert!(!table(&summary).contains("host-h"));
    summary.runs[0].host_hours = Some(12.5);
    summary.runs[0].peak_hosts = Some(4);
    let text = table(&summary);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].contains("cost  host-h  peak hosts  SLO min"),
        "{}",
        lines[1]
    );
    assert!(lines[3].contains("12.50"), "{}", lines[3]);
    // A run without hosts shows '-' in both columns.
    let end = lines[1].find("peak hosts").unwrap() + "peak hosts".len();
    assert_eq!(&lines[4][end - 1..end], "-", "{}", lines[4]);
}

#[test]
fn csv_has_a_header_with_units_and_a_row_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/capstan.csv");
    let mut records = hand_made();
    records[0].frame.set(SimMetric::QueueDepth, 12.0);
    records[0].frame.set(SimMetric::Cpu, 55.5);
    records[0].metric = Some(12.0);
    records[0].metric_target = Some(10.0);
    records[1].hosts = Some(3);
    let csv_opts = RecorderOptions {
        csv: Some(path.clone()),
        ..opts()
    };
    run("capstan", &records, csv_opts);
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + records.len());
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(&header[..CSV_COLUMNS.len()], &CSV_COLUMNS);
    assert_eq!(header.len(), CSV_COLUMNS.len() + SimMetric::ALL.len());
    for col in [
        "elapsed_s",
        "time",
        "demand_per_s",
        "oldest_age_s",
        "cpu_pct",
        "queue_depth",
    ] {
        assert!(header.contains(&col), "{col} missing");
    }
    let cell = |line: &str, col: &str| -> String {
        let i = header.iter().position(|h| *h == col).unwrap();
        line.split(',').nth(i).unwrap().to_owned()
    };
    let first = lines[1];
    assert_eq!(first.split(',').count(), header.len());
    assert_eq!(cell(first, "elapsed_s"), "60");
    assert_eq!(cell(first, "time"), "2023-11-14T22:14:20Z");
    assert_eq!(cell(first, "needed"), "1.5");
    assert_eq!(cell(first, "running"), "2");
    assert_eq!(cell(first, "pending"), "1");
    assert_eq!(cell(first, "hosts"), "");
    assert_eq!(cell(first, "metric"), "12");
    assert_eq!(cell(first, "metric_target"), "10");
    assert_eq!(cell(first, "completed"), "10");
    assert_eq!(cell(first, "slo_violated"), "0");
    assert_eq!(cell(first, "action_to"), "3");
    assert_eq!(cell(first, metric_column(SimMetric::QueueDepth)), "12");
    assert_eq!(cell(first, metric_column(SimMetric::Cpu)), "55.5");
    assert_eq!(cell(first, metric_column(SimMetric::Memory)), "");
    let second = lines[2];
    assert_eq!(cell(second, "hosts"), "3");
    assert_eq!(cell(second, "slo_violated"), "1");
    assert_eq!(cell(second, "action_to"), "");
    assert_eq!(cell(second, "metric"), "");
}

#[test]
fn csv_is_streamed_while_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.csv");
    let mut rec = RunRecorder::new(
        "long",
        RecorderOptions {
            csv: Some(path.clone()),
            ..opts()
        },
    )
    .unwrap();
    for i in 1..=20_000 {
        rec.record(&step(f64::from(i), 1.0)).unwrap();
    }
    // Before finishing, most rows are already on disk (only a bounded buffer is held).
    let on_disk = fs::metadata(&path).unwrap().len();
    rec.finish().unwrap();
    let total = fs::metadata(&path).unwrap().len();
    assert!(
        on_disk > 0 && total - on_disk <= 1 << 16,
        "{on_disk} of {total}"
    );
}

#[test]
fn csv_that_cannot_be_created_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = RunRecorder::new(
        "x",
        RecorderOptions {
            csv: Some(dir.path().to_path_buf()),
            ..opts()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("creating CSV ") && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_million_steps_keep_the_series_bounded() {
    let max = 2000;
    let mut rec = RunRecorder::new(
        "long",
        RecorderOptions {
            max_points: max,
            ..opts()
        },
    )
    .unwrap();
    let n = 1_000_000u32;
    let mut r = step(0.0, 1.0);
    r.demand = 5.0;
    for i in 1..=n {
        r.elapsed_s = f64::from(i);
        r.running = i % 10;
        r.demand = if i == 777_777 { 900.0 } else { 5.0 };
        rec.record(&r).unwrap();
    }
    let (s, series) = rec.finish().unwrap();
    assert_eq!(s.steps, u64::from(n));
    let points = series.points();
    assert!(
        points.len() <= max && points.len() > max / 4,
        "{}",
        points.len()
    );
    assert_eq!(points.iter().map(|p| p.steps()).sum::<u64>(), u64::from(n));
    assert_eq!(points[0].start_s, 0.0);
    assert_eq!(points.last().unwrap().end_s, f64::from(n));
    assert!(points.windows(2).all(|w| w[0].end_s == w[1].start_s));
    // Merging keeps the extremes and the time-weighted means.
    assert_eq!(
        points.iter().map(|p| p.demand.max).fold(0.0, f64::max),
        900.0
    );
    assert!(points.iter().all(|p| p.demand.min == 5.0));
    let full = &points[..points.len() - 1];
    assert!(
        full.iter()
            .all(|p| (p.running.mean - 4.5).abs() < 0.05 && p.running.max == 9.0)
    );
}

proptest! {
    #[test]
    fn series_stay_bounded_ordered_and_complete(n in 0usize..3000, max in 2usize..64) {
        let mut rec = RunRecorder::new("p", RecorderOptions { max_points: max, ..opts() }).unwrap();
        for i in 1..=n {
            let mut r = step(i as f64 * 2.0, 2.0);
            r.desired = (i % 7) as u32;
            rec.record(&r).unwrap();
        }
        let (_, series) = rec.finish().unwrap();
        let points = series.points();
        prop_assert!(points.len() <= max);
        prop_assert_eq!(points.iter().map(|p| p.steps()).sum::<u64>(), n as u64);
        prop_assert!(points.windows(2).all(|w| w[0].end_s == w[1].start_s));
        prop_assert!(points.iter().all(|p| p.desired.min <= p.desired.mean && p.desired.mean <= p.desired.max));
    }
}
