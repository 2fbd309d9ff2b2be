//! Origins that misbehave (or are made to, through a forged request header)
//! never panic the node, poison the cache or reach other clients.

mod common;

use std::time::Duration;

use common::{node_with, within};
use holdfast_test::{FakeOrigin, Gate, Protocol, Reply, eventually, get, send};

/// Regression: `Age: 2^64-1` overflowed a Duration sum, which panicked the
/// fill and then every lookup of the stored object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_age_is_capped_not_a_panic() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/old.js", Reply::ok("old").header("age", "18446744073709551615").header("etag", "\"1\""));
        origin.route("/listed.js", Reply::ok("listed").header("age", "30, 60"));
        let (_node, addr) = node_with(&origin, |_| {}).await;
        let first = get(addr, "/old.js").await;
        assert_eq!((first.status.as_u16(), first.bytes().as_ref()), (200, &b"old"[..]));
        // Older than its freshness: revalidated, never a panic.
        let second = get(addr, "/old.js").await;
        assert_eq!(second.status.as_u16(), 200, "the node still answers for the object");
        let age: u64 = second.header("age").unwrap_or("0").parse().unwrap();
        assert!(age <= 1 << 31, "Age {age} is capped at 2^31");
        get(addr, "/listed.js").await;
        let hit = get(addr, "/listed.js").await;
        assert_eq!(hit.x_cache(), "HIT");
        assert!(hit.header("age").unwrap().parse::<u64>().unwrap() >= 30, "the first Age of a list counts");
    })
    .await
}

/// An origin that compresses according to Accept-Encoding but sends no
/// Vary: the coded response is stored for its coding only, and a coding
/// nobody asked for is relayed but never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coded_response_without_vary_never_reaches_other_codings() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/app.js", Reply::ok("GZIPPED BYTES").header("content-encoding", "gzip"));
        let (_node, addr) = node_with(&origin, |_| {}).await;
        let gzip = [("accept-encoding", "gzip, deflate")];
        let first = send(addr, Protocol::Http1, "GET", "/app.js", &gzip).await.unwrap();
        assert_eq!(first.x_cache(), "MISS");
        assert_eq!(first.header("vary"), Some("accept-encoding"), "downstream caches are told to vary");
        let hit = send(addr, Protocol::Http1, "GET", "/app.js", &gzip).await.unwrap();
        assert_eq!(hit.x_cache(), "HIT");
        // A client without gzip never gets the stored gzip bytes.
        let identity = send(addr, Protocol::Http1, "GET", "/app.js", &[]).await.unwrap();
        assert_eq!(identity.x_cache(), "MISS", "not the gzip variant");
        assert!(identity.header("cache-status").is_some_and(|s| s.contains("detail=coding")), "not stored");
        let again = send(addr, Protocol::Http1, "GET", "/app.js", &[]).await.unwrap();
        assert_eq!(again.x_cache(), "MISS", "the unrequested coding was not stored");
        assert_eq!(origin.hits("/app.js"), 3);
    })
    .await
}

/// A 508 from the next tier is about one request's Via, which a client
/// can forge to name a shield: the requests that waited on the same fill
/// fetch for themselves instead of inheriting the 508.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_refusal_upstream_is_not_shared_with_waiters() {
    within(async {
        let origin = FakeOrigin::start().await;
        let gate = Gate::new();
        origin.route("/popular.js", Reply::ok("loop").status(508).hold_head(&gate));
        let (node, addr) = node_with(&origin, |_| {}).await;
        let forged = tokio::spawn(async move {
            send(addr, Protocol::Http1, "GET", "/popular.js", &[("via", "1.1 shield-0")]).await.unwrap()
        });
        eventually(Duration::from_secs(5), "the forged request's fill", || origin.hits("/popular.js") == 1).await;
        let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(async move { get(addr, "/popular.js").await })).collect();
        eventually(Duration::from_secs(5), "the waiters join the fill", || node.handler().fills_in_flight().1 == 4)
            .await;
        origin.route("/popular.js", Reply::ok("popular"));
        gate.open();
        assert_eq!(forged.await.unwrap().status.as_u16(), 508);
        for waiter in waiters {
            let response = waiter.await.unwrap();
            assert_eq!((response.status.as_u16(), response.bytes().as_ref()), (200, &b"popular"[..]));
        }
    })
    .await
}

/// An origin that writes `responses` (path → raw bytes) and closes, for
/// framing no well-behaved HTTP library would produce. Counts requests by
/// path; any other path (the health check) gets a small 200.
async fn raw_origin(responses: Vec<(&'static str, String)>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let responses = std::sync::Arc::new(responses);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (log, responses) = (log.clone(), responses.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                let reply = responses.iter().find(|(p, _)| *p == path).map(|(_, r)| r.as_str());
                let reply = reply.unwrap_or("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                log.lock().unwrap().push(path);
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, seen)
}

/// Regression: hyper reads a body framed by both Content-Length and
/// Transfer-Encoding, and the node relayed a 200 cut off before its first
/// byte (its own length check failed). Such a response is refused with a
/// 502 that names the fault (RFC 9112 §6.3), as is a body that breaks
/// before its first byte; nothing is stored. Another transfer coding is
/// read as §6.3 says (here until the close). A length repeated in a list is one
/// length, and a 204 has no body whatever its Content-Length says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_framed_wrongly_is_a_502_and_never_stored() {
    let reply =
        |head: &str, body: &str| format!("HTTP/1.1 200 OK\r\n{head}Cache-Control: public, max-age=600\r\n\r\n{body}");
    let responses = vec![
        ("/both.js", reply("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")),
        ("/gzip-length.js", reply("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n", "hello")),
        // Not chunked last: the body runs until the origin closes (§6.3).
        ("/until-close.js", reply("Transfer-Encoding: x-custom\r\n", "hello")),
        ("/bad-chunk.js", reply("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n")),
        ("/listed.js", reply("Content-Length: 5, 5\r\n", "hello")),
        // No body whatever the length says (RFC 9112 §6.3): not a broken one.
        ("/empty.js", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n".to_owned()),
    ];
    within(async {
        let (url, seen) = raw_origin(responses).await;
        let origin = FakeOrigin::start().await;
        let (_node, addr) = node_with(&origin, |c| c.origin.urls = common::urls(&[url])).await;
        let faults = [
            ("/both.js", "both Transfer-Encoding and Content-Length"),
            ("/gzip-length.js", "both Transfer-Encoding and Content-Length"),
            ("/bad-chunk.js", "broke its body"),
        ];
        for (path, fault) in faults {
            for protocol in [Protocol::Http1, Protocol::H2c, Protocol::Http1] {
                let response = send(addr, protocol, "GET", path, &[]).await.unwrap();
                let text = String::from_utf8_lossy(response.bytes()).into_owned();
                assert_eq!((response.status.as_u16(), response.x_cache()), (502, "ERROR"), "{path} over {protocol:?}");
                assert!(text.contains(fault), "{path}: the body names the fault: {text}");
            }
            let fetched = seen.lock().unwrap().iter().filter(|p| *p == path).count();
            assert_eq!(fetched, 3, "{path} is never stored: every request goes to the origin");
        }
        for (protocol, x_cache) in [(Protocol::Http1, "MISS"), (Protocol::H2c, "HIT"), (Protocol::Http1, "HIT")] {
            let response = send(addr, protocol, "GET", "/listed.js", &[]).await.unwrap();
            assert_eq!((response.status.as_u16(), response.x_cache()), (200, x_cache), "over {protocol:?}");
            assert_eq!(response.bytes().as_ref(), b"hello");
            assert_eq!(response.header("content-length"), Some("5"));
        }
        for x_cache in ["MISS", "HIT"] {
            let response = get(addr, "/until-close.js").await;
            assert_eq!((response.status.as_u16(), response.x_cache()), (200, x_cache));
            assert_eq!(response.bytes().as_ref(), b"hello");
            let framing = response.header("transfer-encoding").unwrap_or("");
            assert!(!framing.contains("x-custom"), "hop-by-hop: the origin's coding is not relayed: {framing}");
        }
        let response = send(addr, Protocol::Http1, "GET", "/empty.js", &[]).await.unwrap();
        assert_eq!((response.status.as_u16(), response.bytes().as_ref()), (204, &b""[..]));
        assert_eq!(response.header("content-length"), None, "never sent with a 204 (RFC 9110 §8.6)");
    })
    .await
}
