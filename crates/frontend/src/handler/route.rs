//! From a client request to an [`Answer`]: the checks every request
//! passes, the host and its site, the lookup in the tiers, and the fill or
//! pass-through when the tiers do not answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use holdfast_cache::encoding::{self, normalize_accept_encoding};
use holdfast_cache::{DiskTier, Key};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;

use super::invalidate::invalidated_keys;
use super::respond::{self, Answer, Refusal, refuse};
use super::site::normalize_host;
use super::{CacheResult, EarlyData, Handler, Routing};
use crate::conditional;
use crate::fill::{ClientAddress, FillHead, FillJob, coalescing_key};
use crate::range::{self, RangeRequest};
use crate::tiers::{Found, Stored};
use crate::tls::CertificateNames;
use crate::upstream::{BoxError, PassThroughBody, UpstreamError};

/// The parts of a client request the handler works with.
pub(crate) struct ClientRequest {
    pub method: Method,
    pub scheme: &'static str,
    /// Lowercase, without port.
    pub host: String,
    pub path_and_query: String,
    pub accept_encoding: &'static str,
    /// The client's own Accept-Encoding: a relayed response's coding must
    /// be one it accepts.
    pub raw_accept_encoding: Option<HeaderValue>,
    /// Client headers with Accept-Encoding normalised.
    pub headers: HeaderMap,
    /// Index of the site that serves the host, in `routing.sites`.
    pub site: usize,
    /// The limits and sites this request is served with.
    pub routing: Arc<Routing>,
    /// The purge epoch when the request arrived.
    pub epoch: u64,
    /// The disk tier, to quarantine a body that fails verification as it
    /// is streamed.
    pub disk: Option<Arc<DiskTier>>,
    /// The client's address, when fills are limited per client.
    pub client: Option<IpAddr>,
}

impl ClientRequest {
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path_and_query)
    }
}

/// What routing decided without waiting, and the work left that waits
/// (on the disk or the origin).
pub(super) enum Routed<B> {
    /// Answered at once: a memory hit (or a stale one served while it
    /// refreshes), a kept range.
    Now(Answer),
    /// Relayed to the origin uncached (a configured method).
    Pass(ClientRequest, B),
    /// A memory miss the disk tier may hold.
    Disk(ClientRequest, Key, SystemTime),
    /// A miss, or a stale copy to revalidate: the coalesced fill.
    Fill(ClientRequest, Key, Option<Stored>),
}

/// A lookup's outcome: answered, or a fill (with the stale copy, if any).
enum AfterLookup {
    Answer(Answer),
    Fill(Option<Stored>),
}

impl Handler {
    /// The part of a request's path that never waits: checks, host, key
    /// and the memory tier. A hit is answered here in the first poll, so
    /// the future a protocol keeps (and moves into its task) per request
    /// is small; what waits runs in [`Handler::route_later`], boxed.
    pub(super) fn route<B>(
        &self,
        routing: &Arc<Routing>,
        parts: Parts,
        body: B,
        scheme: &'static str,
    ) -> Result<Routed<B>, Refusal>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        check_limits(routing, &parts)?;
        check_framing(&parts, &body)?;
        if parts.extensions.get::<EarlyData>().is_some() && parts.method != Method::GET && parts.method != Method::HEAD
        {
            return Err(refuse(StatusCode::TOO_EARLY, "only GET and HEAD are accepted as early data (0-RTT)"));
        }
        check_loop(&parts.headers, &routing.config.node_name)?;
        let (host, site) = host(routing, &parts)?;
        // The one target the key and the origin request are both made from.
        let path_and_query = routing.sites[site].query.apply(target(&parts)?);
        let mut headers = parts.headers;
        let raw_accept_encoding = encoding::raw_accept_encoding(&headers);
        let accept_encoding = normalize_accept_encoding(headers.get_all(header::ACCEPT_ENCODING));
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept_encoding));
        let request = ClientRequest {
            method: parts.method,
            scheme,
            host,
            path_and_query,
            accept_encoding,
            raw_accept_encoding,
            headers,
            site,
            routing: Arc::clone(routing),
            epoch: self.tiers.epoch(),
            disk: self.tiers.disk().cloned(),
            client: parts.extensions.get::<ClientAddress>().map(|address| address.0),
        };

        if request.method != Method::GET && request.method != Method::HEAD {
            if routing.config.pass_methods.contains(&request.method) {
                return Ok(Routed::Pass(request, body));
            }
            return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
        }

        // HEAD shares GET's entry: a HEAD miss fills the cache with a GET.
        let primary = Key::primary("GET", scheme, &request.host, &request.path_and_query);
        let now = SystemTime::now();
        let found = self.tiers.lookup_memory(&primary, &request.headers, now);
        if matches!(found, Found::Miss) && self.tiers.may_be_on_disk(&primary) {
            return Ok(Routed::Disk(request, primary, now));
        }
        Ok(match self.after_lookup(&request, &primary, found, now) {
            AfterLookup::Answer(answer) => Routed::Now(answer),
            AfterLookup::Fill(stale) => Routed::Fill(request, primary, stale),
        })
    }

    /// The rest of a request that [`Handler::route`] could not answer at once.
    pub(super) async fn route_later<B>(&self, routed: Routed<B>) -> Answer
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (request, primary, stale) = match routed {
            Routed::Now(answer) => return answer,
            Routed::Pass(request, body) => return self.pass(request, body).await,
            Routed::Disk(request, primary, now) => {
                let found = self.tiers.lookup_disk(&primary, &request.headers, now).await;
                match self.after_lookup(&request, &primary, found, now) {
                    AfterLookup::Answer(answer) => return answer,
                    AfterLookup::Fill(stale) => (request, primary, stale),
                }
            }
            Routed::Fill(request, primary, stale) => (request, primary, stale),
        };
        self.fill(&request, primary, stale).await
    }

    /// What the tiers found for a GET or HEAD: an answer now, or a fill.
    fn after_lookup(&self, request: &ClientRequest, primary: &Key, found: Found, now: SystemTime) -> AfterLookup {
        match found {
            Found::Fresh(hit) => AfterLookup::Answer(respond::from_store(request, hit, CacheResult::Hit, now)),
            Found::Stale(hit) if hit.meta.within_stale_while_revalidate(now) => {
                // Serve the stale copy now; one background refresh per key.
                // Without room for another fill the refresh waits for a later request.
                let key = coalescing_key(primary, Some(&hit), &request.headers, false);
                let refresh = self.inflight.join_or_start(
                    key,
                    || FillJob::fill(request, &self.tiers, *primary, Some(hit.clone())),
                    None,
                );
                let started = matches!(refresh, Ok((_, true)));
                drop(refresh);
                let mut answer = respond::from_store(request, hit, CacheResult::Stale, now);
                answer.fetched = started;
                AfterLookup::Answer(answer)
            }
            Found::Stale(hit) => AfterLookup::Fill(Some(hit)),
            Found::Miss => match self.range_of_partial(request, primary, now) {
                Some(answer) => AfterLookup::Answer(answer),
                None => AfterLookup::Fill(None),
            },
        }
    }

    /// A range answered from a partial object (206 segments kept): only
    /// when one kept segment holds every byte asked, the object is fresh,
    /// and an `If-Range` still matches.
    fn range_of_partial(&self, request: &ClientRequest, primary: &Key, now: SystemTime) -> Option<Answer> {
        let range = request.headers.get(header::RANGE)?.to_str().ok()?;
        if request.method != Method::GET {
            return None;
        }
        let partial = self.tiers.partial(primary)?;
        if !partial.meta.is_fresh(now) {
            return None;
        }
        if let Some(if_range) = request.headers.get(header::IF_RANGE)
            && !conditional::if_range_matches(if_range, &partial.meta.headers.to_map())
        {
            return None;
        }
        let RangeRequest::Partial(span) = range::parse(range, partial.meta.size) else { return None };
        let bytes = partial.bytes(&span)?;
        Some(respond::from_partial(request, &partial.meta, span, bytes, now))
    }

    /// Stale or miss: join or start the fill for this key and answer from it.
    async fn fill(&self, request: &ClientRequest, primary: Key, stale: Option<Stored>) -> Answer {
        let ranged = request.routing.sites[request.site].forward.includes(&header::RANGE);
        let key = coalescing_key(&primary, stale.as_ref(), &request.headers, ranged);
        // A fill this request would start counts against its client's share.
        let mut permit = None;
        if let (Some(limit), Some(client)) = (&self.client_fills, request.client)
            && !self.inflight.is_joinable(&key)
        {
            permit = limit.acquire(client).await;
            if permit.is_none() {
                let reason = "too many origin fetches in progress for this client";
                return shed(request, stale, reason, StatusCode::TOO_MANY_REQUESTS);
            }
        }
        let joined =
            self.inflight.join_or_start(key, || FillJob::fill(request, &self.tiers, primary, stale.clone()), permit);
        let Ok((mut reader, leader)) = joined else {
            let reason = "too many origin fetches in progress on this node";
            return shed(request, stale, reason, StatusCode::SERVICE_UNAVAILABLE);
        };
        let mut head = reader.head().await;
        let shareable = match &head {
            FillHead::Response(response) => response.shareable && response.same_variant(&primary, &request.headers),
            FillHead::Revalidated(_, shareable) => *shareable,
            _ => true,
        };
        let mut fetched = leader;
        if !shareable && !leader {
            // Meant for one client (Set-Cookie, private), or another
            // variant than this request selects: fetch our own.
            drop(reader);
            reader = self.inflight.start_alone(FillJob::fill(request, &self.tiers, primary, None));
            head = reader.head().await;
            fetched = true;
        }
        // The origin may have taken a while: ages count from now.
        let now = SystemTime::now();
        let mut answer = match head {
            FillHead::Response(response) => respond::from_origin(request, &response, reader, CacheResult::Miss),
            FillHead::Revalidated(hit, _) => respond::from_store(request, hit, CacheResult::Revalidated, now),
            FillHead::Stale(hit, _) => respond::from_store(request, hit, CacheResult::Stale, now),
            FillHead::Failed(error) => respond::origin_failure(request, &error),
        };
        answer.fetched = fetched;
        answer
    }

    /// Relays a request with a configured method to the origin, uncached.
    async fn pass<B>(&self, request: ClientRequest, body: B) -> Answer
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let body = PassThroughBody {
            body: body.map_err(Into::into).boxed(),
            content_type: request.headers.get(header::CONTENT_TYPE).cloned(),
            content_length: request.headers.get(header::CONTENT_LENGTH).cloned(),
        };
        let job = FillJob::pass(&request, &self.tiers, body);
        let reader = self.inflight.start_alone(job);
        let mut answer = match reader.head().await {
            FillHead::Response(response) => {
                if response.status.is_success() || response.status.is_redirection() {
                    self.tiers.invalidate(invalidated_keys(&request, &response.headers));
                }
                respond::from_origin(&request, &response, reader, CacheResult::Pass)
            }
            FillHead::Failed(error) | FillHead::Stale(_, error) => respond::origin_failure(&request, &error),
            FillHead::Revalidated(hit, _) => respond::from_store(&request, hit, CacheResult::Pass, SystemTime::now()),
        };
        answer.fetched = true;
        answer
    }
}

/// A miss the node will not fetch now (too many fills, for the node or for
/// this client): its stale copy if it may be served, else `status` with
/// `Retry-After`.
fn shed(request: &ClientRequest, stale: Option<Stored>, reason: &str, status: StatusCode) -> Answer {
    let now = SystemTime::now();
    match stale {
        Some(hit) if hit.meta.usable_on_error(now, request.routing.config.max_stale_on_error) => {
            respond::from_store(request, hit, CacheResult::Stale, now)
        }
        _ => respond::origin_failure(request, &UpstreamError { reason: reason.into(), status }),
    }
}

fn check_limits(routing: &Routing, parts: &Parts) -> Result<(), Refusal> {
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

/// The path and query, in origin-form.
fn target(parts: &Parts) -> Result<String, Refusal> {
    match parts.uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => {
            // Bytes RFC 3986 does not allow in a target and every browser
            // percent-encodes: a request that has them was not made by one.
            if pq.as_str().bytes().any(|b| matches!(b, b'"' | b'<' | b'>' | b'\\' | b'`')) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "request target has characters that must be percent-encoded",
                ));
            }
            Ok(pq.as_str().to_owned())
        }
        _ if parts.method == Method::OPTIONS && parts.uri == "*" => {
            Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "OPTIONS * is not supported"))
        }
        _ => Err(refuse(StatusCode::BAD_REQUEST, "request target must be a path starting with /")),
    }
}

/// The host this request is for (lowercase, without port) and its site.
/// Never an open proxy: an absolute-form target must name a host a site
/// claims.
fn host(routing: &Routing, parts: &Parts) -> Result<(String, usize), Refusal> {
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
        (Version::HTTP_2 | Version::HTTP_3, Some(authority)) => {
            // RFC 9113 §8.3.1, RFC 9114 §4.3.1: a Host naming another host
            // than :authority makes the request malformed (one of them is
            // keyed, the other may be what an origin or a cache behind reads).
            if header_host.is_some_and(|h| normalize_host(h) != normalize_host(authority)) {
                return Err(refuse(StatusCode::BAD_REQUEST, "Host and :authority name different hosts"));
            }
            (authority, false)
        }
        // HTTP/1.x absolute-form ("GET http://host/path"): a proxy request.
        (_, Some(authority)) => (authority, true),
        (_, None) => (header_host.ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing Host header"))?, false),
    };
    let host = normalize_host(raw).ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "invalid Host"))?;
    if parts.extensions.get::<CertificateNames>().is_some_and(|names| names.misdirects(&host)) {
        return Err(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "another certificate than this connection's serves that host",
        ));
    }
    let site = routing.site_for(&host);
    if absolute_form {
        // A catch-all site serves a proxy-style target only for its own Host.
        let allowed = site.is_some_and(|i| {
            !routing.sites[i].hosts.is_empty() || header_host.and_then(normalize_host).as_deref() == Some(host.as_str())
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
