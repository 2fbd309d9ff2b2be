//! A fake origin over real HTTP: counts requests per path, is steered per
//! path (status, headers, delays, gates, aborted bodies), and can stop and
//! restart on the same port.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::BoxError;

/// The path tests point the node's active health checks at, so they are
/// told apart from traffic.
pub const HEALTH_PATH: &str = "/__health";

/// How the fake origin answers one path.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Wait this long before sending the response head.
    pub delay: Duration,
    /// Send the body in chunks of this size (no Content-Length), pausing
    /// `chunk_delay` between chunks.
    pub chunk_size: Option<usize>,
    pub chunk_delay: Duration,
    /// Announce this Content-Length whatever the body's real size.
    pub content_length: Option<u64>,
    /// Send this many body bytes, then break the connection.
    pub abort_after: Option<usize>,
    /// Hold the response head until this gate opens.
    pub head_gate: Option<Gate>,
    /// Hold the body after its first chunk until this gate opens.
    pub body_gate: Option<Gate>,
}

/// A gate a test opens to let the fake origin go on: no sleeps needed.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await.map(|_| ());
    }
}

impl Reply {
    /// 200 with a year-long, immutable freshness.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: vec![(
                HeaderName::from_static("cache-control"),
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            )],
            body: body.into(),
            delay: Duration::ZERO,
            chunk_size: None,
            chunk_delay: Duration::ZERO,
            content_length: None,
            abort_after: None,
            head_gate: None,
            body_gate: None,
        }
    }

    pub fn hold_head(mut self, gate: &Gate) -> Reply {
        self.head_gate = Some(gate.clone());
        self
    }

    pub fn hold_body(mut self, gate: &Gate) -> Reply {
        self.body_gate = Some(gate.clone());
        self
    }

    pub fn status(mut self, status: u16) -> Reply {
        self.status = StatusCode::from_u16(status).expect("valid status");
        self
    }

    /// Sets a header, replacing earlier values of the same name.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, HeaderValue::from_str(value).expect("valid header value")));
        self
    }

    /// Removes a header (for example the default cache-control).
    pub fn without(mut self, name: &str) -> Reply {
        self.headers.retain(|(n, _)| !n.as_str().eq_ignore_ascii_case(name));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn chunked(mut self, chunk_size: usize, chunk_delay: Duration) -> Reply {
        self.chunk_size = Some(chunk_size.max(1));
        self.chunk_delay = chunk_delay;
        self
    }

    pub fn content_length(mut self, length: u64) -> Reply {
        self.content_length = Some(length);
        self
    }

    pub fn abort_after(mut self, bytes: usize) -> Reply {
        self.abort_after = Some(bytes);
        self
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    /// Answer for every path without a route (instead of `Reply::ok(path)`).
    default: Option<Reply>,
    hits: HashMap<String, usize>,
    last_headers: HashMap<String, HeaderMap>,
    last_bodies: HashMap<String, Bytes>,
}

/// A steerable origin on 127.0.0.1. Unknown paths get `Reply::ok(path)`.
/// It can be stopped (listener closed, open connections reset) and
/// restarted on the same port, like an origin pod that restarts.
pub struct FakeOrigin {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    running: Mutex<Option<Running>>,
}

struct Running {
    task: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

fn serve(listener: TcpListener, state: Arc<Mutex<State>>) -> Running {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = Arc::clone(&state);
            let mut stop_rx = stop_rx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(Arc::clone(&state), request));
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    // Dropping the connection closes its socket mid-flight.
                    _ = stop_rx.wait_for(|stopped| *stopped) => {}
                }
            });
        }
    });
    Running { task, stop }
}

impl FakeOrigin {
    pub async fn start() -> FakeOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake origin");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let running = serve(listener, Arc::clone(&state));
        FakeOrigin { addr, state, running: Mutex::new(Some(running)) }
    }

    /// Closes the listener and breaks every open connection: connections
    /// to the port are refused until [`FakeOrigin::restart`].
    pub async fn stop(&self) {
        let running = self.running.lock().expect("origin state").take();
        if let Some(running) = running {
            running.stop.send_replace(true);
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind the fake origin's port");
        let running = serve(listener, Arc::clone(&self.state));
        *self.running.lock().expect("origin state") = Some(running);
    }

    /// Answers every path that has no route with `reply` (`None`: back to
    /// `Reply::ok(path)`).
    pub fn set_default(&self, reply: Option<Reply>) {
        self.state.lock().expect("origin state").default = reply;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, as an origin URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets how a path (with its query, if any) is answered.
    pub fn route(&self, path: &str, reply: Reply) {
        self.state.lock().expect("origin state").routes.insert(path.to_owned(), reply);
    }

    /// Requests received for a path (with query).
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().expect("origin state").hits.get(path).copied().unwrap_or(0)
    }

    /// Requests received in all, health checks on [`HEALTH_PATH`] aside.
    pub fn total_hits(&self) -> usize {
        let state = self.state.lock().expect("origin state");
        state.hits.iter().filter(|(path, _)| path.as_str() != HEALTH_PATH).map(|(_, n)| n).sum()
    }

    /// The body of the last request for a path other than GET or HEAD.
    pub fn last_body(&self, path: &str) -> Option<Bytes> {
        self.state.lock().expect("origin state").last_bodies.get(path).cloned()
    }

    /// The headers of the last request for a path.
    pub fn last_headers(&self, path: &str) -> Option<HeaderMap> {
        self.state.lock().expect("origin state").last_headers.get(path).cloned()
    }
}

impl Drop for FakeOrigin {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(running) = running.take()
        {
            running.stop.send_replace(true);
            running.task.abort();
        }
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, BoxError>>, Infallible> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, ());
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        // A broken request body is recorded as far as it came.
        let received = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
        state.lock().expect("origin state").last_bodies.insert(path.clone(), received);
    }
    let reply = {
        let mut state = state.lock().expect("origin state");
        *state.hits.entry(path.clone()).or_default() += 1;
        state.last_headers.insert(path.clone(), request.headers().clone());
        state
            .routes
            .get(&path)
            .or(state.default.as_ref())
            .cloned()
            .unwrap_or_else(|| Reply::ok(path.clone().into_bytes()))
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let Some(gate) = &reply.head_gate {
        gate.wait().await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    // If-None-Match against a configured ETag: 304, as real origins do.
    let etag = reply.headers.iter().find(|(n, _)| n == "etag").map(|(_, v)| v.clone());
    if let (Some(etag), Some(inm)) = (etag, request.headers().get("if-none-match"))
        && etag == inm
    {
        let body = Full::new(Bytes::new()).map_err(|never| match never {}).boxed();
        return Ok(response.status(StatusCode::NOT_MODIFIED).body(body).expect("valid response"));
    }
    let length = reply.content_length.unwrap_or(reply.body.len() as u64);
    if reply.chunk_size.is_none() || reply.content_length.is_some() {
        response = response.header("content-length", length);
    }
    let mut body = reply.body.clone();
    let abort = reply.abort_after.map(|n| n.min(body.len()));
    if let Some(n) = abort {
        body = body.slice(..n);
    }
    let chunk_size = reply.chunk_size.unwrap_or(body.len().max(1));
    let chunks: Vec<Bytes> = body.chunks(chunk_size).map(Bytes::copy_from_slice).collect();
    let chunk_delay = reply.chunk_delay;
    let body_gate = reply.body_gate.clone();
    let frames = stream::unfold((chunks.into_iter(), abort, true), move |(mut chunks, abort, first)| {
        let body_gate = body_gate.clone();
        async move {
            if !first {
                if let Some(gate) = &body_gate {
                    gate.wait().await;
                }
                if !chunk_delay.is_zero() {
                    tokio::time::sleep(chunk_delay).await;
                }
            }
            match chunks.next() {
                Some(chunk) => Some((Ok(Frame::data(chunk)), (chunks, abort, false))),
                None if abort.is_some() => {
                    Some((Err::<Frame<Bytes>, BoxError>("fake origin aborts the body".into()), (chunks, None, false)))
                }
                None => None,
            }
        }
    });
    Ok(response.body(StreamBody::new(frames).boxed()).expect("valid response"))
}
