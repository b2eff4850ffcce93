//! The Grafana dashboard shipped in `deploy/grafana-dashboard.json` is valid JSON that
//! Grafana can import, and every metric its queries read is one capstan exports (with the
//! right suffix for its type), and every metric capstan exports has a panel.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use capstan::server::exporter::Exporter;
use capstan_core::clock::{Clock, VirtualClock};
use serde_json::Value;

fn dashboard() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The metric families capstan exports, with their types (`# TYPE` lines), from an
/// exporter with every kind of family in use: a source, a decision, the work registry
/// and task protection (a family with no labelled child is not rendered).
fn exported() -> BTreeMap<String, String> {
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::at_epoch());
    let config = capstan::config::compile(
        r#"
[sources.load]
kind = "push"
ttl = "1m"

[[services]]
name = "api"
min = 1
max = 4
target = { kind = "process", command = ["true"] }

[[services.policies]]
kind = "target_tracking"
metric = "load"
mode = "total"
target = 10
"#,
        "dashboard.toml",
        &|_| None,
    )
    .unwrap();
    let exporter = Exporter::new(&config.sources, Arc::clone(&clock));
    let engine = &config.services[0].engine;
    let decision = engine.evaluate_with(
        &mut engine.initial_state(),
        capstan_core::model::Capacity {
            desired: 2,
            running: 2,
            pending: 0,
        },
        &capstan_core::metrics::Observations::new(),
        clock.now(),
        &capstan_core::controls::Controls::NONE,
    );
    exporter.record_decision(&decision);
    let work = capstan_control::WorkRegistry::open(
        Arc::new(capstan_store::MemoryWorkLog),
        Arc::clone(&clock),
    )
    .unwrap();
    work.configure("api", None);
    exporter.export_work(work);
    let board: capstan::daemon::services::ProtectionBoard = Arc::default();
    board.lock().unwrap().insert(
        "api".to_owned(),
        Arc::new(capstan_core::protection::ProtectionStats::default),
    );
    exporter.export_protection(board);
    exporter
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// Every `capstan_...` name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("capstan_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.push(name);
    }
    out
}

/// The family a sample name belongs to, given the families and their types.
fn family<'a>(name: &str, families: &'a BTreeMap<String, String>) -> Option<&'a str> {
    families.iter().find_map(|(family, kind)| {
        let fits = match kind.as_str() {
            "counter" => name == format!("{family}_total"),
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name == format!("{family}{s}")),
            _ => name == family,
        };
        fits.then_some(family.as_str())
    })
}

#[test]
fn every_query_reads_an_exported_metric_and_every_metric_has_a_panel() {
    let families = exported();
    assert!(families.len() >= 10, "{families:?}");
    let d = dashboard();
    let mut queries: Vec<String> = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty(),
            "a panel without a query: {}",
            panel["title"]
        );
        for t in targets {
            queries.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["definition"].as_str() {
            queries.push(q.to_owned());
        }
    }
    let mut used = BTreeSet::new();
    for q in &queries {
        for name in metric_names(q) {
            let f = family(&name, &families)
                .unwrap_or_else(|| panic!("{name} (in {q}) is not a metric capstan exports"));
            used.insert(f.to_owned());
        }
    }
    let unused: Vec<_> = families.keys().filter(|f| !used.contains(*f)).collect();
    assert!(unused.is_empty(), "exported but on no panel: {unused:?}");
}

#[test]
fn the_dashboard_is_importable() {
    let d = dashboard();
    assert_eq!(d["uid"], "capstan-overview");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        let g = &panel["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{} is wider than the grid", panel["title"]);
        assert!(g["h"].as_u64().unwrap() > 0);
        assert_eq!(panel["datasource"]["uid"], "${datasource}");
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "service", "source"]);
}

#[test]
fn names_are_found_in_queries_and_mapped_to_their_family() {
    assert_eq!(
        metric_names("rate(capstan_decisions_total{a=\"b\"}[5m]) / capstan_desired_tasks"),
        ["capstan_decisions_total", "capstan_desired_tasks"]
    );
    let families: BTreeMap<String, String> = [
        ("capstan_decisions".to_owned(), "counter".to_owned()),
        ("capstan_x_seconds".to_owned(), "histogram".to_owned()),
    ]
    .into();
    assert_eq!(
        family("capstan_decisions_total", &families),
        Some("capstan_decisions")
    );
    assert_eq!(family("capstan_decisions", &families), None);
    assert_eq!(
        family("capstan_x_seconds_bucket", &families),
        Some("capstan_x_seconds")
    );
}
