//! `capstan workflows list|show|redrive`: the scale-in workflows of a running capstan,
//! through its HTTP API (`/api/v1/workflows`).
//!
//! The daemon's address comes from `--url` (default `http://127.0.0.1:9120`); its
//! token, when it has one, from `--token-file` or the `CAPSTAN_TOKEN` environment
//! variable (never from the command line, where other users could read it).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The newest workflows, optionally of one service.
    List {
        /// Only this service's.
        service: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// One workflow and its journal.
    Show {
        /// Its id.
        id: String,
    },
    /// Resume a failed workflow from its failed step.
    Redrive {
        /// Its id.
        id: String,
    },
}

/// Where the daemon is.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its base URL.
    pub url: String,
    /// A file holding its token.
    pub token_file: Option<PathBuf>,
    /// Print the JSON answer as it is.
    pub json: bool,
}

fn token(target: &Target) -> Result<Option<String>, String> {
    if let Some(path) = &target.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(format!(
                "--token-file {}: the file is empty",
                path.display()
            ));
        }
        return Ok(Some(token));
    }
    Ok(std::env::var("CAPSTAN_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// Percent-encodes a path segment (workflow ids hold only safe characters, but a
/// user may type anything).
pub(crate) fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `action` against the daemon at `target`; the text to print, or an error.
pub async fn run(action: &Action, target: &Target) -> Result<String, String> {
    let base = target.url.trim_end_matches('/');
    let (method, url) = match action {
        Action::List { service, limit } => {
            let mut url = format!("{base}/api/v1/workflows?limit={limit}");
            if let Some(s) = service {
                let _ = write!(url, "&service={}", segment(s));
            }
            (reqwest::Method::GET, url)
        }
        Action::Show { id } => (
            reqwest::Method::GET,
            format!("{base}/api/v1/workflows/{}", segment(id)),
        ),
        Action::Redrive { id } => (
            reqwest::Method::POST,
            format!("{base}/api/v1/workflows/{}/redrive", segment(id)),
        ),
    };
    let body = call(target, method, &url, None).await?;
    if target.json {
        return serde_json::to_string_pretty(&body).map_err(|e| e.to_string());
    }
    Ok(match action {
        Action::List { .. } => list_text(&body),
        Action::Show { .. } => show_text(&body),
        Action::Redrive { id } => format!(
            "workflow {id} resumed at {} ({})\n",
            body["step"].as_str().unwrap_or("?"),
            body["status"].as_str().unwrap_or("?")
        ),
    })
}

/// Sends `method url` (with `body` as JSON, if any) to the daemon with `target`'s
/// token: the JSON answer, or an error naming the URL, the status and the daemon's
/// reason. Shared by the CLI commands that talk to a running capstan.
pub(crate) async fn call(
    target: &Target,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client.request(method, url);
    if let Some(token) = token(target)? {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{url}: cannot reach capstan: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: not a JSON answer ({status}): {e}"))?;
    if !status.is_success() {
        let message = body["error"].as_str().unwrap_or("no reason given");
        return Err(format!("{url}: {status}: {message}"));
    }
    Ok(body)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn list_text(body: &Value) -> String {
    let mut out = String::new();
    let items = body["workflows"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        out.push_str("no workflows\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<40} {:<16} {:<10} {:<14} {:>9} {:>7}  created",
        "id", "service", "status", "step", "from → to", "stopped"
    );
    for w in items {
        let victims = w["victims"].as_array().cloned().unwrap_or_default();
        let stopped = victims.iter().filter(|v| v["kept"].is_null()).count();
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:<10} {:<14} {:>4} → {:<3} {:>3}/{:<3}  {}",
            str_of(&w, "id"),
            str_of(&w, "service"),
            str_of(&w, "status"),
            str_of(&w, "step"),
            w["from"].as_u64().unwrap_or(0),
            w["to"].as_u64().unwrap_or(0),
            stopped,
            victims.len(),
            str_of(&w, "created_at"),
        );
    }
    out
}

fn show_text(w: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "workflow {}", str_of(w, "id"));
    let _ = writeln!(out, "  service: {}", str_of(w, "service"));
    let _ = writeln!(
        out,
        "  status:  {} at {}",
        str_of(w, "status"),
        str_of(w, "step")
    );
    if let Some(e) = w["error"].as_str() {
        let _ = writeln!(out, "  error:   {e}");
    }
    let _ = writeln!(
        out,
        "  scale in {} → {}",
        w["from"].as_u64().unwrap_or(0),
        w["to"].as_u64().unwrap_or(0)
    );
    for v in w["victims"].as_array().cloned().unwrap_or_default() {
        match v["kept"].as_str() {
            Some(why) => {
                let _ = writeln!(out, "  victim {} kept: {why}", str_of(&v, "task"));
            }
            None => {
                let _ = writeln!(out, "  victim {}", str_of(&v, "task"));
            }
        }
    }
    let _ = writeln!(out, "journal:");
    for e in w["journal"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            out,
            "  {:>3} {} {:<14} {:<9} {}",
            e["seq"].as_u64().unwrap_or(0),
            str_of(&e, "at"),
            str_of(&e, "step"),
            str_of(&e, "event"),
            str_of(&e, "detail"),
        );
    }
    out
}
