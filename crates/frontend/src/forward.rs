//! Which of a client's header fields reach the origin (`origin.forward_headers`).
//!
//! holdfast always sends the fields it owns (Host, the normalised
//! Accept-Encoding, Via, its own validators, a pass-through body's framing);
//! a site may forward more: named fields, or every end-to-end field (`*`).
//! Hop-by-hop fields never go (RFC 9110 §7.6.1), nor the client's own
//! conditionals: the cache answers those itself. `Range` and `If-Range`
//! go when forwarded (named or `*`): the origin's 206 answers are then kept
//! as segments of their object (see holdfast_cache::partial) and relayed;
//! otherwise a range is cut from the object fetched whole.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// A site's forwarding policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForwardHeaders {
    /// Only the fields holdfast owns (the default: what the origin sees
    /// does not depend on the client).
    #[default]
    Owned,
    /// These fields too (lowercase); `Cookie` and `Authorization` only
    /// when named.
    Named(Vec<HeaderName>),
    /// Every end-to-end field, `Cookie` and `Authorization` included.
    All,
}

/// Fields holdfast sets itself on every origin request, or that only make
/// sense between the client and the cache.
const OWNED: [HeaderName; 14] = [
    header::HOST,
    header::ACCEPT_ENCODING,
    header::VIA,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::EXPECT,
    // Hop-by-hop (RFC 9110 §7.6.1), plus the fields Connection names.
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const HOP_BY_HOP: [&str; 5] =
    ["keep-alive", "upgrade", "proxy-connection", "proxy-authorization", "proxy-authenticate"];

impl ForwardHeaders {
    /// Parses `origin.forward_headers`: field names, or `["*"]`.
    pub fn parse(names: &[String]) -> Result<ForwardHeaders, String> {
        if names.is_empty() {
            return Ok(ForwardHeaders::Owned);
        }
        if names.iter().any(|n| n.trim() == "*") {
            if names.len() > 1 {
                return Err("\"*\" forwards every field: list nothing beside it".into());
            }
            return Ok(ForwardHeaders::All);
        }
        let mut parsed = Vec::new();
        for name in names {
            let header = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("{name:?} is not a header field name"))?;
            if OWNED.contains(&header) || HOP_BY_HOP.contains(&header.as_str()) {
                return Err(format!("{name} is set by holdfast or hop-by-hop; it cannot be forwarded"));
            }
            parsed.push(header);
        }
        Ok(ForwardHeaders::Named(parsed))
    }

    /// The client fields this policy sends to the origin.
    pub fn select(&self, request: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        match self {
            ForwardHeaders::Owned => {}
            ForwardHeaders::Named(names) => {
                for name in names {
                    for value in request.get_all(name) {
                        out.append(name.clone(), value.clone());
                    }
                }
            }
            ForwardHeaders::All => {
                let named_by_connection: Vec<String> = request
                    .get_all(header::CONNECTION)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect();
                for (name, value) in request {
                    let hop = OWNED.contains(name)
                        || HOP_BY_HOP.contains(&name.as_str())
                        || named_by_connection.iter().any(|n| n == name.as_str());
                    if !hop {
                        out.append(name.clone(), value.clone());
                    }
                }
            }
        }
        out
    }

    /// Whether responses may depend on client fields beyond holdfast's own.
    pub fn forwards_any(&self) -> bool {
        *self != ForwardHeaders::Owned
    }

    /// Whether the client's `name` field reaches the origin.
    pub fn includes(&self, name: &HeaderName) -> bool {
        match self {
            ForwardHeaders::Owned => false,
            ForwardHeaders::Named(names) => names.contains(name),
            ForwardHeaders::All => !OWNED.contains(name) && !HOP_BY_HOP.contains(&name.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn request() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("host", "a.test"),
            ("accept-encoding", "gzip"),
            ("x-request-id", "42"),
            ("accept-language", "fr"),
            ("cookie", "s=1"),
            ("authorization", "Bearer t"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("if-none-match", "\"v\""),
            ("range", "bytes=0-1"),
            ("if-range", "\"v\""),
            ("te", "trailers"),
            ("via", "1.1 edge"),
        ] {
            h.append(name, HeaderValue::from_static(value));
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn policies_select_what_they_say() {
        let owned = ForwardHeaders::parse(&[]).unwrap();
        assert!(owned.select(&request()).is_empty());
        let named = ForwardHeaders::parse(&["X-Request-Id".into(), "accept-language".into()]).unwrap();
        assert_eq!(names(&named.select(&request())), ["accept-language", "x-request-id"]);
        let all = ForwardHeaders::parse(&["*".into()]).unwrap();
        assert_eq!(
            names(&all.select(&request())),
            ["accept-language", "authorization", "cookie", "if-range", "range", "x-request-id"],
            "end-to-end fields only: no hop-by-hop, nothing named by Connection, nothing holdfast owns"
        );
        assert!(all.includes(&header::RANGE) && !owned.includes(&header::RANGE));
        assert!(!all.includes(&header::IF_NONE_MATCH));
    }

    #[test]
    fn owned_and_hop_by_hop_names_are_refused() {
        for name in ["Host", "if-none-match", "Connection", "keep-alive", "Proxy-Authorization"] {
            assert!(ForwardHeaders::parse(&[name.into()]).is_err(), "{name}");
        }
        assert!(ForwardHeaders::parse(&["*".into(), "cookie".into()]).is_err());
        assert!(ForwardHeaders::parse(&["bad name".into()]).is_err());
    }
}
