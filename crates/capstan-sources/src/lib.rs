//! capstan-sources
