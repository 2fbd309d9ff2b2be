//! The tiers keep their promises under concurrency and hostile input: a
//! purge is final whatever is in flight, a cookie from a revalidation
//! reaches nobody and is never stored, a disk object is read once for many
//! concurrent misses, and large disk objects stream verified.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{node_with, within};
use holdfast_frontend::PurgeTarget;
use holdfast_node::config::FileConfig;
use holdfast_test::{FakeOrigin, Gate, Reply, eventually, get};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("holdfast-tiers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn with_disk(dir: PathBuf) -> impl FnOnce(&mut FileConfig) {
    move |c: &mut FileConfig| c.cache.dir = Some(dir)
}

/// Requests keep coming while a tag purge walks both tiers of many
/// objects: once it returns, every object is fetched anew (the old copy
/// must not come back from disk through a lookup that read it meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_purge_returns_no_tier_serves_the_purged_objects() {
    within(async {
        const N: usize = 600;
        let origin = FakeOrigin::start().await;
        let old = |i: usize| Reply::ok(format!("old {i}")).header("surrogate-key", "release-1");
        for i in 0..N {
            origin.route(&format!("/p/{i}"), old(i));
        }
        let dir = temp_dir("purge-race");
        // A small memory tier: most objects live on disk only.
        let (node, addr) = node_with(&origin, |c| {
            c.cache.dir = Some(dir.clone());
            c.cache.memory_size = bytesize::ByteSize::mib(1);
        })
        .await;
        for i in 0..N {
            get(addr, &format!("/p/{i}")).await;
        }
        let disk = node.handler().disk().unwrap().clone();
        // Every write landed, or was skipped with the queue full (a loaded
        // machine): what is on disk is what the purge must reach.
        let tiers = node.handler().tiers();
        let settled = || disk.stats().records_written + tiers.disk_writes_skipped() >= N as u64;
        eventually(Duration::from_secs(20), "disk writes", settled).await;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..6)
            .map(|r| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut i = r;
                    while !stop.load(Ordering::Relaxed) {
                        get(addr, &format!("/p/{}", i % N)).await;
                        i += 7;
                    }
                })
            })
            .collect();
        // A deploy: the origin has new content, then the purge.
        for i in 0..N {
            origin.route(&format!("/p/{i}"), Reply::ok(format!("new {i}")));
        }
        let report = node.handler().purge(&PurgeTarget::Tag("release-1".into()), false).await;
        assert!(report.disk > 0, "{report:?}");
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.await.unwrap();
        }
        let stale = Arc::new(AtomicUsize::new(0));
        for i in 0..N {
            let body = get(addr, &format!("/p/{i}")).await;
            if body.bytes().starts_with(b"old") {
                eprintln!("stale /p/{i}: {} {:?}", body.x_cache(), body.header("cache-status"));
                stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        assert_eq!(stale.load(Ordering::Relaxed), 0, "purged objects served after the purge returned");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// A revalidation whose 304 carries Set-Cookie: neither the requests that
/// waited on it nor later hits get the cookie, and it is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_in_a_304_is_neither_shared_nor_stored() {
    within(async {
        let origin = FakeOrigin::start().await;
        let stored = Reply::ok("asset").header("cache-control", "max-age=0").header("etag", "\"v1\"");
        origin.route("/c.js", stored.clone());
        let (_node, addr) = node_with(&origin, |_| {}).await;
        assert_eq!(get(addr, "/c.js").await.x_cache(), "MISS");
        // Every later request revalidates; the 304 tries to set a cookie.
        let gate = Gate::new();
        origin.route("/c.js", stored.header("set-cookie", "session=victim").hold_head(&gate));
        let waiters: Vec<_> = (0..4).map(|_| tokio::spawn(async move { get(addr, "/c.js").await })).collect();
        eventually(Duration::from_secs(5), "one revalidation", || origin.hits("/c.js") == 2).await;
        gate.open();
        for waiter in waiters {
            let response = waiter.await.unwrap();
            assert_eq!(response.x_cache(), "REVALIDATED");
            assert_eq!(response.header("set-cookie"), None, "a waiter got another request's cookie");
        }
        let later = get(addr, "/c.js").await;
        assert_eq!(later.header("set-cookie"), None, "the cookie entered the store");
        // A 304 that makes the response private: not stored, not shared.
        origin.route("/c.js", Reply::ok("asset").header("cache-control", "private").header("etag", "\"v1\""));
        let response = get(addr, "/c.js").await;
        assert_eq!(response.bytes().as_ref(), b"asset");
        assert_eq!(get(addr, "/c.js").await.x_cache(), "MISS", "a response made private is not kept");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_a_disk_object_read_it_once() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/d.js", Reply::ok(vec![7u8; 300_000]));
        let dir = temp_dir("coalesce");
        let (first, addr) = node_with(&origin, with_disk(dir.clone())).await;
        get(addr, "/d.js").await;
        let disk = first.handler().disk().unwrap().clone();
        eventually(Duration::from_secs(10), "disk write", || disk.stats().records_written >= 1).await;
        first.shutdown().await;

        let (second, addr) = node_with(&origin, with_disk(dir.clone())).await;
        let requests: Vec<_> = (0..24).map(|_| tokio::spawn(async move { get(addr, "/d.js").await })).collect();
        for request in requests {
            let response = request.await.unwrap();
            assert_eq!((response.x_cache(), response.bytes().len()), ("HIT", 300_000));
        }
        let reads = second.handler().disk().unwrap().stats().hits;
        assert!(reads <= 2, "{reads} disk reads for one object (at most one, or two if a request came late)");
        assert_eq!(origin.hits("/d.js"), 1);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_disk_objects_stream_verified_and_a_corrupt_chunk_is_never_sent() {
    within(async {
        let origin = FakeOrigin::start().await;
        let body: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        origin.route("/video.mp4", Reply::ok(body.clone()));
        let dir = temp_dir("stream");
        // 16 MiB of memory: bodies above 1 MiB stream from disk.
        let small = |dir: PathBuf| {
            move |c: &mut FileConfig| {
                c.cache.dir = Some(dir);
                c.cache.memory_size = bytesize::ByteSize::mib(16);
            }
        };
        let (first, addr) = node_with(&origin, small(dir.clone())).await;
        assert_eq!(get(addr, "/video.mp4").await.bytes().len(), body.len());
        let disk = first.handler().disk().unwrap().clone();
        eventually(Duration::from_secs(10), "disk write", || disk.stats().records_written >= 1).await;
        first.shutdown().await;

        let (second, addr) = node_with(&origin, small(dir.clone())).await;
        let response = get(addr, "/video.mp4").await;
        assert_eq!(response.x_cache(), "HIT");
        assert!(response.bytes()[..] == body[..], "streamed from disk intact");
        let ranged = holdfast_test::send(
            addr,
            holdfast_test::Protocol::Http1,
            "GET",
            "/video.mp4",
            &[("range", "bytes=2000000-2100009")],
        )
        .await
        .unwrap();
        assert_eq!(ranged.status.as_u16(), 206);
        assert!(ranged.bytes()[..] == body[2_000_000..2_100_010], "a range across chunks");
        assert_eq!(origin.hits("/video.mp4"), 1);

        // Flip one byte in the third chunk: the client gets the first two
        // chunks, then an aborted transfer; never the bad bytes.
        let path = second.handler().disk().unwrap().blob_path(&holdfast_cache::Digest::of(&body));
        let mut stored = std::fs::read(&path).unwrap();
        stored[2 * 1024 * 1024 + 17] ^= 0xff;
        std::fs::write(&path, &stored).unwrap();
        let broken = holdfast_test::send(addr, holdfast_test::Protocol::Http1, "GET", "/video.mp4", &[]).await.unwrap();
        assert!(broken.body.is_err(), "the transfer was aborted");
        eventually(Duration::from_secs(5), "the body is quarantined", || !path.exists()).await;
        let again = get(addr, "/video.mp4").await;
        assert_eq!((again.x_cache(), again.bytes().len()), ("MISS", body.len()));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
