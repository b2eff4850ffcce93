//! The `http` source: GETs a URL and picks a number from the body: JSON or YAML at a
//! pointer, or one sample of a Prometheus text exposition.
//!
//! - One client per source, built once ([`crate::web`]): its timeout is the source's
//!   timeout (connect, headers and body together), its user agent `capstan/<version>`,
//!   the configured headers (marked sensitive) and basic or bearer auth are sent with
//!   every request.
//! - A status other than 2xx is an error naming the status. The body is read up to
//!   [`BODY_CAP`] bytes.
//! - `json` and `yaml`: the pointer (RFC 6901) picks the value; `""` means the whole
//!   body. The value may be a number or a string holding a number, as Prometheus
//!   returns (`"3.5"`); any other type is an error naming the pointer and the type found.
//! - `prometheus`: the one sample of `metric` whose labels include the configured ones;
//!   none is `not_found`, several is `malformed` naming the count.
//! - Errors show the URL without its user name and password, and never a header value
//!   or credential.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use crate::error::{ReadError, excerpt, redact_url};
use crate::formats::{PickError, pick_sample, yaml_to_json};
use crate::spec::{BodyFormat, HttpSpec};
use crate::web::{Transport, WebClient};
use crate::{BoxFuture, Source};

pub use crate::web::BODY_CAP;
/// Characters of a non-numeric string quoted in an error.
const VALUE_EXCERPT: usize = 40;

/// An `http` source, ready to read.
pub struct HttpSource {
    /// Built once; holds the timeout, user agent, headers and credentials.
    client: WebClient,
    /// Where to GET.
    url: Url,
    /// The URL as shown in errors and logs: without user name and password.
    shown_url: String,
    /// JSON pointer to the value (json, yaml); empty for the whole body.
    pointer: String,
    /// How the body is read.
    format: BodyFormat,
    /// The client's timeout, for the error message.
    timeout: Duration,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the URL may hold a password.
        f.debug_struct("HttpSource")
            .field("url", &self.shown_url)
            .field("pointer", &self.pointer)
            .field("format", &self.format)
            .field("client", &self.client)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpSource {
    /// Checks `spec` (an http(s) URL, a valid pointer, headers and credentials, reading
    /// secret files) and builds the client.
    pub fn new(spec: &HttpSpec, timeout: Duration) -> Result<Self, String> {
        // The parse error never echoes the URL, which may hold a password.
        let url = Url::parse(&spec.url).map_err(|e| format!("url is not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "url must be http:// or https://, not {}://",
                url.scheme()
            ));
        }
        if !spec.pointer.is_empty() && !spec.pointer.starts_with('/') {
            return Err(format!(
                "pointer must be empty (the whole body) or start with \"/\", got {:?}",
                spec.pointer
            ));
        }
        if let BodyFormat::Prometheus { metric, .. } = &spec.format {
            if !spec.pointer.is_empty() {
                return Err("format \"prometheus\" picks a sample by metric, not pointer".into());
            }
            if !valid_metric_name(metric) {
                return Err(format!("metric {metric:?} is not a Prometheus metric name"));
            }
        }
        let client = WebClient::new(&url, &spec.headers, &spec.auth, timeout)?;
        Ok(Self {
            shown_url: redact(&url),
            client,
            url,
            pointer: spec.pointer.clone(),
            format: spec.format.clone(),
            timeout,
        })
    }

    /// GETs the URL once and extracts the number.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        let (status, body) = self
            .client
            .get(self.url.clone())
            .await
            .map_err(|e| match e {
                Transport::Timeout => ReadError::Timeout(self.timeout),
                Transport::Failed(reason) => ReadError::Request {
                    url: self.shown_url.clone(),
                    reason,
                },
                too_large @ Transport::TooLarge => ReadError::Body {
                    url: self.shown_url.clone(),
                    reason: too_large.to_string(),
                },
            })?;
        if !(200..300).contains(&status) {
            return Err(ReadError::Status {
                url: self.shown_url.clone(),
                status,
            });
        }
        let body_error = |reason: String| ReadError::Body {
            url: self.shown_url.clone(),
            reason,
        };
        match &self.format {
            BodyFormat::Json => {
                let json: Value = serde_json::from_slice(&body)
                    .map_err(|e| body_error(format!("response body is not JSON: {e}")))?;
                extract(&json, &self.pointer)
            }
            BodyFormat::Yaml => {
                let json = yaml_to_json(&body).map_err(body_error)?;
                extract(&json, &self.pointer)
            }
            BodyFormat::Prometheus { metric, labels } => {
                let text = std::str::from_utf8(&body)
                    .map_err(|e| body_error(format!("response body is not UTF-8: {e}")))?;
                let shown = selector(metric, labels);
                pick_sample(text, metric, labels).map_err(|e| match e {
                    PickError::Missing => ReadError::NotFound {
                        target: self.shown_url.clone(),
                        what: format!("a sample {shown}"),
                    },
                    PickError::Several(n) => ReadError::Malformed {
                        target: self.shown_url.clone(),
                        reason: format!(
                            "{n} samples match {shown}; expected exactly one (add labels)"
                        ),
                    },
                    PickError::Bad(line, why) => ReadError::Malformed {
                        target: self.shown_url.clone(),
                        reason: format!("line {line} (a sample of {metric}) is not valid: {why}"),
                    },
                })
            }
        }
    }
}

/// `metric{a="x",b="y"}` for messages.
fn selector(metric: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return metric.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{metric}{{{}}}", inner.join(","))
}

/// Whether `name` is a Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub(crate) fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

impl Source for HttpSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.fetch())
    }
}

/// `url` without its user name and password (see [`redact_url`]).
pub fn redact(url: &Url) -> String {
    redact_url(url)
}

/// Picks the number at `pointer` ("" = the whole body) from `body`.
pub fn extract(body: &Value, pointer: &str) -> Result<f64, ReadError> {
    let place = if pointer.is_empty() {
        "the response body".to_owned()
    } else {
        format!("the value at JSON pointer {pointer:?}")
    };
    let fail = |reason: String| ReadError::Pointer {
        pointer: pointer.to_owned(),
        reason,
    };
    let found = if pointer.is_empty() {
        body
    } else {
        body.pointer(pointer).ok_or_else(|| {
            fail(format!(
                "JSON pointer {pointer:?} matches nothing in the response"
            ))
        })?
    };
    match found {
        Value::Number(n) => n.as_f64().ok_or_else(|| {
            fail(format!(
                "{place} is the number {n}, which does not fit a 64-bit float"
            ))
        }),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| {
            fail(format!(
                "{place} is the string {:?}, not a number",
                excerpt(s, VALUE_EXCERPT)
            ))
        }),
        other => Err(fail(format!(
            "{place} is {}, expected a number or a string holding one",
            json_type(other)
        ))),
    }
}

/// "an object", "null", ... for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointer_picks_numbers_and_numeric_strings() {
        let body = json!({"data": {"result": [{"value": [1700000000.5, "12.5"]}]}, "n": 7});
        assert_eq!(extract(&body, "/n"), Ok(7.0));
        assert_eq!(extract(&body, "/data/result/0/value/1"), Ok(12.5));
        assert_eq!(extract(&json!(42), ""), Ok(42.0));
        assert_eq!(extract(&json!(" 3 "), ""), Ok(3.0));
    }

    #[test]
    fn pointer_errors_name_the_pointer_and_the_type() {
        let body = json!({"a": {"b": true}, "s": "many", "z": null});
        let msg = |p: &str| extract(&body, p).unwrap_err().to_string();
        assert_eq!(
            msg("/nope"),
            "JSON pointer \"/nope\" matches nothing in the response"
        );
        assert_eq!(
            msg("/a"),
            "the value at JSON pointer \"/a\" is an object, expected a number or a string holding one"
        );
        assert_eq!(
            msg("/a/b"),
            "the value at JSON pointer \"/a/b\" is a boolean, expected a number or a string holding one"
        );
        assert_eq!(
            msg("/s"),
            "the value at JSON pointer \"/s\" is the string \"many\", not a number"
        );
        assert!(msg("/z").contains("is null"));
        assert_eq!(
            msg(""),
            "the response body is an object, expected a number or a string holding one"
        );
    }

    #[test]
    fn redact_strips_credentials_only() {
        let url = Url::parse("https://alice:hunter2@example.test:8443/m?q=up#x").unwrap();
        assert_eq!(redact(&url), "https://example.test:8443/m?q=up#x");
        let url = Url::parse("http://example.test/").unwrap();
        assert_eq!(redact(&url), "http://example.test/");
    }

    fn spec(url: &str, pointer: &str, headers: &[(&str, &str)]) -> HttpSpec {
        HttpSpec {
            url: url.into(),
            pointer: pointer.into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            ..HttpSpec::default()
        }
    }

    #[test]
    fn bad_settings_are_refused_without_echoing_secrets() {
        let t = Duration::from_secs(1);
        let err = HttpSource::new(&spec("not a url", "", &[]), t).unwrap_err();
        assert!(err.starts_with("url is not a valid URL"), "{err}");
        let err = HttpSource::new(&spec("ftp://h/x", "", &[]), t).unwrap_err();
        assert!(err.contains("ftp://"), "{err}");
        let err = HttpSource::new(&spec("http://h/", "a/b", &[]), t).unwrap_err();
        assert!(err.contains("\"a/b\""), "{err}");
        let err = HttpSource::new(&spec("http://h/", "", &[("bad name", "v")]), t).unwrap_err();
        assert!(err.contains("\"bad name\""), "{err}");
        let err = HttpSource::new(
            &spec("http://h/", "", &[("Authorization", "tok\nsecret")]),
            t,
        )
        .unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        let ok = HttpSource::new(
            &spec(
                "http://u:pw-secret@h/",
                "/a",
                &[("Authorization", "Bearer tok-secret")],
            ),
            t,
        )
        .unwrap();
        let debug = format!("{ok:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }
}
