//! API rate limits as token buckets (AWS-SEMANTICS §8) and the per-operation call
//! statistics.
//!
//! ECS throttles per account and Region with one token bucket per category: a bucket
//! holds at most `burst` tokens, refills continuously at `refill` tokens per second, and
//! every call takes one token; a call finding the bucket empty fails with a throttling
//! error. The ECS figures are AWS's documented ones; ELBv2 and EC2 Auto Scaling do not
//! document theirs, so the figures used for them are ⚠ parameters chosen to look like
//! AWS's (same order of magnitude as ECS's read and modify buckets).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

/// A rate-limit category: the operations sharing one token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Category {
    /// ECS service modify (`UpdateService`): 50 burst, 5 per second.
    ServiceModify,
    /// ECS service read (`DescribeServices`): 100 burst, 20 per second.
    ServiceRead,
    /// ECS cluster resource read (`ListTasks`, `DescribeTasks`,
    /// `ListContainerInstances`, `DescribeContainerInstances`): 100 burst, 20 per second.
    ClusterRead,
    /// ECS cluster resource modify (`StopTask`, `UpdateContainerInstancesState`): 100
    /// burst, 40 per second.
    ClusterModify,
    /// ECS task protection (`UpdateTaskProtection`, `GetTaskProtection`): 200 burst, 80
    /// per second.
    TaskProtection,
    /// ⚠ ELBv2 describe calls (`DescribeTargetHealth`,
    /// `DescribeTargetGroupAttributes`): 100 burst, 20 per second (undocumented).
    ElbRead,
    /// ⚠ ELBv2 mutating calls (`RegisterTargets`, `DeregisterTargets`): 50 burst, 10
    /// per second (undocumented).
    ElbModify,
    /// ⚠ EC2 Auto Scaling describe calls (`DescribeAutoScalingGroups`): 100 burst, 20
    /// per second (undocumented).
    AsgRead,
    /// ⚠ EC2 Auto Scaling mutating calls (`SetDesiredCapacity`, `SetInstanceProtection`,
    /// `TerminateInstanceInAutoScalingGroup`, `CompleteLifecycleAction`,
    /// `RecordLifecycleActionHeartbeat`): 50 burst, 10 per second (undocumented).
    AsgModify,
}

impl Category {
    /// Every category, in bucket order.
    const ALL: [Self; 9] = [
        Self::ServiceModify,
        Self::ServiceRead,
        Self::ClusterRead,
        Self::ClusterModify,
        Self::TaskProtection,
        Self::ElbRead,
        Self::ElbModify,
        Self::AsgRead,
        Self::AsgModify,
    ];

    /// `(burst, refill per second)`.
    fn bucket(self) -> (f64, f64) {
        match self {
            Self::ServiceModify => (50.0, 5.0),
            Self::ServiceRead | Self::ClusterRead | Self::ElbRead | Self::AsgRead => (100.0, 20.0),
            Self::ClusterModify => (100.0, 40.0),
            Self::TaskProtection => (200.0, 80.0),
            Self::ElbModify | Self::AsgModify => (50.0, 10.0),
        }
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Largest number of tokens.
    burst: f64,
    /// Tokens added per second.
    refill: f64,
    /// Tokens now (as of `at`).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Timestamp,
}

impl Bucket {
    /// Takes a token if there is one, after refilling up to `now`.
    fn take(&mut self, now: Timestamp) -> bool {
        let dt = capstan_core::clock::elapsed(self.at, now).as_secs_f64();
        self.tokens = (self.tokens + dt * self.refill).min(self.burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Every category's bucket, full at the start.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    /// Indexed like [`Category::ALL`].
    buckets: Vec<Bucket>,
}

impl Buckets {
    /// Full buckets as of `now`.
    pub(crate) fn new(now: Timestamp) -> Self {
        let buckets = Category::ALL
            .iter()
            .map(|c| {
                let (burst, refill) = c.bucket();
                Bucket {
                    burst,
                    refill,
                    tokens: burst,
                    at: now,
                }
            })
            .collect();
        Self { buckets }
    }

    /// Takes a token of `category`; false when its bucket is empty.
    pub(crate) fn take(&mut self, category: Category, now: Timestamp) -> bool {
        let i = Category::ALL
            .iter()
            .position(|c| *c == category)
            .unwrap_or_default();
        self.buckets.get_mut(i).is_none_or(|b| b.take(now))
    }
}

/// Calls of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OperationStats {
    /// Calls made (including the failed ones).
    pub calls: u64,
    /// Calls answered with a throttling error (empty bucket or an injected
    /// throttling fault).
    pub throttled: u64,
    /// Calls failed by an injected fault.
    pub faulted: u64,
}

/// Calls per AWS operation name (`UpdateService`, `DescribeTasks`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiStats {
    /// By operation name.
    pub operations: BTreeMap<String, OperationStats>,
}

impl ApiStats {
    /// Calls of `operation` (0 if never called).
    pub fn calls(&self, operation: &str) -> u64 {
        self.operations.get(operation).map_or(0, |s| s.calls)
    }

    /// Throttled calls of `operation`.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.operations.get(operation).map_or(0, |s| s.throttled)
    }

    /// Calls of `operation` failed by an injected fault.
    pub fn faulted(&self, operation: &str) -> u64 {
        self.operations.get(operation).map_or(0, |s| s.faulted)
    }

    /// Calls of every operation.
    pub fn total_calls(&self) -> u64 {
        self.operations.values().map(|s| s.calls).sum()
    }

    /// Throttled calls of every operation.
    pub fn total_throttled(&self) -> u64 {
        self.operations.values().map(|s| s.throttled).sum()
    }

    /// The entry of `operation`, created on first use.
    pub(crate) fn entry(&mut self, operation: &str) -> &mut OperationStats {
        self.operations.entry(operation.to_owned()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_continuously_up_to_the_burst() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut b = Buckets::new(t0);
        for _ in 0..50 {
            assert!(b.take(Category::ServiceModify, t0));
        }
        assert!(!b.take(Category::ServiceModify, t0));
        // 5 per second: 0.2 s gives one token.
        let t = capstan_core::clock::add(t0, std::time::Duration::from_millis(200));
        assert!(b.take(Category::ServiceModify, t));
        assert!(!b.take(Category::ServiceModify, t));
        // Other buckets are independent.
        assert!(b.take(Category::ServiceRead, t));
        // A long pause refills to the burst only.
        let t = capstan_core::clock::add(t, std::time::Duration::from_secs(3600));
        for _ in 0..50 {
            assert!(b.take(Category::ServiceModify, t));
        }
        assert!(!b.take(Category::ServiceModify, t));
    }
}
