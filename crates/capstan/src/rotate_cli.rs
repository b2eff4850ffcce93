//! `capstan cluster rotate|rotations`: blue/green host rotations of a running capstan,
//! through its HTTP API (`/api/v1/rotations`), with the daemon address and token taken
//! as `capstan workflows` takes them ([`crate::workflows_cli`]).
//!
//! `rotate` starts the rotation (or finds the running one of the same cluster and
//! groups, so running the command again resumes watching it), then polls it and shows
//! a progress bar (hosts handled of the total, the phase and what it waits for) until
//! it is done (exit 0) or failed (exit 1, with the error). `--detach` returns at once
//! with the rotation's id; `--json` prints the API's answers instead.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::workflows_cli::{Target, call, segment};

/// How often `rotate` asks how the rotation goes.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or find) a rotation and follow it.
    Rotate {
        /// The ECS cluster.
        cluster: String,
        /// The group whose hosts go.
        from: String,
        /// The group whose hosts replace them.
        to: String,
        /// Return once it is started.
        detach: bool,
    },
    /// The newest rotations.
    List {
        /// At most this many.
        limit: usize,
    },
}

/// How a command ended: the text to print and whether it succeeded.
#[derive(Debug)]
pub struct Outcome {
    /// What to print on stdout.
    pub text: String,
    /// False: exit 1.
    pub ok: bool,
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn num(v: &Value, key: &str) -> u64 {
    v["progress"][key].as_u64().unwrap_or(0)
}

/// The bar's message: phase, then what it does or waits for.
fn message(r: &Value) -> String {
    let mut m = str_of(r, "phase").to_owned();
    if let Some(c) = r["current"].as_str() {
        let _ = write!(m, " · removing {c}");
    }
    if let Some(w) = r["waiting"].as_str() {
        let _ = write!(m, " · {w}");
    }
    m
}

/// The closing text of a rotation.
fn summary(r: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rotation {} of cluster {} from {} to {}: {} ({} removed, {} skipped of {})",
        str_of(r, "id"),
        str_of(r, "cluster"),
        str_of(r, "from"),
        str_of(r, "to"),
        str_of(r, "status"),
        num(r, "removed"),
        num(r, "skipped"),
        num(r, "total"),
    );
    for s in r["skipped"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            out,
            "  skipped {}: {}",
            str_of(&s, "instance"),
            str_of(&s, "reason")
        );
    }
    if let Some(e) = r["error"].as_str() {
        let _ = writeln!(out, "  error: {e}");
    }
    out
}

fn list_text(body: &Value) -> String {
    let items = body["rotations"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no rotations\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<16} {:<16} {:<16} {:<8} {:<11} {:>7}  created",
        "id", "cluster", "from", "to", "status", "phase", "hosts"
    );
    for r in items {
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<16} {:<16} {:<8} {:<11} {:>3}/{:<3}  {}",
            str_of(&r, "id"),
            str_of(&r, "cluster"),
            str_of(&r, "from"),
            str_of(&r, "to"),
            str_of(&r, "status"),
            str_of(&r, "phase"),
            num(&r, "removed") + num(&r, "skipped"),
            num(&r, "total"),
            str_of(&r, "created_at"),
        );
    }
    out
}

/// Runs `action` against the daemon at `target`.
pub async fn run(action: &Action, target: &Target) -> Result<Outcome, String> {
    let base = target.url.trim_end_matches('/');
    match action {
        Action::List { limit } => {
            let url = format!("{base}/api/v1/rotations?limit={limit}");
            let body = call(target, reqwest::Method::GET, &url, None).await?;
            let text = if target.json {
                serde_json::to_string_pretty(&body).map_err(|e| e.to_string())? + "\n"
            } else {
                list_text(&body)
            };
            Ok(Outcome { text, ok: true })
        }
        Action::Rotate {
            cluster,
            from,
            to,
            detach,
        } => {
            let url = format!("{base}/api/v1/rotations");
            let body = json!({"cluster": cluster, "from": from, "to": to});
            let r = call(target, reqwest::Method::POST, &url, Some(&body)).await?;
            let id = str_of(&r, "id").to_owned();
            if *detach {
                let text = if target.json {
                    serde_json::to_string_pretty(&r).map_err(|e| e.to_string())? + "\n"
                } else {
                    format!(
                        "rotation {id} {} ({}); follow it with the same command\n",
                        str_of(&r, "status"),
                        str_of(&r, "phase")
                    )
                };
                return Ok(Outcome { text, ok: true });
            }
            follow(base, &id, r, target).await
        }
    }
}

/// Polls rotation `id` (first seen as `r`) until it ends, showing a progress bar.
async fn follow(base: &str, id: &str, mut r: Value, target: &Target) -> Result<Outcome, String> {
    let url = format!("{base}/api/v1/rotations/{}", segment(id));
    let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    if target.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} hosts  {wide_msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_prefix(format!(
        "rotation {id} {} → {}",
        str_of(&r, "from"),
        str_of(&r, "to")
    ));
    // Off a terminal the bar does not draw: one line per change instead.
    let plain = !target.json && bar.is_hidden();
    let mut last = String::new();
    loop {
        bar.set_length(num(&r, "total").max(1));
        bar.set_position(num(&r, "removed") + num(&r, "skipped"));
        let msg = message(&r);
        if plain && msg != last {
            eprintln!("{id}: {msg}");
        }
        bar.set_message(msg.clone());
        last = msg;
        match str_of(&r, "status") {
            "running" => {}
            status => {
                bar.finish_and_clear();
                let text = if target.json {
                    serde_json::to_string_pretty(&r).map_err(|e| e.to_string())? + "\n"
                } else {
                    summary(&r)
                };
                return Ok(Outcome {
                    text,
                    ok: status == "done",
                });
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
        r = call(target, reqwest::Method::GET, &url, None).await?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_texts_show_progress_skips_and_errors() {
        let r = json!({
            "id": "rot-1", "cluster": "c", "from": "a", "to": "b", "status": "failed",
            "phase": "remove", "current": "i-1", "waiting": "host i-1 draining",
            "progress": {"removed": 1, "skipped": 1, "total": 4},
            "skipped": [{"instance": "i-9", "reason": "not a container instance"}],
            "error": "boom", "created_at": "t",
        });
        assert_eq!(message(&r), "remove · removing i-1 · host i-1 draining");
        let s = summary(&r);
        assert!(s.contains("failed (1 removed, 1 skipped of 4)"), "{s}");
        assert!(s.contains("skipped i-9: not a container instance"), "{s}");
        assert!(s.contains("error: boom"), "{s}");
        let l = list_text(&json!({"rotations": [r]}));
        assert!(l.contains("rot-1") && l.contains("2/4"), "{l}");
        assert_eq!(list_text(&json!({"rotations": []})), "no rotations\n");
    }
}
