//! One row of a run: what happened in one simulated step. The runner produces them,
//! the report consumes them (summary, CSV, plots) without keeping them all.

use jiff::Timestamp;
use serde::Serialize;

use crate::metric::Frame;

/// What one step of one run looked like.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The instant at the end of the step.
    pub at: Timestamp,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Length of the step, seconds.
    pub dt_s: f64,
    /// Demand from the trace: arrivals per second (messages, requests or new sessions).
    pub demand: f64,
    /// Tasks the demand needs at full efficiency (for over-provisioning).
    pub needed: f64,
    /// `desiredCount`.
    pub desired: u32,
    /// Tasks in RUNNING.
    pub running: u32,
    /// Tasks starting (PROVISIONING, PENDING, ACTIVATING).
    pub pending: u32,
    /// Tasks on their way out (DEACTIVATING, STOPPING, DEPROVISIONING): still billed.
    pub stopping: u32,
    /// Container instances (EC2 cluster scenarios), else `None`.
    pub hosts: Option<u32>,
    /// The metric the run's main policy acts on, and its target (for plots).
    pub metric: Option<f64>,
    /// The main policy's target for `metric`.
    pub metric_target: Option<f64>,
    /// Every simulated metric at the end of the step.
    pub frame: Frame,
    /// Work finished in this step (requests, messages, sessions ended normally).
    pub completed: u64,
    /// Requests that failed in this step (sent to or cut on a stopping task: 5xx).
    pub failed_requests: u64,
    /// Sessions cut in this step because their task stopped.
    pub interrupted_sessions: u64,
    /// Messages whose processing was cut in this step (they return to the queue).
    pub interrupted_messages: u64,
    /// Whether the service's SLO (queue age or latency above its limit) was violated
    /// during this step.
    pub slo_violated: bool,
    /// A scaling action taken in this step: desired count from → to.
    pub action: Option<(u32, u32)>,
    /// The controller's evaluation in this step, as one line: capstan's decision
    /// (holds included) at each of its ticks, AWS's action with the alarm that fired.
    /// `None` in steps without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}
