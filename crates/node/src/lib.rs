//! The holdfast node as a library: configuration and wiring, so tests can
//! start a whole node in process. The binary in `main.rs` is the CLI.

pub mod config;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use holdfast_cache::Store;
use holdfast_frontend::{Handler, Site, serve_tcp};
use holdfast_origin::{Client, RetryBudget};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{NodeConfig, Overrides};
pub use upstream::OriginUpstream;

/// A started node: its listeners are bound and serving.
pub struct RunningNode {
    /// The bound addresses, in the order of the config (ports resolved).
    pub local_addrs: Vec<SocketAddr>,
    handler: Arc<Handler>,
    /// Each site's origin group, in config order (for stats).
    origins: Vec<(String, Client)>,
    shutdown: watch::Sender<bool>,
    listeners: JoinSet<()>,
}

impl RunningNode {
    /// Binds every listener and starts serving.
    pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
        let store = Store::new(&config.store);
        let budget = Arc::new(RetryBudget::new(config.retry_ratio, config.retry_min_per_sec));
        let mut sites = Vec::new();
        let mut origins = Vec::new();
        for site in &config.sites {
            let client = Client::with_budget(site.origin.clone(), Arc::clone(&budget));
            client.spawn_health_checks();
            origins.push((site.name.clone(), client.clone()));
            sites.push(Site {
                name: site.name.clone(),
                hosts: site.hosts.clone(),
                upstream: Arc::new(OriginUpstream::new(client)),
            });
        }
        let handler = Arc::new(Handler::new(config.handler.clone(), store, sites));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut listeners = JoinSet::new();
        let mut local_addrs = Vec::new();
        for addr in &config.listen {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(listen = %local, "serving HTTP/1.1 and h2c");
            local_addrs.push(local);
            listeners.spawn(serve_tcp(listener, Arc::clone(&handler), config.server.clone(), shutdown_rx.clone()));
        }
        Ok(RunningNode { local_addrs, handler, origins, shutdown, listeners })
    }

    /// The request handler (and through it the store), for tests and stats.
    pub fn handler(&self) -> &Arc<Handler> {
        &self.handler
    }

    /// Each site's origin group: counters and health.
    pub fn origins(&self) -> &[(String, Client)] {
        &self.origins
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain
    /// timeout), and returns when every listener is done.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.listeners.join_next().await.is_some() {}
    }
}
