//! Errors of building a world (bad specs, duplicate or unknown names). AWS operations
//! fail with [`capstan_aws_api::AwsError`] instead.

/// Why a world could not be built or changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// A spec field is out of range or inconsistent.
    #[error("{what}: field `{field}`: {reason}")]
    InvalidSpec {
        /// The spec (e.g. `service default/app`).
        what: String,
        /// The field.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A cluster, service, group or target group with that name already exists.
    #[error("{what} already exists")]
    Duplicate {
        /// What (e.g. `service default/app`).
        what: String,
    },
    /// No such cluster or service.
    #[error("{what} does not exist")]
    NotFound {
        /// What (e.g. `service default/app`).
        what: String,
    },
}

impl WorldError {
    /// An [`InvalidSpec`](Self::InvalidSpec) error.
    pub(crate) fn invalid(what: &str, field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidSpec {
            what: what.to_owned(),
            field,
            reason: reason.into(),
        }
    }
}
