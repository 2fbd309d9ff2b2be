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
