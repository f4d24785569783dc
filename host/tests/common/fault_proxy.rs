//! A faulting HTTP proxy on loopback, between the `host` binary and moto: a real TCP server
//! that reads each request's head and, by a rule the test sets (and may change mid-run),
//! answers `500 InternalError` as S3 does, stalls (holds the connection unanswered until
//! the client gives up), or forwards the request to moto. Every forwarded exchange is
//! forced to `Connection: close`, so each connection carries exactly one request and each
//! request meets the rule.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// `500 Internal Server Error` with S3's XML error body.
    Fail,
    /// Read the request, never answer; the connection ends when the client drops it.
    Stall,
}

/// One request as the rule sees it.
pub struct Request {
    /// 1 for the first request the proxy received.
    pub n: u64,
    pub method: String,
    /// Path and query, as sent (`/bucket/key?uploadId=…`).
    pub target: String,
    /// The header block, names lower-cased.
    pub headers: String,
}

impl Request {
    /// A server-side copy (S3's `PUT` with `x-amz-copy-source`): a move of the commit.
    pub fn is_copy(&self) -> bool {
        self.method == "PUT" && self.headers.contains("x-amz-copy-source:")
    }
}

type Rule = Box<dyn Fn(&Request) -> Action + Send + Sync>;

struct Shared {
    upstream: String,
    rule: Mutex<Rule>,
    requests: AtomicU64,
    failed: AtomicU64,
    stalled: AtomicU64,
    /// `n METHOD target -> action`, for failure messages.
    log: Mutex<Vec<String>>,
    stopping: AtomicBool,
}

pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: the endpoint to give the host.
    pub endpoint: String,
    shared: Arc<Shared>,
}

const ERROR_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
<Message>We encountered an internal error. Please try again.</Message><RequestId>weir-fault-proxy</RequestId></Error>";

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://host:port`), forwarding everything.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            rule: Mutex::new(Box::new(|_| Action::Forward)),
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || {
                    // A client that hangs up mid-request is the client's business.
                    let _ = serve(&shared, client);
                });
            }
        });
        FaultProxy { endpoint, shared }
    }

    /// From now on, requests meet `rule`.
    pub fn set_rule(&self, rule: impl Fn(&Request) -> Action + Send + Sync + 'static) {
        *self.shared.rule.lock().unwrap() = Box::new(rule);
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 500.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    pub fn stalled(&self) -> u64 {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// Every request so far, one line each.
    pub fn log(&self) -> String {
        self.shared.log.lock().unwrap().join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// Reads up to the end of the head; returns it and the bytes of the body read with it.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end + 4]).into_owned();
            return Ok((head, buffer[end + 4..].to_vec()));
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 || buffer.len() > 1 << 20 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// `head` with its `Connection` header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    lines.join("\r\n") + "\r\n\r\n"
}

/// Reads (and drops) the rest of a request body of `length` bytes, so that closing the
/// connection after answering does not reset it under the client.
fn drain(stream: &mut TcpStream, length: u64) -> std::io::Result<()> {
    std::io::copy(&mut stream.take(length), &mut std::io::sink()).map(drop)
}

fn serve(shared: &Shared, mut client: TcpStream) -> std::io::Result<()> {
    let (head, body_start) = read_head(&mut client)?;
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let headers = head.to_ascii_lowercase();
    let length: u64 = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let request = Request {
        n,
        method,
        target,
        headers,
    };
    let action = (shared.rule.lock().unwrap())(&request);
    let line = format!("{n} {} {} -> {action:?}", request.method, request.target);
    shared.log.lock().unwrap().push(line);
    let rest = length.saturating_sub(body_start.len() as u64);
    match action {
        Action::Fail => {
            shared.failed.fetch_add(1, Ordering::SeqCst);
            drain(&mut client, rest)?;
            let response = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{ERROR_BODY}",
                ERROR_BODY.len()
            );
            client.write_all(response.as_bytes())?;
            client.shutdown(Shutdown::Write)
        }
        Action::Stall => {
            shared.stalled.fetch_add(1, Ordering::SeqCst);
            drain(&mut client, rest)?;
            // Until the client times out and hangs up (bounded, should it never).
            client.set_read_timeout(Some(Duration::from_secs(120)))?;
            let _ = client.read(&mut [0u8; 1]);
            Ok(())
        }
        Action::Forward => {
            let mut upstream = TcpStream::connect(&shared.upstream)?;
            upstream.write_all(closing(&head).as_bytes())?;
            upstream.write_all(&body_start)?;
            std::io::copy(&mut (&mut client).take(rest), &mut upstream)?;
            let (response_head, response_start) = read_head(&mut upstream)?;
            client.write_all(closing(&response_head).as_bytes())?;
            client.write_all(&response_start)?;
            // The server closes after its one response: the body ends there.
            std::io::copy(&mut upstream, &mut client)?;
            client.shutdown(Shutdown::Write)
        }
    }
}
