//! `request-worker`: the step-and-protection recipe's HTTP worker as a program. Serves
//! `GET /work?ms=N` and `GET /healthz`, reports each request in progress to capstan's
//! work registry, and on SIGTERM (ECS stopping the task) or Ctrl-C stops taking
//! connections and lets its requests in flight finish for `--grace-secs`.

use std::time::Duration;

use capstan_example_request_worker::{Registry, Settings, Worker, ecs_task_arn};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// An HTTP worker that reports its requests in progress to capstan as workloads.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to serve on.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// capstan's base URL; without it, requests are not reported.
    #[arg(long, env = "CAPSTAN_URL")]
    capstan_url: Option<String>,
    /// The capstan service this task belongs to.
    #[arg(long, env = "CAPSTAN_SERVICE", default_value = "api")]
    service: String,
    /// The task's id (its ECS task ARN or the ARN's last part); default: read from the
    /// ECS task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`).
    #[arg(long, env = "CAPSTAN_TASK_ID")]
    task_id: Option<String>,
    /// capstan's bearer token.
    #[arg(long, env = "CAPSTAN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long a request without `?ms=` takes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    request_ms: u64,
    /// The longest a request may ask for with `?ms=`, in milliseconds.
    #[arg(long, default_value_t = 600_000)]
    max_request_ms: u64,
    /// The TTL of each report, in seconds (renewed every third of it while the request
    /// runs).
    #[arg(long, default_value_t = 600)]
    ttl_secs: u64,
    /// How long requests in flight may finish after SIGTERM, in seconds (keep it below
    /// the task's stop timeout: 30 s by default on Fargate).
    #[arg(long, default_value_t = 25)]
    grace_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("request-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let registry = match args.capstan_url {
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
            Some(Registry {
                url,
                service: args.service,
                task,
                token: args.token,
            })
        }
    };
    let settings = Settings {
        registry,
        request_time: Duration::from_millis(args.request_ms),
        max_request_time: Duration::from_millis(args.max_request_ms),
        ttl: Duration::from_secs(args.ttl_secs.clamp(1, 86_400)),
        grace: Duration::from_secs(args.grace_secs),
    };
    let worker = Worker::new(settings, &format!("p{}", std::process::id()))?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("{}: {e}", args.listen))?;
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    worker.run(listener, stop).await?;
    Ok(())
}

/// SIGTERM (ECS stopping the task) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
