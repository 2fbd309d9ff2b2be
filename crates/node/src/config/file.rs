//! The TOML file as written: [`FileConfig`] and its sections, with their
//! defaults. serde parses every value (addresses, sizes, durations, the
//! keys that take one of a few words); the conversion to typed configs
//! checks what depends on several keys or on the machine.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use holdfast_frontend::h3::H3Config;
use holdfast_frontend::{ServerConfig, handler};
use holdfast_origin::{HealthConfig, RetryPolicy};
use serde::{Deserialize, Deserializer};

use super::values::{
    AccessFormat, Fsync, H3AddressValidation, OptionalListen, QueryParamsValue, Selection, UnknownHostStatus,
};

/// Where `serve` listens when neither the file nor a flag says.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Memory for cached bodies and metadata.
pub const DEFAULT_MEMORY_SIZE: ByteSize = ByteSize::mib(256);
/// Body bytes kept in the disk tier.
pub const DEFAULT_DISK_SIZE: ByteSize = ByteSize::gib(10);
/// The admin listener (loopback: probes run on the same host or pod).
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901));
/// Between readiness turning false and the listeners closing: time for a
/// load balancer to notice.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(1);

/// The TOML file, as written.
///
/// A value that does not parse is reported with its key, e.g.
/// `server.listen[0]: TOML parse error at line 2 ...`: serde's errors do
/// not say where they are, so [`FileConfig`]'s `Deserialize` follows the
/// path (serde_path_to_error) and prefixes it.
#[derive(Debug, Default, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, default)]
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

impl<'de> Deserialize<'de> for FileConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FileConfig, D::Error> {
        /// The derived impl (`remote = "Self"` makes it an inherent function).
        struct Derived(FileConfig);
        impl<'de> Deserialize<'de> for Derived {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Derived, D::Error> {
                FileConfig::deserialize(deserializer).map(Derived)
            }
        }
        serde_path_to_error::deserialize(deserializer).map(|Derived(file)| file).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            let message = inner.to_string();
            match path.as_str() {
                "." => inner,
                path => serde::de::Error::custom(format!("{path}: {}", message.trim_end())),
            }
        })
    }
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
    pub access_format: AccessFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { access: "off".into(), access_format: AccessFormat::default() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// TLS listeners: HTTP/1.1 and HTTP/2 by ALPN.
    pub listen: Vec<SocketAddr>,
    /// Also serve HTTP/3 over UDP on each TLS listener's address.
    pub h3: bool,
    /// Certificate chains and keys (PEM); the first is the default, for
    /// clients without SNI. Relative paths are relative to the config file.
    pub certificate: Vec<CertSection>,
    /// Alt-Svc max age advertised for HTTP/3.
    #[serde(with = "humantime_serde")]
    pub alt_svc_max_age: Duration,
    /// With several certificates: a request for a host that another
    /// certificate names than its connection's is a 421 (no fronting into
    /// another tenant's site). False serves it.
    pub refuse_misdirected: bool,
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
    /// QUIC Retry (address validation).
    pub h3_address_validation: H3AddressValidation,
    pub h3_retry_above_handshakes: usize,
    /// The UDP socket's kernel buffers, each way; 0 keeps the system's.
    pub h3_socket_buffer: ByteSize,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            listen: Vec::new(),
            h3: false,
            certificate: Vec::new(),
            alt_svc_max_age: Duration::from_secs(24 * 3600),
            refuse_misdirected: true,
            h3_idle_timeout: H3Config::default().idle_timeout,
            h3_max_connections: holdfast_frontend::h3::DEFAULT_MAX_CONNECTIONS,
            h3_max_connections_per_client: 0,
            h3_handshake_timeout: holdfast_frontend::h3::DEFAULT_HANDSHAKE_TIMEOUT,
            h3_address_validation: H3AddressValidation::default(),
            h3_retry_above_handshakes: holdfast_frontend::h3::DEFAULT_RETRY_ABOVE_HANDSHAKES,
            h3_socket_buffer: ByteSize::b(holdfast_frontend::h3::DEFAULT_SOCKET_BUFFER as u64),
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
    pub listen: OptionalListen,
    /// File holding the bearer token (else HOLDFAST_ADMIN_TOKEN).
    pub token_file: Option<PathBuf>,
    /// Let scrapers read /metrics without the token.
    pub metrics_without_token: bool,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: OptionalListen(Some(DEFAULT_ADMIN_LISTEN)),
            token_file: None,
            metrics_without_token: false,
        }
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
    pub listen: Vec<SocketAddr>,
    /// This node's name in Via headers (loop detection between tiers);
    /// default: $HOSTNAME (the pod name on Kubernetes) and the first port.
    pub node_name: Option<String>,
    /// Host names the default site serves; empty serves any Host.
    pub hosts: Vec<String>,
    /// Status for a Host no site claims: 421 or 404.
    pub unknown_host_status: UnknownHostStatus,
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
    /// Threads serving requests; 0: one per CPU the process may use.
    pub workers: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        let defaults = ServerConfig::default();
        ServerSection {
            listen: Vec::new(),
            node_name: None,
            hosts: Vec::new(),
            unknown_host_status: UnknownHostStatus::default(),
            pass_methods: Vec::new(),
            header_read_timeout: defaults.header_read_timeout,
            drain_timeout: defaults.drain_timeout,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            control_socket: None,
            h2_max_concurrent_streams: defaults.h2_max_concurrent_streams,
            max_connections: holdfast_frontend::server::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: 0,
            send_timeout: defaults.send_timeout,
            workers: 0,
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
    pub fsync: Fsync,
    /// Files the disk tier may hold (records and bodies); default one per
    /// 8 KiB of disk_size.
    pub disk_max_files: Option<u64>,
    /// Body bytes all origin fills in progress may hold.
    pub fill_buffer_size: ByteSize,
    /// Origin fills in progress at most (a miss beyond gets 503 or its stale copy).
    pub max_concurrent_fills: usize,
    /// Fills one client address (IPv6: /64) may lead at once; 0: no limit.
    pub max_fills_per_client: usize,
    /// How long a miss over its client's share waits before its 429.
    #[serde(with = "humantime_serde")]
    pub client_fill_wait: Duration,
    /// Response fields that direct this node over Cache-Control, most
    /// specific first (RFC 9213); `CDN-Cache-Control` is always obeyed after them.
    pub targeted_cache_control: Vec<String>,
    /// Lifetime of a 404 that gives no freshness; unset: not stored.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    /// Longest an error (4xx, 5xx) stays fresh, whatever it says.
    #[serde(with = "humantime_serde")]
    pub max_error_ttl: Duration,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            memory_size: DEFAULT_MEMORY_SIZE,
            max_object_size: ByteSize::b(handler::DEFAULT_MAX_OBJECT_SIZE),
            max_stale_on_error: None,
            dir: None,
            disk_size: DEFAULT_DISK_SIZE,
            fsync: Fsync::default(),
            disk_max_files: None,
            fill_buffer_size: ByteSize::b(handler::DEFAULT_FILL_BUFFER_SIZE),
            max_concurrent_fills: handler::DEFAULT_MAX_CONCURRENT_FILLS,
            max_fills_per_client: 0,
            client_fill_wait: handler::DEFAULT_CLIENT_FILL_WAIT,
            targeted_cache_control: Vec::new(),
            negative_ttl: None,
            max_error_ttl: holdfast_cache::policy::DEFAULT_MAX_ERROR_TTL,
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
    pub(super) fn url(&self) -> &str {
        match self {
            OriginEntry::Url(url) | OriginEntry::Weighted { url, .. } => url,
        }
    }

    pub(super) fn weight(&self) -> u32 {
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
    pub selection: Selection,
    /// Host header sent upstream; the client's Host when unset.
    pub host: Option<String>,
    /// PEM file of extra trusted roots for https origins (a private CA).
    pub ca_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long an origin name's last resolved addresses are used while
    /// resolving it fails.
    #[serde(with = "humantime_serde")]
    pub dns_last_good_for: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Idle pooled connections to the origin are closed after this; keep
    /// it below the origin's own keep-alive timeout.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a request may wait for an origin to come back.
    #[serde(with = "humantime_serde")]
    pub hold_budget: Duration,
    /// How long a request keeps retrying an origin that answers 502/503/504
    /// or closes without a response (capped by `hold_budget`).
    #[serde(with = "humantime_serde")]
    pub answered_error_hold: Duration,
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
    /// Client request fields sent to the origin besides holdfast's own:
    /// names, or `["*"]` for every end-to-end field.
    pub forward_headers: Vec<String>,
    /// Query parameters in the cache key and the origin request: "all",
    /// "none", or a list of names.
    pub query_params: QueryParamsValue,
    /// Those parameters sorted by name, for the key and the origin request
    /// alike, so one set written in several orders is one object.
    pub query_sort: bool,
}

impl Default for OriginSection {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        let health = HealthConfig::default();
        OriginSection {
            urls: Vec::new(),
            fallback: None,
            selection: Selection::default(),
            host: None,
            ca_file: None,
            connect_timeout: holdfast_origin::DEFAULT_CONNECT_TIMEOUT,
            dns_last_good_for: holdfast_origin::DEFAULT_DNS_LAST_GOOD_FOR,
            header_timeout: holdfast_origin::DEFAULT_HEADER_TIMEOUT,
            body_idle_timeout: holdfast_origin::DEFAULT_BODY_IDLE_TIMEOUT,
            idle_timeout: holdfast_origin::DEFAULT_POOL_IDLE_TIMEOUT,
            hold_budget: retry.hold_budget,
            answered_error_hold: retry.answered_error_hold,
            retry_base_backoff: retry.base_backoff,
            retry_max_backoff: retry.max_backoff,
            failure_threshold: health.failure_threshold,
            ejection: health.base_ejection,
            max_ejection: health.max_ejection,
            health_check_path: health.check_path.unwrap_or_default(),
            health_check_interval: health.check_interval,
            directory_cache_control: holdfast_origin::directory::DEFAULT_CACHE_CONTROL.to_owned(),
            max_connections: holdfast_origin::DEFAULT_MAX_CONNECTIONS,
            forward_headers: Vec::new(),
            query_params: QueryParamsValue::default(),
            query_sort: false,
        }
    }
}
