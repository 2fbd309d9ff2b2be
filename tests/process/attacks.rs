//! The node under attack keeps its budgets and keeps serving: each attack
//! runs against a node process with small budgets while a well-behaved
//! client fetches cached assets. Measured from outside, as Kubernetes would:
//! the process's RSS and file descriptors, the cache directory's allocated
//! bytes and files.
//!
//! A load test (about a minute) of the `holdfast` package, so Cargo builds
//! the binary it runs: `.ci/run` runs it against the release build
//! (`cargo test --release -p holdfast --test attacks -- --ignored
//! --nocapture`).

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use holdfast_test::process::{NodeProcess, free_port, wait_until_serving};
use holdfast_test::{FakeOrigin, KeepAlive, Outcome, Reply};
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1024 * 1024;
/// The budgets of the node under attack.
const MEMORY_SIZE: u64 = 64 * MIB;
const FILL_BUFFER: u64 = 16 * MIB;
const DISK_SIZE: u64 = 8 * MIB;
const MAX_CONNECTIONS: usize = 256;
/// What RSS may exceed the memory budgets by: the runtime and its threads,
/// the connections at their limit, the disk index and allocator slack.
const RSS_OVERHEAD: u64 = 48 * MIB;
/// What the cache directory may exceed disk_size by: its 514 directories,
/// writes in flight, quarantined files.
const DISK_OVERHEAD: u64 = 4 * MIB;
const HOST: &str = "cdn.test";

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Allocated bytes and files under `dir`.
fn disk_use(dir: &Path) -> (u64, u64) {
    fn walk(dir: &Path, total: &mut (u64, u64)) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total.0 += meta.blocks() * 512;
            if meta.is_dir() {
                walk(&entry.path(), total);
            } else {
                total.1 += 1;
            }
        }
    }
    let mut total = (0, 0);
    walk(dir, &mut total);
    total
}

/// The node's metrics whose names contain one of `names`.
async fn metrics(admin: SocketAddr, names: &[&str]) -> String {
    let Ok(response) = holdfast_test::send(admin, holdfast_test::Protocol::Http1, "GET", "/metrics", &[]).await else {
        return String::new();
    };
    let text = String::from_utf8_lossy(response.bytes()).into_owned();
    text.lines().filter(|l| !l.starts_with('#') && names.iter().any(|n| l.contains(n))).collect::<Vec<_>>().join("\n")
}

/// Fetches the warm assets in a loop on one connection, timing each.
struct WellBehaved {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Behaved>,
}

/// What the well-behaved client saw.
struct Behaved {
    latencies: Vec<Duration>,
    errors: Vec<String>,
    /// Requests sent a second time because their reused connection closed
    /// as they left, as browsers do.
    retried: usize,
}

impl WellBehaved {
    fn start(addr: SocketAddr) -> WellBehaved {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut seen = Behaved { latencies: Vec::new(), errors: Vec::new(), retried: 0 };
            let mut client = KeepAlive::with_host(addr, HOST);
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (outcome, retried) = client.get_retrying_once(&format!("/asset/{}", i % 20)).await;
                seen.retried += usize::from(retried);
                match outcome {
                    Outcome::Answered { status: 200, complete: true, .. } => seen.latencies.push(started.elapsed()),
                    other => seen.errors.push(format!("{other:?}")),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        });
        WellBehaved { stop, task }
    }

    async fn finish(self) -> Behaved {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Samples RSS while `attack` runs; returns the highest sample.
async fn peak_rss_during(pid: u32, attack: impl std::future::Future<Output = ()>) -> f64 {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let sampler = tokio::spawn(async move {
        let mut peak = 0.0f64;
        while !flag.load(Ordering::Relaxed) {
            peak = peak.max(rss_mib(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak.max(rss_mib(pid))
    });
    attack.await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap()
}

async fn get_many(addr: SocketAddr, paths: Vec<String>, concurrency: usize) {
    futures_util::stream::iter(paths)
        .for_each_concurrent(concurrency, |path| async move {
            let mut client = KeepAlive::with_host(addr, HOST);
            let _ = client.get(&path).await;
        })
        .await;
}

fn config(dir: &Path, origin: &str, listen: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"[server]
listen = ["{listen}"]
hosts = ["{HOST}"]
max_connections = {MAX_CONNECTIONS}
send_timeout = "2s"
header_read_timeout = "2s"
shutdown_delay = "0s"
[cache]
memory_size = "{MEMORY_SIZE}B"
fill_buffer_size = "{FILL_BUFFER}B"
dir = "{dir}"
disk_size = "{DISK_SIZE}B"
[origin]
urls = ["{origin}"]
health_check_path = ""
[admin]
listen = "{admin}"
metrics_without_token = true
"#,
        dir = dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test (about a minute): .ci/run runs it by name against the release binary"]
async fn attacks_stay_within_budgets_and_cached_assets_keep_serving() {
    let origin = FakeOrigin::start().await;
    for i in 0..20 {
        origin.route(&format!("/asset/{i}"), Reply::ok(vec![i as u8; 4096]));
    }
    let big = bytes::Bytes::from(vec![7u8; 8 * MIB as usize]);
    for i in 0..100 {
        origin.route(&format!("/big/{i}"), Reply::ok(big.clone()));
    }
    origin.set_default(Some(Reply::ok(vec![1u8; 1024])));
    for i in 0..20_000u32 {
        let body: Vec<u8> = (0..4096u32).map(|j| (i.wrapping_mul(2_654_435_761) ^ j) as u8).collect();
        origin.route(&format!("/churn/{i}"), Reply::ok(body));
    }

    let work = std::env::temp_dir().join(format!("holdfast-attacks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let dir: PathBuf = work.join("cache");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config_path = work.join("node.toml");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(&config_path, config(&dir, &origin.url(), addr, admin)).unwrap();
    let node = NodeProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_holdfast")),
        &["serve".into(), "--config".into(), config_path.display().to_string()],
    );
    let pid = node.child.id();
    wait_until_serving(addr).await;
    get_many(addr, (0..20).map(|i| format!("/asset/{i}")).collect(), 4).await;
    let start_rss = rss_mib(pid);
    let good = WellBehaved::start(addr);
    let rss_limit = ((MEMORY_SIZE + FILL_BUFFER + RSS_OVERHEAD) / MIB) as f64;
    let mut report = vec![format!("start: RSS {start_rss:.1} MiB, budgets memory 64 MiB + fills 16 MiB, disk 8 MiB")];

    // 1. Slow readers: 100 clients ask for distinct 8 MiB objects and never read.
    let peak = peak_rss_during(pid, async {
        let mut stalled = Vec::new();
        for i in 0..100 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            if let Ok(mut stream) = socket.connect(addr).await {
                let request = format!("GET /big/{i} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
                let _ = stream.write_all(request.as_bytes()).await;
                stalled.push(stream);
            }
        }
        // The send timeout (2 s) cuts them off; hold them past it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        eprintln!(
            "{}",
            metrics(admin, &["fill_buffer_bytes", "fills_shed", "tcp_connections ", "memory_tier_bytes"]).await
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        drop(stalled);
    })
    .await;
    report.push(format!("slow readers (100 x 8 MiB, never read): peak RSS {peak:.1} MiB (limit {rss_limit})"));
    assert!(peak <= rss_limit, "slow readers: RSS {peak:.1} MiB over {rss_limit} MiB");

    // 2. Key flood on the disk tier: 5,000 query strings for one 1 KiB body.
    let peak = peak_rss_during(pid, get_many(addr, (0..5000).map(|i| format!("/small?q={i}")).collect(), 32)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (bytes, files) = disk_use(&dir);
    report.push(format!(
        "key flood (5,000 URLs): disk {:.1} MiB in {files} files (limit {} MiB + {} MiB), peak RSS {peak:.1} MiB",
        bytes as f64 / MIB as f64,
        DISK_SIZE / MIB,
        DISK_OVERHEAD / MIB
    ));
    assert!(bytes <= DISK_SIZE + DISK_OVERHEAD, "disk use {bytes} over budget");
    assert!(peak <= rss_limit);

    // 3. Memory churn: 20,000 distinct 4 KiB objects (80 MiB of bodies).
    let peak = peak_rss_during(pid, get_many(addr, (0..20_000).map(|i| format!("/churn/{i}")).collect(), 32)).await;
    report.push(format!("memory churn (20,000 x 4 KiB): peak RSS {peak:.1} MiB (limit {rss_limit})"));
    assert!(peak <= rss_limit, "churn: RSS {peak:.1} MiB over {rss_limit} MiB");

    // 4. Host flood: every request names another host.
    let before = origin.total_hits();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures_util::stream::iter(0..2000)
        .for_each_concurrent(32, |i| {
            let refused = Arc::clone(&refused);
            async move {
                let response = holdfast_test::send(
                    addr,
                    holdfast_test::Protocol::Http1,
                    "GET",
                    "/x",
                    &[("host", &format!("h{i}.evil"))],
                )
                .await;
                if response.is_ok_and(|r| r.status == 421) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    report.push(format!("host flood (2,000 hosts): {} answered 421", refused.load(Ordering::Relaxed)));
    assert_eq!(refused.load(Ordering::Relaxed), 2000);
    assert_eq!(origin.total_hits(), before, "no unknown host reached the origin");

    // 5. Connection flood: 1,000 idle connections against a limit of 256.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            idle.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds = open_fds(pid);
    report.push(format!("connection flood (1,000 idle): node holds {fds} file descriptors"));
    assert!(fds <= MAX_CONNECTIONS + 64, "{fds} descriptors open");
    drop(idle);

    let Behaved { mut latencies, errors, retried } = good.finish().await;
    latencies.sort();
    let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default();
    report.push(format!(
        "well-behaved client: {} requests, {} errors, {retried} sent twice, p99 {:.1} ms",
        latencies.len(),
        errors.len(),
        p99.as_secs_f64() * 1000.0
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end_rss = rss_mib(pid);
    report.push(format!("after the attacks: RSS {end_rss:.1} MiB"));
    eprintln!("{}", report.join("\n"));
    assert!(errors.is_empty(), "the well-behaved client saw errors: {errors:?}");
    assert!(retried <= 3, "{retried} requests met a connection closed under them");
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    assert!(end_rss <= rss_limit);
    drop(node);
    let _ = std::fs::remove_dir_all(&work);
}
