//! `session-load`: load for the session-proxy recipe. `session-load echo` serves an
//! echo upstream; `session-load open` opens long sessions through the proxy (or its load
//! balancer) over a ramp, holds each for a while, closes them, and says how many were
//! cut off (exit status 1 if any was).

use std::net::SocketAddr;
use std::time::Duration;

use capstan_example_session_proxy::load::{self, Closed};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Load for the session proxy.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve an echo upstream until Ctrl-C.
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: String,
    },
    /// Open sessions, hold them, close them.
    Open {
        /// The proxy's (or the load balancer's) address.
        #[arg(long)]
        target: SocketAddr,
        /// How many sessions.
        #[arg(long, default_value_t = 30)]
        sessions: u32,
        /// Over how many seconds they are opened (evenly).
        #[arg(long, default_value_t = 60)]
        ramp_secs: u64,
        /// How long each session lasts, in seconds.
        #[arg(long, default_value_t = 600)]
        hold_secs: u64,
        /// How many of them are long ones.
        #[arg(long, default_value_t = 3)]
        long: u32,
        /// How long the long ones last, in seconds.
        #[arg(long, default_value_t = 3600)]
        long_hold_secs: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Args::parse().command {
        Command::Echo { listen } => {
            let listener = match TcpListener::bind(&listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("session-load: listen on {listen}: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            println!("echoing on {listen}");
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            load::echo(listener, cancel).await;
            std::process::ExitCode::SUCCESS
        }
        Command::Open {
            target,
            sessions,
            ramp_secs,
            hold_secs,
            long,
            long_hold_secs,
        } => {
            let gap = Duration::from_secs(ramp_secs) / sessions.max(1);
            let mut held = tokio::task::JoinSet::new();
            let mut failed = 0_u32;
            for n in 0..sessions {
                match load::open_with_retry(|| Some(target), 10).await {
                    Ok(session) => {
                        let hold = if n < long { long_hold_secs } else { hold_secs };
                        held.spawn(async move {
                            tokio::time::sleep(Duration::from_secs(hold)).await;
                            session.close().await
                        });
                    }
                    Err(e) => {
                        eprintln!("session {n}: {e}");
                        failed += 1;
                    }
                }
                tokio::time::sleep(gap).await;
            }
            println!(
                "opened {} sessions ({failed} could not be opened)",
                sessions - failed
            );
            let (mut ended, mut cut) = (0_u32, 0_u32);
            while let Some(closed) = held.join_next().await {
                match closed {
                    Ok(Closed::Ended) => ended += 1,
                    Ok(Closed::Cut) | Err(_) => cut += 1,
                }
            }
            println!("ended {ended}, cut {cut}");
            if cut == 0 && failed == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
