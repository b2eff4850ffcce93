//! SDK-backed implementations of `capstan-aws-api`'s traits.
//!
//! One shared AWS SDK configuration ([`AwsSettings`] → [`SharedConfig`]: the standard
//! credential chain, a region, an optional `endpoint_url` for moto or LocalStack),
//! loaded once on first use and shared by every client made from it; one client type
//! per service ([`SdkSqs`], [`SdkCloudWatch`]); one mapping from SDK errors to
//! [`capstan_aws_api::AwsError`] ([`error`]). Later services (ECS, ELBv2, Auto
//! Scaling) add a module each on the same [`SharedConfig`].
//!
//! Module map: [`config`], [`error`], [`sqs`], [`cloudwatch`].

pub mod cloudwatch;
pub mod config;
pub mod error;
pub mod sqs;

pub use cloudwatch::SdkCloudWatch;
pub use config::{AwsSettings, SharedConfig, static_config};
pub use sqs::SdkSqs;
