//! The on-disk encoding of metadata and Vary records.
//!
//! `magic | payload | first 16 bytes of BLAKE3(payload)`. Fields are
//! length-prefixed; decoding checks every bound and the checksum, so a torn
//! or corrupted file is rejected, never half-read. What can be derived from
//! the stored headers (directives, Vary names, tags) is derived again on
//! load rather than stored twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::control::ResponseDirectives;
use crate::key::Digest;
use crate::meta::Meta;
use crate::policy;

const META_MAGIC: &[u8; 4] = b"HFM1";
const VARY_MAGIC: &[u8; 4] = b"HFV1";
const CHECKSUM_LEN: usize = 16;

fn seal(magic: &[u8; 4], payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(magic);
    out.extend_from_slice(&payload);
    out.extend_from_slice(&blake3::hash(&payload).as_bytes()[..CHECKSUM_LEN]);
    out
}

fn unseal<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Option<&'a [u8]> {
    if bytes.len() < 4 + CHECKSUM_LEN || &bytes[..4] != magic {
        return None;
    }
    let (payload, checksum) = bytes[4..].split_at(bytes.len() - 4 - CHECKSUM_LEN);
    (blake3::hash(payload).as_bytes()[..CHECKSUM_LEN] == *checksum).then_some(payload)
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
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Encodes the metadata of a stored response.
pub fn encode_meta(meta: &Meta) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(512));
    w.bytes(meta.url.as_bytes());
    w.u64(u64::from(meta.status.as_u16()));
    w.u64(meta.headers.len() as u64);
    for (name, value) in &meta.headers {
        w.bytes(name.as_str().as_bytes());
        w.bytes(value.as_bytes());
    }
    w.u64(millis(meta.freshness_lifetime));
    w.u64(millis(meta.corrected_initial_age));
    w.u64(millis(meta.stored_at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)));
    w.bytes(meta.digest.as_bytes());
    w.u64(meta.size);
    seal(META_MAGIC, w.0)
}

/// Decodes metadata; `None` for anything torn, corrupted or unknown.
pub fn decode_meta(bytes: &[u8]) -> Option<Meta> {
    let mut r = Reader(unseal(META_MAGIC, bytes)?);
    let url = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let status = StatusCode::from_u16(u16::try_from(r.u64()?).ok()?).ok()?;
    let count = r.u64()?;
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name = HeaderName::from_bytes(r.bytes()?).ok()?;
        let value = HeaderValue::from_bytes(r.bytes()?).ok()?;
        headers.append(name, value);
    }
    let freshness_lifetime = Duration::from_millis(r.u64()?);
    let corrected_initial_age = Duration::from_millis(r.u64()?);
    let stored_at = UNIX_EPOCH + Duration::from_millis(r.u64()?);
    let digest = Digest::from_bytes(r.bytes()?.try_into().ok()?);
    let size = r.u64()?;
    if !r.0.is_empty() {
        return None;
    }
    Some(Meta::restore(url, status, headers, freshness_lifetime, corrected_initial_age, stored_at, digest, size))
}

/// Encodes the Vary header names recorded for a primary key.
pub fn encode_vary(names: &[HeaderName]) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.u64(names.len() as u64);
    for name in names {
        w.bytes(name.as_str().as_bytes());
    }
    seal(VARY_MAGIC, w.0)
}

pub fn decode_vary(bytes: &[u8]) -> Option<Vec<HeaderName>> {
    let mut r = Reader(unseal(VARY_MAGIC, bytes)?);
    let count = r.u64()?;
    let mut names = Vec::new();
    for _ in 0..count.min(1024) {
        names.push(HeaderName::from_bytes(r.bytes()?).ok()?);
    }
    r.0.is_empty().then_some(names)
}

impl Meta {
    /// Rebuilds metadata read from disk, deriving what the headers say.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        url: String,
        status: StatusCode,
        headers: HeaderMap,
        freshness_lifetime: Duration,
        corrected_initial_age: Duration,
        stored_at: SystemTime,
        digest: Digest,
        size: u64,
    ) -> Meta {
        Meta {
            url,
            status,
            vary: policy::vary_names(&headers).unwrap_or_default(),
            directives: ResponseDirectives::parse(&headers),
            tags: crate::meta::surrogate_tags(&headers),
            headers,
            freshness_lifetime,
            corrected_initial_age,
            stored_at,
            digest,
            size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Exchange;

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

    #[test]
    fn meta_round_trips() {
        let meta = sample();
        let back = decode_meta(&encode_meta(&meta)).unwrap();
        assert_eq!(back.url, meta.url);
        assert_eq!(back.headers, meta.headers);
        assert_eq!(back.vary, meta.vary);
        assert_eq!(back.tags, meta.tags);
        assert_eq!(back.directives, meta.directives);
        assert_eq!(back.stored_at, meta.stored_at);
        assert_eq!(back.freshness_lifetime, meta.freshness_lifetime);
        assert_eq!((back.digest, back.size), (meta.digest, meta.size));
    }

    #[test]
    fn every_torn_or_flipped_record_is_rejected() {
        let bytes = encode_meta(&sample());
        for cut in 0..bytes.len() {
            assert!(decode_meta(&bytes[..cut]).is_none(), "torn at {cut}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert!(decode_meta(&flipped).is_none(), "bit flip at {i}");
        }
    }

    #[test]
    fn vary_round_trips() {
        let names = vec![HeaderName::from_static("accept-encoding"), HeaderName::from_static("x-a")];
        assert_eq!(decode_vary(&encode_vary(&names)).unwrap(), names);
        assert!(decode_vary(&encode_vary(&names)[..5]).is_none());
    }
}
