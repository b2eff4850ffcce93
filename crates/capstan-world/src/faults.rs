//! Injected faults: rules that make chosen API calls fail on purpose.

use capstan_aws_api::{AwsError, AwsErrorKind};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A rule making API calls fail with an injected [`AwsError`].
///
/// A call matches when `operation` is `None` or names it (`UpdateService`,
/// `DescribeTasks`, ...). A matching call fails with probability `probability`
/// (drawn from the world's seeded fault generator, so runs repeat); every failure uses
/// one of `times` (`None` = until [`World::clear_faults`](crate::World::clear_faults)).
/// A probability outside `[0, 1]` is clamped into it; NaN counts as 0 (never).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The operation to fail, or `None` for every operation.
    pub operation: Option<String>,
    /// The error kind to fail with.
    pub kind: AwsErrorKind,
    /// How many calls to fail; `None` = until cleared.
    pub times: Option<u32>,
    /// The chance a matching call fails (1.0 = always).
    pub probability: f64,
}

impl FaultRule {
    /// Every call of `operation` fails with `kind` until cleared.
    pub fn always(operation: &str, kind: AwsErrorKind) -> Self {
        Self {
            operation: Some(operation.to_owned()),
            kind,
            times: None,
            probability: 1.0,
        }
    }

    /// The next `times` calls of `operation` fail with `kind`.
    pub fn times(operation: &str, kind: AwsErrorKind, times: u32) -> Self {
        Self {
            times: Some(times),
            ..Self::always(operation, kind)
        }
    }

    /// Whether the rule applies to `operation`.
    fn matches(&self, operation: &str) -> bool {
        self.operation.as_deref().is_none_or(|o| o == operation)
    }

    /// The probability as a number in `[0, 1]`.
    fn chance(&self) -> f64 {
        if self.probability.is_nan() {
            0.0
        } else {
            self.probability.clamp(0.0, 1.0)
        }
    }
}

/// The active rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// In injection order; a spent rule is removed.
    rules: Vec<FaultRule>,
}

impl Faults {
    /// Adds a rule.
    pub(crate) fn inject(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    /// Removes every rule.
    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// The injected error for a call of `operation`, if a rule fires. Rules are tried in
    /// injection order; the first that fires wins.
    pub(crate) fn check(
        &mut self,
        operation: &'static str,
        rng: &mut ChaCha8Rng,
    ) -> Option<AwsError> {
        let mut fired = None;
        for (i, rule) in self.rules.iter_mut().enumerate() {
            if !rule.matches(operation) || rule.times == Some(0) {
                continue;
            }
            let chance = rule.chance();
            let hit = chance >= 1.0 || (chance > 0.0 && rng.random::<f64>() < chance);
            if hit {
                if let Some(t) = rule.times.as_mut() {
                    *t -= 1;
                }
                fired = Some((i, rule.kind.clone()));
                break;
            }
        }
        let (i, kind) = fired?;
        if self.rules.get(i).is_some_and(|r| r.times == Some(0)) {
            self.rules.remove(i);
        }
        Some(AwsError::new(operation, kind, "injected fault"))
    }
}
