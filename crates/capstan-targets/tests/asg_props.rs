//! Properties of the EC2 cluster host target against the world model, under random
//! scale-outs, scale-ins and time, with 20 % of AWS calls failing: no task ever dies
//! with its host, the service never runs fewer tasks than it wants, and the group never
//! goes below its min.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use capstan_aws_api::AwsErrorKind;
use capstan_core::clock::VirtualClock;
use capstan_core::victim;
use capstan_targets::Target;
use capstan_targets::asg::{AsgTarget, AsgTargetSpec};
use capstan_world::{
    AutoScalingGroupSpec, ClusterSpec, Event, FaultRule, LaunchType, ServiceSpec, World,
    WorldConfig,
};
use proptest::prelude::*;

const TASKS: u32 = 5;
const MIN: u32 = 1;

#[derive(Debug, Clone)]
enum Op {
    /// Seconds to let pass (observing every 10 s).
    Wait(u64),
    /// Hosts to add.
    Out(u32),
    /// Hosts to remove.
    In(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..=240).prop_map(Op::Wait),
        1 => (1u32..=2).prop_map(Op::Out),
        2 => (1u32..=2).prop_map(Op::In),
    ]
}

struct Run {
    world: World,
    clock: VirtualClock,
    target: AsgTarget<World, World>,
    events: Vec<Event>,
}

impl Run {
    fn new(seed: u64) -> Self {
        let clock = VirtualClock::at_epoch();
        let world = World::new(
            WorldConfig {
                seed,
                rate_limits: false,
                ..WorldConfig::default()
            },
            clock.clone(),
        );
        world
            .add_cluster(ClusterSpec {
                name: "default".into(),
                groups: vec![AutoScalingGroupSpec {
                    min: MIN,
                    max: 8,
                    desired: 4,
                    ..AutoScalingGroupSpec::default()
                }],
            })
            .unwrap();
        world
            .add_service(ServiceSpec {
                launch_type: LaunchType::Ec2,
                desired: TASKS,
                minimum_healthy_percent: 100,
                maximum_percent: 200,
                ..ServiceSpec::default()
            })
            .unwrap();
        world.inject_fault(FaultRule {
            operation: None,
            kind: AwsErrorKind::Server,
            times: None,
            probability: 0.2,
        });
        let mut spec = AsgTargetSpec::new("default", "asg");
        spec.drain_timeout = Duration::from_secs(300);
        let target =
            AsgTarget::new("asg", spec, world.clone(), world.clone()).with_clock(clock.clone());
        Self {
            world,
            clock,
            target,
            events: Vec::new(),
        }
    }

    /// One second, then the invariants that must hold at every instant.
    fn tick(&mut self) -> Result<(), TestCaseError> {
        self.clock.advance(Duration::from_secs(1));
        let events = self.world.advance();
        for e in &events {
            if let Event::TaskStopped { reason, .. } = e {
                prop_assert!(
                    !reason.contains("terminated"),
                    "a task died with its host: {reason}"
                );
            }
        }
        self.events.extend(events);
        let n = self.world.service_counts("default", "app").unwrap();
        prop_assert!(n.running >= TASKS, "{} running, {TASKS} wanted", n.running);
        let cs = self.world.cluster_state("default").unwrap();
        prop_assert!(cs.groups[0].desired >= MIN);
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Wait(secs) => {
                for s in 0..*secs {
                    self.tick()?;
                    if s % 10 == 9 {
                        let _ = self.target.observe().await;
                    }
                }
            }
            Op::Out(n) => {
                if let Ok(o) = self.target.observe().await {
                    let _ = self.target.scale_out(o.capacity.desired + n).await;
                }
            }
            Op::In(n) => {
                if let Ok(o) = self.target.observe().await {
                    let to = o.capacity.desired.saturating_sub(*n);
                    let victims = victim::choose(&o.tasks, *n as usize);
                    let _ = self.target.scale_in(to, &victims).await;
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn hosts_go_only_once_drained(seed in 0u64..1000, ops in prop::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut run = Run::new(seed);
            for op in &ops {
                run.apply(op).await?;
            }
            // Calm: no faults, and time for every removal to end.
            run.world.clear_faults();
            run.apply(&Op::Wait(900)).await?;
            prop_assert!(run.target.removal_in_progress().await.is_none());
            let cs = run.world.cluster_state("default").unwrap();
            prop_assert!(
                cs.instances.iter().all(|i| i.status == capstan_aws_api::ContainerInstanceStatus::Active),
                "no host left DRAINING: {:?}", cs.instances
            );
            let terminated: Vec<&String> = run.events.iter().filter_map(|e| match e {
                Event::InstanceTerminated { instance_id, .. } => Some(instance_id),
                _ => None,
            }).collect();
            let mut unique = terminated.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), terminated.len(), "each host terminated once");
            Ok(())
        })?;
    }
}
