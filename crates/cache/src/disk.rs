//! The disk tier: bodies as files named by their BLAKE3 digest, metadata as
//! one checksummed file per variant key, Vary records per primary key.
//!
//! ```text
//! DIR/blobs/ab/cd/<digest>      body bytes, verified against the name on read
//! DIR/meta/ab/cd/<variant key>  encoded Meta (codec.rs), checksummed
//! DIR/vary/ab/cd/<primary key>  Vary names of the stored response
//! DIR/tmp/                      writes in progress (emptied at open)
//! DIR/quarantine/               files that failed verification
//! ```
//!
//! Every file is written to `tmp/` and renamed into place, so a kill at any
//! moment leaves either the old file or the new one, never a torn one; a
//! torn file that a power loss could still produce fails its checksum or
//! digest and is quarantined. Nothing is loaded at open: lookups read the
//! files they need, so a node with any number of objects serves at once. A
//! background [`DiskTier::scan`] rebuilds the size accounting and the
//! eviction order. Several processes may share one directory (the old and
//! new process of a zero-downtime upgrade): every change is an atomic rename.
//!
//! All methods block: callers run them off the async worker threads.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderName};

use crate::codec;
use crate::key::{Digest, Key};
use crate::meta::Meta;

/// When written files are flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Leave it to the kernel: survives process kills, not power loss
    /// (a file torn by power loss fails verification and is refetched).
    Never,
    /// fsync each file before its rename: survives power loss, costs I/O.
    Always,
}

/// Disk-tier settings.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub dir: PathBuf,
    /// Body bytes kept on disk; least recently used bodies go first.
    pub max_size: u64,
    pub fsync: FsyncPolicy,
}

/// Disk-tier counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    /// Metadata records written by this process (inserts and updates).
    pub records_written: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub hits: u64,
    pub corrupt: u64,
    pub write_errors: u64,
    pub evictions: u64,
    pub full: bool,
    pub scanned: bool,
}

#[derive(Default)]
struct Index {
    /// Digest -> (size, last use on a logical clock).
    blobs: HashMap<Digest, (u64, u64)>,
    tick: u64,
}

/// The disk tier of one node.
pub struct DiskTier {
    config: DiskConfig,
    index: Mutex<Index>,
    used: AtomicU64,
    hits: AtomicU64,
    records_written: AtomicU64,
    corrupt: AtomicU64,
    write_errors: AtomicU64,
    evictions: AtomicU64,
    /// Admission is stopped while the disk is full.
    full: AtomicBool,
    scanned: AtomicBool,
}

/// Eviction brings usage down to this share of the limit, so it runs in batches.
const LOW_WATER_PERCENT: u64 = 90;

fn fan_out(root: &Path, kind: &str, hex: &str) -> PathBuf {
    root.join(kind).join(&hex[..2]).join(&hex[2..4]).join(hex)
}

impl DiskTier {
    /// Opens (or creates) the directory. Writes left in `tmp/` by a killed
    /// process are removed; nothing else is read.
    pub fn open(config: DiskConfig) -> io::Result<DiskTier> {
        for sub in ["blobs", "meta", "vary", "quarantine"] {
            fs::create_dir_all(config.dir.join(sub))?;
        }
        let tmp = config.dir.join("tmp");
        // Another live process (an upgrade in progress) may be writing into
        // tmp/, so only files older than a minute are removed.
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let stale = entry.metadata().and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
                if stale.is_some_and(|age| age.as_secs() > 60) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        fs::create_dir_all(&tmp)?;
        Ok(DiskTier {
            config,
            index: Mutex::new(Index::default()),
            used: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            full: AtomicBool::new(false),
            scanned: AtomicBool::new(false),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Walks the stored bodies to rebuild size accounting and eviction
    /// order. Runs in the background after start; lookups do not wait.
    pub fn scan(&self) {
        let mut found = Vec::new();
        walk(&self.config.dir.join("blobs"), &mut |path, size| {
            let digest = path.file_name().and_then(|n| n.to_str()).and_then(Digest::from_hex);
            if let Some(digest) = digest {
                found.push((digest, size));
            }
        });
        let mut index = self.lock();
        for (digest, size) in found {
            if let std::collections::hash_map::Entry::Vacant(slot) = index.blobs.entry(digest) {
                slot.insert((size, 0));
                self.used.fetch_add(size, Ordering::Relaxed);
            }
        }
        drop(index);
        self.scanned.store(true, Ordering::Relaxed);
        self.evict_if_needed();
    }

    /// Reads and verifies the stored response for a request (whose
    /// Accept-Encoding is already normalised). A record or body that fails
    /// verification is quarantined and reported as a miss.
    pub fn lookup(&self, primary: &Key, request: &HeaderMap) -> Option<(Meta, Bytes)> {
        let root = &self.config.dir;
        let vary_path = fan_out(root, "vary", &primary.to_hex());
        let vary_bytes = fs::read(&vary_path).ok()?;
        let Some(vary) = codec::decode_vary(&vary_bytes) else {
            self.quarantine(&vary_path);
            return None;
        };
        let variant = primary.variant(&vary, request);
        let meta_path = fan_out(root, "meta", &variant.to_hex());
        let meta_bytes = fs::read(&meta_path).ok()?;
        let Some(meta) = codec::decode_meta(&meta_bytes) else {
            self.quarantine(&meta_path);
            return None;
        };
        let blob_path = fan_out(root, "blobs", &meta.digest.to_hex());
        let Ok(body) = fs::read(&blob_path) else {
            // Evicted body: the record is useless now.
            let _ = fs::remove_file(&meta_path);
            return None;
        };
        if body.len() as u64 != meta.size || Digest::of(&body) != meta.digest {
            self.quarantine(&blob_path);
            self.forget(&meta.digest);
            return None;
        }
        self.touch(&meta.digest, meta.size);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some((meta, Bytes::from(body)))
    }

    /// Stores a complete response: the body (unless already there), then its
    /// metadata, then the Vary record, each by an atomic rename.
    pub fn insert(&self, primary: &Key, request: &HeaderMap, meta: &Meta, body: &[u8]) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        let root = &self.config.dir;
        let blob_path = fan_out(root, "blobs", &meta.digest.to_hex());
        let known = self.lock().blobs.contains_key(&meta.digest) || blob_path.exists();
        if !known && let Err(error) = self.write_atomic(&blob_path, body) {
            self.write_failed(&error);
            return;
        }
        self.touch(&meta.digest, meta.size);
        if let Err(error) = self.write_records(primary, request, meta) {
            self.write_failed(&error);
        }
        self.evict_if_needed();
    }

    /// Replaces the metadata of a stored variant (after a 304).
    pub fn update(&self, primary: &Key, request: &HeaderMap, meta: &Meta) {
        if let Err(error) = self.write_records(primary, request, meta) {
            self.write_failed(&error);
        }
    }

    /// Forgets every variant of a primary key.
    pub fn remove(&self, primary: &Key) {
        let _ = fs::remove_file(fan_out(&self.config.dir, "vary", &primary.to_hex()));
    }

    /// Purges every stored record that `matches` selects, durably: hard
    /// removes the record, soft rewrites it stale. Walks the metadata files
    /// (one read per record). Returns how many were purged.
    pub fn purge(&self, matches: &dyn Fn(&Meta) -> bool, soft: bool) -> u64 {
        let mut records = Vec::new();
        walk(&self.config.dir.join("meta"), &mut |path, _| records.push(path.to_path_buf()));
        let mut purged = 0;
        for path in records {
            let Some(meta) = fs::read(&path).ok().and_then(|bytes| codec::decode_meta(&bytes)) else { continue };
            if !matches(&meta) {
                continue;
            }
            let done = if soft {
                self.write_atomic(&path, &codec::encode_meta(&meta.soft_purged())).is_ok()
            } else {
                fs::remove_file(&path).is_ok()
            };
            purged += u64::from(done);
        }
        purged
    }

    fn write_records(&self, primary: &Key, request: &HeaderMap, meta: &Meta) -> io::Result<()> {
        let root = &self.config.dir;
        let vary: &[HeaderName] = &meta.vary;
        let variant = primary.variant(vary, request);
        self.write_atomic(&fan_out(root, "meta", &variant.to_hex()), &codec::encode_meta(meta))?;
        self.write_atomic(&fan_out(root, "vary", &primary.to_hex()), &codec::encode_vary(vary))?;
        self.records_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let tmp = self.config.dir.join("tmp").join(name);
        let result = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            if self.config.fsync == FsyncPolicy::Always {
                file.sync_all()?;
            }
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_failed(&self, error: &io::Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        // ENOSPC or EDQUOT: stop admitting, keep serving what is there.
        if matches!(error.raw_os_error(), Some(28) | Some(122)) {
            self.full.store(true, Ordering::Relaxed);
        }
        tracing_free_warn(error);
    }

    /// Marks a body as just used, accounting for it if it is new to the index.
    fn touch(&self, digest: &Digest, size: u64) {
        let mut index = self.lock();
        index.tick += 1;
        let tick = index.tick;
        let entry = index.blobs.entry(*digest).or_insert_with(|| {
            self.used.fetch_add(size, Ordering::Relaxed);
            (size, 0)
        });
        entry.1 = tick;
    }

    fn forget(&self, digest: &Digest) {
        if let Some((size, _)) = self.lock().blobs.remove(digest) {
            self.used.fetch_sub(size.min(self.used.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
    }

    fn quarantine(&self, path: &Path) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let target = self.config.dir.join("quarantine").join(name);
        if fs::rename(path, &target).is_err() {
            let _ = fs::remove_file(path);
        }
    }

    /// Removes least recently used bodies until usage is under the low-water
    /// mark; clears the full flag once there is room again.
    fn evict_if_needed(&self) {
        let limit = self.config.max_size;
        if self.used.load(Ordering::Relaxed) <= limit {
            self.full.store(false, Ordering::Relaxed);
            return;
        }
        let target = limit / 100 * LOW_WATER_PERCENT;
        let mut victims = {
            let index = self.lock();
            let mut all: Vec<(u64, Digest, u64)> = index.blobs.iter().map(|(d, (size, t))| (*t, *d, *size)).collect();
            all.sort_unstable_by_key(|(t, _, _)| *t);
            all
        }
        .into_iter();
        while self.used.load(Ordering::Relaxed) > target {
            let Some((_, digest, _)) = victims.next() else { break };
            let _ = fs::remove_file(fan_out(&self.config.dir, "blobs", &digest.to_hex()));
            self.forget(&digest);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.full.store(self.used.load(Ordering::Relaxed) > limit, Ordering::Relaxed);
    }

    pub fn stats(&self) -> DiskStats {
        DiskStats {
            records_written: self.records_written.load(Ordering::Relaxed),
            blobs: self.lock().blobs.len() as u64,
            bytes: self.used.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            scanned: self.scanned.load(Ordering::Relaxed),
        }
    }

    /// The path of a body file (tests corrupt it on purpose).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        fan_out(&self.config.dir, "blobs", &digest.to_hex())
    }
}

/// The cache crate logs nothing itself; errors surface through counters.
fn tracing_free_warn(_error: &io::Error) {}

fn walk(dir: &Path, found: &mut dyn FnMut(&Path, u64)) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(&entry.path(), found);
        } else if let Ok(meta) = entry.metadata() {
            found(&entry.path(), meta.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, Exchange};
    use http::{HeaderValue, StatusCode};
    use std::time::{Duration, UNIX_EPOCH};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("holdfast-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn tier(name: &str, max_size: u64) -> DiskTier {
        DiskTier::open(DiskConfig { dir: temp_dir(name), max_size, fsync: FsyncPolicy::Never }).unwrap()
    }

    fn meta_for(url: &str, body: &[u8]) -> Meta {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=600"));
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let exchange = Exchange { request_time: now, response_time: now };
        let storable = policy::evaluate(StatusCode::OK, &headers, exchange).unwrap();
        Meta::new(url.into(), StatusCode::OK, headers, storable, exchange, Digest::of(body), body.len() as u64)
    }

    #[test]
    fn stored_objects_survive_reopening() {
        let disk = tier("reopen", 1 << 30);
        let key = Key::primary("GET", "http", "h", "/a");
        let request = HeaderMap::new();
        disk.insert(&key, &request, &meta_for("/a", b"hello"), b"hello");
        let dir = disk.dir().to_path_buf();
        drop(disk);
        let reopened = DiskTier::open(DiskConfig { dir, max_size: 1 << 30, fsync: FsyncPolicy::Never }).unwrap();
        let (meta, body) = reopened.lookup(&key, &request).unwrap();
        assert_eq!((&body[..], meta.url.as_str()), (&b"hello"[..], "/a"));
        reopened.scan();
        assert_eq!((reopened.stats().blobs, reopened.stats().bytes), (1, 5));
    }

    #[test]
    fn a_corrupted_body_is_quarantined_and_never_returned() {
        let disk = tier("corrupt", 1 << 30);
        let key = Key::primary("GET", "http", "h", "/c");
        let request = HeaderMap::new();
        let meta = meta_for("/c", b"good bytes");
        disk.insert(&key, &request, &meta, b"good bytes");
        fs::write(disk.blob_path(&meta.digest), b"evil bytes").unwrap();
        assert!(disk.lookup(&key, &request).is_none());
        assert_eq!(disk.stats().corrupt, 1);
        assert!(!disk.blob_path(&meta.digest).exists());
        assert!(disk.dir().join("quarantine").join(meta.digest.to_hex()).exists());
    }

    #[test]
    fn a_torn_record_is_a_miss() {
        let disk = tier("torn", 1 << 30);
        let key = Key::primary("GET", "http", "h", "/t");
        let request = HeaderMap::new();
        let meta = meta_for("/t", b"x");
        disk.insert(&key, &request, &meta, b"x");
        let meta_path = fan_out(disk.dir(), "meta", &key.variant(&[], &request).to_hex());
        let bytes = fs::read(&meta_path).unwrap();
        fs::write(&meta_path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(disk.lookup(&key, &request).is_none());
        assert_eq!(disk.stats().corrupt, 1);
    }

    #[test]
    fn least_recently_used_bodies_are_evicted_at_the_limit() {
        let disk = tier("evict", 100);
        let request = HeaderMap::new();
        let keys: Vec<Key> = (0..5).map(|i| Key::primary("GET", "http", "h", &format!("/{i}"))).collect();
        for (i, key) in keys.iter().enumerate() {
            let body = vec![i as u8; 30];
            disk.insert(key, &request, &meta_for(&format!("/{i}"), &body), &body);
            if i == 2 {
                // Use the first object again so it outlives 1 and 2.
                assert!(disk.lookup(&keys[0], &request).is_some());
            }
        }
        let stats = disk.stats();
        assert!(stats.bytes <= 100, "{stats:?}");
        assert!(stats.evictions >= 2, "{stats:?}");
        assert!(disk.lookup(&keys[0], &request).is_some(), "recently used survives");
        assert!(disk.lookup(&keys[1], &request).is_none(), "least recently used went first");
        assert!(disk.lookup(&keys[4], &request).is_some());
    }

    #[test]
    fn identical_bodies_share_one_file() {
        let disk = tier("dedup", 1 << 30);
        let request = HeaderMap::new();
        for path in ["/v1/app.js", "/v2/app.js"] {
            let key = Key::primary("GET", "http", "h", path);
            disk.insert(&key, &request, &meta_for(path, b"same"), b"same");
        }
        assert_eq!((disk.stats().blobs, disk.stats().bytes), (1, 4));
    }
}
