//! Amazon SQS: the queue attributes capstan reads as a backlog.

use std::future::Future;

use serde::Serialize;

use crate::error::AwsError;

/// The message counts of one queue (`GetQueueAttributes`). AWS documents them as
/// approximate; they are exact on an idle queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// `ApproximateNumberOfMessages`: messages available to receive.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: messages received and not yet deleted
    /// (in flight).
    pub not_visible: u64,
    /// `ApproximateNumberOfMessagesDelayed`: messages not yet available because of a
    /// delay.
    pub delayed: u64,
}

/// The SQS operations capstan calls. `queue_url` is a queue URL as SQS returns it.
pub trait Sqs: Send + Sync + 'static {
    /// `GetQueueUrl`: the URL of the queue named `name` (in the client's account and
    /// region). A missing queue is [`crate::AwsErrorKind::NotFound`].
    fn queue_url(&self, name: &str) -> impl Future<Output = Result<String, AwsError>> + Send;

    /// `GetQueueAttributes` for the three message counts. A missing queue is
    /// [`crate::AwsErrorKind::NotFound`]; an attribute missing from the answer is
    /// [`crate::AwsErrorKind::Other`] with code `MalformedResponse`.
    fn queue_counts(
        &self,
        queue_url: &str,
    ) -> impl Future<Output = Result<QueueCounts, AwsError>> + Send;
}
