//! The `rabbitmq` source: the number of ready messages in one queue, read over AMQP
//! (KEDA's `rabbitmq` scaler in `QueueLength` mode with `protocol = amqp`).
//!
//! - A passive `queue.declare` answers the queue's message count: the messages ready
//!   for delivery, exact at the moment of the call. Messages delivered to a consumer and
//!   not yet acknowledged are not counted; counting them needs the management API,
//!   whose figures lag by several seconds, and is not offered.
//! - One connection and one channel per source, opened on the first read and kept
//!   across polls. A missing queue makes the broker close the channel (404): the read
//!   fails `not_found` and the next read opens a new channel. A lost connection is
//!   reopened on the next read.
//! - The whole read (connect, channel, declare) is cut at the source's timeout; a read
//!   cut that way drops its connection, and the next read starts afresh.
//! - `amqp://` or `amqps://` (TLS, rustls); the virtual host is the URL's path
//!   (percent-encoded: `%2f` is `/`, the default when the path is empty). The password
//!   from the URL, `password_file` (read when the source is built) or `password` (the
//!   last wins). Errors and `Debug` show the server without credentials.
//! - Errors are classed: a refused login or permission (403 ACCESS_REFUSED) → auth; a
//!   missing queue (404) or virtual host → not_found; a broker that cannot be reached or
//!   a lost connection → connect; no answer in time → timeout; other broker errors →
//!   server.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};
use tokio::sync::Mutex;

use crate::error::{ReadError, redact_url_str};
use crate::spec::RabbitmqSpec;
use crate::{BoxFuture, Source};

/// A `rabbitmq` source, ready to read.
pub struct RabbitmqSource {
    /// The broker's address and login (password included: never shown).
    uri: AMQPUri,
    /// The broker as shown in errors: scheme, host, port and virtual host.
    shown: String,
    /// The queue whose ready messages are counted.
    queue: String,
    /// The whole read is cut at this.
    timeout: Duration,
    /// The connection and its channel, once opened.
    link: Mutex<Option<Link>>,
}

/// An open connection and, unless the broker closed it, its channel.
struct Link {
    connection: Connection,
    channel: Option<Channel>,
}

impl fmt::Debug for RabbitmqSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the URI holds the password.
        f.debug_struct("RabbitmqSource")
            .field("server", &self.shown)
            .field("queue", &self.queue)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RabbitmqSource {
    /// Checks `spec` (an `amqp://` or `amqps://` URL, a queue name) and reads the
    /// password file. Does not connect.
    pub fn new(spec: &RabbitmqSpec, timeout: Duration) -> Result<Self, String> {
        let scheme = spec.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("amqp" | "amqps")) {
            return Err(format!(
                "url must start with amqp:// or amqps:// (TLS), got {}",
                redact_url_str(&spec.url)
            ));
        }
        if spec.queue.is_empty() {
            return Err("queue must not be empty".into());
        }
        if spec.queue.len() > 255 {
            return Err("queue must be at most 255 bytes (an AMQP short string)".into());
        }
        // The parser's error may quote the URL: it is not passed on.
        let mut uri = AMQPUri::from_str(&spec.url)
            .map_err(|_| format!("url is not a valid AMQP URL: {}", redact_url_str(&spec.url)))?;
        if let Some(path) = &spec.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
            uri.authority.userinfo.password = text.trim_end_matches(['\r', '\n']).to_owned();
        }
        if let Some(password) = &spec.password {
            uri.authority.userinfo.password.clone_from(password);
        }
        // The TCP connect gives up at the timeout too (the read is cut there anyway).
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        uri.query.connection_timeout = Some(millis.max(1));
        let shown = shown_server(&uri);
        Ok(Self {
            uri,
            shown,
            queue: spec.queue.clone(),
            timeout,
            link: Mutex::new(None),
        })
    }

    /// Reads the queue's ready messages once, within the timeout.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        match tokio::time::timeout(self.timeout, self.query()).await {
            Ok(read) => read,
            Err(_) => {
                // The connection may be half open or waiting on a silent broker: the
                // next read starts afresh (dropping it closes it).
                self.link.lock().await.take();
                Err(ReadError::Timeout(self.timeout))
            }
        }
    }

    async fn query(&self) -> Result<f64, ReadError> {
        let mut slot = self.link.lock().await;
        if slot
            .as_ref()
            .is_some_and(|l| !l.connection.status().connected())
        {
            *slot = None;
        }
        let link = match slot.as_mut() {
            Some(link) => link,
            None => {
                let connection =
                    Connection::connect_uri(self.uri.clone(), ConnectionProperties::default())
                        .await
                        .map_err(|e| self.error(&e))?;
                slot.insert(Link {
                    connection,
                    channel: None,
                })
            }
        };
        if link
            .channel
            .as_ref()
            .is_some_and(|c| !c.status().connected())
        {
            link.channel = None;
        }
        let channel = match &link.channel {
            Some(c) => c.clone(),
            None => {
                let c = match link.connection.create_channel().await {
                    Ok(c) => c,
                    Err(e) => {
                        let error = self.error(&e);
                        *slot = None;
                        return Err(error);
                    }
                };
                link.channel = Some(c.clone());
                c
            }
        };
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(self.queue.as_str().into(), options, FieldTable::default())
            .await
        {
            Ok(queue) => Ok(f64::from(queue.message_count())),
            Err(e) => {
                let error = self.error(&e);
                if !link.connection.status().connected() {
                    *slot = None;
                } else if !channel.status().connected() {
                    link.channel = None;
                }
                Err(error)
            }
        }
    }

    /// Classifies a client error.
    fn error(&self, e: &lapin::Error) -> ReadError {
        let target = self.shown.clone();
        match e.kind() {
            ErrorKind::ProtocolError(amqp) => self.protocol_error(amqp),
            ErrorKind::IOError(io) => ReadError::Connect {
                target,
                reason: io.to_string(),
            },
            ErrorKind::InvalidConnectionState(_) | ErrorKind::MissingHeartbeatError => {
                ReadError::Connect {
                    target,
                    reason: e.to_string(),
                }
            }
            ErrorKind::AuthProviderError(reason) => ReadError::Auth {
                target,
                reason: reason.clone(),
            },
            ErrorKind::ParsingError(_) | ErrorKind::InvalidProtocolVersion(_) => {
                ReadError::Malformed {
                    target,
                    reason: e.to_string(),
                }
            }
            _ => ReadError::Server {
                target,
                reason: e.to_string(),
            },
        }
    }

    /// Classifies an error the broker sent (a channel or connection close).
    fn protocol_error(&self, amqp: &AMQPError) -> ReadError {
        let target = self.shown.clone();
        let message = amqp.get_message().as_str();
        let reason = format!("{} ({}): {message}", amqp_name(amqp), amqp.get_id());
        match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => ReadError::NotFound {
                target,
                what: format!("queue {:?}", self.queue),
            },
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => ReadError::Auth { target, reason },
            // 530 names a virtual host that does not exist, or one the user may not use.
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) if message.contains("not found") => {
                ReadError::NotFound {
                    target,
                    what: format!("virtual host {:?}", self.uri.vhost),
                }
            }
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => ReadError::Auth { target, reason },
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED) => {
                ReadError::Connect { target, reason }
            }
            _ => ReadError::Server { target, reason },
        }
    }
}

impl Source for RabbitmqSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.fetch())
    }
}

/// The AMQP name of a broker error (`ACCESS_REFUSED`), for messages.
fn amqp_name(amqp: &AMQPError) -> String {
    match amqp.kind() {
        AMQPErrorKind::Soft(k) => format!("{k:?}"),
        AMQPErrorKind::Hard(k) => format!("{k:?}"),
    }
}

/// The broker as shown in messages: `amqp://host:port/vhost` (the virtual host
/// percent-encoded as in a URL), without credentials or parameters.
fn shown_server(uri: &AMQPUri) -> String {
    let scheme = match uri.scheme {
        AMQPScheme::AMQP => "amqp",
        AMQPScheme::AMQPS => "amqps",
    };
    let vhost = uri.vhost.replace('%', "%25").replace('/', "%2f");
    format!(
        "{scheme}://{}:{}/{vhost}",
        uri.authority.host, uri.authority.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> RabbitmqSpec {
        RabbitmqSpec {
            url: url.into(),
            password: None,
            password_file: None,
            queue: "jobs".into(),
        }
    }

    #[test]
    fn settings_are_checked_without_echoing_secrets() {
        let t = Duration::from_secs(1);
        let err = RabbitmqSource::new(&spec("http://u:hunter2@h/"), t).unwrap_err();
        assert!(err.contains("amqp://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = RabbitmqSource::new(&spec("amqp://u:hunter2@h:notaport/"), t).unwrap_err();
        assert!(err.starts_with("url is not a valid AMQP URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let mut s = spec("amqp://127.0.0.1");
        s.queue = String::new();
        assert!(RabbitmqSource::new(&s, t).unwrap_err().contains("queue"));
    }

    #[test]
    fn the_server_is_shown_with_its_vhost_and_without_credentials() {
        let t = Duration::from_secs(1);
        let ok = RabbitmqSource::new(&spec("amqp://app:hunter2@127.0.0.1:5673/%2f"), t).unwrap();
        assert_eq!(ok.shown, "amqp://127.0.0.1:5673/%2f");
        let mut s = spec("amqps://app:hunter2@mq.internal/orders");
        s.password = Some("other-secret".into());
        let ok = RabbitmqSource::new(&s, t).unwrap();
        assert_eq!(ok.shown, "amqps://mq.internal:5671/orders");
        assert_eq!(ok.uri.authority.userinfo.password, "other-secret");
        let debug = format!("{ok:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
