//! The `command` source against real programs, in real time (the programs are real, so
//! the timeouts are too: short ones).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use capstan_sources::{
    CommandSpec, ReadError, SourceKind, SourceSpec, ValueKind, build, read_once,
};

fn spec(command: &[&str], value: ValueKind, timeout: Duration) -> SourceSpec {
    SourceSpec {
        name: "cmd".into(),
        interval: Duration::from_secs(5),
        timeout,
        max_age: Duration::from_secs(30),
        retention: Duration::from_secs(300),
        value,
        retries: 0,
        kind: SourceKind::Command(CommandSpec {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::new(),
        }),
    }
}

async fn read(command: &[&str], value: ValueKind) -> Result<f64, ReadError> {
    let spec = spec(command, value, Duration::from_secs(10));
    let source = build(&spec).expect("valid settings");
    read_once(source.as_ref(), &spec).await.map_err(|e| {
        assert_eq!(e.name, "cmd");
        e.error
    })
}

#[tokio::test]
async fn reads_one_number_from_stdout() {
    assert_eq!(
        read(&["sh", "-c", "echo 42"], ValueKind::Count).await,
        Ok(42.0)
    );
    assert_eq!(
        read(&["printf", "  3.25\\n\\n"], ValueKind::Count).await,
        Ok(3.25)
    );
    assert_eq!(read(&["echo", "-1.5"], ValueKind::Any).await, Ok(-1.5));
}

#[tokio::test]
async fn runs_without_a_shell_and_with_its_environment() {
    // No shell: "$X" reaches printf literally unless a shell is named.
    let err = read(&["printf", "$X"], ValueKind::Count).await.unwrap_err();
    assert_eq!(err.to_string(), "expected one number on stdout, got \"$X\"");

    let mut spec = spec(
        &["sh", "-c", "echo $QUEUE_DEPTH"],
        ValueKind::Count,
        Duration::from_secs(10),
    );
    if let SourceKind::Command(c) = &mut spec.kind {
        c.env.insert("QUEUE_DEPTH".into(), "17".into());
    }
    let source = build(&spec).unwrap();
    assert_eq!(read_once(source.as_ref(), &spec).await, Ok(17.0));
}

#[tokio::test]
async fn stdin_is_empty() {
    // `wc -c` counts its standard input: it must be empty, not inherited.
    assert_eq!(read(&["wc", "-c"], ValueKind::Count).await, Ok(0.0));
}

#[tokio::test]
async fn non_zero_exit_is_an_error_with_status_and_stderr() {
    let err = read(
        &["sh", "-c", "echo 5; echo 'redis is down' >&2; exit 3"],
        ValueKind::Count,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        ReadError::Exit {
            status: "status 3".into(),
            stderr: "redis is down".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "exited with status 3; stderr: \"redis is down\""
    );
}

#[tokio::test]
async fn stderr_is_cut_to_its_end() {
    let err = read(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line$i >&2; i=$((i+1)); done; exit 1",
        ],
        ValueKind::Count,
    )
    .await
    .unwrap_err();
    let ReadError::Exit { stderr, .. } = err else {
        panic!("expected an exit error, got {err:?}");
    };
    assert!(stderr.len() < 500, "{} bytes", stderr.len());
    assert!(stderr.starts_with('…'), "{stderr}");
    assert!(stderr.ends_with("line199"), "{stderr}");
}

#[tokio::test]
async fn garbage_and_two_numbers_are_parse_errors() {
    let err = read(&["echo", "twelve"], ValueKind::Count)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected one number on stdout, got \"twelve\""
    );
    let err = read(&["printf", "1\\n2\\n"], ValueKind::Count)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected one number on stdout, got \"1\\n2\""
    );
    let err = read(&["true"], ValueKind::Count).await.unwrap_err();
    assert_eq!(err.to_string(), "expected one number on stdout, got \"\"");
}

#[tokio::test]
async fn huge_output_is_refused() {
    let err = read(&["sh", "-c", "yes 1 | head -c 200000"], ValueKind::Count)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReadError::Parse(ref m) if m.contains("more than 64 KiB")),
        "{err}"
    );
}

#[tokio::test]
async fn nan_infinite_and_negative_values_are_rejected_at_the_boundary() {
    for out in ["NaN", "inf", "-inf", "+Infinity"] {
        for kind in [ValueKind::Count, ValueKind::Any] {
            let err = read(&["echo", out], kind).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    ReadError::Rejected {
                        reason: "not a finite number",
                        ..
                    }
                ),
                "{out} {kind:?}: {err}"
            );
        }
    }
    let err = read(&["echo", "-4"], ValueKind::Count).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "value -4 rejected: a count cannot be negative"
    );
    assert_eq!(read(&["echo", "-4"], ValueKind::Any).await, Ok(-4.0));
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let err = read(&["capstan-no-such-program-xyz"], ValueKind::Count)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReadError::Spawn { ref program, .. } if program == "capstan-no-such-program-xyz"),
        "{err}"
    );
}

/// True while `pid` is a live process that has not been killed. A zombie waiting to be
/// reaped, or a process with `SIGKILL` pending (the kernel delivers it asynchronously:
/// it cannot run again), counts as gone.
fn running(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let state = field("State:");
    if state.starts_with('Z') || state.starts_with('X') {
        return false;
    }
    const SIGKILL_BIT: u64 = 1 << (9 - 1);
    let pending = |name: &str| u64::from_str_radix(&field(name), 16).unwrap_or(0);
    (pending("SigPnd:") | pending("ShdPnd:")) & SIGKILL_BIT == 0
}

/// The pids a script wrote, one a line.
fn pids(file: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A shell that starts a long `sleep` as its child and waits for it, after writing
/// both pids to `pid_file`.
fn hanging_script(pid_file: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "sleep 30 & echo $$ > \"$1\"; echo $! >> \"$1\"; wait".into(),
        "sh".into(),
        pid_file.display().to_string(),
    ]
}

#[tokio::test]
async fn hanging_command_is_killed_with_its_children_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let mut spec = spec(&[], ValueKind::Count, Duration::from_millis(300));
    spec.kind = SourceKind::Command(CommandSpec {
        command: hanging_script(&pid_file),
        env: BTreeMap::new(),
    });
    let source = build(&spec).unwrap();

    let started = tokio::time::Instant::now();
    let err = read_once(source.as_ref(), &spec).await.unwrap_err();
    let took = started.elapsed();

    assert_eq!(err.error, ReadError::Timeout(Duration::from_millis(300)));
    assert_eq!(err.to_string(), "source \"cmd\": timed out after 300ms");
    assert!(
        took < Duration::from_secs(10),
        "the read waited for the command: {took:?}"
    );
    let pids = pids(&pid_file);
    assert_eq!(
        pids.len(),
        2,
        "the script wrote the shell's and the sleep's pid"
    );
    for pid in pids {
        assert!(!running(pid), "process {pid} survived the timeout");
    }
}

#[tokio::test]
async fn abandoned_read_kills_the_command_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let mut spec = spec(&[], ValueKind::Count, Duration::from_secs(60));
    spec.kind = SourceKind::Command(CommandSpec {
        command: hanging_script(&pid_file),
        env: BTreeMap::new(),
    });
    let source = build(&spec).unwrap();

    // The read is dropped long before its own timeout, as at shutdown.
    let abandoned = tokio::time::timeout(Duration::from_millis(300), source.read()).await;
    assert!(abandoned.is_err(), "the command cannot have finished");

    let pids = pids(&pid_file);
    assert_eq!(
        pids.len(),
        2,
        "the script wrote the shell's and the sleep's pid"
    );
    for pid in pids {
        assert!(!running(pid), "process {pid} survived the abandoned read");
    }
}
