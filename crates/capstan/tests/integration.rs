//! capstan's integration tests, one module per file beside this one, linked into one
//! test binary: one link of the whole dependency tree (the AWS SDK, sqlx, the servers'
//! clients) instead of one per file, which keeps the build small on disk and quicker.
//! Run one file's tests with `cargo nextest run -p capstan -E 'test(/^web_e2e::/)'` or
//! `cargo test -p capstan --test integration web_e2e::`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "support/browser.rs"]
mod browser;
#[path = "support/in_process.rs"]
mod in_process;
mod support;

mod alerting_daemon;
mod alerting_stack;
mod api;
mod api_views;
mod config_ec2_cluster;
mod config_fixtures;
mod config_store;
mod daemon_world;
mod demo_cli;
mod deploy_files;
mod ec2_cluster_moto;
mod ec2_cluster_policy;
mod ecs_crash;
mod ecs_sdk;
mod examples_validate;
mod exporting_log;
mod grafana_dashboard;
mod iam_policy;
mod prometheus_round_trip;
mod recipe_ec2_cluster;
mod recipe_redis_queue_alerts;
mod recipe_session_proxy;
mod recipe_sqs_backlog;
mod recipe_step_and_protection;
mod reload;
mod reload_ec2_cluster;
mod restart;
mod rotate_moto;
mod run_once;
mod run_process;
mod server;
mod ship_cloudwatch;
mod simulate_cli;
mod simulate_golden;
mod web_cluster;
mod web_e2e;
mod webhooks;
mod work_durable;
mod work_registry;
mod workflows_daemon;
