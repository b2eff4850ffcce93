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

fn repo_file(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file);
    std::fs::read_to_string(path).unwrap()
}

/// The argument of the Dockerfile's instruction `name` in its final stage (the last one).
fn instruction(dockerfile: &str, name: &str) -> String {
    dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("the Dockerfile has no {name}"))
        .trim()
        .to_owned()
}

/// The Dockerfile builds the binary `scripts/build-static` builds and checks (the same
/// cargo command), and its image runs a command line capstan accepts, as nobody.
#[test]
fn the_dockerfile_builds_the_checked_static_binary_and_runs_it() {
    let dockerfile = repo_file("Dockerfile");
    let script = repo_file("scripts/build-static");
    for part in [
        "cargo build --release --locked -p capstan --features static",
        "x86_64-unknown-linux-musl",
    ] {
        assert!(dockerfile.contains(part), "Dockerfile: {part}");
        assert!(script.contains(part), "scripts/build-static: {part}");
    }
    // The feature exists: the crate's manifest declares it.
    let manifest = repo_file("crates/capstan/Cargo.toml");
    assert!(
        manifest.contains("\nstatic = ["),
        "crates/capstan/Cargo.toml"
    );
    let entrypoint: Vec<String> =
        serde_json::from_str(&instruction(&dockerfile, "ENTRYPOINT")).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/capstan"]);
    let cmd: Vec<String> = serde_json::from_str(&instruction(&dockerfile, "CMD")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(&cmd)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd:?}");
    assert_eq!(instruction(&dockerfile, "USER"), "65534:65534");
    assert_eq!(instruction(&dockerfile, "EXPOSE"), "9120");
}

/// The ECS task definition runs the image as the Dockerfile does (its command, port,
/// user and state volume), with the token from a secret; and AWS's own API model
/// accepts it: botocore (from moto's environment) validates every parameter of
/// `RegisterTaskDefinition` before sending it, and moto registers it.
#[test]
fn the_ecs_task_definition_matches_the_image_and_registers() {
    let text = repo_file("deploy/ecs-task-definition.json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dockerfile = repo_file("Dockerfile");
    let container = &doc["containerDefinitions"][0];
    assert_eq!(container["name"], "capstan");
    let cmd: serde_json::Value = serde_json::from_str(&instruction(&dockerfile, "CMD")).unwrap();
    assert_eq!(container["command"], cmd);
    assert_eq!(
        container["portMappings"][0]["containerPort"]
            .as_u64()
            .unwrap()
            .to_string(),
        instruction(&dockerfile, "EXPOSE")
    );
    assert_eq!(container["user"], instruction(&dockerfile, "USER").as_str());
    let volume: Vec<String> = serde_json::from_str(&instruction(&dockerfile, "VOLUME")).unwrap();
    assert_eq!(
        container["mountPoints"][0]["containerPath"],
        volume[0].as_str()
    );
    assert_eq!(container["secrets"][0]["name"], "CAPSTAN_TOKEN");

    let moto = capstan_testkit::moto::moto();
    let python = capstan_testkit::venv::dir().join("bin/python3");
    let family = moto.name("capstan");
    let script = r#"
import json, sys, boto3
doc = json.load(open(sys.argv[1]))
doc["family"] = sys.argv[3]
ecs = boto3.client("ecs", endpoint_url=sys.argv[2], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
registered = ecs.register_task_definition(**doc)["taskDefinition"]
print(json.dumps({"family": registered["family"],
                  "command": registered["containerDefinitions"][0]["command"]}))
"#;
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ecs-task-definition.json");
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&path)
        .arg(moto.endpoint_url())
        .arg(&family)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "RegisterTaskDefinition refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(registered["family"], family.as_str());
    assert_eq!(registered["command"], cmd);
}
