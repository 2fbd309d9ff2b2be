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
