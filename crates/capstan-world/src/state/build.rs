//! Building the world: clusters with their Auto Scaling groups, services with their
//! target groups, each validated against AWS's ranges.

use std::time::Duration;

use capstan_aws_api::DeploymentRollout;

use super::{ACCOUNT, Cluster, Deployment, Group, REGION, Service, State, TargetGroup};
use crate::error::WorldError;
use crate::spec::{AutoScalingGroupSpec, ClusterSpec, LaunchType, NetworkMode, ServiceSpec};

/// Fargate's largest `stopTimeout` (AWS-SEMANTICS §4, E13).
const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest `deregistration_delay.timeout_seconds` (§5, L1).
const MAX_DEREGISTRATION_DELAY: Duration = Duration::from_secs(3600);
/// `HeartbeatTimeout` range (§6, S1).
const HEARTBEAT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(30)..=Duration::from_secs(7200);

impl State {
    /// The index of cluster `name` (name or ARN).
    pub(crate) fn find_cluster(&self, name: &str) -> Option<usize> {
        let name = super::cluster_name(name);
        self.clusters.iter().position(|c| c.name == name)
    }

    /// The index of service `name` (name or ARN) of cluster `cluster`.
    pub(crate) fn find_service(&self, cluster: usize, name: &str) -> Option<usize> {
        let name = super::short(name);
        let c = self.clusters.get(cluster)?;
        c.services
            .iter()
            .copied()
            .find(|s| self.services.get(*s).is_some_and(|s| s.spec.name == name))
    }

    /// The cluster `name`, created empty if new.
    fn cluster_or_new(&mut self, name: &str) -> usize {
        if let Some(c) = self.find_cluster(name) {
            return c;
        }
        self.clusters.push(Cluster {
            name: name.to_owned(),
            arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"),
            services: Vec::new(),
            groups: Vec::new(),
            hosts: Vec::new(),
        });
        self.clusters.len() - 1
    }

    /// Adds a cluster (or more groups to an existing one); each group starts with
    /// `desired` instances InService and ACTIVE container instances.
    pub(crate) fn add_cluster(&mut self, spec: ClusterSpec) -> Result<(), WorldError> {
        let what = format!("cluster {}", spec.name);
        if spec.name.is_empty() {
            return Err(WorldError::invalid(&what, "name", "must not be empty"));
        }
        self.check_zones(&what)?;
        for g in &spec.groups {
            validate_group(g)?;
            if self.groups.iter().any(|x| x.spec.name == g.name) {
                return Err(WorldError::Duplicate {
                    what: format!("Auto Scaling group {}", g.name),
                });
            }
        }
        if let Some(dup) = duplicate(spec.groups.iter().map(|g| g.name.as_str())) {
            return Err(WorldError::Duplicate {
                what: format!("Auto Scaling group {dup}"),
            });
        }
        let c = self.cluster_or_new(&spec.name);
        for g in spec.groups {
            let desired = g.desired;
            self.groups.push(Group {
                spec: g,
                cluster: c,
                desired,
                instances: Vec::new(),
            });
            let gi = self.groups.len() - 1;
            if let Some(cl) = self.clusters.get_mut(c) {
                cl.groups.push(gi);
            }
            for _ in 0..desired {
                self.launch_instance(gi, true);
            }
        }
        self.changed();
        self.settle();
        Ok(())
    }

    /// Adds a service whose `desired` tasks are already RUNNING and healthy (warm
    /// start), zones balanced (EC2: placed on the cluster's container instances as far
    /// as they have room; the rest start normally once room appears).
    pub(crate) fn add_service(&mut self, spec: ServiceSpec) -> Result<(), WorldError> {
        let what = format!("service {}/{}", spec.cluster, spec.name);
        validate_service(&spec, &what)?;
        self.check_zones(&what)?;
        if let Some(c) = self.find_cluster(&spec.cluster)
            && self.find_service(c, &spec.name).is_some()
        {
            return Err(WorldError::Duplicate { what });
        }
        if let Some(tg) = &spec.target_group
            && self.target_groups.iter().any(|g| g.spec.arn == tg.arn)
        {
            return Err(WorldError::Duplicate {
                what: format!("target group {}", tg.arn),
            });
        }
        let c = self.cluster_or_new(&spec.cluster);
        let si = self.services.len();
        let target_group = spec.target_group.clone().map(|tg| {
            self.target_groups.push(TargetGroup {
                spec: tg,
                service: si,
            });
            self.target_groups.len() - 1
        });
        let serial = self.next_deployment;
        self.next_deployment += 1;
        let dep_id = format!("ecs-svc/{}", self.decimal(19));
        let desired = spec.desired;
        self.services.push(Service {
            arn: format!(
                "arn:aws:ecs:{REGION}:{ACCOUNT}:service/{}/{}",
                spec.cluster, spec.name
            ),
            name: spec.name.as_str().into(),
            spec,
            cluster: c,
            desired,
            tasks: Vec::new(),
            stopped: Vec::new(),
            deployments: vec![Deployment {
                id: dep_id,
                serial,
                rollout: DeploymentRollout::Completed,
            }],
            unplaced: 0,
            target_group,
        });
        if let Some(cl) = self.clusters.get_mut(c) {
            cl.services.push(si);
        }
        self.launch(si, desired as usize, &[], true);
        self.changed();
        self.settle();
        Ok(())
    }

    /// `digits` random decimal digits.
    pub(crate) fn decimal(&mut self, digits: usize) -> String {
        use rand::Rng;
        (0..digits)
            .map(|_| char::from(b'0' + self.rng.random_range(0..10u8)))
            .collect()
    }

    /// Fails when the world has no zones to put anything in.
    fn check_zones(&self, what: &str) -> Result<(), WorldError> {
        if self.config.zones.is_empty() {
            return Err(WorldError::invalid(
                what,
                "zones",
                "the world has no availability zones (WorldConfig::zones is empty)",
            ));
        }
        if let Some(dup) = duplicate(self.config.zones.iter().map(String::as_str)) {
            return Err(WorldError::invalid(
                what,
                "zones",
                format!("zone {dup} is listed twice"),
            ));
        }
        Ok(())
    }
}

/// The first name appearing twice.
fn duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

/// Checks a service spec against AWS's ranges.
fn validate_service(s: &ServiceSpec, what: &str) -> Result<(), WorldError> {
    let bad = |field, reason: &str| Err(WorldError::invalid(what, field, reason));
    if s.cluster.is_empty() {
        return bad("cluster", "must not be empty");
    }
    if s.name.is_empty() || s.name.contains('/') {
        return bad("name", "must be a non-empty name without '/'");
    }
    if s.task_cpu == 0 {
        return bad("task_cpu", "must be at least 1 CPU unit");
    }
    if s.task_memory == 0 {
        return bad("task_memory", "must be at least 1 MiB");
    }
    if s.stop_timeout > MAX_STOP_TIMEOUT {
        return bad("stop_timeout", "must be at most 120 s (ECS stopTimeout)");
    }
    if s.minimum_healthy_percent > 100 {
        return bad("minimum_healthy_percent", "must be at most 100");
    }
    if s.maximum_percent < 100 {
        return bad("maximum_percent", "must be at least 100");
    }
    if s.minimum_healthy_percent == 100 && s.maximum_percent == 100 {
        return bad(
            "maximum_percent",
            "100 with minimum_healthy_percent 100 leaves no room to replace a task",
        );
    }
    if s.network_mode == NetworkMode::Bridge && s.launch_type != LaunchType::Ec2 {
        return bad(
            "network_mode",
            "bridge networking needs the EC2 launch type (Fargate tasks use awsvpc)",
        );
    }
    if let Some(tg) = &s.target_group {
        if tg.arn.is_empty() {
            return bad("target_group.arn", "must not be empty");
        }
        if tg.deregistration_delay > MAX_DEREGISTRATION_DELAY {
            return bad(
                "target_group.deregistration_delay",
                "must be 0 to 3600 s (deregistration_delay.timeout_seconds)",
            );
        }
    }
    Ok(())
}

/// Checks an Auto Scaling group spec.
fn validate_group(g: &AutoScalingGroupSpec) -> Result<(), WorldError> {
    let what = format!("Auto Scaling group {}", g.name);
    let bad = |field, reason: String| Err(WorldError::invalid(&what, field, reason));
    if g.name.is_empty() {
        return bad("name", "must not be empty".into());
    }
    if g.min > g.max {
        return bad("min", format!("{} is above max {}", g.min, g.max));
    }
    if g.desired < g.min || g.desired > g.max {
        return bad(
            "desired",
            format!("{} is outside min..=max ({}..={})", g.desired, g.min, g.max),
        );
    }
    if g.instance_cpu == 0 || g.instance_memory == 0 {
        return bad(
            "instance_cpu",
            "instances must register some CPU and memory".into(),
        );
    }
    for h in &g.hooks {
        if !HEARTBEAT_RANGE.contains(&h.heartbeat_timeout) {
            return bad(
                "hooks.heartbeat_timeout",
                format!(
                    "hook {}: {} s is outside 30 to 7200 s",
                    h.name,
                    h.heartbeat_timeout.as_secs_f64()
                ),
            );
        }
    }
    if let Some(dup) = duplicate(g.hooks.iter().map(|h| h.name.as_str())) {
        return bad("hooks.name", format!("hook {dup} is defined twice"));
    }
    Ok(())
}
