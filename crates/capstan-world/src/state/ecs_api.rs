//! The ECS operations behind [`capstan_aws_api::Ecs`], on the caught-up state.
//!
//! Differences from moto that matter (TESTING-AWS): `ListTasks` honours the service
//! filter, `DescribeTasks` does not move tasks along, StopTask on an unknown task is a
//! proper not-found error, and task protection is implemented.

use std::sync::Arc;

use capstan_aws_api::{
    AwsError, AwsErrorKind, ContainerInstance, ContainerInstanceStatus, DesiredStatus,
    EcsDeployment, EcsService, EcsTask, Failure, HealthStatus, ProtectionResult, TaskStatus,
    limits,
};

use super::{State, Task, short};

/// A not-found error of `operation`.
pub(crate) fn not_found(operation: &'static str, message: String) -> AwsError {
    AwsError::new(operation, AwsErrorKind::NotFound, message)
}

/// An invalid-parameter error of `operation`.
pub(crate) fn invalid(operation: &'static str, message: String) -> AwsError {
    AwsError::new(operation, AwsErrorKind::InvalidParameter, message)
}

/// A `MISSING` failure for `arn`.
fn missing(arn: &str) -> Failure {
    Failure {
        arn: arn.into(),
        reason: "MISSING".into(),
        detail: None,
    }
}

impl State {
    /// The cluster named by `cluster`, or `ClusterNotFoundException`.
    pub(crate) fn cluster_for(&self, op: &'static str, cluster: &str) -> Result<usize, AwsError> {
        self.find_cluster(cluster)
            .ok_or_else(|| not_found(op, format!("Cluster not found: {cluster}")))
    }

    /// The service, or `ClusterNotFoundException` / `ServiceNotFoundException`.
    fn service_for(
        &self,
        op: &'static str,
        cluster: &str,
        service: &str,
    ) -> Result<usize, AwsError> {
        let c = self.cluster_for(op, cluster)?;
        self.find_service(c, service)
            .ok_or_else(|| not_found(op, format!("Service not found: {service} in {cluster}")))
    }

    /// `DescribeServices` for one service.
    pub(crate) fn describe_service(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<EcsService, AwsError> {
        let si = self.service_for("DescribeServices", cluster, service)?;
        let s = self
            .services
            .get(si)
            .ok_or_else(|| not_found("DescribeServices", service.to_owned()))?;
        // Running and pending counts per deployment (index into `s.deployments`) and
        // in all, in one pass over the tasks.
        let mut per_deployment = vec![(0u32, 0u32); s.deployments.len()];
        let (mut running, mut pending) = (0u32, 0u32);
        for t in s.tasks.iter().filter_map(|x| self.task(*x)) {
            let (r, p) = (
                u32::from(t.status == TaskStatus::Running),
                u32::from(t.status.is_pending()),
            );
            running = running.saturating_add(r);
            pending = pending.saturating_add(p);
            if let Some(i) = s.deployments.iter().position(|d| d.serial == t.deployment)
                && let Some(c) = per_deployment.get_mut(i)
            {
                c.0 = c.0.saturating_add(r);
                c.1 = c.1.saturating_add(p);
            }
        }
        let deployments = s
            .deployments
            .iter()
            .zip(&per_deployment)
            .enumerate()
            .map(|(i, (d, &(running, pending)))| EcsDeployment {
                id: d.id.clone(),
                status: if i == 0 { "PRIMARY" } else { "ACTIVE" }.into(),
                rollout_state: d.rollout,
                desired: if i == 0 { s.desired } else { 0 },
                running,
                pending,
            })
            .collect();
        Ok(EcsService {
            name: s.spec.name.clone(),
            arn: s.arn.clone(),
            cluster: self
                .clusters
                .get(s.cluster)
                .map(|c| c.arn.clone())
                .unwrap_or_default(),
            status: "ACTIVE".into(),
            desired: s.desired,
            running,
            pending,
            deployments,
            target_groups: s
                .target_group
                .and_then(|g| self.target_groups.get(g))
                .map(|g| vec![g.spec.arn.clone()])
                .unwrap_or_default(),
            minimum_healthy_percent: s.spec.minimum_healthy_percent,
            maximum_percent: s.spec.maximum_percent,
        })
    }

    /// `ListTasks` filtered by service and desired status (STOPPED includes tasks
    /// stopped within the last hour).
    pub(crate) fn list_tasks(
        &self,
        cluster: &str,
        service: &str,
        desired: DesiredStatus,
    ) -> Result<Vec<Arc<str>>, AwsError> {
        let si = self.service_for("ListTasks", cluster, service)?;
        let Some(s) = self.services.get(si) else {
            return Ok(Vec::new());
        };
        let mut arns = Vec::with_capacity(match desired {
            DesiredStatus::Running => s.tasks.len(),
            DesiredStatus::Stopped => s.tasks.len() + s.stopped.len(),
        });
        arns.extend(
            s.tasks
                .iter()
                .chain(&s.stopped)
                .filter_map(|x| self.task(*x))
                .filter(|t| t.desired == desired)
                .map(|t| t.arn.clone()),
        );
        Ok(arns)
    }

    /// `DescribeTasks`: unknown tasks come back as `MISSING` failures.
    pub(crate) fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> Result<(Vec<EcsTask>, Vec<Failure>), AwsError> {
        const OP: &str = "DescribeTasks";
        if tasks.len() > limits::DESCRIBE_TASKS {
            return Err(AwsError::batch_too_large(
                OP,
                tasks.len(),
                limits::DESCRIBE_TASKS,
            ));
        }
        let c = self.cluster_for(OP, cluster)?;
        let mut found = Vec::with_capacity(tasks.len());
        let mut failures = Vec::new();
        for arn in tasks {
            match self.find_task(c, arn).and_then(|s| self.task(s)) {
                Some(t) => found.push(self.ecs_task(t)),
                None => failures.push(missing(arn)),
            }
        }
        Ok((found, failures))
    }

    /// A task as `DescribeTasks` reports it. Containers report healthy once RUNNING
    /// (container health checks are not modelled). An awsvpc task reports its private
    /// IP; a bridge-mode task its host port (its containers' `networkBindings`).
    fn ecs_task(&self, t: &Task) -> EcsTask {
        EcsTask {
            arn: t.arn.clone(),
            service: self.services.get(t.service).map(|s| s.name.clone()),
            last_status: t.status,
            desired_status: t.desired,
            availability_zone: self.zone_arc(t.zone),
            container_instance: t
                .host
                .and_then(|h| self.instances.get(h))
                .and_then(|i| i.ci.as_ref())
                .map(|ci| Arc::from(ci.arn.as_str())),
            // A bridge-mode task has no network interface of its own: it is reached
            // through its instance, on its host port.
            private_ip: t.host_port.is_none().then(|| t.ip.clone()),
            host_ports: t.host_port.into_iter().collect(),
            created_at: Some(t.created_at),
            started_at: t.started_at,
            stopping_at: t.stopping_at,
            stopped_at: t.stopped_at,
            stopped_reason: t.stopped_reason.clone(),
            health: if t.status == TaskStatus::Running {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unknown
            },
            cpu: t.cpu,
            memory: t.memory,
        }
    }

    /// `UpdateService` setting `desiredCount`.
    pub(crate) fn update_desired(
        &mut self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> Result<(), AwsError> {
        let si = self.service_for("UpdateService", cluster, service)?;
        if let Some(s) = self.services.get_mut(si)
            && s.desired != desired
        {
            s.desired = desired;
            self.changed();
        }
        Ok(())
    }

    /// `StopTask` (protection does not apply to it, E8).
    pub(crate) fn stop_task_api(
        &mut self,
        cluster: &str,
        task: &str,
        reason: &str,
    ) -> Result<(), AwsError> {
        const OP: &str = "StopTask";
        let c = self.cluster_for(OP, cluster)?;
        let slot = self
            .find_task(c, task)
            .ok_or_else(|| not_found(OP, format!("The referenced task was not found: {task}")))?;
        let reason = if reason.is_empty() {
            "Task stopped by user"
        } else {
            reason
        };
        self.stop_task(slot, reason);
        Ok(())
    }

    /// `UpdateTaskProtection`: ≤ 10 tasks, minutes within 1..=2880.
    pub(crate) fn update_task_protection(
        &mut self,
        cluster: &str,
        tasks: &[Arc<str>],
        minutes: Option<u32>,
    ) -> Result<ProtectionResult, AwsError> {
        const OP: &str = "UpdateTaskProtection";
        if tasks.len() > limits::UPDATE_TASK_PROTECTION {
            return Err(AwsError::batch_too_large(
                OP,
                tasks.len(),
                limits::UPDATE_TASK_PROTECTION,
            ));
        }
        if let Some(m) = minutes
            && !limits::PROTECTION_MINUTES.contains(&m)
        {
            return Err(invalid(
                OP,
                format!("expiresInMinutes {m} is outside 1 to 2880"),
            ));
        }
        let c = self.cluster_for(OP, cluster)?;
        Ok(self.update_protection(c, tasks, minutes))
    }

    /// `GetTaskProtection`: ≤ 100 tasks.
    pub(crate) fn get_task_protection(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> Result<ProtectionResult, AwsError> {
        const OP: &str = "GetTaskProtection";
        if tasks.len() > limits::GET_TASK_PROTECTION {
            return Err(AwsError::batch_too_large(
                OP,
                tasks.len(),
                limits::GET_TASK_PROTECTION,
            ));
        }
        let c = self.cluster_for(OP, cluster)?;
        Ok(self.get_protection(c, tasks))
    }

    /// `ListContainerInstances`: registered ones (ACTIVE and DRAINING) unless a status
    /// is given (INACTIVE lists deregistered ones).
    pub(crate) fn list_container_instances(
        &self,
        cluster: &str,
        status: Option<ContainerInstanceStatus>,
    ) -> Result<Vec<String>, AwsError> {
        let c = self.cluster_for("ListContainerInstances", cluster)?;
        Ok(self
            .instances
            .iter()
            .filter(|i| i.cluster == c)
            .filter_map(|i| i.ci.as_ref())
            .filter(|ci| match status {
                Some(s) => ci.status == s,
                None => ci.status != ContainerInstanceStatus::Inactive,
            })
            .map(|ci| ci.arn.clone())
            .collect())
    }

    /// The instance index of a container instance of cluster `c`.
    fn find_container_instance(&self, c: usize, name: &str) -> Option<usize> {
        let idx = *self.container_ids.get(short(name))?;
        self.instances
            .get(idx)
            .filter(|i| i.cluster == c)
            .map(|_| idx)
    }

    /// `DescribeContainerInstances`: unknown ones come back as `MISSING` failures.
    pub(crate) fn describe_container_instances(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<(Vec<ContainerInstance>, Vec<Failure>), AwsError> {
        const OP: &str = "DescribeContainerInstances";
        if names.len() > limits::DESCRIBE_CONTAINER_INSTANCES {
            return Err(AwsError::batch_too_large(
                OP,
                names.len(),
                limits::DESCRIBE_CONTAINER_INSTANCES,
            ));
        }
        let c = self.cluster_for(OP, cluster)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for name in names {
            let Some(inst) = self
                .find_container_instance(c, name)
                .and_then(|i| self.instances.get(i))
            else {
                failures.push(missing(name));
                continue;
            };
            let Some(ci) = inst.ci.as_ref() else {
                failures.push(missing(name));
                continue;
            };
            let on: Vec<&Task> = inst.tasks.iter().filter_map(|s| self.task(*s)).collect();
            let n = |pred: fn(TaskStatus) -> bool| {
                u32::try_from(on.iter().filter(|t| pred(t.status)).count()).unwrap_or(u32::MAX)
            };
            found.push(ContainerInstance {
                arn: ci.arn.clone(),
                ec2_instance_id: inst.id.clone(),
                status: ci.status,
                availability_zone: self.zone_name(inst.zone).to_owned(),
                registered_cpu: ci.registered_cpu,
                registered_memory: ci.registered_memory,
                remaining_cpu: ci.registered_cpu.saturating_sub(ci.reserved_cpu),
                remaining_memory: ci.registered_memory.saturating_sub(ci.reserved_memory),
                running_tasks: n(|s| s == TaskStatus::Running),
                pending_tasks: n(TaskStatus::is_pending),
                agent_connected: ci.status != ContainerInstanceStatus::Inactive,
                registered_at: ci.registered_at,
            });
        }
        Ok((found, failures))
    }

    /// `UpdateContainerInstancesState` to ACTIVE or DRAINING (≤ 10). DRAINING takes no
    /// new placements and has its service tasks replaced (see the scheduler).
    pub(crate) fn update_container_instances_state(
        &mut self,
        cluster: &str,
        names: &[String],
        status: ContainerInstanceStatus,
    ) -> Result<Vec<Failure>, AwsError> {
        const OP: &str = "UpdateContainerInstancesState";
        if names.len() > limits::UPDATE_CONTAINER_INSTANCES_STATE {
            return Err(AwsError::batch_too_large(
                OP,
                names.len(),
                limits::UPDATE_CONTAINER_INSTANCES_STATE,
            ));
        }
        if !matches!(
            status,
            ContainerInstanceStatus::Active | ContainerInstanceStatus::Draining
        ) {
            return Err(invalid(
                OP,
                format!("status must be ACTIVE or DRAINING, not {status:?}"),
            ));
        }
        let c = self.cluster_for(OP, cluster)?;
        let mut failures = Vec::new();
        for name in names {
            let ci = self
                .find_container_instance(c, name)
                .and_then(|i| self.instances.get_mut(i))
                .and_then(|i| i.ci.as_mut())
                .filter(|ci| ci.status != ContainerInstanceStatus::Inactive);
            match ci {
                Some(ci) => {
                    if ci.status != status {
                        ci.status = status;
                        self.changed();
                    }
                }
                None => failures.push(missing(name)),
            }
        }
        Ok(failures)
    }
}
