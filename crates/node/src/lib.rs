//! The holdfast node as a library: configuration and wiring, so tests can
//! start a whole node in process. The binary in `main.rs` is the CLI.

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
mod dashboard;
mod metrics;
mod purge_log;
pub mod reload;
pub mod runtime;
mod stats;
pub mod telemetry;
pub mod top;
mod upstream;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use holdfast_cache::{DiskTier, Store};
use holdfast_frontend::connections::ConnectionLimits;
use holdfast_frontend::h3::QuicStats;
use holdfast_frontend::tls::CertResolver;
use holdfast_frontend::{Handler, TcpStats, TlsListener, serve_tcp, serve_tls};
use holdfast_origin::{Client, RetryBudget};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use admin::Readiness;
pub use config::{Environment, NodeConfig, Overrides};
use control::SocketKind;
pub use upstream::OriginUpstream;

/// A started node: its listeners are bound and serving.
pub struct RunningNode {
    /// The bound addresses, in the order of the config (ports resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// The admin listener's address, if any.
    pub admin_addr: Option<SocketAddr>,
    handler: Arc<Handler>,
    /// Each site's origin group, in config order (for stats).
    reloader: Arc<reload::Reloader>,
    readiness: Readiness,
    shutdown_delay: Duration,
    shutdown: watch::Sender<bool>,
    listeners: JoinSet<()>,
    /// Notified when a new node took the listeners over (`--upgrade`).
    handed_over: Arc<Notify>,
    control_socket: Option<PathBuf>,
    /// The TLS certificates, reloadable (SIGHUP).
    certificates: Option<Arc<CertResolver>>,
    /// TLS listeners' addresses (TCP), in config order.
    pub tls_addrs: Vec<SocketAddr>,
    /// HTTP/3 endpoints' addresses (UDP).
    pub h3_addrs: Vec<SocketAddr>,
    /// QUIC connection counters, when HTTP/3 is on.
    pub quic: Option<Arc<QuicStats>>,
    /// TCP connection counters (all public TCP listeners).
    pub tcp: Arc<TcpStats>,
    /// The UDP sockets behind the HTTP/3 endpoints (kept for handover).
    _udp_sockets: Vec<std::net::UdpSocket>,
}

/// How a node gets its listening sockets.
pub enum Sockets {
    /// Bind the configured addresses.
    Bind,
    /// Take them over from the running node (zero-downtime upgrade).
    Upgrade,
}

impl RunningNode {
    /// Binds every listener and starts serving.
    pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
        RunningNode::start_with(config, Sockets::Bind).await
    }

    pub async fn start_with(config: NodeConfig, sockets: Sockets) -> anyhow::Result<RunningNode> {
        if config.sites.iter().any(|site| site.hosts.is_empty()) {
            tracing::warn!(
                "a site answers any Host (server.hosts is empty): clients can grow the cache key space at will; \
                 name the hosts you serve"
            );
        }
        let store = Store::new(&config.store);
        let budget = Arc::new(RetryBudget::new(config.retry_ratio, config.retry_min_per_sec));
        let (sites, origins) = reload::build_sites(&config, &budget);
        let mut handler = Handler::new(config.handler.clone(), store, sites);
        if telemetry::traces_on() {
            handler = handler.with_trace_ids(telemetry::trace_id_of);
        }
        if let Some((destination, format)) = &config.access_log {
            let writer = access_log::AccessLogWriter::start(destination.clone(), *format)?;
            handler = handler.with_access_log(Arc::new(writer));
        }
        if let Some(disk_config) = &config.disk {
            let disk = DiskTier::open(disk_config.clone())
                .with_context(|| format!("cannot open the disk tier in {}", disk_config.dir.display()))?;
            tracing::info!(dir = %disk_config.dir.display(), "disk tier open");
            handler = handler.with_disk(Arc::new(disk));
        }
        let handler = Arc::new(handler);

        let mut takeover = match sockets {
            Sockets::Bind => None,
            Sockets::Upgrade => {
                let first = *config.listen.first().context("no listener configured")?;
                let path = config.control_socket_path(first);
                let takeover = tokio::task::spawn_blocking(move || control::take_over(&path)).await??;
                tracing::info!(old_pid = takeover.old_pid, sockets = takeover.sockets.len(), "taking over listeners");
                Some(takeover)
            }
        };
        if let Some(disk) = handler.tiers().disk() {
            // Size accounting and eviction order are rebuilt in the
            // background: lookups read the files they need and do not wait.
            // In an upgrade, only once the old process is gone: its last
            // writes land while it drains, and the finished index rules keys
            // out without looking at the disk (DiskTier::surely_absent).
            let old_process = takeover.as_ref().map(|t| t.old_pid);
            let longest = config.server.drain_timeout + DISK_SETTLE + OLD_PROCESS_SLACK;
            let scanning = Arc::clone(disk);
            tokio::spawn(async move {
                if let Some(pid) = old_process {
                    let deadline = tokio::time::Instant::now() + longest;
                    while !control::process_gone(pid) && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                let _ = tokio::task::spawn_blocking(move || scanning.scan()).await;
            });
        }
        let mut claim = |kind: SocketKind, addr: &SocketAddr| -> Option<OwnedFd> {
            takeover.as_mut().and_then(|t| t.claim(kind, *addr))
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tcp = TcpStats::new(fd_bounded(config.connection_limits));
        let mut listeners = JoinSet::new();
        let mut local_addrs = Vec::new();
        let mut shared = Vec::new();
        for addr in &config.listen {
            let listener = tcp_listener(addr, claim(SocketKind::Tcp, addr), &config).await?;
            let local = listener.local_addr()?;
            tracing::info!(listen = %local, "serving HTTP/1.1 and h2c");
            local_addrs.push(local);
            shared.push((SocketKind::Tcp, local, listener.as_raw_fd()));
            listeners.spawn(serve_tcp(
                listener,
                Arc::clone(&handler),
                config.server.clone(),
                Arc::clone(&tcp),
                shutdown_rx.clone(),
            ));
        }
        let (mut tls_addrs, mut h3_addrs, mut certificates) = (Vec::new(), Vec::new(), None);
        let quic = config.tls.as_ref().and_then(|tls| tls.h3.as_ref()).map(|h3| QuicStats::new(h3.limits));
        let mut udp_sockets = Vec::new();
        if let Some(tls) = &config.tls {
            let resolver = CertResolver::new(tls.certificates.clone())?;
            let acceptor =
                tokio_rustls::TlsAcceptor::from(holdfast_frontend::tls::tcp_server_config(Arc::clone(&resolver))?);
            for addr in &tls.listen {
                let listener = tcp_listener(addr, claim(SocketKind::Tcp, addr), &config).await?;
                let local = listener.local_addr()?;
                let mut alt_svc = None;
                if let Some(h3) = &tls.h3 {
                    // HTTP/3 on the same address and port, over UDP.
                    let udp_addr = SocketAddr::new(local.ip(), local.port());
                    let socket = match claim(SocketKind::Udp, &udp_addr) {
                        Some(fd) => std::net::UdpSocket::from(fd),
                        None => std::net::UdpSocket::bind(udp_addr)
                            .with_context(|| format!("cannot listen on {udp_addr} (UDP, HTTP/3)"))?,
                    };
                    let udp_local = socket.local_addr()?;
                    shared.push((SocketKind::Udp, udp_local, socket.as_raw_fd()));
                    // quinn takes a duplicate; the original stays with the node
                    // so its descriptor can be handed over on upgrade.
                    let endpoint = holdfast_frontend::h3::endpoint(socket.try_clone()?, Arc::clone(&resolver), h3)?;
                    udp_sockets.push(socket);
                    tracing::info!(listen = %udp_local, "serving HTTP/3");
                    h3_addrs.push(udp_local);
                    // Invariant: `quic` is set whenever HTTP/3 is configured.
                    let stats = Arc::clone(quic.as_ref().expect("QUIC stats exist when HTTP/3 is on"));
                    listeners.spawn(holdfast_frontend::h3::serve_h3(
                        endpoint,
                        Arc::clone(&handler),
                        tls.refuse_misdirected.then(|| Arc::clone(&resolver)),
                        h3.clone(),
                        stats,
                        shutdown_rx.clone(),
                    ));
                    let value = format!("h3=\":{}\"; ma={}", udp_local.port(), tls.alt_svc_max_age.as_secs());
                    alt_svc = http::HeaderValue::from_str(&value).ok();
                }
                tracing::info!(listen = %local, "serving HTTP/1.1 and HTTP/2 over TLS");
                tls_addrs.push(local);
                shared.push((SocketKind::Tcp, local, listener.as_raw_fd()));
                let tls_listener = TlsListener {
                    acceptor: acceptor.clone(),
                    alt_svc,
                    certificates: tls.refuse_misdirected.then(|| Arc::clone(&resolver)),
                };
                listeners.spawn(serve_tls(
                    listener,
                    Arc::clone(&handler),
                    config.server.clone(),
                    Arc::clone(&tcp),
                    shutdown_rx.clone(),
                    tls_listener,
                ));
            }
            certificates = Some(resolver);
        }
        let reloader = Arc::new(reload::Reloader::new(
            Arc::clone(&handler),
            certificates.clone(),
            origins,
            Arc::clone(&budget),
            config.clone(),
        ));
        let readiness = Readiness::new();
        let admin_addr = match config.admin_listen {
            Some(addr) => {
                // Handed over on --upgrade like the public listeners.
                let listener = tcp_listener(&addr, claim(SocketKind::Tcp, &addr), &config)
                    .await
                    .with_context(|| format!("cannot listen on admin {addr}"))?;
                let local = listener.local_addr()?;
                shared.push((SocketKind::Tcp, local, listener.as_raw_fd()));
                let admin = admin::Admin {
                    readiness: readiness.clone(),
                    token: config.admin_token.as_ref().map(|t| t.resolve()).transpose()?,
                    metrics_without_token: config.metrics_without_token,
                    handler: Arc::clone(&handler),
                    reloader: Arc::clone(&reloader),
                    quic: quic.clone(),
                    tcp: Arc::clone(&tcp),
                    started: std::time::Instant::now(),
                    started_unix: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    fills_limit: config.handler.max_concurrent_fills,
                    purges: purge_log::PurgeLog::default(),
                };
                if admin.token.is_none() {
                    tracing::warn!(
                        "no admin token (--admin-token-file or HOLDFAST_ADMIN_TOKEN): only /live and /ready answer"
                    );
                }
                tracing::info!(admin = %local, "admin endpoints");
                listeners.spawn(admin::serve(listener, Arc::new(admin), shutdown_rx.clone()));
                Some(local)
            }
            None => None,
        };

        let raw_fds = shared;
        let handed_over = Arc::new(Notify::new());
        let control_socket = match local_addrs.first() {
            Some(first) if config.control_socket.is_some() || first.port() != 0 => {
                let path = config.control_socket_path(*first);
                let notify = Arc::clone(&handed_over);
                // The fds stay valid while serve_tcp owns the listeners, which
                // is until this node drains, after the handover.
                control::serve(path.clone(), raw_fds, move || notify.notify_one())?;
                Some(path)
            }
            _ => None,
        };
        if let Some(takeover) = takeover {
            takeover.confirm()?;
        }
        Ok(RunningNode {
            local_addrs,
            admin_addr,
            handler,
            reloader,
            readiness,
            shutdown_delay: config.shutdown_delay,
            shutdown,
            listeners,
            handed_over,
            control_socket,
            certificates,
            tls_addrs,
            h3_addrs,
            quic,
            tcp,
            _udp_sockets: udp_sockets,
        })
    }

    /// The request handler (and through it the store), for tests and stats.
    pub fn handler(&self) -> &Arc<Handler> {
        &self.handler
    }

    /// Each site's origin group: counters and health.
    pub fn origins(&self) -> Vec<(String, Client)> {
        self.reloader.origins()
    }

    /// Config reload: see [`reload::Reloader`].
    pub fn reloader(&self) -> &Arc<reload::Reloader> {
        &self.reloader
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Re-reads the TLS certificate files (SIGHUP). Open connections keep
    /// theirs; on error the old certificates stay and the error is returned.
    pub fn reload_certificates(&self) -> anyhow::Result<()> {
        match &self.certificates {
            Some(resolver) => Ok(resolver.reload()?),
            None => Ok(()),
        }
    }

    /// Re-reads the config file and certificates (SIGHUP, `POST /reload`).
    pub fn reload(&self) -> anyhow::Result<String> {
        self.reloader.reload()
    }

    /// Resolves when a new process has taken over this node's listeners.
    pub async fn handed_over(&self) {
        self.handed_over.notified().await
    }

    /// Drains and stops: readiness turns false, then after the shutdown
    /// delay the listeners stop accepting; in-flight requests finish (up to
    /// the drain timeout; HTTP/2 clients get GOAWAY).
    pub async fn shutdown(self) {
        self.readiness.set_draining();
        tokio::time::sleep(self.shutdown_delay).await;
        self.stop().await
    }

    /// Like [`RunningNode::shutdown`] without the delay: a new process
    /// already accepts on the same sockets. Readiness stays true: the
    /// admin socket is shared with the new process, so a probe this node
    /// still accepts asks about the same pod, which keeps serving.
    pub async fn hand_over(self) {
        self.stop().await
    }

    async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.listeners.join_next().await.is_some() {}
        // The last responses' disk writes: the next process (a restart, or
        // the new one of an upgrade) finds them on disk.
        let left = self.handler.tiers().settle_disk_writes(DISK_SETTLE).await;
        if left > 0 {
            tracing::warn!(left, "stopping with disk writes still queued; those objects are in memory only");
        }
        self.remove_control_socket();
    }

    /// Removes the control socket unless a new node took it over (after a
    /// handover the path is the new node's).
    fn remove_control_socket(&mut self) {
        if let Some(path) = self.control_socket.take()
            && control::running_pid(&path).is_none_or(|pid| pid == std::process::id())
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A node dropped without [`RunningNode::shutdown`] (tests, an error on the
/// way out) leaves no socket file behind either.
impl Drop for RunningNode {
    fn drop(&mut self) {
        self.remove_control_socket();
    }
}

/// How long a stopping node waits for its queued disk writes (at most 64,
/// each a few milliseconds even with fsync).
const DISK_SETTLE: Duration = Duration::from_secs(5);

/// Beyond its drain and disk settling, how long an upgrade's old process
/// may take to exit before the new one scans the disk tier anyway.
const OLD_PROCESS_SLACK: Duration = Duration::from_secs(5);

/// File descriptors kept for everything but client connections: origin
/// connections, disk reads, the admin listener, logs.
const RESERVED_FDS: u64 = 1024;

/// The connection limits, lowered if the process may not open that many
/// files. The soft file limit is raised to the hard one first (as Go and
/// nginx's worker_rlimit_nofile do), so the default limits fit where the
/// system allows them.
fn fd_bounded(limits: ConnectionLimits) -> ConnectionLimits {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return limits };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX).max(16);
    if limits.max > room {
        tracing::warn!(
            configured = limits.max,
            allowed = room,
            "server.max_connections is above what the file limit allows; using the lower value"
        );
        return ConnectionLimits { max: room, ..limits };
    }
    limits
}

/// A TCP listener: the one handed over by the old node, or a new one.
async fn tcp_listener(
    addr: &SocketAddr,
    inherited: Option<OwnedFd>,
    config: &NodeConfig,
) -> anyhow::Result<TcpListener> {
    match inherited {
        Some(fd) => {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(TcpListener::from_std(listener)?)
        }
        None => bind(addr, config).await,
    }
}

/// Binds a listener; when the address is taken by another holdfast node,
/// says which one and how to replace it.
async fn bind(addr: &SocketAddr, config: &NodeConfig) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            let path = config.control_socket_path(*addr);
            let running = tokio::task::spawn_blocking({
                let path = path.clone();
                move || control::running_pid(&path)
            })
            .await
            .ok()
            .flatten();
            match running {
                Some(pid) => anyhow::bail!(
                    "cannot listen on {addr}: a holdfast node (pid {pid}, control socket {}) is serving it; \
                     to replace it without downtime, run the same command with `serve --upgrade`",
                    path.display()
                ),
                None => anyhow::bail!("cannot listen on {addr}: the address is in use by another process"),
            }
        }
        Err(error) => Err(error).with_context(|| format!("cannot listen on {addr}")),
    }
}
