//! Amazon ECS: the operations on services, tasks, task protection and container
//! instances that capstan calls.

use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::AwsError;

/// A task's `lastStatus` (AWS-SEMANTICS §4, the task lifecycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Resources (ENI, host capacity) being prepared.
    Provisioning,
    /// Waiting to start: image pull, container start.
    Pending,
    /// Started; being registered with load balancers.
    Activating,
    /// Serving.
    Running,
    /// Being deregistered from load balancers (draining).
    Deactivating,
    /// Containers told to stop (SIGTERM, SIGKILL after the stop timeout).
    Stopping,
    /// Resources being released.
    Deprovisioning,
    /// Gone.
    Stopped,
}

impl TaskStatus {
    /// Counted in a service's `pendingCount` (PROVISIONING, PENDING, ACTIVATING).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Provisioning | Self::Pending | Self::Activating)
    }
}

/// A task's `desiredStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    /// Meant to run.
    Running,
    /// Meant to stop (being stopped or already stopped).
    Stopped,
}

/// A task's container health as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// All essential containers with a health check pass it.
    Healthy,
    /// An essential container fails its health check.
    Unhealthy,
    /// No health check, or not yet known.
    Unknown,
}

/// One task, as `DescribeTasks` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EcsTask {
    /// Task ARN.
    pub arn: Arc<str>,
    /// The service that started it (`group = "service:NAME"`), if any.
    pub service: Option<Arc<str>>,
    /// Where it is in its life.
    pub last_status: TaskStatus,
    /// Where ECS is taking it.
    pub desired_status: DesiredStatus,
    /// Availability zone.
    pub availability_zone: Arc<str>,
    /// The container instance it runs on (EC2 launch type), if any.
    pub container_instance: Option<Arc<str>>,
    /// The private IP of its network interface: the id it is registered under in IP
    /// target groups.
    pub private_ip: Option<Arc<str>>,
    /// The host ports of its containers' network bindings (`networkBindings[].hostPort`;
    /// bridge or host networking on the EC2 launch type, empty for awsvpc). In an
    /// instance target group the task is registered as (the EC2 instance behind
    /// [`container_instance`](Self::container_instance), one of these ports): with
    /// dynamic ports several tasks share an instance, each on its own host port.
    pub host_ports: Vec<u16>,
    /// When it was created (AWS always reports it; some emulators do not).
    pub created_at: Option<Timestamp>,
    /// When it reached RUNNING, if it did.
    pub started_at: Option<Timestamp>,
    /// When it was asked to stop, if it was.
    pub stopping_at: Option<Timestamp>,
    /// When it stopped, if it did.
    pub stopped_at: Option<Timestamp>,
    /// Why it stopped or is stopping (`stoppedReason`).
    pub stopped_reason: Option<String>,
    /// Container health.
    pub health: HealthStatus,
    /// CPU units reserved by the task (1024 = 1 vCPU).
    pub cpu: u32,
    /// Memory reserved by the task, MiB.
    pub memory: u32,
}

/// The rollout state of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentRollout {
    /// Tasks are being replaced.
    InProgress,
    /// The deployment reached a steady state.
    Completed,
    /// The circuit breaker stopped it; it launches no new tasks.
    Failed,
}

/// One deployment of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EcsDeployment {
    /// Deployment id.
    pub id: String,
    /// `PRIMARY` for the newest, `ACTIVE` for older ones still running tasks.
    pub status: String,
    /// Rollout state.
    pub rollout_state: DeploymentRollout,
    /// Desired tasks of this deployment.
    pub desired: u32,
    /// Running tasks of this deployment.
    pub running: u32,
    /// Pending tasks of this deployment.
    pub pending: u32,
}

/// One service, as `DescribeServices` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EcsService {
    /// Service name.
    pub name: String,
    /// Service ARN.
    pub arn: String,
    /// Cluster name or ARN.
    pub cluster: String,
    /// `ACTIVE`, `DRAINING` or `INACTIVE`.
    pub status: String,
    /// `desiredCount`.
    pub desired: u32,
    /// `runningCount`: tasks in RUNNING.
    pub running: u32,
    /// `pendingCount`: tasks in PROVISIONING, PENDING or ACTIVATING.
    pub pending: u32,
    /// Deployments, newest (PRIMARY) first.
    pub deployments: Vec<EcsDeployment>,
    /// Target groups the service registers its tasks in.
    pub target_groups: Vec<String>,
    /// `deploymentConfiguration.minimumHealthyPercent`.
    pub minimum_healthy_percent: u32,
    /// `deploymentConfiguration.maximumPercent`.
    pub maximum_percent: u32,
}

impl EcsService {
    /// Whether a deployment is rolling (more than one deployment, or the primary one
    /// still in progress). AWS holds scale-in meanwhile (AWS-SEMANTICS §1).
    pub fn deployment_in_progress(&self) -> bool {
        self.deployments.len() > 1
            || self
                .deployments
                .iter()
                .any(|d| d.rollout_state == DeploymentRollout::InProgress)
    }
}

/// A per-resource failure inside a successful batch call (ECS's `failures` list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The resource (task, service or container instance ARN, or the name asked for).
    pub arn: Arc<str>,
    /// AWS's reason, e.g. `TASK_NOT_VALID`, `MISSING`.
    pub reason: String,
    /// Detail, if any.
    pub detail: Option<String>,
}

/// The protection of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskProtection {
    /// Task ARN.
    pub arn: Arc<str>,
    /// Whether scale-in protection is on.
    pub enabled: bool,
    /// When it lapses (when enabled).
    pub expires_at: Option<Timestamp>,
}

/// The answer of `UpdateTaskProtection` and `GetTaskProtection`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ProtectionResult {
    /// Tasks whose protection is reported.
    pub protected: Vec<TaskProtection>,
    /// Tasks that could not be handled (e.g. `TASK_NOT_VALID` for a stopped task).
    pub failures: Vec<Failure>,
}

/// A container instance's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerInstanceStatus {
    /// Takes placements.
    Active,
    /// Takes no new placements; its service tasks are being replaced elsewhere.
    Draining,
    /// Being registered.
    Registering,
    /// Being deregistered.
    Deregistering,
    /// Its agent cannot be reached.
    Inactive,
}

/// One container instance (an EC2 host of an ECS cluster).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerInstance {
    /// Container instance ARN.
    pub arn: String,
    /// The EC2 instance behind it (what its Auto Scaling group knows it by).
    pub ec2_instance_id: String,
    /// Status.
    pub status: ContainerInstanceStatus,
    /// Availability zone.
    pub availability_zone: String,
    /// Registered CPU units.
    pub registered_cpu: u32,
    /// Registered memory, MiB.
    pub registered_memory: u32,
    /// CPU units not reserved by tasks.
    pub remaining_cpu: u32,
    /// Memory not reserved by tasks, MiB.
    pub remaining_memory: u32,
    /// Tasks in RUNNING on it.
    pub running_tasks: u32,
    /// Tasks in PENDING on it.
    pub pending_tasks: u32,
    /// Whether its agent is connected.
    pub agent_connected: bool,
    /// When it registered.
    pub registered_at: Timestamp,
}

/// The ECS operations capstan calls.
///
/// `cluster` is a cluster name or ARN; `service` a service name or ARN; tasks and
/// container instances are ARNs (or ids, as ECS accepts).
pub trait Ecs: Send + Sync + 'static {
    /// `DescribeServices` for one service: the batch of one of
    /// [`describe_services`](Self::describe_services), a `MISSING` service being
    /// [`AwsErrorKind::NotFound`](crate::AwsErrorKind::NotFound).
    fn describe_service(
        &self,
        cluster: &str,
        service: &str,
    ) -> impl Future<Output = Result<EcsService, AwsError>> + Send;

    /// `DescribeServices` for up to
    /// [`DESCRIBE_SERVICES`](crate::limits::DESCRIBE_SERVICES) (10) services at once;
    /// unknown ones come back as failures (`MISSING`), not as an error.
    fn describe_services(
        &self,
        cluster: &str,
        services: &[Arc<str>],
    ) -> impl Future<Output = Result<(Vec<EcsService>, Vec<Failure>), AwsError>> + Send;

    /// `ListTasks` with `serviceName` and `desiredStatus`, every page.
    fn list_tasks(
        &self,
        cluster: &str,
        service: &str,
        desired_status: DesiredStatus,
    ) -> impl Future<Output = Result<Vec<Arc<str>>, AwsError>> + Send;

    /// `ListTasks` with `containerInstance` and `desiredStatus` RUNNING, every page: the
    /// tasks placed on that container instance (ARN or id) that ECS keeps running.
    fn list_instance_tasks(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> impl Future<Output = Result<Vec<Arc<str>>, AwsError>> + Send;

    /// `ListServices`, every page: the ARNs of the cluster's services (any launch type,
    /// any scheduling strategy).
    fn list_services(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<Arc<str>>, AwsError>> + Send;

    /// `DescribeTasks` (at most [`DESCRIBE_TASKS`](crate::limits::DESCRIBE_TASKS)).
    /// Unknown tasks come back as failures (`MISSING`), not as an error.
    fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> impl Future<Output = Result<(Vec<EcsTask>, Vec<Failure>), AwsError>> + Send;

    /// `UpdateService` setting only `desiredCount`. Idempotent.
    fn update_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `StopTask`. The service (if any) replaces the task unless its desired count
    /// dropped.
    fn stop_task(
        &self,
        cluster: &str,
        task: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// `UpdateTaskProtection` (at most
    /// [`UPDATE_TASK_PROTECTION`](crate::limits::UPDATE_TASK_PROTECTION) tasks):
    /// `Some(minutes)` protects for that long (1 to 2880, resetting any earlier
    /// expiry), `None` releases.
    fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
        protect_minutes: Option<u32>,
    ) -> impl Future<Output = Result<ProtectionResult, AwsError>> + Send;

    /// `GetTaskProtection` (at most
    /// [`GET_TASK_PROTECTION`](crate::limits::GET_TASK_PROTECTION) tasks).
    fn get_task_protection(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> impl Future<Output = Result<ProtectionResult, AwsError>> + Send;

    /// `ListContainerInstances`, every page, optionally only those in `status`.
    fn list_container_instances(
        &self,
        cluster: &str,
        status: Option<ContainerInstanceStatus>,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;

    /// `DescribeContainerInstances` (at most
    /// [`DESCRIBE_CONTAINER_INSTANCES`](crate::limits::DESCRIBE_CONTAINER_INSTANCES)).
    fn describe_container_instances(
        &self,
        cluster: &str,
        instances: &[String],
    ) -> impl Future<Output = Result<(Vec<ContainerInstance>, Vec<Failure>), AwsError>> + Send;

    /// `UpdateContainerInstancesState` to ACTIVE or DRAINING (at most
    /// [`UPDATE_CONTAINER_INSTANCES_STATE`](crate::limits::UPDATE_CONTAINER_INSTANCES_STATE)).
    fn update_container_instances_state(
        &self,
        cluster: &str,
        instances: &[String],
        status: ContainerInstanceStatus,
    ) -> impl Future<Output = Result<Vec<Failure>, AwsError>> + Send;
}
