//! EC2 Auto Scaling groups under an ECS cluster (AWS-SEMANTICS §6).
//!
//! Launch: `Pending` for `launch_time`, then `Pending:Wait` while launch hooks hold
//! it, then `InService`, when its container instance registers ACTIVE
//! (`Event::InstanceActive`). An ABANDONed launch terminates the instance (the group
//! launches another).
//!
//! Termination (group scale-in, `TerminateInstanceInAutoScalingGroup`):
//! `Terminating:Wait` while termination hooks hold it (in parallel) and, with managed
//! draining, while its container instance is DRAINING and still has tasks (at most
//! 48 h); then `Terminating`: the EC2 instance shuts down, its container instance is
//! deregistered and whatever tasks are still on it die; `termination_time` later it is
//! `Terminated` (`Event::InstanceTerminated`). ABANDON on termination ends every
//! custom hook's wait (managed draining still holds it: that is ECS's hook).
//!
//! Hooks: the wait ends with `CompleteLifecycleAction` or at the heartbeat timeout
//! with the hook's default result; `RecordLifecycleActionHeartbeat` restarts the
//! timeout; a wait never outlasts min(48 h, 100 × heartbeat) from its start.
//!
//! Scale-in choice: the zone with most instances, then the oldest launch, never a
//! scale-in-protected instance (§6, S3); when every candidate is protected, desired
//! capacity stays lowered and nothing terminates until protection is removed.

use capstan_aws_api::{ContainerInstanceStatus, InstanceLifecycleState, LifecycleActionResult};
use capstan_core::clock;

use super::{
    ACCOUNT, ContainerInst, HOOK_WAIT_MAX, HookWait, Instance, MANAGED_DRAIN_MAX, REGION, State,
    TimerKind,
};
use crate::spec::HookTransition;
use crate::view::Event;

/// Lifecycle states that count toward a group's capacity.
fn counted(state: InstanceLifecycleState) -> bool {
    matches!(
        state,
        InstanceLifecycleState::Pending
            | InstanceLifecycleState::PendingWait
            | InstanceLifecycleState::InService
    )
}

impl State {
    /// Launches an instance in group `g`, in the zone with fewest of its instances. A
    /// `warm` one is InService with an ACTIVE container instance at once, without events.
    pub(crate) fn launch_instance(&mut self, g: usize, warm: bool) {
        let Some(group) = self.groups.get(g) else {
            return;
        };
        let mut per_zone = vec![0usize; self.config.zones.len()];
        for i in group
            .instances
            .iter()
            .filter_map(|i| self.instances.get(*i))
        {
            if counted(i.lifecycle)
                && let Some(n) = per_zone.get_mut(i.zone)
            {
                *n += 1;
            }
        }
        let zone = per_zone
            .iter()
            .enumerate()
            .min_by_key(|(i, n)| (**n, *i))
            .map_or(0, |(i, _)| i);
        let (cluster, launch_time) = (group.cluster, group.spec.launch_time);
        let id = format!("i-{}", self.hex(17));
        let idx = self.instances.len();
        self.instances.push(Instance {
            id: id.clone(),
            group: g,
            cluster,
            zone,
            lifecycle: if warm {
                InstanceLifecycleState::InService
            } else {
                InstanceLifecycleState::Pending
            },
            launched_at: self.now,
            protected: false,
            ci: None,
            tasks: Vec::new(),
            waits: Vec::new(),
            drain_until: None,
        });
        self.instance_ids.insert(id, idx);
        if let Some(group) = self.groups.get_mut(g) {
            group.instances.push(idx);
        }
        if warm {
            self.register_container_instance(idx, false);
        } else {
            self.after(launch_time, TimerKind::InstanceLaunched { inst: idx });
        }
        self.changed();
    }

    /// The instance's ECS agent registers an ACTIVE container instance.
    fn register_container_instance(&mut self, inst: usize, emit: bool) {
        let id = self.hex(32);
        let now = self.now;
        let Some(i) = self.instances.get(inst) else {
            return;
        };
        let (cluster, group) = (i.cluster, i.group);
        let Some(spec) = self.groups.get(group).map(|g| &g.spec) else {
            return;
        };
        let (cpu, memory) = (spec.instance_cpu, spec.instance_memory);
        let Some(cluster_name) = self.clusters.get(cluster).map(|c| c.name.clone()) else {
            return;
        };
        let ci = ContainerInst {
            arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{cluster_name}/{id}"),
            status: ContainerInstanceStatus::Active,
            registered_at: now,
            registered_cpu: cpu,
            registered_memory: memory,
            reserved_cpu: 0,
            reserved_memory: 0,
        };
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        i.ci = Some(ci);
        let instance_id = i.id.clone();
        self.container_ids.insert(id, inst);
        if let Some(c) = self.clusters.get_mut(cluster) {
            c.hosts.push(inst);
        }
        if emit {
            self.emit(Event::InstanceActive {
                instance_id,
                at: now,
            });
        }
        self.changed();
    }

    /// A Pending instance finished launching: launch hooks hold it, or it is InService.
    pub(super) fn on_instance_launched(&mut self, inst: usize) {
        if self
            .instances
            .get(inst)
            .is_none_or(|i| i.lifecycle != InstanceLifecycleState::Pending)
        {
            return;
        }
        let waits = self.hook_waits(inst, HookTransition::Launching);
        if waits.is_empty() {
            self.go_in_service(inst);
            return;
        }
        if let Some(i) = self.instances.get_mut(inst) {
            i.lifecycle = InstanceLifecycleState::PendingWait;
            i.waits = waits;
        }
        self.changed();
    }

    /// Fresh waits (with timers) on every hook of `transition` of the instance's group.
    fn hook_waits(&mut self, inst: usize, transition: HookTransition) -> Vec<HookWait> {
        let now = self.now;
        let Some(hooks) = self
            .instances
            .get(inst)
            .and_then(|i| self.groups.get(i.group))
            .map(|g| g.spec.hooks.clone())
        else {
            return Vec::new();
        };
        let mut waits = Vec::new();
        for (hook, h) in hooks.iter().enumerate() {
            if h.transition != transition {
                continue;
            }
            let limit = clock::add(now, HOOK_WAIT_MAX.min(h.heartbeat_timeout * 100));
            let deadline = clock::add(now, h.heartbeat_timeout).min(limit);
            waits.push(HookWait {
                hook,
                deadline,
                limit,
            });
            self.at(
                deadline,
                TimerKind::HookTimeout {
                    inst,
                    hook,
                    deadline,
                },
            );
        }
        waits
    }

    /// The instance is InService and its container instance ACTIVE.
    fn go_in_service(&mut self, inst: usize) {
        if let Some(i) = self.instances.get_mut(inst) {
            i.lifecycle = InstanceLifecycleState::InService;
            i.waits.clear();
        }
        self.register_container_instance(inst, true);
    }

    /// A hook's heartbeat timeout passed: its default result applies.
    pub(super) fn on_hook_timeout(&mut self, inst: usize, hook: usize, deadline: jiff::Timestamp) {
        let Some(i) = self.instances.get(inst) else {
            return;
        };
        if !i
            .waits
            .iter()
            .any(|w| w.hook == hook && w.deadline == deadline)
        {
            return;
        }
        let default_continue = self
            .groups
            .get(i.group)
            .and_then(|g| g.spec.hooks.get(hook))
            .is_none_or(|h| h.default_continue);
        let result = if default_continue {
            LifecycleActionResult::Continue
        } else {
            LifecycleActionResult::Abandon
        };
        self.finish_hook(inst, hook, result);
    }

    /// A hook's wait ends with `result`.
    pub(crate) fn finish_hook(&mut self, inst: usize, hook: usize, result: LifecycleActionResult) {
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        i.waits.retain(|w| w.hook != hook);
        let abandon = result == LifecycleActionResult::Abandon;
        if abandon {
            i.waits.clear();
        }
        let (state, done) = (i.lifecycle, i.waits.is_empty());
        match state {
            InstanceLifecycleState::PendingWait if abandon => self.begin_termination(inst, false),
            InstanceLifecycleState::PendingWait if done => self.go_in_service(inst),
            _ => {}
        }
        self.changed();
    }

    /// `RecordLifecycleActionHeartbeat`: the wait on `hook` restarts its timeout
    /// (within the wait's overall limit). False if the instance does not wait on it.
    pub(crate) fn heartbeat(&mut self, inst: usize, hook: usize) -> bool {
        let now = self.now;
        let Some(timeout) = self
            .instances
            .get(inst)
            .and_then(|i| self.groups.get(i.group))
            .and_then(|g| g.spec.hooks.get(hook))
            .map(|h| h.heartbeat_timeout)
        else {
            return false;
        };
        let Some(w) = self
            .instances
            .get_mut(inst)
            .and_then(|i| i.waits.iter_mut().find(|w| w.hook == hook))
        else {
            return false;
        };
        w.deadline = clock::add(now, timeout).min(w.limit);
        let deadline = w.deadline;
        self.at(
            deadline,
            TimerKind::HookTimeout {
                inst,
                hook,
                deadline,
            },
        );
        true
    }

    /// Starts terminating an instance: termination hooks (if `hooks`) and managed
    /// draining hold it in `Terminating:Wait`, else it goes `Terminating` at once.
    pub(crate) fn begin_termination(&mut self, inst: usize, hooks: bool) {
        let now = self.now;
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        if !counted(i.lifecycle) {
            return;
        }
        i.waits.clear();
        let managed = self
            .groups
            .get(i.group)
            .is_some_and(|g| g.spec.managed_draining)
            && i.ci.is_some();
        let waits = if hooks {
            self.hook_waits(inst, HookTransition::Terminating)
        } else {
            Vec::new()
        };
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        if managed {
            if let Some(ci) = i.ci.as_mut() {
                ci.status = ContainerInstanceStatus::Draining;
            }
            let until = clock::add(now, MANAGED_DRAIN_MAX);
            i.drain_until = Some(until);
            self.at(until, TimerKind::DrainLimit { inst });
        }
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        if managed || !waits.is_empty() {
            i.lifecycle = InstanceLifecycleState::TerminatingWait;
            i.waits = waits;
            self.changed();
        } else {
            self.start_terminating(inst);
        }
    }

    /// Lets go of `Terminating:Wait` instances whose hooks are done and whose managed
    /// draining is over (no tasks left, or 48 h passed).
    pub(super) fn check_terminating_waits(&mut self) {
        let now = self.now;
        let ready: Vec<usize> = self
            .groups
            .iter()
            .flat_map(|g| g.instances.iter().copied())
            .filter(|idx| {
                self.instances.get(*idx).is_some_and(|i| {
                    i.lifecycle == InstanceLifecycleState::TerminatingWait
                        && i.waits.is_empty()
                        && (i.tasks.is_empty() || i.drain_until.is_none_or(|u| now >= u))
                })
            })
            .collect();
        for inst in ready {
            self.start_terminating(inst);
        }
    }

    /// A timer that may end a `Terminating:Wait`.
    pub(super) fn changed_if_waiting(&mut self, inst: usize) {
        if self
            .instances
            .get(inst)
            .is_some_and(|i| i.lifecycle == InstanceLifecycleState::TerminatingWait)
        {
            self.changed();
        }
    }

    /// The instance shuts down: its container instance is deregistered and its tasks
    /// die; it is gone after `termination_time`.
    fn start_terminating(&mut self, inst: usize) {
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        i.lifecycle = InstanceLifecycleState::Terminating;
        i.waits.clear();
        i.drain_until = None;
        if let Some(ci) = i.ci.as_mut() {
            ci.status = ContainerInstanceStatus::Inactive;
        }
        let (cluster, group, tasks) = (i.cluster, i.group, i.tasks.clone());
        let reason = format!("Host EC2 (instance {}) terminated.", i.id);
        for slot in tasks {
            self.kill_with_host(slot, &reason);
        }
        if let Some(c) = self.clusters.get_mut(cluster) {
            c.hosts.retain(|h| *h != inst);
        }
        let termination_time = self
            .groups
            .get(group)
            .map(|g| g.spec.termination_time)
            .unwrap_or_default();
        self.after(termination_time, TimerKind::InstanceGone { inst });
        self.changed();
    }

    /// A Terminating instance is gone.
    pub(super) fn on_instance_gone(&mut self, inst: usize) {
        let now = self.now;
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        if i.lifecycle != InstanceLifecycleState::Terminating {
            return;
        }
        i.lifecycle = InstanceLifecycleState::Terminated;
        let (group, instance_id) = (i.group, i.id.clone());
        if let Some(g) = self.groups.get_mut(group) {
            g.instances.retain(|x| *x != inst);
        }
        self.emit(Event::InstanceTerminated {
            instance_id,
            at: now,
        });
        self.changed();
    }

    /// Brings group `g` to its desired capacity: launches, or terminates its choice of
    /// unprotected instances.
    pub(super) fn reconcile_group(&mut self, g: usize) {
        let Some(group) = self.groups.get(g) else {
            return;
        };
        let desired = group.desired as usize;
        let live: Vec<usize> = group
            .instances
            .iter()
            .copied()
            .filter(|i| self.instances.get(*i).is_some_and(|i| counted(i.lifecycle)))
            .collect();
        if live.len() < desired {
            for _ in live.len()..desired {
                self.launch_instance(g, false);
            }
        } else if live.len() > desired {
            for victim in self.pick_instances(&live, live.len() - desired) {
                self.begin_termination(victim, true);
            }
        }
    }

    /// The group's scale-in choice of `k` among `live`: zone with most instances, then
    /// oldest launch, never protected ones.
    fn pick_instances(&self, live: &[usize], k: usize) -> Vec<usize> {
        let mut per_zone = vec![0usize; self.config.zones.len()];
        for i in live.iter().filter_map(|i| self.instances.get(*i)) {
            if let Some(n) = per_zone.get_mut(i.zone) {
                *n += 1;
            }
        }
        let mut pool: Vec<usize> = live
            .iter()
            .copied()
            .filter(|i| self.instances.get(*i).is_some_and(|i| !i.protected))
            .collect();
        let mut out = Vec::new();
        while out.len() < k {
            let best = pool
                .iter()
                .copied()
                .filter_map(|idx| self.instances.get(idx).map(|i| (idx, i)))
                .min_by_key(|(idx, i)| {
                    let zone_n = per_zone.get(i.zone).copied().unwrap_or(0);
                    (std::cmp::Reverse(zone_n), i.launched_at, *idx)
                });
            let Some((idx, i)) = best else { break };
            if let Some(n) = per_zone.get_mut(i.zone) {
                *n = n.saturating_sub(1);
            }
            pool.retain(|x| *x != idx);
            out.push(idx);
        }
        out
    }
}
