//! The `cloudwatch` source: the latest datapoint of one CloudWatch metric (namespace,
//! metric, dimensions, statistic, period) or metric-math expression, from
//! `GetMetricData` over the last `lookback`; and the `ecs` presets on top of it
//! ([`EcsMetric`]: a service's CPU or memory utilization in `AWS/ECS`, or
//! `RequestCountPerTarget` of its target group in `AWS/ApplicationELB`).
//!
//! - No datapoint in the window: `on_empty = "zero"` reads 0 (a queue-like metric that
//!   CloudWatch does not publish while idle), `"error"` (the default) fails the read
//!   with `not_found`, so the planner holds.
//! - The window ends at the source's clock's now.
//! - The whole read is cut at the source's timeout; errors are classed like the other
//!   AWS sources ([`crate::aws::read_error`]).

use std::sync::Arc;
use std::time::Duration;

use capstan_aws_api::{CloudWatch, Dimension, MetricQuery};
use capstan_core::Clock;

use crate::aws::{AwsSpec, read_error};
use crate::error::ReadError;
use crate::{BoxFuture, Source};

/// What a `cloudwatch` source reads when CloudWatch has no datapoint in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnEmpty {
    /// Fail the read (`not_found`).
    #[default]
    Error,
    /// Read 0.
    Zero,
}

/// A `cloudwatch` (or `ecs`) source's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchSpec {
    /// The metric or expression.
    pub query: MetricQuery,
    /// How far back to look for the latest datapoint.
    pub lookback: Duration,
    /// What an empty window reads.
    pub on_empty: OnEmpty,
    /// Region, endpoint, profile.
    pub aws: AwsSpec,
}

/// The `ecs` source's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsMetric {
    /// The service's `CPUUtilization` (percent of its reserved CPU).
    Cpu,
    /// The service's `MemoryUtilization` (percent of its reserved memory).
    Memory,
    /// `RequestCountPerTarget` of the service's target group (per period).
    RequestCountPerTarget,
}

/// The query of an `ecs` preset. `target_group` is the `TargetGroup` dimension
/// (`targetgroup/name/id`, the end of the ARN), needed by
/// [`EcsMetric::RequestCountPerTarget`] only.
pub fn ecs_query(
    metric: EcsMetric,
    cluster: &str,
    service: &str,
    target_group: Option<&str>,
    stat: &str,
    period_secs: u32,
) -> MetricQuery {
    let (namespace, metric_name, dimensions) = match metric {
        EcsMetric::Cpu | EcsMetric::Memory => (
            "AWS/ECS",
            if metric == EcsMetric::Cpu {
                "CPUUtilization"
            } else {
                "MemoryUtilization"
            },
            vec![
                Dimension::new("ClusterName", cluster),
                Dimension::new("ServiceName", service),
            ],
        ),
        EcsMetric::RequestCountPerTarget => (
            "AWS/ApplicationELB",
            "RequestCountPerTarget",
            vec![Dimension::new(
                "TargetGroup",
                target_group.unwrap_or_default(),
            )],
        ),
    };
    MetricQuery::Metric {
        namespace: namespace.to_owned(),
        metric_name: metric_name.to_owned(),
        dimensions,
        stat: stat.to_owned(),
        period_secs,
    }
}

/// A `cloudwatch` source over any [`CloudWatch`] client.
pub struct CloudWatchSource<C> {
    client: C,
    spec: CloudWatchSpec,
    clock: Arc<dyn Clock>,
    target: String,
    timeout: Duration,
}

impl<C: CloudWatch> CloudWatchSource<C> {
    /// A source reading `spec` through `client`, its window ending at `clock`'s now,
    /// each read cut at `timeout`.
    pub fn new(client: C, spec: &CloudWatchSpec, clock: Arc<dyn Clock>, timeout: Duration) -> Self {
        Self {
            client,
            target: spec.aws.target("CloudWatch"),
            spec: spec.clone(),
            clock,
            timeout,
        }
    }

    fn what(&self) -> String {
        match &self.spec.query {
            MetricQuery::Metric {
                namespace,
                metric_name,
                dimensions,
                stat,
                ..
            } => {
                let dims: Vec<String> = dimensions
                    .iter()
                    .map(|d| format!("{}={}", d.name, d.value))
                    .collect();
                format!("{stat} of {namespace} {metric_name} [{}]", dims.join(", "))
            }
            MetricQuery::Expression { expression, .. } => format!("expression {expression:?}"),
        }
    }

    async fn query(&self) -> Result<f64, ReadError> {
        let end = self.clock.now();
        let lookback = jiff::SignedDuration::try_from(self.spec.lookback)
            .map_err(|e| ReadError::Config(format!("lookback: {e}")))?;
        let start = end
            .checked_sub(lookback)
            .map_err(|e| ReadError::Config(format!("lookback: {e}")))?;
        let points = self
            .client
            .get_metric_data(&self.spec.query, start, end)
            .await
            .map_err(|e| read_error(&self.target, &self.what(), e))?;
        match (points.first(), self.spec.on_empty) {
            (Some(latest), _) => Ok(latest.value),
            (None, OnEmpty::Zero) => Ok(0.0),
            (None, OnEmpty::Error) => Err(ReadError::NotFound {
                target: self.target.clone(),
                what: format!(
                    "a datapoint of {} in the last {:?}",
                    self.what(),
                    self.spec.lookback
                ),
            }),
        }
    }
}

impl<C: CloudWatch> Source for CloudWatchSource<C> {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(crate::error::within(self.timeout, self.query()))
    }
}

/// The SDK-backed source of `spec`, on the wall clock.
#[cfg(feature = "aws")]
pub fn build_sdk(
    spec: &CloudWatchSpec,
    timeout: Duration,
) -> CloudWatchSource<capstan_aws_sdk::SdkCloudWatch> {
    let config = capstan_aws_sdk::SharedConfig::new(spec.aws.sdk_settings(timeout));
    CloudWatchSource::new(
        capstan_aws_sdk::SdkCloudWatch::new(config),
        spec,
        Arc::new(capstan_core::SystemClock),
        timeout,
    )
}
