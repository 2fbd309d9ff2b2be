//! Test support for holdfast: a fake origin that counts requests and is
//! steered per path, and small client helpers.
//!
//! Everything listens on 127.0.0.1 with an ephemeral port.

mod client;
mod origin;
pub mod process;

pub use client::*;
pub use origin::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
