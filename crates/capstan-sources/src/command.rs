//! The `command` source: runs a program (no shell unless one is named) and reads one
//! number from its standard output.
//!
//! Guarantees:
//! - standard input is empty (`/dev/null`); at most [`STDOUT_CAP`] bytes of standard
//!   output are read (more is an error), and the last [`STDERR_TAIL`] bytes of standard
//!   error are kept for the error message;
//! - the program runs in its own process group; when the timeout fires, or the read is
//!   abandoned (its future dropped, e.g. at shutdown), the whole group is killed with
//!   `SIGKILL`, so a shell script's children die with it; on timeout the program is also
//!   reaped before the read returns;
//! - a non-zero exit is an error naming the status and the end of standard error;
//! - the trimmed output must be exactly one number (`42`, ` 3.5\n`, `1e3`); anything
//!   else is an error quoting a short excerpt of it. `NaN` and `inf` parse, and are then
//!   rejected by the boundary check ([`crate::validate`]).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use crate::error::{ReadError, excerpt};
use crate::spec::CommandSpec;
use crate::{BoxFuture, Source};

/// Most bytes of standard output read; more is an error.
pub const STDOUT_CAP: usize = 64 * 1024;
/// Bytes of standard error kept (the end of it) for error messages.
pub const STDERR_TAIL: usize = 400;
/// Characters of standard output quoted in a parse error.
const OUTPUT_EXCERPT: usize = 80;
/// How long to wait for a killed program to be reaped before leaving that to the
/// runtime's background reaper.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// A `command` source, ready to run.
#[derive(Debug, Clone)]
pub struct CommandSource {
    /// The program: a path, or a name looked up in `PATH`.
    program: String,
    /// Its arguments.
    args: Vec<String>,
    /// Extra environment variables (the rest is inherited).
    env: BTreeMap<String, String>,
    /// After this, the process group is killed and the read fails.
    timeout: Duration,
}

impl CommandSource {
    /// Checks `spec` (the program must be named) and keeps it with its `timeout`.
    pub fn new(spec: &CommandSpec, timeout: Duration) -> Result<Self, String> {
        let Some((program, args)) = spec.command.split_first() else {
            return Err("command is empty: name a program to run".into());
        };
        if program.trim().is_empty() {
            return Err("command's program name is empty".into());
        }
        Ok(Self {
            program: program.clone(),
            args: args.to_vec(),
            env: spec.env.clone(),
            timeout,
        })
    }

    /// Runs the program once and parses its output.
    pub async fn run(&self) -> Result<f64, ReadError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| ReadError::Spawn {
            program: self.program.clone(),
            reason: e.to_string(),
        })?;
        // Declared after `child`, so dropped before it: the group is killed while the
        // leader is not yet reaped, and its id cannot have been reused.
        let mut group = GroupKill::new(&child);

        let outcome = tokio::time::timeout(self.timeout, collect(&mut child)).await;
        match outcome {
            Ok(Ok(output)) => {
                group.disarm();
                interpret(&output)
            }
            Ok(Err(e)) => {
                group.kill();
                reap(&mut child).await;
                Err(e)
            }
            Err(_) => {
                group.kill();
                reap(&mut child).await;
                Err(ReadError::Timeout(self.timeout))
            }
        }
    }
}

impl Source for CommandSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.run())
    }
}

/// What a finished program left.
struct Output {
    /// How it ended.
    status: ExitStatus,
    /// All of standard output (at most [`STDOUT_CAP`] bytes).
    stdout: Vec<u8>,
    /// The end of standard error.
    stderr_tail: Vec<u8>,
}

/// Kills a process group when dropped, unless disarmed. Covers the paths where the
/// read's future is dropped mid-way; `kill_on_drop` alone would only kill the leader.
struct GroupKill {
    /// The group's id (the leader's pid); `None` once disarmed or killed.
    pgid: Option<Pid>,
}

impl GroupKill {
    fn new(child: &Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Self { pgid }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is already gone) is the expected outcome of a race with a
            // program that just exited; nothing else can be done about other errors.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads standard output and error to their ends and waits for the exit, all at once
/// (so a program filling one pipe never blocks on it).
async fn collect(child: &mut Child) -> Result<Output, ReadError> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = async {
        match stdout {
            Some(s) => read_capped(s, STDOUT_CAP).await,
            None => Ok(Vec::new()),
        }
    };
    let err = async {
        Ok(match stderr {
            Some(s) => read_tail(s, STDERR_TAIL).await,
            None => Vec::new(),
        })
    };
    let wait = async {
        child
            .wait()
            .await
            .map_err(|e| ReadError::Io(format!("waiting for the program: {e}")))
    };
    let (stdout, stderr_tail, status) = tokio::try_join!(out, err, wait)?;
    Ok(Output {
        status,
        stdout,
        stderr_tail,
    })
}

/// Reads all of `r`, failing as soon as it holds more than `cap` bytes.
async fn read_capped<R: AsyncRead + Unpin>(r: R, cap: usize) -> Result<Vec<u8>, ReadError> {
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut buf = Vec::new();
    r.take(limit)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| ReadError::Io(format!("reading stdout: {e}")))?;
    if buf.len() > cap {
        return Err(ReadError::Parse(format!(
            "expected one number on stdout, got more than {} KiB",
            cap / 1024
        )));
    }
    Ok(buf)
}

/// Reads `r` to its end, keeping only the last `keep` bytes. A read error ends it
/// quietly: this is only material for an error message.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> Vec<u8> {
    let mut tail = Vec::with_capacity(keep * 2);
    let mut cut = false;
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                    cut = true;
                }
            }
        }
    }
    if cut {
        tail.splice(0..0, "…".bytes());
    }
    tail
}

/// Makes sure a killed program is gone, without waiting forever on one stuck in the
/// kernel (the runtime reaps it in the background then).
async fn reap(child: &mut Child) {
    // An error here means it has already exited, which is what we want.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_GRACE, child.wait()).await;
}

/// Turns a finished program's output into its number, or the reason there is none.
fn interpret(output: &Output) -> Result<f64, ReadError> {
    if !output.status.success() {
        let status = match (output.status.code(), output.status.signal()) {
            (Some(code), _) => format!("status {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => output.status.to_string(),
        };
        return Err(ReadError::Exit {
            status,
            stderr: String::from_utf8_lossy(&output.stderr_tail)
                .trim()
                .to_owned(),
        });
    }
    parse_one_number(&output.stdout)
}

/// Parses standard output that must hold exactly one number, surrounded by whitespace
/// at most.
pub fn parse_one_number(stdout: &[u8]) -> Result<f64, ReadError> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    let mut words = trimmed.split_whitespace();
    let parsed = match (words.next(), words.next()) {
        (Some(word), None) => word.parse::<f64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ReadError::Parse(format!(
            "expected one number on stdout, got {:?}",
            excerpt(trimmed, OUTPUT_EXCERPT)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_with_whitespace_parses() {
        assert_eq!(parse_one_number(b"42\n"), Ok(42.0));
        assert_eq!(parse_one_number(b"  \t3.5 \r\n"), Ok(3.5));
        assert_eq!(parse_one_number(b"1e3"), Ok(1000.0));
        assert_eq!(parse_one_number(b"-7"), Ok(-7.0));
    }

    #[test]
    fn anything_but_one_number_is_an_error_quoting_the_output() {
        let err = |s: &[u8]| parse_one_number(s).unwrap_err().to_string();
        assert_eq!(err(b""), "expected one number on stdout, got \"\"");
        assert_eq!(err(b"1 2\n"), "expected one number on stdout, got \"1 2\"");
        assert_eq!(
            err(b"12 jobs"),
            "expected one number on stdout, got \"12 jobs\""
        );
        assert_eq!(
            err(b"4\n5\n"),
            "expected one number on stdout, got \"4\\n5\""
        );
        let long = "x".repeat(500);
        let msg = err(long.as_bytes());
        let quoted = format!("\"{}…\"", "x".repeat(OUTPUT_EXCERPT));
        assert_eq!(msg, format!("expected one number on stdout, got {quoted}"));
    }

    #[test]
    fn empty_command_is_refused() {
        let spec = CommandSpec {
            command: vec![],
            env: BTreeMap::new(),
        };
        assert!(CommandSource::new(&spec, Duration::from_secs(1)).is_err());
        let spec = CommandSpec {
            command: vec![" ".into()],
            env: BTreeMap::new(),
        };
        assert!(CommandSource::new(&spec, Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn stderr_tail_keeps_the_end() {
        let data = format!("{}END", "a".repeat(10_000));
        let tail = read_tail(data.as_bytes(), 10).await;
        assert_eq!(String::from_utf8_lossy(&tail), "…aaaaaaaEND");
        let short = read_tail(&b"boom"[..], 10).await;
        assert_eq!(short, b"boom");
    }

    #[tokio::test]
    async fn stdout_over_the_cap_is_an_error() {
        let data = [b'1'; 100];
        assert_eq!(read_capped(&data[..], 100).await.unwrap().len(), 100);
        let err = read_capped(&data[..], 99).await.unwrap_err();
        assert!(matches!(err, ReadError::Parse(_)), "{err}");
    }
}
