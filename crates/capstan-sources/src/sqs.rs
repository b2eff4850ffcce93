//! The `sqs` source: the backlog of one SQS queue from `GetQueueAttributes`:
//! `ApproximateNumberOfMessages` (visible), plus `...NotVisible` (received, not yet
//! deleted: `include_in_flight`, on by default), plus `...Delayed`
//! (`include_delayed`, off by default).
//!
//! - The queue is given by URL, or by name (resolved with `GetQueueUrl` on the first
//!   read and kept).
//! - The whole read is cut at the source's timeout.
//! - Errors: access denied `auth`, a missing queue `not_found`, throttling and AWS
//!   failures `server`, unreachable endpoint `connect`, naming the endpoint or region.

use std::time::Duration;

use capstan_aws_api::Sqs;
use tokio::sync::OnceCell;

use crate::aws::{AwsSpec, read_error};
use crate::error::ReadError;
use crate::{BoxFuture, Source};

/// Which queue a source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRef {
    /// A queue URL (`https://sqs.eu-west-1.amazonaws.com/123456789012/jobs`).
    Url(String),
    /// A queue name in the source's account and region.
    Name(String),
}

/// An `sqs` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSpec {
    /// The queue.
    pub queue: QueueRef,
    /// Count messages received and not yet deleted (default on).
    pub include_in_flight: bool,
    /// Count delayed messages (default off).
    pub include_delayed: bool,
    /// Region, endpoint, profile.
    pub aws: AwsSpec,
}

/// An `sqs` source over any [`Sqs`] client.
pub struct SqsSource<S> {
    client: S,
    spec: SqsSpec,
    /// The queue's URL, once known.
    url: OnceCell<String>,
    /// The endpoint as shown in errors.
    target: String,
    timeout: Duration,
}

impl<S: Sqs> SqsSource<S> {
    /// A source reading `spec`'s queue through `client`, each read cut at `timeout`.
    pub fn new(client: S, spec: &SqsSpec, timeout: Duration) -> Self {
        let url = match &spec.queue {
            QueueRef::Url(url) => OnceCell::new_with(Some(url.clone())),
            QueueRef::Name(_) => OnceCell::new(),
        };
        Self {
            client,
            target: spec.aws.target("SQS"),
            spec: spec.clone(),
            url,
            timeout,
        }
    }

    fn what(&self) -> String {
        match &self.spec.queue {
            QueueRef::Url(url) => format!("queue {url}"),
            QueueRef::Name(name) => format!("queue {name:?}"),
        }
    }

    async fn query(&self) -> Result<f64, ReadError> {
        let url = self
            .url
            .get_or_try_init(|| async {
                match &self.spec.queue {
                    QueueRef::Url(url) => Ok(url.clone()),
                    QueueRef::Name(name) => self
                        .client
                        .queue_url(name)
                        .await
                        .map_err(|e| read_error(&self.target, &self.what(), e)),
                }
            })
            .await?;
        let counts = self
            .client
            .queue_counts(url)
            .await
            .map_err(|e| read_error(&self.target, &self.what(), e))?;
        let mut total = counts.visible;
        if self.spec.include_in_flight {
            total = total.saturating_add(counts.not_visible);
        }
        if self.spec.include_delayed {
            total = total.saturating_add(counts.delayed);
        }
        #[allow(clippy::cast_precision_loss)] // queue depths are far below 2^53
        Ok(total as f64)
    }
}

impl<S: Sqs> Source for SqsSource<S> {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(crate::error::within(self.timeout, self.query()))
    }
}

/// The SDK-backed source of `spec`.
#[cfg(feature = "aws")]
pub fn build_sdk(spec: &SqsSpec, timeout: Duration) -> SqsSource<capstan_aws_sdk::SdkSqs> {
    let config = capstan_aws_sdk::SharedConfig::new(spec.aws.sdk_settings(timeout));
    SqsSource::new(capstan_aws_sdk::SdkSqs::new(config), spec, timeout)
}
