//! The poller's logging, in its own test binary: `tracing`'s per-thread subscriber is
//! reliable only when no other test emits the same events concurrently.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use capstan_core::metrics::Freshness;
use capstan_sources::run_poller;
use support::{Scripted, Step, TokioClock, freshness, run_until, shared, spec, values};
use tokio_util::sync::CancellationToken;

/// Captures what `tracing` logs on this thread (the tests' runtime has one thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn all(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    fn lines(&self, level: &str, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("lock"))
            .lines()
            .filter(|l| l.trim_start().starts_with(level) && l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn failures_and_rejected_values_are_failed_reads_logged_once_per_class_and_minute() {
    let logs = Logs::default();
    let _guard = logs.install();
    let start = tokio::time::Instant::now();
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let (source, _) = Scripted::boxed(&[
        Step::Value(4.0),
        Step::Fail("connection reset"),
        Step::Value(f64::NAN),
        Step::Value(-1.0),
        Step::Value(5.0),
        Step::Fail("boom"),
        Step::Value(6.0),
    ]);
    let task = tokio::spawn(run_poller(
        spec("queue", 5),
        source,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
    ));

    run_until(start, 0.001).await;
    assert_eq!(freshness(&obs, "queue", &clock), Freshness::Fresh);

    let expect_failing = |streak: u32, reason: &str, at: f64| {
        let Freshness::Failing { failure } = freshness(&obs, "queue", &clock) else {
            panic!("expected failing at {at}s");
        };
        assert_eq!(failure.streak, streak);
        assert_eq!(failure.reason, reason);
        assert_eq!(failure.at, clock.at(at));
    };
    run_until(start, 5.001).await;
    expect_failing(1, "reading output failed: connection reset", 5.0);
    run_until(start, 10.001).await;
    expect_failing(2, "value NaN rejected: not a finite number", 10.0);
    run_until(start, 15.001).await;
    expect_failing(3, "value -1 rejected: a count cannot be negative", 15.0);
    run_until(start, 20.001).await;
    assert_eq!(freshness(&obs, "queue", &clock), Freshness::Fresh);
    run_until(start, 30.001).await;
    cancel.cancel();
    task.await.unwrap();

    // Only good values became samples.
    let got: Vec<f64> = values(&obs, "queue").into_iter().map(|(v, _)| v).collect();
    assert_eq!(got, vec![4.0, 5.0, 6.0]);

    // The first failure of each class is logged (connect at 5 s, rejected at 10 s); the
    // rejected -1 at 15 s and the connect failure at 25 s come within a minute of their
    // class's last line: counted, not logged. The first streak's end is logged; the
    // second streak's start was not, so neither is its end.
    let warns = logs.lines("WARN", "source queue read failed");
    assert_eq!(warns.len(), 2, "{warns:#?}");
    assert!(warns[0].contains("connection reset"), "{}", warns[0]);
    assert!(warns[0].contains("class=\"connect\""), "{}", warns[0]);
    assert!(warns[1].contains("value NaN rejected"), "{}", warns[1]);
    assert!(warns[1].contains("class=\"rejected\""), "{}", warns[1]);
    assert!(!logs.all().contains("boom"), "{}", logs.all());
    let recovered = logs.lines("INFO", "recovered");
    assert_eq!(recovered.len(), 1, "{}", logs.all());
    assert!(
        recovered[0].contains("source queue recovered after 3 failed reads"),
        "{}",
        recovered[0]
    );
    assert!(logs.lines("WARN", "").len() == 2 && logs.lines("ERROR", "").is_empty());
}

/// Counts the errors the poller reports, like the exporter's counters.
#[derive(Default)]
struct Errors(Mutex<u64>);

impl capstan_sources::ReadObserver for Errors {
    fn observed(
        &self,
        _source: &str,
        _took: std::time::Duration,
        result: Result<f64, &capstan_sources::ReadError>,
    ) {
        if result.is_err() {
            *self.0.lock().expect("lock") += 1;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_failures_are_counted_exactly_and_logged_once_a_minute() {
    let logs = Logs::default();
    let _guard = logs.install();
    let start = tokio::time::Instant::now();
    let clock = TokioClock::new();
    let obs = shared();
    let cancel = CancellationToken::new();
    let errors = Arc::new(Errors::default());
    let (source, reads) = Scripted::boxed(&[Step::Fail("connection refused")]);
    let task = tokio::spawn(capstan_sources::poller::run_poller_with(
        spec("queue", 1),
        source,
        obs.clone(),
        clock.clone(),
        cancel.clone(),
        Some(errors.clone()),
    ));
    // Reads at 0, 1, ..., 999 s.
    run_until(start, 999.5).await;
    cancel.cancel();
    task.await.expect("poller");
    assert_eq!(*reads.lock().expect("lock"), 1000);
    assert_eq!(*errors.0.lock().expect("lock"), 1000);

    // One line at 0 s, then one per minute (60, 120, ..., 960 s) with the count of the
    // 59 left out since the previous one; the 39 after 960 s wait for the next line.
    let warns = logs.lines("WARN", "source queue read failed");
    assert_eq!(warns.len(), 17, "{}", logs.all());
    assert!(!warns[0].contains("not logged"), "{}", warns[0]);
    for line in &warns[1..] {
        assert!(
            line.contains("(59 more failures of class connect not logged in the last 60s)"),
            "{line}"
        );
        assert!(line.contains("suppressed=59"), "{line}");
    }
    assert_eq!(1 + 16 * 60 + 39, 1000);
    // Nothing else was logged at DEBUG or above but the stop.
    let all = logs.all();
    let other: Vec<&str> = all
        .lines()
        .filter(|l| !l.contains("source queue read failed") && !l.contains("poller stopped"))
        .collect();
    assert!(other.is_empty(), "{other:#?}");
    let Freshness::Failing { failure } = freshness(&obs, "queue", &clock) else {
        panic!("expected failing");
    };
    assert_eq!(failure.streak, 1000);
}
