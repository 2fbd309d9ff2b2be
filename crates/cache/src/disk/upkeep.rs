//! Keeping the tier within its budgets and honest: the background scan
//! that rebuilds the accounting, eviction, and quarantine of files that
//! failed verification.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::files::{self, prefix};
use super::record::{self, Record};
use super::{DiskTier, LOW_WATER_PERCENT, QUARANTINE_KEPT};
use crate::key::Digest;

/// Files in tmp/ (or unused bodies) older than this belong to no write in
/// progress, whichever process made them.
const ABANDONED_AFTER_SECS: u64 = 60;

impl DiskTier {
    /// Walks the tier to rebuild its accounting and eviction order, removes
    /// bodies no record uses and a previous format's files. Runs in the
    /// background after start; lookups do not wait.
    pub fn scan(&self) {
        // Format 1 (a cache: starting cold is safe).
        for old in ["blobs", "meta", "vary", "tmp", "quarantine"] {
            let _ = fs::remove_dir_all(self.config.dir.join(old));
        }
        let mut found = Vec::new();
        files::walk(&self.root.join("records"), &mut |path, name, metadata| {
            found.push((path.to_path_buf(), files::parse_name(name), files::allocated(metadata)));
        });
        for (path, name, disk_bytes) in found {
            let Some(name) = name else { continue };
            match fs::read(&path).ok().and_then(|bytes| record::decode(&bytes)) {
                Some(Record::Response { meta, .. }) => {
                    self.lock().put_record(name, Some(prefix(meta.digest.as_bytes())), disk_bytes, false);
                }
                Some(Record::Vary { .. }) => {
                    self.lock().put_record(name, None, disk_bytes, false);
                }
                None if path.exists() => self.quarantine(&path),
                None => {}
            }
        }
        let mut blobs = Vec::new();
        files::walk(&self.root.join("blobs"), &mut |path, name, metadata| {
            blobs.push((path.to_path_buf(), files::parse_name(name), files::allocated(metadata), abandoned(metadata)));
        });
        let mut old = std::collections::HashMap::new();
        for (path, name, disk_bytes, abandoned) in blobs {
            let Some(name) = name else { continue };
            self.lock().add_blob(name, disk_bytes);
            if abandoned {
                old.insert(name, path);
            }
        }
        // Bodies no record uses, written more than a minute ago (not by a
        // write in progress in this or another process).
        let unused = self.lock().unused_blobs();
        for blob in unused {
            if let Some(path) = old.get(&blob) {
                self.lock().remove_blob(blob);
                let _ = fs::remove_file(path);
            }
        }
        // Release: whoever sees `scanned` sees the index the scan built.
        self.scanned.store(true, Ordering::Release);
        self.evict_if_needed();
    }

    pub(super) fn write_failed(&self, error: &io::Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        // ENOSPC or EDQUOT: stop admitting, make room, keep serving.
        if matches!(error.raw_os_error(), Some(28) | Some(122)) {
            self.full.store(true, Ordering::Relaxed);
            let limit = self.lock().bytes().min(self.config.max_size);
            self.evict_to(limit / 100 * LOW_WATER_PERCENT, self.config.max_files / 100 * LOW_WATER_PERCENT);
        }
    }

    /// Quarantines a body that failed verification and forgets it.
    pub fn quarantine_body(&self, digest: &Digest) {
        let blob = prefix(digest.as_bytes());
        self.quarantine(&self.blob_path_of(blob));
        self.lock().remove_blob(blob);
    }

    /// Moves a file that failed verification aside, for inspection; the
    /// most recent [`QUARANTINE_KEPT`] are kept, so a failing disk cannot
    /// fill the volume with them.
    pub(super) fn quarantine(&self, path: &Path) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let dir = self.root.join("quarantine");
        if fs::rename(path, dir.join(name)).is_err() {
            let _ = fs::remove_file(path);
        }
        let mut kept = Vec::new();
        files::walk(&dir, &mut |path, _, metadata| kept.push((metadata.modified().ok(), path.to_path_buf())));
        if kept.len() > QUARANTINE_KEPT {
            kept.sort();
            for (_, path) in &kept[..kept.len() - QUARANTINE_KEPT] {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// Evicts down to the low-water marks once a budget is exceeded.
    pub(super) fn evict_if_needed(&self) {
        let (bytes, files) = {
            let index = self.lock();
            (index.bytes(), index.files())
        };
        if bytes > self.config.max_size || files > self.config.max_files {
            self.evict_to(
                self.config.max_size / 100 * LOW_WATER_PERCENT,
                self.config.max_files / 100 * LOW_WATER_PERCENT,
            );
        }
    }

    fn evict_to(&self, bytes: u64, files: u64) {
        let victims = self.lock().choose_victims(bytes, files);
        self.evictions.fetch_add(victims.records.len() as u64, Ordering::Relaxed);
        for record in victims.records {
            let _ = fs::remove_file(self.record_path(record));
        }
        for blob in victims.blobs {
            let _ = fs::remove_file(self.blob_path_of(blob));
        }
    }
}

pub(super) fn abandoned(metadata: &fs::Metadata) -> bool {
    let age = metadata.modified().ok().and_then(|m| m.elapsed().ok());
    age.is_some_and(|age| age.as_secs() > ABANDONED_AFTER_SECS)
}
