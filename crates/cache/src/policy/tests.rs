//! Table-driven tests of the storing and freshness rules.

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
    let h =
        headers(&[("cache-control", "max-age=60, s-maxage=120".into()), ("expires", httpdate::fmt_http_date(t(1000)))]);
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
    let h = headers(&[("date", httpdate::fmt_http_date(t(10_000))), ("last-modified", httpdate::fmt_http_date(t(0)))]);
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
}

/// RFC 9111 §3: what may be stored, by status. One row per case:
/// status, response fields, and the lifetime stored (or the refusal).
#[test]
fn storable_statuses() {
    let e = exchange_at(1000);
    let lm = httpdate::fmt_http_date(t(0));
    let date = httpdate::fmt_http_date(t(1000));
    type Row = (u16, Vec<(&'static str, String)>, Result<u64, NoStoreReason>);
    let rows: Vec<Row> = vec![
        // Explicit freshness makes any final status storable.
        (200, vec![("cache-control", "max-age=60".into())], Ok(60)),
        (302, vec![("cache-control", "max-age=60".into())], Ok(60)),
        (307, vec![("expires", httpdate::fmt_http_date(t(1060))), ("date", date.clone())], Ok(60)),
        (404, vec![("cache-control", "max-age=60".into())], Ok(60)),
        (500, vec![("cache-control", "max-age=60".into())], Ok(60)),
        (503, vec![("cache-control", "s-maxage=5".into())], Ok(5)),
        (599, vec![("cache-control", "max-age=60".into())], Ok(60)),
        // 206 and 304 are never stored as responses; 1xx never get here.
        (206, vec![("cache-control", "max-age=60".into())], Err(NoStoreReason::Status)),
        (304, vec![("cache-control", "max-age=60".into())], Err(NoStoreReason::Status)),
        // Heuristic freshness only for heuristically cacheable statuses.
        (200, vec![("last-modified", lm.clone()), ("date", date.clone())], Ok(100)),
        // (errors: at most max_error_ttl, 60 s)
        (404, vec![("last-modified", lm.clone()), ("date", date.clone())], Ok(60)),
        (410, vec![("last-modified", lm.clone()), ("date", date.clone())], Ok(60)),
        (302, vec![("last-modified", lm.clone()), ("date", date.clone())], Err(NoStoreReason::Status)),
        (500, vec![("last-modified", lm.clone()), ("date", date.clone())], Err(NoStoreReason::Status)),
        (302, vec![("etag", "\"x\"".into())], Err(NoStoreReason::Status)),
        // `public` makes a status heuristically cacheable.
        (302, vec![("cache-control", "public".into()), ("last-modified", lm.clone()), ("date", date)], Ok(100)),
        // must-understand: no-store is ignored for an understood status.
        (200, vec![("cache-control", "must-understand, no-store, max-age=60".into())], Ok(60)),
        (299, vec![("cache-control", "must-understand, no-store, max-age=60".into())], Err(NoStoreReason::Status)),
        (299, vec![("cache-control", "no-store, max-age=60".into())], Err(NoStoreReason::NoStore)),
    ];
    for (status, pairs, expected) in rows {
        let h = headers(&pairs);
        let got = evaluate(StatusCode::from_u16(status).unwrap(), &h, e).map(|s| s.freshness_lifetime.as_secs());
        assert_eq!(got, expected, "{status} {pairs:?}");
    }
}

/// The opt-in negative TTL applies to 404s without freshness, nothing else.
#[test]
fn negative_ttl_is_opt_in_and_only_for_404() {
    let policy = Policy { negative_ttl: Some(Duration::from_secs(30)), ..Policy::standard() };
    let none = HeaderMap::new();
    let facts = RequestFacts::default();
    let got = |p: &Policy, s| p.evaluate(StatusCode::from_u16(s).unwrap(), &none, exchange_at(0), facts);
    assert_eq!(got(&policy, 404).unwrap().freshness_lifetime, Duration::from_secs(30));
    assert_eq!(got(&Policy::standard(), 404).unwrap_err(), NoStoreReason::NoFreshness);
    assert_eq!(got(&policy, 410).unwrap_err(), NoStoreReason::NoFreshness);
    assert_eq!(got(&policy, 500).unwrap_err(), NoStoreReason::Status);
}

/// An error page with the site's year-long headers stays fresh for
/// max_error_ttl at most; successes are not capped.
#[test]
fn errors_are_capped_by_max_error_ttl() {
    let h = headers(&[("cache-control", "public, max-age=31536000, immutable".into())]);
    let facts = RequestFacts::default();
    let lifetime = |p: &Policy, s| {
        p.evaluate(StatusCode::from_u16(s).unwrap(), &h, exchange_at(0), facts).unwrap().freshness_lifetime
    };
    let standard = Policy::standard();
    assert_eq!(lifetime(&standard, 200), Duration::from_secs(31_536_000));
    assert_eq!(lifetime(&standard, 301), Duration::from_secs(31_536_000));
    for status in [404, 410, 500, 503] {
        assert_eq!(lifetime(&standard, status), DEFAULT_MAX_ERROR_TTL, "{status}");
    }
    let uncapped = Policy { max_error_ttl: None, ..Policy::standard() };
    assert_eq!(lifetime(&uncapped, 503), Duration::from_secs(31_536_000));
}

/// RFC 9111 §3.5: a response to a request with Authorization is stored
/// only when public, s-maxage or must-revalidate allow it.
#[test]
fn authorization_needs_explicit_permission() {
    let with_auth = RequestFacts { authorization: true };
    let rows: &[(&str, bool)] = &[
        ("max-age=60", false),
        ("public, max-age=60", true),
        ("s-maxage=60", true),
        ("max-age=60, must-revalidate", true),
    ];
    for (cc, stored) in rows {
        let h = headers(&[("cache-control", (*cc).into())]);
        let got = Policy::standard().evaluate(StatusCode::OK, &h, exchange_at(0), with_auth);
        assert_eq!(got.is_ok(), *stored, "{cc}");
        if !stored {
            assert_eq!(got.unwrap_err(), NoStoreReason::Authorization);
        }
    }
}

/// RFC 9110 §5.6.7: all three date formats, names in any case; an
/// invalid Expires means already expired (RFC 9111 §5.3).
#[test]
fn expires_in_every_date_format() {
    let date = ("date", "Sun, 06 Nov 1994 08:49:37 GMT".to_owned());
    let rows: &[(&str, u64)] = &[
        ("Sun, 06 Nov 1994 08:50:37 GMT", 60),
        ("Sunday, 06-Nov-94 08:50:37 GMT", 60),
        ("Sun Nov  6 08:50:37 1994", 60),
        ("SUN, 06 NOV 1994 08:50:37 GMT", 60),
        ("sun, 06 nov 1994 08:50:37 gmt", 60),
        // A wrong day name (6 Nov 1994 was a Sunday) is ignored.
        ("Thu Nov  6 08:50:37 1994", 60),
        ("Mon, 06 Nov 1994 08:50:37 GMT", 60),
        ("Friday, 06-Nov-94 08:50:37 GMT", 60),
        ("Xyz, 06 Nov 1994 08:50:37 GMT", 0),
        ("0", 0),
        ("-1", 0),
        ("Sun, 06 Nov 1994 08:48:37 GMT", 0),
        ("yesterday", 0),
    ];
    for (expires, lifetime) in rows {
        let h = headers(&[date.clone(), ("expires", (*expires).into()), ("etag", "\"e\"".into())]);
        let s = evaluate(StatusCode::OK, &h, exchange_at(0)).unwrap();
        assert_eq!(s.freshness_lifetime, Duration::from_secs(*lifetime), "Expires: {expires}");
    }
    // A missing or invalid Date counts as the time of receipt.
    for date in [None, Some("not a date")] {
        let mut pairs = vec![("expires", httpdate::fmt_http_date(t(90)))];
        pairs.extend(date.map(|d| ("date", d.to_owned())));
        let s = evaluate(StatusCode::OK, &headers(&pairs), exchange_at(30)).unwrap();
        assert_eq!(s.freshness_lifetime, Duration::from_secs(60), "Date {date:?}");
    }
    // A targeted field makes Expires irrelevant (RFC 9213 §2.1).
    let h = headers(&[("cdn-cache-control", "max-age=5".into()), ("expires", httpdate::fmt_http_date(t(900)))]);
    assert_eq!(evaluate(StatusCode::OK, &h, exchange_at(0)).unwrap().freshness_lifetime, Duration::from_secs(5));
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
        ("x-secret", "2".into()),
        ("keep-alive", "timeout=5".into()),
        ("transfer-encoding", "chunked".into()),
        ("proxy-connection", "keep-alive".into()),
        ("upgrade", "h2c".into()),
        ("etag", "\"e\"".into()),
    ]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h.contains_key("etag"));
}
