//! The configuration file and its conversion to each crate's typed config.
//!
//! The file is read into [`FileConfig`]: serde parses every value and
//! rejects unknown keys. The command line's [`Overrides`] are applied, and
//! the result, with the [`Environment`] `main` read once, is converted once
//! into [`NodeConfig`]. Errors name the key and the file.

mod convert;
mod env;
mod file;
mod origin;
mod overrides;
#[cfg(test)]
mod tests;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use holdfast_cache::{DiskConfig, StoreConfig};
use holdfast_frontend::connections::ConnectionLimits;
use holdfast_frontend::h3::H3Config;
use holdfast_frontend::tls::CertFiles;
use holdfast_frontend::{ForwardHeaders, HandlerConfig, QueryPolicy, ServerConfig};
use holdfast_origin::OriginConfig;

pub use env::Environment;
pub use file::{
    AdminSection, CacheSection, CertSection, DEFAULT_ADMIN_LISTEN, DEFAULT_DISK_SIZE, DEFAULT_LISTEN,
    DEFAULT_MEMORY_SIZE, DEFAULT_SHUTDOWN_DELAY, FileConfig, LimitsSection, LogSection, OriginEntry, OriginSection,
    RetryBudgetSection, ServerSection, SiteSection, TlsSection,
};
pub use overrides::Overrides;
pub use values::{
    AccessFormat, Fsync, H3AddressValidation, OptionalListen, QueryParamsValue, Selection, UnknownHostStatus,
};

/// TLS listeners and their certificates, typed.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    pub certificates: Vec<CertFiles>,
    /// HTTP/3 settings when HTTP/3 is on.
    pub h3: Option<H3Config>,
    pub alt_svc_max_age: Duration,
    /// Requests for hosts another certificate names are a 421.
    pub refuse_misdirected: bool,
}

/// Where the admin bearer token comes from. A file is read when the node
/// starts (a secret may exist only where the node runs, not where its
/// config is checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    File(PathBuf),
    Value(String),
}

impl AdminToken {
    /// The token; errors name the file.
    pub fn resolve(&self) -> anyhow::Result<String> {
        let (token, origin) = match self {
            AdminToken::Value(token) => (token.clone(), "HOLDFAST_ADMIN_TOKEN".to_owned()),
            AdminToken::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("admin.token_file = {}: {e}", path.display()))?;
                (text.trim().to_owned(), format!("admin.token_file = {}", path.display()))
            }
        };
        if token.len() < 16 {
            bail!("{origin}: the admin token must be at least 16 characters");
        }
        Ok(token)
    }
}

/// One site, typed: its hosts (empty: any host) and its origin group.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub name: String,
    pub hosts: Vec<String>,
    pub origin: OriginConfig,
    /// Client fields forwarded to the origin (`origin.forward_headers`).
    pub forward: ForwardHeaders,
    /// Query parameters keyed and forwarded (`origin.query_params`), and
    /// their order (`origin.query_sort`).
    pub query: QueryPolicy,
}

/// Everything the node needs, typed and checked.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: Vec<SocketAddr>,
    pub handler: HandlerConfig,
    pub server: ServerConfig,
    /// Open client connections over all TCP listeners.
    pub connection_limits: ConnectionLimits,
    pub store: StoreConfig,
    /// Sites in the order they were written; the default site last.
    pub sites: Vec<SiteConfig>,
    pub retry_ratio: f64,
    pub retry_min_per_sec: f64,
    pub disk: Option<DiskConfig>,
    pub admin_listen: Option<SocketAddr>,
    pub control_socket: Option<PathBuf>,
    pub shutdown_delay: Duration,
    pub tls: Option<TlsConfig>,
    pub admin_token: Option<AdminToken>,
    pub metrics_without_token: bool,
    pub access_log: Option<(crate::access_log::Destination, crate::access_log::Format)>,
    /// `server.workers` as written: 0 is one per usable CPU (see
    /// [`crate::runtime`]).
    pub workers: usize,
    /// The environment the file was converted with; a reload converts the
    /// new file with the same one (the environment is read once).
    pub environment: Environment,
}

/// Reads and parses a config file; errors name the file and the key.
pub fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.to_string().trim_end()))
}

impl NodeConfig {
    /// Loads the file (if any), applies overrides, and checks the result.
    pub fn load(path: Option<&Path>, overrides: Overrides, env: &Environment) -> anyhow::Result<NodeConfig> {
        let (file, base, source) = match path {
            Some(path) => {
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (read_file(path)?, base, path.display().to_string())
            }
            None => (FileConfig::default(), PathBuf::from("."), "built-in defaults".to_owned()),
        };
        NodeConfig::from_file(file, &base, &source, overrides, env)
    }

    /// The control socket of a node whose first listener is `first_listen`:
    /// `server.control_socket`, else a path derived from the address in the
    /// environment's private directory ([`crate::control::default_path`]).
    pub fn control_socket_path(&self, first_listen: SocketAddr) -> PathBuf {
        self.control_socket.clone().unwrap_or_else(|| crate::control::default_path(&self.environment, first_listen))
    }
}

/// A path written in the config file: relative paths are relative to the
/// file's directory, `base`.
fn relative_to(base: &Path, path: &Path) -> PathBuf {
    if path.is_relative() { base.join(path) } else { path.to_path_buf() }
}
