//! Response header fields as the memory tier keeps them.
//!
//! A `HeaderMap` per stored object costs about 1.3 KiB for the eight
//! fields a typical asset response has (its hash table, 96-byte buckets
//! and spare capacity), a third of a 4 KiB body. Stored fields are only
//! ever read in order, or looked up a few at a time on a revalidation, so
//! they are kept as a list of names and one exact-size buffer of values:
//! about 40 bytes a field plus the value bytes. The value buffer is also
//! what keeps a stored response from pinning the connection buffer hyper
//! parsed it from.

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Header fields in their order, values in one buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoredHeaders {
    /// Each field's name and the end of its value in `values` (a value
    /// starts where the previous one ends).
    fields: Box<[(HeaderName, u32)]>,
    values: Bytes,
}

impl StoredHeaders {
    /// Copies the fields of `headers`, in order, duplicates kept.
    pub fn new(headers: &HeaderMap) -> StoredHeaders {
        let total: usize = headers.values().map(HeaderValue::len).sum();
        let mut values = BytesMut::with_capacity(total);
        let mut fields = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            values.extend_from_slice(value.as_bytes());
            // Header blocks are bounded far below 4 GiB (max_header_bytes).
            fields.push((name.clone(), u32::try_from(values.len()).unwrap_or(u32::MAX)));
        }
        StoredHeaders { fields: fields.into_boxed_slice(), values: values.freeze() }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every field in order; values share the one buffer.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, HeaderValue)> + '_ {
        let mut start = 0usize;
        self.fields.iter().map(move |(name, end)| {
            let end = (*end as usize).min(self.values.len());
            let bytes = self.values.slice(start.min(end)..end);
            start = end;
            // The bytes were a valid value when stored.
            (name, HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static("")))
        })
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = HeaderValue> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, value)| value)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    pub fn contains_key(&self, name: &HeaderName) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }

    /// The fields as a `HeaderMap` (revalidation, conditionals: not the hit path).
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len());
        for (name, value) in self.iter() {
            map.append(name.clone(), value);
        }
        map
    }

    /// The same fields without any named in `names`.
    pub fn without(&self, names: &[HeaderName]) -> StoredHeaders {
        let mut map = self.to_map();
        for name in names {
            map.remove(name);
        }
        StoredHeaders::new(&map)
    }

    /// Starts loading the fields into the CPU caches (see [`crate::prefetch`]).
    pub(crate) fn prefetch(&self) {
        crate::prefetch::prefetch(&self.fields, usize::MAX);
        crate::prefetch::prefetch(&self.values, usize::MAX);
    }

    /// What the fields cost in memory: the list, the values, custom names.
    pub(crate) fn cost(&self) -> usize {
        let names: usize = self.fields.iter().map(|(name, _)| crate::meta::custom_name_len(name)).sum();
        self.fields.len() * std::mem::size_of::<(HeaderName, u32)>() + self.values.len() + names
    }
}

impl fmt::Debug for StoredHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_in_order_with_duplicates() {
        let mut map = HeaderMap::new();
        map.append("cache-control", HeaderValue::from_static("max-age=60"));
        map.append("x-tag", HeaderValue::from_static("a"));
        map.append("x-tag", HeaderValue::from_static(""));
        map.append("etag", HeaderValue::from_static("\"v1\""));
        let stored = StoredHeaders::new(&map);
        assert_eq!(stored.to_map(), map);
        assert_eq!(stored.len(), 4);
        let tags: Vec<_> = stored.get_all(&HeaderName::from_static("x-tag")).collect();
        assert_eq!(tags, ["a", ""]);
        assert_eq!(stored.get(&http::header::ETAG).unwrap(), "\"v1\"");
        assert!(stored.get(&http::header::AGE).is_none());
        let fewer = stored.without(&[HeaderName::from_static("x-tag")]);
        assert_eq!(fewer.len(), 2);
        assert!(!fewer.contains_key(&HeaderName::from_static("x-tag")));
        assert!(StoredHeaders::new(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn values_do_not_pin_the_buffer_they_were_parsed_from() {
        let parsed = Bytes::from(vec![b'v'; 8192]);
        let mut map = HeaderMap::new();
        map.insert("x-a", HeaderValue::from_maybe_shared(parsed.slice(0..3)).unwrap());
        let stored = StoredHeaders::new(&map);
        drop(map);
        // The only owner of the 8 KiB buffer is `parsed` again.
        assert!(parsed.is_unique());
        assert_eq!(stored.get(&HeaderName::from_static("x-a")).unwrap(), "vvv");
    }
}
