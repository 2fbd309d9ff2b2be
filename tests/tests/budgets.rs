//! Budgets that outside input cannot push past: body bytes held by fills,
//! clients that stop reading, fills in progress, origin connections, and
//! client connections. Each is shed with a clear status and counted.

mod common;

use std::time::Duration;

use common::{node_with, within};
use holdfast_test::{FakeOrigin, Gate, Reply, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client that asks for `path` and never reads, with a tiny receive
/// buffer so the node's writes stall quickly.
async fn stalled_client(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: assets.example\r\n\r\n").as_bytes()).await.unwrap();
    stream
}

fn big_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_cannot_pin_more_than_the_fill_budget() {
    within(async {
        let origin = FakeOrigin::start().await;
        let body = big_body(32 * 1024 * 1024);
        origin.route("/big.bin", Reply::ok(body.clone()).chunked(64 * 1024, Duration::ZERO));
        let budget = 1024 * 1024;
        let (node, addr) = node_with(&origin, |c| {
            c.cache.fill_buffer_size = bytesize::ByteSize::b(budget);
            c.cache.memory_size = bytesize::ByteSize::mib(64);
        })
        .await;
        let fills = node.handler().fill_budget();
        let stalled = stalled_client(addr, "/big.bin").await;
        eventually(Duration::from_secs(10), "the fill gives up storing", || fills.shed() == 1).await;
        // While the client reads nothing, the fill holds about the budget.
        for _ in 0..20 {
            let used = fills.used();
            assert!(used <= budget + 128 * 1024, "fill buffers hold {used} bytes, budget {budget}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A client that reads gets every byte meanwhile (its own fetch).
        let response = holdfast_test::get(addr, "/big.bin").await;
        assert_eq!(response.bytes().len(), body.len());
        assert!(response.bytes()[..] == body[..], "the body arrives intact");
        assert!(
            response.header("cache-status").is_some_and(|s| s.contains("buffer-budget") || s.contains("stored")),
            "{:?}",
            response.header("cache-status")
        );
        drop(stalled);
        eventually(Duration::from_secs(10), "the stalled fill lets go of its bytes", || fills.used() == 0).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/big.bin", Reply::ok(big_body(8 * 1024 * 1024)));
        let (node, addr) = node_with(&origin, |c| c.server.send_timeout = Duration::from_millis(300)).await;
        assert_eq!(holdfast_test::get(addr, "/big.bin").await.bytes().len(), 8 * 1024 * 1024);
        let mut stalled = stalled_client(addr, "/big.bin").await;
        eventually(Duration::from_secs(10), "the node gives up on the stalled client", || {
            node.tcp.send_timeouts() == 1
        })
        .await;
        // What was sent before the timeout can be read, then the connection ends.
        let mut received = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf)).await.expect("ends") {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
        assert!(received < 8 * 1024 * 1024, "the response was cut off ({received} bytes)");
        eventually(Duration::from_secs(5), "its connection is gone", || node.tcp.connections.counts().open == 0).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_beyond_the_fill_limit_get_a_503_and_stale_copies_still_serve() {
    within(async {
        let origin = FakeOrigin::start().await;
        let gate = Gate::new();
        origin.route("/slow-1", Reply::ok("1").hold_head(&gate));
        origin.route("/slow-2", Reply::ok("2").hold_head(&gate));
        origin.route("/other", Reply::ok("other"));
        let (node, addr) = node_with(&origin, |c| c.cache.max_concurrent_fills = 2).await;
        let slow: Vec<_> =
            ["/slow-1", "/slow-2"].map(|p| tokio::spawn(async move { holdfast_test::get(addr, p).await })).into();
        eventually(Duration::from_secs(5), "two fills run", || node.handler().fills_in_flight().0 == 2).await;
        let shed = holdfast_test::get(addr, "/other").await;
        assert_eq!((shed.status.as_u16(), shed.x_cache()), (503, "ERROR"));
        assert!(shed.header("retry-after").is_some());
        assert_eq!(origin.hits("/other"), 0);
        assert_eq!(node.handler().fills_shed(), 1);
        gate.open();
        for task in slow {
            assert_eq!(task.await.unwrap().status.as_u16(), 200);
        }
        assert_eq!(holdfast_test::get(addr, "/other").await.status.as_u16(), 200, "room again");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_connections_are_capped_and_waiting_is_bounded() {
    within(async {
        let origin = FakeOrigin::start().await;
        let gate = Gate::new();
        origin.route("/held", Reply::ok("held").hold_head(&gate));
        origin.route("/next", Reply::ok("next"));
        let (node, addr) = node_with(&origin, |c| {
            c.origin.max_connections = 1;
            c.origin.hold_budget = Duration::from_millis(300);
            c.origin.health_check_path = String::new();
        })
        .await;
        let held = tokio::spawn(async move { holdfast_test::get(addr, "/held").await });
        eventually(Duration::from_secs(5), "the origin has the first request", || origin.hits("/held") == 1).await;
        let started = std::time::Instant::now();
        let busy = holdfast_test::get(addr, "/next").await;
        assert_eq!(busy.status.as_u16(), 503, "{:?}", busy.bytes());
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(origin.hits("/next"), 0, "no second connection was opened");
        let (_, client) = &node.origins()[0];
        assert_eq!(client.stats().snapshot().busy, 1);
        assert_eq!(client.members()[0].breaker, holdfast_origin::BreakerState::Closed, "busy is not broken");
        gate.open();
        assert_eq!(held.await.unwrap().status.as_u16(), 200);
        assert_eq!(holdfast_test::get(addr, "/next").await.status.as_u16(), 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_over_the_limit_are_closed_at_once() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, |c| {
            c.server.max_connections = 3;
        })
        .await;
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        eventually(Duration::from_secs(5), "three connections admitted", || node.tcp.connections.counts().open == 3)
            .await;
        let mut refused = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buf)).await.expect("closed");
        assert!(matches!(read, Ok(0) | Err(_)), "the fourth connection is closed: {read:?}");
        assert_eq!(node.tcp.connections.counts().refused_total, 1);
        drop(open.pop());
        eventually(Duration::from_secs(5), "a place is free again", || node.tcp.connections.counts().open == 2).await;
        assert_eq!(holdfast_test::get(addr, "/again").await.status.as_u16(), 200);
    })
    .await
}
