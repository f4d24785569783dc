//! A JSON API over HTTP (reqwest, rustls): GET requests page by page, records found at a
//! dotted path, decoded into bounded Arrow batches as the pages arrive — one page and one
//! batch in memory, never the whole result.
//!
//! - **Requests.** `url` plus `params` as the query, `headers` on every request (marked
//!   sensitive). Values written as `${VAR}` are secrets: URLs in messages, logs and the
//!   `_weir_source` column show them as `${VAR}` (see [`display_url`]), and every message
//!   passes the pipeline's redactor, response snippets included.
//! - **Pages.** [`paginate`]: page number, offset, cursor token, or `Link` header.
//! - **Failures.** [`client`]: `timeout_ms` per request; timeouts, connection errors, 429 and
//!   5xx are retried `max_retries` times, after `Retry-After` (seconds or an HTTP-date) or
//!   else a delay doubling from `backoff_ms`; other statuses fail at once, quoting the start
//!   of the response. `rate_limit` spaces the starts of requests, retries included. Once
//!   the source has given up, the run does not retry it again (the error is not transient).
//! - **Incremental.** The watermark is sent as `incremental.param` (`updated_since`), and
//!   the engine still keeps only rows whose cursor is past it and tracks the highest one:
//!   an API's `since` is often inclusive, or coarser than the cursor. So the source does not
//!   [select by cursor](crate::extract::Source::selects_by_cursor); the engine bounds a
//!   replay by the interrupted load's recorded watermark instead (see `engine::window`).

mod client;
mod paginate;
mod records;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::extract::produced;
use arrow::datatypes::SchemaRef;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use self::client::{Fetcher, Page, snippet};
use self::paginate::{Pager, with_param};
use self::records::{Batcher, schema_of, take_records};
use super::{BatchStream, CursorRange, ExtractError, Part};
use crate::config::Redactor;
use crate::config::types::{ColumnType, Pagination};

/// What to read, from the pipeline's `[source]`.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: String,
    /// In order; values already substituted.
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub records: Option<String>,
    pub pagination: Pagination,
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff: Duration,
    /// Requests per second.
    pub rate_limit: Option<f64>,
    pub batch_size: usize,
    /// The query parameter the watermark is sent as.
    pub watermark_param: Option<String>,
    pub declared: BTreeMap<String, ColumnType>,
}

pub struct HttpSource {
    client: reqwest::Client,
    spec: Arc<HttpSpec>,
    redactor: Redactor,
    /// `url` with `params`.
    base: Url,
}

impl HttpSource {
    /// Nothing is requested until the first read.
    pub fn new(spec: HttpSpec, redactor: Redactor) -> Result<HttpSource, ExtractError> {
        // Validation checked these settings already; the messages do not quote values.
        let config_error = |message: String| ExtractError::Http {
            url: "source".into(),
            message,
        };
        let mut base =
            Url::parse(&spec.url).map_err(|_| config_error("not a valid http(s) URL".into()))?;
        if !spec.params.is_empty() {
            base.query_pairs_mut().extend_pairs(&spec.params);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config_error(format!("`{name}` is not a valid header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| config_error(format!("header `{name}` has an invalid value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .timeout(spec.timeout)
            .build()
            .map_err(|e| config_error(format!("cannot set up the HTTP client: {e}")))?;
        Ok(HttpSource {
            client,
            spec: Arc::new(spec),
            redactor,
            base,
        })
    }

    fn fetcher(&self) -> Fetcher {
        Fetcher::new(
            self.client.clone(),
            self.spec.clone(),
            self.redactor.clone(),
        )
    }

    /// The first request: the params, the watermark (if any) and the first page's parameters.
    fn first_url(&self, pager: &Pager, watermark: Option<&str>) -> Url {
        let base = match (&self.spec.watermark_param, watermark) {
            (Some(param), Some(watermark)) => with_param(&self.base, param, watermark),
            _ => self.base.clone(),
        };
        pager.first(&base)
    }
}

/// A URL for people: no user or password, and query values substituted from `${VAR}` shown
/// as `${VAR}` (compared decoded, since the query is percent-encoded).
fn display_url(url: &Url, redactor: &Redactor) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown += &format!(":{port}");
    }
    shown += url.path();
    let pairs: Vec<String> = url
        .query_pairs()
        .map(|(k, v)| format!("{k}={}", redactor.redact(&v)))
        .collect();
    if !pairs.is_empty() {
        shown += &format!("?{}", pairs.join("&"));
    }
    redactor.redact(&shown)
}

/// One page: its JSON, and its records taken out of it.
fn parse_page(
    page: &Page,
    url: &str,
    records_path: Option<&str>,
    redactor: &Redactor,
) -> Result<(Value, Vec<Value>), ExtractError> {
    let error = |message: String| ExtractError::Http {
        url: url.to_string(),
        message: redactor.redact(&message),
    };
    let mut body: Value = serde_json::from_slice(&page.body).map_err(|e| {
        let content_type = page
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        error(format!(
            "the response is not JSON ({e}; Content-Type: {content_type}); it starts: {}",
            snippet(&page.body)
        ))
    })?;
    let records = take_records(&mut body, records_path).map_err(error)?;
    Ok((body, records))
}

#[async_trait::async_trait]
impl super::Source for HttpSource {
    async fn list(&self) -> Result<Vec<Part>, ExtractError> {
        Ok(vec![Part {
            name: display_url(&self.base, &self.redactor),
            fingerprint: None,
            location: String::new(),
        }])
    }

    /// From the first page (without the watermark): declared types over inferred ones.
    async fn schema(&self, _: &Part) -> Result<SchemaRef, ExtractError> {
        let pager = Pager::new(&self.spec.pagination, &self.base);
        let url = self.first_url(&pager, None);
        let page = self.fetcher().get(&url).await?;
        let shown = display_url(&url, &self.redactor);
        let (_, records) = parse_page(&page, &shown, self.spec.records.as_deref(), &self.redactor)?;
        schema_of(&records, &self.spec.declared).map_err(|message| ExtractError::Http {
            url: shown,
            message,
        })
    }

    async fn read(&self, _: &Part, range: &CursorRange) -> Result<BatchStream, ExtractError> {
        let mut pager = Pager::new(&self.spec.pagination, &self.base);
        let first = self.first_url(&pager, range.after.as_deref());
        let mut fetcher = self.fetcher();
        let mut batcher = Batcher::new(self.spec.declared.clone(), self.spec.batch_size);
        let (spec, redactor) = (self.spec.clone(), self.redactor.clone());
        let base_shown = display_url(&self.base, &self.redactor);
        // Two batches in flight at most: the pages are fetched as the pipeline takes them.
        Ok(produced(move |tx| async move {
            let mut next = Some(first);
            while let Some(url) = next.take() {
                let page = fetcher.get(&url).await?;
                let shown = display_url(&url, &redactor);
                let error = |message: String| ExtractError::Http {
                    url: shown.clone(),
                    message: redactor.redact(&message),
                };
                let (rest, records) =
                    parse_page(&page, &shown, spec.records.as_deref(), &redactor)?;
                next = pager
                    .next(&url, &page.headers, &rest, &page.body, records.len())
                    .map_err(error)?;
                drop(page);
                for batch in batcher.push(&shown, &records).map_err(error)? {
                    if tx.send(Ok(batch)).await.is_err() {
                        return Ok(()); // the reader went away
                    }
                }
            }
            let last = batcher.flush().map_err(|message| ExtractError::Http {
                url: base_shown,
                message,
            })?;
            if let Some(batch) = last {
                let _ = tx.send(Ok(batch)).await;
            }
            Ok(())
        }))
    }
}
