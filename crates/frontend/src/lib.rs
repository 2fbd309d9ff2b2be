//! holdfast-frontend: the client side of a holdfast node.
//!
//! - [`handler`]: the one protocol-agnostic request handler; caching logic
//!   exists once, whatever the protocol.
//! - [`fill`]: coalesced origin fills, where the cache meets the origin.
//! - [`server`]: HTTP/1.1 + h2c listeners.
//! - [`upstream`]: the trait the handler reaches origins through; the node
//!   adapts holdfast-origin to it, tests use fakes.

mod conditional;
mod fill;
pub mod handler;
mod range;
pub mod server;
pub mod upstream;

pub use handler::{CacheResult, Handler, HandlerConfig, Site};
pub use server::{ServerConfig, serve_tcp};
pub use upstream::{Fetch, Fetched, Upstream, UpstreamError};
