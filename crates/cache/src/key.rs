//! Cache keys.
//!
//! A key is the BLAKE3 hash of its fields, each written with a length prefix,
//! so `("ab", "c")` and `("a", "bc")` can never produce the same key. The
//! primary key covers method, scheme, host, path and query; the variant key
//! adds the request headers named by the stored response's `Vary`.

use std::fmt;
use std::sync::LazyLock;

use blake3::hazmat::{ContextKey, HasherExt, hash_derive_key_context};
use http::{HeaderMap, HeaderName, header};

/// Domain separation for the two kinds of key, so a primary key can never
/// equal a variant key.
const PRIMARY_CONTEXT: &str = "holdfast 2026-11 primary cache key";
const VARIANT_CONTEXT: &str = "holdfast 2026-11 variant cache key";

/// Primary keys whose encoded fields fit this many bytes (nearly all) are
/// encoded on the stack; longer ones on the heap.
const PRIMARY_ON_STACK: usize = 512;

/// Each context's derived key, computed once: deriving it costs more
/// compressions than hashing a short URL, and every request computes a
/// primary key. The keys are the same as with `new_derive_key` (disk
/// records stay readable).
static PRIMARY_CONTEXT_KEY: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(PRIMARY_CONTEXT));
static VARIANT_CONTEXT_KEY: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(VARIANT_CONTEXT));

/// A 32-byte cache key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key([u8; 32]);

/// Keys and digests are BLAKE3 output already: eight of their bytes are as
/// good a hash input as all 32, and a quarter of the work for the maps'
/// (keyed) hasher on every lookup.
macro_rules! hash_by_prefix {
    ($type:ty) => {
        impl std::hash::Hash for $type {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&self.0[..8]);
                state.write_u64(u64::from_le_bytes(prefix));
            }
        }
    };
}
hash_by_prefix!(Key);
hash_by_prefix!(Digest);

impl Key {
    /// The primary key of a request: method, scheme, host, path and query.
    ///
    /// The host is lowercased; callers pass the other fields as they are
    /// meant to be compared (the path is case-sensitive).
    pub fn primary(method: &str, scheme: &str, host: &str, path_and_query: &str) -> Key {
        let mut hasher = blake3::Hasher::new_from_context_key(&PRIMARY_CONTEXT_KEY);
        let fields = [method, scheme, host, path_and_query];
        let encoded: usize = fields.iter().map(|field| 8 + field.len()).sum();
        // The same bytes `write_field` gives, hashed in one update: a hasher
        // call per length and per field costs more than the hashing.
        let mut stack = [0u8; PRIMARY_ON_STACK];
        let mut heap = Vec::new();
        let buf = if encoded <= PRIMARY_ON_STACK {
            &mut stack[..encoded]
        } else {
            heap.resize(encoded, 0);
            &mut heap[..]
        };
        let mut at = 0;
        for (i, field) in fields.iter().enumerate() {
            buf[at..at + 8].copy_from_slice(&(field.len() as u64).to_le_bytes());
            at += 8;
            let bytes = &mut buf[at..at + field.len()];
            bytes.copy_from_slice(field.as_bytes());
            if i == 2 {
                // The host is compared case-insensitively.
                bytes.make_ascii_lowercase();
            }
            at += field.len();
        }
        hasher.update(buf);
        Key(*hasher.finalize().as_bytes())
    }

    /// The variant key: this primary key plus the values of the request
    /// headers that `vary` names. A header that is absent hashes differently
    /// from a header that is present and empty.
    pub fn variant(&self, vary: &[HeaderName], request: &HeaderMap) -> Key {
        let mut hasher = blake3::Hasher::new_from_context_key(&VARIANT_CONTEXT_KEY);
        hasher.update(&self.0);
        for name in vary {
            write_field(&mut hasher, Some(name.as_str().as_bytes()));
            let value = combined_value(request, name);
            write_field(&mut hasher, value.as_deref());
        }
        Key(*hasher.finalize().as_bytes())
    }

    /// The key a response is stored under: this primary key itself when the
    /// response varies on nothing (the common case for assets: no Vary
    /// record and no second hash), the variant key otherwise. The two can
    /// never be equal: they are derived in different domains.
    pub fn record(&self, vary: &[HeaderName], request: &HeaderMap) -> Key {
        if vary.is_empty() { *self } else { self.variant(vary, request) }
    }

    /// The raw bytes, for indexes that store keys.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from raw bytes read back from an index.
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// The lowercase hex form, used for file names.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", hex(&self.0[..8]))
    }
}

/// The BLAKE3 digest of a body: the name under which the bytes are stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Hashes a whole body at once (tests and small bodies; fills hash as
    /// the bytes stream in, with [`blake3::Hasher`]).
    pub fn of(body: &[u8]) -> Digest {
        Digest(*blake3::hash(body).as_bytes())
    }

    /// The lowercase hex form, used in logs and file names.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// Parses the hex form (a blob's file name).
    pub fn from_hex(text: &str) -> Option<Digest> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex(&self.0[..8]))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Hashes a body as it streams in, so the digest is ready when the last
/// byte arrives and no second pass over the bytes is needed.
#[derive(Default)]
pub struct DigestBuilder(blake3::Hasher);

impl DigestBuilder {
    pub fn new() -> DigestBuilder {
        DigestBuilder(blake3::Hasher::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

fn write_field(hasher: &mut blake3::Hasher, field: Option<&[u8]>) {
    match field {
        // u64::MAX can never be a real length: it marks an absent field.
        None => hasher.update(&u64::MAX.to_le_bytes()),
        Some(bytes) => {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes)
        }
    };
}

/// The value a request header contributes to a variant key: every field
/// line combined, list elements trimmed of whitespace (RFC 9111 §4.1 lets a
/// cache normalise what the field's syntax makes equivalent). For the
/// content-negotiation fields, whose elements are case-insensitive and
/// whose order carries no meaning (preference is in `q`), elements are
/// also lowercased, spaced alike and sorted.
fn combined_value(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let unordered =
        [header::ACCEPT, header::ACCEPT_CHARSET, header::ACCEPT_ENCODING, header::ACCEPT_LANGUAGE].contains(name);
    let mut elements: Vec<Vec<u8>> = Vec::new();
    for value in values {
        for element in value.as_bytes().split(|b| *b == b',') {
            let element = element.trim_ascii();
            if element.is_empty() {
                continue;
            }
            if unordered {
                elements.push(negotiation_element(name == header::ACCEPT, element));
            } else {
                elements.push(element.to_vec());
            }
        }
    }
    if unordered {
        elements.sort();
    }
    Some(elements.join(&b','))
}

/// One element of a content-negotiation field in its canonical form:
/// `"en-US ; q=0.5"` -> `"en-us;q=0.5"`. Tokens, language tags and
/// parameter names are case-insensitive; so are `q` and `charset` values.
/// Other media-type parameter values (in `Accept`) may be case-sensitive
/// (RFC 9110 §8.3.2) and keep their case, so two requests that differ
/// there never share a variant.
fn negotiation_element(media_ranges: bool, element: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(element.len());
    for (i, part) in element.split(|b| *b == b';').map(<[u8]>::trim_ascii).enumerate() {
        if i > 0 {
            out.push(b';');
        }
        match part.iter().position(|b| *b == b'=') {
            Some(eq) if i > 0 => {
                let name = part[..eq].trim_ascii().to_ascii_lowercase();
                let value = part[eq + 1..].trim_ascii();
                let folds = !media_ranges || name == b"q" || name == b"charset";
                out.extend_from_slice(&name);
                out.push(b'=');
                if folds {
                    out.extend(value.iter().map(u8::to_ascii_lowercase));
                } else {
                    out.extend_from_slice(value);
                }
            }
            _ => out.extend(part.iter().map(u8::to_ascii_lowercase)),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Keys name the disk tier's files: hashers made from the derived
    /// context keys must give exactly what a fresh `new_derive_key` gives.
    #[test]
    fn keys_are_unchanged_by_the_derived_context_keys() {
        let mut fresh = blake3::Hasher::new_derive_key(PRIMARY_CONTEXT);
        for field in ["GET", "https", "example.com", "/app.js?v=2"] {
            write_field(&mut fresh, Some(field.as_bytes()));
        }
        let primary = Key::primary("GET", "https", "Example.com", "/app.js?v=2");
        assert_eq!(primary.0, *fresh.finalize().as_bytes());
        // A target too long for the stack buffer is encoded on the heap.
        let long = format!("/{}", "a".repeat(600));
        let mut fresh = blake3::Hasher::new_derive_key(PRIMARY_CONTEXT);
        for field in ["GET", "https", "example.com", &long] {
            write_field(&mut fresh, Some(field.as_bytes()));
        }
        assert_eq!(Key::primary("GET", "https", "EXAMPLE.com", &long).0, *fresh.finalize().as_bytes());

        let mut request = HeaderMap::new();
        request.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let mut fresh = blake3::Hasher::new_derive_key(VARIANT_CONTEXT);
        fresh.update(&primary.0);
        write_field(&mut fresh, Some(b"accept-encoding"));
        write_field(&mut fresh, combined_value(&request, &header::ACCEPT_ENCODING).as_deref());
        assert_eq!(primary.variant(&[header::ACCEPT_ENCODING], &request).0, *fresh.finalize().as_bytes());
    }

    /// A key names its files on disk: a change here orphans every disk
    /// tier written before it.
    #[test]
    fn a_primary_key_is_the_same_in_every_release() {
        let key = Key::primary("GET", "https", "assets.example", "/app.3f2a.js");
        assert_eq!(key.to_hex(), "9e5fbf2eb0a43a99a1e18ec793877b1036ad4ae4dd24234db0bf5a985ef14931");
    }

    #[test]
    fn fields_cannot_collide_by_shifting_bytes() {
        let a = Key::primary("GET", "http", "example.com", "/ab");
        let b = Key::primary("GET", "http", "example.co", "m/ab");
        let c = Key::primary("GE", "Thttp", "example.com", "/ab");
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn host_is_case_insensitive_path_is_not() {
        assert_eq!(
            Key::primary("GET", "https", "Example.COM", "/a"),
            Key::primary("GET", "https", "example.com", "/a")
        );
        assert_ne!(
            Key::primary("GET", "https", "example.com", "/A"),
            Key::primary("GET", "https", "example.com", "/a")
        );
    }

    #[test]
    fn query_and_scheme_and_method_are_part_of_the_key() {
        let base = Key::primary("GET", "https", "h", "/a");
        assert_ne!(base, Key::primary("GET", "https", "h", "/a?v=1"));
        assert_ne!(base, Key::primary("GET", "http", "h", "/a"));
        assert_ne!(base, Key::primary("HEAD", "https", "h", "/a"));
    }

    #[test]
    fn variant_distinguishes_absent_from_empty_and_ignores_list_whitespace() {
        let primary = Key::primary("GET", "https", "h", "/a");
        let vary = [HeaderName::from_static("accept-language")];
        let absent = HeaderMap::new();
        let mut empty = HeaderMap::new();
        empty.insert("accept-language", HeaderValue::from_static(""));
        let mut spaced = HeaderMap::new();
        spaced.insert("accept-language", HeaderValue::from_static("en, fr"));
        let mut tight = HeaderMap::new();
        tight.insert("accept-language", HeaderValue::from_static("en,fr"));
        assert_ne!(primary.variant(&vary, &absent), primary.variant(&vary, &empty));
        assert_eq!(primary.variant(&vary, &spaced), primary.variant(&vary, &tight));
        assert_ne!(primary.variant(&vary, &absent), primary);
        // Header names and values are length-prefixed too.
        let two = [HeaderName::from_static("a"), HeaderName::from_static("b")];
        let mut x = HeaderMap::new();
        x.insert("a", HeaderValue::from_static("1b"));
        let mut y = HeaderMap::new();
        y.insert("a", HeaderValue::from_static("1"));
        y.insert("b", HeaderValue::from_static(""));
        assert_ne!(primary.variant(&two, &x), primary.variant(&two, &y));
    }

    /// RFC 9111 §4.1: requests whose Vary'd fields differ only in what the
    /// field's syntax makes equivalent select the same variant. One row
    /// per pair of field values, and whether they match.
    #[test]
    fn variants_normalise_what_the_syntax_allows() {
        let primary = Key::primary("GET", "https", "h", "/a");
        let rows: &[(&'static str, &[&'static str], &[&'static str], bool)] = &[
            ("accept-language", &["en, fr"], &["en,fr"], true),
            ("accept-language", &["en, fr"], &["fr, en"], true),
            ("accept-language", &["EN-us"], &["en-US"], true),
            ("accept-language", &["en;q=0.5, fr"], &["fr, en ; q=0.5"], true),
            ("accept-language", &["en", "fr"], &["en, fr"], true),
            ("accept-language", &["en"], &["fr"], false),
            ("accept", &["text/html, image/*"], &["image/*,text/html"], true),
            ("accept", &["Text/HTML;Charset=UTF-8;Q=0.9"], &["text/html; charset=utf-8; q=0.9"], true),
            // A media-type parameter's value may be case-sensitive.
            ("accept", &["application/ld+json;profile=\"A\""], &["application/ld+json;profile=\"a\""], false),
            ("accept-encoding", &["GZIP, br"], &["br,gzip"], true),
            // Other fields keep order and case: only whitespace and lines.
            ("x-variant", &["a, b"], &["a,b"], true),
            ("x-variant", &["a", "b"], &["a, b"], true),
            ("x-variant", &["a, b"], &["b, a"], false),
            ("x-variant", &["A"], &["a"], false),
        ];
        for (name, left, right, same) in rows {
            let vary = [HeaderName::from_static(name)];
            let map = |values: &[&'static str]| {
                let mut m = HeaderMap::new();
                for v in values {
                    m.append(vary[0].clone(), HeaderValue::from_static(v));
                }
                m
            };
            let (l, r) = (primary.variant(&vary, &map(left)), primary.variant(&vary, &map(right)));
            assert_eq!(l == r, *same, "{name}: {left:?} vs {right:?}");
        }
    }
}
