//! What the AWS sources (`sqs`, `cloudwatch`, `ecs`) share: the AWS settings of a
//! source ([`AwsSpec`]) and the mapping of [`AwsError`] to [`ReadError`].
//!
//! How the sources get clients: [`crate::sqs::SqsSource`] and
//! [`crate::cloudwatch::CloudWatchSource`] are generic over `capstan-aws-api`'s traits
//! (tests give them any implementation); [`crate::build`] gives them the SDK-backed
//! ones of `capstan-aws-sdk`, compiled with the `aws` cargo feature (on by default).
//! Without the feature, building an AWS source is a config error.

use capstan_aws_api::{AwsError, AwsErrorKind};

use crate::error::ReadError;

/// The AWS settings of one source. Credentials always come from the standard chain
/// (environment, shared files, SSO, web identity, ECS task role, instance profile).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsSpec {
    /// The region; `None` takes the standard chain's.
    pub region: Option<String>,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared config files.
    pub profile: Option<String>,
}

impl AwsSpec {
    /// Where calls go, for messages: `"{service} {endpoint or region}"`.
    pub fn target(&self, service: &str) -> String {
        match (&self.endpoint_url, &self.region) {
            (Some(url), _) => format!("{service} {}", crate::error::redact_url_str(url)),
            (None, Some(region)) => format!("{service} {region}"),
            (None, None) => format!("{service} (default region)"),
        }
    }

    /// The SDK settings of this spec, cutting connection attempts at `timeout`.
    #[cfg(feature = "aws")]
    pub(crate) fn sdk_settings(
        &self,
        timeout: std::time::Duration,
    ) -> capstan_aws_sdk::AwsSettings {
        capstan_aws_sdk::AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            profile: self.profile.clone(),
            connect_timeout: Some(timeout),
            operation_timeout: None,
        }
    }
}

/// `error` as a [`ReadError`]: access denied is `auth`, a missing resource `not_found`
/// (naming `what`), throttling and AWS failures `server`, a transport failure
/// `connect`, an invalid parameter `config`, an unreadable answer `malformed`.
pub fn read_error(target: &str, what: &str, error: AwsError) -> ReadError {
    let target = target.to_owned();
    let reason = error.to_string();
    match error.kind {
        AwsErrorKind::AccessDenied => ReadError::Auth { target, reason },
        AwsErrorKind::NotFound => ReadError::NotFound {
            target,
            what: what.to_owned(),
        },
        AwsErrorKind::Transport => ReadError::Connect { target, reason },
        AwsErrorKind::InvalidParameter => ReadError::Config(format!("{target}: {reason}")),
        AwsErrorKind::Other { ref code } if code == "MalformedResponse" => {
            ReadError::Malformed { target, reason }
        }
        AwsErrorKind::Throttling
        | AwsErrorKind::Server
        | AwsErrorKind::Conflict
        | AwsErrorKind::Other { .. } => ReadError::Server { target, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    #[test]
    fn aws_errors_get_their_class() {
        let class =
            |kind| read_error("SQS x", "queue \"q\"", AwsError::new("Op", kind, "m")).class();
        assert_eq!(class(AwsErrorKind::AccessDenied), ErrorClass::Auth);
        assert_eq!(class(AwsErrorKind::NotFound), ErrorClass::NotFound);
        assert_eq!(class(AwsErrorKind::Transport), ErrorClass::Connect);
        assert_eq!(class(AwsErrorKind::Throttling), ErrorClass::Server);
        assert_eq!(class(AwsErrorKind::Server), ErrorClass::Server);
        assert_eq!(class(AwsErrorKind::InvalidParameter), ErrorClass::Config);
        assert_eq!(
            class(AwsErrorKind::Other {
                code: "MalformedResponse".into()
            }),
            ErrorClass::Malformed
        );
    }

    #[test]
    fn targets_name_the_endpoint_or_region() {
        let spec = AwsSpec {
            region: Some("eu-west-1".into()),
            ..AwsSpec::default()
        };
        assert_eq!(spec.target("SQS"), "SQS eu-west-1");
        let spec = AwsSpec {
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            ..spec
        };
        assert_eq!(spec.target("SQS"), "SQS http://127.0.0.1:5000/");
    }
}
