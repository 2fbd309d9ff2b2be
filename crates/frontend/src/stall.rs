//! A send timeout for client connections, as nginx's and Varnish's
//! `send_timeout`: a write that cannot make progress for this long (the
//! client stopped reading) fails, and the connection is closed. Without it
//! a client that never reads holds its connection, and the body bytes
//! behind it, for as long as it likes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A stream whose writes fail after `timeout` without progress.
pub(crate) struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Running while a write waits; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Counts connections closed this way.
    timeouts: Arc<AtomicU64>,
}

impl<S> SendTimeout<S> {
    pub(crate) fn new(inner: S, timeout: Duration, timeouts: Arc<AtomicU64>) -> Self {
        SendTimeout { inner, timeout, stalled: None, timeouts }
    }

    fn progress<T>(&mut self, polled: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.timeouts.fetch_add(1, Ordering::Relaxed);
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("client read nothing for {timeout:?} (send timeout)"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_off() {
        // A pipe whose reader never reads: writes block once it is full.
        let (client, server) = tokio::io::duplex(1024);
        let timeouts = Arc::new(AtomicU64::new(0));
        let mut guarded = SendTimeout::new(server, Duration::from_secs(60), Arc::clone(&timeouts));
        let started = tokio::time::Instant::now();
        let error = guarded.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert_eq!(timeouts.load(Ordering::Relaxed), 1);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_not() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = SendTimeout::new(server, Duration::from_secs(60), Arc::new(AtomicU64::new(0)));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut total = 0;
            while total < 16 * 1024 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                total += tokio::io::AsyncReadExt::read(&mut client, &mut buf).await.unwrap();
            }
        });
        guarded.write_all(&[0u8; 16 * 1024]).await.unwrap();
        reader.await.unwrap();
    }
}
