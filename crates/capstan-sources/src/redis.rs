//! The `redis` source: the length of one key, by the key's type (KEDA's `redis` and
//! `redis-streams` scalers).
//!
//! - list → `LLEN`, sorted set → `ZCARD`, set → `SCARD`, hash → `HLEN`, stream →
//!   `XLEN`; for a stream with a consumer group, the group's pending entries (`XPENDING`
//!   summary count) or its lag (`XINFO GROUPS` `lag`, Redis 7 or later), as chosen by
//!   [`StreamMetric`]. A key of another type (a string) is a malformed error naming the
//!   type.
//! - A missing key is 0 by default ([`MissingKey::Zero`]): Redis deletes a list, set,
//!   sorted set or hash when its last element goes, so a drained queue and a missing
//!   key look the same. [`MissingKey::Error`] makes it a `not_found` error instead (for
//!   a key that must exist, such as a stream). A missing consumer group on an existing
//!   stream is always `not_found`.
//! - One multiplexed connection ([`ConnectionManager`]) per source, opened on the first
//!   read and kept across polls; it reconnects by itself after a failure. Opening it is
//!   retried on the next read if it fails.
//! - The whole read (connect, `TYPE`, the count) is cut at the source's timeout.
//! - `redis://` or `rediss://` (TLS, rustls with the system's roots); the database from
//!   the URL's path or the `db` setting; the password from the URL, `password_file`
//!   (read when the source is built) or `password` (the last wins). Errors and `Debug` show the URL without credentials.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use tokio::sync::Mutex;

use crate::error::{ReadError, redact_url_str};
use crate::spec::{MissingKey, RedisSpec, StreamMetric};
use crate::{BoxFuture, Source};

/// A `redis` source, ready to read.
pub struct RedisSource {
    /// Holds the connection settings (password included: never shown).
    client: redis::Client,
    /// The connection, once opened.
    connection: Mutex<Option<ConnectionManager>>,
    /// The server as shown in errors: the URL without credentials, with the database.
    shown: String,
    /// The key to measure.
    key: String,
    /// The consumer group of a stream, if any.
    consumer_group: Option<String>,
    /// What to read from a stream.
    stream: StreamMetric,
    /// What a missing key means.
    missing_key: MissingKey,
    /// The whole read is cut at this.
    timeout: Duration,
}

impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the client holds the password.
        f.debug_struct("RedisSource")
            .field("server", &self.shown)
            .field("key", &self.key)
            .field("consumer_group", &self.consumer_group)
            .field("stream", &self.stream)
            .field("missing_key", &self.missing_key)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSource {
    /// Checks `spec` (a `redis://` or `rediss://` URL, a key, a consumer group where the
    /// stream metric needs one) and prepares the client. Does not connect.
    pub fn new(spec: &RedisSpec, timeout: Duration) -> Result<Self, String> {
        let scheme = spec.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Err(format!(
                "url must start with redis:// or rediss:// (TLS), got {}",
                redact_url_str(&spec.url)
            ));
        }
        if spec.key.is_empty() {
            return Err("key must not be empty".into());
        }
        if spec.stream.needs_group() && spec.consumer_group.is_none() {
            return Err(format!(
                "stream_metric \"{}\" needs a consumer_group",
                spec.stream.name()
            ));
        }
        // The parse error is the crate's own text, which never echoes the URL.
        let client = redis::Client::open(spec.url.as_str())
            .map_err(|e| format!("url is not a valid Redis URL: {}", e.kind_text()))?;
        let mut info = client.get_connection_info().clone();
        let mut settings = info.redis_settings().clone();
        if let Some(db) = spec.db {
            settings = settings.set_db(db);
        }
        if let Some(path) = &spec.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
            settings = settings.set_password(text.trim_end_matches(['\r', '\n']));
        }
        if let Some(password) = &spec.password {
            settings = settings.set_password(password);
        }
        let db = settings.db();
        info = info.set_redis_settings(settings);
        let client = redis::Client::open(info)
            .map_err(|e| format!("cannot build the Redis client: {}", e.kind_text()))?;
        let shown = shown_server(&spec.url, db);
        Ok(Self {
            client,
            connection: Mutex::new(None),
            shown,
            key: spec.key.clone(),
            consumer_group: spec.consumer_group.clone(),
            stream: spec.stream,
            missing_key: spec.missing_key,
            timeout,
        })
    }

    /// Reads the key's length once, within the timeout.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        crate::error::within(self.timeout, self.query()).await
    }

    /// The connection: the open one, or a new one.
    async fn connection(&self) -> Result<ConnectionManager, ReadError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            // A failed first connection is retried on the next read, not here.
            .set_number_of_retries(0);
        let c = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| self.error(&e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn query(&self) -> Result<f64, ReadError> {
        let mut c = self.connection().await?;
        let kind: String = redis::cmd("TYPE")
            .arg(&self.key)
            .query_async(&mut c)
            .await
            .map_err(|e| self.error(&e))?;
        let count = |name: &'static str| {
            let mut c = c.clone();
            async move {
                redis::cmd(name)
                    .arg(&self.key)
                    .query_async::<u64>(&mut c)
                    .await
                    .map_err(|e| self.error(&e))
            }
        };
        let n = match kind.as_str() {
            "none" => {
                return match self.missing_key {
                    MissingKey::Zero => Ok(0.0),
                    MissingKey::Error => Err(self.not_found(format!("key {:?}", self.key))),
                };
            }
            "list" => count("LLEN").await?,
            "zset" => count("ZCARD").await?,
            "set" => count("SCARD").await?,
            "hash" => count("HLEN").await?,
            "stream" => match (&self.consumer_group, self.stream) {
                (None, _) | (Some(_), StreamMetric::Length) => count("XLEN").await?,
                (Some(group), StreamMetric::PendingEntries) => self.pending(&mut c, group).await?,
                (Some(group), StreamMetric::Lag) => self.lag(&mut c, group).await?,
            },
            other => {
                return Err(self.malformed(format!(
                    "key {:?} is a {other}, not a list, sorted set, set, hash or stream",
                    self.key
                )));
            }
        };
        // Counts above 2^53 lose precision; a queue that long is beyond caring.
        #[allow(clippy::cast_precision_loss)]
        Ok(n as f64)
    }

    /// `XPENDING key group`: the summary's count of pending entries.
    async fn pending(&self, c: &mut ConnectionManager, group: &str) -> Result<u64, ReadError> {
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.key)
            .arg(group)
            .query_async(c)
            .await
            .map_err(|e| self.group_error(&e, group))?;
        match reply {
            Value::Array(items) => match items.first() {
                Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| {
                    self.malformed(format!("XPENDING answered a negative count ({n})"))
                }),
                _ => Err(self.malformed("XPENDING's summary has no count".into())),
            },
            other => Err(self.malformed(format!(
                "XPENDING answered {}, not a summary",
                value_kind(&other)
            ))),
        }
    }

    /// `XINFO GROUPS key`: the named group's `lag` (entries not yet delivered to it).
    async fn lag(&self, c: &mut ConnectionManager, group: &str) -> Result<u64, ReadError> {
        let reply: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.key)
            .query_async(c)
            .await
            .map_err(|e| self.group_error(&e, group))?;
        let Value::Array(groups) = reply else {
            return Err(self.malformed(format!(
                "XINFO GROUPS answered {}, not a list of groups",
                value_kind(&reply)
            )));
        };
        for g in &groups {
            let fields = fields(g);
            let name = fields.iter().find(|(k, _)| k == "name").map(|(_, v)| *v);
            if name.and_then(text).as_deref() != Some(group) {
                continue;
            }
            return match fields.iter().find(|(k, _)| k == "lag").map(|(_, v)| *v) {
                Some(Value::Int(n)) => u64::try_from(*n)
                    .map_err(|_| self.malformed(format!("the lag is negative ({n})"))),
                Some(Value::Nil) => Err(self.server(format!(
                    "the lag of consumer group {group:?} is unknown to the server (entries \
                     were deleted from the stream); use stream_metric = \"pending_entries\""
                ))),
                Some(other) => {
                    Err(self.malformed(format!("the lag is {}, not a number", value_kind(other))))
                }
                None => Err(self.server(
                    "the server does not report a consumer group's lag (Redis 7 or later is \
                     needed)"
                        .into(),
                )),
            };
        }
        Err(self.not_found(format!("consumer group {group:?} on stream {:?}", self.key)))
    }

    /// A group command's error: `NOGROUP` is a missing group.
    fn group_error(&self, e: &RedisError, group: &str) -> ReadError {
        if e.code() == Some("NOGROUP") {
            return self.not_found(format!("consumer group {group:?} on stream {:?}", self.key));
        }
        self.error(e)
    }

    /// Classifies a client error.
    fn error(&self, e: &RedisError) -> ReadError {
        let target = self.shown.clone();
        let reason = e.to_string();
        if e.is_timeout() {
            return ReadError::Timeout(self.timeout);
        }
        let auth = matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm)
        ) || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
        if auth {
            return ReadError::Auth { target, reason };
        }
        if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            return ReadError::Connect { target, reason };
        }
        match e.kind() {
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
                ReadError::Malformed { target, reason }
            }
            ErrorKind::InvalidClientConfig => ReadError::Config(reason),
            _ if e.code() == Some("WRONGTYPE") => ReadError::Malformed { target, reason },
            _ => ReadError::Server { target, reason },
        }
    }

    fn not_found(&self, what: String) -> ReadError {
        ReadError::NotFound {
            target: self.shown.clone(),
            what,
        }
    }

    fn malformed(&self, reason: String) -> ReadError {
        ReadError::Malformed {
            target: self.shown.clone(),
            reason,
        }
    }

    fn server(&self, reason: String) -> ReadError {
        ReadError::Server {
            target: self.shown.clone(),
            reason,
        }
    }
}

impl Source for RedisSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.fetch())
    }
}

/// The server as shown in messages: `redis://host:port/DB` without credentials or query.
fn shown_server(url: &str, db: i64) -> String {
    let bare = redact_url_str(url);
    let (scheme, rest) = bare.split_once("://").unwrap_or(("redis", bare.as_str()));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}/{db}")
}

/// A reply's field/value pairs (RESP2 flat arrays or RESP3 maps).
fn fields(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => text(k).map(|k| (k, v)),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| text(k).map(|k| (k, v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// A bulk or simple string reply as text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// "nil", "a string", ... for messages.
fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) | Value::SimpleString(_) => "a string",
        Value::Array(_) | Value::Set(_) => "an array",
        Value::Map(_) => "a map",
        _ => "an unexpected reply",
    }
}

/// The short text of a client error, without anything from the URL.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for RedisError {
    fn kind_text(&self) -> String {
        // The detail of a parse error may quote the URL; the category never does.
        self.category().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> RedisSpec {
        RedisSpec {
            url: url.into(),
            db: None,
            password: None,
            password_file: None,
            key: "jobs".into(),
            consumer_group: None,
            stream: StreamMetric::Length,
            missing_key: MissingKey::Zero,
        }
    }

    #[test]
    fn settings_are_checked_without_echoing_secrets() {
        let t = Duration::from_secs(1);
        let err = RedisSource::new(&spec("http://u:hunter2@h/"), t).unwrap_err();
        assert!(err.contains("redis://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = RedisSource::new(&spec("redis://:hunter2@h:notaport/0"), t).unwrap_err();
        assert!(err.starts_with("url is not a valid Redis URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let mut s = spec("redis://127.0.0.1/0");
        s.key = String::new();
        assert!(RedisSource::new(&s, t).unwrap_err().contains("key"));
        let mut s = spec("redis://127.0.0.1/0");
        s.stream = StreamMetric::Lag;
        let err = RedisSource::new(&s, t).unwrap_err();
        assert!(err.contains("consumer_group"), "{err}");
    }

    #[test]
    fn the_server_is_shown_with_its_database_and_without_credentials() {
        let t = Duration::from_secs(1);
        let ok = RedisSource::new(&spec("redis://app:hunter2@127.0.0.1:6380/2"), t).unwrap();
        assert_eq!(ok.shown, "redis://127.0.0.1:6380/2");
        let mut s = spec("rediss://:hunter2@cache.internal");
        s.db = Some(5);
        s.password = Some("other-secret".into());
        let ok = RedisSource::new(&s, t).unwrap();
        assert_eq!(ok.shown, "rediss://cache.internal/5");
        let debug = format!("{ok:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn replies_are_read_as_fields() {
        let g = Value::Array(vec![
            Value::BulkString(b"name".to_vec()),
            Value::BulkString(b"workers".to_vec()),
            Value::BulkString(b"lag".to_vec()),
            Value::Int(7),
        ]);
        let f = fields(&g);
        assert_eq!(f.len(), 2);
        assert_eq!(text(f[0].1).as_deref(), Some("workers"));
        assert_eq!(f[1].1, &Value::Int(7));
    }
}
