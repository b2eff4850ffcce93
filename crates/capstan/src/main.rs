//! The capstan binary: parses arguments and calls the library. `run` bridges SIGINT and
//! SIGTERM to the daemon's cancellation token; `validate` and `explain` are plain
//! functions of [`capstan::cli`], `simulate` and `demo` of [`capstan::simulate`] and
//! [`capstan::demo`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use capstan::config::{self, Config, ConfigErrors, LogFormat, LogSpec};
use capstan::{cli, daemon, demo, simulate};
use capstan_core::Timestamp;
use capstan_core::clock::{Clock, SystemClock};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// mimalloc: the simulator allocates and frees many short-lived task lists per
/// simulated second; it runs about 10 % faster than on the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// The configuration file (default: the built-in local example). Reloaded on
        /// SIGHUP, when it changes, and on `POST /api/v1/reload`.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Compute, log, record and export every decision, but change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Evaluate every service once (after one read of every source), then exit.
        #[arg(long)]
        once: bool,
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
    /// Replay load through capstan's policies and AWS's own scaling on a simulated ECS
    /// service, and compare them (task-hours, SLO, latency, cut sessions and requests).
    Simulate {
        /// A shipped scenario: sqs-backlog (default), blu-insights, rdp-sessions,
        /// redis-burst.
        #[arg(long, short)]
        scenario: Option<String>,
        /// A scenario file of your own instead.
        #[arg(long, short, conflicts_with = "scenario")]
        file: Option<PathBuf>,
        /// Run these capstan configs on the scenario instead of its own (one run each).
        #[arg(long, num_args = 1..)]
        compare: Vec<PathBuf>,
        /// Read source NAME from simulated METRIC (for configs whose sources are real),
        /// e.g. `--metric queue=queue_depth`. Repeatable.
        #[arg(long = "metric", value_name = "NAME=METRIC")]
        metrics: Vec<String>,
        /// Replace the scenario's load with a CSV trace.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Replace the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Replace the scenario's length, e.g. `6h`.
        #[arg(long)]
        duration: Option<String>,
        /// Write summary.json, one CSV per run and the plots (PNG, SVG) here.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Skip the plots.
        #[arg(long)]
        no_plots: bool,
        /// Print the summary as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Scale-in workflows of a running capstan, through its HTTP API: `list`, `show ID`
    /// (with the journal), `redrive ID` (resume a failed one from its failed step). The
    /// token, if the daemon needs one, comes from `--token-file` or `CAPSTAN_TOKEN`.
    Workflows {
        #[command(subcommand)]
        action: WorkflowsAction,
        /// The daemon's address.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9120")]
        url: String,
        /// A file holding the daemon's API token.
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
        /// Print the API's JSON answer.
        #[arg(long, global = true)]
        json: bool,
    },
    /// The EC2 hosts of an ECS cluster on a running capstan, through its HTTP API:
    /// `rotate` (blue/green: move the hosts from one Auto Scaling group to another,
    /// following it with a progress bar; run it again to resume following), `rotations`
    /// (the newest ones). The token, if the daemon needs one, comes from `--token-file`
    /// or `CAPSTAN_TOKEN`.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        /// The daemon's address.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9120")]
        url: String,
        /// A file holding the daemon's API token.
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
        /// Print the API's JSON answer.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Play a scenario in accelerated real time and watch capstan and AWS's own scaling
    /// decide, side by side: on a terminal a live table (one row per run, the latest
    /// actions below), elsewhere one line per action or change of decision; then the
    /// summary table. Ctrl-C stops.
    ///
    /// The part of the scenario before the window shown (`--from`) is simulated at full
    /// speed; by default the window is the scenario's most telling hour (redis-burst:
    /// 2:55:00 to 3:55:00, around its first burst), a minute at the default speed.
    Demo {
        /// A shipped scenario, as for `capstan simulate` (default: redis-burst).
        #[arg(long, short)]
        scenario: Option<String>,
        /// A scenario file of your own instead (shown from its start).
        #[arg(long, short, conflicts_with = "scenario")]
        file: Option<PathBuf>,
        /// Simulated seconds per wall second (60: a simulated minute per second).
        #[arg(long, value_name = "X", default_value = "60", allow_negative_numbers = true, value_parser = demo::parse_speed)]
        speed: f64,
        /// Where to start showing, in simulated time since the scenario's start:
        /// seconds or e.g. `2h55m` (default: the scenario's window).
        #[arg(long, value_name = "TIME", allow_negative_numbers = true, value_parser = demo::parse_from)]
        from: Option<std::time::Duration>,
        /// How much simulated time to show: seconds or e.g. `30m` (default 1 hour).
        #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = demo::parse_length)]
        duration: Option<std::time::Duration>,
        /// Replace the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
}

/// `capstan cluster` subcommands.
#[derive(Debug, Subcommand)]
enum ClusterAction {
    /// Blue/green host rotation: raise group TO to FROM's size, wait for its instances
    /// to be ACTIVE in the cluster, remove FROM's hosts one at a time through the safe
    /// removal (drain, then terminate), then set FROM to 0. Exits 0 when done, 1 when
    /// it failed.
    Rotate {
        /// The ECS cluster.
        #[arg(long)]
        cluster: String,
        /// The Auto Scaling group whose hosts go.
        #[arg(long)]
        from: String,
        /// The Auto Scaling group whose hosts replace them.
        #[arg(long)]
        to: String,
        /// Return once the rotation is started, without following it.
        #[arg(long)]
        detach: bool,
    },
    /// The newest host rotations.
    Rotations {
        /// At most this many (1 to 500).
        #[arg(long, default_value = "20")]
        limit: usize,
    },
}

fn cluster_command(action: ClusterAction, target: capstan::workflows_cli::Target) -> ExitCode {
    use capstan::rotate_cli::{Action, run};
    let action = match action {
        ClusterAction::Rotate {
            cluster,
            from,
            to,
            detach,
        } => Action::Rotate {
            cluster,
            from,
            to,
            detach,
        },
        ClusterAction::Rotations { limit } => Action::List { limit },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("capstan cluster: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&action, &target)) {
        Ok(outcome) => {
            print!("{}", outcome.text);
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("capstan cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `capstan workflows` subcommands.
#[derive(Debug, Subcommand)]
enum WorkflowsAction {
    /// The newest workflows.
    List {
        /// Only this service's.
        #[arg(long, short)]
        service: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, default_value = "20")]
        limit: usize,
    },
    /// One workflow with its journal.
    Show {
        /// The workflow's id.
        id: String,
    },
    /// Resume a failed workflow from the step it failed at.
    Redrive {
        /// The workflow's id.
        id: String,
    },
}

fn workflows_command(action: WorkflowsAction, target: capstan::workflows_cli::Target) -> ExitCode {
    use capstan::workflows_cli::{Action, run};
    let action = match action {
        WorkflowsAction::List { service, limit } => Action::List { service, limit },
        WorkflowsAction::Show { id } => Action::Show { id },
        WorkflowsAction::Redrive { id } => Action::Redrive { id },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("capstan workflows: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&action, &target)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("capstan workflows: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Cluster {
            action,
            url,
            token_file,
            json,
        } => cluster_command(
            action,
            capstan::workflows_cli::Target {
                url,
                token_file,
                json,
            },
        ),
        Command::Workflows {
            action,
            url,
            token_file,
            json,
        } => workflows_command(
            action,
            capstan::workflows_cli::Target {
                url,
                token_file,
                json,
            },
        ),
        Command::Run {
            config,
            dry_run,
            once,
        } => run(config, dry_run, once),
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
        Command::Simulate {
            scenario,
            file,
            compare,
            metrics,
            trace,
            seed,
            duration,
            out,
            no_plots,
            json,
        } => {
            let request = simulate::Request {
                scenario,
                file,
                compare,
                metrics,
                trace,
            };
            simulate_command(&request, seed, duration.as_deref(), out, !no_plots, json)
        }
        Command::Demo {
            scenario,
            file,
            speed,
            from,
            duration,
            seed,
        } => demo_command(&demo::DemoOptions {
            scenario,
            file,
            speed,
            from,
            duration,
            seed,
        }),
    }
}

fn demo_command(options: &demo::DemoOptions) -> ExitCode {
    init_logging(&LogSpec {
        format: LogFormat::Text,
        level: "warn".into(),
    });
    match demo::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn simulate_command(
    request: &simulate::Request,
    seed: Option<u64>,
    duration: Option<&str>,
    out: Option<PathBuf>,
    plots: bool,
    json: bool,
) -> ExitCode {
    use std::io::IsTerminal as _;
    init_logging(&LogSpec {
        format: LogFormat::Text,
        level: "warn".into(),
    });
    let duration = match duration.map(config::duration::parse).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("capstan simulate: --duration: {e}");
            return ExitCode::from(2);
        }
    };
    let prepared = match simulate::prepare(request) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capstan simulate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = capstan_sim::run::RunOptions {
        plots: plots && out.is_some(),
        out: out.clone(),
        progress: std::io::stderr().is_terminal(),
        seed,
        duration,
        observer: None,
    };
    match capstan_sim::run::run(&prepared.scenario, &prepared.capstan, &options) {
        Ok(summary) => {
            if json {
                println!("{}", summary.to_json());
            } else {
                println!("{}", capstan_sim::report::table(&summary));
            }
            if let Some(dir) = out {
                eprintln!("wrote {}", dir.join("summary.json").display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("capstan simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: Option<PathBuf>, dry_run: bool, once: bool) -> ExitCode {
    let config = match load(path.as_deref()) {
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
        let options = daemon::RunOptions {
            config,
            path,
            dry_run,
            once,
            targets: None,
        };
        let mut daemon = tokio::spawn(daemon::run_with(options, cancel.clone()));
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
