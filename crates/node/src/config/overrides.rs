//! The command line's values, which win over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytesize::ByteSize;

use super::OptionalListen;

/// The flags of `holdfast serve` that override the file (flattened into
/// its arguments). Their doc comments are the `--help` text.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// HTTP/1.1 + h2c listener address (repeatable; replaces server.listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Origin URL: http://host:port or dir:PATH (repeatable; replaces origin.urls).
    #[arg(long = "origin", value_name = "URL")]
    pub origins: Vec<String>,
    /// Memory for cached objects, e.g. 512MiB (cache.memory_size).
    #[arg(long, value_name = "SIZE")]
    pub memory_size: Option<ByteSize>,
    /// Larger responses stream through uncached, e.g. 64MiB (cache.max_object_size).
    #[arg(long, value_name = "SIZE")]
    pub max_object_size: Option<ByteSize>,
    /// Disk tier directory (cache.dir); without it the node runs memory-only.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Admin listener for /live and /ready (admin.listen; "" turns it off).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<OptionalListen>,
    /// File with the admin bearer token (admin.token_file; else the
    /// HOLDFAST_ADMIN_TOKEN environment variable).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// TLS listener address: HTTP/1.1 and HTTP/2 by ALPN (repeatable; tls.listen).
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Vec<SocketAddr>,
    /// Certificate chain (PEM) for the TLS listeners (tls.certificate).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve HTTP/3 over UDP on the TLS listeners' addresses (tls.h3).
    #[arg(long)]
    pub h3: bool,
    /// Threads serving requests; 0: one per CPU the process may use
    /// (server.workers).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}
