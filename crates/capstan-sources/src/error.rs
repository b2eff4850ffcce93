//! Errors of the sources: which source failed ([`SourceError`]), why ([`ReadError`]),
//! and the class of the failure ([`ErrorClass`]) that errors are counted by.
//!
//! Messages are written for an operator reading a log line or a decision's reason. They
//! never carry secrets: HTTP header values and passwords are never included, and URLs
//! are shown without their user name and password ([`redact_url`], [`redact_url_str`]).
//!
//! Server clients (redis, postgres and mysql today; AMQP, NATS, Kafka, Prometheus next)
//! report with the generic variants [`ReadError::Connect`], [`ReadError::Auth`],
//! [`ReadError::NotFound`], [`ReadError::Server`] and [`ReadError::Malformed`], each
//! naming the server (`target`, redacted) and what failed.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

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
    /// The server could not be reached (refused, DNS, TLS handshake, connection lost).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// The server, as shown in messages (a URL without credentials).
        target: String,
        /// What failed.
        reason: String,
    },
    /// The server refused the credentials or the permission.
    #[error("{target} refused the credentials: {reason}")]
    Auth {
        /// The server, as shown in messages (a URL without credentials).
        target: String,
        /// The server's reason (never the password).
        reason: String,
    },
    /// What the source reads (a key, queue, table, consumer group) does not exist.
    #[error("{target}: {what} does not exist")]
    NotFound {
        /// The server, as shown in messages (a URL without credentials).
        target: String,
        /// What is missing, e.g. `key "jobs"`.
        what: String,
    },
    /// The server answered the query with an error of its own.
    #[error("{target} answered with an error: {reason}")]
    Server {
        /// The server, as shown in messages (a URL without credentials).
        target: String,
        /// The server's error.
        reason: String,
    },
    /// The server answered, but not with something that is one number (a key of the
    /// wrong type, a text column, several rows).
    #[error("{target}: {reason}")]
    Malformed {
        /// The server, as shown in messages (a URL without credentials).
        target: String,
        /// What was found instead.
        reason: String,
    },
}

/// The class of a failed read: what errors are counted and alerted by. A small, closed
/// set with stable snake_case labels ([`ErrorClass::label`]), the same for every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The settings cannot work, or the request they produce is refused as invalid
    /// (an HTTP 400, a redirect that is not followed).
    Config,
    /// The server or program could not be reached or started (refused, DNS, TLS,
    /// connection lost, a program that cannot be run).
    Connect,
    /// Credentials or permissions were refused (HTTP 401/403, a wrong password).
    Auth,
    /// The thing read does not exist (HTTP 404/410, a missing key, queue or table).
    NotFound,
    /// No answer within the source's timeout (a command is killed; HTTP 408/504).
    Timeout,
    /// An answer that is not one number (not JSON, a pointer to a string, a key of the
    /// wrong type, text on a command's output).
    Malformed,
    /// A number that breaks the boundary rules (NaN, infinite, a negative count).
    Rejected,
    /// The server or program failed on its side (HTTP 5xx, a query error, a command
    /// exiting unsuccessfully).
    Server,
}

impl ErrorClass {
    /// Every class, in declaration order (e.g. to export a zero counter for each).
    pub const ALL: [ErrorClass; 8] = [
        Self::Config,
        Self::Connect,
        Self::Auth,
        Self::NotFound,
        Self::Timeout,
        Self::Malformed,
        Self::Rejected,
        Self::Server,
    ];

    /// The stable snake_case label (`"not_found"`), for metrics labels and log fields.
    pub fn label(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Connect => "connect",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::Timeout => "timeout",
            Self::Malformed => "malformed",
            Self::Rejected => "rejected",
            Self::Server => "server",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Runs a read, cut at `timeout`: a read that takes longer is abandoned (dropped) and
/// is a [`ReadError::Timeout`].
pub(crate) async fn within(
    timeout: Duration,
    read: impl std::future::Future<Output = Result<f64, ReadError>>,
) -> Result<f64, ReadError> {
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(ReadError::Timeout(timeout)))
}

impl ReadError {
    /// The class of this failure, for counting ([`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Config(_) => ErrorClass::Config,
            Self::Timeout(_) => ErrorClass::Timeout,
            Self::Spawn { .. } | Self::Io(_) | Self::Request { .. } | Self::Connect { .. } => {
                ErrorClass::Connect
            }
            Self::Exit { .. } | Self::Server { .. } => ErrorClass::Server,
            Self::Parse(_) | Self::Body { .. } | Self::Pointer { .. } | Self::Malformed { .. } => {
                ErrorClass::Malformed
            }
            Self::Status { status, .. } => status_class(*status),
            Self::Rejected { .. } => ErrorClass::Rejected,
            Self::Auth { .. } => ErrorClass::Auth,
            Self::NotFound { .. } => ErrorClass::NotFound,
        }
    }

    /// A short, bounded label of the variant (finer than [`ReadError::class`]: `"exit"`,
    /// `"status"`, `"pointer"`), for log fields.
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
            Self::Connect { .. } => "connect",
            Self::Auth { .. } => "auth",
            Self::NotFound { .. } => "not_found",
            Self::Server { .. } => "server",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// The class of an HTTP status that is not 2xx.
fn status_class(status: u16) -> ErrorClass {
    match status {
        401 | 403 | 407 => ErrorClass::Auth,
        404 | 410 => ErrorClass::NotFound,
        408 | 504 => ErrorClass::Timeout,
        // Redirects are not followed, and other 4xx mean the request itself is wrong.
        300..=499 => ErrorClass::Config,
        _ => ErrorClass::Server,
    }
}

/// `url` without its user name and password.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials, which is fine as is.
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// `text` (a URL, possibly unparseable) without the user name and password in its
/// authority: everything between `://` and the last `@` before the path is dropped.
pub fn redact_url_str(text: &str) -> String {
    if let Ok(url) = Url::parse(text) {
        return redact_url(&url);
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => text.to_owned(),
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
    fn every_variant_has_a_class() {
        let t = || "redis://127.0.0.1:6379/0".to_owned();
        let status = |status| ReadError::Status { url: t(), status };
        let cases = [
            (ReadError::Config("x".into()), ErrorClass::Config),
            (
                ReadError::Timeout(Duration::from_secs(1)),
                ErrorClass::Timeout,
            ),
            (
                ReadError::Spawn {
                    program: "p".into(),
                    reason: "r".into(),
                },
                ErrorClass::Connect,
            ),
            (
                ReadError::Exit {
                    status: "exit status: 1".into(),
                    stderr: String::new(),
                },
                ErrorClass::Server,
            ),
            (ReadError::Io("x".into()), ErrorClass::Connect),
            (ReadError::Parse("x".into()), ErrorClass::Malformed),
            (
                ReadError::Request {
                    url: t(),
                    reason: "refused".into(),
                },
                ErrorClass::Connect,
            ),
            (status(401), ErrorClass::Auth),
            (status(403), ErrorClass::Auth),
            (status(404), ErrorClass::NotFound),
            (status(410), ErrorClass::NotFound),
            (status(408), ErrorClass::Timeout),
            (status(504), ErrorClass::Timeout),
            (status(302), ErrorClass::Config),
            (status(400), ErrorClass::Config),
            (status(500), ErrorClass::Server),
            (status(503), ErrorClass::Server),
            (
                ReadError::Body {
                    url: t(),
                    reason: "r".into(),
                },
                ErrorClass::Malformed,
            ),
            (
                ReadError::Pointer {
                    pointer: "/a".into(),
                    reason: "r".into(),
                },
                ErrorClass::Malformed,
            ),
            (
                ReadError::Rejected {
                    value: -1.0,
                    reason: "r",
                },
                ErrorClass::Rejected,
            ),
            (
                ReadError::Connect {
                    target: t(),
                    reason: "r".into(),
                },
                ErrorClass::Connect,
            ),
            (
                ReadError::Auth {
                    target: t(),
                    reason: "r".into(),
                },
                ErrorClass::Auth,
            ),
            (
                ReadError::NotFound {
                    target: t(),
                    what: "key \"jobs\"".into(),
                },
                ErrorClass::NotFound,
            ),
            (
                ReadError::Server {
                    target: t(),
                    reason: "r".into(),
                },
                ErrorClass::Server,
            ),
            (
                ReadError::Malformed {
                    target: t(),
                    reason: "r".into(),
                },
                ErrorClass::Malformed,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error:?}");
            assert!(!error.label().is_empty());
        }
    }

    #[test]
    fn class_labels_are_stable_snake_case() {
        let labels: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(
            labels,
            [
                "config",
                "connect",
                "auth",
                "not_found",
                "timeout",
                "malformed",
                "rejected",
                "server"
            ]
        );
        assert_eq!(ErrorClass::NotFound.to_string(), "not_found");
    }

    #[test]
    fn server_errors_name_the_target_and_what_failed() {
        let target = "redis://127.0.0.1:6379/2".to_owned();
        let shown = |e: ReadError| e.to_string();
        assert_eq!(
            shown(ReadError::NotFound {
                target: target.clone(),
                what: "key \"jobs\"".into()
            }),
            "redis://127.0.0.1:6379/2: key \"jobs\" does not exist"
        );
        assert_eq!(
            shown(ReadError::Auth {
                target: target.clone(),
                reason: "WRONGPASS".into()
            }),
            "redis://127.0.0.1:6379/2 refused the credentials: WRONGPASS"
        );
        assert_eq!(
            shown(ReadError::Connect {
                target,
                reason: "connection refused".into()
            }),
            "cannot connect to redis://127.0.0.1:6379/2: connection refused"
        );
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        for (given, shown) in [
            (
                "https://alice:hunter2@example.test:8443/m?q=up#x",
                "https://example.test:8443/m?q=up#x",
            ),
            ("http://example.test/", "http://example.test/"),
            (
                "redis://:hunter2@127.0.0.1:6379/3",
                "redis://127.0.0.1:6379/3",
            ),
            (
                "rediss://app:hunter2@cache.internal:6380",
                "rediss://cache.internal:6380",
            ),
            // Unparseable (bad port): credentials are still cut.
            ("redis://u:hunter2@host:port/0", "redis://host:port/0"),
            ("redis://u:p@ss@host/0", "redis://host/0"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url_str(given), shown, "{given}");
        }
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
