//! The `ecs_cluster` source against the world model of ECS (container instances of an
//! Auto Scaling group, services placed on them): reservation exactly as reserved ÷
//! registered over the ACTIVE hosts, pending tasks as the tasks the services want and
//! ECS could not place, and the errors of a cluster without hosts or without a name.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use capstan_aws_api::{ContainerInstanceStatus, Ecs};
use capstan_core::clock::VirtualClock;
use capstan_sources::ErrorClass;
use capstan_sources::Source;
use capstan_sources::aws::AwsSpec;
use capstan_sources::ecs_cluster::{ClusterMetric, EcsClusterSource, EcsClusterSpec};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, LaunchType, ServiceSpec, World, WorldConfig,
};

const CLUSTER: &str = "prod";

/// A cluster of `hosts` hosts (4096 CPU units, 7482 MiB each) with an EC2 service of
/// `tasks` tasks of 1024 CPU units / 2048 MiB (3 fit on a host).
fn cluster(hosts: u32, tasks: u32) -> (World, VirtualClock) {
    let clock = VirtualClock::at_epoch();
    let world = World::new(
        WorldConfig {
            seed: 3,
            rate_limits: false,
            ..WorldConfig::default()
        },
        clock.clone(),
    );
    world
        .add_cluster(ClusterSpec {
            name: CLUSTER.into(),
            groups: vec![AutoScalingGroupSpec {
                name: "asg".into(),
                min: 0,
                max: 10,
                desired: hosts,
                ..AutoScalingGroupSpec::default()
            }],
        })
        .unwrap();
    world
        .add_service(ServiceSpec {
            cluster: CLUSTER.into(),
            name: "app".into(),
            launch_type: LaunchType::Ec2,
            desired: tasks,
            ..ServiceSpec::default()
        })
        .unwrap();
    (world, clock)
}

fn source(world: &World, cluster: &str, metric: ClusterMetric) -> EcsClusterSource<World> {
    EcsClusterSource::new(
        world.clone(),
        &EcsClusterSpec {
            cluster: cluster.into(),
            metric,
            aws: AwsSpec::default(),
        },
        Duration::from_secs(5),
    )
}

#[tokio::test]
async fn reservation_is_reserved_over_registered_of_the_active_hosts() {
    // 4 tasks on 3 hosts.
    let (world, _clock) = cluster(3, 4);
    let cpu = source(&world, CLUSTER, ClusterMetric::CpuReservation)
        .read()
        .await
        .unwrap();
    let memory = source(&world, CLUSTER, ClusterMetric::MemoryReservation)
        .read()
        .await
        .unwrap();
    assert!(
        (cpu - 4.0 * 1024.0 / (3.0 * 4096.0) * 100.0).abs() < 1e-9,
        "{cpu}"
    );
    assert!(
        (memory - 4.0 * 2048.0 / (3.0 * 7482.0) * 100.0).abs() < 1e-9,
        "{memory}"
    );
    // A DRAINING host leaves both sums (its tasks move to the others).
    let arns = world.list_container_instances(CLUSTER, None).await.unwrap();
    let (hosts, _) = world
        .describe_container_instances(CLUSTER, &arns)
        .await
        .unwrap();
    let drained = &hosts[0];
    world
        .update_container_instances_state(
            CLUSTER,
            std::slice::from_ref(&drained.arn),
            ContainerInstanceStatus::Draining,
        )
        .await
        .unwrap();
    // ECS places the drained host's replacements on the others at once: what the
    // two ACTIVE hosts reserve now, over their CPU alone.
    let (hosts, _) = world
        .describe_container_instances(CLUSTER, &arns)
        .await
        .unwrap();
    let active: Vec<_> = hosts
        .iter()
        .filter(|h| h.status == ContainerInstanceStatus::Active)
        .collect();
    assert_eq!(active.len(), 2);
    let reserved: u32 = active
        .iter()
        .map(|h| h.registered_cpu - h.remaining_cpu)
        .sum();
    let cpu = source(&world, CLUSTER, ClusterMetric::CpuReservation)
        .read()
        .await
        .unwrap();
    let expected = f64::from(reserved) / (2.0 * 4096.0) * 100.0;
    assert!((cpu - expected).abs() < 1e-9, "{cpu} vs {expected}");
}

#[tokio::test]
async fn pending_tasks_are_those_no_host_has_room_for() {
    // 12 tasks wanted, room for 9 on 3 hosts.
    let (world, _clock) = cluster(3, 12);
    let pending = source(&world, CLUSTER, ClusterMetric::PendingTasks)
        .read()
        .await
        .unwrap();
    assert!((pending - 3.0).abs() < f64::EPSILON, "{pending}");
    // Room for all: none.
    let (world, _clock) = cluster(4, 12);
    let pending = source(&world, CLUSTER, ClusterMetric::PendingTasks)
        .read()
        .await
        .unwrap();
    assert!(pending.abs() < f64::EPSILON, "{pending}");
}

#[tokio::test]
async fn no_active_host_or_no_cluster_is_not_found_never_zero() {
    let (world, _clock) = cluster(0, 2);
    let e = source(&world, CLUSTER, ClusterMetric::CpuReservation)
        .read()
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
    assert!(
        e.to_string().contains("no ACTIVE container instance"),
        "{e}"
    );
    // Its services' tasks wait for a host.
    let pending = source(&world, CLUSTER, ClusterMetric::PendingTasks)
        .read()
        .await
        .unwrap();
    assert!((pending - 2.0).abs() < f64::EPSILON, "{pending}");

    let e = source(&world, "nope", ClusterMetric::PendingTasks)
        .read()
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::NotFound, "{e}");
    assert!(e.to_string().contains("nope"), "{e}");
}
