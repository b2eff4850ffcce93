//! capstan's simulator (its own issue builds it out).
//!
//! It will own the world model of ECS / ELB / Auto Scaling on the virtual clock, load
//! and workload models, traces, the AWS-baseline emulation, reports and plots. It drives
//! the very same control loop as `capstan run` (`capstan_control::ServiceLoop::tick`)
//! against the world model, so no policy or planner code is ever copied here.
//!
//! Today the crate only fixes its place in the workspace: it depends on the pure core
//! and nothing else, and may never depend on the AWS SDK.
