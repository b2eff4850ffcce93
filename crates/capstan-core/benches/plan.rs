//! Benchmark: one evaluate-and-plan of a service with three policies over a 15-minute
//! window of 1-second samples. Filled in with the planner.
fn main() {}
