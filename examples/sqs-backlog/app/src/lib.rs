//! The `sqs-backlog` recipe's two programs as library functions: [`produce`] sends timed
//! jobs to an SQS queue at a steady rate, each saying how long it takes to process;
//! [`work`] takes jobs off the queue one at a time, "processes" each (sleeps for its
//! processing time), deletes it, and pushes its average processing time to capstan's
//! push route (`POST /api/v1/metrics/{name}`), where the `backlog_per_task` policy reads
//! it to recompute its target.
//!
//! Both run until their cancellation token fires and divide every wait by a speed-up
//! factor, so a test runs minutes of the recipe in seconds. The binaries `sqs-producer`
//! and `sqs-worker` wrap them for a real deployment.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The SQS SDK whose client [`produce`] and [`work`] take, for callers without a
/// dependency of their own on it.
pub use aws_sdk_sqs;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One job: the body of every message, as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its number, from 0, in the order the producer sent it.
    pub id: u64,
    /// How long processing it takes, in milliseconds (before the speed-up).
    pub processing_ms: u64,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An SQS call failed.
    #[error("{operation}: {message}")]
    Sqs {
        /// The operation, e.g. `SendMessageBatch`.
        operation: &'static str,
        /// The SDK's error, with its causes.
        message: String,
    },
    /// A setting is out of range.
    #[error("{0}")]
    Settings(String),
}

fn sqs_error(operation: &'static str, e: impl std::error::Error) -> Error {
    Error::Sqs {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// The processing time the producer writes into its jobs; change it while the producer
/// runs (the next job carries the new value). Clones share the value.
#[derive(Debug, Clone)]
pub struct ProcessingTime(Arc<AtomicU64>);

impl ProcessingTime {
    /// Starts at `ms` milliseconds.
    pub fn new(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }

    /// Sets it to `ms` milliseconds.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    /// The current value, in milliseconds.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How [`produce`] sends.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// The queue's URL.
    pub queue_url: String,
    /// Messages per minute (before the speed-up): the recipe sends 50.
    pub per_minute: f64,
    /// The mean processing time written into each job.
    pub processing: ProcessingTime,
    /// Each job's processing time is the mean × a factor drawn uniformly from
    /// [1 − jitter, 1 + jitter) (0: every job the same). In [0, 1).
    pub jitter: f64,
    /// Seed of the jitter's random sequence.
    pub seed: u64,
    /// Time runs this many times faster: `per_minute` × `speedup` messages a real minute.
    pub speedup: u32,
}

/// A small deterministic random sequence (xorshift64*), enough for jitter.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // The top 53 bits, as a fraction.
        #[expect(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
}

/// The producer calls SQS at most this often; faster rates send batches.
const MIN_CALL_GAP: Duration = Duration::from_millis(100);

/// Sends jobs to the queue at `per_minute × speedup` a minute until `cancel` fires,
/// numbering them from 0; returns how many were sent. Jobs are due at a fixed pace; the
/// jobs due by the time of a call go together (batches of up to 10, at most 10 calls a
/// second), so the rate holds when sped up or running late. An SQS error stops it.
pub async fn produce(
    sqs: &aws_sdk_sqs::Client,
    settings: &ProducerSettings,
    cancel: &CancellationToken,
) -> Result<u64, Error> {
    if !(settings.per_minute.is_finite() && settings.per_minute > 0.0) {
        return Err(Error::Settings(format!(
            "the rate must be above 0 messages a minute, not {}",
            settings.per_minute
        )));
    }
    if !(0.0..1.0).contains(&settings.jitter) {
        return Err(Error::Settings(format!(
            "the jitter must be in [0, 1), not {}",
            settings.jitter
        )));
    }
    let gap =
        Duration::from_secs_f64(60.0 / settings.per_minute / f64::from(settings.speedup.max(1)));
    let mut rng = Rng::new(settings.seed);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut last_call = start;
    loop {
        let due = (start + gap.saturating_mul(u32::try_from(sent).unwrap_or(u32::MAX)))
            .max(last_call + MIN_CALL_GAP);
        tokio::select! {
            () = cancel.cancelled() => return Ok(sent),
            () = tokio::time::sleep_until(due) => {}
        }
        // Every job due by now, at most 10 (one batch).
        let elapsed = start.elapsed().as_secs_f64();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a non-negative count of jobs, far below 2^53"
        )]
        let due_now = (elapsed / gap.as_secs_f64()).floor() as u64 + 1;
        let count = due_now.saturating_sub(sent).clamp(1, 10);
        let mut entries = Vec::new();
        for n in 0..count {
            let job = Job {
                id: sent + n,
                processing_ms: jittered(settings.processing.get(), settings.jitter, &mut rng),
            };
            let body = serde_json::to_string(&job).map_err(|e| Error::Settings(e.to_string()))?;
            let entry = SendMessageBatchRequestEntry::builder()
                .id(n.to_string())
                .message_body(body)
                .build()
                .map_err(|e| sqs_error("SendMessageBatch", e))?;
            entries.push(entry);
        }
        let out = sqs
            .send_message_batch()
            .queue_url(&settings.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("SendMessageBatch", e))?;
        if let Some(failed) = out.failed().first() {
            return Err(Error::Sqs {
                operation: "SendMessageBatch",
                message: format!(
                    "{} of {count} messages refused, e.g. {}: {}",
                    out.failed().len(),
                    failed.code(),
                    failed.message().unwrap_or("no message")
                ),
            });
        }
        sent += count;
        last_call = Instant::now();
    }
}

fn jittered(ms: u64, jitter: f64, rng: &mut Rng) -> u64 {
    if jitter == 0.0 {
        return ms;
    }
    let factor = 1.0 - jitter + 2.0 * jitter * rng.next_unit();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a positive number of milliseconds"
    )]
    let out = (ms as f64 * factor).round() as u64;
    out
}

/// Where [`work`] pushes its processing time: capstan's push route of a `push` source.
#[derive(Debug, Clone)]
pub struct Push {
    /// The route, e.g. `http://capstan:9120/api/v1/metrics/proc_time`.
    pub url: String,
    /// capstan's bearer token, when its listener has one.
    pub token: Option<String>,
}

/// How [`work`] works.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The queue's URL.
    pub queue_url: String,
    /// Where to push the processing time; `None`: nowhere.
    pub push: Option<Push>,
    /// The pushed value is the mean processing time of this worker's newest `window`
    /// jobs (at least 1).
    pub window: usize,
    /// How long a received job stays hidden from other workers (SQS visibility
    /// timeout, whole seconds): longer than the longest processing time.
    pub visibility_timeout: Duration,
    /// How long a receive waits for a message (SQS long polling, whole seconds, at most
    /// 20; 0: short polling).
    pub wait: Duration,
    /// Time runs this many times faster: each job sleeps its processing time ÷ this.
    pub speedup: u32,
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerStats {
    /// Jobs processed and deleted.
    pub processed: u64,
    /// Messages that were not jobs (deleted, not processed).
    pub malformed: u64,
    /// Pushes capstan refused or that failed (the worker keeps working).
    pub push_failures: u64,
    /// The last value pushed, in seconds.
    pub last_pushed: Option<f64>,
}

/// Takes jobs off the queue one at a time until `cancel` fires: sleeps each one's
/// processing time (÷ the speed-up), deletes it, calls `done` with it, and pushes the
/// mean measured processing time of the newest jobs, in seconds, to capstan. A job in
/// progress when `cancel` fires is finished first (as on SIGTERM: a receive long-polls
/// at most [`WorkerSettings::wait`], so stop within that plus one job); a job whose delete
/// fails comes back after its visibility timeout (at-least-once). An SQS receive or
/// delete error stops the worker.
pub async fn work(
    sqs: &aws_sdk_sqs::Client,
    http: &reqwest::Client,
    settings: &WorkerSettings,
    cancel: &CancellationToken,
    mut done: impl FnMut(&Job),
) -> Result<WorkerStats, Error> {
    let visibility = i32::try_from(settings.visibility_timeout.as_secs().max(1))
        .map_err(|_| Error::Settings("the visibility timeout is too long".into()))?;
    let wait = i32::try_from(settings.wait.as_secs().min(20)).unwrap_or(20);
    let speedup = f64::from(settings.speedup.max(1));
    let window = settings.window.max(1);
    let mut recent: VecDeque<f64> = VecDeque::with_capacity(window);
    let mut stats = WorkerStats::default();
    while !cancel.is_cancelled() {
        // Not raced with `cancel`: a message received is always processed (a receive
        // dropped half-way would hide one until its visibility timeout).
        let received = sqs
            .receive_message()
            .queue_url(&settings.queue_url)
            .max_number_of_messages(1)
            .visibility_timeout(visibility)
            .wait_time_seconds(wait)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", e))?;
        let Some(message) = received.messages().first() else {
            if wait == 0 {
                // Short polling on an empty queue: a pause (1 s, sped up, at least
                // 50 ms) before asking again.
                let pause = Duration::from_secs_f64(1.0 / speedup).max(Duration::from_millis(50));
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            continue;
        };
        let job = message
            .body()
            .and_then(|b| serde_json::from_str::<Job>(b).ok());
        if let Some(job) = job {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_millis(job.processing_ms).div_f64(speedup)).await;
            let seconds = started.elapsed().as_secs_f64();
            if recent.len() == window {
                recent.pop_front();
            }
            recent.push_back(seconds);
        } else {
            stats.malformed += 1;
        }
        if let Some(handle) = message.receipt_handle() {
            sqs.delete_message()
                .queue_url(&settings.queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| sqs_error("DeleteMessage", e))?;
        }
        let Some(job) = job else { continue };
        stats.processed += 1;
        done(&job);
        if let Some(push) = &settings.push {
            #[expect(clippy::cast_precision_loss, reason = "a short window")]
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            if push_value(http, push, mean).await {
                stats.last_pushed = Some(mean);
            } else {
                stats.push_failures += 1;
            }
        }
    }
    Ok(stats)
}

/// Pushes `value` to capstan: `true` if it was stored.
pub async fn push_value(http: &reqwest::Client, push: &Push, value: f64) -> bool {
    let mut request = http
        .post(&push.url)
        .json(&serde_json::json!({ "value": value }))
        .timeout(Duration::from_secs(5));
    if let Some(token) = &push.token {
        request = request.bearer_auth(token);
    }
    matches!(request.send().await, Ok(r) if r.status().is_success())
}

/// Cancels `cancel` on SIGINT or SIGTERM (the binaries' orderly stop: the job in hand
/// is finished first).
pub async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_band_and_zero_jitter_is_exact() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let ms = jittered(5000, 0.5, &mut rng);
            assert!((2500..=7500).contains(&ms), "{ms}");
        }
        assert_eq!(jittered(5000, 0.0, &mut rng), 5000);
    }

    #[test]
    fn a_job_is_json_with_its_processing_time() {
        let job = Job {
            id: 3,
            processing_ms: 5000,
        };
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(text, r#"{"id":3,"processing_ms":5000}"#);
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
    }
}
