//! Coalescing, streaming and integrity of origin fills.

mod common;

use std::time::Duration;

use common::{node, node_with, within};
use holdfast_test::{Gate, Protocol, Reply, eventually, get, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_origin_fetch() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let gate = Gate::new();
        let body = vec![9u8; 200_000];
        origin.route("/hot.js", Reply::ok(body.clone()).hold_head(&gate));
        let (node, addr) = node(&origin).await;
        let clients: Vec<_> = (0..100)
            .map(|i| {
                let protocol = if i % 2 == 0 { Protocol::Http1 } else { Protocol::H2c };
                tokio::spawn(async move { send(addr, protocol, "GET", "/hot.js", &[]).await.unwrap() })
            })
            .collect();
        // Open the origin only when all 100 requests wait on the one fill.
        eventually(Duration::from_secs(20), "100 readers on one fill", || node.handler().fills_in_flight() == (1, 100))
            .await;
        gate.open();
        for client in clients {
            let response = client.await.unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.x_cache(), "MISS");
            assert_eq!(response.bytes().as_ref(), &body[..]);
        }
        assert_eq!(origin.hits("/hot.js"), 1);
        assert_eq!(get(addr, "/hot.js").await.x_cache(), "HIT");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_goes_on_when_the_first_client_disconnects() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let gate = Gate::new();
        origin.route("/leader", Reply::ok("survives").hold_head(&gate));
        let (node, addr) = node(&origin).await;
        let leader = tokio::spawn(async move { get(addr, "/leader").await });
        eventually(Duration::from_secs(10), "leader reached the origin", || origin.hits("/leader") == 1).await;
        leader.abort();
        let _ = leader.await;
        eventually(Duration::from_secs(10), "leader's reader dropped", || node.handler().fills_in_flight() == (1, 0))
            .await;
        let follower = tokio::spawn(async move { get(addr, "/leader").await });
        eventually(Duration::from_secs(10), "follower joined", || node.handler().fills_in_flight() == (1, 1)).await;
        gate.open();
        let response = follower.await.unwrap();
        assert_eq!(response.bytes().as_ref(), b"survives");
        assert_eq!(get(addr, "/leader").await.x_cache(), "HIT");
        assert_eq!(origin.hits("/leader"), 1, "the disconnect did not cause a second fetch");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_to_the_client_before_the_origin_finishes() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let gate = Gate::new();
        // 4 MiB in 64 KiB chunks; the origin stops after the first chunk.
        origin.route("/stream.bin", Reply::ok(vec![5u8; 4 << 20]).chunked(64 << 10, Duration::ZERO).hold_body(&gate));
        let (_node, addr) = node(&origin).await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::get("/stream.bin")
            .header("host", "cdn.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.headers()["x-cache"], "MISS");
        let mut body = response.into_body();
        use http_body_util::BodyExt;
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(!first.is_empty(), "first bytes arrive while the origin still holds the rest");
        gate.open();
        let mut total = first.len();
        while let Some(frame) = body.frame().await {
            total += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
        }
        assert_eq!(total, 4 << 20);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_are_aborted_and_never_stored() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let body = vec![3u8; 100_000];
        // Chunks with a pause between them, so the head and the first
        // chunks leave the origin before it breaks off.
        let paced = || Reply::ok(body.clone()).chunked(10_000, Duration::from_millis(1));
        // Content-Length 100000, connection broken after 30000 bytes.
        origin.route("/abort", paced().content_length(100_000).abort_after(30_000));
        // Content-Length larger than the body that follows.
        origin.route("/short", paced().content_length(150_000));
        // Chunked (no Content-Length), broken mid-way.
        origin.route("/chunked-abort", paced().abort_after(50_000));
        let (_node, addr) = node(&origin).await;
        for path in ["/abort", "/short", "/chunked-abort"] {
            for protocol in [Protocol::Http1, Protocol::H2c] {
                let response = send(addr, protocol, "GET", path, &[]).await.unwrap();
                // A 200 cut off, or (if the body broke before this reader
                // started: a busy machine) a 502; never a 200 that ends.
                match response.status.as_u16() {
                    200 => assert!(response.body.is_err(), "{path} over {protocol:?}: the client must see an abort"),
                    status => assert_eq!(status, 502, "{path} over {protocol:?}"),
                }
            }
            assert_eq!(origin.hits(path), 2, "{path} was not stored, so each request refetched");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_failures_are_clear_5xx_and_not_cached() {
    within(async {
        // An origin that refuses connections: bind a port, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let origin = holdfast_test::FakeOrigin::start().await;
        let (_node, addr) = node_with(&origin, |c| {
            c.origin.urls = common::urls(&[format!("http://127.0.0.1:{port}")]);
            c.origin.hold_budget = Duration::from_millis(300);
        })
        .await;
        let response = get(addr, "/down").await;
        assert_eq!(response.status, 503, "an unreachable origin is unavailable");
        assert_eq!(response.x_cache(), "ERROR");
        assert!(response.header("retry-after").is_some());
        let text = String::from_utf8_lossy(response.bytes()).into_owned();
        assert!(text.contains("connect"), "the body names the cause: {text}");
        assert_eq!(response.header("cache-control"), Some("no-store"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_head_is_a_504() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let gate = Gate::new();
        origin.route("/slow", Reply::ok("late").hold_head(&gate));
        let (_node, addr) = node_with(&origin, |c| {
            c.origin.header_timeout = Duration::from_millis(200);
            c.origin.hold_budget = Duration::from_millis(500);
        })
        .await;
        let response = get(addr, "/slow").await;
        assert_eq!(response.status, 504);
        assert!(String::from_utf8_lossy(response.bytes()).contains("no response head"));
        gate.open();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_origin_takes_over_when_the_first_refuses() {
    within(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let origin = holdfast_test::FakeOrigin::start().await;
        let url = origin.url();
        let (_node, addr) =
            node_with(&origin, |c| c.origin.urls = common::urls(&[format!("http://127.0.0.1:{port}"), url])).await;
        for i in 0..4 {
            let response = get(addr, &format!("/f{i}")).await;
            assert_eq!(response.status, 200, "request {i}");
        }
        assert_eq!((0..4).map(|i| origin.hits(&format!("/f{i}"))).sum::<usize>(), 4);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_for_one_client_are_not_shared_with_waiters() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let gate = Gate::new();
        origin.route("/me", Reply::ok("yours").header("set-cookie", "session=abc").hold_head(&gate));
        let (node, addr) = node(&origin).await;
        let a = tokio::spawn(async move { get(addr, "/me").await });
        let b = tokio::spawn(async move { get(addr, "/me").await });
        eventually(Duration::from_secs(10), "two readers", || node.handler().fills_in_flight() == (1, 2)).await;
        gate.open();
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
        assert_eq!(origin.hits("/me"), 2, "the waiter fetched its own response");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_reuse_pooled_origin_connections() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, |c| c.origin.health_check_path = String::new()).await;
        // 16 clients, 25 never-seen keys each: every request is a miss.
        let clients: Vec<_> = (0..16)
            .map(|c| {
                tokio::spawn(async move {
                    for k in 0..25 {
                        let path = format!("/k/{c}/{k}");
                        get(addr, &path).await;
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        let stats = node.origins()[0].1.stats().snapshot();
        assert_eq!(stats.requests, 400);
        // At most one connection per concurrent fill; the rest were reused.
        assert!(
            (1..=16).contains(&stats.connections_opened),
            "{} connections opened for 400 origin requests",
            stats.connections_opened
        );
    })
    .await
}

/// Catalogue S30: a flood of never-repeated keys (cache-busting query
/// strings) many times the memory tier's size does not push out the hot
/// set that keeps being asked for: admission (moka's TinyLFU) keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_flood_does_not_evict_the_hot_set() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        origin.set_default(Some(Reply::ok(vec![7u8; 16 * 1024])));
        let (_node, addr) = node_with(&origin, |c| c.cache.memory_size = bytesize::ByteSize::mib(1)).await;
        let hot: Vec<String> = (0..16).map(|i| format!("/hot/{i}.js")).collect();
        // Fill the tier past half (admission starts there), then keep the hot set asked for.
        for i in 0..48 {
            get(addr, &format!("/warm/{i}.js")).await;
        }
        for _ in 0..3 {
            for path in &hot {
                get(addr, path).await;
            }
        }
        // 1,000 distinct 16 KiB keys: 16 times the tier, each asked once,
        // with the hot set asked for all along.
        let (mut hot_hits, mut hot_asked) = (0, 0);
        for i in 0..1000 {
            let flood = get(addr, &format!("/app.js?bust={i}")).await;
            assert_eq!((flood.status.as_u16(), flood.x_cache()), (200, "MISS"));
            if i % 4 == 0 {
                let response = get(addr, &hot[(i / 4) % hot.len()]).await;
                hot_asked += 1;
                hot_hits += usize::from(response.x_cache() == "HIT");
            }
        }
        assert!(hot_hits * 100 >= hot_asked * 95, "hot set hits during the flood: {hot_hits} of {hot_asked}");
    })
    .await
}

/// One HTTP/1.1 GET from another loopback address than 127.0.0.1 (another
/// client); returns the whole response.
async fn get_from(source: std::net::IpAddr, addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// `cache.max_fills_per_client`: a client that leads its share of fills
/// waits for one of them to end before it starts another; joining a fill in
/// progress, and another client's misses, are not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leads_at_most_its_share_of_fills() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let gate = Gate::new();
        origin.set_default(Some(Reply::ok("held").hold_head(&gate)));
        origin.route("/other.js", Reply::ok("other"));
        let (node, addr) = node_with(&origin, |c| {
            c.cache.max_fills_per_client = 2;
            c.cache.client_fill_wait = Duration::from_secs(60);
        })
        .await;
        let handler = node.handler();
        let miss = |path: &'static str| tokio::spawn(send(addr, Protocol::Http1, "GET", path, &[]));
        let (a1, a2) = (miss("/a/1.js"), miss("/a/2.js"));
        eventually(Duration::from_secs(20), "two fills", || handler.fills_in_flight() == (2, 2)).await;
        let a3 = miss("/a/3.js");
        eventually(Duration::from_secs(20), "a third new key waits", || handler.client_fills() == (1, 0)).await;
        let a1_again = miss("/a/1.js");
        eventually(Duration::from_secs(20), "a join does not wait", || handler.fills_in_flight() == (2, 3)).await;
        let other = get_from("127.0.0.2".parse().unwrap(), addr, "/other.js").await;
        assert!(other.starts_with("HTTP/1.1 200") && other.contains("x-cache: MISS"), "{other}");
        assert_eq!(handler.fills_in_flight().0, 2, "A still leads two, and waits");
        gate.open();
        for (path, answer) in [("/a/1.js", a1), ("/a/2.js", a2), ("/a/3.js", a3), ("/a/1.js", a1_again)] {
            let response = answer.await.unwrap().unwrap();
            assert_eq!((response.status.as_u16(), response.bytes().as_ref()), (200, b"held".as_ref()), "{path}");
        }
        assert_eq!(handler.client_fills(), (0, 0));
    })
    .await
}

/// A client's miss that waited its whole `cache.client_fill_wait` for one
/// of its fills gets 429 with Retry-After, and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_share_past_the_wait_gets_429() {
    within(async {
        let origin = holdfast_test::FakeOrigin::start().await;
        let gate = Gate::new();
        origin.set_default(Some(Reply::ok("held").hold_head(&gate)));
        let (node, addr) = node_with(&origin, |c| {
            c.cache.max_fills_per_client = 1;
            c.cache.client_fill_wait = Duration::from_millis(200);
        })
        .await;
        let first = tokio::spawn(send(addr, Protocol::Http1, "GET", "/b/1.js", &[]));
        eventually(Duration::from_secs(20), "one fill", || node.handler().fills_in_flight() == (1, 1)).await;
        let refused = get(addr, "/b/2.js").await;
        assert_eq!(refused.status.as_u16(), 429);
        assert!(refused.header("retry-after").is_some());
        assert_eq!(node.handler().client_fills(), (0, 1));
        assert_eq!(origin.hits("/b/2.js"), 0, "the origin was not asked");
        gate.open();
        assert_eq!(first.await.unwrap().unwrap().status.as_u16(), 200);
        assert_eq!(get(addr, "/b/2.js").await.status.as_u16(), 200, "its share is free again");
    })
    .await
}
