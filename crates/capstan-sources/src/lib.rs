//! capstan's metric sources.
//!
//! One module per source kind behind the [`Source`] trait, and the poller that reads
//! each source on its interval, validates the value at the boundary (NaN, infinite, or
//! negative where a count is expected is a failed read) and feeds the shared metric
//! windows.

pub mod spec;

pub use spec::{CommandSpec, HttpSpec, SourceKind, SourceSpec, ValueKind};
