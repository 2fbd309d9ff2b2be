//! The on-disk encoding of records (format 2).
//!
//! `magic | kind | record key | primary key | payload | first 16 bytes of
//! BLAKE3(everything before)`. A record carries the keys it was stored
//! under, so a file read for one key can never answer for another (two
//! processes sharing a directory, a renamed or corrupted file). Fields are
//! length-prefixed; decoding checks every bound and the checksum, so a torn
//! or corrupted file is rejected, never half-read.
//!
//! A response record keeps what cannot be derived again from the stored
//! headers: freshness lifetime and age as computed when it was received,
//! whether it was soft-purged, and for bodies above [`CHUNK_SIZE`] the
//! BLAKE3 digest of every chunk, so a large body is streamed and verified
//! chunk by chunk instead of read whole first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::key::{Digest, Key};
use crate::meta::Meta;

const MAGIC: &[u8; 4] = b"HFR2";
const CHECKSUM_LEN: usize = 16;
const KIND_RESPONSE: u8 = 1;
const KIND_VARY: u8 = 2;
/// Bodies larger than this are verified per chunk of this size.
pub const CHUNK_SIZE: u64 = 1024 * 1024;
/// Bounds against corrupted counts (a record is a few KiB).
const MAX_FIELDS: u64 = 4096;
const MAX_CHUNKS: u64 = 1 << 22;

/// A decoded record.
#[derive(Debug, Clone)]
pub enum Record {
    Response { key: Key, primary: Key, meta: Box<Meta>, chunks: Vec<Digest> },
    Vary { key: Key, primary: Key, names: Vec<HeaderName> },
}

impl Record {
    pub fn key(&self) -> &Key {
        match self {
            Record::Response { key, .. } | Record::Vary { key, .. } => key,
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn seal(mut self) -> Vec<u8> {
        let checksum = blake3::hash(&self.0);
        self.0.extend_from_slice(&checksum.as_bytes()[..CHECKSUM_LEN]);
        self.0
    }
}

fn header(kind: u8, key: &Key, primary: &Key) -> Writer {
    let mut w = Writer(Vec::with_capacity(512));
    w.0.extend_from_slice(MAGIC);
    w.0.push(kind);
    w.0.extend_from_slice(key.as_bytes());
    w.0.extend_from_slice(primary.as_bytes());
    w
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Encodes a stored response under `key` (its record key) for `primary`.
pub fn encode_response(key: &Key, primary: &Key, meta: &Meta, chunks: &[Digest]) -> Vec<u8> {
    let mut w = header(KIND_RESPONSE, key, primary);
    w.bytes(meta.url.as_bytes());
    w.u64(u64::from(meta.status.as_u16()));
    w.u64(meta.headers.len() as u64);
    for (name, value) in meta.headers.iter() {
        w.bytes(name.as_str().as_bytes());
        w.bytes(value.as_bytes());
    }
    w.u64(millis(meta.freshness_lifetime));
    w.u64(millis(meta.corrected_initial_age));
    w.u64(millis(meta.stored_at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)));
    w.0.extend_from_slice(meta.digest.as_bytes());
    w.u64(meta.size);
    w.0.push(u8::from(meta.purged));
    w.u64(chunks.len() as u64);
    for chunk in chunks {
        w.0.extend_from_slice(chunk.as_bytes());
    }
    w.seal()
}

/// Encodes the Vary names recorded for a primary key.
pub fn encode_vary(primary: &Key, names: &[HeaderName]) -> Vec<u8> {
    let mut w = header(KIND_VARY, primary, primary);
    w.u64(names.len() as u64);
    for name in names {
        w.bytes(name.as_str().as_bytes());
    }
    w.seal()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn array(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
    fn millis(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(self.u64()?))
    }
}

/// Decodes a record; `None` for anything torn, corrupted or unknown.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    if bytes.len() < MAGIC.len() + 1 + 64 + CHECKSUM_LEN || &bytes[..4] != MAGIC {
        return None;
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(body).as_bytes()[..CHECKSUM_LEN] != *checksum {
        return None;
    }
    let mut r = Reader(&body[4..]);
    let kind = r.u8()?;
    let key = Key::from_bytes(r.array()?);
    let primary = Key::from_bytes(r.array()?);
    let record = match kind {
        KIND_RESPONSE => {
            let url = String::from_utf8(r.bytes()?.to_vec()).ok()?;
            let status = StatusCode::from_u16(u16::try_from(r.u64()?).ok()?).ok()?;
            let count = r.u64()?;
            if count > MAX_FIELDS {
                return None;
            }
            let mut headers = HeaderMap::with_capacity(count as usize);
            for _ in 0..count {
                let name = HeaderName::from_bytes(r.bytes()?).ok()?;
                let value = HeaderValue::from_bytes(r.bytes()?).ok()?;
                headers.append(name, value);
            }
            let freshness_lifetime = r.millis()?;
            let corrected_initial_age = r.millis()?;
            let stored_at = UNIX_EPOCH.checked_add(r.millis()?)?;
            let digest = Digest::from_bytes(r.array()?);
            let size = r.u64()?;
            let purged = r.u8()? == 1;
            let count = r.u64()?;
            if count > MAX_CHUNKS {
                return None;
            }
            let chunks = (0..count).map(|_| r.array().map(Digest::from_bytes)).collect::<Option<Vec<_>>>()?;
            let restored = Restored { url, status, headers, freshness_lifetime, corrected_initial_age, stored_at };
            let meta = restored.into_meta(digest, size, purged);
            Record::Response { key, primary, meta: Box::new(meta), chunks }
        }
        KIND_VARY => {
            let count = r.u64()?;
            if count > MAX_FIELDS {
                return None;
            }
            let names = (0..count).map(|_| HeaderName::from_bytes(r.bytes()?).ok()).collect::<Option<Vec<_>>>()?;
            // A Vary record is filed under its primary key; one that names
            // another key was not written by holdfast.
            if key != primary {
                return None;
            }
            Record::Vary { key, primary, names }
        }
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

/// The stored fields of a response record, before what is derived again.
struct Restored {
    url: String,
    status: StatusCode,
    headers: HeaderMap,
    freshness_lifetime: Duration,
    corrected_initial_age: Duration,
    stored_at: SystemTime,
}

impl Restored {
    fn into_meta(self, digest: Digest, size: u64, purged: bool) -> Meta {
        let meta = Meta::restore(
            self.url,
            self.status,
            self.headers,
            self.freshness_lifetime,
            self.corrected_initial_age,
            self.stored_at,
            digest,
            size,
        );
        // A soft purge's effect is not in the headers: apply it again.
        if purged { meta.soft_purged() } else { meta }
    }
}

/// The BLAKE3 digest of each [`CHUNK_SIZE`] chunk of a body larger than
/// one chunk (none for smaller bodies: they are verified whole).
pub fn chunk_digests(body: &[u8]) -> Vec<Digest> {
    if body.len() as u64 <= CHUNK_SIZE {
        return Vec::new();
    }
    body.chunks(CHUNK_SIZE as usize).map(Digest::of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, Exchange};

    fn sample() -> Meta {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("public, max-age=60, immutable"));
        headers.insert("vary", HeaderValue::from_static("accept-encoding"));
        headers.insert("surrogate-key", HeaderValue::from_static("a b"));
        headers.append("x-multi", HeaderValue::from_static("1"));
        headers.append("x-multi", HeaderValue::from_static("2"));
        let now = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let exchange = Exchange { request_time: now, response_time: now };
        let storable = policy::evaluate(StatusCode::OK, &headers, exchange).unwrap();
        Meta::new("https://h/a.js".into(), StatusCode::OK, headers, storable, exchange, Digest::of(b"body"), 4)
    }

    fn keys() -> (Key, Key) {
        let primary = Key::primary("GET", "https", "h", "/a.js");
        (primary.variant(&[HeaderName::from_static("accept-encoding")], &HeaderMap::new()), primary)
    }

    #[test]
    fn responses_round_trip_with_their_keys() {
        let (key, primary) = keys();
        let meta = sample();
        let chunks = vec![Digest::of(b"1"), Digest::of(b"2")];
        let Some(Record::Response { key: k, primary: p, meta: back, chunks: c }) =
            decode(&encode_response(&key, &primary, &meta, &chunks))
        else {
            panic!("a response record");
        };
        assert_eq!((k, p, c), (key, primary, chunks));
        assert_eq!(back.url, meta.url);
        assert_eq!(back.headers, meta.headers);
        assert_eq!(back.vary, meta.vary);
        assert_eq!(back.tags, meta.tags);
        assert_eq!(back.directives, meta.directives);
        assert_eq!(back.stored_at, meta.stored_at);
        assert_eq!(back.freshness_lifetime, meta.freshness_lifetime);
        assert_eq!((back.digest, back.size, back.purged), (meta.digest, meta.size, false));
    }

    #[test]
    fn a_soft_purge_survives_the_round_trip() {
        let (key, primary) = keys();
        let purged = sample().soft_purged();
        let Some(Record::Response { meta, .. }) = decode(&encode_response(&key, &primary, &purged, &[])) else {
            panic!("a response record");
        };
        assert!(meta.purged);
        assert_eq!(meta.freshness_lifetime, Duration::ZERO);
        assert!(!meta.directives.immutable, "immutable does not come back from the headers");
        assert_eq!(meta.directives.stale_while_revalidate, None);
    }

    #[test]
    fn every_torn_or_flipped_record_is_rejected() {
        let (key, primary) = keys();
        let bytes = encode_response(&key, &primary, &sample(), &[Digest::of(b"x")]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "torn at {cut}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert!(decode(&flipped).is_none(), "bit flip at {i}");
        }
    }

    #[test]
    fn vary_round_trips() {
        let (_, primary) = keys();
        let names = vec![HeaderName::from_static("accept-encoding"), HeaderName::from_static("x-a")];
        let Some(Record::Vary { key, names: back, .. }) = decode(&encode_vary(&primary, &names)) else {
            panic!("a vary record");
        };
        assert_eq!((key, back), (primary, names));
    }

    #[test]
    fn a_vary_record_filed_under_another_key_is_refused() {
        // Found by the record_codec fuzz target: such a record decoded, and
        // encoded again it came back under another key.
        let (key, primary) = keys();
        let mut w = header(KIND_VARY, &key, &primary);
        w.u64(1);
        w.bytes(b"accept-encoding");
        assert!(decode(&w.seal()).is_none());
    }

    #[test]
    fn chunk_digests_cover_large_bodies_only() {
        assert!(chunk_digests(&vec![1u8; CHUNK_SIZE as usize]).is_empty());
        let body = vec![7u8; CHUNK_SIZE as usize * 2 + 10];
        let chunks = chunk_digests(&body);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2], Digest::of(&body[2 * CHUNK_SIZE as usize..]));
    }
}
