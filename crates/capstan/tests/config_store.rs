//! `[store]`: the default is an SQLite file next to the configuration; a relative path
//! is resolved against the configuration file's directory by `load`; the spec opens.

use std::path::{Path, PathBuf};

use capstan::config;
use capstan_store::{DEFAULT_RETENTION, StoreKind};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config/valid/store.toml")
}

#[test]
fn load_resolves_the_path_against_the_config_directory() {
    let path = fixture();
    let config = config::load(&path).unwrap();
    assert_eq!(config.store.retention, 50_000);
    let dir = path.parent().unwrap();
    assert_eq!(
        config.store.kind,
        StoreKind::Sqlite {
            path: dir.join("state/decisions.db")
        }
    );
}

#[test]
fn compile_keeps_the_path_as_written_and_defaults_to_sqlite() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let config = config::compile(&text, "store.toml", &|_| None).unwrap();
    assert_eq!(
        config.store.kind,
        StoreKind::Sqlite {
            path: PathBuf::from("state/decisions.db")
        }
    );
    let without: String = text
        .lines()
        .skip_while(|l| !l.starts_with("[sources"))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = config::compile(&without, "x.toml", &|_| None).unwrap();
    assert_eq!(config.store.retention, DEFAULT_RETENTION);
    assert_eq!(
        config.store.kind,
        StoreKind::Sqlite {
            path: PathBuf::from("capstan.db")
        }
    );
}

#[test]
fn a_loaded_config_opens_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture())
        .unwrap()
        .replace("state/decisions.db", "decisions.db");
    let file = dir.path().join("capstan.toml");
    std::fs::write(&file, text).unwrap();
    let config = config::load(&file).unwrap();
    let log = capstan_store::open(&config.store).unwrap();
    log.ping().unwrap();
    assert!(dir.path().join("decisions.db").is_file());

    // The fixture's own directory has no `state/`: the error names the path.
    let missing = config::load(&fixture()).unwrap();
    let Err(e) = capstan_store::open(&missing.store) else {
        panic!("opened a store in a missing directory");
    };
    let e = e.to_string();
    assert!(
        e.contains("decisions.db") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn memory_keeps_fewer_by_default() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let memory = text
        .replace("kind = \"sqlite\"", "kind = \"memory\"")
        .replace("path = \"state/decisions.db\"\n", "")
        .replace("retention = 50000\n", "");
    let config = config::compile(&memory, "m.toml", &|_| None).unwrap();
    assert_eq!(config.store.kind, StoreKind::Memory);
    assert_eq!(config.store.retention, capstan_store::DEFAULT_PER_SERVICE);
    let with = text
        .replace("kind = \"sqlite\"", "kind = \"memory\"")
        .replace("path = \"state/decisions.db\"\n", "");
    let config = config::compile(&with, "m.toml", &|_| None).unwrap();
    assert_eq!(config.store.retention, 50_000);
}
