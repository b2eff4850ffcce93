//! The `prometheus` source: one PromQL instant query (`GET {url}/api/v1/query`) that
//! must give exactly one number.
//!
//! - An instant vector with one sample, or a scalar, is the value. An empty vector is
//!   `0` or a `not_found` error, as `on_empty` says (default: error; a series that is
//!   gone often means its exporter is down, which must not read as "nothing to do").
//!   Several samples are `malformed`, naming the count and the first series. A range
//!   vector (matrix) or a string is `malformed`.
//! - `NaN` and `±Inf` samples are `malformed`: PromQL gives them for a division by zero
//!   or a missing rate, which is not a measurement.
//! - Prometheus's own errors are classed by their `errorType`: `bad_data` (the query
//!   does not parse or its arguments are wrong) is `config`, as the query itself is a
//!   setting that cannot work, and retrying does not help; `not_found` is `not_found`;
//!   `timeout`, `canceled`, `execution`, `internal` and `unavailable` are `server`
//!   (a query that times out on the server's side is its failure; the `timeout` class
//!   is kept for the source's own timeout). Any other non-2xx answer is classed by its
//!   status (401/403 `auth`, 404 `not_found`, 5xx `server`).
//! - Headers, basic auth and bearer tokens as for the `http` source ([`crate::web`]);
//!   errors name the server's URL without credentials.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use crate::error::{ReadError, excerpt, redact_url};
use crate::spec::{OnEmpty, PrometheusSpec};
use crate::web::{Transport, WebClient};
use crate::{BoxFuture, Source};

/// Characters of the query or a server message quoted in an error.
const EXCERPT: usize = 200;
/// Series shown when a query gives several.
const SHOWN_SERIES: usize = 3;

/// A `prometheus` source, ready to read.
pub struct PrometheusSource {
    /// Built once; holds the timeout, headers and credentials.
    client: WebClient,
    /// `{url}/api/v1/query?query=...`.
    query_url: Url,
    /// The server as shown in errors: the base URL without credentials.
    shown: String,
    /// The query, for messages.
    query: String,
    /// What an empty result means.
    on_empty: OnEmpty,
    /// The client's timeout, for the error message.
    timeout: Duration,
}

impl fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the URL may hold a password.
        f.debug_struct("PrometheusSource")
            .field("server", &self.shown)
            .field("query", &self.query)
            .field("on_empty", &self.on_empty)
            .field("client", &self.client)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PrometheusSource {
    /// Checks `spec` (an http(s) base URL, a query, headers and credentials, reading
    /// secret files) and builds the client. Does not connect.
    pub fn new(spec: &PrometheusSpec, timeout: Duration) -> Result<Self, String> {
        let base = Url::parse(&spec.url).map_err(|e| format!("url is not a valid URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "url must be http:// or https://, not {}://",
                base.scheme()
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(
                "url is the server's base URL (e.g. http://127.0.0.1:9090): no query or fragment"
                    .to_owned(),
            );
        }
        if spec.query.trim().is_empty() {
            return Err("query is empty".to_owned());
        }
        let client = WebClient::new(&base, &spec.headers, &spec.auth, timeout)?;
        let shown = redact_url(&base).trim_end_matches('/').to_owned();
        let mut query_url = base;
        query_url
            .path_segments_mut()
            .map_err(|()| "url cannot be a base URL".to_owned())?
            .pop_if_empty()
            .extend(["api", "v1", "query"]);
        query_url
            .query_pairs_mut()
            .append_pair("query", &spec.query);
        Ok(Self {
            client,
            query_url,
            shown,
            query: spec.query.clone(),
            on_empty: spec.on_empty,
            timeout,
        })
    }

    /// Runs the query once and returns its one number.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        let (status, body) =
            self.client
                .get(self.query_url.clone())
                .await
                .map_err(|e| match e {
                    Transport::Timeout => ReadError::Timeout(self.timeout),
                    Transport::Failed(reason) => ReadError::Connect {
                        target: self.shown.clone(),
                        reason,
                    },
                    too_large @ Transport::TooLarge => self.malformed(too_large.to_string()),
                })?;
        let ok = (200..300).contains(&status);
        let json: Value = match serde_json::from_slice(&body) {
            Ok(json) => json,
            // A proxy's 401 page, a 404 from a wrong path: classed by the status.
            Err(_) if !ok => return Err(self.status(status)),
            Err(e) => return Err(self.malformed(format!("the answer is not JSON: {e}"))),
        };
        if json.get("status").and_then(Value::as_str) == Some("error") {
            return Err(self.api_error(&json));
        }
        if !ok {
            return Err(self.status(status));
        }
        if json.get("status").and_then(Value::as_str) != Some("success") {
            return Err(self.malformed("the answer has no \"status\": \"success\"".to_owned()));
        }
        let data = json
            .get("data")
            .ok_or_else(|| self.malformed("the answer has no \"data\"".to_owned()))?;
        let result = data.get("result");
        match data.get("resultType").and_then(Value::as_str) {
            Some("vector") => {
                let samples = result.and_then(Value::as_array).ok_or_else(|| {
                    self.malformed("a vector answer without a result list".to_owned())
                })?;
                match samples.as_slice() {
                    [] => match self.on_empty {
                        OnEmpty::Zero => Ok(0.0),
                        OnEmpty::Error => Err(ReadError::NotFound {
                            target: self.shown.clone(),
                            what: format!("a series for query {}", self.shown_query()),
                        }),
                    },
                    [one] => self.number(one.get("value")),
                    several => Err(self.malformed(format!(
                        "query {} gave {} series, expected exactly one: {}",
                        self.shown_query(),
                        several.len(),
                        shown_series(several)
                    ))),
                }
            }
            Some("scalar") => self.number(result),
            Some(other @ ("matrix" | "string")) => Err(self.malformed(format!(
                "query {} gave a {other}, expected an instant vector or a scalar{}",
                self.shown_query(),
                if other == "matrix" {
                    " (drop the range `[...]`, or wrap it in a function such as rate())"
                } else {
                    ""
                }
            ))),
            other => Err(self.malformed(format!("unknown resultType {other:?}"))),
        }
    }

    /// The number in a `[timestamp, "value"]` pair.
    fn number(&self, pair: Option<&Value>) -> Result<f64, ReadError> {
        let text = pair
            .and_then(|p| p.get(1))
            .and_then(Value::as_str)
            .ok_or_else(|| self.malformed("a sample without a [time, \"value\"] pair".into()))?;
        let value = text
            .parse::<f64>()
            .map_err(|_| self.malformed(format!("the sample value {text:?} is not a number")))?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(self.malformed(format!(
                "query {} gave {text}, expected a finite number",
                self.shown_query()
            )))
        }
    }

    /// Prometheus's `{"status": "error", "errorType": ..., "error": ...}`, classed.
    fn api_error(&self, json: &Value) -> ReadError {
        let kind = json
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let message = excerpt(
            json.get("error").and_then(Value::as_str).unwrap_or(""),
            EXCERPT,
        );
        match kind {
            "bad_data" => ReadError::Config(format!(
                "{} refused query {} (bad_data): {message}",
                self.shown,
                self.shown_query()
            )),
            "not_found" => ReadError::NotFound {
                target: self.shown.clone(),
                what: format!("what query {} reads ({message})", self.shown_query()),
            },
            _ => ReadError::Server {
                target: self.shown.clone(),
                reason: format!("{kind}: {message}"),
            },
        }
    }

    /// A non-2xx answer that is not a Prometheus API error.
    fn status(&self, status: u16) -> ReadError {
        ReadError::Status {
            url: format!("{}/api/v1/query", self.shown),
            status,
        }
    }

    fn malformed(&self, reason: String) -> ReadError {
        ReadError::Malformed {
            target: self.shown.clone(),
            reason,
        }
    }

    /// The query, quoted and cut for messages.
    fn shown_query(&self) -> String {
        format!("{:?}", excerpt(&self.query, EXCERPT))
    }
}

/// The label sets of the first few series, as `{a="x"}, {b="y"}, …`.
fn shown_series(series: &[Value]) -> String {
    let mut shown: Vec<String> = series
        .iter()
        .take(SHOWN_SERIES)
        .map(|s| {
            let labels = s
                .get("metric")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            format!("{{{labels}}}")
        })
        .collect();
    if series.len() > SHOWN_SERIES {
        shown.push("…".to_owned());
    }
    shown.join(", ")
}

impl Source for PrometheusSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.fetch())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::HttpAuth;

    fn spec(url: &str, query: &str) -> PrometheusSpec {
        PrometheusSpec {
            url: url.into(),
            query: query.into(),
            on_empty: OnEmpty::Error,
            headers: BTreeMap::new(),
            auth: HttpAuth::default(),
        }
    }

    #[test]
    fn the_query_url_keeps_a_path_prefix_and_encodes_the_query() {
        let t = Duration::from_secs(1);
        let s = PrometheusSource::new(&spec("http://h:9090", "sum(up{job=\"a b\"})"), t).unwrap();
        assert_eq!(
            s.query_url.as_str(),
            "http://h:9090/api/v1/query?query=sum%28up%7Bjob%3D%22a+b%22%7D%29"
        );
        let s = PrometheusSource::new(&spec("https://u:pw-secret@h/prom/", "up"), t).unwrap();
        assert_eq!(s.query_url.path(), "/prom/api/v1/query");
        assert_eq!(s.shown, "https://h/prom");
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn bad_settings_are_refused() {
        let t = Duration::from_secs(1);
        for (url, query, why) in [
            ("ftp://h", "up", "http:// or https://"),
            ("not a url", "up", "not a valid URL"),
            ("http://h/?x=1", "up", "no query"),
            ("http://h", "  ", "query is empty"),
        ] {
            let err = PrometheusSource::new(&spec(url, query), t).unwrap_err();
            assert!(err.contains(why), "{url} {query}: {err}");
        }
    }

    #[test]
    fn several_series_are_shown_briefly() {
        let series: Vec<Value> = (0..5)
            .map(|i| serde_json::json!({"metric": {"q": format!("q{i}")}, "value": [0, "1"]}))
            .collect();
        assert_eq!(
            shown_series(&series),
            "{q=\"q0\"}, {q=\"q1\"}, {q=\"q2\"}, …"
        );
    }
}
