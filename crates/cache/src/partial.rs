//! Partial responses (206) kept by byte range until they make the whole
//! object.
//!
//! A client that asks a large file (a video, a download) for ranges makes
//! the origin answer ranges; each answer is kept here as a segment of its
//! object, later ranges inside what is kept are answered without the
//! origin, and once the segments cover every byte the object is complete
//! and moves to the store like any other response. Segments are combined
//! only under one strong validator (RFC 9110 §14.3, §15.3.7.3): a
//! segment of another version replaces what was kept.
//!
//! Memory only, bounded by its own byte budget (weighed by segment bytes);
//! a restart forgets partial objects, never complete ones.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::header;
use moka::sync::Cache;

use crate::key::Key;
use crate::meta::Meta;

/// A partial object: its metadata (as for the complete response, whose
/// size is the complete length) and the byte ranges kept.
#[derive(Debug, Clone)]
pub struct Partial {
    pub meta: Arc<Meta>,
    /// Sorted, non-overlapping, non-adjacent (adjacent ones are merged).
    segments: Vec<(u64, Bytes)>,
}

/// What a segment is: a `Content-Range: bytes first-last/complete` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    pub complete: u64,
}

impl ContentRange {
    /// Parses `bytes first-last/complete` (RFC 9110 §14.4); an unknown
    /// complete length (`*`) or an unsatisfied range gives `None`: such a
    /// segment cannot be placed in an object.
    pub fn parse(value: &HeaderValue) -> Option<ContentRange> {
        let text = value.to_str().ok()?.trim();
        let rest = text.strip_prefix("bytes ")?.trim_start();
        let (range, complete) = rest.split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(first) || !digits(last) || !digits(complete) {
            return None;
        }
        let (first, last, complete): (u64, u64, u64) =
            (first.parse().ok()?, last.parse().ok()?, complete.parse().ok()?);
        (first <= last && last < complete).then_some(ContentRange { start: first, end: last + 1, complete })
    }
}

/// The strong validator segments must share to be combined.
fn strong_validator(meta: &Meta) -> Option<HeaderValue> {
    meta.headers.get(&header::ETAG).filter(|tag| !tag.as_bytes().starts_with(b"W/"))
}

impl Partial {
    /// The bytes of `range` when one kept segment holds them all.
    pub fn bytes(&self, range: &Range<u64>) -> Option<Bytes> {
        let (start, bytes) = self.segments.iter().rev().find(|(start, _)| *start <= range.start)?;
        let end = start + bytes.len() as u64;
        (range.end <= end).then(|| bytes.slice((range.start - start) as usize..(range.end - start) as usize))
    }

    /// The whole body, once the segments cover every byte.
    pub fn whole(&self) -> Option<Bytes> {
        match self.segments.as_slice() {
            [(0, bytes)] if bytes.len() as u64 == self.meta.size => Some(bytes.clone()),
            _ => None,
        }
    }

    /// Bytes kept.
    pub fn kept(&self) -> u64 {
        self.segments.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// This object with `bytes` at `start` added (merged with what
    /// overlaps or touches it). `meta` is the newest answer's.
    fn with(&self, meta: Arc<Meta>, start: u64, bytes: Bytes) -> Partial {
        let mut segments = self.segments.clone();
        segments.push((start, bytes));
        segments.sort_by_key(|(start, _)| *start);
        let mut merged: Vec<(u64, Bytes)> = Vec::with_capacity(segments.len());
        for (start, bytes) in segments {
            match merged.last_mut() {
                Some((last_start, last)) if *last_start + last.len() as u64 >= start => {
                    let last_end = *last_start + last.len() as u64;
                    let end = start + bytes.len() as u64;
                    if end > last_end {
                        let mut joined = BytesMut::with_capacity((end - *last_start) as usize);
                        joined.extend_from_slice(last);
                        joined.extend_from_slice(&bytes[(last_end - start) as usize..]);
                        *last = joined.freeze();
                    }
                }
                _ => merged.push((start, bytes)),
            }
        }
        Partial { meta, segments: merged }
    }
}

/// Partial objects by record key, within a byte budget.
#[derive(Clone)]
pub struct Partials {
    objects: Cache<Key, Arc<Partial>>,
}

/// What storing a segment gave.
#[derive(Debug)]
pub enum Kept {
    /// More is needed for the whole object.
    Partial,
    /// Every byte is here: the whole body (the partial object is dropped;
    /// the caller stores the complete response).
    Whole(Arc<Meta>, Bytes),
}

impl Partials {
    /// Partial objects kept within `budget` bytes of segments.
    pub fn new(budget: u64) -> Partials {
        let objects = Cache::builder()
            .max_capacity(budget.max(1))
            .weigher(|_: &Key, partial: &Arc<Partial>| {
                u32::try_from(partial.kept().saturating_add(1024)).unwrap_or(u32::MAX)
            })
            .build();
        Partials { objects }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Partial>> {
        self.objects.get(key)
    }

    /// Keeps `bytes`, the answer for `range` whose metadata is `meta`
    /// (`meta.size` is the complete length). A segment of another version
    /// (another strong validator, or none) replaces what was kept.
    pub fn keep(&self, key: Key, meta: Meta, range: ContentRange, bytes: Bytes) -> Kept {
        let meta = Arc::new(meta);
        let previous = self.objects.get(&key);
        let same_version = previous.as_ref().is_some_and(|p| {
            p.meta.size == range.complete
                && strong_validator(&p.meta).is_some()
                && strong_validator(&p.meta) == strong_validator(&meta)
        });
        let base = match previous {
            Some(partial) if same_version => partial,
            _ => Arc::new(Partial { meta: Arc::clone(&meta), segments: Vec::new() }),
        };
        let partial = base.with(Arc::clone(&meta), range.start, bytes);
        if let Some(whole) = partial.whole() {
            self.objects.invalidate(&key);
            return Kept::Whole(meta, whole);
        }
        self.objects.insert(key, Arc::new(partial));
        Kept::Partial
    }

    pub fn remove(&self, key: &Key) {
        self.objects.invalidate(key);
    }

    /// Drops every partial object `matches` selects; returns how many.
    pub fn purge(&self, matches: &dyn Fn(&Meta) -> bool) -> u64 {
        let mut purged = 0;
        for (key, partial) in self.objects.iter() {
            if matches(&partial.meta) {
                self.objects.invalidate(&*key);
                purged += 1;
            }
        }
        purged
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::key::Digest;
    use crate::policy::{self, Exchange};

    fn meta(etag: &'static str, complete: u64) -> Meta {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=600"));
        headers.insert("etag", HeaderValue::from_static(etag));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let exchange = Exchange { request_time: now, response_time: now };
        let storable = policy::evaluate(StatusCode::OK, &headers, exchange).unwrap();
        Meta::new("https://a.test/v".into(), StatusCode::OK, headers, storable, exchange, Digest::of(b""), complete)
    }

    fn range(start: u64, end: u64, complete: u64) -> ContentRange {
        ContentRange { start, end, complete }
    }

    const BODY: &[u8] = b"0123456789";

    fn segment(start: u64, end: u64) -> Bytes {
        Bytes::copy_from_slice(&BODY[start as usize..end as usize])
    }

    #[test]
    fn content_range_is_parsed_strictly() {
        type Row = (&'static str, Option<(u64, u64, u64)>);
        let rows: &[Row] = &[
            ("bytes 0-4/10", Some((0, 5, 10))),
            ("bytes 5-9/10", Some((5, 10, 10))),
            ("bytes 5-9/*", None),
            ("bytes */10", None),
            ("bytes 6-4/10", None),
            ("bytes 0-10/10", None),
            ("items 0-4/10", None),
            ("bytes 0-4/1x", None),
        ];
        for (value, expected) in rows {
            let parsed = ContentRange::parse(&HeaderValue::from_static(value)).map(|r| (r.start, r.end, r.complete));
            assert_eq!(parsed, *expected, "{value}");
        }
    }

    /// Ranges answered from what is kept, merged, and the whole object once
    /// every byte came; another version starts over.
    #[test]
    fn segments_merge_into_the_whole_object() {
        let partials = Partials::new(1 << 20);
        let key = Key::primary("GET", "https", "a.test", "/v");
        assert!(matches!(partials.keep(key, meta("\"v1\"", 10), range(0, 3, 10), segment(0, 3)), Kept::Partial));
        assert!(matches!(partials.keep(key, meta("\"v1\"", 10), range(6, 10, 10), segment(6, 10)), Kept::Partial));
        let partial = partials.get(&key).unwrap();
        assert_eq!(partial.bytes(&(1..3)).as_deref(), Some(&b"12"[..]));
        assert_eq!(partial.bytes(&(7..10)).as_deref(), Some(&b"789"[..]));
        assert_eq!(partial.bytes(&(2..7)), None, "the gap is not kept");
        // Overlapping the first segment and touching the second.
        match partials.keep(key, meta("\"v1\"", 10), range(2, 6, 10), segment(2, 6)) {
            Kept::Whole(_, body) => assert_eq!(body.as_ref(), BODY),
            Kept::Partial => panic!("every byte is kept"),
        }
        assert!(partials.get(&key).is_none(), "the whole object leaves the partials");

        // Another version replaces what was kept.
        partials.keep(key, meta("\"v1\"", 10), range(0, 5, 10), segment(0, 5));
        partials.keep(key, meta("\"v2\"", 10), range(5, 10, 10), segment(5, 10));
        let partial = partials.get(&key).unwrap();
        assert_eq!(partial.bytes(&(0..2)), None, "v1's bytes are gone");
        assert_eq!(partial.kept(), 5);
        // Weak validators never combine.
        partials.keep(key, meta("W/\"w\"", 10), range(0, 5, 10), segment(0, 5));
        partials.keep(key, meta("W/\"w\"", 10), range(5, 10, 10), segment(5, 10));
        assert_eq!(partials.get(&key).unwrap().kept(), 5);
    }
}
