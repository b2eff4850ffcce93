//! capstan's scaling targets behind one [`Target`] trait.
//!
//! A target reports the service's capacity and tasks, raises the desired count, and
//! lowers it by stopping exactly the victims the core chose.

pub mod spec;

pub use spec::{ProcessSpec, TargetSpec};
