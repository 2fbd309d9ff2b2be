//! The disk tier: bodies as files named by their BLAKE3 digest, one
//! checksummed record file per stored response (and per Vary record),
//! every file counted against the tier's byte and file budgets.
//!
//! ```text
//! DIR/v2/blobs/ab/<digest prefix>    body bytes, verified on read
//! DIR/v2/records/ab/<key prefix>     record (record.rs): a response, or the
//!                                    Vary names of a primary key
//! DIR/v2/tmp/                        writes in progress
//! DIR/v2/quarantine/                 files that failed verification
//! ```
//!
//! A response without `Vary` is one record under its primary key; a
//! response with `Vary` is a Vary record under the primary key and a
//! record under its variant key, as in the memory tier. Every record names
//! the keys it was stored under and is checked against the key it was
//! looked up by.
//!
//! Every file is written to a temporary file created exclusively and
//! renamed into place, so a kill at any moment leaves either the old file
//! or the new one; what a power loss could still tear fails its checksum or
//! digest and is quarantined, counted and refetched, never served. Nothing
//! is loaded at open: lookups read the files they need, so a node with any
//! number of objects serves at once. A background [`DiskTier::scan`]
//! rebuilds the accounting and the eviction order. Several processes may
//! share one directory (the old and new process of an upgrade).
//!
//! The budgets count what the files take on disk (allocated blocks: what
//! a volume's size limit measures), records and bodies alike; eviction
//! removes least recently used records and the bodies no record uses any
//! more. A full disk stops admission, eviction makes room, and admission
//! resumes by itself.
//!
//! All methods block: callers run them off the async worker threads.

mod body;
mod files;
mod index;
pub mod record;
mod upkeep;

pub use body::{ChunkedBody, CorruptBody, DiskBody, DiskHit};

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};

use bytes::Bytes;
use http::HeaderMap;

use crate::key::{Digest, Key};
use crate::meta::Meta;
use files::{TempNames, prefix};
use index::Index;
use record::{CHUNK_SIZE, Record};
use upkeep::abandoned;

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
    /// Bytes the tier's files may take on disk (allocated blocks).
    pub max_size: u64,
    /// Files the tier may hold (records and bodies).
    pub max_files: u64,
    pub fsync: FsyncPolicy,
}

impl DiskConfig {
    /// A tier of `max_size` bytes with the default file budget.
    pub fn new(dir: PathBuf, max_size: u64) -> DiskConfig {
        DiskConfig { dir, max_size, max_files: default_max_files(max_size), fsync: FsyncPolicy::Never }
    }
}

/// One file per 8 KiB of budget: a small object takes a record and a body
/// of 4 KiB each; plenty for larger ones, and bounded for inodes.
pub fn default_max_files(max_size: u64) -> u64 {
    (max_size / 8192).max(1024)
}

/// Disk-tier counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    /// Records written by this process (inserts, updates, soft purges).
    pub records_written: u64,
    pub blobs: u64,
    /// Bytes the tier's files take on disk.
    pub bytes: u64,
    pub files: u64,
    pub max_bytes: u64,
    pub max_files: u64,
    pub hits: u64,
    pub corrupt: u64,
    pub write_errors: u64,
    /// Records evicted to stay within the budgets.
    pub evictions: u64,
    pub full: bool,
    pub scanned: bool,
}

/// Files kept in quarantine.
pub const QUARANTINE_KEPT: usize = 8;
/// Eviction brings usage down to this share of the budgets, in batches.
const LOW_WATER_PERCENT: u64 = 90;
/// While the disk is full, one insert in this many tries anyway.
const FULL_RETRY_EVERY: u64 = 32;
/// The disk tier of one node.
pub struct DiskTier {
    config: DiskConfig,
    root: PathBuf,
    index: Mutex<Index>,
    names: TempNames,
    hits: AtomicU64,
    records_written: AtomicU64,
    corrupt: AtomicU64,
    write_errors: AtomicU64,
    evictions: AtomicU64,
    /// Admission is stopped while the disk is full.
    full: AtomicBool,
    skipped_while_full: AtomicU64,
    scanned: AtomicBool,
}

impl DiskTier {
    /// Opens (or creates) the directory. Writes abandoned in `tmp/` by a
    /// killed process are removed; nothing else is read.
    pub fn open(config: DiskConfig) -> io::Result<DiskTier> {
        let root = config.dir.join("v2");
        for kind in ["blobs", "records"] {
            for fan in 0..=255u8 {
                fs::create_dir_all(root.join(kind).join(format!("{fan:02x}")))?;
            }
        }
        fs::create_dir_all(root.join("quarantine"))?;
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)?;
        files::walk(&tmp, &mut |path, _, metadata| {
            if abandoned(metadata) {
                let _ = fs::remove_file(path);
            }
        });
        Ok(DiskTier {
            config,
            root,
            index: Mutex::new(Index::default()),
            names: TempNames::new(),
            hits: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            full: AtomicBool::new(false),
            skipped_while_full: AtomicU64::new(0),
            scanned: AtomicBool::new(false),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_path(&self, prefix: u64) -> PathBuf {
        files::path(&self.root, "records", prefix)
    }

    fn blob_path_of(&self, prefix: u64) -> PathBuf {
        files::path(&self.root, "blobs", prefix)
    }

    /// The path of a body file (tests corrupt it on purpose).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_path_of(prefix(digest.as_bytes()))
    }

    /// Whether a lookup of `primary` would find nothing, known without
    /// touching the disk: the scan has indexed the tier and no record file
    /// has this key's name. Saves a miss its file lookup and its trip to a
    /// blocking thread (most of a cold miss's cost). A record another
    /// process writes after the scan is not known here, so a node scans
    /// only once the old process of an upgrade is gone.
    ///
    /// Called on the async threads, so it never waits for the index: while
    /// eviction holds it (sorting every record) the answer is "not sure"
    /// and the lookup reads the disk as before.
    pub fn surely_absent(&self, primary: &Key) -> bool {
        if !self.scanned.load(Ordering::Acquire) {
            return false;
        }
        let index = match self.index.try_lock() {
            Ok(index) => index,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        !index.has_record(prefix(primary.as_bytes()))
    }

    /// Reads and verifies the stored response for a request (whose
    /// Accept-Encoding is already normalised). Bodies up to `whole_max`
    /// bytes are read and verified whole; larger ones come as a
    /// [`ChunkedBody`]. A record or body that fails verification is
    /// quarantined and reported as a miss.
    pub fn lookup(&self, primary: &Key, request: &HeaderMap, whole_max: u64) -> Option<DiskHit> {
        let (record_key, meta, chunks) = match self.read_record(primary)? {
            Record::Response { meta, chunks, .. } => (*primary, meta, chunks),
            Record::Vary { names, .. } => {
                let variant = primary.variant(&names, request);
                match self.read_record(&variant)? {
                    Record::Response { meta, chunks, .. } => (variant, meta, chunks),
                    Record::Vary { .. } => return None,
                }
            }
        };
        let record = prefix(record_key.as_bytes());
        let blob = prefix(meta.digest.as_bytes());
        let path = self.blob_path_of(blob);
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(_) => {
                // The body is gone (evicted by another process, removed by
                // hand): the record is useless, and the index forgets both.
                self.forget_record(record);
                self.lock().remove_blob(blob);
                return None;
            }
        };
        let size_ok = file.metadata().is_ok_and(|m| m.len() == meta.size);
        let chunked = meta.size > whole_max && !chunks.is_empty();
        let body = if !size_ok || (chunked && chunks.len() as u64 != meta.size.div_ceil(CHUNK_SIZE)) {
            None
        } else if chunked {
            Some(DiskBody::Chunked(ChunkedBody::new(path, file, chunks.into(), meta.size, meta.digest)))
        } else {
            let mut bytes = Vec::with_capacity(meta.size as usize);
            let read = (&file).read_to_end(&mut bytes);
            (read.is_ok() && Digest::of(&bytes) == meta.digest).then(|| DiskBody::Whole(Bytes::from(bytes)))
        };
        let Some(body) = body else {
            self.quarantine_body(&meta.digest);
            return None;
        };
        self.lock().touch(record);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(DiskHit { meta: *meta, body })
    }

    /// Reads the record stored under `key`; `None` if there is none, it is
    /// corrupt (quarantined) or it belongs to another key.
    fn read_record(&self, key: &Key) -> Option<Record> {
        let path = self.record_path(prefix(key.as_bytes()));
        let bytes = fs::read(&path).ok()?;
        let Some(record) = record::decode(&bytes) else {
            self.quarantine(&path);
            return None;
        };
        // Another key with the same file name: not ours, not corrupt.
        (record.key() == key).then_some(record)
    }

    /// Stores a complete response: the body (unless already there), then
    /// its Vary record, then its record, each by an atomic rename.
    pub fn insert(&self, primary: &Key, request: &HeaderMap, meta: &Meta, body: &[u8]) {
        if self.full.load(Ordering::Relaxed)
            && !self.skipped_while_full.fetch_add(1, Ordering::Relaxed).is_multiple_of(FULL_RETRY_EVERY)
        {
            return;
        }
        let blob = prefix(meta.digest.as_bytes());
        let path = self.blob_path_of(blob);
        // The file, not the index, says whether the body is there: another
        // process or an operator may have removed it.
        match fs::metadata(&path) {
            Ok(existing) if existing.len() == meta.size => self.lock().add_blob(blob, files::allocated(&existing)),
            _ => match files::write_atomic(&self.root, &self.names, self.config.fsync, &path, body) {
                Ok(disk_bytes) => self.lock().add_blob(blob, disk_bytes),
                Err(error) => return self.write_failed(&error),
            },
        }
        if let Err(error) = self.write_records(primary, request, meta, &record::chunk_digests(body)) {
            return self.write_failed(&error);
        }
        self.full.store(false, Ordering::Relaxed);
        self.evict_if_needed();
    }

    fn write_records(&self, primary: &Key, request: &HeaderMap, meta: &Meta, chunks: &[Digest]) -> io::Result<()> {
        if !meta.vary.is_empty() {
            let bytes = record::encode_vary(primary, &meta.vary);
            self.write_record(primary, None, &bytes)?;
        }
        let key = primary.record(&meta.vary, request);
        let bytes = record::encode_response(&key, primary, meta, chunks);
        self.write_record(&key, Some(prefix(meta.digest.as_bytes())), &bytes)?;
        self.records_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_record(&self, key: &Key, blob: Option<u64>, bytes: &[u8]) -> io::Result<()> {
        let record = prefix(key.as_bytes());
        let disk_bytes =
            files::write_atomic(&self.root, &self.names, self.config.fsync, &self.record_path(record), bytes)?;
        let mut index = self.lock();
        // A record that replaced one with another body may leave it unused.
        if let Some(unused) = index.put_record(record, blob, disk_bytes, true) {
            index.remove_blob(unused);
            drop(index);
            let _ = fs::remove_file(self.blob_path_of(unused));
        }
        Ok(())
    }

    /// Replaces the metadata of a stored variant (after a 304), keeping its
    /// body and chunk digests.
    pub fn update(&self, primary: &Key, request: &HeaderMap, meta: &Meta) {
        let key = primary.record(&meta.vary, request);
        let Some(Record::Response { meta: old, chunks, .. }) = self.read_record(&key) else { return };
        if old.digest != meta.digest {
            return;
        }
        let bytes = record::encode_response(&key, primary, meta, &chunks);
        match self.write_record(&key, Some(prefix(meta.digest.as_bytes())), &bytes) {
            Ok(()) => {
                self.records_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self.write_failed(&error),
        }
    }

    /// Forgets every variant of a primary key (its record or Vary record).
    pub fn remove(&self, primary: &Key) {
        self.forget_record(prefix(primary.as_bytes()));
    }

    /// Removes a record file and, if no other record uses its body, the body.
    fn forget_record(&self, record: u64) {
        let _ = fs::remove_file(self.record_path(record));
        let unused = self.lock().remove_record(record);
        if let Some(blob) = unused {
            self.lock().remove_blob(blob);
            let _ = fs::remove_file(self.blob_path_of(blob));
        }
    }

    /// Purges every stored response that `matches` selects, durably: hard
    /// removes the record, soft rewrites it stale. Walks the record files
    /// (one read per record). Returns how many were purged.
    pub fn purge(&self, matches: &dyn Fn(&Meta) -> bool, soft: bool) -> u64 {
        let mut paths = Vec::new();
        files::walk(&self.root.join("records"), &mut |path, name, _| {
            if let Some(name) = files::parse_name(name) {
                paths.push((path.to_path_buf(), name));
            }
        });
        let mut purged = 0;
        for (path, name) in paths {
            let Some(Record::Response { key, primary, meta, chunks }) =
                fs::read(&path).ok().and_then(|bytes| record::decode(&bytes))
            else {
                continue;
            };
            if !matches(&meta) {
                continue;
            }
            let done = if soft {
                let bytes = record::encode_response(&key, &primary, &meta.soft_purged(), &chunks);
                self.write_record(&key, Some(prefix(meta.digest.as_bytes())), &bytes).is_ok()
            } else {
                self.forget_record(name);
                true
            };
            purged += u64::from(done);
        }
        purged
    }

    pub fn stats(&self) -> DiskStats {
        let index = self.lock();
        DiskStats {
            records_written: self.records_written.load(Ordering::Relaxed),
            blobs: index.blobs(),
            bytes: index.bytes(),
            files: index.files(),
            max_bytes: self.config.max_size,
            max_files: self.config.max_files,
            hits: self.hits.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            scanned: self.scanned.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
