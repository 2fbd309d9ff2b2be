//! `Accept-Encoding` normalisation.
//!
//! Browsers send dozens of spellings (`gzip, deflate, br, zstd`,
//! `br;q=1.0, gzip;q=0.8, *;q=0.1`, ...). Keyed as they are, each spelling
//! would be its own cache variant. holdfast reduces every request to the one
//! coding it will ask the origin for, before the value enters the key or the
//! origin request.

use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, VARY};
use http::{HeaderMap, HeaderValue};

/// The codings holdfast asks origins for, best first.
pub const PREFERRED: [&str; 2] = ["br", "gzip"];

/// Picks `br`, `gzip` or `identity` from a request's Accept-Encoding values.
pub fn normalize_accept_encoding<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> &'static str {
    let mut star: Option<bool> = None;
    let mut listed: [Option<bool>; 2] = [None, None];
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for element in text.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let acceptable = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .next_back()
                .map(|q| q.trim().parse::<f32>().map(|q| q > 0.0).unwrap_or(false))
                .unwrap_or(true);
            let coding = if coding == "x-gzip" { "gzip".to_owned() } else { coding };
            if coding == "*" {
                star = Some(acceptable);
            } else if let Some(i) = PREFERRED.iter().position(|p| *p == coding) {
                listed[i] = Some(acceptable);
            }
        }
    }
    for (i, coding) in PREFERRED.iter().enumerate() {
        if listed[i].or(star).unwrap_or(false) {
            return coding;
        }
    }
    "identity"
}

/// The codings of a response's Content-Encoding, lowercase, in order,
/// without `identity`. A value that is not visible ASCII is one coding no
/// client can have asked for (never "no coding": its bytes are unknown).
fn codings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(text) => text.split(',').map(|c| c.trim().to_ascii_lowercase()).collect(),
            Err(_) => vec![OPAQUE.to_owned()],
        })
        .filter(|c| !c.is_empty() && c != "identity")
        .collect()
}

/// Stands for a Content-Encoding value that is not visible ASCII.
const OPAQUE: &str = "\u{fffd}";

/// The content coding of a response, `None` when it has none.
fn coding(headers: &HeaderMap) -> Option<String> {
    let codings = codings(headers);
    match codings.as_slice() {
        [] => None,
        [one] => Some(if one == "x-gzip" { "gzip".into() } else { one.clone() }),
        // Stacked codings: never what a normalised request asked for.
        _ => Some(codings.join(",")),
    }
}

/// Whether a response's coding is what a request whose Accept-Encoding
/// normalised to `accepted` asked for (identity always is: holdfast only
/// ever offers the origin one coding besides it).
pub fn coding_accepted(response: &HeaderMap, accepted: &str) -> bool {
    coding(response).is_none_or(|coding| coding == accepted)
}

/// The request's Accept-Encoding values as one, for
/// [`client_accepts`] after the header has been normalised; `None` when the
/// request has none.
pub fn raw_accept_encoding(request: &HeaderMap) -> Option<HeaderValue> {
    let mut values = request.get_all(ACCEPT_ENCODING).iter();
    let first = values.next()?;
    let mut joined = first.as_bytes().to_vec();
    for value in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(value.as_bytes());
    }
    if joined.len() == first.len() {
        return Some(first.clone());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Whether a client whose (raw) Accept-Encoding is `accept_encoding`
/// accepts the response's content coding (RFC 9110 §12.5.3): any coding
/// when it sent none; else each coding listed with q > 0, or covered by
/// `*` with q > 0 and not listed with q = 0.
pub fn client_accepts(accept_encoding: Option<&HeaderValue>, response: &HeaderMap) -> bool {
    let codings = codings(response);
    let Some(accept_encoding) = accept_encoding else { return true };
    if codings.is_empty() {
        return true;
    }
    let Ok(text) = accept_encoding.to_str() else { return false };
    let mut star = None;
    let mut listed: Vec<(String, bool)> = Vec::new();
    for element in text.split(',') {
        let mut parts = element.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let acceptable = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .next_back()
            .map(|q| q.trim().parse::<f32>().map(|q| q > 0.0).unwrap_or(false))
            .unwrap_or(true);
        match name.as_str() {
            "*" => star = Some(acceptable),
            "x-gzip" => listed.push(("gzip".to_owned(), acceptable)),
            _ => listed.push((name, acceptable)),
        }
    }
    codings.iter().all(|coding| {
        let coding = if coding == "x-gzip" { "gzip" } else { coding.as_str() };
        match listed.iter().find(|(name, _)| name == coding) {
            Some((_, acceptable)) => *acceptable,
            None => coding != OPAQUE && star.unwrap_or(false),
        }
    })
}

/// Adds `Vary: accept-encoding` to a coded response that does not vary on
/// it (or on everything): its coding was chosen for the request's
/// Accept-Encoding, so it must not be shared with clients that sent another.
pub fn vary_on_coding(response: &mut HeaderMap) {
    if coding(response).is_none() {
        return;
    }
    let covered = response.get_all(VARY).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|n| {
        let n = n.trim();
        n == "*" || n.eq_ignore_ascii_case("accept-encoding")
    });
    if !covered {
        response.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(values: &[&'static str]) -> &'static str {
        let values: Vec<HeaderValue> = values.iter().map(|v| HeaderValue::from_static(v)).collect();
        normalize_accept_encoding(values.iter())
    }

    fn coded(values: &[&'static [u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CONTENT_ENCODING, HeaderValue::from_bytes(value).expect("valid value"));
        }
        headers
    }

    #[test]
    fn a_coding_that_is_not_ascii_is_never_identity() {
        let response = coded(&[b"\xa6r"]);
        assert!(!coding_accepted(&response, "identity"));
        assert!(!coding_accepted(&response, "br"));
        assert!(!client_accepts(Some(&HeaderValue::from_static("*")), &response));
    }

    #[test]
    fn clients_accept_what_their_raw_accept_encoding_lists() {
        let accepts = |ae: Option<&'static str>, ce: &'static [u8]| {
            client_accepts(ae.map(HeaderValue::from_static).as_ref(), &coded(&[ce]))
        };
        // RFC 9110 §12.5.3: no Accept-Encoding accepts any coding.
        assert!(accepts(None, b"gzip"));
        assert!(accepts(Some("gzip, deflate, br, zstd"), b"gzip"));
        assert!(accepts(Some("gzip, deflate, br, zstd"), b"zstd"));
        assert!(accepts(Some("x-gzip"), b"gzip"));
        assert!(accepts(Some("gzip"), b"x-gzip"));
        assert!(accepts(Some("*"), b"br"));
        assert!(accepts(Some("identity"), b"identity"));
        assert!(!accepts(Some("identity"), b"gzip"));
        assert!(!accepts(Some("gzip;q=0, *"), b"gzip"));
        assert!(!accepts(Some("br"), b"gzip"));
        assert!(!accepts(Some("gzip"), b"gzip, br"));
        assert!(!accepts(Some(""), b"gzip"));
        let two = HeaderMap::from_iter([
            (ACCEPT_ENCODING, HeaderValue::from_static("gzip")),
            (ACCEPT_ENCODING, HeaderValue::from_static("br")),
        ]);
        let raw = raw_accept_encoding(&two);
        assert_eq!(raw, Some(HeaderValue::from_static("gzip, br")));
        assert!(client_accepts(raw.as_ref(), &coded(&[b"br"])));
    }

    #[test]
    fn browsers_collapse_to_one_value() {
        assert_eq!(norm(&["gzip, deflate, br, zstd"]), "br");
        assert_eq!(norm(&["br;q=1.0, gzip;q=0.8, *;q=0.1"]), "br");
        assert_eq!(norm(&["gzip, deflate"]), "gzip");
        assert_eq!(norm(&["x-gzip"]), "gzip");
        assert_eq!(norm(&["deflate", "GZIP"]), "gzip");
    }

    #[test]
    fn codings_are_matched_and_varied_on() {
        let mut gzip = HeaderMap::new();
        gzip.insert(CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert!(coding_accepted(&gzip, "gzip"));
        assert!(!coding_accepted(&gzip, "identity"));
        assert!(!coding_accepted(&gzip, "br"));
        assert!(coding_accepted(&HeaderMap::new(), "br"), "identity is always accepted");
        let mut stacked = HeaderMap::new();
        stacked.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip, br"));
        assert!(!coding_accepted(&stacked, "br"));
        vary_on_coding(&mut gzip);
        assert_eq!(gzip.get(VARY).unwrap(), "accept-encoding");
        vary_on_coding(&mut gzip);
        assert_eq!(gzip.get_all(VARY).iter().count(), 1, "added once");
        let mut plain = HeaderMap::new();
        vary_on_coding(&mut plain);
        assert!(plain.get(VARY).is_none(), "an uncoded response keeps its Vary");
    }

    #[test]
    fn refusals_and_absence() {
        assert_eq!(norm(&[]), "identity");
        assert_eq!(norm(&["br;q=0, gzip;q=0"]), "identity");
        assert_eq!(norm(&["br;q=0, *"]), "gzip");
        assert_eq!(norm(&["*;q=0"]), "identity");
        assert_eq!(norm(&["identity"]), "identity");
        assert_eq!(norm(&["br;q=nonsense, gzip"]), "gzip");
    }
}
