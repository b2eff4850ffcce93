//! capstan-targets
