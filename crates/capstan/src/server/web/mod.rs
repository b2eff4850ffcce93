//! The web page (`GET /`): one HTML page with its script and style sheet, embedded in
//! the binary (no build step, no framework). The page itself is served without a token;
//! every piece of data it shows comes from the JSON API, which asks for the token when
//! one is configured (the page shows a token form on a `401`). See `docs/web.md`.
//!
//! Routes: `GET /` (`index.html`), `GET /app.js`, `GET /app.css`; each answered with
//! its content type, `Cache-Control: no-cache` (a new capstan's page is picked up at
//! once) and a content security policy that allows only this origin's own script,
//! style and API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
pub const APP_JS: &str = include_str!("app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("app.css");

/// The content security policy of every asset: this origin's script, style and API
/// only, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The page's routes (open: no token needed for the assets themselves).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}
