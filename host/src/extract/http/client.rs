//! One GET, tried until it succeeds: a rate limit between requests, retries of timeouts,
//! connection errors, 429 and 5xx (honouring `Retry-After`, else doubling from `backoff_ms`),
//! and errors that say what to change. Every message passes the redactor: a response may
//! echo a token back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::{HttpSpec, display_url};
use crate::config::Redactor;
use crate::extract::ExtractError;

/// A `Retry-After` longer than this fails the run instead of holding it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Backoff without `Retry-After` doubles up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of an error response is quoted.
const SNIPPET_BYTES: usize = 200;

/// A successful response, read whole (one page).
pub(super) struct Page {
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub(super) struct Fetcher {
    client: reqwest::Client,
    spec: Arc<HttpSpec>,
    redactor: Redactor,
    /// When the rate limit allows the next request.
    next_slot: Option<Instant>,
}

/// Why one try failed, when another may succeed.
enum Failure {
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        snippet: String,
    },
    Transport(String),
}

impl Fetcher {
    pub(super) fn new(client: reqwest::Client, spec: Arc<HttpSpec>, redactor: Redactor) -> Self {
        Fetcher {
            client,
            spec,
            redactor,
            next_slot: None,
        }
    }

    pub(super) async fn get(&mut self, url: &Url) -> Result<Page, ExtractError> {
        let redactor = self.redactor.clone();
        let shown = display_url(url, &redactor);
        let error = |message: String| ExtractError::Http {
            url: shown.clone(),
            message: redactor.redact(&message),
        };
        let tries = self.spec.max_retries + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pace().await;
            let failure = match self.client.get(url.clone()).send().await {
                Ok(response) if response.status().is_success() => {
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => return Ok(Page { headers, body }),
                        Err(e) => Failure::Transport(self.describe(e)),
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    let snippet = snippet(&response.bytes().await.unwrap_or_default());
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                        return Err(error(format!(
                            "HTTP {status} (not retried: {}); the response starts: {snippet}",
                            hint(status)
                        )));
                    }
                    Failure::Status {
                        status,
                        retry_after,
                        snippet,
                    }
                }
                Err(e) => Failure::Transport(self.describe(e)),
            };
            let what = match &failure {
                Failure::Status { status, .. } => format!("HTTP {status}"),
                Failure::Transport(message) => message.clone(),
            };
            if attempt == tries {
                let detail = match &failure {
                    Failure::Status { snippet, .. } => {
                        format!("; the last response starts: {snippet}")
                    }
                    Failure::Transport(_) => String::new(),
                };
                return Err(error(format!(
                    "{what} after {tries} tries{detail}; raise `max_retries` or `timeout_ms`, or \
                     run again when the API is back"
                )));
            }
            let delay = match failure {
                Failure::Status {
                    retry_after: Some(delay),
                    ..
                } => delay,
                _ => backoff(self.spec.backoff, attempt),
            };
            if delay > MAX_RETRY_AFTER {
                return Err(error(format!(
                    "{what}: the API asks to wait {} s before retrying (more than {} s); run \
                     again later",
                    delay.as_secs(),
                    MAX_RETRY_AFTER.as_secs()
                )));
            }
            tracing::warn!(
                "{shown}: {}; retrying in {} ms (try {} of {tries})",
                redactor.redact(&what),
                delay.as_millis(),
                attempt + 1
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Waits until the rate limit allows a request, and books the next slot.
    async fn pace(&mut self) {
        let Some(rate) = self.spec.rate_limit else {
            return;
        };
        if let Some(slot) = self.next_slot {
            tokio::time::sleep_until(slot.into()).await;
        }
        self.next_slot = Some(Instant::now() + Duration::from_secs_f64(1.0 / rate));
    }

    /// A transport error with its causes, without the URL (which may carry secrets).
    fn describe(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!(
                "no complete response within {} ms (`timeout_ms`)",
                self.spec.timeout.as_millis()
            );
        }
        let error = error.without_url();
        let mut text = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            text += &format!(": {inner}");
            cause = inner.source();
        }
        text
    }
}

/// What to check for a status that is not retried.
fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "check the credentials in `source.headers` or `source.params`",
        404 | 410 => "check `source.url`",
        400 | 422 => "check `source.params` and the pagination settings",
        _ => "a client error",
    }
}

/// `Retry-After` as seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn backoff(initial: Duration, attempt: u32) -> Duration {
    initial
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

/// The first bytes of a body, on one line, for a message.
pub(super) fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty)".into();
    }
    let cut = body.len().min(SNIPPET_BYTES);
    let text = String::from_utf8_lossy(&body[..cut]);
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > cut {
        text.push('…');
    }
    format!("`{text}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let soon = chrono::Utc::now() + chrono::Duration::seconds(30);
        let date = soon.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        headers.insert(RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!((28..=30).contains(&wait.as_secs()), "{wait:?}");
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let ms = |attempt| backoff(Duration::from_millis(500), attempt).as_millis();
        assert_eq!([ms(1), ms(2), ms(3)], [500, 1000, 2000]);
        assert_eq!(ms(30), MAX_BACKOFF.as_millis());
    }

    #[test]
    fn snippets_are_short_and_on_one_line() {
        assert_eq!(snippet(b""), "(empty)");
        assert_eq!(
            snippet(b"{\"error\":\n  \"bad\"}"),
            "`{\"error\": \"bad\"}`"
        );
        let long = snippet(&[b'a'; 500]);
        assert!(long.ends_with("…`") && long.len() < 220, "{long}");
    }
}
