//! Bodies as read back from disk: small ones whole, large ones chunk by
//! chunk, each chunk verified against its digest before a byte of it is
//! handed out.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::record::CHUNK_SIZE;
use crate::key::Digest;
use crate::meta::Meta;

/// A stored body as read from disk.
#[derive(Debug)]
pub enum DiskBody {
    /// Read and verified whole.
    Whole(Bytes),
    /// Verified chunk by chunk as it is read.
    Chunked(ChunkedBody),
}

/// A response found on disk.
#[derive(Debug)]
pub struct DiskHit {
    pub meta: Meta,
    pub body: DiskBody,
}

/// A large body, read and verified one chunk at a time: no byte is handed
/// out before the chunk it belongs to matched its digest. Cloning gives an
/// independent reader from the start (the file is opened at the first read).
#[derive(Debug)]
pub struct ChunkedBody {
    path: PathBuf,
    file: Option<fs::File>,
    digests: Arc<[Digest]>,
    next: usize,
    size: u64,
    digest: Digest,
}

impl Clone for ChunkedBody {
    fn clone(&self) -> Self {
        ChunkedBody {
            path: self.path.clone(),
            file: None,
            digests: Arc::clone(&self.digests),
            next: 0,
            size: self.size,
            digest: self.digest,
        }
    }
}

/// A chunk that did not match its digest: the body file is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("stored body {0} failed verification")]
pub struct CorruptBody(pub Digest);

impl ChunkedBody {
    /// A reader of the body in `file` (already open, at `path`), whose
    /// chunks have `digests` and whose whole has `digest`.
    pub(super) fn new(path: PathBuf, file: fs::File, digests: Arc<[Digest]>, size: u64, digest: Digest) -> Self {
        ChunkedBody { path, file: Some(file), digests, next: 0, size, digest }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The body's digest (to quarantine it with [`DiskTier::quarantine_body`]).
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Starts reading at the chunk that holds byte `offset` (for ranges);
    /// returns where that chunk starts.
    pub fn skip_to(&mut self, offset: u64) -> u64 {
        self.next = (offset / CHUNK_SIZE) as usize;
        self.next as u64 * CHUNK_SIZE
    }

    /// The next verified chunk; `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Result<Bytes, CorruptBody>> {
        let expected = *self.digests.get(self.next)?;
        let start = self.next as u64 * CHUNK_SIZE;
        let len = (self.size - start).min(CHUNK_SIZE) as usize;
        let mut buf = vec![0u8; len];
        let file = match &mut self.file {
            Some(file) => Ok(file),
            None => fs::File::open(&self.path).map(|file| self.file.insert(file)),
        };
        let read = file.and_then(|file| file.seek(SeekFrom::Start(start)).and_then(|_| file.read_exact(&mut buf)));
        self.next += 1;
        if read.is_err() || Digest::of(&buf) != expected {
            self.next = self.digests.len();
            return Some(Err(CorruptBody(self.digest)));
        }
        Some(Ok(Bytes::from(buf)))
    }
}
