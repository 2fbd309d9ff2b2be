use super::*;
use crate::policy::{self, Exchange};
use http::{HeaderValue, StatusCode};
use std::time::{Duration, UNIX_EPOCH};

/// A fresh directory for one test, removed when the test ends (declare it
/// before the tiers that use it, so they close first).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("holdfast-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Scratch(dir)
    }

    fn tier(&self, max_size: u64) -> DiskTier {
        DiskTier::open(DiskConfig::new(self.0.clone(), max_size)).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn meta_with(url: &str, body: &[u8], pairs: &[(&'static str, &'static str)]) -> Meta {
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("max-age=600"));
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let exchange = Exchange { request_time: now, response_time: now };
    let storable = policy::evaluate(StatusCode::OK, &headers, exchange).unwrap();
    Meta::new(url.into(), StatusCode::OK, headers, storable, exchange, Digest::of(body), body.len() as u64)
}

fn meta_for(url: &str, body: &[u8]) -> Meta {
    meta_with(url, body, &[])
}

fn body_of(disk: &DiskTier, key: &Key, request: &HeaderMap) -> Option<Bytes> {
    match disk.lookup(key, request, u64::MAX)?.body {
        DiskBody::Whole(bytes) => Some(bytes),
        DiskBody::Chunked(_) => None,
    }
}

#[test]
fn stored_objects_survive_reopening() {
    let scratch = Scratch::new("reopen");
    let disk = scratch.tier(1 << 30);
    let key = Key::primary("GET", "http", "h", "/a");
    let request = HeaderMap::new();
    disk.insert(&key, &request, &meta_for("/a", b"hello"), b"hello");
    let dir = disk.dir().to_path_buf();
    drop(disk);
    let reopened = DiskTier::open(DiskConfig::new(dir, 1 << 30)).unwrap();
    let hit = reopened.lookup(&key, &request, u64::MAX).unwrap();
    assert_eq!(hit.meta.url, "/a");
    assert!(matches!(hit.body, DiskBody::Whole(ref b) if &b[..] == b"hello"));
    reopened.scan();
    let stats = reopened.stats();
    assert_eq!((stats.blobs, stats.files), (1, 2), "one body, one record");
    assert!(stats.bytes >= 2 * 4096, "allocated blocks are counted: {stats:?}");
}

#[test]
fn a_corrupted_body_is_quarantined_and_never_returned() {
    let scratch = Scratch::new("corrupt");
    let disk = scratch.tier(1 << 30);
    let key = Key::primary("GET", "http", "h", "/c");
    let request = HeaderMap::new();
    let meta = meta_for("/c", b"good bytes");
    disk.insert(&key, &request, &meta, b"good bytes");
    fs::write(disk.blob_path(&meta.digest), b"evil bytes").unwrap();
    assert!(disk.lookup(&key, &request, u64::MAX).is_none());
    assert_eq!(disk.stats().corrupt, 1);
    assert!(!disk.blob_path(&meta.digest).exists());
}

#[test]
fn a_torn_record_is_a_miss() {
    let scratch = Scratch::new("torn");
    let disk = scratch.tier(1 << 30);
    let key = Key::primary("GET", "http", "h", "/t");
    let request = HeaderMap::new();
    disk.insert(&key, &request, &meta_for("/t", b"x"), b"x");
    let path = disk.record_path(prefix(key.as_bytes()));
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(disk.lookup(&key, &request, u64::MAX).is_none());
    assert_eq!(disk.stats().corrupt, 1);
}

/// A record file copied over another key's name (two processes, a bad
/// restore) never answers for that key.
#[test]
fn a_record_answers_only_for_its_own_key() {
    let scratch = Scratch::new("bound");
    let disk = scratch.tier(1 << 30);
    let request = HeaderMap::new();
    let (a, b) = (Key::primary("GET", "http", "h", "/a"), Key::primary("GET", "http", "h", "/b"));
    disk.insert(&a, &request, &meta_for("/a", b"for a"), b"for a");
    fs::copy(disk.record_path(prefix(a.as_bytes())), disk.record_path(prefix(b.as_bytes()))).unwrap();
    assert!(disk.lookup(&b, &request, u64::MAX).is_none(), "a's record must not answer for b");
    assert_eq!(body_of(&disk, &a, &request).as_deref(), Some(&b"for a"[..]));
}

#[test]
fn a_body_whose_file_vanished_is_stored_again() {
    let scratch = Scratch::new("vanished");
    let disk = scratch.tier(1 << 30);
    let request = HeaderMap::new();
    let key = Key::primary("GET", "http", "h", "/v");
    let meta = meta_for("/v", b"body");
    disk.insert(&key, &request, &meta, b"body");
    fs::remove_file(disk.blob_path(&meta.digest)).unwrap();
    assert!(disk.lookup(&key, &request, u64::MAX).is_none());
    disk.insert(&key, &request, &meta, b"body");
    assert!(disk.blob_path(&meta.digest).exists(), "the index did not claim the body was still there");
    assert_eq!(body_of(&disk, &key, &request).as_deref(), Some(&b"body"[..]));
}

#[test]
fn least_recently_used_records_are_evicted_with_their_bodies() {
    // Each object takes a record and a body of one 4 KiB block: room for 4.
    let scratch = Scratch::new("evict");
    let disk = scratch.tier(8 * 4096);
    let request = HeaderMap::new();
    let keys: Vec<Key> = (0..6).map(|i| Key::primary("GET", "http", "h", &format!("/{i}"))).collect();
    for (i, key) in keys.iter().enumerate() {
        let body = vec![i as u8; 30];
        disk.insert(key, &request, &meta_for(&format!("/{i}"), &body), &body);
        if i == 2 {
            assert!(body_of(&disk, &keys[0], &request).is_some(), "use the first object again");
        }
    }
    let stats = disk.stats();
    assert!(stats.bytes <= 8 * 4096, "{stats:?}");
    assert!(stats.evictions >= 2, "{stats:?}");
    assert!(body_of(&disk, &keys[0], &request).is_some(), "recently used survives");
    assert!(body_of(&disk, &keys[1], &request).is_none(), "least recently used went first");
    assert!(!disk.blob_path(&Digest::of(&[1u8; 30])).exists(), "its body went with it");
    assert!(body_of(&disk, &keys[5], &request).is_some());
}

/// A key flood: thousands of URLs for one body fill the budget with
/// records, which are counted and evicted like bodies.
#[test]
fn a_key_flood_stays_within_the_byte_and_file_budgets() {
    let scratch = Scratch::new("flood");
    let disk = DiskTier::open(DiskConfig { max_files: 100, ..DiskConfig::new(scratch.0.clone(), 64 * 4096) }).unwrap();
    let request = HeaderMap::new();
    for i in 0..500 {
        let url = format!("/same?v={i}");
        let key = Key::primary("GET", "http", "h", &url);
        disk.insert(&key, &request, &meta_for(&url, b"one body"), b"one body");
    }
    let stats = disk.stats();
    assert!(stats.bytes <= 64 * 4096 && stats.files <= 100, "{stats:?}");
    assert_eq!(stats.blobs, 1);
    let mut on_disk = 0;
    files::walk(&disk.root.join("records"), &mut |_, _, _| on_disk += 1);
    files::walk(&disk.root.join("blobs"), &mut |_, _, _| on_disk += 1);
    assert_eq!(on_disk, stats.files, "the index agrees with the files");
}

#[test]
fn identical_bodies_share_one_file() {
    let scratch = Scratch::new("dedup");
    let disk = scratch.tier(1 << 30);
    let request = HeaderMap::new();
    for path in ["/v1/app.js", "/v2/app.js"] {
        let key = Key::primary("GET", "http", "h", path);
        disk.insert(&key, &request, &meta_for(path, b"same"), b"same");
    }
    assert_eq!((disk.stats().blobs, disk.stats().files), (1, 3));
}

#[test]
fn variants_live_under_their_own_records() {
    let scratch = Scratch::new("vary");
    let disk = scratch.tier(1 << 30);
    let key = Key::primary("GET", "http", "h", "/v");
    let vary = [("vary", "accept-encoding")];
    let mut br = HeaderMap::new();
    br.insert("accept-encoding", HeaderValue::from_static("br"));
    let mut gzip = HeaderMap::new();
    gzip.insert("accept-encoding", HeaderValue::from_static("gzip"));
    disk.insert(&key, &br, &meta_with("/v", b"brotli", &vary), b"brotli");
    disk.insert(&key, &gzip, &meta_with("/v", b"gzipped", &vary), b"gzipped");
    assert_eq!(body_of(&disk, &key, &br).as_deref(), Some(&b"brotli"[..]));
    assert_eq!(body_of(&disk, &key, &gzip).as_deref(), Some(&b"gzipped"[..]));
    assert!(body_of(&disk, &key, &HeaderMap::new()).is_none());
}

#[test]
fn a_soft_purge_survives_reopening() {
    let scratch = Scratch::new("soft");
    let disk = scratch.tier(1 << 30);
    let key = Key::primary("GET", "http", "h", "/s");
    let request = HeaderMap::new();
    let meta = meta_with("/s", b"s", &[("cache-control", "max-age=600, immutable, stale-while-revalidate=60")]);
    disk.insert(&key, &request, &meta, b"s");
    assert_eq!(disk.purge(&|m| m.url == "/s", true), 1);
    let dir = disk.dir().to_path_buf();
    drop(disk);
    let reopened = DiskTier::open(DiskConfig::new(dir, 1 << 30)).unwrap();
    let hit = reopened.lookup(&key, &request, u64::MAX).unwrap();
    assert!(hit.meta.purged);
    assert_eq!(hit.meta.freshness_lifetime, Duration::ZERO);
    assert!(!hit.meta.directives.immutable && hit.meta.directives.stale_while_revalidate.is_none());
}

#[test]
fn large_bodies_are_streamed_and_verified_per_chunk() {
    let scratch = Scratch::new("chunks");
    let disk = scratch.tier(1 << 30);
    let key = Key::primary("GET", "http", "h", "/big");
    let request = HeaderMap::new();
    let body: Vec<u8> = (0..(CHUNK_SIZE as usize * 3 + 100)).map(|i| (i % 251) as u8).collect();
    disk.insert(&key, &request, &meta_for("/big", &body), &body);
    let Some(DiskHit { body: DiskBody::Chunked(mut chunks), .. }) = disk.lookup(&key, &request, CHUNK_SIZE) else {
        panic!("a chunked body");
    };
    let mut read = Vec::new();
    while let Some(chunk) = chunks.next_chunk() {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(read, body);
    // One flipped byte in the third chunk: the first two arrive, the third
    // is refused, nothing after it is read.
    let path = disk.blob_path(&Digest::of(&body));
    let mut bytes = fs::read(&path).unwrap();
    bytes[CHUNK_SIZE as usize * 2 + 5] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let Some(DiskHit { body: DiskBody::Chunked(mut chunks), .. }) = disk.lookup(&key, &request, CHUNK_SIZE) else {
        panic!("a chunked body");
    };
    assert!(chunks.next_chunk().unwrap().is_ok());
    assert!(chunks.next_chunk().unwrap().is_ok());
    assert!(chunks.next_chunk().unwrap().is_err());
    assert!(chunks.next_chunk().is_none());
}

#[test]
fn a_full_disk_recovers_without_a_restart() {
    let scratch = Scratch::new("full");
    let disk = scratch.tier(1 << 30);
    let request = HeaderMap::new();
    disk.write_failed(&io::Error::from_raw_os_error(28));
    assert!(disk.stats().full);
    // Admission retries now and then; the first write that succeeds resumes it.
    for i in 0..=FULL_RETRY_EVERY {
        let url = format!("/f{i}");
        let key = Key::primary("GET", "http", "h", &url);
        disk.insert(&key, &request, &meta_for(&url, url.as_bytes()), url.as_bytes());
    }
    assert!(!disk.stats().full);
    let key = Key::primary("GET", "http", "h", "/after");
    disk.insert(&key, &request, &meta_for("/after", b"after"), b"after");
    assert_eq!(body_of(&disk, &key, &request).as_deref(), Some(&b"after"[..]));
}

/// Two processes sharing the directory (an upgrade) write at once: names
/// of temporary files never collide, every record stays readable.
#[test]
fn two_writers_sharing_a_directory_never_collide() {
    let scratch = Scratch::new("shared");
    let dir = scratch.0.clone();
    let (one, two) = (
        std::sync::Arc::new(DiskTier::open(DiskConfig::new(dir.clone(), 1 << 30)).unwrap()),
        std::sync::Arc::new(DiskTier::open(DiskConfig::new(dir, 1 << 30)).unwrap()),
    );
    let writers: Vec<_> = [one.clone(), two.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, disk)| {
            std::thread::spawn(move || {
                for i in 0..200 {
                    let url = format!("/w{w}/{i}");
                    let key = Key::primary("GET", "http", "h", &url);
                    disk.insert(&key, &HeaderMap::new(), &meta_for(&url, url.as_bytes()), url.as_bytes());
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for w in 0..2 {
        for i in 0..200 {
            let url = format!("/w{w}/{i}");
            let key = Key::primary("GET", "http", "h", &url);
            assert_eq!(body_of(&one, &key, &HeaderMap::new()).as_deref(), Some(url.as_bytes()), "{url}");
        }
    }
    assert_eq!(one.stats().corrupt + two.stats().corrupt, 0);
}

/// A cold miss skips the disk only when the index knows every file: before
/// the scan nothing is ruled out, after it only keys with no record.
#[test]
fn only_keys_with_no_record_after_the_scan_are_surely_absent() {
    let scratch = Scratch::new("absent");
    let disk = scratch.tier(1 << 30);
    let (stored, vary, never) = (
        Key::primary("GET", "http", "h", "/stored"),
        Key::primary("GET", "http", "h", "/vary"),
        Key::primary("GET", "http", "h", "/never"),
    );
    let request = HeaderMap::new();
    disk.insert(&stored, &request, &meta_for("/stored", b"s"), b"s");
    let dir = disk.dir().to_path_buf();
    drop(disk);

    let reopened = DiskTier::open(DiskConfig::new(dir, 1 << 30)).unwrap();
    assert!(!reopened.surely_absent(&never), "before the scan the index knows nothing");
    reopened.scan();
    assert!(reopened.surely_absent(&never));
    assert!(!reopened.surely_absent(&stored), "found by the scan");
    reopened.insert(&vary, &request, &meta_with("/vary", b"v", &[("vary", "accept-encoding")]), b"v");
    assert!(!reopened.surely_absent(&vary), "written since: its Vary record is under the primary key");
    assert!(body_of(&reopened, &vary, &request).is_some());
    reopened.remove(&stored);
    assert!(reopened.surely_absent(&stored), "removed");
    // Eviction holds the index while it sorts every record: the async
    // threads asking must not wait for it, only lose the shortcut.
    let held = reopened.lock();
    assert!(!reopened.surely_absent(&never), "a busy index is not waited for");
    drop(held);
    assert!(reopened.surely_absent(&never));
}
