//! Several sites on one node, and the stale-serving rules seen end to end.

mod common;

use std::time::Duration;

use common::{node_with, urls, within};
use holdfast_node::config::{OriginSection, SiteSection, UnknownHostStatus};
use holdfast_test::{FakeOrigin, Protocol, Reply, eventually, get, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_reaches_its_own_origin_and_unknown_hosts_are_refused() {
    within(async {
        let app = FakeOrigin::start().await;
        let media = FakeOrigin::start().await;
        app.route("/same.js", Reply::ok("from app"));
        media.route("/same.js", Reply::ok("from media"));
        let media_url = media.url();
        let (_node, addr) = node_with(&app, |c| {
            c.server.hosts = vec!["app.example".into()];
            c.server.unknown_host_status = UnknownHostStatus::NotFound;
            c.site = vec![SiteSection {
                name: Some("media".into()),
                hosts: vec!["*.media.example".into()],
                origin: OriginSection { urls: urls(&[media_url]), ..OriginSection::default() },
            }];
        })
        .await;
        let at = |host: &'static str| async move {
            send(addr, Protocol::Http1, "GET", "/same.js", &[("host", host)]).await.unwrap()
        };
        assert_eq!(at("app.example").await.bytes().as_ref(), b"from app");
        assert_eq!(at("img.media.example").await.bytes().as_ref(), b"from media");
        let hit = at("img.media.example").await;
        assert_eq!((hit.x_cache(), hit.bytes().as_ref()), ("HIT", b"from media".as_ref()));
        assert_eq!(at("app.example").await.bytes().as_ref(), b"from app", "same path, other site, other object");
        assert_eq!(at("media.example").await.status, 404, "the bare domain is not claimed by *.media.example");
        assert_eq!(at("elsewhere.example").await.status, 404);
        assert_eq!((app.hits("/same.js"), media.hits("/same.js")), (1, 1));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    within(async {
        let origin = FakeOrigin::start().await;
        let gate = holdfast_test::Gate::new();
        origin.route(
            "/swr.css",
            Reply::ok("v1").header("cache-control", "max-age=0, stale-while-revalidate=600").header("etag", "\"1\""),
        );
        let (node, addr) = node_with(&origin, |_| {}).await;
        assert_eq!(get(addr, "/swr.css").await.x_cache(), "MISS");
        // The refresh will hang at the origin: answers must not wait for it.
        origin.route(
            "/swr.css",
            Reply::ok("v2").header("cache-control", "max-age=0, stale-while-revalidate=600").hold_head(&gate),
        );
        for _ in 0..5 {
            let response = get(addr, "/swr.css").await;
            assert_eq!((response.x_cache(), response.bytes().as_ref()), ("STALE", b"v1".as_ref()));
        }
        assert_eq!(node.handler().fills_in_flight().0, 1, "one background refresh for the key");
        gate.open();
        eventually(Duration::from_secs(10), "refresh stored", || node.handler().fills_in_flight().0 == 0).await;
        assert_eq!(origin.hits("/swr.css"), 2, "five stale answers, one refresh");
        assert_eq!(get(addr, "/swr.css").await.bytes().as_ref(), b"v2");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_4xx_never_replaces_a_stored_object_but_must_revalidate_is_honoured() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/kept", Reply::ok("good").header("cache-control", "max-age=0").header("etag", "\"k\""));
        origin.route(
            "/strict",
            Reply::ok("strict").header("cache-control", "max-age=0, must-revalidate").header("etag", "\"s\""),
        );
        let (_node, addr) = node_with(&origin, |c| c.origin.hold_budget = Duration::from_millis(300)).await;
        get(addr, "/kept").await;
        get(addr, "/strict").await;
        origin.route("/kept", Reply::ok("gone").status(404));
        origin.route("/strict", Reply::ok("gone").status(404));
        let kept = get(addr, "/kept").await;
        assert_eq!((kept.status.as_u16(), kept.x_cache(), kept.bytes().as_ref()), (200, "STALE", b"good".as_ref()));
        let strict = get(addr, "/strict").await;
        assert_eq!(strict.status, 404, "must-revalidate: the origin's answer is relayed, not the stale copy");
    })
    .await
}
