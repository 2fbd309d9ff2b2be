//! The memory tier: stored responses by record key, in one moka cache
//! weighted by what each entry really costs, bodies kept once per BLAKE3
//! digest.
//!
//! - A response without `Vary` is stored under its primary key.
//! - A response with `Vary` leaves a Vary record (the header names) under
//!   the primary key and is stored under its variant key ([`Key::record`]).
//! - Every response record holds its body; records with equal bodies hold
//!   the same one (a digest index finds it while any record holds it), so
//!   the same bytes under many URLs are kept once. Each record is weighed
//!   with its whole body, so the tier never holds more than `memory_size`
//!   whatever is shared.
//!
//! Metadata and body live and die together: the tier never keeps a body
//! nobody can reach, nor metadata whose body is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::key::{Digest, Key};
use crate::meta::{Meta, custom_name_len};
use crate::prefetch;

/// A Vary record's entry and names.
const VARY_FIXED_COST: usize = 192;

/// Memory-tier settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Total bytes for bodies and metadata together.
    pub memory_size: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { memory_size: 256 * 1024 * 1024 }
    }
}

/// The weigher returns u32: bodies of 4 GiB or more are clamped.
fn clamp_weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A stored response and its body.
#[derive(Debug, Clone)]
pub struct Hit {
    pub meta: Arc<Meta>,
    pub body: Bytes,
}

/// The answer of [`Store::lookup`].
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Servable as is.
    Fresh(Hit),
    /// Stored but stale: revalidate, or serve when the origin fails.
    Stale(Hit),
    Miss,
}

/// Object and byte counts, for stats and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Records (stored responses and Vary records).
    pub objects: u64,
    /// Distinct bodies held.
    pub blobs: u64,
    pub body_bytes: u64,
    /// Records evicted to stay within the memory size.
    pub evictions: u64,
    /// What the tier's entries cost in memory, as weighed against
    /// `memory_size` (bodies, metadata and their overheads).
    pub memory_bytes: u64,
    /// `memory_size`.
    pub memory_limit: u64,
}

/// One entry of the memory tier.
#[derive(Debug, Clone)]
enum Record {
    Response {
        meta: Arc<Meta>,
        body: Bytes,
    },
    /// Under a primary key: its response varies on these request headers.
    Vary(Arc<[HeaderName]>),
}

impl Record {
    fn weight(&self) -> u32 {
        match self {
            Record::Response { meta, body } => clamp_weight(meta.cost() + body.len()),
            Record::Vary(names) => clamp_weight(VARY_FIXED_COST + names.iter().map(custom_name_len).sum::<usize>()),
        }
    }
}

/// Bodies by digest with the number of records that hold each, and their
/// total size. Every record inserted takes a reference; moka reports every
/// record that leaves (evicted, replaced, invalidated or refused at
/// admission) exactly once, which gives it back.
#[derive(Debug, Default)]
struct Bodies {
    by_digest: Mutex<HashMap<Digest, (Bytes, u32)>>,
    bytes: AtomicU64,
}

impl Bodies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, (Bytes, u32)>> {
        self.by_digest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The body already held for `digest`, or `body` from now on; one more
    /// record holds it.
    fn share(&self, digest: Digest, body: Bytes) -> Bytes {
        let mut bodies = self.lock();
        let (held, records) = bodies.entry(digest).or_insert_with(|| {
            self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            (body, 0)
        });
        *records += 1;
        held.clone()
    }

    /// One record less holds `digest`'s body; the last lets it go.
    fn release(&self, digest: &Digest) {
        let mut bodies = self.lock();
        let Some((body, records)) = bodies.get_mut(digest) else { return };
        *records = records.saturating_sub(1);
        if *records == 0 {
            let len = body.len() as u64;
            bodies.remove(digest);
            let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(len)));
        }
    }
}

/// The cache store (memory tier).
#[derive(Clone)]
pub struct Store {
    records: Cache<Key, Record>,
    bodies: Arc<Bodies>,
    evictions: Arc<AtomicU64>,
    limit: u64,
}

impl Store {
    pub fn new(config: &StoreConfig) -> Store {
        let evictions = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(Bodies::default());
        let (counted, held) = (Arc::clone(&evictions), Arc::clone(&bodies));
        let records = Cache::builder()
            .max_capacity(config.memory_size.max(1))
            .weigher(|_, record: &Record| record.weight())
            .eviction_listener(move |_, record: Record, cause| {
                if cause == RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                if let Record::Response { meta, .. } = record {
                    held.release(&meta.digest);
                }
            })
            .build();
        Store { records, bodies, evictions, limit: config.memory_size }
    }

    /// Finds the stored response for a request. `request` must already carry
    /// the normalised Accept-Encoding, as the stored variants do.
    pub fn lookup(&self, primary: &Key, request: &HeaderMap, now: SystemTime) -> Lookup {
        let record = match self.records.get(primary) {
            Some(Record::Vary(names)) => self.records.get(&primary.variant(&names, request)),
            found => found,
        };
        let Some(Record::Response { meta, body }) = record else { return Lookup::Miss };
        // The head is built from these, then the body is copied out.
        prefetch::prefetch(std::slice::from_ref(&*meta), usize::MAX);
        meta.headers.prefetch();
        prefetch::prefetch(&body, prefetch::BODY_PREFETCH_BYTES);
        let hit = Hit { meta, body };
        if hit.meta.is_fresh(now) { Lookup::Fresh(hit) } else { Lookup::Stale(hit) }
    }

    /// Stores a complete response. The body must hash to `meta.digest`;
    /// callers hash while streaming and pass what they computed.
    pub fn insert(&self, primary: &Key, request: &HeaderMap, meta: Meta, body: Bytes) -> Arc<Meta> {
        debug_assert_eq!(meta.size, body.len() as u64);
        let meta = Arc::new(meta);
        // Same bytes under another URL: share the held body, do not add a copy.
        let body = self.bodies.share(meta.digest, body);
        if !meta.vary.is_empty() {
            // Replaces a response stored without Vary under the primary key.
            self.records.insert(*primary, Record::Vary(meta.vary.clone().into()));
        }
        let record = Record::Response { meta: Arc::clone(&meta), body };
        self.records.insert(primary.record(&meta.vary, request), record);
        meta
    }

    /// Replaces the metadata of a stored variant (after a 304), keeping its
    /// body (if it is still stored).
    pub fn update(&self, primary: &Key, request: &HeaderMap, meta: Meta) -> Arc<Meta> {
        let meta = Arc::new(meta);
        let key = primary.record(&meta.vary, request);
        if let Some(Record::Response { body, .. }) = self.records.get(&key) {
            let body = self.bodies.share(meta.digest, body);
            self.records.insert(key, Record::Response { meta: Arc::clone(&meta), body });
        }
        meta
    }

    /// Forgets every variant of a primary key.
    pub fn remove(&self, primary: &Key) {
        self.records.invalidate(primary);
    }

    /// Purges every stored response that `matches` selects: removes it
    /// (hard) or marks it stale (soft: it is then revalidated, and served
    /// only while the origin fails). Returns how many were purged.
    pub fn purge(&self, matches: &dyn Fn(&Meta) -> bool, soft: bool) -> u64 {
        let mut purged = 0;
        for (key, record) in self.records.iter() {
            let Record::Response { meta, body } = record else { continue };
            if !matches(&meta) {
                continue;
            }
            purged += 1;
            if soft {
                let body = self.bodies.share(meta.digest, body);
                self.records.insert(*key, Record::Response { meta: Arc::new(meta.soft_purged()), body });
            } else {
                self.records.invalidate(&*key);
            }
        }
        purged
    }

    /// Runs moka's pending housekeeping, so counts are exact (tests, stats).
    pub fn run_pending_tasks(&self) {
        self.records.run_pending_tasks();
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            objects: self.records.entry_count(),
            blobs: self.bodies.lock().len() as u64,
            body_bytes: self.bodies.bytes.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            memory_bytes: self.records.weighted_size(),
            memory_limit: self.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, Exchange};
    use http::{HeaderValue, StatusCode};
    use std::time::Duration;

    /// A fake clock: seconds since an arbitrary origin.
    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn response(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn store_response(
        store: &Store,
        url: &str,
        request: &HeaderMap,
        headers: HeaderMap,
        body: &'static [u8],
        now: SystemTime,
    ) -> Key {
        let primary = Key::primary("GET", "https", "h", url);
        let exchange = Exchange { request_time: now, response_time: now };
        let storable = policy::evaluate(StatusCode::OK, &headers, exchange).unwrap();
        let meta =
            Meta::new(url.to_owned(), StatusCode::OK, headers, storable, exchange, Digest::of(body), body.len() as u64);
        store.insert(&primary, request, meta, Bytes::from_static(body));
        primary
    }

    #[test]
    fn fresh_then_stale_with_a_fake_clock() {
        let store = Store::new(&StoreConfig::default());
        let req = HeaderMap::new();
        let key = store_response(&store, "/a", &req, response(&[("cache-control", "max-age=60")]), b"hello", at(0));
        assert!(matches!(store.lookup(&key, &req, at(59)), Lookup::Fresh(_)));
        match store.lookup(&key, &req, at(60)) {
            Lookup::Stale(hit) => assert_eq!(hit.meta.age(at(60)), Duration::from_secs(60)),
            other => panic!("expected stale, got {other:?}"),
        }
    }

    #[test]
    fn identical_bodies_are_stored_once() {
        let store = Store::new(&StoreConfig::default());
        let req = HeaderMap::new();
        let cc = || response(&[("cache-control", "max-age=60")]);
        let a = store_response(&store, "/v1/app.js", &req, cc(), b"same bytes", at(0));
        let b = store_response(&store, "/v2/app.js", &req, cc(), b"same bytes", at(0));
        store.run_pending_tasks();
        let stats = store.stats();
        assert_eq!((stats.objects, stats.blobs, stats.body_bytes, stats.evictions), (2, 1, 10, 0));
        assert!(stats.memory_bytes > 10, "overheads are weighed too");
        let (Lookup::Fresh(x), Lookup::Fresh(y)) = (store.lookup(&a, &req, at(1)), store.lookup(&b, &req, at(1)))
        else {
            panic!("both should hit");
        };
        assert_eq!(x.body.as_ptr(), y.body.as_ptr(), "one blob shared by two keys");
    }

    #[test]
    fn vary_selects_the_variant() {
        let store = Store::new(&StoreConfig::default());
        let mut br = HeaderMap::new();
        br.insert("accept-encoding", HeaderValue::from_static("br"));
        let mut gzip = HeaderMap::new();
        gzip.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let vary = || response(&[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")]);
        let key = store_response(&store, "/v", &br, vary(), b"brotli", at(0));
        assert!(matches!(store.lookup(&key, &gzip, at(1)), Lookup::Miss));
        store_response(&store, "/v", &gzip, vary(), b"gzipped", at(0));
        let Lookup::Fresh(hit) = store.lookup(&key, &br, at(1)) else { panic!("br variant") };
        assert_eq!(&hit.body[..], b"brotli");
        let Lookup::Fresh(hit) = store.lookup(&key, &gzip, at(1)) else { panic!("gzip variant") };
        assert_eq!(&hit.body[..], b"gzipped");
    }

    #[test]
    fn no_cache_entries_are_always_stale() {
        let store = Store::new(&StoreConfig::default());
        let req = HeaderMap::new();
        let key = store_response(
            &store,
            "/n",
            &req,
            response(&[("cache-control", "no-cache, max-age=600"), ("etag", "\"1\"")]),
            b"x",
            at(0),
        );
        assert!(matches!(store.lookup(&key, &req, at(0)), Lookup::Stale(_)));
    }

    #[test]
    fn freshening_restarts_the_clock_and_updates_headers() {
        let store = Store::new(&StoreConfig::default());
        let req = HeaderMap::new();
        let key = store_response(
            &store,
            "/r",
            &req,
            response(&[("cache-control", "max-age=10"), ("etag", "\"1\""), ("x-version", "old")]),
            b"body",
            at(0),
        );
        let Lookup::Stale(hit) = store.lookup(&key, &req, at(20)) else { panic!("stale") };
        let not_modified = response(&[("cache-control", "max-age=10"), ("etag", "\"1\""), ("x-version", "new")]);
        let exchange = Exchange { request_time: at(20), response_time: at(20) };
        let storable = policy::evaluate(StatusCode::OK, &not_modified, exchange).unwrap();
        store.update(&key, &req, hit.meta.freshened(&not_modified, storable, exchange));
        let Lookup::Fresh(hit) = store.lookup(&key, &req, at(25)) else { panic!("fresh again") };
        assert_eq!(hit.meta.headers.get(&HeaderName::from_static("x-version")).unwrap(), "new");
        assert_eq!(&hit.body[..], b"body");
    }

    #[test]
    fn stale_serving_rules() {
        let store = Store::new(&StoreConfig::default());
        let req = HeaderMap::new();
        let cases: &[(&'static str, u64, Option<u64>, bool, bool)] = &[
            // (cache-control, seconds after store, max_stale, usable on error, within swr)
            ("max-age=10", 1000, None, true, false),
            ("max-age=10", 1000, Some(100), false, false),
            ("max-age=10, immutable", 100, Some(100), true, false),
            ("max-age=10, must-revalidate", 11, None, false, false),
            // must-revalidate wins over stale-if-error (RFC 9111 §4.2.4 forbids
            // stale use when a directive prohibits it).
            ("max-age=10, must-revalidate, stale-if-error=60", 60, None, false, false),
            ("max-age=10, stale-if-error=60", 60, Some(5), true, false),
            ("max-age=10, stale-if-error=60", 80, Some(5), false, false),
            ("max-age=10, proxy-revalidate, stale-while-revalidate=30", 15, None, false, false),
            // s-maxage carries proxy-revalidate for a shared cache (§5.2.2.10).
            ("s-maxage=10, stale-if-error=60, stale-while-revalidate=30", 15, None, false, false),
            ("max-age=10, no-cache, stale-while-revalidate=30", 15, None, false, false),
            ("max-age=10, stale-while-revalidate=30", 35, None, true, true),
            ("max-age=10, stale-while-revalidate=30", 45, None, true, false),
        ];
        for (i, (cc, after, max_stale, on_error, swr)) in cases.iter().enumerate() {
            let key = store_response(
                &store,
                &format!("/s{i}"),
                &req,
                response(&[("cache-control", *cc), ("etag", "\"e\"")]),
                b"s",
                at(0),
            );
            let Lookup::Stale(hit) = store.lookup(&key, &req, at(*after)) else { panic!("{cc}: stale") };
            let max_stale = max_stale.map(Duration::from_secs);
            assert_eq!(hit.meta.usable_on_error(at(*after), max_stale), *on_error, "{cc} +{after}s");
            assert_eq!(hit.meta.within_stale_while_revalidate(at(*after)), *swr, "{cc} +{after}s");
        }
    }

    #[test]
    fn tags_come_from_both_header_spellings() {
        let store = Store::new(&StoreConfig::default());
        let req = HeaderMap::new();
        let key = store_response(
            &store,
            "/t",
            &req,
            response(&[("cache-control", "max-age=10"), ("surrogate-key", "a b"), ("cache-tag", "c, a")]),
            b"t",
            at(0),
        );
        let Lookup::Fresh(hit) = store.lookup(&key, &req, at(0)) else { panic!() };
        assert_eq!(hit.meta.tags, vec!["a", "b", "c"]);
    }

    #[test]
    fn metadata_and_body_leave_together_within_the_budget() {
        // Room for about four 64 KiB objects: a fifth evicts one whole
        // record, never a body another record still needs.
        let store = Store::new(&StoreConfig { memory_size: 300 * 1024 });
        let req = HeaderMap::new();
        let bodies: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 64 * 1024]).collect();
        let keys: Vec<Key> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let key = Key::primary("GET", "https", "h", &format!("/b{i}"));
                let headers = response(&[("cache-control", "max-age=60")]);
                let exchange = Exchange { request_time: at(0), response_time: at(0) };
                let storable = policy::evaluate(StatusCode::OK, &headers, exchange).unwrap();
                let meta =
                    Meta::new(format!("/b{i}"), StatusCode::OK, headers, storable, exchange, Digest::of(body), 65536);
                store.insert(&key, &req, meta, Bytes::from(body.clone()));
                store.run_pending_tasks();
                key
            })
            .collect();
        let stats = store.stats();
        assert!(stats.memory_bytes <= 300 * 1024, "{stats:?}");
        assert_eq!(stats.blobs, stats.objects, "no body without its record, no record without its body");
        assert_eq!(stats.body_bytes, stats.blobs * 65536);
        for key in keys {
            if let Lookup::Fresh(hit) = store.lookup(&key, &req, at(1)) {
                assert_eq!(hit.body.len(), 65536);
            }
        }
    }
}
