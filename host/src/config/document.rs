//! The parsed TOML tree before serde sees it: where every key sits (for error lines and key
//! paths), and the rewrite of `kind = "..."` tags that lets spans survive deserialization.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{backticked, one_of};
use super::types::{Check, Sink, Source, Step};

/// Every key and array element of the file, with its key path (`sinks[1].mode`).
pub(super) struct Index {
    nodes: Vec<Node>,
}

struct Node {
    path: String,
    /// The key as written; `None` for array elements.
    key: Option<Range<usize>>,
    /// The value; for `[table]` headers, the header.
    value: Range<usize>,
}

impl Index {
    pub(super) fn new(root: &Spanned<DeTable<'_>>) -> Index {
        let mut index = Index { nodes: Vec::new() };
        index.add_table(root.get_ref(), "");
        index
    }

    fn add_table(&mut self, table: &DeTable<'_>, path: &str) {
        for (key, value) in table.iter() {
            let path = child_key(path, key.get_ref());
            self.nodes.push(Node {
                path: path.clone(),
                key: Some(key.span()),
                value: value.span(),
            });
            self.add_value(value.get_ref(), &path);
        }
    }

    fn add_value(&mut self, value: &DeValue<'_>, path: &str) {
        match value {
            DeValue::Table(table) => self.add_table(table, path),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = child_index(path, i);
                    self.nodes.push(Node {
                        path: path.clone(),
                        key: None,
                        value: item.span(),
                    });
                    self.add_value(item.get_ref(), &path);
                }
            }
            _ => {}
        }
    }

    /// The key path an error span points at. toml reports a value's span for type errors, a
    /// key's span for unknown keys and a table's span (its header) for missing keys.
    pub(super) fn path_at(&self, span: &Range<usize>) -> String {
        // Nested nodes can share a span (`sinks` and `sinks[0]` both point at the first
        // `[[sinks]]` header): the deepest one, pushed last, is meant.
        let exact = self
            .nodes
            .iter()
            .rev()
            .find(|n| n.value == *span || n.key.as_ref() == Some(span));
        let containing = || {
            self.nodes
                .iter()
                .filter(|n| n.value.contains(&span.start))
                .min_by_key(|n| n.value.len())
        };
        exact
            .or_else(containing)
            .map(|n| n.path.clone())
            .unwrap_or_default()
    }

    /// A syntax error's key, from the partial tree: the last key written on the error's line
    /// before it (an unclosed string ends past every span), or, for a key written twice, the
    /// earlier one (the second is not in the tree). Nodes are in key order, not file order.
    pub(super) fn key_near(&self, src: &str, span: &Range<usize>) -> Option<String> {
        let offset = span.start.min(src.len());
        let line_start = src[..offset].rfind('\n').map_or(0, |nl| nl + 1);
        let keys = || {
            self.nodes
                .iter()
                .filter_map(|n| Some((n.key.clone()?, &n.path)))
        };
        let on_line = keys()
            .filter(|(key, _)| (line_start..=offset).contains(&key.start))
            .max_by_key(|(key, _)| key.start);
        let written = src.get(span.clone());
        let same_key = || {
            keys()
                .filter(|(key, _)| key.start < offset && src.get(key.clone()) == written)
                .max_by_key(|(key, _)| key.start)
        };
        on_line.or_else(same_key).map(|(_, path)| path.clone())
    }

    /// Where `path` is written, or its nearest written parent (a defaulted key is not written).
    pub(super) fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut path = path;
        loop {
            if let Some(node) = self.nodes.iter().find(|n| n.path == path) {
                return Some(node.key.clone().unwrap_or_else(|| node.value.clone()));
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }
}

pub(super) fn child_key(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn child_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// A problem found in the tree itself, before serde.
pub(super) struct Problem {
    pub span: Range<usize>,
    pub path: String,
    pub message: String,
}

/// Rewrites each internally tagged table (`{ kind = "sqlite", name = .. }`) into the
/// externally tagged form (`{ sqlite = { name = .. } }`) the types derive. serde buffers
/// internally tagged enums, which drops every span inside them (and makes `Spanned` fields
/// fail to deserialize); the external form keeps them. The tag's span moves to the variant
/// key, so an unknown `kind` is still reported at the `kind` line.
pub(super) fn untag(root: &mut DeTable<'_>) -> Result<(), Problem> {
    if let Some(source) = root.get_mut("source") {
        untag_table(source, "source", "kind", choices::<Source>)?;
    }
    type Choices = fn() -> String;
    let lists: [(&str, &str, Choices); 3] = [
        ("steps", "kind", choices::<Step>),
        ("sinks", "kind", choices::<Sink>),
        ("checks", "check", choices::<Check>),
    ];
    for (name, tag, choices) in lists {
        if let Some(DeValue::Array(items)) = root.get_mut(name).map(Spanned::get_mut) {
            for (i, item) in items.iter_mut().enumerate() {
                untag_table(item, &child_index(name, i), tag, choices)?;
            }
        }
    }
    Ok(())
}

fn untag_table(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    tag: &str,
    choices: fn() -> String,
) -> Result<(), Problem> {
    let span = value.span();
    let found = value.get_ref().type_str();
    let DeValue::Table(table) = value.get_mut() else {
        let message = format!("expected a table, found {found}");
        return Err(Problem {
            span,
            path: path.to_string(),
            message,
        });
    };
    let Some(variant) = table.remove(tag) else {
        return Err(Problem {
            span,
            path: child_key(path, tag),
            message: format!("missing required key, expected {}", choices()),
        });
    };
    let variant_span = variant.span();
    let name = match variant.into_inner() {
        DeValue::String(name) => name,
        other => {
            let message = format!("expected {}, found {}", choices(), other.type_str());
            return Err(Problem {
                span: variant_span,
                path: child_key(path, tag),
                message,
            });
        }
    };
    let body = std::mem::take(table);
    let mut tagged = DeTable::new();
    tagged.insert(
        Spanned::new(variant_span, name),
        Spanned::new(span.clone(), DeValue::Table(body)),
    );
    *value = Spanned::new(span, DeValue::Table(tagged));
    Ok(())
}

/// The variant names of an enum (`` one of `sqlite`, `parquet` ``), taken from the types so
/// they cannot drift: asked for the empty variant, serde answers "unknown variant ``,
/// expected ...".
fn choices<T: DeserializeOwned>() -> String {
    let probe = toml::de::ValueDeserializer::parse("''").and_then(T::deserialize);
    let message = probe
        .err()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    let expected = message.split_once("expected ").map_or("", |(_, list)| list);
    one_of(&backticked(expected))
}
