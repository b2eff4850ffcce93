//! The planner: combines the policies' recommendations into one decision.
//!
//! Order: fallback for missing data → combine (scale out if any asks, the largest wins;
//! scale in only if every voting policy allows, the largest of the smaller asks wins) →
//! refuse scale-in on missing/stale/degraded data → scale-in stabilization (highest
//! recommendation in the window) → rate limits → cooldowns (a larger scale-out breaks
//! through the out-cooldown; a scale-out cancels the in-cooldown) → min/max (static, or
//! a scheduled window's; never subject to cooldowns) → dry-run.
//!
//! [`plan`] does all of this from a list of [`Recommendation`]s, so it can be driven
//! (and tested) without any policy; [`Engine::evaluate`] evaluates the policies and calls
//! it. Every adjustment is recorded as a [`Step`] of the [`Decision`].
//!
//! # Rules in detail
//!
//! - **Votes.** `Desired { count }` votes `count`; `Hold` votes the current desired
//!   count; `Abstain` does not vote; `Bounds` (a scheduled window) does not vote but
//!   overrides the bounds in force; `NoData` votes through the service's [`Fallback`]
//!   (`Hold` and `LastKnownFor` vote the current count, `Tasks(n)` votes `n`) and records
//!   a [`StepKind::Fallback`] step.
//! - **Combine.** Any vote above the current count → scale out to the largest vote
//!   ([`Rule::LargestScaleOut`]); else, if there are votes and all of them are below the
//!   current count → scale in to the largest vote ([`Rule::ScaleInAllAgree`]); else, with
//!   votes → [`Rule::Hold`]; without → [`Rule::NoVotes`]. On ties the first policy in
//!   configuration order is the winner.
//! - **Missing data.** If any recommendation is `NoData` or `degraded`, the result never
//!   goes below the current count.
//! - **Stabilization** (Kubernetes HPA's rule, scale-in only). Every evaluation records
//!   its combined count (after the missing-data rule) in [`PlannerState::history`]; a
//!   scale-in goes no lower than the highest count recorded within the window. A zero
//!   window switches it off.
//! - **Rate limits**, per direction, over a sliding `period`. Only changes in the
//!   limit's own direction count: the count at the start of the period is the current
//!   count minus the scale-outs (or plus the scale-ins) applied within the period. The
//!   allowance is the larger of `tasks` and the `percent` of that starting count, the
//!   percentage rounded up for scale-out and down for scale-in, and at least 1 when
//!   `percent` is positive (so a percentage limit never freezes a small service).
//! - **Cooldowns** (AWS). During the out-cooldown (for `cooldown.out` after the last
//!   scale-out) a scale-out is allowed only if it goes above where the last one ended;
//!   during the in-cooldown (for `cooldown.in` after the last scale-in) no scale-in. A
//!   scale-out clears the in-cooldown ([`PlannerState::applied`]). Cooldowns come after
//!   the rate limits so that they judge the number that would actually be applied: a
//!   larger ask that a rate limit trims back to no more than the last scale-out is held.
//! - **Bounds** come last and are subject to nothing else: the static `[min, max]`,
//!   each side overridden by an active scheduled window (when several windows set the
//!   same side, the later one in configuration order wins). When the resulting min is
//!   above the max, the max wins (the min is lowered to it): a max is a cost or safety
//!   ceiling. Bounds also win over the missing-data rule: a count above the max is
//!   lowered even without data (the operator's intent), one below the min is raised.
//! - **Operator controls** ([`Controls`], given to [`plan_with`] /
//!   [`Engine::evaluate_with`]). An override in force replaces its side of the bounds
//!   (configured or scheduled) until it expires. A paused direction comes last of all:
//!   a result that would move that way is held at the current count with a
//!   [`StepKind::Paused`] step, even when the count is outside the bounds (a pause means
//!   "do not touch": the operator resumes to let the bounds act).
//! - **Dry-run.** The decision is computed as usual, marked `dry_run` and given a
//!   [`StepKind::DryRun`] step; [`PlannerState::applied`] ignores it.
//!
//! Windows are half-open: something that happened at `t` counts while `now < t + window`.
//! The planner is deterministic: the same inputs and the same state give the same
//! decision and the same new state.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::clock::{add, sub};
use crate::controls::Controls;
use crate::decision::{Action, Decision, Rule, Step, StepKind};
use crate::metrics::Observations;
use crate::model::{Bounds, Capacity};
use crate::policy::{Ask, NamedPolicy, PolicyInput, PolicyState, Recommendation};

/// Per-direction cooldowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Cooldowns {
    /// After a scale-out, further scale-out only if larger.
    pub out: Duration,
    /// After a scale-in, no scale-in.
    pub r#in: Duration,
}

/// A limit on how much capacity may change in one direction within `period`.
/// When both `tasks` and `percent` are set, the larger allowance applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateLimit {
    /// At most this many tasks per period.
    pub tasks: Option<u32>,
    /// At most this percentage of the capacity at the start of the period.
    pub percent: Option<f64>,
    /// The sliding period.
    pub period: Duration,
}

/// Rate limits per direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct RateLimits {
    /// Scale-out limit.
    pub out: Option<RateLimit>,
    /// Scale-in limit.
    pub r#in: Option<RateLimit>,
}

impl RateLimits {
    /// The longest period of the two limits (zero when none is set): how long applied
    /// changes must be remembered.
    pub fn longest_period(&self) -> Duration {
        let out = self.out.map_or(Duration::ZERO, |l| l.period);
        let inn = self.r#in.map_or(Duration::ZERO, |l| l.period);
        out.max(inn)
    }
}

/// What to do when a policy's source is missing, stale or failing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Keep the current count (the policy votes to hold).
    #[default]
    Hold,
    /// Ask for this many tasks (but never scale in on missing data).
    Tasks(u32),
    /// Use the newest sample while it is no older than this; after that, hold.
    LastKnownFor(Duration),
}

/// The planner's settings for one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannerConfig {
    /// Static bounds.
    pub bounds: Bounds,
    /// Cooldowns.
    pub cooldown: Cooldowns,
    /// Scale-in stabilization window (0 = off).
    pub stabilization: Duration,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Fallback for missing data.
    pub fallback: Fallback,
    /// Compute, record, but never apply.
    pub dry_run: bool,
}

/// A change that was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// When.
    pub at: Timestamp,
    /// Desired before.
    pub from: u32,
    /// Desired after.
    pub to: u32,
}

/// What the planner remembers between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannerState {
    /// The last applied scale-out (starts the out-cooldown).
    pub last_out: Option<Applied>,
    /// The last applied scale-in (starts the in-cooldown).
    pub last_in: Option<Applied>,
    /// Recent combined recommendations for stabilization (time, count). Only entries
    /// that can still be the highest of a future window are kept: an entry is dropped
    /// once a later entry is at least as high, so the deque stays short.
    pub history: VecDeque<(Timestamp, u32)>,
    /// Applied changes within the longest rate-limit period.
    pub changes: VecDeque<Applied>,
    /// How long [`changes`](Self::changes) are kept: the longest rate-limit period,
    /// set by [`plan`] from the configuration.
    pub change_horizon: Duration,
}

impl PlannerState {
    /// Adds the combined recommendation `count` at `at` to the stabilization history,
    /// dropping the entries before it that are no higher (they can no longer be the
    /// highest of a window).
    pub(crate) fn remember(&mut self, at: Timestamp, count: u32) {
        while self
            .history
            .back()
            .is_some_and(|&(t, n)| n <= count && t <= at)
        {
            self.history.pop_back();
        }
        self.history.push_back((at, count));
    }

    /// Records that `decision` was carried out at `now`.
    ///
    /// Holds and dry-runs record nothing. A change made only by the bounds (a
    /// scheduled window raising the min, a max lowered below the current count) is not
    /// policy-driven: like AWS's scheduled actions it neither starts cooldowns nor counts
    /// toward rate limits. Otherwise a scale-out becomes `last_out` and clears `last_in`
    /// (a scale-out cancels the in-cooldown), a scale-in becomes `last_in`, and the change
    /// is counted toward the rate limits.
    pub fn applied(&mut self, decision: &Decision, now: Timestamp) {
        if decision.dry_run {
            return;
        }
        let (from, to) = match decision.action {
            Action::ScaleOut { from, to } | Action::ScaleIn { from, to } => (from, to),
            Action::Hold { .. } => return,
        };
        let before_bounds = decision
            .steps
            .iter()
            .find(|s| matches!(s.kind, StepKind::Min | StepKind::Max))
            .map_or(to, |s| s.from);
        let out = to > from;
        let policy_driven = if out {
            before_bounds > from
        } else {
            before_bounds < from
        };
        if !policy_driven {
            return;
        }
        let change = Applied { at: now, from, to };
        if out {
            self.last_out = Some(change);
            self.last_in = None;
        } else {
            self.last_in = Some(change);
        }
        if !self.change_horizon.is_zero() {
            self.changes.push_back(change);
        }
        prune_changes(&mut self.changes, self.change_horizon, now);
    }
}

/// Drops changes that no rate-limit period can reach any more.
pub(crate) fn prune_changes(changes: &mut VecDeque<Applied>, horizon: Duration, now: Timestamp) {
    if horizon.is_zero() {
        changes.clear();
        return;
    }
    let cutoff = sub(now, horizon);
    changes.retain(|c| c.at > cutoff);
}

/// One service's policies and planner: the whole pure decision engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    /// Service name.
    pub service: String,
    /// Policies, in configuration order.
    pub policies: Vec<NamedPolicy>,
    /// Planner settings.
    pub planner: PlannerConfig,
}

/// Everything that changes between evaluations of one service.
#[derive(Debug, Clone, Default)]
pub struct EngineState {
    /// One state per policy, same order as `Engine::policies`.
    pub policies: Vec<PolicyState>,
    /// The planner's memory.
    pub planner: PlannerState,
}

impl Engine {
    /// The initial state for this engine.
    pub fn initial_state(&self) -> EngineState {
        EngineState {
            policies: self
                .policies
                .iter()
                .map(|p| p.policy.initial_state())
                .collect(),
            planner: PlannerState::default(),
        }
    }

    /// Evaluates every policy and plans. Records the combined recommendation in the
    /// stabilization history; call [`EngineState::applied`] once the decision's action
    /// has actually been carried out.
    ///
    /// Each policy sees a [`PolicyInput`] whose `baseline` is the count before the last
    /// scale-out while its out-cooldown runs (AWS: capacity added inside a cooldown
    /// counts toward the next step), else the current desired count; `last_known` is set
    /// for the [`Fallback::LastKnownFor`] fallback.
    pub fn evaluate(
        &self,
        state: &mut EngineState,
        capacity: Capacity,
        metrics: &Observations,
        now: Timestamp,
    ) -> Decision {
        self.evaluate_with(state, capacity, metrics, now, &Controls::NONE)
    }

    /// [`evaluate`](Self::evaluate) honouring an operator's `controls` (pause, override
    /// of the bounds): see [`plan_with`].
    pub fn evaluate_with(
        &self,
        state: &mut EngineState,
        capacity: Capacity,
        metrics: &Observations,
        now: Timestamp,
        controls: &Controls,
    ) -> Decision {
        let baseline = match state.planner.last_out {
            Some(last) if now < add(last.at, self.planner.cooldown.out) => last.from,
            _ => capacity.desired,
        };
        let last_known = match self.planner.fallback {
            Fallback::LastKnownFor(ttl) => Some(ttl),
            Fallback::Hold | Fallback::Tasks(_) => None,
        };
        let input = PolicyInput {
            now,
            capacity,
            baseline,
            metrics,
            last_known,
        };
        if state.policies.len() != self.policies.len() {
            state
                .policies
                .resize_with(self.policies.len(), PolicyState::default);
        }
        let asks = self
            .policies
            .iter()
            .zip(state.policies.iter_mut())
            .map(|(p, s)| p.policy.evaluate(&p.name, &input, s))
            .collect();
        plan_with(
            &self.planner,
            &mut state.planner,
            &self.service,
            capacity,
            asks,
            now,
            controls,
        )
    }
}

impl EngineState {
    /// Records that `decision` was carried out at `now` (starts cooldowns, counts toward
    /// rate limits). Holds and dry-runs record nothing. See [`PlannerState::applied`].
    pub fn applied(&mut self, decision: &Decision, now: Timestamp) {
        self.planner.applied(decision, now);
    }
}

/// Where a bound in force comes from.
#[derive(Debug, Clone, Copy)]
enum BoundSource {
    /// The service's configuration.
    Static,
    /// The scheduled policy at this index of the asks.
    Scheduled(usize),
    /// An operator's override, in force until this instant.
    Override(Timestamp),
}

/// Plans one decision for `service` from the policies' recommendations.
///
/// Pure apart from `state`: it records the combined count in the stabilization history
/// and prunes what has aged out. It does not record the decision as applied; call
/// [`PlannerState::applied`] (or [`EngineState::applied`]) once it has been carried
/// out. See the [module documentation](self) for the rules.
pub fn plan(
    config: &PlannerConfig,
    state: &mut PlannerState,
    service: &str,
    capacity: Capacity,
    asks: Vec<Recommendation>,
    now: Timestamp,
) -> Decision {
    plan_with(config, state, service, capacity, asks, now, &Controls::NONE)
}

/// [`plan`] honouring an operator's `controls`: an override in force replaces its side
/// of the bounds; a paused direction is held at the current count (last of all steps).
pub fn plan_with(
    config: &PlannerConfig,
    state: &mut PlannerState,
    service: &str,
    capacity: Capacity,
    asks: Vec<Recommendation>,
    now: Timestamp,
    controls: &Controls,
) -> Decision {
    let current = capacity.desired;
    let mut steps = Vec::new();

    // Bounds in force and votes, in one pass over the asks.
    let (mut min, mut min_source) = (config.bounds.min, BoundSource::Static);
    let (mut max, mut max_source) = (config.bounds.max, BoundSource::Static);
    let mut votes = 0usize;
    let mut largest: Option<(usize, u32)> = None;
    let mut first_at_current: Option<usize> = None;
    let mut any_above = false;
    let mut all_below = true;
    let mut missing_data = false;
    for (i, rec) in asks.iter().enumerate() {
        missing_data |= rec.degraded;
        let vote = match &rec.ask {
            Ask::Desired { count } => Some(*count),
            Ask::Hold => Some(current),
            Ask::Abstain => None,
            Ask::Bounds { min: lo, max: hi } => {
                if let Some(lo) = *lo {
                    (min, min_source) = (lo, BoundSource::Scheduled(i));
                }
                if let Some(hi) = *hi {
                    (max, max_source) = (hi, BoundSource::Scheduled(i));
                }
                None
            }
            Ask::NoData { sources } => {
                missing_data = true;
                let (vote, what) = match config.fallback {
                    Fallback::Hold => (current, format!("fallback hold at {current}")),
                    Fallback::Tasks(n) => (n, format!("fallback asks {n}")),
                    Fallback::LastKnownFor(ttl) => (
                        current,
                        format!("no value newer than {}; hold at {current}", human(ttl)),
                    ),
                };
                steps.push(Step {
                    kind: StepKind::Fallback,
                    from: current,
                    to: vote,
                    detail: format!(
                        "{} has no data{}: {what}",
                        rec.policy,
                        from_sources(sources)
                    ),
                });
                Some(vote)
            }
        };
        if let Some(v) = vote {
            votes += 1;
            if largest.is_none_or(|(_, best)| v > best) {
                largest = Some((i, v));
            }
            any_above |= v > current;
            all_below &= v < current;
            if v == current && first_at_current.is_none() {
                first_at_current = Some(i);
            }
        }
    }
    if let Some(o) = controls.active_override(now) {
        if let Some(lo) = o.min {
            (min, min_source) = (lo, BoundSource::Override(o.until));
        }
        if let Some(hi) = o.max {
            (max, max_source) = (hi, BoundSource::Override(o.until));
        }
    }
    if min > max {
        min = max;
    }

    // Combine.
    let (rule, winner, combined) = match largest {
        Some((i, v)) if any_above => (Rule::LargestScaleOut, Some(i), v),
        Some((i, v)) if all_below => (Rule::ScaleInAllAgree, Some(i), v),
        Some(_) => (Rule::Hold, first_at_current, current),
        None => (Rule::NoVotes, None, current),
    };
    debug_assert!(votes > 0 || rule == Rule::NoVotes);
    let mut result = combined;

    // Never scale in on missing, stale or degraded data.
    if missing_data && result < current {
        steps.push(Step {
            kind: StepKind::MissingData,
            from: result,
            to: current,
            detail: missing_data_detail(&asks),
        });
        result = current;
    }

    // Scale-in stabilization: the highest recommendation of the window.
    if config.stabilization.is_zero() {
        state.history.clear();
    } else {
        let cutoff = sub(now, config.stabilization);
        state.history.retain(|&(at, _)| at > cutoff);
        state.remember(now, result);
        if result < current {
            let highest = state
                .history
                .iter()
                .map(|&(_, n)| n)
                .max()
                .unwrap_or(result);
            let held = highest.min(current);
            if held != result {
                steps.push(Step {
                    kind: StepKind::Stabilization,
                    from: result,
                    to: held,
                    detail: format!(
                        "highest recommendation in the last {} is {highest}",
                        human(config.stabilization)
                    ),
                });
                result = held;
            }
        }
    }

    // Rate limits, then cooldowns: a cooldown judges the number that would be applied,
    // so a breakthrough trimmed by a rate limit to no more than the last scale-out is
    // held.
    state.change_horizon = config.rate_limits.longest_period();
    prune_changes(&mut state.changes, state.change_horizon, now);
    result = rate_limits(config, state, current, result, now, &mut steps);
    result = cooldowns(config, state, current, result, now, &mut steps);

    // Bounds, last: never subject to cooldowns or rate limits.
    let describe = |side: &str, n: u32, source: BoundSource| match source {
        BoundSource::Static => format!("{side} {n}"),
        BoundSource::Scheduled(i) => format!("scheduled {side} {n} ({})", asks[i].policy),
        BoundSource::Override(until) => format!("operator override {side} {n} (until {until})"),
    };
    if result < min {
        steps.push(Step {
            kind: StepKind::Min,
            from: result,
            to: min,
            detail: describe("min", min, min_source),
        });
        result = min;
    } else if result > max {
        steps.push(Step {
            kind: StepKind::Max,
            from: result,
            to: max,
            detail: describe("max", max, max_source),
        });
        result = max;
    }

    // Operator pause, last: a paused direction never moves.
    let paused = if result < current && controls.paused.scale_in {
        Some("scale-in")
    } else if result > current && controls.paused.scale_out {
        Some("scale-out")
    } else {
        None
    };
    if let Some(direction) = paused {
        steps.push(Step {
            kind: StepKind::Paused,
            from: result,
            to: current,
            detail: format!("paused by operator ({direction})"),
        });
        result = current;
    }

    if config.dry_run {
        steps.push(Step {
            kind: StepKind::DryRun,
            from: result,
            to: result,
            detail: "dry run: computed, not applied".to_owned(),
        });
    }

    let action = match result.cmp(&current) {
        std::cmp::Ordering::Greater => Action::ScaleOut {
            from: current,
            to: result,
        },
        std::cmp::Ordering::Less => Action::ScaleIn {
            from: current,
            to: result,
        },
        std::cmp::Ordering::Equal => Action::Hold { at: current },
    };
    let winner = winner.map(|i| asks[i].policy.clone());
    Decision {
        service: service.to_owned(),
        at: now,
        capacity,
        asks,
        rule,
        winner,
        combined,
        min,
        max,
        steps,
        action,
        dry_run: config.dry_run,
    }
}

/// The per-direction cooldowns (AWS): returns the result, held at `current` when a
/// cooldown refuses it.
fn cooldowns(
    config: &PlannerConfig,
    state: &PlannerState,
    current: u32,
    result: u32,
    now: Timestamp,
    steps: &mut Vec<Step>,
) -> u32 {
    if result > current
        && let Some(last) = state.last_out
    {
        let until = add(last.at, config.cooldown.out);
        if now < until && result <= last.to {
            steps.push(Step {
                kind: StepKind::OutCooldown,
                from: result,
                to: current,
                detail: format!(
                    "out-cooldown until {until} after {} → {}, and {result} is not above {}",
                    last.from, last.to, last.to
                ),
            });
            return current;
        }
    } else if result < current
        && let Some(last) = state.last_in
    {
        let until = add(last.at, config.cooldown.r#in);
        if now < until {
            steps.push(Step {
                kind: StepKind::InCooldown,
                from: result,
                to: current,
                detail: format!(
                    "in-cooldown until {until} after {} → {}",
                    last.from, last.to
                ),
            });
            return current;
        }
    }
    result
}

/// The per-direction rate limits over their sliding periods; `state.changes` must
/// already be pruned.
fn rate_limits(
    config: &PlannerConfig,
    state: &PlannerState,
    current: u32,
    result: u32,
    now: Timestamp,
    steps: &mut Vec<Step>,
) -> u32 {
    if result > current
        && let Some(limit) = config.rate_limits.out
    {
        let added = moved(state, sub(now, limit.period), Direction::Out);
        let start = u64::from(current).saturating_sub(added);
        let allowance = allowance(&limit, start, Direction::Out);
        let cap = u32::try_from(start.saturating_add(allowance))
            .unwrap_or(u32::MAX)
            .max(current);
        if result > cap {
            steps.push(Step {
                kind: StepKind::RateLimitOut,
                from: result,
                to: cap,
                detail: format!(
                    "at most +{allowance} per {} from {start}",
                    human(limit.period)
                ),
            });
            return cap;
        }
    } else if result < current
        && let Some(limit) = config.rate_limits.r#in
    {
        let removed = moved(state, sub(now, limit.period), Direction::In);
        let start = u64::from(current).saturating_add(removed);
        let allowance = allowance(&limit, start, Direction::In);
        let floor = u32::try_from(start.saturating_sub(allowance))
            .unwrap_or(u32::MAX)
            .min(current);
        if result < floor {
            steps.push(Step {
                kind: StepKind::RateLimitIn,
                from: result,
                to: floor,
                detail: format!(
                    "at most −{allowance} per {} from {start}",
                    human(limit.period)
                ),
            });
            return floor;
        }
    }
    result
}

/// Which way a rate limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Out,
    In,
}

/// How many tasks the applied changes after `cutoff` moved in `direction`.
fn moved(state: &PlannerState, cutoff: Timestamp, direction: Direction) -> u64 {
    state
        .changes
        .iter()
        .filter(|c| c.at > cutoff)
        .map(|c| match direction {
            Direction::Out => c.to.saturating_sub(c.from),
            Direction::In => c.from.saturating_sub(c.to),
        })
        .map(u64::from)
        .sum()
}

/// How many tasks `limit` allows to move from `start` within its period.
fn allowance(limit: &RateLimit, start: u64, direction: Direction) -> u64 {
    let by_tasks = limit.tasks.map(u64::from);
    let by_percent = limit.percent.map(|pct| {
        if !(pct.is_finite() && pct > 0.0) {
            return 0;
        }
        // Start counts fit exactly in an f64; the tiny epsilon absorbs representation
        // error so that, e.g., 10 × 30 % is 3, not 4.
        #[allow(clippy::cast_precision_loss)]
        let exact = start as f64 * pct / 100.0;
        let rounded = match direction {
            Direction::Out => (exact - 1e-9).ceil(),
            Direction::In => (exact + 1e-9).floor(),
        };
        // `as` saturates (and maps NaN to 0), which is what we want here.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = rounded as u64;
        n.max(1)
    });
    match (by_tasks, by_percent) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => u64::MAX,
    }
}

/// ` from a, b` (or nothing when no source is named).
fn from_sources(sources: &[String]) -> String {
    if sources.is_empty() {
        String::new()
    } else {
        format!(" from {}", sources.join(", "))
    }
}

/// Names every recommendation that lacked fresh data.
fn missing_data_detail(asks: &[Recommendation]) -> String {
    let mut out = String::new();
    for rec in asks {
        let part = match &rec.ask {
            Ask::NoData { sources } => {
                format!("{} has no data{}", rec.policy, from_sources(sources))
            }
            _ if rec.degraded => format!("{} runs on a last-known value", rec.policy),
            _ => continue,
        };
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&part);
    }
    out
}

/// A duration as a config would write it: `90s` → `1m30s`, `2h`, `500ms`.
pub fn human(d: Duration) -> String {
    let total = d.as_secs();
    let millis = d.subsec_millis();
    if total == 0 {
        return format!("{millis}ms");
    }
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if millis > 0 {
        let frac = format!("{millis:03}");
        let _ = write!(out, "{s}.{}s", frac.trim_end_matches('0'));
    } else if s > 0 {
        let _ = write!(out, "{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::ZERO), "0ms");
    }

    #[test]
    fn percent_allowance_rounds_by_direction_and_never_freezes() {
        let limit = RateLimit {
            tasks: None,
            percent: Some(30.0),
            period: Duration::from_secs(60),
        };
        assert_eq!(allowance(&limit, 10, Direction::Out), 3);
        assert_eq!(allowance(&limit, 11, Direction::Out), 4);
        assert_eq!(allowance(&limit, 11, Direction::In), 3);
        assert_eq!(allowance(&limit, 1, Direction::In), 1);
        assert_eq!(allowance(&limit, 0, Direction::Out), 1);
        let both = RateLimit {
            tasks: Some(5),
            ..limit
        };
        assert_eq!(allowance(&both, 10, Direction::Out), 5);
        assert_eq!(allowance(&both, 100, Direction::Out), 30);
        let zero = RateLimit {
            tasks: Some(0),
            percent: None,
            period: Duration::from_secs(60),
        };
        assert_eq!(allowance(&zero, 100, Direction::Out), 0);
    }
}
