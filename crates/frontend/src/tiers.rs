//! The cache's tiers as one type: the memory tier and, if configured, the
//! disk tier behind it, with the rules that bind them. The handler, fills,
//! admin and metrics use only this.
//!
//! - Lookups try memory, then disk. Concurrent misses on one key share one
//!   disk read; a body up to `promote_max` is read and verified whole and
//!   promoted to memory, a larger one is streamed from disk, verified chunk
//!   by chunk, and not promoted.
//! - Stores go to memory at once and to disk behind the response.
//! - Purges are final: every purge gets an epoch when it begins, and a
//!   store or promotion that started before a purge it matches is dropped,
//!   so nothing that was read, fetched or queued for disk before a purge
//!   puts the purged object back, in either tier. Disk writes and a disk
//!   purge's walk exclude each other, so a write queued before the purge
//!   either lands before the walk (and is removed by it) or sees the purge.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use holdfast_cache::partial::{ContentRange, Kept, Partial, Partials};
use holdfast_cache::{ChunkedBody, Digest, DiskBody, DiskTier, Key, Lookup, Meta, Store};
use http::HeaderMap;
use tokio::sync::OnceCell;

use crate::disk_writes::DiskWrites;

/// A stored body: in memory, or on disk and read as it is sent.
#[derive(Debug, Clone)]
pub(crate) enum StoredBody {
    Memory(Bytes),
    Disk(ChunkedBody),
}

impl StoredBody {
    pub(crate) fn len(&self) -> u64 {
        match self {
            StoredBody::Memory(bytes) => bytes.len() as u64,
            StoredBody::Disk(chunks) => chunks.size(),
        }
    }
}

/// A stored response and its body.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub meta: Arc<Meta>,
    pub body: StoredBody,
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    Fresh(Stored),
    Stale(Stored),
    Miss,
}

impl Found {
    fn of(stored: Stored, now: SystemTime) -> Found {
        if stored.meta.is_fresh(now) { Found::Fresh(stored) } else { Found::Stale(stored) }
    }
}

/// Disk writes waiting at most (each holds its body in memory).
const DISK_QUEUE: usize = 64;
/// Threads writing to disk.
const DISK_WRITERS: usize = 2;

/// How many purges are remembered for the epoch checks. A store that
/// started more purges ago than this is treated as overtaken by one.
const REMEMBERED_PURGES: usize = 256;

type Matcher = Arc<dyn Fn(&Meta) -> bool + Send + Sync>;

/// Purges by epoch, the most recent ones with their matchers, and whether
/// each is still running.
#[derive(Default)]
struct Purges {
    latest: AtomicU64,
    recent: Mutex<VecDeque<(u64, Matcher, bool)>>,
    running: AtomicU64,
}

impl Purges {
    /// The epoch that work starting now (a lookup, a fill) runs under:
    /// the latest purge's, or while purges run, the one before the oldest
    /// of them. A purge still walking the tiers may not have reached what
    /// the work is about to read, so it must count as begun after the work
    /// even when the work is checked after the purge ended.
    fn epoch(&self) -> u64 {
        let latest = self.latest.load(Ordering::Acquire);
        if self.running.load(Ordering::Acquire) == 0 {
            return latest;
        }
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let oldest_running = recent.iter().filter(|(_, _, running)| *running).map(|(e, _, _)| *e).min();
        oldest_running.map_or(latest, |e| e.saturating_sub(1).min(latest))
    }

    fn begin(&self, matcher: Matcher) -> u64 {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = self.latest.load(Ordering::Acquire) + 1;
        recent.push_back((epoch, matcher, true));
        while recent.len() > REMEMBERED_PURGES && recent.front().is_some_and(|(_, _, running)| !running) {
            recent.pop_front();
        }
        self.running.fetch_add(1, Ordering::AcqRel);
        self.latest.store(epoch, Ordering::Release);
        epoch
    }

    fn finish(&self, epoch: u64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = recent.iter_mut().find(|(e, _, _)| *e == epoch) {
            entry.2 = false;
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether a purge begun after `epoch`, or one still running (its disk
    /// walk may not have reached what was just read), selects `meta`.
    fn overtaken(&self, epoch: u64, meta: &Meta) -> bool {
        if self.latest.load(Ordering::Acquire) == epoch && self.running.load(Ordering::Acquire) == 0 {
            return false;
        }
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let forgotten = recent.front().is_none_or(|(oldest, _, _)| *oldest > epoch + 1);
        forgotten || recent.iter().any(|(e, matches, running)| (*e > epoch || *running) && matches(meta))
    }
}

/// The outcome of one disk read, shared by every request that waited for it.
#[derive(Clone)]
struct DiskRead {
    /// The key the response was stored under (for Vary, the leader's variant).
    record: Key,
    stored: Stored,
    /// The purge epoch when the read began: a request that joins the read
    /// later must not promote what a purge since then removed.
    epoch: u64,
}

/// Memory, and disk behind it.
pub struct Tiers {
    memory: Store,
    disk: Option<Arc<DiskTier>>,
    /// Largest body promoted from disk to memory.
    promote_max: u64,
    purges: Arc<Purges>,
    /// Held (shared) by disk writes, (exclusive) by a disk purge's walk.
    disk_writes: Arc<RwLock<()>>,
    /// The disk writers and their bounded queue (with a disk tier only).
    disk_queue: Option<DiskWrites>,
    /// Disk reads in flight, by primary key.
    reads: Mutex<HashMap<Key, Arc<OnceCell<Option<DiskRead>>>>>,
    /// 206 answers kept by range until they make whole objects (memory
    /// only, within a sixteenth of the memory tier's budget).
    partials: Partials,
    /// Stored `immutable` objects whose refetch brought other bytes.
    immutable_changed: AtomicU64,
}

/// How many purged responses each tier reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub memory: u64,
    pub disk: u64,
}

impl Tiers {
    pub fn new(memory: Store, disk: Option<Arc<DiskTier>>) -> Tiers {
        // A body up to 1/16 of the memory tier is promoted whole: assets
        // are, large media streams from disk without evicting them.
        let promote_max = (memory.stats().memory_limit / 16).max(1024 * 1024);
        let partials = Partials::new(memory.stats().memory_limit / 16);
        Tiers {
            partials,
            memory,
            disk_queue: disk.as_ref().map(|_| DiskWrites::start(DISK_WRITERS, DISK_QUEUE)),
            disk,
            promote_max,
            purges: Arc::default(),
            disk_writes: Arc::default(),
            reads: Mutex::default(),
            immutable_changed: AtomicU64::new(0),
        }
    }

    pub fn memory(&self) -> &Store {
        &self.memory
    }

    pub fn disk(&self) -> Option<&Arc<DiskTier>> {
        self.disk.as_ref()
    }

    /// The purge epoch now: pass it to the store calls of work that starts now.
    pub(crate) fn epoch(&self) -> u64 {
        self.purges.epoch()
    }

    /// Memory, then disk (one read per key in flight; promotion of what
    /// fits). `request` carries the normalised Accept-Encoding. (The
    /// handler calls the two halves itself, so a hit never awaits.)
    #[cfg(test)]
    pub(crate) async fn lookup(&self, primary: &Key, request: &HeaderMap, now: SystemTime) -> Found {
        match self.lookup_memory(primary, request, now) {
            Found::Miss if self.may_be_on_disk(primary) => self.lookup_disk(primary, request, now).await,
            found => found,
        }
    }

    /// The memory tier alone: no waiting, so a hit is answered in the
    /// request's first poll. A miss here is for [`Tiers::lookup_disk`]
    /// when [`Tiers::may_be_on_disk`].
    pub(crate) fn lookup_memory(&self, primary: &Key, request: &HeaderMap, now: SystemTime) -> Found {
        match self.memory.lookup(primary, request, now) {
            Lookup::Fresh(hit) => Found::Fresh(Stored { meta: hit.meta, body: StoredBody::Memory(hit.body) }),
            Lookup::Stale(hit) => Found::Stale(Stored { meta: hit.meta, body: StoredBody::Memory(hit.body) }),
            Lookup::Miss => Found::Miss,
        }
    }

    /// Whether a memory miss is worth a disk read: there is a disk tier,
    /// and its scanned index does not rule the key out.
    pub(crate) fn may_be_on_disk(&self, primary: &Key) -> bool {
        self.disk.as_ref().is_some_and(|disk| !disk.surely_absent(primary))
    }

    /// A memory miss read from the disk tier: one read per key in flight.
    /// Callers ask [`Tiers::may_be_on_disk`] first.
    pub(crate) async fn lookup_disk(&self, primary: &Key, request: &HeaderMap, now: SystemTime) -> Found {
        let Some(disk) = self.disk.as_ref() else { return Found::Miss };
        let epoch = self.epoch();
        let cell = {
            let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(reads.entry(*primary).or_default())
        };
        let read = cell
            .get_or_init(|| async {
                let (disk, key, headers, whole_max) = (Arc::clone(disk), *primary, request.clone(), self.promote_max);
                let hit = tokio::task::spawn_blocking(move || disk.lookup(&key, &headers, whole_max)).await.ok()??;
                let record = primary.record(&hit.meta.vary, request);
                let body = match hit.body {
                    DiskBody::Whole(bytes) => StoredBody::Memory(bytes),
                    DiskBody::Chunked(chunks) => StoredBody::Disk(chunks),
                };
                Some(DiskRead { record, stored: Stored { meta: Arc::new(hit.meta), body }, epoch })
            })
            .await
            .clone();
        {
            let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
            if reads.get(primary).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                reads.remove(primary);
            }
        }
        let Some(read) = read else { return Found::Miss };
        // A shared read answered the leader's variant: another variant
        // reads its own.
        if primary.record(&read.stored.meta.vary, request) != read.record {
            let (disk, key, headers, whole_max) = (Arc::clone(disk), *primary, request.clone(), self.promote_max);
            let Ok(Some(hit)) = tokio::task::spawn_blocking(move || disk.lookup(&key, &headers, whole_max)).await
            else {
                return Found::Miss;
            };
            let body = match hit.body {
                DiskBody::Whole(bytes) => StoredBody::Memory(bytes),
                DiskBody::Chunked(chunks) => StoredBody::Disk(chunks),
            };
            return self.promote(primary, request, Stored { meta: Arc::new(hit.meta), body }, epoch, now);
        }
        self.promote(primary, request, read.stored, read.epoch.min(epoch), now)
    }

    /// A disk hit: into memory if it fits (and no purge overtook the read).
    fn promote(&self, primary: &Key, request: &HeaderMap, stored: Stored, epoch: u64, now: SystemTime) -> Found {
        if self.purges.overtaken(epoch, &stored.meta) {
            return Found::Miss;
        }
        let StoredBody::Memory(body) = &stored.body else { return Found::of(stored, now) };
        let meta = self.memory.insert(primary, request, Meta::clone(&stored.meta), body.clone());
        if self.purges.overtaken(epoch, &meta) {
            self.memory.remove(primary);
            return Found::Miss;
        }
        Found::of(Stored { meta, body: stored.body }, now)
    }

    /// Stores a complete response: in memory at once, on disk behind it;
    /// nothing if a purge begun since `epoch` selects it.
    pub(crate) fn store(&self, primary: Key, request: &HeaderMap, meta: Meta, body: Bytes, epoch: u64) {
        if self.purges.overtaken(epoch, &meta) {
            return;
        }
        self.partials.remove(&primary);
        let meta = self.memory.insert(&primary, request, meta, body.clone());
        if self.purges.overtaken(epoch, &meta) {
            self.memory.remove(&primary);
            return;
        }
        let request = request.clone();
        self.on_disk(epoch, Arc::clone(&meta), move |disk| disk.insert(&primary, &request, &meta, &body));
    }

    /// Replaces the metadata of a stored response after a 304, keeping its
    /// body.
    pub(crate) fn freshen(&self, primary: Key, request: &HeaderMap, meta: Meta, epoch: u64) -> Arc<Meta> {
        let meta = self.memory.update(&primary, request, meta);
        if self.purges.overtaken(epoch, &meta) {
            self.memory.remove(&primary);
            return meta;
        }
        let (stored, request) = (Arc::clone(&meta), request.clone());
        self.on_disk(epoch, Arc::clone(&meta), move |disk| disk.update(&primary, &request, &stored));
        meta
    }

    /// Forgets every variant of a primary key, in both tiers.
    /// The partial object kept for `primary`, if any.
    pub(crate) fn partial(&self, primary: &Key) -> Option<Arc<Partial>> {
        self.partials.get(primary)
    }

    /// Keeps a 206 answer's bytes; once every byte of the object is kept,
    /// stores it whole (as a 200) in every tier.
    pub(crate) fn keep_partial(
        &self,
        primary: Key,
        request: &HeaderMap,
        meta: Meta,
        range: ContentRange,
        bytes: Bytes,
        epoch: u64,
    ) {
        if self.purges.overtaken(epoch, &meta) {
            return;
        }
        if let Kept::Whole(meta, body) = self.partials.keep(primary, meta, range, bytes) {
            let whole = Meta { digest: Digest::of(&body), size: body.len() as u64, ..Meta::clone(&meta) };
            self.store(primary, request, whole, body, epoch);
        }
    }

    pub(crate) fn remove(&self, primary: Key) {
        self.partials.remove(&primary);
        self.memory.remove(&primary);
        if let Some(disk) = self.disk.clone() {
            tokio::task::spawn_blocking(move || disk.remove(&primary));
        }
    }

    /// Invalidates the responses stored under `primaries` in both tiers
    /// (RFC 9111 §4.4: after an unsafe request changed the resource). By
    /// key, not by a purge's walk: unsafe requests are frequent.
    pub(crate) fn invalidate(&self, primaries: Vec<Key>) {
        for primary in &primaries {
            self.partials.remove(primary);
            self.memory.remove(primary);
        }
        if let Some(disk) = self.disk.clone() {
            let lock = Arc::clone(&self.disk_writes);
            tokio::task::spawn_blocking(move || {
                let _writing = lock.read().unwrap_or_else(|p| p.into_inner());
                for primary in &primaries {
                    disk.remove(primary);
                }
            });
        }
    }

    /// Queues a disk write for the writer threads, detached (a kill during
    /// it leaves only a temporary file); it is dropped if a purge overtook it.
    fn on_disk(&self, epoch: u64, meta: Arc<Meta>, write: impl FnOnce(&DiskTier) + Send + 'static) {
        let (Some(disk), Some(queue)) = (self.disk.clone(), &self.disk_queue) else { return };
        let (purges, lock) = (Arc::clone(&self.purges), Arc::clone(&self.disk_writes));
        queue.submit(move || {
            let _writing = lock.read().unwrap_or_else(|p| p.into_inner());
            if !purges.overtaken(epoch, &meta) {
                write(&disk);
            }
        });
    }

    /// Waits until the disk writes queued so far have landed, or `within`
    /// has passed; returns how many are still pending. A stopping node
    /// calls it, so what it fetched is on disk for the process after it.
    pub async fn settle_disk_writes(&self, within: std::time::Duration) -> usize {
        let Some(queue) = &self.disk_queue else { return 0 };
        let deadline = tokio::time::Instant::now() + within;
        while queue.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        queue.pending()
    }

    /// Refetches of a stale `immutable` object whose bytes differed from
    /// the stored copy's (catalogue F16): an origin that broke its promise,
    /// or a deploy that reused a hashed name.
    pub fn immutable_changed(&self) -> u64 {
        self.immutable_changed.load(Ordering::Relaxed)
    }

    pub(crate) fn count_immutable_changed(&self) {
        self.immutable_changed.fetch_add(1, Ordering::Relaxed);
    }

    /// Disk writes skipped because the queue was full.
    pub fn disk_writes_skipped(&self) -> u64 {
        self.disk_queue.as_ref().map_or(0, DiskWrites::skipped)
    }

    /// Purges every response `matches` selects from both tiers: removed
    /// (hard) or marked stale (soft). When this returns, no tier serves
    /// what was purged, whatever was in flight.
    pub(crate) async fn purge(&self, matches: Matcher, soft: bool) -> PurgeCounts {
        let epoch = self.purges.begin(Arc::clone(&matches));
        let counts = self.purge_tiers(matches, soft).await;
        self.purges.finish(epoch);
        counts
    }

    async fn purge_tiers(&self, matches: Matcher, soft: bool) -> PurgeCounts {
        let memory = self.memory.purge(&*matches, soft) + self.partials.purge(&*matches);
        let disk = match &self.disk {
            Some(disk) => {
                let (disk, lock) = (Arc::clone(disk), Arc::clone(&self.disk_writes));
                tokio::task::spawn_blocking(move || {
                    let _exclusive = lock.write().unwrap_or_else(|p| p.into_inner());
                    disk.purge(&*matches, soft)
                })
                .await
                .unwrap_or(0)
            }
            None => 0,
        };
        PurgeCounts { memory, disk }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_cache::policy::{self, Exchange};
    use holdfast_cache::{Digest, StoreConfig};
    use http::{HeaderValue, StatusCode};
    use std::time::{Duration, UNIX_EPOCH};

    fn meta(url: &str, body: &[u8]) -> Meta {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=600"));
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let exchange = Exchange { request_time: now, response_time: now };
        let storable = policy::evaluate(StatusCode::OK, &headers, exchange).unwrap();
        Meta::new(url.into(), StatusCode::OK, headers, storable, exchange, Digest::of(body), body.len() as u64)
    }

    #[test]
    fn purges_overtake_only_what_they_select_and_only_later_work() {
        let purges = Purges::default();
        let before = purges.epoch();
        let epoch = purges.begin(Arc::new(|m: &Meta| m.url.ends_with("/a")));
        let (a, b) = (meta("https://h/a", b"a"), meta("https://h/b", b"b"));
        assert!(purges.overtaken(before, &a));
        assert!(!purges.overtaken(before, &b));
        let during = purges.epoch();
        assert!(purges.overtaken(during, &a), "work begun while the purge runs does not store");
        purges.finish(epoch);
        // Regression: a disk read begun while a purge walked the tiers, and
        // checked once it had ended, promoted the purged object back.
        assert!(purges.overtaken(during, &a), "nor after the purge it began under ended");
        assert!(!purges.overtaken(during, &b));
        assert!(!purges.overtaken(purges.epoch(), &a), "work begun after the purge stores");
        for _ in 0..REMEMBERED_PURGES {
            let e = purges.begin(Arc::new(|_: &Meta| false));
            purges.finish(e);
        }
        assert!(purges.overtaken(before, &b), "too old to tell: treated as overtaken");
    }

    /// A fill that fetched before a purge and stores after it puts nothing back.
    #[tokio::test]
    async fn a_store_begun_before_a_purge_is_dropped() {
        let tiers = Tiers::new(Store::new(&StoreConfig::default()), None);
        let key = Key::primary("GET", "https", "h", "/a");
        let request = HeaderMap::new();
        let epoch = tiers.epoch();
        tiers.purge(Arc::new(|m: &Meta| m.url.ends_with("/a")), false).await;
        tiers.store(key, &request, meta("https://h/a", b"old"), Bytes::from_static(b"old"), epoch);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_001);
        assert!(matches!(tiers.lookup(&key, &request, now).await, Found::Miss));
        tiers.store(key, &request, meta("https://h/a", b"new"), Bytes::from_static(b"new"), tiers.epoch());
        assert!(matches!(tiers.lookup(&key, &request, now).await, Found::Fresh(_)));
    }
}
