//! The poller on paused Tokio time with a scripted source (a stand-in implementing our
//! own `Source` trait), plus one run with the real `command` source in real time.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_core::Clock;
use capstan_core::metrics::Freshness;
use capstan_sources::{
    BoxFuture, CommandSpec, HttpSpec, ReadError, Source, SourceKind, build, run_poller, spawn_all,
};
use support::{Scripted, Step, TokioClock, freshness, run_until, shared, spec, values};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test(start_paused = true)]
async fn reads_at_once_then_every_interval() {
    let start = tokio::time::Instant::now();
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let (source, reads) = Scripted::boxed(&[Step::Value(1.0), Step::Value(2.0), Step::Value(3.0)]);
    let task = tokio::spawn(run_poller(
        spec("q", 10),
        source,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
    ));

    run_until(start, 0.001).await;
    assert_eq!(values(&obs, "q"), vec![(1.0, clock.at(0.0))]);
    run_until(start, 9.9).await;
    assert_eq!(*reads.lock().unwrap(), 1, "no read before the interval");
    run_until(start, 20.001).await;
    assert_eq!(
        values(&obs, "q"),
        vec![
            (1.0, clock.at(0.0)),
            (2.0, clock.at(10.0)),
            (3.0, clock.at(20.0))
        ]
    );
    assert_eq!(freshness(&obs, "q", &clock), Freshness::Fresh);

    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_read_that_never_answers_fails_at_the_backstop_and_polling_goes_on() {
    let start = tokio::time::Instant::now();
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let (source, reads) = Scripted::boxed(&[Step::Hang, Step::Value(8.0)]);
    // Timeout 2 s, so the backstop fires at 3 s; the interval (10 s) is not disturbed.
    let task = tokio::spawn(run_poller(
        spec("slow", 10),
        source,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
    ));

    run_until(start, 2.9).await;
    assert_eq!(freshness(&obs, "slow", &clock), Freshness::Missing);
    run_until(start, 3.001).await;
    let Freshness::Failing { failure } = freshness(&obs, "slow", &clock) else {
        panic!("expected a failure");
    };
    assert_eq!(failure.reason, "timed out after 2s");
    assert_eq!(failure.at, clock.at(3.0));
    run_until(start, 10.001).await;
    assert_eq!(*reads.lock().unwrap(), 2);
    assert_eq!(values(&obs, "slow"), vec![(8.0, clock.at(10.0))]);

    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_every_poller_at_once_even_mid_read() {
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let (hanging, _) = Scripted::boxed(&[Step::Hang]);
    let mut slow = spec("hanging", 10);
    slow.timeout = Duration::from_secs(3600);
    tasks.spawn(run_poller(
        slow,
        hanging,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
    ));
    let (steady, reads) = Scripted::boxed(&[Step::Value(1.0)]);
    tasks.spawn(run_poller(
        spec("steady", 10),
        steady,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
    ));

    let start = tokio::time::Instant::now();
    run_until(start, 25.0).await;
    assert_eq!(*reads.lock().unwrap(), 3);
    cancel.cancel();
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(25),
        "stopping took no (virtual) time"
    );

    // Nothing reads after the cancel.
    run_until(start, 100.0).await;
    assert_eq!(*reads.lock().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn spawn_all_declares_every_source_and_refuses_bad_ones_before_starting_any() {
    let clock: Arc<dyn Clock> = TokioClock::new();
    let cancel = CancellationToken::new();

    // A bad source: nothing is declared or spawned.
    let obs = shared();
    let mut bad = spec("web", 5);
    bad.kind = SourceKind::Http(HttpSpec {
        url: "ftp://example.test/x".into(),
        pointer: String::new(),
        headers: BTreeMap::new(),
        ..HttpSpec::default()
    });
    let err = spawn_all(
        &[spec("jobs", 5), bad],
        obs.clone(),
        clock.clone(),
        cancel.clone(),
    )
    .unwrap_err();
    assert_eq!(err.name, "web");
    assert!(matches!(err.error, ReadError::Config(_)), "{err}");
    assert_eq!(obs.lock().unwrap().sources().count(), 0);

    let err = spawn_all(
        &[spec("jobs", 5), spec("jobs", 9)],
        obs.clone(),
        clock.clone(),
        cancel.clone(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "source \"jobs\": invalid settings: two sources have this name"
    );

    let mut zero = spec("zero", 5);
    zero.interval = Duration::ZERO;
    let err = spawn_all(&[zero], obs.clone(), clock.clone(), cancel.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "source \"zero\": invalid settings: interval must be greater than zero"
    );

    // Good sources: declared before the call returns, one task per distinct query (jobs
    // and sessions differ only by name, so they share one), all stop on cancel.
    let mut tasks = spawn_all(
        &[spec("jobs", 5), spec("sessions", 5), spec("other", 6)],
        obs.clone(),
        clock,
        cancel.clone(),
    )
    .unwrap();
    let names: Vec<String> = obs.lock().unwrap().sources().map(str::to_owned).collect();
    assert_eq!(names, vec!["jobs", "other", "sessions"]);
    assert_eq!(tasks.len(), 2);
    cancel.cancel();
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Wraps a source and reports each finished read on a channel. On a single-threaded
/// runtime the poller records the value before the test task can run again.
struct Reporting {
    inner: Box<dyn Source>,
    done: mpsc::UnboundedSender<()>,
}

impl Source for Reporting {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(async move {
            let read = self.inner.read().await;
            let _ = self.done.send(());
            read
        })
    }
}

#[tokio::test]
async fn real_command_source_feeds_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let value_file = dir.path().join("depth");
    std::fs::write(&value_file, "11\n").unwrap();
    let mut spec = spec("depth", 3600);
    spec.kind = SourceKind::Command(CommandSpec {
        command: vec!["cat".into(), value_file.display().to_string()],
        env: BTreeMap::new(),
    });
    let (done, mut finished) = mpsc::unbounded_channel();
    let source = Box::new(Reporting {
        inner: build(&spec).unwrap(),
        done,
    });
    let clock = capstan_core::VirtualClock::at_epoch();
    let obs = shared();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_poller(
        spec,
        source,
        obs.clone(),
        Arc::new(clock.clone()),
        cancel.clone(),
    ));

    finished.recv().await.unwrap();
    assert_eq!(values(&obs, "depth"), vec![(11.0, clock.now())]);
    cancel.cancel();
    task.await.unwrap();
}
