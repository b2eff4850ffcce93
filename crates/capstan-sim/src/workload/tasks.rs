//! The tasks the workload knows, matched to the world's [`TaskInfo`] list once per step
//! (by position and task uid when the list did not change, by ARN otherwise), and how
//! new work is spread over them.

use std::collections::HashMap;

use capstan_aws_api::TaskStatus;
use capstan_world::{TaskHandle, TaskInfo};

/// No slot (a task seen only after it stopped).
pub(crate) const NONE: u32 = u32::MAX;

/// One task's state in the workload.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slot {
    /// Task ARN.
    pub arn: String,
    /// The world's uid of the task ([`TaskInfo::uid`]).
    pub uid: u64,
    /// The world's handle of the task ([`TaskInfo::handle`]).
    pub handle: TaskHandle,
    /// Bumped when the task stops, so its cohorts still in the wheel are skipped.
    pub gen_: u32,
    /// Its containers run (no `TaskStopped` yet).
    pub live: bool,
    /// Items it works on now (messages, requests) or live sessions.
    pub busy: u64,
    /// `TaskSigterm` received.
    pub sigterm: bool,
    /// The load balancer sends it new requests and sessions (this step).
    pub routable: bool,
    /// It takes new work: accepting and not terminating (this step).
    pub accepting: bool,
    /// It got SIGTERM: new requests sent to it fail (this step).
    pub terminating: bool,
    /// The step it was last listed in.
    pub seen: u64,
    /// The work last handed out by [`Workload::load_changes`](super::Workload::load_changes)
    /// (`None`: not yet).
    pub reported: Option<u32>,
}

/// Every known task.
#[derive(Debug, Default)]
pub(crate) struct TaskTable {
    /// Slots, reused after their task is gone.
    pub slots: Vec<Slot>,
    /// ARN → slot.
    index: HashMap<String, u32>,
    /// Free slots.
    free: Vec<u32>,
    /// Slot of each entry of the last list synced (or [`NONE`]).
    pub order: Vec<u32>,
    /// Sync counter.
    step: u64,
}

impl TaskTable {
    /// Matches `tasks` to slots (creating them), updates their flags, and forgets the
    /// stopped tasks the world no longer lists.
    pub(crate) fn sync(&mut self, tasks: &[TaskInfo]) {
        self.step += 1;
        if self.order.len() != tasks.len() || !self.update(tasks) {
            self.rebuild(tasks);
            self.update(tasks);
        }
    }

    /// Refreshes the flags of the slots in `order` from `tasks`; false (stopping
    /// early) if the list no longer matches `order`. A slot matches its entry by uid
    /// (one integer compare instead of an ARN compare per task per step).
    fn update(&mut self, tasks: &[TaskInfo]) -> bool {
        for (t, &i) in tasks.iter().zip(&self.order) {
            if i == NONE {
                if !gone(t) || self.index.contains_key(&t.arn) {
                    return false;
                }
                continue;
            }
            let s = &mut self.slots[i as usize];
            if s.uid != t.uid {
                return false;
            }
            s.seen = self.step;
            let stopping = !s.live || s.sigterm || t.terminating;
            s.routable = s.live && t.routable;
            s.terminating = stopping;
            s.accepting = t.accepting && !stopping;
        }
        true
    }

    fn rebuild(&mut self, tasks: &[TaskInfo]) {
        self.order.clear();
        for t in tasks {
            let i = match self.index.get(&t.arn) {
                Some(&i) => i,
                None if gone(t) => NONE,
                None => self.add(&t.arn),
            };
            self.order.push(i);
            if i != NONE {
                let s = &mut self.slots[i as usize];
                s.seen = self.step;
                s.uid = t.uid;
                s.handle = t.handle;
            }
        }
        // Stopped tasks the world no longer lists are forgotten.
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if !s.live && s.seen != self.step && self.index.contains_key(&s.arn) {
                self.index.remove(&s.arn);
                self.free.push(i as u32);
            }
        }
    }

    fn add(&mut self, arn: &str) -> u32 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[i as usize];
        let mut name = std::mem::take(&mut s.arn);
        name.clear();
        name.push_str(arn);
        *s = Slot {
            arn: name,
            gen_: s.gen_.wrapping_add(1),
            live: true,
            ..Slot::default()
        };
        self.index.insert(arn.to_owned(), i);
        i
    }

    /// The slot of a task, by ARN.
    pub(crate) fn find(&self, arn: &str) -> Option<u32> {
        self.index.get(arn).copied()
    }

    /// The slot of `tasks[i]`, using the last sync's order when it still matches.
    pub(crate) fn slot_of(&self, i: usize, t: &TaskInfo) -> Option<&Slot> {
        match self.order.get(i) {
            Some(&k) if k != NONE && self.slots[k as usize].arn == t.arn => {
                Some(&self.slots[k as usize])
            }
            _ => self.find(&t.arn).map(|k| &self.slots[k as usize]),
        }
    }

    /// Marks a task stopped: its slot stays (so the world's DEPROVISIONING listing
    /// does not bring it back) until the world stops listing it. Returns what it held.
    pub(crate) fn stop(&mut self, i: u32) -> u64 {
        let s = &mut self.slots[i as usize];
        let held = s.busy;
        s.busy = 0;
        s.live = false;
        s.gen_ = s.gen_.wrapping_add(1);
        s.routable = false;
        s.accepting = false;
        s.terminating = true;
        held
    }
}

/// A task that is past running its containers: never given a slot.
fn gone(t: &TaskInfo) -> bool {
    matches!(t.status, TaskStatus::Deprovisioning | TaskStatus::Stopped)
}

/// Spreads `n` new items over candidates holding `levels[i]` items each, at most
/// `caps[i]`: least loaded first, as a least-outstanding-requests balancer would one
/// item at a time. Ties at the final level are broken in turn from `start`. Writes each
/// candidate's share into `give` and returns how many were placed (< `n` only when
/// every candidate is full).
pub(crate) fn water_fill(
    levels: &[u64],
    caps: &[u64],
    n: u64,
    start: usize,
    give: &mut [u64],
) -> u64 {
    give.iter_mut().for_each(|g| *g = 0);
    let k = levels.len();
    let room = |i: usize| caps[i].saturating_sub(levels[i]);
    let with_room = || (0..k).filter(|&i| room(i) > 0).map(|i| levels[i]);
    let (Some(lo), Some(top)) = (with_room().min(), with_room().max()) else {
        return 0;
    };
    if n == 0 {
        return 0;
    }
    // filled(L): items needed to bring everyone up to level L (within their caps).
    let filled = |l: u64| -> u64 {
        (0..k)
            .map(|i| l.saturating_sub(levels[i]).min(room(i)))
            .sum()
    };
    // The highest level L with filled(L) ≤ n. Bounds: everyone with room rising n/k
    // above the lowest uses at most n; with no cap in the way, the level where the
    // total reaches n is the mean after adding n.
    let (with, sum) = (0..k)
        .filter(|&i| room(i) > 0)
        .fold((0u64, 0u64), |(c, s), i| {
            (c + 1, s.saturating_add(levels[i]))
        });
    let mut a = lo + n / with;
    let even = sum.saturating_add(n) / with;
    let mut b = if filled(even.saturating_add(1)) > n {
        even
    } else {
        top.saturating_add(n)
    };
    while a < b {
        let mid = a + (b - a).div_ceil(2);
        if filled(mid) <= n {
            a = mid;
        } else {
            b = mid - 1;
        }
    }
    let level = a;
    let mut placed = 0;
    for (i, g) in give.iter_mut().enumerate() {
        *g = level.saturating_sub(levels[i]).min(room(i));
        placed += *g;
    }
    // The rest, one each, to candidates at `level` with room for one more.
    let mut rest = n - placed;
    for j in 0..k {
        if rest == 0 {
            break;
        }
        let i = (start + j) % k;
        if levels[i] <= level && level < caps[i] {
            give[i] += 1;
            rest -= 1;
            placed += 1;
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// One item at a time to the least loaded candidate with room.
    fn naive(levels: &[u64], caps: &[u64], n: u64) -> (Vec<u64>, u64) {
        let mut cur: Vec<u64> = levels.to_vec();
        let mut placed = 0;
        for _ in 0..n {
            let best = (0..cur.len())
                .filter(|&i| cur[i] < caps[i])
                .min_by_key(|&i| cur[i]);
            match best {
                Some(i) => {
                    cur[i] += 1;
                    placed += 1;
                }
                None => break,
            }
        }
        let mut end = cur;
        end.sort_unstable();
        (end, placed)
    }

    proptest! {
        #[test]
        fn water_fill_ends_where_one_at_a_time_would(
            tasks in proptest::collection::vec((0u64..20, 0u64..30), 1..12),
            n in 0u64..200,
            start in 0usize..12,
        ) {
            let levels: Vec<u64> = tasks.iter().map(|t| t.0).collect();
            let caps: Vec<u64> = tasks.iter().map(|t| t.1).collect();
            let mut give = vec![0; levels.len()];
            let placed = water_fill(&levels, &caps, n, start, &mut give);
            let mut end: Vec<u64> = levels.iter().zip(&give).map(|(&l, &g)| l + g).collect();
            for (i, g) in give.iter().enumerate() {
                prop_assert!(*g == 0 || levels[i] + g <= caps[i]);
            }
            end.sort_unstable();
            let (want, want_placed) = naive(&levels, &caps, n);
            prop_assert_eq!(placed, want_placed);
            prop_assert_eq!(give.iter().sum::<u64>(), placed);
            prop_assert_eq!(end, want);
        }
    }

    #[test]
    fn ties_rotate_from_start() {
        let mut give = [0; 3];
        assert_eq!(water_fill(&[1, 1, 1], &[9, 9, 9], 1, 2, &mut give), 1);
        assert_eq!(give, [0, 0, 1]);
        assert_eq!(water_fill(&[0, 4, 1], &[9, 9, 9], 4, 0, &mut give), 4);
        assert_eq!(give, [3, 0, 1]);
        assert_eq!(water_fill(&[2, 2], &[2, 2], 5, 0, &mut give[..2]), 0);
    }
}
