//! Finding the next page: a page number, an offset, a cursor token from the body, or the
//! `Link: <...>; rel="next"` header (RFC 8288). Each style stops on a page without records;
//! page and offset also stop on a short page, and refuse an API that answers every page with
//! the same body (one that ignores the parameter would otherwise be read forever). A cursor
//! token or next link seen twice is refused for the same reason.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use reqwest::Url;
use reqwest::header::{HeaderMap, LINK};
use serde_json::Value;

use super::records::lookup;
use crate::config::types::Pagination;

pub(super) struct Pager {
    pagination: Pagination,
    /// Only links to the configured API are followed: the request headers (credentials)
    /// go with them.
    origin: reqwest::Url,
    page: i64,
    offset: u64,
    seen: HashSet<String>,
    last_body: Option<u64>,
}

impl Pager {
    pub(super) fn new(pagination: &Pagination, base: &Url) -> Pager {
        let page = match pagination {
            Pagination::Page { start, .. } => *start,
            _ => 0,
        };
        Pager {
            pagination: pagination.clone(),
            origin: base.clone(),
            page,
            offset: 0,
            seen: HashSet::new(),
            last_body: None,
        }
    }

    /// The first request: `base` (with the source's params) and the first page's parameters.
    pub(super) fn first(&self, base: &Url) -> Url {
        match &self.pagination {
            Pagination::Page {
                param,
                size_param,
                size,
                ..
            } => {
                let url = with_param(base, param, &self.page.to_string());
                match (size_param, size) {
                    (Some(name), Some(size)) => with_param(&url, name, &size.to_string()),
                    _ => url,
                }
            }
            Pagination::Offset {
                param,
                limit_param,
                limit,
            } => with_param(
                &with_param(base, param, "0"),
                limit_param,
                &limit.to_string(),
            ),
            Pagination::None | Pagination::Cursor { .. } | Pagination::Link => base.clone(),
        }
    }

    /// The page after `current`, or `None` after the last. `body` is the response without
    /// its records (they were taken out), `raw` the response as received.
    pub(super) fn next(
        &mut self,
        current: &Url,
        headers: &HeaderMap,
        body: &Value,
        raw: &[u8],
        records: usize,
    ) -> Result<Option<Url>, String> {
        if records == 0 {
            return Ok(None);
        }
        match &self.pagination {
            Pagination::None => Ok(None),
            Pagination::Page {
                param, size: full, ..
            } => {
                if full.is_some_and(|full| (records as u64) < full) {
                    return Ok(None);
                }
                same_body_twice(&mut self.last_body, raw, param)?;
                self.page += 1;
                Ok(Some(with_param(current, param, &self.page.to_string())))
            }
            Pagination::Offset { param, limit, .. } => {
                if (records as u64) < *limit {
                    return Ok(None);
                }
                same_body_twice(&mut self.last_body, raw, param)?;
                self.offset += records as u64;
                Ok(Some(with_param(current, param, &self.offset.to_string())))
            }
            Pagination::Cursor { next, param } => {
                let token = match lookup(body, next) {
                    None | Some(Value::Null) => return Ok(None),
                    Some(Value::String(token)) if token.is_empty() => return Ok(None),
                    Some(Value::String(token)) => token.clone(),
                    Some(Value::Number(token)) => token.to_string(),
                    Some(other) => {
                        return Err(format!(
                            "the next cursor at `{next}` is {}, not a string or number",
                            super::records::kind(other)
                        ));
                    }
                };
                if !self.seen.insert(token.clone()) {
                    return Err(format!(
                        "the API returned the same next cursor (at `{next}`) twice; stopping \
                         rather than reading the same pages again"
                    ));
                }
                Ok(Some(with_param(current, param, &token)))
            }
            Pagination::Link => {
                let Some(target) = headers
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(next_link)
                else {
                    return Ok(None);
                };
                let url = current
                    .join(target)
                    .map_err(|e| format!("the `Link` header's next URL is not valid: {e}"))?;
                if url.origin() != self.origin.origin() {
                    return Err(format!(
                        "the `Link` header points the next page to another server ({}); it is \
                         not followed, so that the request headers are sent to `source.url`'s \
                         server only",
                        url.origin().ascii_serialization()
                    ));
                }
                if !self.seen.insert(url.to_string()) {
                    return Err(
                        "the `Link` header named the same next page twice; stopping \
                                rather than reading the same pages again"
                            .into(),
                    );
                }
                Ok(Some(url))
            }
        }
    }
}

/// Refuses a page whose response is the one before it again.
fn same_body_twice(last: &mut Option<u64>, raw: &[u8], param: &str) -> Result<(), String> {
    let mut hasher = DefaultHasher::new();
    raw.hash(&mut hasher);
    let hash = hasher.finish();
    if last.replace(hash) == Some(hash) {
        return Err(format!(
            "two pages in a row had the same response: does the API take `{param}`? \
             (`source.pagination.param`)"
        ));
    }
    Ok(())
}

/// `url` with the query parameter `key` set to `value` (replacing any earlier value).
pub(super) fn with_param(url: &Url, key: &str, value: &str) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut url = url.clone();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(key, value);
    url
}

/// The target of the `rel="next"` link in one `Link` header value, if any.
fn next_link(value: &str) -> Option<&str> {
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = &after[..close];
        let tail = &after[close + 1..];
        let params = &tail[..tail.find('<').unwrap_or(tail.len())];
        let is_next = params.split([';', ',']).any(|param| {
            param.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target);
        }
        rest = &tail[params.len()..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let header = r#"<https://api.test/o?page=1>; rel="first", <https://api.test/o?page=3>; rel="next", <https://api.test/o?page=9>; rel=last"#;
        assert_eq!(next_link(header), Some("https://api.test/o?page=3"));
        assert_eq!(
            next_link(r#"</o?a=1,2>; title="x"; rel="prev next""#),
            Some("/o?a=1,2")
        );
        assert_eq!(
            next_link(r#"<https://api.test/o?page=1>; rel="prev""#),
            None
        );
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn params_are_replaced_not_repeated() {
        let url = Url::parse("https://api.test/o?status=paid&page=1").unwrap();
        let next = with_param(&url, "page", "2");
        assert_eq!(next.as_str(), "https://api.test/o?status=paid&page=2");
    }

    #[test]
    fn page_numbers_stop_at_a_short_page_and_refuse_a_repeated_body() {
        let base = Url::parse("http://api.test/o").unwrap();
        let pagination = Pagination::Page {
            param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            size: Some(2),
        };
        let mut pager = Pager::new(&pagination, &base);
        let first = pager.first(&base);
        assert_eq!(first.as_str(), "http://api.test/o?page=1&per_page=2");
        let none = HeaderMap::new();
        let next = pager.next(&first, &none, &Value::Null, b"a", 2).unwrap();
        assert_eq!(
            next.unwrap().as_str(),
            "http://api.test/o?per_page=2&page=2"
        );
        let error = pager
            .next(&first, &none, &Value::Null, b"a", 2)
            .unwrap_err();
        assert!(error.contains("does the API take `page`"), "{error}");
        assert_eq!(
            pager.next(&first, &none, &Value::Null, b"b", 1).unwrap(),
            None
        );
    }

    #[test]
    fn a_link_to_another_server_is_not_followed() {
        let base = Url::parse("http://api.test/o").unwrap();
        let mut pager = Pager::new(&Pagination::Link, &base);
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            r#"<http://evil.test/o?page=2>; rel="next""#.parse().unwrap(),
        );
        let error = pager
            .next(&base, &headers, &Value::Null, b"", 1)
            .unwrap_err();
        assert!(error.contains("http://evil.test"), "{error}");
    }
}
