//! Compiles `[webhooks]`: the settings of the alert webhook routes
//! (`[webhooks.alertmanager]`, `[webhooks.grafana]`), each an optional token of its own
//! and the label naming an alert's service.

use std::path::PathBuf;

use super::reader::{Ctx, Str, Table};
use super::{Secret, TokenSource, schema};

/// One webhook route's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    /// A token for this route only (besides the listener's); never logged.
    pub token: Option<TokenSource>,
    /// The label naming the service an alert is for.
    pub service_label: String,
}

impl Default for WebhookSpec {
    fn default() -> Self {
        Self {
            token: None,
            service_label: "service".to_owned(),
        }
    }
}

/// `[webhooks]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhooksSpec {
    /// `POST /webhooks/alertmanager`.
    pub alertmanager: WebhookSpec,
    /// `POST /webhooks/grafana`.
    pub grafana: WebhookSpec,
}

/// `[webhooks]` of the top-level table `top`.
pub(crate) fn compile_webhooks(ctx: &mut Ctx<'_>, top: &Table<'_, '_>) -> WebhooksSpec {
    let mut spec = WebhooksSpec::default();
    let Some(t) = top.table(ctx, "webhooks", schema::WEBHOOKS) else {
        return spec;
    };
    if let Some(w) = t.table(ctx, "alertmanager", schema::WEBHOOK) {
        spec.alertmanager = compile_one(ctx, &w);
        w.finish(ctx);
    }
    if let Some(w) = t.table(ctx, "grafana", schema::WEBHOOK) {
        spec.grafana = compile_one(ctx, &w);
        w.finish(ctx);
    }
    t.finish(ctx);
    spec
}

fn compile_one(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> WebhookSpec {
    let mut spec = WebhookSpec::default();
    match (t.opt::<Str>(ctx, "token"), t.opt::<Str>(ctx, "token_file")) {
        (Some(_), Some(_)) => ctx.error(
            &t.span_of("token_file"),
            &t.path_of("token_file"),
            "set `token` or `token_file`, not both",
        ),
        (Some(token), None) => {
            if token.value.trim().is_empty() {
                ctx.error(&token.span, &t.path_of("token"), "the token is empty");
            } else {
                spec.token = Some(TokenSource::Inline(Secret::new(token.value)));
            }
        }
        (None, Some(file)) => {
            if file.value.trim().is_empty() {
                ctx.error(&file.span, &t.path_of("token_file"), "the path is empty");
            } else {
                spec.token = Some(TokenSource::File(PathBuf::from(file.value)));
            }
        }
        (None, None) => {}
    }
    if let Some(label) = t.opt::<Str>(ctx, "service_label") {
        if label.value.trim().is_empty() {
            ctx.error(
                &label.span,
                &t.path_of("service_label"),
                "the label name is empty",
            );
        } else {
            spec.service_label = label.value;
        }
    }
    spec
}
