//! The SQLite decision log on real files: history survives a reopen, pages walk it
//! newest first, concurrent writers, foreign and corrupt files, newer schemas, retention
//! pruning and hold dedupe.

use std::sync::Arc;

use capstan_core::Duration;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision, Rule, Step, StepKind};
use capstan_core::model::Capacity;
use capstan_core::policy::{Ask, Recommendation};
use capstan_store::{DecisionLog, SqliteStore, StoreError, StoreKind, StoreSpec};

fn decision(service: &str, clock: &VirtualClock, action: Action, reason: &str) -> Decision {
    clock.advance(Duration::from_secs(1));
    let desired = match action {
        Action::ScaleOut { from, .. } | Action::ScaleIn { from, .. } => from,
        Action::Hold { at } => at,
    };
    Decision {
        service: service.to_owned(),
        at: clock.now(),
        capacity: Capacity {
            desired,
            running: desired,
            pending: 0,
        },
        asks: vec![Recommendation {
            policy: "queue".into(),
            ask: Ask::Desired {
                count: action.desired(),
            },
            reason: format!("{reason} at {}", clock.now()),
            degraded: false,
        }],
        rule: Rule::Hold,
        winner: Some(reason.to_owned()),
        combined: action.desired(),
        min: 1,
        max: 10,
        steps: vec![Step {
            kind: StepKind::Max,
            from: 12,
            to: 10,
            detail: "capped".into(),
        }],
        action,
        dry_run: false,
    }
}

fn hold(service: &str, clock: &VirtualClock, at: u32, reason: &str) -> Decision {
    decision(service, clock, Action::Hold { at }, reason)
}

fn out(service: &str, clock: &VirtualClock, from: u32, to: u32) -> Decision {
    decision(service, clock, Action::ScaleOut { from, to }, "queue")
}

#[test]
fn history_survives_a_reopen_and_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capstan.db");
    let clock = VirtualClock::at_epoch();
    let mut written = Vec::new();
    {
        let store = SqliteStore::open(&path, 100).unwrap();
        for n in 0..7 {
            // Alternate so that no hold is a duplicate of the previous one.
            let d = hold("a", &clock, n, &format!("r{n}"));
            store.record(&d).unwrap();
            written.push(d);
        }
        let d = out("a", &clock, 3, 5);
        store.record(&d).unwrap();
        written.push(d);
        store.record(&hold("b", &clock, 1, "x")).unwrap();
    }
    let store = SqliteStore::open(&path, 100).unwrap();
    store.ping().unwrap();
    written.reverse();
    assert_eq!(store.recent("a", 100).unwrap(), written);
    let mut walked = Vec::new();
    let mut before = None;
    let mut ids = Vec::new();
    loop {
        let page = store.page("a", before, 3).unwrap();
        assert!(page.decisions.len() <= 3);
        ids.extend(page.decisions.iter().map(|(id, _)| *id));
        walked.extend(page.decisions.into_iter().map(|(_, d)| d));
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(walked, written);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "ids decrease: {ids:?}");
    assert_eq!(store.recent("b", 10).unwrap().len(), 1);
    let applied = store.last_applied("a", 10).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].action, Action::ScaleOut { from: 3, to: 5 });
}

#[test]
fn a_change_is_on_disk_when_record_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capstan.db");
    let clock = VirtualClock::at_epoch();
    let store = SqliteStore::open(&path, 100).unwrap();
    store.record(&hold("a", &clock, 3, "waiting")).unwrap();
    store.record(&out("a", &clock, 3, 6)).unwrap();
    // A second connection (as after a crash: the first is never closed) sees it.
    let other = SqliteStore::open(&path, 100).unwrap();
    let applied = other.last_applied("a", 5).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].action, Action::ScaleOut { from: 3, to: 6 });
    // The hold waiting in the batch went in with the change.
    assert_eq!(other.stored_rows("a").unwrap(), 2);
    std::mem::forget(store);
}

#[test]
fn identical_holds_are_written_once_until_the_reason_or_a_change_comes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db"), 100).unwrap();
    let clock = VirtualClock::at_epoch();
    for _ in 0..50 {
        // The free-text reason carries the time: it differs each tick, the reason not.
        store.record(&hold("a", &clock, 3, "steady")).unwrap();
    }
    assert_eq!(store.recent("a", 100).unwrap().len(), 1);
    store.record(&hold("a", &clock, 3, "other")).unwrap();
    store.record(&hold("a", &clock, 3, "other")).unwrap();
    assert_eq!(store.recent("a", 100).unwrap().len(), 2);
    store.record(&out("a", &clock, 3, 4)).unwrap();
    store.record(&hold("a", &clock, 3, "other")).unwrap();
    assert_eq!(store.recent("a", 100).unwrap().len(), 4);
    // Services dedupe separately.
    store.record(&hold("b", &clock, 3, "other")).unwrap();
    assert_eq!(store.recent("b", 100).unwrap().len(), 1);
}

#[test]
fn retention_is_pruned_periodically_keeping_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db"), 5).unwrap();
    let clock = VirtualClock::at_epoch();
    for n in 0..20 {
        store.record(&out("a", &clock, n, n + 1)).unwrap();
    }
    store.record(&out("b", &clock, 1, 2)).unwrap();
    // Not per insert: 21 s of decision time, below the prune period.
    assert_eq!(store.stored_rows("a").unwrap(), 20);
    clock.advance(Duration::from_secs(120));
    store.record(&out("a", &clock, 20, 21)).unwrap();
    assert_eq!(store.stored_rows("a").unwrap(), 5);
    assert_eq!(store.stored_rows("b").unwrap(), 1);
    let newest: Vec<u32> = store
        .recent("a", 10)
        .unwrap()
        .iter()
        .map(|d| d.action.desired())
        .collect();
    assert_eq!(newest, vec![21, 20, 19, 18, 17]);
    // Paging still works after a prune.
    let page = store.page("a", None, 4).unwrap();
    let rest = store.page("a", page.next_before, 4).unwrap();
    assert_eq!(rest.decisions.len(), 1);
    assert_eq!(rest.next_before, None);
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = Arc::new(SqliteStore::open(&path, 10_000).unwrap());
    let second = Arc::new(SqliteStore::open(&path, 10_000).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = if t % 2 == 0 {
                Arc::clone(&store)
            } else {
                Arc::clone(&second)
            };
            std::thread::spawn(move || {
                let clock = VirtualClock::at_epoch();
                let service = format!("s{t}");
                for n in 0..100 {
                    store.record(&out(&service, &clock, n, n + 1)).unwrap();
                    store
                        .record(&hold(&service, &clock, n + 1, &format!("h{n}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    store.flush().unwrap();
    second.flush().unwrap();
    for t in 0..4 {
        let service = format!("s{t}");
        assert_eq!(store.stored_rows(&service).unwrap(), 200, "{service}");
        assert_eq!(second.last_applied(&service, 1000).unwrap().len(), 100);
    }
}

fn open_error(path: &std::path::Path) -> String {
    match SqliteStore::open(path, 10) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => {
            assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
            e.to_string()
        }
    }
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let e = open_error(&path);
    assert!(e.contains("notes.db"), "{e}");
    assert!(e.contains("not a capstan database"), "{e}");
    // Left untouched.
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192]);
}

#[test]
fn another_programs_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x');")
        .unwrap();
    drop(conn);
    let e = open_error(&path);
    assert!(
        e.contains("other.db") && e.contains("not a capstan database"),
        "{e}"
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(SqliteStore::open(&path, 10).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(conn);
    let e = open_error(&path);
    assert!(e.contains("schema version 99 is newer"), "{e}");
}

#[test]
fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope").join("c.db");
    let e = open_error(&path);
    assert!(
        e.contains("directory") && e.contains("nope") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn open_picks_the_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let spec = StoreSpec {
        kind: StoreKind::Sqlite { path: path.clone() },
        retention: 10,
    };
    let clock = VirtualClock::at_epoch();
    capstan_store::open(&spec)
        .unwrap()
        .record(&out("a", &clock, 1, 2))
        .unwrap();
    assert!(path.is_file());
    let memory = capstan_store::open(&StoreSpec {
        kind: StoreKind::Memory,
        retention: 10,
    })
    .unwrap();
    memory.ping().unwrap();
    assert!(memory.recent("a", 5).unwrap().is_empty());
}

#[test]
fn a_prune_round_is_spread_over_the_following_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db"), 5).unwrap();
    let clock = VirtualClock::at_epoch();
    let services: Vec<String> = (0..100).map(|i| format!("s{i:03}")).collect();
    let start = clock.now();
    for round in 0..8 {
        for s in &services {
            // All at one instant: no prune is due while filling.
            let mut d = hold(s, &clock, 3, &format!("r{round}"));
            d.at = start;
            store.record(&d).unwrap();
        }
    }
    clock.set(start);
    store.flush().unwrap();
    let over = |store: &SqliteStore| {
        services
            .iter()
            .filter(|s| store.stored_rows(s).unwrap() > 5)
            .count()
    };
    assert_eq!(over(&store), 100);
    // `out` moves the clock 1 s: still inside the first prune period.
    store.record(&out("x", &clock, 1, 2)).unwrap();
    assert_eq!(over(&store), 100);
    clock.advance(Duration::from_secs(120));
    store.record(&out("x", &clock, 1, 2)).unwrap();
    let after_one = over(&store);
    assert!(
        (100 - capstan_store::sqlite::PRUNE_CHUNK..100).contains(&after_one),
        "one record pruned {} services",
        100 - after_one
    );
    for _ in 0..4 {
        store.record(&out("x", &clock, 1, 2)).unwrap();
    }
    assert_eq!(over(&store), 0);
    assert_eq!(store.stored_rows("s042").unwrap(), 5);
}

#[test]
fn every_kind_of_ask_and_step_reads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let clock = VirtualClock::at_epoch();
    let mut d = out("a", &clock, 2, 4);
    let asks = [
        Ask::Desired { count: 4 },
        Ask::Hold,
        Ask::Abstain,
        Ask::NoData {
            sources: vec!["queue".into(), "cpu".into()],
        },
        Ask::Bounds {
            min: Some(2),
            max: None,
        },
    ];
    d.asks = asks
        .into_iter()
        .enumerate()
        .map(|(i, ask)| Recommendation {
            policy: format!("p{i}"),
            ask,
            reason: "why — with a dash".into(),
            degraded: i % 2 == 0,
        })
        .collect();
    d.steps = [
        StepKind::Fallback,
        StepKind::MissingData,
        StepKind::Stabilization,
        StepKind::OutCooldown,
        StepKind::InCooldown,
        StepKind::RateLimitOut,
        StepKind::RateLimitIn,
        StepKind::Min,
        StepKind::Max,
        StepKind::DryRun,
        StepKind::Paused,
    ]
    .into_iter()
    .map(|kind| Step {
        kind,
        from: 4,
        to: 4,
        detail: format!("{kind:?}"),
    })
    .collect();
    d.rule = Rule::ScaleInAllAgree;
    d.winner = None;
    SqliteStore::open(&path, 10).unwrap().record(&d).unwrap();
    let back = SqliteStore::open(&path, 10)
        .unwrap()
        .recent("a", 1)
        .unwrap();
    assert_eq!(back, vec![d]);
}

/// Run by [`a_scale_out_survives_a_killed_process`] in a child process: records a hold,
/// a scale-out and another hold, then dies at once (no destructor runs).
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os("CAPSTAN_STORE_CRASH_DB") else {
        return;
    };
    let store = SqliteStore::open(std::path::Path::new(&path), 100).unwrap();
    let clock = VirtualClock::at_epoch();
    store.record(&hold("a", &clock, 3, "before")).unwrap();
    store.record(&out("a", &clock, 3, 6)).unwrap();
    store.record(&hold("a", &clock, 6, "after")).unwrap();
    std::process::abort();
}

#[test]
fn a_scale_out_survives_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capstan.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("CAPSTAN_STORE_CRASH_DB", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
    let store = SqliteStore::open(&path, 100).unwrap();
    let applied = store.last_applied("a", 5).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].action, Action::ScaleOut { from: 3, to: 6 });
    let kept: Vec<Action> = store
        .recent("a", 10)
        .unwrap()
        .iter()
        .map(|d| d.action)
        .collect();
    // The hold waiting in the batch went in with the scale-out; the one after it was
    // still waiting when the process died.
    assert_eq!(
        kept,
        vec![Action::ScaleOut { from: 3, to: 6 }, Action::Hold { at: 3 }]
    );
}
