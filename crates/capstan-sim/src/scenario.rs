//! A scenario: one simulated service, its load, and the policy sets to compare.
//!
//! A scenario file (TOML) names the world (zones, seed), the ECS service (task size,
//! start-up and stop times, target group), an optional EC2 cluster, the workload, the
//! load trace, the AWS baselines to run beside capstan, and the capstan config to try
//! (a normal capstan config file, compiled by the `capstan` binary). Every duration in a
//! scenario file is a number of seconds. See `docs/simulator.md` for the reference.
//!
//! ```toml
//! name = "sqs-backlog"
//! seed = 3
//! duration_s = 86400
//! capstan = "capstan.toml"
//!
//! [service]
//! name = "worker"
//! desired = 1
//!
//! [workload]
//! kind = "queue"
//! processing = { kind = "exponential", mean_s = 6.0 }
//! slo_age_s = 60.0
//!
//! [trace]
//! kind = "constant"
//! rate = 0.83
//!
//! [[baselines]]
//! name = "aws-target-tracking"
//! kind = "aws-target-tracking"
//! metric = "backlog_per_task"
//! target = 10.0
//! min = 1
//! max = 10
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use capstan_world::{ClusterSpec, ServiceSpec, WorldConfig};

use crate::baseline::{BaselineSpec, ManagedScalingSpec};
use crate::metric::SimMetric;
use crate::trace::TraceSpec;
use crate::workload::WorkloadSpec;

/// A scenario file that cannot be used, with the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read the scenario: {reason}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The TOML is malformed or a key is unknown or of the wrong type (the message
    /// names the line and the key).
    #[error("{file}: {reason}")]
    Parse {
        /// The file.
        file: String,
        /// Why, with line and column.
        reason: String,
    },
    /// The scenario parses but cannot run (e.g. min > max, zero capacity per task).
    #[error("{file}: {field}: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// The key.
        field: String,
        /// Why.
        reason: String,
    },
}

/// One AWS baseline to run beside capstan. (Unknown keys are refused by the
/// baseline's own settings, flattened here.)
#[derive(Debug, Clone, Deserialize)]
pub struct BaselineEntry {
    /// The run's name in reports (`aws-target-tracking`, `aws-step`, ...).
    pub name: String,
    /// ECS managed scaling of the cluster's hosts (its first Auto Scaling group) in
    /// the same run, for EC2 cluster scenarios; without it the hosts stay as they are.
    pub hosts: Option<ManagedScalingSpec>,
    /// What AWS is configured to do with the service.
    #[serde(flatten)]
    pub spec: BaselineSpec,
}

/// What to draw for capstan's runs in the "metric against its target" panel.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    /// The metric.
    pub metric: SimMetric,
    /// Its target (drawn as a line).
    pub target: f64,
}

/// A scenario, as read from its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (reports, `--scenario NAME`).
    pub name: String,
    /// One paragraph: what it shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (arrivals, durations, ECS's arbitrary victims).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated start instant (matters for scheduled policies and diurnal traces).
    #[serde(default = "default_start")]
    pub start: Timestamp,
    /// Simulated length, seconds (default: the trace's length, else one day).
    pub duration_s: Option<f64>,
    /// Simulation step, seconds (default 1).
    #[serde(default = "default_step")]
    pub step_s: f64,
    /// Price of one task-hour, for the cost column.
    #[serde(default = "default_cost")]
    pub cost_per_task_hour: f64,
    /// The capstan config file to try, relative to the scenario file.
    #[serde(default = "default_capstan")]
    pub capstan: PathBuf,
    /// Which of its services is the simulated one (default: the only one).
    pub capstan_service: Option<String>,
    /// The world's settings.
    #[serde(default)]
    pub world: WorldConfig,
    /// The ECS service.
    pub service: ServiceSpec,
    /// The EC2 cluster under it (EC2 launch type), if any.
    pub cluster: Option<ClusterSpec>,
    /// What the tasks do.
    pub workload: WorkloadSpec,
    /// The load.
    pub trace: TraceSpec,
    /// AWS's own scaling configured for the same service, each run on the same trace.
    #[serde(default)]
    pub baselines: Vec<BaselineEntry>,
    /// The metric to plot for capstan's runs.
    pub plot: Option<PlotSpec>,
    /// The directory relative paths are resolved from (the file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where it was read from (messages).
    #[serde(skip)]
    pub origin: String,
}

fn default_seed() -> u64 {
    1
}

fn default_start() -> Timestamp {
    // 2026-03-02T00:00:00Z, a Monday.
    Timestamp::from_second(1_772_409_600).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn default_step() -> f64 {
    1.0
}

fn default_cost() -> f64 {
    // Fargate, 1 vCPU + 2 GB, Linux/x86, eu-west-1 on-demand (per hour).
    0.04937 + 2.0 * 0.00511
}

fn default_capstan() -> PathBuf {
    PathBuf::from("capstan.toml")
}

impl Scenario {
    /// Reads and validates the scenario at `path`.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
            file: origin.clone(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::parse(&text, &origin, &base)
    }

    /// Parses and validates scenario `text` read from `origin`; relative paths resolve
    /// from `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            file: origin.to_owned(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        s.base_dir = base_dir.to_path_buf();
        s.origin = origin.to_owned();
        s.validate()?;
        Ok(s)
    }

    /// The capstan config's path.
    pub fn capstan_path(&self) -> PathBuf {
        self.base_dir.join(&self.capstan)
    }

    /// The simulation step.
    pub fn step(&self) -> Duration {
        Duration::from_secs_f64(self.step_s)
    }

    fn invalid(&self, field: &str, reason: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            file: self.origin.clone(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// Checks what can be checked before a run starts.
    fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.trim().is_empty() {
            return Err(self.invalid("name", "cannot be empty"));
        }
        if !(self.step_s.is_finite() && self.step_s > 0.0 && self.step_s <= 60.0) {
            return Err(self.invalid(
                "step_s",
                format!("{} is not a step between 0 and 60 seconds", self.step_s),
            ));
        }
        if let Some(d) = self.duration_s
            && !(d.is_finite() && d >= self.step_s)
        {
            return Err(self.invalid(
                "duration_s",
                format!("{d} is not a duration of at least one step"),
            ));
        }
        if !(self.cost_per_task_hour.is_finite() && self.cost_per_task_hour >= 0.0) {
            return Err(self.invalid("cost_per_task_hour", "must be a finite number ≥ 0"));
        }
        if self.world.zones.is_empty() {
            return Err(self.invalid("world.zones", "needs at least one availability zone"));
        }
        let svc = &self.service;
        if svc.task_cpu == 0 || svc.task_memory == 0 {
            return Err(self.invalid(
                "service.task_cpu",
                "a task needs CPU and memory (zero capacity per task)",
            ));
        }
        if svc.stop_timeout > Duration::from_secs(120) {
            return Err(self.invalid("service.stop_timeout", "ECS accepts at most 120 seconds"));
        }
        if let Some(tg) = &svc.target_group
            && tg.deregistration_delay > Duration::from_secs(3600)
        {
            return Err(self.invalid(
                "service.target_group.deregistration_delay",
                "ELB accepts 0 to 3600 seconds",
            ));
        }
        if let Some(c) = &self.cluster {
            for (i, g) in c.groups.iter().enumerate() {
                if g.min > g.max {
                    return Err(self.invalid(
                        &format!("cluster.groups[{i}].min"),
                        format!("min {} is greater than max {}", g.min, g.max),
                    ));
                }
                if g.instance_cpu < svc.task_cpu || g.instance_memory < svc.task_memory {
                    return Err(self.invalid(
                        &format!("cluster.groups[{i}].instance_cpu"),
                        "an instance is smaller than one task: nothing can be placed",
                    ));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        names.insert("capstan");
        let has_group = self.cluster.as_ref().is_some_and(|c| !c.groups.is_empty());
        for (i, b) in self.baselines.iter().enumerate() {
            if !names.insert(b.name.as_str()) {
                return Err(self.invalid(
                    &format!("baselines[{i}].name"),
                    format!("\"{}\" is used twice", b.name),
                ));
            }
            if matches!(b.spec, BaselineSpec::AwsManagedScaling(_)) {
                return Err(self.invalid(
                    &format!("baselines[{i}].kind"),
                    "aws-managed-scaling scales the cluster's hosts, not the service: put it in a service baseline's `hosts` table",
                ));
            }
            if b.hosts.is_some() && !has_group {
                return Err(self.invalid(
                    &format!("baselines[{i}].hosts"),
                    "scales the cluster's hosts, but the scenario has no [cluster] with an Auto Scaling group",
                ));
            }
        }
        Ok(())
    }
}
