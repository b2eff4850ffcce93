//! Amazon CloudWatch: reading one metric (or a metric-math expression) and publishing
//! custom metrics.

use std::future::Future;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::AwsError;

/// A metric dimension: name and value (`ClusterName` = `prod`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Dimension {
    /// The dimension's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl Dimension {
    /// A dimension from a name and a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// What one `GetMetricData` query asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricQuery {
    /// One metric, one statistic (`MetricStat`).
    Metric {
        /// The namespace (`AWS/ECS`).
        namespace: String,
        /// The metric's name (`CPUUtilization`).
        metric_name: String,
        /// Its dimensions, all of them (CloudWatch matches the exact set).
        dimensions: Vec<Dimension>,
        /// The statistic: `Average`, `Sum`, `Maximum`, `Minimum`, `SampleCount` or an
        /// extended one (`p99`).
        stat: String,
        /// The period in seconds (60 or a multiple; 1, 5, 10, 30 for high resolution).
        period_secs: u32,
    },
    /// A metric-math or Metrics Insights expression (`Expression`), returning one
    /// time series.
    Expression {
        /// The expression.
        expression: String,
        /// The period in seconds.
        period_secs: u32,
    },
}

/// One datapoint of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Datapoint {
    /// The start of its period.
    pub timestamp: Timestamp,
    /// The value.
    pub value: f64,
}

/// One datum to publish with `PutMetricData`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDatum {
    /// The metric's name.
    pub metric_name: String,
    /// Its dimensions (at most 30).
    pub dimensions: Vec<Dimension>,
    /// The value.
    pub value: f64,
    /// When it was measured.
    pub timestamp: Timestamp,
}

/// The CloudWatch operations capstan calls.
pub trait CloudWatch: Send + Sync + 'static {
    /// `GetMetricData` for one query over `[start, end)`: its datapoints, newest
    /// first (empty when CloudWatch has none in the window).
    fn get_metric_data(
        &self,
        query: &MetricQuery,
        start: Timestamp,
        end: Timestamp,
    ) -> impl Future<Output = Result<Vec<Datapoint>, AwsError>> + Send;

    /// `PutMetricData` of at most [`crate::limits::PUT_METRIC_DATA`] datums in
    /// `namespace`; a larger batch is rejected with
    /// [`crate::AwsErrorKind::InvalidParameter`] (see [`AwsError::batch_too_large`]).
    fn put_metric_data(
        &self,
        namespace: &str,
        data: &[MetricDatum],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}
