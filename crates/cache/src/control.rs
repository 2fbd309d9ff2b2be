//! Response directives: `Cache-Control` (RFC 9111 §5.2.2), and the fields
//! that target a CDN over it: `CDN-Cache-Control` and operator-chosen names
//! (RFC 9213), and `Surrogate-Control` (Edge Architecture 1.0) as Varnish
//! and Fastly users write it.

use std::time::Duration;

use http::header::{CACHE_CONTROL, HeaderName, PRAGMA};
use http::{HeaderMap, HeaderValue};

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
    /// RFC 9111 §5.2.2.3: store only if the status code is understood; then
    /// `no-store` is ignored.
    pub must_understand: bool,
    /// The directives came from a targeted field (or Surrogate-Control),
    /// not from `Cache-Control`; `Expires` is then ignored too.
    pub targeted: bool,
}

/// `CDN-Cache-Control` (RFC 9213 §3): every CDN's targeted field.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Surrogate-Control` (W3C Edge Architecture 1.0 §3).
pub const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

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
                    "must-understand" => out.must_understand = true,
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

    /// The directives this node obeys (RFC 9213 §2.1): those of the first
    /// field of `targets` (in order) with a valid, non-empty value, then
    /// `Surrogate-Control`, and only without either, `Cache-Control`.
    /// `targets` holds operator-chosen names and then `CDN-Cache-Control`.
    pub fn parse_targeted(headers: &HeaderMap, targets: &[HeaderName]) -> ResponseDirectives {
        for name in targets {
            if let Some(directives) = parse_structured(headers, name) {
                return directives;
            }
        }
        parse_surrogate_control(headers).unwrap_or_else(|| ResponseDirectives::parse(headers))
    }
}

/// A targeted field (RFC 9213 §2.1): a Structured Fields dictionary
/// (RFC 9651) with Cache-Control's directive names. `None` when the field
/// is absent, empty or not a valid dictionary: the next field is used.
fn parse_structured(headers: &HeaderMap, name: &HeaderName) -> Option<ResponseDirectives> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    // Field lines combine with commas (RFC 9110 §5.3) before parsing.
    let joined = values.map(HeaderValue::as_bytes).collect::<Vec<_>>().join(&b", "[..]);
    let dictionary: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
    if dictionary.is_empty() {
        return None;
    }
    let mut out = ResponseDirectives { targeted: true, ..ResponseDirectives::default() };
    for (key, entry) in &dictionary {
        let item = match entry {
            sfv::ListEntry::Item(item) => Some(&item.bare_item),
            sfv::ListEntry::InnerList(_) => None,
        };
        // A directive without a value is `?1` (true); `?0` turns it off.
        let flag = item.is_none_or(|bare| bare.as_boolean() != Some(false));
        let seconds = || {
            let value = item.and_then(sfv::BareItem::as_integer).map(i64::from);
            Some(Duration::from_secs(value.map_or(0, |v| v.clamp(0, 1 << 31) as u64)))
        };
        match key.as_str() {
            "max-age" => out.max_age = seconds(),
            "s-maxage" => out.s_maxage = seconds(),
            "stale-while-revalidate" => out.stale_while_revalidate = seconds(),
            "stale-if-error" => out.stale_if_error = seconds(),
            "no-store" => out.no_store = flag,
            "no-cache" => out.no_cache = flag,
            // A list of field names (`private=("set-cookie")`) still means private.
            "private" => out.private = item.is_none() || flag,
            "public" => out.public = flag,
            "must-revalidate" => out.must_revalidate = flag,
            "proxy-revalidate" => out.proxy_revalidate = flag,
            "immutable" => out.immutable = flag,
            "must-understand" => out.must_understand = flag,
            _ => {}
        }
    }
    Some(out)
}

/// `Surrogate-Control: max-age=3600+600, no-store-remote`: `max-age` is the
/// freshness lifetime, the optional `+n` how long a stale copy may serve
/// while the origin fails; `no-store` and `no-store-remote` (holdfast is a
/// remote surrogate) forbid storing. Directives aimed at other surrogates
/// (`;device`) are ignored. `None` when it says nothing holdfast obeys.
fn parse_surrogate_control(headers: &HeaderMap) -> Option<ResponseDirectives> {
    let mut out = ResponseDirectives { targeted: true, ..ResponseDirectives::default() };
    let mut any = false;
    for value in headers.get_all(SURROGATE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for (name, arg) in directives(text) {
            if name.contains(';') {
                continue;
            }
            match name.to_ascii_lowercase().as_str() {
                "max-age" => {
                    let (fresh, stale) = arg.unwrap_or("").split_once('+').unwrap_or((arg.unwrap_or(""), ""));
                    out.max_age = Some(parse_delta_seconds(fresh.trim()).unwrap_or(Duration::ZERO));
                    out.stale_if_error = parse_delta_seconds(stale.trim());
                    any = true;
                }
                "no-store" | "no-store-remote" => {
                    out.no_store = true;
                    any = true;
                }
                _ => {}
            }
        }
    }
    any.then_some(out)
}

/// Whether `name` is a field aimed at this node alone (removed from
/// responses to clients that are not caches themselves): Surrogate-Control
/// and the operator's own targeted fields. Never CDN-Cache-Control: it
/// targets every CDN cache (RFC 9213 §3), and another may sit between this
/// node and the browser without sending Via, so it is forwarded.
pub fn is_targeted_field(name: &HeaderName, targets: &[HeaderName]) -> bool {
    *name != CDN_CACHE_CONTROL && (*name == SURROGATE_CONTROL || targets.contains(name))
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

    fn targeted(pairs: &[(&'static str, &'static str)], targets: &[&'static str]) -> ResponseDirectives {
        let headers: HeaderMap =
            pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect();
        let targets: Vec<HeaderName> = targets.iter().map(|t| HeaderName::from_static(t)).collect();
        ResponseDirectives::parse_targeted(&headers, &targets)
    }

    /// RFC 9213 §2.1 and Surrogate-Control, one row per case: the fields of
    /// a response, the targets configured, and what holdfast obeys.
    #[test]
    fn targeted_fields_take_precedence_in_order() {
        let cdn = ["holdfast-cache-control", "cdn-cache-control"];
        let secs = |s| Some(Duration::from_secs(s));
        type Row = (&'static [(&'static str, &'static str)], Option<Duration>, bool, bool);
        let rows: &[Row] = &[
            // (fields, max-age obeyed, no-store, targeted)
            (&[("cache-control", "max-age=10"), ("cdn-cache-control", "max-age=600")], secs(600), false, true),
            (&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")], secs(600), false, true),
            (&[("cache-control", "max-age=600"), ("cdn-cache-control", "no-store")], None, true, true),
            (&[("cdn-cache-control", "max-age=600"), ("holdfast-cache-control", "max-age=30")], secs(30), false, true),
            // Invalid or empty targeted fields fall through to the next.
            (&[("cache-control", "max-age=10"), ("cdn-cache-control", "max-age=\"x")], secs(10), false, false),
            (&[("cache-control", "max-age=10"), ("cdn-cache-control", "")], secs(10), false, false),
            (&[("holdfast-cache-control", "max-age=a b"), ("cdn-cache-control", "max-age=70")], secs(70), false, true),
            // Surrogate-Control after the targeted fields, before Cache-Control.
            (&[("cache-control", "max-age=10"), ("surrogate-control", "max-age=3600+600")], secs(3600), false, true),
            (&[("cache-control", "max-age=10"), ("surrogate-control", "no-store-remote")], None, true, true),
            (&[("cache-control", "max-age=10"), ("surrogate-control", "content=\"ESI/1.0\"")], secs(10), false, false),
            (&[("cdn-cache-control", "max-age=5"), ("surrogate-control", "max-age=3600")], secs(5), false, true),
            // Booleans: `?0` turns a directive off.
            (&[("cdn-cache-control", "no-store=?0, max-age=20")], secs(20), false, true),
        ];
        for (fields, max_age, no_store, is_targeted) in rows {
            let d = targeted(fields, &cdn);
            assert_eq!((d.max_age, d.no_store, d.targeted), (*max_age, *no_store, *is_targeted), "{fields:?}");
        }
        // Without the operator's name configured, only CDN-Cache-Control counts.
        let d = targeted(&[("holdfast-cache-control", "max-age=30")], &["cdn-cache-control"]);
        assert!(!d.targeted);
        let d = targeted(&[("surrogate-control", "max-age=3600+600")], &cdn);
        assert_eq!(d.stale_if_error, secs(600));
        let d = targeted(&[("cdn-cache-control", "private=(\"set-cookie\"), max-age=5, must-understand")], &cdn);
        assert!(d.private && d.must_understand);
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
