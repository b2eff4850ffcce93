//! `capstan simulate`: runs a scenario's policy sets on the simulator and reports.
//!
//! Owns what the simulator cannot: finding a scenario (shipped ones are built into the
//! binary), compiling its capstan config(s) with the same compiler as `capstan run`,
//! and mapping each source of a config to a simulated metric (`kind = "simulated"`, or
//! `--metric NAME=METRIC` for a production config used unchanged).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use capstan_sim::metric::SimMetric;
use capstan_sim::run::{CapstanRun, HostsRun, SimSource};
use capstan_sim::scenario::Scenario;
use capstan_sources::SourceKind;
use capstan_targets::{Scales, TargetSpec};

use crate::config::{self, Config, ServiceSpec};

/// A scenario shipped with capstan: its files, built into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// `--scenario NAME`.
    pub name: &'static str,
    /// `scenario.toml`.
    pub scenario: &'static str,
    /// `capstan.toml`.
    pub capstan: &'static str,
}

macro_rules! shipped {
    ($($name:literal),* $(,)?) => {
        &[$(Shipped {
            name: $name,
            scenario: include_str!(concat!("../../../examples/scenarios/", $name, "/scenario.toml")),
            capstan: include_str!(concat!("../../../examples/scenarios/", $name, "/capstan.toml")),
        }),*]
    };
}

/// Every shipped scenario (`examples/scenarios/NAME/`).
pub const SHIPPED: &[Shipped] = shipped![
    "sqs-backlog",
    "blu-insights",
    "rdp-sessions",
    "redis-burst",
    "ec2-cluster"
];

/// The scenario `capstan simulate` runs when none is named.
pub const DEFAULT_SCENARIO: &str = "sqs-backlog";

/// A loaded scenario with its capstan runs, ready for [`capstan_sim::run::run`].
#[derive(Debug)]
pub struct Prepared {
    /// The scenario.
    pub scenario: Scenario,
    /// The capstan policy sets to run.
    pub capstan: Vec<CapstanRun>,
}

/// Where the scenario comes from and what to run on it.
#[derive(Debug, Default, Clone)]
pub struct Request {
    /// A shipped scenario's name.
    pub scenario: Option<String>,
    /// A scenario file on disk.
    pub file: Option<PathBuf>,
    /// capstan configs to compare instead of the scenario's own.
    pub compare: Vec<PathBuf>,
    /// `NAME=METRIC` mappings for sources that are not `kind = "simulated"`.
    pub metrics: Vec<String>,
    /// Replace the scenario's trace with this CSV file.
    pub trace: Option<PathBuf>,
}

/// The shipped scenario called `name`.
pub fn shipped(name: &str) -> Result<&'static Shipped, String> {
    SHIPPED.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SHIPPED.iter().map(|s| s.name).collect();
        let hint = config::suggest_name(name, &names)
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        format!(
            "no shipped scenario \"{name}\"{hint}; shipped: {}",
            names.join(", ")
        )
    })
}

/// Loads the scenario and compiles the capstan config(s) it runs. Every error names
/// its file and place.
pub fn prepare(req: &Request) -> Result<Prepared, String> {
    let env = |name: &str| std::env::var(name).ok();
    let (mut scenario, own_config) = match (&req.file, &req.scenario) {
        (Some(_), Some(_)) => return Err("give either --scenario or --file, not both".into()),
        (Some(path), None) => {
            let scenario = Scenario::load(path).map_err(|e| e.to_string())?;
            let cpath = scenario.capstan_path();
            let config = config::load(&cpath).map_err(|e| e.to_string())?;
            (scenario, (cpath.display().to_string(), config))
        }
        (None, name) => {
            let s = shipped(name.as_deref().unwrap_or(DEFAULT_SCENARIO))?;
            let dir = format!("examples/scenarios/{}", s.name);
            let scenario = Scenario::parse(
                s.scenario,
                &format!("{dir}/scenario.toml (built in)"),
                Path::new(&dir),
            )
            .map_err(|e| e.to_string())?;
            let origin = format!("{dir}/capstan.toml (built in)");
            let config = config::compile(s.capstan, &origin, &env).map_err(|e| e.to_string())?;
            (scenario, (origin, config))
        }
    };
    if let Some(trace) = &req.trace {
        scenario.trace = capstan_sim::trace::TraceSpec::Csv {
            path: std::fs::canonicalize(trace)
                .map_err(|e| format!("{}: cannot read the trace: {e}", trace.display()))?,
            processing_time_s: None,
        };
    }
    let mapping = parse_mapping(&req.metrics)?;
    let configs = if req.compare.is_empty() {
        vec![("capstan".to_owned(), own_config)]
    } else {
        let mut out = Vec::new();
        for path in &req.compare {
            let config = config::load(path).map_err(|e| e.to_string())?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            out.push((name, (path.display().to_string(), config)));
        }
        out
    };
    let mut capstan = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (name, (origin, config)) in configs {
        if !names.insert(name.clone()) {
            return Err(format!(
                "two configs would both be named \"{name}\" in the report; rename one"
            ));
        }
        capstan.push(capstan_run(&name, &origin, &config, &scenario, &mapping)?);
    }
    Ok(Prepared { scenario, capstan })
}

/// Parses `NAME=METRIC` mappings.
fn parse_mapping(items: &[String]) -> Result<BTreeMap<String, SimMetric>, String> {
    let mut map = BTreeMap::new();
    for item in items {
        let (name, metric) = item.split_once('=').ok_or_else(|| {
            format!("--metric {item}: expected NAME=METRIC, e.g. queue=queue_depth")
        })?;
        let metric = metric
            .trim()
            .parse::<SimMetric>()
            .map_err(|e| format!("--metric {item}: {e}"))?;
        map.insert(name.trim().to_owned(), metric);
    }
    Ok(map)
}

/// The capstan run of `config`'s simulated service.
fn capstan_run(
    name: &str,
    origin: &str,
    config: &Config,
    scenario: &Scenario,
    mapping: &BTreeMap<String, SimMetric>,
) -> Result<CapstanRun, String> {
    // The services that scale hosts (`scales = "hosts"`, or an `ec2_cluster` target
    // replayed on the scenario's cluster) are apart: at most one, and only on a
    // scenario with a cluster.
    let scales_hosts = |s: &&ServiceSpec| match &s.target {
        TargetSpec::Simulated(t) => t.scales == Scales::Hosts,
        TargetSpec::Ec2Cluster(_) => true,
        TargetSpec::Process(_) | TargetSpec::Ecs(_) => false,
    };
    let (host_services, task_services): (Vec<&ServiceSpec>, Vec<&ServiceSpec>) =
        config.services.iter().partition(scales_hosts);
    let service = match &scenario.capstan_service {
        Some(wanted) => task_services
            .iter()
            .find(|s| s.name == *wanted)
            .copied()
            .ok_or_else(|| {
                format!(
                    "{origin}: has no service \"{wanted}\" scaling tasks (the scenario's capstan_service)"
                )
            })?,
        None => match task_services.as_slice() {
            [only] => only,
            _ => {
                return Err(format!(
                    "{origin}: has {} services scaling tasks; name the simulated one with capstan_service in the scenario",
                    task_services.len()
                ));
            }
        },
    };
    let hosts = match host_services.as_slice() {
        [] => None,
        [one] => {
            if scenario.cluster.is_none() {
                return Err(format!(
                    "{origin}: service {} scales hosts, but the scenario has no [cluster]",
                    one.name
                ));
            }
            Some(one)
        }
        more => {
            return Err(format!(
                "{origin}: {} services scale hosts ({}); the simulator drives one",
                more.len(),
                more.iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let mut sources = Vec::new();
    for s in &config.sources {
        let metric = match (mapping.get(&s.name), &s.kind) {
            (Some(m), _) => *m,
            (None, SourceKind::Simulated(spec)) => spec
                .metric
                .parse()
                .map_err(|e| format!("{origin}: sources.{}.metric: {e}", s.name))?,
            (None, _) => {
                return Err(format!(
                    "{origin}: source {} is not simulated; map it to a simulated metric with --metric {}=METRIC",
                    s.name, s.name
                ));
            }
        };
        sources.push(SimSource {
            name: s.name.clone(),
            metric,
            interval: s.interval,
            max_age: s.max_age,
            retention: s.retention,
        });
    }
    let (drain_timeout, protect_minutes) = match &service.target {
        TargetSpec::Simulated(t) => (t.drain_timeout, t.protect_minutes),
        // An ECS service replays with its own scale-in settings.
        TargetSpec::Ecs(t) => (t.target.drain_timeout, t.target.protect_minutes),
        // Never an ec2_cluster target: those scale hosts.
        TargetSpec::Process(_) | TargetSpec::Ec2Cluster(_) => (
            config::defaults::DRAIN_TIMEOUT,
            config::defaults::PROTECT_MINUTES,
        ),
    };
    let hosts = hosts.map(|h| {
        let (drain_timeout, warmup) = match &h.target {
            TargetSpec::Simulated(t) => (t.drain_timeout, t.warmup),
            // An EC2 cluster replays with its own removal settings.
            TargetSpec::Ec2Cluster(t) => (t.target.drain_timeout, t.target.warmup),
            TargetSpec::Process(_) | TargetSpec::Ecs(_) => (
                config::defaults::HOST_DRAIN_TIMEOUT,
                config::defaults::HOST_WARMUP,
            ),
        };
        HostsRun {
            engine: h.engine.clone(),
            interval: h.interval,
            drain_timeout,
            warmup,
        }
    });
    Ok(CapstanRun {
        name: name.to_owned(),
        engine: service.engine.clone(),
        interval: service.interval,
        sources,
        drain_timeout,
        protect_minutes,
        hosts,
    })
}
