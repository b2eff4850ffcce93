//! The HTTP plumbing the `http` and `prometheus` sources share: one client per source
//! with its headers, authentication and timeout, and one bounded GET.
//!
//! - The client's timeout is the source's timeout (connect, headers and body together);
//!   its user agent is `capstan/<version>`; configured headers are sent with every
//!   request and marked sensitive.
//! - Authentication: basic (`username` with `password` / `password_file`, or the URL's
//!   `user:password@`) or bearer (`token` / `token_file`), at most one; files are read
//!   when the source is built. Credentials never appear in errors or `Debug`.
//! - Redirects are not followed: one to another host would carry the credentials.
//! - Bodies larger than [`BODY_CAP`] are refused.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::spec::HttpAuth;

/// Largest response body read; a larger one is an error.
pub const BODY_CAP: usize = 4 * 1024 * 1024;

/// How requests authenticate, resolved (files read). Secrets: never shown.
#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    /// Nothing beyond the configured headers (or the URL's user and password, which
    /// the client sends as basic auth by itself).
    None,
    /// Basic: user name and password.
    Basic(String, String),
    /// Bearer: the token.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: secrets are never shown.
        match self {
            Self::None => f.write_str("None"),
            Self::Basic(user, _) => write!(f, "Basic({user:?}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// A GET that failed before a usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The source's timeout passed.
    Timeout,
    /// Connection refused, DNS, TLS, connection lost: the reason, without the URL.
    Failed(String),
    /// The body is larger than [`BODY_CAP`].
    TooLarge,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Failed(reason) => f.write_str(reason),
            Self::TooLarge => write!(f, "response body is larger than {} MiB", BODY_CAP >> 20),
        }
    }
}

/// One source's HTTP client: the process's shared `reqwest` client (one connection
/// pool, and the system's root certificates loaded once: building a client per source
/// cost milliseconds of CPU each) with this source's headers, credentials and timeout
/// added to each request.
pub(crate) struct WebClient {
    /// The shared client.
    client: reqwest::Client,
    /// This source's headers (values marked sensitive), added to each request.
    headers: HeaderMap,
    /// A request that takes longer is abandoned.
    timeout: Duration,
    /// Added to each request.
    credentials: Credentials,
}

/// The client every HTTP source shares, built on first use.
fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("capstan/", env!("CARGO_PKG_VERSION")))
                // Redirects are not followed: a redirect to another host would carry
                // the configured (possibly secret) headers with it. A 3xx is reported
                // instead.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e.without_url())))
        })
        .clone()
}

impl fmt::Debug for WebClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.credentials {
            Credentials::None => "none",
            Credentials::Basic(..) => "basic",
            Credentials::Bearer(_) => "bearer",
        };
        f.debug_struct("WebClient")
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

impl WebClient {
    /// Checks the headers and authentication (reading secret files) and builds the
    /// client. `url` is the URL the source reads (its user name counts as basic auth).
    pub(crate) fn new(
        url: &Url,
        headers: &BTreeMap<String, String>,
        auth: &HttpAuth,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                format!("header {name:?} has a value that is not valid in HTTP (value not shown)")
            })?;
            value.set_sensitive(true);
            map.insert(header, value);
        }
        let credentials = resolve(auth)?;
        if credentials != Credentials::None {
            if map.contains_key(AUTHORIZATION) {
                return Err("set an Authorization header or username/token, not both".to_owned());
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(
                    "set the credentials in the url or with username/token, not both".to_owned(),
                );
            }
        }
        Ok(Self {
            client: shared_client()?,
            headers: map,
            timeout,
            credentials,
        })
    }

    /// GETs `url` once: the status and the whole body (at most [`BODY_CAP`] bytes).
    pub(crate) async fn get(&self, url: Url) -> Result<(u16, Vec<u8>), Transport> {
        let mut request = self
            .client
            .get(url)
            .timeout(self.timeout)
            .headers(self.headers.clone());
        request = match &self.credentials {
            Credentials::None => request,
            Credentials::Basic(user, password) => request.basic_auth(user, Some(password)),
            Credentials::Bearer(token) => request.bearer_auth(token),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > BODY_CAP {
                return Err(Transport::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

/// The credentials `auth` describes, with their files read.
fn resolve(auth: &HttpAuth) -> Result<Credentials, String> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|t| t.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let both = |a: bool, b: bool, what: &str| {
        if a && b {
            Err(format!("set {what}, not both"))
        } else {
            Ok(())
        }
    };
    both(
        auth.password.is_some(),
        auth.password_file.is_some(),
        "password or password_file",
    )?;
    both(
        auth.token.is_some(),
        auth.token_file.is_some(),
        "token or token_file",
    )?;
    let password = match (&auth.password, &auth.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => Some(read("password_file", path)?),
        (None, None) => None,
    };
    let token = match (&auth.token, &auth.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => Some(read("token_file", path)?),
        (None, None) => None,
    };
    match (&auth.username, password, token) {
        (None, None, None) => Ok(Credentials::None),
        (Some(user), Some(password), None) => {
            if user.contains(':') {
                return Err("username cannot contain `:` (basic auth)".to_owned());
            }
            Ok(Credentials::Basic(user.clone(), password))
        }
        (None, None, Some(token)) => {
            if token.is_empty() || HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                return Err("the token is empty or not valid in an HTTP header".to_owned());
            }
            Ok(Credentials::Bearer(token))
        }
        (Some(_), None, None) => Err("username needs password or password_file".to_owned()),
        (None, Some(_), None) => Err("a password needs a username".to_owned()),
        (_, _, Some(_)) => {
            Err("use basic auth (username and password) or a bearer token, not both".to_owned())
        }
    }
}

/// The error for a request that failed before a usable response.
fn transport(e: reqwest::Error) -> Transport {
    if e.is_timeout() {
        Transport::Timeout
    } else {
        Transport::Failed(chain(&e.without_url()))
    }
}

/// An error and its causes, as one line ("a: b: c"), skipping repeated messages.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: Option<&str>, password: Option<&str>, token: Option<&str>) -> HttpAuth {
        HttpAuth {
            username: user.map(Into::into),
            password: password.map(Into::into),
            token: token.map(Into::into),
            ..HttpAuth::default()
        }
    }

    #[test]
    fn one_way_to_authenticate() {
        assert_eq!(resolve(&HttpAuth::default()), Ok(Credentials::None));
        assert_eq!(
            resolve(&auth(Some("u"), Some("p"), None)),
            Ok(Credentials::Basic("u".into(), "p".into()))
        );
        assert_eq!(
            resolve(&auth(None, None, Some("t"))),
            Ok(Credentials::Bearer("t".into()))
        );
        for (bad, why) in [
            (auth(Some("u"), None, None), "username needs"),
            (auth(None, Some("p-secret"), None), "needs a username"),
            (auth(Some("u"), Some("p-secret"), Some("t")), "not both"),
            (auth(Some("a:b"), Some("p-secret"), None), "`:`"),
            (auth(None, None, Some("x\nsecret")), "not valid"),
        ] {
            let err = resolve(&bad).unwrap_err();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn secret_files_are_read_without_their_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok-1\n").unwrap();
        let spec = HttpAuth {
            token_file: Some(path),
            ..HttpAuth::default()
        };
        assert_eq!(resolve(&spec), Ok(Credentials::Bearer("tok-1".into())));
        let missing = HttpAuth {
            username: Some("u".into()),
            password_file: Some(dir.path().join("nope")),
            ..HttpAuth::default()
        };
        assert!(
            resolve(&missing)
                .unwrap_err()
                .starts_with("cannot read password_file")
        );
    }

    #[test]
    fn credentials_are_refused_twice() {
        let t = Duration::from_secs(1);
        let basic = auth(Some("u"), Some("p"), None);
        let with_user = Url::parse("http://a:b@h/").unwrap();
        let err = WebClient::new(&with_user, &BTreeMap::new(), &basic, t).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let header = BTreeMap::from([("authorization".to_owned(), "Bearer x".to_owned())]);
        let plain = Url::parse("http://h/").unwrap();
        let err = WebClient::new(&plain, &header, &basic, t).unwrap_err();
        assert!(err.contains("Authorization header"), "{err}");
        let client = WebClient::new(&plain, &BTreeMap::new(), &basic, t).unwrap();
        assert_eq!(format!("{client:?}"), "WebClient { auth: \"basic\", .. }");
    }
}
