//! HTTP/3 over QUIC (quinn + h3), through the same request handler as
//! HTTP/1.1 and HTTP/2: the caching logic exists once.
//!
//! h3 adds neither `date` nor `content-length` to responses (notes P5), so
//! this module does. 0-RTT is accepted, but only for GET and HEAD: another
//! method arriving before the handshake is confirmed gets 425 Too Early
//! (RFC 8470), since early data can be replayed.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::handler::Handler;
use crate::server::stopped;
use crate::tls::{CertResolver, TlsError, quic_server_config};
use crate::upstream::BoxError;

/// QUIC and HTTP/3 limits, set explicitly rather than left to defaults.
#[derive(Debug, Clone)]
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
}

impl Default for H3Config {
    fn default() -> Self {
        H3Config {
            max_field_section_size: crate::handler::DEFAULT_MAX_HEADER_BYTES as u64,
            max_concurrent_streams: crate::server::DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            idle_timeout: Duration::from_secs(30),
            stream_receive_window: 1024 * 1024,
            receive_window: 8 * 1024 * 1024,
            drain_timeout: crate::server::DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

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
    let addr = socket.local_addr().ok();
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, runtime)
        .map_err(|source| H3Error::Socket { addr, source })
}

/// Serves HTTP/3 on `endpoint` until shutdown; then sends GOAWAY on every
/// connection and lets in-flight requests finish within the drain timeout.
pub async fn serve_h3(
    endpoint: quinn::Endpoint,
    handler: Arc<Handler>,
    config: H3Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                connections.spawn(connection(incoming, Arc::clone(&handler), config.clone(), shutdown.clone()));
            }
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

async fn connection(
    incoming: quinn::Incoming,
    handler: Arc<Handler>,
    config: H3Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(connecting) = incoming.accept() else { return };
    // The handshake is confirmed when the 0-RTT future resolves; until then
    // requests may be replayed early data.
    let confirmed = Arc::new(AtomicBool::new(false));
    let connection = match connecting.into_0rtt() {
        Ok((connection, accepted)) => {
            let flag = Arc::clone(&confirmed);
            tokio::spawn(async move {
                accepted.await;
                flag.store(true, Ordering::Release);
            });
            connection
        }
        Err(connecting) => match connecting.await {
            Ok(connection) => {
                confirmed.store(true, Ordering::Release);
                connection
            }
            Err(error) => {
                tracing::debug!(%error, "QUIC handshake failed");
                return;
            }
        },
    };
    let peer = connection.remote_address();
    let built = h3::server::builder()
        .max_field_section_size(config.max_field_section_size)
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await;
    let mut h3 = match built {
        Ok(h3) => h3,
        Err(error) => {
            tracing::debug!(%peer, %error, "HTTP/3 connection setup failed");
            return;
        }
    };
    let mut requests = JoinSet::new();
    let mut going_away = false;
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let (handler, confirmed) = (Arc::clone(&handler), Arc::clone(&confirmed));
                    requests.spawn(async move {
                        match resolver.resolve_request().await {
                            Ok((request, stream)) => respond(request, stream, handler, confirmed).await,
                            Err(error) => tracing::debug!(%error, "HTTP/3 request head rejected"),
                        }
                    });
                }
                Ok(None) => break,
                Err(error) => {
                    if !error.is_h3_no_error() {
                        tracing::debug!(%peer, %error, "HTTP/3 connection ended");
                    }
                    break;
                }
            },
            () = stopped(&mut shutdown), if !going_away => {
                going_away = true;
                // GOAWAY: no new requests; the ones in flight finish.
                let _ = h3.shutdown(0).await;
            }
        }
    }
    while requests.join_next().await.is_some() {}
}

type Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn respond(request: Request<()>, stream: Stream, handler: Arc<Handler>, confirmed: Arc<AtomicBool>) {
    let (mut send, recv) = stream.split();
    let is_head = request.method() == Method::HEAD;
    let safe = request.method() == Method::GET || is_head;
    let response = if !safe && !confirmed.load(Ordering::Acquire) {
        let mut response = Response::new(
            http_body_util::Full::new(Bytes::from_static(b"holdfast: only GET and HEAD are accepted as early data\n"))
                .map_err(|never| match never {})
                .boxed(),
        );
        *response.status_mut() = StatusCode::TOO_EARLY;
        response
    } else {
        let (parts, ()) = request.into_parts();
        let body = RecvBody(Mutex::new(recv));
        handler.handle(Request::from_parts(parts, body), "https").await
    };
    let (mut head, mut body) = response.into_parts();
    head.headers.entry(header::DATE).or_insert_with(|| {
        HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())).unwrap_or(HeaderValue::from_static(""))
    });
    if !is_head
        && !head.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(len) = body.size_hint().exact()
    {
        head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if send.send_response(Response::from_parts(head, ())).await.is_err() {
        return;
    }
    if !is_head {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data()
                        && send.send_data(data).await.is_err()
                    {
                        return;
                    }
                }
                Err(error) => {
                    // The origin body broke: abort the stream, never a short 200.
                    tracing::debug!(%error, "aborting HTTP/3 response");
                    send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                    return;
                }
            }
        }
    }
    let _ = send.finish().await;
}

/// A request body read from an HTTP/3 stream (pass-through methods).
struct RecvBody(Mutex<RequestStream<h3_quinn::RecvStream, Bytes>>);

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut stream = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match stream.poll_recv_data(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(mut buf))) => Poll::Ready(Some(Ok(Frame::data(buf.copy_to_bytes(buf.remaining()))))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(Box::new(error)))),
        }
    }
}
