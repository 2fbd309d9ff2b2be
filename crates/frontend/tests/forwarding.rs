//! `origin.forward_headers`: which client fields reach the origin, and
//! what forwarding them means for sharing and storing (RFC 9111 §3.5, §4.1).

mod support;

use std::sync::Arc;
use std::time::Duration;

use holdfast_frontend::ForwardHeaders;
use support::{Scripted, forwarding_handler, get_with, reply, settle};

fn policy(names: &[&str]) -> ForwardHeaders {
    ForwardHeaders::parse(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap()
}

const CLIENT: &[(&str, &str)] = &[
    ("x-request-id", "42"),
    ("cookie", "s=1"),
    ("authorization", "Bearer t"),
    ("connection", "x-hop"),
    ("x-hop", "1"),
    ("if-none-match", "\"client\""),
];

/// One row per policy: what the origin sees of the client's fields.
#[tokio::test]
async fn each_policy_forwards_what_it_says() {
    let rows: &[(&[&str], &[&str])] = &[
        (&[], &[]),
        (&["X-Request-Id"], &["x-request-id"]),
        (&["cookie"], &["cookie"]),
        (&["*"], &["authorization", "cookie", "x-request-id"]),
    ];
    for (names, expected) in rows {
        let origin = Scripted::new(|_, _| Box::pin(async { reply(200, &[("cache-control", "max-age=60")], "") }));
        let handler = forwarding_handler(Arc::clone(&origin), policy(names), |_| {});
        get_with(&handler, "/f", CLIENT).await;
        let seen = &origin.seen()[0].headers;
        let mut got: Vec<&str> = seen.keys().map(|n| n.as_str()).collect();
        got.sort();
        assert_eq!(got, *expected, "policy {names:?}");
    }
}

/// RFC 9111 §3.5: with Authorization forwarded, a response is stored only
/// when it says a shared cache may reuse it.
#[tokio::test]
async fn a_forwarded_authorization_needs_an_explicit_permission_to_store() {
    let rows: &[(&str, &str)] = &[("max-age=60", "MISS"), ("public, max-age=60", "HIT"), ("s-maxage=60", "HIT")];
    for (cache_control, second) in rows {
        let cc = cache_control.to_string();
        let origin = Scripted::new(move |_, _| {
            let cc = cc.clone();
            Box::pin(async move { reply(200, &[("cache-control", cc.as_str())], "private?") })
        });
        let handler = forwarding_handler(Arc::clone(&origin), policy(&["*"]), |_| {});
        let auth = [("authorization", "Bearer t")];
        assert_eq!(get_with(&handler, "/a", &auth).await.x_cache, "MISS");
        settle(&handler).await;
        assert_eq!(get_with(&handler, "/a", &auth).await.x_cache, *second, "{cache_control}");
    }
}

/// RFC 9111 §4.1: a response that varies on a forwarded field is never
/// handed to a waiting request that selects another variant.
#[tokio::test(start_paused = true)]
async fn waiting_requests_get_only_their_own_variant() {
    let origin = Scripted::new(|_, fetch| {
        let device = fetch.headers.get("x-device").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            reply(200, &[("cache-control", "max-age=60"), ("vary", "x-device")], device)
        })
    });
    let handler = forwarding_handler(Arc::clone(&origin), policy(&["x-device"]), |_| {});
    let (phone, desktop, phone_again) = tokio::join!(
        get_with(&handler, "/v", &[("x-device", "phone")]),
        get_with(&handler, "/v", &[("x-device", "desktop")]),
        get_with(&handler, "/v", &[("x-device", "phone")]),
    );
    assert_eq!(phone.body.unwrap(), "phone");
    assert_eq!(desktop.body.unwrap(), "desktop", "not the leader's variant");
    assert_eq!(phone_again.body.unwrap(), "phone");
    assert_eq!(origin.fetches(), 2, "the two phones shared one fetch; the desktop fetched its own");
    settle(&handler).await;
    assert_eq!(get_with(&handler, "/v", &[("x-device", "desktop")]).await.x_cache, "HIT");
    assert_eq!(get_with(&handler, "/v", &[("x-device", "phone")]).await.x_cache, "HIT");
}

/// With `Range` forwarded, the origin answers ranges: they are relayed,
/// kept, answer later ranges inside them, and make the whole object once
/// every byte came (what nginx's slice module approximates).
#[tokio::test]
async fn forwarded_ranges_are_kept_and_completed() {
    const BODY: &str = "0123456789abcdef";
    let origin = Scripted::new(|_, fetch| {
        let range = fetch.headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Box::pin(async move {
            let bounds = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes=")?.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?.min(BODY.len() - 1))));
            let cached = [("cache-control", "max-age=600"), ("etag", "\"v1\"")];
            match bounds {
                Some((a, b)) => {
                    let content_range = format!("bytes {a}-{b}/{}", BODY.len());
                    let length = (b - a + 1).to_string();
                    let fields = [cached[0], cached[1], ("content-range", &content_range), ("content-length", &length)];
                    reply(206, &fields, &BODY[a..=b])
                }
                None => reply(200, &cached, BODY),
            }
        })
    });
    let handler = forwarding_handler(Arc::clone(&origin), policy(&["*"]), |_| {});
    let first = get_with(&handler, "/video", &[("range", "bytes=0-7")]).await;
    assert_eq!((first.status, first.x_cache.as_str()), (206, "MISS"));
    assert_eq!(first.body.unwrap(), "01234567");
    settle(&handler).await;
    let inside = get_with(&handler, "/video", &[("range", "bytes=2-5")]).await;
    assert_eq!((inside.status, inside.x_cache.as_str(), inside.body.unwrap()), (206, "HIT", "2345".into()));
    let second = get_with(&handler, "/video", &[("range", "bytes=8-15")]).await;
    assert_eq!((second.status, second.x_cache.as_str()), (206, "MISS"));
    settle(&handler).await;
    let whole = get_with(&handler, "/video", &[]).await;
    assert_eq!((whole.status, whole.x_cache.as_str(), whole.body.unwrap()), (200, "HIT", BODY.into()));
    let ranges: Vec<_> = origin.seen().iter().map(|s| s.headers.get("range").cloned()).collect();
    assert_eq!(ranges, [Some("bytes=0-7".parse().unwrap()), Some("bytes=8-15".parse().unwrap())]);
}
