//! The poller's retries within an interval (transient classes only, backoff with full
//! jitter, never past the interval, every attempt observed) on paused time.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_core::metrics::Freshness;
use capstan_sources::poller::run_poller_with;
use capstan_sources::{BoxFuture, ErrorClass, ReadError, ReadObserver, Source};
use support::{TokioClock, freshness, run_until, shared, spec, values};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A source that plays a script of outcomes (then repeats the last) and records the
/// instant of every read.
struct Script {
    steps: Mutex<Vec<Result<f64, ReadError>>>,
    reads: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    fn boxed(steps: Vec<Result<f64, ReadError>>) -> (Box<dyn Source>, Arc<Mutex<Vec<Instant>>>) {
        let reads = Arc::new(Mutex::new(Vec::new()));
        let mut steps = steps;
        steps.reverse();
        let source = Self {
            steps: Mutex::new(steps),
            reads: Arc::clone(&reads),
        };
        (Box::new(source), reads)
    }
}

impl Source for Script {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        self.reads.lock().expect("lock").push(Instant::now());
        let step = {
            let mut steps = self.steps.lock().expect("lock");
            if steps.len() > 1 {
                steps.pop()
            } else {
                steps.last().cloned()
            }
        };
        Box::pin(async move { step.expect("a scripted step") })
    }
}

fn connect() -> Result<f64, ReadError> {
    Err(ReadError::Connect {
        target: "redis://127.0.0.1:6379/0".into(),
        reason: "connection refused".into(),
    })
}

fn server() -> Result<f64, ReadError> {
    Err(ReadError::Server {
        target: "redis://127.0.0.1:6379/0".into(),
        reason: "LOADING".into(),
    })
}

fn auth() -> Result<f64, ReadError> {
    Err(ReadError::Auth {
        target: "redis://127.0.0.1:6379/0".into(),
        reason: "WRONGPASS".into(),
    })
}

/// Counts what the observer saw: values and errors by class.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, Result<f64, ErrorClass>)>>);

impl ReadObserver for Seen {
    fn observed(&self, source: &str, _took: Duration, result: Result<f64, &ReadError>) {
        self.0
            .lock()
            .expect("lock")
            .push((source.to_owned(), result.map_err(ReadError::class)));
    }
}

impl Seen {
    fn errors(&self, class: ErrorClass) -> usize {
        let seen = self.0.lock().expect("lock");
        seen.iter().filter(|(_, r)| *r == Err(class)).count()
    }
    fn values(&self) -> usize {
        let seen = self.0.lock().expect("lock");
        seen.iter().filter(|(_, r)| r.is_ok()).count()
    }
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff_within_the_interval() {
    let start = Instant::now();
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let seen = Arc::new(Seen::default());
    let (source, reads) = Script::boxed(vec![connect(), server(), Ok(7.0)]);
    let mut s = spec("queue", 10);
    s.retries = 2;
    let task = tokio::spawn(run_poller_with(
        s,
        source,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
        Some(seen.clone()),
    ));

    // Backoff ceilings for a 10 s interval: 500 ms before the first retry, 1 s before
    // the second.
    run_until(start, 1.6).await;
    let at: Vec<Duration> = reads.lock().unwrap().iter().map(|i| *i - start).collect();
    assert_eq!(at.len(), 3, "{at:?}");
    assert_eq!(at[0], Duration::ZERO);
    assert!(at[1] <= Duration::from_millis(500), "{at:?}");
    assert!(at[2] - at[1] <= Duration::from_secs(1), "{at:?}");
    // The window got the value of the third attempt, at its time, and never failed.
    let got = values(&obs, "queue");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 7.0);
    assert_eq!(got[0].1, clock.at(at[2].as_secs_f64()));
    assert_eq!(freshness(&obs, "queue", &clock), Freshness::Fresh);
    // Every attempt was observed, errors by class.
    assert_eq!(seen.errors(ErrorClass::Connect), 1);
    assert_eq!(seen.errors(ErrorClass::Server), 1);
    assert_eq!(seen.values(), 1);

    // The next read is on the regular tick, not shifted by the retries.
    run_until(start, 10.001).await;
    let last = *reads.lock().unwrap().last().unwrap() - start;
    assert_eq!(last, Duration::from_secs(10));
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn auth_failures_are_not_retried_and_zero_retries_disables_them() {
    for (steps, retries) in [(auth(), 3), (connect(), 0)] {
        let start = Instant::now();
        let clock = TokioClock::new();
        let obs = shared();
        let cancel = CancellationToken::new();
        let seen = Arc::new(Seen::default());
        let (source, reads) = Script::boxed(vec![steps]);
        let mut s = spec("queue", 5);
        s.retries = retries;
        let task = tokio::spawn(run_poller_with(
            s,
            source,
            obs.clone(),
            clock.clone(),
            cancel.clone(),
            Some(seen.clone()),
        ));
        run_until(start, 12.0).await;
        // Reads at 0, 5 and 10 s only.
        let at: Vec<Duration> = reads.lock().unwrap().iter().map(|i| *i - start).collect();
        assert_eq!(
            at,
            vec![0, 5, 10]
                .into_iter()
                .map(Duration::from_secs)
                .collect::<Vec<_>>()
        );
        let Freshness::Failing { failure } = freshness(&obs, "queue", &clock) else {
            panic!("expected failing");
        };
        assert_eq!(failure.streak, 3);
        assert_eq!(seen.0.lock().unwrap().len(), 3);
        cancel.cancel();
        task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn retries_never_run_past_the_interval_and_every_attempt_is_counted() {
    let start = Instant::now();
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let seen = Arc::new(Seen::default());
    let (source, reads) = Script::boxed(vec![connect()]);
    let mut s = spec("queue", 1);
    s.retries = 50;
    let task = tokio::spawn(run_poller_with(
        s,
        source,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
        Some(seen.clone()),
    ));
    run_until(start, 99.999).await;
    cancel.cancel();
    task.await.unwrap();

    let reads = reads.lock().unwrap().clone();
    let mut per_interval = [0usize; 100];
    for at in &reads {
        let secs = (*at - start).as_secs_f64();
        per_interval[secs.floor() as usize] += 1;
    }
    // Each interval starts with a regular read and retries within it; on a 1 s
    // interval the backoff ceilings are 50, 100, 200, 400, then 500 ms, so an interval
    // holds a few attempts, never 51.
    for (i, n) in per_interval.iter().enumerate() {
        assert!((1..=30).contains(n), "interval {i}: {n} attempts");
    }
    assert!(
        reads.len() > 200,
        "retries happen: {} attempts in 100 intervals",
        reads.len()
    );
    // Counted exactly: one connect error per attempt.
    assert_eq!(seen.errors(ErrorClass::Connect), reads.len());
    // The window records one failure per interval.
    let Freshness::Failing { failure } = freshness(&obs, "queue", &clock) else {
        panic!("expected failing");
    };
    assert_eq!(failure.streak, 100);
}
