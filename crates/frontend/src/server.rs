//! TCP listeners: HTTP/1.1 and HTTP/2 on one socket, plaintext (h2c with
//! prior knowledge) or TLS (ALPN h2, http/1.1), through hyper-util's auto
//! builder, always with hyper's timer set (without a timer hyper's
//! documented 30 s header-read timeout is silently off, a slowloris
//! exposure; with a timeout but no timer the connection task panics).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderValue;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::coalesce::{CoalescedWrites, Polled, TaskRuns};
use crate::connections::{ConnectionLimiter, ConnectionLimits, ConnectionPermit};
use crate::fill::ClientAddress;
use crate::handler::Handler;
use crate::stall::SendTimeout;
use crate::stream_stall::{StreamProgress, Watched};
use crate::tls::{CertResolver, CertificateNames};

/// Connection-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time a client has to send a complete request head (slowloris defence),
    /// and to finish a TLS handshake.
    pub header_read_timeout: Duration,
    /// HTTP/1.1 read buffer, which bounds the request head (431 beyond).
    pub max_header_bytes: usize,
    /// Most HTTP/1.1 header fields (431 beyond).
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_size: u32,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// A write to a client that makes no progress for this long closes the
    /// connection (the client stopped reading).
    pub send_timeout: Duration,
}

/// As nginx's and Varnish's idle send timeouts.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Open client connections over all TCP listeners. A connection costs a
/// file descriptor and about 20 KiB (40 KiB with TLS) while idle.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Counters of the TCP listeners of a node (node-wide limits).
#[derive(Debug)]
pub struct TcpStats {
    /// Open connections and refusals, against `server.max_connections`.
    pub connections: Arc<ConnectionLimiter>,
    send_timeouts: Arc<std::sync::atomic::AtomicU64>,
}

impl TcpStats {
    pub fn new(limits: ConnectionLimits) -> Arc<TcpStats> {
        Arc::new(TcpStats { connections: ConnectionLimiter::new(limits), send_timeouts: Arc::default() })
    }

    /// Connections closed because the client stopped reading.
    pub fn send_timeouts(&self) -> u64 {
        self.send_timeouts.load(Ordering::Relaxed)
    }
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 128;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(25);
/// Streams a client may reset before the server has answered them, per
/// connection, before it is told to go away (HTTP/2 rapid reset, S09).
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset because of client errors, per connection.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: crate::handler::DEFAULT_MAX_HEADER_BYTES,
            max_headers: crate::handler::DEFAULT_MAX_HEADERS,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            h2_max_header_list_size: crate::handler::DEFAULT_MAX_HEADER_BYTES as u32,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        }
    }
}

/// A TLS listener's extras: the acceptor and, when HTTP/3 is served on the
/// same port, the Alt-Svc header that advertises it.
#[derive(Clone)]
pub struct TlsListener {
    pub acceptor: TlsAcceptor,
    pub alt_svc: Option<HeaderValue>,
    /// The certificates the acceptor chooses from, to hold each
    /// connection's requests to its certificate's hosts (`None`: no check).
    pub certificates: Option<Arc<CertResolver>>,
}

/// The number of request header fields hyper's HTTP/1 parser takes by default.
const HYPER_MAX_HEADERS: usize = 100;

fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper's floor for the read buffer is 8 KiB.
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    // hyper parses into a fixed array of 100 fields unless told a maximum;
    // told one, it fills a fresh list of that many slots for every request
    // (5% of a cached hit's instructions). So it is told only a higher
    // maximum; a lower one is the handler's 431.
    if config.max_headers > HYPER_MAX_HEADERS {
        builder.http1().max_headers(config.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_header_list_size(config.h2_max_header_list_size)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Serves plaintext HTTP/1.1 and h2c on `listener` until `shutdown` turns
/// true, then lets open connections finish within the drain timeout.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    config: ServerConfig,
    stats: Arc<TcpStats>,
    shutdown: watch::Receiver<bool>,
) {
    serve(listener, handler, config, stats, shutdown, None).await
}

/// Serves HTTP/1.1 and HTTP/2 over TLS (ALPN) on `listener`.
pub async fn serve_tls(
    listener: TcpListener,
    handler: Arc<Handler>,
    config: ServerConfig,
    stats: Arc<TcpStats>,
    shutdown: watch::Receiver<bool>,
    tls: TlsListener,
) {
    serve(listener, handler, config, stats, shutdown, Some(tls)).await
}

/// Connections accepted whose first request has not arrived yet. A drain
/// waits for them before telling connections to close: hyper closes an
/// HTTP/1.1 connection that is idle when told, and a just-accepted one is
/// idle though its client may already have sent a request.
#[derive(Default)]
struct Unanswered {
    count: AtomicUsize,
    changed: Notify,
}

/// Counts one accepted connection until its first request (or its end).
struct FirstRequest {
    unanswered: Arc<Unanswered>,
    seen: AtomicBool,
}

impl FirstRequest {
    fn new(unanswered: &Arc<Unanswered>) -> Arc<FirstRequest> {
        unanswered.count.fetch_add(1, Ordering::SeqCst);
        Arc::new(FirstRequest { unanswered: Arc::clone(unanswered), seen: AtomicBool::new(false) })
    }

    fn arrived(&self) {
        if !self.seen.swap(true, Ordering::SeqCst) {
            self.unanswered.count.fetch_sub(1, Ordering::SeqCst);
            self.unanswered.changed.notify_waiters();
        }
    }
}

impl Drop for FirstRequest {
    fn drop(&mut self) {
        self.arrived();
    }
}

/// Longest a drain waits for accepted connections to send their first request.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    config: ServerConfig,
    stats: Arc<TcpStats>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<TlsListener>,
) {
    let builder = Arc::new(builder(&config));
    let graceful = GracefulShutdown::new();
    let unanswered = Arc::new(Unanswered::default());
    let local = listener.local_addr().ok();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = match stats.connections.admit(peer.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        // Over the limit: close at once, before any TLS or HTTP work.
                        tracing::debug!(%peer, reason = refusal.as_str(), "connection refused");
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let stream = SendTimeout::new(stream, config.send_timeout, Arc::clone(&stats.send_timeouts));
                let (handler, builder, watcher) = (Arc::clone(&handler), Arc::clone(&builder), graceful.watcher());
                let first = FirstRequest::new(&unanswered);
                let stalls = Stalls { timeout: config.send_timeout, count: Arc::clone(&stats.send_timeouts) };
                match tls.clone() {
                    None => {
                        let listener = Listener { scheme: "http", alt_svc: None, names: None };
                        let connection = serve_connection(stream, handler, builder, watcher, listener, peer, first, permit, stalls);
                        tokio::spawn(connection);
                    }
                    Some(tls) => {
                        let handshake_timeout = config.header_read_timeout;
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(handshake_timeout, tls.acceptor.accept(stream)).await;
                            match handshake {
                                Ok(Ok(stream)) => {
                                    let sni = stream.get_ref().1.server_name();
                                    let names = tls.certificates.as_ref().and_then(|c| c.names_for(sni));
                                    let listener = Listener { scheme: "https", alt_svc: tls.alt_svc, names };
                                    serve_connection(stream, handler, builder, watcher, listener, peer, first, permit, stalls).await
                                }
                                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!(listener = ?local, "draining connections");
    let grace = config.header_read_timeout.min(FIRST_REQUEST_GRACE);
    let _ = tokio::time::timeout(grace, async {
        loop {
            let changed = unanswered.changed.notified();
            if unanswered.count.load(Ordering::SeqCst) == 0 {
                break;
            }
            changed.await;
        }
    })
    .await;
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = ?local, "drain timeout reached; closing remaining connections");
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection<S>(
    stream: S,
    handler: Arc<Handler>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    listener: Listener,
    peer: std::net::SocketAddr,
    first: Arc<FirstRequest>,
    _permit: ConnectionPermit,
    stalls: Stalls,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first_in_service = Arc::clone(&first);
    let runs = Arc::new(TaskRuns::default());
    let progress = Arc::new(StreamProgress::default());
    let progress_in_service = Arc::clone(&progress);
    let Listener { scheme, alt_svc, names } = listener;
    let client = handler.wants_client_address().then(|| ClientAddress(peer.ip()));
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        first_in_service.arrived();
        let handler = Arc::clone(&handler);
        let alt_svc = alt_svc.clone();
        if let Some(names) = &names {
            request.extensions_mut().insert(names.clone());
        }
        if let Some(client) = client {
            request.extensions_mut().insert(client);
        }
        // HTTP/1.1 stalls show on the socket (SendTimeout); HTTP/2 streams
        // wait for flow-control credit without blocking it.
        let progress = (request.version() == http::Version::HTTP_2).then(|| Arc::clone(&progress_in_service));
        async move {
            let mut response = handler.handle(request, scheme).await;
            if let Some(alt_svc) = alt_svc {
                response.headers_mut().insert(http::header::ALT_SVC, alt_svc);
            }
            let response = response.map(|body| match &progress {
                Some(progress) => progress.watch(body),
                None => Watched::unwatched(body),
            });
            Ok::<_, Infallible>(response)
        }
    });
    let stream = CoalescedWrites::new(stream, Arc::clone(&runs));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let serving = async {
        tokio::select! {
            biased;
            served = watcher.watch(connection.into_owned()) => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            }
            // Counted before select! drops the connection (and closes its
            // socket): whoever sees the close sees the count.
            () = async {
                progress.watchdog(stalls.timeout).await;
                stalls.count.fetch_add(1, Ordering::Relaxed);
            } => {
                tracing::debug!(%peer, timeout = ?stalls.timeout, "an HTTP/2 response got no flow-control credit: connection closed");
            }
        }
    };
    Polled::new(std::pin::pin!(serving), runs).await;
    first.arrived();
}

/// What a connection's requests need to know of its listener.
struct Listener {
    /// `http` or `https`, part of the cache key.
    scheme: &'static str,
    alt_svc: Option<HeaderValue>,
    /// Over TLS with several certificates: the hosts this one serves.
    names: Option<CertificateNames>,
}

/// The send timeout, and the count of connections it closed.
struct Stalls {
    timeout: Duration,
    count: Arc<std::sync::atomic::AtomicU64>,
}

/// Resolves once shutdown is requested (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard returned by wait_for is not Send: drop it at once.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
