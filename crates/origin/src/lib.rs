//! holdfast-origin: how holdfast talks to origins.
//!
//! - [`Client`]: an origin group: a pooled hyper client (keep-alive;
//!   connect, header and body timeouts) over weighted origin endpoints and an
//!   optional fallback, with retries paced by backoff and jitter inside a
//!   per-request hold budget, a node-wide [`RetryBudget`], passive ejection
//!   and a circuit breaker per origin, and active health checks.
//! - [`OriginRequest`]: the outgoing request is built from an allow-list
//!   (method, path and query, Host, normalised Accept-Encoding, validators),
//!   never by forwarding the client's headers (catalogue S01).
//! - [`directory`]: an origin that serves a local directory, used by the
//!   bundled demo site and by tests.

mod client;
mod config;
pub mod directory;
mod error;
mod health;
pub mod retry;
mod stats;
mod timeout;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::HeaderValue;
use http_body_util::combinators::BoxBody;

pub use client::Client;
pub use config::{Endpoint, Member, OriginConfig, Selection};
pub use error::{ErrorChain, OriginError, OriginErrorKind};
pub use health::{BreakerState, HealthConfig};
pub use retry::{RetryBudget, RetryPolicy};
pub use stats::{LATENCY_BUCKETS, MemberLatency, MemberStatus, OriginStats, OriginStatsSnapshot};

/// Response bodies from any origin.
pub type OriginBody = BoxBody<Bytes, OriginError>;

/// Tuned for origins that serve static files on a nearby network: fail fast
/// on connect, allow a slow first byte, and treat a stalled body as dead.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle origin connections are dropped before the origin drops them:
/// Node.js and Apache close keep-alive connections after 5 s, and a request
/// sent on a connection just as the origin closes it is reset. A GET is
/// retried; a relayed POST or PUT is not, and its client would get a 502.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 64;

/// How long an origin name's last resolved addresses stand in while its
/// DNS fails: long enough to ride out a resolver outage, short enough that
/// a moved origin's old address is not used for days.
pub const DEFAULT_DNS_LAST_GOOD_FOR: Duration = Duration::from_secs(3600);

/// Requests in progress per origin (HTTP/1.1: connections; HTTP/2:
/// streams). Beyond, requests wait within their hold budget: a flood of
/// misses cannot open unbounded connections to the origin.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The one request holdfast sends upstream. Only these fields ever reach the
/// origin; nothing is copied from the client's request wholesale.
#[derive(Debug)]
pub struct OriginRequest {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
    /// The client's Host (used unless the config names one).
    pub host: String,
    /// Already normalised: `br`, `gzip` or `identity`.
    pub accept_encoding: &'static str,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    /// A request body, for methods configured to pass through uncached.
    pub body: Option<PassBody>,
    /// Wait out origin trouble within the hold budget (true), or give up
    /// after one pass over the origins (false: a stale copy is at hand).
    pub hold: bool,
    /// What consistent hashing hashes (the cache key).
    pub affinity: Option<[u8; 32]>,
    /// The Via chain the client sent, extended with this node's name, so a
    /// loop between tiers is detected by the node that sees itself in it.
    pub via: HeaderValue,
    /// The client's end-to-end fields the site forwards (`origin.forward_headers`),
    /// already filtered: none of the fields above, no hop-by-hop field.
    pub headers: http::HeaderMap,
}

/// A client request body relayed to the origin, with its framing headers.
pub struct PassBody {
    pub body: BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    pub content_type: Option<HeaderValue>,
    pub content_length: Option<HeaderValue>,
}

impl std::fmt::Debug for PassBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassBody").field("content_length", &self.content_length).finish()
    }
}
