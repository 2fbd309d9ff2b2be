//! Which request streams arrived as 0-RTT early data: h3-quinn's
//! connection wrapped so streams accepted before the handshake completed
//! are noted, and each request can be asked about.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Buf;
use h3::quic::{self, StreamId};
use tokio::sync::Notify;

/// Which request streams of a connection were opened in 0-RTT, and whether
/// the handshake has completed.
#[derive(Debug, Default)]
pub(super) struct EarlyStreams {
    confirmed: AtomicBool,
    confirmed_signal: Notify,
    streams: Mutex<Vec<StreamId>>,
}

impl EarlyStreams {
    pub(super) fn confirm(&self) {
        self.confirmed.store(true, Ordering::Release);
        self.confirmed_signal.notify_one();
    }

    /// Resolves once the handshake has completed.
    pub(super) async fn wait_confirmed(&self) {
        if !self.confirmed() {
            self.confirmed_signal.notified().await;
        }
    }

    fn confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Whether `id` was opened as early data (and forgets it).
    pub(super) fn take(&self, id: StreamId) -> bool {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        match streams.iter().position(|s| *s == id) {
            Some(i) => {
                streams.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// h3-quinn's connection, noting the request streams accepted before the
/// handshake completed: those arrived as 0-RTT data. (quinn marks such
/// streams itself, but h3-quinn does not expose the mark.)
pub(super) struct TrackedConnection {
    pub(super) inner: h3_quinn::Connection,
    /// Resolves when the handshake completes; `None` once it has.
    pub(super) accepted: Option<quinn::ZeroRttAccepted>,
    pub(super) early: Arc<EarlyStreams>,
}

impl TrackedConnection {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) {
        if let Some(accepted) = &mut self.accepted
            && Pin::new(accepted).poll(cx).is_ready()
        {
            self.accepted = None;
            self.early.confirm();
        }
    }
}

impl<B: Buf> quic::Connection<B> for TrackedConnection {
    type RecvStream = h3_quinn::RecvStream;
    type OpenStreams = h3_quinn::OpenStreams;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::RecvStream, quic::ConnectionErrorIncoming>> {
        quic::Connection::<B>::poll_accept_recv(&mut self.inner, cx)
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, quic::ConnectionErrorIncoming>> {
        // The handshake's completion is signalled before the streams that
        // follow it, so polling it first leaves no stream misclassified.
        self.poll_handshake(cx);
        let polled = quic::Connection::<B>::poll_accept_bidi(&mut self.inner, cx);
        if let Poll::Ready(Ok(stream)) = &polled {
            self.poll_handshake(cx);
            if !self.early.confirmed() {
                let id = quic::RecvStream::recv_id(stream);
                self.early.streams.lock().unwrap_or_else(|p| p.into_inner()).push(id);
            }
        }
        polled
    }

    fn opener(&self) -> Self::OpenStreams {
        quic::Connection::<B>::opener(&self.inner)
    }
}

impl<B: Buf> quic::OpenStreams<B> for TrackedConnection {
    type BidiStream = h3_quinn::BidiStream<B>;
    type SendStream = h3_quinn::SendStream<B>;

    fn poll_open_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::BidiStream, quic::StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_bidi(&mut self.inner, cx)
    }

    fn poll_open_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::SendStream, quic::StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.inner, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.inner, code, reason)
    }
}
