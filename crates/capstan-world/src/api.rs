//! The AWS traits implemented by [`World`]: every call goes through
//! [`World::call`] (catch up, rate limit, faults, act) and returns a ready future.

use std::future::{Future, ready};
use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::{
    AutoScaling, AutoScalingGroup, AwsError, AwsErrorKind, ContainerInstance,
    ContainerInstanceStatus, DesiredStatus, Ecs, EcsService, EcsTask, Elb, Failure,
    LifecycleActionResult, ProtectionResult, TargetHealth, TargetRef, limits,
};

use crate::World;
use crate::limits::Category;
use crate::state::{State, short};

/// `ListTasks` with `containerInstance` and `desiredStatus` RUNNING: the tasks on that
/// container instance (matched by ARN or id, in cluster `cluster`) that are not being
/// stopped, of every service. A container instance the cluster never registered is an
/// `InvalidParameterException`, as AWS answers; a deregistered (INACTIVE) one has no
/// such tasks left.
fn instance_tasks(
    s: &State,
    cluster: &str,
    container_instance: &str,
) -> Result<Vec<Arc<str>>, AwsError> {
    const OP: &str = "ListTasks";
    let c = s.cluster_for(OP, cluster)?;
    let inst = s
        .container_ids
        .get(short(container_instance))
        .and_then(|&i| s.instances.get(i))
        .filter(|i| i.cluster == c && i.ci.is_some())
        .ok_or_else(|| {
            AwsError::new(
                OP,
                AwsErrorKind::InvalidParameter,
                format!("Container instance not found: {container_instance} in {cluster}"),
            )
        })?;
    Ok(inst
        .tasks
        .iter()
        .filter_map(|&slot| s.task(slot))
        .filter(|t| t.live())
        .map(|t| t.arn.clone())
        .collect())
}

/// `ListServices`: the ARNs of every service of cluster `cluster`, in creation order.
/// AWS lists ACTIVE and DRAINING services, not INACTIVE (deleted) ones; the world's
/// services are never deleted, so that is all of them. An unknown cluster is
/// `ClusterNotFoundException`.
fn list_services(s: &State, cluster: &str) -> Result<Vec<Arc<str>>, AwsError> {
    let c = s.cluster_for("ListServices", cluster)?;
    Ok(s.clusters
        .get(c)
        .map(|cl| {
            cl.services
                .iter()
                .filter_map(|&i| s.services.get(i))
                .map(|svc| Arc::from(svc.arn.as_str()))
                .collect()
        })
        .unwrap_or_default())
}

/// `DescribeServices` of up to [`limits::DESCRIBE_SERVICES`] services (names or ARNs):
/// each known one as the single `DescribeServices` reports it, each unknown one a
/// `MISSING` failure under the name or ARN asked for. An unknown cluster is
/// `ClusterNotFoundException`.
fn describe_services(
    s: &State,
    cluster: &str,
    services: &[Arc<str>],
) -> Result<(Vec<EcsService>, Vec<Failure>), AwsError> {
    const OP: &str = "DescribeServices";
    if services.len() > limits::DESCRIBE_SERVICES {
        return Err(AwsError::batch_too_large(
            OP,
            services.len(),
            limits::DESCRIBE_SERVICES,
        ));
    }
    let c = s.cluster_for(OP, cluster)?;
    let mut found = Vec::with_capacity(services.len());
    let mut failures = Vec::new();
    for name in services {
        if s.find_service(c, name).is_some() {
            found.push(s.describe_service(cluster, name)?);
        } else {
            failures.push(Failure {
                arn: Arc::clone(name),
                reason: "MISSING".into(),
                detail: None,
            });
        }
    }
    Ok((found, failures))
}

impl Ecs for World {
    fn describe_service(
        &self,
        cluster: &str,
        service: &str,
    ) -> impl Future<Output = Result<EcsService, AwsError>> + Send {
        ready(self.call("DescribeServices", Category::ServiceRead, |s| {
            s.describe_service(cluster, service)
        }))
    }

    fn describe_services(
        &self,
        cluster: &str,
        services: &[Arc<str>],
    ) -> impl Future<Output = Result<(Vec<EcsService>, Vec<Failure>), AwsError>> + Send {
        ready(self.call("DescribeServices", Category::ServiceRead, |s| {
            describe_services(s, cluster, services)
        }))
    }

    fn list_tasks(
        &self,
        cluster: &str,
        service: &str,
        desired_status: DesiredStatus,
    ) -> impl Future<Output = Result<Vec<Arc<str>>, AwsError>> + Send {
        ready(self.call("ListTasks", Category::ClusterRead, |s| {
            s.list_tasks(cluster, service, desired_status)
        }))
    }

    fn list_instance_tasks(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> impl Future<Output = Result<Vec<Arc<str>>, AwsError>> + Send {
        ready(self.call("ListTasks", Category::ClusterRead, |s| {
            instance_tasks(s, cluster, container_instance)
        }))
    }

    fn list_services(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<Arc<str>>, AwsError>> + Send {
        ready(self.call("ListServices", Category::ServiceRead, |s| {
            list_services(s, cluster)
        }))
    }

    fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> impl Future<Output = Result<(Vec<EcsTask>, Vec<Failure>), AwsError>> + Send {
        ready(self.call("DescribeTasks", Category::ClusterRead, |s| {
            s.describe_tasks(cluster, tasks)
        }))
    }

    fn update_desired_count(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(self.call("UpdateService", Category::ServiceModify, |s| {
            s.update_desired(cluster, service, desired)
        }))
    }

    fn stop_task(
        &self,
        cluster: &str,
        task: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(self.call("StopTask", Category::ClusterModify, |s| {
            s.stop_task_api(cluster, task, reason)
        }))
    }

    fn update_task_protection(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
        protect_minutes: Option<u32>,
    ) -> impl Future<Output = Result<ProtectionResult, AwsError>> + Send {
        ready(
            self.call("UpdateTaskProtection", Category::TaskProtection, |s| {
                s.update_task_protection(cluster, tasks, protect_minutes)
            }),
        )
    }

    fn get_task_protection(
        &self,
        cluster: &str,
        tasks: &[Arc<str>],
    ) -> impl Future<Output = Result<ProtectionResult, AwsError>> + Send {
        ready(
            self.call("GetTaskProtection", Category::TaskProtection, |s| {
                s.get_task_protection(cluster, tasks)
            }),
        )
    }

    fn list_container_instances(
        &self,
        cluster: &str,
        status: Option<ContainerInstanceStatus>,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send {
        ready(
            self.call("ListContainerInstances", Category::ClusterRead, |s| {
                s.list_container_instances(cluster, status)
            }),
        )
    }

    fn describe_container_instances(
        &self,
        cluster: &str,
        instances: &[String],
    ) -> impl Future<Output = Result<(Vec<ContainerInstance>, Vec<Failure>), AwsError>> + Send {
        ready(
            self.call("DescribeContainerInstances", Category::ClusterRead, |s| {
                s.describe_container_instances(cluster, instances)
            }),
        )
    }

    fn update_container_instances_state(
        &self,
        cluster: &str,
        instances: &[String],
        status: ContainerInstanceStatus,
    ) -> impl Future<Output = Result<Vec<Failure>, AwsError>> + Send {
        ready(self.call(
            "UpdateContainerInstancesState",
            Category::ClusterModify,
            |s| s.update_container_instances_state(cluster, instances, status),
        ))
    }
}

impl Elb for World {
    fn describe_target_health(
        &self,
        target_group: &str,
    ) -> impl Future<Output = Result<Vec<TargetHealth>, AwsError>> + Send {
        ready(self.call("DescribeTargetHealth", Category::ElbRead, |s| {
            s.describe_target_health(target_group)
        }))
    }

    fn register_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(self.call("RegisterTargets", Category::ElbModify, |s| {
            s.register_targets(target_group, targets)
        }))
    }

    fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(self.call("DeregisterTargets", Category::ElbModify, |s| {
            s.deregister_targets(target_group, targets)
        }))
    }

    fn deregistration_delay(
        &self,
        target_group: &str,
    ) -> impl Future<Output = Result<Duration, AwsError>> + Send {
        ready(
            self.call("DescribeTargetGroupAttributes", Category::ElbRead, |s| {
                s.deregistration_delay(target_group)
            }),
        )
    }
}

impl AutoScaling for World {
    fn describe_group(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<AutoScalingGroup, AwsError>> + Send {
        ready(
            self.call("DescribeAutoScalingGroups", Category::AsgRead, |s| {
                s.describe_group(group)
            }),
        )
    }

    fn set_desired_capacity(
        &self,
        group: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(self.call("SetDesiredCapacity", Category::AsgModify, |s| {
            s.set_desired_capacity(group, desired)
        }))
    }

    fn set_instance_protection(
        &self,
        group: &str,
        instance_ids: &[String],
        protected: bool,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(
            self.call("SetInstanceProtection", Category::AsgModify, |s| {
                s.set_instance_protection(group, instance_ids, protected)
            }),
        )
    }

    fn terminate_instance(
        &self,
        instance_id: &str,
        decrement_desired: bool,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(self.call(
            "TerminateInstanceInAutoScalingGroup",
            Category::AsgModify,
            |s| s.terminate_instance(instance_id, decrement_desired),
        ))
    }

    fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
        result: LifecycleActionResult,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(
            self.call("CompleteLifecycleAction", Category::AsgModify, |s| {
                s.complete_lifecycle_action(group, hook, instance_id, result)
            }),
        )
    }

    fn record_lifecycle_action_heartbeat(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        ready(
            self.call("RecordLifecycleActionHeartbeat", Category::AsgModify, |s| {
                s.record_heartbeat(group, hook, instance_id)
            }),
        )
    }
}
