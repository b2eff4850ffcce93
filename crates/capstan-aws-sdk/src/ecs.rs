//! [`Ecs`] through `aws-sdk-ecs`: services, tasks, task protection and container
//! instances.
//!
//! Reading answers: a field capstan needs that the answer lacks (a task without an
//! ARN or a `lastStatus`, a status ECS does not document, a negative count) is a
//! `MalformedResponse` error naming the resource and the field, never a guessed value.
//! Times are optional (`createdAt` only orders scale-in victims; emulators leave it
//! out). A service `DescribeServices` reports as `MISSING` is a failure of
//! `describe_services` and [`AwsErrorKind::NotFound`] of `describe_service` (the batch
//! of one). Batch limits are checked before the call ([`limits`]).

use std::sync::Arc;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    Container, ContainerInstance as SdkInstance, ContainerInstanceStatus as SdkInstanceStatus,
    DeploymentRolloutState, DesiredStatus as SdkDesiredStatus, Failure as SdkFailure,
    HealthStatus as SdkHealth, ProtectedTask, Resource, Service, Task,
};
use capstan_aws_api::{
    AwsError, AwsErrorKind, ContainerInstance, ContainerInstanceStatus, DeploymentRollout,
    DesiredStatus, Ecs, EcsDeployment, EcsService, EcsTask, Failure, HealthStatus,
    ProtectionResult, TaskProtection, TaskStatus, limits,
};

use crate::config::{LazyClient, SharedConfig};
use crate::error::{from_sdk, malformed};
use crate::pace::{Category, Pacer};
use crate::time::from_sdk_time;

/// The ECS client, made from a [`SharedConfig`] on first use.
#[derive(Debug, Clone)]
pub struct SdkEcs {
    client: LazyClient<Client>,
    /// AWS's throttling buckets, kept on this side; shared by clones.
    pace: Arc<Pacer>,
}

impl SdkEcs {
    /// A client on `config` (loaded on the first call). Clones share the client.
    pub fn new(config: SharedConfig) -> Self {
        Self {
            client: LazyClient::new(config, Client::new),
            pace: Arc::default(),
        }
    }

    /// A client made from an SDK client (tests with a replayed HTTP client).
    pub fn from_client(client: Client) -> Self {
        Self {
            client: LazyClient::ready(client, Client::new),
            pace: Arc::default(),
        }
    }

    /// The configuration it uses.
    pub fn config(&self) -> &SharedConfig {
        self.client.config()
    }

    /// The client, once a token of `category` is free.
    async fn paced(&self, category: Category) -> &Client {
        self.pace.take(category).await;
        self.client().await
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// `ListTasks` of `cluster` in `status`, every page, filtered by service and/or
    /// container instance when given.
    async fn list_task_arns(
        &self,
        cluster: &str,
        service: Option<&str>,
        container_instance: Option<&str>,
        status: SdkDesiredStatus,
    ) -> Result<Vec<Arc<str>>, AwsError> {
        const OP: &str = "ListTasks";
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .paced(Category::ClusterRead)
                .await
                .list_tasks()
                .cluster(cluster)
                .set_service_name(service.map(str::to_owned))
                .set_container_instance(container_instance.map(str::to_owned))
                .desired_status(status.clone())
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk(OP, e))?;
            arns.extend(out.task_arns().iter().map(|a| Arc::from(a.as_str())));
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(arns)
    }
}

/// A count ECS reports as `i32`, as `u32` (a negative count is not an answer ECS gives).
fn count(operation: &'static str, what: &str, n: i32) -> Result<u32, AwsError> {
    u32::try_from(n).map_err(|_| malformed(operation, format!("{what} is {n}, not a count")))
}

fn required<'a>(
    operation: &'static str,
    resource: &str,
    field: &str,
    value: Option<&'a str>,
) -> Result<&'a str, AwsError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed(operation, format!("{resource} has no {field}")))
}

/// `lastStatus` as a [`TaskStatus`].
pub fn task_status(text: &str) -> Option<TaskStatus> {
    Some(match text {
        "PROVISIONING" => TaskStatus::Provisioning,
        "PENDING" => TaskStatus::Pending,
        "ACTIVATING" => TaskStatus::Activating,
        "RUNNING" => TaskStatus::Running,
        "DEACTIVATING" => TaskStatus::Deactivating,
        "STOPPING" => TaskStatus::Stopping,
        "DEPROVISIONING" => TaskStatus::Deprovisioning,
        "STOPPED" | "DELETED" => TaskStatus::Stopped,
        _ => return None,
    })
}

/// A task's `cpu` / `memory`: ECS answers with a number of CPU units or MiB; the
/// `"1 vCPU"` (1024 units) and `"2 GB"` (1024 MiB each) forms of task definitions are
/// read too. Absent (container-level reservations only) is 0.
pub fn units(text: Option<&str>) -> Option<u32> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Some(0);
    };
    if let Ok(n) = text.parse::<u32>() {
        return Some(n);
    }
    let lower = text.to_ascii_lowercase();
    let number = lower
        .strip_suffix("vcpu")
        .or_else(|| lower.strip_suffix("gb"))?
        .trim()
        .parse::<f64>()
        .ok()?;
    let value = (number * 1024.0).round();
    (value.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&value)).then_some(value as u32)
}

/// The private IPv4 address of a task's network interface (awsvpc), if any.
fn private_ip(task: &Task) -> Option<Arc<str>> {
    let from_attachment = task
        .attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value());
    let from_container = || {
        task.containers()
            .iter()
            .flat_map(Container::network_interfaces)
            .find_map(|n| n.private_ipv4_address())
    };
    from_attachment
        .or_else(from_container)
        .filter(|ip| !ip.is_empty())
        .map(Arc::from)
}

/// The host ports of a task's containers' network bindings (bridge or host
/// networking), in order, each once. A binding without a `hostPort` (a port range) is
/// skipped: a target group cannot register a range. A port outside 1 to 65535 is a
/// malformed answer.
fn host_ports(task: &Task, resource: &str) -> Result<Vec<u16>, AwsError> {
    let mut ports: Vec<u16> = Vec::new();
    for c in task.containers() {
        for b in c.network_bindings() {
            let Some(p) = b.host_port() else { continue };
            let port = u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                malformed(
                    "DescribeTasks",
                    format!(
                        "{resource}: container {} has a network binding with hostPort {p}, not a port",
                        c.name().unwrap_or("?")
                    ),
                )
            })?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    Ok(ports)
}

/// One `DescribeTasks` task as an [`EcsTask`].
pub fn read_task(task: &Task) -> Result<EcsTask, AwsError> {
    const OP: &str = "DescribeTasks";
    let arn = required(OP, "a task", "taskArn", task.task_arn())?;
    let resource = format!("task {arn}");
    let last = required(OP, &resource, "lastStatus", task.last_status())?;
    let last_status = task_status(last)
        .ok_or_else(|| malformed(OP, format!("{resource} has lastStatus {last:?}")))?;
    let desired_status = match task.desired_status() {
        Some("STOPPED" | "DELETED") => DesiredStatus::Stopped,
        Some("RUNNING" | "PENDING") => DesiredStatus::Running,
        // Older answers may leave it out: a task that has not stopped is meant to run.
        None => {
            if last_status == TaskStatus::Stopped {
                DesiredStatus::Stopped
            } else {
                DesiredStatus::Running
            }
        }
        Some(other) => {
            return Err(malformed(
                OP,
                format!("{resource} has desiredStatus {other:?}"),
            ));
        }
    };
    let time = |t: Option<&aws_smithy_types::DateTime>| t.and_then(from_sdk_time);
    let health = match task.health_status() {
        Some(SdkHealth::Healthy) => HealthStatus::Healthy,
        Some(SdkHealth::Unhealthy) => HealthStatus::Unhealthy,
        _ => HealthStatus::Unknown,
    };
    let cpu = units(task.cpu())
        .ok_or_else(|| malformed(OP, format!("{resource} has cpu {:?}", task.cpu())))?;
    let memory = units(task.memory())
        .ok_or_else(|| malformed(OP, format!("{resource} has memory {:?}", task.memory())))?;
    Ok(EcsTask {
        arn: Arc::from(arn),
        service: task
            .group()
            .and_then(|g| g.strip_prefix("service:"))
            .map(Arc::from),
        last_status,
        desired_status,
        availability_zone: Arc::from(task.availability_zone().unwrap_or("")),
        container_instance: task.container_instance_arn().map(Arc::from),
        private_ip: private_ip(task),
        host_ports: host_ports(task, &resource)?,
        created_at: time(task.created_at()),
        started_at: time(task.started_at()),
        stopping_at: time(task.stopping_at()),
        stopped_at: time(task.stopped_at()),
        stopped_reason: task.stopped_reason().map(str::to_owned),
        health,
        cpu,
        memory,
    })
}

/// One `DescribeServices` service as an [`EcsService`].
pub fn read_service(service: &Service, cluster: &str) -> Result<EcsService, AwsError> {
    const OP: &str = "DescribeServices";
    let name = required(OP, "a service", "serviceName", service.service_name())?;
    let resource = format!("service {name}");
    let mut deployments = Vec::with_capacity(service.deployments().len());
    for d in service.deployments() {
        let id = d.id().unwrap_or("").to_owned();
        let status = d.status().unwrap_or("").to_owned();
        let rollout_state = match d.rollout_state() {
            Some(DeploymentRolloutState::InProgress) => DeploymentRollout::InProgress,
            Some(DeploymentRolloutState::Failed) => DeploymentRollout::Failed,
            // Services that are not on the rolling-update circuit breaker report no
            // rollout state: a PRIMARY deployment alone is done.
            Some(DeploymentRolloutState::Completed) | None => DeploymentRollout::Completed,
            Some(other) => {
                return Err(malformed(
                    OP,
                    format!("{resource}: deployment {id} has rolloutState {other:?}"),
                ));
            }
        };
        let what = |field: &str| format!("{resource}: deployment {id}'s {field}");
        deployments.push(EcsDeployment {
            rollout_state,
            desired: count(OP, &what("desiredCount"), d.desired_count())?,
            running: count(OP, &what("runningCount"), d.running_count())?,
            pending: count(OP, &what("pendingCount"), d.pending_count())?,
            id,
            status,
        });
    }
    // PRIMARY first, as the trait promises.
    deployments.sort_by_key(|d| d.status != "PRIMARY");
    let config = service.deployment_configuration();
    let percent = |v: Option<i32>, default: u32, field: &str| match v {
        Some(n) => count(OP, &format!("{resource}: {field}"), n),
        None => Ok(default),
    };
    Ok(EcsService {
        name: name.to_owned(),
        arn: service.service_arn().unwrap_or("").to_owned(),
        cluster: service.cluster_arn().unwrap_or(cluster).to_owned(),
        status: service.status().unwrap_or("").to_owned(),
        desired: count(
            OP,
            &format!("{resource}: desiredCount"),
            service.desired_count(),
        )?,
        running: count(
            OP,
            &format!("{resource}: runningCount"),
            service.running_count(),
        )?,
        pending: count(
            OP,
            &format!("{resource}: pendingCount"),
            service.pending_count(),
        )?,
        deployments,
        target_groups: service
            .load_balancers()
            .iter()
            .filter_map(|lb| lb.target_group_arn())
            .map(str::to_owned)
            .collect(),
        // ECS's defaults for the rolling-update deployment controller.
        minimum_healthy_percent: percent(
            config.and_then(|c| c.minimum_healthy_percent()),
            100,
            "minimumHealthyPercent",
        )?,
        maximum_percent: percent(
            config.and_then(|c| c.maximum_percent()),
            200,
            "maximumPercent",
        )?,
    })
}

fn read_failure(f: &SdkFailure) -> Failure {
    Failure {
        arn: Arc::from(f.arn().unwrap_or("")),
        reason: f.reason().unwrap_or("").to_owned(),
        detail: f.detail().map(str::to_owned),
    }
}

fn read_protection(
    operation: &'static str,
    tasks: &[ProtectedTask],
    failures: &[SdkFailure],
) -> Result<ProtectionResult, AwsError> {
    let mut protected = Vec::with_capacity(tasks.len());
    for t in tasks {
        let arn = required(operation, "a protected task", "taskArn", t.task_arn())?;
        protected.push(TaskProtection {
            arn: Arc::from(arn),
            enabled: t.protection_enabled(),
            expires_at: t.expiration_date().and_then(from_sdk_time),
        });
    }
    Ok(ProtectionResult {
        protected,
        failures: failures.iter().map(read_failure).collect(),
    })
}

fn instance_status(text: &str) -> Option<ContainerInstanceStatus> {
    Some(match text {
        "ACTIVE" => ContainerInstanceStatus::Active,
        "DRAINING" => ContainerInstanceStatus::Draining,
        "REGISTERING" => ContainerInstanceStatus::Registering,
        "DEREGISTERING" => ContainerInstanceStatus::Deregistering,
        "INACTIVE" | "REGISTRATION_FAILED" => ContainerInstanceStatus::Inactive,
        _ => return None,
    })
}

fn sdk_instance_status(status: ContainerInstanceStatus) -> SdkInstanceStatus {
    match status {
        ContainerInstanceStatus::Active => SdkInstanceStatus::Active,
        ContainerInstanceStatus::Draining => SdkInstanceStatus::Draining,
        ContainerInstanceStatus::Registering => SdkInstanceStatus::Registering,
        ContainerInstanceStatus::Deregistering => SdkInstanceStatus::Deregistering,
        ContainerInstanceStatus::Inactive => SdkInstanceStatus::RegistrationFailed,
    }
}

/// The integer value of resource `name` (`CPU`, `MEMORY`) among `resources` (0 when
/// absent).
fn resource(resources: &[Resource], name: &str) -> i32 {
    resources
        .iter()
        .find(|r| r.name() == Some(name))
        .map_or(0, Resource::integer_value)
}

/// One `DescribeContainerInstances` instance as a [`ContainerInstance`].
pub fn read_instance(instance: &SdkInstance) -> Result<ContainerInstance, AwsError> {
    const OP: &str = "DescribeContainerInstances";
    let arn = required(
        OP,
        "a container instance",
        "containerInstanceArn",
        instance.container_instance_arn(),
    )?;
    let what = format!("container instance {arn}");
    let status_text = required(OP, &what, "status", instance.status())?;
    let status = instance_status(status_text)
        .ok_or_else(|| malformed(OP, format!("{what} has status {status_text:?}")))?;
    let registered = instance
        .registered_at()
        .and_then(from_sdk_time)
        .ok_or_else(|| malformed(OP, format!("{what} has no registeredAt")))?;
    let field = |name: &str, n: i32| count(OP, &format!("{what}: {name}"), n);
    Ok(ContainerInstance {
        arn: arn.to_owned(),
        ec2_instance_id: instance.ec2_instance_id().unwrap_or("").to_owned(),
        status,
        availability_zone: instance
            .attributes()
            .iter()
            .find(|a| a.name() == "ecs.availability-zone")
            .and_then(|a| a.value())
            .unwrap_or("")
            .to_owned(),
        registered_cpu: field(
            "registered CPU",
            resource(instance.registered_resources(), "CPU"),
        )?,
        registered_memory: field(
            "registered MEMORY",
            resource(instance.registered_resources(), "MEMORY"),
        )?,
        remaining_cpu: field(
            "remaining CPU",
            resource(instance.remaining_resources(), "CPU"),
        )?,
        remaining_memory: field(
            "remaining MEMORY",
            resource(instance.remaining_resources(), "MEMORY"),
        )?,
        running_tasks: field("runningTasksCount", instance.running_tasks_count())?,
        pending_tasks: field("pendingTasksCount", instance.pending_tasks_count())?,
        agent_connected: instance.agent_connected(),
        registered_at: registered,
    })
}

/// `maxResults` of each `ListServices` call: the most ECS gives per page (its default is
/// 10).
const LIST_SERVICES_PAGE: i32 = 100;

fn check_batch(operation: &'static str, got: usize, max: usize) -> Result<(), AwsError> {
    if got > max {
        Err(AwsError::batch_too_large(operation, got, max))
    } else {
        Ok(())
    }
}

impl Ecs for SdkEcs {
    async fn describe_service(&self, cluster: &str, service: &str) -> Result<EcsService, AwsError> {
        let (found, failures) = self
            .describe_services(cluster, &[Arc::from(service)])
            .await?;
        if let Some(found) = found.into_iter().next() {
            return Ok(found);
        }
        let reason = failures
            .first()
            .map(|f| f.reason.as_str())
            .filter(|r| !r.is_empty())
            .unwrap_or("MISSING");
        Err(AwsError::new(
            "DescribeServices",
            AwsErrorKind::NotFound,
            format!("service {service} in cluster {cluster}: {reason}"),
        ))
    }

    async fn describe_services(
        &self,
        cluster: &str,
        services: &[Arc<str>],
    ) -> Result<(Vec<EcsService>, Vec<Failure>), AwsError> {
        const OP: &str = "DescribeServices";
        check_batch(OP, services.len(), limits::DESCRIBE_SERVICES)?;
        if services.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let out = self
            .paced(Category::ServiceRead)
            .await
            .describe_services()
            .cluster(cluster)
            .set_services(Some(services.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        let described = out
            .services()
            .iter()
            .map(|s| read_service(s, cluster))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((described, out.failures().iter().map(read_failure).collect()))
    }

    async fn list_tasks(
        &self,
        cluster: &str,
        service: &str,
        desired_status: DesiredStatus,
    ) -> Result<Vec<Arc<str>>, AwsError> {
        let status = match desired_status {
            DesiredStatus::Running => SdkDesiredStatus::Running,
            DesiredStatus::Stopped => SdkDesiredStatus::Stopped,
        };
        self.list_task_arns(cluster, Some(service), None, status)
            .await
    }

    async fn list_instance_tasks(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> Result<Vec<Arc<str>>, AwsError> {
        self.list_task_arns(
            cluster,
            None,
            Some(container_instance),
            SdkDesiredStatus::Running,
        )
        .await
    }

    async fn list_services(&self, cluster: &str) -> Result<Vec<Arc<str>>, AwsError> {
        const OP: &str = "ListServices";
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            // ListServices's own page size is 10 unless asked for more (at most 100).
            let out = self
                .paced(Category::ServiceRead)
                .await
                .list_services()
                .cluster(cluster)
                .max_results(LIST_SERVICES_PAGE)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk(OP, e))?;
            arns.extend(out.service_arns().iter().map(|a| Arc::from(a.as_str())));
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(arns)
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> Result<(Vec<EcsTask>, Vec<Failure>), AwsError> {
        const OP: &str = "DescribeTasks";
        check_batch(OP, tasks.len(), limits::DESCRIBE_TASKS)?;
        if tasks.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let out = self
            .paced(Category::ClusterRead)
            .await
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(tasks.iter().map(|t| t.to_string()).collect()))
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        let described = out
            .tasks()
            .iter()
            .map(read_task)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((described, out.failures().iter().map(read_failure).collect()))
    }

    async fn update_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> Result<(), AwsError> {
        const OP: &str = "UpdateService";
        let desired = i32::try_from(desired).map_err(|_| {
            AwsError::new(
                OP,
                AwsErrorKind::InvalidParameter,
                format!("desiredCount {desired} is too large"),
            )
        })?;
        self.paced(Category::ServiceModify)
            .await
            .update_service()
            .cluster(cluster)
            .service(service)
            .desired_count(desired)
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        Ok(())
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), AwsError> {
        const OP: &str = "StopTask";
        self.paced(Category::ClusterModify)
            .await
            .stop_task()
            .cluster(cluster)
            .task(task)
            .reason(reason)
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        Ok(())
    }

    async fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
        protect_minutes: Option<u32>,
    ) -> Result<ProtectionResult, AwsError> {
        const OP: &str = "UpdateTaskProtection";
        check_batch(OP, tasks.len(), limits::UPDATE_TASK_PROTECTION)?;
        if tasks.is_empty() {
            return Ok(ProtectionResult::default());
        }
        let mut request = self
            .paced(Category::TaskProtection)
            .await
            .update_task_protection()
            .cluster(cluster)
            .set_tasks(Some(tasks.iter().map(|t| t.to_string()).collect()))
            .protection_enabled(protect_minutes.is_some());
        if let Some(minutes) = protect_minutes {
            if !limits::PROTECTION_MINUTES.contains(&minutes) {
                return Err(AwsError::new(
                    OP,
                    AwsErrorKind::InvalidParameter,
                    format!(
                        "expiresInMinutes {minutes} is outside {} to {}",
                        limits::PROTECTION_MINUTES.start(),
                        limits::PROTECTION_MINUTES.end()
                    ),
                ));
            }
            // In range 1..=2880, so it fits an i32.
            request = request.expires_in_minutes(minutes as i32);
        }
        let out = request.send().await.map_err(|e| from_sdk(OP, e))?;
        read_protection(OP, out.protected_tasks(), out.failures())
    }

    async fn get_task_protection(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> Result<ProtectionResult, AwsError> {
        const OP: &str = "GetTaskProtection";
        check_batch(OP, tasks.len(), limits::GET_TASK_PROTECTION)?;
        if tasks.is_empty() {
            return Ok(ProtectionResult::default());
        }
        let out = self
            .paced(Category::TaskProtection)
            .await
            .get_task_protection()
            .cluster(cluster)
            .set_tasks(Some(tasks.iter().map(|t| t.to_string()).collect()))
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        read_protection(OP, out.protected_tasks(), out.failures())
    }

    async fn list_container_instances(
        &self,
        cluster: &str,
        status: Option<ContainerInstanceStatus>,
    ) -> Result<Vec<String>, AwsError> {
        const OP: &str = "ListContainerInstances";
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .paced(Category::ClusterRead)
                .await
                .list_container_instances()
                .cluster(cluster)
                .set_status(status.map(sdk_instance_status))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk(OP, e))?;
            arns.extend(out.container_instance_arns().iter().cloned());
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(arns)
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        instances: &[String],
    ) -> Result<(Vec<ContainerInstance>, Vec<Failure>), AwsError> {
        const OP: &str = "DescribeContainerInstances";
        check_batch(OP, instances.len(), limits::DESCRIBE_CONTAINER_INSTANCES)?;
        if instances.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let out = self
            .paced(Category::ClusterRead)
            .await
            .describe_container_instances()
            .cluster(cluster)
            .set_container_instances(Some(instances.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        let described = out
            .container_instances()
            .iter()
            .map(read_instance)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((described, out.failures().iter().map(read_failure).collect()))
    }

    async fn update_container_instances_state(
        &self,
        cluster: &str,
        instances: &[String],
        status: ContainerInstanceStatus,
    ) -> Result<Vec<Failure>, AwsError> {
        const OP: &str = "UpdateContainerInstancesState";
        check_batch(
            OP,
            instances.len(),
            limits::UPDATE_CONTAINER_INSTANCES_STATE,
        )?;
        if !matches!(
            status,
            ContainerInstanceStatus::Active | ContainerInstanceStatus::Draining
        ) {
            return Err(AwsError::new(
                OP,
                AwsErrorKind::InvalidParameter,
                format!("status must be ACTIVE or DRAINING, not {status:?}"),
            ));
        }
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .paced(Category::ClusterModify)
            .await
            .update_container_instances_state()
            .cluster(cluster)
            .set_container_instances(Some(instances.to_vec()))
            .status(sdk_instance_status(status))
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        Ok(out.failures().iter().map(read_failure).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_numbers_and_task_definition_forms() {
        assert_eq!(units(Some("256")), Some(256));
        assert_eq!(units(Some("1 vCPU")), Some(1024));
        assert_eq!(units(Some("0.5 vcpu")), Some(512));
        assert_eq!(units(Some("2 GB")), Some(2048));
        assert_eq!(units(None), Some(0));
        assert_eq!(units(Some("")), Some(0));
        assert_eq!(units(Some("lots")), None);
        assert_eq!(units(Some("-1 vCPU")), None);
    }

    #[test]
    fn every_documented_last_status_is_read() {
        for (text, want) in [
            ("PROVISIONING", TaskStatus::Provisioning),
            ("PENDING", TaskStatus::Pending),
            ("ACTIVATING", TaskStatus::Activating),
            ("RUNNING", TaskStatus::Running),
            ("DEACTIVATING", TaskStatus::Deactivating),
            ("STOPPING", TaskStatus::Stopping),
            ("DEPROVISIONING", TaskStatus::Deprovisioning),
            ("STOPPED", TaskStatus::Stopped),
        ] {
            assert_eq!(task_status(text), Some(want), "{text}");
        }
        assert_eq!(task_status("running"), None);
    }

    #[test]
    fn a_task_without_what_capstan_needs_is_malformed_naming_it() {
        let task = Task::builder().last_status("RUNNING").build();
        let err = read_task(&task).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DescribeTasks: MalformedResponse: a task has no taskArn"
        );
        let task = Task::builder()
            .task_arn("t1")
            .last_status("HOVERING")
            .build();
        let err = read_task(&task).unwrap_err();
        assert!(err.to_string().contains("lastStatus \"HOVERING\""), "{err}");
    }

    #[test]
    fn a_task_is_read_with_its_ip_service_and_reservations() {
        use aws_sdk_ecs::types::{Attachment, KeyValuePair};
        let eni = Attachment::builder()
            .r#type("ElasticNetworkInterface")
            .details(
                KeyValuePair::builder()
                    .name("privateIPv4Address")
                    .value("10.0.1.7")
                    .build(),
            )
            .build();
        let task = Task::builder()
            .task_arn("t1")
            .group("service:web")
            .last_status("DEACTIVATING")
            .desired_status("STOPPED")
            .availability_zone("us-east-1b")
            .created_at(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .started_at(aws_smithy_types::DateTime::from_secs(1_700_000_030))
            .health_status(SdkHealth::Healthy)
            .cpu("512")
            .memory("1 GB")
            .attachments(eni)
            .build();
        let t = read_task(&task).unwrap();
        assert_eq!(&*t.arn, "t1");
        assert_eq!(t.service.as_deref(), Some("web"));
        assert_eq!(t.last_status, TaskStatus::Deactivating);
        assert_eq!(t.desired_status, DesiredStatus::Stopped);
        assert_eq!(t.private_ip.as_deref(), Some("10.0.1.7"));
        assert!(t.host_ports.is_empty(), "awsvpc: no host port bindings");
        assert_eq!(t.started_at.map(|s| s.as_second()), Some(1_700_000_030));
        assert_eq!((t.cpu, t.memory), (512, 1024));
        assert_eq!(t.health, HealthStatus::Healthy);
    }

    #[test]
    fn a_service_reads_deployments_primary_first_and_ecs_defaults() {
        use aws_sdk_ecs::types::{Deployment, LoadBalancer};
        let service = Service::builder()
            .service_name("web")
            .service_arn("arn:svc")
            .status("ACTIVE")
            .desired_count(4)
            .running_count(3)
            .pending_count(1)
            .load_balancers(LoadBalancer::builder().target_group_arn("arn:tg").build())
            .deployments(
                Deployment::builder()
                    .id("old")
                    .status("ACTIVE")
                    .desired_count(2)
                    .running_count(2)
                    .build(),
            )
            .deployments(
                Deployment::builder()
                    .id("new")
                    .status("PRIMARY")
                    .rollout_state(DeploymentRolloutState::InProgress)
                    .desired_count(4)
                    .running_count(1)
                    .pending_count(1)
                    .build(),
            )
            .build();
        let s = read_service(&service, "c").unwrap();
        assert_eq!((s.desired, s.running, s.pending), (4, 3, 1));
        assert_eq!(s.cluster, "c");
        assert_eq!(s.deployments[0].id, "new");
        assert!(s.deployment_in_progress());
        assert_eq!(s.target_groups, vec!["arn:tg".to_owned()]);
        assert_eq!((s.minimum_healthy_percent, s.maximum_percent), (100, 200));
        let negative = Service::builder()
            .service_name("web")
            .desired_count(-1)
            .build();
        let err = read_service(&negative, "c").unwrap_err();
        assert!(
            err.to_string()
                .contains("service web: desiredCount is -1, not a count"),
            "{err}"
        );
    }
}
