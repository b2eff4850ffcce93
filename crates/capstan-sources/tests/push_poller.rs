//! The poller reading a `push` source on paused Tokio time, with a read observer: the
//! pushed value is sampled until its ttl, then every read fails `not_found`, and the
//! observer sees every outcome.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_core::Clock;
use capstan_core::metrics::Freshness;
use capstan_sources::{
    ErrorClass, Hooks, PushSpec, PushStore, ReadError, ReadObserver, SourceKind, spawn_all_with,
};
use support::{TokioClock, freshness, run_until, shared, spec, values};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Seen(Mutex<Vec<(String, Result<f64, ErrorClass>)>>);

impl ReadObserver for Seen {
    fn observed(&self, source: &str, _took: Duration, result: Result<f64, &ReadError>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((source.to_owned(), result.map_err(ReadError::class)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_pushed_value_is_sampled_until_its_ttl_and_every_read_is_observed() {
    let start = tokio::time::Instant::now();
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let push = PushStore::new(clock.clone() as Arc<dyn Clock>);
    let seen = Arc::new(Seen::default());
    let mut jobs = spec("jobs", 10);
    jobs.kind = SourceKind::Push(PushSpec {
        ttl: Duration::from_secs(25),
    });
    let hooks = Hooks {
        push: Some(push.clone()),
        observer: Some(seen.clone()),
    };
    let mut tasks =
        spawn_all_with(&[jobs], obs.clone(), clock.clone(), cancel.clone(), &hooks).unwrap();
    push.push("jobs", 5.0).unwrap();

    run_until(start, 20.001).await;
    assert_eq!(
        values(&obs, "jobs"),
        vec![
            (5.0, clock.at(0.0)),
            (5.0, clock.at(10.0)),
            (5.0, clock.at(20.0))
        ]
    );
    run_until(start, 30.001).await;
    assert!(
        matches!(freshness(&obs, "jobs", &clock), Freshness::Failing { .. }),
        "a stale push fails the window"
    );
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
        vec![Ok(5.0), Ok(5.0), Ok(5.0), Err(ErrorClass::NotFound)]
    );
    assert!(seen.iter().all(|(s, _)| s == "jobs"));

    cancel.cancel();
    while tasks.join_next().await.is_some() {}
}

#[test]
fn a_push_source_without_a_store_is_a_config_error() {
    let mut jobs = spec("jobs", 10);
    jobs.kind = SourceKind::Push(PushSpec {
        ttl: Duration::from_secs(25),
    });
    let err = capstan_sources::build(&jobs).err().unwrap();
    assert_eq!(err.error.class(), ErrorClass::Config);
}
