//! End-to-end behaviour of one node: miss then hit, freshness and what is
//! never stored, Vary, conditional requests, HEAD, ranges, Accept-Encoding.

mod common;

use common::{node, node_with, within};
use std::time::Duration;

use holdfast_test::{Protocol, Reply, eventually, get, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_with_the_same_bytes() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/app.js", Reply::ok("console.log(1)").header("etag", "\"v1\""));
        let (_node, addr) = node(&origin).await;
        let first = get(addr, "/app.js").await;
        assert_eq!(first.status, 200);
        assert_eq!(first.x_cache(), "MISS");
        assert_eq!(first.bytes().as_ref(), b"console.log(1)");
        let second = get(addr, "/app.js").await;
        assert_eq!(second.x_cache(), "HIT");
        assert_eq!(second.bytes().as_ref(), b"console.log(1)");
        assert_eq!(second.header("etag"), Some("\"v1\""));
        assert_eq!(second.header("content-length"), Some("14"));
        assert!(second.header("cache-status").is_some_and(|s| s.starts_with("holdfast; hit")));
        assert_eq!(origin.hits("/app.js"), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_shares_the_cache_with_http1() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        let first = send(addr, Protocol::H2c, "GET", "/shared.css", &[]).await.unwrap();
        assert_eq!(first.version, http::Version::HTTP_2);
        assert_eq!(first.x_cache(), "MISS");
        let second = get(addr, "/shared.css").await;
        assert_eq!(second.x_cache(), "HIT");
        let third = send(addr, Protocol::H2c, "GET", "/shared.css", &[]).await.unwrap();
        assert_eq!(third.x_cache(), "HIT");
        assert_eq!(third.bytes().as_ref(), b"/shared.css");
        assert_eq!(origin.hits("/shared.css"), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_carry_the_age_the_origin_reported() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/aged", Reply::ok("a").header("age", "100"));
        let (_node, addr) = node(&origin).await;
        get(addr, "/aged").await;
        let hit = get(addr, "/aged").await;
        assert_eq!(hit.x_cache(), "HIT");
        let age: u64 = hit.header("age").unwrap().parse().unwrap();
        assert!((100..110).contains(&age), "age {age}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_private_set_cookie_and_errors_without_freshness_are_never_stored() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/no-store", Reply::ok("n").header("cache-control", "no-store"));
        origin.route("/private", Reply::ok("p").header("cache-control", "private, max-age=600"));
        origin.route("/cookie", Reply::ok("c").header("set-cookie", "session=1"));
        origin.route("/error", Reply::ok("e").status(500).without("cache-control"));
        origin.route("/not-found", Reply::ok("nf").status(404).without("cache-control"));
        let (_node, addr) = node(&origin).await;
        for path in ["/no-store", "/private", "/cookie", "/error", "/not-found"] {
            let first = get(addr, path).await;
            let second = get(addr, path).await;
            assert_eq!(first.x_cache(), "MISS", "{path}");
            assert_eq!(second.x_cache(), "MISS", "{path}");
            assert_eq!(origin.hits(path), 2, "{path} must reach the origin every time");
        }
    })
    .await
}

/// RFC 9111 §3 lets any final status be stored with explicit freshness; an
/// error sent with the site's year-long asset headers stays fresh for
/// `cache.max_error_ttl` (60 s) at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_with_explicit_freshness_are_stored_for_a_minute_at_most() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/error", Reply::ok("e").status(500));
        origin.route("/not-found", Reply::ok("nf").status(404));
        let (_node, addr) = node(&origin).await;
        for path in ["/error", "/not-found"] {
            assert_eq!(get(addr, path).await.x_cache(), "MISS", "{path}");
            let second = get(addr, path).await;
            assert_eq!(second.x_cache(), "HIT", "{path}");
            let ttl: u64 = second.header("cache-status").and_then(|s| s.split("ttl=").nth(1)?.parse().ok()).unwrap();
            assert!(ttl <= 60, "{path}: ttl {ttl}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_variants_apart() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/v", Reply::ok("body").header("vary", "Accept-Language"));
        let (_node, addr) = node(&origin).await;
        let en = [("accept-language", "en")];
        let fr = [("accept-language", "fr")];
        let r = send(addr, Protocol::Http1, "GET", "/v", &en).await.unwrap();
        assert_eq!(r.x_cache(), "MISS");
        let r = send(addr, Protocol::Http1, "GET", "/v", &en).await.unwrap();
        assert_eq!(r.x_cache(), "HIT");
        let r = send(addr, Protocol::Http1, "GET", "/v", &fr).await.unwrap();
        assert_eq!(r.x_cache(), "MISS", "another Accept-Language is another variant");
        let r = send(addr, Protocol::Http1, "GET", "/v", &fr).await.unwrap();
        assert_eq!(r.x_cache(), "HIT");
        assert_eq!(origin.hits("/v"), 2);

        origin.route("/star", Reply::ok("s").header("vary", "*"));
        get(addr, "/star").await;
        assert_eq!(get(addr, "/star").await.x_cache(), "MISS", "Vary: * is never stored");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_encoding_is_normalised_before_key_and_origin() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route(
            "/enc.js",
            Reply::ok("compressed").header("vary", "Accept-Encoding").header("content-encoding", "br"),
        );
        let (_node, addr) = node(&origin).await;
        let spellings = ["gzip, deflate, br", "br;q=1.0, gzip;q=0.8, *;q=0.1", "br", "BR, zstd"];
        for (i, spelling) in spellings.iter().enumerate() {
            let r = send(addr, Protocol::Http1, "GET", "/enc.js", &[("accept-encoding", spelling)]).await.unwrap();
            assert_eq!(r.x_cache(), if i == 0 { "MISS" } else { "HIT" }, "{spelling}");
        }
        assert_eq!(origin.hits("/enc.js"), 1);
        assert_eq!(origin.last_headers("/enc.js").unwrap()["accept-encoding"], "br");
        let plain = get(addr, "/enc.js").await;
        assert_eq!(plain.x_cache(), "MISS", "identity is another variant");
        assert_eq!(origin.last_headers("/enc.js").unwrap()["accept-encoding"], "identity");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_never_reach_the_origin() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        let headers = [
            ("cookie", "session=secret"),
            ("authorization", "Bearer secret"),
            ("x-forwarded-host", "evil.example"),
            ("if-none-match", "\"client\""),
            ("range", "bytes=0-1"),
        ];
        let r = send(addr, Protocol::Http1, "GET", "/s01?q=1", &headers).await.unwrap();
        assert_eq!(r.status, 200);
        let seen = origin.last_headers("/s01?q=1").unwrap();
        let mut names: Vec<&str> = seen.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["accept-encoding", "host", "via"], "only allow-listed headers go upstream");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_get_304_from_the_cache() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route(
            "/c",
            Reply::ok("cond").header("etag", "\"e1\"").header("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT"),
        );
        let (node, addr) = node(&origin).await;
        let miss = send(addr, Protocol::Http1, "GET", "/c", &[("if-none-match", "\"e1\"")]).await.unwrap();
        assert_eq!(miss.status, 304, "a miss is answered 304 too once the origin's validator is known");
        // The 304 left before the body was read: the fill goes on, and a
        // request before it ends would share it (a MISS).
        eventually(Duration::from_secs(10), "fill stored", || node.handler().fills_in_flight().0 == 0).await;
        let hit = send(addr, Protocol::Http1, "GET", "/c", &[("if-none-match", "W/\"e1\"")]).await.unwrap();
        assert_eq!((hit.status.as_u16(), hit.x_cache()), (304, "HIT"));
        assert!(hit.bytes().is_empty());
        assert_eq!(hit.header("etag"), Some("\"e1\""));
        let other = send(addr, Protocol::Http1, "GET", "/c", &[("if-none-match", "\"e0\"")]).await.unwrap();
        assert_eq!(other.status, 200);
        let since = [("if-modified-since", "Wed, 02 Jan 2030 00:00:00 GMT")];
        assert_eq!(send(addr, Protocol::Http1, "GET", "/c", &since).await.unwrap().status, 304);
        let before = [("if-modified-since", "Mon, 31 Dec 2029 00:00:00 GMT")];
        assert_eq!(send(addr, Protocol::Http1, "GET", "/c", &before).await.unwrap().status, 200);
        assert_eq!(origin.hits("/c"), 1, "conditionals are answered by the cache");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_fills_the_cache_and_has_no_body() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/h.bin", Reply::ok(vec![7u8; 5000]));
        let (_node, addr) = node(&origin).await;
        let head = send(addr, Protocol::Http1, "HEAD", "/h.bin", &[]).await.unwrap();
        assert_eq!((head.status.as_u16(), head.x_cache()), (200, "MISS"));
        assert_eq!(head.header("content-length"), Some("5000"));
        assert!(head.bytes().is_empty());
        holdfast_test::eventually(std::time::Duration::from_secs(10), "HEAD miss stored the object", || {
            origin.hits("/h.bin") == 1
        })
        .await;
        let get_after = common::within(async {
            loop {
                let r = get(addr, "/h.bin").await;
                if r.x_cache() == "HIT" {
                    break r;
                }
            }
        })
        .await;
        assert_eq!(get_after.bytes().len(), 5000);
        let head = send(addr, Protocol::Http1, "HEAD", "/h.bin", &[]).await.unwrap();
        assert_eq!((head.x_cache(), head.header("content-length")), ("HIT", Some("5000")));
        assert!(head.bytes().is_empty());
        assert_eq!(origin.hits("/h.bin"), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_cut_from_the_stored_object() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/r", Reply::ok("0123456789").header("etag", "\"r1\""));
        let (_node, addr) = node(&origin).await;
        let miss = send(addr, Protocol::Http1, "GET", "/r", &[("range", "bytes=2-4")]).await.unwrap();
        assert_eq!(miss.status, 200, "a miss answers with the whole object");
        // (request headers, status, body, Content-Range)
        type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (&[("range", "bytes=2-4")], 206, "234", Some("bytes 2-4/10")),
            (&[("range", "bytes=7-")], 206, "789", Some("bytes 7-9/10")),
            (&[("range", "bytes=-2")], 206, "89", Some("bytes 8-9/10")),
            (&[("range", "bytes=10-")], 416, "", Some("bytes */10")),
            (&[("range", "bytes=0-1,4-5")], 200, "0123456789", None),
            (&[("range", "bytes=2-4"), ("if-range", "\"r1\"")], 206, "234", Some("bytes 2-4/10")),
            (&[("range", "bytes=2-4"), ("if-range", "\"old\"")], 200, "0123456789", None),
        ];
        for (headers, status, body, content_range) in cases {
            let r = send(addr, Protocol::Http1, "GET", "/r", headers).await.unwrap();
            assert_eq!(r.status, *status, "{headers:?}");
            assert_eq!(r.x_cache(), "HIT");
            assert_eq!(r.bytes().as_ref(), body.as_bytes(), "{headers:?}");
            assert_eq!(r.header("content-range"), *content_range, "{headers:?}");
        }
        assert_eq!(origin.hits("/r"), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_bodies_under_two_urls_are_stored_once() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let bytes = vec![42u8; 100_000];
        origin.route("/v1/app.js", Reply::ok(bytes.clone()));
        origin.route("/v2/app.js", Reply::ok(bytes));
        let (node, addr) = node(&origin).await;
        get(addr, "/v1/app.js").await;
        get(addr, "/v2/app.js").await;
        assert_eq!(get(addr, "/v1/app.js").await.x_cache(), "HIT");
        assert_eq!(get(addr, "/v2/app.js").await.x_cache(), "HIT");
        let store = node.handler().store();
        store.run_pending_tasks();
        let stats = store.stats();
        assert_eq!((stats.objects, stats.blobs, stats.body_bytes), (2, 1, 100_000));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entries_are_revalidated_and_served_when_the_origin_fails() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        // max-age=0: stored, but stale at once, so every use revalidates.
        origin.route("/stale", Reply::ok("keep me").header("cache-control", "max-age=0").header("etag", "\"s1\""));
        let (_node, addr) = node(&origin).await;
        assert_eq!(get(addr, "/stale").await.x_cache(), "MISS");
        let revalidated = get(addr, "/stale").await;
        assert_eq!(revalidated.x_cache(), "REVALIDATED");
        assert_eq!(revalidated.bytes().as_ref(), b"keep me");
        assert_eq!(origin.last_headers("/stale").unwrap()["if-none-match"], "\"s1\"");
        origin.route("/stale", Reply::ok("origin error page").status(503));
        let stale = get(addr, "/stale").await;
        assert_eq!((stale.status.as_u16(), stale.x_cache()), (200, "STALE"));
        assert_eq!(stale.bytes().as_ref(), b"keep me", "an origin error never replaces a stored object");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_the_size_limit_stream_through_uncached() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let big = vec![1u8; 256 * 1024];
        origin.route("/big-known", Reply::ok(big.clone()));
        origin.route("/big-chunked", Reply::ok(big.clone()).chunked(16 * 1024, std::time::Duration::ZERO));
        let (_node, addr) = node_with(&origin, |c| c.cache.max_object_size = bytesize::ByteSize::kib(64)).await;
        for path in ["/big-known", "/big-chunked"] {
            for _ in 0..2 {
                let r = get(addr, path).await;
                assert_eq!(r.x_cache(), "MISS", "{path}");
                assert_eq!(r.bytes().len(), big.len(), "{path}");
                if path == "/big-known" {
                    // Known from Content-Length before the head goes out; a
                    // chunked body is found too large only as it streams.
                    assert!(r.header("cache-status").unwrap().contains("too-large"), "{path}");
                }
            }
            assert_eq!(origin.hits(path), 2, "{path}");
        }
    })
    .await
}

/// Regression: a client that has the whole body and asks again at once used
/// to join the still-finishing fill and see MISS. The object is now stored
/// before its last byte goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_a_complete_miss_is_a_hit() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) = node(&origin).await;
        for i in 0..50 {
            let path = format!("/b2b/{i}.js");
            assert_eq!(get(addr, &path).await.x_cache(), "MISS");
            assert_eq!(get(addr, &path).await.x_cache(), "HIT", "{path}");
        }
    })
    .await
}

/// Regression: a node behind a shield replaced the shield's Cache-Status
/// with its own, so an operator could not see where a miss was answered.
/// RFC 9211 §2: each cache keeps the field and adds its member last; an
/// edge behind a holdfast shield shows both, the shield first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_status_keeps_the_upstream_caches_members() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.route("/lib.js", Reply::ok("lib").header("cache-status", "OriginCache; hit; ttl=1100"));
        let (_shield, shield) = node(&origin).await;
        let shield_url = format!("http://{shield}");
        let (_edge, edge) = node_with(&origin, move |c| {
            c.origin.urls = common::urls(&[shield_url]);
            c.origin.health_check_path = String::new();
        })
        .await;
        let miss = get(edge, "/lib.js").await;
        assert_eq!(miss.x_cache(), "MISS");
        let members: Vec<&str> = miss.header("cache-status").unwrap().split(", ").collect();
        assert_eq!(members.len(), 3, "{members:?}");
        assert_eq!(members[0], "OriginCache; hit; ttl=1100");
        assert!(members[1].starts_with("holdfast; fwd=uri-miss"), "the shield's: {members:?}");
        assert!(members[2].starts_with("holdfast; fwd=uri-miss"), "the edge's: {members:?}");
        let hit = get(edge, "/lib.js").await;
        assert_eq!(hit.x_cache(), "HIT", "x-cache says what this node did, alone");
        let members: Vec<&str> = hit.header("cache-status").unwrap().split(", ").collect();
        assert_eq!(members.len(), 3, "{members:?}");
        assert!(members[1].starts_with("holdfast; fwd=uri-miss"), "as the shield answered the fill: {members:?}");
        assert!(members[2].starts_with("holdfast; hit"), "{members:?}");
        assert_eq!(origin.hits("/lib.js"), 1);
    })
    .await
}

/// Many streams of one HTTP/2 connection answered together (their frames
/// gathered into shared writes, crates/frontend/src/coalesce.rs): every
/// body arrives whole and its own, small and large, misses and hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http2_streams_each_get_their_own_whole_body() {
    http2_streams_each_get_their_own_whole_body().await;
}

/// The same on one thread: node, origin and client share the
/// current-thread scheduler that `--workers 1` serves on, where a
/// connection's task runs only after every stream queued before it.
#[tokio::test]
async fn concurrent_http2_streams_on_a_one_thread_node_each_get_their_own_whole_body() {
    http2_streams_each_get_their_own_whole_body().await;
}

async fn http2_streams_each_get_their_own_whole_body() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let body_of = |i: usize| -> Vec<u8> {
            let len = [300, 1_024, 20_000, 300_000][i % 4];
            (0..len).map(|n| (n * 7 + i) as u8).collect()
        };
        for i in 0..40 {
            origin.route(&format!("/s/{i}"), Reply::ok(body_of(i)));
        }
        let (_node, addr) = node(&origin).await;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        for round in ["MISS", "HIT"] {
            let requests = (0..40).map(|i| {
                let mut sender = sender.clone();
                async move {
                    let request = http::Request::get(format!("http://assets.test/s/{i}"))
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
                    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
                    (i, x_cache, body)
                }
            });
            for (i, x_cache, body) in futures_util::future::join_all(requests).await {
                assert_eq!(x_cache, round, "stream {i}");
                assert!(body.as_ref() == body_of(i).as_slice(), "stream {i}: {} bytes, not its own", body.len());
            }
        }
    })
    .await
}
