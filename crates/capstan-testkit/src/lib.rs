//! capstan-testkit: support for capstan's tests (dev only).
//!
//! Module map:
//! - [`http`]: [`MetricServer`](http::MetricServer), a real HTTP server serving a
//!   metric as JSON that the test changes at run time.

pub mod http;
