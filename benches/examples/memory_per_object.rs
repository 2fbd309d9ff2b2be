//! What one stored object costs in the memory tier: stores N responses
//! with 4 KiB bodies and the headers the bench origin (nginx) sends, as a
//! fill would, and prints RSS growth per object beyond the body bytes.
//!
//! `cargo run --release -p holdfast-benches --example memory_per_object -- [N=10000]`

use std::time::SystemTime;

use bytes::Bytes;
use holdfast_cache::policy::{self, Exchange};
use holdfast_cache::{Digest, Key, Meta, Store, StoreConfig};
use http::{HeaderMap, HeaderValue, StatusCode};

/// The node's allocator, so the figure is what a node pays.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let store = Store::new(&StoreConfig { memory_size: 1 << 30 });
    let now = SystemTime::now();
    let exchange = Exchange { request_time: now, response_time: now };
    let mut request = HeaderMap::new();
    request.insert("accept-encoding", HeaderValue::from_static("identity"));
    let before = rss_kib();
    for i in 0..n {
        let path = format!("/keys/{i:05}.bin");
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("server", "nginx/1.22.1".to_owned()),
            ("date", "Tue, 01 Dec 2026 05:26:41 GMT".to_owned()),
            ("content-type", "application/octet-stream".to_owned()),
            ("content-length", "4096".to_owned()),
            ("last-modified", "Tue, 01 Dec 2026 05:26:40 GMT".to_owned()),
            ("etag", format!("\"6b0e5a90-{i:x}\"")),
            ("cache-control", "public, max-age=31536000, immutable".to_owned()),
            ("accept-ranges", "bytes".to_owned()),
        ] {
            headers.insert(name, HeaderValue::from_str(&value).expect("valid value"));
        }
        // Distinct bytes: equal bodies would be stored once.
        let mut body = vec![b'x'; 4096];
        body[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let body = Bytes::from(body);
        let storable = policy::evaluate(StatusCode::OK, &headers, exchange).expect("storable");
        let url = format!("http://127.0.0.1{path}");
        let meta = Meta::new(url, StatusCode::OK, headers, storable, exchange, Digest::of(&body), 4096);
        let primary = Key::primary("GET", "http", "127.0.0.1", &path);
        store.insert(&primary, &request, meta, body);
    }
    store.run_pending_tasks();
    let after = rss_kib();
    let per = (after - before) as f64 * 1024.0 / n as f64;
    println!(
        "{n} objects of 4096 bytes: RSS +{} KiB, {per:.0} bytes per object, {:.0} beyond the body",
        after - before,
        per - 4096.0
    );
}
