//! The one request handler, shared by every protocol and listener.
//!
//! Request path: validate -> host -> method -> normalise Accept-Encoding ->
//! key -> lookup -> (fresh hit: serve it) | (stale or miss: coalesced fill)
//! -> respond. Every response says what the cache did in `x-cache`, and in
//! RFC 9211 `Cache-Status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use holdfast_cache::encoding::normalize_accept_encoding;
use holdfast_cache::{DiskTier, Key, Store};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};

use crate::access::{AccessLog, AccessRecord, LoggedBody, Served};
use crate::conditional;
use crate::disk_body::DiskStream;
use crate::fill::{FillHead, FillJob, FillReader, Inflight, ResponseHead, reader_body};
use crate::range::{self, RangeRequest};
use crate::tiers::{Found, PurgeCounts, Stored, StoredBody, Tiers};
use crate::upstream::{BoxError, Fetch, PassThroughBody, Upstream, UpstreamBody, UpstreamError};

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
    /// Served from the store while stale, because the origin failed.
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
}

/// A site: the host names it answers for and the origin group behind them.
/// Every site has its own origins; the cache key includes the host, so no
/// site can be served another's content.
pub struct Site {
    /// A name for logs and stats.
    pub name: String,
    /// Exact names or `*.example.com` wildcards; empty answers any host
    /// that no other site claims.
    pub hosts: Vec<String>,
    pub upstream: Arc<dyn Upstream>,
}

impl Site {
    fn claims_exactly(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| !h.starts_with("*.") && h.eq_ignore_ascii_case(host))
    }

    /// Length of the longest wildcard suffix matching `host`.
    fn wildcard_match(&self, host: &str) -> Option<usize> {
        self.hosts
            .iter()
            .filter_map(|h| h.strip_prefix("*."))
            .filter(|suffix| {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            })
            .map(str::len)
            .max()
    }
}

/// Set on a request that arrived as TLS early data (QUIC 0-RTT): it may be
/// a replay, so only safe methods are served (RFC 8470).
#[derive(Debug, Clone, Copy)]
pub struct EarlyData;

/// What a purge selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// One URL (`https://host/path?query`; the scheme is ignored, so the
    /// http and https copies go together), every variant of it.
    Url(String),
    /// Every URL that starts with this (`host/path-prefix`, scheme optional).
    Prefix(String),
    /// Every object tagged so by `Surrogate-Key` or `Cache-Tag`.
    Tag(String),
    /// Everything.
    All,
}

impl PurgeTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            PurgeTarget::Url(_) => "url",
            PurgeTarget::Prefix(_) => "prefix",
            PurgeTarget::Tag(_) => "tag",
            PurgeTarget::All => "all",
        }
    }

    /// The matcher over stored metadata, for every tier.
    fn matcher(&self) -> Arc<dyn Fn(&holdfast_cache::Meta) -> bool + Send + Sync> {
        match self {
            PurgeTarget::Url(url) => {
                let url = normalize_purge_url(url);
                Arc::new(move |meta| meta.purge_url() == url)
            }
            PurgeTarget::Prefix(prefix) => {
                let prefix = normalize_purge_url(prefix);
                Arc::new(move |meta| meta.purge_url().starts_with(&prefix))
            }
            PurgeTarget::Tag(tag) => {
                let tag = tag.clone();
                Arc::new(move |meta| meta.tags.contains(&tag))
            }
            PurgeTarget::All => Arc::new(|_| true),
        }
    }
}

/// `https://Host:443/p` -> `host/p`: the form stored URLs are matched in
/// (without scheme; host lowercase and without port, as keys are made).
fn normalize_purge_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let host = normalize_host(authority).unwrap_or_else(|| authority.to_ascii_lowercase());
    format!("{host}{path}")
}

/// How many stored responses a purge reached, per tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub memory: u64,
    pub disk: u64,
}

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
}

pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_URI_LEN: usize = 8 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Enough for a few large objects in flight at once, or many small ones.
pub const DEFAULT_FILL_BUFFER_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENT_FILLS: usize = 1024;

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
        }
    }
}

/// What a config reload can change: the limits and the sites with their
/// origins. Each request works with one snapshot from start to end.
pub struct Routing {
    pub config: HandlerConfig,
    pub sites: Vec<Site>,
}

impl Routing {
    /// The index of the site that answers for `host`: an exact name first,
    /// then the longest wildcard, then a site without names.
    fn site_for(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.sites.iter().position(|s| s.claims_exactly(host)) {
            return Some(i);
        }
        let wildcard = self.sites.iter().enumerate().filter_map(|(i, s)| s.wildcard_match(host).map(|len| (len, i)));
        if let Some((_, i)) = wildcard.max_by_key(|(len, _)| *len) {
            return Some(i);
        }
        self.sites.iter().position(|s| s.hosts.is_empty())
    }
}

/// The protocol-agnostic request handler.
pub struct Handler {
    routing: std::sync::RwLock<Arc<Routing>>,
    /// Memory, and the disk tier behind it if configured.
    tiers: Arc<Tiers>,
    inflight: Arc<Inflight>,
    /// Responses by cache result, indexed like `CacheResult::ALL`.
    results: [AtomicU64; 6],
    /// Responses by (protocol, status, cache result), and body bytes.
    requests: std::sync::Mutex<std::collections::HashMap<(Version, u16, CacheResult), u64>>,
    response_bytes: AtomicU64,
    purges: std::sync::Mutex<std::collections::HashMap<&'static str, u64>>,
    access_log: Option<Arc<dyn AccessLog>>,
}

impl Handler {
    pub fn new(config: HandlerConfig, store: Store, sites: Vec<Site>) -> Handler {
        let budget = Arc::new(crate::budget::FillBudget::new(config.fill_buffer_size));
        let inflight = Arc::new(Inflight::new(budget, config.max_concurrent_fills.max(1)));
        Handler {
            routing: std::sync::RwLock::new(Arc::new(Routing { config, sites })),
            tiers: Arc::new(Tiers::new(store, None)),
            inflight,
            results: Default::default(),
            requests: Default::default(),
            response_bytes: AtomicU64::new(0),
            purges: Default::default(),
            access_log: None,
        }
    }

    /// Sends one record per request to `sink` once its body is done.
    pub fn with_access_log(mut self, sink: Arc<dyn AccessLog>) -> Handler {
        self.access_log = Some(sink);
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

    /// A handler with one site that answers every host (tests, simple nodes).
    pub fn single(config: HandlerConfig, store: Store, upstream: Arc<dyn Upstream>) -> Handler {
        let site = Site { name: "default".into(), hosts: Vec::new(), upstream };
        Handler::new(config, store, vec![site])
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

    pub fn store(&self) -> &Store {
        self.tiers.memory()
    }

    /// Purges from every tier: memory at once, the disk tier durably (a
    /// hard-purged object does not come back after a restart).
    pub async fn purge(&self, target: &PurgeTarget, soft: bool) -> PurgeReport {
        let PurgeCounts { memory, disk } = self.tiers.purge(target.matcher(), soft).await;
        tracing::info!(kind = target.kind(), ?target, soft, memory, disk, "purged");
        *self.purges.lock().unwrap_or_else(|p| p.into_inner()).entry(target.kind()).or_default() += 1;
        PurgeReport { memory, disk }
    }

    /// Responses served so far, by cache result (STALE counts stale serving).
    pub fn results(&self) -> Vec<(CacheResult, u64)> {
        CacheResult::ALL.iter().zip(&self.results).map(|(r, n)| (*r, n.load(Ordering::Relaxed))).collect()
    }

    /// Responses by protocol ("HTTP/1.1", "HTTP/2", "HTTP/3"), status and
    /// cache result; body bytes announced by Content-Length.
    pub fn request_counts(&self) -> (Vec<(&'static str, u16, CacheResult, u64)>, u64) {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let counts = requests
            .iter()
            .map(|((version, status, result), n)| (protocol_name(*version), *status, *result, *n))
            .collect();
        (counts, self.response_bytes.load(Ordering::Relaxed))
    }

    /// Access records dropped because the log could not keep up.
    pub fn access_log_dropped(&self) -> u64 {
        self.access_log.as_ref().map_or(0, |log| log.dropped())
    }

    /// Purges done, by kind.
    pub fn purge_counts(&self) -> Vec<(&'static str, u64)> {
        self.purges.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, n)| (*k, *n)).collect()
    }

    /// Origin fills in flight, and the client requests reading them.
    pub fn fills_in_flight(&self) -> (usize, usize) {
        self.inflight.load()
    }

    /// The budget for body bytes held by fills (use, limit, shed bodies).
    pub fn fill_budget(&self) -> &crate::budget::FillBudget {
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
        let started = std::time::Instant::now();
        let (parts, body) = request.into_parts();
        let version = parts.version;
        let logged = self.access_log.as_ref().map(|_| {
            let path = parts.uri.path_and_query().map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_owned());
            (parts.method.to_string(), path)
        });
        let routing = self.routing();
        // An HTTP/1.x request with a body that is refused leaves that body on
        // the connection: close it rather than read on from there.
        let close_on_refusal = version <= Version::HTTP_11
            && (!body.is_end_stream() || parts.headers.contains_key(header::TRANSFER_ENCODING));
        let mut response = match self.route(&routing, parts, body, scheme).await {
            Ok(response) => response,
            Err(refusal) => {
                let mut response = refuse_response(&routing, refusal);
                if close_on_refusal {
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        };
        let result =
            response.headers().get(X_CACHE).and_then(|v| CacheResult::ALL.iter().position(|r| v == r.as_str()));
        if let Some(index) = result {
            self.results[index].fetch_add(1, Ordering::Relaxed);
            let key = (version, response.status().as_u16(), CacheResult::ALL[index]);
            *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default() += 1;
        }
        let length = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        self.response_bytes.fetch_add(length.unwrap_or(0), Ordering::Relaxed);
        match (&self.access_log, logged) {
            (Some(sink), Some((method, path))) => {
                let served = response.extensions_mut().remove::<Served>();
                let record = AccessRecord {
                    time: SystemTime::now(),
                    site: served.as_ref().map_or_else(String::new, |s| s.site.clone()),
                    method,
                    path,
                    protocol: protocol_name(version),
                    status: response.status().as_u16(),
                    cache: result.map_or("-", |i| CacheResult::ALL[i].as_str()),
                    bytes: 0,
                    ttfb: started.elapsed(),
                    total: Duration::ZERO,
                    origin: served.and_then(|s| s.origin),
                    complete: false,
                };
                response.map(|body| LoggedBody::new(body, record, started, Arc::clone(sink), length).boxed())
            }
            _ => response,
        }
    }
}

/// HTTP/1.x body framing the node accepts. A GET or HEAD carries no body:
/// a body there is how request smuggling starts (a cache that answers from
/// its store leaves the body on the connection), so it is refused, as is a
/// transfer coding other than `chunked` (RFC 9112 §6.1; 400 rather than
/// 501: the client sent something no client should). HTTP/2 and HTTP/3
/// frame bodies themselves.
fn check_framing<B: Body>(parts: &Parts, body: &B) -> Result<(), Refusal> {
    if parts.version > Version::HTTP_11 {
        return Ok(());
    }
    let mut codings = parts.headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    let chunked = codings.peek().is_some();
    if chunked && !codings.all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")) {
        return Err(refuse(StatusCode::BAD_REQUEST, "transfer coding other than chunked"));
    }
    if (parts.method == Method::GET || parts.method == Method::HEAD) && (chunked || !body.is_end_stream()) {
        return Err(refuse(StatusCode::BAD_REQUEST, "a GET or HEAD request has no body"));
    }
    Ok(())
}

/// A 508 when this node is already in the client's Via chain (an edge and
/// a shield pointing at each other). Allocates nothing: it runs on hits too.
fn check_loop(headers: &HeaderMap, node_name: &str) -> Result<(), Refusal> {
    for value in headers.get_all(header::VIA) {
        let Ok(text) = value.to_str() else { continue };
        // "1.1 name" or "1.1 name (comment)": the received-by field is the second word.
        if text.split(',').any(|hop| hop.split_whitespace().nth(1) == Some(node_name)) {
            return Err(refuse(StatusCode::LOOP_DETECTED, "request loop between cache tiers (Via names this node)"));
        }
    }
    Ok(())
}

/// The Via sent upstream: the client's chain plus this node.
fn via_upstream(headers: &HeaderMap, node_name: &str) -> HeaderValue {
    let mut chain: Vec<&str> = headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    let own = format!("1.1 {node_name}");
    chain.push(&own);
    HeaderValue::from_str(&chain.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("1.1 holdfast"))
}

/// A refused client request (4xx), with a body naming the cause.
fn refuse_response(routing: &Routing, refusal: Refusal) -> Response<ResponseBody> {
    let mut response = synthetic(refusal.status, refusal.reason);
    let headers = response.headers_mut();
    set_result(headers, CacheResult::Error, "detail=refused");
    if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
        let mut allow = String::from("GET, HEAD");
        for method in &routing.config.pass_methods {
            allow.push_str(", ");
            allow.push_str(method.as_str());
        }
        if let Ok(allow) = HeaderValue::from_str(&allow) {
            headers.insert(header::ALLOW, allow);
        }
    }
    response
}

impl Handler {
    async fn route<B>(
        &self,
        routing: &Arc<Routing>,
        parts: Parts,
        body: B,
        scheme: &'static str,
    ) -> Result<Response<ResponseBody>, Refusal>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        self.check_limits(routing, &parts)?;
        check_framing(&parts, &body)?;
        if parts.extensions.get::<EarlyData>().is_some() && parts.method != Method::GET && parts.method != Method::HEAD
        {
            return Err(refuse(StatusCode::TOO_EARLY, "only GET and HEAD are accepted as early data (0-RTT)"));
        }
        check_loop(&parts.headers, &routing.config.node_name)?;
        let (host, site) = self.host(routing, &parts)?;
        let path_and_query = match parts.uri.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => {
                // Bytes RFC 3986 does not allow in a target and every browser
                // percent-encodes: a request that has them was not made by one.
                if pq.as_str().bytes().any(|b| matches!(b, b'"' | b'<' | b'>' | b'\\' | b'`')) {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "request target has characters that must be percent-encoded",
                    ));
                }
                pq.as_str().to_owned()
            }
            _ if parts.method == Method::OPTIONS && parts.uri == "*" => {
                return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "OPTIONS * is not supported"));
            }
            _ => return Err(refuse(StatusCode::BAD_REQUEST, "request target must be a path starting with /")),
        };
        let mut headers = parts.headers;
        let accept_encoding = normalize_accept_encoding(headers.get_all(header::ACCEPT_ENCODING));
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept_encoding));
        let request = ClientRequest {
            method: parts.method,
            scheme,
            host,
            path_and_query,
            accept_encoding,
            headers,
            site,
            routing: Arc::clone(routing),
            log: self.access_log.is_some(),
            epoch: self.tiers.epoch(),
            disk: self.tiers.disk().cloned(),
        };

        if request.method != Method::GET && request.method != Method::HEAD {
            if routing.config.pass_methods.contains(&request.method) {
                return Ok(self.pass(request, body).await);
            }
            return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
        }

        // HEAD shares GET's entry: a HEAD miss fills the cache with a GET.
        let primary = Key::primary("GET", scheme, &request.host, &request.path_and_query);
        let now = SystemTime::now();
        let mut response = match self.tiers.lookup(&primary, &request.headers, now).await {
            Found::Fresh(hit) => respond_from_store(&request, hit, CacheResult::Hit, now),
            Found::Stale(hit) if hit.meta.within_stale_while_revalidate(now) => {
                // Serve the stale copy now; one background refresh per key.
                let coalescing_key = primary.variant(&[header::ACCEPT_ENCODING], &request.headers);
                // Without room for another fill the refresh waits for a later request.
                let refresh =
                    self.inflight.join_or_start(coalescing_key, || self.fill_job(&request, primary, Some(hit.clone())));
                drop(refresh);
                respond_from_store(&request, hit, CacheResult::Stale, now)
            }
            Found::Stale(hit) => self.fill(&request, primary, Some(hit)).await,
            Found::Miss => self.fill(&request, primary, None).await,
        };
        if request.log && response.extensions().get::<Served>().is_none() {
            response.extensions_mut().insert(Served { site: request.site_name(), origin: None });
        }
        Ok(response)
    }

    fn check_limits(&self, routing: &Routing, parts: &Parts) -> Result<(), Refusal> {
        let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if target_len > routing.config.max_uri_len {
            return Err(refuse(StatusCode::URI_TOO_LONG, "request target too long"));
        }
        if parts.headers.len() > routing.config.max_headers {
            return Err(refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields"));
        }
        let bytes: usize = parts.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
        if bytes > routing.config.max_header_bytes {
            return Err(refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "header fields too large"));
        }
        Ok(())
    }

    /// The host this request is for (lowercase, without port) and its
    /// site. Never an open proxy: an absolute-form target must name a host
    /// a site claims.
    fn host(&self, routing: &Routing, parts: &Parts) -> Result<(String, usize), Refusal> {
        if parts.headers.get_all(header::HOST).iter().nth(1).is_some() {
            // RFC 9112 §3.2: more than one Host is a 400.
            return Err(refuse(StatusCode::BAD_REQUEST, "more than one Host header"));
        }
        let header_host = match parts.headers.get(header::HOST).map(|v| v.to_str()) {
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => return Err(refuse(StatusCode::BAD_REQUEST, "invalid Host header")),
            None => None,
        };
        if let Some(scheme) = parts.uri.scheme_str()
            && !scheme.eq_ignore_ascii_case("http")
            && !scheme.eq_ignore_ascii_case("https")
        {
            return Err(refuse(StatusCode::BAD_REQUEST, "request target scheme is not http or https"));
        }
        let authority = parts.uri.authority().map(|a| a.as_str());
        let (raw, absolute_form) = match (parts.version, authority) {
            (Version::HTTP_2 | Version::HTTP_3, Some(authority)) => (authority, false),
            // HTTP/1.x absolute-form ("GET http://host/path"): a proxy request.
            (_, Some(authority)) => (authority, true),
            (_, None) => (header_host.ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing Host header"))?, false),
        };
        let host = normalize_host(raw).ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "invalid Host"))?;
        let site = routing.site_for(&host);
        if absolute_form {
            // A catch-all site serves a proxy-style target only for its own Host.
            let allowed = site.is_some_and(|i| {
                !routing.sites[i].hosts.is_empty()
                    || header_host.and_then(normalize_host).as_deref() == Some(host.as_str())
            });
            if !allowed {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "absolute-form request for a host this node does not serve (not a proxy)",
                ));
            }
        }
        match site {
            Some(site) => Ok((host, site)),
            None => Err(refuse(routing.config.unknown_host_status, "this node does not serve that host")),
        }
    }

    fn fill_job(&self, request: &ClientRequest, primary: Key, stale: Option<Stored>) -> FillJob {
        let validators = stale.as_ref().map(|hit| (hit.meta.etag().cloned(), hit.meta.last_modified().cloned()));
        let (if_none_match, if_modified_since) = validators.unwrap_or((None, None));
        let hold = stale
            .as_ref()
            .is_none_or(|hit| !hit.meta.usable_on_error(SystemTime::now(), request.routing.config.max_stale_on_error));
        FillJob {
            upstream: Arc::clone(&request.routing.sites[request.site].upstream),
            tiers: Arc::clone(&self.tiers),
            epoch: request.epoch,
            primary,
            request_headers: request.headers.clone(),
            url: request.url(),
            fetch: Fetch {
                method: Method::GET,
                path_and_query: request.path_and_query.clone(),
                host: request.host.clone(),
                accept_encoding: request.accept_encoding,
                if_none_match,
                if_modified_since,
                body: None,
                hold,
                affinity: *primary.as_bytes(),
                via: via_upstream(&request.headers, &request.routing.config.node_name),
            },
            stale,
            cacheable: true,
            max_object_size: request.routing.config.max_object_size,
            max_stale: request.routing.config.max_stale_on_error,
        }
    }

    /// Stale or miss: join or start the fill for this key and answer from it.
    async fn fill(&self, request: &ClientRequest, primary: Key, stale: Option<Stored>) -> Response<ResponseBody> {
        // Coalesce on what reaches the origin: the key plus the coding asked for.
        let coalescing_key = primary.variant(&[header::ACCEPT_ENCODING], &request.headers);
        let joined = self.inflight.join_or_start(coalescing_key, || self.fill_job(request, primary, stale.clone()));
        let Ok((mut reader, leader)) = joined else {
            // Shed: the node runs as many fills as it allows.
            let now = SystemTime::now();
            return match stale {
                Some(hit) if hit.meta.usable_on_error(now, request.routing.config.max_stale_on_error) => {
                    respond_from_store(request, hit, CacheResult::Stale, now)
                }
                _ => origin_failure(&UpstreamError {
                    reason: "too many origin fetches in progress on this node".into(),
                    status: StatusCode::SERVICE_UNAVAILABLE,
                }),
            };
        };
        let mut head = reader.head().await;
        let shareable = match &head {
            FillHead::Response(response) => response.shareable,
            FillHead::Revalidated(_, shareable) => *shareable,
            _ => true,
        };
        if !shareable && !leader {
            // Meant for one client (Set-Cookie, private): fetch our own.
            drop(reader);
            reader = self.inflight.start_alone(self.fill_job(request, primary, None));
            head = reader.head().await;
        }
        let now = SystemTime::now();
        match head {
            FillHead::Response(response) => respond_from_origin(request, &response, reader, CacheResult::Miss),
            FillHead::Revalidated(hit, _) => respond_from_store(request, hit, CacheResult::Revalidated, now),
            FillHead::Stale(hit, _) => respond_from_store(request, hit, CacheResult::Stale, now),
            FillHead::Failed(error) => origin_failure(&error),
        }
    }

    /// Relays a request with a configured method to the origin, uncached.
    async fn pass<B>(&self, request: ClientRequest, body: B) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let primary = Key::primary(request.method.as_str(), request.scheme, &request.host, &request.path_and_query);
        let mut job = self.fill_job(&request, primary, None);
        job.cacheable = false;
        job.fetch.hold = false;
        job.fetch.method = request.method.clone();
        job.fetch.body = Some(PassThroughBody {
            body: body.map_err(Into::into).boxed(),
            content_type: request.headers.get(header::CONTENT_TYPE).cloned(),
            content_length: request.headers.get(header::CONTENT_LENGTH).cloned(),
        });
        let reader = self.inflight.start_alone(job);
        match reader.head().await {
            FillHead::Response(response) => respond_from_origin(&request, &response, reader, CacheResult::Pass),
            FillHead::Failed(error) | FillHead::Stale(_, error) => origin_failure(&error),
            FillHead::Revalidated(hit, _) => respond_from_store(&request, hit, CacheResult::Pass, SystemTime::now()),
        }
    }
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The parts of a client request the handler works with.
struct ClientRequest {
    method: Method,
    scheme: &'static str,
    host: String,
    path_and_query: String,
    accept_encoding: &'static str,
    /// Client headers with Accept-Encoding normalised.
    headers: HeaderMap,
    /// Index of the site that serves the host.
    site: usize,
    /// The limits and sites this request is served with.
    routing: Arc<Routing>,
    /// Whether responses carry what the access log needs (`Served`).
    log: bool,
    /// The purge epoch when the request arrived.
    epoch: u64,
    /// The disk tier, to quarantine a body that fails verification as it
    /// is streamed.
    disk: Option<Arc<DiskTier>>,
}

impl ClientRequest {
    fn site_name(&self) -> String {
        self.routing.sites.get(self.site).map_or_else(String::new, |s| s.name.clone())
    }

    fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path_and_query)
    }
}

/// Lowercases a host and strips its port; `None` if it is not a plausible
/// host name or IP literal.
///
/// RFC 9110 §7.2: `Host = uri-host [ ":" port ]`, `port = *DIGIT`; userinfo
/// (`user@host`) is refused, not stripped (RFC 9110 §4.2.4).
fn normalize_host(authority: &str) -> Option<String> {
    let digits = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(digits);
        return (port_ok
            && !inside.is_empty()
            && inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'))
        .then(|| format!("[{}]", inside.to_ascii_lowercase()));
    } else {
        match authority.split_once(':') {
            Some((host, port)) if digits(port) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn set_result(headers: &mut HeaderMap, result: CacheResult, detail: &str) {
    headers.insert(X_CACHE, HeaderValue::from_static(result.as_str()));
    let status = format!("holdfast; {detail}");
    if let Ok(value) = HeaderValue::from_str(&status) {
        headers.insert(CACHE_STATUS, value);
    }
}

/// A response holdfast writes itself: plain text naming the cause, never stored.
fn synthetic(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let body = format!("holdfast: {text}\n");
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a client request is refused before the cache is consulted.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// How long clients are told to wait after an origin failure.
const RETRY_AFTER_SECONDS: &str = "5";

/// No origin answered within the budget: 502, 503 or 504 with the reason,
/// `Retry-After`, and never a cached or relayed error page.
fn origin_failure(error: &UpstreamError) -> Response<ResponseBody> {
    let mut response = synthetic(error.status, &error.reason);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    set_result(headers, CacheResult::Error, "fwd=miss; detail=origin-error");
    response
}

/// The head of a 304: the fields RFC 9110 §15.4.5 lists, plus ours.
fn not_modified_response(headers: &HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    let out = response.headers_mut();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
        header::AGE,
        X_CACHE,
        CACHE_STATUS,
    ] {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    response
}

/// Serves a stored object: 200, 206, 304, 416, or a HEAD.
fn respond_from_store(
    request: &ClientRequest,
    hit: Stored,
    result: CacheResult,
    now: SystemTime,
) -> Response<ResponseBody> {
    let meta = &hit.meta;
    let mut headers = meta.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(meta.age(now).as_secs()));
    let ttl = meta.freshness_lifetime.saturating_sub(meta.age(now)).as_secs();
    let detail = match result {
        CacheResult::Hit => format!("hit; ttl={ttl}"),
        CacheResult::Revalidated => format!("fwd=stale; fwd-status=304; ttl={ttl}"),
        CacheResult::Stale => "hit; detail=stale-origin-error".to_owned(),
        _ => "fwd=method".to_owned(),
    };
    set_result(&mut headers, result, &detail);
    if meta.status == StatusCode::OK && conditional::not_modified(&request.headers, &headers) {
        return not_modified_response(&headers);
    }
    let len = hit.body.len();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let mut status = meta.status;
    let mut span = 0..len;
    if meta.status == StatusCode::OK {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let range = request.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let if_range_ok =
            request.headers.get(header::IF_RANGE).is_none_or(|v| conditional::if_range_matches(v, &headers));
        if let (Some(range), true, true) = (range, if_range_ok, request.method == Method::GET) {
            match range::parse(range, len) {
                RangeRequest::Full => {}
                RangeRequest::Partial(r) => {
                    status = StatusCode::PARTIAL_CONTENT;
                    let content_range = format!("bytes {}-{}/{len}", r.start, r.end - 1);
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
                    if let Ok(v) = HeaderValue::from_str(&content_range) {
                        headers.insert(header::CONTENT_RANGE, v);
                    }
                    // Both bounds are within the body: `range::parse` clamps them.
                    span = r.start..r.end;
                }
                RangeRequest::Unsatisfiable => {
                    status = StatusCode::RANGE_NOT_SATISFIABLE;
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                        headers.insert(header::CONTENT_RANGE, v);
                    }
                    span = 0..0;
                }
            }
        }
    }
    let body = match hit.body {
        _ if request.method == Method::HEAD || span.is_empty() => empty(),
        StoredBody::Memory(bytes) => full(bytes.slice(span.start as usize..span.end as usize)),
        StoredBody::Disk(chunks) => DiskStream::new(chunks, span, request.disk.clone()).boxed(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Relays a response as it streams in from the origin (through the fill).
fn respond_from_origin(
    request: &ClientRequest,
    head: &ResponseHead,
    reader: FillReader,
    result: CacheResult,
) -> Response<ResponseBody> {
    let mut headers = head.headers.clone();
    let detail = match (result, head.storable) {
        (CacheResult::Pass, _) => format!("fwd=method; fwd-status={}", head.status.as_u16()),
        (_, Ok(())) => format!("fwd=uri-miss; fwd-status={}; stored", head.status.as_u16()),
        (_, Err(reason)) => format!("fwd=uri-miss; fwd-status={}; detail={}", head.status.as_u16(), reason.as_str()),
    };
    set_result(&mut headers, result, &detail);
    tracing::debug!(url = %request.url(), origin = %head.origin, status = head.status.as_u16(), "{}", result.as_str());
    let served = request.log.then(|| Served { site: request.site_name(), origin: Some(head.origin.clone()) });
    if head.status == StatusCode::OK
        && result == CacheResult::Miss
        && conditional::not_modified(&request.headers, &headers)
    {
        let mut response = not_modified_response(&headers);
        if let Some(served) = served {
            response.extensions_mut().insert(served);
        }
        return response;
    }
    let body = if request.method == Method::HEAD { empty() } else { reader_body(reader) };
    let mut response = Response::new(body);
    if let Some(served) = served {
        response.extensions_mut().insert(served);
    }
    *response.status_mut() = head.status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("user@host"), None, "userinfo is an error, not something to strip");
        assert_eq!(normalize_host("host:80:80"), None);
        assert_eq!(normalize_host("host:abc"), None);
        assert_eq!(normalize_host("host: 80"), None);
        assert_eq!(normalize_host("host:").as_deref(), Some("host"), "port = *DIGIT");
        assert_eq!(normalize_host("[::1]x"), None);
        assert_eq!(normalize_host("bad host"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("[zz]"), None);
    }
}
