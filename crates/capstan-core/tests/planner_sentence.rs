//! The one-line explanation of a decision: exact sentences for the common cases, and
//! every step of a decision appearing in its sentence.

use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::planner::{Cooldowns, Fallback, PlannerConfig, PlannerState, RateLimit, plan};
use capstan_core::policy::{Ask, Recommendation};
use capstan_core::testing::{planner_config as config, recommendation as rec, steady as cap};

fn sentence(cfg: &PlannerConfig, current: u32, asks: Vec<Recommendation>) -> String {
    let now = VirtualClock::at_epoch().now();
    plan(
        cfg,
        &mut PlannerState::default(),
        "worker",
        cap(current),
        asks,
        now,
    )
    .sentence()
}

#[test]
fn scale_out_capped_by_max() {
    let s = sentence(
        &config(1, 6),
        3,
        vec![
            rec(
                "queue",
                Ask::Desired { count: 7 },
                "650 total / 100 per task → 7",
            ),
            rec("cpu", Ask::Desired { count: 4 }, "cpu 80% / target 60% → 4"),
        ],
    );
    assert_eq!(
        s,
        "worker: scale out 3 → 6 — queue asked 7 (650 total / 100 per task → 7), \
         largest of 2 asks; capped 7 → 6 by max 6"
    );
}

#[test]
fn hold_with_a_source_without_data() {
    let s = sentence(
        &config(1, 10),
        4,
        vec![
            rec("cpu", Ask::Hold, "within tolerance"),
            rec(
                "queue",
                Ask::NoData {
                    sources: vec!["jobs".into()],
                },
                "jobs stale for 2m",
            ),
        ],
    );
    assert_eq!(
        s,
        "worker: hold at 4 — cpu holds (within tolerance); \
         queue has no data from jobs: fallback hold at 4"
    );
}

#[test]
fn scale_in_refused_on_missing_data() {
    let mut cfg = config(1, 10);
    cfg.fallback = Fallback::Tasks(2);
    let s = sentence(
        &cfg,
        4,
        vec![
            rec("cpu", Ask::Desired { count: 3 }, "cpu 20% / target 60% → 3"),
            rec(
                "queue",
                Ask::NoData {
                    sources: vec!["jobs".into()],
                },
                "jobs failing",
            ),
        ],
    );
    assert_eq!(
        s,
        "worker: hold at 4 — cpu asked 3 (cpu 20% / target 60% → 3), largest of 2 asks, \
         all lower; queue has no data from jobs: fallback asks 2; \
         scale-in to 3 refused: queue has no data from jobs"
    );
}

#[test]
fn dry_run_scale_in_with_rate_limit() {
    let mut cfg = config(1, 10);
    cfg.dry_run = true;
    cfg.rate_limits.r#in = Some(RateLimit {
        tasks: Some(2),
        percent: None,
        period: Duration::from_secs(300),
    });
    let s = sentence(&cfg, 8, vec![rec("q", Ask::Desired { count: 2 }, "")]);
    assert_eq!(
        s,
        "[dry-run] worker: scale in 8 → 6 — q asked 2; \
         scale-in limited 2 → 6: at most −2 per 5m from 8"
    );
}

#[test]
fn no_votes_raised_to_a_scheduled_min() {
    let s = sentence(
        &config(1, 10),
        2,
        vec![
            rec(
                "nightly",
                Ask::Bounds {
                    min: Some(5),
                    max: None,
                },
                "window 22:00–06:00",
            ),
            rec("cpu", Ask::Abstain, "alarm not breaching"),
        ],
    );
    assert_eq!(
        s,
        "worker: scale out 2 → 5 — no policy voted; raised 2 → 5 by scheduled min 5 (nightly)"
    );
}

#[test]
fn cooldown_and_stabilization_sentences() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.cooldown = Cooldowns {
        out: Duration::from_secs(300),
        r#in: Duration::from_secs(60),
    };
    cfg.stabilization = Duration::from_secs(120);
    let mut state = PlannerState::default();
    let ask = |n: u32| vec![rec("p", Ask::Desired { count: n }, "")];

    let d = plan(&cfg, &mut state, "worker", cap(5), ask(7), clock.now());
    state.applied(&d, clock.now());
    clock.advance(Duration::from_secs(30));
    let d = plan(&cfg, &mut state, "worker", cap(6), ask(7), clock.now());
    assert_eq!(
        d.sentence(),
        "worker: hold at 6 — p asked 7; scale-out to 7 held at 6: out-cooldown until \
         2026-01-01T00:05:00Z after 5 → 7, and 7 is not above 7"
    );
    let d = plan(&cfg, &mut state, "worker", cap(7), ask(3), clock.now());
    assert_eq!(
        d.sentence(),
        "worker: hold at 7 — p asked 3; scale-in to 3 held at 7: highest recommendation \
         in the last 2m is 7"
    );
}

#[test]
fn every_step_appears_in_the_sentence() {
    let clock = VirtualClock::at_epoch();
    let mut cfg = config(1, 20);
    cfg.cooldown.r#in = Duration::from_secs(600);
    cfg.stabilization = Duration::from_secs(60);
    let mut state = PlannerState::default();
    let d = plan(
        &cfg,
        &mut state,
        "worker",
        cap(10),
        vec![rec("p", Ask::Desired { count: 8 }, "")],
        clock.now(),
    );
    state.applied(&d, clock.now());
    clock.advance(Duration::from_secs(90));
    let d = plan(
        &cfg,
        &mut state,
        "worker",
        cap(8),
        vec![rec("p", Ask::Desired { count: 5 }, "")],
        clock.now(),
    );
    let s = d.sentence();
    assert_eq!(d.steps.len(), 1);
    for step in &d.steps {
        assert!(s.contains(&step.detail), "{s} lacks {}", step.detail);
    }
    assert_eq!(
        s,
        "worker: hold at 8 — p asked 5; scale-in to 5 held at 8: in-cooldown until \
         2026-01-01T00:10:00Z after 10 → 8"
    );
}
