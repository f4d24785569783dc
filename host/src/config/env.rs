//! `${VAR}` interpolation of the file's string values. Substituted values are treated as
//! secrets: they are remembered only so that they can be masked out of messages.

use std::borrow::Cow;
use std::env::VarError;
use std::fmt;

use toml::de::{DeTable, DeValue};

use super::document::{Problem, child_index, child_key};

/// Reads one environment variable (`std::env::var` in production, a map in tests).
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Result<String, VarError>;

/// The values substituted into the file, by variable name.
#[derive(Clone, Default)]
pub(super) struct Secrets {
    values: Vec<(String, String)>,
}

impl Secrets {
    fn add(&mut self, name: &str, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|(_, v)| v == value) {
            self.values.push((name.to_string(), value.to_string()));
            // Longest first, so a secret that contains another is masked whole.
            self.values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every substituted value, raw or Debug-escaped, replaced by `${NAME}`.
    /// Messages quote values in either form (serde uses both), so both are masked.
    pub(super) fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (name, value) in &self.values {
            let mask = format!("${{{name}}}");
            let escaped = format!("{value:?}");
            let escaped = &escaped[1..escaped.len() - 1];
            text = text.replace(value.as_str(), &mask).replace(escaped, &mask);
        }
        text
    }
}

/// Names only: the values are the secrets.
impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Replaces `${VAR}` in every string value of the file (keys are left alone). `$${` is a
/// literal `${`; any other `$` is kept as is.
pub(super) fn interpolate(
    root: &mut DeTable<'_>,
    env: Lookup<'_>,
    secrets: &mut Secrets,
) -> Result<(), Problem> {
    for (key, value) in root.iter_mut() {
        let path = child_key("", key.get_ref());
        interpolate_value(value, &path, env, secrets)?;
    }
    Ok(())
}

fn interpolate_value(
    value: &mut toml::Spanned<DeValue<'_>>,
    path: &str,
    env: Lookup<'_>,
    secrets: &mut Secrets,
) -> Result<(), Problem> {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) if text.contains('$') => {
            let expanded = expand(text, env, secrets).map_err(|message| Problem {
                span,
                path: path.to_string(),
                message,
            })?;
            *text = Cow::Owned(expanded);
        }
        DeValue::Table(table) => {
            for (key, value) in table.iter_mut() {
                interpolate_value(value, &child_key(path, key.get_ref()), env, secrets)?;
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &child_index(path, i), env, secrets)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One string, expanded. Errors name the variable, never a value.
fn expand(text: &str, env: Lookup<'_>, secrets: &mut Secrets) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let at = &rest[dollar..];
        if let Some(after) = at.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = at.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err("unterminated `${` (write `$${` for a literal `${`)".into());
            };
            let name = &after[..end];
            if !is_var_name(name) {
                return Err(format!(
                    "`${{{name}}}` is not a valid variable name (letters, digits and `_`; \
                     write `$${{` for a literal `${{`)"
                ));
            }
            match env(name) {
                Ok(value) => {
                    secrets.add(name, &value);
                    out.push_str(&value);
                }
                Err(VarError::NotPresent) => {
                    return Err(format!("environment variable `{name}` is not set"));
                }
                Err(VarError::NotUnicode(_)) => {
                    return Err(format!("environment variable `{name}` is not valid UTF-8"));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &at[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
