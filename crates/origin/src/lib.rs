//! holdfast-origin: how holdfast talks to origins.
//!
//! - [`Client`]: a pooled hyper client (keep-alive; connect, header and body
//!   timeouts) over one or more origin endpoints, trying the next endpoint
//!   when one refuses the connection.
//! - [`OriginRequest`]: the outgoing request is built from an allow-list
//!   (method, path and query, Host, normalised Accept-Encoding, validators),
//!   never by forwarding the client's headers (catalogue S01).
//! - [`directory`]: an origin that serves a local directory, used by the
//!   bundled demo site and by tests.

pub mod directory;
mod error;
mod timeout;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use error::{OriginError, OriginErrorKind};
use timeout::IdleTimeoutBody;

/// Response bodies from any origin.
pub type OriginBody = BoxBody<Bytes, OriginError>;

/// Tuned for origins that serve static files on a nearby network: fail fast
/// on connect, allow a slow first byte, and treat a stalled body as dead.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 64;

/// Where an origin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An HTTP/1.1 server (`http://host:port`).
    Http { authority: Authority },
    /// A local directory served as if it were an origin (`dir:PATH`).
    Directory { root: PathBuf, cache_control: String },
}

impl Endpoint {
    /// Parses `http://host[:port]` or `dir:PATH`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix("dir:") {
            if path.is_empty() {
                return Err("a dir: origin needs a path, for example dir:config/demo-site".into());
            }
            return Ok(Endpoint::Directory {
                root: PathBuf::from(path),
                cache_control: directory::DEFAULT_CACHE_CONTROL.to_owned(),
            });
        }
        let uri: Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
        match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => {}
            Some(s) if *s == Scheme::HTTPS => {
                return Err("https origins are not supported yet; use http://".into());
            }
            _ => return Err("an origin URL starts with http:// (or dir: for a directory)".into()),
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err("an origin URL has no path: give scheme, host and port only".into());
        }
        let authority = uri.authority().cloned().ok_or("an origin URL needs a host")?;
        Ok(Endpoint::Http { authority })
    }

    fn label(&self) -> String {
        match self {
            Endpoint::Http { authority } => format!("http://{authority}"),
            Endpoint::Directory { root, .. } => format!("dir:{}", root.display()),
        }
    }
}

/// Typed origin-client settings.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub endpoints: Vec<Endpoint>,
    /// Host header sent to the origin; the client's Host when `None`.
    pub host: Option<String>,
    pub connect_timeout: Duration,
    /// From sending the request to receiving the whole response head.
    pub header_timeout: Duration,
    /// Longest pause between two body chunks.
    pub body_idle_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl OriginConfig {
    pub fn new(endpoints: Vec<Endpoint>) -> OriginConfig {
        OriginConfig {
            endpoints,
            host: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
        }
    }
}

/// The one request holdfast sends upstream. Only these fields ever reach the
/// origin; nothing is copied from the client's request wholesale.
#[derive(Debug)]
pub struct OriginRequest {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
    /// The client's Host (used unless the config names one).
    pub host: String,
    /// Already normalised: `br`, `gzip` or `identity`.
    pub accept_encoding: &'static str,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    /// A request body, for methods configured to pass through uncached.
    pub body: Option<PassBody>,
}

/// A client request body relayed to the origin, with its framing headers.
pub struct PassBody {
    pub body: BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    pub content_type: Option<HeaderValue>,
    pub content_length: Option<HeaderValue>,
}

impl std::fmt::Debug for PassBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassBody").field("content_length", &self.content_length).finish()
    }
}

/// A pooled client over the configured endpoints.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: OriginConfig,
    http: HyperClient<HttpConnector, BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>>,
    next: AtomicUsize,
}

impl Client {
    pub fn new(config: OriginConfig) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Client { inner: Arc::new(Inner { config, http, next: AtomicUsize::new(0) }) }
    }

    pub fn config(&self) -> &OriginConfig {
        &self.inner.config
    }

    /// Sends the request to one endpoint, moving to the next one when an
    /// endpoint cannot be connected to (requests without a body only: a
    /// streamed body cannot be replayed). Returns the response head once it
    /// has arrived; the body streams with an idle timeout.
    pub async fn send(&self, mut request: OriginRequest) -> Result<(String, Response<OriginBody>), OriginError> {
        let endpoints = &self.inner.config.endpoints;
        if endpoints.is_empty() {
            return Err(OriginError::new(OriginErrorKind::NoOrigin, "none".into()));
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let attempts = if request.body.is_some() { 1 } else { endpoints.len() };
        let mut last_error = None;
        for i in 0..attempts {
            let endpoint = &endpoints[(start + i) % endpoints.len()];
            let label = endpoint.label();
            let result = match endpoint {
                Endpoint::Directory { root, cache_control } => directory::serve(root, cache_control, &request).await,
                Endpoint::Http { authority } => self.send_http(authority, &mut request).await,
            };
            match result {
                Ok(response) => return Ok((label, response)),
                Err(kind) => {
                    let error = OriginError::new(kind, label);
                    tracing::debug!(origin = %error.origin(), error = %error, "origin attempt failed");
                    let next = error.kind().is_connect();
                    last_error = Some(error);
                    if !next {
                        break;
                    }
                }
            }
        }
        // The loop ran at least once, so an error was recorded.
        Err(last_error.unwrap_or_else(|| OriginError::new(OriginErrorKind::NoOrigin, "none".into())))
    }

    async fn send_http(
        &self,
        authority: &Authority,
        request: &mut OriginRequest,
    ) -> Result<Response<OriginBody>, OriginErrorKind> {
        let config = &self.inner.config;
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query(request.path_and_query.as_str())
            .build()
            .map_err(|e| OriginErrorKind::BadRequest(e.to_string()))?;
        let host = config.host.as_deref().unwrap_or(&request.host);
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(uri)
            .header(header::HOST, host)
            .header(header::ACCEPT_ENCODING, request.accept_encoding)
            .header(header::VIA, "1.1 holdfast");
        if let Some(v) = &request.if_none_match {
            builder = builder.header(header::IF_NONE_MATCH, v);
        }
        if let Some(v) = &request.if_modified_since {
            builder = builder.header(header::IF_MODIFIED_SINCE, v);
        }
        let body = match request.body.take() {
            Some(pass) => {
                if let Some(v) = pass.content_type {
                    builder = builder.header(header::CONTENT_TYPE, v);
                }
                if let Some(v) = pass.content_length {
                    builder = builder.header(header::CONTENT_LENGTH, v);
                }
                pass.body
            }
            None => http_body_util::Empty::new().map_err(|never| match never {}).boxed(),
        };
        let outgoing = builder.body(body).map_err(|e| OriginErrorKind::BadRequest(e.to_string()))?;
        let response = match tokio::time::timeout(config.header_timeout, self.inner.http.request(outgoing)).await {
            Err(_) => return Err(OriginErrorKind::HeaderTimeout(config.header_timeout)),
            Ok(Err(e)) if e.is_connect() => return Err(OriginErrorKind::Connect(e.to_string())),
            Ok(Err(e)) => return Err(OriginErrorKind::Protocol(error_chain(&e))),
            Ok(Ok(response)) => response,
        };
        let idle = config.body_idle_timeout;
        Ok(response.map(|body| {
            IdleTimeoutBody::new(body.map_err(|e| OriginErrorKind::Body(error_chain(&e))), idle)
                .map_err(|kind| OriginError::new(kind, String::new()))
                .boxed()
        }))
    }
}

/// Joins an error and its sources into one line for logs and reasons.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_explain() {
        assert!(matches!(Endpoint::parse("http://127.0.0.1:9000"), Ok(Endpoint::Http { .. })));
        assert!(matches!(Endpoint::parse("http://origin.internal"), Ok(Endpoint::Http { .. })));
        assert!(matches!(Endpoint::parse("dir:site"), Ok(Endpoint::Directory { .. })));
        assert!(Endpoint::parse("dir:").is_err());
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("127.0.0.1:9000").is_err());
        assert!(Endpoint::parse("http://x/path").is_err());
        assert!(Endpoint::parse("https://x").unwrap_err().contains("not supported yet"));
    }
}
