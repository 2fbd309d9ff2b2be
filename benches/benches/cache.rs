//! Micro-benchmarks of the cache core: key derivation and hit lookups.
//! Run: `cargo bench -p holdfast-benches`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use holdfast_cache::policy::{self, Exchange};
use holdfast_cache::{Digest, DiskConfig, DiskTier, Key, Lookup, Meta, Store, StoreConfig};
use http::{HeaderMap, HeaderValue, StatusCode};

fn keys(c: &mut Criterion) {
    c.bench_function("primary_key", |b| {
        b.iter(|| Key::primary("GET", "https", black_box("cdn.example.com"), black_box("/assets/app.3f2a9c.js?v=1")))
    });
    let primary = Key::primary("GET", "https", "cdn.example.com", "/assets/app.js");
    let vary = [http::header::ACCEPT_ENCODING];
    let mut request = HeaderMap::new();
    request.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
    c.bench_function("variant_key", |b| b.iter(|| black_box(&primary).variant(&vary, &request)));
}

fn lookups(c: &mut Criterion) {
    let store = Store::new(&StoreConfig { memory_size: 512 * 1024 * 1024 });
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let exchange = Exchange { request_time: now, response_time: now };
    let request = HeaderMap::new();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    let keys: Vec<Key> = (0..10_000)
        .map(|i| {
            let path = format!("/keys/{i:05}.bin");
            let key = Key::primary("GET", "http", "bench", &path);
            let body = Bytes::from(format!("{i:0>4096}"));
            let storable = policy::evaluate(StatusCode::OK, &headers, exchange).expect("storable");
            let meta = Meta::new(
                path,
                StatusCode::OK,
                headers.clone(),
                storable,
                exchange,
                Digest::of(&body),
                body.len() as u64,
            );
            store.insert(&key, &request, meta, body);
            key
        })
        .collect();
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("fresh_hit_10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            match store.lookup(&keys[i], &request, now) {
                Lookup::Fresh(hit) => black_box(hit.body.len()),
                _ => 0,
            }
        })
    });
    group.finish();
    // The same 10,000 objects in a disk tier: a hit reads the Vary record,
    // the metadata and the body, and verifies the body's BLAKE3 digest.
    let dir = std::env::temp_dir().join(format!("holdfast-bench-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let disk = DiskTier::open(DiskConfig::new(dir.clone(), u64::MAX)).expect("open disk tier");
    for (i, key) in keys.iter().enumerate() {
        let Lookup::Fresh(hit) = store.lookup(key, &request, now) else { continue };
        disk.insert(key, &request, &hit.meta, &hit.body);
        let _ = i;
    }
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("disk_hit_10k_keys_verified", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            disk.lookup(&keys[i], &request, u64::MAX).map(|hit| hit.meta.size).unwrap_or(0)
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);

    let body = vec![7u8; 1 << 20];
    let mut group = c.benchmark_group("digest");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("blake3_1mib", |b| b.iter(|| Digest::of(black_box(&body))));
    group.finish();
}

criterion_group!(benches, keys, lookups);
criterion_main!(benches);
