//! A model of ECS, ELBv2 and EC2 Auto Scaling on a virtual clock.
//!
//! One model, two uses: the simulator runs capstan and AWS's own scaling against it,
//! and behaviour tests put it behind capstan's AWS traits ([`capstan_aws_api::Ecs`],
//! [`capstan_aws_api::Elb`], [`capstan_aws_api::AutoScaling`]) in place of AWS. It
//! follows `AWS-SEMANTICS.md`: the service scheduler follows `desiredCount` and picks
//! scale-in victims by zone balance (blind to sessions), task protection with expiry,
//! the task lifecycle with DEACTIVATING and the stop timeout, target groups with the
//! deregistration delay and `draining`, container instances with DRAINING, Auto
//! Scaling groups with lifecycle hooks, API rate limits as token buckets, and faults
//! injected on demand.
//!
//! Time: the world reads its [`Clock`](capstan_core::clock::Clock) and catches up to
//! "now" at every API call and at every [`World::advance`]; it never sleeps.
//!
//! Module map: [`spec`] (what a world is made of), [`view`] (what the simulator sees).

pub mod spec;
pub mod view;

pub use spec::{
    AutoScalingGroupSpec, ClusterSpec, HookSpec, HookTransition, LaunchType, ServiceSpec,
    TargetGroupSpec, WorldConfig,
};
pub use view::{Event, TaskInfo};
