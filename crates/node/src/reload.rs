//! Configuration reload (SIGHUP and `POST /reload`) without dropping
//! connections or the cache.
//!
//! The new file is read and checked first; if it has errors, they are
//! returned and nothing changes. Otherwise the certificates are re-read
//! (from the files the new config names), then the sites, their origin
//! groups and the request limits are swapped in one step (requests in
//! flight finish with the snapshot they started with). Listeners (with
//! their HTTP/3 settings), the cache sizes and the disk tier stay as
//! started: a change to them is reported, and applied by a restart or
//! `--upgrade`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use holdfast_frontend::tls::CertResolver;
use holdfast_frontend::{Handler, Routing, Site};
use holdfast_origin::{Client, RetryBudget};

use crate::config::{NodeConfig, Overrides};
use crate::upstream::OriginUpstream;

/// Builds each site's origin group (with its health checks) and the
/// handler's site list.
pub(crate) fn build_sites(config: &NodeConfig, budget: &Arc<RetryBudget>) -> (Vec<Site>, Vec<(String, Client)>) {
    let mut sites = Vec::new();
    let mut origins = Vec::new();
    for site in &config.sites {
        let client = Client::with_budget(site.origin.clone(), Arc::clone(budget));
        client.spawn_health_checks();
        origins.push((site.name.clone(), client.clone()));
        sites.push(Site {
            name: site.name.clone(),
            hosts: site.hosts.clone(),
            upstream: Arc::new(OriginUpstream::new(client)),
            forward: site.forward.clone(),
            query: site.query.clone(),
        });
    }
    (sites, origins)
}

/// What a reload needs, shared by the signal handler and the admin API.
pub struct Reloader {
    handler: Arc<Handler>,
    certificates: Option<Arc<CertResolver>>,
    origins: RwLock<Vec<(String, Client)>>,
    budget: Arc<RetryBudget>,
    /// The file and command-line overrides the node was started with.
    source: Mutex<Option<(PathBuf, Overrides)>>,
    started_with: NodeConfig,
    /// Serialises reloads.
    lock: Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        handler: Arc<Handler>,
        certificates: Option<Arc<CertResolver>>,
        origins: Vec<(String, Client)>,
        budget: Arc<RetryBudget>,
        started_with: NodeConfig,
    ) -> Reloader {
        Reloader {
            handler,
            certificates,
            origins: RwLock::new(origins),
            budget,
            source: Mutex::new(None),
            started_with,
            lock: Mutex::new(()),
        }
    }

    /// Where the configuration came from, so a reload can read it again.
    pub fn set_source(&self, path: PathBuf, overrides: Overrides) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = Some((path, overrides));
    }

    /// The config file the node was started with (as given), if any.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.source.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(path, _)| path.clone())
    }

    /// Each site's origin group, as served now.
    pub fn origins(&self) -> Vec<(String, Client)> {
        self.origins.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads; returns what was done, or the errors (and nothing changed).
    pub fn reload(&self) -> anyhow::Result<String> {
        let _serial = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let source = self.source.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let config = match &source {
            Some((path, overrides)) => {
                Some(NodeConfig::load(Some(path), overrides.clone(), &self.started_with.environment)?)
            }
            None => None,
        };
        if let Some(resolver) = &self.certificates {
            // The new file's certificate list, which may name other files.
            match config.as_ref().and_then(|c| c.tls.as_ref()) {
                Some(tls) => resolver.replace(tls.certificates.clone())?,
                None => resolver.reload()?,
            }
        }
        let Some(config) = config else {
            return Ok("certificates reloaded (no config file to re-read)".into());
        };
        let (sites, origins) = build_sites(&config, &self.budget);
        self.handler.reload(Routing { config: config.handler.clone(), sites });
        *self.origins.write().unwrap_or_else(|p| p.into_inner()) = origins;
        let old = &self.started_with;
        let mut not_applied = Vec::new();
        if config.listen != old.listen {
            not_applied.push("server.listen");
        }
        if config.tls.as_ref().map(|t| &t.listen) != old.tls.as_ref().map(|t| &t.listen) {
            not_applied.push("tls.listen");
        }
        // Set on the listeners when they start (certificates are not).
        let (tls, old_tls) = (config.tls.as_ref(), old.tls.as_ref());
        if tls.map(|t| &t.h3) != old_tls.map(|t| &t.h3) {
            not_applied.push("tls.h3 and tls.h3_*");
        }
        if tls.map(|t| t.alt_svc_max_age) != old_tls.map(|t| t.alt_svc_max_age) {
            not_applied.push("tls.alt_svc_max_age");
        }
        if tls.map(|t| t.refuse_misdirected) != old_tls.map(|t| t.refuse_misdirected) {
            not_applied.push("tls.refuse_misdirected");
        }
        if config.workers != old.workers {
            not_applied.push("server.workers");
        }
        let fill_limits = |c: &NodeConfig| {
            let h = &c.handler;
            (h.fill_buffer_size, h.max_concurrent_fills, h.max_fills_per_client, h.client_fill_wait)
        };
        if fill_limits(&config) != fill_limits(old) {
            not_applied.push("cache.fill_buffer_size/max_concurrent_fills/max_fills_per_client/client_fill_wait");
        }
        if config.store.memory_size != old.store.memory_size {
            not_applied.push("cache.memory_size");
        }
        if config.disk.as_ref().map(|d| (&d.dir, d.max_size)) != old.disk.as_ref().map(|d| (&d.dir, d.max_size)) {
            not_applied.push("cache.dir/disk_size");
        }
        if config.admin_listen != old.admin_listen || config.admin_token != old.admin_token {
            not_applied.push("admin");
        }
        let mut summary = format!("reloaded: {} site(s), certificates, limits", config.sites.len());
        if !not_applied.is_empty() {
            summary.push_str(&format!("; not applied until a restart or --upgrade: {}", not_applied.join(", ")));
        }
        Ok(summary)
    }
}
