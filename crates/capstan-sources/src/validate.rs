//! The boundary check: every value a source reads passes here before it becomes a
//! sample. A rejected value is a failed read, so it can never reach a decision.

use crate::error::ReadError;
use crate::spec::ValueKind;

/// Accepts `value` if it is finite and, for a [`ValueKind::Count`], not negative.
///
/// `-0.0` is a count of zero and is returned as `0.0`.
pub fn validate(value: f64, kind: ValueKind) -> Result<f64, ReadError> {
    if value.is_nan() || value.is_infinite() {
        return Err(ReadError::Rejected {
            value,
            reason: "not a finite number",
        });
    }
    match kind {
        ValueKind::Count if value < 0.0 => Err(ReadError::Rejected {
            value,
            reason: "a count cannot be negative",
        }),
        ValueKind::Count if value == 0.0 => Ok(0.0),
        ValueKind::Count | ValueKind::Any => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_always_rejected() {
        for kind in [ValueKind::Count, ValueKind::Any] {
            for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let err = validate(v, kind).unwrap_err();
                assert!(
                    matches!(
                        err,
                        ReadError::Rejected {
                            reason: "not a finite number",
                            ..
                        }
                    ),
                    "{v} {kind:?}"
                );
            }
        }
    }

    #[test]
    fn negative_values_are_rejected_only_for_counts() {
        assert_eq!(
            validate(-3.0, ValueKind::Count).unwrap_err().to_string(),
            "value -3 rejected: a count cannot be negative"
        );
        assert_eq!(validate(-3.0, ValueKind::Any), Ok(-3.0));
        assert_eq!(validate(12.5, ValueKind::Count), Ok(12.5));
        assert_eq!(validate(f64::MAX, ValueKind::Count), Ok(f64::MAX));
    }

    #[test]
    fn negative_zero_is_a_zero_count() {
        let v = validate(-0.0, ValueKind::Count).unwrap();
        assert_eq!(v, 0.0);
        assert!(v.is_sign_positive());
    }
}
