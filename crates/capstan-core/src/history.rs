//! A bounded history of one service: what each tick saw (desired, running and pending
//! counts, and each policy's metric value against its target), kept in two tiers and
//! downsampled for charts.
//!
//! - **Raw tier**: one sample per second at most (a later sample in the same second
//!   replaces the earlier one), for the last [`RAW_SPAN`] (1 h), never more than
//!   [`RAW_CAP`] (3600) samples.
//! - **Minute tier**: one bucket per minute (the last counts of the minute, the mean
//!   of each policy's values and its last target), for the last [`MINUTE_SPAN`]
//!   (24 h), never more than [`MINUTE_CAP`] (1440) buckets, plus the minute still open.
//!
//! [`History::points`] answers a window of up to 1 h from the raw tier and a longer one
//! from the minute tier, in at most the number of points asked: the window is cut into
//! equal steps (whole seconds, never finer than the tier's resolution) and each step
//! with data gives one point (the last counts, the mean of each policy's values, the
//! last target).
//!
//! # Memory
//!
//! A slot (raw sample or minute bucket) is 40 bytes plus 16 bytes per policy (value and
//! target as two `f64`, stored in one flat ring per tier: no allocation per slot); the
//! policy names are shared by every slot recorded with the same policies. With `P`
//! policies, a service holds at most `(3600 + 1440) × (40 + 16 P)` bytes (the rings
//! grow by doubling, never beyond their cap): **363 KB with 2 policies** when it
//! ticks every second or faster (measured: `cargo bench -p capstan --bench history`),
//! about **140 KB** when it ticks every 10 s (360 raw samples in a ring of 512, 1440
//! buckets).
//!
//! Pure: time comes in with each sample and each query.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::metrics::Observations;
use crate::policy::{Policy, PolicyState, TrackingMode};

/// How far back the raw tier reaches.
pub const RAW_SPAN: Duration = Duration::from_secs(3600);
/// The most raw samples kept (one per second over [`RAW_SPAN`]).
pub const RAW_CAP: usize = 3600;
/// How far back the minute tier reaches.
pub const MINUTE_SPAN: Duration = Duration::from_secs(24 * 3600);
/// The most closed minute buckets kept (one per minute over [`MINUTE_SPAN`]).
pub const MINUTE_CAP: usize = 1440;

const SECOND_MS: i64 = 1000;
const MINUTE_MS: i64 = 60_000;

/// One policy's metric value and target as a tick saw them (`None`: the policy has
/// none, e.g. a scheduled policy, or its source had no sample).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Reading {
    /// The value of the policy's metric the tick saw (per task for a backlog or a
    /// total tracked per task).
    pub value: Option<f64>,
    /// The value the policy holds the metric to (the tracking target, the scale-out
    /// threshold, the threshold policy's max, the backlog's dynamic target).
    pub target: Option<f64>,
}

/// What one tick recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick<'a> {
    /// When.
    pub at: Timestamp,
    /// The desired count after the tick's decision.
    pub desired: u32,
    /// Tasks running.
    pub running: u32,
    /// Tasks starting.
    pub pending: u32,
    /// Each policy's reading, in configuration order.
    pub policies: &'a [(&'a str, Reading)],
}

/// One point of a downsampled window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The time of the newest sample in the point's step.
    pub t: Timestamp,
    /// The desired count of that sample.
    pub desired: u32,
    /// The running count of that sample.
    pub running: u32,
    /// The pending count of that sample.
    pub pending: u32,
    /// Each policy seen in the step (by name): the mean of its values, its last target.
    #[serde(serialize_with = "policies_as_map")]
    pub policies: Vec<(Arc<str>, Reading)>,
}

fn policies_as_map<S: serde::Serializer>(
    policies: &[(Arc<str>, Reading)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(policies.iter().map(|(name, r)| (&**name, r)))
}

/// A downsampled window.
#[derive(Debug, Clone, PartialEq)]
pub struct Downsampled {
    /// The length of each point's step.
    pub step: Duration,
    /// The points, oldest first, at most as many as asked.
    pub points: Vec<Point>,
}

/// A slot's counts and when.
#[derive(Debug, Clone)]
struct Slot {
    t_ms: i64,
    desired: u32,
    running: u32,
    pending: u32,
    /// The policies of this slot's readings (shared between slots).
    names: Arc<[Arc<str>]>,
}

/// A tier: slots and their readings (`names.len()` per slot, in one flat ring).
#[derive(Debug, Clone, Default)]
struct Tier {
    slots: VecDeque<Slot>,
    readings: VecDeque<[f64; 2]>,
}

impl Tier {
    /// Adds a slot, first dropping the oldest while the tier holds `cap` slots. The
    /// rings grow by doubling but never beyond what `cap` slots need, so a full tier
    /// holds no slack.
    fn push(&mut self, cap: usize, slot: Slot, readings: impl ExactSizeIterator<Item = [f64; 2]>) {
        while self.slots.len() >= cap.max(1) {
            self.pop_front();
        }
        let per_slot = readings.len();
        grow(&mut self.slots, 1, cap);
        grow(&mut self.readings, per_slot, cap.saturating_mul(per_slot));
        self.readings.extend(readings);
        self.slots.push_back(slot);
    }

    fn pop_front(&mut self) {
        if let Some(slot) = self.slots.pop_front() {
            let n = slot.names.len().min(self.readings.len());
            self.readings.drain(..n);
        }
    }

    fn pop_back(&mut self) {
        if let Some(slot) = self.slots.pop_back() {
            let keep = self.readings.len().saturating_sub(slot.names.len());
            self.readings.truncate(keep);
        }
    }

    /// Drops slots older than `cutoff_ms` and beyond `cap`.
    fn trim(&mut self, cutoff_ms: i64, cap: usize) {
        while self.slots.len() > cap || self.slots.front().is_some_and(|s| s.t_ms < cutoff_ms) {
            self.pop_front();
        }
    }

    /// Each slot with its readings, oldest first.
    fn iter(&self) -> impl Iterator<Item = (&Slot, impl Iterator<Item = &[f64; 2]>)> {
        let mut offset = 0;
        self.slots.iter().map(move |slot| {
            let start = offset;
            offset += slot.names.len();
            (
                slot,
                self.readings.range(start..offset.min(self.readings.len())),
            )
        })
    }
}

/// Makes room for `extra` more items in `ring`: doubling, but to at most `cap` items.
fn grow<T>(ring: &mut VecDeque<T>, extra: usize, cap: usize) {
    let len = ring.len();
    if len.saturating_add(extra) > ring.capacity() {
        let doubled = len.max(extra).max(8);
        let room = cap.saturating_sub(len).max(extra);
        ring.reserve_exact(doubled.min(room));
    }
}

/// The minute being accumulated.
#[derive(Debug, Clone)]
struct Open {
    minute: i64,
    last: Slot,
    /// Per policy: sum of values, how many, last target.
    sums: Vec<(f64, u32, f64)>,
}

impl Open {
    fn close(&self) -> (Slot, Vec<[f64; 2]>) {
        let readings = self
            .sums
            .iter()
            .map(|&(sum, n, target)| {
                let mean = if n == 0 { f64::NAN } else { sum / f64::from(n) };
                [mean, target]
            })
            .collect();
        (self.last.clone(), readings)
    }
}

/// One service's bounded history. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct History {
    raw: Tier,
    minutes: Tier,
    open: Option<Open>,
    /// The names of the latest sample, shared by the slots recorded with them.
    names: Option<Arc<[Arc<str>]>>,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn span_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn nan_if_none(v: Option<f64>) -> f64 {
    v.filter(|v| v.is_finite()).unwrap_or(f64::NAN)
}

fn none_if_nan(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples in the raw tier.
    pub fn raw_len(&self) -> usize {
        self.raw.slots.len()
    }

    /// Closed buckets in the minute tier.
    pub fn minute_len(&self) -> usize {
        self.minutes.slots.len()
    }

    /// The time of the newest sample.
    pub fn latest(&self) -> Option<Timestamp> {
        self.raw
            .slots
            .back()
            .and_then(|s| Timestamp::from_millisecond(s.t_ms).ok())
    }

    /// The shared names for `policies` (the previous ones when unchanged).
    fn names_for(&mut self, policies: &[(&str, Reading)]) -> Arc<[Arc<str>]> {
        if let Some(names) = &self.names
            && names.len() == policies.len()
            && names.iter().zip(policies).all(|(a, (b, _))| &**a == *b)
        {
            return Arc::clone(names);
        }
        let names: Arc<[Arc<str>]> = policies.iter().map(|(n, _)| Arc::from(*n)).collect();
        self.names = Some(Arc::clone(&names));
        names
    }

    /// Records a tick. A tick in the same second as the newest one replaces it; one
    /// older than the newest is ignored (time never goes back).
    pub fn record(&mut self, tick: &Tick<'_>) {
        let t_ms = ms(tick.at);
        let mut replace = false;
        if let Some(last) = self.raw.slots.back() {
            if t_ms < last.t_ms {
                return;
            }
            replace = t_ms.div_euclid(SECOND_MS) == last.t_ms.div_euclid(SECOND_MS);
        }
        let names = self.names_for(tick.policies);
        let slot = Slot {
            t_ms,
            desired: tick.desired,
            running: tick.running,
            pending: tick.pending,
            names,
        };
        if replace {
            self.raw.pop_back();
        }
        let readings = tick
            .policies
            .iter()
            .map(|(_, r)| [nan_if_none(r.value), nan_if_none(r.target)]);
        self.raw.push(RAW_CAP, slot.clone(), readings);
        self.raw
            .trim(t_ms.saturating_sub(span_ms(RAW_SPAN)), RAW_CAP);
        self.accumulate(slot, tick.policies);
    }

    /// Adds a sample to the open minute, closing it first when the minute (or the
    /// policies) changed.
    fn accumulate(&mut self, slot: Slot, policies: &[(&str, Reading)]) {
        let minute = slot.t_ms.div_euclid(MINUTE_MS);
        if let Some(open) = &self.open
            && (open.minute != minute || !Arc::ptr_eq(&open.last.names, &slot.names))
        {
            let (closed, readings) = open.close();
            self.minutes.push(MINUTE_CAP, closed, readings.into_iter());
            self.open = None;
        }
        let open = self.open.get_or_insert_with(|| Open {
            minute,
            last: slot.clone(),
            sums: vec![(0.0, 0, f64::NAN); policies.len()],
        });
        for (sum, (_, r)) in open.sums.iter_mut().zip(policies) {
            if let Some(v) = r.value.filter(|v| v.is_finite()) {
                sum.0 += v;
                sum.1 += 1;
            }
            sum.2 = nan_if_none(r.target);
        }
        open.last = slot;
        let cutoff = open.last.t_ms.saturating_sub(span_ms(MINUTE_SPAN));
        self.minutes.trim(cutoff, MINUTE_CAP);
    }

    /// The window of length `window` ending at `now`, in at most `max_points` points
    /// (at least 1). A window up to [`RAW_SPAN`] reads the raw tier (steps of whole
    /// seconds); a longer one the minute tier and the open minute (steps of whole
    /// minutes at least).
    pub fn points(&self, now: Timestamp, window: Duration, max_points: usize) -> Downsampled {
        let max_points = max_points.max(1);
        let window_ms = span_ms(window).max(SECOND_MS);
        let (resolution, from_raw) = if window <= RAW_SPAN {
            (SECOND_MS, true)
        } else {
            (MINUTE_MS, false)
        };
        let n = i64::try_from(max_points).unwrap_or(i64::MAX);
        // ceil(window / n), rounded up to whole seconds, never finer than the tier.
        let step_ms = {
            let raw = window_ms.saturating_add(n - 1) / n;
            let secs = raw.saturating_add(SECOND_MS - 1) / SECOND_MS * SECOND_MS;
            secs.max(resolution)
        };
        let end = ms(now);
        let start = end.saturating_sub(window_ms);
        let mut points: Vec<Point> = Vec::new();
        let mut bucket: Option<(i64, Acc)> = None;
        let mut add = |slot: &Slot, readings: &mut dyn Iterator<Item = [f64; 2]>| {
            if slot.t_ms <= start || slot.t_ms > end {
                return;
            }
            let idx = (slot.t_ms - start - 1) / step_ms;
            if let Some((current, acc)) = &mut bucket {
                if *current != idx {
                    points.extend(acc.point());
                    *current = idx;
                    *acc = Acc::default();
                }
            } else {
                bucket = Some((idx, Acc::default()));
            }
            if let Some((_, acc)) = &mut bucket {
                acc.add(slot, readings);
            }
        };
        if from_raw {
            for (slot, readings) in self.raw.iter() {
                add(slot, &mut readings.copied());
            }
        } else {
            for (slot, readings) in self.minutes.iter() {
                add(slot, &mut readings.copied());
            }
            if let Some(open) = &self.open {
                let (slot, readings) = open.close();
                add(&slot, &mut readings.into_iter());
            }
        }
        if let Some((_, acc)) = &bucket {
            points.extend(acc.point());
        }
        Downsampled {
            step: Duration::from_millis(u64::try_from(step_ms).unwrap_or(u64::MAX)),
            points,
        }
    }
}

/// The slots of one step being merged into a point.
#[derive(Debug, Default)]
struct Acc {
    last: Option<Slot>,
    /// Per policy name, in order of first appearance: sum, count, last target.
    policies: Vec<(Arc<str>, f64, u32, Option<f64>)>,
}

impl Acc {
    fn add(&mut self, slot: &Slot, readings: &mut dyn Iterator<Item = [f64; 2]>) {
        for (name, [value, target]) in slot.names.iter().zip(readings) {
            let i = match self.policies.iter().position(|p| p.0 == *name) {
                Some(i) => i,
                None => {
                    self.policies.push((Arc::clone(name), 0.0, 0, None));
                    self.policies.len() - 1
                }
            };
            let p = &mut self.policies[i];
            if value.is_finite() {
                p.1 += value;
                p.2 += 1;
            }
            if let Some(t) = none_if_nan(target) {
                p.3 = Some(t);
            }
        }
        self.last = Some(slot.clone());
    }

    fn point(&self) -> Option<Point> {
        let last = self.last.as_ref()?;
        Some(Point {
            t: Timestamp::from_millisecond(last.t_ms).ok()?,
            desired: last.desired,
            running: last.running,
            pending: last.pending,
            policies: self
                .policies
                .iter()
                .map(|(name, sum, n, target)| {
                    let value = (*n > 0).then(|| sum / f64::from(*n));
                    (
                        Arc::clone(name),
                        Reading {
                            value,
                            target: *target,
                        },
                    )
                })
                .collect(),
        })
    }
}

/// What `policy` (with its `state`) reads now: the newest value of its metric and its
/// target, for the history. `desired` is the service's current desired count (a total
/// tracked per task and a backlog are shown per task). Per kind:
/// - target tracking: the metric (per task in `total` mode) and the target;
/// - step: the metric and the scale-out alarm's threshold (else the scale-in one's);
/// - threshold: the first metric and its max;
/// - backlog per task: the backlog per task and the dynamic target (once computed);
/// - scheduled, alert: neither.
pub fn reading(
    policy: &Policy,
    state: &PolicyState,
    metrics: &Observations,
    desired: u32,
) -> Reading {
    let newest = |source: &str| {
        metrics
            .series(source)
            .and_then(|s| s.latest())
            .map(|s| s.value)
    };
    let per_task = |v: f64| v / f64::from(desired.max(1));
    match policy {
        Policy::TargetTracking(p) => Reading {
            value: newest(&p.metric).map(|v| match p.mode {
                TrackingMode::PerTask => v,
                TrackingMode::Total => per_task(v),
            }),
            target: Some(p.target),
        },
        Policy::Step(p) => Reading {
            value: newest(&p.metric),
            target: p.out.as_ref().or(p.r#in.as_ref()).map(|a| a.threshold),
        },
        Policy::Threshold(p) => match p.metrics.first() {
            Some(m) => Reading {
                value: newest(&m.metric),
                target: Some(m.max),
            },
            None => Reading::default(),
        },
        Policy::BacklogPerTask(p) => Reading {
            value: newest(&p.backlog).map(per_task),
            target: match state {
                PolicyState::Backlog(s) => s.target,
                _ => None,
            },
        },
        Policy::Scheduled(_) | Policy::Alert(_) => Reading::default(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    const T0: i64 = 1_800_000_000_000;

    fn tick(h: &mut History, t_ms: i64, desired: u32, value: Option<f64>) {
        let policies = [(
            "cpu",
            Reading {
                value,
                target: Some(60.0),
            },
        )];
        h.record(&Tick {
            at: at(t_ms),
            desired,
            running: desired,
            pending: 0,
            policies: &policies,
        });
    }

    #[test]
    fn raw_keeps_one_sample_per_second_for_an_hour() {
        let mut h = History::new();
        for i in 0..20_000 {
            tick(&mut h, T0 + i * 250, 3, Some(50.0));
        }
        // 5000 s of ticks every 250 ms: one per second, the last hour.
        assert_eq!(h.raw_len(), RAW_CAP);
        assert_eq!(h.raw.readings.len(), h.raw_len());
    }

    #[test]
    fn an_hour_at_ten_seconds_gives_360_points() {
        let mut h = History::new();
        for i in 0..=720 {
            tick(
                &mut h,
                T0 + i * 10_000,
                u32::try_from(i % 7).unwrap(),
                Some(60.0),
            );
        }
        let now = at(T0 + 7_200_000);
        let d = h.points(now, RAW_SPAN, 360);
        assert_eq!(d.step, Duration::from_secs(10));
        assert_eq!(d.points.len(), 360);
        let last = d.points.last().unwrap();
        assert_eq!(last.t, now);
        assert_eq!(last.desired, 720 % 7);
        assert_eq!(
            last.policies[0].1,
            Reading {
                value: Some(60.0),
                target: Some(60.0)
            }
        );
    }

    #[test]
    fn a_day_comes_from_minutes_and_means_values() {
        let mut h = History::new();
        // 25 h of ticks every 15 s; value alternates 40 / 80 → mean 60.
        let n = 25 * 240;
        for i in 0..=n {
            let v = if i % 2 == 0 { 40.0 } else { 80.0 };
            tick(&mut h, T0 + i * 15_000, 4, Some(v));
        }
        assert!(h.minute_len() <= MINUTE_CAP);
        let now = at(T0 + n * 15_000);
        let d = h.points(now, MINUTE_SPAN, 1000);
        assert_eq!(d.step, Duration::from_secs(87));
        assert!(d.points.len() <= 1000);
        assert!(d.points.len() > 900, "{}", d.points.len());
        for p in &d.points[..d.points.len() - 1] {
            let v = p.policies[0].1.value.unwrap();
            assert!((v - 60.0).abs() < 10.0, "{v}");
        }
        let d = h.points(now, MINUTE_SPAN, 24);
        assert_eq!(d.step, Duration::from_secs(3600));
        assert_eq!(d.points.len(), 24);
        let d = h.points(now, Duration::from_secs(6 * 3600), 1000);
        assert_eq!(d.step, Duration::from_secs(60));
        assert_eq!(d.points.len(), 360);
    }

    #[test]
    fn missing_values_stay_null_and_policies_may_change() {
        let mut h = History::new();
        tick(&mut h, T0, 1, None);
        let other = [(
            "queue",
            Reading {
                value: Some(5.0),
                target: None,
            },
        )];
        h.record(&Tick {
            at: at(T0 + 1000),
            desired: 2,
            running: 1,
            pending: 1,
            policies: &other,
        });
        let d = h.points(at(T0 + 1000), Duration::from_secs(60), 1);
        assert_eq!(d.points.len(), 1);
        let p = &d.points[0];
        assert_eq!((p.desired, p.running, p.pending), (2, 1, 1));
        assert_eq!(p.policies.len(), 2);
        assert_eq!(
            p.policies[0].1,
            Reading {
                value: None,
                target: Some(60.0)
            }
        );
        assert_eq!(
            p.policies[1].1,
            Reading {
                value: Some(5.0),
                target: None
            }
        );
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(json["policies"]["cpu"]["value"], serde_json::Value::Null);
        assert_eq!(json["policies"]["queue"]["value"], 5.0);
    }

    #[test]
    fn time_going_back_is_ignored() {
        let mut h = History::new();
        tick(&mut h, T0 + 5000, 3, Some(1.0));
        tick(&mut h, T0, 9, Some(1.0));
        assert_eq!(h.raw_len(), 1);
        assert_eq!(h.latest(), Some(at(T0 + 5000)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn bounded_monotonic_and_covering(
            gaps in prop::collection::vec(1i64..200_000, 1..3000),
            policies in 0usize..3,
            max_points in 1usize..1200,
            window in prop::sample::select(vec![3600u64, 6 * 3600, 24 * 3600]),
        ) {
            let names = ["a", "b", "c"];
            let mut h = History::new();
            let mut t = T0;
            for (i, gap) in gaps.iter().enumerate() {
                t += gap;
                let readings: Vec<(&str, Reading)> = names[..policies]
                    .iter()
                    .map(|n| (*n, Reading { value: Some(i as f64), target: Some(1.0) }))
                    .collect();
                h.record(&Tick {
                    at: at(t),
                    desired: u32::try_from(i).unwrap(),
                    running: 0,
                    pending: 0,
                    policies: &readings,
                });
                prop_assert!(h.raw_len() <= RAW_CAP);
                prop_assert!(h.minute_len() <= MINUTE_CAP);
                // No slack beyond the caps.
                prop_assert!(h.raw.slots.capacity() <= RAW_CAP);
                prop_assert!(h.minutes.slots.capacity() <= MINUTE_CAP);
                prop_assert!(h.raw.readings.capacity() <= (RAW_CAP * policies).max(8));
                prop_assert_eq!(h.raw.readings.len(), h.raw_len() * policies);
                prop_assert_eq!(h.minutes.readings.len(), h.minute_len() * policies);
            }
            let now = at(t);
            let window = Duration::from_secs(window);
            let d = h.points(now, window, max_points);
            prop_assert!(d.points.len() <= max_points);
            prop_assert!(d.step.as_millis() * max_points as u128 >= window.as_millis());
            let start = now.as_millisecond() - span_ms(window);
            for pair in d.points.windows(2) {
                prop_assert!(pair[0].t < pair[1].t);
            }
            for p in &d.points {
                prop_assert!(p.t.as_millisecond() > start && p.t <= now);
                prop_assert_eq!(p.policies.len(), policies);
            }
            // Cover: the newest sample is the last point; every raw sample in a
            // short window lies in a step that has a point.
            prop_assert_eq!(d.points.last().map(|p| p.t), Some(now));
            if window <= RAW_SPAN {
                let step = i64::try_from(d.step.as_millis()).unwrap();
                let steps = |ts: &mut dyn Iterator<Item = i64>| {
                    let mut v: Vec<i64> = ts.filter(|t| *t > start).map(|t| (t - start - 1) / step).collect();
                    v.dedup();
                    v
                };
                let from_raw = steps(&mut h.raw.slots.iter().map(|s| s.t_ms));
                let from_points = steps(&mut d.points.iter().map(|p| p.t.as_millisecond()));
                prop_assert_eq!(from_raw, from_points);
            }
        }
    }
}
