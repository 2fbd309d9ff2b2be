//! `Accept-Encoding` normalisation.
//!
//! Browsers send dozens of spellings (`gzip, deflate, br, zstd`,
//! `br;q=1.0, gzip;q=0.8, *;q=0.1`, ...). Keyed as they are, each spelling
//! would be its own cache variant. holdfast reduces every request to the one
//! coding it will ask the origin for, before the value enters the key or the
//! origin request.

use http::HeaderValue;

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
    fn refusals_and_absence() {
        assert_eq!(norm(&[]), "identity");
        assert_eq!(norm(&["br;q=0, gzip;q=0"]), "identity");
        assert_eq!(norm(&["br;q=0, *"]), "gzip");
        assert_eq!(norm(&["*;q=0"]), "identity");
        assert_eq!(norm(&["identity"]), "identity");
        assert_eq!(norm(&["br;q=nonsense, gzip"]), "gzip");
    }
}
