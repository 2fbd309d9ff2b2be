//! Small HTTP clients for tests: one request over any protocol, raw bytes,
//! a reconnecting keep-alive client for load, and polling with a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// A response as a test client saw it. `body` is an error when the
/// response was aborted before its end.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub version: http::Version,
    pub body: Result<Bytes, String>,
}

impl TestResponse {
    /// The `x-cache` value, or "" if absent.
    pub fn x_cache(&self) -> &str {
        self.headers.get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body, panicking with the error if the response was aborted.
    pub fn bytes(&self) -> &Bytes {
        match &self.body {
            Ok(body) => body,
            Err(error) => panic!("response body aborted: {error}"),
        }
    }
}

/// Which protocol a test client speaks over plaintext TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge.
    H2c,
}

/// Sends one request on a new connection and reads the whole response.
pub async fn send(
    addr: SocketAddr,
    protocol: Protocol,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<TestResponse, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    let mut builder = Request::builder().method(method);
    builder = match protocol {
        Protocol::Http1 => builder.uri(target),
        Protocol::H2c => builder.uri(format!("http://{addr}{target}")).version(http::Version::HTTP_2),
    };
    let mut has_host = false;
    for (name, value) in headers {
        has_host |= name.eq_ignore_ascii_case("host");
        builder = builder.header(*name, *value);
    }
    if protocol == Protocol::Http1 && !has_host {
        builder = builder.header("host", addr.to_string());
    }
    let request = builder.body(http_body_util::Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(|e| e.to_string())?
        }
        Protocol::H2c => {
            let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(|e| e.to_string())?
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).map_err(|e| format!("{e:?}"));
    Ok(TestResponse { status: parts.status, headers: parts.headers, version: parts.version, body })
}

/// GET over HTTP/1.1 on a new connection.
pub async fn get(addr: SocketAddr, target: &str) -> TestResponse {
    send(addr, Protocol::Http1, "GET", target, &[]).await.expect("request sent")
}

/// Writes raw bytes and reads the response head: until a blank line, the
/// server closing, or `limit`.
pub async fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let read_head = async {
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(limit, read_head).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` until it holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A keep-alive HTTP/1.1 client that reconnects after errors: load for
/// scenario tests without exhausting ephemeral ports.
pub struct KeepAlive {
    addr: SocketAddr,
    host: String,
    sender: Option<hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>>,
}

/// What one request of a load run got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Status, x-cache, and whether the body arrived whole.
    Answered { status: u16, x_cache: String, complete: bool },
    /// No response at all (connection refused, reset before the head).
    Failed(String),
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, host: addr.to_string(), sender: None }
    }

    /// A client that sends `host` as its Host header.
    pub fn with_host(addr: SocketAddr, host: &str) -> KeepAlive {
        KeepAlive { addr, host: host.to_owned(), sender: None }
    }

    /// As a browser sends a GET: a request that fails on a reused
    /// connection before any response arrived (the server closed it as the
    /// request left) is sent once more on a new one (RFC 9110 §9.2.2).
    /// Returns the outcome and whether it took that second try.
    pub async fn get_retrying_once(&mut self, target: &str) -> (Outcome, bool) {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        match self.get(target).await {
            Outcome::Failed(_) if reused => (self.get(target).await, true),
            outcome => (outcome, false),
        }
    }

    pub async fn get(&mut self, target: &str) -> Outcome {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = match tokio::net::TcpStream::connect(self.addr).await {
                Ok(stream) => stream,
                Err(e) => return Outcome::Failed(e.to_string()),
            };
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok((sender, connection)) => {
                    tokio::spawn(connection);
                    self.sender = Some(sender);
                }
                Err(e) => return Outcome::Failed(e.to_string()),
            }
        }
        let Some(sender) = self.sender.as_mut() else { return Outcome::Failed("no connection".into()) };
        if sender.ready().await.is_err() {
            self.sender = None;
            return Outcome::Failed("connection closed".into());
        }
        // The same Host as `get` and `send`, so both share cache keys.
        let request = Request::get(target)
            .header("host", self.host.as_str())
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("valid request");
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let x_cache = response.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let complete = response.into_body().collect().await.is_ok();
                if !complete {
                    self.sender = None;
                }
                Outcome::Answered { status, x_cache, complete }
            }
            Err(e) => {
                self.sender = None;
                Outcome::Failed(e.to_string())
            }
        }
    }
}
