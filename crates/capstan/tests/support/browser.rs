//! A headless Chromium driven over WebDriver (chromedriver, through `fantoccini`), for
//! the tests and benches of the web page: start chromedriver on a free port, open a
//! browser, wait on the DOM with a deadline.
//!
//! Included with `#[path = "support/browser.rs"] mod browser;` (tests) or
//! `#[path = "../tests/support/browser.rs"] mod browser;` (benches).

// Each user takes its own part of this module.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capstan_testkit::servers::free_port;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// chromedriver on a free port, killed when dropped.
pub struct ChromeDriver {
    child: Child,
    /// Its WebDriver URL.
    pub url: String,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The chromedriver binary: `CHROMEDRIVER`, or the one on the PATH.
pub fn chromedriver_binary() -> Option<PathBuf> {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path("chromedriver"))
}

/// chromedriver, started; None (the test skips, loudly) when it is not installed and
/// `CI` is unset. In CI a missing chromedriver fails the test.
pub async fn chromedriver_for_test(what: &str) -> Option<ChromeDriver> {
    let Some(binary) = chromedriver_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is not installed: scripts/test installs it (Debian packages \
             chromium and chromium-driver); {what} cannot be skipped in CI"
        );
        eprintln!(
            "SKIPPED: {what} needs chromedriver (apt-get install chromium \
             chromium-driver); it is not on the PATH"
        );
        return None;
    };
    Some(start_chromedriver(binary).await)
}

/// Starts `binary` on a free port and waits until it listens.
pub async fn start_chromedriver(binary: PathBuf) -> ChromeDriver {
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let driver = ChromeDriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver does not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

/// A headless Chromium session (1360 × 900, `CHROME_BIN` when set).
pub async fn browser(driver: &ChromeDriver) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1360,900",
            "--force-device-scale-factor=1",
            "--lang=en-US",
        ],
    });
    if let Some(bin) = std::env::var_os("CHROME_BIN") {
        options["binary"] = json!(bin.to_string_lossy());
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap()
}

/// Whether a value the page returned is truthy, as JavaScript has it.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// Polls `check` (a JavaScript expression evaluated in the page) every `every` until it
/// is truthy, and returns its value; panics after `within` with its last value and the
/// page's text.
pub async fn wait_js_every(
    page: &Client,
    what: &str,
    check: &str,
    within: Duration,
    every: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    let script = format!("return ({check});");
    loop {
        let value = page.execute(&script, vec![]).await.unwrap();
        if truthy(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            let body = page
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!("never: {what} ({check} = {value})\npage text:\n{body}");
        }
        tokio::time::sleep(every).await;
    }
}

/// [`wait_js_every`] within 30 s, every 100 ms.
pub async fn wait_js(page: &Client, what: &str, check: &str) -> Value {
    wait_js_every(
        page,
        what,
        check,
        Duration::from_secs(30),
        Duration::from_millis(100),
    )
    .await
}

/// A JavaScript expression: the text of the element `css` selects (empty when none).
pub fn text_of(css: &str) -> String {
    format!("(document.querySelector({css:?}) || {{}}).textContent || ''")
}
