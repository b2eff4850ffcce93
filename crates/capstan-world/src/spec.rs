//! What a world is made of: its settings, services, clusters and Auto Scaling groups,
//! with AWS's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole world's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldConfig {
    /// Availability zones tasks and hosts are spread over.
    pub zones: Vec<String>,
    /// Seed of every random choice the world makes (ECS's "arbitrary" victim, ...).
    pub seed: u64,
    /// Apply AWS's API rate limits (token buckets, AWS-SEMANTICS §8).
    pub rate_limits: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            zones: vec![
                "eu-west-1a".into(),
                "eu-west-1b".into(),
                "eu-west-1c".into(),
            ],
            seed: 1,
            rate_limits: true,
        }
    }
}

/// How tasks of a service are launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LaunchType {
    /// Serverless: every task gets its own capacity.
    #[default]
    Fargate,
    /// On the cluster's container instances: tasks are placed where CPU and memory
    /// remain.
    Ec2,
}

/// How a service's tasks are networked (the task definition's `networkMode`), which
/// decides how they are registered in the service's target group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Each task has its own network interface and private IP (Fargate, or EC2 with
    /// awsvpc): its target group is of type `ip`, the task registered as (its IP, the
    /// group's port).
    #[default]
    Awsvpc,
    /// Docker bridge networking with dynamic host ports (EC2 launch type only): tasks
    /// share their instance's address, each container port mapped to a host port of
    /// the instance's ephemeral range (the lowest free one from 32768). Its target
    /// group is of type `instance`, the task registered as (the EC2 instance id, its
    /// host port); `DescribeTasks` reports the host port in the containers'
    /// `networkBindings` and no private IP.
    Bridge,
}

/// A load balancer target group the service's tasks are registered in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetGroupSpec {
    /// Target group ARN.
    pub arn: String,
    /// `deregistration_delay.timeout_seconds` (AWS default 300 s).
    #[serde(with = "secs")]
    pub deregistration_delay: Duration,
    /// How long after a target starts draining the load balancer may still send it new
    /// requests (propagation; AWS-SEMANTICS §4–5). 0 = never.
    #[serde(with = "secs")]
    pub routing_lag: Duration,
    /// Port targets are registered on (the container port; with bridge networking the
    /// task is registered on the host port it is mapped to).
    pub port: u16,
    /// Time from registration to `healthy` (health checks passing).
    #[serde(with = "secs")]
    pub health_check_time: Duration,
}

impl Default for TargetGroupSpec {
    fn default() -> Self {
        Self {
            arn: "arn:aws:elasticloadbalancing:eu-west-1:000000000000:targetgroup/app/0".into(),
            deregistration_delay: Duration::from_secs(300),
            routing_lag: Duration::from_secs(5),
            port: 8080,
            health_check_time: Duration::from_secs(10),
        }
    }
}

/// One ECS service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceSpec {
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub name: String,
    /// Launch type.
    pub launch_type: LaunchType,
    /// Task networking (bridge needs the EC2 launch type).
    pub network_mode: NetworkMode,
    /// `desiredCount` at creation.
    pub desired: u32,
    /// CPU units per task (1024 = 1 vCPU).
    pub task_cpu: u32,
    /// Memory per task, MiB.
    pub task_memory: u32,
    /// Time from creation to RUNNING (provisioning, image pull, start). Fargate: ~60 s.
    #[serde(with = "secs")]
    pub startup: Duration,
    /// Time from SIGTERM to SIGKILL (`stopTimeout`; Fargate default 30 s, max 120 s).
    #[serde(with = "secs")]
    pub stop_timeout: Duration,
    /// Time to release resources after the containers exit.
    #[serde(with = "secs")]
    pub deprovisioning: Duration,
    /// Target group, if the service is behind a load balancer.
    pub target_group: Option<TargetGroupSpec>,
    /// `deploymentConfiguration.minimumHealthyPercent`.
    pub minimum_healthy_percent: u32,
    /// `deploymentConfiguration.maximumPercent`.
    pub maximum_percent: u32,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            cluster: "default".into(),
            name: "app".into(),
            launch_type: LaunchType::Fargate,
            network_mode: NetworkMode::Awsvpc,
            desired: 1,
            task_cpu: 1024,
            task_memory: 2048,
            startup: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            deprovisioning: Duration::from_secs(5),
            target_group: None,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
        }
    }
}

/// Which transition a lifecycle hook holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookTransition {
    /// `autoscaling:EC2_INSTANCE_LAUNCHING`.
    Launching,
    /// `autoscaling:EC2_INSTANCE_TERMINATING`.
    Terminating,
}

/// A lifecycle hook of an Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// Hook name.
    pub name: String,
    /// The transition it holds.
    pub transition: HookTransition,
    /// `HeartbeatTimeout` (30 to 7200 s, AWS default 3600 s).
    #[serde(with = "secs")]
    pub heartbeat_timeout: Duration,
    /// `DefaultResult` when the timeout passes: `true` = CONTINUE, `false` = ABANDON.
    pub default_continue: bool,
}

/// An EC2 Auto Scaling group whose instances join an ECS cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoScalingGroupSpec {
    /// Group name.
    pub name: String,
    /// Minimum size.
    pub min: u32,
    /// Maximum size.
    pub max: u32,
    /// Desired capacity at creation.
    pub desired: u32,
    /// CPU units each instance registers.
    pub instance_cpu: u32,
    /// Memory each instance registers, MiB.
    pub instance_memory: u32,
    /// Time from launch to a registered, ACTIVE container instance.
    #[serde(with = "secs")]
    pub launch_time: Duration,
    /// Time from termination to gone.
    #[serde(with = "secs")]
    pub termination_time: Duration,
    /// Lifecycle hooks.
    pub hooks: Vec<HookSpec>,
    /// ECS managed draining: a terminating instance is set DRAINING and held until its
    /// tasks have stopped (at most 48 h).
    pub managed_draining: bool,
}

impl Default for AutoScalingGroupSpec {
    fn default() -> Self {
        Self {
            name: "asg".into(),
            min: 0,
            max: 10,
            desired: 1,
            instance_cpu: 4096,
            instance_memory: 7482,
            launch_time: Duration::from_secs(180),
            termination_time: Duration::from_secs(60),
            hooks: Vec::new(),
            managed_draining: false,
        }
    }
}

/// An ECS cluster with container instances from one or more Auto Scaling groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    /// Cluster name.
    pub name: String,
    /// Its Auto Scaling groups.
    pub groups: Vec<AutoScalingGroupSpec>,
}

/// Durations as seconds (fractions allowed) in serialized specs.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Reads non-negative, finite seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v)
            .map_err(|_| serde::de::Error::custom(format!("{v} is not a duration in seconds")))
    }
}
