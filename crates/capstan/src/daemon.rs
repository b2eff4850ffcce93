//! The `run` command: pollers, one control loop per service, graceful shutdown.
