//! Coalesced fills: where the cache meets the origin.
//!
//! A fill is one origin fetch for one cache key, run as a detached task so
//! it goes on when the client that started it disconnects (a cancelled
//! leader must not make followers fetch again, see notes/rust-stack.md §7).
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
//! rather than a short 200.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use holdfast_cache::policy::{self, Exchange};
use holdfast_cache::{DigestBuilder, Key, Meta, NoStoreReason, Storable, encoding};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::budget::FillBudget;
use crate::tiers::{Stored, Tiers};
use crate::upstream::{BoxError, Fetch, Upstream, UpstreamBody, UpstreamError};

/// How far a fill that does not store its body may run ahead of its
/// slowest reader, in bytes (it always may hold one chunk).
const MAX_BYTES_AHEAD: u64 = 512 * 1024;

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
    /// chunks (it will not store its body), so the caller must fetch itself.
    pub(crate) fn join(self: &Arc<Fill>) -> Option<FillReader> {
        let mut state = self.lock();
        if state.base > 0 {
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
    /// Waits for the response head.
    pub(crate) async fn head(&self) -> FillHead {
        std::future::poll_fn(|cx| {
            let mut state = self.fill.lock();
            match &state.head {
                Some(head) => Poll::Ready(head.clone()),
                None => {
                    if let Some(reader) = state.readers.get_mut(&self.id) {
                        reader.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
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

    /// Joins the fill running for `key`, or starts one with `start` unless
    /// the node already runs its maximum of fills. Returns the reader and
    /// whether this request leads the fill.
    pub(crate) fn join_or_start(
        self: &Arc<Self>,
        key: Key,
        start: impl FnOnce() -> FillJob,
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
        // A new fill has no dropped chunks, so joining cannot fail.
        let reader = fill.join().expect("a new fill accepts readers");
        fills.insert(key, Arc::clone(&fill));
        drop(fills);
        let job = start();
        tokio::spawn(job.run(fill, Some((Arc::clone(self), key))));
        Ok((reader, true))
    }

    /// Starts a fill that nobody else joins (pass-through, or a follower
    /// that may not share the leader's response).
    pub(crate) fn start_alone(&self, job: FillJob) -> FillReader {
        let fill = Fill::new(&self.budget);
        let reader = fill.join().expect("a new fill accepts readers");
        tokio::spawn(job.run(fill, None));
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

/// Everything a fill task needs.
pub(crate) struct FillJob {
    pub upstream: Arc<dyn Upstream>,
    pub tiers: Arc<Tiers>,
    /// The purge epoch when the request arrived: a purge begun since that
    /// selects the response keeps it out of the tiers.
    pub epoch: u64,
    pub primary: Key,
    /// The leader's request headers, with Accept-Encoding normalised: they
    /// select the variant the response is stored under.
    pub request_headers: HeaderMap,
    pub url: String,
    pub fetch: Fetch,
    /// The stale stored response being revalidated, if any.
    pub stale: Option<Stored>,
    /// False for pass-through requests: never stored.
    pub cacheable: bool,
    pub max_object_size: u64,
    /// Bound on serving a stale copy when the origin fails (`None`: no bound).
    pub max_stale: Option<Duration>,
}

impl FillJob {
    async fn run(self, fill: Arc<Fill>, registration: Option<(Arc<Inflight>, Key)>) {
        let leave_map = || {
            if let Some((inflight, key)) = &registration {
                inflight.remove(key, &fill);
            }
        };
        self.fetch_and_stream(&fill, &leave_map).await;
        leave_map();
    }

    async fn fetch_and_stream(self, fill: &Arc<Fill>, leave_map: &(dyn Fn() + Sync)) {
        let FillJob {
            upstream,
            tiers,
            epoch,
            primary,
            request_headers,
            url,
            fetch,
            stale,
            cacheable,
            max_object_size,
            max_stale,
        } = self;
        // A stale copy that may not be served on error is no fallback.
        let usable_on_error = stale.as_ref().is_some_and(|hit| hit.meta.usable_on_error(SystemTime::now(), max_stale));
        let is_get = fetch.method == Method::GET;
        let accept_encoding = fetch.accept_encoding;
        let request_time = SystemTime::now();
        let fetched = match upstream.fetch(fetch).await {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(%url, reason = %error.reason, "origin fetch failed");
                let error = Arc::new(error);
                fill.publish_head(match stale {
                    Some(hit) if usable_on_error => FillHead::Stale(hit, error),
                    _ => FillHead::Failed(error),
                });
                return;
            }
        };
        let exchange = Exchange { request_time, response_time: SystemTime::now() };
        let (parts, body) = fetched.response.into_parts();
        let mut headers = parts.headers;
        policy::strip_hop_by_hop(&mut headers);
        // A coded response varies on Accept-Encoding, whether the origin
        // says so or not: its coding must never reach a client that did not
        // ask for it (downstream caches are told too).
        encoding::vary_on_coding(&mut headers);

        if let Some(hit) = stale {
            if parts.status == StatusCode::NOT_MODIFIED {
                // Set-Cookie is never merged (merged_headers drops it): a
                // cookie is for one client, never for a stored response.
                let merged = hit.meta.merged_headers(&headers);
                let (meta, shareable) = match policy::evaluate(hit.meta.status, &merged, exchange) {
                    Ok(storable) => {
                        let freshened = hit.meta.freshened(&headers, storable, exchange);
                        (tiers.freshen(primary, &request_headers, freshened, epoch), true)
                    }
                    // The origin now forbids storing it (private, no-store):
                    // serve it to this reader once, forget it.
                    Err(_) => {
                        tiers.remove(primary);
                        (Arc::new(Meta { headers: merged, ..Meta::clone(&hit.meta) }), false)
                    }
                };
                fill.publish_head(FillHead::Revalidated(Stored { meta, body: hit.body }, shareable));
                return;
            }
            if usable_on_error && (parts.status.is_server_error() || parts.status.is_client_error()) {
                // An origin error never replaces a stored object.
                let reason = format!("origin {} answered {}", fetched.origin, parts.status);
                tracing::warn!(%url, %reason, "serving stale");
                let status = http::StatusCode::BAD_GATEWAY;
                fill.publish_head(FillHead::Stale(hit, Arc::new(UpstreamError { reason, status })));
                return;
            }
        }

        let content_length =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let coding_accepted = encoding::coding_accepted(&headers, accept_encoding);
        let mut storable: Result<Storable, NoStoreReason> = if !cacheable || !is_get {
            Err(NoStoreReason::Method)
        } else if !coding_accepted {
            // The origin sent a coding it was not asked for: relay it to
            // this client (it is what the origin answered) but store nothing.
            Err(NoStoreReason::Coding)
        } else {
            policy::evaluate(parts.status, &headers, exchange)
        };
        if storable.is_ok() && content_length.is_some_and(|len| len > max_object_size) {
            storable = Err(NoStoreReason::TooLarge);
        }
        let shareable = match &storable {
            Ok(_) | Err(NoStoreReason::TooLarge | NoStoreReason::Status | NoStoreReason::NoFreshness) => {
                !headers.contains_key(header::SET_COOKIE)
            }
            Err(_) => false,
        } && cacheable
            // A tier loop (508) is about this request's Via, which a client
            // can forge: never hand it to other readers.
            && parts.status != StatusCode::LOOP_DETECTED;
        let head = Arc::new(ResponseHead {
            status: parts.status,
            headers: headers.clone(),
            origin: fetched.origin.clone(),
            storable: storable.as_ref().map(|_| ()).map_err(|r| *r),
            shareable,
        });
        if storable.is_err() {
            fill.lock().retain = false;
            leave_map();
        }
        fill.publish_head(FillHead::Response(head));

        let mut body = body;
        let mut hasher = DigestBuilder::new();
        let mut received: u64 = 0;
        let mut stored = false;
        let end = loop {
            if !fill.lock().retain {
                match wait_for_room(fill).await {
                    Room::Go => {}
                    // Nobody reads and nothing will be stored: stop fetching.
                    Room::NoReader => return,
                    Room::Shed => {
                        fill.budget.count_stalled();
                        tracing::debug!(%url, "fill shed: budget full and its clients stopped reading");
                        break Err("shed: the fill buffer budget is full and the client stopped reading".into());
                    }
                }
            }
            match body.frame().await {
                None => break Ok(()),
                Some(Err(error)) => break Err(error.to_string()),
                Some(Ok(frame)) => {
                    let Ok(chunk) = frame.into_data() else { continue };
                    if chunk.is_empty() {
                        continue;
                    }
                    let len = chunk.len() as u64;
                    received += len;
                    if content_length.is_some_and(|announced| received > announced) {
                        break Err(format!(
                            "origin sent more than its Content-Length of {}",
                            content_length.unwrap_or(0)
                        ));
                    }
                    if storable.is_ok() {
                        let shed = if received > max_object_size {
                            Some(NoStoreReason::TooLarge)
                        } else if !fill.budget.try_take(len) {
                            fill.budget.count_shed();
                            Some(NoStoreReason::BufferBudget)
                        } else {
                            None
                        };
                        match shed {
                            Some(reason) => {
                                tracing::debug!(%url, reason = reason.as_str(), "body will not be stored");
                                storable = Err(reason);
                                fill.budget.take(len);
                                fill.lock().retain = false;
                                leave_map();
                            }
                            None => hasher.update(&chunk),
                        }
                    } else {
                        // Room was waited for: a fill may hold one chunk more.
                        fill.budget.take(len);
                    }
                    fill.lock().counted += len;
                    if content_length == Some(received)
                        && let Ok(verdict) = storable.clone()
                    {
                        // The last byte: store before any reader can see it,
                        // so a client that got the whole body and asks again
                        // finds the object (HIT), not the finishing fill.
                        let mut chunks = fill.lock().chunks.clone();
                        chunks.push(chunk.clone());
                        let body = concat(&chunks, received);
                        let meta = Meta::new(
                            url.clone(),
                            parts.status,
                            headers.clone(),
                            verdict,
                            exchange,
                            hasher.finish(),
                            received,
                        );
                        tiers.store(primary, &request_headers, meta, body.clone(), epoch);
                        stored = true;
                        let mut state = fill.lock();
                        state.chunks.push(chunk);
                        hand_over_to_store(&mut state, &body, &fill.budget);
                        state.wake_readers();
                        continue;
                    }
                    let mut state = fill.lock();
                    state.chunks.push(chunk);
                    if !state.retain {
                        let _ = drop_consumed_chunks(&mut state, &fill.budget);
                    }
                    state.wake_readers();
                }
            }
        };
        let end = end.and_then(|()| match content_length {
            Some(len) if received != len => Err(format!("origin sent {received} of {len} bytes")),
            _ => Ok(()),
        });
        if let Err(reason) = &end {
            if reason.starts_with("shed:") {
                // Counted in /metrics; one line each would flood the log under attack.
                tracing::debug!(%url, %reason, "fill shed");
            } else {
                tracing::warn!(%url, origin = %fetched.origin, %reason, "origin body incomplete; not stored");
            }
        } else if let (Ok(storable), false) = (storable, stored) {
            let body = concat(&fill.lock().chunks, received);
            let meta = Meta::new(url, parts.status, headers, storable, exchange, hasher.finish(), received);
            tiers.store(primary, &request_headers, meta, body.clone(), epoch);
            hand_over_to_store(&mut fill.lock(), &body, &fill.budget);
        }
        fill.finish(end);
    }
}

/// Once the body is stored, the chunks readers still have to read become
/// slices of the stored copy: the origin's read buffers are freed, and the
/// bytes leave the fill budget (the memory tier accounts for them).
fn hand_over_to_store(state: &mut State, body: &Bytes, budget: &FillBudget) {
    // A stored body was retained whole, so no chunk was dropped (base 0).
    let mut offset = 0;
    for chunk in state.chunks.iter_mut() {
        let end = (offset + chunk.len()).min(body.len());
        *chunk = body.slice(offset..end);
        offset = end;
    }
    budget.release(state.counted);
    state.counted = 0;
}

/// What a fill that stores nothing does next.
enum Room {
    /// Read the next chunk.
    Go,
    /// Nobody reads any more: stop fetching.
    NoReader,
    /// The budget is full and this fill's readers stopped reading: let go
    /// of it, so fills whose clients read can go on.
    Shed,
}

/// How long a fill's readers may make no progress while the fill budget
/// is full before the fill is shed.
const STALL_WHILE_FULL: Duration = Duration::from_secs(1);

/// Waits until the slowest reader is close enough to the newest chunk and
/// the fill budget has room. While the budget is full, a fill whose
/// readers read nothing for [`STALL_WHILE_FULL`] is shed: the clients that
/// stopped reading lose their response, not the ones that read.
async fn wait_for_room(fill: &Fill) -> Room {
    let mut stalled_since = tokio::time::Instant::now();
    loop {
        let progress = fill.progress.notified();
        let released = fill.budget.released();
        {
            let mut state = fill.lock();
            if state.readers.is_empty() {
                return Room::NoReader;
            }
            if drop_consumed_chunks(&mut state, &fill.budget) {
                stalled_since = tokio::time::Instant::now();
            }
            let room = fill.budget.has_room();
            if room && (state.chunks.is_empty() || state.counted < MAX_BYTES_AHEAD) {
                return Room::Go;
            }
            if !room && !state.chunks.is_empty() && stalled_since.elapsed() >= STALL_WHILE_FULL {
                return Room::Shed;
            }
        }
        tokio::select! {
            () = progress => {}
            () = released => {}
            () = tokio::time::sleep_until(stalled_since + STALL_WHILE_FULL) => {}
        }
    }
}

/// Drops the chunks every reader has read (only once nothing is stored),
/// and gives their bytes back to the budget. Returns whether any went.
fn drop_consumed_chunks(state: &mut State, budget: &FillBudget) -> bool {
    let consumed = state.slowest().saturating_sub(state.base).min(state.chunks.len());
    if consumed > 0 {
        let bytes: u64 = state.chunks.drain(..consumed).map(|c| c.len() as u64).sum();
        state.base += consumed;
        let bytes = bytes.min(state.counted);
        state.counted -= bytes;
        budget.release(bytes);
        return true;
    }
    false
}

/// Copies the chunks into one exact-size buffer. Even a single chunk is
/// copied: it may be a slice of a larger read buffer that storing it would
/// keep alive.
fn concat(chunks: &[Bytes], len: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out.freeze()
}

/// Turns a pass-through or fill body into the handler's body type.
pub(crate) fn reader_body(reader: FillReader) -> UpstreamBody {
    reader.boxed()
}
