//! Target group registrations (AWS-SEMANTICS §5): `initial` → `healthy`; on
//! deregistration `draining` until the deregistration delay ends, or earlier once the
//! routing lag has passed and the task is idle; then `unused` (the registration is
//! gone). During the routing lag the load balancer still sends new work (the
//! propagation window of §4–5).

use capstan_aws_api::TaskStatus;
use capstan_core::clock;

use super::{State, TargetPhase, TimerKind};

impl State {
    /// Health checks pass: `initial` → `healthy`.
    pub(super) fn on_target_healthy(&mut self, slot: usize, reg: u64) {
        let Some(t) = self.task_mut(slot) else { return };
        let Some(target) = t.target.as_mut() else {
            return;
        };
        if target.reg == reg && target.phase == TargetPhase::Initial {
            target.phase = TargetPhase::Healthy;
            self.changed();
        }
    }

    /// Starts draining the task's target (no-op unless `initial` or `healthy`).
    pub(crate) fn begin_drain(&mut self, slot: usize) {
        let now = self.now;
        let Some(t) = self.task(slot) else { return };
        let Some(spec) = self
            .services
            .get(t.service)
            .and_then(|s| s.target_group)
            .and_then(|g| self.target_groups.get(g))
            .map(|g| g.spec.clone())
        else {
            return;
        };
        let routing_until = clock::add(now, spec.routing_lag);
        let drain_until = clock::add(now, spec.deregistration_delay);
        let Some(t) = self.task_mut(slot) else { return };
        let uid = t.uid;
        let Some(target) = t.target.as_mut() else {
            return;
        };
        if matches!(target.phase, TargetPhase::Draining { .. }) {
            return;
        }
        target.phase = TargetPhase::Draining {
            routing_until,
            drain_until,
        };
        let reg = target.reg;
        self.at(routing_until, TimerKind::RoutingLagEnd { slot, uid, reg });
        self.at(drain_until, TimerKind::DrainEnd { slot, uid, reg });
        self.changed();
    }

    /// The routing lag of a draining target ends: unused now if the task is idle.
    pub(super) fn on_routing_lag_end(&mut self, slot: usize, reg: u64) {
        if self
            .task(slot)
            .and_then(|t| t.target)
            .is_some_and(|g| g.reg == reg)
        {
            self.changed();
            self.check_idle_drain(slot);
        }
    }

    /// The deregistration delay of a draining target ends: unused.
    pub(super) fn on_drain_end(&mut self, slot: usize, reg: u64) {
        let draining = self
            .task(slot)
            .and_then(|t| t.target)
            .is_some_and(|g| g.reg == reg && matches!(g.phase, TargetPhase::Draining { .. }));
        if draining {
            self.target_drained(slot);
        }
    }

    /// A draining target whose routing lag is over and whose task is idle is unused.
    pub(crate) fn check_idle_drain(&mut self, slot: usize) {
        let now = self.now;
        let Some(t) = self.task(slot) else { return };
        let done = t.in_flight == 0
            && t.target.is_some_and(|g| {
                matches!(g.phase, TargetPhase::Draining { routing_until, .. } if now >= routing_until)
            });
        if done {
            self.target_drained(slot);
        }
    }

    /// Draining is over: the registration is gone (`unused`); a DEACTIVATING task moves
    /// on to STOPPING.
    fn target_drained(&mut self, slot: usize) {
        let Some(t) = self.task_mut(slot) else { return };
        t.target = None;
        let deactivating = t.status == TaskStatus::Deactivating;
        self.changed();
        if deactivating {
            self.enter_stopping(slot);
        }
    }
}
