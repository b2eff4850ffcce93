//! [`Elb`] through `aws-sdk-elasticloadbalancingv2`: target health, registering and
//! deregistering targets, and a group's deregistration delay.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealthDescription, TargetHealthStateEnum,
};
use capstan_aws_api::{AwsError, Elb, TargetHealth, TargetHealthState, TargetRef};

use crate::config::{LazyClient, SharedConfig};
use crate::error::{from_sdk, malformed};

/// The attribute holding a target group's deregistration delay, in seconds.
pub const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

/// ELBv2's default deregistration delay (300 s), used when the group does not report it.
pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

/// The ELBv2 client, made from a [`SharedConfig`] on first use.
#[derive(Debug, Clone)]
pub struct SdkElb {
    client: LazyClient<Client>,
}

impl SdkElb {
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

fn descriptions(targets: &[TargetRef]) -> Vec<TargetDescription> {
    targets
        .iter()
        .map(|t| {
            TargetDescription::builder()
                .id(&t.id)
                .port(i32::from(t.port))
                .build()
        })
        .collect()
}

/// One `DescribeTargetHealth` entry as a [`TargetHealth`].
pub fn read_health(d: &TargetHealthDescription) -> Result<TargetHealth, AwsError> {
    const OP: &str = "DescribeTargetHealth";
    let target = d
        .target()
        .ok_or_else(|| malformed(OP, "an entry has no Target"))?;
    let id = target
        .id()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| malformed(OP, "a target has no Id"))?;
    let port = match target.port() {
        Some(p) => u16::try_from(p)
            .map_err(|_| malformed(OP, format!("target {id} has port {p}, not a port")))?,
        None => return Err(malformed(OP, format!("target {id} has no Port"))),
    };
    let health = d.target_health();
    let state = match health.and_then(|h| h.state()) {
        Some(TargetHealthStateEnum::Initial) => TargetHealthState::Initial,
        Some(TargetHealthStateEnum::Healthy) => TargetHealthState::Healthy,
        Some(TargetHealthStateEnum::Unhealthy) => TargetHealthState::Unhealthy,
        Some(TargetHealthStateEnum::UnhealthyDraining) => TargetHealthState::UnhealthyDraining,
        Some(TargetHealthStateEnum::Unused) => TargetHealthState::Unused,
        Some(TargetHealthStateEnum::Draining) => TargetHealthState::Draining,
        Some(TargetHealthStateEnum::Unavailable) => TargetHealthState::Unavailable,
        other => {
            return Err(malformed(
                OP,
                format!("target {id}:{port} has health state {other:?}"),
            ));
        }
    };
    Ok(TargetHealth {
        target: TargetRef {
            id: id.to_owned(),
            port,
        },
        state,
        reason: health
            .and_then(|h| h.reason())
            .map(|r| r.as_str().to_owned()),
    })
}

impl Elb for SdkElb {
    async fn describe_target_health(
        &self,
        target_group: &str,
    ) -> Result<Vec<TargetHealth>, AwsError> {
        const OP: &str = "DescribeTargetHealth";
        let out = self
            .client()
            .await
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        out.target_health_descriptions()
            .iter()
            .map(read_health)
            .collect()
    }

    async fn register_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), AwsError> {
        if targets.is_empty() {
            return Ok(());
        }
        self.client()
            .await
            .register_targets()
            .target_group_arn(target_group)
            .set_targets(Some(descriptions(targets)))
            .send()
            .await
            .map_err(|e| from_sdk("RegisterTargets", e))?;
        Ok(())
    }

    async fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), AwsError> {
        if targets.is_empty() {
            return Ok(());
        }
        self.client()
            .await
            .deregister_targets()
            .target_group_arn(target_group)
            .set_targets(Some(descriptions(targets)))
            .send()
            .await
            .map_err(|e| from_sdk("DeregisterTargets", e))?;
        Ok(())
    }

    async fn deregistration_delay(&self, target_group: &str) -> Result<Duration, AwsError> {
        const OP: &str = "DescribeTargetGroupAttributes";
        let out = self
            .client()
            .await
            .describe_target_group_attributes()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| from_sdk(OP, e))?;
        let Some(text) = out
            .attributes()
            .iter()
            .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
            .and_then(|a| a.value())
        else {
            return Ok(DEFAULT_DEREGISTRATION_DELAY);
        };
        text.trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| {
                malformed(
                    OP,
                    format!("{DEREGISTRATION_DELAY} is {text:?}, not a number of seconds"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::types::{
        TargetHealth as SdkHealth, TargetHealthReasonEnum,
    };

    #[test]
    fn health_entries_are_read_and_bad_ones_named() {
        let entry = TargetHealthDescription::builder()
            .target(
                TargetDescription::builder()
                    .id("10.0.0.5")
                    .port(8080)
                    .build(),
            )
            .target_health(
                SdkHealth::builder()
                    .state(TargetHealthStateEnum::Draining)
                    .reason(TargetHealthReasonEnum::DeregistrationInProgress)
                    .build(),
            )
            .build();
        let h = read_health(&entry).unwrap();
        assert_eq!(h.target.id, "10.0.0.5");
        assert_eq!(h.target.port, 8080);
        assert_eq!(h.state, TargetHealthState::Draining);
        assert_eq!(h.reason.as_deref(), Some("Target.DeregistrationInProgress"));
        let bad = TargetHealthDescription::builder()
            .target(
                TargetDescription::builder()
                    .id("10.0.0.5")
                    .port(70000)
                    .build(),
            )
            .build();
        let err = read_health(&bad).unwrap_err();
        assert!(err.to_string().contains("port 70000"), "{err}");
    }
}
