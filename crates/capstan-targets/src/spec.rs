//! Typed settings of a target, as compiled from the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The kinds of target.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// Local processes.
    Process(ProcessSpec),
    /// The simulator's ECS service (`capstan simulate` only; `capstan run` refuses it).
    Simulated(SimulatedTargetSpec),
    /// An ECS service on AWS, through the AWS SDK.
    Ecs(EcsServiceSpec),
    /// The EC2 hosts of an ECS cluster on AWS (its Auto Scaling group's instances),
    /// through the AWS SDK.
    Ec2Cluster(Ec2ClusterSpec),
}

/// An `ecs` target: an ECS service on AWS, scaled through the [`EcsTarget`](crate::EcsTarget)
/// over the AWS SDK. Credentials come from the SDK's standard chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsServiceSpec {
    /// The service, its target group and the scale-in settings.
    pub target: crate::EcsTargetSpec,
    /// The AWS region; `None` takes the standard chain's.
    pub region: Option<String>,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared config files.
    pub profile: Option<String>,
    /// Manage the scale-in protection of tasks with workloads in progress (reported to
    /// the work registry), with these durations; `None`: capstan leaves protection to
    /// the application.
    pub protection: Option<capstan_core::protection::ProtectionSettings>,
    /// The scale-in workflow's first drain check after the deregistration.
    pub first_check_after: std::time::Duration,
    /// The later drain checks.
    pub check_every: std::time::Duration,
    /// The service's `scale_in.drain_deadline`: a busy victim is stopped this long after
    /// its deregistration, its work cut; `None`: never.
    pub drain_deadline: Option<std::time::Duration>,
}

/// An `ec2_cluster` target: the EC2 hosts of an ECS cluster on AWS, the instances of
/// its Auto Scaling group, scaled through the [`AsgTarget`](crate::AsgTarget) over the
/// AWS SDK. Credentials come from the SDK's standard chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2ClusterSpec {
    /// The cluster, its Auto Scaling group, warm-up and drain timeout.
    pub target: crate::AsgTargetSpec,
    /// The AWS region; `None` takes the standard chain's.
    pub region: Option<String>,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared config files.
    pub profile: Option<String>,
}

/// A `simulated` target: the simulator's ECS service, scaled through the ECS target,
/// or the hosts of the scenario's EC2 cluster, scaled through the Auto Scaling group
/// target, with these settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedTargetSpec {
    /// What the service scales: the scenario's ECS service or its cluster's hosts.
    pub scales: Scales,
    /// How long a scale-in victim may take to drain (a task: its requests to finish,
    /// its sessions to end; a host: its tasks to move) before it is put back and kept.
    pub drain_timeout: std::time::Duration,
    /// How long the tasks that stay are protected while ECS stops the victims, minutes
    /// (tasks only).
    pub protect_minutes: u32,
    /// No new scale-out while a host launched less than this ago (hosts only).
    pub warmup: std::time::Duration,
}

/// What a `simulated` target scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scales {
    /// The scenario's ECS service's tasks (`scales = "tasks"`, the default).
    #[default]
    Tasks,
    /// The scenario's EC2 cluster's hosts, its Auto Scaling group's instances
    /// (`scales = "hosts"`).
    Hosts,
}

/// A `process` target: keep N copies of a command running.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// Program and arguments of each worker.
    pub command: Vec<String>,
    /// Extra environment (each worker also gets `CAPSTAN_TASK_ID`).
    pub env: BTreeMap<String, String>,
    /// Working directory (default: capstan's own).
    pub workdir: Option<PathBuf>,
    /// Time between SIGTERM and SIGKILL when a worker is stopped.
    pub stop_timeout: Duration,
    /// Delay before restarting a worker that exited (doubles on quick repeated exits,
    /// up to 16×).
    pub restart_delay: Duration,
    /// How long a scale-in victim may take to become idle (its sessions and workloads
    /// ended) before it is kept running instead (only with a work registry).
    pub drain_timeout: Duration,
    /// The service's `scale_in.drain_deadline`: a victim still busy this long after it
    /// was chosen is stopped anyway, its work cut (instead of kept at `drain_timeout`).
    pub drain_deadline: Option<Duration>,
}
