//! The one error type of every AWS operation.

use serde::Serialize;

/// What kind of failure an AWS call met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AwsErrorKind {
    /// The request was throttled (`ThrottlingException`, `Throttling`, `RequestLimitExceeded`,
    /// HTTP 429). Retry with backoff.
    Throttling,
    /// AWS failed (HTTP 5xx, `ServerException`, `ServiceUnavailable`). Retry with backoff.
    Server,
    /// The request could not be sent or the answer not read (connection, timeout).
    /// Retry with backoff.
    Transport,
    /// A parameter is invalid (`InvalidParameterException`, a batch over AWS's limit).
    /// Retrying the same request cannot help.
    InvalidParameter,
    /// A named resource does not exist (`ServiceNotFoundException`,
    /// `ClusterNotFoundException`, an unknown task, group or target group).
    NotFound,
    /// The resource is not in a state that allows the operation (e.g. protecting more
    /// tasks than `desiredCount`: `DEPLOYMENT_BLOCKED`; a lifecycle action on an
    /// instance that is not waiting).
    Conflict,
    /// Credentials are missing or lack a permission (`AccessDeniedException`).
    AccessDenied,
    /// Any other error code AWS returned.
    Other {
        /// AWS's error code.
        code: String,
    },
}

/// A failed AWS call: the operation, what kind of failure, and AWS's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{operation}: {kind_text}: {message}", kind_text = self.kind_text())]
pub struct AwsError {
    /// The operation, as AWS names it (`UpdateService`, `DescribeTasks`, ...).
    pub operation: &'static str,
    /// What kind of failure.
    pub kind: AwsErrorKind,
    /// AWS's message (or the transport's), never containing credentials.
    pub message: String,
}

impl AwsError {
    /// A new error.
    pub fn new(operation: &'static str, kind: AwsErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
        }
    }

    /// Whether retrying the same request later may succeed (throttling, server and
    /// transport failures).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            AwsErrorKind::Throttling | AwsErrorKind::Server | AwsErrorKind::Transport
        )
    }

    /// A short name of the kind, as shown in messages.
    pub fn kind_text(&self) -> String {
        match &self.kind {
            AwsErrorKind::Throttling => "throttled".into(),
            AwsErrorKind::Server => "AWS server error".into(),
            AwsErrorKind::Transport => "cannot reach AWS".into(),
            AwsErrorKind::InvalidParameter => "invalid parameter".into(),
            AwsErrorKind::NotFound => "not found".into(),
            AwsErrorKind::Conflict => "not allowed in the current state".into(),
            AwsErrorKind::AccessDenied => "access denied".into(),
            AwsErrorKind::Other { code } => code.clone(),
        }
    }

    /// The error for a batch larger than AWS accepts.
    pub fn batch_too_large(operation: &'static str, got: usize, max: usize) -> Self {
        Self::new(
            operation,
            AwsErrorKind::InvalidParameter,
            format!("{got} items in one call; AWS accepts at most {max}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_operation_and_kind() {
        let e = AwsError::new("UpdateService", AwsErrorKind::Throttling, "Rate exceeded");
        assert_eq!(e.to_string(), "UpdateService: throttled: Rate exceeded");
        assert!(e.is_retryable());
        let e = AwsError::batch_too_large("UpdateTaskProtection", 11, 10);
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "UpdateTaskProtection: invalid parameter: 11 items in one call; AWS accepts at most 10"
        );
    }
}
