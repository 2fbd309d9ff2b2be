//! Fills a disk-tier directory with N stored 4 KiB objects, as a node would
//! have stored them for `http://127.0.0.1/keys/NNNNNN.bin`, to measure how
//! fast a restarted node serves its first hit with a large disk tier.
//!
//! `cargo run --release -p holdfast-benches --example populate_disk -- DIR N`

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use holdfast_cache::policy::{self, Exchange};
use holdfast_cache::{Digest, DiskConfig, DiskTier, Key, Meta};
use http::{HeaderMap, HeaderValue, StatusCode};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: populate_disk DIR N");
        std::process::exit(2);
    };
    let disk = DiskTier::open(DiskConfig::new(PathBuf::from(dir), u64::MAX)).expect("open disk tier");
    let now = SystemTime::now();
    let exchange = Exchange { request_time: now, response_time: now };
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("public, max-age=31536000, immutable"));
    headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    // One surrogate key on every object, to time a purge by tag.
    headers.insert("surrogate-key", HeaderValue::from_static("bench-release"));
    // The normalised request headers of a client that sent no Accept-Encoding.
    let mut request = HeaderMap::new();
    request.insert("accept-encoding", HeaderValue::from_static("identity"));
    let started = Instant::now();
    for i in 0..n {
        let path = format!("/keys/{i:06}.bin");
        let body: Vec<u8> = format!("{i:0>4096}").into_bytes();
        let storable = policy::evaluate(StatusCode::OK, &headers, exchange).expect("storable");
        let meta = Meta::new(
            format!("http://127.0.0.1{path}"),
            StatusCode::OK,
            headers.clone(),
            storable,
            exchange,
            Digest::of(&body),
            body.len() as u64,
        );
        disk.insert(&Key::primary("GET", "http", "127.0.0.1", &path), &request, &meta, &body);
    }
    let took: Duration = started.elapsed();
    println!("stored {n} objects in {took:.1?}");
}
