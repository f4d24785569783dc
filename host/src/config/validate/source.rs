//! The source's rules: paths, database tables or queries, HTTP pagination and records,
//! batch sizes and cursors.

use crate::config::ConfigError;
use crate::config::document::child_key;
use crate::config::error::Locator;

use crate::config::types::{DatabaseSource, FileSource, HttpSource, Pagination};

use super::{not_blank, store_path};

pub(super) fn file_source(files: &FileSource, at: &Locator<'_>) -> Result<(), ConfigError> {
    store_path(files.path.get_ref(), "source.path", at)?;
    batch_and_cursor(files.batch_size, &files.incremental, at)
}

/// The `url` prefix of a SQLite source; the rest is the database file's path.
pub const SQLITE_SCHEME: &str = "sqlite://";

pub(super) fn database_source(
    database: &DatabaseSource,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    match (&database.table, &database.query) {
        (Some(table), None) => not_blank(table.get_ref(), "source.table", at)?,
        (None, Some(query)) => not_blank(query.get_ref(), "source.query", at)?,
        (Some(_), Some(_)) => {
            return Err(at.at_key("source.query", "give `table` or `query`, not both"));
        }
        (None, None) => {
            return Err(at.at_key(
                "source",
                "a database source needs `table` (a table name) or `query` (a SELECT)",
            ));
        }
    }
    batch_and_cursor(database.batch_size, &database.incremental, at)
}

pub(super) fn http_source(http: &HttpSource, at: &Locator<'_>) -> Result<(), ConfigError> {
    match reqwest::Url::parse(http.url.get_ref()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
        // The URL itself is not quoted: it may hold a secret the redaction cannot see once
        // the parser has re-encoded it.
        _ => {
            return Err(at.at_key(
                "source.url",
                "expected an http:// or https:// URL like `https://api.example.com/v1/orders`",
            ));
        }
    }
    for (name, value) in &http.params {
        if !matches!(
            value,
            toml::Value::String(_)
                | toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
        ) {
            return Err(at.at_key(
                &child_key("source.params", name),
                format!(
                    "expected a string, number or boolean, found {}",
                    value.type_str()
                ),
            ));
        }
    }
    for (name, value) in &http.headers {
        let key = child_key("source.headers", name);
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(at.at_key(&key, "not a valid HTTP header name"));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err(at.at_key(
                &key,
                "not a valid HTTP header value (visible ASCII only, no line breaks)",
            ));
        }
    }
    if let Some(records) = &http.records
        && records.split('.').any(|segment| segment.trim().is_empty())
    {
        return Err(at.at_key(
            "source.records",
            "expected a dotted path to the records array, like `data.items`",
        ));
    }
    match &http.pagination {
        Pagination::None | Pagination::Link => {}
        Pagination::Page {
            param,
            size_param,
            size,
            ..
        } => {
            not_blank(param, "source.pagination.param", at)?;
            match (size_param, size) {
                (Some(size_param), Some(size)) => {
                    not_blank(size_param, "source.pagination.size_param", at)?;
                    if *size == 0 {
                        return Err(at.at_key("source.pagination.size", "must be greater than 0"));
                    }
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(at.at_key(
                        "source.pagination.size_param",
                        "needs `size`, the page size to ask for",
                    ));
                }
                (None, Some(_)) => {
                    return Err(at.at_key(
                        "source.pagination.size",
                        "needs `size_param`, the query parameter it is sent as (`per_page`)",
                    ));
                }
            }
        }
        Pagination::Offset {
            param,
            limit_param,
            limit,
        } => {
            not_blank(param, "source.pagination.param", at)?;
            not_blank(limit_param, "source.pagination.limit_param", at)?;
            if *limit == 0 {
                return Err(at.at_key("source.pagination.limit", "must be greater than 0"));
            }
        }
        Pagination::Cursor { next, param } => {
            not_blank(next, "source.pagination.next", at)?;
            not_blank(param, "source.pagination.param", at)?;
        }
    }
    if http.timeout_ms == 0 {
        return Err(at.at_key("source.timeout_ms", "must be greater than 0"));
    }
    if let Some(rate) = http.rate_limit
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(at.at_key(
            "source.rate_limit",
            "must be a positive number of requests per second",
        ));
    }
    if let Some(param) = http.incremental.as_ref().and_then(|i| i.param.as_ref()) {
        not_blank(param.get_ref(), "source.incremental.param", at)?;
    }
    batch_and_cursor(http.batch_size, &http.incremental, at)
}

fn batch_and_cursor(
    batch_size: usize,
    incremental: &Option<crate::config::types::Incremental>,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    if batch_size == 0 {
        return Err(at.at_key("source.batch_size", "must be greater than 0"));
    }
    if let Some(incremental) = incremental {
        not_blank(
            incremental.cursor.get_ref(),
            "source.incremental.cursor",
            at,
        )?;
    }
    Ok(())
}
