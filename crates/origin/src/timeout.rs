//! A body wrapper that fails when the origin stops sending.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::OriginErrorKind;

/// Fails with [`OriginErrorKind::BodyTimeout`] when no frame arrives for
/// `idle`: a stalled origin must not hold a fill (and its waiters) forever.
pub(crate) struct IdleTimeoutBody<B> {
    inner: Pin<Box<B>>,
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
}

impl<B> IdleTimeoutBody<B> {
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        IdleTimeoutBody { inner: Box::pin(inner), sleep: Box::pin(tokio::time::sleep(idle)), idle }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Error = OriginErrorKind>,
{
    type Data = B::Data;
    type Error = OriginErrorKind;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(OriginErrorKind::BodyTimeout(self.idle)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
