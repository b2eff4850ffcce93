//! `session-proxy`: the session-proxy recipe's TCP proxy as a program. Forwards every
//! connection on `--listen` to `--upstream`, reports its live sessions to capstan's
//! work registry as the task named by `--task-id` (on ECS: read from the task metadata
//! endpoint), and on SIGTERM (ECS stopping the task) or Ctrl-C stops accepting and lets
//! its sessions end for `--grace-secs`; a second signal closes them at once.

use std::time::Duration;

use capstan_example_session_proxy::report::ecs_task_arn;
use capstan_example_session_proxy::{Proxy, Registry, Settings};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A TCP proxy that reports its live sessions to capstan.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PROXY_LISTEN", default_value = "0.0.0.0:3389")]
    listen: String,
    /// Where every session is forwarded (`host:port`).
    #[arg(long, env = "PROXY_UPSTREAM")]
    upstream: String,
    /// capstan's base URL (`http://capstan:9120`); without it, nothing is reported.
    #[arg(long, env = "CAPSTAN_URL")]
    capstan_url: Option<String>,
    /// The capstan service this task belongs to (`[[services]] name`).
    #[arg(long, env = "CAPSTAN_SERVICE", default_value = "proxy")]
    service: String,
    /// The task's id (its ECS task ARN or the ARN's last part); default: read from the
    /// ECS task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`).
    #[arg(long, env = "CAPSTAN_TASK_ID")]
    task_id: Option<String>,
    /// capstan's bearer token.
    #[arg(
        long,
        env = "CAPSTAN_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding capstan's bearer token (a final newline is dropped).
    #[arg(long, env = "CAPSTAN_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// How long each report holds in capstan unless renewed, in seconds.
    #[arg(long, default_value_t = 300)]
    ttl_secs: u64,
    /// How often the full set of sessions is reported (renewing them), in seconds;
    /// keep it well under the TTL.
    #[arg(long, default_value_t = 60)]
    sync_secs: u64,
    /// How long a new session waits for capstan to take its report before it is
    /// forwarded anyway, in seconds.
    #[arg(long, default_value_t = 5)]
    report_wait_secs: u64,
    /// How long sessions may go on after SIGTERM, in seconds (ECS kills the task at its
    /// stop timeout: 30 s by default, 120 s at most).
    #[arg(long, default_value_t = 110)]
    grace_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let registry = match &args.capstan_url {
        None => None,
        Some(url) => {
            let task = match args.task_id {
                Some(task) => task,
                None => {
                    let uri = std::env::var("ECS_CONTAINER_METADATA_URI_V4").map_err(|_| {
                        "no --task-id, and ECS_CONTAINER_METADATA_URI_V4 is not set (not on ECS)"
                    })?;
                    ecs_task_arn(&uri).await?
                }
            };
            let token = match (&args.token, &args.token_file) {
                (Some(token), _) => Some(token.clone()),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    Some(text.trim_end_matches(['\n', '\r']).to_owned())
                }
                (None, None) => None,
            };
            Some(Registry::new(
                url,
                &args.service,
                &task,
                token,
                Duration::from_secs(args.ttl_secs),
            )?)
        }
    };
    let settings = Settings {
        sync_every: Duration::from_secs(args.sync_secs.max(1)),
        report_wait: Duration::from_secs(args.report_wait_secs),
        grace: Duration::from_secs(args.grace_secs),
        ..Settings::new(&args.upstream, registry)
    };
    let proxy = Proxy::bind(&args.listen, settings)
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    tracing::info!(listen = %proxy.local_addr()?, upstream = args.upstream, "forwarding");
    let stop = CancellationToken::new();
    let kill = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let serving = tokio::spawn(proxy.serve(stop.clone(), kill.clone()));
    let signals = tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: no new sessions, waiting for the open ones");
        stop.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("closing every session now");
        kill.cancel();
    });
    let summary = serving.await?;
    signals.abort();
    tracing::info!(
        forwarded = summary.forwarded,
        refused = summary.refused,
        cut = summary.cut,
        "stopped"
    );
    Ok(())
}
