//! Compiling the AWS source kinds (`sqs`, `cloudwatch`, `ecs`) and the
//! `ship_to_cloudwatch` table any source may have. `compile.rs` only dispatches here.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_aws_api::{Dimension, MetricQuery};
use capstan_sources::aws::AwsSpec;
use capstan_sources::cloudwatch::{CloudWatchSpec, EcsMetric, OnEmpty, ecs_query};
use capstan_sources::ecs_cluster::{ClusterMetric, EcsClusterSpec};
use capstan_sources::ship::ShipSpec;
use capstan_sources::sqs::{QueueRef, SqsSpec};

use super::reader::{Ctx, KeyPath, Str, Table};
use super::schema;

/// The shortest `lookback` default: CloudWatch publishes most AWS metrics a minute or
/// two late.
const MIN_LOOKBACK: Duration = Duration::from_secs(600);

/// The string at `key` (required or optional): a name, region or ARN, so not empty and
/// without spaces.
pub(super) fn word(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    key: &str,
    required: bool,
) -> Option<String> {
    let s: Str = if required {
        t.req(ctx, key)
    } else {
        t.opt(ctx, key)
    }?;
    if s.value.trim().is_empty() || s.value.chars().any(char::is_whitespace) {
        ctx.error(&s.span, &t.path_of(key), "must not be empty or hold spaces");
        return None;
    }
    Some(s.value)
}

/// `region`, `endpoint_url` and `profile` (of an AWS source or an `ecs` target).
pub(super) fn compile_aws(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> AwsSpec {
    let region = word(ctx, t, "region", false);
    let profile = word(ctx, t, "profile", false);
    let endpoint_url = word(ctx, t, "endpoint_url", false);
    let endpoint_url = endpoint_url.filter(|url| {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty());
        if !ok {
            ctx.error(
                &t.span_of("endpoint_url"),
                &t.path_of("endpoint_url"),
                "expected an http:// or https:// URL (e.g. http://127.0.0.1:5000)",
            );
        }
        ok
    });
    AwsSpec {
        region,
        endpoint_url,
        profile,
    }
}

/// A `kind = "sqs"` source.
pub(super) fn compile_sqs_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<SqsSpec> {
    let url: Option<Str> = t.opt(ctx, "queue_url");
    let name: Option<Str> = t.opt(ctx, "queue");
    let queue = match (url, name) {
        (Some(_), Some(n)) => {
            ctx.error(
                &n.span,
                &t.path_of("queue"),
                "give `queue` (a name) or `queue_url`, not both",
            );
            None
        }
        (None, None) => {
            t.missing(ctx, "queue");
            None
        }
        (Some(u), None) => {
            if u.value.starts_with("https://") || u.value.starts_with("http://") {
                Some(QueueRef::Url(u.value))
            } else {
                ctx.error(
                    &u.span,
                    &t.path_of("queue_url"),
                    "expected a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
                );
                None
            }
        }
        (None, Some(n)) => {
            let ok = !n.value.is_empty()
                && n.value.len() <= 80
                && n.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if ok {
                Some(QueueRef::Name(n.value))
            } else {
                ctx.error(
                    &n.span,
                    &t.path_of("queue"),
                    "an SQS queue name has 1 to 80 letters, digits, `-` or `_` (and `.fifo` at the end); for a URL use `queue_url`",
                );
                None
            }
        }
    };
    let include_in_flight = t.opt(ctx, "include_in_flight").unwrap_or(true);
    let include_delayed = t.opt(ctx, "include_delayed").unwrap_or(false);
    let aws = compile_aws(ctx, t);
    Some(SqsSpec {
        queue: queue?,
        include_in_flight,
        include_delayed,
        aws,
    })
}

/// `period` in whole seconds: 1, 5, 10, 30 or a multiple of 60 (default 60).
fn compile_period(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<u32> {
    let Some(period) = t.opt_positive(ctx, "period") else {
        return (!t.has("period")).then_some(60);
    };
    let secs = u32::try_from(period.as_secs()).unwrap_or(u32::MAX);
    let ok = period.subsec_nanos() == 0 && (matches!(secs, 1 | 5 | 10 | 30) || secs % 60 == 0);
    if ok {
        Some(secs)
    } else {
        ctx.error(
            &t.span_of("period"),
            &t.path_of("period"),
            "CloudWatch periods are 1s, 5s, 10s, 30s or a multiple of 60s",
        );
        None
    }
}

/// `lookback` (default: 3 periods, at least 10m) and `on_empty` (default `error`).
fn compile_window(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, period: u32) -> (Duration, OnEmpty) {
    let lookback = t.opt_positive(ctx, "lookback").unwrap_or_else(|| {
        Duration::from_secs(u64::from(period).saturating_mul(3)).max(MIN_LOOKBACK)
    });
    let on_empty = match t.choice(ctx, "on_empty", schema::CLOUDWATCH_ON_EMPTY, "on_empty") {
        Some("zero") => OnEmpty::Zero,
        _ => OnEmpty::Error,
    };
    (lookback, on_empty)
}

/// `stat` (default `default`): a statistic CloudWatch knows.
fn compile_stat(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, default: &str) -> Option<String> {
    let Some(s) = t.opt::<Str>(ctx, "stat") else {
        return Some(default.to_owned());
    };
    let named = ["Average", "Sum", "Minimum", "Maximum", "SampleCount", "IQM"];
    let extended = ["p", "tm", "tc", "ts", "wm", "TM", "TC", "TS", "WM", "PR"]
        .iter()
        .any(|prefix| {
            s.value
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '('))
        });
    if named.contains(&s.value.as_str()) || extended {
        Some(s.value)
    } else {
        ctx.error(
            &s.span,
            &t.path_of("stat"),
            "expected Average, Sum, Minimum, Maximum, SampleCount, IQM or a percentile such as p99",
        );
        None
    }
}

/// `dimensions = { Name = "value", ... }`.
fn compile_dimensions(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Vec<Dimension> {
    let dims: BTreeMap<String, Str> = t.opt(ctx, "dimensions").unwrap_or_default();
    if dims.len() > 30 {
        ctx.error(
            &t.span_of("dimensions"),
            &t.path_of("dimensions"),
            "CloudWatch allows at most 30 dimensions",
        );
    }
    dims.into_iter()
        .map(|(name, value)| Dimension::new(name, value.value))
        .collect()
}

/// A `kind = "cloudwatch"` source.
pub(super) fn compile_cloudwatch_source(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
) -> Option<CloudWatchSpec> {
    let period = compile_period(ctx, t);
    let query = if t.has("expression") {
        for key in ["namespace", "metric", "dimensions", "stat"] {
            if t.has(key) {
                ctx.error(
                    &t.span_of(key),
                    &t.path_of(key),
                    "`expression` reads a metric-math expression; it cannot have `namespace`, `metric`, `dimensions` or `stat`",
                );
            }
        }
        let expression: Str = t.req(ctx, "expression")?;
        period.map(|period_secs| MetricQuery::Expression {
            expression: expression.value,
            period_secs,
        })
    } else {
        let namespace: Option<Str> = t.req(ctx, "namespace");
        let metric: Option<Str> = t.req(ctx, "metric");
        let stat = compile_stat(ctx, t, "Average");
        let dimensions = compile_dimensions(ctx, t);
        match (namespace, metric, stat, period) {
            (Some(namespace), Some(metric), Some(stat), Some(period_secs)) => {
                Some(MetricQuery::Metric {
                    namespace: namespace.value,
                    metric_name: metric.value,
                    dimensions,
                    stat,
                    period_secs,
                })
            }
            _ => None,
        }
    };
    let (lookback, on_empty) = compile_window(ctx, t, period.unwrap_or(60));
    let aws = compile_aws(ctx, t);
    Some(CloudWatchSpec {
        query: query?,
        lookback,
        on_empty,
        aws,
    })
}

/// A `kind = "ecs_cluster"` source: a cluster's reservation or unplaced tasks, read
/// from ECS.
pub(super) fn compile_ecs_cluster_source(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
) -> Option<EcsClusterSpec> {
    let metric = t
        .req_choice(
            ctx,
            "metric",
            schema::ECS_CLUSTER_METRICS,
            "ecs_cluster metric",
        )
        .and_then(ClusterMetric::parse);
    let cluster: Option<Str> = t.req(ctx, "cluster");
    let cluster = cluster.and_then(|c| {
        if c.value.is_empty() {
            ctx.error(&c.span, &t.path_of("cluster"), "must not be empty");
            None
        } else {
            Some(c.value)
        }
    });
    let aws = compile_aws(ctx, t);
    Some(EcsClusterSpec {
        cluster: cluster?,
        metric: metric?,
        aws,
    })
}

/// A `kind = "ecs"` source: a CloudWatch preset.
pub(super) fn compile_ecs_source(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<CloudWatchSpec> {
    let metric = match t.req_choice(ctx, "metric", schema::ECS_METRICS, "ecs metric")? {
        "cpu" => EcsMetric::Cpu,
        "memory" => EcsMetric::Memory,
        _ => EcsMetric::RequestCountPerTarget,
    };
    let period = compile_period(ctx, t);
    let (cluster, service, target_group, default_stat) =
        if metric == EcsMetric::RequestCountPerTarget {
            let tg: Option<Str> = t.req(ctx, "target_group");
            let tg = tg.and_then(|tg| {
                // The dimension is the end of the ARN: targetgroup/NAME/ID.
                let value = tg
                    .value
                    .find("targetgroup/")
                    .map_or(tg.value.as_str(), |at| &tg.value[at..])
                    .to_owned();
                if value.starts_with("targetgroup/") && value.split('/').count() == 3 {
                    Some(value)
                } else {
                    ctx.error(
                        &tg.span,
                        &t.path_of("target_group"),
                        "expected a target group ARN or its end, targetgroup/NAME/ID",
                    );
                    None
                }
            });
            (None, None, Some(tg), "Sum")
        } else {
            let cluster: Option<Str> = t.req(ctx, "cluster");
            let service: Option<Str> = t.req(ctx, "service");
            (Some(cluster), Some(service), None, "Average")
        };
    let stat = compile_stat(ctx, t, default_stat);
    let (lookback, on_empty) = compile_window(ctx, t, period.unwrap_or(60));
    let aws = compile_aws(ctx, t);
    let query = match (cluster, service, target_group) {
        (Some(Some(cluster)), Some(Some(service)), None) => ecs_query(
            metric,
            &cluster.value,
            &service.value,
            None,
            &stat?,
            period?,
        ),
        (None, None, Some(Some(tg))) => ecs_query(metric, "", "", Some(&tg), &stat?, period?),
        _ => return None,
    };
    Some(CloudWatchSpec {
        query,
        lookback,
        on_empty,
        aws,
    })
}

/// The `ship_to_cloudwatch` tables of every source, by source name.
pub(super) fn compile_ships(ctx: &mut Ctx<'_>, top: &Table<'_, '_>) -> BTreeMap<String, ShipSpec> {
    let mut out = BTreeMap::new();
    let Some(map) = top.node("sources").and_then(|n| n.get_ref().as_table()) else {
        return out;
    };
    let path = KeyPath::root().key("sources");
    for (name, value) in map.iter() {
        let name = name.get_ref().as_ref();
        let Some(source) = value.get_ref().as_table() else {
            continue;
        };
        let Some(node) = source.get("ship_to_cloudwatch") else {
            continue;
        };
        let spath = path.key(name).key("ship_to_cloudwatch");
        let Some(t) = Table::of(ctx, spath, node, schema::SHIP_TO_CLOUDWATCH) else {
            continue;
        };
        let namespace: Option<Str> = t.req(ctx, "namespace");
        let namespace = namespace.and_then(|n| {
            if n.value.is_empty() || n.value.starts_with("AWS/") || n.value.len() > 255 {
                ctx.error(
                    &n.span,
                    &t.path_of("namespace"),
                    "a custom namespace is 1 to 255 characters and does not start with AWS/",
                );
                None
            } else {
                Some(n.value)
            }
        });
        let metric_name = t
            .opt::<Str>(ctx, "metric")
            .map_or_else(|| name.to_owned(), |m| m.value);
        let dimensions = compile_dimensions(ctx, &t);
        let aws = compile_aws(ctx, &t);
        t.finish(ctx);
        if let Some(namespace) = namespace {
            out.insert(
                name.to_owned(),
                ShipSpec {
                    namespace,
                    metric_name,
                    dimensions,
                    aws,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use capstan_aws_api::{Dimension, MetricQuery};
    use capstan_sources::SourceKind;
    use capstan_sources::cloudwatch::OnEmpty;
    use capstan_sources::sqs::QueueRef;

    use crate::config::{Config, compile};

    fn config() -> Config {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/config/valid/aws.toml"
        ))
        .expect("the fixture");
        compile(&text, "aws.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_aws_fixture_compiles_to_these_settings() {
        let config = config();
        let kind = |name: &str| &config.source(name).expect("a source").kind;
        let SourceKind::Sqs(jobs) = kind("jobs") else {
            panic!("jobs is sqs");
        };
        assert_eq!(jobs.queue, QueueRef::Name("jobs".into()));
        assert!(jobs.include_in_flight && jobs.include_delayed);
        assert_eq!(jobs.aws.region.as_deref(), Some("eu-west-1"));
        let SourceKind::Sqs(orders) = kind("orders") else {
            panic!("orders is sqs");
        };
        assert!(matches!(&orders.queue, QueueRef::Url(u) if u.ends_with("/orders")));
        assert!(!orders.include_in_flight && !orders.include_delayed);
        assert_eq!(
            orders.aws.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );

        let SourceKind::Cloudwatch(oldest) = kind("oldest") else {
            panic!("oldest is cloudwatch");
        };
        assert_eq!(
            oldest.query,
            MetricQuery::Metric {
                namespace: "AWS/SQS".into(),
                metric_name: "ApproximateAgeOfOldestMessage".into(),
                dimensions: vec![Dimension::new("QueueName", "jobs")],
                stat: "Maximum".into(),
                period_secs: 300,
            }
        );
        assert_eq!(oldest.on_empty, OnEmpty::Zero);
        assert_eq!(oldest.lookback, Duration::from_secs(900), "3 periods");
        let SourceKind::Cloudwatch(total) = kind("total") else {
            panic!("total is cloudwatch");
        };
        assert!(matches!(
            &total.query,
            MetricQuery::Expression {
                period_secs: 60,
                ..
            }
        ));
        assert_eq!(total.lookback, Duration::from_secs(900));
        assert_eq!(total.on_empty, OnEmpty::Error);
        assert_eq!(total.aws.profile.as_deref(), Some("prod"));

        let SourceKind::Cloudwatch(cpu) = kind("cpu") else {
            panic!("cpu is ecs");
        };
        assert_eq!(
            cpu.query,
            MetricQuery::Metric {
                namespace: "AWS/ECS".into(),
                metric_name: "CPUUtilization".into(),
                dimensions: vec![
                    Dimension::new("ClusterName", "prod"),
                    Dimension::new("ServiceName", "worker")
                ],
                stat: "Average".into(),
                period_secs: 60,
            }
        );
        assert_eq!(cpu.lookback, Duration::from_secs(600));
        let SourceKind::Cloudwatch(requests) = kind("requests") else {
            panic!("requests is ecs");
        };
        assert_eq!(
            requests.query,
            MetricQuery::Metric {
                namespace: "AWS/ApplicationELB".into(),
                metric_name: "RequestCountPerTarget".into(),
                dimensions: vec![Dimension::new(
                    "TargetGroup",
                    "targetgroup/web/0123456789abcdef"
                )],
                stat: "Sum".into(),
                period_secs: 60,
            }
        );

        let ships = &config.ship_to_cloudwatch;
        assert_eq!(ships.len(), 2);
        let jobs = &ships["jobs"];
        assert_eq!(jobs.namespace, "MyApp/Workers");
        assert_eq!(jobs.metric_name, "jobs", "the source's name by default");
        assert_eq!(jobs.dimensions, [Dimension::new("Service", "worker")]);
        let requests = &ships["requests"];
        assert_eq!(requests.metric_name, "web_requests_per_target");
        assert_eq!(requests.aws.region.as_deref(), Some("us-east-1"));
    }
}
