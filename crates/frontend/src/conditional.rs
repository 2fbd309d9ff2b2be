//! Conditional requests (RFC 9110 §13) evaluated by the cache itself, so a
//! revalidating browser gets a 304 without the origin being asked.

use std::time::SystemTime;

use http::HeaderMap;
use http::header::{self, HeaderValue};

/// True when the client's validators match the response's, so a GET or HEAD
/// is answered 304 Not Modified.
///
/// If-None-Match uses the weak comparison; If-Modified-Since is looked at
/// only when there is no If-None-Match (RFC 9110 §13.2.2), and compared
/// with `Last-Modified`, else the response's `Date`, else `received`
/// (RFC 9111 §4.3.2).
pub(crate) fn not_modified(request: &HeaderMap, response: &HeaderMap, received: SystemTime) -> bool {
    if request.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = response.get(header::ETAG) else { return false };
        return request.get_all(header::IF_NONE_MATCH).iter().any(|value| list_matches_weak(value, etag));
    }
    let Some(since) = date(request.get(header::IF_MODIFIED_SINCE)) else { return false };
    let modified =
        date(response.get(header::LAST_MODIFIED)).or_else(|| date(response.get(header::DATE))).unwrap_or(received);
    modified <= since
}

/// Compared as bytes: an entity-tag may hold obs-text (RFC 9110 §8.8.3),
/// which is not a `str`.
fn list_matches_weak(list: &HeaderValue, etag: &HeaderValue) -> bool {
    let opaque = strip_weak(etag.as_bytes().trim_ascii());
    list.as_bytes()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .any(|candidate| candidate == b"*" || (!candidate.is_empty() && strip_weak(candidate) == opaque))
}

fn strip_weak(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// True when an `If-Range` validator still matches, so the Range applies
/// (RFC 9110 §13.1.5): a strong ETag compared strongly, or a date equal to
/// Last-Modified.
pub(crate) fn if_range_matches(if_range: &HeaderValue, response: &HeaderMap) -> bool {
    let Ok(value) = if_range.to_str() else { return false };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        let Some(etag) = response.get(header::ETAG).and_then(|v| v.to_str().ok()) else { return false };
        return !value.starts_with("W/") && !etag.starts_with("W/") && value == etag.trim();
    }
    match (holdfast_cache::policy::parse_http_date(value), date(response.get(header::LAST_MODIFIED))) {
        (Some(since), Some(modified)) => since == modified,
        _ => false,
    }
}

fn date(value: Option<&HeaderValue>) -> Option<SystemTime> {
    holdfast_cache::policy::parse_http_date(value?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    fn received() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_893_456_000) // 2030-01-01
    }

    fn not_modified(request: &HeaderMap, response: &HeaderMap) -> bool {
        super::not_modified(request, response, received())
    }

    /// RFC 9111 §4.3.2: without Last-Modified, If-Modified-Since is compared
    /// with Date, then with the time the response was received.
    #[test]
    fn if_modified_since_falls_back_to_date_then_receipt() {
        type Row = (&'static [(&'static str, &'static str)], &'static str, bool);
        let rows: &[Row] = &[
            (&[("date", "Tue, 01 Jan 2030 00:00:00 GMT")], "Tue, 01 Jan 2030 00:00:00 GMT", true),
            (&[("date", "Tue, 01 Jan 2030 00:00:00 GMT")], "Mon, 31 Dec 2029 00:00:00 GMT", false),
            (&[], "Tue, 01 Jan 2030 00:00:00 GMT", true),
            (&[], "Mon, 31 Dec 2029 23:59:59 GMT", false),
            // Any date format, any case.
            (&[("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT")], "tuesday, 01-jan-30 00:00:00 gmt", true),
        ];
        for (response, since, expected) in rows {
            let request = h(&[("if-modified-since", since)]);
            assert_eq!(not_modified(&request, &h(response)), *expected, "{response:?} since {since}");
        }
    }

    #[test]
    fn if_none_match_weak_comparison() {
        let resp = h(&[("etag", "W/\"v1\"")]);
        assert!(not_modified(&h(&[("if-none-match", "\"v1\"")]), &resp));
        assert!(not_modified(&h(&[("if-none-match", "\"v0\", W/\"v1\"")]), &resp));
        assert!(not_modified(&h(&[("if-none-match", "*")]), &resp));
        assert!(!not_modified(&h(&[("if-none-match", "\"v2\"")]), &resp));
        assert!(!not_modified(&h(&[("if-none-match", "\"v1\"")]), &h(&[])));
        // obs-text in an entity-tag (RFC 9110 §8.8.3): compared as bytes.
        let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).expect("obs-text is a valid field value");
        let resp = HeaderMap::from_iter([(header::ETAG, value(b"\"abcdef\xc3\xbc\""))]);
        let ask = |tag: &[u8]| HeaderMap::from_iter([(header::IF_NONE_MATCH, value(tag))]);
        assert!(not_modified(&ask(b"\"abcdef\xc3\xbc\""), &resp));
        assert!(not_modified(&ask(b"\"x\", W/\"abcdef\xc3\xbc\""), &resp));
        assert!(!not_modified(&ask(b"\"abcdef\""), &resp));
        assert!(!not_modified(&ask(b" , "), &resp), "an empty list member matches nothing");
    }

    #[test]
    fn if_modified_since_only_without_if_none_match() {
        let resp = h(&[("etag", "\"v1\""), ("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT")]);
        assert!(not_modified(&h(&[("if-modified-since", "Tue, 01 Jan 2030 00:00:00 GMT")]), &resp));
        assert!(not_modified(&h(&[("if-modified-since", "Wed, 02 Jan 2030 00:00:00 GMT")]), &resp));
        assert!(!not_modified(&h(&[("if-modified-since", "Mon, 31 Dec 2029 00:00:00 GMT")]), &resp));
        assert!(!not_modified(&h(&[("if-modified-since", "garbage")]), &resp));
        let both = h(&[("if-none-match", "\"v2\""), ("if-modified-since", "Wed, 02 Jan 2030 00:00:00 GMT")]);
        assert!(!not_modified(&both, &resp));
    }

    #[test]
    fn if_range_is_strong() {
        let resp = h(&[("etag", "\"v1\""), ("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT")]);
        assert!(if_range_matches(&HeaderValue::from_static("\"v1\""), &resp));
        assert!(!if_range_matches(&HeaderValue::from_static("W/\"v1\""), &resp));
        assert!(!if_range_matches(&HeaderValue::from_static("\"v2\""), &resp));
        assert!(if_range_matches(&HeaderValue::from_static("Tue, 01 Jan 2030 00:00:00 GMT"), &resp));
        assert!(!if_range_matches(&HeaderValue::from_static("Wed, 02 Jan 2030 00:00:00 GMT"), &resp));
    }
}
