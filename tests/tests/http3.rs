//! HTTP/3 under the conditions browsers and attackers create: ClientHellos
//! that span two packets (Chromium's post-quantum key share), resumed
//! sessions sending 0-RTT early data, handshakes that never finish, and
//! more connections than the node keeps.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use common::tls::{Certs, certs, client_config, with_tls};
use common::{node_with, within};
use holdfast_node::RunningNode;
use holdfast_test::{FakeOrigin, Reply, eventually};
use rustls_pki_types::CertificateDer;

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// A QUIC client endpoint trusting `roots`; `tweak` edits its TLS config.
fn client(roots: &[CertificateDer<'static>], tweak: impl FnOnce(&mut rustls::ClientConfig)) -> quinn::Endpoint {
    let mut crypto = client_config(roots, &[b"h3"]);
    tweak(&mut crypto);
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    endpoint
}

/// Runs h3 over a QUIC connection; the driver task ends with it.
async fn h3_over(connection: quinn::Connection) -> Sender {
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(connection)).await.unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    sender
}

/// One request; returns (status, x-cache, body).
async fn send(sender: &mut Sender, method: &str, path: &str) -> (u16, String, Bytes) {
    let request = http::Request::builder().method(method).uri(format!("https://localhost{path}")).body(()).unwrap();
    let mut stream = sender.send_request(request).await.unwrap();
    // The node may stop reading once it has the request head, so finishing
    // can fail; the response still comes (RFC 9114 §4.1).
    let _ = stream.finish().await;
    let response = stream.recv_response().await.unwrap();
    let x_cache = response.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    (response.status().as_u16(), x_cache, Bytes::from(body))
}

async fn h3_node(
    origin: &FakeOrigin,
    certs: &Certs,
    tweak: impl FnOnce(&mut holdfast_node::config::FileConfig),
) -> RunningNode {
    let tls = with_tls(certs, true);
    let (node, _) = node_with(origin, |c| {
        tls(c);
        tweak(c);
    })
    .await;
    node
}

fn quic_counts(
    node: &RunningNode,
) -> (holdfast_frontend::connections::ConnectionCounts, holdfast_frontend::h3::QuicCounts) {
    let quic = node.quic.as_ref().expect("HTTP/3 is on");
    (quic.connections.counts(), quic.counts())
}

/// Chromium's ClientHello carries an ML-KEM key share and spans two QUIC
/// Initial packets. The connection used to be handed to h3 before the
/// second packet arrived, and h3's setup then waited forever for stream
/// credit (quinn does not wake stream openers when the client's transport
/// parameters arrive): half of Chromium's page loads hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_spanning_two_packets_is_served() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/app.js", Reply::ok("split hello"));
        let certs = certs("h3-split", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |_| {}).await;
        // About 1.5 KB of ALPN names push the ClientHello past one packet.
        let endpoint = client(&[certs.pairs[0].2.clone()], |c| {
            let mut alpn: Vec<Vec<u8>> =
                (0..50).map(|i| format!("x-padding-protocol-{i:04}-abcdef").into_bytes()).collect();
            alpn.push(b"h3".to_vec());
            c.alpn_protocols = alpn;
        });
        for _ in 0..3 {
            // The second Initial arrives 50 ms after the first, as it can
            // from a browser across a network (on loopback quinn would see
            // both before it accepts the connection).
            let relay = relay(node.h3_addrs[0], |way, n| {
                Some(if way == Way::ToServer && n == 2 { Duration::from_millis(50) } else { Duration::ZERO })
            })
            .await;
            let connecting = endpoint.connect(relay, "localhost").unwrap();
            let connection =
                tokio::time::timeout(Duration::from_secs(5), connecting).await.expect("handshake").unwrap();
            let mut sender = tokio::time::timeout(Duration::from_secs(5), h3_over(connection)).await.expect("h3 setup");
            let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), send(&mut sender, "GET", "/app.js"))
                .await
                .expect("answer");
            assert_eq!((status, body.as_ref()), (200, &b"split hello"[..]));
        }
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// A resumed session sends requests as 0-RTT early data: GET is answered
/// at once, a POST gets 425 (it could be a replay) and goes through once
/// the handshake has completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_serves_safe_methods_and_refuses_the_rest_with_425() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/app.js", Reply::ok("early"));
        origin.route("/form", Reply::ok("posted").header("cache-control", "no-store"));
        let certs = certs("h3-0rtt", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |c| c.server.pass_methods = vec!["POST".into()]).await;
        let addr = node.h3_addrs[0];
        let endpoint = client(&[certs.pairs[0].2.clone()], |c| c.enable_early_data = true);

        // A full handshake first, to get a session ticket.
        let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let mut sender = h3_over(connection.clone()).await;
        assert_eq!(send(&mut sender, "GET", "/app.js").await.0, 200);
        connection.close(0u32.into(), b"done");
        drop(sender);

        // Resumed, over a path whose replies take 400 ms: the requests
        // leave (and arrive) long before the handshake completes, even on
        // a loaded machine. (A stream is early if the server accepts it
        // before the handshake completes, as quinn's `is_0rtt` counts it;
        // one accepted after is on a connection proven not to be a replay.)
        let slow =
            relay(addr, |way, _| Some(if way == Way::ToClient { Duration::from_millis(400) } else { Duration::ZERO }))
                .await;
        let (connection, accepted) =
            endpoint.connect(slow, "localhost").unwrap().into_0rtt().expect("the ticket allows 0-RTT");
        let mut sender = h3_over(connection.clone()).await;
        let (mut a, mut b) = (sender.clone(), sender.clone());
        let (get, post) = tokio::join!(send(&mut a, "GET", "/app.js"), send(&mut b, "POST", "/form"));
        assert!(accepted.await, "the server accepted 0-RTT");
        assert_eq!((get.0, get.1.as_str(), get.2.as_ref()), (200, "HIT", &b"early"[..]));
        assert_eq!((post.0, post.1.as_str()), (425, "ERROR"), "{:?}", post.2);
        assert_eq!(origin.hits("/form"), 0, "an early POST never reaches the origin");
        // After the handshake the same POST is relayed.
        let (status, x_cache, body) = send(&mut sender, "POST", "/form").await;
        assert_eq!((status, x_cache.as_str(), body.as_ref()), (200, "PASS", &b"posted"[..]));
        assert_eq!(origin.hits("/form"), 1);
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// Which way a datagram goes through a [`relay`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    ToServer,
    ToClient,
}

/// A UDP relay in front of `server` for one client. `policy` sees each
/// datagram's direction and its number in that direction, and says after
/// how long to forward it (`None`: drop it).
async fn relay(
    server: SocketAddr,
    policy: impl Fn(Way, usize) -> Option<Duration> + Send + Sync + 'static,
) -> SocketAddr {
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut client: Option<SocketAddr> = None;
        let mut counts = [0usize; 2];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let (way, to) = if from == server {
                match client {
                    Some(client) => (Way::ToClient, client),
                    None => continue,
                }
            } else {
                client = Some(from);
                (Way::ToServer, server)
            };
            let n = &mut counts[way as usize];
            *n += 1;
            let Some(delay) = policy(way, *n) else { continue };
            if delay.is_zero() {
                // In order: a spawned send, even after sleep(0), can overtake
                // the one before (a 0-RTT datagram ahead of its Initial is
                // dropped, and its request resent after the handshake).
                let _ = socket.send_to(&buf[..len], to).await;
                continue;
            }
            let (socket, datagram) = (Arc::clone(&socket), buf[..len].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&datagram, to).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_finishes_is_dropped_after_its_timeout() {
    within(async {
        let origin = FakeOrigin::start().await;
        let certs = certs("h3-stall", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |c| c.tls.h3_handshake_timeout = Duration::from_millis(300)).await;
        // Only the client's first datagram gets through.
        let relay = relay(node.h3_addrs[0], |way, n| (way == Way::ToClient || n == 1).then_some(Duration::ZERO)).await;
        let endpoint = client(&[certs.pairs[0].2.clone()], |c| {
            // Two Initial packets: the relay lets only the first through.
            let mut alpn: Vec<Vec<u8>> =
                (0..50).map(|i| format!("x-padding-protocol-{i:04}-abcdef").into_bytes()).collect();
            alpn.push(b"h3".to_vec());
            c.alpn_protocols = alpn;
        });
        let attempt = endpoint.connect(relay, "localhost").unwrap();
        let attempt = tokio::spawn(attempt);
        eventually(Duration::from_secs(10), "the stalled handshake is dropped", || {
            let (connections, counts) = quic_counts(&node);
            counts.handshake_timeouts == 1 && connections.open == 0 && counts.handshakes_in_progress == 0
        })
        .await;
        attempt.abort();
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_and_counted() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/a", Reply::ok("a"));
        let certs = certs("h3-limit", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |c| c.tls.h3_max_connections = 2).await;
        let addr = node.h3_addrs[0];
        let endpoint = client(&[certs.pairs[0].2.clone()], |_| {});
        let first = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let second = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let third = endpoint.connect(addr, "localhost").unwrap().await;
        assert!(third.is_err(), "a third connection is refused");
        let (connections, _) = quic_counts(&node);
        assert_eq!((connections.open, connections.refused_total), (2, 1));
        // The two admitted ones serve; once one closes, there is room again.
        let mut sender = h3_over(second.clone()).await;
        assert_eq!(send(&mut sender, "GET", "/a").await.0, 200);
        first.close(0u32.into(), b"bye");
        eventually(Duration::from_secs(5), "the closed connection frees its place", || quic_counts(&node).0.open == 1)
            .await;
        let again = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let mut sender = h3_over(again).await;
        assert_eq!(send(&mut sender, "GET", "/a").await.0, 200);
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_validation_sends_a_retry_first() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/a", Reply::ok("validated"));
        let certs = certs("h3-retry", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |c| {
            c.tls.h3_address_validation = holdfast_node::config::H3AddressValidation::Always
        })
        .await;
        let endpoint = client(&[certs.pairs[0].2.clone()], |_| {});
        let connection = endpoint.connect(node.h3_addrs[0], "localhost").unwrap().await.unwrap();
        let mut sender = h3_over(connection).await;
        assert_eq!(send(&mut sender, "GET", "/a").await.2.as_ref(), b"validated");
        assert_eq!(quic_counts(&node).1.retries, 1, "one Retry, then the validated handshake");
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// Many requests on one long-lived connection: each is freed when it is
/// done (requests in flight return to zero while the connection stays open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_connection_keeps_nothing_of_finished_requests() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/a", Reply::ok("x".repeat(1024)));
        let certs = certs("h3-long", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |_| {}).await;
        let endpoint = client(&[certs.pairs[0].2.clone()], |_| {});
        let connection = endpoint.connect(node.h3_addrs[0], "localhost").unwrap().await.unwrap();
        let sender = h3_over(connection).await;
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let mut sender = sender.clone();
                tokio::spawn(async move {
                    for _ in 0..250 {
                        assert_eq!(send(&mut sender, "GET", "/a").await.0, 200);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        eventually(Duration::from_secs(5), "no request left in flight", || {
            let (connections, counts) = quic_counts(&node);
            counts.requests_in_flight == 0 && connections.open == 1
        })
        .await;
        let origin_stats = node.origins()[0].1.stats().snapshot();
        assert_eq!(origin.hits("/a"), 1, "{origin_stats:?} {:?}", node.handler().results());
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// A drain sends GOAWAY and closes connections once their requests are
/// done: an idle client connection does not hold the node for the whole
/// drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_idle_connections_at_once() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/a", Reply::ok("a"));
        let certs = certs("h3-drain", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |c| c.server.drain_timeout = Duration::from_secs(20)).await;
        let endpoint = client(&[certs.pairs[0].2.clone()], |_| {});
        let connection = endpoint.connect(node.h3_addrs[0], "localhost").unwrap().await.unwrap();
        let mut sender = h3_over(connection.clone()).await;
        assert_eq!(send(&mut sender, "GET", "/a").await.0, 200);
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), node.shutdown())
            .await
            .expect("the drain did not wait for idle clients");
        assert!(started.elapsed() < Duration::from_secs(5));
        let closed = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await.expect("closed");
        assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed:?}");
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// Response fields reach an HTTP/3 client byte for byte however the node's
/// QPACK encoder writes each string: Huffman-coded when that saves over a
/// quarter, raw otherwise (digits and rare punctuation, obs-text bytes),
/// from the origin's reply (MISS) and from the stored copy (HIT). The
/// encoder is holdfast's patch of h3 (crates/vendor/h3/PATCHES.md); the
/// client decodes with h3's own decoder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_fields_arrive_intact_however_qpack_codes_them() {
    within(async {
        let origin = FakeOrigin::start().await;
        let fields: Vec<(&'static str, Vec<u8>)> = vec![
            ("x-huffman", b"public, max-age=31536000, immutable".to_vec()),
            ("x-rare", b"{}[]<>^~|`\\#$@".to_vec()),
            ("x-obs-text", (0x80..=0xffu8).collect()),
            ("x-every-visible", (0x21..=0x7eu8).collect()),
            ("x-long", b"abcdefghij0123456789".repeat(60)),
            ("x-mixed", b"a\xe9b\tc d;e=\"f\"".to_vec()),
        ];
        let mut reply = Reply::ok("fields");
        for (name, value) in &fields {
            reply.headers.push((http::HeaderName::from_static(name), http::HeaderValue::from_bytes(value).unwrap()));
        }
        origin.route("/fields", reply);
        let certs = certs("h3-fields", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |_| {}).await;
        let endpoint = client(&[certs.pairs[0].2.clone()], |_| {});
        let connection = endpoint.connect(node.h3_addrs[0], "localhost").unwrap().await.unwrap();
        let mut sender = h3_over(connection).await;
        for expected in ["MISS", "HIT"] {
            let request = http::Request::get("https://localhost/fields").body(()).unwrap();
            let mut stream = sender.send_request(request).await.unwrap();
            // The node may stop reading once it has the request head, so finishing
            // can fail; the response still comes (RFC 9114 §4.1).
            let _ = stream.finish().await;
            let response = stream.recv_response().await.unwrap();
            assert_eq!(response.headers()["x-cache"], expected);
            for (name, value) in &fields {
                assert_eq!(
                    response.headers().get(*name).map(|v| v.as_bytes()),
                    Some(&value[..]),
                    "{name} ({expected})"
                );
            }
            // The whole body: only then is the object surely stored (a
            // request that joins the fill still in flight is a MISS).
            while let Some(mut chunk) = stream.recv_data().await.unwrap() {
                chunk.advance(chunk.remaining());
            }
        }
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// A GET's stream ends with its header section, and the node reads that
/// end before letting the stream go. Dropping it unread made quinn send
/// STOP_SENDING on every request: one more frame for the client to handle
/// and for the node to track until acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_request_stream_is_not_stopped() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/a", Reply::ok("x".repeat(1024)));
        let certs = certs("h3-stop", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |_| {}).await;
        let endpoint = client(&[certs.pairs[0].2.clone()], |_| {});
        let connection = endpoint.connect(node.h3_addrs[0], "localhost").unwrap().await.unwrap();
        let mut sender = h3_over(connection.clone()).await;
        const REQUESTS: u64 = 60;
        for _ in 0..REQUESTS {
            assert_eq!(send(&mut sender, "GET", "/a").await.0, 200);
        }
        // A FIN that trails its header section in a later packet may still
        // meet a STOP_SENDING; one for every request was the bug.
        let stopped = connection.stats().frame_rx.stop_sending;
        assert!(stopped < REQUESTS / 4, "{stopped} STOP_SENDING frames for {REQUESTS} GETs");
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}

/// A pass-through request's body reaches the origin whole: the node reads
/// the end of a request stream only once the handler has let the body go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_body_is_relayed_whole() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/form", Reply::ok("posted").header("cache-control", "no-store"));
        let certs = certs("h3-post", &[&["localhost"]]);
        let node = h3_node(&origin, &certs, |c| c.server.pass_methods = vec!["POST".into()]).await;
        let endpoint = client(&[certs.pairs[0].2.clone()], |_| {});
        let connection = endpoint.connect(node.h3_addrs[0], "localhost").unwrap().await.unwrap();
        let mut sender = h3_over(connection).await;
        let body = Bytes::from("field=".repeat(5000));
        let request = http::Request::post("https://localhost/form").body(()).unwrap();
        let mut stream = sender.send_request(request).await.unwrap();
        for chunk in body.chunks(7000) {
            stream.send_data(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        stream.finish().await.unwrap();
        let response = stream.recv_response().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-cache"], "PASS");
        while stream.recv_data().await.unwrap().is_some() {}
        assert_eq!(origin.last_body("/form"), Some(body));
        let _ = std::fs::remove_dir_all(&certs.dir);
    })
    .await
}
