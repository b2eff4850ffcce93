//! Load traces: CSV files (good ones replayed row by row, each kind of bad input
//! rejected with its file, line and reason) and the generators' shapes.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_sim::trace::{Demand, Trace, TraceError, TraceSpec};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces")
}

fn csv(path: &str) -> TraceSpec {
    TraceSpec::Csv {
        path: path.into(),
        processing_time_s: None,
    }
}

fn open(spec: &TraceSpec) -> Trace {
    Trace::open(spec, &fixtures(), 1).expect("valid trace")
}

/// Rates at each of `times`.
fn rates(trace: &mut Trace, times: &[f64]) -> Vec<f64> {
    times
        .iter()
        .map(|&t| trace.demand_at(t).expect("demand").rate)
        .collect()
}

fn spec(json: &str) -> TraceSpec {
    serde_json::from_str(json).expect("valid spec")
}

#[test]
fn csv_rows_hold_until_the_next_one() {
    let mut t = open(&csv("minutes.csv"));
    assert_eq!(t.length(), Some(Duration::from_secs(240)));
    assert!(t.provides_processing_time());
    let got: Vec<Demand> = [0.0, 59.9, 60.0, 119.0, 120.0, 180.0, 239.0, 500.0]
        .iter()
        .map(|&s| t.demand_at(s).unwrap())
        .collect();
    let want = [
        (0.5, 6.0),
        (0.5, 6.0),
        (1.5, 6.0), // an empty cell keeps the previous processing time
        (1.5, 6.0),
        (0.0, 8.5),
        (2.25, 7.0), // 01:03:00+01:00 is 00:03:00Z
        (2.25, 7.0),
        (2.25, 7.0), // past the end the last row holds
    ];
    for (g, (rate, pt)) in got.iter().zip(want) {
        assert_eq!(
            *g,
            Demand {
                rate,
                processing_time_s: Some(pt)
            }
        );
    }
}

#[test]
fn csv_reads_seconds_per_minute_crlf_and_a_byte_order_mark() {
    let mut t = open(&csv("seconds_crlf_bom.csv"));
    // Rows every 10 s, the last one 5 s after its predecessor (closer is fine).
    assert_eq!(t.length(), Some(Duration::from_secs(35)));
    assert!(!t.provides_processing_time());
    assert_eq!(
        rates(&mut t, &[0.0, 9.0, 10.0, 20.0, 24.9, 25.0]),
        [1.0, 1.0, 2.0, 0.5, 0.5, 0.0]
    );
    assert_eq!(t.demand_at(30.0).unwrap().processing_time_s, None);
}

#[test]
fn csv_columns_go_in_any_order_and_time_starts_at_the_first_row() {
    // `sessions,seconds` with seconds 100, 400, 700: offsets 0, 300, 600.
    let mut t = open(&csv("sessions.csv"));
    assert_eq!(t.length(), Some(Duration::from_secs(900)));
    assert_eq!(
        rates(&mut t, &[0.0, 299.0, 300.0, 600.0]),
        [0.1, 0.1, 0.2, 0.05]
    );
}

#[test]
fn csv_gets_a_processing_time_from_the_spec_unless_it_has_a_column() {
    let mut t = open(&TraceSpec::Csv {
        path: "sessions.csv".into(),
        processing_time_s: Some(2.5),
    });
    assert_eq!(t.demand_at(0.0).unwrap().processing_time_s, Some(2.5));
    let err = Trace::open(
        &TraceSpec::Csv {
            path: "minutes.csv".into(),
            processing_time_s: Some(2.5),
        },
        &fixtures(),
        1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "processing_time_s: {} has a processing_time column already; keep one of the two",
            fixtures().join("minutes.csv").display()
        )
    );
}

#[test]
fn csv_time_must_not_go_backwards() {
    let mut t = open(&csv("minutes.csv"));
    t.demand_at(100.0).unwrap();
    let err = t.demand_at(50.0).unwrap_err();
    assert!(matches!(err, TraceError::Backwards { .. }));
    assert_eq!(
        err.to_string(),
        "trace asked for t = 50 s after t = 100 s: time must not go backwards"
    );
    assert!(t.demand_at(f64::NAN).is_err());
}

#[test]
fn every_kind_of_bad_csv_is_rejected_with_file_line_and_reason() {
    let cases = [
        (
            "empty.csv",
            "",
            "empty file: expected a header line such as `timestamp,rate`",
        ),
        ("header_only.csv", "", "no rows after the header"),
        (
            "one_row.csv",
            "",
            "only 1 row: a trace needs at least two to know its step",
        ),
        (
            "missing_header.csv",
            ":1",
            "missing header: the first line must name the columns, e.g. \
             `timestamp,rate,processing_time`, not `2026-03-01T00:00:00Z,1`",
        ),
        (
            "unknown_column.csv",
            ":1",
            "unknown column `colour`; known: timestamp or seconds (time), rate, \
             rate_per_minute or sessions (arrivals), processing_time",
        ),
        (
            "no_time.csv",
            ":1",
            "no time column: add `timestamp` (RFC 3339) or `seconds`",
        ),
        (
            "no_rate.csv",
            ":1",
            "no arrivals column: add `rate` (per second), `rate_per_minute` or `sessions`",
        ),
        (
            "two_rates.csv",
            ":1",
            "columns `rate` and `sessions` say the same thing; keep one",
        ),
        (
            "wrong_count.csv",
            ":4",
            "1 fields, expected 2 (seconds,rate)",
        ),
        ("not_a_number.csv", ":3", "rate `abc` is not a number"),
        ("nan.csv", ":3", "rate `NaN` is not a finite number"),
        ("inf.csv", ":3", "rate `inf` is not a finite number"),
        ("negative.csv", ":3", "rate -3 is negative"),
        ("empty_rate.csv", ":3", "rate is empty"),
        ("negative_seconds.csv", ":2", "seconds -10 is negative"),
        (
            "bad_timestamp.csv",
            ":3",
            "timestamp `2026-03-01 00:01:00` is not an RFC 3339 time such as \
             2026-03-01T00:00:00Z: ",
        ),
        (
            "unsorted.csv",
            ":7",
            "timestamp 2026-03-01T00:05:00Z is not after line 6's 2026-03-01T00:05:10Z",
        ),
        ("duplicate.csv", ":4", "seconds 10 is not after line 3's 10"),
        (
            "gap.csv",
            ":9",
            "gap of 300 s after line 8; the trace's step is 60 s",
        ),
        (
            "processing_first_empty.csv",
            ":2",
            "processing_time is empty and no earlier row gives one \
             (an empty cell keeps the previous row's value)",
        ),
        ("processing_zero.csv", ":3", "processing_time 0 must be > 0"),
    ];
    for (file, line, message) in cases {
        let path = fixtures().join("bad").join(file);
        let err = Trace::open(&csv(&format!("bad/{file}")), &fixtures(), 1)
            .expect_err(file)
            .to_string();
        let want = format!("{}{line}: {message}", path.display());
        if file == "bad_timestamp.csv" {
            assert!(err.starts_with(&want), "{file}: {err}");
        } else {
            assert_eq!(err, want, "{file}");
        }
    }
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let err = Trace::open(&csv("nowhere.csv"), &fixtures(), 1)
        .unwrap_err()
        .to_string();
    let want = format!(
        "{}: cannot read: ",
        fixtures().join("nowhere.csv").display()
    );
    assert!(err.starts_with(&want), "{err}");
}

#[test]
fn a_long_csv_streams_in_flat_memory() {
    // One day at one row per second, written and replayed; only the row in force and
    // the next one are held.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("seconds,rate\n");
    for s in 0..86_400 {
        text.push_str(&format!("{s},{}\n", s % 7));
    }
    std::fs::write(dir.path().join("day.csv"), text).unwrap();
    let mut t = Trace::open(&csv("day.csv"), dir.path(), 1).unwrap();
    assert_eq!(t.length(), Some(Duration::from_secs(86_400)));
    let mut sum = 0.0;
    for s in 0..86_400 {
        sum += t.demand_at(f64::from(s) + 0.5).unwrap().rate;
    }
    let want: f64 = (0..86_400).map(|s| f64::from(s % 7)).sum();
    assert_eq!(sum, want);
}

#[test]
fn generators_have_their_shapes() {
    let mut c = open(&spec(
        r#"{"kind":"constant","rate":3,"processing_time_s":2}"#,
    ));
    assert_eq!(
        c.demand_at(1e6).unwrap(),
        Demand {
            rate: 3.0,
            processing_time_s: Some(2.0)
        }
    );
    assert_eq!(c.length(), None);

    let mut s = open(&spec(r#"{"kind":"step","before":1,"after":5,"at_s":60}"#));
    assert_eq!(rates(&mut s, &[0.0, 59.9, 60.0, 1e5]), [1.0, 1.0, 5.0, 5.0]);

    let mut p = open(&spec(
        r#"{"kind":"spike","base":1,"peak":9,"at_s":100,"duration_s":50}"#,
    ));
    assert_eq!(
        rates(&mut p, &[0.0, 99.0, 100.0, 149.9, 150.0]),
        [1.0, 1.0, 9.0, 9.0, 1.0]
    );

    let mut d = open(&spec(
        r#"{"kind":"sine","mean":10,"amplitude":4,"period_s":86400,"phase_s":-21600}"#,
    ));
    // Shifted a quarter period back: starts at the trough, peaks at noon.
    let r = rates(&mut d, &[0.0, 21_600.0, 43_200.0, 64_800.0, 86_400.0]);
    let want = [6.0, 10.0, 14.0, 10.0, 6.0];
    for (g, w) in r.iter().zip(want) {
        assert!((g - w).abs() < 1e-9, "{r:?}");
    }

    let mut w = open(&spec(
        r#"{"kind":"sawtooth","low":2,"high":6,"period_s":100}"#,
    ));
    assert_eq!(
        rates(&mut w, &[0.0, 25.0, 50.0, 99.0, 100.0, 150.0]),
        [2.0, 3.0, 4.0, 5.96, 2.0, 4.0]
    );
}

#[test]
fn random_walks_stay_in_bounds_move_on_schedule_and_follow_the_seed() {
    let walk = spec(r#"{"kind":"random_walk","start":5,"step_sd":1,"every_s":60,"min":2,"max":8}"#);
    let times: Vec<f64> = (0..2000).map(|i| f64::from(i) * 30.0).collect();
    let run = |seed| {
        let mut t = Trace::open(&walk, &fixtures(), seed).unwrap();
        rates(&mut t, &times)
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same walk");
    assert_ne!(a, run(8), "another seed, another walk");
    assert_eq!(a[0], 5.0);
    assert_eq!(a[1], 5.0, "no move before every_s");
    assert!(a.iter().all(|r| (2.0..=8.0).contains(r)));
    // Moves only on the minute: values at 30 s and 60 s may differ, 60 s and 90 s not.
    for pair in a.chunks(2).skip(1) {
        assert_eq!(pair[0], pair[1]);
    }
    assert!(a.contains(&2.0) && a.contains(&8.0), "reaches both bounds");
}

#[test]
fn sums_add_rates_and_weigh_processing_times() {
    let mut s = open(&spec(
        r#"{"kind":"sum","parts":[
            {"kind":"constant","rate":3,"processing_time_s":2},
            {"kind":"spike","base":0,"peak":1,"at_s":10,"duration_s":10,"processing_time_s":6},
            {"kind":"csv","path":"sessions.csv"}
        ]}"#,
    ));
    assert_eq!(s.length(), Some(Duration::from_secs(900)));
    let d = s.demand_at(0.0).unwrap();
    assert!((d.rate - 3.1).abs() < 1e-12);
    assert_eq!(d.processing_time_s, Some(2.0));
    let d = s.demand_at(15.0).unwrap();
    assert!((d.rate - 4.1).abs() < 1e-12);
    assert_eq!(d.processing_time_s, Some((3.0 * 2.0 + 6.0) / 4.0));
}

#[test]
fn generator_parameters_are_checked_by_name() {
    let cases = [
        (
            r#"{"kind":"constant","rate":-1}"#,
            "rate: must be a number ≥ 0, got -1",
        ),
        (
            r#"{"kind":"sine","mean":1,"amplitude":2,"period_s":60}"#,
            "amplitude: must be ≤ mean (1) so the rate stays ≥ 0, got 2",
        ),
        (
            r#"{"kind":"sine","mean":1,"amplitude":1,"period_s":0}"#,
            "period_s: must be a number > 0, got 0",
        ),
        (
            r#"{"kind":"sawtooth","low":1,"high":2,"period_s":-5}"#,
            "period_s: must be a number > 0, got -5",
        ),
        (
            r#"{"kind":"spike","base":1,"peak":2,"at_s":5,"duration_s":0}"#,
            "duration_s: must be a number > 0, got 0",
        ),
        (
            r#"{"kind":"random_walk","start":9,"step_sd":1,"every_s":60,"min":2,"max":8}"#,
            "start: must be between min (2) and max (8), got 9",
        ),
        (
            r#"{"kind":"random_walk","start":5,"step_sd":1,"every_s":60,"min":8,"max":2}"#,
            "max: must be ≥ min (8), got 2",
        ),
        (
            r#"{"kind":"random_walk","start":5,"step_sd":1,"every_s":0,"min":2,"max":8}"#,
            "every_s: must be a number > 0, got 0",
        ),
        (
            r#"{"kind":"constant","rate":1,"processing_time_s":0}"#,
            "processing_time_s: must be a number > 0, got 0",
        ),
        (
            r#"{"kind":"sum","parts":[]}"#,
            "parts: must name at least one trace",
        ),
        (
            r#"{"kind":"sum","parts":[{"kind":"constant","rate":1},{"kind":"step","before":1,"after":-2,"at_s":3}]}"#,
            "parts[1].after: must be a number ≥ 0, got -2",
        ),
    ];
    for (json, want) in cases {
        let err = Trace::open(&spec(json), &fixtures(), 1).expect_err(json);
        assert_eq!(err.to_string(), want, "{json}");
    }
}

#[test]
fn specs_reject_unknown_fields_and_kinds() {
    let err = serde_json::from_str::<TraceSpec>(r#"{"kind":"constant","rate":1,"rat":2}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `rat`"), "{err}");
    let err = serde_json::from_str::<TraceSpec>(r#"{"kind":"diurnal","rate":1}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `diurnal`"), "{err}");
    // phase_s defaults to 0.
    let s = spec(r#"{"kind":"sine","mean":2,"amplitude":1,"period_s":40}"#);
    assert!(matches!(s, TraceSpec::Sine { phase_s, .. } if phase_s == 0.0));
}
