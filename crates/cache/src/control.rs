//! `Cache-Control` response directives (RFC 9111 §5.2.2).

use std::time::Duration;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};

/// The response directives holdfast acts on.
///
/// Parsing is conservative: a qualified `no-cache="field"` or
/// `private="field"` is treated as its unqualified form, and a delta-seconds
/// directive that is repeated with different values, or is not a number,
/// counts as zero (RFC 9111 §4.2.1: such a response is stale).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub max_age: Option<Duration>,
    pub s_maxage: Option<Duration>,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub immutable: bool,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` field of a response, plus
    /// `Pragma: no-cache` when there is no `Cache-Control` at all.
    pub fn parse(headers: &HeaderMap) -> ResponseDirectives {
        let mut out = ResponseDirectives::default();
        let mut seen_cache_control = false;
        for value in headers.get_all(CACHE_CONTROL) {
            seen_cache_control = true;
            let Ok(text) = value.to_str() else {
                // Not visible ASCII: refuse to guess, and do not store.
                out.no_store = true;
                continue;
            };
            for (name, arg) in directives(text) {
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => merge_seconds(&mut out.max_age, arg),
                    "s-maxage" => merge_seconds(&mut out.s_maxage, arg),
                    "no-store" => out.no_store = true,
                    "no-cache" => out.no_cache = true,
                    "private" => out.private = true,
                    "public" => out.public = true,
                    "must-revalidate" => out.must_revalidate = true,
                    "proxy-revalidate" => out.proxy_revalidate = true,
                    "immutable" => out.immutable = true,
                    "stale-while-revalidate" => merge_seconds(&mut out.stale_while_revalidate, arg),
                    "stale-if-error" => merge_seconds(&mut out.stale_if_error, arg),
                    _ => {}
                }
            }
        }
        if !seen_cache_control {
            let pragma_no_cache = headers
                .get_all(PRAGMA)
                .iter()
                .any(|v| v.to_str().is_ok_and(|t| t.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-cache"))));
            out.no_cache |= pragma_no_cache;
        }
        out
    }
}

/// Splits a Cache-Control value into `(name, argument)` pairs, honouring
/// quoted-string arguments that may contain commas.
fn directives(text: &str) -> Vec<(&str, Option<&str>)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut in_quotes = false;
    let mut i = 0;
    while i <= bytes.len() {
        let at_end = i == bytes.len();
        if !at_end && bytes[i] == b'"' {
            in_quotes = !in_quotes;
        } else if !at_end && in_quotes && bytes[i] == b'\\' {
            i += 1;
        } else if at_end || (!in_quotes && bytes[i] == b',') {
            let part = text.get(start..i.min(bytes.len())).unwrap_or("").trim();
            if !part.is_empty() {
                match part.split_once('=') {
                    Some((name, arg)) => out.push((name.trim(), Some(arg.trim().trim_matches('"')))),
                    None => out.push((part, None)),
                }
            }
            start = i + 1;
        }
        i += 1;
    }
    out
}

fn merge_seconds(slot: &mut Option<Duration>, arg: Option<&str>) {
    let parsed = arg.and_then(parse_delta_seconds).unwrap_or(Duration::ZERO);
    *slot = match *slot {
        None => Some(parsed),
        Some(previous) if previous == parsed => Some(previous),
        // Conflicting repeats: treat as stale.
        Some(_) => Some(Duration::ZERO),
    };
}

/// delta-seconds (RFC 9111 §1.2.2): digits only; values too large to
/// represent saturate at 2^31 seconds as the RFC asks.
fn parse_delta_seconds(arg: &str) -> Option<Duration> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    const MAX: u64 = 1 << 31;
    let seconds = arg.parse::<u64>().unwrap_or(MAX).min(MAX);
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(values: &[&'static str]) -> ResponseDirectives {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_static(v));
        }
        ResponseDirectives::parse(&headers)
    }

    #[test]
    fn common_immutable_asset_header() {
        let d = parse(&["public, max-age=31536000, immutable"]);
        assert!(d.public && d.immutable);
        assert_eq!(d.max_age, Some(Duration::from_secs(31_536_000)));
    }

    #[test]
    fn directives_are_case_insensitive_and_spread_over_fields() {
        let d = parse(&["Max-Age=60", "S-MAXAGE=120, Private"]);
        assert_eq!(d.max_age, Some(Duration::from_secs(60)));
        assert_eq!(d.s_maxage, Some(Duration::from_secs(120)));
        assert!(d.private);
    }

    #[test]
    fn quoted_arguments_with_commas_do_not_split() {
        let d = parse(&[r#"no-cache="set-cookie, x-foo", max-age=5"#]);
        assert!(d.no_cache);
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
    }

    #[test]
    fn invalid_or_conflicting_max_age_is_stale() {
        assert_eq!(parse(&["max-age=abc"]).max_age, Some(Duration::ZERO));
        assert_eq!(parse(&["max-age=-1"]).max_age, Some(Duration::ZERO));
        assert_eq!(parse(&["max-age=5, max-age=10"]).max_age, Some(Duration::ZERO));
        assert_eq!(parse(&["max-age=5, max-age=5"]).max_age, Some(Duration::from_secs(5)));
        assert_eq!(parse(&["max-age=99999999999999999999999"]).max_age, Some(Duration::from_secs(1 << 31)));
    }

    #[test]
    fn pragma_counts_only_without_cache_control() {
        let mut headers = HeaderMap::new();
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(ResponseDirectives::parse(&headers).no_cache);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!ResponseDirectives::parse(&headers).no_cache);
    }
}
