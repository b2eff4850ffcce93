//! The poller's logging, in its own test binary: `tracing`'s per-thread subscriber is
//! reliable only when no other test emits the same events concurrently.

mod support;

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
async fn failures_and_rejected_values_are_failed_reads_logged_once_per_streak() {
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

    // One warning per streak, the rest at debug level, one recovery line per streak.
    let warns = logs.lines("WARN", "source queue read failed");
    assert_eq!(warns.len(), 2, "{warns:#?}");
    assert!(warns[0].contains("connection reset"), "{}", warns[0]);
    assert!(warns[1].contains("boom"), "{}", warns[1]);
    assert_eq!(
        logs.lines("DEBUG", "source queue read failed again").len(),
        2
    );
    let recovered = logs.lines("INFO", "recovered");
    assert_eq!(recovered.len(), 2, "{}", logs.all());
    assert!(
        recovered[0].contains("source queue recovered after 3 failed reads"),
        "{}",
        recovered[0]
    );
    assert!(
        recovered[1].contains("source queue recovered after 1 failed read"),
        "{}",
        recovered[1]
    );
    assert!(logs.lines("WARN", "").len() == 2 && logs.lines("ERROR", "").is_empty());
}
