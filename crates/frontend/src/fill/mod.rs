//! Coalesced fills: where the cache meets the origin.
//!
//! A fill is one origin fetch for one cache key, run as a detached task so
//! it goes on when the client that started it disconnects (a cancelled
//! leader must not make followers fetch again: moka's `get_with`, tried
//! first, starts a second fetch in a waiter when the leader's task is
//! aborted, so holdfast keeps its own in-flight map).
//! Every concurrent request for the key reads the same fill: each reader
//! gets the response head, then the body chunks from the first one, as they
//! arrive.
//!
//! While a body may still be stored, the fill keeps every chunk (it needs
//! them to store the object, and late joiners start from byte 0). Once it
//! knows the body will not be stored (larger than the maximum object size,
//! or no room left in the node's [`FillBudget`]), it leaves the in-flight
//! map, keeps only what its slowest reader has not read yet, and waits for
//! readers (and for room in the budget) instead of buffering ahead. Every
//! chunk a fill holds is counted in the budget; once the body is stored,
//! the chunks are swapped for slices of the stored copy, so a slow reader
//! of a stored object holds no second copy.
//!
//! A body that ends early (origin closed, fewer bytes than Content-Length,
//! stalled past the idle timeout) is never stored, and every reader gets an
//! error instead of the end of the body, so clients see an aborted response
//! rather than a short 200; one that has broken before a reader starts is
//! a 502.
//! A response framed two ways is refused before any of it is read
//! (`framing`).

use bytes::Bytes;
use holdfast_cache::{Key, NoStoreReason};
use http::StatusCode;
use http::header::{self, HeaderMap};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

mod buffer;
mod framing;
mod job;
mod per_client;

pub(crate) use job::FillJob;
pub(crate) use per_client::{ClientAddress, ClientFillPermit, ClientFills};

use crate::budget::FillBudget;
use crate::tiers::Stored;
use crate::upstream::{BoxError, UpstreamBody, UpstreamError};

/// What a fill learned from the origin, shared by all its readers.
#[derive(Clone)]
pub(crate) enum FillHead {
    /// A response whose body streams through the fill.
    Response(Arc<ResponseHead>),
    /// The origin confirmed the stale stored response (304): serve it.
    /// Not shareable when the 304 made it private: other readers fetch
    /// their own.
    Revalidated(Stored, bool),
    /// The origin failed but a stale stored response exists: serve it.
    Stale(Stored, Arc<UpstreamError>),
    /// The origin failed and nothing is stored.
    Failed(Arc<UpstreamError>),
}

pub(crate) struct ResponseHead {
    pub status: StatusCode,
    /// Relayed headers (hop-by-hop fields removed).
    pub headers: HeaderMap,
    pub origin: String,
    /// Whether the body will be stored, or why not.
    pub storable: Result<(), NoStoreReason>,
    /// Whether readers other than the leader may be given this response.
    /// Responses with Set-Cookie, `private` or `no-store` are for one client.
    pub shareable: bool,
    /// The variant the leader's request selects (`None`: `Vary: *`, which
    /// no other request matches).
    pub variant: Option<Key>,
}

impl ResponseHead {
    /// Whether a request with `request` headers selects the same variant
    /// as the leader's: a follower whose Vary'd fields differ (a language,
    /// a forwarded field) must not get the leader's variant.
    pub(crate) fn same_variant(&self, primary: &Key, request: &HeaderMap) -> bool {
        let Some(leader) = self.variant else { return false };
        match holdfast_cache::policy::vary_names(&self.headers) {
            Some(vary) => primary.record(&vary, request) == leader,
            None => false,
        }
    }
}

/// One reader of a fill: the next chunk it reads, and its waker (one per
/// reader, replaced on every poll, so spurious polls cannot grow a list).
struct Reader {
    position: usize,
    waker: Option<Waker>,
}

#[derive(Default)]
struct State {
    head: Option<FillHead>,
    /// Chunks from index `base` on; earlier ones were dropped.
    chunks: Vec<Bytes>,
    base: usize,
    /// Bytes of `chunks` counted in the fill budget.
    counted: u64,
    /// `Some(Ok)` when the body ended completely, `Some(Err)` when it broke.
    end: Option<Result<(), String>>,
    /// False once the body is known not to be stored.
    retain: bool,
    readers: HashMap<u64, Reader>,
    next_reader: u64,
}

impl State {
    fn wake_readers(&mut self) {
        for reader in self.readers.values_mut() {
            if let Some(waker) = reader.waker.take() {
                waker.wake();
            }
        }
    }

    /// Whether a new reader can start at byte 0: no chunk dropped, and
    /// not failed.
    fn joinable(&self) -> bool {
        let failed = matches!(self.head, Some(FillHead::Failed(_))) || matches!(self.end, Some(Err(_)));
        self.base == 0 && !failed
    }

    /// The position of the slowest reader (the end when there is none).
    fn slowest(&self) -> usize {
        self.readers.values().map(|r| r.position).min().unwrap_or(self.base + self.chunks.len())
    }
}

pub(crate) struct Fill {
    state: Mutex<State>,
    /// Wakes the fill task when a reader advances or leaves.
    progress: Notify,
    budget: Arc<FillBudget>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        let counted = self.lock().counted;
        self.budget.release(counted);
    }
}

impl Fill {
    fn new(budget: &Arc<FillBudget>) -> Arc<Fill> {
        Arc::new(Fill {
            state: Mutex::new(State { retain: true, ..State::default() }),
            progress: Notify::new(),
            budget: Arc::clone(budget),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module;
        // the state is still consistent enough to read, so recover it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a reader at byte 0. `None` if the fill already dropped
    /// chunks (it will not store its body), or already failed (a request
    /// that arrives after the failure, before the fill leaves the in-flight
    /// map, is not handed it), so the caller must fetch itself.
    pub(crate) fn join(self: &Arc<Fill>) -> Option<FillReader> {
        let mut state = self.lock();
        if !state.joinable() {
            return None;
        }
        let id = state.next_reader;
        state.next_reader += 1;
        state.readers.insert(id, Reader { position: 0, waker: None });
        Some(FillReader { fill: Arc::clone(self), id, position: 0, offset: 0 })
    }

    fn publish_head(&self, head: FillHead) {
        let mut state = self.lock();
        state.head = Some(head);
        state.wake_readers();
    }

    fn finish(&self, end: Result<(), String>) {
        let mut state = self.lock();
        state.end = Some(end);
        state.wake_readers();
    }
}

/// One request's view of a fill. Dropping it unregisters the reader.
pub(crate) struct FillReader {
    fill: Arc<Fill>,
    id: u64,
    position: usize,
    /// Bytes of the chunk at `position` already handed out.
    offset: usize,
}

/// The largest frame a reader hands its connection. A connection that
/// cannot write queues a few frames (hyper keeps up to 16): small frames
/// keep what a client that stopped reading holds small.
const MAX_FRAME: usize = 16 * 1024;

impl FillReader {
    /// Waits for the response head and, for a response whose body streams
    /// through the fill, for the body's first byte or its end. A body that
    /// has already broken by then (a bad first chunk size, a close right
    /// after the head or a few bytes in) is the origin's failure, and this
    /// reader has sent nothing yet: a 502 with the reason, where a 200 cut
    /// off at once reaches the client as an empty reply (hyper drops the
    /// unflushed head), which looks like a network fault.
    pub(crate) async fn head(&self) -> FillHead {
        std::future::poll_fn(|cx| {
            let mut state = self.fill.lock();
            let body_pending = state.chunks.is_empty() && state.base == 0 && state.end.is_none();
            match (&state.head, &state.end) {
                (Some(FillHead::Response(head)), Some(Err(reason))) => {
                    let reason = format!("origin {} broke its body: {reason}", head.origin);
                    return Poll::Ready(FillHead::Failed(Arc::new(UpstreamError {
                        reason,
                        status: StatusCode::BAD_GATEWAY,
                    })));
                }
                (Some(FillHead::Response(_)), _) if body_pending => {}
                (Some(head), _) => return Poll::Ready(head.clone()),
                (None, _) => {}
            }
            if let Some(reader) = state.readers.get_mut(&self.id) {
                reader.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for FillReader {
    fn drop(&mut self) {
        let mut state = self.fill.lock();
        state.readers.remove(&self.id);
        drop(state);
        self.fill.progress.notify_one();
    }
}

/// The body error a reader sees when the origin body broke.
#[derive(Debug, thiserror::Error)]
#[error("origin body incomplete: {0}")]
pub struct IncompleteBody(pub String);

impl Body for FillReader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut state = this.fill.lock();
        if this.position < state.base {
            return Poll::Ready(Some(Err(Box::new(IncompleteBody("reader fell behind".into())))));
        }
        if let Some(chunk) = state.chunks.get(this.position - state.base) {
            let end = chunk.len().min(this.offset + MAX_FRAME);
            let frame = chunk.slice(this.offset..end);
            if end < chunk.len() {
                // The rest of this chunk comes with the next polls.
                this.offset = end;
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            this.offset = 0;
            this.position += 1;
            let retain = state.retain;
            if let Some(reader) = state.readers.get_mut(&this.id) {
                reader.position = this.position;
            }
            drop(state);
            if !retain {
                this.fill.progress.notify_one();
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        match &state.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(reason)) => Poll::Ready(Some(Err(Box::new(IncompleteBody(reason.clone()))))),
            None => {
                if let Some(reader) = state.readers.get_mut(&this.id) {
                    reader.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// In-flight fills by coalescing key, within a node-wide count and budget.
pub(crate) struct Inflight {
    fills: Mutex<HashMap<Key, Arc<Fill>>>,
    budget: Arc<FillBudget>,
    max_fills: usize,
    /// New fills refused because `max_fills` were running.
    shed: std::sync::atomic::AtomicU64,
}

/// No new fill: as many as the node allows are running.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TooManyFills;

impl Inflight {
    pub(crate) fn new(budget: Arc<FillBudget>, max_fills: usize) -> Inflight {
        Inflight { fills: Mutex::default(), budget, max_fills, shed: Default::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<Fill>>> {
        self.fills.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn budget(&self) -> &Arc<FillBudget> {
        &self.budget
    }

    /// New fills refused because the node ran as many as it allows.
    pub(crate) fn shed(&self) -> u64 {
        self.shed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a fill for `key` is running and takes readers: a request
    /// for it joins, and asks the origin nothing.
    pub(crate) fn is_joinable(&self, key: &Key) -> bool {
        let fills = self.lock();
        fills.get(key).is_some_and(|fill| fill.lock().joinable())
    }

    /// Joins the fill running for `key`, or starts one with `start` unless
    /// the node already runs its maximum of fills. Returns the reader and
    /// whether this request leads the fill. A started fill holds `permit`
    /// (its client's share, see [`ClientFills`]) until it ends.
    pub(crate) fn join_or_start(
        self: &Arc<Self>,
        key: Key,
        start: impl FnOnce() -> FillJob,
        permit: Option<ClientFillPermit>,
    ) -> Result<(FillReader, bool), TooManyFills> {
        let mut fills = self.lock();
        if let Some(reader) = fills.get(&key).and_then(|fill| fill.join()) {
            return Ok((reader, false));
        }
        if fills.len() >= self.max_fills {
            self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(TooManyFills);
        }
        let fill = Fill::new(&self.budget);
        // A new fill has neither dropped chunks nor failed: joining cannot fail.
        let reader = fill.join().expect("a new fill accepts readers");
        fills.insert(key, Arc::clone(&fill));
        drop(fills);
        let job = start();
        let registration = Some((Arc::clone(self), key));
        // Boxed: the fill's future is kilobytes, and a task's future is
        // moved when it is spawned and when it finishes. It is made inside
        // the box, on its first poll: made here, it would be copied into
        // this block and then into the box.
        tokio::spawn(Box::pin(async move {
            let _permit = permit;
            job.run(fill, registration).await
        }));
        Ok((reader, true))
    }

    /// Starts a fill that nobody else joins (pass-through, or a follower
    /// that may not share the leader's response).
    pub(crate) fn start_alone(&self, job: FillJob) -> FillReader {
        let fill = Fill::new(&self.budget);
        let reader = fill.join().expect("a new fill accepts readers");
        tokio::spawn(Box::pin(async move { job.run(fill, None).await }));
        reader
    }

    fn remove(&self, key: &Key, fill: &Arc<Fill>) {
        let mut fills = self.lock();
        if fills.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            fills.remove(key);
        }
    }

    /// Fills in flight and the requests reading them (for stats and tests).
    pub(crate) fn load(&self) -> (usize, usize) {
        let fills = self.lock();
        let readers = fills.values().map(|fill| fill.lock().readers.len()).sum();
        (fills.len(), readers)
    }
}

/// The key concurrent requests share a fill by: the primary key and the
/// coding asked for; a revalidation also by the stale variant's key, so
/// requests for different stored variants never share one; a miss whose
/// range is forwarded also by its range.
pub(crate) fn coalescing_key(primary: &Key, stale: Option<&Stored>, request: &HeaderMap, ranged: bool) -> Key {
    match stale {
        Some(hit) => primary.record(&hit.meta.vary, request).variant(&[header::ACCEPT_ENCODING], request),
        None if ranged => primary.variant(&[header::ACCEPT_ENCODING, header::RANGE, header::IF_RANGE], request),
        None => primary.variant(&[header::ACCEPT_ENCODING], request),
    }
}

/// Turns a pass-through or fill body into the handler's body type.
pub(crate) fn reader_body(reader: FillReader) -> UpstreamBody {
    reader.boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> FillHead {
        FillHead::Failed(Arc::new(UpstreamError { reason: "refused".into(), status: StatusCode::BAD_GATEWAY }))
    }

    /// Regression: a request that came after its fill failed, before the
    /// fill's task left the in-flight map, was handed the old failure
    /// without the origin being asked again.
    #[test]
    fn a_fill_that_failed_takes_no_new_readers() {
        let budget = Arc::new(FillBudget::new(1 << 20));
        let failed = Fill::new(&budget);
        assert!(failed.join().is_some(), "a running fill takes readers");
        failed.publish_head(failure());
        assert!(failed.join().is_none(), "failed before the head");

        let broken = Fill::new(&budget);
        broken.lock().chunks.push(Bytes::from_static(b"part"));
        broken.finish(Err("origin closed".into()));
        assert!(broken.join().is_none(), "its body broke");

        let complete = Fill::new(&budget);
        complete.finish(Ok(()));
        assert!(complete.join().is_some(), "a complete body is still read from byte 0");
    }
}
