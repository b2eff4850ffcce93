//! Client-side pacing of ECS calls with AWS's own token buckets.
//!
//! ECS throttles each account and Region with one token bucket per category of call
//! (AWS-SEMANTICS §8): a burst, then a steady refill per second. Many services scaled
//! from one capstan share those buckets, so without pacing a burst of observations
//! (every service's tick at start-up, or a short interval on many services) is answered
//! with throttling errors and retried. The [`Pacer`] keeps the same buckets on the
//! client: a call waits for its category's token instead of being sent to be refused.
//! The clients made for one set of AWS settings share one pacer.
//!
//! Waiting uses `tokio::time`, so tests run it on paused (virtual) time.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The categories of ECS calls AWS throttles separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `DescribeServices`, `ListServices`.
    ServiceRead,
    /// `UpdateService` and the other service changes.
    ServiceModify,
    /// `DescribeTasks`, `ListTasks`, `ListContainerInstances`,
    /// `DescribeContainerInstances`.
    ClusterRead,
    /// `StopTask`, `UpdateContainerInstancesState`.
    ClusterModify,
    /// `UpdateTaskProtection`, `GetTaskProtection`.
    TaskProtection,
}

impl Category {
    const ALL: [Self; 5] = [
        Self::ServiceRead,
        Self::ServiceModify,
        Self::ClusterRead,
        Self::ClusterModify,
        Self::TaskProtection,
    ];

    /// AWS's default bucket: (burst, refill per second).
    pub fn aws_default(self) -> (f64, f64) {
        match self {
            Self::ServiceRead | Self::ClusterRead => (100.0, 20.0),
            Self::ServiceModify => (50.0, 5.0),
            Self::ClusterModify => (100.0, 40.0),
            Self::TaskProtection => (200.0, 80.0),
        }
    }

    /// The position of its bucket: [`Self::ALL`] lists the variants in order.
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug)]
struct Bucket {
    burst: f64,
    refill: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token if there is one; otherwise how long until there is.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.refill))
        }
    }
}

/// One token bucket per [`Category`], full at the start.
#[derive(Debug)]
pub struct Pacer {
    buckets: Mutex<Vec<Bucket>>,
}

impl Default for Pacer {
    /// AWS's default buckets.
    fn default() -> Self {
        Self::with(Category::aws_default)
    }
}

impl Pacer {
    /// Buckets of `(burst, refill per second)` per category (a refill of 0 or less is
    /// taken as 1 per second).
    pub fn with(buckets: impl Fn(Category) -> (f64, f64)) -> Self {
        let now = Instant::now();
        let buckets = Category::ALL
            .iter()
            .map(|c| {
                let (burst, refill) = buckets(*c);
                let burst = burst.max(1.0);
                Bucket {
                    burst,
                    refill: if refill > 0.0 { refill } else { 1.0 },
                    tokens: burst,
                    at: now,
                }
            })
            .collect();
        Self {
            buckets: Mutex::new(buckets),
        }
    }

    /// Waits for a token of `category`.
    pub async fn take(&self, category: Category) {
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
                match buckets[category.index()].take(Instant::now()) {
                    Ok(()) => return,
                    Err(wait) => wait,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once_then_calls_follow_the_refill() {
        let pacer = Pacer::default();
        let start = Instant::now();
        for _ in 0..100 {
            pacer.take(Category::ClusterRead).await;
        }
        assert_eq!(Instant::now(), start, "the burst does not wait");
        // 20 more at 20 per second: one second.
        for _ in 0..20 {
            pacer.take(Category::ClusterRead).await;
        }
        let waited = Instant::now() - start;
        assert!(
            (Duration::from_millis(990)..=Duration::from_millis(1010)).contains(&waited),
            "{waited:?}"
        );
        // Categories are separate: a service change is not held by cluster reads.
        let before = Instant::now();
        pacer.take(Category::ServiceModify).await;
        assert_eq!(Instant::now(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_up_to_its_burst_only() {
        let pacer = Pacer::with(|_| (5.0, 1.0));
        for _ in 0..5 {
            pacer.take(Category::ServiceModify).await;
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let start = Instant::now();
        for _ in 0..5 {
            pacer.take(Category::ServiceModify).await;
        }
        assert_eq!(Instant::now(), start);
        pacer.take(Category::ServiceModify).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }
}
