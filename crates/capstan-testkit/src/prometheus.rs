//! Private Prometheus and Alertmanager servers for tests: always started for the test
//! (the configuration is the test's), on a free loopback port, with their data in a
//! temporary directory, and stopped when the handle is dropped.
//!
//! - [`Prometheus::start`]: `prometheus` (Debian package `prometheus`) with the test's
//!   `prometheus.yml` and any other files it names (rule files, a web config), written
//!   beside it (relative paths in the configuration resolve there).
//!   [`scrape_config`] writes the usual one: every 1 s, one job, the given targets.
//! - [`Alertmanager::start`]: `prometheus-alertmanager` (Debian package
//!   `prometheus-alertmanager`) with the test's `alertmanager.yml`, clustering off.
//!
//! Both are ready when `GET /-/ready` answers 200. A missing binary fails the test
//! naming the package (`./scripts/test` installs both).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::servers::{PrivateServer, START_TIMEOUT, free_port, require_binary, wait_until};

/// Timeout of one harness request (connect, write, read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Prometheus opens its database before it is ready: allow more than other servers.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A `prometheus.yml` scraping `targets` (`host:port`, at `metrics_path`) every second
/// as job `job`, with rules evaluated every second and `rule_files` (paths relative to
/// the configuration) loaded.
pub fn scrape_config(
    job: &str,
    metrics_path: &str,
    targets: &[&str],
    rule_files: &[&str],
) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{}]\n\
         scrape_configs:\n  - job_name: \"{job}\"\n    metrics_path: \"{metrics_path}\"\n    \
         static_configs:\n      - targets: [{}]\n",
        list(rule_files),
        list(targets)
    )
}

/// A private Prometheus for one test. Stopped when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// The running process and its directory.
    server: PrivateServer,
}

impl Prometheus {
    /// Starts `prometheus` with `config` as its `prometheus.yml` and `files` (name,
    /// content) written beside it, and waits until it is ready.
    ///
    /// # Panics
    /// If `prometheus` is missing, or does not get ready (the message holds the end of
    /// its log, which names a bad configuration).
    pub fn start(config: &str, files: &[(&str, &str)]) -> Self {
        Self::start_with(config, files, &[], None)
    }

    /// Like [`Prometheus::start`] with extra command-line arguments; `{dir}` in them is
    /// replaced by the directory the files are in (e.g.
    /// `--web.config.file={dir}/web.yml` for basic auth). `basic` (user, password) is
    /// sent with the readiness check, for a server that requires it.
    ///
    /// # Panics
    /// As [`Prometheus::start`].
    pub fn start_with(
        config: &str,
        files: &[(&str, &str)],
        extra: &[&str],
        basic: Option<(&str, &str)>,
    ) -> Self {
        require_binary("prometheus", "prometheus");
        let auth = basic.map(|(user, password)| basic_auth(user, password));
        let server = start_ready(
            "prometheus",
            "prometheus.yml",
            config,
            files,
            auth.as_deref(),
            |port, dir| {
                let mut args = vec![
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                ];
                args.extend(
                    extra
                        .iter()
                        .map(|a| a.replace("{dir}", &dir.to_string_lossy())),
                );
                args
            },
        );
        Self { server }
    }

    /// `http://127.0.0.1:PORT`, the base of its API (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The directory of its configuration, files, data and `server.log`.
    pub fn dir(&self) -> Option<&Path> {
        self.server.dir()
    }

    /// `GET path` on the server (e.g. `/api/v1/targets`): the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.server.port(), path, None)
    }
}

/// A private Alertmanager for one test. Stopped when dropped.
#[derive(Debug)]
pub struct Alertmanager {
    /// The running process and its directory.
    server: PrivateServer,
}

impl Alertmanager {
    /// Starts `prometheus-alertmanager` with `config` as its `alertmanager.yml`
    /// (clustering off) and waits until it is ready.
    ///
    /// # Panics
    /// If `prometheus-alertmanager` is missing, or does not get ready (the message holds
    /// the end of its log).
    pub fn start(config: &str) -> Self {
        require_binary("prometheus-alertmanager", "prometheus-alertmanager");
        let server = start_ready(
            "prometheus-alertmanager",
            "alertmanager.yml",
            config,
            &[],
            None,
            |port, dir| {
                vec![
                    format!("--config.file={}", dir.join("alertmanager.yml").display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--cluster.listen-address=".to_owned(),
                ]
            },
        );
        Self { server }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): for Prometheus's `alerting`
    /// section and the API (`/api/v2/alerts`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// `127.0.0.1:PORT`, as Prometheus's `alertmanagers` targets want it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The directory of its configuration, data and `server.log`.
    pub fn dir(&self) -> Option<&Path> {
        self.server.dir()
    }

    /// `GET path` on the server (e.g. `/api/v2/alerts`): the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.server.port(), path, None)
    }
}

/// Writes the configuration and files into a new directory, starts `program` with the
/// arguments `args(port, dir)` gives, and waits for `/-/ready`; tries a few ports (one
/// can be taken between finding and binding it).
fn start_ready(
    program: &str,
    config_name: &str,
    config: &str,
    files: &[(&str, &str)],
    authorization: Option<&str>,
    args: impl Fn(u16, &Path) -> Vec<String>,
) -> PrivateServer {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        // No `-` in the name: the directory's name carries the owner's pid after one.
        let dir = crate::servers::temp_dir(&program.replace("prometheus-", ""));
        let written = std::iter::once((config_name, config))
            .chain(files.iter().copied())
            .try_for_each(|(name, text)| std::fs::write(dir.join(name), text));
        if let Err(e) = written {
            panic!("cannot write {program}'s files in {}: {e}", dir.display());
        }
        let arguments = args(port, &dir);
        let server = PrivateServer::spawn(program, &arguments, port, dir.clone());
        let ready = wait_until(READY_TIMEOUT.max(START_TIMEOUT), || {
            http_get(port, "/-/ready", authorization).is_ok_and(|(status, _)| status == 200)
        });
        if ready {
            return server;
        }
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        last = format!(
            "{program} on port {port} was not ready within {READY_TIMEOUT:?}; its log ends: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    panic!("{last}");
}

/// `Basic base64(user:password)`.
fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let at = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (at(0) << 16) | (at(1) << 8) | at(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A minimal HTTP/1.0 GET to `127.0.0.1:port` (with an `Authorization` header if
/// given): the status and the body.
fn http_get(port: u16, path: &str, authorization: Option<&str>) -> Result<(u16, String), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer from {addr}"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(
            basic_auth("ops", "pa55-secret"),
            "Basic b3BzOnBhNTUtc2VjcmV0"
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
        assert_eq!(basic_auth("ab", "c"), "Basic YWI6Yw==");
    }

    #[test]
    fn prometheus_runs_the_tests_config_and_alertmanager_answers() {
        let alertmanager =
            Alertmanager::start("route:\n  receiver: none\nreceivers:\n  - name: none\n");
        let (status, body) = alertmanager.get("/api/v2/status").unwrap();
        assert_eq!(status, 200, "{body}");
        // A target where nothing listens (it is only listed), a recording rule from a
        // file beside the configuration, and the Alertmanager above.
        let target = format!("127.0.0.1:{}", crate::servers::closed_port());
        let config = format!(
            "{}alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{}\"]\n",
            scrape_config("t", "/metrics", &[&target], &["rules.yml"]),
            alertmanager.address()
        );
        let rules = "groups:\n  - name: t\n    rules:\n      - record: capstan_test_one\n        \
                     expr: vector(1)\n";
        let prometheus = Prometheus::start(&config, &[("rules.yml", rules)]);
        assert!(prometheus.url().starts_with("http://127.0.0.1:"));
        let answers = |path: &str, text: &str| {
            wait_until(Duration::from_secs(20), || {
                prometheus
                    .get(path)
                    .is_ok_and(|(s, b)| s == 200 && b.contains(text))
            })
        };
        assert!(
            answers("/api/v1/query?query=capstan_test_one", "\"1\"]"),
            "the recording rule never gave 1"
        );
        assert!(
            answers("/api/v1/targets", &target),
            "the target is not listed"
        );
        assert!(
            answers("/api/v1/alertmanagers", &alertmanager.address()),
            "the alertmanager is not listed"
        );
    }
}
