//! Sites: which origin group answers for a Host, and the host grammar.

use std::sync::Arc;

use crate::forward::ForwardHeaders;
use crate::handler::HandlerConfig;
use crate::query::QueryPolicy;
use crate::upstream::Upstream;

/// A site: the host names it answers for and the origin group behind them.
/// Every site has its own origins; the cache key includes the host, so no
/// site can be served another's content.
pub struct Site {
    /// A name for logs and stats.
    pub name: String,
    /// Exact names, `*.example.com` wildcards or `[::1]`; empty answers any
    /// host that no other site claims.
    pub hosts: Vec<String>,
    pub upstream: Arc<dyn Upstream>,
    /// Which client fields reach this site's origin.
    pub forward: ForwardHeaders,
    /// Which query parameters are keyed and reach the origin, in which order.
    pub query: QueryPolicy,
}

impl Site {
    fn claims_exactly(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| !h.starts_with("*.") && h.eq_ignore_ascii_case(host))
    }

    /// Length of the longest wildcard suffix matching `host`.
    fn wildcard_match(&self, host: &str) -> Option<usize> {
        self.hosts
            .iter()
            .filter_map(|h| h.strip_prefix("*."))
            .filter(|suffix| {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            })
            .map(str::len)
            .max()
    }
}

/// What a config reload can change: the limits and the sites with their
/// origins. Each request works with one snapshot from start to end.
pub struct Routing {
    pub config: HandlerConfig,
    pub sites: Vec<Site>,
}

impl Routing {
    /// The index of the site that answers for `host`: an exact name first,
    /// then the longest wildcard, then a site without names.
    pub(crate) fn site_for(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.sites.iter().position(|s| s.claims_exactly(host)) {
            return Some(i);
        }
        let wildcard = self.sites.iter().enumerate().filter_map(|(i, s)| s.wildcard_match(host).map(|len| (len, i)));
        if let Some((_, i)) = wildcard.max_by_key(|(len, _)| *len) {
            return Some(i);
        }
        self.sites.iter().position(|s| s.hosts.is_empty())
    }
}

/// Lowercases a host and strips its port; `None` if it is not a plausible
/// host name or IP literal.
///
/// RFC 9110 §7.2: `Host = uri-host [ ":" port ]`, `port = *DIGIT`; userinfo
/// (`user@host`) is refused, not stripped (RFC 9110 §4.2.4).
pub(crate) fn normalize_host(authority: &str) -> Option<String> {
    let digits = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(digits);
        let literal = !inside.is_empty() && inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return (port_ok && literal).then(|| format!("[{}]", inside.to_ascii_lowercase()));
    } else {
        match authority.split_once(':') {
            Some((host, port)) if digits(port) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("user@host"), None, "userinfo is an error, not something to strip");
        assert_eq!(normalize_host("host:80:80"), None);
        assert_eq!(normalize_host("host:abc"), None);
        assert_eq!(normalize_host("host: 80"), None);
        assert_eq!(normalize_host("host:").as_deref(), Some("host"), "port = *DIGIT");
        assert_eq!(normalize_host("[::1]x"), None);
        assert_eq!(normalize_host("bad host"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("[zz]"), None);
    }
}
