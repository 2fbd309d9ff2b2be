//! holdfast-frontend: the client side of a holdfast node.
//!
//! - [`handler`]: the one protocol-agnostic request handler; caching logic
//!   exists once, whatever the protocol.
//! - [`fill`]: coalesced origin fills, where the cache meets the origin.
//! - [`server`]: HTTP/1.1 + HTTP/2 listeners, plaintext (h2c) and TLS.
//! - [`h3`]: HTTP/3 over QUIC on the TLS listeners' port.
//! - [`tls`]: certificates by SNI, reloadable.
//! - [`forward`]: which client header fields reach the origin.
//! - [`upstream`]: the trait the handler reaches origins through; the node
//!   adapts holdfast-origin to it, tests use fakes.

pub mod access;
pub mod budget;
mod coalesce;
mod conditional;
pub mod connections;
mod date;
mod disk_body;
mod disk_writes;
mod fill;
pub mod forward;
pub mod h3;
pub mod handler;
pub mod query;
mod range;
pub mod server;
mod stall;
mod stream_stall;
pub mod tiers;
pub mod tls;
pub mod upstream;

/// Private parsers reached by the fuzz targets (crates/frontend/fuzz) and
/// their replay tests. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// What [`parse_range`] asks of an object (`range::RangeRequest`).
    #[derive(Debug, PartialEq, Eq)]
    pub enum RangeRequest {
        Full,
        Partial(std::ops::Range<u64>),
        Unsatisfiable,
    }

    /// `range::parse`: one `Range` value against an object of `len` bytes.
    pub fn parse_range(value: &str, len: u64) -> RangeRequest {
        match crate::range::parse(value, len) {
            crate::range::RangeRequest::Full => RangeRequest::Full,
            crate::range::RangeRequest::Partial(range) => RangeRequest::Partial(range),
            crate::range::RangeRequest::Unsatisfiable => RangeRequest::Unsatisfiable,
        }
    }
}

pub use access::{AccessLog, AccessRecord, TraceIdOf};
pub use forward::ForwardHeaders;
pub use handler::{
    CacheResult, EarlyData, Handler, HandlerConfig, PurgeReport, PurgeTarget, Routing, Site, TopReport, TopUrl,
};
pub use query::{QueryParams, QueryPolicy};
pub use server::{ServerConfig, TcpStats, TlsListener, serve_tcp, serve_tls};
pub use upstream::{Fetch, Fetched, Upstream, UpstreamError};
