//! `sqs-producer`: sends timed jobs (`{"id": N, "processing_ms": MS}`) to an SQS queue at
//! a steady rate until SIGINT or SIGTERM; AWS credentials and region from the SDK's
//! standard chain. The `sqs-backlog` recipe's load (examples/sqs-backlog/README.md).

use std::process::ExitCode;

use aws_config::BehaviorVersion;
use capstan_example_sqs::{ProcessingTime, ProducerSettings, produce, stop_on_signal};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Sends timed jobs to an SQS queue.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The queue's URL.
    #[arg(long, env = "SQS_QUEUE_URL")]
    queue_url: String,
    /// Messages a minute.
    #[arg(long, default_value_t = 50.0)]
    per_minute: f64,
    /// Mean processing time written into each job, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    processing_ms: u64,
    /// Each job's processing time varies by up to ± this fraction of the mean.
    #[arg(long, default_value_t = 0.5)]
    jitter: f64,
    /// Seed of the jitter.
    #[arg(long, default_value_t = 3)]
    seed: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let settings = ProducerSettings {
        queue_url: args.queue_url,
        per_minute: args.per_minute,
        processing: ProcessingTime::new(args.processing_ms),
        jitter: args.jitter,
        seed: args.seed,
        speedup: 1,
    };
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    match produce(&sqs, &settings, &cancel).await {
        Ok(sent) => {
            eprintln!("sqs-producer: stopped after {sent} messages");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sqs-producer: {e}");
            ExitCode::FAILURE
        }
    }
}
