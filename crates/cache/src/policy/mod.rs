//! RFC 9111 rules for a shared cache: may this response be stored, how long
//! is it fresh, how old is it.
//!
//! Every function takes the times it needs as arguments.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderName};
use http::{HeaderMap, StatusCode};

use crate::control::ResponseDirectives;

/// Why a response was not stored. Closed set, stable names: the same string
/// appears in logs, metrics and the `Cache-Status` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoStoreReason {
    /// The request method is not cacheable (only GET is).
    Method,
    /// The status code is not one holdfast stores.
    Status,
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: private`: a shared cache must not store it.
    Private,
    /// `Vary: *` can never match a later request.
    VaryStar,
    /// `Set-Cookie`: storing it would hand one client's cookie to others.
    SetCookie,
    /// No explicit or heuristic freshness and no validator to revalidate with.
    NoFreshness,
    /// The body is larger than the configured maximum object size.
    TooLarge,
    /// The body ended before its announced length, or with an error.
    Truncated,
    /// The node's budget for bodies in flight was full: the body streamed
    /// through without being stored.
    BufferBudget,
    /// The origin answered with a content coding the request did not ask for.
    Coding,
    /// The request carried `Authorization` and the response does not say a
    /// shared cache may reuse it (RFC 9111 §3.5).
    Authorization,
}

impl NoStoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NoStoreReason::Method => "method",
            NoStoreReason::Status => "status",
            NoStoreReason::NoStore => "no-store",
            NoStoreReason::Private => "private",
            NoStoreReason::VaryStar => "vary-star",
            NoStoreReason::SetCookie => "set-cookie",
            NoStoreReason::NoFreshness => "no-freshness",
            NoStoreReason::TooLarge => "too-large",
            NoStoreReason::Truncated => "truncated",
            NoStoreReason::BufferBudget => "buffer-budget",
            NoStoreReason::Coding => "coding",
            NoStoreReason::Authorization => "authorization",
        }
    }
}

/// When the origin request was sent and its response head received: the
/// inputs of the age calculation (RFC 9111 §4.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// A response head that may be stored, with what the cache needs from it.
#[derive(Debug, Clone)]
pub struct Storable {
    pub directives: ResponseDirectives,
    /// How long the response is fresh, counted from its origin date.
    pub freshness_lifetime: Duration,
    /// Age of the response when it was received.
    pub corrected_initial_age: Duration,
    /// Request header names the response varies on, lowercase, sorted.
    pub vary: Vec<HeaderName>,
}

/// Status codes a cache may store with heuristic freshness (RFC 9110
/// §15.1). 206 is left out until partial responses are stored as such.
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501)
}

/// Final status codes whose caching rules holdfast implements (for
/// `must-understand`, RFC 9111 §5.2.2.3): those RFC 9110 defines, except
/// 206 (partial content is not stored as a whole response) and 304 (a
/// validator, never a stored response).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=303 | 305 | 307 | 308 | 400..=418 | 421 | 422 | 426 | 500..=505
    )
}

/// Upper bound of a heuristic lifetime (10% of the time since Last-Modified).
pub const MAX_HEURISTIC_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How this node reads responses, beyond RFC 9111's defaults.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Targeted cache-control fields this node obeys over `Cache-Control`,
    /// most specific first (RFC 9213): the operator's names, then
    /// `CDN-Cache-Control`.
    pub targets: Vec<HeaderName>,
    /// Lifetime of a 404 that says nothing about its freshness (opt-in:
    /// an asset that appears with a deploy must not stay missing).
    pub negative_ttl: Option<Duration>,
    /// Longest an error (4xx, 5xx) stays fresh, whatever it says: an error
    /// page sent with the site's year-long asset headers must not outlive
    /// the incident. `None`: as long as the origin says.
    pub max_error_ttl: Option<Duration>,
}

/// Default of [`Policy::max_error_ttl`].
pub const DEFAULT_MAX_ERROR_TTL: Duration = Duration::from_secs(60);

/// What of the request decides whether its response may be stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// The request carried `Authorization` to the origin (RFC 9111 §3.5).
    pub authorization: bool,
}

impl Policy {
    /// The policy with `CDN-Cache-Control` as its only targeted field.
    pub fn standard() -> Policy {
        Policy {
            targets: vec![crate::control::CDN_CACHE_CONTROL],
            negative_ttl: None,
            max_error_ttl: Some(DEFAULT_MAX_ERROR_TTL),
        }
    }

    /// Decides whether a response to a GET may be stored by this shared
    /// cache (RFC 9111 §3), and for how long it is fresh.
    pub fn evaluate(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        exchange: Exchange,
        request: RequestFacts,
    ) -> Result<Storable, NoStoreReason> {
        // 1xx never get here; 206 and 304 are not complete responses.
        if status.is_informational() || status == StatusCode::PARTIAL_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Err(NoStoreReason::Status);
        }
        let directives = ResponseDirectives::parse_targeted(headers, &self.targets);
        if directives.must_understand {
            if !understood(status) {
                return Err(NoStoreReason::Status);
            }
        } else if directives.no_store {
            return Err(NoStoreReason::NoStore);
        }
        if directives.private {
            return Err(NoStoreReason::Private);
        }
        if request.authorization && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
        {
            return Err(NoStoreReason::Authorization);
        }
        if headers.contains_key(header::SET_COOKIE) {
            return Err(NoStoreReason::SetCookie);
        }
        let vary = vary_names(headers).ok_or(NoStoreReason::VaryStar)?;
        let lifetime = freshness_lifetime(status, headers, &directives, exchange.response_time)
            .or_else(|| (status == StatusCode::NOT_FOUND).then_some(self.negative_ttl).flatten())
            .map(|lifetime| match self.max_error_ttl {
                Some(cap) if status.as_u16() >= 400 => lifetime.min(cap),
                _ => lifetime,
            });
        let has_validator = headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
        let freshness_lifetime = match lifetime {
            Some(lifetime) => lifetime,
            // Stored to be revalidated on each use (RFC 9111 §3 allows a
            // heuristically cacheable status without explicit freshness).
            None if has_validator && (heuristically_cacheable(status) || directives.public) => Duration::ZERO,
            None if !heuristically_cacheable(status) && !directives.public => return Err(NoStoreReason::Status),
            None => return Err(NoStoreReason::NoFreshness),
        };
        Ok(Storable {
            corrected_initial_age: corrected_initial_age(headers, exchange),
            directives,
            freshness_lifetime,
            vary,
        })
    }
}

/// [`Policy::evaluate`] with the standard policy, for a request without
/// `Authorization`.
pub fn evaluate(status: StatusCode, headers: &HeaderMap, exchange: Exchange) -> Result<Storable, NoStoreReason> {
    Policy::standard().evaluate(status, headers, exchange, RequestFacts::default())
}

/// The header names of `Vary`, lowercase, sorted and without duplicates;
/// `None` for `Vary: *`.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(header::VARY) {
        let text = value.to_str().ok()?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            // A name that is not a valid token cannot match any request
            // header; treat it like `*` rather than ignore it.
            names.push(HeaderName::from_bytes(name.as_bytes()).ok()?);
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

/// Freshness lifetime (RFC 9111 §4.2.1): s-maxage, then max-age, then
/// Expires minus Date, then a heuristic from Last-Modified. `None` when
/// there is nothing to go on.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    response_time: SystemTime,
) -> Option<Duration> {
    if let Some(s_maxage) = directives.s_maxage {
        return Some(s_maxage);
    }
    if let Some(max_age) = directives.max_age {
        return Some(max_age);
    }
    // A missing or invalid Date counts as the time of receipt (§4.2.3).
    let date = date_header(headers, header::DATE).unwrap_or(response_time);
    if let Some(expires) = headers.get(header::EXPIRES).filter(|_| !directives.targeted) {
        // An invalid Expires (for example "0") means already expired.
        let expires = expires.to_str().ok().and_then(parse_http_date);
        return Some(match expires {
            Some(expires) => expires.duration_since(date).unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        });
    }
    if (heuristically_cacheable(status) || directives.public)
        && let Some(last_modified) = date_header(headers, header::LAST_MODIFIED)
    {
        let since = date.duration_since(last_modified).unwrap_or(Duration::ZERO);
        return Some((since / 10).min(MAX_HEURISTIC_LIFETIME));
    }
    None
}

/// corrected_initial_age (RFC 9111 §4.2.3): the larger of the apparent age
/// (response_time - Date) and the origin's Age plus the response delay.
pub fn corrected_initial_age(headers: &HeaderMap, exchange: Exchange) -> Duration {
    let age_value = age(headers).unwrap_or(Duration::ZERO);
    let apparent_age = date_header(headers, header::DATE)
        .and_then(|date| exchange.response_time.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let response_delay = exchange.response_time.duration_since(exchange.request_time).unwrap_or(Duration::ZERO);
    apparent_age.max(age_value.saturating_add(response_delay)).min(MAX_AGE)
}

/// The largest age a cache must represent (RFC 9111 §1.2.2): a larger or
/// overflowing value counts as this.
pub const MAX_AGE: Duration = Duration::from_secs(1 << 31);

/// `Age` (RFC 9111 §5.1): delta-seconds; of a list (several fields or
/// values), the first; an invalid value is ignored; too large is 2^31.
pub fn age(headers: &HeaderMap) -> Option<Duration> {
    let first = headers.get(header::AGE)?.to_str().ok()?.split(',').next()?.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = first.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_AGE))
}

fn date_header(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(parse_http_date)
}

/// An HTTP-date in any of its three formats (RFC 9110 §5.6.7: IMF-fixdate,
/// RFC 850, asctime), with day and month names in any case, as recipients
/// are asked to accept.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(time) = httpdate::parse_http_date(text) {
        return Some(time);
    }
    // "THU, 01 JAN 1970 00:00:00 gmt" -> "Thu, 01 Jan 1970 00:00:00 GMT".
    let mut normal = String::with_capacity(text.len());
    let mut word_start = true;
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            normal.push(if word_start { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
            word_start = false;
        } else {
            normal.push(c);
            word_start = true;
        }
    }
    let normal = normal.replace("Gmt", "GMT");
    httpdate::parse_http_date(&normal).ok().or_else(|| with_any_day_name(&normal))
}

/// The date read with its day name ignored: a wrong one ("Thu Aug  8
/// 02:01:18 2050", a Monday) does not make the date unreadable, as for
/// browsers and other caches. The date itself says which day it was.
fn with_any_day_name(text: &str) -> Option<SystemTime> {
    const SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const LONG: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let day_len = text.find(|c: char| !c.is_ascii_alphabetic())?;
    let names = match day_len {
        3 => SHORT,
        6..=9 => LONG,
        _ => return None,
    };
    if !names.contains(&&text[..day_len]) {
        return None;
    }
    let rest = &text[day_len..];
    names.iter().find_map(|day| httpdate::parse_http_date(&format!("{day}{rest}")).ok())
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) and fields the cache recomputes.
/// A match on the (lowercase) name: a `const` array of names would be built
/// again for every field compared.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "keep-alive"
            | "proxy-connection"
    )
}

/// Drops the hop-by-hop fields, and those `Connection` names, before a
/// response head is stored or relayed. One pass over the fields present
/// (every miss runs it, twice), then a removal for each one found.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let doomed: Vec<HeaderName> =
        headers.keys().filter(|name| is_hop_by_hop(name) || named.contains(name)).cloned().collect();
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests;
