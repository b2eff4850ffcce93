//! The deployment pieces in `deploy/`: the systemd unit's command line is one capstan
//! accepts, and its reload sends the signal capstan reloads on.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

fn deploy(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file);
    std::fs::read_to_string(path).unwrap()
}

/// The unit's sections and their keys (the last value of a key wins; comments dropped).
fn unit(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap();
        out.entry(section.clone())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    }
    out
}

#[test]
fn the_systemd_unit_runs_a_command_line_capstan_accepts() {
    let u = unit(&deploy("capstan.service"));
    assert_eq!(
        u.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );
    let service = &u["Service"];
    let exec = service["ExecStart"].split_whitespace().collect::<Vec<_>>();
    assert_eq!(exec[0], "/usr/local/bin/capstan");
    assert_eq!(exec[1..], ["run", "--config", "/etc/capstan/capstan.toml"]);
    // The same arguments (the file need not exist to parse them): clap accepts them.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(&exec[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // capstan reloads its configuration on SIGHUP.
    assert_eq!(service["ExecReload"], "/bin/kill -HUP $MAINPID");
    assert_eq!(service["StateDirectory"], "capstan");
    assert_eq!(u["Install"]["WantedBy"], "multi-user.target");
}
