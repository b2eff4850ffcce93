//! The run plot: PNG and SVG files that hold what they claim.
//!
//! Set `CAPSTAN_PLOT_DIR` to keep the pictures in that directory for a look.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;

use capstan_sim::metric::Frame;
use capstan_sim::record::StepRecord;
use capstan_sim::report::{RecorderOptions, RunRecorder, RunSeries, plot};
use jiff::Timestamp;

/// A day at one-minute steps of a diurnal demand; `lag` steps of reaction delay and
/// `slack` spare tasks make the runs differ. The metric is tasks' utilisation in
/// percent against a 70 % target, undefined for the first hour of the slow run.
fn day(name: &str, lag: usize, slack: f64, max_points: usize) -> RunSeries {
    let opts = RecorderOptions {
        max_points,
        ..RecorderOptions::default()
    };
    let mut rec = RunRecorder::new(name, opts).unwrap();
    let needed_at = |i: usize| {
        let hours = i as f64 / 60.0;
        let demand = 50.0 + 40.0 * (std::f64::consts::TAU * (hours - 9.0) / 24.0).sin();
        (demand, demand / 10.0)
    };
    for i in 1..=1440 {
        let (demand, needed) = needed_at(i);
        let (_, lagged) = needed_at(i.saturating_sub(lag));
        let desired = (lagged + slack).ceil() as u32;
        let running = if i % 97 < 3 {
            desired.saturating_sub(1)
        } else {
            desired
        };
        let r = StepRecord {
            at: Timestamp::from_second(1_700_000_000 + 60 * i as i64).unwrap(),
            elapsed_s: 60.0 * i as f64,
            dt_s: 60.0,
            demand,
            needed,
            desired,
            running,
            pending: desired - running,
            stopping: 0,
            hosts: None,
            metric: (lag == 0 || i > 60).then(|| 100.0 * needed / f64::from(running.max(1))),
            metric_target: Some(70.0),
            frame: Frame::default(),
            completed: 0,
            failed_requests: 0,
            interrupted_sessions: 0,
            interrupted_messages: 0,
            slo_violated: false,
            action: None,
            decision: None,
        };
        rec.record(&r).unwrap();
    }
    rec.finish().unwrap().1
}

fn out_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("CAPSTAN_PLOT_DIR") {
        Some(dir) => (None, PathBuf::from(dir)),
        None => {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().to_path_buf();
            (Some(tmp), path)
        }
    }
}

#[test]
fn plot_writes_a_png_and_an_svg_with_the_legends() {
    let capstan = day("capstan", 0, 0.5, 500);
    let baseline = day("aws-target-tracking", 8, 2.0, 300);
    let (_keep, dir) = out_dir();
    let (png, svg) = (dir.join("plots/day.png"), dir.join("plots/day.svg"));
    plot(
        "diurnal (seed 3)",
        &[("capstan", &capstan), ("aws-target-tracking", &baseline)],
        &png,
        &svg,
    )
    .unwrap();

    let bytes = fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 20_000, "PNG only {} bytes", bytes.len());

    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.trim_start().starts_with("<svg"), "{}", &text[..80]);
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<svg").count(), 1);
    for label in [
        "diurnal (seed 3)",
        "demand",
        "demand min-max",
        "capstan desired",
        "capstan running",
        "aws-target-tracking desired",
        "aws-target-tracking running",
        "needed",
        "capstan metric",
        "aws-target-tracking target",
        "time (hours)",
        "metric vs target",
    ] {
        assert!(
            text.contains(&format!(">\n{label}\n</text>")),
            "no {label:?} in the SVG"
        );
    }
}

#[test]
fn plot_refuses_nothing_to_draw_and_unwritable_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (png, svg) = (dir.path().join("a.png"), dir.path().join("a.svg"));
    let err = plot("t", &[], &png, &svg).unwrap_err().to_string();
    assert!(
        err.contains("no run to plot") && err.contains("a.png"),
        "{err}"
    );

    let blocker = dir.path().join("file");
    fs::write(&blocker, "not a directory").unwrap();
    let series = day("capstan", 0, 0.5, 50);
    let err = plot("t", &[("capstan", &series)], &blocker.join("x.png"), &svg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("file"), "{err}");
}

#[test]
fn an_empty_run_still_plots_axes() {
    let dir = tempfile::tempdir().unwrap();
    let series = RunRecorder::new("idle", RecorderOptions::default())
        .unwrap()
        .finish()
        .unwrap()
        .1;
    let (png, svg) = (dir.path().join("e.png"), dir.path().join("e.svg"));
    plot("idle", &[("idle", &series)], &png, &svg).unwrap();
    assert!(
        fs::read_to_string(&svg)
            .unwrap()
            .contains(">\nidle running\n</text>")
    );
}

#[test]
fn merged_points_show_the_demand_band() {
    let mut rec = RunRecorder::new(
        "capstan",
        RecorderOptions {
            max_points: 100,
            ..RecorderOptions::default()
        },
    )
    .unwrap();
    for i in 1..=7200u32 {
        // Bursts of 60 s every 20 minutes on a base of 10 arrivals/s.
        let demand = if i % 1200 < 60 { 80.0 } else { 10.0 };
        let r = StepRecord {
            at: Timestamp::from_second(1_700_000_000 + i64::from(i)).unwrap(),
            elapsed_s: f64::from(i),
            dt_s: 1.0,
            demand,
            needed: demand / 10.0,
            desired: 2,
            running: 2,
            pending: 0,
            stopping: 0,
            hosts: None,
            metric: Some(demand / 2.0),
            metric_target: Some(20.0),
            frame: Frame::default(),
            completed: 0,
            failed_requests: 0,
            interrupted_sessions: 0,
            interrupted_messages: 0,
            slo_violated: false,
            action: None,
            decision: None,
        };
        rec.record(&r).unwrap();
    }
    let series = rec.finish().unwrap().1;
    let (_keep, dir) = out_dir();
    let (png, svg) = (dir.join("bursts.png"), dir.join("bursts.svg"));
    plot("bursts", &[("capstan", &series)], &png, &svg).unwrap();
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<polygon"), "no min-max band");
    assert!(text.contains(">\ndemand min-max\n</text>"));
}
