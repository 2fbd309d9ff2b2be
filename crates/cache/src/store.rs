//! The store: metadata per variant key, bodies once per BLAKE3 digest.
//!
//! Three moka caches, all weighted by bytes:
//! - `vary`: primary key -> the Vary header names of the stored response;
//! - `meta`: variant key -> [`Meta`] (status, headers, freshness, digest);
//! - `blobs`: digest -> body bytes, shared by every key whose body is equal.
//!
//! A lookup whose metadata points at a blob that has been evicted is a miss,
//! so eviction in one cache can never produce a wrong answer, only a refill.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};
use moka::sync::Cache;

use crate::control::ResponseDirectives;
use crate::key::{Digest, Key};
use crate::policy::{self, Exchange, Storable};

/// Share of the memory budget given to metadata; bodies get the rest.
const META_SHARE_DIVISOR: u64 = 16;
/// Fixed per-entry cost added to the weight of metadata entries.
const META_OVERHEAD: usize = 256;

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

/// What is stored about one response.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The request URL, kept for logs and (later) prefix purges.
    pub url: String,
    pub status: StatusCode,
    /// Response headers as stored: hop-by-hop fields and `Age` removed.
    pub headers: HeaderMap,
    pub vary: Vec<HeaderName>,
    pub directives: ResponseDirectives,
    pub freshness_lifetime: Duration,
    pub corrected_initial_age: Duration,
    /// When the response head was received (the "response_time").
    pub stored_at: SystemTime,
    /// Surrogate keys from `Surrogate-Key` and `Cache-Tag`.
    pub tags: Vec<String>,
    pub digest: Digest,
    pub size: u64,
}

impl Meta {
    /// Builds the metadata of a complete response that policy allowed.
    pub fn new(
        url: String,
        status: StatusCode,
        mut headers: HeaderMap,
        storable: Storable,
        exchange: Exchange,
        digest: Digest,
        size: u64,
    ) -> Meta {
        policy::strip_hop_by_hop(&mut headers);
        headers.remove(header::AGE);
        let tags = surrogate_tags(&headers);
        Meta {
            url,
            status,
            headers,
            vary: storable.vary,
            directives: storable.directives,
            freshness_lifetime: storable.freshness_lifetime,
            corrected_initial_age: storable.corrected_initial_age,
            stored_at: exchange.response_time,
            tags,
            digest,
            size,
        }
    }

    /// current_age (RFC 9111 §4.2.3) at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.stored_at).unwrap_or(Duration::ZERO);
        self.corrected_initial_age + resident
    }

    /// Fresh means servable without asking the origin. `no-cache` responses
    /// are never fresh: each use is revalidated.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        !self.directives.no_cache && self.age(now) < self.freshness_lifetime
    }

    /// The same response marked stale by a soft purge: no freshness left, no
    /// stale-while-revalidate, so the next request revalidates and it is
    /// served only if the origin fails.
    pub fn soft_purged(&self) -> Meta {
        let mut meta = self.clone();
        meta.freshness_lifetime = Duration::ZERO;
        meta.directives.stale_while_revalidate = None;
        meta.directives.immutable = false;
        meta
    }

    /// The URL without its scheme, lowercase host: what purges match on, so
    /// one purge covers the http and https copies of an object.
    pub fn purge_url(&self) -> &str {
        self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest)
    }

    /// How long past its freshness lifetime the response is.
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.freshness_lifetime)
    }

    /// May this stored response be served while the origin fails?
    ///
    /// RFC 9111 §4.2.4 allows it when the cache cannot reach the origin,
    /// except for `must-revalidate`, `proxy-revalidate` and `no-cache`
    /// responses; `stale-if-error` (RFC 5861) permits it explicitly within
    /// its window. `max_stale` bounds the rest (`None`: as long as stored).
    pub fn usable_on_error(&self, now: SystemTime, max_stale: Option<Duration>) -> bool {
        let staleness = self.staleness(now);
        if self.directives.stale_if_error.is_some_and(|window| staleness <= window) {
            return true;
        }
        let d = &self.directives;
        if d.must_revalidate || d.proxy_revalidate || d.no_cache {
            return false;
        }
        max_stale.is_none_or(|max| staleness <= max)
    }

    /// Within `stale-while-revalidate`: serve it now, refresh in the background.
    pub fn within_stale_while_revalidate(&self, now: SystemTime) -> bool {
        !self.directives.no_cache
            && self.directives.stale_while_revalidate.is_some_and(|window| self.staleness(now) <= window)
    }

    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(header::ETAG)
    }

    pub fn last_modified(&self) -> Option<&HeaderValue> {
        self.headers.get(header::LAST_MODIFIED)
    }

    /// Applies a 304 from revalidation (RFC 9111 §4.3.4): the stored headers
    /// are updated with the new ones, and the freshness clock restarts.
    /// `storable` is the policy verdict on [`Meta::merged_headers`].
    pub fn freshened(&self, not_modified: &HeaderMap, storable: Storable, exchange: Exchange) -> Meta {
        let headers = self.merged_headers(not_modified);
        let tags = surrogate_tags(&headers);
        Meta {
            headers,
            directives: storable.directives,
            freshness_lifetime: storable.freshness_lifetime,
            corrected_initial_age: storable.corrected_initial_age,
            stored_at: exchange.response_time,
            tags,
            ..self.clone()
        }
    }

    /// The stored headers updated with those of a 304, as RFC 9111 §3.2
    /// asks; fields that describe the body are kept from the stored response.
    pub fn merged_headers(&self, not_modified: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        let mut fresh = not_modified.clone();
        policy::strip_hop_by_hop(&mut fresh);
        for name in [header::CONTENT_LENGTH, header::CONTENT_ENCODING, header::CONTENT_RANGE, header::AGE] {
            fresh.remove(name);
        }
        for name in fresh.keys() {
            headers.remove(name);
        }
        for (name, value) in fresh.iter() {
            headers.append(name.clone(), value.clone());
        }
        headers
    }

    fn weight(&self) -> u32 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum();
        let tags: usize = self.tags.iter().map(String::len).sum();
        clamp_weight(META_OVERHEAD + self.url.len() + headers + tags)
    }
}

pub(crate) fn surrogate_tags(headers: &HeaderMap) -> Vec<String> {
    let mut tags = Vec::new();
    let fields = [(HeaderName::from_static("surrogate-key"), ' '), (HeaderName::from_static("cache-tag"), ',')];
    for (name, separator) in fields {
        for value in headers.get_all(name) {
            if let Ok(text) = value.to_str() {
                tags.extend(text.split(separator).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned));
            }
        }
    }
    tags.sort();
    tags.dedup();
    tags
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
    pub objects: u64,
    pub blobs: u64,
    pub body_bytes: u64,
    /// Bodies evicted to stay within the memory size.
    pub evictions: u64,
}

/// The cache store (memory tier).
#[derive(Clone)]
pub struct Store {
    vary: Cache<Key, Arc<[HeaderName]>>,
    meta: Cache<Key, Arc<Meta>>,
    blobs: Cache<Digest, Bytes>,
    evictions: Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    pub fn new(config: &StoreConfig) -> Store {
        let meta_budget = (config.memory_size / META_SHARE_DIVISOR).max(1024 * 1024);
        let blob_budget = config.memory_size.saturating_sub(meta_budget).max(1);
        let evictions = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&evictions);
        Store {
            evictions,
            vary: Cache::builder()
                .max_capacity(meta_budget / 4)
                .weigher(|_, names: &Arc<[HeaderName]>| {
                    clamp_weight(64 + names.iter().map(|n| n.as_str().len()).sum::<usize>())
                })
                .build(),
            meta: Cache::builder().max_capacity(meta_budget).weigher(|_, meta: &Arc<Meta>| meta.weight()).build(),
            blobs: Cache::builder()
                .max_capacity(blob_budget)
                .weigher(|_, body: &Bytes| clamp_weight(body.len().max(1)))
                .eviction_listener(move |_, _, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
                .build(),
        }
    }

    /// Finds the stored response for a request. `request` must already carry
    /// the normalised Accept-Encoding, as the stored variants do.
    pub fn lookup(&self, primary: &Key, request: &HeaderMap, now: SystemTime) -> Lookup {
        let Some(vary) = self.vary.get(primary) else {
            return Lookup::Miss;
        };
        let variant = primary.variant(&vary, request);
        let Some(meta) = self.meta.get(&variant) else {
            return Lookup::Miss;
        };
        let Some(body) = self.blobs.get(&meta.digest) else {
            // The body was evicted: the metadata is useless now.
            self.meta.invalidate(&variant);
            return Lookup::Miss;
        };
        let hit = Hit { meta, body };
        if hit.meta.is_fresh(now) { Lookup::Fresh(hit) } else { Lookup::Stale(hit) }
    }

    /// Stores a complete response. The body must hash to `meta.digest`;
    /// callers hash while streaming and pass what they computed.
    pub fn insert(&self, primary: &Key, request: &HeaderMap, meta: Meta, body: Bytes) -> Arc<Meta> {
        debug_assert_eq!(meta.size, body.len() as u64);
        let meta = Arc::new(meta);
        // Same bytes under another URL: keep the stored blob, do not add a copy.
        self.blobs.entry(meta.digest).or_insert(body);
        let vary: Arc<[HeaderName]> = meta.vary.clone().into();
        let variant = primary.variant(&vary, request);
        self.vary.insert(*primary, vary);
        self.meta.insert(variant, Arc::clone(&meta));
        meta
    }

    /// Replaces the metadata of a stored variant (after a 304), keeping its body.
    pub fn update(&self, primary: &Key, request: &HeaderMap, meta: Meta) -> Arc<Meta> {
        let meta = Arc::new(meta);
        let variant = primary.variant(&meta.vary, request);
        self.meta.insert(variant, Arc::clone(&meta));
        meta
    }

    /// Forgets every variant of a primary key.
    pub fn remove(&self, primary: &Key) {
        self.vary.invalidate(primary);
    }

    /// Purges every stored response that `matches` selects: removes it
    /// (hard) or marks it stale (soft: it is then revalidated, and served
    /// only while the origin fails). Returns how many were purged.
    pub fn purge(&self, matches: &dyn Fn(&Meta) -> bool, soft: bool) -> u64 {
        let mut purged = 0;
        for (variant, meta) in self.meta.iter() {
            if !matches(&meta) {
                continue;
            }
            purged += 1;
            if soft {
                self.meta.insert(*variant, Arc::new(meta.soft_purged()));
            } else {
                self.meta.invalidate(&*variant);
            }
        }
        purged
    }

    /// Runs moka's pending housekeeping, so counts are exact (tests, stats).
    pub fn run_pending_tasks(&self) {
        self.vary.run_pending_tasks();
        self.meta.run_pending_tasks();
        self.blobs.run_pending_tasks();
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            objects: self.meta.entry_count(),
            blobs: self.blobs.entry_count(),
            body_bytes: self.blobs.weighted_size(),
            evictions: self.evictions.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(store.stats(), StoreStats { objects: 2, blobs: 1, body_bytes: 10, evictions: 0 });
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
        assert_eq!(hit.meta.headers["x-version"], "new");
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
            ("max-age=10, must-revalidate, stale-if-error=60", 60, None, true, false),
            ("max-age=10, must-revalidate, stale-if-error=60", 80, None, false, false),
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
    fn evicted_blob_makes_a_miss_not_a_wrong_answer() {
        let store = Store::new(&StoreConfig { memory_size: 2 * 1024 * 1024 });
        let req = HeaderMap::new();
        let key = store_response(&store, "/e", &req, response(&[("cache-control", "max-age=10")]), b"e", at(0));
        store.blobs.invalidate_all();
        store.run_pending_tasks();
        assert!(matches!(store.lookup(&key, &req, at(0)), Lookup::Miss));
    }
}
