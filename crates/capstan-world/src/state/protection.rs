//! Task scale-in protection (AWS-SEMANTICS §4, E8–E10).
//!
//! `UpdateTaskProtection` protects for `ExpiresInMinutes` (calling again resets the
//! expiry) or releases; protected tasks are skipped by service scale-in and by
//! deployments until the expiry. Unknown, stopping or stopped tasks fail with
//! `TASK_NOT_VALID`.
//!
//! `DEPLOYMENT_BLOCKED`: AWS refuses to protect more tasks of a service than its
//! `desiredCount`. The model counts, per service, the tasks already protected and not
//! named in the call, then accepts the call's tasks in the order given while the total
//! stays within `desiredCount`; the excess ones fail with `DEPLOYMENT_BLOCKED`. (AWS
//! does not document which of the named tasks fail; in-order is the choice made here.)

use std::sync::Arc;

use std::time::Duration;

use capstan_aws_api::{Failure, ProtectionResult, TaskProtection};
use capstan_core::clock;

use super::{State, TimerKind};

impl State {
    /// The slot of a live task of cluster `cluster` named by ARN or id.
    pub(crate) fn find_task(&self, cluster: usize, task: &str) -> Option<usize> {
        let slot = self.slot_of(task)?;
        let t = self.task(slot)?;
        let svc = self.services.get(t.service)?;
        (svc.cluster == cluster).then_some(slot)
    }

    /// `UpdateTaskProtection` on already validated input (batch size, minutes).
    pub(crate) fn update_protection(
        &mut self,
        cluster: usize,
        tasks: &[Arc<str>],
        minutes: Option<u32>,
    ) -> ProtectionResult {
        let now = self.now;
        let mut result = ProtectionResult::default();
        let named: Vec<Option<usize>> = tasks
            .iter()
            .map(|t| {
                self.find_task(cluster, t)
                    .filter(|s| self.task(*s).is_some_and(super::Task::live))
            })
            .collect();
        // A call names at most a few tasks (10): plain lists beat hashing here.
        let named_set: Vec<usize> = named.iter().flatten().copied().collect();
        // Per service: tasks protected outside the call, tasks accepted so far.
        let mut counts: Vec<(usize, usize, usize)> = Vec::new();
        let mut seen: Vec<usize> = Vec::with_capacity(named_set.len());
        for (arn, slot) in tasks.iter().zip(named) {
            let Some(slot) = slot else {
                result.failures.push(Failure {
                    arn: arn.clone(),
                    reason: "TASK_NOT_VALID".into(),
                    detail: Some("The task is not running or does not exist".into()),
                });
                continue;
            };
            if seen.contains(&slot) {
                continue;
            }
            seen.push(slot);
            let Some(t) = self.task(slot) else { continue };
            let (svc, full_arn, uid) = (t.service, t.arn.clone(), t.uid);
            let Some(m) = minutes else {
                if let Some(t) = self.task_mut(slot) {
                    t.protected_until = None;
                }
                self.changed();
                result.protected.push(TaskProtection {
                    arn: full_arn,
                    enabled: false,
                    expires_at: None,
                });
                continue;
            };
            let desired = self.services.get(svc).map_or(0, |s| s.desired as usize);
            let k = match counts.iter().position(|c| c.0 == svc) {
                Some(k) => k,
                None => {
                    counts.push((svc, self.protected_count(svc, &named_set), 0));
                    counts.len() - 1
                }
            };
            let Some((_, already, taken)) = counts.get_mut(k) else {
                continue;
            };
            if *already + *taken + 1 > desired {
                result.failures.push(Failure {
                    arn: full_arn,
                    reason: "DEPLOYMENT_BLOCKED".into(),
                    detail: Some(format!(
                        "protecting it would protect more tasks than the desired count {desired}"
                    )),
                });
                continue;
            }
            *taken += 1;
            let until = clock::add(now, Duration::from_secs(u64::from(m) * 60));
            if let Some(t) = self.task_mut(slot) {
                t.protected_until = Some(until);
            }
            self.at(until, TimerKind::ProtectionEnd { slot, uid });
            self.changed();
            result.protected.push(TaskProtection {
                arn: full_arn,
                enabled: true,
                expires_at: Some(until),
            });
        }
        result
    }

    /// Live protected tasks of service `svc` not in `except`.
    fn protected_count(&self, svc: usize, except: &[usize]) -> usize {
        let now = self.now;
        self.services.get(svc).map_or(0, |s| {
            s.tasks
                .iter()
                .filter(|slot| !except.contains(slot))
                .filter_map(|slot| self.task(*slot))
                .filter(|t| t.live() && t.protected(now))
                .count()
        })
    }

    /// `GetTaskProtection` on already validated input.
    pub(crate) fn get_protection(&self, cluster: usize, tasks: &[Arc<str>]) -> ProtectionResult {
        let now = self.now;
        let mut result = ProtectionResult {
            protected: Vec::with_capacity(tasks.len()),
            ..ProtectionResult::default()
        };
        for arn in tasks {
            match self
                .find_task(cluster, arn)
                .and_then(|s| self.task(s))
                .filter(|t| t.live())
            {
                Some(t) => result.protected.push(TaskProtection {
                    arn: t.arn.clone(),
                    enabled: t.protected(now),
                    expires_at: t.protected_until.filter(|u| *u > now),
                }),
                None => result.failures.push(Failure {
                    arn: arn.clone(),
                    reason: "TASK_NOT_VALID".into(),
                    detail: Some("The task is not running or does not exist".into()),
                }),
            }
        }
        result
    }

    /// A protection expiry passes (ignored if the protection was renewed).
    pub(super) fn on_protection_end(&mut self, slot: usize) {
        let now = self.now;
        let Some(t) = self.task_mut(slot) else { return };
        if t.protected_until.is_some_and(|u| u <= now) {
            t.protected_until = None;
            self.changed();
        }
    }
}
