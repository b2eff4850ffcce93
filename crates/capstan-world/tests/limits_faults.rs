//! API rate limits (AWS-SEMANTICS §8) and injected faults.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use capstan_aws_api::{AutoScaling, AwsErrorKind, Ecs, Elb};
use capstan_world::{FaultRule, WorldConfig};
use common::*;

fn limited() -> (capstan_world::World, capstan_core::clock::VirtualClock) {
    let (w, c) = world_with(WorldConfig {
        rate_limits: true,
        ..WorldConfig::default()
    });
    w.add_service(behind_lb(2, 300, 5)).unwrap();
    (w, c)
}

#[test]
fn update_service_is_throttled_after_its_burst_and_refills_at_five_per_second() {
    let (w, c) = limited();
    for i in 0..50 {
        ready(w.update_desired_count("default", "app", 2))
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    let e = ready(w.update_desired_count("default", "app", 2)).unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::Throttling);
    assert_eq!(e.operation, "UpdateService");
    assert!(e.is_retryable());
    // Other categories have their own buckets.
    ready(w.describe_service("default", "app")).unwrap();
    c.advance(Duration::from_secs(1));
    for _ in 0..5 {
        ready(w.update_desired_count("default", "app", 2)).unwrap();
    }
    assert!(ready(w.update_desired_count("default", "app", 2)).is_err());
    let stats = w.api_stats();
    assert_eq!(stats.calls("UpdateService"), 57);
    assert_eq!(stats.throttled("UpdateService"), 2);
    assert_eq!(stats.calls("DescribeServices"), 1);
    assert_eq!(stats.throttled("DescribeServices"), 0);
    assert_eq!(stats.total_calls(), 58);
}

#[test]
fn read_and_protection_buckets_have_their_documented_bursts() {
    let (w, c) = limited();
    let burst = |f: &dyn Fn() -> bool| (0..1000).take_while(|_| f()).count();
    let describe = || ready(w.describe_service("default", "app")).is_ok();
    assert_eq!(burst(&describe), 100);
    let list =
        || ready(w.list_tasks("default", "app", capstan_aws_api::DesiredStatus::Running)).is_ok();
    assert_eq!(burst(&list), 100);
    let stop = || {
        ready(w.stop_task("default", "missing", "x"))
            .is_err_and(|e| e.kind == AwsErrorKind::NotFound)
    };
    assert_eq!(burst(&stop), 100, "cluster modify: 100");
    let protect = || ready(w.get_task_protection("default", &[])).is_ok();
    assert_eq!(burst(&protect), 200);
    c.advance(Duration::from_secs(1));
    assert_eq!(burst(&protect), 80);
    assert_eq!(burst(&describe), 20);
    assert_eq!(burst(&stop), 40);
    let tg_read = || ready(w.describe_target_health(&tg())).is_ok();
    assert_eq!(burst(&tg_read), 100, "⚠ ELB read parameter");
}

#[test]
fn without_rate_limits_nothing_is_throttled() {
    let (w, _c) = world(1);
    w.add_service(plain(1)).unwrap();
    for _ in 0..500 {
        ready(w.update_desired_count("default", "app", 1)).unwrap();
    }
    assert_eq!(w.api_stats().total_throttled(), 0);
}

#[test]
fn fault_with_times_fails_that_many_calls_of_that_operation() {
    let (w, _c) = world(1);
    w.add_service(plain(1)).unwrap();
    w.inject_fault(FaultRule::times("UpdateService", AwsErrorKind::Server, 2));
    for _ in 0..2 {
        let e = ready(w.update_desired_count("default", "app", 3)).unwrap_err();
        assert_eq!(e.kind, AwsErrorKind::Server);
        assert_eq!(e.operation, "UpdateService");
    }
    assert_eq!(
        w.service_counts("default", "app").unwrap().desired,
        1,
        "not applied"
    );
    ready(w.describe_service("default", "app")).unwrap();
    ready(w.update_desired_count("default", "app", 3)).unwrap();
    assert_eq!(w.service_counts("default", "app").unwrap().desired, 3);
    assert_eq!(w.api_stats().faulted("UpdateService"), 2);
}

#[test]
fn fault_for_every_operation_until_cleared() {
    let (w, _c) = world(1);
    w.add_service(plain(1)).unwrap();
    w.inject_fault(FaultRule {
        operation: None,
        kind: AwsErrorKind::Throttling,
        times: None,
        probability: 1.0,
    });
    for _ in 0..5 {
        assert!(ready(w.describe_service("default", "app")).is_err());
        assert!(ready(w.describe_group("asg")).is_err());
        assert!(ready(w.deregistration_delay(&tg())).is_err());
    }
    assert_eq!(w.api_stats().throttled("DescribeServices"), 5);
    w.clear_faults();
    ready(w.describe_service("default", "app")).unwrap();
}

#[test]
fn probabilistic_faults_are_seeded() {
    let failures = |seed| {
        let (w, _c) = world(seed);
        w.add_service(plain(1)).unwrap();
        w.inject_fault(FaultRule {
            probability: 0.3,
            ..FaultRule::always("DescribeServices", AwsErrorKind::Transport)
        });
        (0..1000)
            .filter(|_| ready(w.describe_service("default", "app")).is_err())
            .count()
    };
    let n = failures(5);
    assert!((230..370).contains(&n), "{n} of 1000 at p = 0.3");
    assert_eq!(n, failures(5), "same seed, same faults");
    // Odd probabilities never panic: NaN is never, above 1 is always.
    let (w, _c) = world(1);
    w.add_service(plain(1)).unwrap();
    w.inject_fault(FaultRule {
        probability: f64::NAN,
        ..FaultRule::always("DescribeServices", AwsErrorKind::Server)
    });
    assert!(ready(w.describe_service("default", "app")).is_ok());
    w.inject_fault(FaultRule {
        probability: 7.0,
        ..FaultRule::always("DescribeServices", AwsErrorKind::Server)
    });
    assert!(ready(w.describe_service("default", "app")).is_err());
}
