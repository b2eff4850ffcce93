//! capstan-control
