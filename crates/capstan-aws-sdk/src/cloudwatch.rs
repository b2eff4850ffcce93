//! [`CloudWatch`] through `aws-sdk-cloudwatch` (which speaks rpc-v2-cbor).

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{
    Dimension as SdkDimension, Metric, MetricDataQuery, MetricDatum as SdkDatum, MetricStat,
    ScanBy, StatusCode,
};
use capstan_aws_api::{
    AwsError, AwsErrorKind, CloudWatch, Datapoint, Dimension, MetricDatum, MetricQuery, limits,
};
use jiff::Timestamp;

use crate::config::{LazyClient, SharedConfig};
use crate::error::{from_sdk, malformed};
use crate::time::{from_sdk_time, to_sdk_time};

/// The id of capstan's one query in a `GetMetricData` call.
pub const QUERY_ID: &str = "capstan";

/// The CloudWatch client, made from a [`SharedConfig`] on first use.
#[derive(Debug, Clone)]
pub struct SdkCloudWatch {
    client: LazyClient<Client>,
}

impl SdkCloudWatch {
    /// A client on `config` (loaded on the first call). Clones share the client.
    pub fn new(config: SharedConfig) -> Self {
        Self {
            client: LazyClient::new(config, Client::new),
        }
    }

    /// A client made from an SDK client (tests with a replayed HTTP client).
    pub fn from_client(client: Client) -> Self {
        Self {
            client: LazyClient::ready(client, Client::new),
        }
    }

    /// The configuration it uses.
    pub fn config(&self) -> &SharedConfig {
        self.client.config()
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }
}

fn dimensions(dims: &[Dimension]) -> Vec<SdkDimension> {
    dims.iter()
        .map(|d| {
            SdkDimension::builder()
                .name(&d.name)
                .value(&d.value)
                .build()
        })
        .collect()
}

/// The `MetricDataQuery` of `query`.
pub fn data_query(query: &MetricQuery) -> MetricDataQuery {
    let builder = MetricDataQuery::builder().id(QUERY_ID).return_data(true);
    match query {
        MetricQuery::Metric {
            namespace,
            metric_name,
            dimensions: dims,
            stat,
            period_secs,
        } => builder
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(namespace)
                            .metric_name(metric_name)
                            .set_dimensions(Some(dimensions(dims)))
                            .build(),
                    )
                    .period(i32::try_from(*period_secs).unwrap_or(i32::MAX))
                    .stat(stat)
                    .build(),
            )
            .build(),
        MetricQuery::Expression {
            expression,
            period_secs,
        } => builder
            .expression(expression)
            .period(i32::try_from(*period_secs).unwrap_or(i32::MAX))
            .build(),
    }
}

impl CloudWatch for SdkCloudWatch {
    async fn get_metric_data(
        &self,
        query: &MetricQuery,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Datapoint>, AwsError> {
        const OP: &str = "GetMetricData";
        let out = self
            .client()
            .await
            .get_metric_data()
            .metric_data_queries(data_query(query))
            .start_time(to_sdk_time(start))
            .end_time(to_sdk_time(end))
            .scan_by(ScanBy::TimestampDescending)
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        let Some(result) = out
            .metric_data_results()
            .iter()
            .find(|r| r.id() == Some(QUERY_ID))
        else {
            // No result for the query at all: the answer is not one CloudWatch gives.
            return Err(malformed(OP, "the answer has no result for the query"));
        };
        let messages = || {
            let texts: Vec<String> = result
                .messages()
                .iter()
                .chain(out.messages())
                .map(|m| format!("{}: {}", m.code().unwrap_or("?"), m.value().unwrap_or("")))
                .collect();
            texts.join("; ")
        };
        match result.status_code() {
            Some(StatusCode::InternalError) => {
                return Err(AwsError::new(OP, AwsErrorKind::Server, messages()));
            }
            Some(StatusCode::Forbidden) => {
                return Err(AwsError::new(OP, AwsErrorKind::AccessDenied, messages()));
            }
            _ => {}
        }
        if result.timestamps().len() != result.values().len() {
            return Err(malformed(
                OP,
                format!(
                    "{} timestamps but {} values",
                    result.timestamps().len(),
                    result.values().len()
                ),
            ));
        }
        let mut points = Vec::with_capacity(result.values().len());
        for (t, v) in result.timestamps().iter().zip(result.values()) {
            let timestamp = from_sdk_time(t)
                .ok_or_else(|| malformed(OP, format!("timestamp {t} out of range")))?;
            points.push(Datapoint {
                timestamp,
                value: *v,
            });
        }
        // Newest first whatever order the answer used.
        points.sort_by_key(|p| std::cmp::Reverse(p.timestamp));
        Ok(points)
    }

    async fn put_metric_data(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), AwsError> {
        const OP: &str = "PutMetricData";
        if data.len() > limits::PUT_METRIC_DATA {
            return Err(AwsError::batch_too_large(
                OP,
                data.len(),
                limits::PUT_METRIC_DATA,
            ));
        }
        let datums = data
            .iter()
            .map(|d| {
                SdkDatum::builder()
                    .metric_name(&d.metric_name)
                    .set_dimensions(Some(dimensions(&d.dimensions)))
                    .value(d.value)
                    .timestamp(to_sdk_time(d.timestamp))
                    .build()
            })
            .collect();
        self.client()
            .await
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(datums))
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        Ok(())
    }
}
