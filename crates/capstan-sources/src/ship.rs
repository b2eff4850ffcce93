//! `ship_to_cloudwatch`: every value a source reads, published to CloudWatch as a
//! custom metric, so AWS's own alarms and dashboards see what capstan sees.
//!
//! [`CloudWatchShipper`] is a [`ReadObserver`]: the poller hands it each read; it only
//! appends the value to a bounded buffer (never blocking, never calling AWS on the
//! poller's task). A task of its own ([`CloudWatchShipper::run`]) flushes the buffer
//! every `flush_interval` with `PutMetricData` calls of at most
//! [`capstan_aws_api::limits::PUT_METRIC_DATA`] datums per namespace. A batch that
//! fails with a retryable error (throttling, 5xx, transport) is kept for the next
//! flush, up to `max_attempts` flushes; what cannot be shipped (a non-retryable error,
//! attempts used up, a full buffer) is counted ([`ShipStats::unshipped`]) and logged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_aws_api::{CloudWatch, Dimension, MetricDatum, limits};
use capstan_core::Clock;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsSpec;
use crate::error::ReadError;
use crate::poller::ReadObserver;

/// A source's `ship_to_cloudwatch` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipSpec {
    /// The CloudWatch namespace (`Capstan`, `MyApp/Workers`).
    pub namespace: String,
    /// The metric's name (default: the source's name).
    pub metric_name: String,
    /// Its dimensions.
    pub dimensions: Vec<Dimension>,
    /// Where to ship (region, endpoint, profile).
    pub aws: AwsSpec,
}

/// How a shipper batches and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipOptions {
    /// Time between flushes.
    pub flush_interval: Duration,
    /// Flushes a datum is tried in before it is counted as unshipped.
    pub max_attempts: u32,
    /// Datums held at most; a read arriving at a full buffer is counted as unshipped.
    pub max_buffered: usize,
}

impl Default for ShipOptions {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(10),
            max_attempts: 3,
            max_buffered: 20_000,
        }
    }
}

/// What a shipper has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShipStats {
    /// Datums AWS accepted.
    pub shipped: u64,
    /// Datums given up on (non-retryable error, attempts used up, buffer full).
    pub unshipped: u64,
    /// `PutMetricData` calls made (successful or not).
    pub calls: u64,
}

/// One buffered datum and the flushes it has been tried in.
#[derive(Debug, Clone)]
struct Pending {
    namespace: String,
    datum: MetricDatum,
    attempts: u32,
}

struct Shared {
    specs: HashMap<String, ShipSpec>,
    options: ShipOptions,
    clock: Arc<dyn Clock>,
    buffer: Mutex<VecDeque<Pending>>,
    shipped: AtomicU64,
    unshipped: AtomicU64,
    calls: AtomicU64,
    /// Told how many datums were given up on, each time some are (e.g. a counter of
    /// the daemon's `/metrics`).
    on_unshipped: Option<UnshippedHook>,
}

/// Called with the number of datums given up on.
pub type UnshippedHook = Arc<dyn Fn(u64) + Send + Sync>;

/// Ships the reads of the sources it has a [`ShipSpec`] for. Cloning shares it.
pub struct CloudWatchShipper<C> {
    client: Arc<C>,
    shared: Arc<Shared>,
}

impl<C> Clone for CloudWatchShipper<C> {
    fn clone(&self) -> Self {
        Self {
            client: Arc::clone(&self.client),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: CloudWatch> CloudWatchShipper<C> {
    /// A shipper through `client` for the sources named in `specs` (source name →
    /// settings), stamping values with `clock`'s now.
    pub fn new(
        client: C,
        specs: HashMap<String, ShipSpec>,
        options: ShipOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client: Arc::new(client),
            shared: Arc::new(Shared {
                specs,
                options,
                clock,
                buffer: Mutex::new(VecDeque::new()),
                shipped: AtomicU64::new(0),
                unshipped: AtomicU64::new(0),
                calls: AtomicU64::new(0),
                on_unshipped: None,
            }),
        }
    }

    /// Calls `hook` with the number of datums given up on, each time some are. Only
    /// effective before the shipper is cloned or started.
    #[must_use]
    pub fn on_unshipped(mut self, hook: UnshippedHook) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.on_unshipped = Some(hook);
        }
        self
    }

    /// Counts `n` datums given up on.
    fn lost(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.shared.unshipped.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(hook) = &self.shared.on_unshipped {
            hook(n as u64);
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> ShipStats {
        ShipStats {
            shipped: self.shared.shipped.load(Ordering::Relaxed),
            unshipped: self.shared.unshipped.load(Ordering::Relaxed),
            calls: self.shared.calls.load(Ordering::Relaxed),
        }
    }

    /// Datums waiting for the next flush.
    pub fn buffered(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.shared
            .buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Flushes every `flush_interval` until `cancel`, then once more; what that last
    /// flush cannot ship is counted as unshipped.
    pub async fn run(self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.shared.options.flush_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => self.flush().await,
            }
        }
        self.flush().await;
        // What the final flush could not ship (kept for a retry that will not come).
        let left = self.lock().drain(..).count();
        if left > 0 {
            self.lost(left);
            tracing::warn!(
                datums = left,
                "stopping with values not shipped to CloudWatch"
            );
        }
    }

    /// Ships what is buffered: per namespace, calls of at most
    /// [`limits::PUT_METRIC_DATA`] datums, in arrival order.
    pub async fn flush(&self) {
        let taken: Vec<Pending> = self.lock().drain(..).collect();
        let mut by_namespace: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        for p in taken {
            by_namespace.entry(p.namespace.clone()).or_default().push(p);
        }
        let mut retry = Vec::new();
        for (namespace, pending) in by_namespace {
            for batch in pending.chunks(limits::PUT_METRIC_DATA) {
                let data: Vec<MetricDatum> = batch.iter().map(|p| p.datum.clone()).collect();
                self.shared.calls.fetch_add(1, Ordering::Relaxed);
                match self.client.put_metric_data(&namespace, &data).await {
                    Ok(()) => {
                        self.shared
                            .shipped
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    Err(error) => {
                        let (again, lost): (Vec<Pending>, Vec<Pending>) = batch
                            .iter()
                            .cloned()
                            .map(|mut p| {
                                p.attempts += 1;
                                p
                            })
                            .partition(|p| {
                                error.is_retryable()
                                    && p.attempts < self.shared.options.max_attempts
                            });
                        self.lost(lost.len());
                        tracing::warn!(
                            namespace = %namespace,
                            datums = batch.len(),
                            kept_for_retry = again.len(),
                            given_up = lost.len(),
                            error = %error,
                            "shipping to CloudWatch failed"
                        );
                        retry.extend(again);
                    }
                }
            }
        }
        if !retry.is_empty() {
            let mut buffer = self.lock();
            for p in retry.into_iter().rev() {
                buffer.push_front(p);
            }
            let max = self.shared.options.max_buffered;
            if buffer.len() > max {
                let over = buffer.len() - max;
                buffer.truncate(max);
                drop(buffer);
                self.lost(over);
            }
        }
    }
}

impl<C: CloudWatch> ReadObserver for CloudWatchShipper<C> {
    fn observed(&self, source: &str, _took: Duration, result: Result<f64, &ReadError>) {
        let (Some(spec), Ok(value)) = (self.shared.specs.get(source), result) else {
            return;
        };
        let pending = Pending {
            namespace: spec.namespace.clone(),
            datum: MetricDatum {
                metric_name: spec.metric_name.clone(),
                dimensions: spec.dimensions.clone(),
                value,
                timestamp: self.shared.clock.now(),
            },
            attempts: 0,
        };
        let mut buffer = self.lock();
        if buffer.len() >= self.shared.options.max_buffered {
            drop(buffer);
            self.lost(1);
            tracing::warn!(source, "CloudWatch shipping buffer full; value dropped");
            return;
        }
        buffer.push_back(pending);
    }
}

/// Sends each read to every observer in turn (e.g. the exporter and a shipper).
pub struct Observers(pub Vec<Arc<dyn ReadObserver>>);

impl ReadObserver for Observers {
    fn observed(&self, source: &str, took: Duration, result: Result<f64, &ReadError>) {
        for o in &self.0 {
            o.observed(source, took, result);
        }
    }
}

/// The SDK-backed shipper for `specs` (all shipped through the AWS settings of
/// `aws`), on the wall clock.
#[cfg(feature = "aws")]
pub fn build_sdk(
    aws: &AwsSpec,
    specs: HashMap<String, ShipSpec>,
    options: ShipOptions,
) -> CloudWatchShipper<capstan_aws_sdk::SdkCloudWatch> {
    let config = capstan_aws_sdk::SharedConfig::new(aws.sdk_settings(Duration::from_secs(10)));
    CloudWatchShipper::new(
        capstan_aws_sdk::SdkCloudWatch::new(config),
        specs,
        options,
        Arc::new(capstan_core::SystemClock),
    )
}

/// The shippers [`spawn_sdk`] started: the observer to give the pollers and the tasks
/// that flush.
#[cfg(feature = "aws")]
pub struct Shipping {
    /// Sends every read to each shipper's buffer.
    pub observer: Arc<dyn ReadObserver>,
    /// One task per shipper; each ends after its final flush once its token is
    /// cancelled.
    pub tasks: tokio::task::JoinSet<()>,
}

/// Starts one SDK-backed shipper per distinct AWS setting of `specs` (source name →
/// settings), each flushing until `cancel`, then once more (cancel it only once the
/// pollers have stopped, so their last reads are shipped, and await
/// [`Shipping::tasks`]); `None` when no source ships.
#[cfg(feature = "aws")]
pub fn spawn_sdk(
    specs: &BTreeMap<String, ShipSpec>,
    options: ShipOptions,
    cancel: &CancellationToken,
    on_unshipped: UnshippedHook,
) -> Option<Shipping> {
    if specs.is_empty() {
        return None;
    }
    let mut groups: Vec<(AwsSpec, HashMap<String, ShipSpec>)> = Vec::new();
    for (name, spec) in specs {
        match groups.iter_mut().find(|(aws, _)| *aws == spec.aws) {
            Some((_, group)) => {
                group.insert(name.clone(), spec.clone());
            }
            None => groups.push((
                spec.aws.clone(),
                HashMap::from([(name.clone(), spec.clone())]),
            )),
        }
    }
    let mut observers: Vec<Arc<dyn ReadObserver>> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (aws, group) in groups {
        let shipper = build_sdk(&aws, group, options).on_unshipped(Arc::clone(&on_unshipped));
        tasks.spawn(shipper.clone().run(cancel.clone()));
        observers.push(Arc::new(shipper));
    }
    Some(Shipping {
        observer: Arc::new(Observers(observers)),
        tasks,
    })
}
