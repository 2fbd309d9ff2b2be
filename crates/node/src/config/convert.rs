//! From the file, the command line's overrides and the environment to
//! [`NodeConfig`]: what serde cannot check (keys that depend on each other,
//! files and directories) is checked here, and errors name the key.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::bail;
use holdfast_cache::control::CDN_CACHE_CONTROL;
use holdfast_cache::disk::default_max_files;
use holdfast_cache::policy::Policy;
use holdfast_cache::{DiskConfig, StoreConfig};
use holdfast_frontend::connections::ConnectionLimits;
use holdfast_frontend::h3::{AddressValidation, H3Config};
use holdfast_frontend::tls::CertFiles;
use holdfast_frontend::{ForwardHeaders, HandlerConfig, QueryPolicy, ServerConfig};
use http::Method;
use http::header::{self, HeaderName};

use super::origin::{check_hosts, lowercase, origin_config};

use super::{
    AdminToken, CertSection, DEFAULT_LISTEN, Environment, FileConfig, H3AddressValidation, NodeConfig, OriginEntry,
    OriginSection, Overrides, SiteConfig, TlsConfig, relative_to,
};
use crate::access_log::Destination;

impl NodeConfig {
    /// Converts a parsed file. `base` is the file's directory (relative
    /// paths in the file are relative to it); `source` names the file in
    /// error messages; `env` is the environment `main` read.
    pub fn from_file(
        mut file: FileConfig,
        base: &Path,
        source: &str,
        overrides: Overrides,
        env: &Environment,
    ) -> anyhow::Result<NodeConfig> {
        // Every flag is named here: a new one cannot be forgotten.
        let Overrides {
            listen,
            origins,
            memory_size,
            max_object_size,
            cache_dir,
            admin_listen,
            admin_token_file,
            tls_listen,
            tls_cert,
            tls_key,
            h3,
            workers,
        } = overrides;
        if !listen.is_empty() {
            file.server.listen = listen;
        }
        if !origins.is_empty() {
            file.origin.urls = origins.into_iter().map(OriginEntry::Url).collect();
        }
        if let Some(size) = memory_size {
            file.cache.memory_size = size;
        }
        if let Some(workers) = workers {
            file.server.workers = workers;
        }
        if let Some(size) = max_object_size {
            file.cache.max_object_size = size;
        }
        // A path from the command line is relative to the working
        // directory; one from the file, to the file.
        let cache_dir = cache_dir.or_else(|| file.cache.dir.as_deref().map(|dir| relative_to(base, dir)));
        if let Some(listen) = admin_listen {
            file.admin.listen = listen;
        }
        let token_file = admin_token_file.or_else(|| file.admin.token_file.as_deref().map(|p| relative_to(base, p)));
        let admin_token = match token_file {
            Some(path) => Some(AdminToken::File(path)),
            None => env
                .admin_token
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| AdminToken::Value(t.to_owned())),
        };
        if !tls_listen.is_empty() {
            file.tls.listen = tls_listen;
        }
        match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => file.tls.certificate = vec![CertSection { cert, key }],
            (None, None) => {
                for pair in &mut file.tls.certificate {
                    pair.cert = relative_to(base, &pair.cert);
                    pair.key = relative_to(base, &pair.key);
                }
            }
            _ => bail!("--tls-cert and --tls-key go together"),
        }
        file.tls.h3 |= h3;
        if file.server.listen.is_empty() {
            file.server.listen.push(DEFAULT_LISTEN);
        }
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
            let forward = forward_headers(&site.origin.forward_headers, source, &format!("{key}.origin"))?;
            let query = query_policy(&site.origin, source, &format!("{key}.origin"))?;
            sites.push(SiteConfig { name, hosts: lowercase(&site.hosts), origin, forward, query });
        }
        if !file.origin.urls.is_empty() {
            check_hosts(&file.server.hosts, source, "server.hosts")?;
            let origin = origin_config(&file.origin, base, source, "origin")?;
            let forward = forward_headers(&file.origin.forward_headers, source, "origin")?;
            let query = query_policy(&file.origin, source, "origin")?;
            let hosts = lowercase(&file.server.hosts);
            sites.push(SiteConfig { name: "default".into(), hosts, origin, forward, query });
        }
        let first_port = file.server.listen.first().map_or(0, |a| a.port());
        let node_name = node_name(file.server.node_name.as_deref(), env, first_port, source)?;
        if !(0.0..=10.0).contains(&file.retry_budget.ratio) || file.retry_budget.min_per_sec < 0.0 {
            bail!("{source}: retry_budget.ratio must be within 0..10 and retry_budget.min_per_sec at least 0");
        }
        let pass_methods = pass_methods(&file.server.pass_methods, source)?;
        let policy = policy(&file.cache, source)?;
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
        let max_files = file.cache.disk_max_files.unwrap_or_else(|| default_max_files(file.cache.disk_size.as_u64()));
        let disk = cache_dir.map(|dir| DiskConfig {
            dir,
            max_size: file.cache.disk_size.as_u64(),
            max_files,
            fsync: file.cache.fsync.into(),
        });
        let tls = tls_config(&file, max_header_bytes, source)?;
        let access_log = match file.log.access.as_str() {
            "off" | "" => None,
            "stdout" => Some((Destination::Stdout, file.log.access_format.into())),
            path => Some((Destination::File(relative_to(base, Path::new(path))), file.log.access_format.into())),
        };
        Ok(NodeConfig {
            listen: file.server.listen,
            handler: HandlerConfig {
                node_name,
                unknown_host_status: file.server.unknown_host_status.into(),
                max_stale_on_error: file.cache.max_stale_on_error,
                max_object_size: file.cache.max_object_size.as_u64(),
                max_uri_len: file.limits.max_uri_length,
                max_header_bytes,
                max_headers: file.limits.max_headers,
                pass_methods,
                fill_buffer_size: file.cache.fill_buffer_size.as_u64(),
                max_concurrent_fills: file.cache.max_concurrent_fills,
                max_fills_per_client: file.cache.max_fills_per_client,
                client_fill_wait: file.cache.client_fill_wait,
                policy,
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
            admin_listen: file.admin.listen.0,
            control_socket: file.server.control_socket,
            shutdown_delay: file.server.shutdown_delay,
            tls,
            admin_token,
            metrics_without_token: file.admin.metrics_without_token,
            access_log,
            workers: file.server.workers,
            environment: env.clone(),
        })
    }
}

/// `server.node_name`, else `$HOSTNAME` and the first listener's port.
fn node_name(configured: Option<&str>, env: &Environment, first_port: u16, source: &str) -> anyhow::Result<String> {
    match configured {
        Some(name) if !name.is_empty() && !name.contains([' ', ',']) => Ok(name.to_owned()),
        Some(name) => bail!("{source}: server.node_name = {name:?}: one word, no spaces or commas"),
        None => {
            let host = env.hostname.as_deref().unwrap_or("holdfast");
            Ok(match first_port {
                // An ephemeral port is not known yet: make the name unique anyway.
                0 => {
                    static NEXT: AtomicU64 = AtomicU64::new(0);
                    let n = NEXT.fetch_add(1, Ordering::Relaxed);
                    format!("{host}-{}-{n}", std::process::id())
                }
                port => format!("{host}:{port}"),
            })
        }
    }
}

/// `{key}.forward_headers`: which client fields reach the origin.
fn forward_headers(names: &[String], source: &str, key: &str) -> anyhow::Result<ForwardHeaders> {
    ForwardHeaders::parse(names).map_err(|e| anyhow::anyhow!("{source}: {key}.forward_headers: {e}"))
}

/// `{key}.query_params` and `{key}.query_sort`: which query parameters are
/// keyed and forwarded, in which order.
fn query_policy(origin: &OriginSection, source: &str, key: &str) -> anyhow::Result<QueryPolicy> {
    let params = origin.query_params.parse().map_err(|e| anyhow::anyhow!("{source}: {key}.query_params: {e}"))?;
    Ok(QueryPolicy { params, sort: origin.query_sort })
}

/// How responses are judged: `cache.targeted_cache_control` (field names,
/// then CDN-Cache-Control), `cache.negative_ttl`, `cache.max_error_ttl`.
fn policy(cache: &super::file::CacheSection, source: &str) -> anyhow::Result<Policy> {
    let mut targets = Vec::new();
    for name in &cache.targeted_cache_control {
        let Ok(header) = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()) else {
            bail!("{source}: cache.targeted_cache_control: {name:?} is not a header field name");
        };
        if header == header::CACHE_CONTROL {
            bail!("{source}: cache.targeted_cache_control: Cache-Control is what targeted fields override");
        }
        targets.push(header);
    }
    if !targets.contains(&CDN_CACHE_CONTROL) {
        targets.push(CDN_CACHE_CONTROL);
    }
    Ok(Policy { targets, negative_ttl: cache.negative_ttl, max_error_ttl: Some(cache.max_error_ttl) })
}

/// `server.pass_methods`: relayed uncached; never GET, HEAD or CONNECT.
fn pass_methods(methods: &[String], source: &str) -> anyhow::Result<Vec<Method>> {
    methods
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
        .collect()
}

/// The `[tls]` table, when it has listeners.
fn tls_config(file: &FileConfig, max_header_bytes: usize, source: &str) -> anyhow::Result<Option<TlsConfig>> {
    let tls = &file.tls;
    if tls.listen.is_empty() {
        if tls.h3 {
            bail!("{source}: tls.h3 is on but tls.listen is empty (HTTP/3 runs on the TLS listeners' addresses)");
        }
        return Ok(None);
    }
    if tls.certificate.is_empty() {
        bail!("{source}: tls.listen is set but no [[tls.certificate]] (or --tls-cert/--tls-key) is given");
    }
    if tls.h3_max_connections == 0 {
        bail!("{source}: tls.h3_max_connections must be at least 1");
    }
    if tls.h3_handshake_timeout.is_zero() {
        bail!("{source}: tls.h3_handshake_timeout must be above zero");
    }
    let address_validation = match tls.h3_address_validation {
        H3AddressValidation::Auto => AddressValidation::Auto { above_handshakes: tls.h3_retry_above_handshakes },
        H3AddressValidation::Always => AddressValidation::Always,
        H3AddressValidation::Never => AddressValidation::Never,
    };
    // setsockopt takes an int.
    let Some(socket_buffer) = i32::try_from(tls.h3_socket_buffer.as_u64()).ok().and_then(|b| usize::try_from(b).ok())
    else {
        bail!("{source}: tls.h3_socket_buffer must be under 2 GiB");
    };
    let h3 = tls.h3.then(|| H3Config {
        idle_timeout: tls.h3_idle_timeout,
        max_field_section_size: max_header_bytes as u64,
        max_concurrent_streams: file.server.h2_max_concurrent_streams,
        drain_timeout: file.server.drain_timeout,
        handshake_timeout: tls.h3_handshake_timeout,
        header_read_timeout: file.server.header_read_timeout,
        send_timeout: file.server.send_timeout,
        limits: ConnectionLimits { max: tls.h3_max_connections, max_per_client: tls.h3_max_connections_per_client },
        address_validation,
        socket_buffer,
        ..H3Config::default()
    });
    let certificates = tls.certificate.iter().map(|c| CertFiles { cert: c.cert.clone(), key: c.key.clone() }).collect();
    Ok(Some(TlsConfig {
        listen: tls.listen.clone(),
        certificates,
        h3,
        alt_svc_max_age: tls.alt_svc_max_age,
        refuse_misdirected: tls.refuse_misdirected,
    }))
}
