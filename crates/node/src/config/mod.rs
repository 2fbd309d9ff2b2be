//! The configuration file and its conversion to each crate's typed config.
//!
//! The file is read into [`FileConfig`] (unknown keys rejected), command-line
//! overrides are applied, and the result is converted once into
//! [`NodeConfig`]. Errors name the key and the file.

mod file;
mod origin;
#[cfg(test)]
mod tests;

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
use holdfast_frontend::{HandlerConfig, ServerConfig};
use holdfast_origin::OriginConfig;
use http::{Method, StatusCode};

pub use file::{
    AdminSection, CacheSection, CertSection, DEFAULT_ADMIN_LISTEN, DEFAULT_DISK_SIZE, DEFAULT_LISTEN,
    DEFAULT_MEMORY_SIZE, DEFAULT_SHUTDOWN_DELAY, FileConfig, LimitsSection, LogSection, OriginEntry, OriginSection,
    RetryBudgetSection, ServerSection, SiteSection, TlsSection,
};
use origin::{check_hosts, lowercase, origin_config};

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
