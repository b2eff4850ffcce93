//! capstan-store
