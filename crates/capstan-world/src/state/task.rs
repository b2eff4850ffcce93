//! The task lifecycle (AWS-SEMANTICS §4, E11): PROVISIONING → PENDING → ACTIVATING →
//! RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED.
//!
//! Start-up (`ServiceSpec::startup`) is split into PROVISIONING (the first 20 %),
//! PENDING (image pull and container start, up to 80 %) and ACTIVATING (the last
//! 20 %); with a target group the task is registered when ACTIVATING begins and its
//! target turns `healthy` `health_check_time` later.
//!
//! Stopping (§4 E12–E13, §5): a RUNNING task is first deregistered (DEACTIVATING,
//! its target `draining`, see `target.rs`), then gets SIGTERM (STOPPING, SIGKILL at
//! `stop_timeout`, or an earlier exit once idle), then DEPROVISIONING, then STOPPED,
//! when its host resources are released. A task stopped before RUNNING is STOPPED at
//! once.

use capstan_aws_api::{DesiredStatus, TaskStatus};
use capstan_core::clock;
use jiff::Timestamp;

use super::{ACCOUNT, REGION, STOPPED_RETENTION, State, Target, TargetPhase, Task, TimerKind};
use crate::spec::NetworkMode;
use crate::view::Event;

/// The first port of the ephemeral range dynamic host ports come from.
const EPHEMERAL_PORTS_FROM: u16 = 32768;
/// Share of start-up spent in PROVISIONING.
const PROVISIONING_SHARE: f64 = 0.2;
/// Share of start-up spent before ACTIVATING (PROVISIONING + PENDING).
const ACTIVATING_AT_SHARE: f64 = 0.8;

impl State {
    /// Creates a task of service `svc` in `zone` (on `host` for EC2). A `warm` task is
    /// created already RUNNING with a healthy target and no events (a service that was
    /// running before the world began); otherwise it starts in PROVISIONING.
    pub(crate) fn create_task(
        &mut self,
        svc: usize,
        zone: usize,
        host: Option<usize>,
        warm: bool,
    ) -> Option<usize> {
        let (spec, cluster, deployment, has_tg) = {
            let s = self.services.get(svc)?;
            let cluster = self.clusters.get(s.cluster)?.name.clone();
            let dep = s.deployments.first().map_or(0, |d| d.serial);
            (s.spec.clone(), cluster, dep, s.target_group)
        };
        let uid = self.new_uid();
        let id = self.hex(32);
        let ip = self.new_ip();
        let host_port = match (spec.network_mode, host) {
            (NetworkMode::Bridge, Some(h)) => Some(self.free_host_port(h)),
            _ => None,
        };
        let now = self.now;
        let task = Task {
            uid,
            arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{id}").into(),
            id,
            service: svc,
            deployment,
            status: if warm {
                TaskStatus::Running
            } else {
                TaskStatus::Provisioning
            },
            desired: DesiredStatus::Running,
            zone,
            host,
            ip,
            host_port,
            created_at: now,
            started_at: warm.then_some(now),
            stopping_at: None,
            stopped_at: None,
            stopped_reason: None,
            protected_until: None,
            in_flight: 0,
            target: None,
            kill_at: None,
            cpu: spec.task_cpu,
            memory: spec.task_memory,
        };
        let slot = self.insert_task(task);
        if let Some(s) = self.services.get_mut(svc) {
            s.tasks.push(slot);
        }
        self.reserve_on_host(host, slot, spec.task_cpu, spec.task_memory);
        if warm {
            if has_tg.is_some() {
                self.register_target(slot, true);
            }
        } else {
            let arn = self
                .task(slot)
                .map(|t| t.arn.to_string())
                .unwrap_or_default();
            self.emit(Event::TaskCreated {
                arn,
                service: spec.name.clone(),
                at: now,
            });
            self.after(
                spec.startup.mul_f64(PROVISIONING_SHARE),
                TimerKind::Startup {
                    slot,
                    uid,
                    to: TaskStatus::Pending,
                },
            );
        }
        self.changed();
        Some(slot)
    }

    /// The lowest port of the ephemeral range (from 32768) no task on instance `host`
    /// holds: the dynamic host port of a new bridge-mode task there.
    fn free_host_port(&self, host: usize) -> u16 {
        let taken: std::collections::BTreeSet<u16> = self
            .instances
            .get(host)
            .map(|i| {
                i.tasks
                    .iter()
                    .filter_map(|s| self.task(*s)?.host_port)
                    .collect()
            })
            .unwrap_or_default();
        (EPHEMERAL_PORTS_FROM..=u16::MAX)
            .find(|p| !taken.contains(p))
            .unwrap_or(u16::MAX)
    }

    /// Adds a task's reservation to its host.
    fn reserve_on_host(&mut self, host: Option<usize>, slot: usize, cpu: u32, memory: u32) {
        let Some(inst) = host.and_then(|h| self.instances.get_mut(h)) else {
            return;
        };
        inst.tasks.push(slot);
        if let Some(ci) = inst.ci.as_mut() {
            ci.reserved_cpu = ci.reserved_cpu.saturating_add(cpu);
            ci.reserved_memory = ci.reserved_memory.saturating_add(memory);
        }
    }

    /// Removes a task's reservation from its host.
    fn release_on_host(&mut self, host: Option<usize>, slot: usize, cpu: u32, memory: u32) {
        let Some(inst) = host.and_then(|h| self.instances.get_mut(h)) else {
            return;
        };
        inst.tasks.retain(|s| *s != slot);
        if let Some(ci) = inst.ci.as_mut() {
            ci.reserved_cpu = ci.reserved_cpu.saturating_sub(cpu);
            ci.reserved_memory = ci.reserved_memory.saturating_sub(memory);
        }
    }

    /// A start-up phase ends: the task moves on to `to`.
    pub(super) fn on_startup(&mut self, slot: usize, to: TaskStatus) {
        let Some(t) = self.task(slot) else { return };
        let expected = match to {
            TaskStatus::Pending => TaskStatus::Provisioning,
            TaskStatus::Activating => TaskStatus::Pending,
            TaskStatus::Running => TaskStatus::Activating,
            _ => return,
        };
        if !t.live() || t.status != expected {
            return;
        }
        let (uid, created, svc) = (t.uid, t.created_at, t.service);
        let Some((startup, name, has_tg)) = self.services.get(svc).map(|s| {
            (
                s.spec.startup,
                s.spec.name.clone(),
                s.target_group.is_some(),
            )
        }) else {
            return;
        };
        if let Some(t) = self.task_mut(slot) {
            t.status = to;
        }
        match to {
            TaskStatus::Pending => self.at(
                clock::add(created, startup.mul_f64(ACTIVATING_AT_SHARE)),
                TimerKind::Startup {
                    slot,
                    uid,
                    to: TaskStatus::Activating,
                },
            ),
            TaskStatus::Activating => {
                if has_tg {
                    self.register_target(slot, false);
                }
                self.at(
                    clock::add(created, startup),
                    TimerKind::Startup {
                        slot,
                        uid,
                        to: TaskStatus::Running,
                    },
                );
            }
            _ => {
                let now = self.now;
                let arn = match self.task_mut(slot) {
                    Some(t) => {
                        t.started_at = Some(now);
                        t.arn.to_string()
                    }
                    None => return,
                };
                self.emit(Event::TaskRunning {
                    arn,
                    service: name,
                    at: now,
                });
            }
        }
        self.changed();
    }

    /// Asks a task to stop (service scale-in, StopTask, replacement). Returns false if it
    /// was already stopping. Before RUNNING it is STOPPED at once; a RUNNING task is
    /// deregistered first (DEACTIVATING) when it has a target, else gets SIGTERM.
    pub(crate) fn stop_task(&mut self, slot: usize, reason: &str) -> bool {
        let now = self.now;
        let Some(t) = self.task_mut(slot) else {
            return false;
        };
        if !t.live() {
            return false;
        }
        t.desired = DesiredStatus::Stopped;
        t.stopping_at = Some(now);
        t.stopped_reason = Some(reason.to_owned());
        if t.status.is_pending() {
            t.target = None;
            let event = self.stopped_event(slot, reason);
            self.emit(event);
            self.finalize(slot);
            return true;
        }
        t.status = TaskStatus::Deactivating;
        match t.target.map(|g| g.phase) {
            Some(TargetPhase::Initial | TargetPhase::Healthy) => self.begin_drain(slot),
            Some(TargetPhase::Draining { .. }) => self.check_idle_drain(slot),
            None => self.enter_stopping(slot),
        }
        self.changed();
        true
    }

    /// DEACTIVATING is over (or was not needed): SIGTERM, SIGKILL at `stop_timeout`;
    /// an idle task exits at once.
    pub(super) fn enter_stopping(&mut self, slot: usize) {
        let now = self.now;
        let Some(stop_timeout) = self
            .task(slot)
            .and_then(|t| self.services.get(t.service))
            .map(|s| s.spec.stop_timeout)
        else {
            return;
        };
        let kill_at = clock::add(now, stop_timeout);
        let Some(t) = self.task_mut(slot) else { return };
        t.status = TaskStatus::Stopping;
        t.kill_at = Some(kill_at);
        let (uid, idle) = (t.uid, t.in_flight == 0);
        let event = Event::TaskSigterm {
            arn: t.arn.to_string(),
            service: self.service_name_of(slot),
            at: now,
            kill_at,
        };
        self.emit(event);
        if idle {
            self.exit_containers(slot);
        } else {
            self.at(kill_at, TimerKind::Kill { slot, uid });
        }
        self.changed();
    }

    /// SIGKILL time of a STOPPING task.
    pub(super) fn on_kill(&mut self, slot: usize) {
        if self
            .task(slot)
            .is_some_and(|t| t.status == TaskStatus::Stopping)
        {
            self.exit_containers(slot);
        }
    }

    /// The containers are gone (exit or SIGKILL): whatever the task held is lost.
    fn exit_containers(&mut self, slot: usize) {
        let Some(t) = self.task(slot) else { return };
        let reason = t
            .stopped_reason
            .clone()
            .unwrap_or_else(|| "Essential container in task exited".into());
        let (uid, svc) = (t.uid, t.service);
        let event = self.stopped_event(slot, &reason);
        self.emit(event);
        let Some(deprovisioning) = self.services.get(svc).map(|s| s.spec.deprovisioning) else {
            return;
        };
        if let Some(t) = self.task_mut(slot) {
            t.status = TaskStatus::Deprovisioning;
            t.in_flight = 0;
            t.kill_at = None;
        }
        self.after(deprovisioning, TimerKind::Deprovisioned { slot, uid });
        self.changed();
    }

    /// Resources released: STOPPED.
    pub(super) fn on_deprovisioned(&mut self, slot: usize) {
        if self
            .task(slot)
            .is_some_and(|t| t.status == TaskStatus::Deprovisioning)
        {
            self.finalize(slot);
        }
    }

    /// The task is STOPPED: its host resources are released and it leaves its
    /// service's live list; it stays visible to `DescribeTasks` for an hour.
    pub(super) fn finalize(&mut self, slot: usize) {
        let now = self.now;
        let Some(t) = self.task_mut(slot) else { return };
        t.status = TaskStatus::Stopped;
        t.desired = DesiredStatus::Stopped;
        t.stopped_at = Some(now);
        t.target = None;
        t.in_flight = 0;
        t.kill_at = None;
        t.protected_until = None;
        let (uid, svc, host, cpu, memory) = (t.uid, t.service, t.host, t.cpu, t.memory);
        self.release_on_host(host, slot, cpu, memory);
        if let Some(s) = self.services.get_mut(svc) {
            s.tasks.retain(|x| *x != slot);
            s.stopped.push(slot);
        }
        self.after(STOPPED_RETENTION, TimerKind::Forget { slot, uid });
        self.changed();
    }

    /// The host under a task is gone: the task dies at once (TaskStopped unless its
    /// containers had already exited) and is STOPPED.
    pub(crate) fn kill_with_host(&mut self, slot: usize, reason: &str) {
        let now = self.now;
        let Some(t) = self.task_mut(slot) else { return };
        if t.status == TaskStatus::Stopped {
            return;
        }
        if t.live() {
            t.desired = DesiredStatus::Stopped;
            t.stopping_at = Some(now);
        }
        if t.stopped_reason.is_none() {
            t.stopped_reason = Some(reason.to_owned());
        }
        if t.status != TaskStatus::Deprovisioning {
            let event = self.stopped_event(slot, reason);
            self.emit(event);
        }
        self.finalize(slot);
    }

    /// The application reports how much work it holds; idle lets a draining target go
    /// (after the routing lag) and a STOPPING task exit.
    pub(crate) fn set_work(&mut self, slot: usize, in_flight: u32) {
        let Some(t) = self.task_mut(slot) else { return };
        t.in_flight = in_flight;
        if in_flight > 0 {
            return;
        }
        match t.status {
            TaskStatus::Stopping => self.exit_containers(slot),
            _ => self.check_idle_drain(slot),
        }
    }

    /// A `TaskStopped` event for the task in `slot`.
    fn stopped_event(&self, slot: usize, reason: &str) -> Event {
        Event::TaskStopped {
            arn: self
                .task(slot)
                .map(|t| t.arn.to_string())
                .unwrap_or_default(),
            service: self.service_name_of(slot),
            at: self.now,
            reason: reason.to_owned(),
        }
    }

    /// The service name of the task in `slot`.
    pub(crate) fn service_name_of(&self, slot: usize) -> String {
        self.task(slot)
            .and_then(|t| self.services.get(t.service))
            .map(|s| s.spec.name.clone())
            .unwrap_or_default()
    }

    /// Registers the task in its service's target group: `initial`, `healthy` after
    /// `health_check_time` (or at once for a `warm` task). A bridge-mode task is
    /// registered on its host port (an instance target), an awsvpc one on the group's
    /// port (an IP target).
    pub(crate) fn register_target(&mut self, slot: usize, warm: bool) {
        let Some(t) = self.task(slot) else { return };
        let Some((port, hc)) = self
            .services
            .get(t.service)
            .and_then(|s| s.target_group)
            .and_then(|g| self.target_groups.get(g))
            .map(|g| (t.host_port.unwrap_or(g.spec.port), g.spec.health_check_time))
        else {
            return;
        };
        self.register_target_on(slot, port, hc, warm);
    }

    /// Registers the task's target on `port`.
    pub(crate) fn register_target_on(
        &mut self,
        slot: usize,
        port: u16,
        health_check_time: std::time::Duration,
        warm: bool,
    ) {
        let reg = self.new_reg();
        let Some(t) = self.task_mut(slot) else { return };
        let uid = t.uid;
        t.target = Some(Target {
            port,
            reg,
            phase: if warm {
                TargetPhase::Healthy
            } else {
                TargetPhase::Initial
            },
        });
        if !warm {
            self.after(
                health_check_time,
                TimerKind::TargetHealthy { slot, uid, reg },
            );
        }
        self.changed();
    }

    /// Whether the task's target is `healthy` (or, without a target group, the task is
    /// RUNNING): what ECS counts as healthy for `minimumHealthyPercent`.
    pub(crate) fn healthy(&self, slot: usize) -> bool {
        let Some(t) = self.task(slot) else {
            return false;
        };
        let has_tg = self
            .services
            .get(t.service)
            .is_some_and(|s| s.target_group.is_some());
        t.status == TaskStatus::Running
            && (!has_tg || t.target.is_some_and(|g| g.phase == TargetPhase::Healthy))
    }

    /// Whether the load balancer sends the task new work at `now`.
    pub(crate) fn routable(&self, task: &Task, now: Timestamp) -> bool {
        let has_tg = self
            .services
            .get(task.service)
            .is_some_and(|s| s.target_group.is_some());
        if !has_tg {
            return task.status == TaskStatus::Running && task.live();
        }
        match task.target.map(|g| g.phase) {
            Some(TargetPhase::Healthy) => true,
            Some(TargetPhase::Draining { routing_until, .. }) => now < routing_until,
            _ => false,
        }
    }
}
