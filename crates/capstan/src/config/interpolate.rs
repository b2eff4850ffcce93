//! `${NAME}` interpolation in string values.
//!
//! `${NAME}` is replaced by the environment variable `NAME` (letters, digits and `_`, not
//! starting with a digit); `$${` writes a literal `${`; any other `$` is kept as is (so
//! shell snippets like `$HOME` or `$(date)` pass through untouched). An unset variable is
//! an error that names the variable, never a value. A string that took anything from the
//! environment is a secret: it is never shown in an error message.

/// A string after interpolation.
#[derive(Clone, PartialEq, Eq)]
pub struct Interpolated {
    /// The resulting text.
    pub value: String,
    /// True when some part came from the environment (the value must not be shown).
    pub secret: bool,
}

impl std::fmt::Debug for Interpolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secret {
            f.write_str("Interpolated(<redacted>)")
        } else {
            write!(f, "Interpolated({:?})", self.value)
        }
    }
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${NAME}` names a variable that is not set.
    Unset(String),
    /// `${` without a closing `}`, or a name that is not a valid variable name.
    Malformed(String),
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolateError::Unset(name) => {
                write!(f, "environment variable `{name}` is not set")
            }
            InterpolateError::Malformed(why) => f.write_str(why),
        }
    }
}

/// Interpolates `text`, reading variables through `env`.
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolateError> {
    if !text.contains("${") {
        return Ok(Interpolated {
            value: text.to_owned(),
            secret: false,
        });
    }
    let mut out = String::with_capacity(text.len());
    let mut secret = false;
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("${") {
            let Some(end) = inner.find('}') else {
                return Err(InterpolateError::Malformed(
                    "`${` without a closing `}` (write `$${` for a literal `${`)".to_owned(),
                ));
            };
            let name = &inner[..end];
            if !valid_name(name) {
                return Err(InterpolateError::Malformed(format!(
                    "`${{{name}}}` is not a valid variable name (letters, digits and `_`; \
                     write `$${{` for a literal `${{`)"
                )));
            }
            match env(name) {
                Some(v) => {
                    out.push_str(&v);
                    secret = true;
                }
                None => return Err(InterpolateError::Unset(name.to_owned())),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Interpolated { value: out, secret })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_and_marks_secret() {
        let r = interpolate("Bearer ${TOKEN}", &env).unwrap();
        assert_eq!(r.value, "Bearer s3cret");
        assert!(r.secret);
        assert!(!format!("{r:?}").contains("s3cret"));
        let r = interpolate("${EMPTY}x${TOKEN}", &env).unwrap();
        assert_eq!(r.value, "xs3cret");
    }

    #[test]
    fn leaves_other_dollars_alone() {
        let r = interpolate("echo $HOME $(date) $$ $", &env).unwrap();
        assert_eq!(r.value, "echo $HOME $(date) $$ $");
        assert!(!r.secret);
    }

    #[test]
    fn escape_writes_a_literal() {
        let r = interpolate("a $${TOKEN} b", &env).unwrap();
        assert_eq!(r.value, "a ${TOKEN} b");
        assert!(!r.secret);
    }

    #[test]
    fn errors_name_the_variable_or_the_problem() {
        assert_eq!(
            interpolate("x ${NOPE} y", &env),
            Err(InterpolateError::Unset("NOPE".to_owned()))
        );
        assert!(matches!(
            interpolate("x ${TOKEN", &env),
            Err(InterpolateError::Malformed(m)) if m.contains("closing")
        ));
        assert!(matches!(
            interpolate("${1A}", &env),
            Err(InterpolateError::Malformed(m)) if m.contains("not a valid variable name")
        ));
        assert!(matches!(
            interpolate("${}", &env),
            Err(InterpolateError::Malformed(_))
        ));
    }
}
