//! Work in progress, grouped in cohorts (items that started together and finish
//! together) and kept in a timing wheel keyed by the second they finish: O(1) to add,
//! O(1) per second to collect, whatever the number of items.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Seconds the wheel covers; cohorts finishing later wait in a heap.
const HORIZON: usize = 1024;
/// Float noise tolerated when turning a finish time into its second.
const EPS: f64 = 1e-9;

/// ⌈x⌉ for times (a plain cast and compare: no libm call on baseline x86-64).
pub(crate) fn ceil(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) < x { t + 1 } else { t }
}

/// ⌊x⌋ for times.
pub(crate) fn floor(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) > x { t - 1 } else { t }
}

/// Items that started together on one task and finish together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cohort {
    /// Index of the task in the task table.
    pub task: u32,
    /// The task slot's generation when the cohort started (a stale cohort is skipped).
    pub gen_: u32,
    /// How many items.
    pub count: u64,
    /// When the items arrived (latency is measured from here), seconds since the start.
    pub arrival: f64,
    /// When they started being worked on.
    pub start: f64,
    /// When they finish.
    pub finish: f64,
}

/// A cohort in the far heap, ordered soonest first.
#[derive(Debug)]
struct Far {
    key: i64,
    seq: u64,
    cohort: Cohort,
}

impl PartialEq for Far {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Far {}

impl PartialOrd for Far {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Far {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse for soonest first.
        (other.key, other.seq).cmp(&(self.key, self.seq))
    }
}

/// The timing wheel.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// Slot `k % HORIZON` holds the cohorts finishing in second `k` ∈ (cursor,
    /// cursor + HORIZON].
    slots: Vec<Vec<Cohort>>,
    /// Cohorts added with a finish already collected (due at the next `drain`).
    due: Vec<Cohort>,
    /// Cohorts finishing beyond the wheel.
    far: BinaryHeap<Far>,
    /// Sequence number for a stable heap order.
    seq: u64,
    /// The last second collected.
    cursor: i64,
}

impl Wheel {
    /// An empty wheel at second 0.
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..HORIZON).map(|_| Vec::new()).collect(),
            due: Vec::new(),
            far: BinaryHeap::new(),
            seq: 0,
            cursor: 0,
        }
    }

    /// The second a finish time belongs to: (k − 1, k] → k.
    fn key(finish: f64) -> i64 {
        ceil(finish - EPS)
    }

    /// Adds a cohort.
    pub(crate) fn push(&mut self, c: Cohort) {
        let key = Self::key(c.finish);
        if key <= self.cursor {
            self.due.push(c);
        } else if key - self.cursor <= HORIZON as i64 {
            self.slots[key.rem_euclid(HORIZON as i64) as usize].push(c);
        } else {
            self.seq += 1;
            self.far.push(Far {
                key,
                seq: self.seq,
                cohort: c,
            });
        }
    }

    /// Moves every cohort finishing by `t` (seconds) into `out`.
    pub(crate) fn drain(&mut self, t: f64, out: &mut Vec<Cohort>) {
        out.append(&mut self.due);
        let target = floor(t + EPS);
        if target > self.cursor {
            let n = (target - self.cursor).min(HORIZON as i64);
            for k in self.cursor + 1..=self.cursor + n {
                out.append(&mut self.slots[k.rem_euclid(HORIZON as i64) as usize]);
            }
            self.cursor = target;
        }
        while self.far.peek().is_some_and(|f| f.key <= self.cursor) {
            if let Some(f) = self.far.pop() {
                out.push(f.cohort);
            }
        }
    }

    /// Every cohort not yet collected.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Cohort> {
        self.due
            .iter()
            .chain(self.slots.iter().flatten())
            .chain(self.far.iter().map(|f| &f.cohort))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cohort(finish: f64, count: u64) -> Cohort {
        Cohort {
            task: 0,
            gen_: 0,
            count,
            arrival: 0.0,
            start: 0.0,
            finish,
        }
    }

    #[test]
    fn cohorts_come_out_in_the_second_they_finish() {
        let mut w = Wheel::new();
        for (f, n) in [(0.5, 1), (1.0, 2), (1.2, 3), (5000.0, 4), (3.0, 5)] {
            w.push(cohort(f, n));
        }
        let mut out = Vec::new();
        let mut counts = Vec::new();
        for t in 1..=5000 {
            w.drain(f64::from(t), &mut out);
            if !out.is_empty() {
                counts.push((t, out.iter().map(|c| c.count).sum::<u64>()));
                out.clear();
            }
        }
        assert_eq!(counts, vec![(1, 3), (2, 3), (3, 5), (5000, 4)]);
        // Late additions (already due) come out at the next drain.
        w.push(cohort(10.0, 7));
        w.drain(5000.0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(w.iter().count(), 0);
    }

    #[test]
    fn ceil_and_floor_match_the_library() {
        for x in [
            -2.5,
            -1.0,
            -0.5,
            0.0,
            0.3,
            1.0,
            1.5,
            86_399.999_999,
            1e12 + 0.5,
        ] {
            assert_eq!(ceil(x), x.ceil() as i64, "{x}");
            assert_eq!(floor(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn long_jumps_collect_everything_in_between() {
        let mut w = Wheel::new();
        for f in [3.0, 900.0, 1500.0, 2000.5] {
            w.push(cohort(f, 1));
        }
        assert_eq!(w.iter().count(), 4);
        let mut out = Vec::new();
        w.drain(1999.0, &mut out);
        assert_eq!(out.len(), 3);
        w.drain(2001.0, &mut out);
        assert_eq!(out.len(), 4);
    }
}
