//! Helpers shared by the world-model tests: a world on a virtual clock, stepping, and
//! polling the (always ready) trait futures.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use capstan_core::clock::{Clock, VirtualClock};
use capstan_world::{Event, ServiceSpec, TargetGroupSpec, TaskInfo, World, WorldConfig};
use jiff::Timestamp;

/// Resolves a future that is ready at once (every world future is).
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("world futures are ready at once"),
    }
}

/// A world with the given seed and no rate limits, on a fresh virtual clock.
pub fn world(seed: u64) -> (World, VirtualClock) {
    world_with(WorldConfig {
        seed,
        rate_limits: false,
        ..WorldConfig::default()
    })
}

/// A world with `config`.
pub fn world_with(config: WorldConfig) -> (World, VirtualClock) {
    let clock = VirtualClock::at_epoch();
    (World::new(config, clock.clone()), clock)
}

/// A Fargate service without a target group.
pub fn plain(desired: u32) -> ServiceSpec {
    ServiceSpec {
        desired,
        ..ServiceSpec::default()
    }
}

/// A Fargate service behind a target group with the given delay and routing lag.
pub fn behind_lb(desired: u32, delay: u64, lag: u64) -> ServiceSpec {
    ServiceSpec {
        desired,
        target_group: Some(TargetGroupSpec {
            deregistration_delay: Duration::from_secs(delay),
            routing_lag: Duration::from_secs(lag),
            ..TargetGroupSpec::default()
        }),
        ..ServiceSpec::default()
    }
}

/// The default target group ARN.
pub fn tg() -> String {
    TargetGroupSpec::default().arn
}

/// Advances the clock one second at a time for `secs` seconds, collecting events.
pub fn run(world: &World, clock: &VirtualClock, secs: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..secs {
        clock.advance(Duration::from_secs(1));
        events.extend(world.advance());
    }
    events
}

/// Seconds from `t0` to `t`.
pub fn secs_since(t0: Timestamp, t: Timestamp) -> f64 {
    t.duration_since(t0).as_secs_f64()
}

/// The tasks of the default service.
pub fn tasks(world: &World) -> Vec<TaskInfo> {
    world.tasks("default", "app")
}

/// The instant of an event.
pub fn at(e: &Event) -> Timestamp {
    match e {
        Event::TaskCreated { at, .. }
        | Event::TaskRunning { at, .. }
        | Event::TaskSigterm { at, .. }
        | Event::TaskStopped { at, .. }
        | Event::InstanceActive { at, .. }
        | Event::InstanceTerminated { at, .. } => *at,
    }
}

/// The ARN of an event about a task.
pub fn arn(e: &Event) -> Option<&str> {
    match e {
        Event::TaskCreated { arn, .. }
        | Event::TaskRunning { arn, .. }
        | Event::TaskSigterm { arn, .. }
        | Event::TaskStopped { arn, .. } => Some(arn),
        _ => None,
    }
}

/// Now, on `clock`.
pub fn now(clock: &VirtualClock) -> Timestamp {
    clock.now()
}
