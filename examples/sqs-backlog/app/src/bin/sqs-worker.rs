//! `sqs-worker`: processes the `sqs-backlog` recipe's jobs one at a time (sleeps each
//! one's processing time), deletes them, and pushes its mean processing time to
//! capstan's push route with capstan's token; stops after the job in progress on
//! SIGINT or SIGTERM. AWS credentials and region from the SDK's standard chain.

use std::process::ExitCode;
use std::time::Duration;

use aws_config::BehaviorVersion;
use capstan_example_sqs::{Push, WorkerSettings, stop_on_signal, work};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Processes timed jobs from an SQS queue and pushes the processing time to capstan.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The queue's URL.
    #[arg(long, env = "SQS_QUEUE_URL")]
    queue_url: String,
    /// capstan's base URL, e.g. `http://capstan.internal:9120`; without it nothing is
    /// pushed.
    #[arg(long, env = "CAPSTAN_URL")]
    capstan_url: Option<String>,
    /// The push source the processing time goes to.
    #[arg(long, default_value = "proc_time")]
    source: String,
    /// capstan's bearer token (the `[server]` token).
    #[arg(long, env = "CAPSTAN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The pushed value is the mean of this worker's newest N processing times.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// SQS visibility timeout of a received job, in seconds.
    #[arg(long, default_value_t = 120)]
    visibility_timeout: u64,
    /// SQS long polling: how long a receive waits for a message, in seconds (0–20).
    #[arg(long, default_value_t = 5)]
    wait: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let http = reqwest::Client::new();
    let push = args.capstan_url.map(|base| Push {
        url: format!(
            "{}/api/v1/metrics/{}",
            base.trim_end_matches('/'),
            args.source
        ),
        token: args.token,
    });
    let settings = WorkerSettings {
        queue_url: args.queue_url,
        push,
        window: args.window,
        visibility_timeout: Duration::from_secs(args.visibility_timeout),
        wait: Duration::from_secs(args.wait),
        speedup: 1,
    };
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    match work(&sqs, &http, &settings, &cancel, |_| {}).await {
        Ok(stats) => {
            eprintln!(
                "sqs-worker: stopped after {} jobs ({} malformed messages, {} failed pushes)",
                stats.processed, stats.malformed, stats.push_failures
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sqs-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
