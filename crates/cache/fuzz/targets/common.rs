//! What each holdfast-cache fuzz target does with one input.
//!
//! Shared by the cargo-fuzz targets (`fuzz_targets/*.rs`, nightly) and by
//! `crates/cache/tests/fuzz_replay.rs`, which runs every committed corpus
//! file through the same functions on stable. Uses only holdfast-cache's
//! own dependencies, so the replay test needs nothing new.
//!
//! Input layouts are simple (fixed little-endian prefixes, then
//! newline-separated fields) so realistic seeds are easy to write.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use holdfast_cache::control::ResponseDirectives;
use holdfast_cache::disk::record::{self, Record};
use holdfast_cache::policy::{self, Exchange};
use holdfast_cache::{Digest, Key, Meta, encoding};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};

/// Findings already reported, by name, that a long fuzzing campaign steps
/// over to look for others. Only the fuzz targets set this (from the
/// `HOLDFAST_FUZZ_KNOWN` environment variable, comma-separated); the replay
/// tests never do, so there every check is fatal.
pub static KNOWN: OnceLock<Vec<String>> = OnceLock::new();

/// Sets [`KNOWN`] from the environment (fuzz targets only).
pub fn known_from_env() {
    KNOWN.get_or_init(|| {
        std::env::var("HOLDFAST_FUZZ_KNOWN").unwrap_or_default().split(',').map(str::to_owned).collect()
    });
}

/// Whether the finding `name` is one a campaign steps over.
#[allow(dead_code)] // for the next finding a campaign must step over
fn known(name: &str) -> bool {
    KNOWN.get().is_some_and(|k| k.iter().any(|n| n == name))
}

/// Reads fixed-size integers from the front of an input; missing bytes are zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(head);
        out
    }
    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.array())
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Newline-separated fields, at most `max`.
fn lines(bytes: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    bytes.split(|b| *b == b'\n').take(max)
}

/// A time `offset_ms` milliseconds from 2023-11-14 (any i64: far past and
/// far future included; unrepresentable times become the epoch).
fn time(offset_ms: i64) -> SystemTime {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let delta = Duration::from_millis(offset_ms.unsigned_abs());
    let t = if offset_ms >= 0 { base.checked_add(delta) } else { base.checked_sub(delta) };
    t.unwrap_or(SystemTime::UNIX_EPOCH)
}

// ---------------------------------------------------------------- cache_control

/// `byte 0`: bit i set = field i is `Pragma` (else `Cache-Control`);
/// then newline-separated field values.
pub fn cache_control(data: &[u8]) {
    let mut input = Input(data);
    let pragma_mask = input.u8();
    let mut headers = HeaderMap::new();
    for (i, value) in lines(input.rest(), 64).enumerate() {
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        let name = if i < 8 && pragma_mask & (1 << i) != 0 { header::PRAGMA } else { header::CACHE_CONTROL };
        headers.append(name, value);
    }
    let d = ResponseDirectives::parse(&headers);
    assert_eq!(d, ResponseDirectives::parse(&headers), "parsing is deterministic");
    // delta-seconds saturate at 2^31 (RFC 9111 §1.2.2).
    let max = Duration::from_secs(1 << 31);
    for (what, value) in [
        ("max-age", d.max_age),
        ("s-maxage", d.s_maxage),
        ("stale-while-revalidate", d.stale_while_revalidate),
        ("stale-if-error", d.stale_if_error),
    ] {
        assert!(value.is_none_or(|v| v <= max), "{what} = {value:?} above 2^31 s");
    }
    if !headers.contains_key(header::CACHE_CONTROL) && !d.no_cache {
        assert_eq!(d, ResponseDirectives::default(), "without Cache-Control only Pragma: no-cache counts");
    }
    // RFC 9110 §5.3: a list field split over several lines means the same
    // as the lines joined with commas. Checked when no line has a quote
    // (a quoted string cannot span lines) and every line is visible ASCII.
    let values: Vec<&HeaderValue> = headers.get_all(header::CACHE_CONTROL).iter().collect();
    if values.len() > 1 && values.iter().all(|v| v.to_str().is_ok_and(|t| !t.contains('"'))) {
        let joined = values.iter().map(|v| v.to_str().unwrap_or_default()).collect::<Vec<_>>().join(", ");
        let mut combined = headers.clone();
        combined.remove(header::CACHE_CONTROL);
        combined.insert(header::CACHE_CONTROL, HeaderValue::from_str(&joined).expect("joined visible ASCII"));
        assert_eq!(
            d,
            ResponseDirectives::parse(&combined),
            "Cache-Control split over fields parses unlike the same list in one field: {joined:?}"
        );
    }
}

// ---------------------------------------------------------------- freshness

/// Response header fields the freshness target can set, by selector byte.
const FRESHNESS_FIELDS: [&str; 12] = [
    "date",
    "expires",
    "age",
    "last-modified",
    "cache-control",
    "vary",
    "set-cookie",
    "etag",
    "pragma",
    "content-encoding",
    "connection",
    "surrogate-key",
];

/// `u16` status (100 + n % 900), `i64` request, response and "now" times
/// (ms from 2023-11-14), then newline-separated fields: a selector byte
/// (index into [`FRESHNESS_FIELDS`]) and the value.
pub fn freshness(data: &[u8]) {
    let mut input = Input(data);
    let status = StatusCode::from_u16(100 + input.u16() % 900).expect("100..=999 is a status");
    let exchange = Exchange { request_time: time(input.i64()), response_time: time(input.i64()) };
    let now = time(input.i64());
    let mut headers = HeaderMap::new();
    for line in lines(input.rest(), 64) {
        let Some((selector, value)) = line.split_first() else { continue };
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        headers.append(FRESHNESS_FIELDS[usize::from(*selector) % FRESHNESS_FIELDS.len()], value);
    }

    let age = policy::corrected_initial_age(&headers, exchange);
    assert!(age <= policy::MAX_AGE, "corrected_initial_age {age:?} above MAX_AGE");
    assert!(policy::age(&headers).is_none_or(|a| a <= policy::MAX_AGE));
    let directives = ResponseDirectives::parse(&headers);
    let _ = policy::freshness_lifetime(status, &headers, &directives, exchange.response_time);

    match policy::evaluate(status, &headers, exchange) {
        Ok(storable) => {
            assert!(
                storable.corrected_initial_age <= policy::MAX_AGE,
                "corrected_initial_age {:?} above MAX_AGE",
                storable.corrected_initial_age
            );
            assert_eq!(storable.corrected_initial_age, age);
            let directives = &storable.directives;
            assert!((!directives.no_store || directives.must_understand) && !directives.private);
            assert!(!headers.contains_key(header::SET_COOKIE), "a response with Set-Cookie was storable");
            // RFC 9111 §3: any final status, except the incomplete 206 and
            // 304, with explicit freshness (or `public`); heuristic
            // freshness only for the heuristically cacheable ones.
            let code = status.as_u16();
            assert!(code >= 200 && code != 206 && code != 304, "stored status {status}");
            let heuristic = matches!(code, 200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501);
            let explicit = directives.s_maxage.is_some()
                || directives.max_age.is_some()
                || headers.contains_key(header::EXPIRES)
                || directives.public;
            assert!(heuristic || explicit, "stored status {status} without explicit freshness");
            assert_eq!(Some(storable.vary.clone()), policy::vary_names(&headers));
            // What the store does with it next: none of this may panic.
            let meta = Meta::new("http://h/p".into(), status, headers, storable, exchange, Digest::of(b""), 0);
            assert!(meta.headers.get(&header::AGE).is_none(), "Age is not stored");
            let _ = (meta.age(now), meta.is_fresh(now), meta.staleness(now));
            let _ = (meta.usable_on_error(now, None), meta.usable_on_error(now, Some(Duration::from_secs(60))));
            let _ = meta.within_stale_while_revalidate(now);
            let purged = meta.soft_purged();
            assert!(!purged.is_fresh(now), "a soft-purged response is never fresh");
        }
        Err(reason) => {
            let _ = reason.as_str();
        }
    }
}

// ---------------------------------------------------------------- accept_encoding_vary

/// Newline-separated fields: a selector byte (`% 3`: 0 request
/// Accept-Encoding, 1 response Content-Encoding, 2 response Vary) and the value.
pub fn accept_encoding_vary(data: &[u8]) {
    let mut request = HeaderMap::new();
    let mut response = HeaderMap::new();
    for line in lines(data, 64) {
        let Some((selector, value)) = line.split_first() else { continue };
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        match selector % 3 {
            0 => request.append(header::ACCEPT_ENCODING, value),
            1 => response.append(header::CONTENT_ENCODING, value),
            _ => response.append(header::VARY, value),
        };
    }
    let accepted = encoding::normalize_accept_encoding(request.get_all(header::ACCEPT_ENCODING));
    assert!(matches!(accepted, "br" | "gzip" | "identity"), "normalised to {accepted:?}");
    if request.is_empty() {
        assert_eq!(accepted, "identity", "no Accept-Encoding asks for no coding");
    }
    // The normalised value is stable: normalising it again gives itself.
    let again = HeaderValue::from_static(accepted);
    assert_eq!(encoding::normalize_accept_encoding([&again]), accepted);

    let coded = !encoding::coding_accepted(&response, "identity");
    if response.get_all(header::CONTENT_ENCODING).iter().next().is_none() {
        assert!(!coded, "no Content-Encoding is identity");
    }
    for candidate in ["br", "gzip", "identity"] {
        let ok = encoding::coding_accepted(&response, candidate);
        assert!(ok || coded, "an uncoded response is acceptable to {candidate}");
    }
    // At most one of br and gzip can be the response's single coding.
    assert!(!(coded && encoding::coding_accepted(&response, "br") && encoding::coding_accepted(&response, "gzip")));

    let before = policy::vary_names(&response);
    if let Some(names) = &before {
        assert!(names.windows(2).all(|w| w[0].as_str() < w[1].as_str()), "vary names sorted, unique: {names:?}");
    }
    let mut varied = response.clone();
    encoding::vary_on_coding(&mut varied);
    let after = policy::vary_names(&varied);
    if coded {
        // A coded response must never be shared with a request that asked
        // for another coding: it varies on Accept-Encoding (or on `*`).
        assert!(
            after.as_ref().is_none_or(|names| names.contains(&header::ACCEPT_ENCODING)),
            "coded response does not vary on accept-encoding: {varied:?}"
        );
    } else {
        assert_eq!(varied, response, "an uncoded response keeps its Vary");
    }
    let mut twice = varied.clone();
    encoding::vary_on_coding(&mut twice);
    assert_eq!(twice, varied, "vary_on_coding is idempotent");
}

// ---------------------------------------------------------------- record_codec

/// `byte 0`: even = the rest is a whole record file as read from disk;
/// odd = the rest is a record without its checksum, which is appended
/// (so the decoder past the checksum is reached too).
pub fn record_codec(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else { return };
    let sealed;
    let bytes = if mode & 1 == 0 {
        rest
    } else {
        let mut v = rest.to_vec();
        v.extend_from_slice(&blake3::hash(rest).as_bytes()[..16]);
        sealed = v;
        &sealed
    };
    let Some(first) = record::decode(bytes) else { return };
    let again = match &first {
        Record::Response { key, primary, meta, chunks } => record::encode_response(key, primary, meta, chunks),
        Record::Vary { primary, names, .. } => record::encode_vary(primary, names),
    };
    let Some(second) = record::decode(&again) else {
        panic!("a decoded record, encoded again, does not decode: {first:?}");
    };
    assert_same_record(&first, &second);
}

fn assert_same_record(a: &Record, b: &Record) {
    match (a, b) {
        (
            Record::Response { key: k1, primary: p1, meta: m1, chunks: c1 },
            Record::Response { key: k2, primary: p2, meta: m2, chunks: c2 },
        ) => {
            assert_eq!((k1.to_hex(), p1.to_hex()), (k2.to_hex(), p2.to_hex()), "keys changed in the round trip");
            assert_eq!(c1, c2, "chunks changed in the round trip");
            assert_eq!(m1.url, m2.url);
            assert_eq!(m1.status, m2.status);
            assert_eq!(m1.headers, m2.headers);
            assert_eq!(m1.vary, m2.vary);
            assert_eq!(m1.directives, m2.directives);
            assert_eq!(m1.freshness_lifetime, m2.freshness_lifetime);
            assert_eq!(m1.corrected_initial_age, m2.corrected_initial_age);
            assert_eq!(m1.stored_at, m2.stored_at);
            assert_eq!(m1.tags, m2.tags);
            assert_eq!((m1.digest, m1.size, m1.purged), (m2.digest, m2.size, m2.purged));
        }
        (Record::Vary { key: k1, primary: p1, names: n1 }, Record::Vary { key: k2, primary: p2, names: n2 }) => {
            assert_eq!((p1.to_hex(), n1), (p2.to_hex(), n2), "Vary record changed in the round trip");
            // decode refuses a Vary record whose key is not its primary.
            assert!(
                k1 == k2,
                "Vary record key changed in the round trip: decoded key {} primary {}, encoded again: key {}",
                k1.to_hex(),
                p1.to_hex(),
                k2.to_hex()
            );
        }
        _ => panic!("record kind changed in the round trip: {a:?} -> {b:?}"),
    }
}

// ---------------------------------------------------------------- cache_key

/// Up to `n` bytes of `s`, moved back to a char boundary.
fn boundary(s: &str, n: usize) -> usize {
    let mut n = n.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// `(method, scheme, host, path)` cut from `s` at three points.
fn cut(s: &str, points: [u16; 3]) -> [&str; 4] {
    let mut p = points.map(|n| boundary(s, usize::from(n)));
    p.sort_unstable();
    [&s[..p[0]], &s[p[0]..p[1]], &s[p[1]..p[2]], &s[p[2]..]]
}

/// One list element as a variant key must tell it apart: its first part
/// and its `name=value` parameters, each trimmed. In the content-negotiation
/// fields the first part and parameter names are case-insensitive, and so
/// are parameter values, except media-type parameters in `Accept` other
/// than `q` and `charset`.
type Element = (Vec<u8>, Vec<(Vec<u8>, Option<Vec<u8>>)>);

fn element(negotiation: bool, media_ranges: bool, raw: &[u8]) -> Element {
    let fold = |b: &[u8], yes: bool| if yes { b.to_ascii_lowercase() } else { b.to_vec() };
    if !negotiation {
        return (raw.to_vec(), Vec::new());
    }
    let mut parts = raw.split(|b| *b == b';').map(<[u8]>::trim_ascii);
    let first = fold(parts.next().unwrap_or_default(), true);
    let params = parts
        .map(|p| match p.iter().position(|b| *b == b'=') {
            Some(eq) => {
                let name = p[..eq].trim_ascii().to_ascii_lowercase();
                let folds = !media_ranges || name == b"q" || name == b"charset";
                let value = fold(p[eq + 1..].trim_ascii(), folds);
                (name, Some(value))
            }
            None => (p.to_ascii_lowercase(), None),
        })
        .collect();
    (first, params)
}

/// What a variant key hashes for one header, as a model: every field line's
/// elements, empty ones dropped; in the content-negotiation fields, whose
/// order carries no meaning, as a sorted multiset. `None` when absent.
fn vary_value(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<Element>> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let negotiation = ["accept", "accept-charset", "accept-encoding", "accept-language"].contains(&name.as_str());
    let media_ranges = name.as_str() == "accept";
    let mut elements: Vec<Element> = values
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
        .map(|e| element(negotiation, media_ranges, e))
        .collect();
    if negotiation {
        elements.sort();
    }
    Some(elements)
}

/// Six `u16` cut points (two tuples of three), a `u8` length n, n bytes
/// (lossy UTF-8) cut into both tuples; then the variant part: a line of
/// comma-separated Vary names, then lines of `selector value` (selector
/// bit 7: request A or B; low bits: which name, one past the last naming
/// a header no Vary names).
pub fn cache_key(data: &[u8]) {
    let mut input = Input(data);
    let first = [input.u16(), input.u16(), input.u16()];
    let second = [input.u16(), input.u16(), input.u16()];
    let len = usize::from(input.u8());
    let text = String::from_utf8_lossy(input.take(len)).into_owned();
    let (a, b) = (cut(&text, first), cut(&text, second));
    let (ka, kb) = (Key::primary(a[0], a[1], a[2], a[3]), Key::primary(b[0], b[1], b[2], b[3]));
    let same_fields = a[0] == b[0] && a[1] == b[1] && a[2].eq_ignore_ascii_case(b[2]) && a[3] == b[3];
    assert_eq!(ka == kb, same_fields, "primary keys {a:?} and {b:?}: equal keys iff equal fields");

    // One string cut into (host, path) at two points never gives one key.
    let (p, q) = (boundary(&text, usize::from(first[0])), boundary(&text, usize::from(second[0])));
    if p != q {
        let kp = Key::primary("GET", "https", &text[..p], &text[p..]);
        let kq = Key::primary("GET", "https", &text[..q], &text[q..]);
        assert_ne!(kp, kq, "{text:?} cut at {p} and at {q} gives one key: fields are not length-prefixed");
    }

    let mut lines = lines(input.rest(), 64);
    let names: Vec<HeaderName> = lines
        .next()
        .unwrap_or_default()
        .split(|b| *b == b',')
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .take(8)
        .collect();
    let other = HeaderName::from_static("x-not-varied");
    let (mut ra, mut rb) = (HeaderMap::new(), HeaderMap::new());
    for line in lines {
        let Some((selector, value)) = line.split_first() else { continue };
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        let index = usize::from(selector & 0x7f) % (names.len() + 1);
        let name = names.get(index).cloned().unwrap_or_else(|| other.clone());
        if selector & 0x80 == 0 {
            ra.append(name, value)
        } else {
            rb.append(name, value)
        };
    }
    let (va, vb) = (ka.variant(&names, &ra), ka.variant(&names, &rb));
    let same_values = names.iter().all(|n| vary_value(&ra, n) == vary_value(&rb, n));
    assert_eq!(va == vb, same_values, "variant keys for {names:?}: {ra:?} vs {rb:?}");
    assert_ne!(va, ka, "a variant key equals its primary key");
    assert_ne!(ka.variant(&[], &ra), ka, "variant and primary keys are derived in different domains");
    assert_eq!(ka.record(&[], &ra), ka);
    if !names.is_empty() {
        assert_eq!(ka.record(&names, &ra), va);
    }
    assert_eq!(Key::from_bytes(*ka.as_bytes()), ka);
    assert_eq!(ka.to_hex().len(), 64);
}
