//! Real servers for integration tests: each function gives a test a usable, isolated
//! place on a real server.
//!
//! Rules, the same for every server:
//! - **Use the one already running** on its standard loopback port (developer machines
//!   and CI run Redis 6379, PostgreSQL 5432, MariaDB 3306, RabbitMQ 5672 and NATS 4222)
//!   when it answers as expected.
//! - **Otherwise start a private instance** on a free loopback port with its data in a
//!   temporary directory, once per test process (a `OnceLock`; nextest runs each test
//!   in its own process, `cargo test` shares one). It is started under
//!   `setpriv --pdeathsig KILL` from a keeper thread that lives as long as the process,
//!   so it dies with the test process; its directory is removed when the instance goes.
//! - **A missing binary fails the test** with the Debian package to install and a
//!   pointer to `./scripts/test`, which installs what is missing.
//! - **Tests isolate themselves**: every handle carries a unique prefix
//!   ([`RedisServer::key`]) so parallel tests never see each other's state, and removes
//!   its keys when dropped.
//!
//! Set `CAPSTAN_TEST_PRIVATE_SERVERS=1` to always start private instances (to check the
//! fresh-machine path on a machine that runs the servers).
//!
//! Done: Redis ([`redis`]). Planned in the same shape (standard port → private instance
//! → package hint; isolation by a unique name):
//! - PostgreSQL (`postgresql`, 5432): a fresh database per handle; private: `initdb`
//!   + `pg_ctl` on a free port with a socket dir in the temp dir.
//! - MariaDB (`mariadb-server`, 3306): a fresh database per handle; private:
//!   `mariadb-install-db` + `mariadbd`.
//! - RabbitMQ (`rabbitmq-server`, 5672): a unique queue name per handle; private: own
//!   `RABBITMQ_*` dirs and node name, `epmd` stopped with it.
//! - NATS (`nats-server`, 4222): a unique stream name per handle; private: `-js -sd DIR`.
//! - Prometheus / Alertmanager (`prometheus`, `prometheus-alertmanager`): always
//!   private (the config is the test's), on free ports.
//! - moto (`pip install 'moto[server]'` into a project-local venv): always private.
//!
//! Also here, for error-path tests of any client: [`closed_port`] (nothing listens)
//! and [`SilentServer`] (accepts connections and never answers).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a private instance may take to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one harness request (connect, write, read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Redis's standard port.
pub const REDIS_PORT: u16 = 6379;

/// A place on a real Redis server for one test: the server's URL and a key prefix no
/// other test uses. Keys under the prefix are deleted when the handle is dropped.
#[derive(Debug)]
pub struct RedisServer {
    /// The server's port on 127.0.0.1.
    port: u16,
    /// Unique to this handle, e.g. `capstan-test:4711:3:1700000000123:`.
    prefix: String,
    /// Whether the server is a private instance started by this process.
    private: bool,
}

impl RedisServer {
    /// The URL of the server's database 0, e.g. `redis://127.0.0.1:6379/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The key prefix only this handle uses.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key name only this handle uses: the prefix followed by `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether the server is a private instance this process started (false: the one
    /// already running on the standard port).
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Sends one command and returns the reply as text (see [`resp_command`]).
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        resp_command(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Best effort: a test that stopped the server or broke it has nothing to clean.
        let script =
            "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0";
        let pattern = format!("{}*", self.prefix);
        let _ = resp_command(self.port, &["EVAL", script, "0", &pattern]);
    }
}

/// A place on a real Redis server: the one on 127.0.0.1:6379 if it answers `PING`
/// without a password, otherwise a private `redis-server` shared by this test process.
///
/// # Panics
/// If no server answers and `redis-server` cannot be started (the message names the
/// Debian package to install).
pub fn redis() -> RedisServer {
    static SERVER: OnceLock<(u16, bool)> = OnceLock::new();
    let &(port, private) = SERVER.get_or_init(|| {
        if !force_private() && redis_answers(REDIS_PORT) {
            return (REDIS_PORT, false);
        }
        (start_private_redis(), true)
    });
    RedisServer {
        port,
        prefix: unique_name("capstan-test:", ":"),
        private,
    }
}

/// A private `redis-server` started for one test (not shared): for tests that need a
/// server they can stop, or one with its own settings (`extra` arguments such as
/// `["--requirepass", "s3cret"]`). The server is stopped when the value is dropped.
///
/// # Panics
/// If `redis-server` is missing or does not start.
pub fn private_redis(extra: &[&str]) -> PrivateServer {
    start_redis(None, extra)
}

/// Like [`private_redis`], on a given port (e.g. the port of one the test stopped, to
/// check that a client reconnects).
///
/// # Panics
/// If `redis-server` is missing or does not start on that port.
pub fn private_redis_on(port: u16, extra: &[&str]) -> PrivateServer {
    start_redis(Some(port), extra)
}

/// The port of this process's shared private Redis, started on first use and kept (never
/// dropped) until the process ends.
fn start_private_redis() -> u16 {
    static PRIVATE: OnceLock<PrivateServer> = OnceLock::new();
    PRIVATE.get_or_init(|| start_redis(None, &[])).port
}

fn start_redis(port: Option<u16>, extra: &[&str]) -> PrivateServer {
    require_binary("redis-server", "redis-server");
    let mut last = String::new();
    // A free port can be taken between finding and binding it: try a few.
    for _ in 0..3 {
        let port = port.unwrap_or_else(free_port);
        let dir = temp_dir("redis");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.to_string_lossy(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let server = PrivateServer::spawn("redis-server", &args, port, dir);
        let ready = wait_until(START_TIMEOUT, || match resp_command(port, &["PING"]) {
            Ok(reply) => reply == "PONG",
            // With --requirepass a ping answers NOAUTH: it is up.
            Err(e) => e.starts_with("NOAUTH"),
        });
        if ready {
            return server;
        }
        last = format!("redis-server on port {port} did not answer within {START_TIMEOUT:?}");
    }
    panic!("{last}");
}

/// Whether a Redis answering `PING` without a password listens on `port`.
fn redis_answers(port: u16) -> bool {
    resp_command(port, &["PING"]).is_ok_and(|r| r == "PONG")
}

/// Sends one Redis command over a fresh connection to `127.0.0.1:port` and returns the
/// reply as text: a simple string or bulk string as is, an integer in decimal, an array
/// as its elements joined by newlines (nested arrays flattened), nil as `"(nil)"`. An error reply is
/// `Err` with the server's text; so is a connection failure.
pub fn resp_command(port: u16, args: &[&str]) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        request.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        request.extend_from_slice(a.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(&stream);
    read_reply(&mut reader)
}

fn read_reply(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or("connection closed")?;
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(rest.to_owned()),
        "$" => {
            let Ok(len) = rest.parse::<usize>() else {
                return Ok("(nil)".to_owned());
            };
            let mut buf = vec![0; len + 2];
            reader.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(len);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let Ok(n) = rest.parse::<usize>() else {
                return Ok("(nil)".to_owned());
            };
            let items: Result<Vec<String>, String> = (0..n).map(|_| read_reply(reader)).collect();
            Ok(items?.join("\n"))
        }
        other => Err(format!("unexpected reply type {other:?}")),
    }
}

/// A server process this test process started. Killed (and its directory removed) on
/// drop; a process-wide one lives until the process ends and dies with it.
#[derive(Debug)]
pub struct PrivateServer {
    /// Its port on 127.0.0.1.
    port: u16,
    /// Dropping it asks the keeper thread to kill the process.
    stop: Option<mpsc::Sender<()>>,
    /// Its data directory.
    dir: Option<PathBuf>,
}

impl PrivateServer {
    /// Starts `program args` under `setpriv --pdeathsig KILL` from a keeper thread that
    /// waits for it, so the process dies with the test process (the death signal fires
    /// when the thread that started it ends).
    fn spawn(program: &str, args: &[String], port: u16, dir: PathBuf) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let (started, result) = mpsc::channel::<Result<(), String>>();
        let program = program.to_owned();
        let args = args.to_vec();
        let log = dir.join("server.log");
        std::thread::spawn(move || {
            let log = std::fs::File::create(&log).ok();
            let mut command = Command::new("setpriv");
            command
                .args(["--pdeathsig", "KILL", "--"])
                .arg(&program)
                .args(&args)
                .stdin(Stdio::null());
            match log.and_then(|f| f.try_clone().ok().map(|g| (f, g))) {
                Some((out, err)) => command.stdout(out).stderr(err),
                None => command.stdout(Stdio::null()).stderr(Stdio::null()),
            };
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = started.send(Err(format!("cannot start {program}: {e}")));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            // Either a stop request or the handle's drop (the sender goes away) ends it;
            // a process-wide handle is never dropped, so this thread lives on.
            let _ = stopped.recv();
            let _ = child.kill();
            let _ = child.wait();
        });
        match result.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the keeper thread of a private server died"),
        }
        Self {
            port,
            stop: Some(stop),
            dir: Some(dir),
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0` (for a Redis instance).
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its data directory (logs are in `server.log` there).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            // The process is gone once nothing accepts on its port any more.
            let port = self.port;
            wait_until(START_TIMEOUT, || {
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
            });
            if let Some(dir) = self.dir.take() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A loopback listener that accepts connections and never answers: a server that
/// hangs, for timeout tests. Stops accepting (and closes what it accepted) when dropped.
#[derive(Debug)]
pub struct SilentServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Set on drop; the accepting thread checks it after each connection.
    stop: Arc<AtomicBool>,
}

impl SilentServer {
    /// Listens on a free loopback port; accepted connections are held open, unread.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start() -> Self {
        #[allow(clippy::expect_used)] // the machine's loopback, not outside input
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
        #[allow(clippy::expect_used)]
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(conn) = conn {
                    held.push(conn);
                }
            }
        });
        Self { addr, stop }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accepting thread, which then sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, REQUEST_TIMEOUT);
    }
}

/// A loopback port where nothing listens (it was free a moment ago): for "server down"
/// tests.
pub fn closed_port() -> u16 {
    free_port()
}

/// A port that was free on 127.0.0.1 when asked.
///
/// # Panics
/// If no loopback port can be bound.
pub fn free_port() -> u16 {
    #[allow(clippy::expect_used)] // the machine's loopback, not outside input
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// `{start}{pid}:{counter}:{random hex}{end}`: unique across parallel test processes
/// and within one, and unlikely to meet what a crashed earlier run left behind.
pub fn unique_name(start: &str, end: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().build_hasher().finish();
    format!("{start}{}:{n}:{random:016x}{end}", std::process::id())
}

/// Fails the test, naming the package, if `binary` is not on the `PATH`.
///
/// # Panics
/// If the binary is missing.
pub fn require_binary(binary: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(binary).is_file()));
    assert!(
        found,
        "`{binary}` is not installed and no server answers on its standard port: install \
         the Debian package `{package}` (apt-get install {package}); ./scripts/test \
         installs it"
    );
}

/// Whether tests must start private instances (`CAPSTAN_TEST_PRIVATE_SERVERS=1`).
fn force_private() -> bool {
    std::env::var_os("CAPSTAN_TEST_PRIVATE_SERVERS").is_some_and(|v| v == "1")
}

/// A new empty directory for a private server's data, named
/// `capstan-server-{what}-{pid}-*` in the system's temp dir. A process-wide instance
/// is never dropped, so its directory outlives the test process: directories of
/// processes that are gone are removed here, before a new one is made.
fn temp_dir(what: &str) -> PathBuf {
    let base = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|n| n.strip_prefix("capstan-server-"))
                .and_then(|n| n.split('-').nth(1))
                .and_then(|pid| pid.parse::<u32>().ok());
            if owner.is_some_and(|pid| !crate::process::alive(pid)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    #[allow(clippy::expect_used)] // the machine's temp dir, not outside input
    tempfile::Builder::new()
        .prefix(&format!("capstan-server-{what}-{}-", std::process::id()))
        .tempdir_in(base)
        .expect("create a temporary directory")
        .keep()
}

/// Polls `ready` every 50 ms until it holds or `limit` passes.
#[allow(clippy::disallowed_methods)] // waiting for a real server process: wall-clock time
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn shared_redis_answers_and_handles_are_isolated() {
        let a = redis();
        let b = redis();
        assert_ne!(a.prefix(), b.prefix());
        assert_eq!(a.port(), b.port());
        assert!(a.url().starts_with("redis://127.0.0.1:"));
        let key = a.key("list");
        assert_eq!(a.command(&["RPUSH", &key, "x", "y"]).unwrap(), "2");
        assert_eq!(b.command(&["EXISTS", &b.key("list")]).unwrap(), "0");
        drop(a);
        assert_eq!(
            b.command(&["EXISTS", &key]).unwrap(),
            "0",
            "dropped handles clean up"
        );
    }

    #[test]
    fn a_private_redis_starts_on_a_free_port_and_stops_on_drop() {
        let server = private_redis(&["--requirepass", "s3cret"]);
        let port = server.port();
        assert_ne!(port, REDIS_PORT);
        let err = resp_command(port, &["PING"]).unwrap_err();
        assert!(err.starts_with("NOAUTH"), "{err}");
        let dir = server.dir().unwrap().to_owned();
        assert!(dir.is_dir());
        drop(server);
        assert!(resp_command(port, &["PING"]).is_err(), "stopped");
        assert!(!dir.exists(), "its directory is removed");
    }

    #[test]
    fn silent_server_accepts_and_never_answers() {
        let server = SilentServer::start();
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 1];
        let err = (&stream).read(&mut buf).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        assert!(TcpStream::connect(("127.0.0.1", closed_port())).is_err());
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("a:", ""), unique_name("a:", ""));
        assert!(unique_name("capstan-test:", ":").ends_with(':'));
    }
}
