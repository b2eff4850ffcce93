//! Every shipped example (`examples/*.toml`) compiles, and `capstan validate`'s report
//! for it is `ok: ...`.
//!
//! Examples may use `${NAME}`; the test gives every variable a placeholder value (never
//! the process environment), so an example only has to be well-formed.

use std::path::{Path, PathBuf};

use capstan::cli;
use capstan::config;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    capstan_testkit::files::with_extension(&dir, "toml")
}

#[test]
fn every_example_compiles() {
    let files = examples();
    assert!(!files.is_empty(), "examples/ holds no *.toml file");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable example");
        let origin = format!(
            "examples/{}",
            path.file_name().expect("a name").to_string_lossy()
        );
        let placeholder = |name: &str| Some(format!("placeholder-for-{name}"));
        match config::compile(&text, &origin, &placeholder) {
            Ok(c) => assert!(!c.services.is_empty(), "{origin}: no service"),
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "examples do not compile:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_embedded_default_validates_through_the_cli() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local-queue.toml");
    let report = cli::validate_report(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report, "ok: 1 source, 1 service");
}
