//! SDK errors to [`AwsError`]: throttling and 5xx are retryable, access denied and
//! missing credentials are `AccessDenied`, a missing queue or resource is `NotFound`,
//! an answer that cannot be read is `Other { code: "MalformedResponse" }`.

use std::error::Error;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use capstan_aws_api::{AwsError, AwsErrorKind};

/// The code of an answer that could not be read.
pub const MALFORMED_RESPONSE: &str = "MalformedResponse";

/// The [`AwsErrorKind`] of an AWS error code (and HTTP status, when the code is not
/// one capstan knows).
pub fn kind_of(code: &str, status: Option<u16>) -> AwsErrorKind {
    // Query-compatible services prefix codes ("AWS.SimpleQueueService.NonExistentQueue")
    // and JSON ones may carry a namespace ("com.amazonaws.sqs#QueueDoesNotExist").
    let short = code.rsplit(['#', '.']).next().unwrap_or(code);
    match short {
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown" => AwsErrorKind::Throttling,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "MissingAuthenticationToken"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "AuthFailure"
        | "NotAuthorized"
        | "OptInRequired"
        | "InvalidSecurity" => AwsErrorKind::AccessDenied,
        "NonExistentQueue"
        | "QueueDoesNotExist"
        | "ResourceNotFound"
        | "ResourceNotFoundException"
        | "NotFound"
        | "NotFoundException"
        | "ClusterNotFoundException"
        | "ServiceNotFoundException"
        | "TargetGroupNotFound"
        | "TargetGroupNotFoundException"
        | "LoadBalancerNotFound"
        | "LoadBalancerNotFoundException" => AwsErrorKind::NotFound,
        "ServiceNotActiveException"
        | "UpdateInProgressException"
        | "ResourceInUseException"
        | "ResourceInUse"
        | "ScalingActivityInProgress"
        | "ScalingActivityInProgressFault" => AwsErrorKind::Conflict,
        "InvalidParameterValue"
        | "InvalidParameterValueException"
        | "InvalidParameterCombination"
        | "InvalidParameterException"
        | "MissingParameter"
        | "MissingRequiredParameter"
        | "ValidationError"
        | "ValidationException"
        | "InvalidAttributeName"
        | "InvalidAddress"
        | "InvalidFormat"
        | "InvalidNextToken"
        | "InvalidTarget"
        | "InvalidTargetException"
        | "ClientException"
        | "SerializationException" => AwsErrorKind::InvalidParameter,
        "InternalFailure"
        | "InternalError"
        | "InternalServiceError"
        | "InternalServiceFault"
        | "InternalServiceException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "ServerException"
        | "ResourceContention" => AwsErrorKind::Server,
        _ => match status {
            Some(429) => AwsErrorKind::Throttling,
            Some(401 | 403) => AwsErrorKind::AccessDenied,
            Some(404) => AwsErrorKind::NotFound,
            Some(500..=599) => AwsErrorKind::Server,
            _ => AwsErrorKind::Other {
                code: code.to_owned(),
            },
        },
    }
}

/// The error of an answer that came back but could not be read as `operation`'s
/// (a missing field, a value out of range), saying what is wrong.
pub fn malformed(operation: &'static str, message: impl Into<String>) -> AwsError {
    AwsError::new(
        operation,
        AwsErrorKind::Other {
            code: MALFORMED_RESPONSE.to_owned(),
        },
        message,
    )
}

/// Maps a failed SDK call of `operation` to an [`AwsError`].
pub fn from_sdk<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let text = DisplayErrorContext(&error).to_string();
    match &error {
        // A success status whose body could not be read as the operation's answer.
        SdkError::ServiceError(service) if service.raw().status().is_success() => AwsError::new(
            operation,
            AwsErrorKind::Other {
                code: MALFORMED_RESPONSE.to_owned(),
            },
            text,
        ),
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let err = service.err();
            let code = err.code().unwrap_or("");
            let message = err.message().unwrap_or("").to_owned();
            let kind = if code.is_empty() {
                kind_of(&format!("HTTP {status}"), Some(status))
            } else {
                kind_of(code, Some(status))
            };
            let message = match (code.is_empty(), message.is_empty()) {
                (true, true) => format!("HTTP {status}"),
                (false, true) => code.to_owned(),
                (true, false) => format!("HTTP {status}: {message}"),
                (false, false) => format!("{code}: {message}"),
            };
            AwsError::new(operation, kind, message)
        }
        SdkError::TimeoutError(_) => AwsError::new(operation, AwsErrorKind::Transport, "timed out"),
        SdkError::DispatchFailure(dispatch) => {
            if dispatch.is_timeout() {
                AwsError::new(
                    operation,
                    AwsErrorKind::Transport,
                    format!("timed out: {text}"),
                )
            } else if mentions_credentials(&text) {
                AwsError::new(operation, AwsErrorKind::AccessDenied, text)
            } else {
                AwsError::new(operation, AwsErrorKind::Transport, text)
            }
        }
        SdkError::ResponseError(_) => AwsError::new(
            operation,
            AwsErrorKind::Other {
                code: MALFORMED_RESPONSE.to_owned(),
            },
            text,
        ),
        // Building the request failed: most often no credentials or no region.
        _ if mentions_credentials(&text) => {
            AwsError::new(operation, AwsErrorKind::AccessDenied, text)
        }
        _ => AwsError::new(operation, AwsErrorKind::InvalidParameter, text),
    }
}

fn mentions_credentials(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("credential") || lower.contains("identity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let k = |code: &str, status| kind_of(code, Some(status));
        assert_eq!(
            k("AWS.SimpleQueueService.NonExistentQueue", 400),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            k("com.amazonaws.sqs#QueueDoesNotExist", 400),
            AwsErrorKind::NotFound
        );
        assert_eq!(k("ThrottlingException", 400), AwsErrorKind::Throttling);
        assert_eq!(k("Whatever", 429), AwsErrorKind::Throttling);
        assert_eq!(k("AccessDeniedException", 400), AwsErrorKind::AccessDenied);
        assert_eq!(k("InvalidClientTokenId", 403), AwsErrorKind::AccessDenied);
        assert_eq!(
            k("InvalidParameterValue", 400),
            AwsErrorKind::InvalidParameter
        );
        assert_eq!(k("InternalServiceFault", 500), AwsErrorKind::Server);
        assert_eq!(k("Odd", 503), AwsErrorKind::Server);
        assert_eq!(k("ServiceNotFoundException", 400), AwsErrorKind::NotFound);
        assert_eq!(k("ClusterNotFoundException", 400), AwsErrorKind::NotFound);
        assert_eq!(k("TargetGroupNotFound", 400), AwsErrorKind::NotFound);
        assert_eq!(k("ServiceNotActiveException", 400), AwsErrorKind::Conflict);
        assert_eq!(k("ClientException", 400), AwsErrorKind::InvalidParameter);
        assert_eq!(k("Odd", 400), AwsErrorKind::Other { code: "Odd".into() });
    }
}
