//! Body formats of the `http` source besides JSON: YAML (turned into a JSON value, so
//! the same pointer picks the number) and the Prometheus text exposition format (the
//! one sample of a metric whose labels match).
//!
//! The exposition parser is written here rather than taken from `prometheus-parse`:
//! that crate splits label sets at every `,` and `=` and ends them at the first `}`, so
//! a label value holding one of them (`path="/a,b"`) would be read wrongly. Here label
//! values are read as quoted strings with the format's escapes (`\\`, `\"`, `\n`).
//! Only the lines of the wanted metric are parsed strictly; other lines (comments,
//! other metrics, OpenMetrics extras such as exemplars on them) are skipped.

use std::collections::BTreeMap;

use serde_json::Value;

/// Parses a YAML document into a JSON value. Errors say where (line, column).
pub fn yaml_to_json(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("response body is not UTF-8: {e}"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| format!("response body is not YAML: {}", one_line(&e.to_string())))
}

/// The first line of a possibly multi-line message (YAML errors draw a snippet).
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// Why no single sample was picked from an exposition.
#[derive(Debug, Clone, PartialEq)]
pub enum PickError {
    /// No sample of the metric has the labels.
    Missing,
    /// Several samples match (how many).
    Several(usize),
    /// A line of the metric cannot be read (1-based line number, reason).
    Bad(usize, String),
}

/// The value of the one sample named `metric` that has every label in `labels` with
/// that value (other labels may be present).
pub fn pick_sample(
    body: &str,
    metric: &str,
    labels: &BTreeMap<String, String>,
) -> Result<f64, PickError> {
    let mut found = None;
    let mut matches = 0usize;
    for (index, line) in body.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        if &line[..name_end] != metric {
            continue;
        }
        let (sample_labels, value) =
            parse_sample(&line[name_end..]).map_err(|why| PickError::Bad(index + 1, why))?;
        if labels
            .iter()
            .all(|(k, v)| sample_labels.get(k).is_some_and(|s| s == v))
        {
            matches += 1;
            found = Some(value);
        }
    }
    match (matches, found) {
        (1, Some(value)) => Ok(value),
        (0, _) | (_, None) => Err(PickError::Missing),
        (n, _) => Err(PickError::Several(n)),
    }
}

/// `{labels} value [timestamp]` after a sample's name.
fn parse_sample(rest: &str) -> Result<(BTreeMap<String, String>, f64), String> {
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    let mut after_labels = 0;
    if rest.starts_with('{') {
        chars.next();
        loop {
            while chars
                .next_if(|(_, c)| c.is_whitespace() || *c == ',')
                .is_some()
            {}
            match chars.next() {
                Some((i, '}')) => {
                    after_labels = i + 1;
                    break;
                }
                Some((start, c)) if c.is_ascii_alphabetic() || c == '_' => {
                    let mut end = start + 1;
                    while let Some((i, _)) =
                        chars.next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        end = i + 1;
                    }
                    let name = &rest[start..end];
                    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                    if chars.next().map(|(_, c)| c) != Some('=') {
                        return Err(format!("label {name} has no `=`"));
                    }
                    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("the value of label {name} is not quoted"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('"') => break,
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(c @ ('\\' | '"')) => value.push(c),
                                Some(c) => {
                                    value.push('\\');
                                    value.push(c);
                                }
                                None => return Err("unterminated label value".to_owned()),
                            },
                            Some(c) => value.push(c),
                            None => return Err("unterminated label value".to_owned()),
                        }
                    }
                    labels.insert(name.to_owned(), value);
                    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                    match chars.peek().map(|(_, c)| *c) {
                        Some(',' | '}') => {}
                        _ => return Err("expected `,` or `}` after a label".to_owned()),
                    }
                }
                Some((_, c)) => return Err(format!("unexpected {c:?} in the labels")),
                None => return Err("the labels have no closing `}`".to_owned()),
            }
        }
    }
    let mut fields = rest[after_labels..].split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = value
        .parse::<f64>()
        .map_err(|_| format!("the value {value:?} is not a number"))?;
    // A timestamp, and OpenMetrics exemplars (`# {...} v`), may follow; they are not used.
    Ok((labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const TEXT: &str = r#"# HELP jobs Jobs waiting.
# TYPE jobs gauge
jobs{queue="a",zone="x"} 37
jobs{queue="b", zone="x"} 5 1700000000000
jobs_total 9
jobs{queue="odd,=}\"q\"\\"} 2.5e1
up 1
nan_metric NaN
inf_metric +Inf
requests_total{code="200"} 12 # {trace_id="abc"} 1.0
"#;

    #[test]
    fn picks_the_one_matching_sample() {
        assert_eq!(
            pick_sample(TEXT, "jobs", &labels(&[("queue", "a")])),
            Ok(37.0)
        );
        assert_eq!(
            pick_sample(TEXT, "jobs", &labels(&[("queue", "b"), ("zone", "x")])),
            Ok(5.0)
        );
        assert_eq!(
            pick_sample(TEXT, "jobs", &labels(&[("queue", "odd,=}\"q\"\\")])),
            Ok(25.0)
        );
        assert_eq!(pick_sample(TEXT, "up", &labels(&[])), Ok(1.0));
        assert_eq!(pick_sample(TEXT, "jobs_total", &labels(&[])), Ok(9.0));
        assert_eq!(
            pick_sample(TEXT, "requests_total", &labels(&[("code", "200")])),
            Ok(12.0)
        );
        assert!(pick_sample(TEXT, "nan_metric", &labels(&[])).is_ok_and(f64::is_nan));
        assert_eq!(
            pick_sample(TEXT, "inf_metric", &labels(&[])),
            Ok(f64::INFINITY)
        );
    }

    #[test]
    fn missing_several_and_bad_lines() {
        assert_eq!(
            pick_sample(TEXT, "jobs", &labels(&[])),
            Err(PickError::Several(3))
        );
        assert_eq!(
            pick_sample(TEXT, "jobs", &labels(&[("zone", "x")])),
            Err(PickError::Several(2))
        );
        assert_eq!(
            pick_sample(TEXT, "jobs", &labels(&[("queue", "c")])),
            Err(PickError::Missing)
        );
        assert_eq!(
            pick_sample(TEXT, "nope", &labels(&[])),
            Err(PickError::Missing)
        );
        for (text, why) in [
            ("m{a=\"1\" 3", "expected `,` or `}`"),
            ("m{a=1} 3", "not quoted"),
            ("m{a} 3", "no `=`"),
            ("m{a=\"1\"}", "no value"),
            ("m many", "\"many\" is not a number"),
            ("ok 1\nm{a=\"x", "unterminated"),
        ] {
            match pick_sample(text, "m", &labels(&[])) {
                Err(PickError::Bad(_, reason)) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert_eq!(
            pick_sample("ok 1\nm{a=\"x", "m", &labels(&[])),
            Err(PickError::Bad(2, "unterminated label value".into()))
        );
    }

    #[test]
    fn yaml_becomes_json() {
        let v = yaml_to_json(b"queues:\n  jobs:\n    depth: 12\n    name: \"x\"\nlist: [1, 2.5]\n")
            .unwrap();
        assert_eq!(v.pointer("/queues/jobs/depth"), Some(&Value::from(12)));
        assert_eq!(v.pointer("/list/1"), Some(&Value::from(2.5)));
        let err = yaml_to_json(b"a: [1, 2\n").unwrap_err();
        assert!(err.starts_with("response body is not YAML"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
