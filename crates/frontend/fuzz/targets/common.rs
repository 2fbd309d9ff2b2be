//! What each holdfast-frontend fuzz target does with one input.
//!
//! Shared by the cargo-fuzz targets (`fuzz_targets/*.rs`, nightly) and by
//! `crates/frontend/tests/fuzz_replay.rs`, which runs every committed
//! corpus file through the same functions on stable. Uses only
//! holdfast-frontend's own dependencies, so the replay test needs nothing new.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use holdfast_cache::encoding::{self, normalize_accept_encoding};
use holdfast_cache::{Store, StoreConfig};
use holdfast_frontend::fuzzing::{RangeRequest, parse_range};
use holdfast_frontend::{EarlyData, Handler, HandlerConfig};
use http::header::{self, HeaderName};
use http::{HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};

/// Findings already reported, by name (`check:x-cache`, for example
/// `coding:MISS`), that a long fuzzing campaign steps over to look for
/// others. Only the fuzz targets set this (from the `HOLDFAST_FUZZ_KNOWN`
/// environment variable, comma-separated); the replay tests never do, so
/// there every check is fatal.
pub static KNOWN: OnceLock<Vec<String>> = OnceLock::new();

/// Sets [`KNOWN`] from the environment (fuzz targets only).
pub fn known_from_env() {
    KNOWN.get_or_init(|| {
        std::env::var("HOLDFAST_FUZZ_KNOWN").unwrap_or_default().split(',').map(str::to_owned).collect()
    });
}

/// Panics with `message` unless `ok` or the finding `name` is known.
fn check(ok: bool, name: &str, message: impl FnOnce() -> String) {
    if !ok && !KNOWN.get().is_some_and(|k| k.iter().any(|n| n == name)) {
        panic!("[{name}] {}", message());
    }
}

/// Reads the input front to back; missing bytes are zero, so every input
/// means something.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        let head = self.take(8);
        out[..head.len()].copy_from_slice(head);
        u64::from_le_bytes(out)
    }
    /// A byte string: a length byte, then that many bytes.
    fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------- range

/// `u64` object length (little-endian), then one `Range` value.
pub fn range(data: &[u8]) {
    let mut input = Input(data);
    let len = input.u64();
    let Ok(value) = std::str::from_utf8(input.0) else { return };
    let parsed = parse_range(value, len);
    if let RangeRequest::Partial(r) = &parsed {
        // The handler slices the stored body with these bounds.
        assert!(r.start < r.end && r.end <= len, "{value:?} on {len} bytes gave {r:?}");
    }
    if let Some(expected) = canonical_range(value, len) {
        assert_eq!(parsed, expected, "{value:?} on {len} bytes");
    }
}

/// RFC 9110 §14.1.2 for the plain spellings `bytes=A-B`, `bytes=A-` and
/// `bytes=-N` (numbers that fit in a u64, nothing else in the value).
fn canonical_range(value: &str, len: u64) -> Option<RangeRequest> {
    let spec = value.strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok())?;
    Some(match (first.is_empty(), last.is_empty()) {
        (true, false) => {
            let n = number(last)?;
            if n == 0 || len == 0 { RangeRequest::Unsatisfiable } else { RangeRequest::Partial(len - n.min(len)..len) }
        }
        (false, true) => {
            let a = number(first)?;
            if a >= len { RangeRequest::Unsatisfiable } else { RangeRequest::Partial(a..len) }
        }
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if b < a {
                RangeRequest::Full
            } else if a >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(a..b.min(len - 1) + 1)
            }
        }
        (true, true) => return None,
    })
}

// ---------------------------------------------------------------- handler

#[path = "fake_origin.rs"]
mod fake_origin;
use fake_origin::{FakeUpstream, OriginLog};

/// Request header names by selector byte (a larger selector reads a name).
const REQUEST_FIELDS: [&str; 16] = [
    "host",
    "accept-encoding",
    "accept-encoding",
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "via",
    "cache-control",
    "accept-language",
    "cookie",
    "authorization",
    "transfer-encoding",
    "content-length",
    "pragma",
    "x-variant",
];

/// Origin response header names by selector byte (a larger selector reads a name).
const RESPONSE_FIELDS: [&str; 20] = [
    "cache-control",
    "cache-control",
    "age",
    "vary",
    "content-encoding",
    "set-cookie",
    "content-length",
    "expires",
    "date",
    "last-modified",
    "etag",
    "content-type",
    "surrogate-key",
    "connection",
    "transfer-encoding",
    "pragma",
    "content-range",
    "cache-tag",
    "location",
    "x-variant",
];

/// Names the origin response a stored or relayed response came from.
const FETCH_STAMP: &str = "x-fuzz-fetch";

fn field_name(input: &mut Input<'_>, table: &[&'static str]) -> Option<HeaderName> {
    let selector = usize::from(input.u8());
    match table.get(selector) {
        Some(name) => Some(HeaderName::from_static(name)),
        None if selector < 0xf0 => Some(HeaderName::from_static(table[selector % table.len()])),
        None => HeaderName::from_bytes(input.bytes()).ok(),
    }
}

struct RequestSpec {
    method: Method,
    version: Version,
    target: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    early: bool,
}

/// flags (bit 0 HTTP/2, 1 same target as the previous request, 2 same
/// headers as the previous request (plus those that follow), 3 a body,
/// 4 early data), method, target, header count, headers, body.
fn request_spec(input: &mut Input<'_>, previous: Option<&RequestSpec>) -> RequestSpec {
    let flags = input.u8();
    let method = match input.u8() % 8 {
        0..=3 => Method::GET,
        4 => Method::HEAD,
        5 => Method::POST,
        6 => Method::OPTIONS,
        _ => Method::from_bytes(input.bytes()).unwrap_or(Method::GET),
    };
    let version = if flags & 1 != 0 { Version::HTTP_2 } else { Version::HTTP_11 };
    let target = match previous {
        Some(previous) if flags & 2 != 0 => previous.target.clone(),
        _ => Uri::try_from(input.bytes()).unwrap_or_else(|_| Uri::from_static("/")),
    };
    let mut headers = match previous {
        Some(previous) if flags & 4 != 0 => previous.headers.clone(),
        _ => Vec::new(),
    };
    for _ in 0..input.u8() % 12 {
        let name = field_name(input, &REQUEST_FIELDS);
        let value = HeaderValue::from_bytes(input.bytes());
        if let (Some(name), Ok(value)) = (name, value) {
            headers.push((name, value));
        }
    }
    let body = if flags & 8 != 0 { Bytes::copy_from_slice(input.bytes()) } else { Bytes::new() };
    RequestSpec { method, version, target, headers, body, early: flags & 16 != 0 }
}

enum ResponseSpec {
    Fail(StatusCode),
    Answer {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        chunks: Vec<Bytes>,
        /// The body ends with an error (a reset connection) instead of its end.
        error_at_end: bool,
        /// Every chunk and the head come after a yield, so fills and readers interleave.
        slow: bool,
    },
}

/// kind (`% 8 == 7`: no response, 502/503/504), status (`100 + n % 900`),
/// header count, headers, Content-Length mode (none, exact, too long, too
/// short) and delta, chunk count, chunks, end (bit 0 error, bit 1 slow).
fn response_spec(input: &mut Input<'_>) -> ResponseSpec {
    let kind = input.u8();
    if kind % 8 == 7 {
        return ResponseSpec::Fail(
            [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT]
                [usize::from(kind / 8) % 3],
        );
    }
    let status = StatusCode::from_u16(100 + input.u16() % 900).expect("100..=999 is a status");
    let mut headers = Vec::new();
    for _ in 0..input.u8() % 16 {
        let name = field_name(input, &RESPONSE_FIELDS);
        let value = HeaderValue::from_bytes(input.bytes());
        if let (Some(name), Ok(value)) = (name, value) {
            headers.push((name, value));
        }
    }
    let length_mode = input.u8();
    let delta = u64::from(input.u8() % 16) + 1;
    let chunks: Vec<Bytes> = (0..input.u8() % 5).map(|_| Bytes::copy_from_slice(input.bytes())).collect();
    let end = input.u8();
    let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let length = match length_mode % 4 {
        1 => Some(total),
        2 => Some(total + delta),
        3 => Some(total.saturating_sub(delta)),
        _ => None,
    };
    if let Some(length) = length {
        headers.push((header::CONTENT_LENGTH, HeaderValue::from(length)));
    }
    ResponseSpec::Answer { status, headers, chunks, error_at_end: end & 1 != 0, slow: end & 2 != 0 }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a tokio runtime");
}

/// Most body bytes read from one response.
const MAX_BODY: usize = 1 << 20;
/// A response whose body has not ended by then never will.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// byte 0 (bit 0: send the requests concurrently; bits 1-2: 1 to 3
/// requests), the requests, then up to four origin responses.
pub fn handler(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8();
    let concurrent = mode & 1 != 0;
    let count = usize::from((mode >> 1) % 3) + 1;
    let mut requests: Vec<RequestSpec> = Vec::new();
    for _ in 0..count {
        let spec = request_spec(&mut input, requests.last());
        requests.push(spec);
    }
    let mut responses = Vec::new();
    while !input.is_empty() && responses.len() < 4 {
        responses.push(response_spec(&mut input));
    }
    let log = Arc::new(Mutex::new(OriginLog::default()));
    let upstream = Arc::new(FakeUpstream { responses, log: Arc::clone(&log) });

    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let handler =
                Arc::new(Handler::single(HandlerConfig::default(), Store::new(&StoreConfig::default()), upstream));
            if concurrent {
                let tasks: Vec<_> = requests
                    .into_iter()
                    .map(|spec| tokio::spawn(exchange(Arc::clone(&handler), spec, Arc::clone(&log))))
                    .collect();
                for task in tasks {
                    if let Err(error) = task.await {
                        std::panic::resume_unwind(error.into_panic());
                    }
                }
            } else {
                for spec in requests {
                    exchange(Arc::clone(&handler), spec, Arc::clone(&log)).await;
                }
            }
        });
        // Let fills whose clients left finish, so nothing of this input
        // runs during the next one.
        for _ in 0..1000 {
            if runtime.metrics().num_alive_tasks() == 0 {
                break;
            }
            runtime.block_on(tokio::task::yield_now());
        }
    });
}

/// Sends one request, reads its response to the end, checks it.
async fn exchange(handler: Arc<Handler>, spec: RequestSpec, log: Arc<Mutex<OriginLog>>) {
    let mut request = Request::new(Full::new(spec.body.clone()));
    *request.method_mut() = spec.method.clone();
    *request.uri_mut() = spec.target.clone();
    *request.version_mut() = spec.version;
    for (name, value) in &spec.headers {
        request.headers_mut().append(name.clone(), value.clone());
    }
    if spec.early {
        request.extensions_mut().insert(EarlyData);
    }
    let accepted = normalize_accept_encoding(request.headers().get_all(header::ACCEPT_ENCODING));
    let raw_accept_encoding = encoding::raw_accept_encoding(request.headers());
    let what = format!("{} {} {:?} {:?}", spec.method, spec.target, spec.version, spec.headers);

    let response = handler.handle(request, "http").await;
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    let mut body_error = None;
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data[..data.len().min(MAX_BODY - bytes.len())]);
                        if bytes.len() >= MAX_BODY {
                            break;
                        }
                    }
                }
                Err(error) => {
                    body_error = Some(error.to_string());
                    break;
                }
            }
        }
    };
    let ended = tokio::time::timeout(RESPONSE_TIMEOUT, read).await.is_ok();
    let result = parts.headers.get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let status = parts.status.as_u16();
    let head = || format!("request {what}\nresponse {status} {:?}", parts.headers);
    if std::env::var_os("HOLDFAST_FUZZ_DEBUG").is_some() {
        eprintln!(
            "{what}\n  -> {status} {result} {:?} body {:?} error {body_error:?}",
            parts.headers,
            Bytes::from(bytes.clone())
        );
    }

    check(ended, &format!("hang:{result}"), || format!("response body never ended\n{}", head()));
    // RFC 9110 §15: a status code is 100..=599; anything else is invalid.
    check((100..=599).contains(&status), &format!("status:{result}"), || format!("invalid status\n{}", head()));

    // A stored coding reaches only a client whose Accept-Encoding
    // normalised to it; a relayed one, only a client that accepts it.
    let stored = matches!(result.as_str(), "HIT" | "STALE" | "REVALIDATED");
    let codings: Vec<String> = parts
        .headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes()).split(',').map(|c| c.trim().to_ascii_lowercase()).collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let coding_ok = match codings.as_slice() {
        [] => true,
        _ if !stored => encoding::client_accepts(raw_accept_encoding.as_ref(), &parts.headers),
        [one] => one == accepted || (one == "x-gzip" && accepted == "gzip"),
        _ => false,
    };
    // A value that is not visible ASCII is its own finding: holdfast's
    // coding() skips such values, so it treats the response as uncoded.
    let opaque = parts.headers.get_all(header::CONTENT_ENCODING).iter().any(|v| v.to_str().is_err());
    let name = if opaque { format!("coding-opaque:{result}") } else { format!("coding:{result}") };
    check(coding_ok, &name, || {
        format!(
            "Content-Encoding {codings:?} sent to a request whose Accept-Encoding normalises to {accepted:?}\n{}",
            head()
        )
    });

    // Bodies: a stored object served has bytes the origin sent completely
    // for that URL; a relayed body that ended cleanly is one too.
    if spec.method != Method::GET || status == 304 || status == 416 || body_error.is_some() || bytes.len() >= MAX_BODY {
        return;
    }
    if !stored && result != "MISS" {
        return;
    }
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    let fetch = parts.headers.get(FETCH_STAMP).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let candidates: Vec<&Bytes> = match fetch.and_then(|n| log.fetches.get(n)) {
        Some(url) => log.complete.get(url).map(|b| b.iter().collect()).unwrap_or_default(),
        // The stamp was dropped (Connection names it): any URL's body.
        None => log.complete.values().flatten().collect(),
    };
    let matches = if status == 206 {
        let range = parts.headers.get(header::CONTENT_RANGE).and_then(|v| content_range(v.to_str().ok()?));
        range.is_some_and(|(start, end, len)| {
            candidates.iter().any(|b| b.len() as u64 == len && b.get(start as usize..=end as usize) == Some(&bytes[..]))
        }) || (!stored && candidates.iter().any(|b| b[..] == bytes[..]))
    } else {
        candidates.iter().any(|b| b[..] == bytes[..])
    };
    let name = if stored { "stored-body" } else { "relayed-body" };
    check(matches, &format!("{name}:{result}"), || {
        format!(
            "body {:?} ({} bytes) is no body the origin sent completely for this URL: {candidates:?}\n{}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]),
            bytes.len(),
            head()
        )
    });
}

/// `bytes first-last/complete`.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (span, len) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, len.parse().ok()?))
}
