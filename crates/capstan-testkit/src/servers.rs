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
//! Done: Redis ([`redis`]); PostgreSQL ([`postgres`]: a fresh database per handle,
//! dropped with it; private: `initdb` + `postgres` on a free port with its socket in the
//! temp dir, run as the `postgres` user when the tests run as root); MariaDB
//! ([`mariadb`]: the same, private: `mariadb-install-db` + `mariadbd`). Both are driven
//! with their command-line clients (`psql`, `mariadb`), installed with the servers.
//! RabbitMQ ([`rabbitmq`]: unique queue names per handle; private: `rabbitmq-server` as
//! the `rabbitmq` user with its own `RABBITMQ_*` dirs, node name, ports and `epmd`, see
//! [`private_rabbitmq`]).
//! NATS ([`nats`]: a unique stream per handle, deleted on drop; private: `nats-server
//! -js -sd DIR`, and [`private_nats`] with auth arguments).
//! Planned in the same shape (standard port → private instance → package hint;
//! isolation by a unique name):
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
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
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

/// PostgreSQL's standard port.
pub const POSTGRES_PORT: u16 = 5432;
/// MariaDB's (and MySQL's) standard port.
pub const MARIADB_PORT: u16 = 3306;

/// Which SQL server a [`SqlServer`] handle is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    /// PostgreSQL, driven with `psql` as the `postgres` user (trust auth).
    Postgres,
    /// MariaDB, driven with `mariadb` as `root` (empty password).
    MariaDb,
}

/// A fresh database on a real PostgreSQL or MariaDB server for one test: created when
/// the handle is made, dropped (with everything in it) when the handle is dropped.
#[derive(Debug)]
pub struct SqlServer {
    /// Which server.
    kind: SqlKind,
    /// The server's port on 127.0.0.1.
    port: u16,
    /// The database only this handle uses, e.g. `capstan_test_4711_3_00ab...`.
    database: String,
    /// Whether the server is a private instance started by this process.
    private: bool,
}

impl SqlServer {
    /// The URL of the handle's database as the administrative user, without a password:
    /// `postgres://postgres@127.0.0.1:PORT/DB` or `mysql://root@127.0.0.1:PORT/DB`.
    pub fn url(&self) -> String {
        self.url_as(self.admin_user(), None)
    }

    /// The URL of the handle's database as `user`, with `password` if given.
    pub fn url_as(&self, user: &str, password: Option<&str>) -> String {
        let scheme = match self.kind {
            SqlKind::Postgres => "postgres",
            SqlKind::MariaDb => "mysql",
        };
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_owned(),
        };
        format!(
            "{scheme}://{auth}@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database only this handle uses.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Whether the server is a private instance this process started.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Runs `sql` (one or more statements) in the handle's database with the command-line
    /// client as the administrative user; returns the output (rows tab-separated, one a
    /// line), or the client's error text.
    pub fn execute(&self, sql: &str) -> Result<String, String> {
        sql_client(self.kind, self.port, Some(&self.database), sql)
    }

    fn admin_user(&self) -> &'static str {
        match self.kind {
            SqlKind::Postgres => "postgres",
            SqlKind::MariaDb => "root",
        }
    }
}

impl Drop for SqlServer {
    fn drop(&mut self) {
        // Best effort: a test that stopped the server has nothing to clean.
        let sql = match self.kind {
            SqlKind::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            SqlKind::MariaDb => format!("DROP DATABASE IF EXISTS {}", self.database),
        };
        let _ = sql_client(self.kind, self.port, None, &sql);
    }
}

/// A fresh database on a real PostgreSQL: the one on 127.0.0.1:5432 if it answers as
/// `postgres` without a password, otherwise a private instance shared by this test
/// process. The database is dropped with the handle.
///
/// # Panics
/// If no server answers and PostgreSQL cannot be started (the message names the Debian
/// package to install), or the database cannot be created.
pub fn postgres() -> SqlServer {
    static SERVER: OnceLock<(u16, bool)> = OnceLock::new();
    let &(port, private) = SERVER.get_or_init(|| {
        if !force_private()
            && sql_client(SqlKind::Postgres, POSTGRES_PORT, None, "SELECT 1").is_ok()
        {
            return (POSTGRES_PORT, false);
        }
        static PRIVATE: OnceLock<PrivateServer> = OnceLock::new();
        (PRIVATE.get_or_init(start_postgres).port, true)
    });
    sql_database(SqlKind::Postgres, port, private)
}

/// A fresh database on a real MariaDB: the one on 127.0.0.1:3306 if it answers as
/// `root` without a password, otherwise a private instance shared by this test process.
/// The database is dropped with the handle.
///
/// # Panics
/// If no server answers and MariaDB cannot be started (the message names the Debian
/// package to install), or the database cannot be created.
pub fn mariadb() -> SqlServer {
    static SERVER: OnceLock<(u16, bool)> = OnceLock::new();
    let &(port, private) = SERVER.get_or_init(|| {
        if !force_private() && sql_client(SqlKind::MariaDb, MARIADB_PORT, None, "SELECT 1").is_ok()
        {
            return (MARIADB_PORT, false);
        }
        static PRIVATE: OnceLock<PrivateServer> = OnceLock::new();
        (PRIVATE.get_or_init(start_mariadb).port, true)
    });
    sql_database(SqlKind::MariaDb, port, private)
}

fn sql_database(kind: SqlKind, port: u16, private: bool) -> SqlServer {
    let database = unique_name("capstan_test_", "").replace(':', "_");
    if let Err(e) = sql_client(kind, port, None, &format!("CREATE DATABASE {database}")) {
        panic!("cannot create the test database {database} on port {port}: {e}");
    }
    SqlServer {
        kind,
        port,
        database,
        private,
    }
}

/// Runs `sql` with `psql` or `mariadb` against 127.0.0.1:`port` (database `db`, or the
/// default one), as the administrative user.
fn sql_client(kind: SqlKind, port: u16, db: Option<&str>, sql: &str) -> Result<String, String> {
    let port = port.to_string();
    let mut command = match kind {
        SqlKind::Postgres => {
            let mut c = Command::new("psql");
            c.args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-X",
                "-q",
                "-At",
            ])
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-F",
                "\t",
                "-d",
                db.unwrap_or("postgres"),
            ])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "2");
            c
        }
        SqlKind::MariaDb => {
            let mut c = Command::new("mariadb");
            c.args([
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
                "-u",
                "root",
            ])
            .args(["--connect-timeout=2", "-N", "-B"]);
            if let Some(db) = db {
                c.args(["-D", db]);
            }
            c.args(["-e", sql]);
            c
        }
    };
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the SQL client: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim_end().to_owned())
    }
}

/// Finds a PostgreSQL server program: on the `PATH`, or in Debian's versioned
/// directory (the newest version).
fn postgres_binary(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    }) {
        return path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|f| f.is_file());
    versions.sort();
    match versions.pop() {
        Some(path) => path,
        None => {
            require_binary(name, "postgresql");
            PathBuf::from(name)
        }
    }
}

/// When the tests run as root, the servers must run as their own user (PostgreSQL
/// refuses root): `Some(user)` to switch to, after giving it `dir`.
fn server_user(user: &str, dir: &Path) -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let owner = nix::unistd::User::from_name(user).ok().flatten();
    let Some(owner) = owner else {
        panic!("the tests run as root and there is no `{user}` user to run the server as");
    };
    if let Err(e) =
        std::os::unix::fs::chown(dir, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
    {
        panic!("cannot give {} to {user}: {e}", dir.display());
    }
    Some(user.to_owned())
}

/// `setpriv` arguments that switch to `user` (nothing if `None`).
fn as_user(user: Option<&str>) -> Vec<String> {
    match user {
        Some(u) => vec![
            format!("--reuid={u}"),
            format!("--regid={u}"),
            "--init-groups".to_owned(),
        ],
        None => Vec::new(),
    }
}

fn start_postgres() -> PrivateServer {
    let initdb = postgres_binary("initdb");
    let server = postgres_binary("postgres");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let dir = temp_dir("postgres");
        let user = server_user("postgres", &dir);
        let data = dir.join("data");
        let out = Command::new("setpriv")
            .args(as_user(user.as_deref()))
            .arg("--")
            .arg(&initdb)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("initdb failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("cannot run initdb: {e}"),
        }
        let mut args = as_user(user.as_deref());
        args.push("--".to_owned());
        args.push(server.to_string_lossy().into_owned());
        for a in [
            "-D",
            &data.to_string_lossy(),
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ] {
            args.push(a.to_owned());
        }
        for a in ["-k", &dir.to_string_lossy(), "-c", "fsync=off"] {
            args.push(a.to_owned());
        }
        let started = PrivateServer::spawn_with("setpriv", &args, port, dir);
        if wait_until(START_TIMEOUT, || {
            sql_client(SqlKind::Postgres, port, None, "SELECT 1").is_ok()
        }) {
            return started;
        }
        last = format!("postgres on port {port} did not answer within {START_TIMEOUT:?}");
    }
    panic!("{last}");
}

fn start_mariadb() -> PrivateServer {
    require_binary("mariadbd", "mariadb-server");
    require_binary("mariadb-install-db", "mariadb-server");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let dir = temp_dir("mariadb");
        let user = server_user("mysql", &dir);
        let user_arg = format!("--user={}", user.as_deref().unwrap_or("mysql"));
        let datadir = format!("--datadir={}", dir.join("data").display());
        // --no-defaults: the machine's own configuration (its error log, its socket)
        // is shared with parallel installs and with the system's server.
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                &user_arg,
                &datadir,
                "--auth-root-authentication-method=normal",
            ])
            .args(["--skip-test-db", "--skip-name-resolve"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                last = format!(
                    "mariadb-install-db failed ({}): {}{}",
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            Err(e) => panic!("cannot run mariadb-install-db: {e}"),
        }
        // Switched by setpriv, not by mariadbd's --user: a process that changes its own
        // user loses its death signal.
        let mut args = as_user(user.as_deref());
        args.extend([
            "--".to_owned(),
            "mariadbd".to_owned(),
            "--no-defaults".to_owned(),
            user_arg.clone(),
            datadir.clone(),
            format!("--socket={}", dir.join("mysqld.sock").display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--skip-name-resolve".to_owned(),
        ]);
        let started = PrivateServer::spawn_with("setpriv", &args, port, dir);
        if wait_until(Duration::from_secs(30), || {
            sql_client(SqlKind::MariaDb, port, None, "SELECT 1").is_ok()
        }) {
            return started;
        }
        last = format!("mariadbd on port {port} did not answer within 30 s");
    }
    panic!("{last}");
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
    pub(crate) fn spawn(program: &str, args: &[String], port: u16, dir: PathBuf) -> Self {
        let mut all = vec!["--".to_owned(), program.to_owned()];
        all.extend_from_slice(args);
        Self::spawn_with("setpriv", &all, port, dir)
    }

    /// Like [`PrivateServer::spawn`] with `setpriv`'s own arguments first (e.g. a user
    /// to switch to), then `--`, the program and its arguments in `args`.
    pub(crate) fn spawn_with(setpriv: &str, args: &[String], port: u16, dir: PathBuf) -> Self {
        let program = args
            .iter()
            .skip_while(|a| *a != "--")
            .nth(1)
            .cloned()
            .unwrap_or_default();
        let (stop, stopped) = mpsc::channel::<()>();
        let (started, result) = mpsc::channel::<Result<(), String>>();
        let setpriv = setpriv.to_owned();
        let args = args.to_vec();
        let log = dir.join("server.log");
        std::thread::spawn(move || {
            let log = std::fs::File::create(&log).ok();
            let mut command = Command::new(&setpriv);
            command
                .args(["--pdeathsig", "KILL"])
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

/// RabbitMQ's standard AMQP port.
pub const RABBITMQ_PORT: u16 = 5672;

/// A place on a real RabbitMQ broker for one test: the broker's URL (user `guest`,
/// virtual host `/`) and queue names no other test uses ([`RabbitmqServer::queue`]).
///
/// Queues are not deleted by the handle (the harness speaks no AMQP): tests declare
/// them with the argument `x-expires` = [`RabbitmqServer::QUEUE_EXPIRES_MS`], so the
/// broker removes them once unused.
#[derive(Debug)]
pub struct RabbitmqServer {
    /// The broker's AMQP port on 127.0.0.1.
    port: u16,
    /// Unique to this handle, e.g. `capstan-test.4711:3:1700000000123.`.
    prefix: String,
}

impl RabbitmqServer {
    /// The `x-expires` (milliseconds) test queues are declared with: an unused queue
    /// is deleted by the broker after this.
    pub const QUEUE_EXPIRES_MS: u32 = 60_000;

    /// The broker's URL as `guest` on the default virtual host, e.g.
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub fn url(&self) -> String {
        self.url_as("guest", "guest")
    }

    /// The broker's URL with another login (e.g. a wrong password).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", self.port)
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A queue name under this handle's prefix.
    pub fn queue(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// A place on a real RabbitMQ broker (`guest`/`guest`): the one on 127.0.0.1:5672 if it
/// answers AMQP, otherwise a private broker shared by this test process
/// ([`private_rabbitmq`]).
///
/// # Panics
/// If no broker answers and `rabbitmq-server` cannot be started (the message names the
/// Debian package to install).
pub fn rabbitmq() -> RabbitmqServer {
    static SERVER: OnceLock<u16> = OnceLock::new();
    let port = *SERVER.get_or_init(|| {
        if !force_private() && amqp_answers(RABBITMQ_PORT) {
            return RABBITMQ_PORT;
        }
        static PRIVATE: OnceLock<PrivateRabbitmq> = OnceLock::new();
        PRIVATE.get_or_init(private_rabbitmq).port()
    });
    RabbitmqServer {
        port,
        prefix: unique_name("capstan-test.", "."),
    }
}

/// How long a private broker may take to answer AMQP (it is usually ready after ~7 s).
const RABBITMQ_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A private RabbitMQ broker and the `epmd` it registers with, both on free loopback
/// ports; both are stopped when it is dropped (a process-wide one dies with the test
/// process).
#[derive(Debug)]
pub struct PrivateRabbitmq {
    /// The broker (dropped first: Rust drops fields in order).
    broker: PrivateServer,
    /// Its own Erlang port mapper, never the system's.
    _epmd: PrivateServer,
}

impl PrivateRabbitmq {
    /// The broker's AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.broker.port()
    }

    /// The broker's data directory (its logs are under `log/` and in `server.log`).
    pub fn dir(&self) -> Option<&Path> {
        self.broker.dir()
    }
}

/// Starts a private RabbitMQ broker for one test (not shared): `rabbitmq-server` as the
/// `rabbitmq` user (when the tests run as root) with `HOME=/var/lib/rabbitmq` (its
/// Erlang cookie), every `RABBITMQ_*` directory and file in a temp dir, a unique node
/// name, AMQP on a free loopback port, the distribution port and a private `epmd` on
/// free loopback ports too, so it never meets the system's broker. Ready after ~7 s.
///
/// # Panics
/// If `rabbitmq-server` or `epmd` is missing, or the broker does not answer within 60 s.
pub fn private_rabbitmq() -> PrivateRabbitmq {
    require_binary("rabbitmq-server", "rabbitmq-server");
    require_binary("epmd", "erlang-base");
    // The package's own launcher (not the wrapper in sbin that switches users itself).
    let launcher = ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("rabbitmq-server");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let epmd_port = free_port();
        let dist_port = free_port();
        let dir = temp_dir("rabbitmq");
        let user = server_user("rabbitmq", &dir);
        let home = match user {
            Some(_) => PathBuf::from("/var/lib/rabbitmq"),
            None => dir.clone(),
        };
        let epmd_dir = temp_dir("epmd");
        let _ = server_user("rabbitmq", &epmd_dir);
        let mut args = as_user(user.as_deref());
        args.extend(
            [
                "--",
                "epmd",
                "-port",
                &epmd_port.to_string(),
                "-address",
                "127.0.0.1",
            ]
            .map(str::to_owned),
        );
        let epmd = PrivateServer::spawn_with("setpriv", &args, epmd_port, epmd_dir);
        if !wait_until(START_TIMEOUT, || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, epmd_port)).is_ok()
        }) {
            last = format!("epmd on port {epmd_port} did not listen within {START_TIMEOUT:?}");
            continue;
        }
        let config = dir.join("rabbitmq.conf");
        let plugins = dir.join("enabled_plugins");
        let written = std::fs::write(&config, "loopback_users.guest = true\n")
            .and_then(|()| std::fs::write(&plugins, "[].\n"));
        if let Err(e) = written {
            panic!(
                "cannot write the private broker's files in {}: {e}",
                dir.display()
            );
        }
        let at = |name: &str| dir.join(name).display().to_string();
        let node = format!("capstan{}x{port}@localhost", std::process::id());
        let env = [
            ("HOME", home.display().to_string()),
            ("RABBITMQ_NODENAME", node),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".to_owned()),
            ("RABBITMQ_NODE_PORT", port.to_string()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
            ("RABBITMQ_MNESIA_BASE", at("mnesia")),
            ("RABBITMQ_LOG_BASE", at("log")),
            ("RABBITMQ_PID_FILE", at("rabbitmq.pid")),
            ("RABBITMQ_PLUGINS_EXPAND_DIR", at("plugins-expand")),
            ("RABBITMQ_FEATURE_FLAGS_FILE", at("feature_flags")),
            ("RABBITMQ_CONFIG_FILE", at("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", at("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", at("enabled_plugins")),
            // The machine's env file names the system broker's node: not read.
            ("RABBITMQ_CONF_ENV_FILE", at("rabbitmq-env.conf")),
            // The launcher then runs the VM in place (no wrapper shell), so killing
            // the process kills the broker.
            ("RUNNING_UNDER_SYSTEMD", "true".to_owned()),
        ];
        let mut args = as_user(user.as_deref());
        args.extend(["--".to_owned(), "env".to_owned()]);
        args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        args.push(launcher.to_owned());
        let broker = PrivateServer::spawn_with("setpriv", &args, port, dir);
        if wait_until(RABBITMQ_START_TIMEOUT, || amqp_answers(port)) {
            return PrivateRabbitmq {
                broker,
                _epmd: epmd,
            };
        }
        last = format!(
            "the private rabbitmq-server on port {port} did not answer AMQP within \
             {RABBITMQ_START_TIMEOUT:?} (its log: {})",
            broker
                .dir()
                .map(|d| d.join("server.log").display().to_string())
                .unwrap_or_default()
        );
    }
    panic!("{last}");
}

/// Whether an AMQP 0-9-1 broker answers on `port`: it replies to the protocol header
/// with a method frame (`connection.start`).
fn amqp_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        REQUEST_TIMEOUT,
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    if stream.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stream, &mut first).is_ok() && first[0] == 1
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
pub(crate) fn temp_dir(what: &str) -> PathBuf {
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
pub(crate) fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
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
    fn sql_handles_get_their_own_database_dropped_with_them() {
        for (a, b) in [(postgres(), postgres()), (mariadb(), mariadb())] {
            assert_ne!(a.database(), b.database());
            a.execute("CREATE TABLE jobs (id INT)").unwrap();
            a.execute("INSERT INTO jobs VALUES (1), (2)").unwrap();
            assert_eq!(a.execute("SELECT count(*) FROM jobs").unwrap(), "2");
            assert!(b.execute("SELECT count(*) FROM jobs").is_err());
            let (kind, port, db) = (a.kind, a.port(), a.database().to_owned());
            drop(a);
            let err = sql_client(kind, port, Some(&db), "SELECT 1").unwrap_err();
            assert!(!err.is_empty(), "the database is gone");
        }
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("a:", ""), unique_name("a:", ""));
        assert!(unique_name("capstan-test:", ":").ends_with(':'));
    }
}

/// NATS's standard client port.
pub const NATS_PORT: u16 = 4222;

/// A place on a real NATS server with JetStream for one test: the server's URL and a
/// stream and consumer name no other test uses. The stream (and its consumers) is
/// deleted when the handle is dropped.
#[derive(Debug)]
pub struct NatsServer {
    /// The server's port on 127.0.0.1.
    port: u16,
    /// Unique to this handle.
    stream: String,
    /// Whether the server is a private instance started by this process.
    private: bool,
}

impl NatsServer {
    /// The server's URL, e.g. `nats://127.0.0.1:4222`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The stream name only this handle uses (the test creates it).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// A subject only this handle uses: the stream's name, a dot and `name`.
    pub fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.stream)
    }

    /// Whether the server is a private instance this process started.
    pub fn is_private(&self) -> bool {
        self.private
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Best effort: deleting the stream deletes its consumers.
        let subject = format!("$JS.API.STREAM.DELETE.{}", self.stream);
        let _ = nats_publish(self.port, &subject);
    }
}

/// A place on a real NATS server with JetStream: the one on 127.0.0.1:4222 if it
/// answers without credentials, otherwise a private `nats-server -js` shared by this
/// test process.
///
/// # Panics
/// If no server answers and `nats-server` cannot be started.
pub fn nats() -> NatsServer {
    static SERVER: OnceLock<(u16, bool)> = OnceLock::new();
    let &(port, private) = SERVER.get_or_init(|| {
        if !force_private() && nats_publish(NATS_PORT, "capstan.test.ping").is_ok() {
            return (NATS_PORT, false);
        }
        static PRIVATE: OnceLock<PrivateServer> = OnceLock::new();
        (PRIVATE.get_or_init(|| private_nats(&[])).port, true)
    });
    NatsServer {
        port,
        stream: unique_name("capstan-test-", "").replace(':', "-"),
        private,
    }
}

/// A private `nats-server -js` started for one test (not shared), with `extra`
/// arguments such as `["--user", "app", "--pass", "s3cret"]` or `["--auth", "tok"]`.
/// Stopped when the value is dropped.
///
/// # Panics
/// If `nats-server` is missing or does not start.
pub fn private_nats(extra: &[&str]) -> PrivateServer {
    require_binary("nats-server", "nats-server");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let dir = temp_dir("nats");
        let mut args: Vec<String> = ["-js", "-a", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push("-sd".to_owned());
        args.push(dir.to_string_lossy().into_owned());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let server = PrivateServer::spawn("nats-server", &args, port, dir);
        // The server greets every connection with INFO, with or without auth.
        let ready = wait_until(START_TIMEOUT, || nats_info(port).is_ok());
        if ready {
            return server;
        }
        last = format!("nats-server on port {port} did not answer within {START_TIMEOUT:?}");
    }
    panic!("{last}");
}

/// Opens a connection to a NATS server and reads its `INFO` greeting.
fn nats_info(port: u16) -> Result<(TcpStream, BufReader<TcpStream>), String> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("INFO ") {
        return Err(format!("not a NATS greeting: {line:?}"));
    }
    Ok((stream, reader))
}

/// Publishes an empty message on `subject` without credentials and waits for the
/// server's `PONG` (an error if it refuses, e.g. because it requires authentication).
fn nats_publish(port: u16, subject: &str) -> Result<(), String> {
    let (mut stream, mut reader) = nats_info(port)?;
    let request = format!("CONNECT {{\"verbose\":false}}\r\nPUB {subject} 0\r\n\r\nPING\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.starts_with("PONG") {
            return Ok(());
        }
        if line.starts_with("-ERR") {
            return Err(line.trim_end().to_owned());
        }
    }
}
