//! What the disk tier holds, in memory: every record and body file with
//! the bytes it takes on disk, the records that use each body, and when
//! each record was last used. It is rebuilt by a scan at start (lookups do
//! not wait for it) and kept in agreement with the files as they are
//! written, read, found missing and removed.
//!
//! About 64 bytes of memory per file on disk.

use std::collections::HashMap;

/// A record file: a stored response (with its body) or a Vary record.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordEntry {
    /// The body's digest prefix; `None` for a Vary record.
    pub blob: Option<u64>,
    pub disk_bytes: u64,
    pub last_use: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct BlobEntry {
    pub disk_bytes: u64,
    /// Records that use this body.
    pub records: u32,
}

/// What eviction removes: record files, then the body files no record
/// uses any more.
#[derive(Debug, Default)]
pub(super) struct Victims {
    pub records: Vec<u64>,
    pub blobs: Vec<u64>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    records: HashMap<u64, RecordEntry>,
    blobs: HashMap<u64, BlobEntry>,
    tick: u64,
    bytes: u64,
}

impl Index {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn files(&self) -> u64 {
        (self.records.len() + self.blobs.len()) as u64
    }

    pub fn blobs(&self) -> u64 {
        self.blobs.len() as u64
    }

    /// A body file exists with this size.
    pub fn add_blob(&mut self, blob: u64, disk_bytes: u64) {
        let entry = self.blobs.entry(blob).or_insert(BlobEntry { disk_bytes: 0, records: 0 });
        self.bytes = self.bytes - entry.disk_bytes + disk_bytes;
        entry.disk_bytes = disk_bytes;
    }

    /// A record file exists (new or rewritten); `fresh` marks it as just
    /// used, else it is the oldest (found by the scan). Returns the body
    /// the record used before, if no record uses it now (its file can go).
    pub fn put_record(&mut self, record: u64, blob: Option<u64>, disk_bytes: u64, fresh: bool) -> Option<u64> {
        self.tick += 1;
        let last_use = if fresh { self.tick } else { 0 };
        if let Some(blob) = blob {
            self.blobs.entry(blob).or_insert(BlobEntry { disk_bytes: 0, records: 0 }).records += 1;
        }
        self.bytes += disk_bytes;
        let old = self.records.insert(record, RecordEntry { blob, disk_bytes, last_use })?;
        self.bytes -= old.disk_bytes;
        self.unref(old.blob);
        old.blob.filter(|b| self.blobs.get(b).is_some_and(|e| e.records == 0))
    }

    fn unref(&mut self, blob: Option<u64>) {
        if let Some(entry) = blob.and_then(|b| self.blobs.get_mut(&b)) {
            entry.records = entry.records.saturating_sub(1);
        }
    }

    /// A lookup used this record.
    /// A record file with this name is known (written, read or scanned).
    pub fn has_record(&self, record: u64) -> bool {
        self.records.contains_key(&record)
    }

    pub fn touch(&mut self, record: u64) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.records.get_mut(&record) {
            entry.last_use = tick;
        }
    }

    /// The record file is gone. Returns the body it used if no other
    /// record uses that body any more (its file can go too).
    pub fn remove_record(&mut self, record: u64) -> Option<u64> {
        let old = self.records.remove(&record)?;
        self.bytes -= old.disk_bytes;
        self.unref(old.blob);
        old.blob.filter(|b| self.blobs.get(b).is_some_and(|e| e.records == 0))
    }

    /// The body file is gone (evicted, corrupt, or found missing).
    pub fn remove_blob(&mut self, blob: u64) {
        if let Some(old) = self.blobs.remove(&blob) {
            self.bytes -= old.disk_bytes;
        }
    }

    /// Bodies no record uses (orphans of a crash between two writes).
    pub fn unused_blobs(&self) -> Vec<u64> {
        self.blobs.iter().filter(|(_, e)| e.records == 0).map(|(b, _)| *b).collect()
    }

    /// Chooses least recently used records until the bytes and files they
    /// and their now unused bodies free bring both under the targets.
    pub fn choose_victims(&mut self, target_bytes: u64, target_files: u64) -> Victims {
        let mut victims = Victims::default();
        if self.bytes <= target_bytes && self.files() <= target_files {
            return victims;
        }
        let mut order: Vec<(u64, u64)> = self.records.iter().map(|(r, e)| (e.last_use, *r)).collect();
        order.sort_unstable();
        for (_, record) in order {
            if self.bytes <= target_bytes && self.files() <= target_files {
                break;
            }
            if let Some(blob) = self.remove_record(record) {
                self.remove_blob(blob);
                victims.blobs.push(blob);
            }
            victims.records.push(record);
        }
        victims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_counted_once_and_freed_with_their_last_record() {
        let mut index = Index::default();
        index.add_blob(7, 4096);
        index.put_record(1, Some(7), 4096, true);
        index.put_record(2, Some(7), 4096, true);
        assert_eq!((index.bytes(), index.files()), (3 * 4096, 3));
        assert_eq!(index.remove_record(1), None, "record 2 still uses the body");
        assert_eq!(index.remove_record(2), Some(7));
        index.remove_blob(7);
        assert_eq!((index.bytes(), index.files()), (0, 0));
    }

    #[test]
    fn eviction_takes_the_least_recently_used_and_counts_files() {
        let mut index = Index::default();
        for r in 1..=4 {
            index.add_blob(100 + r, 4096);
            index.put_record(r, Some(100 + r), 4096, true);
        }
        index.touch(1);
        let victims = index.choose_victims(u64::MAX, 4);
        assert_eq!(victims.records, vec![2, 3], "oldest first, the touched one kept");
        assert_eq!(victims.blobs, vec![102, 103]);
        assert_eq!(index.files(), 4);
    }

    #[test]
    fn a_rewritten_record_moves_its_reference() {
        let mut index = Index::default();
        index.add_blob(7, 10);
        index.add_blob(8, 10);
        index.put_record(1, Some(7), 5, true);
        assert_eq!(index.put_record(1, Some(8), 6, true), Some(7), "the old body is unused now");
        assert_eq!(index.unused_blobs(), vec![7]);
        assert_eq!(index.bytes(), 26);
    }
}
