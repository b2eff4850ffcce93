//! The `ecs_cluster` source: what an ECS cluster's hosts hold, read from ECS itself
//! at each poll instead of from CloudWatch's one-minute `CPUReservation` and
//! `MemoryReservation`:
//!
//! - `cpu_reservation` / `memory_reservation`: reserved ÷ registered × 100 over the
//!   cluster's ACTIVE container instances (`ListContainerInstances`,
//!   `DescribeContainerInstances`), as CloudWatch defines them
//!   ([`capstan_core::hosts::reservation`]). A cluster with no ACTIVE container
//!   instance has no reservation: the read fails (`not_found`), it is not 0 %, so a
//!   policy never scales in on it; scale a cluster up from nothing with
//!   `pending_tasks`.
//! - `pending_tasks`: the tasks the cluster's services want and ECS has not placed:
//!   the sum over its services (`ListServices`, `DescribeServices`) of desired −
//!   running − pending, each at least 0. ECS creates no task it cannot place (the
//!   service only logs "unable to place a task"), so these are the tasks waiting for a
//!   host. A service that is still starting its tasks has them pending, not here; a
//!   policy holds the value over datapoints to wait out the rest of a deployment.
//!
//! The whole read is cut at the source's timeout. Errors name the cluster: access
//! denied `auth`, a missing cluster `not_found`, throttling and AWS failures `server`.

use std::time::Duration;

use capstan_aws_api::limits::{DESCRIBE_CONTAINER_INSTANCES, DESCRIBE_SERVICES};
use capstan_aws_api::{ContainerInstanceStatus, Ecs};
use capstan_core::hosts::{Host, HostStatus, Resources, reservation};

use crate::aws::{AwsSpec, read_error};
use crate::error::ReadError;
use crate::{BoxFuture, Source};

/// What an `ecs_cluster` source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMetric {
    /// Reserved ÷ registered CPU of the ACTIVE container instances, percent.
    CpuReservation,
    /// Reserved ÷ registered memory of the ACTIVE container instances, percent.
    MemoryReservation,
    /// Tasks the services want and ECS has not placed.
    PendingTasks,
}

impl ClusterMetric {
    /// Every metric, as named in the config.
    pub const ALL: [ClusterMetric; 3] = [
        ClusterMetric::CpuReservation,
        ClusterMetric::MemoryReservation,
        ClusterMetric::PendingTasks,
    ];

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMetric::CpuReservation => "cpu_reservation",
            ClusterMetric::MemoryReservation => "memory_reservation",
            ClusterMetric::PendingTasks => "pending_tasks",
        }
    }

    /// The metric named `name` in the config.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// An `ecs_cluster` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsClusterSpec {
    /// The cluster's name or ARN.
    pub cluster: String,
    /// What to read.
    pub metric: ClusterMetric,
    /// Region, endpoint, profile.
    pub aws: AwsSpec,
}

/// An `ecs_cluster` source over any [`Ecs`] client.
pub struct EcsClusterSource<E> {
    client: E,
    spec: EcsClusterSpec,
    /// The endpoint as shown in errors.
    target: String,
    timeout: Duration,
}

impl<E: Ecs> EcsClusterSource<E> {
    /// A source reading `spec` through `client`, each read cut at `timeout`.
    pub fn new(client: E, spec: &EcsClusterSpec, timeout: Duration) -> Self {
        Self {
            client,
            target: spec.aws.target("ECS"),
            spec: spec.clone(),
            timeout,
        }
    }

    fn what(&self) -> String {
        format!("cluster {:?}", self.spec.cluster)
    }

    fn error(&self, e: capstan_aws_api::AwsError) -> ReadError {
        read_error(&self.target, &self.what(), e)
    }

    async fn query(&self) -> Result<f64, ReadError> {
        match self.spec.metric {
            ClusterMetric::CpuReservation | ClusterMetric::MemoryReservation => {
                let hosts = self.hosts().await?;
                let Some(r) = reservation(&hosts) else {
                    return Err(ReadError::NotFound {
                        target: self.target.clone(),
                        what: format!(
                            "{}'s reservation: no ACTIVE container instance registers CPU and memory",
                            self.what()
                        ),
                    });
                };
                Ok(if self.spec.metric == ClusterMetric::CpuReservation {
                    r.cpu
                } else {
                    r.memory
                })
            }
            ClusterMetric::PendingTasks => self.unplaced().await,
        }
    }

    /// The cluster's container instances, in core's terms.
    async fn hosts(&self) -> Result<Vec<Host>, ReadError> {
        let cluster = &self.spec.cluster;
        let arns = self
            .client
            .list_container_instances(cluster, None)
            .await
            .map_err(|e| self.error(e))?;
        let mut hosts = Vec::with_capacity(arns.len());
        for batch in arns.chunks(DESCRIBE_CONTAINER_INSTANCES) {
            let (found, _gone) = self
                .client
                .describe_container_instances(cluster, batch)
                .await
                .map_err(|e| self.error(e))?;
            hosts.extend(found.into_iter().map(|h| Host {
                id: h.ec2_instance_id.as_str().into(),
                status: match h.status {
                    ContainerInstanceStatus::Active => HostStatus::Active,
                    ContainerInstanceStatus::Draining => HostStatus::Draining,
                    _ => HostStatus::Other,
                },
                registered: Resources::new(h.registered_cpu, h.registered_memory),
                remaining: Resources::new(h.remaining_cpu, h.remaining_memory),
                launched_at: None,
                protected: false,
                used_ports: std::collections::BTreeSet::new(),
            }));
        }
        Ok(hosts)
    }

    /// Σ over the cluster's services of desired − running − pending (at least 0).
    async fn unplaced(&self) -> Result<f64, ReadError> {
        let cluster = &self.spec.cluster;
        let services = self
            .client
            .list_services(cluster)
            .await
            .map_err(|e| self.error(e))?;
        let mut unplaced: u64 = 0;
        for batch in services.chunks(DESCRIBE_SERVICES) {
            // A service deleted since the list comes back as a failure: it wants nothing.
            let (found, _gone) = self
                .client
                .describe_services(cluster, batch)
                .await
                .map_err(|e| self.error(e))?;
            unplaced += found
                .iter()
                .map(|s| {
                    u64::from(
                        s.desired
                            .saturating_sub(s.running)
                            .saturating_sub(s.pending),
                    )
                })
                .sum::<u64>();
        }
        #[allow(clippy::cast_precision_loss)] // task counts are far below 2^53
        Ok(unplaced as f64)
    }
}

impl<E: Ecs> Source for EcsClusterSource<E> {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(crate::error::within(self.timeout, self.query()))
    }
}

/// The SDK-backed source of `spec`.
#[cfg(feature = "aws")]
pub fn build_sdk(
    spec: &EcsClusterSpec,
    timeout: Duration,
) -> EcsClusterSource<capstan_aws_sdk::SdkEcs> {
    let config = capstan_aws_sdk::SharedConfig::new(spec.aws.sdk_settings(timeout));
    EcsClusterSource::new(capstan_aws_sdk::SdkEcs::new(config), spec, timeout)
}
