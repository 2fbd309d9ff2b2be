//! Several sites on one node, and the stale-serving rules seen end to end.

mod common;

use std::time::Duration;

use common::{node_with, urls, within};
use holdfast_frontend::PurgeTarget;
use holdfast_node::config::{OriginSection, QueryParamsValue, SiteSection, UnknownHostStatus};
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

/// `origin.query_params`: a site that keys no query answers every
/// cache-busting variant from one stored object, and asks its origin for
/// the bare path; a site that keeps named parameters keys and forwards
/// those alone; a purge names the object as clients ask for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_sort_makes_one_object_of_every_order_of_the_same_parameters() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, |c| {
            c.server.hosts = vec!["app.example".into()];
            c.origin.query_sort = true;
        })
        .await;
        let at = |target: &'static str| async move {
            send(addr, Protocol::Http1, "GET", target, &[("host", "app.example")]).await.unwrap()
        };
        // The fake origin answers with the target it was asked for.
        let first = at("/api?v=3&lang=de&b").await;
        assert_eq!((first.x_cache(), first.bytes().as_ref()), ("MISS", b"/api?b&lang=de&v=3".as_ref()));
        for order in ["/api?lang=de&v=3&b", "/api?b&v=3&lang=de", "/api?v=3&&lang=de&b&"] {
            let hit = at(order).await;
            assert_eq!((hit.x_cache(), hit.bytes().as_ref()), ("HIT", b"/api?b&lang=de&v=3".as_ref()), "{order}");
        }
        assert_eq!(origin.total_hits(), 1, "one origin fetch for every order");
        // A name's values keep their order: a list is not a set.
        assert_eq!(at("/list?x=2&x=1").await.x_cache(), "MISS");
        assert_eq!(at("/list?x=1&x=2").await.x_cache(), "MISS");
        assert_eq!((origin.hits("/list?x=2&x=1"), origin.hits("/list?x=1&x=2")), (1, 1));
        // A purge written in any order reaches the object.
        let purged =
            node.handler().purge(&PurgeTarget::Url("http://app.example/api?lang=de&b&v=3".into()), false).await;
        assert_eq!(purged.memory, 1);
        assert_eq!(at("/api?v=3&lang=de&b").await.x_cache(), "MISS");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_params_filter_the_key_and_the_origin_request_alike() {
    within(async {
        let assets = FakeOrigin::start().await;
        let app = FakeOrigin::start().await;
        let app_url = app.url();
        let (node, addr) = node_with(&assets, |c| {
            c.server.hosts = vec!["assets.example".into()];
            c.server.pass_methods = vec!["POST".into()];
            c.origin.query_params = QueryParamsValue::Word("none".into());
            c.site = vec![SiteSection {
                name: Some("app".into()),
                hosts: vec!["app.example".into()],
                origin: OriginSection {
                    urls: urls(&[app_url]),
                    query_params: QueryParamsValue::Names(vec!["v".into(), "lang".into()]),
                    ..OriginSection::default()
                },
            }];
        })
        .await;
        let at = |host: &'static str, target: &'static str| async move {
            send(addr, Protocol::Http1, "GET", target, &[("host", host)]).await.unwrap()
        };
        // No query: the fake origin answers with the target it was asked for.
        let first = at("assets.example", "/app.js?v=1").await;
        assert_eq!((first.x_cache(), first.bytes().as_ref()), ("MISS", b"/app.js".as_ref()));
        for bust in ["/app.js?_=123", "/app.js", "/app.js?", "/app.js?v=2&x=y"] {
            let hit = at("assets.example", bust).await;
            assert_eq!((hit.x_cache(), hit.bytes().as_ref()), ("HIT", b"/app.js".as_ref()), "{bust}");
        }
        assert_eq!(assets.total_hits(), 1);

        // Named parameters: kept in the order sent, the others dropped.
        let first = at("app.example", "/page?_=1&v=3&utm=x&lang=de").await;
        assert_eq!((first.x_cache(), first.bytes().as_ref()), ("MISS", b"/page?v=3&lang=de".as_ref()));
        assert_eq!(at("app.example", "/page?v=3&lang=de&_=2").await.x_cache(), "HIT");
        assert_eq!(at("app.example", "/page?lang=de&v=3").await.x_cache(), "MISS", "another order, another key");
        assert_eq!(at("app.example", "/page?v=4&lang=de").await.x_cache(), "MISS");
        assert_eq!(app.hits("/page?v=3&lang=de"), 1);
        assert_eq!(app.hits("/page?_=1&v=3&utm=x&lang=de"), 0, "dropped parameters never reach the origin");

        // A purge of the URL as a client wrote it reaches the object it was keyed as.
        let purge = |url: &str| PurgeTarget::Url(url.to_owned());
        let purged = node.handler().purge(&purge("https://app.example/page?v=3&lang=de&_=9"), false).await;
        assert_eq!(purged.memory, 1);
        assert_eq!(at("app.example", "/page?v=3&lang=de").await.x_cache(), "MISS");
        let purged = node.handler().purge(&purge("http://assets.example/app.js?v=7"), false).await;
        assert_eq!(purged.memory, 1);
        assert_eq!(at("assets.example", "/app.js").await.x_cache(), "MISS");

        // An unsafe request's answer invalidates the object its Location
        // names (RFC 9111 §4.4), as that object was keyed.
        assets.route("/upload", Reply::ok("").status(201).header("location", "/app.js?v=8"));
        let posted = send(addr, Protocol::Http1, "POST", "/upload", &[("host", "assets.example")]).await.unwrap();
        assert_eq!(posted.status.as_u16(), 201);
        assert_eq!(at("assets.example", "/app.js").await.x_cache(), "MISS", "invalidated by Location");
    })
    .await
}
