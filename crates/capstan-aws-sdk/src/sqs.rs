//! [`Sqs`] through `aws-sdk-sqs`.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use capstan_aws_api::{AwsError, AwsErrorKind, QueueCounts, Sqs};

use crate::config::{LazyClient, SharedConfig};
use crate::error::{MALFORMED_RESPONSE, from_sdk};

/// The SQS client, made from a [`SharedConfig`] on first use.
#[derive(Debug, Clone)]
pub struct SdkSqs {
    client: LazyClient<Client>,
}

impl SdkSqs {
    /// A client on `config` (loaded on the first call). Clones share the client.
    pub fn new(config: SharedConfig) -> Self {
        Self {
            client: LazyClient::new(config, Client::new),
        }
    }

    /// The configuration it uses.
    pub fn config(&self) -> &SharedConfig {
        self.client.config()
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }
}

/// One count attribute, parsed.
fn count(
    attributes: Option<&std::collections::HashMap<QueueAttributeName, String>>,
    name: QueueAttributeName,
) -> Result<u64, AwsError> {
    let malformed = |message: String| {
        AwsError::new(
            "GetQueueAttributes",
            AwsErrorKind::Other {
                code: MALFORMED_RESPONSE.to_owned(),
            },
            message,
        )
    };
    let text = attributes
        .and_then(|a| a.get(&name))
        .ok_or_else(|| malformed(format!("the answer has no {}", name.as_str())))?;
    text.trim()
        .parse()
        .map_err(|_| malformed(format!("{} is {text:?}, not a count", name.as_str())))
}

impl Sqs for SdkSqs {
    async fn queue_url(&self, name: &str) -> Result<String, AwsError> {
        let out = self
            .client()
            .await
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| from_sdk("GetQueueUrl", e))?;
        out.queue_url().map(str::to_owned).ok_or_else(|| {
            AwsError::new(
                "GetQueueUrl",
                AwsErrorKind::Other {
                    code: MALFORMED_RESPONSE.to_owned(),
                },
                "the answer has no QueueUrl",
            )
        })
    }

    async fn queue_counts(&self, queue_url: &str) -> Result<QueueCounts, AwsError> {
        let out = self
            .client()
            .await
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| from_sdk("GetQueueAttributes", e))?;
        let attributes = out.attributes();
        Ok(QueueCounts {
            visible: count(attributes, QueueAttributeName::ApproximateNumberOfMessages)?,
            not_visible: count(
                attributes,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )?,
            delayed: count(
                attributes,
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            )?,
        })
    }
}
