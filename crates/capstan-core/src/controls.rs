//! Operator controls: what a person asked of one service at run time, as plain data the
//! planner honours.
//!
//! - **Pause** (KEDA's `paused-scale-in` / `paused-scale-out`): a paused direction never
//!   moves; the planner turns what would have moved into a hold with a
//!   [`StepKind::Paused`](crate::decision::StepKind::Paused) step whose reason says
//!   "paused by operator (scale-in)" (or scale-out).
//! - **Override** of min and/or max until an instant: while `now < until` the given side
//!   replaces the configured (or scheduled) bound; from `until` on the configured bound
//!   is back. The decision's step says which bound was in force.
//!
//! The controls are passed to [`Engine::evaluate_with`](crate::planner::Engine::evaluate_with)
//! (and [`plan_with`](crate::planner::plan_with)); without them the planner behaves
//! exactly as before, so the simulator is unaffected.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

/// The largest count an override may set: a hard ceiling whatever the configuration
/// says (an ECS service runs at most 5,000 tasks).
pub const MAX_OVERRIDE_TASKS: u32 = 5000;

/// The longest an override may last.
pub const MAX_OVERRIDE_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which way(s) of scaling a pause or resume concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Scale-in only.
    In,
    /// Scale-out only.
    Out,
    /// Both.
    #[default]
    Both,
}

impl Direction {
    /// `in`, `out` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        }
    }

    fn covers_in(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    fn covers_out(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
}

/// Which directions are paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Pause {
    /// Scale-in is paused.
    #[serde(rename = "in")]
    pub scale_in: bool,
    /// Scale-out is paused.
    #[serde(rename = "out")]
    pub scale_out: bool,
}

/// A temporary replacement of min and/or max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Override {
    /// The min in force instead of the configured one (none: the configured one).
    pub min: Option<u32>,
    /// The max in force instead of the configured one (none: the configured one).
    pub max: Option<u32>,
    /// When the override was set.
    pub since: Timestamp,
    /// The override applies while `now < until`.
    pub until: Timestamp,
}

impl Override {
    /// Whether the override is in force at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

/// Everything an operator set on one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Controls {
    /// Paused directions.
    pub paused: Pause,
    /// The override of min/max, if one was set (it may have expired: see
    /// [`Controls::active_override`]).
    #[serde(rename = "override")]
    pub bounds_override: Option<Override>,
}

impl Controls {
    /// No control: the planner as configured.
    pub const NONE: Controls = Controls {
        paused: Pause {
            scale_in: false,
            scale_out: false,
        },
        bounds_override: None,
    };

    /// Pauses `direction` (the other one is left as it was).
    pub fn pause(&mut self, direction: Direction) {
        self.paused.scale_in |= direction.covers_in();
        self.paused.scale_out |= direction.covers_out();
    }

    /// Resumes `direction` (the other one is left as it was).
    pub fn resume(&mut self, direction: Direction) {
        self.paused.scale_in &= !direction.covers_in();
        self.paused.scale_out &= !direction.covers_out();
    }

    /// The override if it is in force at `now`.
    pub fn active_override(&self, now: Timestamp) -> Option<&Override> {
        self.bounds_override.as_ref().filter(|o| o.active(now))
    }

    /// Drops an override that has expired at `now`; true if one was dropped.
    pub fn expire(&mut self, now: Timestamp) -> bool {
        if self.bounds_override.is_some_and(|o| !o.active(now)) {
            self.bounds_override = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_and_resume_touch_only_their_direction() {
        let mut c = Controls::NONE;
        c.pause(Direction::In);
        assert_eq!(
            c.paused,
            Pause {
                scale_in: true,
                scale_out: false
            }
        );
        c.pause(Direction::Out);
        c.resume(Direction::In);
        assert_eq!(
            c.paused,
            Pause {
                scale_in: false,
                scale_out: true
            }
        );
        c.pause(Direction::Both);
        c.resume(Direction::Both);
        assert_eq!(c, Controls::NONE);
    }

    #[test]
    fn an_override_is_in_force_until_its_instant() {
        let since = Timestamp::from_second(1_000).unwrap();
        let until = Timestamp::from_second(1_060).unwrap();
        let mut c = Controls {
            bounds_override: Some(Override {
                min: Some(2),
                max: None,
                since,
                until,
            }),
            ..Controls::NONE
        };
        assert!(c.active_override(since).is_some());
        assert!(
            c.active_override(Timestamp::from_second(1_059).unwrap())
                .is_some()
        );
        assert!(c.active_override(until).is_none());
        assert!(!c.expire(since));
        assert!(c.expire(until));
        assert_eq!(c.bounds_override, None);
    }
}
