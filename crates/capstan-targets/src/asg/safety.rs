//! Whether the hosts a scale-in was given may go: the cluster as ECS reports it, put
//! into core's terms ([`capstan_core::hosts`]) and checked by
//! [`plan_given`](capstan_core::hosts::plan_given) before any host is set DRAINING.
//!
//! Read for the check (nothing is changed):
//! - the tasks ECS keeps running on each victim (`ListTasks` by container instance,
//!   `DescribeTasks`): their exact CPU and memory, their service, and their static
//!   host ports (a host port below 32,768; higher ones are taken as dynamic ports,
//!   which any host has, from the ephemeral range ECS assigns them from);
//! - their scale-in protection (`GetTaskProtection`): a host running a protected task
//!   is not drained (ECS would keep the task and the host would never empty);
//! - for each service with a task on a victim: its desired count, minimum healthy and
//!   maximum percent (`DescribeServices`; the target's `minimum_running` for the
//!   service, if set, replaces minimum healthy percent × desired), and all its tasks
//!   (`ListTasks`, `DescribeTasks`), so its running count on the other hosts is known.
//!
//! The room left on the other hosts is what their container instances report; the
//! static ports in use on them are those of the tasks read (other services' ports on
//! them are not read).
//! Sessions and workloads come from the work registry when the target has it
//! (`with_work`, by task ARN, whichever service reported them): a host running a task
//! with live work is refused (its tasks would be stopped with their work).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use capstan_aws_api::limits::{DESCRIBE_TASKS, GET_TASK_PROTECTION};
use capstan_aws_api::{
    AutoScaling, ContainerInstanceStatus, DesiredStatus, Ecs, EcsTask, InstanceLifecycleState,
    TaskStatus,
};
use capstan_core::hosts::{Blocker, Host, HostStatus, HostTask, Resources, ServiceFloor};
use capstan_core::model::TaskId;

use super::{AsgTarget, Snapshot};
use crate::TargetError;

/// Host ports from here up are taken as dynamic (assigned by ECS), not asked for.
const FIRST_DYNAMIC_PORT: u16 = 32_768;

/// What the check reads about the tasks involved.
struct Involved {
    /// The tasks on the victims and every task of their services, by ARN.
    tasks: BTreeMap<Arc<str>, EcsTask>,
    /// Tasks with scale-in protection on.
    protected: BTreeSet<Arc<str>>,
    /// The services with a task on a victim.
    floors: Vec<ServiceFloor>,
}

/// What the check found.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// The victims that may go together (EC2 instance id, container instance ARN).
    pub fitting: Vec<(String, String)>,
    /// The refused ones, with why.
    pub refused: Vec<(String, Blocker)>,
    /// The services with a task on the fitting victims.
    pub services: Vec<String>,
}

impl<E: Ecs, A: AutoScaling> AsgTarget<E, A> {
    /// The victims (EC2 instance id, container instance ARN) that may go together, in
    /// order; each refused one with why.
    pub(super) async fn safe_to_remove(
        &self,
        snap: &Snapshot,
        victims: Vec<(String, String)>,
    ) -> Result<Checked, TargetError> {
        if victims.is_empty() {
            return Ok(Checked::default());
        }
        let involved = self.involved(&victims).await?;
        let mut hosts = hosts(snap);
        let by_arn: BTreeMap<&str, &str> = snap
            .hosts
            .iter()
            .map(|(id, h)| (h.arn.as_str(), id.as_str()))
            .collect();
        let tasks: Vec<HostTask> = involved
            .tasks
            .values()
            .filter_map(|t| {
                let host = by_arn.get(t.container_instance.as_deref()?)?;
                Some(HostTask {
                    id: TaskId::from(&*t.arn),
                    host: Arc::from(*host),
                    service: t.service.clone(),
                    size: Resources::new(t.cpu, t.memory),
                    host_ports: t
                        .host_ports
                        .iter()
                        .copied()
                        .filter(|p| *p < FIRST_DYNAMIC_PORT)
                        .collect(),
                    running: t.last_status == TaskStatus::Running,
                    protected: involved.protected.contains(&t.arn),
                    live_work: self.work.as_ref().map_or(0, |w| w.work(&t.arn)),
                })
            })
            .collect();
        // Static ports in use: those of the tasks read (the same service's tasks on
        // other hosts are the usual holders of the port a victim's task needs).
        for t in &tasks {
            if let Some(h) = hosts.iter_mut().find(|h| h.id == t.host) {
                h.used_ports.extend(t.host_ports.iter().copied());
            }
        }
        let ids: Vec<&str> = victims.iter().map(|(id, _)| id.as_str()).collect();
        let (ok, refused) = capstan_core::hosts::plan_given(
            &hosts,
            &tasks,
            &involved.floors,
            &ids,
            false,
            victims.len(),
        );
        let accepted: BTreeSet<&str> = ok.iter().map(|r| &*r.host).collect();
        let fitting = victims
            .iter()
            .filter(|(id, _)| accepted.contains(id.as_str()))
            .cloned()
            .collect();
        let services: BTreeSet<String> = tasks
            .iter()
            .filter(|t| accepted.contains(&*t.host))
            .filter_map(|t| t.service.as_deref().map(str::to_owned))
            .collect();
        Ok(Checked {
            fitting,
            refused,
            services: services.into_iter().collect(),
        })
    }

    /// The first of `services` running fewer tasks than its minimum (the target's
    /// `minimum_running` for it, else `minimumHealthyPercent` × desired), with why;
    /// `None` when every one is at or above it.
    pub(super) async fn below_minimum(
        &self,
        services: &[String],
    ) -> Result<Option<String>, capstan_aws_api::AwsError> {
        for service in services {
            let s = self
                .ecs
                .describe_service(&self.spec.cluster, service)
                .await?;
            let floor = ServiceFloor {
                service: Arc::from(service.as_str()),
                desired: s.desired,
                minimum_healthy_percent: s.minimum_healthy_percent,
                maximum_percent: s.maximum_percent,
                minimum_override: self.minimum_override(service),
            };
            if s.running < floor.minimum() {
                return Ok(Some(format!(
                    "service {service} runs {} tasks, below its minimum {}",
                    s.running,
                    floor.minimum()
                )));
            }
        }
        Ok(None)
    }

    /// Reads the tasks on the victims, their protection, and their services.
    async fn involved(&self, victims: &[(String, String)]) -> Result<Involved, TargetError> {
        let cluster = &self.spec.cluster;
        let aws = |e| TargetError::aws(&self.name, &e);
        let mut on_victims: Vec<Arc<str>> = Vec::new();
        for (_, arn) in victims {
            on_victims.extend(
                self.ecs
                    .list_instance_tasks(cluster, arn)
                    .await
                    .map_err(aws)?,
            );
        }
        let mut tasks = self.describe(&on_victims).await?;
        let mut protected = BTreeSet::new();
        for batch in on_victims.chunks(GET_TASK_PROTECTION) {
            let answer = self
                .ecs
                .get_task_protection(cluster, batch)
                .await
                .map_err(aws)?;
            protected.extend(
                answer
                    .protected
                    .into_iter()
                    .filter(|p| p.enabled)
                    .map(|p| p.arn),
            );
        }
        let services: BTreeSet<Arc<str>> =
            tasks.values().filter_map(|t| t.service.clone()).collect();
        let mut floors = Vec::with_capacity(services.len());
        for service in &services {
            let s = self
                .ecs
                .describe_service(cluster, service)
                .await
                .map_err(aws)?;
            floors.push(ServiceFloor {
                service: Arc::clone(service),
                desired: s.desired,
                minimum_healthy_percent: s.minimum_healthy_percent,
                maximum_percent: s.maximum_percent,
                minimum_override: self.minimum_override(service),
            });
            let all = self
                .ecs
                .list_tasks(cluster, service, DesiredStatus::Running)
                .await
                .map_err(aws)?;
            let missing: Vec<Arc<str>> = all
                .into_iter()
                .filter(|arn| !tasks.contains_key(arn))
                .collect();
            tasks.extend(self.describe(&missing).await?);
        }
        // Only tasks ECS keeps: one it is stopping neither moves nor counts.
        tasks.retain(|_, t| t.desired_status == DesiredStatus::Running);
        Ok(Involved {
            tasks,
            protected,
            floors,
        })
    }

    /// The configured minimum of `service` (named by its name or its ARN).
    fn minimum_override(&self, service: &str) -> Option<u32> {
        let name = service.rsplit('/').next().unwrap_or(service);
        self.spec.minimum_running.get(name).copied()
    }

    /// `DescribeTasks` in batches; tasks ECS no longer knows are left out.
    async fn describe(
        &self,
        arns: &[Arc<str>],
    ) -> Result<BTreeMap<Arc<str>, EcsTask>, TargetError> {
        let mut out = BTreeMap::new();
        for batch in arns.chunks(DESCRIBE_TASKS) {
            let (found, _missing) = self
                .ecs
                .describe_tasks(&self.spec.cluster, batch)
                .await
                .map_err(|e| TargetError::aws(&self.name, &e))?;
            out.extend(found.into_iter().map(|t| (Arc::clone(&t.arn), t)));
        }
        Ok(out)
    }
}

/// The cluster's container instances as core hosts (id = EC2 instance id). An
/// instance of this group that is not in service takes no task for long: it is not
/// counted as ACTIVE room. A host's launch is its instance's launch time when the group
/// reports one, else its registration with the cluster.
pub(super) fn hosts(snap: &Snapshot) -> Vec<Host> {
    snap.hosts
        .iter()
        .map(|(id, h)| {
            let in_service = snap
                .group
                .instances
                .iter()
                .find(|i| i.instance_id == *id)
                .is_none_or(|i| i.lifecycle_state == InstanceLifecycleState::InService);
            let status = match h.status {
                ContainerInstanceStatus::Active if in_service => HostStatus::Active,
                ContainerInstanceStatus::Draining => HostStatus::Draining,
                _ => HostStatus::Other,
            };
            Host {
                id: Arc::from(id.as_str()),
                status,
                registered: Resources::new(h.registered_cpu, h.registered_memory),
                remaining: Resources::new(h.remaining_cpu, h.remaining_memory),
                launched_at: snap
                    .instance(id)
                    .and_then(|i| i.launched_at)
                    .or(Some(h.registered_at)),
                protected: snap.instance(id).is_some_and(|i| i.protected_from_scale_in),
                used_ports: BTreeSet::new(),
            }
        })
        .collect()
}
