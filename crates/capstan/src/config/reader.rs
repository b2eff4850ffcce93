//! A small reader over the spanned TOML tree: typed getters that record an error (with
//! key path and line:column) instead of stopping, and a `finish` that reports every key
//! nobody asked for, with the closest valid key suggested.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::ConfigError;
use super::interpolate::interpolate;

/// A value of the tree with its byte span.
pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// Where errors go, and what they need to be located: the text (for line:column), the
/// origin (file name) and the environment (for `${NAME}`).
pub(crate) struct Ctx<'s> {
    /// The file name printed in front of every error.
    origin: &'s str,
    /// The whole text.
    text: &'s str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    /// Environment lookup for interpolation.
    env: &'s dyn Fn(&str) -> Option<String>,
    /// Errors so far, in the order found.
    errors: Vec<ConfigError>,
}

impl<'s> Ctx<'s> {
    /// A context for `text` read from `origin`.
    pub(crate) fn new(
        origin: &'s str,
        text: &'s str,
        env: &'s dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            origin,
            text,
            line_starts,
            env,
            errors: Vec::new(),
        }
    }

    /// 1-based line and column (counted in characters) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Records an error at `span`.
    pub(crate) fn error(
        &mut self,
        span: &Range<usize>,
        path: &KeyPath,
        message: impl Into<String>,
    ) {
        self.error_with(span, path, message, None);
    }

    /// Records an error at `span` with a suggested alternative.
    pub(crate) fn error_with(
        &mut self,
        span: &Range<usize>,
        path: &KeyPath,
        message: impl Into<String>,
        suggestion: Option<String>,
    ) {
        let position = Some(self.position(span.start));
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            position,
            path: path.to_string(),
            message: message.into(),
            suggestion,
        });
    }

    /// How many errors were recorded so far.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// True when an error about exactly `path` was recorded after the first `since`.
    pub(crate) fn has_error_at(&self, path: &KeyPath, since: usize) -> bool {
        let path = path.to_string();
        self.errors.iter().skip(since).any(|e| e.path == path)
    }

    /// The errors, sorted by position (stable: errors at one place keep their order).
    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        let mut errors = self.errors;
        errors.sort_by_key(|e| e.position);
        errors.dedup();
        errors
    }

    /// Interpolates a string value, recording an error if that fails.
    fn interpolate(&mut self, raw: &str, span: &Range<usize>, path: &KeyPath) -> Option<Str> {
        match interpolate(raw, self.env) {
            Ok(i) => Some(Str {
                value: i.value,
                secret: i.secret,
                span: span.clone(),
            }),
            Err(e) => {
                self.error(span, path, e.to_string());
                None
            }
        }
    }
}

/// A key path such as `services[0].policies[1].out.steps[2].lower`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(String);

impl KeyPath {
    /// The top level (an empty path).
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// This path followed by `key` (quoted when it is not a bare TOML key).
    pub(crate) fn key(&self, key: &str) -> Self {
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let part = if bare {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.0.is_empty() {
            Self(part)
        } else {
            Self(format!("{}.{part}", self.0))
        }
    }

    /// This path followed by `[index]`.
    pub(crate) fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// This path followed by a relative path already written out (`out.steps[1]`).
    pub(crate) fn join(&self, relative: &str) -> Self {
        if relative.is_empty() {
            self.clone()
        } else if self.0.is_empty() || relative.starts_with('[') {
            Self(format!("{}{relative}", self.0))
        } else {
            Self(format!("{}.{relative}", self.0))
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string value after `${NAME}` interpolation, with its span.
#[derive(Clone)]
pub(crate) struct Str {
    /// The value.
    pub value: String,
    /// True when part of it came from the environment: never shown in messages.
    pub secret: bool,
    /// Where it is written.
    pub span: Range<usize>,
}

impl Str {
    /// The value quoted for an error message, or a placeholder when it is secret.
    pub(crate) fn shown(&self) -> String {
        if self.secret {
            "(a value from the environment, not shown)".to_owned()
        } else {
            format!("{:?}", self.value)
        }
    }
}

impl Str {
    /// `detail` (which may quote parts of the value), or `generic` when the value is
    /// secret.
    pub(crate) fn detail<'d>(&self, detail: &'d str, generic: &'d str) -> &'d str {
        if self.secret { generic } else { detail }
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

/// A short description of a value for "expected X, found Y" messages. String values
/// are shown as written in the file (before interpolation).
pub(crate) fn describe(node: &DeValue<'_>) -> String {
    match node {
        DeValue::String(s) => {
            let short: String = s.chars().take(40).collect();
            let ellipsis = if short.len() < s.len() { "…" } else { "" };
            format!("string {short:?}{ellipsis}")
        }
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(x) => format!("float {x}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// Records "expected X, found Y" for `node`.
pub(crate) fn type_error(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>, expected: &str) {
    ctx.error(
        &node.span(),
        path,
        format!("expected {expected}, found {}", describe(node.get_ref())),
    );
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    let lower = word.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = if c.to_lowercase() == lower {
            1.0
        } else {
            strsim::jaro_winkler(&lower, &c.to_lowercase())
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.filter(|(s, _)| *s >= 0.8).map(|(_, c)| c.to_owned())
}

/// `` `a`, `b`, `c` `` for messages.
pub(crate) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"a", "b", "c"` for messages about string values.
pub(crate) fn list_quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value type the reader can extract.
pub(crate) trait Read: Sized {
    /// Extracts the value, or records why it cannot.
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self>;
}

impl Read for Str {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        match node.get_ref() {
            DeValue::String(s) => ctx.interpolate(s, &node.span(), path),
            _ => {
                type_error(ctx, path, node, "a string");
                None
            }
        }
    }
}

impl Read for String {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        Str::read(ctx, path, node).map(|s| s.value)
    }
}

impl Read for bool {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        match node.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                type_error(ctx, path, node, "true or false");
                None
            }
        }
    }
}

/// Reads an integer node as i128 (any radix), or records a type error.
fn integer(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>, expected: &str) -> Option<i128> {
    match node.get_ref() {
        DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(v) => Some(v),
            Err(_) => {
                ctx.error(&node.span(), path, "integer out of range");
                None
            }
        },
        _ => {
            type_error(ctx, path, node, expected);
            None
        }
    }
}

/// Reads a whole number of 0 or more that must fit `T`: a negative value is recorded as
/// such, a value above `T`'s range with the message `too_large` gives for it.
fn unsigned<T: TryFrom<i128>>(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    node: &Node<'_>,
    too_large: impl FnOnce(i128) -> String,
) -> Option<T> {
    let v = integer(ctx, path, node, "a whole number (0 or more)")?;
    match T::try_from(v) {
        Ok(n) => Some(n),
        Err(_) => {
            let message = if v < 0 {
                format!("must not be negative, found {v}")
            } else {
                too_large(v)
            };
            ctx.error(&node.span(), path, message);
            None
        }
    }
}

impl Read for u32 {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        unsigned(ctx, path, node, |v| {
            format!("too large: {v} (at most {})", u32::MAX)
        })
    }
}

impl Read for u64 {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        unsigned(ctx, path, node, |_| "integer out of range".to_owned())
    }
}

impl Read for i64 {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        let v = integer(ctx, path, node, "a whole number")?;
        match i64::try_from(v) {
            Ok(n) => Some(n),
            Err(_) => {
                ctx.error(&node.span(), path, "integer out of range");
                None
            }
        }
    }
}

impl Read for f64 {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        let v = match node.get_ref() {
            DeValue::Float(x) => x.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(_) => {
                let v = integer(ctx, path, node, "a number")?;
                // Precision loss above 2^53 is acceptable for thresholds and targets.
                #[allow(clippy::cast_precision_loss)]
                Some(v as f64)
            }
            _ => {
                type_error(ctx, path, node, "a number");
                return None;
            }
        };
        match v {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                ctx.error(
                    &node.span(),
                    path,
                    format!(
                        "must be a finite number, found {}",
                        describe(node.get_ref())
                    ),
                );
                None
            }
        }
    }
}

impl Read for Duration {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        match node.get_ref() {
            DeValue::String(_) => {
                let s = Str::read(ctx, path, node)?;
                match super::duration::parse(&s.value) {
                    Ok(d) => Some(d),
                    Err(why) => {
                        ctx.error(
                            &node.span(),
                            path,
                            format!(
                                "bad duration {}: {}",
                                s.shown(),
                                s.detail(&why, "write e.g. \"30s\", \"5m\", \"1h30m\"")
                            ),
                        );
                        None
                    }
                }
            }
            DeValue::Integer(i) => {
                ctx.error(
                    &node.span(),
                    path,
                    format!(
                        "expected a duration string like \"30s\", found integer {i} \
                         (write \"{i}s\" for seconds; units: ms, s, m, h, d)"
                    ),
                );
                None
            }
            _ => {
                type_error(ctx, path, node, "a duration string like \"30s\"");
                None
            }
        }
    }
}

impl Read for Vec<Str> {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        let DeValue::Array(items) = node.get_ref() else {
            type_error(ctx, path, node, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match Str::read(ctx, &path.index(i), item) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

impl<T: Read> Read for BTreeMap<String, T> {
    fn read(ctx: &mut Ctx<'_>, path: &KeyPath, node: &Node<'_>) -> Option<Self> {
        let DeValue::Table(map) = node.get_ref() else {
            type_error(ctx, path, node, "a table");
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map.iter() {
            match T::read(ctx, &path.key(k.get_ref()), v) {
                Some(s) => {
                    out.insert(k.get_ref().to_string(), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// A table being read: typed getters, and [`finish`](Table::finish) to report unknown
/// keys.
pub(crate) struct Table<'a, 'i> {
    /// Key path of the table.
    pub path: KeyPath,
    /// Span of the table (its header, or the inline table).
    pub span: Range<usize>,
    /// The entries.
    map: &'a DeTable<'i>,
    /// Keys this table accepts.
    allowed: Vec<&'static str>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// A reader over `map`, which accepts the keys in `allowed`.
    pub(crate) fn new(
        path: KeyPath,
        span: Range<usize>,
        map: &'a DeTable<'i>,
        allowed: &[&'static str],
    ) -> Self {
        Self {
            path,
            span,
            map,
            allowed: allowed.to_vec(),
        }
    }

    /// A reader over `node`, or a type error when it is not a table.
    pub(crate) fn of(
        ctx: &mut Ctx<'_>,
        path: KeyPath,
        node: &'a Node<'i>,
        allowed: &[&'static str],
    ) -> Option<Self> {
        match node.get_ref() {
            DeValue::Table(map) => Some(Self::new(path, node.span(), map, allowed)),
            _ => {
                type_error(ctx, &path, node, "a table");
                None
            }
        }
    }

    /// Accepts more keys (e.g. the keys of the kind just read).
    pub(crate) fn allow(&mut self, keys: &[&'static str]) {
        for key in keys {
            if !self.allowed.contains(key) {
                self.allowed.push(key);
            }
        }
    }

    /// The value at `key`, if present.
    pub(crate) fn node(&self, key: &str) -> Option<&'a Node<'i>> {
        self.map.get(key)
    }

    /// The value at `key`, if present; `key` must be one this table accepts (checked in
    /// debug builds: a key read but not listed would always be reported as unknown).
    fn listed(&self, key: &str) -> Option<&'a Node<'i>> {
        debug_assert!(
            self.allowed.contains(&key),
            "key `{key}` read but not listed"
        );
        self.node(key)
    }

    /// True when `key` is written.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The path of `key` in this table.
    pub(crate) fn path_of(&self, key: &str) -> KeyPath {
        self.path.key(key)
    }

    /// The span of the value at `key`, or of the table when it is absent.
    pub(crate) fn span_of(&self, key: &str) -> Range<usize> {
        self.node(key)
            .map_or_else(|| self.span.clone(), Spanned::span)
    }

    /// Every entry, in file order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'a str, &'a Node<'i>)> + 'a {
        self.map.iter().map(|(k, v)| (k.get_ref().as_ref(), v))
    }

    /// Records that `key` is required and missing.
    pub(crate) fn missing(&self, ctx: &mut Ctx<'_>, key: &str) {
        ctx.error(
            &self.span,
            &self.path,
            format!("missing required key `{key}`"),
        );
    }

    /// The value at `key`, if present and valid.
    pub(crate) fn opt<T: Read>(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<T> {
        let node = self.listed(key)?;
        T::read(ctx, &self.path_of(key), node)
    }

    /// The value at `key`; records an error when it is missing.
    pub(crate) fn req<T: Read>(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<T> {
        if !self.has(key) {
            self.missing(ctx, key);
            return None;
        }
        self.opt(ctx, key)
    }

    /// A duration that must be greater than zero, if present and valid.
    pub(crate) fn opt_positive(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Duration> {
        let d: Duration = self.opt(ctx, key)?;
        if d.is_zero() {
            ctx.error(
                &self.span_of(key),
                &self.path_of(key),
                "must be greater than 0s",
            );
            return None;
        }
        Some(d)
    }

    /// A nested table at `key`, if present (a type error when it is not a table).
    pub(crate) fn table(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        allowed: &[&'static str],
    ) -> Option<Table<'a, 'i>> {
        let node = self.listed(key)?;
        Table::of(ctx, self.path_of(key), node, allowed)
    }

    /// A required nested table at `key`.
    pub(crate) fn req_table(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        allowed: &[&'static str],
    ) -> Option<Table<'a, 'i>> {
        if !self.has(key) {
            self.missing(ctx, key);
            return None;
        }
        self.table(ctx, key, allowed)
    }

    /// An array of tables at `key` (each element checked to be a table). `None` when
    /// absent or not an array; elements that are not tables are reported and skipped.
    pub(crate) fn tables(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        allowed: &[&'static str],
    ) -> Option<Vec<Table<'a, 'i>>> {
        let node = self.listed(key)?;
        let path = self.path_of(key);
        let DeValue::Array(items) = node.get_ref() else {
            type_error(ctx, &path, node, "an array of tables");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(t) = Table::of(ctx, path.index(i), item, allowed) {
                out.push(t);
            }
        }
        Some(out)
    }

    /// One of `options` at `key`, if present; `what` names it in the error
    /// ("source kind").
    pub(crate) fn choice(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        options: &[&'static str],
        what: &str,
    ) -> Option<&'static str> {
        let s: Str = self.opt(ctx, key)?;
        if let Some(found) = options.iter().find(|o| **o == s.value) {
            return Some(found);
        }
        let suggestion = if s.secret {
            None
        } else {
            suggest(&s.value, options.iter().copied())
        };
        ctx.error_with(
            &s.span,
            &self.path_of(key),
            format!(
                "unknown {what} {}; valid: {}",
                s.shown(),
                list_quoted(options)
            ),
            suggestion,
        );
        None
    }

    /// A required choice.
    pub(crate) fn req_choice(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        options: &[&'static str],
        what: &str,
    ) -> Option<&'static str> {
        if !self.has(key) {
            ctx.error(
                &self.span,
                &self.path,
                format!(
                    "missing required key `{key}` (one of {})",
                    list_quoted(options)
                ),
            );
            return None;
        }
        self.choice(ctx, key, options, what)
    }

    /// Reports every key not accepted by this table, with the closest valid key.
    pub(crate) fn finish(self, ctx: &mut Ctx<'_>) {
        for (k, _) in self.map.iter() {
            let key = k.get_ref().as_ref();
            if self.allowed.contains(&key) {
                continue;
            }
            let suggestion = suggest(key, self.allowed.iter().copied());
            let message = if suggestion.is_some() {
                "unknown key".to_owned()
            } else {
                format!("unknown key; valid keys here: {}", list(&self.allowed))
            };
            ctx.error_with(&k.span(), &self.path_of(key), message, suggestion);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n\nc = 3";
        let ctx = Ctx::new("t.toml", text, &no_env);
        assert_eq!(ctx.position(0), (1, 1));
        assert_eq!(ctx.position(4), (1, 5));
        assert_eq!(ctx.position(6), (2, 1));
        // `=` after the two-byte `é` is the 4th character of line 2.
        let eq = text.find("= \"x\"").unwrap();
        assert_eq!(ctx.position(eq), (2, 4));
        assert_eq!(ctx.position(text.len()), (4, 6));
        assert_eq!(ctx.position(text.len() + 10), (4, 6));
    }

    #[test]
    fn key_paths_quote_odd_keys() {
        let p = KeyPath::root()
            .key("sources")
            .key("my queue")
            .key("interval");
        assert_eq!(p.to_string(), "sources.\"my queue\".interval");
        let p = KeyPath::root()
            .key("services")
            .index(0)
            .key("policies")
            .index(2);
        assert_eq!(p.to_string(), "services[0].policies[2]");
        assert_eq!(
            p.join("out.steps[1].upper").to_string(),
            "services[0].policies[2].out.steps[1].upper"
        );
        assert_eq!(p.join("").to_string(), "services[0].policies[2]");
        assert_eq!(p.join("[3]").to_string(), "services[0].policies[2][3]");
    }

    #[test]
    fn suggestions_only_when_close() {
        let keys = ["interval", "timeout", "max_age", "retention", "kind"];
        assert_eq!(suggest("intervl", keys), Some("interval".to_owned()));
        assert_eq!(suggest("Timeout", keys), Some("timeout".to_owned()));
        assert_eq!(suggest("max-age", keys), Some("max_age".to_owned()));
        assert_eq!(suggest("colour", keys), None);
        assert_eq!(suggest("x", keys), None);
    }
}
