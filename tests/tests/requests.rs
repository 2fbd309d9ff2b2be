//! What the node refuses, and how: clear 4xx, never a panic, never a proxy.

mod common;

use std::time::Duration;

use common::{node, node_with, within};
use holdfast_test::{Protocol, get, raw, send};

const RAW_LIMIT: Duration = Duration::from_secs(5);

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nx-nul: a\0b\r\n\r\n",
            b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        for request in cases {
            let response = raw(addr, request, RAW_LIMIT).await;
            assert!(
                status_line(&response).starts_with("HTTP/1.1 400"),
                "{:?} -> {:?}",
                String::from_utf8_lossy(request),
                status_line(&response)
            );
        }
        assert_eq!(origin.total_hits(), 0);
        // The node is still serving.
        assert_eq!(get(addr, "/ok").await.status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_get_405_unless_configured_to_pass() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        for method in ["POST", "PUT", "DELETE", "PURGE", "BAN", "PATCH"] {
            let response = send(addr, Protocol::Http1, method, "/x", &[]).await.unwrap();
            assert_eq!(response.status, 405, "{method}");
            assert_eq!(response.header("allow"), Some("GET, HEAD"));
        }
        assert_eq!(origin.total_hits(), 0);

        let (_node, addr) = node_with(&origin, |c| c.server.pass_methods = vec!["POST".into()]).await;
        let response = send(addr, Protocol::Http1, "POST", "/form", &[("content-type", "text/plain")]).await.unwrap();
        assert_eq!((response.status.as_u16(), response.x_cache()), (200, "PASS"));
        let again = send(addr, Protocol::Http1, "POST", "/form", &[]).await.unwrap();
        assert_eq!(again.x_cache(), "PASS");
        assert_eq!(origin.hits("/form"), 2, "passed requests are never cached");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_target_and_header_size() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        let long = format!("/{}", "a".repeat(9000));
        for protocol in [Protocol::Http1, Protocol::H2c] {
            assert_eq!(send(addr, protocol, "GET", &long, &[]).await.unwrap().status, 414, "{protocol:?}");
        }
        let many: Vec<(String, String)> = (0..120).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(send(addr, Protocol::H2c, "GET", "/h", &many).await.unwrap().status, 431);
        let big = "b".repeat(20_000);
        let two_big = [("x-a", big.as_str()), ("x-b", big.as_str())];
        assert_eq!(send(addr, Protocol::H2c, "GET", "/h", &two_big).await.unwrap().status, 431);
        let mut request = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..120 {
            request.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        assert!(status_line(&raw(addr, &request, RAW_LIMIT).await).starts_with("HTTP/1.1 431"));
        let huge = format!("GET / HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n", "c".repeat(64 * 1024));
        assert!(status_line(&raw(addr, huge.as_bytes(), RAW_LIMIT).await).starts_with("HTTP/1.1 431"));
        assert_eq!(origin.total_hits(), 0);
    })
    .await
}

/// `limits.max_headers` below and above hyper's own 100: the HTTP/1.1
/// parser is only told a larger maximum (it costs a list per request), so
/// a smaller one must still be enforced, and a larger one let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_header_count_is_the_limit_over_http1() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let request = |fields: usize| {
            let mut request = b"GET /h HTTP/1.1\r\nHost: a\r\n".to_vec();
            for i in 0..fields {
                request.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
            }
            request.extend_from_slice(b"Connection: close\r\n\r\n");
            request
        };
        let (_strict, addr) = node_with(&origin, |c| c.limits.max_headers = 20).await;
        assert!(status_line(&raw(addr, &request(30), RAW_LIMIT).await).starts_with("HTTP/1.1 431"));
        assert!(status_line(&raw(addr, &request(10), RAW_LIMIT).await).starts_with("HTTP/1.1 200"));
        let (_lenient, addr) = node_with(&origin, |c| c.limits.max_headers = 150).await;
        assert!(status_line(&raw(addr, &request(120), RAW_LIMIT).await).starts_with("HTTP/1.1 200"));
        assert!(status_line(&raw(addr, &request(160), RAW_LIMIT).await).starts_with("HTTP/1.1 431"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_an_open_proxy() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) =
            node_with(&origin, |c| c.server.hosts = vec!["cdn.example".into(), "*.assets.example".into()]).await;
        let proxy = raw(addr, b"GET http://evil.example/x HTTP/1.1\r\nHost: cdn.example\r\n\r\n", RAW_LIMIT).await;
        assert!(status_line(&proxy).starts_with("HTTP/1.1 400"), "{proxy}");
        let connect =
            raw(addr, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", RAW_LIMIT).await;
        assert!(status_line(&connect).starts_with("HTTP/1.1 4"), "{connect}");
        let served = raw(addr, b"GET http://cdn.example/y HTTP/1.1\r\nHost: cdn.example\r\n\r\n", RAW_LIMIT).await;
        assert!(status_line(&served).starts_with("HTTP/1.1 200"), "absolute-form for a served host: {served}");
        for (host, status) in [
            ("cdn.example", 200),
            ("CDN.Example:8080", 200),
            ("img.assets.example", 200),
            ("assets.example", 421),
            ("other.example", 421),
        ] {
            let response = send(addr, Protocol::Http1, "GET", "/z", &[("host", host)]).await.unwrap();
            assert_eq!(response.status, status, "{host}");
        }
        assert_eq!(origin.hits("/x"), 0);
    })
    .await
}
