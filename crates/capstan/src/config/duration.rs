//! The duration syntax of the configuration: `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`,
//! `"2d"`.
//!
//! A duration is one or more `<integer><unit>` parts, optionally separated by spaces,
//! added together. Units: `ms` (milliseconds), `s` (seconds), `m` (minutes), `h` (hours),
//! `d` (days of 24 hours). Negative durations and bare numbers are rejected.

use std::time::Duration;

/// The units, longest first so `ms` is tried before `m`.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parses a duration. The error is a phrase without the value itself (the caller decides
/// whether the value may be shown).
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (write e.g. \"30s\")".to_owned());
    }
    if s.starts_with('-') {
        return Err("durations cannot be negative".to_owned());
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "expected a number at `{}` (write e.g. \"30s\", \"5m\", \"1h30m\")",
                first_chars(rest)
            ));
        }
        let (num, after) = rest.split_at(digits);
        if after.starts_with('.') {
            return Err(
                "fractions are not supported; use a smaller unit (\"1500ms\", not \"1.5s\")"
                    .to_owned(),
            );
        }
        let number: u64 = num
            .parse()
            .map_err(|_| "number too large for a duration".to_owned())?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &after[..unit_len];
        if unit.is_empty() {
            return Err(format!(
                "missing unit after {num} (write \"{num}s\"; units: ms, s, m, h, d)"
            ));
        }
        let Some(&(_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit `{unit}` (units: ms, s, m, h, d)"));
        };
        total_ms = number
            .checked_mul(factor)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| "duration too large".to_owned())?;
        rest = after[unit_len..].trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the same syntax (the largest units first), e.g. `1h30m`,
/// `500ms`, `0s`.
pub fn format(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for &(unit, factor) in UNITS.iter().rev() {
        if ms >= factor {
            out.push_str(&format!("{}{unit}", ms / factor));
            ms %= factor;
        }
    }
    out
}

fn first_chars(s: &str) -> String {
    s.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit_and_combinations() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("1h30m", 5_400_000),
            ("1m 30s", 90_000),
            ("0s", 0),
            (" 10s ", 10_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_forms_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("30", "missing unit after 30 (write \"30s\""),
            ("-5s", "negative"),
            ("5x", "unknown unit `x`"),
            ("1.5s", "fractions"),
            ("s", "expected a number"),
            ("5s3", "missing unit after 3"),
            ("99999999999999999999s", "too large"),
            ("999999999999999d", "too large"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["500ms", "30s", "5m", "1h30m", "2d", "1d1h1m1s1ms", "0s"] {
            let d = parse(text).unwrap();
            assert_eq!(format(d), text);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
