//! HTTP/2 attacks sent as raw frames over h2c (catalogue S08 to S11):
//! rapid reset, CONTINUATION flood, oversized header lists, streams given
//! no flow-control window (S14). The node must
//! cut the attacker off and keep serving everyone else.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{node, node_with, within};
use holdfast_test::{FakeOrigin, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK: GET, http, path "/x", authority "a" (static-table references and
/// a literal without indexing).
fn request_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x04, 0x02, b'/', b'x', 0x01, 0x01, b'a']
}

/// Reads frames until the server closes or `limit` passes; returns the
/// GOAWAY error code if one came.
async fn goaway_code(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<u32> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 16384];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if find_goaway(&buf).is_some() {
                break;
            }
        }
    })
    .await;
    find_goaway(&buf)
}

fn find_goaway(buf: &[u8]) -> Option<u32> {
    let mut i = 0;
    while i + 9 <= buf.len() {
        let len = ((buf[i] as usize) << 16) | ((buf[i + 1] as usize) << 8) | buf[i + 2] as usize;
        if i + 9 + len > buf.len() {
            return None;
        }
        if buf[i + 3] == GOAWAY && len >= 8 {
            let p = &buf[i + 9..];
            return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
        i += 9 + len;
    }
    None
}

async fn attacker(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_the_connection_closed() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        let mut stream = attacker(addr).await;
        let mut burst = Vec::new();
        for i in 0..2000u32 {
            let id = 2 * i + 1;
            burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &request_block()));
            burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        }
        let _ = stream.write_all(&burst).await;
        let code = goaway_code(&mut stream, Duration::from_secs(10)).await;
        // ENHANCE_YOUR_CALM (0xb), or at least a GOAWAY that ends the abuse.
        assert!(code.is_some(), "the server must send GOAWAY to a rapid-reset client");
        assert!(origin.hits("/x") < 2000, "not every reset stream reached the origin");
        assert_eq!(get(addr, "/after").await.status, 200, "others are still served");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        let mut stream = attacker(addr).await;
        // HEADERS without END_HEADERS, then endless CONTINUATION frames of
        // literal headers: the header list grows past every limit.
        let _ = stream.write_all(&frame(HEADERS, END_STREAM, 1, &request_block())).await;
        let mut literal = vec![0x00, 0x05];
        literal.extend_from_slice(b"x-pad");
        literal.push(0x7f);
        literal.push(0x81);
        literal.push(0x07); // value length 1024 as an HPACK integer: 127 + 1 + 7 * 128
        literal.extend(std::iter::repeat_n(b'a', 1024));
        let mut sent = 0usize;
        for _ in 0..2000 {
            if stream.write_all(&frame(CONTINUATION, 0, 1, &literal)).await.is_err() {
                break;
            }
            sent += literal.len();
        }
        let code = goaway_code(&mut stream, Duration::from_secs(10)).await;
        assert!(
            code.is_some() || sent < 2000 * literal.len(),
            "the connection must be refused long before 2 MB of header block"
        );
        assert_eq!(origin.hits("/x"), 0);
        assert_eq!(get(addr, "/after").await.status, 200, "others are still served");
    })
    .await
}

/// Regression (catalogue S14): a client that gives its streams no
/// flow-control credit (SETTINGS_INITIAL_WINDOW_SIZE 0) blocks no socket
/// write, so the send timeout never fired: the connection, and the
/// responses waiting on it, stayed for as long as the client liked. The
/// node now closes it once a response has waited the send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_given_no_window_are_cut_off_after_the_send_timeout() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/x", holdfast_test::Reply::ok(vec![7u8; 100_000]));
        let (node, addr) = node_with(&origin, |c| c.server.send_timeout = Duration::from_millis(300)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(PREFACE).await.unwrap();
        let no_window = [0x00, 0x04, 0, 0, 0, 0]; // SETTINGS_INITIAL_WINDOW_SIZE = 0
        stream.write_all(&frame(SETTINGS, 0, 0, &no_window)).await.unwrap();
        for id in [1u32, 3, 5] {
            stream.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, id, &request_block())).await.unwrap();
        }
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut chunk = [0u8; 16384];
            while let Ok(n) = stream.read(&mut chunk).await
                && n > 0
            {}
        })
        .await;
        assert!(closed.is_ok(), "the connection is closed");
        assert_eq!(node.tcp.send_timeouts(), 1, "closed by the send timeout, and counted");
        assert_eq!(get(addr, "/x").await.bytes().len(), 100_000, "others are still served");
    })
    .await
}
