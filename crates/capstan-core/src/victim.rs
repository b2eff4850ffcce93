//! Victim selection: which tasks to stop when a service shrinks.
//!
//! Order: tasks that are not running (pending, already draining) go first, then idle,
//! unprotected tasks before busy ones (fewest sessions first), then the newest, then by
//! id so the choice is deterministic. Protected tasks are never chosen.

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
}
