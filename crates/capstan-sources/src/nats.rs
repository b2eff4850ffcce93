//! The `nats` source: the backlog of one JetStream consumer (KEDA's `nats-jetstream`
//! scaler): `num_pending` (messages not yet delivered to the consumer) plus
//! `num_ack_pending` (delivered and not yet acknowledged).
//!
//! - One request per read: the JetStream API's `$JS.API.CONSUMER.INFO.<stream>.<consumer>`.
//!   A missing stream or consumer is `not_found`.
//! - One client per source ([`async_nats::Client`]), connected on the first read and
//!   kept across polls; it reconnects by itself after the server goes away. A failed
//!   first connection is retried on the next read.
//! - The whole read (connect and request) is cut at the source's timeout.
//! - `nats://` or `tls://` (TLS required); credentials from the URL (`user:password@`),
//!   `token` / `token_file`, `user` with `password` / `password_file`, or a
//!   `credentials_file` (a JWT and NKey seed, `.creds`); files are read when the source
//!   is built. Errors and `Debug` show the URL without credentials.

use std::fmt;
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use tokio::sync::Mutex;

use crate::error::{ReadError, redact_url_str};
use crate::spec::NatsSpec;
use crate::{BoxFuture, Source};

/// The JetStream API's error code for a missing stream.
const STREAM_NOT_FOUND: u64 = 10059;
/// The JetStream API's error code for a missing consumer.
const CONSUMER_NOT_FOUND: u64 = 10014;

/// How a client authenticates (secrets: never shown).
#[derive(Clone, PartialEq)]
enum Auth {
    /// Only what the URL holds.
    Url,
    /// A token.
    Token(String),
    /// A user name and password.
    Password(String, String),
    /// The text of a `.creds` file.
    Credentials(String),
}

/// A `nats` source, ready to read.
pub struct NatsSource {
    /// The server's URL (credentials included: never shown).
    url: String,
    /// How the client authenticates.
    auth: Auth,
    /// The client, once connected.
    client: Mutex<Option<Client>>,
    /// The server as shown in errors: the URL without credentials.
    shown: String,
    /// The stream the consumer reads.
    stream: String,
    /// The durable consumer whose backlog is read.
    consumer: String,
    /// The whole read is cut at this.
    timeout: Duration,
}

impl fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the URL and the authentication hold secrets.
        f.debug_struct("NatsSource")
            .field("server", &self.shown)
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NatsSource {
    /// Checks `spec` (a `nats://` or `tls://` URL, stream and consumer names, at most
    /// one way to authenticate), reads its secret files and prepares the client. Does
    /// not connect.
    pub fn new(spec: &NatsSpec, timeout: Duration) -> Result<Self, String> {
        let shown = redact_url_str(&spec.url);
        let scheme = spec.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("nats" | "tls")) {
            return Err(format!(
                "url must start with nats:// or tls:// (TLS), got {shown}"
            ));
        }
        for (what, name) in [("stream", &spec.stream), ("consumer", &spec.consumer)] {
            if !valid_name(name) {
                return Err(format!(
                    "{what} {name:?} is not a JetStream name (not empty, no spaces, dots, \
                     `*`, `>` or slashes)"
                ));
            }
        }
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|t| t.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
        };
        let token = match (&spec.token, &spec.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(read("token_file", p)?),
            (None, None) => None,
        };
        let password = match (&spec.password, &spec.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(p)) => Some(read("password_file", p)?),
            (None, None) => None,
        };
        let credentials = match &spec.credentials_file {
            Some(p) => Some(read("credentials_file", p)?),
            None => None,
        };
        let auth = match (token, &spec.user, password, credentials) {
            (None, None, None, None) => Auth::Url,
            (Some(t), None, None, None) => Auth::Token(t),
            (None, Some(u), Some(p), None) => Auth::Password(u.clone(), p),
            (None, Some(_), None, None) => return Err("user needs a password".into()),
            (None, None, Some(_), None) => return Err("password needs a user".into()),
            (None, None, None, Some(c)) => {
                // Checked now, so that a bad file fails the build, not every read.
                ConnectOptions::with_credentials(&c)
                    .map_err(|_| "credentials_file is not a NATS credentials file".to_owned())?;
                Auth::Credentials(c)
            }
            _ => {
                return Err("use one of token, user and password, or credentials_file".to_owned());
            }
        };
        Ok(Self {
            url: spec.url.clone(),
            auth,
            client: Mutex::new(None),
            shown,
            stream: spec.stream.clone(),
            consumer: spec.consumer.clone(),
            timeout,
        })
    }

    /// Reads the consumer's backlog once, within the timeout.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        crate::error::within(self.timeout, self.query()).await
    }

    /// The client: the connected one, or a new one.
    async fn client(&self) -> Result<Client, ReadError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let options = match &self.auth {
            Auth::Url => ConnectOptions::new(),
            Auth::Token(t) => ConnectOptions::new().token(t.clone()),
            Auth::Password(u, p) => ConnectOptions::new().user_and_password(u.clone(), p.clone()),
            Auth::Credentials(c) => {
                ConnectOptions::with_credentials(c).map_err(|e| ReadError::Auth {
                    target: self.shown.clone(),
                    reason: format!("unusable credentials: {}", e.kind()),
                })?
            }
        };
        let options = options
            .name("capstan")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .require_tls(self.url.starts_with("tls://"));
        let client = options
            .connect(self.url.as_str())
            .await
            .map_err(|e| self.connect_error(e.kind(), &e.to_string()))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn query(&self) -> Result<f64, ReadError> {
        let client = self.client().await?;
        let subject = format!("$JS.API.CONSUMER.INFO.{}.{}", self.stream, self.consumer);
        let message = client
            .request(subject, "".into())
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::TimedOut => ReadError::Timeout(self.timeout),
                RequestErrorKind::NoResponders => ReadError::Server {
                    target: self.shown.clone(),
                    reason: "JetStream is not enabled on the server (no responders)".into(),
                },
                _ => ReadError::Connect {
                    target: self.shown.clone(),
                    reason: e.to_string(),
                },
            })?;
        let info: serde_json::Value = serde_json::from_slice(&message.payload)
            .map_err(|e| self.malformed(format!("the consumer's info is not JSON: {e}")))?;
        if let Some(error) = info.get("error") {
            let code = error.get("err_code").and_then(serde_json::Value::as_u64);
            let text = error
                .get("description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no description");
            return Err(match code {
                Some(STREAM_NOT_FOUND) => self.not_found(format!("stream {:?}", self.stream)),
                Some(CONSUMER_NOT_FOUND) => self.not_found(format!(
                    "consumer {:?} on stream {:?}",
                    self.consumer, self.stream
                )),
                _ => ReadError::Server {
                    target: self.shown.clone(),
                    reason: format!("JetStream error {}: {text}", code.unwrap_or_default()),
                },
            });
        }
        let count = |field: &str| {
            info.get(field)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| self.malformed(format!("the consumer's info has no count {field}")))
        };
        let n = count("num_pending")?.saturating_add(count("num_ack_pending")?);
        // Counts above 2^53 lose precision; a backlog that long is beyond caring.
        #[allow(clippy::cast_precision_loss)]
        Ok(n as f64)
    }

    fn malformed(&self, reason: String) -> ReadError {
        ReadError::Malformed {
            target: self.shown.clone(),
            reason,
        }
    }

    /// Classifies a failed connection.
    fn connect_error(&self, kind: ConnectErrorKind, text: &str) -> ReadError {
        let target = self.shown.clone();
        let reason = text.to_owned();
        match kind {
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                ReadError::Auth { target, reason }
            }
            ConnectErrorKind::TimedOut => ReadError::Timeout(self.timeout),
            ConnectErrorKind::ServerParse => ReadError::Config(reason),
            _ => ReadError::Connect { target, reason },
        }
    }

    fn not_found(&self, what: String) -> ReadError {
        ReadError::NotFound {
            target: self.shown.clone(),
            what,
        }
    }
}

impl Source for NatsSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.fetch())
    }
}

/// Whether `name` can be a stream or consumer name (it becomes part of a subject).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> NatsSpec {
        NatsSpec {
            url: url.into(),
            stream: "jobs".into(),
            consumer: "workers".into(),
            token: None,
            token_file: None,
            user: None,
            password: None,
            password_file: None,
            credentials_file: None,
        }
    }

    #[test]
    fn settings_are_checked_without_echoing_secrets() {
        let t = Duration::from_secs(1);
        let err = NatsSource::new(&spec("http://u:hunter2@h:4222"), t).unwrap_err();
        assert!(err.contains("nats://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let mut s = spec("nats://127.0.0.1:4222");
        s.stream = "a.b".into();
        assert!(NatsSource::new(&s, t).unwrap_err().contains("stream"));
        let mut s = spec("nats://127.0.0.1:4222");
        s.consumer = String::new();
        assert!(NatsSource::new(&s, t).unwrap_err().contains("consumer"));
        let mut s = spec("nats://127.0.0.1:4222");
        s.user = Some("app".into());
        assert!(NatsSource::new(&s, t).unwrap_err().contains("password"));
        s.password = Some("hunter2".into());
        s.token = Some("tok".into());
        let err = NatsSource::new(&s, t).unwrap_err();
        assert!(err.contains("one of"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_and_errors_hide_credentials() {
        let t = Duration::from_secs(1);
        let mut s = spec("tls://app:hunter2@nats.internal:4222");
        let ok = NatsSource::new(&s, t).unwrap();
        assert_eq!(ok.shown, "tls://nats.internal:4222");
        s.url = "nats://nats.internal".into();
        s.token = Some("s3cret-token".into());
        let ok = NatsSource::new(&s, t).unwrap();
        let debug = format!("{ok:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        let e = ok.connect_error(ConnectErrorKind::AuthorizationViolation, "denied");
        assert_eq!(e.class(), crate::ErrorClass::Auth);
        assert!(!e.to_string().contains("s3cret"));
    }

    #[test]
    fn names_that_would_break_the_subject_are_refused() {
        assert!(valid_name("ORDERS"));
        assert!(valid_name("orders-v2_x"));
        for bad in ["", "a b", "a.b", "a*", ">", "a/b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
