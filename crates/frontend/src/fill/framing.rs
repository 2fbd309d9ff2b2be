//! How an origin response says where its body ends, checked before anything
//! of it is relayed or stored.
//!
//! hyper lets `Content-Length` ride along with `Transfer-Encoding` (and reads
//! the body by the latter). A response framed two ways is how responses are
//! split, and RFC 9112 §6.3 says it ought to be handled as an error: nginx
//! answers it with a 502, and so does holdfast, before any byte is stored.
//! Any other `Transfer-Encoding` is framed as §6.3 says (chunked when it is
//! the final coding, else until the origin closes), as hyper does.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

/// Checks the framing fields of an origin response head and leaves one
/// canonical `Content-Length` (RFC 9110 §8.6 lets a recipient take
/// `5, 5` or two equal fields as 5; relayed as is, they break clients).
/// Returns the length the body must have, or why the response is refused.
pub(super) fn body_length(status: StatusCode, headers: &mut HeaderMap) -> Result<Option<u64>, String> {
    let length = checked_length(headers)?;
    // RFC 9112 §6.3: a 204 or 304 has no body, whatever its Content-Length
    // says (a 304's names the stored representation; a 204 must not have
    // one, RFC 9110 §8.6).
    Ok(match status {
        StatusCode::NO_CONTENT => {
            headers.remove(header::CONTENT_LENGTH);
            None
        }
        StatusCode::NOT_MODIFIED => None,
        _ => length,
    })
}

fn checked_length(headers: &mut HeaderMap) -> Result<Option<u64>, String> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err("both Transfer-Encoding and Content-Length (RFC 9112 §6.3)".into());
        }
        return Ok(None);
    }
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return Ok(None);
    }
    let values = list(headers, &header::CONTENT_LENGTH);
    let parse = |v: &str| v.bytes().all(|b| b.is_ascii_digit()).then(|| v.parse::<u64>().ok()).flatten();
    let Some(length) = values.first().and_then(|v| parse(v)) else {
        return Err(format!("Content-Length {:?} is not a length", values.join(", ")));
    };
    if values.iter().any(|v| parse(v) != Some(length)) {
        return Err(format!("Content-Length {:?} names different lengths", values.join(", ")));
    }
    if values.len() > 1 || headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(Some(length))
}

/// The comma-separated members of every field with this name, trimmed;
/// a value that is not text is one member of its own, so it fails checks.
fn list(headers: &HeaderMap, name: &header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.split(',').map(|v| v.trim().to_owned()).collect::<Vec<_>>(),
            Err(_) => vec![String::from_utf8_lossy(value.as_bytes()).into_owned()],
        })
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn one_framing_is_read_and_anything_else_refused() {
        type Row = (&'static [(&'static str, &'static str)], Result<Option<u64>, ()>);
        let rows: &[Row] = &[
            (&[], Ok(None)),
            (&[("content-length", "5")], Ok(Some(5))),
            (&[("content-length", "0")], Ok(Some(0))),
            (&[("transfer-encoding", "chunked")], Ok(None)),
            (&[("transfer-encoding", "Chunked ")], Ok(None)),
            // RFC 9110 §8.6: a list of one repeated length is that length.
            (&[("content-length", "5, 5")], Ok(Some(5))),
            (&[("content-length", "5"), ("content-length", "5")], Ok(Some(5))),
            (&[("content-length", "5"), ("content-length", "6")], Err(())),
            (&[("content-length", "5, 6")], Err(())),
            (&[("content-length", "+5")], Err(())),
            (&[("content-length", "-1")], Err(())),
            (&[("content-length", "0x5")], Err(())),
            (&[("content-length", "")], Err(())),
            (&[("content-length", "99999999999999999999999")], Err(())),
            // Framed twice: how responses are split (RFC 9112 §6.3).
            (&[("content-length", "3"), ("transfer-encoding", "chunked")], Err(())),
            (&[("transfer-encoding", "gzip"), ("content-length", "5")], Err(())),
            // Framed by its final coding, or read until the close (§6.3).
            (&[("transfer-encoding", "gzip, chunked")], Ok(None)),
            (&[("transfer-encoding", "chunked, gzip")], Ok(None)),
        ];
        for (fields, expected) in rows {
            let mut headers = head(fields);
            let got = checked_length(&mut headers);
            assert_eq!(got.as_ref().map_err(|_| ()), expected.as_ref().map_err(|_| ()), "{fields:?}: {got:?}");
        }
    }

    #[test]
    fn a_204_or_304_has_no_body_whatever_its_length_says() {
        let mut headers = head(&[("content-length", "5")]);
        assert_eq!(body_length(StatusCode::NOT_MODIFIED, &mut headers), Ok(None));
        assert_eq!(headers.get(header::CONTENT_LENGTH), Some(&HeaderValue::from_static("5")), "a 304's is relayed");
        assert_eq!(body_length(StatusCode::NO_CONTENT, &mut headers), Ok(None));
        assert!(!headers.contains_key(header::CONTENT_LENGTH), "a 204 never has one");
        assert_eq!(body_length(StatusCode::OK, &mut head(&[("content-length", "5")])), Ok(Some(5)));
    }

    #[test]
    fn a_repeated_length_is_relayed_as_one() {
        for fields in [&[("content-length", "5, 5")][..], &[("content-length", "5"), ("content-length", " 5")]] {
            let mut headers = head(fields);
            assert_eq!(checked_length(&mut headers), Ok(Some(5)));
            let relayed: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
            assert_eq!(relayed, [&HeaderValue::from_static("5")], "{fields:?}");
        }
    }
}
