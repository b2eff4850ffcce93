//! What the simulator reads directly (no API limits): tasks, service counts, the
//! cluster's hosts.

use capstan_aws_api::{AutoScalingInstance, ContainerInstanceStatus, TaskStatus};

use super::{State, Task};
use crate::view::{ClusterState, GroupState, InstanceState, ServiceCounts, TaskHandle, TaskInfo};

impl State {
    /// A task as the simulator sees it (`slot`: where it is kept).
    fn task_info(&self, slot: usize, t: &Task) -> TaskInfo {
        let mut info = TaskInfo {
            arn: String::new(),
            handle: TaskHandle::default(),
            uid: 0, // no task has uid 0: every field is filled below
            cluster: String::new(),
            service: String::new(),
            status: t.status,
            desired_status: t.desired,
            zone: String::new(),
            host: None,
            ip: String::new(),
            created_at: t.created_at,
            started_at: t.started_at,
            protected_until: None,
            routable: false,
            accepting: false,
            terminating: false,
            cpu: t.cpu,
            memory: t.memory,
        };
        self.fill_task_info(slot, t, &mut info);
        info
    }

    /// Overwrites `info` with task `t` (kept in `slot`) as the simulator sees it (the
    /// one place that says what each field shows). What never changes in a task's life
    /// (ARN, names, zone, IP, size) is written only if `info` showed another task, and
    /// then into the strings' existing allocations.
    fn fill_task_info(&self, slot: usize, t: &Task, info: &mut TaskInfo) {
        if info.uid != t.uid {
            let svc = self.services.get(t.service);
            let assign = |to: &mut String, from: Option<&str>| {
                to.clear();
                to.push_str(from.unwrap_or_default());
            };
            assign(&mut info.arn, Some(&t.arn));
            info.uid = t.uid;
            info.handle = TaskHandle {
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
                uid: t.uid,
            };
            assign(
                &mut info.cluster,
                svc.and_then(|s| self.clusters.get(s.cluster))
                    .map(|c| c.name.as_str()),
            );
            assign(&mut info.service, svc.map(|s| s.spec.name.as_str()));
            assign(&mut info.zone, Some(self.zone_name(t.zone)));
            assign(&mut info.ip, Some(&t.ip));
            info.created_at = t.created_at;
            info.cpu = t.cpu;
            info.memory = t.memory;
        }
        info.status = t.status;
        info.desired_status = t.desired;
        match t
            .host
            .and_then(|h| self.instances.get(h))
            .and_then(|i| i.ci.as_ref())
        {
            Some(ci) if info.host.as_deref() != Some(ci.arn.as_str()) => {
                let host = info.host.get_or_insert_default();
                host.clear();
                host.push_str(&ci.arn);
            }
            Some(_) => {}
            None => info.host = None,
        }
        info.started_at = t.started_at;
        info.protected_until = t.protected_until.filter(|u| *u > self.now);
        info.routable = self.routable(t, self.now);
        info.accepting = matches!(t.status, TaskStatus::Running | TaskStatus::Deactivating);
        info.terminating = t.status == TaskStatus::Stopping;
    }

    /// Every task of the service not yet STOPPED, in creation order.
    pub(crate) fn task_infos(&self, cluster: &str, service: &str) -> Vec<TaskInfo> {
        let mut out = Vec::new();
        self.task_infos_into(cluster, service, &mut out);
        out
    }

    /// [`task_infos`](Self::task_infos) written over `out`: its entries are
    /// overwritten in place (no allocation once their strings are long enough), extra
    /// ones dropped, missing ones added.
    pub(crate) fn task_infos_into(&self, cluster: &str, service: &str, out: &mut Vec<TaskInfo>) {
        let Some(s) = self
            .find_cluster(cluster)
            .and_then(|c| self.find_service(c, service))
            .and_then(|si| self.services.get(si))
        else {
            out.clear();
            return;
        };
        out.reserve(s.tasks.len().saturating_sub(out.len()));
        let mut n = 0;
        for (slot, t) in s
            .tasks
            .iter()
            .filter_map(|&slot| Some((slot, self.task(slot)?)))
        {
            match out.get_mut(n) {
                Some(info) => self.fill_task_info(slot, t, info),
                None => out.push(self.task_info(slot, t)),
            }
            n += 1;
        }
        out.truncate(n);
    }

    /// The service's counts (computed again only when the generation has moved, as
    /// a caller reads them several times a step).
    pub(crate) fn counts(&mut self, cluster: &str, service: &str) -> Option<ServiceCounts> {
        let si = self
            .find_cluster(cluster)
            .and_then(|c| self.find_service(c, service))?;
        if let Some((generation, cached, c)) = self.counts_cache
            && generation == self.generation
            && cached == si
        {
            return Some(c);
        }
        let c = self.count(si)?;
        self.counts_cache = Some((self.generation, si, c));
        Some(c)
    }

    /// Counts the tasks of service `si` by status.
    fn count(&self, si: usize) -> Option<ServiceCounts> {
        let s = self.services.get(si)?;
        let mut c = ServiceCounts {
            desired: s.desired,
            running: 0,
            pending: 0,
            stopping: 0,
            unplaced: s.unplaced,
        };
        for t in s.tasks.iter().filter_map(|slot| self.task(*slot)) {
            match t.status {
                st if st.is_pending() => c.pending += 1,
                TaskStatus::Running => c.running += 1,
                _ => c.stopping += 1,
            }
        }
        Some(c)
    }

    /// The cluster's hosts, reservation and groups.
    pub(crate) fn cluster_view(&self, cluster: &str) -> Option<ClusterState> {
        let ci = self.find_cluster(cluster)?;
        let c = self.clusters.get(ci)?;
        let mut instances = Vec::new();
        let (mut reg_cpu, mut reg_mem, mut res_cpu, mut res_mem) = (0u64, 0u64, 0u64, 0u64);
        for inst in c.hosts.iter().filter_map(|h| self.instances.get(*h)) {
            let Some(k) = inst.ci.as_ref() else { continue };
            if k.status == ContainerInstanceStatus::Active {
                reg_cpu += u64::from(k.registered_cpu);
                reg_mem += u64::from(k.registered_memory);
                res_cpu += u64::from(k.reserved_cpu);
                res_mem += u64::from(k.reserved_memory);
            }
            instances.push(InstanceState {
                arn: k.arn.clone(),
                ec2_instance_id: inst.id.clone(),
                group: self
                    .groups
                    .get(inst.group)
                    .map(|g| g.spec.name.clone())
                    .unwrap_or_default(),
                status: k.status,
                zone: self.zone_name(inst.zone).to_owned(),
                registered_cpu: k.registered_cpu,
                registered_memory: k.registered_memory,
                reserved_cpu: k.reserved_cpu,
                reserved_memory: k.reserved_memory,
                tasks: inst
                    .tasks
                    .iter()
                    .filter_map(|s| self.task(*s))
                    .map(|t| t.arn.to_string())
                    .collect(),
            });
        }
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                a as f64 * 100.0 / b as f64
            }
        };
        let (mut unplaced, mut unplaced_cpu, mut unplaced_memory) = (0u32, 0u64, 0u64);
        for s in c.services.iter().filter_map(|s| self.services.get(*s)) {
            unplaced += s.unplaced;
            unplaced_cpu += u64::from(s.unplaced) * u64::from(s.spec.task_cpu);
            unplaced_memory += u64::from(s.unplaced) * u64::from(s.spec.task_memory);
        }
        let groups = c
            .groups
            .iter()
            .filter_map(|g| self.groups.get(*g))
            .map(|g| GroupState {
                name: g.spec.name.clone(),
                desired: g.desired,
                min: g.spec.min,
                max: g.spec.max,
                instances: self.group_instances(&g.instances),
            })
            .collect();
        Some(ClusterState {
            name: c.name.clone(),
            instances,
            cpu_reservation_percent: pct(res_cpu, reg_cpu),
            memory_reservation_percent: pct(res_mem, reg_mem),
            unplaced_tasks: unplaced,
            unplaced_cpu,
            unplaced_memory,
            groups,
        })
    }

    /// The instances as their group reports them.
    pub(crate) fn group_instances(&self, instances: &[usize]) -> Vec<AutoScalingInstance> {
        instances
            .iter()
            .filter_map(|i| self.instances.get(*i))
            .map(|i| AutoScalingInstance {
                instance_id: i.id.clone(),
                availability_zone: self.zone_name(i.zone).to_owned(),
                lifecycle_state: i.lifecycle,
                healthy: true,
                protected_from_scale_in: i.protected,
                launched_at: Some(i.launched_at),
            })
            .collect()
    }
}
