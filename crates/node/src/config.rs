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
use holdfast_cache::StoreConfig;
use holdfast_frontend::{HandlerConfig, ServerConfig, handler};
use holdfast_origin::{Endpoint, OriginConfig};
use http::Method;
use serde::Deserialize;

/// Where `serve` listens when neither the file nor a flag says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Memory for cached bodies and metadata.
pub const DEFAULT_MEMORY_SIZE: ByteSize = ByteSize::mib(256);

/// The TOML file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerSection,
    pub limits: LimitsSection,
    pub cache: CacheSection,
    pub origin: OriginSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// HTTP/1.1 + h2c listeners.
    pub listen: Vec<String>,
    /// Host names served; empty serves any Host.
    pub hosts: Vec<String>,
    /// Methods relayed to the origin uncached (405 for others but GET/HEAD).
    pub pass_methods: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
}

impl Default for ServerSection {
    fn default() -> Self {
        let defaults = ServerConfig::default();
        ServerSection {
            listen: Vec::new(),
            hosts: Vec::new(),
            pass_methods: Vec::new(),
            header_read_timeout: defaults.header_read_timeout,
            drain_timeout: defaults.drain_timeout,
            h2_max_concurrent_streams: defaults.h2_max_concurrent_streams,
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
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            memory_size: DEFAULT_MEMORY_SIZE,
            max_object_size: ByteSize::b(handler::DEFAULT_MAX_OBJECT_SIZE),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginSection {
    /// `http://host:port` or `dir:PATH` (relative to the config file).
    pub urls: Vec<String>,
    /// Host header sent upstream; the client's Host when unset.
    pub host: Option<String>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Cache-Control that `dir:` origins send.
    pub directory_cache_control: String,
}

impl Default for OriginSection {
    fn default() -> Self {
        OriginSection {
            urls: Vec::new(),
            host: None,
            connect_timeout: holdfast_origin::DEFAULT_CONNECT_TIMEOUT,
            header_timeout: holdfast_origin::DEFAULT_HEADER_TIMEOUT,
            body_idle_timeout: holdfast_origin::DEFAULT_BODY_IDLE_TIMEOUT,
            directory_cache_control: holdfast_origin::directory::DEFAULT_CACHE_CONTROL.to_owned(),
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
}

/// Everything the node needs, typed and checked.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: Vec<SocketAddr>,
    pub handler: HandlerConfig,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub origin: OriginConfig,
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
            file.origin.urls = overrides.origins;
        }
        if let Some(size) = overrides.memory_size {
            file.cache.memory_size = size;
        }
        if let Some(size) = overrides.max_object_size {
            file.cache.max_object_size = size;
        }
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
        if file.origin.urls.is_empty() {
            bail!("{source}: origin.urls is empty; give at least one origin (or --origin URL)");
        }
        let mut endpoints = Vec::new();
        for (i, url) in file.origin.urls.iter().enumerate() {
            let mut endpoint =
                Endpoint::parse(url).map_err(|e| anyhow::anyhow!("{source}: origin.urls[{i}] = {url:?}: {e}"))?;
            if let Endpoint::Directory { root, cache_control } = &mut endpoint {
                if root.is_relative() {
                    *root = base.join(&*root);
                }
                if !root.is_dir() {
                    bail!("{source}: origin.urls[{i}] = {url:?}: {} is not a directory", root.display());
                }
                cache_control.clone_from(&file.origin.directory_cache_control);
            }
            endpoints.push(endpoint);
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
        for (i, host) in file.server.hosts.iter().enumerate() {
            let name = host.strip_prefix("*.").unwrap_or(host);
            if name.is_empty() || name.contains(['*', ':', '/', ' ']) {
                bail!("{source}: server.hosts[{i}] = {host:?}: give a host name or *.domain");
            }
        }
        if file.cache.memory_size.as_u64() < 1024 * 1024 {
            bail!("{source}: cache.memory_size = {} is below the 1 MiB minimum", file.cache.memory_size);
        }
        if file.limits.max_header_bytes.as_u64() > u32::MAX as u64 {
            bail!("{source}: limits.max_header_bytes is too large");
        }
        let max_header_bytes = file.limits.max_header_bytes.as_u64() as usize;
        let mut origin = OriginConfig::new(endpoints);
        origin.host = file.origin.host;
        origin.connect_timeout = file.origin.connect_timeout;
        origin.header_timeout = file.origin.header_timeout;
        origin.body_idle_timeout = file.origin.body_idle_timeout;
        Ok(NodeConfig {
            listen,
            handler: HandlerConfig {
                hosts: file.server.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                max_object_size: file.cache.max_object_size.as_u64(),
                max_uri_len: file.limits.max_uri_length,
                max_header_bytes,
                max_headers: file.limits.max_headers,
                pass_methods,
            },
            server: ServerConfig {
                header_read_timeout: file.server.header_read_timeout,
                max_header_bytes,
                max_headers: file.limits.max_headers,
                h2_max_concurrent_streams: file.server.h2_max_concurrent_streams,
                h2_max_header_list_size: max_header_bytes as u32,
                drain_timeout: file.server.drain_timeout,
            },
            store: StoreConfig { memory_size: file.cache.memory_size.as_u64() },
            origin,
        })
    }
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
        let error = parse("[cache]\nmemory_size = \"lots\"\n").unwrap_err().to_string();
        assert!(error.contains("memory_size"), "{error}");
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
