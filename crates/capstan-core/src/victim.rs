//! Victim selection: which tasks to stop when a service shrinks.
//!
//! Two entry points:
//! - [`choose`], the original order: tasks that are not running (pending, already
//!   draining) go first, then idle, unprotected tasks before busy ones (fewest sessions
//!   first), then the newest, then by id so the choice is deterministic. Protected tasks
//!   are never chosen.
//! - [`select`], driven by a [`VictimPolicy`]: it never cuts live work off unless the
//!   policy allows it (the service drains victims until a deadline), never chooses an
//!   unhealthy task (ECS is already replacing it), orders idle running tasks by
//!   configurable keys ([`VictimOrder`]: zone balance, newest, oldest, fewest sessions)
//!   and says why, in a [`Shortfall`], when fewer tasks than wanted can go.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{Task, TaskId, TaskState};

/// Picks up to `count` tasks to stop from `tasks`, in the order they should go.
/// Stopped and stopping tasks and protected tasks are never picked, so fewer than
/// `count` may come back.
pub fn choose(tasks: &[Task], count: usize) -> Vec<TaskId> {
    let mut candidates: Vec<&Task> = tasks
        .iter()
        .filter(|t| !t.protected && !matches!(t.state, TaskState::Stopped | TaskState::Stopping))
        .collect();
    candidates.sort_by(|a, b| {
        let rank = |t: &Task| match t.state {
            TaskState::Draining => 0,
            TaskState::Pending => 1,
            _ => 2,
        };
        rank(a)
            .cmp(&rank(b))
            .then(a.sessions.cmp(&b.sessions))
            .then(b.started_at.cmp(&a.started_at))
            .then(a.id.cmp(&b.id))
    });
    candidates
        .into_iter()
        .take(count)
        .map(|t| t.id.clone())
        .collect()
}

/// One key of the order in which idle running tasks are chosen by [`select`]. Idle
/// tasks always come before busy ones; these keys order the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VictimOrder {
    /// Fewest live sessions first (only tells busy tasks apart: idle ones all have 0).
    FewestSessions,
    /// Latest `started_at` first.
    Newest,
    /// Earliest `started_at` first.
    Oldest,
    /// Each victim from the zone that has the most running tasks left, so the zones
    /// stay as even as possible. Tasks without a zone count as one zone.
    ZoneBalance,
}

impl VictimOrder {
    /// Every key, in the order the accepted names are listed.
    pub const ALL: [VictimOrder; 4] = [
        VictimOrder::FewestSessions,
        VictimOrder::Newest,
        VictimOrder::Oldest,
        VictimOrder::ZoneBalance,
    ];

    /// The configuration name: `fewest_sessions`, `newest`, `oldest` or `zone_balance`.
    pub fn as_str(self) -> &'static str {
        match self {
            VictimOrder::FewestSessions => "fewest_sessions",
            VictimOrder::Newest => "newest",
            VictimOrder::Oldest => "oldest",
            VictimOrder::ZoneBalance => "zone_balance",
        }
    }
}

impl fmt::Display for VictimOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A victim order name that is not one of [`VictimOrder::ALL`]; its message lists the
/// accepted names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown victim order {0:?}; accepted: fewest_sessions, newest, oldest, zone_balance")]
pub struct UnknownVictimOrder(pub String);

impl FromStr for VictimOrder {
    type Err = UnknownVictimOrder;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VictimOrder::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownVictimOrder(s.to_owned()))
    }
}

/// How [`select`] chooses victims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VictimPolicy {
    /// The keys ordering idle running tasks, in turn (task id breaks the last ties).
    /// Idle-before-busy is always the first key and is not listed.
    pub order: Vec<VictimOrder>,
    /// Whether running tasks with live work may be chosen (after every idle one, fewest
    /// sessions first). True when the service sets a drain deadline.
    pub allow_busy: bool,
}

impl Default for VictimPolicy {
    /// Zone balance, then newest; busy tasks are never chosen.
    fn default() -> Self {
        Self {
            order: vec![VictimOrder::ZoneBalance, VictimOrder::Newest],
            allow_busy: false,
        }
    }
}

/// Why [`select`] chose fewer tasks than wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    /// How many victims were asked for.
    pub wanted: usize,
    /// How many were chosen (fewer than `wanted`).
    pub chosen: usize,
    /// One sentence for operators, counting the tasks left out per cause, e.g.
    /// "only 1 of 3 tasks can go: 5 tasks have live sessions, 1 is protected".
    pub reason: String,
}

/// What [`select`] chose.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Selection {
    /// The tasks to stop, in the order they should go.
    pub victims: Vec<TaskId>,
    /// How many of the victims have live work (sessions > 0), whatever their state.
    pub busy: usize,
    /// Set when fewer than the wanted count could be chosen, with the reason.
    pub shortfall: Option<Shortfall>,
}

/// Picks up to `count` tasks to stop from `tasks`, in the order they should go.
///
/// - Pending and draining tasks go first (they do no useful work; a draining task is
///   already leaving): draining before pending, then fewest sessions, newest, id.
/// - Then idle running tasks, ordered by `policy.order` in turn and finally by id.
/// - Then, only when `policy.allow_busy`, running tasks with live work: fewest sessions
///   first, then `policy.order`, then id.
///
/// Stopped, stopping, protected and unhealthy tasks are never chosen. An unhealthy
/// task (its health check fails: ECS `healthStatus` UNHEALTHY; a task without a health
/// check counts as healthy) is one ECS is already replacing: stopping it as a victim
/// while lowering the desired count would race ECS's own replacement, so the safe
/// scale-in leaves it to ECS and picks among the others. With
/// [`VictimOrder::ZoneBalance`], victims are picked one at a time, each from the zone
/// with the most running tasks left (running tasks that are not yet victims, protected
/// and busy ones included), ties broken by the following keys.
///
/// When fewer than `count` tasks can go, [`Selection::shortfall`] says why.
pub fn select(tasks: &[Task], count: usize, policy: &VictimPolicy) -> Selection {
    let mut excluded = Excluded::default();
    let mut leaving: Vec<&Task> = Vec::new();
    let mut running: Vec<&Task> = Vec::new();
    for t in tasks {
        match t.state {
            TaskState::Stopped | TaskState::Stopping => excluded.stopping += 1,
            _ if t.protected => excluded.protected += 1,
            _ if !t.healthy => excluded.unhealthy += 1,
            TaskState::Pending | TaskState::Draining => leaving.push(t),
            TaskState::Running if t.sessions > 0 && !policy.allow_busy => excluded.busy += 1,
            TaskState::Running => running.push(t),
        }
    }

    leaving.sort_by(|a, b| {
        let rank = |t: &Task| match t.state {
            TaskState::Draining => 0,
            _ => 1,
        };
        rank(a)
            .cmp(&rank(b))
            .then(a.sessions.cmp(&b.sessions))
            .then(b.started_at.cmp(&a.started_at))
            .then(a.id.cmp(&b.id))
    });
    let mut chosen: Vec<&Task> = leaving.into_iter().take(count).collect();
    let rest = count - chosen.len();
    if rest > 0 {
        chosen.extend(pick_running(tasks, running, rest, &policy.order));
    }

    let busy = chosen.iter().filter(|t| t.sessions > 0).count();
    let shortfall = (chosen.len() < count).then(|| Shortfall {
        wanted: count,
        chosen: chosen.len(),
        reason: excluded.reason(count, chosen.len()),
    });
    Selection {
        victims: chosen.into_iter().map(|t| t.id.clone()).collect(),
        busy,
        shortfall,
    }
}

/// The zone a task counts in (`None`: the one zone of the tasks without one).
type Zone<'a> = Option<&'a str>;

/// Picks up to `count` of the running candidates, one at a time, as [`select`] says.
///
/// Within one zone the zone-balance key is equal, so each zone's candidates are sorted
/// once by the other keys; each step compares only the zones' heads, with the zone
/// counts of that moment.
fn pick_running<'a>(
    tasks: &'a [Task],
    candidates: Vec<&'a Task>,
    count: usize,
    order: &[VictimOrder],
) -> Vec<&'a Task> {
    let mut left: HashMap<Zone<'a>, usize> = HashMap::new();
    for t in tasks.iter().filter(|t| t.state == TaskState::Running) {
        *left.entry(t.zone.as_deref()).or_default() += 1;
    }
    let mut queues: HashMap<Zone<'a>, Vec<&'a Task>> = HashMap::new();
    for t in candidates {
        queues.entry(t.zone.as_deref()).or_default().push(t);
    }
    let mut queues: Vec<std::iter::Peekable<std::vec::IntoIter<&'a Task>>> = queues
        .into_values()
        .map(|mut q| {
            q.sort_by(|a, b| compare(a, b, order, &left));
            q.into_iter().peekable()
        })
        .collect();

    let mut picked = Vec::with_capacity(count);
    while picked.len() < count {
        let mut best: Option<(usize, &'a Task)> = None;
        for (i, q) in queues.iter_mut().enumerate() {
            if let Some(&head) = q.peek() {
                let better = match best {
                    None => true,
                    Some((_, b)) => compare(head, b, order, &left) == Ordering::Less,
                };
                if better {
                    best = Some((i, head));
                }
            }
        }
        let Some((i, t)) = best else { break };
        queues[i].next();
        if let Some(n) = left.get_mut(&t.zone.as_deref()) {
            *n = n.saturating_sub(1);
        }
        picked.push(t);
    }
    picked
}

/// The order of two running candidates: idle (fewest sessions) first, then the policy's
/// keys with the zone counts `left`, then id.
fn compare(a: &Task, b: &Task, order: &[VictimOrder], left: &HashMap<Zone<'_>, usize>) -> Ordering {
    let zone_left = |t: &Task| left.get(&t.zone.as_deref()).copied().unwrap_or(0);
    let mut o = a.sessions.cmp(&b.sessions);
    for key in order {
        if o != Ordering::Equal {
            return o;
        }
        o = match key {
            VictimOrder::FewestSessions => a.sessions.cmp(&b.sessions),
            VictimOrder::Newest => b.started_at.cmp(&a.started_at),
            VictimOrder::Oldest => a.started_at.cmp(&b.started_at),
            VictimOrder::ZoneBalance => zone_left(b).cmp(&zone_left(a)),
        };
    }
    o.then_with(|| a.id.cmp(&b.id))
}

/// How many tasks [`select`] left out, per cause (each task counted once: stopping
/// first, then protected, then unhealthy, then busy).
#[derive(Debug, Default)]
struct Excluded {
    busy: usize,
    protected: usize,
    unhealthy: usize,
    stopping: usize,
}

impl Excluded {
    /// The operator's sentence for a shortfall: `chosen` of `wanted` and why.
    fn reason(&self, wanted: usize, chosen: usize) -> String {
        let head = if chosen == 0 {
            format!("no task can go ({wanted} wanted)")
        } else {
            format!("only {chosen} of {wanted} tasks can go")
        };
        let causes = [
            (self.busy, "has live sessions", "have live sessions"),
            (self.protected, "is protected", "are protected"),
            (self.unhealthy, "is unhealthy", "are unhealthy"),
            (
                self.stopping,
                "is stopping or stopped",
                "are stopping or stopped",
            ),
        ];
        let mut parts = Vec::new();
        for (n, one, many) in causes {
            if n == 0 {
                continue;
            }
            let verb = if n == 1 { one } else { many };
            if parts.is_empty() {
                let noun = if n == 1 { "task" } else { "tasks" };
                parts.push(format!("{n} {noun} {verb}"));
            } else {
                parts.push(format!("{n} {verb}"));
            }
        }
        if parts.is_empty() {
            format!("{head}: there are no other tasks")
        } else {
            format!("{head}: {}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn task(id: &str, started: i64, sessions: u32, state: TaskState, protected: bool) -> Task {
        Task {
            id: TaskId(id.into()),
            started_at: Timestamp::from_second(started).unwrap(),
            zone: None,
            state,
            sessions,
            protected,
            healthy: true,
        }
    }

    #[test]
    fn idle_first_then_newest() {
        let tasks = vec![
            task("old-idle", 100, 0, TaskState::Running, false),
            task("new-busy", 300, 2, TaskState::Running, false),
            task("new-idle", 200, 0, TaskState::Running, false),
            task("prot", 400, 0, TaskState::Running, true),
            task("gone", 500, 0, TaskState::Stopped, false),
        ];
        let ids: Vec<String> = choose(&tasks, 3).iter().map(|t| t.to_string()).collect();
        assert_eq!(ids, vec!["new-idle", "old-idle", "new-busy"]);
        assert_eq!(choose(&tasks, 10).len(), 3);
    }

    #[test]
    fn pending_before_running() {
        let tasks = vec![
            task("run", 100, 0, TaskState::Running, false),
            task("pend", 50, 0, TaskState::Pending, false),
        ];
        assert_eq!(choose(&tasks, 1), vec![TaskId("pend".into())]);
    }

    fn ztask(id: &str, started: i64, sessions: u32, zone: Option<&str>) -> Task {
        Task {
            zone: zone.map(Into::into),
            ..task(id, started, sessions, TaskState::Running, false)
        }
    }

    fn ids(s: &Selection) -> Vec<String> {
        s.victims.iter().map(|t| t.to_string()).collect()
    }

    fn policy(order: &[VictimOrder], allow_busy: bool) -> VictimPolicy {
        VictimPolicy {
            order: order.to_vec(),
            allow_busy,
        }
    }

    /// Six running tasks, `busy` of them (t0, t1, ...) with live sessions.
    fn six(busy: usize) -> Vec<Task> {
        (0..6)
            .map(|i| {
                let sessions = if i < busy { 6 - i as u32 } else { 0 };
                task(
                    &format!("t{i}"),
                    100 + i as i64,
                    sessions,
                    TaskState::Running,
                    false,
                )
            })
            .collect()
    }

    #[test]
    fn only_idle_tasks_go() {
        let s = select(&six(3), 3, &VictimPolicy::default());
        let mut got = ids(&s);
        got.sort();
        assert_eq!(got, vec!["t3", "t4", "t5"]);
        assert_eq!(s.busy, 0);
        assert_eq!(s.shortfall, None);
    }

    #[test]
    fn shortfall_counts_busy_tasks() {
        let s = select(&six(5), 3, &VictimPolicy::default());
        assert_eq!(ids(&s), vec!["t5"]);
        let short = s.shortfall.unwrap();
        assert_eq!((short.wanted, short.chosen), (3, 1));
        assert_eq!(
            short.reason,
            "only 1 of 3 tasks can go: 5 tasks have live sessions"
        );
    }

    #[test]
    fn shortfall_names_every_cause() {
        let mut tasks = six(5);
        tasks.push(task("p", 1, 0, TaskState::Running, true));
        tasks.push(task("s", 1, 0, TaskState::Stopping, false));
        tasks.push(task("x", 1, 0, TaskState::Stopped, false));
        tasks.push(sick(task("u", 1, 0, TaskState::Running, false)));
        let s = select(&tasks, 3, &VictimPolicy::default());
        assert_eq!(
            s.shortfall.unwrap().reason,
            "only 1 of 3 tasks can go: 5 tasks have live sessions, 1 is protected, \
             1 is unhealthy, 2 are stopping or stopped"
        );
        let none = select(&tasks[..1], 1, &VictimPolicy::default());
        assert_eq!(
            none.shortfall.unwrap().reason,
            "no task can go (1 wanted): 1 task has live sessions"
        );
        let few = select(&six(0), 7, &VictimPolicy::default());
        assert_eq!(
            few.shortfall.unwrap().reason,
            "only 6 of 7 tasks can go: there are no other tasks"
        );
    }

    fn sick(t: Task) -> Task {
        Task {
            healthy: false,
            ..t
        }
    }

    #[test]
    fn unhealthy_tasks_never_go() {
        // t4 and t5, the newest, fail their health checks: ECS replaces them.
        let mut tasks = six(0);
        tasks[4] = sick(tasks[4].clone());
        tasks[5] = sick(tasks[5].clone());
        let s = select(&tasks, 2, &policy(&[VictimOrder::Newest], false));
        assert_eq!(ids(&s), vec!["t3", "t2"]);
        assert_eq!(s.shortfall, None);

        let s = select(&tasks, 6, &policy(&[VictimOrder::Newest], true));
        assert_eq!(ids(&s), vec!["t3", "t2", "t1", "t0"]);
        let short = s.shortfall.unwrap();
        assert_eq!((short.wanted, short.chosen), (6, 4));
        assert_eq!(
            short.reason,
            "only 4 of 6 tasks can go: 2 tasks are unhealthy"
        );

        // Neither pending nor draining: an unhealthy task is never chosen.
        let tasks = vec![
            sick(task("pend", 1, 0, TaskState::Pending, false)),
            sick(task("drain", 1, 0, TaskState::Draining, false)),
            task("run", 1, 0, TaskState::Running, false),
        ];
        let s = select(&tasks, 2, &VictimPolicy::default());
        assert_eq!(ids(&s), vec!["run"]);
        assert_eq!(
            s.shortfall.unwrap().reason,
            "only 1 of 2 tasks can go: 2 tasks are unhealthy"
        );

        let one = select(
            &[sick(task("x", 1, 0, TaskState::Running, false))],
            1,
            &VictimPolicy::default(),
        );
        assert_eq!(
            one.shortfall.unwrap().reason,
            "no task can go (1 wanted): 1 task is unhealthy"
        );
    }

    #[test]
    fn an_unhealthy_busy_or_protected_task_counts_once() {
        // Protected wins over unhealthy, unhealthy over busy.
        let tasks = vec![
            sick(task("p", 1, 0, TaskState::Running, true)),
            sick(task("b", 1, 3, TaskState::Running, false)),
            task("i", 1, 0, TaskState::Running, false),
        ];
        let s = select(&tasks, 3, &VictimPolicy::default());
        assert_eq!(ids(&s), vec!["i"]);
        assert_eq!(
            s.shortfall.unwrap().reason,
            "only 1 of 3 tasks can go: 1 task is protected, 1 is unhealthy"
        );
    }

    #[test]
    fn a_task_serialized_without_health_is_healthy() {
        let t = task("t", 1, 0, TaskState::Running, false);
        let mut json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["healthy"], serde_json::json!(true));
        json.as_object_mut().unwrap().remove("healthy");
        let back: Task = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
        let sick_json = serde_json::to_value(sick(t.clone())).unwrap();
        let back: Task = serde_json::from_value(sick_json).unwrap();
        assert!(!back.healthy);
    }

    #[test]
    fn allow_busy_takes_busy_after_idle_fewest_sessions_first() {
        // t0..t4 busy with 6, 5, 4, 3, 2 sessions; t5 idle.
        let s = select(&six(5), 4, &policy(&[VictimOrder::Newest], true));
        assert_eq!(ids(&s), vec!["t5", "t4", "t3", "t2"]);
        assert_eq!(s.busy, 3);
        assert_eq!(s.shortfall, None);
    }

    #[test]
    fn pending_and_draining_go_first() {
        let mut tasks = six(0);
        tasks.push(task("pend", 1, 0, TaskState::Pending, false));
        tasks.push(task("drain", 1, 4, TaskState::Draining, false));
        let s = select(&tasks, 3, &VictimPolicy::default());
        assert_eq!(ids(&s), vec!["drain", "pend", "t5"]);
        assert_eq!(s.busy, 1);
    }

    #[test]
    fn zone_balance_takes_from_the_largest_zone() {
        let tasks = vec![
            ztask("a1", 100, 0, Some("a")),
            ztask("a2", 200, 0, Some("a")),
            ztask("a3", 300, 0, Some("a")),
            ztask("b1", 400, 0, Some("b")),
        ];
        let s = select(&tasks, 2, &VictimPolicy::default());
        // Both from a (3 then 2 left against b's 1), newest first within it.
        assert_eq!(ids(&s), vec!["a3", "a2"]);
        // A third: a and b now have one each; the tie goes to the newest (b1).
        let s = select(&tasks, 3, &VictimPolicy::default());
        assert_eq!(ids(&s), vec!["a3", "a2", "b1"]);
    }

    #[test]
    fn zone_balance_counts_busy_and_protected_running_tasks() {
        // Zone b has 3 running tasks, but only one can go; zone a has 2 idle ones.
        let tasks = vec![
            ztask("a1", 100, 0, Some("a")),
            ztask("a2", 200, 0, Some("a")),
            ztask("b1", 100, 0, Some("b")),
            ztask("b2", 200, 5, Some("b")),
            Task {
                protected: true,
                ..ztask("b3", 300, 0, Some("b"))
            },
            ztask("n1", 900, 0, None),
        ];
        let s = select(&tasks, 3, &VictimPolicy::default());
        // b (3 left) → b1; then a and b tie at 2, b has nothing pickable → a2 (newest of a);
        // then a and "none" tie at 1 → the newest of a1 and n1: n1.
        assert_eq!(ids(&s), vec!["b1", "a2", "n1"]);
    }

    #[test]
    fn oldest_and_newest_orders() {
        let tasks = six(0);
        let newest = select(&tasks, 2, &policy(&[VictimOrder::Newest], false));
        assert_eq!(ids(&newest), vec!["t5", "t4"]);
        let oldest = select(&tasks, 2, &policy(&[VictimOrder::Oldest], false));
        assert_eq!(ids(&oldest), vec!["t0", "t1"]);
        // Equal start times: the id decides.
        let same: Vec<Task> = ["c", "a", "b"]
            .iter()
            .map(|id| task(id, 5, 0, TaskState::Running, false))
            .collect();
        let s = select(&same, 3, &policy(&[VictimOrder::Oldest], false));
        assert_eq!(ids(&s), vec!["a", "b", "c"]);
    }

    #[test]
    fn order_names_round_trip() {
        for o in VictimOrder::ALL {
            assert_eq!(o.as_str().parse::<VictimOrder>(), Ok(o));
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
            let back: VictimOrder = serde_json::from_str(&format!("\"{o}\"")).unwrap();
            assert_eq!(back, o);
        }
        let err = "youngest".parse::<VictimOrder>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown victim order \"youngest\"; accepted: fewest_sessions, newest, oldest, \
             zone_balance"
        );
        assert_eq!(
            VictimPolicy::default(),
            policy(&[VictimOrder::ZoneBalance, VictimOrder::Newest], false)
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::{BTreeMap, HashSet};

        fn arb_state() -> impl Strategy<Value = TaskState> {
            prop_oneof![
                1 => Just(TaskState::Pending),
                4 => Just(TaskState::Running),
                1 => Just(TaskState::Draining),
                1 => Just(TaskState::Stopping),
                1 => Just(TaskState::Stopped),
            ]
        }

        fn arb_tasks() -> impl Strategy<Value = Vec<Task>> {
            prop::collection::vec(
                (
                    0i64..20,
                    prop_oneof![3 => Just(0u32), 1 => 1u32..5],
                    arb_state(),
                    prop::bool::weighted(0.15),
                    prop::option::weighted(0.8, prop::sample::select(vec!["a", "b", "c"])),
                    prop::bool::weighted(0.85),
                ),
                0..16,
            )
            .prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(
                        |(i, (started, sessions, state, protected, zone, healthy))| Task {
                            id: TaskId(format!("t{i:02}").into()),
                            started_at: Timestamp::from_second(started).unwrap(),
                            zone: zone.map(Into::into),
                            state,
                            sessions,
                            protected,
                            healthy,
                        },
                    )
                    .collect()
            })
        }

        fn arb_policy() -> impl Strategy<Value = VictimPolicy> {
            (
                prop::collection::vec(prop::sample::select(VictimOrder::ALL.to_vec()), 0..4),
                any::<bool>(),
            )
                .prop_map(|(order, allow_busy)| VictimPolicy { order, allow_busy })
        }

        fn can_go(t: &Task, allow_busy: bool) -> bool {
            !t.protected
                && t.healthy
                && !matches!(t.state, TaskState::Stopped | TaskState::Stopping)
                && (allow_busy || t.state != TaskState::Running || t.sessions == 0)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn selection_invariants(
                tasks in arb_tasks(),
                count in 0usize..20,
                policy in arb_policy(),
            ) {
                let s = select(&tasks, count, &policy);
                let by_id: BTreeMap<&TaskId, &Task> = tasks.iter().map(|t| (&t.id, t)).collect();

                prop_assert!(s.victims.len() <= count);
                let unique: HashSet<&TaskId> = s.victims.iter().collect();
                prop_assert_eq!(unique.len(), s.victims.len());
                let victims: Vec<&Task> = s.victims.iter().map(|id| by_id[id]).collect();
                for v in &victims {
                    prop_assert!(v.healthy, "unhealthy {:?} chosen", v);
                    prop_assert!(can_go(v, policy.allow_busy), "{:?} may not go", v);
                }
                // A shortfall with an unhealthy task left out (and not counted under an
                // earlier cause) says so.
                let unhealthy = tasks
                    .iter()
                    .filter(|t| {
                        !t.healthy
                            && !t.protected
                            && !matches!(t.state, TaskState::Stopped | TaskState::Stopping)
                    })
                    .count();
                if let (Some(short), true) = (&s.shortfall, unhealthy > 0) {
                    let (noun, verb) = if unhealthy == 1 { ("task", "is") } else { ("tasks", "are") };
                    let first = format!(": {unhealthy} {noun} {verb} unhealthy");
                    let later = format!(", {unhealthy} {verb} unhealthy");
                    prop_assert!(
                        short.reason.contains(&first) || short.reason.contains(&later),
                        "{:?} does not count {} unhealthy", short.reason, unhealthy
                    );
                }

                let candidates = tasks.iter().filter(|t| can_go(t, policy.allow_busy)).count();
                prop_assert_eq!(s.victims.len(), count.min(candidates));
                prop_assert_eq!(s.busy, victims.iter().filter(|t| t.sessions > 0).count());

                match &s.shortfall {
                    None => prop_assert_eq!(s.victims.len(), count),
                    Some(short) => {
                        prop_assert!(s.victims.len() < count);
                        prop_assert_eq!(short.chosen, s.victims.len());
                        prop_assert_eq!(short.wanted, count);
                        prop_assert!(!short.reason.is_empty());
                    }
                }

                // Tiers in order: pending/draining, idle running, busy running.
                let tier = |t: &Task| match (t.state, t.sessions) {
                    (TaskState::Running, 0) => 1,
                    (TaskState::Running, _) => 2,
                    _ => 0,
                };
                let tiers: Vec<u8> = victims.iter().map(|t| tier(t)).collect();
                prop_assert!(tiers.windows(2).all(|w| w[0] <= w[1]), "tiers {:?}", tiers);
                // Busy running victims by fewest sessions first.
                let busy: Vec<u32> = victims.iter().filter(|t| tier(t) == 2).map(|t| t.sessions).collect();
                prop_assert!(busy.windows(2).all(|w| w[0] <= w[1]));
                // Deterministic, whatever the input order.
                let mut reversed = tasks.clone();
                reversed.reverse();
                prop_assert_eq!(&select(&reversed, count, &policy), &s);
            }

            #[test]
            fn zone_balance_picks_from_a_fullest_zone(
                tasks in arb_tasks(),
                count in 0usize..20,
            ) {
                let policy = VictimPolicy { order: vec![VictimOrder::ZoneBalance], allow_busy: false };
                let s = select(&tasks, count, &policy);
                let mut left: BTreeMap<Option<&str>, usize> = BTreeMap::new();
                for t in tasks.iter().filter(|t| t.state == TaskState::Running) {
                    *left.entry(t.zone.as_deref()).or_default() += 1;
                }
                let mut pickable: Vec<&Task> = tasks
                    .iter()
                    .filter(|t| t.state == TaskState::Running && can_go(t, false))
                    .collect();
                for id in &s.victims {
                    let Some(pos) = pickable.iter().position(|t| &t.id == id) else {
                        continue; // a pending or draining victim
                    };
                    let v = pickable.remove(pos);
                    let most = pickable
                        .iter()
                        .chain(std::iter::once(&v))
                        .map(|t| left[&t.zone.as_deref()])
                        .max()
                        .unwrap();
                    prop_assert_eq!(left[&v.zone.as_deref()], most);
                    *left.get_mut(&v.zone.as_deref()).unwrap() -= 1;
                }
            }
        }
    }
}
