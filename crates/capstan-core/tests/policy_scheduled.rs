//! Scheduled bounds: cron windows in a time zone, across DST changes.

use std::time::Duration;

use capstan_core::metrics::Observations;
use capstan_core::policy::scheduled::parse_cron;
use capstan_core::policy::{Ask, PolicyInput, Scheduled, ScheduledAction};
use capstan_core::testing::steady;
use jiff::Timestamp;
use jiff::tz::TimeZone;

fn at(text: &str) -> Timestamp {
    text.parse().expect("a valid timestamp")
}

fn action(
    cron: &str,
    minutes: u64,
    min: Option<u32>,
    max: Option<u32>,
    exact: Option<u32>,
) -> ScheduledAction {
    ScheduledAction::new(cron, Duration::from_secs(minutes * 60), min, max, exact)
        .expect("a valid cron")
}

fn schedule(tz: &str, actions: Vec<ScheduledAction>) -> Scheduled {
    Scheduled {
        timezone: TimeZone::get(tz).expect("a known time zone"),
        actions,
    }
}

fn eval(s: &Scheduled, now: &str) -> (Ask, String) {
    let obs = Observations::new();
    let input = PolicyInput {
        now: at(now),
        capacity: steady(3),
        baseline: 3,
        metrics: &obs,
        last_known: None,
    };
    let (ask, reason, degraded) = s.evaluate(&input);
    assert!(!degraded);
    (ask, reason)
}

fn bounds(min: Option<u32>, max: Option<u32>) -> Ask {
    Ask::Bounds { min, max }
}

#[test]
fn weekday_window_follows_new_york_dst() {
    let s = schedule(
        "America/New_York",
        vec![action("30 8 * * MON-FRI", 30, Some(4), None, None)],
    );
    assert!(s.validate().is_empty());
    // Friday 2026-03-06, EST (UTC−5): 08:30 local is 13:30Z.
    let (ask, reason) = eval(&s, "2026-03-06T13:30:00Z");
    assert_eq!(ask, bounds(Some(4), None), "{reason}");
    assert!(
        reason.contains("`30 8 * * MON-FRI` (America/New_York)"),
        "{reason}"
    );
    assert!(reason.contains("until 2026-03-06 09:00 EST"), "{reason}");
    assert_eq!(eval(&s, "2026-03-06T12:30:00Z").0, Ask::Abstain);
    assert_eq!(eval(&s, "2026-03-06T13:59:59Z").0, bounds(Some(4), None));
    assert_eq!(
        eval(&s, "2026-03-06T14:00:00Z").0,
        Ask::Abstain,
        "the window end is exclusive"
    );
    // The weekend: nothing.
    assert_eq!(eval(&s, "2026-03-07T13:30:00Z").0, Ask::Abstain);
    // Clocks go forward on Sunday 2026-03-08. Monday, EDT (UTC−4): 08:30 local is 12:30Z.
    let (ask, reason) = eval(&s, "2026-03-09T12:30:00Z");
    assert_eq!(ask, bounds(Some(4), None), "{reason}");
    assert!(reason.contains("until 2026-03-09 09:00 EDT"), "{reason}");
    assert_eq!(eval(&s, "2026-03-09T13:30:00Z").0, Ask::Abstain);
}

#[test]
fn berlin_spring_forward_skipped_hour() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z); 02:00 does not exist that day.
    let s = schedule(
        "Europe/Berlin",
        vec![action("0 2 * * *", 60, None, None, Some(6))],
    );
    // The day before: 02:00 CET = 01:00Z.
    assert_eq!(eval(&s, "2026-03-28T01:00:00Z").0, bounds(Some(6), Some(6)));
    assert_eq!(eval(&s, "2026-03-28T02:00:00Z").0, Ask::Abstain);
    // Just before the jump (01:59 CET): yesterday's window is long over.
    assert_eq!(eval(&s, "2026-03-29T00:59:59Z").0, Ask::Abstain);
    // croner runs a fixed-time job whose time falls in the gap at the first instant
    // after it, 03:00 CEST (01:00Z); the window lasts one real hour from there.
    let (ask, reason) = eval(&s, "2026-03-29T01:00:00Z");
    assert_eq!(ask, bounds(Some(6), Some(6)), "{reason}");
    assert!(
        reason.contains("since 2026-03-29 03:00 CEST until 2026-03-29 04:00 CEST"),
        "{reason}"
    );
    assert_eq!(eval(&s, "2026-03-29T01:59:00Z").0, bounds(Some(6), Some(6)));
    assert_eq!(eval(&s, "2026-03-29T02:00:00Z").0, Ask::Abstain);
    // The day after: 02:00 CEST = 00:00Z.
    assert_eq!(eval(&s, "2026-03-30T00:00:00Z").0, bounds(Some(6), Some(6)));
    assert_eq!(eval(&s, "2026-03-29T23:59:59Z").0, Ask::Abstain);

    // A window that spans the jump lasts its duration in real time: 01:00 CET (00:00Z)
    // plus two hours ends at 02:00Z, which is 04:00 CEST.
    let s = schedule(
        "Europe/Berlin",
        vec![action("0 1 * * *", 120, Some(2), Some(9), None)],
    );
    let (ask, reason) = eval(&s, "2026-03-29T01:30:00Z");
    assert_eq!(ask, bounds(Some(2), Some(9)), "{reason}");
    assert!(reason.contains("until 2026-03-29 04:00 CEST"), "{reason}");
    assert_eq!(eval(&s, "2026-03-29T02:00:00Z").0, Ask::Abstain);
}

#[test]
fn berlin_fall_back_repeated_hour_fires_once() {
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00Z); 02:30 happens twice, at
    // 00:30Z (CEST) and 01:30Z (CET). A fixed-time job runs at the first one only.
    let s = schedule(
        "Europe/Berlin",
        vec![action("30 2 * * *", 30, Some(5), None, None)],
    );
    assert_eq!(eval(&s, "2026-10-25T00:30:00Z").0, bounds(Some(5), None));
    assert_eq!(eval(&s, "2026-10-25T00:59:59Z").0, bounds(Some(5), None));
    assert_eq!(eval(&s, "2026-10-25T01:30:00Z").0, Ask::Abstain);
    assert_eq!(eval(&s, "2026-10-25T01:45:00Z").0, Ask::Abstain);
}

#[test]
fn the_most_recent_window_wins() {
    let s = schedule(
        "UTC",
        vec![
            action("0 8 * * *", 600, Some(2), Some(10), None),
            action("0 12 * * *", 60, None, None, Some(20)),
        ],
    );
    assert_eq!(
        eval(&s, "2026-05-05T09:00:00Z").0,
        bounds(Some(2), Some(10))
    );
    let (ask, reason) = eval(&s, "2026-05-05T12:15:00Z");
    assert_eq!(ask, bounds(Some(20), Some(20)));
    assert!(reason.contains("exactly 20"), "{reason}");
    assert_eq!(
        eval(&s, "2026-05-05T13:00:00Z").0,
        bounds(Some(2), Some(10))
    );
    let (ask, reason) = eval(&s, "2026-05-05T18:00:00Z");
    assert_eq!(ask, Ask::Abstain);
    assert!(reason.contains("no scheduled window active"), "{reason}");
}

#[test]
fn cron_parsing() {
    assert!(parse_cron("30 8 * * MON-FRI").is_ok());
    assert!(parse_cron("30 8 * * mon-fri").is_ok());
    assert!(parse_cron("0 0 1 JAN *").is_ok());
    assert!(parse_cron("*/15 * * * *").is_ok());
    let err = parse_cron("0 30 8 * * MON").unwrap_err();
    assert_eq!(err.field, "cron");
    assert!(err.message.contains("0 30 8 * * MON"), "{}", err.message);
    assert!(parse_cron("61 * * * *").is_err());
    assert!(parse_cron("").is_err());
    assert!(parse_cron("every day").is_err());
    assert!(parse_cron("@daily").is_ok());
    assert!(parse_cron("0 0 29 2 *").is_ok(), "leap days exist");
    let err = parse_cron("0 0 31 2 *").unwrap_err();
    assert!(err.message.contains("never matches"), "{}", err.message);
    // A restricted day-of-month and day-of-week match when either does (classic cron):
    // 2026-03-13 is a Friday the 13th, 2026-03-20 a Friday, 2026-04-13 a Monday.
    let s13 = schedule("UTC", vec![action("0 9 13 * FRI", 60, Some(1), None, None)]);
    for day in ["2026-03-13", "2026-03-20", "2026-04-13"] {
        assert_eq!(
            eval(&s13, &format!("{day}T09:30:00Z")).0,
            bounds(Some(1), None),
            "{day}"
        );
    }
    assert_eq!(eval(&s13, "2026-03-19T09:30:00Z").0, Ask::Abstain);
    // Sunday as 0 and 7, and by name, are the same day (2026-03-08 was a Sunday).
    let s = |cron: &str| schedule("UTC", vec![action(cron, 60, Some(1), None, None)]);
    for cron in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
        assert_eq!(
            eval(&s(cron), "2026-03-08T09:10:00Z").0,
            bounds(Some(1), None),
            "{cron}"
        );
        assert_eq!(
            eval(&s(cron), "2026-03-09T09:10:00Z").0,
            Ask::Abstain,
            "{cron}"
        );
    }
}

#[test]
fn validation_table() {
    let fields = |s: &Scheduled| {
        s.validate()
            .into_iter()
            .map(|e| e.field)
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&schedule("UTC", vec![])), ["actions"]);
    let s = schedule(
        "UTC",
        vec![
            action("0 8 * * *", 60, None, None, None),
            action("0 8 * * *", 60, Some(1), None, Some(3)),
            action("0 8 * * *", 60, Some(5), Some(4), None),
            action("0 8 * * *", 0, Some(1), None, None),
            action("0 8 * * *", 60, Some(0), Some(0), None),
        ],
    );
    let never = ScheduledAction {
        cron: "0 0 31 2 *"
            .parse()
            .expect("croner's default parser accepts it"),
        ..action("0 8 * * *", 60, Some(1), None, None)
    };
    assert_eq!(fields(&schedule("UTC", vec![never])), ["actions[0].cron"]);
    assert_eq!(
        fields(&s),
        [
            "actions[0]",
            "actions[1].exact",
            "actions[2].max",
            "actions[3].duration"
        ]
    );
}
