//! SDK-backed implementations of `capstan-aws-api`'s traits.
//!
//! One shared AWS SDK configuration ([`AwsSettings`] → [`SharedConfig`]: the standard
//! credential chain, a region, an optional `endpoint_url` for moto or LocalStack),
//! loaded once on first use and shared by every client made from it; one client type
//! per service ([`SdkSqs`], [`SdkCloudWatch`], [`SdkEcs`], [`SdkElb`],
//! [`SdkAutoScaling`] for EC2 Auto Scaling); one mapping from SDK errors to
//! [`capstan_aws_api::AwsError`] ([`error`]).
//!
//! The SDK makes one attempt per call (see [`config`]): retrying is the caller's, so a
//! throttled call comes back as a retryable error at once and the caller's own
//! backoff decides when to try again.
//!
//! ECS calls are paced with AWS's own throttling buckets ([`pace`]), shared by the
//! clones of one [`SdkEcs`]. Auto Scaling calls are not paced (no buckets are
//! known for them; see [`autoscaling`]).
//!
//! Module map: [`config`], [`error`], [`time`], [`pace`], [`sqs`], [`cloudwatch`],
//! [`ecs`], [`elb`], [`autoscaling`].

pub mod autoscaling;
pub mod cloudwatch;
pub mod config;
pub mod ecs;
pub mod elb;
pub mod error;
pub mod pace;
pub mod sqs;
pub mod time;

pub use autoscaling::SdkAutoScaling;
pub use cloudwatch::SdkCloudWatch;
pub use config::{AwsSettings, SharedConfig, static_config};
pub use ecs::SdkEcs;
pub use elb::SdkElb;
pub use sqs::SdkSqs;
