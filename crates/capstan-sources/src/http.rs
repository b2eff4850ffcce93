//! The `http` source: GETs a URL and picks a number from the JSON body.
//!
//! - One client per source, built once: its timeout is the source's timeout (connect,
//!   headers and body together), its user agent `capstan/<version>`, the configured
//!   headers are sent with every request and marked sensitive.
//! - A status other than 2xx is an error naming the status. The body (at most
//!   [`BODY_CAP`] bytes) must be JSON.
//! - The pointer (RFC 6901) picks the value; `""` means the whole body. The value may be
//!   a JSON number or a string holding a number, as Prometheus returns (`"3.5"`); any
//!   other JSON type is an error naming the pointer and the type found.
//! - Errors show the URL without its user name and password, and never a header value.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::error::{ReadError, excerpt, redact_url};
use crate::spec::HttpSpec;
use crate::{BoxFuture, Source};

/// Largest response body read; a larger one is an error.
pub const BODY_CAP: usize = 4 * 1024 * 1024;
/// Characters of a non-numeric string quoted in an error.
const VALUE_EXCERPT: usize = 40;

/// An `http` source, ready to read.
pub struct HttpSource {
    /// Built once; holds the timeout, user agent and headers.
    client: reqwest::Client,
    /// Where to GET.
    url: Url,
    /// The URL as shown in errors and logs: without user name and password.
    shown_url: String,
    /// JSON pointer to the value; empty for the whole body.
    pointer: String,
    /// The client's timeout, for the error message.
    timeout: Duration,
}

impl fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the client's headers may hold secrets.
        f.debug_struct("HttpSource")
            .field("url", &self.shown_url)
            .field("pointer", &self.pointer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// Checks `spec` (an http(s) URL, a valid pointer and headers) and builds the client.
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
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                format!("header {name:?} has a value that is not valid in HTTP (value not shown)")
            })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("capstan/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            // Redirects are not followed: a redirect to another host would carry the
            // configured (possibly secret) headers with it. A 3xx is reported instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e.without_url())))?;
        Ok(Self {
            shown_url: redact(&url),
            client,
            url,
            pointer: spec.pointer.clone(),
            timeout,
        })
    }

    /// GETs the URL once and extracts the number.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ReadError::Status {
                url: self.shown_url.clone(),
                status: status.as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > BODY_CAP {
                return Err(ReadError::Body {
                    url: self.shown_url.clone(),
                    reason: format!("response body is larger than {} MiB", BODY_CAP >> 20),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let json: Value = serde_json::from_slice(&body).map_err(|e| ReadError::Body {
            url: self.shown_url.clone(),
            reason: format!("response body is not JSON: {e}"),
        })?;
        extract(&json, &self.pointer)
    }

    /// The error for a request that failed before a usable response.
    fn transport(&self, e: reqwest::Error) -> ReadError {
        if e.is_timeout() {
            ReadError::Timeout(self.timeout)
        } else {
            ReadError::Request {
                url: self.shown_url.clone(),
                reason: chain(&e.without_url()),
            }
        }
    }
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

/// An error and its causes, as one line ("a: b: c"), skipping repeated messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
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
    use std::collections::BTreeMap;

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
