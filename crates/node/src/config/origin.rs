//! Sites and their origin groups: `[origin]` and `[[site]]` tables to
//! [`OriginConfig`].

use std::path::Path;

use anyhow::bail;
use holdfast_origin::{Endpoint, HealthConfig, Member, OriginConfig, RetryPolicy};

use super::{OriginSection, relative_to};

pub(super) fn lowercase(hosts: &[String]) -> Vec<String> {
    hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
}

pub(super) fn check_hosts(hosts: &[String], source: &str, key: &str) -> anyhow::Result<()> {
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
pub(super) fn origin_config(
    section: &OriginSection,
    base: &Path,
    source: &str,
    key: &str,
) -> anyhow::Result<OriginConfig> {
    if section.urls.is_empty() {
        bail!("{source}: {key}.urls is empty; give at least one origin");
    }
    let endpoint = |url: &str, at: String| -> anyhow::Result<Endpoint> {
        let mut endpoint = Endpoint::parse(url).map_err(|e| anyhow::anyhow!("{source}: {at} = {url:?}: {e}"))?;
        if let Endpoint::Directory { root, cache_control } = &mut endpoint {
            *root = relative_to(base, root);
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
        let path = relative_to(base, ca_file);
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(&path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("{source}: {key}.ca_file = {}: {e}", path.display()))?;
        if certs.is_empty() {
            bail!("{source}: {key}.ca_file = {}: no certificate in the file", path.display());
        }
        extra_roots = certs;
    }
    let mut origin = OriginConfig::new(Vec::new());
    origin.selection = section.selection.into();
    origin.extra_roots = extra_roots;
    origin.members = members;
    origin.fallback = fallback;
    origin.host.clone_from(&section.host);
    origin.connect_timeout = section.connect_timeout;
    origin.dns_last_good_for = section.dns_last_good_for;
    origin.header_timeout = section.header_timeout;
    origin.body_idle_timeout = section.body_idle_timeout;
    origin.pool_idle_timeout = section.idle_timeout;
    origin.max_connections = section.max_connections;
    origin.retry = RetryPolicy {
        hold_budget: section.hold_budget,
        answered_error_hold: section.answered_error_hold,
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
