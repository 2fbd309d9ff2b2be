//! The configuration file and its conversion to each crate's typed config.
//!
//! The file is read into [`FileConfig`] (unknown keys rejected), command-line
//! overrides are applied, and the result is converted once into
//! [`NodeConfig`]. Errors name the key and the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytesize::ByteSize;
use holdfast_cache::disk::default_max_files;
use holdfast_cache::{DiskConfig, FsyncPolicy, StoreConfig};
use holdfast_frontend::connections::ConnectionLimits;
use holdfast_frontend::h3::{AddressValidation, H3Config};
use holdfast_frontend::tls::CertFiles;
use holdfast_frontend::{HandlerConfig, ServerConfig, handler};
use holdfast_origin::{Endpoint, HealthConfig, Member, OriginConfig, RetryPolicy};
use http::{Method, StatusCode};
use serde::Deserialize;

/// Where `serve` listens when neither the file nor a flag says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Memory for cached bodies and metadata.
pub const DEFAULT_MEMORY_SIZE: ByteSize = ByteSize::mib(256);
/// Body bytes kept in the disk tier.
pub const DEFAULT_DISK_SIZE: ByteSize = ByteSize::gib(10);
/// The admin listener (loopback: probes run on the same host or pod).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// Between readiness turning false and the listeners closing: time for a
/// load balancer to notice.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(1);

/// The TOML file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerSection,
    pub limits: LimitsSection,
    pub cache: CacheSection,
    /// The default site's origins (serving `server.hosts`, or any host).
    pub origin: OriginSection,
    pub retry_budget: RetryBudgetSection,
    pub admin: AdminSection,
    pub tls: TlsSection,
    pub log: LogSection,
    /// Further sites, each with its own hosts and origins.
    pub site: Vec<SiteSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    pub name: Option<String>,
    pub hosts: Vec<String>,
    pub origin: OriginSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// "off", "stdout", or a file path (relative to the config file).
    pub access: String,
    /// "json" or "plain".
    pub access_format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { access: "off".into(), access_format: "json".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// TLS listeners: HTTP/1.1 and HTTP/2 by ALPN.
    pub listen: Vec<String>,
    /// Also serve HTTP/3 over UDP on each TLS listener's address.
    pub h3: bool,
    /// Certificate chains and keys (PEM); the first is the default, for
    /// clients without SNI. Relative paths are relative to the config file.
    pub certificate: Vec<CertSection>,
    /// Alt-Svc max age advertised for HTTP/3.
    #[serde(with = "humantime_serde")]
    pub alt_svc_max_age: Duration,
    /// QUIC idle timeout.
    #[serde(with = "humantime_serde")]
    pub h3_idle_timeout: Duration,
    /// Open QUIC connections; new ones beyond are refused.
    pub h3_max_connections: usize,
    /// Open QUIC connections per client address (IPv6: per /64); 0: no limit.
    pub h3_max_connections_per_client: usize,
    /// Longest a QUIC handshake may take.
    #[serde(with = "humantime_serde")]
    pub h3_handshake_timeout: Duration,
    /// QUIC Retry (address validation): "auto" (while more than
    /// h3_retry_above_handshakes handshakes are in progress), "always", "never".
    pub h3_address_validation: String,
    pub h3_retry_above_handshakes: usize,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            listen: Vec::new(),
            h3: false,
            certificate: Vec::new(),
            alt_svc_max_age: Duration::from_secs(24 * 3600),
            h3_idle_timeout: H3Config::default().idle_timeout,
            h3_max_connections: holdfast_frontend::h3::DEFAULT_MAX_CONNECTIONS,
            h3_max_connections_per_client: 0,
            h3_handshake_timeout: holdfast_frontend::h3::DEFAULT_HANDSHAKE_TIMEOUT,
            h3_address_validation: "auto".into(),
            h3_retry_above_handshakes: holdfast_frontend::h3::DEFAULT_RETRY_ABOVE_HANDSHAKES,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSection {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Admin listener address; "" turns it off.
    pub listen: String,
    /// File holding the bearer token (else HOLDFAST_ADMIN_TOKEN).
    pub token_file: Option<PathBuf>,
    /// Let scrapers read /metrics without the token.
    pub metrics_without_token: bool,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection { listen: DEFAULT_ADMIN_LISTEN.to_owned(), token_file: None, metrics_without_token: false }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetSection {
    /// Retries allowed as a share of first attempts, node-wide.
    pub ratio: f64,
    /// Retries a second always allowed, however little traffic there is.
    pub min_per_sec: f64,
}

impl Default for RetryBudgetSection {
    fn default() -> Self {
        RetryBudgetSection {
            ratio: holdfast_origin::retry::DEFAULT_RETRY_RATIO,
            min_per_sec: holdfast_origin::retry::DEFAULT_MIN_RETRIES_PER_SEC,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// HTTP/1.1 + h2c listeners.
    pub listen: Vec<String>,
    /// This node's name in Via headers (loop detection between tiers);
    /// default: $HOSTNAME (the pod name on Kubernetes) and the first port.
    pub node_name: Option<String>,
    /// Host names the default site serves; empty serves any Host.
    pub hosts: Vec<String>,
    /// Status for a Host no site claims: 421 or 404.
    pub unknown_host_status: u16,
    /// Methods relayed to the origin uncached (405 for others but GET/HEAD).
    pub pass_methods: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Readiness is false this long before the listeners close on SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// Unix socket for zero-downtime upgrades; default derived from the
    /// first listen address, in the temporary directory.
    pub control_socket: Option<PathBuf>,
    pub h2_max_concurrent_streams: u32,
    /// Open client connections over all TCP listeners.
    pub max_connections: usize,
    /// Open client connections per client address (IPv6: per /64); 0: no limit.
    pub max_connections_per_client: usize,
    /// A write to a client that makes no progress for this long closes it.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
}

impl Default for ServerSection {
    fn default() -> Self {
        let defaults = ServerConfig::default();
        ServerSection {
            listen: Vec::new(),
            node_name: None,
            hosts: Vec::new(),
            unknown_host_status: 421,
            pass_methods: Vec::new(),
            header_read_timeout: defaults.header_read_timeout,
            drain_timeout: defaults.drain_timeout,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            control_socket: None,
            h2_max_concurrent_streams: defaults.h2_max_concurrent_streams,
            max_connections: holdfast_frontend::server::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: 0,
            send_timeout: defaults.send_timeout,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_uri_length: usize,
    pub max_header_bytes: ByteSize,
    pub max_headers: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_uri_length: handler::DEFAULT_MAX_URI_LEN,
            max_header_bytes: ByteSize::b(handler::DEFAULT_MAX_HEADER_BYTES as u64),
            max_headers: handler::DEFAULT_MAX_HEADERS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    pub memory_size: ByteSize,
    pub max_object_size: ByteSize,
    /// Longest a stale object is served while its origin fails; unset:
    /// as long as it is stored.
    #[serde(with = "humantime_serde")]
    pub max_stale_on_error: Option<Duration>,
    /// Disk tier directory (relative to the config file); memory only when unset.
    pub dir: Option<PathBuf>,
    pub disk_size: ByteSize,
    /// "never" (survives process kills) or "always" (survives power loss).
    pub fsync: String,
    /// Files the disk tier may hold (records and bodies); default one per
    /// 8 KiB of disk_size.
    pub disk_max_files: Option<u64>,
    /// Body bytes all origin fills in progress may hold.
    pub fill_buffer_size: ByteSize,
    /// Origin fills in progress at most (a miss beyond gets 503 or its stale copy).
    pub max_concurrent_fills: usize,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            memory_size: DEFAULT_MEMORY_SIZE,
            max_object_size: ByteSize::b(handler::DEFAULT_MAX_OBJECT_SIZE),
            max_stale_on_error: None,
            dir: None,
            disk_size: DEFAULT_DISK_SIZE,
            fsync: "never".to_owned(),
            disk_max_files: None,
            fill_buffer_size: ByteSize::b(handler::DEFAULT_FILL_BUFFER_SIZE),
            max_concurrent_fills: handler::DEFAULT_MAX_CONCURRENT_FILLS,
        }
    }
}

/// An origin as written: a URL, or a URL with a weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OriginEntry {
    Url(String),
    Weighted { url: String, weight: u32 },
}

impl OriginEntry {
    fn url(&self) -> &str {
        match self {
            OriginEntry::Url(url) | OriginEntry::Weighted { url, .. } => url,
        }
    }

    fn weight(&self) -> u32 {
        match self {
            OriginEntry::Url(_) => 1,
            OriginEntry::Weighted { weight, .. } => *weight,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginSection {
    /// `http://host:port` or `dir:PATH` (relative to the config file), or
    /// `{ url = "...", weight = N }`.
    pub urls: Vec<OriginEntry>,
    /// Tried when every origin of `urls` is ejected or failed.
    pub fallback: Option<String>,
    /// "weighted" (random by weight) or "consistent-hash" (each object to
    /// one member by rendezvous hashing: for a tier of shields).
    pub selection: String,
    /// Host header sent upstream; the client's Host when unset.
    pub host: Option<String>,
    /// PEM file of extra trusted roots for https origins (a private CA).
    pub ca_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// How long a request may wait for an origin to come back.
    #[serde(with = "humantime_serde")]
    pub hold_budget: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_base_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Consecutive failures that eject an origin.
    pub failure_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub ejection: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Active health check path; "" turns checks off.
    pub health_check_path: String,
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// Cache-Control that `dir:` origins send.
    pub directory_cache_control: String,
    /// Requests in progress per origin (connections for HTTP/1.1).
    pub max_connections: usize,
}

impl Default for OriginSection {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        let health = HealthConfig::default();
        OriginSection {
            urls: Vec::new(),
            fallback: None,
            selection: "weighted".into(),
            host: None,
            ca_file: None,
            connect_timeout: holdfast_origin::DEFAULT_CONNECT_TIMEOUT,
            header_timeout: holdfast_origin::DEFAULT_HEADER_TIMEOUT,
            body_idle_timeout: holdfast_origin::DEFAULT_BODY_IDLE_TIMEOUT,
            hold_budget: retry.hold_budget,
            retry_base_backoff: retry.base_backoff,
            retry_max_backoff: retry.max_backoff,
            failure_threshold: health.failure_threshold,
            ejection: health.base_ejection,
            max_ejection: health.max_ejection,
            health_check_path: health.check_path.unwrap_or_default(),
            health_check_interval: health.check_interval,
            directory_cache_control: holdfast_origin::directory::DEFAULT_CACHE_CONTROL.to_owned(),
            max_connections: holdfast_origin::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Command-line values that win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub origins: Vec<String>,
    pub memory_size: Option<ByteSize>,
    pub max_object_size: Option<ByteSize>,
    pub cache_dir: Option<PathBuf>,
    pub admin_listen: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    /// HOLDFAST_ADMIN_TOKEN, read once at startup by the binary.
    pub admin_token_env: Option<String>,
    pub tls_listen: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub h3: bool,
}

/// TLS listeners and their certificates, typed.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    pub certificates: Vec<CertFiles>,
    /// HTTP/3 settings when HTTP/3 is on.
    pub h3: Option<H3Config>,
    pub alt_svc_max_age: Duration,
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
}

/// Reads and parses a config file; errors name the file and the key.
pub fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.to_string().trim_end()))
}

impl NodeConfig {
    /// Loads the file (if any), applies overrides, and checks the result.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> anyhow::Result<NodeConfig> {
        let (file, base, source) = match path {
            Some(path) => {
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (read_file(path)?, base, path.display().to_string())
            }
            None => (FileConfig::default(), PathBuf::from("."), "built-in defaults".to_owned()),
        };
        NodeConfig::from_file(file, &base, &source, overrides)
    }

    /// Converts a parsed file. `base` resolves relative `dir:` paths;
    /// `source` names the file in error messages.
    pub fn from_file(
        mut file: FileConfig,
        base: &Path,
        source: &str,
        overrides: Overrides,
    ) -> anyhow::Result<NodeConfig> {
        if !overrides.listen.is_empty() {
            file.server.listen = overrides.listen;
        }
        if !overrides.origins.is_empty() {
            file.origin.urls = overrides.origins.into_iter().map(OriginEntry::Url).collect();
        }
        if let Some(size) = overrides.memory_size {
            file.cache.memory_size = size;
        }
        if let Some(size) = overrides.max_object_size {
            file.cache.max_object_size = size;
        }
        // A directory from the command line is relative to the working
        // directory; one from the file, to the file.
        let cache_dir = match overrides.cache_dir {
            Some(dir) => Some(dir),
            None => file.cache.dir.as_ref().map(|d| if d.is_relative() { base.join(d) } else { d.clone() }),
        };
        if let Some(listen) = overrides.admin_listen {
            file.admin.listen = listen;
        }
        let token_file = match overrides.admin_token_file {
            Some(path) => Some(path),
            None => file.admin.token_file.as_ref().map(|p| if p.is_relative() { base.join(p) } else { p.clone() }),
        };
        let admin_token = match token_file {
            Some(path) => Some(AdminToken::File(path)),
            None => {
                overrides.admin_token_env.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).map(AdminToken::Value)
            }
        };
        if !overrides.tls_listen.is_empty() {
            file.tls.listen = overrides.tls_listen;
        }
        match (overrides.tls_cert, overrides.tls_key) {
            (Some(cert), Some(key)) => file.tls.certificate = vec![CertSection { cert, key }],
            (None, None) => {
                for pair in &mut file.tls.certificate {
                    for path in [&mut pair.cert, &mut pair.key] {
                        if path.is_relative() {
                            *path = base.join(&*path);
                        }
                    }
                }
            }
            _ => bail!("--tls-cert and --tls-key go together"),
        }
        file.tls.h3 |= overrides.h3;
        if file.server.listen.is_empty() {
            file.server.listen.push(DEFAULT_LISTEN.to_owned());
        }
        let listen = file
            .server
            .listen
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse::<SocketAddr>()
                    .map_err(|e| anyhow::anyhow!("{source}: server.listen[{i}] = {a:?} is not an address:port ({e})"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if file.origin.urls.is_empty() && file.site.is_empty() {
            bail!("{source}: origin.urls is empty; give at least one origin (or --origin URL)");
        }
        let mut sites = Vec::new();
        for (i, site) in file.site.iter().enumerate() {
            let key = format!("site[{i}]");
            if site.hosts.is_empty() {
                bail!("{source}: {key}.hosts is empty; a [[site]] names the hosts it serves");
            }
            check_hosts(&site.hosts, source, &format!("{key}.hosts"))?;
            let origin = origin_config(&site.origin, base, source, &format!("{key}.origin"))?;
            let name = site.name.clone().unwrap_or_else(|| site.hosts[0].clone());
            sites.push(SiteConfig { name, hosts: lowercase(&site.hosts), origin });
        }
        if !file.origin.urls.is_empty() {
            check_hosts(&file.server.hosts, source, "server.hosts")?;
            let origin = origin_config(&file.origin, base, source, "origin")?;
            sites.push(SiteConfig { name: "default".into(), hosts: lowercase(&file.server.hosts), origin });
        }
        let node_name = match file.server.node_name.clone() {
            Some(name) if !name.is_empty() && !name.contains([' ', ',']) => name,
            Some(name) => bail!("{source}: server.node_name = {name:?}: one word, no spaces or commas"),
            None => {
                let host =
                    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "holdfast".into());
                match listen.first().map_or(0, |a| a.port()) {
                    // An ephemeral port is not known yet: make the name unique anyway.
                    0 => {
                        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        format!("{host}-{}-{n}", std::process::id())
                    }
                    port => format!("{host}:{port}"),
                }
            }
        };
        let unknown_host_status = match file.server.unknown_host_status {
            404 => StatusCode::NOT_FOUND,
            421 => StatusCode::MISDIRECTED_REQUEST,
            other => bail!("{source}: server.unknown_host_status = {other}: use 421 or 404"),
        };
        if !(0.0..=10.0).contains(&file.retry_budget.ratio) || file.retry_budget.min_per_sec < 0.0 {
            bail!("{source}: retry_budget.ratio must be within 0..10 and retry_budget.min_per_sec at least 0");
        }
        let pass_methods = file
            .server
            .pass_methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| anyhow::anyhow!("{source}: server.pass_methods[{i}] = {m:?} is not a method"))?;
                if method == Method::GET || method == Method::HEAD || method == Method::CONNECT {
                    bail!("{source}: server.pass_methods[{i}] = {m:?}: GET and HEAD are always cached, CONNECT is never relayed");
                }
                Ok(method)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if file.server.max_connections == 0 || file.server.send_timeout.is_zero() {
            bail!("{source}: server.max_connections and server.send_timeout must be above zero");
        }
        if file.cache.max_concurrent_fills == 0 || file.cache.fill_buffer_size.as_u64() < 64 * 1024 {
            bail!("{source}: cache.max_concurrent_fills must be at least 1 and cache.fill_buffer_size at least 64KiB");
        }
        if file.cache.memory_size.as_u64() < 1024 * 1024 {
            bail!("{source}: cache.memory_size = {} is below the 1 MiB minimum", file.cache.memory_size);
        }
        if file.limits.max_header_bytes.as_u64() > u32::MAX as u64 {
            bail!("{source}: limits.max_header_bytes is too large");
        }
        let max_header_bytes = file.limits.max_header_bytes.as_u64() as usize;
        let fsync = match file.cache.fsync.as_str() {
            "never" => FsyncPolicy::Never,
            "always" => FsyncPolicy::Always,
            other => bail!("{source}: cache.fsync = {other:?}: use \"never\" or \"always\""),
        };
        let max_files = file.cache.disk_max_files.unwrap_or_else(|| default_max_files(file.cache.disk_size.as_u64()));
        let disk = cache_dir.map(|dir| DiskConfig { dir, max_size: file.cache.disk_size.as_u64(), max_files, fsync });
        let tls = if file.tls.listen.is_empty() {
            if file.tls.h3 {
                bail!("{source}: tls.h3 is on but tls.listen is empty (HTTP/3 runs on the TLS listeners' addresses)");
            }
            None
        } else {
            if file.tls.certificate.is_empty() {
                bail!("{source}: tls.listen is set but no [[tls.certificate]] (or --tls-cert/--tls-key) is given");
            }
            let listen = file
                .tls
                .listen
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.parse::<SocketAddr>()
                        .map_err(|e| anyhow::anyhow!("{source}: tls.listen[{i}] = {a:?} is not an address:port ({e})"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let address_validation = match file.tls.h3_address_validation.as_str() {
                "auto" => AddressValidation::Auto { above_handshakes: file.tls.h3_retry_above_handshakes },
                "always" => AddressValidation::Always,
                "never" => AddressValidation::Never,
                other => {
                    bail!("{source}: tls.h3_address_validation = {other:?}: use \"auto\", \"always\" or \"never\"")
                }
            };
            if file.tls.h3_max_connections == 0 {
                bail!("{source}: tls.h3_max_connections must be at least 1");
            }
            if file.tls.h3_handshake_timeout.is_zero() {
                bail!("{source}: tls.h3_handshake_timeout must be above zero");
            }
            let h3 = file.tls.h3.then(|| H3Config {
                idle_timeout: file.tls.h3_idle_timeout,
                max_field_section_size: max_header_bytes as u64,
                max_concurrent_streams: file.server.h2_max_concurrent_streams,
                drain_timeout: file.server.drain_timeout,
                handshake_timeout: file.tls.h3_handshake_timeout,
                header_read_timeout: file.server.header_read_timeout,
                send_timeout: file.server.send_timeout,
                limits: ConnectionLimits {
                    max: file.tls.h3_max_connections,
                    max_per_client: file.tls.h3_max_connections_per_client,
                },
                address_validation,
                ..H3Config::default()
            });
            let certificates =
                file.tls.certificate.iter().map(|c| CertFiles { cert: c.cert.clone(), key: c.key.clone() }).collect();
            Some(TlsConfig { listen, certificates, h3, alt_svc_max_age: file.tls.alt_svc_max_age })
        };
        let access_log = {
            use crate::access_log::{Destination, Format};
            let format = match file.log.access_format.as_str() {
                "json" => Format::Json,
                "plain" => Format::Plain,
                other => bail!("{source}: log.access_format = {other:?}: use \"json\" or \"plain\""),
            };
            match file.log.access.as_str() {
                "off" | "" => None,
                "stdout" => Some((Destination::Stdout, format)),
                path => {
                    let path = PathBuf::from(path);
                    let path = if path.is_relative() { base.join(path) } else { path };
                    Some((Destination::File(path), format))
                }
            }
        };
        let admin_listen = match file.admin.listen.as_str() {
            "" => None,
            text => Some(
                text.parse::<SocketAddr>()
                    .map_err(|e| anyhow::anyhow!("{source}: admin.listen = {text:?} is not an address:port ({e})"))?,
            ),
        };
        Ok(NodeConfig {
            listen,
            handler: HandlerConfig {
                node_name,
                unknown_host_status,
                max_stale_on_error: file.cache.max_stale_on_error,
                max_object_size: file.cache.max_object_size.as_u64(),
                max_uri_len: file.limits.max_uri_length,
                max_header_bytes,
                max_headers: file.limits.max_headers,
                pass_methods,
                fill_buffer_size: file.cache.fill_buffer_size.as_u64(),
                max_concurrent_fills: file.cache.max_concurrent_fills,
                ..HandlerConfig::default()
            },
            server: ServerConfig {
                header_read_timeout: file.server.header_read_timeout,
                max_header_bytes,
                max_headers: file.limits.max_headers,
                h2_max_concurrent_streams: file.server.h2_max_concurrent_streams,
                h2_max_header_list_size: max_header_bytes as u32,
                drain_timeout: file.server.drain_timeout,
                send_timeout: file.server.send_timeout,
            },
            connection_limits: ConnectionLimits {
                max: file.server.max_connections,
                max_per_client: file.server.max_connections_per_client,
            },
            store: StoreConfig { memory_size: file.cache.memory_size.as_u64() },
            sites,
            retry_ratio: file.retry_budget.ratio,
            retry_min_per_sec: file.retry_budget.min_per_sec,
            disk,
            admin_listen,
            control_socket: file.server.control_socket,
            shutdown_delay: file.server.shutdown_delay,
            tls,
            admin_token,
            metrics_without_token: file.admin.metrics_without_token,
            access_log,
        })
    }
}

fn lowercase(hosts: &[String]) -> Vec<String> {
    hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
}

fn check_hosts(hosts: &[String], source: &str, key: &str) -> anyhow::Result<()> {
    for (i, host) in hosts.iter().enumerate() {
        // An IPv6 literal is named as clients send it: [::1].
        if host.len() > 2 && host.starts_with('[') && host.ends_with(']') {
            continue;
        }
        let name = host.strip_prefix("*.").unwrap_or(host);
        if name.is_empty() || name.contains(['*', ':', '/', ' ']) {
            bail!("{source}: {key}[{i}] = {host:?}: give a host name or *.domain");
        }
    }
    Ok(())
}

/// Converts one `[origin]` table; `key` names it in errors.
fn origin_config(section: &OriginSection, base: &Path, source: &str, key: &str) -> anyhow::Result<OriginConfig> {
    if section.urls.is_empty() {
        bail!("{source}: {key}.urls is empty; give at least one origin");
    }
    let endpoint = |url: &str, at: String| -> anyhow::Result<Endpoint> {
        let mut endpoint = Endpoint::parse(url).map_err(|e| anyhow::anyhow!("{source}: {at} = {url:?}: {e}"))?;
        if let Endpoint::Directory { root, cache_control } = &mut endpoint {
            if root.is_relative() {
                *root = base.join(&*root);
            }
            if !root.is_dir() {
                bail!("{source}: {at} = {url:?}: {} is not a directory", root.display());
            }
            cache_control.clone_from(&section.directory_cache_control);
        }
        Ok(endpoint)
    };
    let mut members = Vec::new();
    for (i, entry) in section.urls.iter().enumerate() {
        if entry.weight() == 0 {
            bail!("{source}: {key}.urls[{i}].weight must be at least 1");
        }
        members.push(Member { endpoint: endpoint(entry.url(), format!("{key}.urls[{i}]"))?, weight: entry.weight() });
    }
    let fallback = match &section.fallback {
        Some(url) => Some(endpoint(url, format!("{key}.fallback"))?),
        None => None,
    };
    if section.failure_threshold == 0 {
        bail!("{source}: {key}.failure_threshold must be at least 1");
    }
    if section.max_connections == 0 {
        bail!("{source}: {key}.max_connections must be at least 1");
    }
    if section.health_check_interval.is_zero() {
        bail!("{source}: {key}.health_check_interval must be above zero");
    }
    let health_check_path = match section.health_check_path.as_str() {
        "" => None,
        path if path.starts_with('/') => Some(path.to_owned()),
        path => bail!("{source}: {key}.health_check_path = {path:?} must start with /"),
    };
    let mut extra_roots = Vec::new();
    if let Some(ca_file) = &section.ca_file {
        let path = if ca_file.is_relative() { base.join(ca_file) } else { ca_file.clone() };
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("{source}: {key}.ca_file = {}: {e}", path.display()))?;
        if certs.is_empty() {
            bail!("{source}: {key}.ca_file = {}: no certificate in the file", path.display());
        }
        extra_roots = certs;
    }
    let selection = match section.selection.as_str() {
        "weighted" => holdfast_origin::Selection::Weighted,
        "consistent-hash" => holdfast_origin::Selection::ConsistentHash,
        other => bail!("{source}: {key}.selection = {other:?}: use \"weighted\" or \"consistent-hash\""),
    };
    let mut origin = OriginConfig::new(Vec::new());
    origin.selection = selection;
    origin.extra_roots = extra_roots;
    origin.members = members;
    origin.fallback = fallback;
    origin.host.clone_from(&section.host);
    origin.connect_timeout = section.connect_timeout;
    origin.header_timeout = section.header_timeout;
    origin.body_idle_timeout = section.body_idle_timeout;
    origin.max_connections = section.max_connections;
    origin.retry = RetryPolicy {
        hold_budget: section.hold_budget,
        base_backoff: section.retry_base_backoff,
        max_backoff: section.retry_max_backoff.max(section.retry_base_backoff),
    };
    origin.health = HealthConfig {
        failure_threshold: section.failure_threshold,
        base_ejection: section.ejection,
        max_ejection: section.max_ejection.max(section.ejection),
        check_path: health_check_path,
        check_interval: section.health_check_interval,
    };
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<NodeConfig> {
        let file: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("t.toml: {e}"))?;
        NodeConfig::from_file(file, Path::new("."), "t.toml", Overrides::default())
    }

    #[test]
    fn unknown_keys_are_named() {
        let error = parse("[cache]\nmemory_sise = \"1GiB\"\n").unwrap_err().to_string();
        assert!(error.contains("memory_sise"), "{error}");
        assert!(error.contains("t.toml"), "{error}");
        let error = parse("[cachee]\n").unwrap_err().to_string();
        assert!(error.contains("cachee"), "{error}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let error = parse("[origin]\nurls = [\"ftp://x\"]\n").unwrap_err().to_string();
        assert!(error.contains("origin.urls[0]"), "{error}");
        let error = parse("[server]\nlisten = [\"nowhere\"]\n[origin]\nurls = [\"http://127.0.0.1:1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("server.listen[0]"), "{error}");
        let error = parse("[origin]\nurls = []\n").unwrap_err().to_string();
        assert!(error.contains("origin.urls"), "{error}");
        let error = parse("[[site]]\nhosts = [\"a.example\"]\n[site.origin]\nurls = [\"gopher://x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("site[0].origin.urls[0]"), "{error}");
        let error = parse("[server]\nunknown_host_status = 500\n[origin]\nurls = [\"http://127.0.0.1:1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("server.unknown_host_status"), "{error}");
        let error = parse("[cache]\nmemory_size = \"lots\"\n").unwrap_err().to_string();
        assert!(error.contains("memory_size"), "{error}");
    }

    #[test]
    fn sites_weights_and_fallback() {
        let text = r#"
[origin]
urls = ["http://127.0.0.1:1", { url = "http://127.0.0.1:2", weight = 3 }]
fallback = "http://127.0.0.1:3"
hold_budget = "4s"

[[site]]
hosts = ["app.example", "*.cdn.example"]
[site.origin]
urls = ["http://127.0.0.1:4"]
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.sites.len(), 2);
        assert_eq!(config.sites[0].hosts, ["app.example", "*.cdn.example"]);
        let default = &config.sites[1];
        assert!(default.hosts.is_empty());
        assert_eq!(default.origin.members.iter().map(|m| m.weight).collect::<Vec<_>>(), [1, 3]);
        assert!(default.origin.fallback.is_some());
        assert_eq!(default.origin.retry.hold_budget, Duration::from_secs(4));
    }

    #[test]
    fn sizes_and_durations_parse_and_flags_win() {
        let text = "[server]\nlisten = [\"127.0.0.1:1\"]\nheader_read_timeout = \"3s\"\n[cache]\nmemory_size = \"64MiB\"\n[origin]\nurls = [\"http://127.0.0.1:9\"]\n";
        let config = parse(text).unwrap();
        assert_eq!(config.store.memory_size, 64 * 1024 * 1024);
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(3));
        let file: FileConfig = toml::from_str(text).unwrap();
        let overrides = Overrides {
            listen: vec!["127.0.0.1:2".into()],
            memory_size: Some(ByteSize::mib(8)),
            ..Overrides::default()
        };
        let config = NodeConfig::from_file(file, Path::new("."), "t.toml", overrides).unwrap();
        assert_eq!(config.listen, vec!["127.0.0.1:2".parse::<SocketAddr>().unwrap()]);
        assert_eq!(config.store.memory_size, 8 * 1024 * 1024);
    }
}
