//! Every shipped example (`examples/*.toml`, and each recipe's `examples/<recipe>/*.toml`)
//! compiles, and `capstan validate`'s report
//! for it is `ok: ...`.
//!
//! Examples may use `${NAME}`; the test gives every variable a well-formed placeholder
//! value (never the process environment), so an example only has to be well-formed.

use std::path::{Path, PathBuf};

use capstan::cli;
use capstan::config;

/// `examples/*.toml` and every recipe's configurations, `examples/<recipe>/*.toml`
/// (the scenarios' files, `examples/scenarios/`, are the simulator's).
fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = capstan_testkit::files::with_extension(&dir, "toml");
    let mut recipes: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir() && !p.ends_with("scenarios"))
        .collect();
    recipes.sort();
    for recipe in recipes {
        files.extend(capstan_testkit::files::with_extension(&recipe, "toml"));
    }
    files
}

/// A well-formed stand-in for the variable `name`: an address for `*REDIS*_URL`, any
/// other `*_URL` and a target group's `*TARGET_GROUP*_ARN`, a word otherwise.
fn placeholder(name: &str) -> String {
    if name.ends_with("_URL") && name.contains("REDIS") {
        "redis://127.0.0.1:6379".to_owned()
    } else if name.ends_with("_URL") {
        "http://127.0.0.1:9".to_owned()
    } else if name.ends_with("_ARN") && name.contains("TARGET_GROUP") {
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/example/0123456789abcdef"
            .to_owned()
    } else {
        format!("placeholder-for-{name}")
    }
}

#[test]
fn every_example_compiles() {
    let files = examples();
    assert!(!files.is_empty(), "examples/ holds no *.toml file");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable example");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let relative = path.strip_prefix(&dir).unwrap_or(path);
        let origin = format!("examples/{}", relative.display());
        let placeholder = |name: &str| Some(placeholder(name));
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
