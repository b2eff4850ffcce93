//! The task-protection drivers of the running services: one
//! [`ClusterProtector`] per ECS cluster, shared by every service whose target manages
//! task protection in that cluster through the same client, so their
//! `UpdateTaskProtection` calls are coalesced per cluster (see
//! [`capstan_targets::ecs::protect`]).
//!
//! A cluster is one cluster name on one client: for the SDK, the same `region`,
//! `endpoint_url` and `profile` (the targets then share one client and its pacing); for
//! the world model (behaviour tests), the cluster name alone (a daemon runs one world).
//! A service joins its cluster's driver when it starts and leaves it when it stops
//! (removed, or restarted with another target by a reload); the driver starts with its
//! first service and stops with its last.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use capstan_aws_api::Ecs;
use capstan_aws_sdk::{AwsSettings, SdkEcs};
use capstan_targets::ecs::protect::{ClusterProtector, Protector};
use capstan_world::World;
use tokio_util::sync::CancellationToken;

use super::services::{AnyTarget, ProtectionStatsFn};

/// One cluster's driver and what stops its loop.
struct Driver<E> {
    cluster: Arc<ClusterProtector<E>>,
    cancel: CancellationToken,
}

/// The running cluster drivers, by cluster. See the [module docs](self).
pub struct ProtectionDrivers {
    /// Stops every driver (capstan stopping).
    stop: CancellationToken,
    sdk: HashMap<(AwsSettings, String), Driver<SdkEcs>>,
    world: HashMap<String, Driver<World>>,
}

impl ProtectionDrivers {
    /// No drivers yet; each one made later runs until `stop` or its last service
    /// leaves.
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            stop,
            sdk: HashMap::new(),
            world: HashMap::new(),
        }
    }

    /// Adds the task protection of `target`, if it manages it, to its cluster's driver
    /// (started on first use); gives a way to read the service's counters.
    pub fn join(&mut self, target: &AnyTarget) -> Option<ProtectionStatsFn> {
        match target {
            AnyTarget::Ecs(t) => {
                let p = t.protector()?;
                let key = (p.ecs().config().settings().clone(), p.cluster().to_owned());
                join_in(&mut self.sdk, key, p, &self.stop)
            }
            AnyTarget::EcsWorld(t) => {
                let p = t.protector()?;
                join_in(&mut self.world, p.cluster().to_owned(), p, &self.stop)
            }
            // An ec2_cluster target protects no task.
            AnyTarget::Process(_) | AnyTarget::Ec2Cluster(_) | AnyTarget::Ec2ClusterWorld(_) => {
                None
            }
        }
    }

    /// Takes the task protection of `target` out of its cluster's driver (stopping the
    /// driver if it was the last service). Nothing if it manages none.
    pub fn leave(&mut self, target: &AnyTarget) {
        match target {
            AnyTarget::Ecs(t) => {
                if let Some(p) = t.protector() {
                    let key = (p.ecs().config().settings().clone(), p.cluster().to_owned());
                    leave_in(&mut self.sdk, &key, p);
                }
            }
            AnyTarget::EcsWorld(t) => {
                if let Some(p) = t.protector() {
                    leave_in(&mut self.world, &p.cluster().to_owned(), p);
                }
            }
            AnyTarget::Process(_) | AnyTarget::Ec2Cluster(_) | AnyTarget::Ec2ClusterWorld(_) => {}
        }
    }

    /// The services each running driver steps, by cluster name, sorted (a cluster
    /// name on two clients is listed twice).
    pub fn clusters(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .sdk
            .values()
            .map(|d| (d.cluster.cluster().to_owned(), d.cluster.members()))
            .chain(
                self.world
                    .values()
                    .map(|d| (d.cluster.cluster().to_owned(), d.cluster.members())),
            )
            .collect();
        out.sort();
        out
    }
}

/// Joins `p` to the driver of `key` in `drivers`, starting it first if there is none.
fn join_in<E: Ecs + Clone, K: Eq + Hash>(
    drivers: &mut HashMap<K, Driver<E>>,
    key: K,
    p: &Arc<Protector<E>>,
    stop: &CancellationToken,
) -> Option<ProtectionStatsFn> {
    let driver = drivers.entry(key).or_insert_with(|| {
        let cluster = Arc::new(ClusterProtector::new(p.cluster(), p.ecs().clone()));
        let cancel = stop.child_token();
        let running = Arc::clone(&cluster);
        let until = cancel.clone();
        tokio::spawn(async move { running.run(until).await });
        tracing::debug!(cluster = %p.cluster(), "task protection driver started");
        Driver { cluster, cancel }
    });
    if let Err(e) = driver.cluster.join(Arc::clone(p)) {
        // The key holds the cluster name: a mismatch is a bug here, not a setting.
        tracing::error!(target_name = %p.name(), error = %e, "cannot manage task protection");
        return None;
    }
    let stats = Arc::clone(p);
    Some(Arc::new(move || stats.stats()))
}

/// Takes `p` out of the driver of `key`; stops and forgets the driver if it is empty.
fn leave_in<E, K: Eq + Hash>(drivers: &mut HashMap<K, Driver<E>>, key: &K, p: &Arc<Protector<E>>) {
    let Some(driver) = drivers.get(key) else {
        return;
    };
    driver.cluster.leave(p);
    if driver.cluster.is_empty() {
        driver.cancel.cancel();
        drivers.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_core::clock::VirtualClock;
    use capstan_core::protection::ProtectionSettings;
    use capstan_targets::ecs::{EcsTarget, EcsTargetSpec, WorkCounts};
    use capstan_world::{ServiceSpec, WorldConfig};

    struct Idle;

    impl WorkCounts for Idle {
        fn work(&self, _task_arn: &str) -> u32 {
            0
        }
    }

    fn target(world: &World, cluster: &str, name: &str, protection: bool) -> AnyTarget {
        world
            .add_service(ServiceSpec {
                cluster: cluster.into(),
                name: name.into(),
                desired: 2,
                ..ServiceSpec::default()
            })
            .unwrap();
        make(world, cluster, name, protection)
    }

    /// A target on the world's service `name` (already there).
    fn make(world: &World, cluster: &str, name: &str, protection: bool) -> AnyTarget {
        let mut t = EcsTarget::new(
            name,
            EcsTargetSpec::new(cluster, name),
            world.clone(),
            Some(world.clone()),
            Some(Arc::new(Idle) as Arc<dyn WorkCounts>),
        );
        if protection {
            t = t.with_protection(ProtectionSettings::default()).unwrap();
        }
        AnyTarget::EcsWorld(Arc::new(t))
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Services of one cluster share one driver; another cluster gets its own; a
    /// service that stops leaves it, a service restarted with a new target takes its
    /// place, and the last one out stops the driver.
    #[tokio::test]
    async fn services_join_and_leave_their_cluster_driver() {
        let world = World::new(WorldConfig::default(), VirtualClock::at_epoch());
        let stop = CancellationToken::new();
        let mut drivers = ProtectionDrivers::new(stop.clone());
        let a = target(&world, "default", "a", true);
        let b = target(&world, "default", "b", true);
        let c = target(&world, "other", "c", true);
        let plain = target(&world, "default", "plain", false);

        assert!(drivers.join(&plain).is_none(), "manages no protection");
        assert!(drivers.clusters().is_empty());
        let stats_a = drivers.join(&a).unwrap();
        drivers.join(&b).unwrap();
        drivers.join(&c).unwrap();
        assert_eq!(
            drivers.clusters(),
            vec![
                ("default".to_owned(), names(&["a", "b"])),
                ("other".to_owned(), names(&["c"])),
            ]
        );
        assert_eq!(stats_a().enables, 0, "a's own counters");

        // A reload gives b a new target: the new one takes its place, whether the old
        // one leaves before or after.
        let b_new = make(&world, "default", "b", true);
        drivers.join(&b_new).unwrap();
        drivers.leave(&b);
        drivers.leave(&plain);
        assert_eq!(
            drivers.clusters(),
            vec![
                ("default".to_owned(), names(&["a", "b"])),
                ("other".to_owned(), names(&["c"])),
            ]
        );
        let (AnyTarget::EcsWorld(new), AnyTarget::EcsWorld(old)) = (&b_new, &b) else {
            unreachable!()
        };
        let driver = &drivers.world["default"].cluster;
        assert!(
            !driver.leave(old.protector().unwrap()),
            "the old one is gone"
        );
        assert!(driver.leave(new.protector().unwrap()));
        assert!(driver.join(Arc::clone(new.protector().unwrap())).is_ok());

        // The last service of a cluster stops its driver.
        let other = drivers.world["other"].cancel.clone();
        drivers.leave(&c);
        assert!(other.is_cancelled());
        assert_eq!(
            drivers.clusters(),
            vec![("default".to_owned(), names(&["a", "b"]))]
        );
        // Stopping capstan stops the rest.
        let default = drivers.world["default"].cancel.clone();
        stop.cancel();
        assert!(default.is_cancelled());
    }
}
