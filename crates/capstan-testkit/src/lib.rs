//! capstan-testkit
