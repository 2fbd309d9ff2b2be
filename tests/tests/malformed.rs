//! Safe under hostile input: a generated corpus of ambiguous and malformed
//! HTTP/1.1 requests, sent as raw bytes on loopback. For every case the node
//! answers 4xx or closes (2xx only where the request is valid, and the table
//! says why), never 5xx; the origin never sees a body, another target, or a
//! smuggled request. A canary request follows each case on the same
//! connection: whatever the node makes of the bytes before it, nothing but
//! the case's own target and the canary may reach the origin.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use common::{node_with, within};
use futures_util::StreamExt;
use holdfast_test::{FakeOrigin, Protocol, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// "###" stands for the case number (three digits, so lengths computed
/// before numbering stay right).
const GET: &str = "GET /m### HTTP/1.1";
const HOST: &str = "Host: cdn.example";
/// What a node that misreads a body's framing takes for a second request.
const SMUGGLED: &str = "GET /smuggled-### HTTP/1.1\r\nHost: cdn.example\r\n\r\n";
const CANARY: &str = "GET /canary-### HTTP/1.1\r\nHost: cdn.example\r\nConnection: close\r\n\r\n";
const PREFACE: &str = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The node answers or closes well within this.
const CASE_LIMIT: Duration = Duration::from_secs(3);

/// Transfer-Encoding values. c: chunked as RFC 9112 reads it (an obs-fold may
/// also be refused); b: to be refused (§6.1, §6.3: 400, or 501 for a coding
/// the node does not implement; chunked at most once; no CTLs).
const TE_VALUES: &str = "c  chunked | c  Chunked | c  CHUNKED | c  cHuNkEd | c chunked | c    chunked    | c \tchunked\t | \
c  ,chunked | c  chunked, | c \r\n chunked | b  chunked, identity | b  identity, chunked | b  gzip, chunked | \
b  chunked, chunked | b  identity | b  xchunked | b  chunkedx | b  chunked-false | b  \"chunked\" | b  'chunked' | \
b  chunk | b  ch unked | b  chunked;x=1 | b  \x0bchunked | b  \x0cchunked | b  chunked\x0b | b  chunked\x0c | \
b  chu\0nked | b  \u{ff}chunked | b  chunked\rX-Pad: 1 | b  chunked\r\nTransfer-Encoding: identity | \
b  identity\r\nTransfer-Encoding: chunked | b  chunked\r\nTransfer-Encoding: chunked | \
b  xchunked\r\nTransfer-Encoding: chunked | b  chunked\r\ntransfer-encoding: x";
/// Transfer-Encoding names. c: the same field (case-insensitive); b: to be
/// refused (§5.1: no whitespace before the colon); w: whitespace-led, to be refused or ignored (§2.2).
const TE_NAMES: &str = "c transfer-encoding | c TRANSFER-ENCODING | c TrAnSfEr-EnCoDiNg | b Transfer-Encoding  | \
b Transfer-Encoding\t | b Transfer-Encoding\0 | b Transfer-Encoding\u{ff} | b Transfer-Encoding: | w  Transfer-Encoding | \
w \tTransfer-Encoding";

/// Content-Length values before a body of {L} bytes ({M} = L + 1, {H} = L in
/// hex), then names. v: a length RFC 9110 §8.6 / RFC 9112 §6.3 accepts; r: to be refused.
const CL_VALUES: &str = "v  {L} | v  0{L} | v  00000000000000000000000000000000{L} | v {L} | v    {L}    | v \t{L}\t | \
v  {L}\r\nContent-Length: {L} | v  {L}, {L} | v \r\n {L} | r  +{L} | r  -{L} | r  0x{H} | r  {L}.0 | r  {L}e0 | \
r  {L} {L} | r  {L}, {M} | r  {L}\r\nContent-Length: {M} | r  {M}\r\nContent-Length: {L} | r  {L}\r\nContent-Length: 0 | \
r  0\r\nContent-Length: {L} | r  -1 | r  | r  abc | r  18446744073709551616 | r  18446744073709551615 | \
r  99999999999999999999999999999 | r  {L}\x0b | r  \x0c{L} | r  {L}\0 | r  \u{ff}{L} | r  \"{L}\" | r  {L};x | \
r  {L}\rX-Pad: 1 | r  {L}\r\nContent-Length: +{L} | r  {L}_";
const CL_NAMES: &str =
    "v content-length | v CONTENT-LENGTH | r Content-Length  | r Content-Length\t | r Content-Length\0";

/// Chunked bodies. v: valid (RFC 9112 §7.1; §2.2 allows a bare LF ending a
/// trailer line); x: broken framing, then a request only a lenient parser reaches.
const CHUNKS: &str = "v 5\r\nhello\r\n0\r\n\r\n | v 5;ext=1\r\nhello\r\n0\r\n\r\n | \
v 5 ; e = \"v\"\r\nhello\r\n0\r\n\r\n | v 0\r\nX-Trailer: 1\r\n\r\n | v 00000000000000000000000005\r\nhello\r\n0\r\n\r\n | \
v A\r\n0123456789\r\n0\r\n\r\n | v a\r\n0123456789\r\n0\r\n\r\n | v 0\r\n\r\n | x 5\nhello\r\n0\r\n\r\n | \
x 5\r\nhello\n0\r\n\r\n | x 5\r\nhello0\r\n\r\n | x 5\r\nhelloXX0\r\n\r\n | x 5\r\nhello world\r\n0\r\n\r\n | \
x 5;x\ny\r\nhello\r\n0\r\n\r\n | x 5;x=\"a\nb\"\r\nhello\r\n0\r\n\r\n | x 5;x=\"a\rb\"\r\nhello\r\n0\r\n\r\n | \
x -5\r\nhello\r\n0\r\n\r\n | x +5\r\nhello\r\n0\r\n\r\n | x 0x5\r\nhello\r\n0\r\n\r\n | x  5\r\nhello\r\n0\r\n\r\n | \
x 5 \r\nhello\r\n0\r\n\r\n | x g\r\nhello\r\n0\r\n\r\n | x \r\nhello\r\n0\r\n\r\n | \
x ffffffffffffffffff\r\nhello\r\n0\r\n\r\n | x 10000000000000000\r\n\r\n | x 10000000000000005\r\nhello\r\n0\r\n\r\n | \
x 5\r\nhello\r\n0\r\n | x 5\r\nhello\r\n | x 5\rhello\r\n0\r\n\r\n | x 0\n\n | v 0\r\n\n | v 0\r\nX-Trailer: 1\n\r\n | \
x 0\r\nbad trailer\r\n\r\n";

/// Whole requests, exactly as sent: line endings, obs-fold, bare CR.
/// v: RFC 9112 §2.2 and §5.2 let a server accept these (or refuse them).
const LINES: &str = "v GET /m### HTTP/1.1\nHost: cdn.example\n\n | v GET /m### HTTP/1.1\r\nHost: cdn.example\n\n | \
v GET /m### HTTP/1.1\nHost: cdn.example\r\n\r\n | v GET /m### HTTP/1.1\r\nHost: cdn.example\r\n\n | \
v GET /m### HTTP/1.1\nHost: cdn.example\nContent-Length: {L}\n\n{S} | v \r\nGET /m### HTTP/1.1\r\nHost: cdn.example\r\n\r\n | \
v \nGET /m### HTTP/1.1\r\nHost: cdn.example\r\n\r\n | v \r\n\r\nGET /m### HTTP/1.1\r\nHost: cdn.example\r\n\r\n | \
v GET /m### HTTP/1.1\r\nHost: cdn.example\r\nX-A: a\r\n b\r\n\r\n | v GET /m### HTTP/1.1\r\nHost: cdn.example\r\nX-A: a\r\n\tb\r\n\r\n | \
v GET /m### HTTP/1.1\r\nHost:\r\n cdn.example\r\n\r\n | v GET /m### HTTP/1.1\r\nHost: cdn.example\r\nX-A: a\rb\r\n\r\n | \
v GET /m### HTTP/1.1\r\n X-A: b\r\nHost: cdn.example\r\n\r\n | r GET /m### HTTP/1.1\rHost: cdn.example\r\r\n | \
r GET /m### HTTP/1.1\r\nHost: cdn.example\r\n evil.example\r\n\r\n | r GET /m### HTTP/1.1\r\n Host: cdn.example\r\n\r\n | \
r GET /m### HTTP/1.1\r\n\r\nHost: cdn.example\r\n\r\n | r GET /m### HTTP/1.1\rHost: cdn.example\r\n\r\n";

/// Host fields. v: valid syntax (RFC 9110 §7.2; a host the node does not
/// serve gets 421); r: to be refused (userinfo, bad port, garbage, several).
const HOSTS: &str = "v Host: cdn.example:8080 | v Host: CDN.EXAMPLE | v Host: cdn.example. | v Host: cdn.example: | \
v Host: cdn.example:99999 | v Host: other.example | v Host: [::1] | v Host: [::1]:80 | v Host: 127.0.0.1 | \
v Host: cdn_example | v Host: cdn.example%2e | v Host: -cdn.example | v Host: cdn..example | v Host: . | \
v Host:  cdn.example\t | r X-No-Host: 1 | r Host: | r Host:  | r Host: cdn.example\r\nHost: cdn.example | \
r Host: cdn.example\r\nHost: other.example | r Host: cdn.example\r\nhost: cdn.example | r Host: user@cdn.example | \
r Host: user:pass@cdn.example | r Host: cdn.example@evil.example | r Host: @cdn.example | r Host: cdn.example:abc | \
r Host: cdn.example:80:80 | r Host: cdn.example:-1 | r Host: cdn.example: 80 | r Host: [::1 | r Host: ::1 | \
r Host: [zz] | r Host: [::1]x | r Host: cdn.example/x | r Host: cdn.example?x | r Host: cdn.example#x | \
r Host: cdn.example evil | r Host: cdn.example\tevil | r Host: cdn.example, evil.example | r Host: * | \
r Host: http://cdn.example | r Host: cdn.example\\evil";

/// Request lines (a Host follows unless one is named). v: valid for the
/// node's own host (absolute-form: RFC 9112 §3.2.2, which also lets a server
/// split the line on any whitespace, §3); r: to be refused.
const TARGETS: &str = "v GET http://cdn.example/m### HTTP/1.1 | v GET HTTP://CDN.EXAMPLE/m### HTTP/1.1 | \
v GET http://cdn.example:80/m### HTTP/1.1 | v GET http://cdn.example/m###?q=1 HTTP/1.1 | \
v GET http://cdn.example?m### HTTP/1.1 | v GET https://cdn.example/m### HTTP/1.1 | \
v GET http://cdn.example/m### HTTP/1.1\r\nHost: other.example | v GET //evil.example/m### HTTP/1.1 | \
v GET /m###/../x HTTP/1.1 | v GET /m###?a=b&c=%20 HTTP/1.1 | v GET /m###%00 HTTP/1.1 | v GET /m###;p HTTP/1.1 | \
v GET  /m### HTTP/1.1 | v GET /m###  HTTP/1.1 | v GET /m### HTTP/1.0 | v GET /m### HTTP/1.2 | \
v GET /m### HTTP/1.0\r\nConnection: keep-alive | v GET /m### HTTP/1.0\r\nX-No-Host: 1 | \
r GET http://evil.example/m### HTTP/1.1 | r GET http://evil.example/m### HTTP/1.1\r\nHost: evil.example | \
r GET http://127.0.0.1/m### HTTP/1.1 | r GET http://user@cdn.example/m### HTTP/1.1 | \
r GET http://cdn.example@evil.example/m### HTTP/1.1 | r GET http://evil.example#@cdn.example/m### HTTP/1.1 | \
r GET ftp://cdn.example/m### HTTP/1.1 | r GET http:///m### HTTP/1.1 | r GET http://cdn.example:abc/m### HTTP/1.1 | \
r GET cdn.example:80 HTTP/1.1 | r CONNECT cdn.example:443 HTTP/1.1 | \
r CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443 | r OPTIONS * HTTP/1.1 | r GET * HTTP/1.1 | \
r GET m### HTTP/1.1 | r GET ../m### HTTP/1.1 | v GET /m###?a#f HTTP/1.1 | r GET /m### x HTTP/1.1 | \
r GET \\m### HTTP/1.1 | r GET /m###<x> HTTP/1.1 | r GET /m###\"x HTTP/1.1 | r GET /m###\r\n | r GET /m###\r\n\r\n | \
r GET\r\n\r\n | r GET /m### HTTP/1.1\r\nX-No-Host: 1";

/// Versions after "GET /m### " (HTTP/1.0 and 1.2 are in TARGETS): all refused.
const VERSIONS: &str = "HTTP/2.0 HTTP/2 HTTP/3 HTTP/3.0 HTTP/1 HTTP/1.1.1 HTTP/01.1 HTTP/1.01 HTTP/1.10 http/1.1 Http/1.1 \
HTTP/ HTTP HTTPS/1.1 HTTP/0.9 HTTP/9.9 HTTP/1.x HTTP/-1 HTTP/1.1x HTTP/1.1/1.1";

/// Methods before "/m### HTTP/1.1": only HEAD is served (GET is everywhere).
const METHODS: &str = "get Get gET head HEAD POST PUT DELETE PATCH TRACE TRACK PURGE BAN FOO M-SEARCH OPTIONS CONNECT \
PRI G@T G(T G\"T G,T G:T [GET] GET. G_T \u{c9}T GET\u{ff} - G/T";

/// Bodies on GET and HEAD, Expect, and classic smuggling shapes ({S}: the
/// smuggled request, {C}: it as one chunk, {N}: "0\r\n\r\n{S}" long, {Z}: the
/// chunk-size line long). v: valid (a GET/HEAD body has no meaning, RFC 9110
/// §9.3.1, and is dropped; unknown expectations may be ignored, §10.1.1);
/// x: HTTP/1.0 with Transfer-Encoding is faulty framing, close after (RFC 9112 §6.1).
const MISC: &str = "v GET /m### HTTP/1.1\r\nContent-Length: {L}\r\n\r\n{S} | \
v HEAD /m### HTTP/1.1\r\nContent-Length: {L}\r\n\r\n{S} | v GET /m### HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{C} | \
v HEAD /m### HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{C} | v GET /m### HTTP/1.1\r\nContent-Length: 0 | \
v GET /m### HTTP/1.1\r\nExpect: 100-continue | v GET /m### HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: {L}\r\n\r\n{S} | \
v GET /m### HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10 | \
v HEAD /m### HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n{C} | \
r POST /m### HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {L}\r\n\r\n{S} | \
r POST /m### HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n{C} | \
v GET /m### HTTP/1.1\r\nExpect: 200-ok | v GET /m### HTTP/1.1\r\nExpect: 100-continue\r\nExpect: 100-continue | \
v GET /m### HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: {L}\r\n\r\n{S} | \
v GET /m### HTTP/1.1\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n{C} | \
v GET /m### HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA | \
v GET /m### HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ== | \
v GET /m### HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: evil.example\r\n\r\n | \
v GET /m### HTTP/1.0\r\nContent-Length: {L}\r\n\r\n{S} | x GET /m### HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{C} | \
r POST /m### HTTP/1.1\r\nContent-Length: {N}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{S} | \
r POST /m### HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: {Z}\r\n\r\n{C} | \
r GET /m### HTTP/1.1\r\nContent-Length: {N}\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n{S}";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Invalid: a 4xx, or closed without an answer; never 2xx/3xx.
    Reject,
    /// A valid head with broken body framing: it may be answered, but then
    /// the connection must close, the canary unanswered.
    Close(&'static str),
    /// Valid, or left by the RFCs to the server's choice: anything but 5xx.
    Valid(&'static str),
}

fn kind(class: u8, valid: &'static str) -> Kind {
    match class {
        b'c' | b'v' | b'w' => Kind::Valid(valid),
        b'x' => Kind::Close("the head is valid, the body framing is not"),
        _ => Kind::Reject,
    }
}

struct Case {
    name: String,
    kind: Kind,
    /// Latin-1 ("\u{ff}" is the byte 0xff) until numbered into `bytes`.
    text: String,
    bytes: Vec<u8>,
    /// What the origin would be asked for if the node served the case.
    path: String,
    n: usize,
    /// Half-close after the case instead of sending the canary.
    eof: bool,
    /// Raw HTTP/2: no canary; the answer is frames.
    h2: bool,
}

fn add(cases: &mut Vec<Case>, kind: Kind, name: impl Into<String>, text: impl Into<String>) -> &mut Case {
    let (name, text, bytes, path) = (name.into(), text.into(), Vec::new(), String::new());
    cases.push(Case { name, kind, text, bytes, path, n: 0, eof: false, h2: false });
    cases.last_mut().expect("just pushed")
}

fn entries(table: &'static str) -> impl Iterator<Item = (u8, &'static str)> {
    table.split(" | ").map(|e| (e.as_bytes()[0], &e[2..]))
}

fn req(line: &str, headers: &[&str], body: &str) -> String {
    headers.iter().fold(format!("{line}\r\n"), |out, h| out + h + "\r\n") + "\r\n" + body
}

/// A table request: "\r\n\r\n" ends the head (added if absent), and a Host
/// is added unless the head mentions one ("X-No-Host: 1" keeps it out).
fn request(text: &str) -> String {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let host = if head.to_ascii_lowercase().contains("host") { "" } else { "\r\nHost: cdn.example" };
    format!("{head}{host}\r\n\r\n{body}")
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> String {
    let bytes =
        [&(payload.len() as u32).to_be_bytes()[1..], &[ty, flags][..], &stream.to_be_bytes()[..], payload].concat();
    bytes.into_iter().map(char::from).collect()
}

fn corpus() -> Vec<Case> {
    let mut c = Vec::new();
    let l = SMUGGLED.len();
    let chunked = format!("{l:x}\r\n{SMUGGLED}\r\n0\r\n\r\n");
    let cl_te = format!("0\r\n\r\n{SMUGGLED}");
    let expand = |t: &str| {
        let size_line = format!("{l:x}\r\n").len().to_string();
        let t = t.replace("{L}", &l.to_string()).replace("{M}", &(l + 1).to_string()).replace("{H}", &format!("{l:x}"));
        t.replace("{N}", &cl_te.len().to_string()).replace("{Z}", &size_line).replace("{S}", SMUGGLED)
    };
    let names = entries(TE_NAMES).map(|(class, n)| (class, format!("{n}: chunked")));
    let te_lines: Vec<_> =
        entries(TE_VALUES).map(|(k, v)| (k, format!("Transfer-Encoding:{v}"))).chain(names).collect();
    for (i, &(class, ref te)) in te_lines.iter().enumerate() {
        let name = |layout: &str| format!("te{i} {layout} {te:?}");
        let (te, cl_body) = (te.as_str(), format!("Content-Length: {}", cl_te.len()));
        if class == b'w' {
            let k = kind(class, "a whitespace-led line is refused or ignored (RFC 9112 §2.2)");
            add(&mut c, k, name("TE"), req(GET, &[te, HOST], &chunked));
            add(&mut c, k, name("CL.TE"), req(GET, &[te, HOST, &cl_body], &cl_te));
            continue;
        }
        add(&mut c, kind(class, "GET with a chunked body is valid"), name("TE"), req(GET, &[HOST, te], &chunked));
        add(&mut c, Kind::Reject, name("CL.TE"), req(GET, &[HOST, &cl_body, te], &cl_te));
        add(&mut c, Kind::Reject, name("TE.CL"), req(GET, &[HOST, te, &expand("Content-Length: {Z}")], &chunked));
    }
    let values = entries(CL_VALUES).map(|(class, v)| (class, format!("Content-Length:{v}")));
    let lengths: Vec<_> = values.chain(entries(CL_NAMES).map(|(class, n)| (class, format!("{n}: {{L}}")))).collect();
    for method in ["GET", "POST"] {
        let line = GET.replacen("GET", method, 1);
        for (i, (class, cl)) in lengths.iter().enumerate() {
            let k = kind(*class, "a valid length: the body is read and dropped (POST: 405)");
            add(&mut c, k, format!("cl{i} {method} {cl:?}"), req(&line, &[HOST, &expand(cl)], SMUGGLED));
        }
        for (i, (class, body)) in entries(CHUNKS).enumerate() {
            let body = if class == b'x' { format!("{body}{SMUGGLED}") } else { body.to_owned() };
            let text = req(&line, &[HOST, "Transfer-Encoding: chunked"], &body);
            add(&mut c, kind(class, "valid chunked framing (POST: 405)"), format!("chunk{i} {method} {body:?}"), text);
        }
    }
    for (i, (class, text)) in entries(LINES).enumerate() {
        add(&mut c, kind(class, "RFC 9112 §2.2, §5.2 allow this"), format!("lines{i} {text:?}"), expand(text));
    }
    for (i, (class, host)) in entries(HOSTS).enumerate() {
        let text = request(&format!("{GET}\r\n{host}"));
        add(&mut c, kind(class, "Host syntax is valid"), format!("host{i} {host:?}"), text);
    }
    for (i, (class, text)) in entries(TARGETS).enumerate() {
        add(&mut c, kind(class, "a valid request for the node's host"), format!("target{i} {text:?}"), request(text));
    }
    for version in VERSIONS.split(' ') {
        add(&mut c, Kind::Reject, format!("version {version:?}"), request(&format!("GET /m### {version}")));
    }
    for method in METHODS.split(' ') {
        let k = kind(if method == "HEAD" { b'v' } else { b'r' }, "HEAD is served");
        add(&mut c, k, format!("method {method:?}"), request(&format!("{method} /m### HTTP/1.1")));
    }
    for (i, (class, text)) in entries(MISC).enumerate() {
        let request = request(&expand(text).replace("{C}", &chunked));
        add(&mut c, kind(class, "valid; bodies are dropped"), format!("misc{i} {text:?}"), request);
    }
    // NUL and other control bytes, HTAB and obs-text, at each place in a head.
    let places = ["G@ET /m###", "GET@/m###", "GET /m@###", "GET /m###@HTTP/1.1", "GET /m### HT@TP/1.1"];
    for (p, place) in places.iter().chain(&["GET /m### HTTP/1.1@", "X-@A: b", "X-A: b@c", "X-A: @b"]).enumerate() {
        for byte in ['\0', '\x01', '\x08', '\t', '\x0b', '\x0c', '\x1b', '\x7f', '\u{ff}'] {
            let line = place.replace('@', &byte.to_string());
            let (line, header) = if p < 6 { (line, "".into()) } else { (GET.into(), line + "\r\n") };
            let text = format!("{line}{}\r\n{HOST}\r\n{header}\r\n", if p < 3 { " HTTP/1.1" } else { "" });
            let ok = matches!((byte, p), ('\t' | '\x0b' | '\x0c', 1 | 3 | 5) | ('\t' | '\u{ff}', 7 | 8));
            let k = kind(if ok { b'v' } else { b'r' }, "whitespace split (RFC 9112 §3) or HTAB/obs-text");
            add(&mut c, k, format!("ctl {place:?} {byte:?}"), text);
        }
    }
    let names = " \"(),/;<=>?@[\\]{}\u{7f}é".chars().map(|ch| format!("X{ch}A: b"));
    for field in names.chain([": b".into(), "X-A b".into()]) {
        add(&mut c, Kind::Reject, format!("field {field:?}"), req(GET, &[HOST, &field], ""));
    }
    // Sizes: the limits are 100 fields, 32 KiB of head, 8 KiB of target.
    for (n, size) in [(119, 1), (100, 1), (98, 1), (20, 2048)] {
        let fields: String = (0..n).map(|i| format!("X-H{i}: {}\r\n", "v".repeat(size))).collect();
        let k = kind(if n == 98 { b'v' } else { b'r' }, "99 fields are within the limit");
        add(&mut c, k, format!("{} fields, {size}-byte values", n + 1), format!("{GET}\r\n{HOST}\r\n{fields}\r\n"));
    }
    for (what, size) in [("value", 33 << 10), ("value", 64 << 10), ("name", 40 << 10), ("method", 40 << 10)] {
        let big = "b".repeat(size);
        let (line, field) = match what {
            "value" => (GET.to_owned(), format!("X-Big: {big}")),
            "name" => (GET.to_owned(), format!("{big}: b")),
            _ => (format!("{big} /m### HTTP/1.1"), "X-A: b".to_owned()),
        };
        add(&mut c, Kind::Reject, format!("{size}-byte {what}"), req(&line, &[HOST, &field], ""));
    }
    for size in [8000, 9000, 40_000, 70_000] {
        let (k, line) = (kind(if size == 8000 { b'v' } else { b'r' }, "within the limit"), GET.replace("###", "###a"));
        add(&mut c, k, format!("{size}-byte target"), req(&line.replace('a', &"a".repeat(size)), &[HOST], ""));
    }
    // Heads cut short, then the connection half-closed; bodies cut short.
    let full = req(GET, &[HOST, "X-A: b"], "");
    for cut in [1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 18, 19, 20, 25, 31, 37, 38, 39, 44, 46, 47, 48] {
        add(&mut c, Kind::Reject, format!("head cut at {cut}"), &full[..cut]).eof = true;
    }
    add(&mut c, Kind::Reject, "head cut: an empty line only", "\r\n").eof = true;
    let te = "Transfer-Encoding: chunked";
    for (method, (framing, body)) in ["GET", "POST"].into_iter().flat_map(|m| {
        [("Content-Length: 10", "abc"), (te, "5\r\nhel"), (te, "5\r\nhello\r\n"), (te, "0\r\n")].map(|b| (m, b))
    }) {
        let (text, k) = (req(&GET.replacen("GET", method, 1), &[HOST, framing], body), Kind::Close("cut short"));
        add(&mut c, k, format!("body cut {method} {framing} {body:?}"), text).eof = true;
    }
    // Not HTTP/1.1 at all: TLS, and HTTP/2 (served here with prior knowledge).
    let hello = format!("\x16\x03\x01\0\x2f\x01\0\0\x2b\x03\x03{}\0\0\x02\x13\x01\x01\0\0\0", "\x07".repeat(32));
    add(&mut c, Kind::Reject, "TLS ClientHello", hello.clone());
    add(&mut c, Kind::Reject, "TLS ClientHello, EOF", hello).eof = true;
    add(&mut c, Kind::Reject, "SSLv2 hello, EOF", "\u{80}\x2e\x01\x03\x01\0\x15\0\0\0\x10").eof = true;
    add(&mut c, Kind::Reject, "PRI with a wrong tail", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    add(&mut c, Kind::Reject, "PRI as HTTP/1.1", "PRI * HTTP/1.1\r\n\r\n");
    let settings = format!("{PREFACE}{}", frame(4, 0, 0, &[]));
    let h2 = [
        ("h2c GET", settings.clone() + &frame(1, 5, 1, b"\x82\x86\x04\x05/m###\x01\x0bcdn.example")),
        (
            "h2c GET, foreign authority",
            settings.clone() + &frame(1, 5, 1, b"\x82\x86\x04\x05/m###\x01\x0cevil.example"),
        ),
        ("preface, garbage", format!("{PREFACE}garbage garbage garbage\r\n\r\n")),
        ("preface, HTTP/1.1 request", format!("{PREFACE}{SMUGGLED}")),
        ("preface only, EOF", PREFACE.into()),
        ("half a preface, EOF", PREFACE[..16].into()),
        ("preface, SETTINGS of 5 bytes", format!("{PREFACE}{}", frame(4, 0, 0, &[0; 5]))),
        ("preface, 16 MiB frame header", format!("{PREFACE}\u{ff}\u{ff}\u{ff}\0\0\0\0\0\0")),
        ("preface, HEADERS on stream 0", settings.clone() + &frame(1, 5, 0, &[0x82, 0x86])),
        ("preface, DATA before HEADERS", settings.clone() + &frame(0, 1, 1, b"x")),
        ("preface, HEADERS of bad HPACK", settings.clone() + &frame(1, 5, 1, &[0xff; 8])),
        ("preface, HEADERS on stream 2", settings + &frame(1, 5, 2, &[0x82, 0x86])),
    ];
    for (i, (name, text)) in h2.into_iter().enumerate() {
        let k = if i == 0 { Kind::Valid("h2c with prior knowledge is served on this port") } else { Kind::Reject };
        let case = add(&mut c, k, name, text);
        (case.h2, case.eof) = (true, name.ends_with("EOF"));
    }
    for (n, case) in c.iter_mut().enumerate() {
        let tag = format!("{n:03}");
        case.bytes = case.text.replace("###", &tag).chars().map(|ch| u8::try_from(ch).expect("Latin-1")).collect();
        (case.path, case.n) = (origin_path(&case.text).replace("###", &tag), n);
    }
    c
}

/// The path the origin would see for a request's target. A fragment is not
/// part of the resource (RFC 3986 §3.5; browsers never send one): the
/// http crate drops it while parsing the target, before the node sees it,
/// so a target with one is served as the same target without it.
fn origin_path(text: &str) -> String {
    let line = text.trim_start().split(['\r', '\n']).next().unwrap_or_default();
    // "###" is the case number's placeholder, not a fragment.
    let line = line.replace("###", "\u{1}");
    let line = match line.split_once('#') {
        Some((before, after)) => format!("{before}{}", after.find(' ').map_or("", |i| &after[i..])),
        None => line,
    }
    .replace('\u{1}', "###");
    let line = line.as_str();
    let word = line.split([' ', '\t', '\x0b', '\x0c']).filter(|w| !w.is_empty()).nth(1);
    let target = if text.starts_with(PREFACE) { "/m###" } else { word.unwrap_or_default() };
    let Some((_, rest)) = target.split_once("://") else { return target.into() };
    let path = &rest[rest.find(['/', '?']).unwrap_or(rest.len())..];
    if path.starts_with('/') { path.into() } else { format!("/{path}") }
}

struct Outcome {
    /// Final statuses (and 101) with their bodies.
    responses: Vec<(u16, Vec<u8>)>,
    raw: Vec<u8>,
    closed: bool,
    /// HTTP/2: a response or GOAWAY came (the node keeps h2 connections open).
    done: bool,
}

async fn exchange(addr: SocketAddr, case: &Case) -> Outcome {
    let (mut raw, mut closed, mut done) = (Vec::new(), false, false);
    let talk = async {
        let (mut rd, mut wr) = tokio::net::TcpStream::connect(addr).await.expect("connect").into_split();
        let write = async {
            let _ = wr.write_all(&case.bytes).await;
            if case.eof {
                let _ = wr.shutdown().await;
            } else if !case.h2 {
                let _ = wr.write_all(CANARY.replace("###", &format!("{:03}", case.n)).as_bytes()).await;
            }
            wr
        };
        let read = async {
            let mut buf = vec![0; 1 << 16];
            while !done {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => closed = true,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
                done = closed || (case.h2 && h2_frames(&raw).1);
            }
        };
        tokio::join!(write, read)
    };
    let _ = tokio::time::timeout(CASE_LIMIT, talk).await;
    let head = case.bytes.trim_ascii_start().starts_with(b"HEAD ");
    let (responses, done) = match h2_frames(&raw) {
        (statuses, done) if case.h2 && !raw.starts_with(b"HTTP/") => {
            (statuses.into_iter().map(|s| (s, vec![])).collect(), done)
        }
        _ => (responses(&raw, head), false),
    };
    Outcome { responses, raw, closed, done }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// HTTP/1.x responses: final statuses (and 101) with their bodies.
fn responses(raw: &[u8], head_first: bool) -> Vec<(u16, Vec<u8>)> {
    let (mut out, mut rest) = (Vec::new(), raw);
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let Some(status) = head.strip_prefix("http/1.").and_then(|h| h.get(2..5)?.parse::<u16>().ok()) else { break };
        rest = &rest[end + 4..];
        let field = |name: &str| head.lines().find_map(|l| Some(l.strip_prefix(name)?.strip_prefix(':')?.trim()));
        let mut body = Vec::new();
        if (status < 200 && status != 101) || (head_first && out.is_empty()) || status == 204 || status == 304 {
            // No body.
        } else if field("transfer-encoding") == Some("chunked") {
            while let Some(eol) = find(rest, b"\r\n") {
                let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap_or(0);
                body.extend_from_slice(rest.get(eol + 2..eol + 2 + size).unwrap_or(&rest[eol + 2..]));
                rest = rest.get(eol + 4 + size..).unwrap_or_default();
                if size == 0 {
                    break;
                }
            }
        } else {
            let len = field("content-length").and_then(|v| v.parse().ok()).unwrap_or(rest.len()).min(rest.len());
            (body, rest) = (rest[..len].to_vec(), &rest[len..]);
        }
        if status >= 200 || status == 101 {
            out.push((status, body));
        }
    }
    out
}

/// HTTP/2 frames from the node: the statuses of its HEADERS, and whether a
/// response or a GOAWAY came.
fn h2_frames(raw: &[u8]) -> (Vec<u16>, bool) {
    let (mut statuses, mut done, mut i) = (Vec::new(), false, 0);
    while let Some(header) = raw.get(i..i + 9) {
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let Some(payload) = raw.get(i + 9..i + 9 + len) else { break };
        if header[3] == 1 {
            statuses.push(hpack_status(payload));
        }
        done |= matches!(header[3], 1 | 7);
        i += 9 + len;
    }
    (statuses, done)
}

/// :status from the start of a header block: a static-table index, or a
/// literal with plain or Huffman digits ('0'..'2': 5-bit codes 0..2, '3'..'9':
/// 6-bit codes 25..31); 0 if neither.
fn hpack_status(block: &[u8]) -> u16 {
    let block = if block.first().is_some_and(|b| b & 0xe0 == 0x20) { &block[1..] } else { block };
    let bit = |i: usize| u16::from(block.get(2 + i / 8).is_some_and(|b| (b >> (7 - i % 8)) & 1 == 1));
    let bits = |at: usize, n: usize| (at..at + n).fold(0, |acc, i| (acc << 1) | bit(i));
    match block {
        [b @ 0x88..=0x8e, ..] => [200, 204, 206, 304, 400, 404, 500][usize::from(b - 0x88)],
        [0x48 | 0x08 | 0x18, len @ 0..=0x7f, value @ ..] => {
            String::from_utf8_lossy(value.get(..usize::from(*len)).unwrap_or(value)).parse().unwrap_or(0)
        }
        [0x48 | 0x08 | 0x18, ..] => {
            let digit = |(at, status): (usize, u16), _| match bits(at, 5) {
                short @ 0..3 => (at + 5, status * 10 + short),
                _ => (at + 6, status * 10 + bits(at, 6).saturating_sub(22)),
            };
            (0..3).fold((0, 0), digit).1
        }
        _ => 0,
    }
}

/// What went wrong with one case, at the node or at the origin.
fn judge(case: &Case, out: &Outcome, origin: &FakeOrigin) -> Vec<String> {
    let (first, second) = (out.responses.first(), out.responses.get(1));
    let served = |r: Option<&(u16, Vec<u8>)>| r.is_some_and(|(s, _)| (200..400).contains(s));
    let (canary, requests) = (format!("/canary-{:03}", case.n), if case.eof || case.h2 { 1 } else { 2 });
    let body = |path: &String| {
        let headers = origin.last_headers(path).unwrap_or_default();
        headers.contains_key("transfer-encoding") || headers.get("content-length").is_some_and(|v| *v != "0")
    };
    let head = case.bytes.trim_ascii_start().starts_with(b"HEAD ") || case.h2;
    let kept = matches!(case.kind, Kind::Close(_)) && served(first) && (out.responses.len() > 1 || !out.closed);
    let not_canary = served(second) && second.is_some_and(|(_, b)| *b != canary.as_bytes());
    [
        (out.responses.iter().any(|(s, _)| *s >= 500), "a 5xx".to_owned()),
        (case.kind == Kind::Reject && served(first), "2xx/3xx to an invalid request".into()),
        (kept, "answered broken framing and kept the connection".into()),
        (first.is_some_and(|(s, b)| *s == 200 && !head && *b != case.path.as_bytes()), "200 for another target".into()),
        (out.responses.len() > requests, format!("{} responses to {requests} requests", out.responses.len())),
        (not_canary, "the second response is not the canary's".into()),
        (origin.hits(&format!("/smuggled-{:03}", case.n)) > 0, "a smuggled request reached the origin".into()),
        (case.kind == Kind::Reject && origin.hits(&case.path) > 0, "an invalid request reached the origin".into()),
        (origin.hits(&case.path) > 1 || origin.hits(&canary) > 1, "the origin got one target twice".into()),
        (body(&case.path) || body(&canary), "the origin got a request with a body".into()),
        (!out.closed && !out.done, format!("canary unanswered, connection open after {CASE_LIMIT:?} (swallowed?)")),
    ]
    .into_iter()
    .filter_map(|(failed, why)| failed.then_some(why))
    .collect()
}

fn shown(bytes: &[u8], limit: usize) -> String {
    let more = if bytes.len() > limit { format!("... ({} bytes)", bytes.len()) } else { String::new() };
    format!("\"{}\"{more}", bytes[..bytes.len().min(limit)].escape_ascii())
}

/// Panics anywhere in the process (the node runs in it), recorded.
fn record_panics() -> &'static Mutex<Vec<String>> {
    static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(info.to_string());
        default(info);
    }));
    &PANICS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_corpus_never_5xx_never_smuggled() {
    let panics = record_panics();
    within(async {
        let origin = FakeOrigin::start().await;
        let (_node, addr) = node_with(&origin, |c| c.server.hosts = vec!["cdn.example".into()]).await;
        let cases = corpus();
        assert!(cases.len() >= 300, "only {} cases", cases.len());
        let outcomes: Vec<Outcome> =
            futures_util::stream::iter(&cases).map(|case| exchange(addr, case)).buffered(16).collect().await;
        let alive = send(addr, Protocol::Http1, "GET", "/alive", &[("host", "cdn.example")]).await;
        assert_eq!(alive.expect("the node still answers").status, 200);

        let total = origin.total_hits();
        let (mut table, mut failures) = (BTreeMap::<String, usize>::new(), Vec::new());
        let mut asked = HashSet::from(["/alive".to_owned()]);
        for (case, out) in cases.iter().zip(&outcomes) {
            let paths = [case.path.clone(), format!("/canary-{:03}", case.n), format!("/smuggled-{:03}", case.n)];
            asked.extend(paths[..2].iter().cloned());
            let class = match out.responses.first() {
                Some((s @ (400 | 405 | 414 | 431 | 501), _)) => s.to_string(),
                Some((s, _)) => format!("other {s}"),
                None => "closed".into(),
            };
            *table.entry(class).or_default() += 1;
            let problems = judge(case, out, &origin);
            if !problems.is_empty() {
                let statuses: Vec<u16> = out.responses.iter().map(|(s, _)| *s).collect();
                let (n, name, kind, sent) = (case.n, case.name.escape_default(), case.kind, shown(&case.bytes, 300));
                let (after, got) = (if out.closed { "then closed" } else { "left open" }, shown(&out.raw, 160));
                let origin_saw = paths.map(|p| format!("{p} x{}", origin.hits(&p))).join(", ");
                failures.push(format!(
                    "FAIL #{n:03} {name} [{kind:?}]\n  sent:   {sent}\n  got:    {statuses:?} {after}: {got}\n  \
                     origin: {origin_saw}\n  why:    {}",
                    problems.join("; ")
                ));
            }
        }
        let unasked = total.saturating_sub(asked.iter().map(|p| origin.hits(p)).sum());

        for failure in &failures {
            println!("{failure}");
        }
        let count = |k: fn(&Kind) -> bool| cases.iter().filter(|c| k(&c.kind)).count();
        let (reject, close) = (count(|k| *k == Kind::Reject), count(|k| matches!(k, Kind::Close(_))));
        let valid = count(|k| matches!(k, Kind::Valid(_)));
        println!(
            "\nmalformed corpus: {} cases ({reject} to refuse, {close} to close after, {valid} valid)",
            cases.len()
        );
        println!("{:<8} {:>6}", "outcome", "cases");
        for row in ["400", "405", "414", "431", "501", "closed"] {
            println!("{row:<8} {:>6}", table.get(row).unwrap_or(&0));
        }
        let other: Vec<_> = table.iter().filter_map(|(k, n)| Some((k.strip_prefix("other ")?, n))).collect();
        let detail: Vec<_> = other.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!("{:<8} {:>6}  ({})", "other", other.iter().map(|(_, n)| *n).sum::<usize>(), detail.join(", "));
        println!("failing cases: {}; origin hits on paths never asked for: {unasked}", failures.len());

        let panics = panics.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(panics.is_empty(), "the node panicked: {panics:#?}");
        assert_eq!(unasked, 0, "the origin got requests for paths no client asked for");
        assert!(failures.is_empty(), "{} of {} cases failed (listed above)", failures.len(), cases.len());
    })
    .await
}
