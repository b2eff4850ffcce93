//! The daemon's blue/green host rotations (`POST /api/v1/rotations`, `capstan cluster
//! rotate`): owns starting them (one running rotation per cluster, found again when
//! asked twice), driving the running ones on a task of their own, keeping them in the
//! store (so a restart resumes them), and the holds on the `ec2_cluster` targets of the
//! groups they move hosts between.
//!
//! A rotation needs an `ec2_cluster` target of its cluster in the configuration: its
//! AWS settings (region, endpoint, profile) are used, and group A's hosts are removed
//! with the settings of A's target if there is one (drain timeout, service minimums),
//! else of the cluster's other target; the termination-hook mode stays with the
//! daemon's own target.
//!
//! Holds: while a rotation of a cluster runs, the `ec2_cluster` targets of its two
//! groups refuse to scale (their loops log and report the refusal, naming the
//! rotation). The holds are process-wide ([`held`]), keyed by cluster and group.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};
use std::time::Duration;

use capstan_aws_sdk::{SdkAutoScaling, SdkEcs};
use capstan_core::clock::Clock;
use capstan_core::rotation::Rotation;
use capstan_store::{RotationStore, StoreError};
use capstan_targets::rotate::Rotator;
use capstan_targets::spec::Ec2ClusterSpec;
use capstan_targets::{AsgTargetSpec, TargetSpec};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::services::{AwsClients, aws_settings};
use crate::config::Config;

/// The longest the driver sleeps between looks at the store.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// (cluster, group) → why its target is held.
static HOLDS: LazyLock<RwLock<BTreeMap<(String, String), String>>> = LazyLock::new(RwLock::default);

/// Why the `ec2_cluster` target of `group` under `cluster` may not scale now, if it
/// may not: a rotation moving hosts from or to it is running.
pub fn held(cluster: &str, group: &str) -> Option<String> {
    HOLDS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(cluster.to_owned(), group.to_owned()))
        .cloned()
}

/// Replaces the holds with those of the running rotations `active`.
fn set_holds(active: &[Rotation]) {
    let mut holds = BTreeMap::new();
    for r in active.iter().filter(|r| r.is_running()) {
        let why = format!(
            "held while rotation {} of cluster {} moves its hosts from {} to {} ({})",
            r.id,
            r.cluster,
            r.from,
            r.to,
            r.phase.as_str()
        );
        holds.insert((r.cluster.clone(), r.from.clone()), why.clone());
        holds.insert((r.cluster.clone(), r.to.clone()), why);
    }
    *HOLDS.write().unwrap_or_else(PoisonError::into_inner) = holds;
}

/// Why a rotation cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The request is wrong (400); names the field at fault.
    #[error("{message}")]
    Invalid {
        /// The body field at fault.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Another rotation of the cluster is running (409).
    #[error("{0}")]
    Busy(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rotations of one daemon. Cheap to clone.
#[derive(Clone)]
pub struct Rotations {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RotationStore>,
    clock: Arc<dyn Clock>,
    aws: AwsClients,
    /// The configuration's `ec2_cluster` targets.
    clusters: RwLock<Vec<Ec2ClusterSpec>>,
    /// Starts are checked and saved one at a time.
    starting: Mutex<u64>,
    /// Wakes the driver (a rotation started).
    wake: Notify,
    /// The live work of every service's tasks (the work registry's, by task ARN): a
    /// host running a task with live work is not removed.
    work: Option<Arc<dyn capstan_targets::WorkCounts>>,
}

impl std::fmt::Debug for Rotations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotations").finish_non_exhaustive()
    }
}

impl Rotations {
    /// Rotations kept in `store`, dated by `clock`, for the `ec2_cluster` targets of
    /// `config`; their host removals read the tasks' live work from `work`.
    pub fn new(
        store: Arc<dyn RotationStore>,
        clock: Arc<dyn Clock>,
        config: &Config,
        work: Option<Arc<dyn capstan_targets::WorkCounts>>,
    ) -> Self {
        let r = Self {
            inner: Arc::new(Inner {
                store,
                clock,
                aws: AwsClients::default(),
                clusters: RwLock::default(),
                starting: Mutex::new(0),
                wake: Notify::new(),
                work,
            }),
        };
        r.configure(config);
        if let Ok(active) = r.inner.store.active() {
            set_holds(&active);
        }
        r
    }

    /// Takes the `ec2_cluster` targets of `config` (at start and after a reload).
    pub fn configure(&self, config: &Config) {
        let clusters = config
            .services
            .iter()
            .filter_map(|s| match &s.target {
                TargetSpec::Ec2Cluster(spec) => Some(spec.clone()),
                _ => None,
            })
            .collect();
        *self
            .inner
            .clusters
            .write()
            .unwrap_or_else(PoisonError::into_inner) = clusters;
    }

    /// The A-target settings and AWS settings of a rotation of `cluster` from `from`:
    /// from A's `ec2_cluster` target, else the cluster's other one; `None` without any.
    fn settings(&self, cluster: &str, from: &str) -> Option<(AsgTargetSpec, Ec2ClusterSpec)> {
        let clusters = self
            .inner
            .clusters
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let of_cluster = || clusters.iter().filter(|c| c.target.cluster == cluster);
        let found = of_cluster()
            .find(|c| c.target.group == from)
            .or_else(|| of_cluster().next())?;
        let spec = AsgTargetSpec {
            group: from.to_owned(),
            termination_hook: None,
            ..found.target.clone()
        };
        Some((spec, found.clone()))
    }

    /// Starts a rotation of `cluster` from group `from` to group `to`, or returns the
    /// running one of the same three (`false`: not new).
    pub fn start(
        &self,
        cluster: &str,
        from: &str,
        to: &str,
    ) -> Result<(Rotation, bool), StartError> {
        Rotation::check_request(cluster, from, to).map_err(|message| StartError::Invalid {
            field: if message.starts_with("cluster") {
                "cluster"
            } else if message.starts_with("to") {
                "to"
            } else {
                "from"
            },
            message,
        })?;
        if self.settings(cluster, from).is_none() {
            return Err(StartError::Invalid {
                field: "cluster",
                message: format!(
                    "cluster {cluster} has no ec2_cluster target in the configuration: a rotation uses its AWS settings; add one (target kind \"ec2_cluster\", cluster = {cluster:?})"
                ),
            });
        }
        let mut seq = self
            .inner
            .starting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let active = self.inner.store.active()?;
        if let Some(r) = active.iter().find(|r| r.is_for(cluster, from, to)) {
            return Ok((r.clone(), false));
        }
        if let Some(r) = active.iter().find(|r| r.cluster == cluster) {
            return Err(StartError::Busy(format!(
                "rotation {} of cluster {cluster} (from {} to {}) is still running; wait for it to end",
                r.id, r.from, r.to
            )));
        }
        let now = self.inner.clock.now();
        let id = loop {
            *seq += 1;
            let id = format!("rot-{}-{}", now.as_second(), *seq);
            if self.inner.store.get(&id)?.is_none() {
                break id;
            }
        };
        let r = Rotation::new(&id, cluster, from, to, now);
        self.inner.store.save(&r)?;
        let mut all = active;
        all.push(r.clone());
        set_holds(&all);
        tracing::info!(rotation = %id, cluster, from, to, "host rotation started");
        self.inner.wake.notify_one();
        Ok((r, true))
    }

    /// One rotation.
    pub fn get(&self, id: &str) -> Result<Option<Rotation>, StoreError> {
        self.inner.store.get(id)
    }

    /// The newest rotations first, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<Rotation>, StoreError> {
        self.inner.store.list(limit)
    }

    /// Drives the running rotations until `stop`: each pass of each one when it is
    /// due, saved after it; the store looked at every [`LOOK_EVERY`] at most. At the
    /// stop, a host still draining is set ACTIVE again (its removal starts over when
    /// the rotation resumes).
    pub async fn run(self, stop: CancellationToken) {
        let mut drivers: HashMap<String, (Rotator<SdkEcs, SdkAutoScaling>, Instant)> =
            HashMap::new();
        loop {
            let active = match self.inner.store.active() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "rotations: cannot read the store; trying again");
                    Vec::new()
                }
            };
            set_holds(&active);
            let mut running = Vec::new();
            for mut r in active {
                let now = Instant::now();
                if !drivers.contains_key(&r.id) {
                    match self.settings(&r.cluster, &r.from) {
                        Some((spec, aws)) => {
                            let (ecs, asg) = self.inner.aws.hosts(aws_settings(
                                aws.region.as_ref(),
                                aws.endpoint_url.as_ref(),
                                aws.profile.as_ref(),
                            ));
                            let mut rotator = Rotator::new(spec, &r.to, ecs, asg)
                                .with_clock(Arc::clone(&self.inner.clock));
                            if let Some(work) = &self.inner.work {
                                rotator = rotator.with_work(Arc::clone(work));
                            }
                            tracing::info!(rotation = %r.id, cluster = %r.cluster, from = %r.from, to = %r.to, phase = r.phase.as_str(), "driving host rotation");
                            drivers.insert(r.id.clone(), (rotator, now));
                        }
                        None => {
                            r.fail(
                                format!(
                                    "cluster {} has no ec2_cluster target in the configuration any more",
                                    r.cluster
                                ),
                                self.inner.clock.now(),
                            );
                            self.save(&r);
                            continue;
                        }
                    }
                }
                let Some((rotator, due)) = drivers.get_mut(&r.id) else {
                    continue;
                };
                if *due <= now {
                    let before = r.summary();
                    let next = rotator.step(&mut r).await;
                    if r.summary() != before {
                        tracing::info!(rotation = %r.id, state = %r.summary(), "host rotation");
                    }
                    self.save(&r);
                    match next {
                        Some(d) => *due = Instant::now() + d,
                        None => {
                            match &r.status {
                                capstan_core::rotation::Status::Failed { error } => {
                                    tracing::error!(rotation = %r.id, error = %error, "host rotation failed");
                                }
                                _ => tracing::info!(rotation = %r.id, "host rotation done"),
                            }
                            drivers.remove(&r.id);
                            continue;
                        }
                    }
                }
                running.push(r);
            }
            drivers.retain(|id, _| running.iter().any(|r| &r.id == id));
            set_holds(&running);
            let next = drivers
                .values()
                .map(|(_, due)| *due)
                .min()
                .map_or(LOOK_EVERY, |due| {
                    due.saturating_duration_since(Instant::now())
                        .min(LOOK_EVERY)
                });
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(next) => {}
            }
        }
        for (id, (rotator, _)) in drivers {
            tracing::info!(rotation = %id, "capstan stops: the host rotation resumes at the next start");
            rotator.shutdown().await;
        }
    }

    fn save(&self, r: &Rotation) {
        if let Err(e) = self.inner.store.save(r) {
            tracing::error!(rotation = %r.id, error = %e, "rotations: cannot save; the pass is done again after a restart");
        }
    }
}
