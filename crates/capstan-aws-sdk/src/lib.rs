//! SDK-backed implementations of `capstan-aws-api`'s traits.
//!
//! One shared AWS SDK configuration ([`AwsSettings`] → [`SharedConfig`]: the standard
//! credential chain, a region, an optional `endpoint_url` for moto or LocalStack),
//! loaded once on first use and shared by every client made from it; one client type
//! per service ([`SdkSqs`], [`SdkCloudWatch`], [`SdkEcs`], [`SdkElb`]); one mapping
//! from SDK errors to [`capstan_aws_api::AwsError`] ([`error`]). Auto Scaling will add a
//! module on the same [`SharedConfig`].
//!
//! The SDK makes one attempt per call (see [`config`]): retrying is the caller's, so a
//! throttled call comes back as a retryable error at once and the caller's own
//! backoff decides when to try again.
//!
//! ECS calls are paced with AWS's own throttling buckets ([`pace`]), shared by the
//! clones of one [`SdkEcs`].
//!
//! Module map: [`config`], [`error`], [`time`], [`pace`], [`sqs`], [`cloudwatch`],
//! [`ecs`], [`elb`].

pub mod cloudwatch;
pub mod config;
pub mod ecs;
pub mod elb;
pub mod error;
pub mod pace;
pub mod sqs;
pub mod time;

pub use cloudwatch::SdkCloudWatch;
pub use config::{AwsSettings, SharedConfig, static_config};
pub use ecs::SdkEcs;
pub use elb::SdkElb;
pub use sqs::SdkSqs;
