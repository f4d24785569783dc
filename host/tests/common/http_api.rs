//! A small orders API on loopback for the HTTP source tests: real HTTP/1.1 over a tokio
//! `TcpListener`, one request per connection. It serves generated orders as JSON pages
//! (`{"data": {"items": [...]}, "meta": {"next_cursor": ...}}`) in one pagination style,
//! filters by `updated_since` (inclusive, as APIs often are), can require a bearer token,
//! answers scripted failures first (429 with `Retry-After`, 503, a response slower than the
//! client's timeout), and records every request it got.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::pipeline::{Order, Project};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `?page=N&per_page=M`, from 1.
    Page,
    /// `?offset=N&limit=M`.
    Offset,
    /// `?cursor=TOKEN`, the token in `meta.next_cursor`.
    Cursor,
    /// `?page=N`, the next page in the `Link` header.
    Link,
}

/// A scripted answer, used before the real ones.
#[derive(Debug, Clone)]
pub enum Fault {
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Waits this long before answering (normally).
    Slow(Duration),
    NotJson,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub target: String,
    pub params: BTreeMap<String, String>,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub at: Instant,
}

struct State {
    style: Style,
    page_size: usize,
    orders: Vec<Value>,
    token: Option<String>,
    faults: VecDeque<Fault>,
    requests: Vec<Request>,
}

pub struct Api {
    pub url: String,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

impl Api {
    /// Serves `orders` in pages of `page_size`, requiring `Authorization: Bearer TOKEN`.
    pub fn start(style: Style, page_size: usize, orders: &[Order]) -> Api {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            style,
            page_size,
            orders: Vec::new(),
            token: Some(TOKEN.to_string()),
            faults: VecDeque::new(),
            requests: Vec::new(),
        }));
        let api = Api {
            url,
            state: state.clone(),
            _runtime: runtime,
        };
        api.add_orders(orders);
        let base = api.url.clone();
        api._runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, state.clone(), base.clone()));
            }
        });
        api
    }

    pub fn add_orders(&self, orders: &[Order]) {
        let mut state = self.state.lock().unwrap();
        state.orders.extend(orders.iter().map(order_json));
        state
            .orders
            .sort_by(|a, b| a["updated_at"].as_str().cmp(&b["updated_at"].as_str()));
    }

    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }
}

/// The bearer token the API wants, and the tests put in `API_TOKEN`.
pub const TOKEN: &str = "s3cr3t-t0ken-1f9a";

fn order_json(o: &Order) -> Value {
    json!({
        "order_id": o.id,
        "customer_id": o.customer,
        "amount": o.amount,
        "currency": "USD",
        "exchange_rate": o.rate,
        "order_date": o.date,
        "updated_at": o.updated,
    })
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>, base: String) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let (fault, response) = {
        let mut state = state.lock().unwrap();
        state.requests.push(request.clone());
        let fault = state.faults.pop_front();
        (fault, answer(&state, &request, &base))
    };
    let response = match fault {
        Some(Fault::Status { code, retry_after }) => {
            let mut headers = Vec::new();
            if let Some(after) = retry_after {
                headers.push(format!("Retry-After: {after}"));
            }
            (code, headers, format!("{{\"error\":\"scripted {code}\"}}"))
        }
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            response
        }
        Some(Fault::NotJson) => (200, Vec::new(), "<html>maintenance</html>".to_string()),
        None => response,
    };
    let (code, headers, body) = response;
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(code),
        body.len()
    );
    for header in headers {
        head += &format!("{header}\r\n");
    }
    head += "\r\n";
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let params = reqwest::Url::parse(&format!("http://api{target}"))
        .ok()?
        .query_pairs()
        .into_owned()
        .collect();
    Some(Request {
        target,
        params,
        headers,
        at: Instant::now(),
    })
}

/// The page the request asks for.
fn answer(state: &State, request: &Request, base: &str) -> (u16, Vec<String>, String) {
    if let Some(token) = &state.token
        && request.headers.get("authorization") != Some(&format!("Bearer {token}"))
    {
        return (401, Vec::new(), r#"{"error":"invalid token"}"#.into());
    }
    let param = |name: &str| request.params.get(name).cloned();
    let number =
        |name: &str, default: usize| param(name).map_or(default, |v| v.parse().unwrap_or(default));
    let matching: Vec<&Value> = state
        .orders
        .iter()
        .filter(|o| {
            param("updated_since")
                .is_none_or(|since| o["updated_at"].as_str().unwrap() >= since.as_str())
        })
        .collect();
    let size = state.page_size;
    let start = match state.style {
        Style::Page => (number("page", 1).max(1) - 1) * number("per_page", size),
        Style::Link => (number("page", 1).max(1) - 1) * size,
        Style::Offset => number("offset", 0),
        Style::Cursor => param("cursor").map_or(0, |c| c.trim_start_matches('c').parse().unwrap()),
    };
    let size = match state.style {
        Style::Page => number("per_page", size),
        Style::Offset => number("limit", size),
        _ => size,
    };
    let end = matching.len().min(start + size);
    let items: Vec<&Value> = matching.get(start..end).unwrap_or_default().to_vec();
    let more = end < matching.len();
    let mut headers = Vec::new();
    if state.style == Style::Link && more {
        // The other parameters come back in the link, as APIs do.
        let mut next = reqwest::Url::parse(&format!("{base}/orders")).unwrap();
        next.query_pairs_mut()
            .extend_pairs(request.params.iter().filter(|(k, _)| *k != "page"))
            .append_pair("page", &(number("page", 1) + 1).to_string());
        headers.push(format!(
            "Link: <{base}/orders?page=1>; rel=\"first\", <{next}>; rel=\"next\""
        ));
    }
    let next_cursor = (state.style == Style::Cursor && more).then(|| format!("c{end}"));
    let body = json!({
        "data": {"items": items, "count": items.len()},
        "meta": {"next_cursor": next_cursor},
    });
    (200, headers, body.to_string())
}

/// How the pipeline's source pages through [`Api`] in `style` (pages of 50).
pub fn pagination(style: Style) -> &'static str {
    match style {
        Style::Page => r#"{ kind = "page", param = "page", size_param = "per_page", size = 50 }"#,
        Style::Offset => {
            r#"{ kind = "offset", param = "offset", limit_param = "limit", limit = 50 }"#
        }
        Style::Cursor => r#"{ kind = "cursor", next = "meta.next_cursor", param = "cursor" }"#,
        Style::Link => r#"{ kind = "link" }"#,
    }
}

/// Timeouts and retries small enough for tests; a test may pass its own.
pub const TUNING: &str = "timeout_ms = 2000\nmax_retries = 3\nbackoff_ms = 100";

/// A pipeline reading `api` (the orders plugins, a not-null date check, quarantine) into
/// SQLite and a Parquet lake.
pub fn api_pipeline(project: &Project, api: &Api, style: Style, tuning: &str) -> PathBuf {
    let c = super::components();
    let text = format!(
        r#"name = "api_orders"
on_fail = "quarantine"

[source]
kind = "http"
url = "{url}/orders"
params = {{ status = "paid" }}
headers = {{ Authorization = "Bearer ${{API_TOKEN}}" }}
records = "data.items"
pagination = {pagination}
batch_size = 40
incremental = {{ cursor = "updated_at", param = "updated_since" }}
schema = {{ updated_at = "timestamp", order_id = "int64", customer_id = "int64" }}
{tuning}

[[steps]]
kind = "transform"
plugin = "{transform}"

[[steps]]
kind = "validate"
plugin = "{validator}"

[[checks]]
check = "not_null"
column = "order_date"

[quarantine]
path = "quarantine"
{sinks}"#,
        url = api.url,
        pagination = pagination(style),
        transform = c.orders_transform.display(),
        validator = c.orders_validator.display(),
        sinks = format_args!(
            "{}{}",
            super::pipeline::SQLITE_APPEND,
            super::pipeline::PARQUET_BY_MONTH
        ),
    );
    let path = project.path("api.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `host run` with the token in `API_TOKEN`, and a fault point if given.
pub fn run(pipeline: &std::path::Path, fault: Option<&str>) -> Output {
    let mut host = super::host();
    host.args(["run", "--quiet"])
        .arg(pipeline)
        .env("API_TOKEN", TOKEN);
    if let Some(fault) = fault {
        host.env("WEIR_FAULT", fault);
    }
    host.output().unwrap()
}
