//! Edge and shield tiers: each object goes to one shield by consistent
//! hashing, so the origin sees it once however many edges ask; loops
//! between tiers are refused.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{urls, within};
use holdfast_node::config::{FileConfig, OriginEntry, Selection};
use holdfast_node::{Environment, NodeConfig, Overrides, RunningNode};
use holdfast_test::{FakeOrigin, Protocol, get, send};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(
    name: &str,
    listen: SocketAddr,
    origins: Vec<OriginEntry>,
    tweak: impl FnOnce(&mut FileConfig),
) -> RunningNode {
    let mut file = FileConfig::default();
    file.server.listen = vec![listen];
    file.server.node_name = Some(name.into());
    file.server.shutdown_delay = std::time::Duration::ZERO;
    file.admin.listen = "127.0.0.1:0".parse().unwrap();
    file.origin.urls = origins;
    file.origin.health_check_path = holdfast_test::HEALTH_PATH.into();
    tweak(&mut file);
    let config =
        NodeConfig::from_file(file, Path::new("."), name, Overrides::default(), &Environment::default()).unwrap();
    RunningNode::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_two_shields_one_origin_fetch_per_object() {
    within(async {
        let origin = FakeOrigin::start().await;
        let mut shields = Vec::new();
        for name in ["shield-a", "shield-b"] {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            shields.push((start(name, addr, urls(&[origin.url()]), |_| {}).await, addr));
        }
        let shield_urls: Vec<String> = shields.iter().map(|(_, a)| format!("http://{a}")).collect();
        let mut edges = Vec::new();
        for name in ["edge-1", "edge-2", "edge-3"] {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let (shield_urls, fallback) = (shield_urls.clone(), origin.url());
            let node = start(name, addr, urls(&shield_urls), move |c| {
                c.origin.selection = Selection::ConsistentHash;
                c.origin.fallback = Some(fallback);
            })
            .await;
            edges.push((node, addr));
        }
        const OBJECTS: usize = 60;
        for i in 0..OBJECTS {
            for (_, edge) in &edges {
                // Every edge is asked with the same Host, as behind one load balancer.
                let r = send(*edge, Protocol::Http1, "GET", &format!("/assets/{i}.js"), &[("host", "cdn.test")])
                    .await
                    .unwrap();
                assert_eq!(r.status, 200);
            }
        }
        for i in 0..OBJECTS {
            assert_eq!(origin.hits(&format!("/assets/{i}.js")), 1, "object {i}: one shield fetched it, once");
        }
        let per_shield: Vec<u64> =
            shields.iter().map(|(node, _)| node.origins()[0].1.stats().snapshot().requests).collect();
        assert!(per_shield.iter().all(|n| *n > 10), "both shields take a share: {per_shield:?}");
        // (Plus the edges' health checks, which shields also answer.)
        assert!(per_shield.iter().sum::<u64>() >= OBJECTS as u64);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_between_tiers_is_refused() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (a, b): (SocketAddr, SocketAddr) = (
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        );
        // Misconfigured: each node is the other's origin.
        let no_hold = |c: &mut FileConfig| c.origin.hold_budget = std::time::Duration::from_millis(300);
        let _edge = start("edge-x", a, urls(&[format!("http://{b}")]), no_hold).await;
        let _shield = start("shield-x", b, urls(&[format!("http://{a}")]), no_hold).await;
        let response = get(a, "/loop.js").await;
        assert!(response.status.is_server_error(), "{}", response.status);
        assert_eq!(origin.total_hits(), 0);
        // The node that sees itself in Via answers 508.
        let looped = send(a, Protocol::Http1, "GET", "/x", &[("via", "1.1 shield-x, 1.1 edge-x")]).await.unwrap();
        assert_eq!(looped.status, 508);
    })
    .await
}

/// The fleet on this machine: 3 edges and 2 shields as processes, an
/// origin, and a client that retries on another edge the way a load
/// balancer does. One edge, then one shield, is killed with SIGKILL and
/// restarted: no request for a cached asset fails, and the origin sees each
/// object at most once per shield.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_rides_out_an_edge_and_a_shield_killed() {
    use common::{NodeProcess, wait_until_serving};
    use holdfast_test::{KeepAlive, Outcome};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    within(async {
        let origin = FakeOrigin::start().await;
        const OBJECTS: usize = 40;
        let work = std::env::temp_dir().join(format!("holdfast-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let addr = |_: &str| -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        let shield_addrs = [addr("a"), addr("b")];
        let edge_addrs = [addr("1"), addr("2"), addr("3")];
        let shield_args = |i: usize| -> Vec<String> {
            let dir = work.join(format!("shield-{i}"));
            vec![
                "serve".into(),
                "--listen".into(),
                shield_addrs[i].to_string(),
                "--origin".into(),
                origin.url(),
                "--cache-dir".into(),
                dir.display().to_string(),
                "--admin-listen".into(),
                String::new(),
            ]
        };
        let edge_config = work.join("edge.toml");
        let shield_urls: Vec<String> = shield_addrs.iter().map(|a| format!("\"http://{a}\"")).collect();
        std::fs::write(
            &edge_config,
            format!(
                "[server]\nshutdown_delay = \"0s\"\n[origin]\nurls = [{}]\nselection = \"consistent-hash\"\n\
                 fallback = \"{}\"\nhealth_check_path = \"{}\"\nhealth_check_interval = \"200ms\"\n",
                shield_urls.join(", "),
                origin.url(),
                holdfast_test::HEALTH_PATH
            ),
        )
        .unwrap();
        let edge_args = |i: usize| -> Vec<String> {
            vec![
                "serve".into(),
                "--config".into(),
                edge_config.display().to_string(),
                "--listen".into(),
                edge_addrs[i].to_string(),
                "--cache-dir".into(),
                work.join(format!("edge-{i}")).display().to_string(),
                "--admin-listen".into(),
                String::new(),
            ]
        };
        let mut shields: Vec<NodeProcess> = (0..2).map(|i| NodeProcess::spawn(&shield_args(i))).collect();
        let mut edges: Vec<NodeProcess> = (0..3).map(|i| NodeProcess::spawn(&edge_args(i))).collect();
        for a in shield_addrs.iter().chain(&edge_addrs) {
            wait_until_serving(*a).await;
        }
        // Every edge has every asset.
        for edge in edge_addrs {
            for i in 0..OBJECTS {
                assert_eq!(get(edge, &format!("/assets/{i}.js")).await.status, 200);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut clients: Vec<KeepAlive> = edge_addrs.iter().map(|a| KeepAlive::new(*a)).collect();
                    let (mut ok, mut failed) = (0usize, Vec::new());
                    let mut n = w;
                    while !stop.load(Ordering::Relaxed) {
                        let path = format!("/assets/{}.js", n % OBJECTS);
                        // The load balancer: try the next edge when one fails.
                        let mut answered = false;
                        for attempt in 0..3 {
                            let client = &mut clients[(n + attempt) % 3];
                            if let Outcome::Answered { status: 200, complete: true, .. } = client.get(&path).await {
                                answered = true;
                                break;
                            }
                        }
                        if answered {
                            ok += 1;
                        } else {
                            failed.push(path);
                        }
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    (ok, failed)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        edges[1].signal("-KILL");
        edges[1].exit_code().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        edges[1] = NodeProcess::spawn(&edge_args(1));
        wait_until_serving(edge_addrs[1]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        shields[0].signal("-KILL");
        shields[0].exit_code().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        shields[0] = NodeProcess::spawn(&shield_args(0));
        wait_until_serving(shield_addrs[0]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failed) = (0, Vec::new());
        for worker in workers {
            let (o, f) = worker.await.unwrap();
            ok += o;
            failed.extend(f);
        }
        eprintln!("fleet: {ok} requests answered, {} failed", failed.len());
        assert!(failed.is_empty(), "{failed:?}");
        assert!(ok > 100);
        let most = (0..OBJECTS).map(|i| origin.hits(&format!("/assets/{i}.js"))).max().unwrap();
        let total: usize = (0..OBJECTS).map(|i| origin.hits(&format!("/assets/{i}.js"))).sum();
        eprintln!("fleet: origin fetches per object: max {most}, total {total} for {OBJECTS} objects");
        assert!(most <= 2, "at most once per shield");
        drop(edges);
        drop(shields);
        let _ = std::fs::remove_dir_all(&work);
    })
    .await
}
