//! The metrics the simulated world offers to policies, by name.
//!
//! A scenario's capstan config reads them through `kind = "simulated"` sources
//! (`metric = "queue_depth"`), and the AWS baselines alarm on them as CloudWatch would.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One metric of the simulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimMetric {
    /// Messages waiting in the queue (SQS `ApproximateNumberOfMessagesVisible`, Redis
    /// `LLEN`).
    QueueDepth,
    /// Messages waiting or being processed (SQS visible + not visible).
    QueueTotal,
    /// Age of the oldest waiting message, seconds.
    OldestAge,
    /// Mean processing time of messages completed in the last minute, seconds (what
    /// workers report).
    ProcessingTime,
    /// Queue total ÷ running tasks.
    BacklogPerTask,
    /// Mean CPU utilization over running tasks, percent of the task's reservation.
    Cpu,
    /// Mean memory utilization over running tasks, percent of the task's reservation.
    Memory,
    /// Requests (or messages, or new sessions) arriving per second.
    RequestRate,
    /// Requests in the last 60 s per routable target (ALB `RequestCountPerTarget`).
    RequestsPerTarget,
    /// Live sessions, all tasks.
    Sessions,
    /// Live sessions per running task.
    SessionsPerTask,
    /// Work in progress (requests being served, messages being processed), all tasks.
    InFlight,
    /// Tasks in RUNNING.
    RunningTasks,
    /// Cluster CPU reservation over ACTIVE container instances, percent.
    CpuReservation,
    /// Cluster memory reservation over ACTIVE container instances, percent.
    MemoryReservation,
    /// Tasks a service wants but that are not placed or not running yet.
    PendingTasks,
}

impl SimMetric {
    /// Every metric, in a stable order.
    pub const ALL: [SimMetric; 16] = [
        Self::QueueDepth,
        Self::QueueTotal,
        Self::OldestAge,
        Self::ProcessingTime,
        Self::BacklogPerTask,
        Self::Cpu,
        Self::Memory,
        Self::RequestRate,
        Self::RequestsPerTarget,
        Self::Sessions,
        Self::SessionsPerTask,
        Self::InFlight,
        Self::RunningTasks,
        Self::CpuReservation,
        Self::MemoryReservation,
        Self::PendingTasks,
    ];

    /// Its name in configs and files.
    pub fn name(self) -> &'static str {
        match self {
            Self::QueueDepth => "queue_depth",
            Self::QueueTotal => "queue_total",
            Self::OldestAge => "oldest_age",
            Self::ProcessingTime => "processing_time",
            Self::BacklogPerTask => "backlog_per_task",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::RequestRate => "request_rate",
            Self::RequestsPerTarget => "requests_per_target",
            Self::Sessions => "sessions",
            Self::SessionsPerTask => "sessions_per_task",
            Self::InFlight => "in_flight",
            Self::RunningTasks => "running_tasks",
            Self::CpuReservation => "cpu_reservation",
            Self::MemoryReservation => "memory_reservation",
            Self::PendingTasks => "pending_tasks",
        }
    }
}

impl fmt::Display for SimMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimMetric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown simulated metric \"{s}\"; known: {}",
                    names.join(", ")
                )
            })
    }
}

/// The value of every metric at one instant; `None` where the metric does not apply
/// (no queue in a request workload, no cluster on Fargate) or is undefined (mean CPU
/// with no running task).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Frame {
    values: [Option<f64>; 16],
}

impl Frame {
    /// The value of `m`.
    pub fn get(&self, m: SimMetric) -> Option<f64> {
        self.values[m as usize]
    }

    /// Sets `m` (non-finite values are stored as `None`).
    pub fn set(&mut self, m: SimMetric, v: f64) {
        self.values[m as usize] = v.is_finite().then_some(v);
    }

    /// Clears `m`.
    pub fn clear(&mut self, m: SimMetric) {
        self.values[m as usize] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_frames() {
        for (i, m) in SimMetric::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
            assert_eq!(m.name().parse::<SimMetric>(), Ok(*m));
        }
        assert!(
            "cpus"
                .parse::<SimMetric>()
                .unwrap_err()
                .contains("known: queue_depth")
        );
        let mut f = Frame::default();
        f.set(SimMetric::Cpu, 42.0);
        f.set(SimMetric::Memory, f64::NAN);
        assert_eq!(f.get(SimMetric::Cpu), Some(42.0));
        assert_eq!(f.get(SimMetric::Memory), None);
    }
}
