//! Configuration errors: each names the file, the line:column, the key path and the
//! reason; [`ConfigErrors`] holds every error found in one pass and prints them one per
//! line.

use std::fmt;

/// One problem in a configuration file.
///
/// Printed as `FILE:LINE:COL: KEY.PATH: message`, with ` (did you mean `key`?)` appended
/// when a close valid alternative exists. Values that came from the environment are never
/// part of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as given to [`load`](super::load), or the `origin` given to
    /// [`compile`](super::compile)).
    pub origin: String,
    /// 1-based line and column (in characters) of the offending key or value; `None` when
    /// the error is not about one place (the file could not be read).
    pub position: Option<(usize, usize)>,
    /// Key path such as `services[0].policies[1].out.steps[2].lower`; empty for TOML
    /// syntax errors and unreadable files.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The closest valid alternative, when one is close enough to be a likely typo.
    pub suggestion: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// Every error found in a configuration, in file order (never empty when returned as an
/// `Err`).
///
/// `Display` prints one error per line, without a trailing newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The errors, sorted by position in the file.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when there are none (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// A single error that is not tied to a place in the file.
    pub(crate) fn whole_file(origin: &str, message: impl Into<String>) -> Self {
        Self {
            errors: vec![ConfigError {
                origin: origin.to_owned(),
                position: None,
                path: String::new(),
                message: message.into(),
                suggestion: None,
            }],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_every_part() {
        let e = ConfigError {
            origin: "a.toml".into(),
            position: Some((3, 7)),
            path: "sources.queue.intervl".into(),
            message: "unknown key".into(),
            suggestion: Some("interval".into()),
        };
        assert_eq!(
            e.to_string(),
            "a.toml:3:7: sources.queue.intervl: unknown key (did you mean `interval`?)"
        );
        let whole = ConfigErrors::whole_file("b.toml", "cannot read: gone");
        assert_eq!(whole.to_string(), "b.toml: cannot read: gone");
        let two = ConfigErrors {
            errors: vec![e.clone(), e],
        };
        assert_eq!(two.to_string().lines().count(), 2);
    }
}
