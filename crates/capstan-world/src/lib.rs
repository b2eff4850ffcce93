//! A model of ECS, ELBv2 and EC2 Auto Scaling on a virtual clock.
//!
//! One model, two uses: the simulator runs capstan and AWS's own scaling against it,
//! and behaviour tests put it behind capstan's AWS traits ([`capstan_aws_api::Ecs`],
//! [`capstan_aws_api::Elb`], [`capstan_aws_api::AutoScaling`]) in place of AWS. It
//! follows `AWS-SEMANTICS.md`: the service scheduler follows `desiredCount` and picks
//! scale-in victims by zone balance (blind to sessions), task protection with expiry,
//! the task lifecycle with DEACTIVATING and the stop timeout, target groups (IP targets
//! for awsvpc tasks, instance targets on dynamic host ports for bridge networking) with
//! the deregistration delay and `draining`, container instances with DRAINING, Auto
//! Scaling groups with lifecycle hooks, API rate limits as token buckets, and faults
//! injected on demand.
//!
//! Time: the world reads its [`Clock`](capstan_core::clock::Clock) and catches up to
//! "now" at every API call and at every [`World::advance`]; it never sleeps.
//!
//! Determinism: every random choice (ids, ECS's "arbitrary" scale-in victim, fault
//! draws) comes from generators seeded by [`WorldConfig::seed`], so the same seed and
//! the same calls at the same instants give the same world.
//!
//! Module map: [`spec`] (what a world is made of), [`view`] (what the simulator sees),
//! [`World`] (the handle: building, stepping, reading, faults), the AWS trait
//! implementations (in `api`), [`FaultRule`] (injected errors), [`ApiStats`] (calls
//! per operation; rate limits as token buckets, AWS-SEMANTICS §8), [`WorldError`].
//! The model itself lives in the private `state` module: the task lifecycle, the
//! service scheduler, target groups, task protection and Auto Scaling groups.

mod api;
pub mod error;
mod faults;
mod limits;
pub mod spec;
mod state;
pub mod view;
mod world;

pub use error::WorldError;
pub use faults::FaultRule;
pub use limits::{ApiStats, OperationStats};
pub use spec::{
    AutoScalingGroupSpec, ClusterSpec, HookSpec, HookTransition, LaunchType, NetworkMode,
    ServiceSpec, TargetGroupSpec, WorldConfig,
};
pub use view::{
    ClusterState, Event, GroupState, InstanceState, ServiceCounts, TaskHandle, TaskInfo,
};
pub use world::World;
