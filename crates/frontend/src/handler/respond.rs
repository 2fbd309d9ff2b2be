//! Responses: from the store (conditional, range, HEAD), from the origin as
//! it streams in, and the ones holdfast writes itself. Each comes as an
//! [`Answer`] that says what the cache did; `x-cache` and `Cache-Status`
//! are written from it here, and nowhere else.

use std::time::SystemTime;

use bytes::Bytes;
use holdfast_cache::{Meta, control, encoding};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

use super::route::ClientRequest;
use super::{CACHE_STATUS, CacheResult, ResponseBody, Routing, X_CACHE};
use crate::conditional;
use crate::disk_body::DiskStream;
use crate::fill::{FillReader, ResponseHead, reader_body};
use crate::range::{self, RangeRequest};
use crate::tiers::{Stored, StoredBody};
use crate::upstream::UpstreamError;

/// A response and what the cache did for it, for the counters, the access
/// log and the request's span.
pub(crate) struct Answer {
    pub response: Response<ResponseBody>,
    pub result: CacheResult,
    /// The site that served the request (its index in the routing snapshot).
    pub site: Option<usize>,
    /// The origin that answered a miss or pass.
    pub origin: Option<String>,
    /// This request made an origin fetch: it led a fill (miss or
    /// revalidation), a pass, or started a background refresh. Waiters on
    /// another request's fill did not.
    pub fetched: bool,
}

/// Why a client request is refused before the cache is consulted.
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

pub(crate) fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

pub(crate) fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub(crate) fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Fields that direct this node alone (Surrogate-Control, the configured
/// targets) are not for browsers. A request that came through another
/// cache (it has `Via`: an edge asking its shield) gets them, so every tier
/// obeys the same instructions. CDN-Cache-Control, aimed at every CDN, is
/// always forwarded (see [`control::is_targeted_field`]).
fn strip_targeted_fields(request: &ClientRequest, headers: &mut HeaderMap) {
    let Some(targets) = targets_to_strip(request) else { return };
    let is_targeted = |name: &HeaderName| control::is_targeted_field(name, targets);
    if !headers.keys().any(is_targeted) {
        return;
    }
    let names: Vec<_> = headers.keys().filter(|name| is_targeted(name)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// The targeted fields this response must not carry, if any (see
/// [`strip_targeted_fields`]).
fn targets_to_strip(request: &ClientRequest) -> Option<&[HeaderName]> {
    (!request.headers.contains_key(header::VIA)).then_some(&request.routing.config.policy.targets[..])
}

fn set_result(headers: &mut HeaderMap, result: CacheResult, detail: &str) {
    set_result_with(headers, result, format_args!("{detail}"));
}

/// [`set_result`] with the detail formatted straight into the value's one
/// buffer (the hit path runs this for every response).
///
/// Cache-Status keeps what the caches upstream (a shield) said and adds
/// this node's member last, closest to the client (RFC 9211 §2); X-Cache
/// says only what this node did.
fn set_result_with(headers: &mut HeaderMap, result: CacheResult, detail: std::fmt::Arguments<'_>) {
    use std::fmt::Write;
    headers.insert(X_CACHE, HeaderValue::from_static(result.as_str()));
    let mut status = String::with_capacity(48);
    for upstream in headers.get_all(CACHE_STATUS) {
        // A member that is not text cannot be kept in a text list.
        if let Ok(text) = upstream.to_str()
            && !text.trim().is_empty()
        {
            status.push_str(text.trim());
            status.push_str(", ");
        }
    }
    let _ = write!(status, "holdfast; {detail}");
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(status)) {
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

/// A refused client request (4xx), with a body naming the cause.
pub(crate) fn refused(routing: &Routing, refusal: Refusal) -> Answer {
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
    Answer { response, result: CacheResult::Error, site: None, origin: None, fetched: false }
}

/// How long clients are told to wait after an origin failure.
const RETRY_AFTER_SECONDS: &str = "5";

/// No origin answered within the budget: 502, 503 or 504 with the reason,
/// `Retry-After`, and never a cached or relayed error page.
pub(crate) fn origin_failure(request: &ClientRequest, error: &UpstreamError) -> Answer {
    let mut response = synthetic(error.status, &error.reason);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    set_result(headers, CacheResult::Error, "fwd=miss; detail=origin-error");
    Answer { response, result: CacheResult::Error, site: Some(request.site), origin: None, fetched: false }
}

/// The head of a 304: the fields RFC 9110 §15.4.5 lists, plus ours.
fn not_modified(headers: &HeaderMap) -> Response<ResponseBody> {
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
/// `now` is when the answer is made, for Age and the remaining lifetime.
pub(crate) fn from_store(request: &ClientRequest, hit: Stored, result: CacheResult, now: SystemTime) -> Answer {
    let meta = &hit.meta;
    // Room for the fields added below, so they never grow (and rehash) the map.
    let mut headers = HeaderMap::with_capacity(meta.headers.len() + ADDED_ON_HIT);
    let strip = targets_to_strip(request);
    for (name, value) in meta.headers.iter() {
        if !strip.is_some_and(|targets| control::is_targeted_field(name, targets)) {
            headers.append(name.clone(), value);
        }
    }
    let age = meta.age(now);
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    let ttl = meta.freshness_lifetime.saturating_sub(age).as_secs();
    match result {
        CacheResult::Hit => set_result_with(&mut headers, result, format_args!("hit; ttl={ttl}")),
        CacheResult::Revalidated => {
            set_result_with(&mut headers, result, format_args!("fwd=stale; fwd-status=304; ttl={ttl}"))
        }
        CacheResult::Stale => set_result(&mut headers, result, "hit; detail=stale-origin-error"),
        _ => set_result(&mut headers, result, "fwd=method"),
    }
    let answer = |response| Answer { response, result, site: Some(request.site), origin: None, fetched: false };
    if meta.status == StatusCode::OK && conditional::not_modified(&request.headers, &headers, meta.stored_at) {
        return answer(not_modified(&headers));
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
    answer(response)
}

/// Fields a stored response gets when served: Age, X-Cache, Cache-Status,
/// Content-Length, Accept-Ranges, Content-Range.
const ADDED_ON_HIT: usize = 6;

/// A range of a partial object (kept 206 segments), as a 206 HIT.
pub(crate) fn from_partial(
    request: &ClientRequest,
    meta: &Meta,
    span: std::ops::Range<u64>,
    bytes: Bytes,
    now: SystemTime,
) -> Answer {
    let mut headers = meta.headers.to_map();
    headers.insert(header::AGE, HeaderValue::from(meta.age(now).as_secs()));
    let ttl = meta.freshness_lifetime.saturating_sub(meta.age(now)).as_secs();
    set_result_with(&mut headers, CacheResult::Hit, format_args!("hit; ttl={ttl}; detail=partial"));
    strip_targeted_fields(request, &mut headers);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let content_range = format!("bytes {}-{}/{}", span.start, span.end - 1, meta.size);
    if let Ok(value) = HeaderValue::from_str(&content_range) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    let mut response = Response::new(full(bytes));
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    *response.headers_mut() = headers;
    Answer { response, result: CacheResult::Hit, site: Some(request.site), origin: None, fetched: false }
}

/// Relays a response as it streams in from the origin (through the fill).
pub(crate) fn from_origin(
    request: &ClientRequest,
    head: &ResponseHead,
    reader: FillReader,
    result: CacheResult,
) -> Answer {
    if !encoding::client_accepts(request.raw_accept_encoding.as_ref(), &head.headers) {
        // The origin ignored the Accept-Encoding it was sent: bytes this
        // client cannot decode are an origin fault, not a response.
        let mut response =
            synthetic(StatusCode::BAD_GATEWAY, "origin sent a Content-Encoding the client did not accept");
        set_result(response.headers_mut(), CacheResult::Error, "fwd=uri-miss; detail=origin-coding");
        return Answer {
            response,
            result: CacheResult::Error,
            site: Some(request.site),
            origin: Some(head.origin.clone()),
            fetched: false,
        };
    }
    let mut headers = head.headers.clone();
    let status = head.status.as_u16();
    match (result, head.storable) {
        (CacheResult::Pass, _) => {
            set_result_with(&mut headers, result, format_args!("fwd=method; fwd-status={status}"))
        }
        (_, Ok(())) => set_result_with(&mut headers, result, format_args!("fwd=uri-miss; fwd-status={status}; stored")),
        (_, Err(reason)) => set_result_with(
            &mut headers,
            result,
            format_args!("fwd=uri-miss; fwd-status={status}; detail={}", reason.as_str()),
        ),
    }
    strip_targeted_fields(request, &mut headers);
    let origin = Some(head.origin.clone());
    if head.status == StatusCode::OK
        && result == CacheResult::Miss
        && conditional::not_modified(&request.headers, &headers, SystemTime::now())
    {
        return Answer { response: not_modified(&headers), result, site: Some(request.site), origin, fetched: false };
    }
    let body = if request.method == Method::HEAD { empty() } else { reader_body(reader) };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = headers;
    Answer { response, result, site: Some(request.site), origin, fetched: false }
}
