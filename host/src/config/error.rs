//! Errors that point into the pipeline file: `file:line: key: message`, with a suggestion
//! where the fix is a choice among known names.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::document::{Index, Problem, child_key};
use super::env::Secrets;

/// Why a pipeline file could not be loaded. Messages never contain values substituted from
/// the environment; such values show as `${NAME}`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML. `raw` is toml's own report, which quotes the line.
    Syntax {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
        raw: String,
    },
    /// Valid TOML, but not a valid pipeline: a wrong key, type or value, an unset variable,
    /// or a failed check. `raw` is toml's message when it was reworded.
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
        raw: Option<String>,
    },
}

impl ConfigError {
    /// The 1-based line the error points at.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The key path (`sinks[1].mode`); empty when the error is not under a key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// toml's own text of the error, when there is one.
    pub fn raw_toml(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { raw, .. } => Some(raw),
            ConfigError::Invalid { raw, .. } => raw.as_deref(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, line, key, message) = match self {
            ConfigError::Read { path, source } => {
                return write!(
                    f,
                    "{}: cannot read the pipeline file: {source}",
                    path.display()
                );
            }
            ConfigError::Syntax {
                file,
                line,
                key,
                message,
                ..
            }
            | ConfigError::Invalid {
                file,
                line,
                key,
                message,
                ..
            } => (file, line, key, message),
        };
        write!(f, "{}:{line}: ", file.display())?;
        if !key.is_empty() {
            write!(f, "{key}: ")?;
        }
        f.write_str(message)?;
        // The quoted line and caret help with syntax; for the rest the headline says it all.
        if let ConfigError::Syntax { raw, .. } = self {
            write!(f, "\n{}", raw.trim_end())?;
        }
        Ok(())
    }
}

/// Turns spans and key paths of one file into errors, masking secrets on the way.
pub(super) struct Locator<'a> {
    file: &'a Path,
    src: &'a str,
    index: Index,
    secrets: Secrets,
}

impl<'a> Locator<'a> {
    pub(super) fn new(file: &'a Path, src: &'a str, index: Index) -> Self {
        Locator {
            file,
            src,
            index,
            secrets: Secrets::default(),
        }
    }

    pub(super) fn set_secrets(&mut self, secrets: Secrets) {
        self.secrets = secrets;
    }

    pub(super) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// An error at the line where `key` is written (or its nearest written parent).
    pub(super) fn at_key(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let span = self.index.span_of(key).unwrap_or(0..0);
        self.invalid(span, key.to_string(), message.into(), None)
    }

    pub(super) fn problem(&self, problem: Problem) -> ConfigError {
        self.invalid(problem.span, problem.path, problem.message, None)
    }

    /// A serde error from deserializing the tree, reworded where a plainer message helps.
    pub(super) fn serde(&self, error: toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let (key, message) = reword(&self.index.path_at(&span), error.message());
        let raw = (message != error.message()).then(|| error.message().to_string());
        self.invalid(span, key, message, raw)
    }

    fn invalid(
        &self,
        span: Range<usize>,
        key: String,
        message: String,
        raw: Option<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: line_of(self.src, span.start),
            // Keys come from the file's keys, which are never interpolated.
            key,
            message: self.secrets.redact(&message),
            raw: raw.map(|raw| self.secrets.redact(&raw)),
        }
    }
}

/// A TOML syntax error. Interpolation has not run yet, so there is nothing to mask.
pub(super) fn syntax(
    file: &Path,
    src: &str,
    index: &Index,
    mut error: toml::de::Error,
) -> ConfigError {
    let span = error.span().unwrap_or(0..0);
    error.set_input(Some(src));
    ConfigError::Syntax {
        file: file.to_path_buf(),
        line: line_of(src, span.start),
        key: index.key_near(src, &span).unwrap_or_default(),
        message: format!("invalid TOML: {}", error.message()),
        raw: error.to_string(),
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    let offset = offset.min(src.len());
    src.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// serde's message made plainer: TOML words ("key", "table") instead of serde's ("field",
/// "struct"), a suggestion for a misspelt name, and the missing key in the key path.
fn reword(path: &str, message: &str) -> (String, String) {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // toml points at the key itself, so `path` normally ends with it already.
        let at_key = path == name || path.ends_with(&format!(".{name}"));
        let key = if at_key {
            path.to_string()
        } else {
            child_key(path, name)
        };
        let known = backticked(expected);
        let hint = match did_you_mean(name, &known) {
            Some(close) => format!("did you mean `{close}`?"),
            None if known.is_empty() => "this table takes no keys".into(),
            None => format!("expected {}", one_of(&known)),
        };
        return (key, format!("unknown key `{name}`, {hint}"));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return (child_key(path, name), "missing required key".into());
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let mut message = message.to_string();
        if let Some(close) = did_you_mean(name, &backticked(expected)) {
            message.push_str(&format!("; did you mean `{close}`?"));
        }
        return (path.to_string(), message);
    }
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|r| r.rsplit_once(", expected "))
    {
        return (
            path.to_string(),
            format!("expected {}, found {found}", plain_type(expected)),
        );
    }
    if message == "wanted string or table" {
        // toml's words for a non-string where a name (`mode`, `format`, ...) belongs.
        return (path.to_string(), "expected a string".into());
    }
    if let Some((head, expected)) = message.rsplit_once(", expected ") {
        return (
            path.to_string(),
            format!("{head}, expected {}", plain_type(expected)),
        );
    }
    (path.to_string(), message.to_string())
}

/// serde's Rust type names as TOML value kinds.
fn plain_type(expected: &str) -> &str {
    match expected {
        "usize" | "u8" | "u16" | "u32" | "u64" => "a non-negative integer",
        "isize" | "i8" | "i16" | "i32" | "i64" => "an integer",
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "a table",
        s if s.starts_with("struct ") => "a table",
        s => s,
    }
}

/// The names inside backticks: "one of `a`, `b`" gives `a` and `b`.
pub(super) fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// "`a`" for one name, "one of `a`, `b`" for several.
pub(super) fn one_of(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// The known name closest to `word`, if it is close enough to be a likely typo.
pub(super) fn did_you_mean<'k>(word: &str, known: &'k [String]) -> Option<&'k str> {
    let (distance, best) = known
        .iter()
        .map(|k| (edit_distance(word, k), k))
        .min_by_key(|(d, _)| *d)?;
    let limit = (best.chars().count() / 3).max(1);
    (distance <= limit && distance > 0).then_some(best.as_str())
}

/// Levenshtein distance counting a swap of neighbours as one edit (`mrege` → `merge`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known: Vec<String> = ["format", "batch_size", "incremental"]
            .map(String::from)
            .into();
        assert_eq!(did_you_mean("incremntal", &known), Some("incremental"));
        assert_eq!(did_you_mean("fromat", &known), Some("format"));
        assert_eq!(did_you_mean("colour", &known), None);
        let modes: Vec<String> = ["append", "replace_partition", "merge"]
            .map(String::from)
            .into();
        assert_eq!(did_you_mean("upsert", &modes), None);
        assert_eq!(did_you_mean("mrege", &modes), Some("merge"));
    }
}
