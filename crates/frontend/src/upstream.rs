//! The frontend's view of an origin. The node adapts holdfast-origin to this
//! trait; tests use fakes.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::combinators::BoxBody;

/// Errors carried by bodies: boxed, since origins and clients differ.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body from an origin (or to one, for pass-through requests).
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// What the handler asks of an origin. These fields are everything the
/// origin will see: the client's headers are never forwarded wholesale.
#[derive(Debug)]
pub struct Fetch {
    pub method: Method,
    pub path_and_query: String,
    pub host: String,
    /// Normalised: `br`, `gzip` or `identity`.
    pub accept_encoding: &'static str,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    /// Only for methods configured to pass through uncached.
    pub body: Option<PassThroughBody>,
    /// Wait out origin trouble within the hold budget; false when a stale
    /// copy can be served instead, so the client is not kept waiting.
    pub hold: bool,
    /// The primary cache key: what a shield tier is chosen by.
    pub affinity: [u8; 32],
    /// The client's Via chain extended with this node (loop detection).
    pub via: HeaderValue,
    /// The client's fields the site forwards (`ForwardHeaders::select`).
    pub headers: http::HeaderMap,
}

/// A client request body relayed for a pass-through method.
pub struct PassThroughBody {
    pub body: UpstreamBody,
    pub content_type: Option<HeaderValue>,
    pub content_length: Option<HeaderValue>,
}

impl std::fmt::Debug for PassThroughBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassThroughBody").field("content_length", &self.content_length).finish()
    }
}

/// An origin's response head and streaming body, with the origin it came from.
pub struct Fetched {
    pub origin: String,
    pub response: Response<UpstreamBody>,
}

/// Why no response came from any origin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct UpstreamError {
    /// One line naming the origin and the cause; sent to the client.
    pub reason: String,
    /// What the client gets: 502, 503 or 504.
    pub status: StatusCode,
}

/// The future returned by [`Upstream::fetch`].
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, UpstreamError>> + Send + 'a>>;

/// An origin, or a group of them.
pub trait Upstream: Send + Sync + 'static {
    /// Sends one request and resolves once the response head has arrived.
    fn fetch(&self, request: Fetch) -> FetchFuture<'_>;
}
