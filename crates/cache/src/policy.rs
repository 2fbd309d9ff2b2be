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

/// Status codes holdfast stores: the heuristically cacheable ones of RFC 9110
/// §15.1 except 206 (ranges are cut from complete objects), 404, 405, 414
/// and 501 (negative caching comes later, and only when configured). No 5xx
/// is ever stored.
fn status_is_storable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 203 | 204 | 300 | 301 | 308 | 410)
}

/// Upper bound of a heuristic lifetime (10% of the time since Last-Modified).
pub const MAX_HEURISTIC_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Decides whether a response to a GET may be stored by a shared cache.
pub fn evaluate(status: StatusCode, headers: &HeaderMap, exchange: Exchange) -> Result<Storable, NoStoreReason> {
    if !status_is_storable(status) {
        return Err(NoStoreReason::Status);
    }
    let directives = ResponseDirectives::parse(headers);
    if directives.no_store {
        return Err(NoStoreReason::NoStore);
    }
    if directives.private {
        return Err(NoStoreReason::Private);
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err(NoStoreReason::SetCookie);
    }
    let vary = vary_names(headers).ok_or(NoStoreReason::VaryStar)?;
    let lifetime = freshness_lifetime(status, headers, &directives, exchange.response_time);
    let has_validator = headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    let freshness_lifetime = match lifetime {
        Some(lifetime) => lifetime,
        None if has_validator => Duration::ZERO,
        None => return Err(NoStoreReason::NoFreshness),
    };
    Ok(Storable {
        corrected_initial_age: corrected_initial_age(headers, exchange),
        directives,
        freshness_lifetime,
        vary,
    })
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
    let date = date_header(headers, header::DATE).unwrap_or(response_time);
    if let Some(expires) = headers.get(header::EXPIRES) {
        // An invalid Expires (for example "0") means already expired.
        let expires = expires.to_str().ok().and_then(|t| httpdate::parse_http_date(t).ok());
        return Some(match expires {
            Some(expires) => expires.duration_since(date).unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        });
    }
    if (status_is_storable(status) || directives.public)
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
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|t| httpdate::parse_http_date(t).ok())
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) and fields the cache recomputes.
/// They are dropped before a response head is stored or relayed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn exchange_at(secs: u64) -> Exchange {
        Exchange { request_time: t(secs), response_time: t(secs) }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn s_maxage_beats_max_age_beats_expires() {
        let h = headers(&[
            ("cache-control", "max-age=60, s-maxage=120".into()),
            ("expires", httpdate::fmt_http_date(t(1000))),
        ]);
        let s = evaluate(StatusCode::OK, &h, exchange_at(0)).unwrap();
        assert_eq!(s.freshness_lifetime, Duration::from_secs(120));
        let h = headers(&[("cache-control", "max-age=60".into()), ("expires", httpdate::fmt_http_date(t(1000)))]);
        assert_eq!(evaluate(StatusCode::OK, &h, exchange_at(0)).unwrap().freshness_lifetime, Duration::from_secs(60));
    }

    #[test]
    fn expires_is_relative_to_date_and_invalid_expires_is_stale() {
        let h = headers(&[("date", httpdate::fmt_http_date(t(0))), ("expires", httpdate::fmt_http_date(t(300)))]);
        let s = evaluate(StatusCode::OK, &h, exchange_at(5)).unwrap();
        assert_eq!(s.freshness_lifetime, Duration::from_secs(300));
        let h = headers(&[("expires", "0".into()), ("etag", "\"x\"".into())]);
        assert_eq!(evaluate(StatusCode::OK, &h, exchange_at(0)).unwrap().freshness_lifetime, Duration::ZERO);
    }

    #[test]
    fn heuristic_is_a_tenth_of_last_modified_age_capped() {
        let h =
            headers(&[("date", httpdate::fmt_http_date(t(10_000))), ("last-modified", httpdate::fmt_http_date(t(0)))]);
        assert_eq!(
            evaluate(StatusCode::OK, &h, exchange_at(10_000)).unwrap().freshness_lifetime,
            Duration::from_secs(1000)
        );
        let h = headers(&[
            ("date", httpdate::fmt_http_date(t(100 * 24 * 3600))),
            ("last-modified", httpdate::fmt_http_date(t(0))),
        ]);
        assert_eq!(
            evaluate(StatusCode::OK, &h, exchange_at(100 * 24 * 3600)).unwrap().freshness_lifetime,
            MAX_HEURISTIC_LIFETIME
        );
    }

    #[test]
    fn refusals_have_reasons() {
        let e = exchange_at(0);
        let cases: &[(&[(&'static str, &str)], NoStoreReason)] = &[
            (&[("cache-control", "no-store, max-age=60")], NoStoreReason::NoStore),
            (&[("cache-control", "private, max-age=60")], NoStoreReason::Private),
            (&[("cache-control", "max-age=60"), ("vary", "accept-encoding, *")], NoStoreReason::VaryStar),
            (&[("cache-control", "max-age=60"), ("set-cookie", "a=b")], NoStoreReason::SetCookie),
            (&[], NoStoreReason::NoFreshness),
        ];
        for (pairs, reason) in cases {
            let h = headers(&pairs.iter().map(|(k, v)| (*k, v.to_string())).collect::<Vec<_>>());
            assert_eq!(evaluate(StatusCode::OK, &h, e).unwrap_err(), *reason, "{pairs:?}");
        }
        let h = headers(&[("cache-control", "max-age=60".into())]);
        for status in [206, 302, 404, 500, 502, 503] {
            assert_eq!(evaluate(StatusCode::from_u16(status).unwrap(), &h, e).unwrap_err(), NoStoreReason::Status);
        }
    }

    #[test]
    fn no_cache_is_stored_but_never_fresh_by_itself() {
        let h = headers(&[("cache-control", "no-cache".into()), ("etag", "\"v1\"".into())]);
        let s = evaluate(StatusCode::OK, &h, exchange_at(0)).unwrap();
        assert!(s.directives.no_cache);
    }

    #[test]
    fn age_uses_the_larger_of_apparent_and_corrected_age() {
        // Origin says Age 100, the exchange took 2 s, Date is 10 s before receipt.
        let h = headers(&[("age", "100".into()), ("date", httpdate::fmt_http_date(t(8)))]);
        let ex = Exchange { request_time: t(16), response_time: t(18) };
        assert_eq!(corrected_initial_age(&h, ex), Duration::from_secs(102));
        let h = headers(&[("date", httpdate::fmt_http_date(t(0)))]);
        assert_eq!(corrected_initial_age(&h, ex), Duration::from_secs(18));
        // A Date in the future does not make the age negative.
        let h = headers(&[("date", httpdate::fmt_http_date(t(99)))]);
        assert_eq!(corrected_initial_age(&h, ex), Duration::from_secs(2));
    }

    /// Regression (issue 13): `Age: 2^64-1` overflowed the Duration sum and
    /// panicked the fill, then every lookup of the object.
    #[test]
    fn huge_invalid_and_listed_ages() {
        let ex = Exchange { request_time: t(0), response_time: t(5) };
        let cases: &[(&str, Duration)] = &[
            ("18446744073709551615", MAX_AGE),
            ("99999999999999999999999999", MAX_AGE),
            ("60, 120", Duration::from_secs(65)),
            ("-5", Duration::from_secs(5)),
            ("1e3", Duration::from_secs(5)),
            ("", Duration::from_secs(5)),
            (" 30 ", Duration::from_secs(35)),
        ];
        for (value, expected) in cases {
            let h = headers(&[("age", (*value).to_owned())]);
            assert_eq!(corrected_initial_age(&h, ex), *expected, "Age: {value:?}");
        }
    }

    #[test]
    fn vary_names_are_normalised() {
        let h = headers(&[("vary", "Accept-Encoding, accept-language".into()), ("vary", "accept-encoding".into())]);
        let names = vary_names(&h).unwrap();
        assert_eq!(names, vec![HeaderName::from_static("accept-encoding"), HeaderName::from_static("accept-language")]);
    }

    #[test]
    fn hop_by_hop_fields_are_stripped() {
        let mut h = headers(&[
            ("connection", "x-secret, close".into()),
            ("x-secret", "1".into()),
            ("keep-alive", "timeout=5".into()),
            ("transfer-encoding", "chunked".into()),
            ("etag", "\"e\"".into()),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("etag"));
    }
}
