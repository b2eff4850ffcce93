//! The `kafka` source: a consumer group's lag (KEDA's Kafka scaler), read with rdkafka
//! (librdkafka).
//!
//! What one read computes:
//! - The partitions: every partition of `topic`, or, without a topic, every partition
//!   of every topic on which the group has committed an offset (found from the
//!   cluster's metadata and one offset fetch over all partitions).
//! - A partition's lag is `latest offset − committed offset` (never below 0). A
//!   partition without a committed offset counts by `offset_reset`: `latest` → 0 (the
//!   group would start at the end), `earliest` → `latest − earliest offset` (every
//!   record still on the broker).
//! - `exclude_persistent_lag`: a partition whose committed offset is the same as at the
//!   previous successful read while its lag is above 0 counts 0 (its consumer is stuck
//!   on it, more consumers would not help). The committed offsets are kept per source
//!   across reads; the first read excludes nothing.
//! - The value is the sum. With `lag_threshold` and `cap_at_partitions` (the default),
//!   it is at most `partitions × lag_threshold` (`partitions`: all the partitions
//!   counted), so that a policy dividing the lag by `lag_threshold` never asks for more
//!   consumers than there are partitions. (KEDA caps only once
//!   `lag / lagThreshold` in integer division exceeds the partition count; this cap is
//!   exact.)
//! - A group that has committed nothing on the partitions read and that the broker
//!   does not know is `not_found`; so is a missing topic.
//!
//! One client (an rdkafka `BaseConsumer` that never joins the group) per source,
//! created on the first read and kept. Its calls block, so a read runs on Tokio's
//! blocking threads; every call gets the time left of the source's timeout and the
//! whole read is cut at it. Errors name the source's brokers, never the password.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::error::ReadError;
use crate::{BoxFuture, Source};

/// A `kafka` source's settings.
#[derive(Clone, PartialEq)]
pub struct KafkaSpec {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// The consumer group whose lag is read.
    pub group: String,
    /// The topic; `None`: every topic the group has committed offsets on.
    pub topic: Option<String>,
    /// How a partition without a committed offset counts.
    pub offset_reset: OffsetReset,
    /// The lag one consumer is expected to handle (with `cap_at_partitions`, the value
    /// is capped at partitions × this).
    pub lag_threshold: Option<u64>,
    /// Cap the value at partitions × `lag_threshold` (needs `lag_threshold`).
    pub cap_at_partitions: bool,
    /// A partition whose committed offset did not move since the previous read while
    /// it has lag counts 0.
    pub exclude_persistent_lag: bool,
    /// SASL mechanism; `None`: no SASL.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    pub username: Option<String>,
    /// SASL password (a secret: never shown).
    pub password: Option<String>,
    /// A file holding the SASL password (read when the source is built; a final newline
    /// is dropped).
    pub password_file: Option<PathBuf>,
    /// TLS to the brokers (the system's trusted certificates).
    pub tls: bool,
}

impl fmt::Debug for KafkaSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSpec")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("topic", &self.topic)
            .field("offset_reset", &self.offset_reset)
            .field("lag_threshold", &self.lag_threshold)
            .field("cap_at_partitions", &self.cap_at_partitions)
            .field("exclude_persistent_lag", &self.exclude_persistent_lag)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .finish()
    }
}

/// How a partition without a committed offset counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// 0: the group would start at the end.
    #[default]
    Latest,
    /// Every record on the broker: latest − earliest offset.
    Earliest,
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (send TLS with it).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The name librdkafka and Kafka use (`SCRAM-SHA-256`).
    pub fn kafka_name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The client type.
type Client = BaseConsumer;

/// What one partition looked like at a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartitionOffsets {
    /// The earliest offset still on the broker.
    earliest: i64,
    /// The offset the next record will get.
    latest: i64,
    /// The group's committed offset, if any.
    committed: Option<i64>,
}

/// A `kafka` source, ready to read.
pub struct KafkaSource {
    /// The client's settings (the password among them: never shown).
    config: ClientConfig,
    /// The client, once created.
    client: Arc<Mutex<Option<Arc<Client>>>>,
    /// The bootstrap brokers, comma-separated `host:port`.
    brokers: String,
    /// The brokers as shown in errors: `kafka 127.0.0.1:9092,…`.
    shown: String,
    /// The consumer group.
    group: String,
    /// The topic, or every topic the group committed on.
    topic: Option<String>,
    /// How partitions without a committed offset count.
    offset_reset: OffsetReset,
    /// The cap's lag per partition, when capping.
    cap_per_partition: Option<u64>,
    /// Whether stuck partitions are excluded.
    exclude_persistent_lag: bool,
    /// Committed offsets at the previous successful read (for `exclude_persistent_lag`).
    previous: Mutex<HashMap<(String, i32), i64>>,
    /// The whole read is cut at this.
    timeout: Duration,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the client configuration holds the password.
        f.debug_struct("KafkaSource")
            .field("brokers", &self.shown)
            .field("group", &self.group)
            .field("topic", &self.topic)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Checks `spec` (brokers, group and topic names, SASL settings), reads the password
    /// file and prepares the client's settings. Does not connect.
    pub fn new(spec: &KafkaSpec, timeout: Duration) -> Result<Self, String> {
        if spec.brokers.is_empty() {
            return Err("brokers is empty".into());
        }
        for broker in &spec.brokers {
            check_broker(broker)?;
        }
        if spec.group.is_empty() {
            return Err("group is empty".into());
        }
        if let Some(topic) = &spec.topic {
            check_topic(topic)?;
        }
        if spec.lag_threshold == Some(0) {
            return Err("lag_threshold must be greater than zero".into());
        }
        let brokers = spec.brokers.join(",");
        // A request that gets no answer is cut by the read's own timeout (a timeout
        // error), not by librdkafka's socket timeout, which would report a transport
        // failure: that one is a second longer. (Ranges: socket.timeout.ms 10..=300000,
        // socket.connection.setup.timeout.ms from 1000.)
        let ms = timeout.as_millis();
        let socket_ms = ms.saturating_add(1000).clamp(10, 300_000).to_string();
        let setup_ms = ms.clamp(1000, 300_000).to_string();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &brokers)
            .set("group.id", &spec.group)
            .set("client.id", "capstan")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            .set("socket.timeout.ms", &socket_ms)
            .set("socket.connection.setup.timeout.ms", &setup_ms);
        let password = match (&spec.password, &spec.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map(|t| t.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?,
            ),
            (None, None) => None,
        };
        let protocol = match (spec.sasl_mechanism, spec.tls) {
            (None, false) => "plaintext",
            (None, true) => "ssl",
            (Some(_), false) => "sasl_plaintext",
            (Some(_), true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        match (spec.sasl_mechanism, &spec.username, password) {
            (Some(mechanism), Some(user), Some(password)) => {
                config
                    .set("sasl.mechanism", mechanism.kafka_name())
                    .set("sasl.username", user)
                    .set("sasl.password", password);
            }
            (Some(_), _, _) => {
                return Err("sasl_mechanism needs username and password (or password_file)".into());
            }
            (None, None, None) => {}
            (None, _, _) => {
                return Err("username and password need sasl_mechanism".into());
            }
        }
        Ok(Self {
            config,
            client: Arc::new(Mutex::new(None)),
            shown: format!("kafka {brokers}"),
            brokers,
            group: spec.group.clone(),
            topic: spec.topic.clone(),
            offset_reset: spec.offset_reset,
            cap_per_partition: spec.lag_threshold.filter(|_| spec.cap_at_partitions),
            exclude_persistent_lag: spec.exclude_persistent_lag,
            previous: Mutex::new(HashMap::new()),
            timeout,
        })
    }

    /// Reads the group's lag once, within the timeout.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        let deadline = Instant::now() + self.timeout;
        // The blocking calls end a little earlier, so that a call that found no broker
        // can still say why (refused, SASL) before the read is cut.
        let margin = (self.timeout / 10).min(Duration::from_millis(200));
        let reader = Reader {
            config: self.config.clone(),
            brokers: self.brokers.clone(),
            client: Arc::clone(&self.client),
            shown: self.shown.clone(),
            group: self.group.clone(),
            topic: self.topic.clone(),
            timeout: self.timeout,
            deadline: deadline - margin,
        };
        let task = tokio::task::spawn_blocking(move || reader.offsets());
        let offsets = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(read)) => read?,
            Ok(Err(e)) => {
                return Err(ReadError::Server {
                    target: self.shown.clone(),
                    reason: format!("the read's thread failed: {e}"),
                });
            }
            Err(_) => return Err(ReadError::Timeout(self.timeout)),
        };
        let mut previous = self.previous.lock().unwrap_or_else(PoisonError::into_inner);
        let lag = lag(
            &offsets,
            self.offset_reset,
            self.exclude_persistent_lag.then_some(&*previous),
            self.cap_per_partition,
        );
        if self.exclude_persistent_lag {
            *previous = offsets
                .iter()
                .filter_map(|(key, p)| p.committed.map(|c| (key.clone(), c)))
                .collect();
        }
        // Lags above 2^53 lose precision; a lag that long is beyond caring.
        #[allow(clippy::cast_precision_loss)]
        Ok(lag as f64)
    }
}

impl Source for KafkaSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.fetch())
    }
}

/// The sum of the partitions' lags, by the rules in the module's comment. `previous`
/// holds the committed offsets of the previous read when stuck partitions are excluded.
fn lag(
    offsets: &HashMap<(String, i32), PartitionOffsets>,
    reset: OffsetReset,
    previous: Option<&HashMap<(String, i32), i64>>,
    cap_per_partition: Option<u64>,
) -> u64 {
    let mut total: u64 = 0;
    for (key, p) in offsets {
        let lag = match p.committed {
            Some(committed) => {
                let lag = p.latest.saturating_sub(committed).max(0);
                let stuck = previous.and_then(|m| m.get(key)) == Some(&committed) && lag > 0;
                if stuck { 0 } else { lag }
            }
            None => match reset {
                OffsetReset::Latest => 0,
                OffsetReset::Earliest => p.latest.saturating_sub(p.earliest).max(0),
            },
        };
        total = total.saturating_add(u64::try_from(lag).unwrap_or(0));
    }
    match cap_per_partition {
        Some(per) => {
            let partitions = u64::try_from(offsets.len()).unwrap_or(u64::MAX);
            total.min(partitions.saturating_mul(per))
        }
        None => total,
    }
}

/// One read's blocking part, owned by a blocking thread.
struct Reader {
    config: ClientConfig,
    /// The bootstrap brokers, comma-separated `host:port`.
    brokers: String,
    client: Arc<Mutex<Option<Arc<Client>>>>,
    shown: String,
    group: String,
    topic: Option<String>,
    timeout: Duration,
    deadline: Instant,
}

impl Reader {
    /// The time left of the read, at least 1 ms.
    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    fn client(&self) -> Result<Arc<Client>, ReadError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = slot.as_ref() {
            return Ok(Arc::clone(client));
        }
        let client: Client = self
            .config
            .create()
            .map_err(|e| ReadError::Config(format!("cannot create the Kafka client: {e}")))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Every partition read, with its offsets.
    fn offsets(&self) -> Result<HashMap<(String, i32), PartitionOffsets>, ReadError> {
        let client = self.client()?;
        // Errors left from before this read explain nothing about it.
        drain_errors(&client);
        let metadata = client
            .fetch_metadata(self.topic.as_deref(), self.left())
            .map_err(|e| self.error(&client, &e))?;
        let mut partitions = TopicPartitionList::new();
        for topic in metadata.topics() {
            if let Some(code) = topic.error().map(RDKafkaErrorCode::from) {
                if self.topic.is_none() {
                    // Without a topic, one unreadable topic is not the group's.
                    continue;
                }
                return Err(self.code_error(&client, code, "the topic's metadata"));
            }
            if self.topic.is_none() && topic.name().starts_with("__") {
                continue; // internal topics (__consumer_offsets)
            }
            for p in topic.partitions() {
                partitions.add_partition(topic.name(), p.id());
            }
        }
        if let Some(topic) = &self.topic
            && partitions.count() == 0
        {
            return Err(self.not_found(format!("topic {topic:?}")));
        }
        let committed = client
            .committed_offsets(partitions, self.left())
            .map_err(|e| self.error(&client, &e))?;
        let mut found: HashMap<(String, i32), Option<i64>> = HashMap::new();
        for elem in committed.elements() {
            if let Err(e) = elem.error() {
                return Err(self.error(&client, &e));
            }
            let offset = match elem.offset() {
                Offset::Offset(n) if n >= 0 => Some(n),
                _ => None,
            };
            found.insert((elem.topic().to_owned(), elem.partition()), offset);
        }
        if self.topic.is_none() {
            // Only the topics the group has committed on.
            let topics: std::collections::HashSet<String> = found
                .iter()
                .filter(|(_, c)| c.is_some())
                .map(|((t, _), _)| t.clone())
                .collect();
            found.retain(|(t, _), _| topics.contains(t));
        }
        if found.values().all(Option::is_none) && !self.group_exists(&client)? {
            return Err(self.not_found(format!("consumer group {:?}", self.group)));
        }
        let mut offsets = HashMap::with_capacity(found.len());
        for ((topic, partition), committed) in found {
            let (earliest, latest) = client
                .fetch_watermarks(&topic, partition, self.left())
                .map_err(|e| self.error(&client, &e))?;
            offsets.insert(
                (topic, partition),
                PartitionOffsets {
                    earliest,
                    latest,
                    committed,
                },
            );
        }
        Ok(offsets)
    }

    /// Whether the brokers know the group (it has members or committed offsets).
    fn group_exists(&self, client: &Client) -> Result<bool, ReadError> {
        match client.fetch_group_list(Some(&self.group), self.left()) {
            Ok(list) => Ok(list
                .groups()
                .iter()
                .any(|g| g.name() == self.group && !matches!(g.state(), "Dead" | ""))),
            Err(KafkaError::GroupListFetch(
                RDKafkaErrorCode::GroupIdNotFound | RDKafkaErrorCode::CoordinatorNotAvailable,
            )) => Ok(false),
            Err(e) => Err(self.error(client, &e)),
        }
    }

    /// Why no broker can be reached, if none accepts a TCP connection (refused, name
    /// not resolved) within the time left; `None` if one accepts or the time runs out.
    fn unreachable(&self) -> Option<String> {
        use std::net::ToSocketAddrs;
        let mut last = None;
        for broker in self.brokers.split(',') {
            let addrs = match broker.to_socket_addrs() {
                Ok(addrs) => addrs,
                Err(e) => {
                    last = Some(format!("{broker}: {e}"));
                    continue;
                }
            };
            for addr in addrs {
                match std::net::TcpStream::connect_timeout(&addr, self.left()) {
                    Ok(_) => return None,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
                    Err(e) => last = Some(format!("{broker}: {e}")),
                }
            }
        }
        last
    }

    fn not_found(&self, what: String) -> ReadError {
        ReadError::NotFound {
            target: self.shown.clone(),
            what,
        }
    }

    /// Classifies a failed call, with what librdkafka reported meanwhile.
    fn error(&self, client: &Client, error: &KafkaError) -> ReadError {
        match error.rdkafka_error_code() {
            Some(code) => self.code_error(client, code, &error.to_string()),
            None => ReadError::Server {
                target: self.shown.clone(),
                reason: error.to_string(),
            },
        }
    }

    fn code_error(&self, client: &Client, code: RDKafkaErrorCode, what: &str) -> ReadError {
        use RDKafkaErrorCode as C;
        let target = self.shown.clone();
        // librdkafka fails a call that found no usable broker within its time with a
        // transport error, whether the broker refused, failed the SASL handshake or
        // never answered: the errors it reported meanwhile tell which.
        let given = code;
        let code = match code {
            C::BrokerTransportFailure | C::AllBrokersDown | C::OperationTimedOut => {
                let seen = drain_errors(client);
                let found = |wanted: &[C]| seen.iter().copied().find(|c| wanted.contains(c));
                found(&[C::Authentication, C::SaslAuthenticationFailed])
                    .or_else(|| found(&[C::Resolve, C::SSL]))
                    .or_else(|| found(&[C::BrokerTransportFailure, C::AllBrokersDown]))
                    .unwrap_or(C::OperationTimedOut)
            }
            code => code,
        };
        let reason = if code == given {
            what.to_owned()
        } else {
            format!("{what}; librdkafka reported: {code}")
        };
        if code == C::OperationTimedOut
            && let Some(refused) = self.unreachable()
        {
            // librdkafka does not report refused connections to a client that never
            // polls for messages: a plain connection attempt tells.
            return ReadError::Connect {
                target,
                reason: format!("{what}; {refused}"),
            };
        }
        match code {
            C::UnknownTopicOrPartition | C::UnknownTopic => ReadError::NotFound {
                target,
                what: format!("topic {:?}", self.topic.as_deref().unwrap_or("")),
            },
            C::GroupIdNotFound => ReadError::NotFound {
                target,
                what: format!("consumer group {:?}", self.group),
            },
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed => ReadError::Auth { target, reason },
            C::OperationTimedOut | C::RequestTimedOut => ReadError::Timeout(self.timeout),
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::SSL
            | C::NetworkException
            | C::BrokerNotAvailable => ReadError::Connect { target, reason },
            _ => ReadError::Server { target, reason },
        }
    }
}

/// Takes the errors librdkafka queued for the client (connections refused, failed SASL
/// handshakes); the client never subscribes, so its queue holds nothing else.
fn drain_errors(client: &Client) -> Vec<RDKafkaErrorCode> {
    let mut seen = Vec::new();
    // Bounded: a queue cannot hold more than this between two reads worth keeping.
    for _ in 0..1000 {
        match client.poll(Duration::ZERO) {
            Some(Err(e)) => seen.extend(e.rdkafka_error_code()),
            Some(Ok(_)) => {}
            None => break,
        }
    }
    seen
}

/// Checks one `host:port` broker address.
fn check_broker(broker: &str) -> Result<(), String> {
    let shown = broker.rsplit('@').next().unwrap_or(broker);
    let Some((host, port)) = broker.rsplit_once(':') else {
        return Err(format!("broker {shown:?} is not host:port"));
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) || port.parse::<u16>().is_err() {
        return Err(format!("broker {shown:?} is not host:port"));
    }
    Ok(())
}

/// Checks a topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic(topic: &str) -> Result<(), String> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "topic {topic:?} is not a Kafka topic name (1 to 249 letters, digits, '.', '_', '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KafkaSpec {
        KafkaSpec {
            brokers: vec!["127.0.0.1:9092".into()],
            group: "workers".into(),
            topic: Some("jobs".into()),
            offset_reset: OffsetReset::Latest,
            lag_threshold: None,
            cap_at_partitions: true,
            exclude_persistent_lag: false,
            sasl_mechanism: None,
            username: None,
            password: None,
            password_file: None,
            tls: false,
        }
    }

    fn offsets(list: &[(i32, i64, i64, Option<i64>)]) -> HashMap<(String, i32), PartitionOffsets> {
        list.iter()
            .map(|&(p, earliest, latest, committed)| {
                (
                    ("jobs".to_owned(), p),
                    PartitionOffsets {
                        earliest,
                        latest,
                        committed,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn lag_sums_partitions_and_counts_uncommitted_ones_by_the_reset_policy() {
        let o = offsets(&[(0, 0, 10, Some(4)), (1, 2, 7, None), (2, 0, 5, Some(9))]);
        assert_eq!(lag(&o, OffsetReset::Latest, None, None), 6);
        assert_eq!(lag(&o, OffsetReset::Earliest, None, None), 6 + 5);
    }

    #[test]
    fn the_cap_is_partitions_times_the_threshold() {
        let o = offsets(&[(0, 0, 100, Some(0)), (1, 0, 0, Some(0)), (2, 0, 1, Some(0))]);
        assert_eq!(lag(&o, OffsetReset::Latest, None, Some(10)), 30);
        assert_eq!(lag(&o, OffsetReset::Latest, None, Some(50)), 101);
    }

    #[test]
    fn persistent_lag_is_excluded_only_where_the_offset_did_not_move() {
        let o = offsets(&[
            (0, 0, 10, Some(4)),
            (1, 0, 10, Some(5)),
            (2, 0, 10, Some(10)),
        ]);
        let previous: HashMap<_, _> = [
            (("jobs".to_owned(), 0), 4),
            (("jobs".to_owned(), 1), 3),
            (("jobs".to_owned(), 2), 10),
        ]
        .into_iter()
        .collect();
        // Partition 0 stuck (excluded), 1 moved (5), 2 has no lag.
        assert_eq!(lag(&o, OffsetReset::Latest, Some(&previous), None), 5);
    }

    #[test]
    fn settings_are_checked_without_echoing_secrets() {
        let t = Duration::from_secs(1);
        let mut s = spec();
        s.brokers = vec!["u:hunter2@host".into()];
        let e = KafkaSource::new(&s, t).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let mut s = spec();
        s.topic = Some("a b".into());
        assert!(KafkaSource::new(&s, t).unwrap_err().contains("topic"));
        let mut s = spec();
        s.sasl_mechanism = Some(SaslMechanism::ScramSha512);
        s.username = Some("app".into());
        assert!(KafkaSource::new(&s, t).unwrap_err().contains("password"));
        s.password = Some("hunter2".into());
        let ok = KafkaSource::new(&s, t).unwrap();
        assert!(!format!("{ok:?}").contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
        let mut s = spec();
        s.username = Some("app".into());
        assert!(
            KafkaSource::new(&s, t)
                .unwrap_err()
                .contains("sasl_mechanism")
        );
        let mut s = spec();
        s.lag_threshold = Some(0);
        assert!(
            KafkaSource::new(&s, t)
                .unwrap_err()
                .contains("lag_threshold")
        );
    }
}
