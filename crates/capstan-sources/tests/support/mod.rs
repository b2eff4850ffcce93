//! Helpers shared by the poller tests: a clock on Tokio's (paused) time, a scripted
//! source implementing our own `Source` trait, and shorthands for the windows.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_core::metrics::{Freshness, Observations, SharedObservations};
use capstan_core::{Clock, Timestamp};
use capstan_sources::{
    BoxFuture, CommandSpec, ReadError, Source, SourceKind, SourceSpec, ValueKind,
};

/// A [`Clock`] that follows Tokio's (paused) time, so samples carry the virtual instant
/// at which the poller read them.
pub struct TokioClock {
    /// Wall-clock stamp of `start`.
    origin: Timestamp,
    /// Tokio instant at creation.
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Timestamp::from_second(1_767_225_600).expect("a valid instant"),
            start: tokio::time::Instant::now(),
        })
    }

    /// The stamp `secs` seconds after creation.
    pub fn at(&self, secs: f64) -> Timestamp {
        capstan_core::clock::add(self.origin, Duration::from_secs_f64(secs))
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        capstan_core::clock::add(self.origin, self.start.elapsed())
    }
}

/// What one scripted read does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Returns this value.
    Value(f64),
    /// Fails with this message.
    Fail(&'static str),
    /// Never answers.
    Hang,
}

/// A source that plays a script, then repeats its last step; counts its reads.
pub struct Scripted {
    steps: Mutex<VecDeque<Step>>,
    reads: Arc<Mutex<u32>>,
}

impl Scripted {
    pub fn boxed(steps: &[Step]) -> (Box<dyn Source>, Arc<Mutex<u32>>) {
        let reads = Arc::new(Mutex::new(0));
        let source = Self {
            steps: Mutex::new(steps.iter().cloned().collect()),
            reads: Arc::clone(&reads),
        };
        (Box::new(source), reads)
    }
}

impl Source for Scripted {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        *self.reads.lock().expect("lock") += 1;
        let step = {
            let mut steps = self.steps.lock().expect("lock");
            if steps.len() > 1 {
                steps.pop_front()
            } else {
                steps.front().cloned()
            }
        };
        Box::pin(async move {
            match step {
                Some(Step::Value(v)) => Ok(v),
                Some(Step::Fail(m)) => Err(ReadError::Io(m.to_owned())),
                Some(Step::Hang) | None => std::future::pending().await,
            }
        })
    }
}

pub fn spec(name: &str, interval_s: u64) -> SourceSpec {
    SourceSpec {
        name: name.into(),
        interval: Duration::from_secs(interval_s),
        timeout: Duration::from_secs(2),
        max_age: Duration::from_secs(30),
        retention: Duration::from_secs(600),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Command(CommandSpec {
            command: vec!["true".into()],
            env: BTreeMap::new(),
        }),
    }
}

pub fn shared() -> SharedObservations {
    Arc::new(Mutex::new(Observations::new()))
}

pub fn values(obs: &SharedObservations, name: &str) -> Vec<(f64, Timestamp)> {
    let obs = obs.lock().expect("lock");
    obs.series(name)
        .map(|s| s.samples().iter().map(|x| (x.value, x.at)).collect())
        .unwrap_or_default()
}

pub fn freshness(obs: &SharedObservations, name: &str, clock: &TokioClock) -> Freshness {
    obs.lock()
        .expect("lock")
        .view(name, clock.now())
        .freshness()
}

/// Lets paused time run to `secs` after the test started; every timer due by then
/// fires and every task it wakes runs to its next wait.
pub async fn run_until(start: tokio::time::Instant, secs: f64) {
    tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
}
