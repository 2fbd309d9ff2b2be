//! Paths and file operations of the disk tier: exclusive temporary files
//! renamed into place, allocated sizes, walks.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::FsyncPolicy;

/// File names are the first 8 bytes of a key or digest in hex: collisions
/// are harmless (every record carries its full keys and every body is
/// verified against its full digest on read) and 64 bits make them as rare
/// as a hardware fault.
pub(super) fn prefix(bytes: &[u8; 32]) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(prefix)
}

/// `ROOT/KIND/ab/<name>`: 256 directories per kind, created at open.
pub(super) fn path(root: &Path, kind: &str, prefix: u64) -> PathBuf {
    let name = format!("{prefix:016x}");
    root.join(kind).join(&name[..2]).join(name)
}

pub(super) fn parse_name(name: &str) -> Option<u64> {
    (name.len() == 16).then(|| u64::from_str_radix(name, 16).ok()).flatten()
}

/// Bytes a file takes on its filesystem (allocated blocks), which is what
/// a volume's size limit (an emptyDir's `sizeLimit`) measures.
pub(super) fn allocated(metadata: &fs::Metadata) -> u64 {
    metadata.blocks() * 512
}

/// Unique among processes sharing the directory (every container is pid 1):
/// a random part chosen at start, and a counter.
pub(super) struct TempNames {
    process: u64,
    next: AtomicU64,
}

impl TempNames {
    pub(super) fn new() -> TempNames {
        TempNames { process: fastrand::u64(..), next: AtomicU64::new(0) }
    }

    fn next(&self) -> String {
        format!("{:016x}-{}", self.process, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Writes `bytes` to `target` atomically: into a temporary file created
/// exclusively (never someone else's file), synced if asked, renamed into
/// place. Returns the bytes the file takes on disk.
pub(super) fn write_atomic(
    root: &Path,
    names: &TempNames,
    fsync: FsyncPolicy,
    target: &Path,
    bytes: &[u8],
) -> io::Result<u64> {
    let tmp = root.join("tmp").join(names.next());
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        if fsync == FsyncPolicy::Always {
            file.sync_all()?;
        }
        let size = allocated(&file.metadata()?);
        fs::rename(&tmp, target)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Calls `found` for every file under `dir` with its name and metadata.
pub(super) fn walk(dir: &Path, found: &mut dyn FnMut(&Path, &str, &fs::Metadata)) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(&entry.path(), found);
        } else if let Ok(metadata) = entry.metadata() {
            let name = entry.file_name();
            found(&entry.path(), &name.to_string_lossy(), &metadata);
        }
    }
}
