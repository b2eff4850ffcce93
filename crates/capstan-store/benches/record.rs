//! Benchmark: the SQLite decision log under 10,000 services evaluated every second.
//!
//! One iteration is one second of evaluations: 10,000 decisions, of which 100 (1 %)
//! are scale-outs or scale-ins, written durably one by one, and the rest holds:
//! - `steady`: the holds repeat their previous reason, so dedupe drops them;
//! - `changing`: every hold has a new reason (the worst case: every row is written,
//!   batched);
//! - `scale_out`: one durable change alone (its commit and fsync);
//! - `prune`: the periodic prune of 10,000 services holding 30 rows each down to 20
//!   (one range delete per service, whatever the history's size);
//! - `restore`: what a restart reads for each of 10,000 services holding 30 rows: its
//!   carried-out changes (`last_applied`; one for 30 of them) and the decisions of a
//!   10 s stabilization window (`since`, 11 each).
//!
//! Run with `cargo bench -p capstan-store --bench record`. Throughput is printed by divan
//! as decisions per second; `main` first prints how many rows one second writes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use capstan_core::Duration;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision, Rule};
use capstan_core::model::Capacity;
use capstan_core::policy::{Ask, Recommendation};
use capstan_store::{DecisionLog, SqliteStore};
use divan::Bencher;
use divan::counter::ItemsCount;

const SERVICES: usize = 10_000;
const SCALING_EVERY: usize = 100;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for (name, changing) in [("steady", false), ("changing", true)] {
        let store = SqliteStore::open(&dir.path().join(format!("{name}.db")), 10_000).unwrap();
        let clock = VirtualClock::at_epoch();
        let names = names();
        for round in 0..3 {
            one_second(&store, &clock, &names, round, changing);
        }
        store.flush().unwrap();
        let rows: u64 = names.iter().map(|n| store.stored_rows(n).unwrap()).sum();
        println!(
            "{name}: 3 seconds of {SERVICES} services wrote {rows} rows ({} per second)",
            rows / 3
        );
    }
    divan::main();
}

fn names() -> Vec<String> {
    (0..SERVICES).map(|i| format!("service-{i:05}")).collect()
}

fn decision(service: &str, at: capstan_core::Timestamp, action: Action, reason: &str) -> Decision {
    Decision {
        service: service.to_owned(),
        at,
        capacity: Capacity {
            desired: 4,
            running: 4,
            pending: 0,
        },
        asks: vec![Recommendation {
            policy: "queue".into(),
            ask: Ask::Desired {
                count: action.desired(),
            },
            reason: format!("queue {reason} / 100 per task"),
            degraded: false,
        }],
        rule: Rule::Hold,
        winner: Some(format!("queue-{reason}")),
        combined: action.desired(),
        min: 1,
        max: 20,
        steps: Vec::new(),
        action,
        dry_run: false,
    }
}

/// One second of evaluations of every service; returns how many were recorded.
fn one_second(
    store: &SqliteStore,
    clock: &VirtualClock,
    names: &[String],
    round: u64,
    changing: bool,
) -> usize {
    clock.advance(Duration::from_secs(1));
    let now = clock.now();
    for (i, name) in names.iter().enumerate() {
        let d = if i % SCALING_EVERY == usize::try_from(round).unwrap_or(0) % SCALING_EVERY {
            decision(name, now, Action::ScaleOut { from: 4, to: 5 }, "650")
        } else if changing {
            decision(name, now, Action::Hold { at: 4 }, &round.to_string())
        } else {
            decision(name, now, Action::Hold { at: 4 }, "steady")
        };
        store.record(&d).unwrap();
    }
    names.len()
}

fn second_of(bencher: Bencher, changing: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db"), 10_000).unwrap();
    let clock = VirtualClock::at_epoch();
    let names = names();
    // Warm: every service has its first hold in the file.
    one_second(&store, &clock, &names, 0, changing);
    let mut round = 1;
    bencher.counter(ItemsCount::new(SERVICES)).bench_local(|| {
        round += 1;
        one_second(&store, &clock, &names, round, changing)
    });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn steady(bencher: Bencher) {
    second_of(bencher, false);
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn changing(bencher: Bencher) {
    second_of(bencher, true);
}

#[divan::bench(sample_count = 50)]
fn scale_out(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db"), 10_000).unwrap();
    let clock = VirtualClock::at_epoch();
    bencher.bench_local(|| {
        clock.advance(Duration::from_secs(1));
        store
            .record(&decision(
                "svc",
                clock.now(),
                Action::ScaleOut { from: 4, to: 5 },
                "650",
            ))
            .unwrap();
    });
}

/// A store (in `dir`) after 30 s of `changing` seconds: each service has 30 rows (the
/// first 30 services one scale-out among them); retention 20.
fn filled(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(&dir.join("filled.db"), 20).unwrap();
    let clock = VirtualClock::at_epoch();
    let names = names();
    for round in 0..30 {
        one_second(&store, &clock, &names, round, true);
    }
    store.flush().unwrap();
    store
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn prune(bencher: Bencher) {
    bencher
        .counter(ItemsCount::new(SERVICES))
        .with_inputs(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = filled(dir.path());
            (dir, store)
        })
        .bench_local_values(|(dir, store)| {
            store.prune().unwrap();
            assert_eq!(store.stored_rows("service-00000").unwrap(), 20);
            (dir, store)
        });
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn restore(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path());
    let names = names();
    store.flush().unwrap();
    // The fill ran 30 s of decision time; a 10 s window reaches back into it.
    let cutoff = store.recent("service-00000", 1).unwrap()[0]
        .at
        .checked_sub(jiff::SignedDuration::from_secs(10))
        .unwrap();
    bencher.counter(ItemsCount::new(SERVICES)).bench_local(|| {
        names
            .iter()
            .map(|n| {
                store.last_applied(n, 1000).unwrap().len()
                    + store.since(n, cutoff, 1000).unwrap().len()
            })
            .sum::<usize>()
    });
}
