//! capstan: config loading and validation, the daemon's loops, the CLI.
//!
//! - [`config`]: the TOML file, compiled into typed settings with every error named.
//! - [`cli`]: `validate` and `explain`.
//! - [`daemon`]: `run`: pollers, one control loop per service, graceful shutdown.
//! - [`server`]: the HTTP listener: `/healthz`, `/metrics`, pushed values.
//! - [`simulate`]: `simulate`: shipped scenarios, configs mapped onto the simulator.
//! - [`demo`]: `demo`: a scenario in accelerated real time, its decisions shown live.
//! - [`workflows_cli`]: `workflows`: the scale-in workflows of a running capstan.
//! - [`rotate_cli`]: `cluster rotate|rotations`: blue/green host rotations of a running
//!   capstan.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod rotate_cli;
pub mod server;
pub mod simulate;
pub mod workflows_cli;
