//! A scripted origin for in-process tests of the handler: every answer is
//! written by the test, every fetch is recorded.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use holdfast_cache::{Store, StoreConfig};
use holdfast_frontend::upstream::{FetchFuture, UpstreamBody};
use holdfast_frontend::{Fetch, Fetched, ForwardHeaders, Handler, HandlerConfig, Site, Upstream, UpstreamError};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

/// What the scripted origin saw of one fetch.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub hold: bool,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    pub accept_encoding: &'static str,
    /// The client fields forwarded with it.
    pub headers: http::HeaderMap,
}

type Script = dyn Fn(usize, Fetch) -> FetchFuture<'static> + Send + Sync;

/// An origin whose every answer is written by the test: `script` gets the
/// fetch's number (from 0) and the fetch.
pub struct Scripted {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
    count: AtomicUsize,
}

impl Scripted {
    pub fn new(script: impl Fn(usize, Fetch) -> FetchFuture<'static> + Send + Sync + 'static) -> Arc<Scripted> {
        Arc::new(Scripted { script: Box::new(script), seen: Mutex::default(), count: AtomicUsize::new(0) })
    }

    pub fn fetches(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Upstream for Scripted {
    fn fetch(&self, request: Fetch) -> FetchFuture<'_> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(Seen {
            method: request.method.clone(),
            path: request.path_and_query.clone(),
            hold: request.hold,
            if_none_match: request.if_none_match.clone(),
            if_modified_since: request.if_modified_since.clone(),
            accept_encoding: request.accept_encoding,
            headers: request.headers.clone(),
        });
        (self.script)(n, request)
    }
}

/// A complete origin response.
pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Result<Fetched, UpstreamError> {
    let body = Full::new(body.into()).map_err(|never| match never {}).boxed();
    Ok(fetched(status, headers, body))
}

pub fn fetched(status: u16, headers: &[(&str, &str)], body: UpstreamBody) -> Fetched {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        response.headers_mut().append(name, HeaderValue::from_str(value).unwrap());
    }
    Fetched { origin: "scripted".into(), response }
}

pub fn failure(status: u16, reason: &str) -> Result<Fetched, UpstreamError> {
    Err(UpstreamError { reason: reason.into(), status: StatusCode::from_u16(status).unwrap() })
}

pub fn handler(upstream: Arc<Scripted>, tweak: impl FnOnce(&mut HandlerConfig)) -> Arc<Handler> {
    forwarding_handler(upstream, ForwardHeaders::default(), tweak)
}

/// A handler whose one site forwards client fields by `forward`.
pub fn forwarding_handler(
    upstream: Arc<Scripted>,
    forward: ForwardHeaders,
    tweak: impl FnOnce(&mut HandlerConfig),
) -> Arc<Handler> {
    let mut config = HandlerConfig::default();
    tweak(&mut config);
    let store = Store::new(&StoreConfig { memory_size: 64 * 1024 * 1024 });
    let site = Site { name: "test".into(), hosts: Vec::new(), upstream, forward, query: Default::default() };
    Arc::new(Handler::new(config, store, vec![site]))
}

/// A response as a client saw it, body read to the end (or its error).
pub struct Got {
    pub status: u16,
    pub x_cache: String,
    pub headers: http::HeaderMap,
    pub body: Result<Bytes, String>,
}

pub async fn request(handler: &Handler, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = Request::builder().method(method).uri(path).header("host", "assets.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = handler.handle(request.body(Empty::<Bytes>::new()).unwrap(), "https").await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).map_err(|e| e.to_string());
    let x_cache = parts.headers.get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    Got { status: parts.status.as_u16(), x_cache, headers: parts.headers, body }
}

pub async fn get_with(handler: &Handler, path: &str, headers: &[(&str, &str)]) -> Got {
    request(handler, "GET", path, headers).await
}

pub async fn get(handler: &Handler, path: &str) -> Got {
    get_with(handler, path, &[]).await
}

/// Waits (in virtual time when paused) until no fill is in flight: a fill
/// stores its response after handing the last bytes to its readers.
pub async fn settle(handler: &Handler) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while handler.fills_in_flight().0 > 0 {
        assert!(tokio::time::Instant::now() < deadline, "fills did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
