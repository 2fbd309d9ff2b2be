//! The send timeout for HTTP/2 streams. A client that gives a stream no
//! flow-control credit (window 0: CVE-2016-1546, what Varnish's
//! `h2_window_timeout` bounds) blocks no socket write, so [`SendTimeout`]
//! never fires: while it answers PINGs it holds its streams, and the
//! objects and fills behind them, for as long as it likes. hyper polls a
//! response body only when its stream has credit and cannot reset one
//! stream from outside, so each connection notes since when every response
//! it sends has had a frame ready that hyper did not ask for, and is closed
//! once one has waited longer than the send timeout, as an HTTP/1.1
//! connection whose write stalls is. A body waiting for the origin is not
//! the client's fault and is not counted (the origin's idle timeout bounds
//! it).
//!
//! [`SendTimeout`]: crate::stall::SendTimeout

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::handler::ResponseBody;
use crate::upstream::BoxError;

/// When each unfinished response of one connection last made progress.
#[derive(Default)]
pub(crate) struct StreamProgress {
    waiting: Mutex<Waiting>,
    /// Set by the first watched response: until then the watchdog costs
    /// its connection one load per wake-up (HTTP/1.1 never sets it).
    armed: AtomicBool,
}

/// Per response, in a slot its body keeps: since when it has waited for
/// hyper to ask for its next frame (`Some(None)` while it waits for its own
/// source instead; `None`: a free slot). A slab, not a map: every response
/// and every frame updates it.
#[derive(Default)]
struct Waiting {
    slots: Vec<Option<Option<Instant>>>,
    free: Vec<usize>,
}

impl Waiting {
    fn oldest(&self) -> Option<Instant> {
        self.slots.iter().flatten().flatten().min().copied()
    }
}

impl StreamProgress {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Watches `body` until it ends or is dropped.
    pub(crate) fn watch(self: &Arc<Self>, body: ResponseBody) -> Watched {
        let since = Some(Some(Instant::now()));
        let mut waiting = self.waiting();
        let slot = match waiting.free.pop() {
            Some(slot) => {
                waiting.slots[slot] = since;
                slot
            }
            None => {
                waiting.slots.push(since);
                waiting.slots.len() - 1
            }
        };
        drop(waiting);
        self.armed.store(true, Ordering::Relaxed);
        Watched { body, watch: Some((Arc::clone(self), slot)) }
    }

    /// A future that resolves once a response has waited longer than
    /// `timeout` to hand out its next frame. It checks a few times per
    /// timeout, so it fires at most a quarter of it late. Until a response
    /// is watched it sets no timer: the connection task polls it on every
    /// wake-up, and it is armed on the first one after a response is watched
    /// (the response's head is written by that task, so one comes).
    pub(crate) fn watchdog(self: &Arc<Self>, timeout: Duration) -> Watchdog {
        let period = (timeout / 4).max(Duration::from_millis(50));
        Watchdog { progress: Arc::clone(self), timeout, period, check: None }
    }
}

/// See [`StreamProgress::watchdog`].
pub(crate) struct Watchdog {
    progress: Arc<StreamProgress>,
    timeout: Duration,
    period: Duration,
    check: Option<Pin<Box<Sleep>>>,
}

impl Future for Watchdog {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.progress.armed.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let period = self.period;
        loop {
            let check = self.check.get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
            if check.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            check.as_mut().reset(Instant::now() + period);
            let oldest = self.progress.waiting().oldest();
            if oldest.is_some_and(|since| since.elapsed() >= self.timeout) {
                return Poll::Ready(());
            }
        }
    }
}

/// A response body whose progress its connection watches.
pub(crate) struct Watched {
    body: ResponseBody,
    watch: Option<(Arc<StreamProgress>, usize)>,
}

impl Watched {
    /// A body nobody watches (HTTP/1.1: its socket has the send timeout).
    pub(crate) fn unwatched(body: ResponseBody) -> Watched {
        Watched { body, watch: None }
    }

    fn release(&mut self) {
        if let Some((progress, slot)) = self.watch.take() {
            let mut waiting = progress.waiting();
            waiting.slots[slot] = None;
            waiting.free.push(slot);
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.release();
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.watch.is_none() {
            return Pin::new(&mut self.body).poll_frame(cx);
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let since = match &polled {
            Poll::Ready(Some(Ok(_))) => Some(Instant::now()),
            Poll::Pending => None,
            Poll::Ready(_) => {
                self.release();
                return polled;
            }
        };
        if let Some((progress, slot)) = &self.watch {
            progress.waiting().slots[*slot] = Some(since);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn body(chunks: usize) -> ResponseBody {
        let frames = (0..chunks).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"chunk"))));
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_the_client_gives_no_credit_is_noticed() {
        let progress = Arc::new(StreamProgress::default());
        let started = Instant::now();
        let _unread = progress.watch(body(3));
        progress.watchdog(Duration::from_secs(60)).await;
        assert!((Duration::from_secs(60)..=Duration::from_secs(75)).contains(&started.elapsed()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_waiting_for_its_origin_is_not_the_clients_fault() {
        let progress = Arc::new(StreamProgress::default());
        let source = futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>();
        let mut waiting = progress.watch(StreamBody::new(source).boxed());
        let poll = futures_util::poll!(waiting.frame());
        assert!(poll.is_pending(), "the source has nothing yet");
        tokio::select! {
            () = progress.watchdog(Duration::from_secs(60)) => panic!("not stalled by the client"),
            () = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
    }

    #[tokio::test(start_paused = true)]
    async fn responses_that_progress_or_end_are_not() {
        let progress = Arc::new(StreamProgress::default());
        let mut steady = progress.watch(body(10));
        let finished = progress.watch(body(1));
        drop(finished);
        let mut ended = progress.watch(body(1));
        while ended.frame().await.is_some() {}
        let watchdog = progress.watchdog(Duration::from_secs(60));
        tokio::pin!(watchdog);
        for _ in 0..10 {
            tokio::select! {
                () = &mut watchdog => panic!("a response that hands out a frame every 40 s is not stalled"),
                () = tokio::time::sleep(Duration::from_secs(40)) => {}
            }
            steady.frame().await.unwrap().unwrap();
        }
        assert!(steady.frame().await.is_none());
        let waiting = progress.waiting();
        assert!(waiting.slots.iter().all(Option::is_none), "ended and dropped bodies are forgotten");
        assert_eq!(waiting.free.len(), waiting.slots.len(), "and their slots reused");
    }
}
