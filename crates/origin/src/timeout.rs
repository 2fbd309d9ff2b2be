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
///
/// The clock runs only while the body is being waited for: it starts at
/// the first poll after a frame, so a fill that pauses for a slow reader
/// does not count the pause against the origin.
pub(crate) struct IdleTimeoutBody<B> {
    inner: Pin<Box<B>>,
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
    /// True between a frame and the next poll: the clock is not running.
    paused: bool,
}

impl<B> IdleTimeoutBody<B> {
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        IdleTimeoutBody { inner: Box::pin(inner), sleep: Box::pin(tokio::time::sleep(idle)), idle, paused: false }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Error = OriginErrorKind>,
{
    type Data = B::Data;
    type Error = OriginErrorKind;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        if self.paused {
            self.paused = false;
            let deadline = Instant::now() + self.idle;
            self.sleep.as_mut().reset(deadline);
        }
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                self.paused = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    /// A body that has one frame ready, then never another.
    struct OneFrame(Option<Bytes>);

    impl Body for OneFrame {
        type Data = Bytes;
        type Error = OriginErrorKind;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_of_the_reader_is_not_an_idle_origin() {
        let idle = Duration::from_secs(30);
        let mut body = IdleTimeoutBody::new(OneFrame(Some(Bytes::from_static(b"a"))), idle);
        assert!(body.frame().await.unwrap().is_ok());
        // The fill waits 10 minutes for a slow reader before reading on.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let started = Instant::now();
        let next = body.frame().await.unwrap();
        assert!(matches!(next, Err(OriginErrorKind::BodyTimeout(_))));
        assert_eq!(started.elapsed(), idle, "the origin gets its whole idle time from the moment it is asked");
    }
}
