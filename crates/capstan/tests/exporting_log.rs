//! The exporter's wrapper of the decision log passes paging, windows, readiness and
//! carried-out changes to the store it wraps (its own ids, not the trait's fallbacks).

use std::sync::Arc;

use capstan::server::{Exporter, ExportingLog};
use capstan_core::Duration;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision, Rule};
use capstan_core::model::Capacity;
use capstan_store::{DecisionLog, SqliteStore};

fn decision(clock: &VirtualClock, action: Action) -> Decision {
    clock.advance(Duration::from_secs(1));
    Decision {
        service: "svc".into(),
        at: clock.now(),
        capacity: Capacity {
            desired: 2,
            running: 2,
            pending: 0,
        },
        asks: Vec::new(),
        rule: Rule::NoVotes,
        winner: None,
        combined: action.desired(),
        min: 0,
        max: 10,
        steps: Vec::new(),
        action,
        dry_run: false,
    }
}

#[test]
fn the_wrapper_delegates_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::at_epoch();
    let store: Arc<dyn DecisionLog> =
        Arc::new(SqliteStore::open(&dir.path().join("c.db"), 100).unwrap());
    let exporter = Arc::new(Exporter::new(&[], Arc::new(clock.clone())));
    let log = ExportingLog::new(Arc::clone(&store), exporter);
    log.record(&decision(&clock, Action::Hold { at: 2 }))
        .unwrap();
    log.record(&decision(&clock, Action::ScaleOut { from: 2, to: 4 }))
        .unwrap();
    log.record(&decision(&clock, Action::Hold { at: 4 }))
        .unwrap();
    log.ping().unwrap();
    let page = log.page("svc", None, 2).unwrap();
    // The store's own numbers (1, 2, 3), not instants in milliseconds.
    assert_eq!(
        page.decisions.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![3, 2]
    );
    assert_eq!(page.next_before, Some(2));
    assert_eq!(log.last_applied("svc", 5).unwrap().len(), 1);
    assert_eq!(log.since("svc", clock.now(), 10).unwrap().len(), 1);
}
