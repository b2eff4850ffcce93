//! capstan-sim
