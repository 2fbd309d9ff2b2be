//! Typed settings of an origin group: where its members are and how it
//! talks to them.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, Scheme};

use crate::{
    DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_LAST_GOOD_FOR, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_MAX_IDLE_PER_HOST, HealthConfig, RetryPolicy,
    directory,
};

/// Where an origin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An HTTP server: `http://host:port`, or `https://host:port` (the
    /// certificate is verified, SNI is the host, HTTP/2 when ALPN offers it).
    Http { authority: Authority, tls: bool },
    /// A local directory served as if it were an origin (`dir:PATH`).
    Directory { root: PathBuf, cache_control: String },
}

impl Endpoint {
    /// Parses `http://host[:port]` or `dir:PATH`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix("dir:") {
            if path.is_empty() {
                return Err("a dir: origin needs a path, for example dir:config/demo-site".into());
            }
            return Ok(Endpoint::Directory {
                root: PathBuf::from(path),
                cache_control: directory::DEFAULT_CACHE_CONTROL.to_owned(),
            });
        }
        let uri: Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            _ => return Err("an origin URL starts with http:// or https:// (or dir: for a directory)".into()),
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err("an origin URL has no path: give scheme, host and port only".into());
        }
        let authority = uri.authority().cloned().ok_or("an origin URL needs a host")?;
        Ok(Endpoint::Http { authority, tls })
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Endpoint::Http { authority, tls: false } => format!("http://{authority}"),
            Endpoint::Http { authority, tls: true } => format!("https://{authority}"),
            Endpoint::Directory { root, .. } => format!("dir:{}", root.display()),
        }
    }
}

/// One origin of a group, with its share of the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub endpoint: Endpoint,
    /// Relative share of requests among healthy members (at least 1).
    pub weight: u32,
}

impl Member {
    pub fn new(endpoint: Endpoint) -> Member {
        Member { endpoint, weight: 1 }
    }
}

/// How a request picks among healthy members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    /// At random, in proportion to the weights.
    #[default]
    Weighted,
    /// By rendezvous hashing of the request's affinity key (the cache key),
    /// so each object goes to one member (a shield tier): every shield
    /// fetches an object from the origin once, not every edge.
    ConsistentHash,
}

/// Typed settings of one origin group.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub members: Vec<Member>,
    pub selection: Selection,
    /// Used when every member is ejected or has failed this request: another
    /// replica set, a shield, or an object-store endpoint.
    pub fallback: Option<Endpoint>,
    /// Host header sent to the origin; the client's Host when `None`.
    pub host: Option<String>,
    /// Also the longest wait for DNS before the last good answer is used.
    pub connect_timeout: Duration,
    /// How long the addresses a member's name last resolved to are used
    /// when resolving it fails.
    pub dns_last_good_for: Duration,
    /// From sending the request to receiving the whole response head.
    pub header_timeout: Duration,
    /// Longest pause between two body chunks.
    pub body_idle_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Requests in progress per origin member at most.
    pub max_connections: usize,
    pub retry: RetryPolicy,
    pub health: HealthConfig,
    /// Trusted roots for https origins besides the bundled web PKI roots
    /// (a private CA's certificates).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl OriginConfig {
    pub fn new(endpoints: Vec<Endpoint>) -> OriginConfig {
        OriginConfig {
            members: endpoints.into_iter().map(Member::new).collect(),
            selection: Selection::Weighted,
            fallback: None,
            host: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            dns_last_good_for: DEFAULT_DNS_LAST_GOOD_FOR,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            retry: RetryPolicy::default(),
            health: HealthConfig::default(),
            extra_roots: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_explain() {
        assert!(matches!(Endpoint::parse("http://127.0.0.1:9000"), Ok(Endpoint::Http { .. })));
        assert!(matches!(Endpoint::parse("http://origin.internal"), Ok(Endpoint::Http { .. })));
        assert!(matches!(Endpoint::parse("dir:site"), Ok(Endpoint::Directory { .. })));
        assert!(Endpoint::parse("dir:").is_err());
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("127.0.0.1:9000").is_err());
        assert!(Endpoint::parse("http://x/path").is_err());
        assert!(matches!(Endpoint::parse("https://cdn.example:8443"), Ok(Endpoint::Http { tls: true, .. })));
    }
}
