//! Compiles `[[services.policies]]` into the core's policy types, then runs each
//! policy's own `validate` and files its errors under the policy's key path.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_core::alerts::AlertSelector;
use capstan_core::policy::scheduled::cron_expression as parse_cron;
use capstan_core::policy::{
    Adjustment, Aggregation, Alert, BacklogPerTask, Datapoints, Growth, Jitter, MetricBounds,
    NamedPolicy, Policy, Scheduled, ScheduledAction, StepAlarm, StepBand, StepScaling,
    TargetTracking, Threshold, TrackingMode,
};
use jiff::tz::TimeZone;

use super::compile::{locate, source_ref};
use super::defaults;
use super::reader::{Ctx, KeyPath, Str, Table, list};
use super::schema;

/// Compiles the `policies` of one service. `None` when any policy could not be built.
pub(crate) fn compile_policies(
    ctx: &mut Ctx<'_>,
    service: &Table<'_, '_>,
    sources: &[String],
) -> Option<Vec<NamedPolicy>> {
    if !service.has("policies") {
        service.missing(ctx, "policies");
        return None;
    }
    let tables = service.tables(ctx, "policies", schema::POLICY)?;
    if tables.is_empty() {
        ctx.error(
            &service.span_of("policies"),
            &service.path_of("policies"),
            "at least one policy is required",
        );
        return None;
    }
    let mut out = Vec::with_capacity(tables.len());
    let mut complete = true;
    let mut names: Vec<(String, KeyPath)> = Vec::new();
    for (index, t) in tables.into_iter().enumerate() {
        let path = t.path.clone();
        let node = service
            .node("policies")
            .and_then(|n| n.get_ref().as_array())
            .and_then(|a| a.get(index));
        let errors_before = ctx.error_count();
        let named = compile_policy(ctx, t, index, sources);
        let Some(named) = named else {
            complete = false;
            continue;
        };
        if let Some((_, first)) = names.iter().find(|(n, _)| *n == named.name) {
            let span = node.map_or(0..0, |n| locate(n, "name"));
            ctx.error(
                &span,
                &path.key("name"),
                format!(
                    "duplicate policy name {:?} (also used by {first})",
                    named.name
                ),
            );
        } else {
            names.push((named.name.clone(), path.clone()));
        }
        // The policy's own checks. A field the compiler already complained about is not
        // reported twice.
        for e in named.policy.validate() {
            let field = config_field(&e.field);
            let full = path.join(&field);
            if ctx.has_error_at(&full, errors_before) {
                continue;
            }
            let span = node.map_or(0..0, |n| locate(n, &field));
            ctx.error(&span, &full, e.message);
        }
        out.push(named);
    }
    complete.then_some(out)
}

fn compile_policy(
    ctx: &mut Ctx<'_>,
    mut t: Table<'_, '_>,
    index: usize,
    sources: &[String],
) -> Option<NamedPolicy> {
    let kind = t.req_choice(ctx, "kind", schema::POLICY_KINDS, "policy kind");
    let name = t.opt::<Str>(ctx, "name").and_then(|n| {
        if n.value.trim().is_empty() {
            ctx.error(&n.span, &t.path_of("name"), "a policy name cannot be empty");
            None
        } else {
            Some(n.value)
        }
    });
    let keys: &[&'static str] = match kind {
        Some("target_tracking") => schema::TARGET_TRACKING,
        Some("step") => schema::STEP,
        Some("threshold") => schema::THRESHOLD,
        Some("backlog_per_task") => schema::BACKLOG,
        Some("scheduled") => schema::SCHEDULED,
        Some("alert") => schema::ALERT,
        _ => {
            // Unknown kind: only the kind is reported.
            t.allow(schema::TARGET_TRACKING);
            t.allow(schema::STEP);
            t.allow(schema::THRESHOLD);
            t.allow(schema::BACKLOG);
            t.allow(schema::SCHEDULED);
            t.allow(schema::ALERT);
            &[]
        }
    };
    t.allow(keys);
    let policy = match kind {
        Some("target_tracking") => target_tracking(ctx, &t, sources).map(Policy::TargetTracking),
        Some("step") => step(ctx, &t, sources).map(Policy::Step),
        Some("threshold") => threshold(ctx, &t, sources).map(Policy::Threshold),
        Some("backlog_per_task") => backlog(ctx, &t, sources).map(Policy::BacklogPerTask),
        Some("scheduled") => scheduled(ctx, &t).map(Policy::Scheduled),
        Some("alert") => alert(ctx, &t).map(Policy::Alert),
        _ => None,
    };
    t.finish(ctx);
    let policy = policy?;
    let name = name.unwrap_or_else(|| format!("{}#{index}", policy.kind()));
    Some(NamedPolicy { name, policy })
}

/// The configuration key path of a field named by a policy's `validate` (the core names
/// a few fields after its struct fields rather than the file's keys).
fn config_field(field: &str) -> String {
    for (core, file) in [("step_out", "step.out"), ("step_in", "step.in")] {
        if let Some(rest) = field.strip_prefix(core)
            && (rest.is_empty() || rest.starts_with(['.', '[']))
        {
            return format!("{file}{rest}");
        }
    }
    field.to_owned()
}

/// `datapoints = { out, in }` with the given defaults.
fn datapoints(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, default: Datapoints) -> Datapoints {
    let mut dp = default;
    if let Some(d) = t.table(ctx, "datapoints", schema::DATAPOINTS) {
        if let Some(n) = d.opt(ctx, "out") {
            dp.out = n;
        }
        if let Some(n) = d.opt(ctx, "in") {
            dp.r#in = n;
        }
        d.finish(ctx);
    }
    dp
}

fn target_tracking(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    sources: &[String],
) -> Option<TargetTracking> {
    let metric = source_ref(ctx, t, "metric", sources);
    let mode = t
        .req_choice(ctx, "mode", schema::TRACKING_MODES, "mode")
        .map(|m| match m {
            "total" => TrackingMode::Total,
            _ => TrackingMode::PerTask,
        });
    let target = t.req::<f64>(ctx, "target");
    let tolerance = t
        .opt::<f64>(ctx, "tolerance")
        .unwrap_or(defaults::TOLERANCE);
    let datapoints = datapoints(ctx, t, defaults::DATAPOINTS);
    let disable_scale_in = t.opt::<bool>(ctx, "disable_scale_in").unwrap_or(false);
    Some(TargetTracking {
        metric: metric?,
        mode: mode?,
        target: target?,
        tolerance,
        datapoints,
        disable_scale_in,
    })
}

fn step(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, sources: &[String]) -> Option<StepScaling> {
    let metric = source_ref(ctx, t, "metric", sources);
    let aggregation = match t.choice(ctx, "aggregation", schema::AGGREGATIONS, "aggregation") {
        Some("minimum") => Aggregation::Minimum,
        Some("maximum") => Aggregation::Maximum,
        _ => Aggregation::Average,
    };
    let min_adjustment = t.opt::<u32>(ctx, "min_adjustment");
    let out = step_alarm(ctx, t, "out");
    let r#in = step_alarm(ctx, t, "in");
    Some(StepScaling {
        metric: metric?,
        aggregation,
        out: out?,
        r#in: r#in?,
        min_adjustment,
    })
}

/// The alarm at `key`: `Some(None)` when absent, `None` when broken.
fn step_alarm(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, key: &str) -> Option<Option<StepAlarm>> {
    if !t.has(key) {
        return Some(None);
    }
    let a = t.table(ctx, key, schema::STEP_ALARM)?;
    let threshold = a.req::<f64>(ctx, "threshold");
    let datapoints = a
        .opt::<u32>(ctx, "datapoints")
        .unwrap_or(defaults::STEP_DATAPOINTS);
    let mut bands = Some(Vec::new());
    if !a.has("steps") {
        a.missing(ctx, "steps");
        bands = None;
    } else if let Some(tables) = a.tables(ctx, "steps", schema::STEP_BAND) {
        for b in tables {
            let band = step_band(ctx, &b);
            b.finish(ctx);
            match (band, bands.as_mut()) {
                (Some(band), Some(list)) => list.push(band),
                _ => bands = None,
            }
        }
    } else {
        bands = None;
    }
    a.finish(ctx);
    Some(Some(StepAlarm {
        threshold: threshold?,
        bands: bands?,
        datapoints,
    }))
}

fn step_band(ctx: &mut Ctx<'_>, b: &Table<'_, '_>) -> Option<StepBand> {
    let lower = b.opt::<f64>(ctx, "lower");
    let upper = b.opt::<f64>(ctx, "upper");
    let broken = (b.has("lower") && lower.is_none()) || (b.has("upper") && upper.is_none());
    let written: Vec<&str> = ["change", "percent", "exact"]
        .into_iter()
        .filter(|k| b.has(k))
        .collect();
    let adjustment = match written.as_slice() {
        ["change"] => b.opt::<i64>(ctx, "change").map(Adjustment::Change),
        ["percent"] => b.opt::<f64>(ctx, "percent").map(Adjustment::Percent),
        ["exact"] => b.opt::<u32>(ctx, "exact").map(Adjustment::Exact),
        [] => {
            ctx.error(
                &b.span,
                &b.path,
                "set exactly one of `change`, `percent` or `exact` (none is set)",
            );
            None
        }
        several => {
            ctx.error(
                &b.span_of(several[1]),
                &b.path,
                format!(
                    "set exactly one of `change`, `percent` or `exact` (found {})",
                    list(several)
                ),
            );
            None
        }
    };
    if broken {
        return None;
    }
    Some(StepBand {
        lower,
        upper,
        adjustment: adjustment?,
    })
}

fn threshold(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, sources: &[String]) -> Option<Threshold> {
    let metrics = if t.has("metrics") {
        t.tables(ctx, "metrics", schema::THRESHOLD_METRIC)
            .and_then(|tables| {
                let mut out = Some(Vec::new());
                for m in tables {
                    let metric = source_ref(ctx, &m, "metric", sources);
                    let min = m.req::<f64>(ctx, "min");
                    let max = m.req::<f64>(ctx, "max");
                    m.finish(ctx);
                    match (metric, min, max, out.as_mut()) {
                        (Some(metric), Some(min), Some(max), Some(list)) => {
                            list.push(MetricBounds { metric, min, max });
                        }
                        _ => out = None,
                    }
                }
                out
            })
    } else {
        t.missing(ctx, "metrics");
        None
    };
    let datapoints = datapoints(ctx, t, defaults::DATAPOINTS);
    let (mut step_out, mut step_in, mut growth) = (1, 1, Growth::Fixed);
    if let Some(s) = t.table(ctx, "step", schema::THRESHOLD_STEP) {
        step_out = s.opt(ctx, "out").unwrap_or(step_out);
        step_in = s.opt(ctx, "in").unwrap_or(step_in);
        growth = match s.choice(ctx, "growth", schema::GROWTHS, "growth") {
            Some("linear") => Growth::Linear,
            Some("exponential") => Growth::Exponential,
            _ => Growth::Fixed,
        };
        s.finish(ctx);
    }
    let jitter = match t.table(ctx, "jitter", schema::JITTER) {
        Some(j) => {
            let fraction = j.req::<f64>(ctx, "fraction");
            let seed = j.opt::<u64>(ctx, "seed").unwrap_or(0);
            j.finish(ctx);
            Some(Some(Jitter {
                fraction: fraction?,
                seed,
            }))
        }
        None if t.has("jitter") => None,
        None => Some(None),
    };
    Some(Threshold {
        metrics: metrics?,
        datapoints,
        step_out,
        step_in,
        growth,
        jitter: jitter?,
    })
}

/// `kind = "alert"`. The service is filled in by [`bind_service`].
fn alert(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<Alert> {
    let alertname = t.opt::<Str>(ctx, "alert").map(|s| s.value);
    let labels: BTreeMap<String, String> = t
        .opt::<BTreeMap<String, Str>>(ctx, "match")
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect();
    if alertname.is_none() && labels.is_empty() && !t.has("alert") && !t.has("match") {
        ctx.error(
            &t.span_of("kind"),
            &t.path_of("alert"),
            "an alert policy needs `alert` (the alertname) and/or `match` (labels)",
        );
    }
    let threshold = t.opt::<f64>(ctx, "threshold");
    let value_key = t.opt::<Str>(ctx, "value_key").map(|s| s.value);
    let step = t.opt::<u32>(ctx, "step").unwrap_or(1);
    let growth = match t.choice(ctx, "growth", schema::GROWTHS, "growth") {
        Some("linear") => Growth::Linear,
        Some("exponential") => Growth::Exponential,
        _ => Growth::Fixed,
    };
    let max_step = t.opt::<u32>(ctx, "max_step");
    let jitter = match t.table(ctx, "jitter", schema::JITTER) {
        Some(j) => {
            let fraction = j.req::<f64>(ctx, "fraction");
            let seed = j.opt::<u64>(ctx, "seed").unwrap_or(0);
            j.finish(ctx);
            Some(Some(Jitter {
                fraction: fraction?,
                seed,
            }))
        }
        None if t.has("jitter") => None,
        None => Some(None),
    };
    let in_step = t.opt::<u32>(ctx, "in_step").unwrap_or(1);
    let forget_after = t
        .opt_positive(ctx, "forget_after")
        .unwrap_or(defaults::ALERT_FORGET_AFTER);
    Some(Alert {
        service: String::new(),
        selector: AlertSelector { alertname, labels },
        threshold,
        value_key,
        step,
        growth,
        max_step,
        jitter: jitter?,
        in_step,
        forget_after,
    })
}

/// Gives the `alert` policies of `service` its name (they read that service's alerts).
pub(crate) fn bind_service(mut policies: Vec<NamedPolicy>, service: &str) -> Vec<NamedPolicy> {
    for p in &mut policies {
        if let Policy::Alert(a) = &mut p.policy {
            service.clone_into(&mut a.service);
        }
    }
    policies
}

fn backlog(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, sources: &[String]) -> Option<BacklogPerTask> {
    let backlog = source_ref(ctx, t, "backlog", sources);
    let processing_time = source_ref(ctx, t, "processing_time", sources);
    let acceptable_latency = if t.has("acceptable_latency") {
        t.opt_positive(ctx, "acceptable_latency")
    } else {
        t.missing(ctx, "acceptable_latency");
        None
    };
    let target_refresh = t
        .opt_positive(ctx, "target_refresh")
        .unwrap_or(defaults::TARGET_REFRESH);
    let target_min = t
        .opt::<f64>(ctx, "target_min")
        .unwrap_or(defaults::BACKLOG_TARGET_MIN);
    let target_max = t
        .opt::<f64>(ctx, "target_max")
        .unwrap_or(defaults::BACKLOG_TARGET_MAX);
    let tolerance = t
        .opt::<f64>(ctx, "tolerance")
        .unwrap_or(defaults::TOLERANCE);
    let datapoints = datapoints(ctx, t, defaults::DATAPOINTS);
    Some(BacklogPerTask {
        backlog: backlog?,
        processing_time: processing_time?,
        acceptable_latency: acceptable_latency?,
        target_refresh,
        target_min,
        target_max,
        tolerance,
        datapoints,
    })
}

fn scheduled(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<Scheduled> {
    let timezone = match t.opt::<Str>(ctx, "timezone") {
        Some(name) => match TimeZone::get(&name.value) {
            Ok(tz) => Some(tz),
            Err(_) => {
                ctx.error(
                    &name.span,
                    &t.path_of("timezone"),
                    format!(
                        "unknown time zone {} (use an IANA name like \"Europe/Paris\" or \"UTC\")",
                        name.shown()
                    ),
                );
                None
            }
        },
        None if t.has("timezone") => None,
        None => Some(TimeZone::UTC),
    };
    let actions = if t.has("actions") {
        t.tables(ctx, "actions", schema::SCHEDULED_ACTION)
            .and_then(|tables| {
                let mut out = Some(Vec::new());
                for a in tables {
                    let action = scheduled_action(ctx, &a);
                    a.finish(ctx);
                    match (action, out.as_mut()) {
                        (Some(action), Some(list)) => list.push(action),
                        _ => out = None,
                    }
                }
                out
            })
    } else {
        t.missing(ctx, "actions");
        None
    };
    Some(Scheduled {
        timezone: timezone?,
        actions: actions?,
    })
}

fn scheduled_action(ctx: &mut Ctx<'_>, a: &Table<'_, '_>) -> Option<ScheduledAction> {
    let cron = a
        .req::<Str>(ctx, "cron")
        .and_then(|text| match parse_cron(&text.value) {
            Ok(cron) => Some((text.value, cron)),
            Err(why) => {
                ctx.error(
                    &text.span,
                    &a.path_of("cron"),
                    format!(
                        "bad cron expression {}: {}",
                        text.shown(),
                        text.detail(
                            &why,
                            "expected 5 fields: minute hour day-of-month month day-of-week"
                        )
                    ),
                );
                None
            }
        });
    let duration = if a.has("duration") {
        a.opt_positive(ctx, "duration")
    } else {
        a.missing(ctx, "duration");
        None
    };
    let min = a.opt::<u32>(ctx, "min");
    let max = a.opt::<u32>(ctx, "max");
    let exact = a.opt::<u32>(ctx, "exact");
    let broken = ["min", "max", "exact"]
        .iter()
        .zip([min, max, exact])
        .any(|(k, v)| a.has(k) && v.is_none());
    let (cron_text, cron) = cron?;
    let duration: Duration = duration?;
    if broken {
        return None;
    }
    Some(ScheduledAction {
        cron_text,
        cron,
        duration,
        min,
        max,
        exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_field_names_map_to_keys() {
        assert_eq!(config_field("step_out"), "step.out");
        assert_eq!(config_field("step_in"), "step.in");
        assert_eq!(config_field("step_input"), "step_input");
        assert_eq!(config_field("out.steps[1].upper"), "out.steps[1].upper");
    }

    #[test]
    fn cron_needs_five_fields() {
        assert!(parse_cron("0 8 * * MON-FRI").is_ok());
        assert!(parse_cron("@daily").is_ok());
        let err = parse_cron("0 0 8 * * MON-FRI").unwrap_err();
        assert!(err.contains("found 6"), "{err}");
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("* * * * FOO").is_err());
    }
}
