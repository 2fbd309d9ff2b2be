//! HTTP/3 over QUIC (quinn + h3), through the same request handler as
//! HTTP/1.1 and HTTP/2: the caching logic exists once.
//!
//! Resources are bounded: open connections (in all and per client),
//! handshakes (a slow one is dropped after `handshake_timeout`; under a
//! flood of handshakes clients must prove their address with a QUIC Retry),
//! request streams per connection, and the time a stream may take to send
//! its header section. Every task ends with its connection or request:
//! requests are driven inside their connection's task and freed as they
//! finish, so a long-lived connection does not accumulate memory.
//!
//! 0-RTT is accepted. Each request knows whether it arrived as early data
//! (its stream was opened before the handshake completed); an early request
//! other than GET or HEAD gets 425 Too Early (RFC 8470), since early data
//! can be replayed.
//!
//! h3 adds neither `date` nor `content-length` to responses, so this module
//! does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

mod early;
mod request;

use early::{EarlyStreams, TrackedConnection};
use request::request;

use crate::connections::{ConnectionLimiter, ConnectionLimits};
use crate::fill::ClientAddress;
use crate::handler::Handler;
use crate::server::stopped;
use crate::tls::{CertResolver, TlsError, quic_server_config};

/// When clients must prove their address with a QUIC Retry before the
/// node spends a handshake on them (RFC 9000 §8.1). A Retry costs an honest
/// client one round trip; it stops spoofed Initial floods from reaching the
/// handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressValidation {
    /// Only while more than this many handshakes are in progress.
    Auto {
        above_handshakes: usize,
    },
    Always,
    Never,
}

/// QUIC and HTTP/3 limits, set explicitly rather than left to defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H3Config {
    /// Largest request header section accepted (HTTP/3 SETTINGS).
    pub max_field_section_size: u64,
    /// Concurrent request streams per connection.
    pub max_concurrent_streams: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Flow-control windows: per stream, and per connection.
    pub stream_receive_window: u32,
    pub receive_window: u32,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Longest a QUIC handshake may take; the connection is dropped after.
    pub handshake_timeout: Duration,
    /// Time a client has, once it opened a request stream, to send the
    /// request's header section.
    pub header_read_timeout: Duration,
    /// A response write that makes no progress for this long (the client
    /// gives no flow-control credit) cancels the stream.
    pub send_timeout: Duration,
    /// Open QUIC connections, in all and per client address.
    pub limits: ConnectionLimits,
    pub address_validation: AddressValidation,
    /// Kernel buffer of the UDP socket, each way, in bytes; 0 keeps the
    /// system's default (see [`size_socket_buffers`]).
    pub socket_buffer: usize,
}

/// Open QUIC connections by default. An open connection costs about
/// 64 KiB (quinn and rustls state; measured with benches/h3-memory.sh),
/// so the default bounds them to about 64 MiB. Clients refused here fall
/// back to HTTP/2 over TCP, which browsers do by themselves.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Handshakes in progress above which clients must answer a Retry.
pub const DEFAULT_RETRY_ABOVE_HANDSHAKES: usize = 64;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The UDP socket's kernel buffers: about 1,800 full datagrams each way.
pub const DEFAULT_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

impl Default for H3Config {
    fn default() -> Self {
        H3Config {
            max_field_section_size: crate::handler::DEFAULT_MAX_HEADER_BYTES as u64,
            max_concurrent_streams: crate::server::DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            idle_timeout: Duration::from_secs(30),
            stream_receive_window: 1024 * 1024,
            receive_window: 8 * 1024 * 1024,
            drain_timeout: crate::server::DEFAULT_DRAIN_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_read_timeout: crate::server::DEFAULT_HEADER_READ_TIMEOUT,
            send_timeout: crate::server::DEFAULT_SEND_TIMEOUT,
            limits: ConnectionLimits { max: DEFAULT_MAX_CONNECTIONS, max_per_client: 0 },
            address_validation: AddressValidation::Auto { above_handshakes: DEFAULT_RETRY_ABOVE_HANDSHAKES },
            socket_buffer: DEFAULT_SOCKET_BUFFER,
        }
    }
}

/// Counters of every HTTP/3 endpoint of a node, for `/metrics`.
#[derive(Debug)]
pub struct QuicStats {
    /// Open connections (handshaking or established), and refusals.
    pub connections: Arc<ConnectionLimiter>,
    handshakes: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicU64,
    handshake_timeouts: AtomicU64,
    handshake_failures: AtomicU64,
    header_timeouts: AtomicU64,
    send_timeouts: AtomicU64,
}

/// A snapshot of [`QuicStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicCounts {
    pub handshakes_in_progress: usize,
    pub requests_in_flight: usize,
    pub retries: u64,
    pub handshake_timeouts: u64,
    pub handshake_failures: u64,
    pub header_timeouts: u64,
    pub send_timeouts: u64,
}

impl QuicStats {
    pub fn new(limits: ConnectionLimits) -> Arc<QuicStats> {
        Arc::new(QuicStats {
            connections: ConnectionLimiter::new(limits),
            handshakes: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            handshake_timeouts: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            send_timeouts: AtomicU64::new(0),
        })
    }

    pub fn counts(&self) -> QuicCounts {
        QuicCounts {
            handshakes_in_progress: self.handshakes.load(Ordering::Relaxed),
            requests_in_flight: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            header_timeouts: self.header_timeouts.load(Ordering::Relaxed),
            send_timeouts: self.send_timeouts.load(Ordering::Relaxed),
        }
    }
}

/// Decrements a gauge when dropped.
struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    fn up(counter: &'a AtomicUsize) -> Gauge<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Gauge(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// H3_EXCESSIVE_LOAD (RFC 9114 §8.1): how a connection that took too long
/// to set up is closed.
const H3_EXCESSIVE_LOAD: quinn::VarInt = quinn::VarInt::from_u32(0x107);

/// Errors setting up a QUIC endpoint.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("QUIC: {0}")]
    Quic(String),
    #[error("cannot serve HTTP/3 on {addr:?} (UDP): {source}")]
    Socket { addr: Option<SocketAddr>, source: std::io::Error },
}

/// A QUIC endpoint for HTTP/3 on a bound UDP socket (bound here, or handed
/// over by the node this one replaces).
pub fn endpoint(
    socket: std::net::UdpSocket,
    resolver: Arc<CertResolver>,
    config: &H3Config,
) -> Result<quinn::Endpoint, H3Error> {
    let crypto = quic_server_config(resolver)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(|e| H3Error::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(config.max_concurrent_streams))
        // HTTP/3 needs a control stream and two QPACK streams each way.
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(8))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|e| H3Error::Quic(e.to_string()))?,
        ))
        .stream_receive_window(quinn::VarInt::from_u32(config.stream_receive_window))
        .receive_window(quinn::VarInt::from_u32(config.receive_window))
        .send_window(u64::from(config.receive_window));
    server.transport_config(Arc::new(transport));
    // Connection attempts waiting for a decision: a few per allowed
    // connection, with a bound on the datagrams they may buffer.
    server.max_incoming(config.limits.max.clamp(64, 1 << 16));
    server.incoming_buffer_size_total(16 * 1024 * 1024);
    let addr = socket.local_addr().ok();
    size_socket_buffers(&socket, config.socket_buffer);
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, runtime)
        .map_err(|source| H3Error::Socket { addr, source })
}

/// Sizes the UDP socket's kernel buffers. Every QUIC connection shares
/// the one socket, and the system's default (about 208 KiB on Linux, under
/// a hundred datagrams) overflows while a busy node is between reads: each
/// datagram dropped there costs its connection a loss-detection delay and
/// a retransmission. The kernel caps what it grants at net.core.rmem_max
/// and wmem_max; less than asked is logged, with the setting to raise.
fn size_socket_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let socket = socket2::SockRef::from(socket);
    if let Err(error) = socket.set_recv_buffer_size(bytes) {
        tracing::warn!(%error, bytes, "cannot size the HTTP/3 socket's receive buffer (tls.h3_socket_buffer)");
    }
    if let Err(error) = socket.set_send_buffer_size(bytes) {
        tracing::warn!(%error, bytes, "cannot size the HTTP/3 socket's send buffer (tls.h3_socket_buffer)");
    }
    // Linux reports twice the size it was asked for (the rest covers its
    // bookkeeping), and at most twice the cap.
    let reported_per_byte = if cfg!(target_os = "linux") { 2 } else { 1 };
    let granted = |size: std::io::Result<usize>| size.map(|reported| reported / reported_per_byte).unwrap_or(0);
    let (receive, send) = (granted(socket.recv_buffer_size()), granted(socket.send_buffer_size()));
    if receive < bytes || send < bytes {
        tracing::warn!(
            asked = bytes,
            receive,
            send,
            "the kernel granted the HTTP/3 socket smaller buffers than tls.h3_socket_buffer: raise the \
             sysctls net.core.rmem_max and net.core.wmem_max, or lower the setting"
        );
    } else {
        tracing::debug!(bytes, "HTTP/3 socket buffers sized");
    }
}

/// Serves HTTP/3 on `endpoint` until shutdown; then sends GOAWAY on every
/// connection and lets in-flight requests finish within the drain timeout.
/// `certificates`, when given, hold each connection's requests to the hosts
/// its certificate may serve (see [`crate::tls::CertificateNames`]).
pub async fn serve_h3(
    endpoint: quinn::Endpoint,
    handler: Arc<Handler>,
    certificates: Option<Arc<CertResolver>>,
    config: H3Config,
    stats: Arc<QuicStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if let Some(admitted) = admit(incoming, &config, &stats) {
                    let (handler, config, stats, shutdown) =
                        (Arc::clone(&handler), Arc::clone(&config), Arc::clone(&stats), shutdown.clone());
                    let certificates = certificates.clone();
                    connections.spawn(connection(admitted, handler, certificates, config, stats, shutdown));
                }
            }
            // Reap finished connections as they end, not at shutdown.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopped(&mut shutdown) => break,
        }
    }
    tracing::info!(listener = ?endpoint.local_addr().ok(), "draining HTTP/3 connections");
    endpoint.set_server_config(None);
    let drained =
        tokio::time::timeout(config.drain_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("HTTP/3 drain timeout reached");
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// An incoming connection the node decided to serve, with its place.
type Admitted = (quinn::Incoming, crate::connections::ConnectionPermit);

/// Decides about a connection attempt: ask for address validation (Retry)
/// under a handshake flood, refuse it over the limits, or admit it.
fn admit(incoming: quinn::Incoming, config: &H3Config, stats: &QuicStats) -> Option<Admitted> {
    let validate = match config.address_validation {
        AddressValidation::Always => true,
        AddressValidation::Never => false,
        AddressValidation::Auto { above_handshakes } => stats.handshakes.load(Ordering::Relaxed) >= above_handshakes,
    };
    let incoming = if validate && !incoming.remote_address_validated() && incoming.may_retry() {
        match incoming.retry() {
            Ok(()) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(error) => error.into_incoming(),
        }
    } else {
        incoming
    };
    match stats.connections.admit(incoming.remote_address().ip()) {
        Ok(permit) => Some((incoming, permit)),
        Err(refusal) => {
            tracing::debug!(peer = %incoming.remote_address(), reason = refusal.as_str(), "QUIC connection refused");
            incoming.refuse();
            None
        }
    }
}

/// Runs one connection: the handshake (bounded), then its requests, each
/// driven here and dropped as soon as it is done.
async fn connection(
    (incoming, _permit): Admitted,
    handler: Arc<Handler>,
    certificates: Option<Arc<CertResolver>>,
    config: Arc<H3Config>,
    stats: Arc<QuicStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = incoming.remote_address();
    let deadline = Instant::now() + config.handshake_timeout;
    let mut handshaking = Some(Gauge::up(&stats.handshakes));
    let Some((connection, accepted)) = handshake(incoming, deadline, &stats).await else { return };
    let sni = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.server_name);
    let names = certificates.and_then(|c| c.names_for(sni.as_deref()));
    let client = handler.wants_client_address().then(|| ClientAddress(peer.ip()));
    let early = Arc::new(EarlyStreams::default());
    if accepted.is_none() {
        early.confirm();
        handshaking = None;
    }
    let tracked =
        TrackedConnection { inner: h3_quinn::Connection::new(connection.clone()), accepted, early: Arc::clone(&early) };
    let built = tokio::time::timeout_at(
        deadline.max(Instant::now() + Duration::from_secs(1)),
        h3::server::builder().max_field_section_size(config.max_field_section_size).build::<_, Bytes>(tracked),
    )
    .await;
    let mut h3 = match built {
        Ok(Ok(h3)) => h3,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "HTTP/3 connection setup failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/3 connection setup timed out");
            stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            connection.close(H3_EXCESSIVE_LOAD, b"setup timeout");
            return;
        }
    };
    let mut requests = FuturesUnordered::new();
    let mut going_away = false;
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    requests.push(request(resolver, &handler, &early, names.clone(), client, &config, &stats));
                }
                Ok(None) => break,
                Err(error) => {
                    if !error.is_h3_no_error() {
                        tracing::debug!(%peer, %error, "HTTP/3 connection ended");
                    }
                    break;
                }
            },
            Some(()) = requests.next(), if !requests.is_empty() => {
                if going_away && requests.is_empty() {
                    break;
                }
            }
            () = stopped(&mut shutdown), if !going_away => {
                going_away = true;
                // GOAWAY: no new requests; the ones in flight finish, then
                // the connection closes (a client that keeps an idle
                // connection open would otherwise hold the drain).
                let _ = h3.shutdown(0).await;
                if requests.is_empty() {
                    break;
                }
            }
            () = early.wait_confirmed(), if handshaking.is_some() => handshaking = None,
            () = tokio::time::sleep_until(deadline), if handshaking.is_some() => {
                tracing::debug!(%peer, "QUIC handshake timed out");
                stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                connection.close(H3_EXCESSIVE_LOAD, b"handshake timeout");
                break;
            }
        }
    }
    drop(handshaking);
    while requests.next().await.is_some() {}
    // Packet and frame counts, for tuning (HOLDFAST_LOG=holdfast_frontend::h3=trace).
    tracing::trace!(%peer, stats = ?connection.stats(), "HTTP/3 connection done");
}

/// The QUIC handshake, as far as 0.5-RTT: returns the connection once the
/// client's first flight is processed, and the future that resolves when
/// the handshake completes (`None` if it already has).
///
/// Waiting for the handshake data first works around quinn-proto 0.11
/// (still in its main branch in 2026-07): when the ClientHello spans more
/// than one Initial packet (Chromium's post-quantum key share makes it
/// about 1.8 KB), a connection taken with `into_0rtt()` before the second
/// packet arrives does not know the client's stream limits yet, and quinn
/// never wakes a stream opener when they arrive (`StreamsState::set_params`
/// raises the limits without a `StreamEvent::Available`). h3's setup then
/// waits forever to open its control stream: Chromium's page loads hung on
/// about half of all fresh connections.
async fn handshake(
    incoming: quinn::Incoming,
    deadline: Instant,
    stats: &QuicStats,
) -> Option<(quinn::Connection, Option<quinn::ZeroRttAccepted>)> {
    let peer = incoming.remote_address();
    let mut connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            tracing::debug!(%peer, %error, "QUIC connection failed");
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let outcome = tokio::time::timeout_at(deadline, async {
        connecting.handshake_data().await?;
        match connecting.into_0rtt() {
            Ok((connection, accepted)) => Ok((connection, Some(accepted))),
            // Servers always get 0.5-RTT; should that change, wait it out.
            Err(connecting) => connecting.await.map(|connection| (connection, None)),
        }
    })
    .await;
    match outcome {
        Ok(Ok(pair)) => Some(pair),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "QUIC handshake failed");
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "QUIC handshake timed out");
            stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
