//! TCP listeners: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one
//! socket, through hyper-util's auto builder, always with hyper's timer set
//! (without it the header-read timeout is silently off: notes P6).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::handler::Handler;

/// Connection-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time a client has to send a complete request head (slowloris defence).
    pub header_read_timeout: Duration,
    /// HTTP/1.1 read buffer, which bounds the request head (431 beyond).
    pub max_header_bytes: usize,
    /// Most HTTP/1.1 header fields (431 beyond).
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_size: u32,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 128;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: crate::handler::DEFAULT_MAX_HEADER_BYTES,
            max_headers: crate::handler::DEFAULT_MAX_HEADERS,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            h2_max_header_list_size: crate::handler::DEFAULT_MAX_HEADER_BYTES as u32,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper's floor for the read buffer is 8 KiB.
        .max_buf_size(config.max_header_bytes.max(8192))
        .max_headers(config.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_header_list_size(config.h2_max_header_list_size)
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
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = builder(&config);
    let graceful = GracefulShutdown::new();
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
                let _ = stream.set_nodelay(true);
                let handler = Arc::clone(&handler);
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(handler.handle(request, "http").await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!(listener = ?local, "draining connections");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = ?local, "drain timeout reached; closing remaining connections");
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard returned by wait_for is not Send: drop it at once.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
