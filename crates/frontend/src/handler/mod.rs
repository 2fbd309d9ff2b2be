//! The one request handler, shared by every protocol and listener.
//!
//! Request path ([`route`]): limits and framing -> host and site ->
//! method -> normalise Accept-Encoding -> key -> lookup in the tiers ->
//! fresh hit: serve it | stale or miss: join or start the coalesced fill ->
//! [`respond`]. Every response says what the cache did in `x-cache` and in
//! RFC 9211 `Cache-Status`; [`observe`] counts it and logs it.

mod invalidate;
mod observe;
mod purge;
mod respond;
mod route;
mod site;
mod top;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use holdfast_cache::policy::Policy;
use holdfast_cache::{DiskTier, Store};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use tracing::Instrument;

pub use purge::{PurgeReport, PurgeTarget};
pub(crate) use route::ClientRequest;
use route::Routed;
pub use site::{Routing, Site};
pub use top::{TopReport, TopUrl};

use crate::access::{AccessLog, TraceIdOf};
use crate::budget::FillBudget;
use crate::fill::{ClientFills, Inflight};
use crate::forward::ForwardHeaders;
use crate::tiers::{PurgeCounts, Tiers};
use crate::upstream::{BoxError, Upstream, UpstreamBody};
use observe::Observer;

/// The response body type of every protocol.
pub type ResponseBody = UpstreamBody;

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// What the cache did for one response. Stable names: they appear in
/// `x-cache`, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheResult {
    /// Served from the store, fresh.
    Hit,
    /// Fetched from the origin (and stored if allowed).
    Miss,
    /// Served from the store while stale: the origin failed, or a
    /// background refresh is under way (stale-while-revalidate).
    Stale,
    /// Stored response confirmed by the origin (304) and served.
    Revalidated,
    /// Relayed to the origin without caching (configured methods).
    Pass,
    /// Answered by holdfast itself with an error (bad request, origin down).
    Error,
}

impl CacheResult {
    pub const ALL: [CacheResult; 6] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Stale,
        CacheResult::Revalidated,
        CacheResult::Pass,
        CacheResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Stale => "STALE",
            CacheResult::Revalidated => "REVALIDATED",
            CacheResult::Pass => "PASS",
            CacheResult::Error => "ERROR",
        }
    }

    /// The position in [`CacheResult::ALL`].
    fn index(self) -> usize {
        self as usize
    }
}

/// Set on a request that arrived as TLS early data (QUIC 0-RTT): it may be
/// a replay, so only safe methods are served (RFC 8470).
#[derive(Debug, Clone, Copy)]
pub struct EarlyData;

/// Limits and policy of the handler. Defaults suit a CDN node in front of
/// a static-asset origin.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// This node's name in Via headers. A request whose Via already names
    /// it has gone round a loop of tiers and is refused (508).
    pub node_name: String,
    /// Status for a Host no site claims: 421 (Misdirected Request) or 404.
    pub unknown_host_status: StatusCode,
    /// Longest a stale object is served while the origin fails (beyond an
    /// explicit `stale-if-error`); `None` serves it as long as it is stored.
    pub max_stale_on_error: Option<Duration>,
    /// Larger bodies stream through without being stored.
    pub max_object_size: u64,
    /// Longest path and query accepted (414 beyond).
    pub max_uri_len: usize,
    /// Most request header bytes accepted (431 beyond).
    pub max_header_bytes: usize,
    /// Most request header fields accepted (431 beyond).
    pub max_headers: usize,
    /// Methods relayed to the origin uncached; all others but GET and HEAD get 405.
    pub pass_methods: Vec<Method>,
    /// Body bytes all fills in progress may hold (read at start; a reload
    /// does not change it).
    pub fill_buffer_size: u64,
    /// Origin fills in progress at most; beyond, a miss gets 503 (or its
    /// stale copy). Read at start.
    pub max_concurrent_fills: usize,
    /// Fills one client address (IPv6: /64) may lead at once; 0 means no
    /// limit. Read at start.
    pub max_fills_per_client: usize,
    /// How long a miss over its client's share waits for one of the
    /// client's fills to end before its 429.
    pub client_fill_wait: Duration,
    /// How origin responses are judged: the targeted cache-control fields
    /// obeyed over `Cache-Control` (RFC 9213), negative caching.
    pub policy: Policy,
}

pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_URI_LEN: usize = 8 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Enough for a few large objects in flight at once, or many small ones.
pub const DEFAULT_FILL_BUFFER_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENT_FILLS: usize = 1024;
/// As long as an origin outage is held by default (`origin.hold_budget`).
pub const DEFAULT_CLIENT_FILL_WAIT: Duration = Duration::from_secs(10);

impl Default for HandlerConfig {
    fn default() -> Self {
        HandlerConfig {
            node_name: "holdfast".into(),
            unknown_host_status: StatusCode::MISDIRECTED_REQUEST,
            max_stale_on_error: None,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            max_uri_len: DEFAULT_MAX_URI_LEN,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            pass_methods: Vec::new(),
            fill_buffer_size: DEFAULT_FILL_BUFFER_SIZE,
            max_concurrent_fills: DEFAULT_MAX_CONCURRENT_FILLS,
            max_fills_per_client: 0,
            client_fill_wait: DEFAULT_CLIENT_FILL_WAIT,
            policy: Policy::standard(),
        }
    }
}

/// The protocol-agnostic request handler.
pub struct Handler {
    routing: std::sync::RwLock<Arc<Routing>>,
    /// Memory, and the disk tier behind it if configured.
    tiers: Arc<Tiers>,
    inflight: Arc<Inflight>,
    /// Fills per client, when limited.
    client_fills: Option<Arc<ClientFills>>,
    observer: Observer,
}

impl Handler {
    pub fn new(config: HandlerConfig, store: Store, sites: Vec<Site>) -> Handler {
        let budget = Arc::new(FillBudget::new(config.fill_buffer_size));
        let inflight = Arc::new(Inflight::new(budget, config.max_concurrent_fills.max(1)));
        let client_fills = ClientFills::new(config.max_fills_per_client, config.client_fill_wait);
        Handler {
            client_fills,
            routing: std::sync::RwLock::new(Arc::new(Routing { config, sites })),
            tiers: Arc::new(Tiers::new(store, None)),
            inflight,
            observer: Observer::new(None),
        }
    }

    /// A handler with one site that answers every host (tests, simple nodes).
    pub fn single(config: HandlerConfig, store: Store, upstream: Arc<dyn Upstream>) -> Handler {
        let site = Site {
            name: "default".into(),
            hosts: Vec::new(),
            upstream,
            forward: ForwardHeaders::default(),
            query: Default::default(),
        };
        Handler::new(config, store, vec![site])
    }

    /// Sends one record per request to `sink` once its body is done.
    pub fn with_access_log(mut self, sink: Arc<dyn AccessLog>) -> Handler {
        let trace_id_of = self.observer.trace_id_of;
        self.observer = Observer::new(Some(sink));
        self.observer.trace_id_of = trace_id_of;
        self
    }

    /// Access records carry the trace id `of` reads from the request span
    /// (when traces are exported).
    pub fn with_trace_ids(mut self, of: TraceIdOf) -> Handler {
        self.observer.trace_id_of = Some(of);
        self
    }

    /// Puts a disk tier behind the memory tier: memory misses are looked up
    /// there (verified, then promoted), and stored objects are written there.
    pub fn with_disk(mut self, disk: Arc<DiskTier>) -> Handler {
        self.tiers = Arc::new(Tiers::new(self.tiers.memory().clone(), Some(disk)));
        self
    }

    pub fn disk(&self) -> Option<&Arc<DiskTier>> {
        self.tiers.disk()
    }

    /// The cache's tiers.
    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    pub fn store(&self) -> &Store {
        self.tiers.memory()
    }

    /// The limits and sites requests are served with now.
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces limits and sites (a config reload). Requests in flight
    /// finish with the snapshot they started with; the cache is kept.
    pub fn reload(&self, routing: Routing) {
        *self.routing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routing);
    }

    /// Purges from every tier: memory at once, the disk tier durably (a
    /// hard-purged object does not come back after a restart).
    pub async fn purge(&self, target: &PurgeTarget, soft: bool) -> PurgeReport {
        let keyed = target.as_keyed(&self.routing());
        let PurgeCounts { memory, disk } = self.tiers.purge(keyed.matcher(), soft).await;
        tracing::info!(kind = target.kind(), ?target, soft, memory, disk, "purged");
        self.observer.purged(target);
        PurgeReport { memory, disk }
    }

    /// Responses served so far, by cache result (STALE counts stale serving).
    pub fn results(&self) -> Vec<(CacheResult, u64)> {
        self.observer.results()
    }

    /// Responses by protocol ("HTTP/1.1", "HTTP/2", "HTTP/3"), status and
    /// cache result; body bytes announced by Content-Length.
    pub fn request_counts(&self) -> (Vec<(&'static str, u16, CacheResult, u64)>, u64) {
        self.observer.request_counts()
    }

    /// The URLs with the most requests and the most origin fetches over
    /// the last `seconds` complete seconds (1 to 10), `limit` of each (at
    /// most 32). Estimated from a sample of the requests under load.
    pub fn top(&self, seconds: u32, limit: usize) -> TopReport {
        self.observer.top(seconds, limit)
    }

    /// Access records dropped because the log could not keep up.
    pub fn access_log_dropped(&self) -> u64 {
        self.observer.access_log_dropped()
    }

    /// Purges done, by kind ("url", "prefix", "tag", "all").
    pub fn purge_counts(&self) -> Vec<(&'static str, u64)> {
        self.observer.purge_counts()
    }

    /// Whether listeners must tell each request its client's address
    /// (a `ClientAddress` extension): fills are limited per client.
    pub fn wants_client_address(&self) -> bool {
        self.client_fills.is_some()
    }

    /// Misses waiting for their client's fills now, and those answered 429
    /// after the wait (both 0 without a per-client limit).
    pub fn client_fills(&self) -> (usize, u64) {
        self.client_fills.as_ref().map_or((0, 0), |fills| (fills.waiting(), fills.shed()))
    }

    /// Origin fills in flight, and the client requests reading them.
    pub fn fills_in_flight(&self) -> (usize, usize) {
        self.inflight.load()
    }

    /// The budget for body bytes held by fills (use, limit, shed bodies).
    pub fn fill_budget(&self) -> &FillBudget {
        self.inflight.budget()
    }

    /// Misses refused (503) because the node ran its maximum of fills.
    pub fn fills_shed(&self) -> u64 {
        self.inflight.shed()
    }

    /// Answers one request. Never fails: every problem becomes a response.
    /// `scheme` is the listener's (`http` or `https`), part of the cache key.
    pub async fn handle<B>(&self, request: Request<B>, scheme: &'static str) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        // Status and cache result are recorded when known, for trace
        // exporters; a disabled span costs nothing.
        let span = tracing::debug_span!(
            "request",
            method = %parts.method,
            uri = %parts.uri,
            version = ?parts.version,
            status = tracing::field::Empty,
            cache = tracing::field::Empty,
        );
        let pending = self.observer.begin(&parts, started);
        let routing = self.routing();
        // An HTTP/1.x request with a body that is refused leaves that body on
        // the connection: close it rather than read on from there.
        let close_on_refusal = parts.version <= Version::HTTP_11
            && (!body.is_end_stream() || parts.headers.contains_key(header::TRANSFER_ENCODING));
        let routed = span.in_scope(|| self.route(&routing, parts, body, scheme));
        let answer = match routed {
            Ok(Routed::Now(answer)) => answer,
            // Boxed: see `route`.
            Ok(later) => Box::pin(self.route_later(later).instrument(span.clone())).await,
            Err(refusal) => {
                let mut answer = respond::refused(&routing, refusal);
                if close_on_refusal {
                    answer.response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                answer
            }
        };
        span.record("status", answer.response.status().as_u16());
        span.record("cache", answer.result.as_str());
        span.in_scope(|| tracing::debug!(status = answer.response.status().as_u16(), cache = answer.result.as_str()));
        self.observer.finish(pending, &routing, answer, &span)
    }
}
