//! capstan's pure core.
//!
//! Everything here is a pure, synchronous function of its inputs: samples, current
//! capacity, state and `now` go in, a [`Decision`](decision::Decision) with its reasons
//! comes out. No I/O, no async runtime, no wall clock (only [`clock::SystemClock`] reads
//! it), no randomness that is not seeded. The daemon and the simulator run this same code.
//!
//! Module map:
//! - [`model`]: services, tasks, capacity, samples.
//! - [`clock`]: the [`Clock`](clock::Clock) trait, the system clock and a virtual clock.
//! - [`metrics`]: per-source time-stamped windows and their freshness.
//! - [`alerts`]: alert state received from Alertmanager / Grafana webhooks.
//! - [`policy`]: the policies (target tracking, step, threshold, backlog per task,
//!   scheduled), each a pure function to a [`Recommendation`](policy::Recommendation).
//! - [`planner`]: combines recommendations and applies bounds, cooldowns, stabilization,
//!   rate limits and fallbacks.
//! - [`controls`]: an operator's pause and temporary override of min/max.
//! - [`decision`]: the record of a decision and its one-line explanation.
//! - [`victim`]: which tasks to stop on scale-in.
//! - [`history`]: a service's bounded history (raw samples for an hour, minute buckets
//!   for a day), downsampled for charts.
//! - [`hosts`]: EC2 cluster hosts: CPU and memory reservation, and which host may be
//!   removed without a service dropping below its minimum.
//! - [`work`]: the live sessions and workloads each task reports, with their expiry.
//! - [`workflow`]: the durable scale-in workflow's state machine (drain, then stop).
//! - [`protection`]: task scale-in protection: which tasks to protect, extend and
//!   release, in batches for the ECS API.
//! - [`rotation`]: the state of a blue/green host rotation of an EC2 cluster (from one
//!   Auto Scaling group to another).
//! - [`carry`]: which engine state survives a live reload.
//! - [`restore`]: the planner state rebuilt from stored decisions after a restart.
//! - `testing` (feature `test-support`, off by default): builders shared by the tests
//!   and benchmarks.

pub mod alerts;
pub mod carry;
pub mod clock;
pub mod controls;
pub mod decision;
pub mod history;
pub mod hosts;
pub mod metrics;
pub mod model;
pub mod planner;
pub mod policy;
pub mod protection;
pub mod restore;
pub mod rotation;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod victim;
pub mod work;
pub mod workflow;

pub use clock::{Clock, SystemClock, VirtualClock};
pub use jiff::Timestamp;
pub use std::time::Duration;
