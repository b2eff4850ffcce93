//! Configuration: TOML parsed once into real types.
//!
//! Owns the file format (see `docs/config.md`), `${ENV}` interpolation, and the compiler
//! that turns the spanned TOML tree into [`Config`], collecting every error with its key
//! path and line:column (unknown keys get the closest valid key suggested).

use std::time::Duration;

use capstan_core::planner::Engine;
use capstan_sources::SourceSpec;
use capstan_targets::TargetSpec;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: how capstan logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    /// Output format.
    pub format: LogFormat,
    /// Filter directive, e.g. `info` or `capstan=debug` (overridden by `RUST_LOG`).
    pub level: String,
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// One `[[services]]` entry.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Unique service name.
    pub name: String,
    /// Time between evaluations.
    pub interval: Duration,
    /// Policies and planner (bounds, cooldowns, ...).
    pub engine: Engine,
    /// What is scaled.
    pub target: TargetSpec,
}

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Logging.
    pub log: LogSpec,
    /// Sources, in file order.
    pub sources: Vec<SourceSpec>,
    /// Services, in file order.
    pub services: Vec<ServiceSpec>,
}
