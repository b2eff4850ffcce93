//! Timestamps between the SDK's `DateTime` and `jiff`'s `Timestamp`.

use aws_smithy_types::DateTime;
use jiff::Timestamp;

/// `t` as the SDK's `DateTime` (to the second if the nanoseconds do not fit).
pub fn to_sdk_time(t: Timestamp) -> DateTime {
    DateTime::from_nanos(t.as_nanosecond()).unwrap_or_else(|_| DateTime::from_secs(t.as_second()))
}

/// `t` as a `Timestamp`; `None` if it is outside the range `jiff` represents.
pub fn from_sdk_time(t: &DateTime) -> Option<Timestamp> {
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}
