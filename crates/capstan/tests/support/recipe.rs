//! A recipe's configuration (`examples/<recipe>/`) as its end-to-end test runs it: the
//! file as shipped, with every duration divided by a speed-up factor (so a recipe
//! written for minutes runs in seconds, every interval, cooldown, window and timeout in
//! the same proportion), a few keys set by the test (the listener's port, a server's
//! address) and its `${NAME}`s given by the test, never by the process environment.

// Each recipe's test uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan::config::{self, Config, duration};

/// The directory of a recipe, `examples/<name>/`.
pub fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// A recipe's configuration file, parsed, to be changed for the test and compiled.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// `examples/<recipe>/<file>`, for error messages.
    origin: String,
    /// The document (a table).
    doc: toml::Value,
}

impl Recipe {
    /// Reads `examples/<recipe>/<file>`.
    ///
    /// # Panics
    /// If the file cannot be read or is not TOML.
    pub fn load(recipe: &str, file: &str) -> Self {
        let path = dir(recipe).join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc = text
            .parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            origin: format!("examples/{recipe}/{file}"),
            doc: toml::Value::Table(doc),
        }
    }

    /// Divides every duration in the file by `factor` (at least 1 ms each): `"1m"` at
    /// 60 becomes `"1s"`. Strings that are not durations are left alone. Only what the
    /// file writes is divided: a default it leaves out (say a target's
    /// `first_check_after`) keeps its length, so a recipe writes out the ones its test
    /// needs faster; and a read `timeout` divided this far may be shorter than a
    /// loaded test server answers in (set it back with [`Recipe::set`]).
    #[must_use]
    pub fn accelerate(mut self, factor: u32) -> Self {
        fn walk(value: &mut toml::Value, factor: u32) {
            match value {
                toml::Value::String(s) => {
                    if let Ok(d) = duration::parse(s)
                        && !d.is_zero()
                    {
                        let scaled = (d / factor).max(Duration::from_millis(1));
                        *s = duration::format(scaled);
                    }
                }
                toml::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, factor)),
                toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| walk(v, factor)),
                _ => {}
            }
        }
        walk(&mut self.doc, factor);
        self
    }

    /// Sets the value at a dotted path, array items by index: `"server.listen"`,
    /// `"services.0.target"`, `"sources.queue.url"`. Missing tables are created.
    ///
    /// # Panics
    /// If the path goes through something that is neither a table nor an array, or an
    /// index is out of range.
    #[must_use]
    pub fn set(mut self, path: &str, value: impl Into<toml::Value>) -> Self {
        let (parent, last) = self.parent(path);
        match parent {
            toml::Value::Table(t) => {
                t.insert(last.to_owned(), value.into());
            }
            toml::Value::Array(items) => {
                let i: usize = last.parse().expect("an index after an array");
                items[i] = value.into();
            }
            _ => panic!("`{path}`: not a table or an array"),
        }
        self
    }

    /// Removes the table entry at a dotted path (as in [`Recipe::set`]) and returns it.
    ///
    /// # Panics
    /// If the path does not lead to a table's entry.
    pub fn take(&mut self, path: &str) -> toml::Value {
        let origin = self.origin.clone();
        let (parent, last) = self.parent(path);
        parent
            .as_table_mut()
            .and_then(|t| t.remove(last))
            .unwrap_or_else(|| panic!("{origin}: no `{path}`"))
    }

    /// The value holding the last part of `path`, and that part.
    fn parent<'a, 'p>(&'a mut self, path: &'p str) -> (&'a mut toml::Value, &'p str) {
        let parts: Vec<&str> = path.split('.').collect();
        let (last, walk) = parts.split_last().expect("a non-empty path");
        let mut node = &mut self.doc;
        for part in walk {
            node = match node {
                toml::Value::Table(t) => t
                    .entry((*part).to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new())),
                toml::Value::Array(items) => {
                    let i: usize = part.parse().expect("an index after an array");
                    &mut items[i]
                }
                _ => panic!("`{path}`: `{part}` is neither a table nor an array"),
            };
        }
        (node, last)
    }

    /// Keeps only the services named in `names` (and every source).
    #[must_use]
    pub fn only_services(mut self, names: &[&str]) -> Self {
        if let Some(toml::Value::Array(services)) = self.doc.get_mut("services") {
            services.retain(|s| {
                s.get("name")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|n| names.contains(&n))
            });
        }
        self
    }

    /// The document as TOML text (for the real binary's `--config`).
    pub fn text(&self) -> String {
        toml::to_string(&self.doc).expect("a TOML document serializes")
    }

    /// Compiles the document with the same compiler as `capstan run`; `${NAME}` is
    /// looked up in `vars` only.
    ///
    /// # Panics
    /// With the compiler's errors, if any.
    pub fn compile(&self, vars: &[(&str, &str)]) -> Config {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        config::compile(&self.text(), &self.origin, &env)
            .unwrap_or_else(|e| panic!("{}: {e}", self.origin))
    }
}
