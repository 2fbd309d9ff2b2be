//! Origin-restart immunity, proven by scenarios: origin killed and
//! restarted under load, down past the hold budget, a storm of 503s, one of
//! two origins killed, an origin that never sends its head.
//!
//! These run in real time over real sockets (the outages are the
//! scenario), each bounded; the same behaviours on virtual time, without
//! sockets, are in crates/frontend/tests/request_path.rs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{node_with, urls, within};
use holdfast_test::{FakeOrigin, KeepAlive, Outcome, Reply, get};
use tokio::task::JoinHandle;

/// Counts of one traffic class.
#[derive(Debug, Default, Clone)]
struct Tally {
    ok: usize,
    non_2xx: Vec<(u16, String)>,
    broken: Vec<String>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Answered { status, complete: true, .. } if (200..300).contains(&status) => self.ok += 1,
            Outcome::Answered { status, x_cache, complete: true } => self.non_2xx.push((status, x_cache)),
            Outcome::Answered { status, .. } => self.broken.push(format!("{status} with an aborted body")),
            Outcome::Failed(error) => self.broken.push(error),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.non_2xx.extend(other.non_2xx);
        self.broken.extend(other.broken);
    }

    fn failures(&self) -> usize {
        self.non_2xx.len() + self.broken.len()
    }
}

/// Client workers that loop until told to stop: some on cached keys, some
/// on never-seen keys, each pacing its requests.
struct Load {
    stop: Arc<AtomicBool>,
    cached: Vec<JoinHandle<Tally>>,
    uncached: Vec<JoinHandle<Tally>>,
}

const PACE: Duration = Duration::from_millis(5);

impl Load {
    fn start(
        addr: std::net::SocketAddr,
        cached_paths: Vec<String>,
        cached_workers: usize,
        uncached_workers: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let cached_paths = Arc::new(cached_paths);
        let cached = (0..cached_workers)
            .map(|w| {
                let (stop, paths) = (Arc::clone(&stop), Arc::clone(&cached_paths));
                tokio::spawn(async move {
                    let mut client = KeepAlive::new(addr);
                    let mut tally = Tally::default();
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        tally.add(client.get(&paths[i % paths.len()]).await);
                        i += 1;
                        tokio::time::sleep(PACE).await;
                    }
                    tally
                })
            })
            .collect();
        let uncached = (0..uncached_workers)
            .map(|w| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut client = KeepAlive::new(addr);
                    let mut tally = Tally::default();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        tally.add(client.get(&format!("/uncached/{w}/{n}.js")).await);
                        n += 1;
                        tokio::time::sleep(PACE).await;
                    }
                    tally
                })
            })
            .collect();
        Load { stop, cached, uncached }
    }

    async fn finish(self) -> (Tally, Tally) {
        self.stop.store(true, Ordering::Relaxed);
        let mut cached = Tally::default();
        for task in self.cached {
            cached.merge(task.await.expect("load worker"));
        }
        let mut uncached = Tally::default();
        for task in self.uncached {
            uncached.merge(task.await.expect("load worker"));
        }
        (cached, uncached)
    }
}

async fn warm(addr: std::net::SocketAddr, paths: &[String]) {
    for path in paths {
        let response = get(addr, path).await;
        assert_eq!(response.status, 200, "{path}");
    }
}

fn cached_paths(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/assets/{i}.js")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_origin_three_times_for_five_seconds_costs_no_request() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (_node, addr) = node_with(&origin, |_| {}).await;
        let paths = cached_paths(20);
        warm(addr, &paths).await;
        let load = Load::start(addr, paths, 4, 2);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            origin.stop().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            origin.restart().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cached, uncached) = load.finish().await;
        eprintln!("cached ok {} / uncached ok {}", cached.ok, uncached.ok);
        assert_eq!(origin.hits("/assets/0.js"), 1, "the load's cached keys are the warmed ones");
        assert_eq!(cached.failures(), 0, "cached keys: {cached:?}");
        assert_eq!(uncached.failures(), 0, "uncached keys, outages shorter than the hold budget: {uncached:?}");
        assert!(uncached.ok > 0 && cached.ok > 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_down_past_the_budget_gets_a_clear_503_then_recovers() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, |c| c.origin.hold_budget = Duration::from_secs(1)).await;
        warm(addr, &["/kept.css".to_owned()]).await;
        origin.stop().await;
        let response = get(addr, "/never-seen.css").await;
        assert_eq!(response.status, 503);
        assert_eq!(response.header("retry-after"), Some("5"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let text = String::from_utf8_lossy(response.bytes()).into_owned();
        assert!(text.contains(&origin.addr().to_string()), "the body names the origin: {text}");
        let kept = get(addr, "/kept.css").await;
        assert_eq!((kept.status.as_u16(), kept.x_cache()), (200, "HIT"));
        let stats = node.origins()[0].1.stats().snapshot();
        assert!(stats.failures >= 1 && stats.hold_time_ms >= 1000, "{stats:?}");

        // Back: the health check closes the breaker within one interval
        // (200 ms here), well inside the 1 s hold of this request.
        origin.restart().await;
        let response = get(addr, "/never-seen.css").await;
        assert_eq!(response.status, 200);
        assert_eq!(node.origins()[0].1.members()[0].breaker.as_str(), "closed");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_503s_keeps_stored_objects_and_respects_the_retry_budget() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, |c| c.origin.hold_budget = Duration::from_secs(1)).await;
        // Stored but stale at once (max-age=0): every use asks the origin.
        let paths = cached_paths(10);
        for path in &paths {
            origin.route(path, Reply::ok(path.clone()).header("cache-control", "max-age=0").header("etag", "\"v1\""));
        }
        warm(addr, &paths).await;
        let storm = Reply::ok("origin overloaded").status(503).without("cache-control");
        for path in &paths {
            origin.route(path, storm.clone());
        }
        origin.set_default(Some(storm));
        let before = origin.total_hits();
        let load = Load::start(addr, paths, 4, 1);
        const STORM_SECS: usize = 8;
        tokio::time::sleep(Duration::from_secs(STORM_SECS as u64)).await;
        let (cached, uncached) = load.finish().await;
        let origin_requests = origin.total_hits() - before;
        let client_requests = cached.ok + cached.failures() + uncached.ok + uncached.failures();
        let stats = node.origins()[0].1.stats().snapshot();
        eprintln!(
            "storm: {client_requests} client requests, {origin_requests} origin requests, {stats:?}, \
             stale served {}, uncached answered {:?}",
            cached.ok,
            uncached.non_2xx.first()
        );
        assert_eq!(cached.failures(), 0, "stored objects stay 200 through the storm: {cached:?}");
        let stale_served = node.handler().results().iter().find(|(r, _)| r.as_str() == "STALE").map_or(0, |(_, n)| *n);
        assert!(stale_served as usize >= cached.ok, "every stored answer was counted as stale serving");
        assert!(uncached.non_2xx.iter().all(|(status, _)| *status == 503), "{uncached:?}");
        // Retries stay within 20% of requests plus a floor of 10/s (plus
        // one health check each 200 ms).
        let allowed = client_requests + client_requests / 5 + 10 * STORM_SECS + 5 * STORM_SECS;
        assert!(origin_requests <= allowed, "{origin_requests} origin requests > {allowed}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_origins_killed_costs_no_request() {
    within(async {
        let a = FakeOrigin::start().await;
        let b = FakeOrigin::start().await;
        let (_node, addr) = node_with(&a, |c| c.origin.urls = urls(&[a.url(), b.url()])).await;
        let load = Load::start(addr, cached_paths(1), 1, 4);
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.stop().await;
        let b_before = b.total_hits();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (cached, uncached) = load.finish().await;
        assert_eq!(cached.failures() + uncached.failures(), 0, "{cached:?} {uncached:?}");
        assert!(b.total_hits() > b_before + 10, "traffic moved to the live origin");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_never_sends_its_head_times_out_then_fails_over() {
    within(async {
        let slow = FakeOrigin::start().await;
        let live = FakeOrigin::start().await;
        let never = holdfast_test::Gate::new();
        slow.set_default(Some(Reply::ok("late").hold_head(&never)));
        let (_node, addr) = node_with(&slow, |c| {
            c.origin.urls = vec![
                holdfast_node::config::OriginEntry::Weighted { url: slow.url(), weight: 1000 },
                holdfast_node::config::OriginEntry::Url(live.url()),
            ];
            c.origin.header_timeout = Duration::from_secs(1);
            c.origin.health_check_path = String::new();
        })
        .await;
        for i in 0..3 {
            let response = get(addr, &format!("/e{i}")).await;
            assert_eq!(response.status, 200, "request {i}");
            assert_eq!(response.bytes().as_ref(), format!("/e{i}").as_bytes());
        }
        assert!(slow.hits("/e0") == 1, "the first attempt went to the heavy, slow origin and timed out");
    })
    .await
}
