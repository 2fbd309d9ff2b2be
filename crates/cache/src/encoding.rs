//! `Accept-Encoding` normalisation.
//!
//! Browsers send dozens of spellings (`gzip, deflate, br, zstd`,
//! `br;q=1.0, gzip;q=0.8, *;q=0.1`, ...). Keyed as they are, each spelling
//! would be its own cache variant. holdfast reduces every request to the one
//! coding it will ask the origin for, before the value enters the key or the
//! origin request.

use http::header::{CONTENT_ENCODING, VARY};
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

/// The content coding of a response, `identity` when it has none.
fn coding(headers: &HeaderMap) -> Option<String> {
    let codings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
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
