//! holdfast-cache: what may be stored, for how long, under which key, and where.
//!
//! This crate has no sockets and no clock. Every function that needs the time
//! takes it as an argument, so the caching rules are tested with a fake clock
//! and replayed exactly. Files are touched only in [`disk`]; clippy.toml
//! holds the rest of the crate to that.
//!
//! - [`key`]: cache keys, length-prefixed and hashed so no two field
//!   combinations collide, and the Vary-derived variant keys.
//! - [`control`]: `Cache-Control` parsing.
//! - [`policy`]: RFC 9111 storability, freshness lifetime and age.
//! - [`store`]: metadata per key and bodies stored once per BLAKE3 digest,
//!   in a byte-weighted memory tier.
//! - [`disk`]: the disk tier: BLAKE3-named body files verified on read,
//!   checksummed metadata files, atomic renames, LRU eviction.
//! - [`partial`]: 206 answers kept by byte range until they make the whole
//!   object.
//! - [`encoding`]: `Accept-Encoding` normalisation, so client header
//!   variations do not split the cache.

pub mod control;
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
pub mod disk;
pub mod encoding;
pub mod key;
pub mod meta;
pub mod partial;
pub mod policy;
mod prefetch;
pub mod store;
pub mod stored_headers;

pub use disk::{ChunkedBody, DiskBody, DiskConfig, DiskHit, DiskStats, DiskTier, FsyncPolicy};
pub use key::{Digest, DigestBuilder, Key};
pub use meta::Meta;
pub use policy::{NoStoreReason, Storable};
pub use store::{Hit, Lookup, Store, StoreConfig, StoreStats};
pub use stored_headers::StoredHeaders;
