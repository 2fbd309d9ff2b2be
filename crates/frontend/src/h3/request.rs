//! One HTTP/3 request: its header section read within a deadline, the
//! handler's answer sent with a send timeout, and the request body for
//! pass-through methods.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::server::{RequestResolver, RequestStream};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::early::{EarlyStreams, TrackedConnection};
use super::{Gauge, H3Config, QuicStats};
use crate::fill::ClientAddress;
use crate::handler::{EarlyData, Handler};
use crate::tls::CertificateNames;
use crate::upstream::BoxError;

type Resolver = RequestResolver<TrackedConnection, Bytes>;
type Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One request: its header section (bounded in time), then the handler's
/// response.
pub(super) fn request(
    resolver: Resolver,
    handler: &Arc<Handler>,
    early: &Arc<EarlyStreams>,
    names: Option<CertificateNames>,
    client: Option<ClientAddress>,
    config: &H3Config,
    stats: &Arc<QuicStats>,
) -> impl Future<Output = ()> + use<> {
    let (handler, early, stats) = (Arc::clone(handler), Arc::clone(early), Arc::clone(stats));
    let (header_read_timeout, send_timeout) = (config.header_read_timeout, config.send_timeout);
    async move {
        let _in_flight = Gauge::up(&stats.requests);
        let (request, stream) = match tokio::time::timeout(header_read_timeout, resolver.resolve_request()).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => {
                tracing::debug!(%error, "HTTP/3 request head rejected");
                return;
            }
            Err(_) => {
                stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let early_data = early.take(stream.id());
        let (mut parts, ()) = request.into_parts();
        if early_data {
            parts.extensions.insert(EarlyData);
        }
        if let Some(names) = names {
            parts.extensions.insert(names);
        }
        if let Some(client) = client {
            parts.extensions.insert(client);
        }
        respond(parts, stream, &handler, send_timeout, &stats).await;
    }
}

async fn respond(
    parts: http::request::Parts,
    stream: Stream,
    handler: &Handler,
    send_timeout: Duration,
    stats: &QuicStats,
) {
    let (mut send, recv) = stream.split();
    let is_head = parts.method == Method::HEAD;
    let recv = Arc::new(Mutex::new(recv));
    let response = handler.handle(Request::from_parts(parts, RecvBody(Arc::clone(&recv))), "https").await;
    if let Ok(recv) = Arc::try_unwrap(recv) {
        read_to_end_if_done(recv.into_inner().unwrap_or_else(|p| p.into_inner()));
    }
    let (mut head, mut body) = response.into_parts();
    head.headers.entry(header::DATE).or_insert_with(crate::date::now);
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
                    let Ok(data) = frame.into_data() else { continue };
                    match tokio::time::timeout(send_timeout, send.send_data(data)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            // The client gives no flow-control credit: let go.
                            stats.send_timeouts.fetch_add(1, Ordering::Relaxed);
                            send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                            return;
                        }
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

type RecvStream = RequestStream<h3_quinn::RecvStream, Bytes>;

/// Reads the end of a request stream the handler left unread, if it has
/// already arrived. A request stream dropped before its end was read makes
/// quinn send STOP_SENDING, even when the client's FIN came with the
/// header section, as it does for every GET: one more frame per request
/// for the client to handle and for this node to track until it is
/// acknowledged. A stream that still has body bytes or no FIN yet is left
/// to be stopped, as it should be.
fn read_to_end_if_done(mut recv: RecvStream) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let _ = recv.poll_recv_data(&mut cx);
}

/// A request body read from an HTTP/3 stream (pass-through methods).
struct RecvBody(Arc<Mutex<RecvStream>>);

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
