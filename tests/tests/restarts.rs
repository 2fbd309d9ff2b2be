//! Node restarts lose nothing: the disk tier across restarts and kill -9,
//! verified reads, graceful drain on SIGTERM, and zero-downtime upgrades.
//! The tests that run the binary as a child process are in
//! `tests/process/processes.rs`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{node_with, within};
use holdfast_test::process::temp_dir;
use holdfast_test::{FakeOrigin, Reply, eventually, get};

/// Bodies of assorted sizes whose bytes depend on their index.
fn body(i: usize) -> Vec<u8> {
    let len = 1 + (i * 7919) % 200_000;
    (0..len).map(|j| (j.wrapping_mul(31) ^ i) as u8).collect()
}

async fn wait_for_disk_records(node: &holdfast_node::RunningNode, n: u64) {
    let disk = node.handler().disk().expect("disk tier").clone();
    eventually(Duration::from_secs(20), "disk writes", || disk.stats().records_written >= n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_origin_down_serves_everything_from_disk() {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = temp_dir("warm");
        for i in 0..50 {
            origin.route(&format!("/o/{i}"), Reply::ok(body(i)));
        }
        let with_disk = |d: PathBuf| move |c: &mut holdfast_node::config::FileConfig| c.cache.dir = Some(d);
        let (first, addr) = node_with(&origin, with_disk(dir.clone())).await;
        for i in 0..50 {
            assert_eq!(get(addr, &format!("/o/{i}")).await.x_cache(), "MISS");
        }
        wait_for_disk_records(&first, 50).await;
        first.shutdown().await;
        origin.stop().await;

        let (second, addr) = node_with(&origin, with_disk(dir.clone())).await;
        for i in 0..50 {
            let response = get(addr, &format!("/o/{i}")).await;
            assert_eq!((response.status.as_u16(), response.x_cache()), (200, "HIT"), "object {i}");
            assert_eq!(response.bytes().as_ref(), &body(i)[..], "object {i}");
        }
        assert_eq!(second.handler().disk().unwrap().stats().hits, 50);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_blob_is_refetched_not_served() {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = temp_dir("corrupt");
        origin.route("/c.js", Reply::ok("the real bytes"));
        let (first, addr) = node_with(&origin, |c| c.cache.dir = Some(dir.clone())).await;
        get(addr, "/c.js").await;
        wait_for_disk_records(&first, 1).await;
        let blob = first.handler().disk().unwrap().blob_path(&holdfast_cache::Digest::of(b"the real bytes"));
        first.shutdown().await;
        std::fs::write(&blob, "evil bytes, same len").unwrap();

        let (second, addr) = node_with(&origin, |c| c.cache.dir = Some(dir.clone())).await;
        let response = get(addr, "/c.js").await;
        assert_eq!(response.x_cache(), "MISS", "the bad copy is a miss");
        assert_eq!(response.bytes().as_ref(), b"the real bytes");
        assert_eq!(origin.hits("/c.js"), 2);
        assert_eq!(second.handler().disk().unwrap().stats().corrupt, 1);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
