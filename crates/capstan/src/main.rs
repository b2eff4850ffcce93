//! The capstan binary: parses arguments and calls the library. `run` bridges SIGINT and
//! SIGTERM to the daemon's cancellation token; `validate` and `explain` are plain
//! functions of [`capstan::cli`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use capstan::config::{self, Config, ConfigErrors, LogFormat, LogSpec};
use capstan::{cli, daemon};
use capstan_core::Timestamp;
use capstan_core::clock::{Clock, SystemClock};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// The configuration `capstan run` uses when no `--config` is given.
const EMBEDDED_CONFIG: &str = include_str!("../../../examples/local-queue.toml");

/// How the embedded configuration is named in messages.
const EMBEDDED_ORIGIN: &str = "examples/local-queue.toml (built in)";

/// capstan: an autoscaler for container services and local processes.
#[derive(Debug, Parser)]
#[command(name = "capstan", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one control loop per service until SIGINT or SIGTERM, then stop every worker
    /// it started and exit.
    Run {
        /// The configuration file (default: the built-in local example).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file: exit 0, or print every error and exit 1.
    Validate {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the decision a service would get for given metric values, with every
    /// reason.
    Explain {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The service to evaluate.
        #[arg(long, short)]
        service: String,
        /// Metric values, e.g. `queue=550,cpu=71.5`; sources not listed have no data.
        #[arg(long, default_value = "")]
        at_values: String,
        /// Running tasks (default: the desired count, else the service's min).
        #[arg(long)]
        running: Option<u32>,
        /// Desired count (default: the running count, else the service's min).
        #[arg(long)]
        desired: Option<u32>,
        /// The evaluation instant, e.g. `2026-03-01T09:00:00Z` (default: now).
        #[arg(long)]
        at: Option<Timestamp>,
        /// Print the whole decision as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => run(config.as_deref()),
        Command::Validate { file } => cli::validate(&file),
        Command::Explain {
            config,
            service,
            at_values,
            running,
            desired,
            at,
            json,
        } => explain(&config, service, &at_values, running, desired, at, json),
    }
}

fn run(path: Option<&Path>) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("capstan: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Installed before anything starts, so a signal during start-up is not lost.
        let signal = daemon::shutdown_signal()?;
        let cancel = CancellationToken::new();
        let mut daemon = tokio::spawn(daemon::run(config, cancel.clone()));
        tokio::select! {
            name = signal => {
                tracing::info!(signal = name, "signal received");
                cancel.cancel();
            }
            ended = &mut daemon => return ended.map_err(anyhow::Error::from)?.map_err(anyhow::Error::from),
        }
        daemon.await?.map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "capstan failed");
            eprintln!("capstan: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    match path {
        Some(path) => config::load(path),
        None => config::compile(EMBEDDED_CONFIG, EMBEDDED_ORIGIN, &|name| {
            std::env::var(name).ok()
        }),
    }
}

/// Logs to standard error, as text or JSON per `[log]`; `RUST_LOG`, when set, replaces
/// the configured level.
fn init_logging(spec: &LogSpec) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&spec.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // An error means a subscriber is already set: keep it.
    let _ = match spec.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn explain(
    path: &Path,
    service: String,
    at_values: &str,
    running: Option<u32>,
    desired: Option<u32>,
    at: Option<Timestamp>,
    json: bool,
) -> ExitCode {
    let values = match cli::parse_values(at_values) {
        Ok(values) => values,
        Err(e) => {
            eprintln!("capstan explain: {e}");
            return ExitCode::from(2);
        }
    };
    let request = cli::ExplainRequest {
        service,
        values,
        running,
        desired,
        now: at.unwrap_or_else(|| SystemClock.now()),
    };
    let format = if json {
        cli::ExplainFormat::Json
    } else {
        cli::ExplainFormat::Text
    };
    match cli::explain(path, &request, format) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("capstan explain: {e}");
            ExitCode::FAILURE
        }
    }
}
