//! Errors of the sources: which source failed ([`SourceError`]) and why ([`ReadError`]).
//!
//! Messages are written for an operator reading a log line or a decision's reason. They
//! never carry secrets: HTTP header values are never included and URLs are shown without
//! their user name and password.

use std::time::Duration;

/// A source could not be built or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("source {name:?}: {error}")]
pub struct SourceError {
    /// The source's name, as in the configuration.
    pub name: String,
    /// What went wrong.
    pub error: ReadError,
}

impl SourceError {
    /// Attaches the source's name to `error`.
    pub fn new(name: &str, error: ReadError) -> Self {
        Self {
            name: name.to_owned(),
            error,
        }
    }
}

/// Why a source could not be built or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The settings cannot work (found when the source is built).
    #[error("invalid settings: {0}")]
    Config(String),
    /// The read took longer than the source's timeout (a command is killed).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The program could not be started.
    #[error("cannot start {program:?}: {reason}")]
    Spawn {
        /// The program, as configured.
        program: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The program exited unsuccessfully.
    #[error("exited with {status}; stderr: {stderr:?}")]
    Exit {
        /// The exit status (code or signal).
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// Reading the program's output failed.
    #[error("reading output failed: {0}")]
    Io(String),
    /// The output does not hold exactly one number.
    #[error("{0}")]
    Parse(String),
    /// The HTTP request could not be made (connection refused, TLS, DNS, ...).
    #[error("GET {url} failed: {reason}")]
    Request {
        /// The URL, without credentials.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with a status other than 2xx.
    #[error("GET {url} answered HTTP {status}")]
    Status {
        /// The URL, without credentials.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The response body is not usable JSON (or is too large).
    #[error("GET {url}: {reason}")]
    Body {
        /// The URL, without credentials.
        url: String,
        /// What is wrong with the body.
        reason: String,
    },
    /// The JSON pointer does not lead to a number.
    #[error("{reason}")]
    Pointer {
        /// The configured pointer ("" is the whole body).
        pointer: String,
        /// What was found instead, naming the pointer.
        reason: String,
    },
    /// The value was read but is not acceptable (NaN, infinite, a negative count).
    #[error("value {value} rejected: {reason}")]
    Rejected {
        /// The value as read.
        value: f64,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl ReadError {
    /// A short, bounded label for this kind of failure (for metrics and log fields).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Timeout(_) => "timeout",
            Self::Spawn { .. } => "spawn",
            Self::Exit { .. } => "exit",
            Self::Io(_) => "io",
            Self::Parse(_) => "parse",
            Self::Request { .. } => "request",
            Self::Status { .. } => "status",
            Self::Body { .. } => "body",
            Self::Pointer { .. } => "pointer",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// At most `max` characters of `text`, with "…" appended when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_on_char_boundaries() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("ééééé", 2), "éé…");
    }

    #[test]
    fn display_names_the_source_and_the_reason() {
        let e = SourceError::new("queue", ReadError::Timeout(Duration::from_millis(200)));
        assert_eq!(e.to_string(), "source \"queue\": timed out after 200ms");
        let e = SourceError::new(
            "q",
            ReadError::Rejected {
                value: f64::NAN,
                reason: "not a finite number",
            },
        );
        assert_eq!(
            e.to_string(),
            "source \"q\": value NaN rejected: not a finite number"
        );
    }
}
