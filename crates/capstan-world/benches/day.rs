//! One simulated day of a 100-task service behind a load balancer, stepped every
//! second as the simulator does: advance, read the tasks when they changed, report
//! each task's work, and change the desired count every ten minutes.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use capstan_aws_api::Ecs;
use capstan_core::clock::VirtualClock;
use capstan_world::{ServiceSpec, TargetGroupSpec, World, WorldConfig};

fn main() {
    divan::main();
}

fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("world futures are ready"),
    }
}

#[divan::bench(sample_count = 3)]
fn one_day_100_tasks() -> usize {
    let clock = VirtualClock::at_epoch();
    let world = World::new(
        WorldConfig {
            rate_limits: false,
            ..WorldConfig::default()
        },
        clock.clone(),
    );
    world
        .add_service(ServiceSpec {
            desired: 100,
            target_group: Some(TargetGroupSpec::default()),
            ..ServiceSpec::default()
        })
        .unwrap();
    let mut events = 0;
    let mut seen = u64::MAX;
    let mut tasks = Vec::new();
    for s in 0..86_400u64 {
        clock.advance(Duration::from_secs(1));
        events += world.advance().len();
        if world.generation() != seen {
            tasks = world.tasks("default", "app");
            seen = world.generation();
        }
        for (i, t) in tasks.iter().enumerate() {
            world.set_work(&t.arn, ((s + i as u64) % 3) as u32);
        }
        if s % 600 == 0 {
            let desired = 80 + (s / 600 % 40) as u32;
            ready(world.update_desired_count("default", "app", desired)).unwrap();
        }
    }
    events
}
