//! holdfast-origin: how holdfast talks to origins.
//!
//! - [`Client`]: an origin group: a pooled hyper client (keep-alive;
//!   connect, header and body timeouts) over weighted origin endpoints and an
//!   optional fallback, with retries paced by backoff and jitter inside a
//!   per-request hold budget, a node-wide [`RetryBudget`], passive ejection
//!   and a circuit breaker per origin, and active health checks.
//! - [`OriginRequest`]: the outgoing request is built from an allow-list
//!   (method, path and query, Host, normalised Accept-Encoding, validators),
//!   never by forwarding the client's headers (catalogue S01).
//! - [`directory`]: an origin that serves a local directory, used by the
//!   bundled demo site and by tests.

pub mod directory;
mod error;
mod health;
pub mod retry;
mod stats;
mod timeout;

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

pub use error::{OriginError, OriginErrorKind};
use health::{Availability, Health};
pub use health::{BreakerState, HealthConfig};
pub use retry::{RetryBudget, RetryPolicy};
pub use stats::{LATENCY_BUCKETS, MemberStatus, OriginStats, OriginStatsSnapshot};
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
/// The largest read from an HTTP/1.1 origin connection, hence the largest
/// body chunk a fill gets.
const ORIGIN_READ_BUFFER: usize = 64 * 1024;

/// Requests in progress per origin (HTTP/1.1: connections; HTTP/2:
/// streams). Beyond, requests wait within their hold budget: a flood of
/// misses cannot open unbounded connections to the origin.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Where an origin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An HTTP server: `http://host:port`, or `https://host:port` (the
    /// certificate is verified, SNI is the host, HTTP/2 when ALPN offers it).
    Http { authority: Authority, tls: bool },
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
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            _ => return Err("an origin URL starts with http:// or https:// (or dir: for a directory)".into()),
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err("an origin URL has no path: give scheme, host and port only".into());
        }
        let authority = uri.authority().cloned().ok_or("an origin URL needs a host")?;
        Ok(Endpoint::Http { authority, tls })
    }

    fn label(&self) -> String {
        match self {
            Endpoint::Http { authority, tls: false } => format!("http://{authority}"),
            Endpoint::Http { authority, tls: true } => format!("https://{authority}"),
            Endpoint::Directory { root, .. } => format!("dir:{}", root.display()),
        }
    }
}

/// One origin of a group, with its share of the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub endpoint: Endpoint,
    /// Relative share of requests among healthy members (at least 1).
    pub weight: u32,
}

impl Member {
    pub fn new(endpoint: Endpoint) -> Member {
        Member { endpoint, weight: 1 }
    }
}

/// How a request picks among healthy members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    /// At random, in proportion to the weights.
    #[default]
    Weighted,
    /// By rendezvous hashing of the request's affinity key (the cache key),
    /// so each object goes to one member (a shield tier): every shield
    /// fetches an object from the origin once, not every edge.
    ConsistentHash,
}

/// Typed settings of one origin group.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub members: Vec<Member>,
    pub selection: Selection,
    /// Used when every member is ejected or has failed this request: another
    /// replica set, a shield, or an object-store endpoint.
    pub fallback: Option<Endpoint>,
    /// Host header sent to the origin; the client's Host when `None`.
    pub host: Option<String>,
    pub connect_timeout: Duration,
    /// From sending the request to receiving the whole response head.
    pub header_timeout: Duration,
    /// Longest pause between two body chunks.
    pub body_idle_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Requests in progress per origin member at most.
    pub max_connections: usize,
    pub retry: RetryPolicy,
    pub health: HealthConfig,
    /// Trusted roots for https origins besides the bundled web PKI roots
    /// (a private CA's certificates).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl OriginConfig {
    pub fn new(endpoints: Vec<Endpoint>) -> OriginConfig {
        OriginConfig {
            members: endpoints.into_iter().map(Member::new).collect(),
            selection: Selection::Weighted,
            fallback: None,
            host: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            retry: RetryPolicy::default(),
            health: HealthConfig::default(),
            extra_roots: Vec::new(),
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
    /// Wait out origin trouble within the hold budget (true), or give up
    /// after one pass over the origins (false: a stale copy is at hand).
    pub hold: bool,
    /// What consistent hashing hashes (the cache key).
    pub affinity: Option<[u8; 32]>,
    /// The Via chain the client sent, extended with this node's name, so a
    /// loop between tiers is detected by the node that sees itself in it.
    pub via: HeaderValue,
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

type HttpClient = HyperClient<HttpsConnector<HttpConnector>, BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>>;

/// Client TLS for https origins: ring, TLS 1.2 and 1.3, web PKI roots plus
/// the configured ones, ALPN h2 then http/1.1.
fn tls_config(extra_roots: &[rustls_pki_types::CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        // A root that does not parse was already reported when the config was read.
        let _ = roots.add(root.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // Invariant: the ring provider supports rustls' default versions.
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An origin group: its members, fallback, health and counters.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: OriginConfig,
    http: HttpClient,
    /// Members first, then the fallback (if any) at the end.
    targets: Vec<Target>,
    budget: Arc<RetryBudget>,
    stats: OriginStats,
}

struct Target {
    endpoint: Endpoint,
    label: String,
    weight: u32,
    fallback: bool,
    health: Health,
    /// One permit per request in progress (`max_connections`).
    slots: Arc<tokio::sync::Semaphore>,
}

/// Statuses that mean "this origin cannot answer now": retried for GET and
/// HEAD, and never relayed or stored in place of a good object.
fn status_is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

impl Client {
    /// A client with its own retry budget (tests, single-site nodes).
    pub fn new(config: OriginConfig) -> Client {
        Client::with_budget(config, Arc::new(RetryBudget::default()))
    }

    /// A client that shares the node-wide retry budget.
    pub fn with_budget(config: OriginConfig, budget: Arc<RetryBudget>) -> Client {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&config.extra_roots))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            // Body chunks of at most 64 KiB: what a fill holds per chunk
            // (and counts in its budget) stays small.
            .http1_max_buf_size(ORIGIN_READ_BUFFER)
            .build(connector);
        let members = config.members.iter().map(|m| (m.endpoint.clone(), m.weight.max(1), false));
        let fallback = config.fallback.iter().map(|e| (e.clone(), 1, true));
        let targets = members
            .chain(fallback)
            .map(|(endpoint, weight, fallback)| Target {
                label: endpoint.label(),
                endpoint,
                weight,
                fallback,
                health: Health::new(),
                slots: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
            })
            .collect();
        Client { inner: Arc::new(Inner { config, http, targets, budget, stats: OriginStats::default() }) }
    }

    pub fn config(&self) -> &OriginConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &OriginStats {
        &self.inner.stats
    }

    /// Health of each origin (members, then the fallback).
    pub fn members(&self) -> Vec<MemberStatus> {
        self.inner
            .targets
            .iter()
            .map(|t| MemberStatus {
                origin: t.label.clone(),
                in_use: self.inner.config.max_connections.max(1).saturating_sub(t.slots.available_permits()),
                fallback: t.fallback,
                breaker: t.health.breaker(),
                consecutive_failures: t.health.consecutive_failures(),
            })
            .collect()
    }

    /// Starts the active health checks (HTTP members only). They stop when
    /// the last handle to this client is dropped.
    pub fn spawn_health_checks(&self) {
        let Some(path) = self.inner.config.health.check_path.clone() else { return };
        let interval = self.inner.config.health.check_interval;
        for index in 0..self.inner.targets.len() {
            if !matches!(self.inner.targets[index].endpoint, Endpoint::Http { .. }) {
                continue;
            }
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            let path = path.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    inner.check(index, &path).await;
                }
            });
        }
    }

    /// Sends a request to the group and returns the origin's label and its
    /// response once the head has arrived; the body streams with an idle
    /// timeout.
    ///
    /// GET and HEAD are retried on refused or broken connections, timeouts
    /// and 502/503/504, on another healthy origin when there is one, with
    /// backoff and jitter, inside the hold budget and the node's retry
    /// budget. While every origin is ejected the request waits (holds) for
    /// one to recover instead of failing. Requests with a body get one try.
    pub async fn send(&self, mut request: OriginRequest) -> Result<(String, Response<OriginBody>), OriginError> {
        let inner = &self.inner;
        if inner.targets.is_empty() {
            return Err(OriginError::new(OriginErrorKind::NoOrigin, "none".into()));
        }
        inner.stats.requests.inc();
        inner.budget.deposit();
        let started = Instant::now();
        let deadline = started + if request.hold { inner.config.retry.hold_budget } else { Duration::ZERO };
        let retryable_method =
            request.body.is_none() && (request.method == Method::GET || request.method == Method::HEAD);
        let mut tried = vec![false; inner.targets.len()];
        let mut attempts: u32 = 0;
        let mut last_error: Option<OriginError> = None;
        let result = loop {
            let pass_done = tried.iter().all(|t| *t);
            if attempts > 0 && (!retryable_method || (pass_done && Instant::now() >= deadline)) {
                break Err(last_error.take());
            }
            let (index, trial) = match inner.choose(&tried, Instant::now(), request.affinity.as_ref()) {
                Choice::Use(index, trial) => (index, trial),
                Choice::WaitUntil(until) => {
                    // Every origin is ejected: hold, without load on the origin.
                    if Instant::now() >= deadline {
                        break Err(last_error.take().or_else(|| {
                            Some(OriginError::new(OriginErrorKind::NoHealthyOrigin, inner.group_label()))
                        }));
                    }
                    inner.stats.holds.inc();
                    inner.wait_for_recovery(until.min(deadline)).await;
                    tried.iter_mut().for_each(|t| *t = false);
                    continue;
                }
            };
            if attempts > 0 {
                if !inner.budget.try_withdraw() {
                    inner.stats.budget_exhausted.inc();
                    if trial {
                        inner.targets[index].health.release_trial();
                    }
                    if Instant::now() >= deadline {
                        break Err(last_error.take());
                    }
                    // No token: hold a little instead of adding origin load.
                    let pause = inner.config.retry.backoff(attempts).min(deadline - Instant::now());
                    tokio::time::sleep(pause).await;
                    continue;
                }
                inner.stats.retries.inc();
            }
            attempts += 1;
            tried[index] = true;
            let target = &inner.targets[index];
            let permit = match &target.endpoint {
                Endpoint::Directory { .. } => None,
                Endpoint::Http { .. } => match inner.slot(target, deadline).await {
                    Some(permit) => Some(permit),
                    None => {
                        // Busy, not broken: no health penalty.
                        if trial {
                            target.health.release_trial();
                        }
                        inner.stats.busy.inc();
                        let busy = OriginErrorKind::Busy(inner.config.max_connections);
                        last_error = Some(OriginError::new(busy, target.label.clone()));
                        if tried.iter().all(|t| *t) {
                            break Err(last_error.take());
                        }
                        continue;
                    }
                },
            };
            let attempt_started = Instant::now();
            let outcome = match &target.endpoint {
                Endpoint::Directory { root, cache_control } => directory::serve(root, cache_control, &request).await,
                Endpoint::Http { authority, tls } => inner.send_http(authority, *tls, &mut request).await,
            };
            let outcome = outcome.map(|response| response.map(|body| HoldingSlot { body, _slot: permit }.boxed()));
            match outcome {
                Ok(response) if retryable_method && status_is_retryable(response.status()) => {
                    let status = response.status();
                    drop(response);
                    inner.record_failure(index);
                    last_error = Some(OriginError::new(OriginErrorKind::Status(status), target.label.clone()));
                }
                Ok(response) => {
                    target.health.success();
                    inner.stats.latency.observe(attempt_started.elapsed().as_secs_f64());
                    break Ok((target.label.clone(), response));
                }
                Err(kind) => {
                    inner.record_failure(index);
                    tracing::debug!(origin = %target.label, error = %kind, attempt = attempts, "origin attempt failed");
                    last_error = Some(OriginError::new(kind, target.label.clone()));
                }
            }
            if tried.iter().all(|t| *t) {
                // Every origin had its chance: pause before the next round.
                let now = Instant::now();
                if now >= deadline {
                    break Err(last_error.take());
                }
                tokio::time::sleep(inner.config.retry.backoff(attempts).min(deadline - now)).await;
                tried.iter_mut().for_each(|t| *t = false);
            }
        };
        let held = started.elapsed();
        inner.stats.hold_time_ms.add(held.as_millis() as u64);
        result.map_err(|error| {
            inner.stats.failures.inc();
            error.unwrap_or_else(|| OriginError::new(OriginErrorKind::NoHealthyOrigin, inner.group_label()))
        })
    }
}

/// Which origin a request goes to next.
enum Choice {
    /// This target; `true` if it is a half-open breaker's trial.
    Use(usize, bool),
    /// Nothing usable before this instant.
    WaitUntil(Instant),
}

/// A response body that keeps its origin connection slot until it ends.
struct HoldingSlot {
    body: OriginBody,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl http_body::Body for HoldingSlot {
    type Data = Bytes;
    type Error = OriginError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, OriginError>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Inner {
    /// A connection slot on `target`, waiting for one until `deadline`.
    async fn slot(&self, target: &Target, deadline: Instant) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&target.slots).try_acquire_owned() {
            return Some(permit);
        }
        tokio::time::timeout_at(deadline, Arc::clone(&target.slots).acquire_owned()).await.ok()?.ok()
    }

    fn group_label(&self) -> String {
        self.targets.iter().map(|t| t.label.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Weighted random choice among ready members not yet tried; then a
    /// half-open member's trial; then the fallback; else when to look again.
    fn choose(&self, tried: &[bool], now: Instant, affinity: Option<&[u8; 32]>) -> Choice {
        let mut earliest: Option<Instant> = None;
        let mut ready: Vec<usize> = Vec::new();
        let mut trial: Option<usize> = None;
        for (index, target) in self.targets.iter().enumerate() {
            if tried[index] {
                continue;
            }
            match target.health.peek(now) {
                Availability::Ready if !target.fallback => ready.push(index),
                Availability::Ready | Availability::Trial => {
                    if trial.is_none() || (self.targets[trial.unwrap_or(0)].fallback && !target.fallback) {
                        trial = Some(index);
                    }
                }
                Availability::Wait(until) => earliest = Some(earliest.map_or(until, |e| e.min(until))),
            }
        }
        if let (Selection::ConsistentHash, Some(key)) = (self.config.selection, affinity) {
            // The member this key belongs to, or the next one in its own
            // rendezvous order when that one is down or already tried.
            if let Some(index) = ready.iter().copied().max_by_key(|i| rendezvous(key, &self.targets[*i].label)) {
                return Choice::Use(index, false);
            }
        }
        if !ready.is_empty() {
            let total: u32 = ready.iter().map(|i| self.targets[*i].weight).sum();
            let mut pick = fastrand::u32(0..total.max(1));
            for index in ready {
                let weight = self.targets[index].weight;
                if pick < weight {
                    return Choice::Use(index, false);
                }
                pick -= weight;
            }
        }
        if let Some(index) = trial {
            match self.targets[index].health.acquire(now) {
                Availability::Ready => return Choice::Use(index, false),
                Availability::Trial => return Choice::Use(index, true),
                Availability::Wait(until) => earliest = Some(earliest.map_or(until, |e| e.min(until))),
            }
        }
        // Everything was tried this round or is ejected.
        Choice::WaitUntil(earliest.unwrap_or(now + self.config.retry.base_backoff))
    }

    fn record_failure(&self, index: usize) {
        let target = &self.targets[index];
        if target.health.failure(&self.config.health, Instant::now()) {
            self.stats.ejections.inc();
            tracing::warn!(origin = %target.label, "origin ejected after consecutive failures");
        }
    }

    /// Sleeps until `until`, or until any origin recovers.
    async fn wait_for_recovery(&self, until: Instant) {
        let notified: Vec<_> = self.targets.iter().map(|t| Box::pin(t.health.recovered.notified())).collect();
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = futures_util::future::select_all(notified) => {}
        }
    }

    async fn check(&self, index: usize, path: &str) {
        let target = &self.targets[index];
        let Endpoint::Http { authority, tls } = &target.endpoint else { return };
        let mut request = OriginRequest {
            method: Method::GET,
            path_and_query: path.to_owned(),
            host: self.config.host.clone().unwrap_or_else(|| authority.host().to_owned()),
            accept_encoding: "identity",
            if_none_match: None,
            if_modified_since: None,
            body: None,
            hold: false,
            affinity: None,
            via: HeaderValue::from_static("1.1 holdfast-health-check"),
        };
        let healthy = match self.send_http(authority, *tls, &mut request).await {
            Ok(response) => !response.status().is_server_error(),
            Err(_) => false,
        };
        if healthy {
            target.health.success();
        } else {
            self.record_failure(index);
        }
    }

    async fn send_http(
        &self,
        authority: &Authority,
        tls: bool,
        request: &mut OriginRequest,
    ) -> Result<Response<OriginBody>, OriginErrorKind> {
        let config = &self.config;
        let uri = Uri::builder()
            .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
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
            .header(header::VIA, request.via.clone());
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
        let response = match tokio::time::timeout(config.header_timeout, self.http.request(outgoing)).await {
            Err(_) => return Err(OriginErrorKind::HeaderTimeout(config.header_timeout)),
            Ok(Err(e)) if e.is_connect() => return Err(OriginErrorKind::Connect(error_chain(&e))),
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

/// Rendezvous (highest random weight) score of a key on a member: FNV-1a
/// then a SplitMix64 finaliser, stable across processes and versions so
/// every edge picks the same shield for a key.
fn rendezvous(key: &[u8; 32], member: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.iter().chain(member.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
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
    fn rendezvous_spreads_keys_and_moves_only_the_lost_members_share() {
        let members = ["http://shield-a:80", "http://shield-b:80", "http://shield-c:80"];
        fn pick<'a>(key: &[u8; 32], among: &[&'a str]) -> &'a str {
            among.iter().copied().max_by_key(|m| rendezvous(key, m)).unwrap()
        }
        let keys: Vec<[u8; 32]> = (0..3000u32).map(|i| *blake_free_key(i)).collect();
        let mut counts = [0; 3];
        let mut moved = 0;
        for key in &keys {
            let first = pick(key, &members);
            counts[members.iter().position(|m| *m == first).unwrap()] += 1;
            let without_b = pick(key, &[members[0], members[2]]);
            if first != members[1] && without_b != first {
                moved += 1;
            }
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(moved, 0, "keys of the surviving members stay where they were");
    }

    fn blake_free_key(i: u32) -> Box<[u8; 32]> {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        key[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        Box::new(key)
    }

    #[test]
    fn endpoints_parse_or_explain() {
        assert!(matches!(Endpoint::parse("http://127.0.0.1:9000"), Ok(Endpoint::Http { .. })));
        assert!(matches!(Endpoint::parse("http://origin.internal"), Ok(Endpoint::Http { .. })));
        assert!(matches!(Endpoint::parse("dir:site"), Ok(Endpoint::Directory { .. })));
        assert!(Endpoint::parse("dir:").is_err());
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("127.0.0.1:9000").is_err());
        assert!(Endpoint::parse("http://x/path").is_err());
        assert!(matches!(Endpoint::parse("https://cdn.example:8443"), Ok(Endpoint::Http { tls: true, .. })));
    }
}
