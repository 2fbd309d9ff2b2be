//! Origins that break HTTP, found by the `handler` fuzz target
//! (crates/frontend/fuzz): what they send never reaches a client that
//! cannot use it, and never enters the store.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use holdfast_frontend::Fetched;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{Scripted, get, get_with, handler, reply, settle};

const IMMUTABLE: (&str, &str) = ("cache-control", "public, max-age=31536000, immutable");

#[tokio::test(start_paused = true)]
async fn a_status_outside_200_to_599_is_a_502_and_is_not_stored() {
    for status in [632, 999, 150] {
        let origin = Scripted::new(move |_, _| Box::pin(async move { reply(status, &[IMMUTABLE], "odd") }));
        let handler = handler(Arc::clone(&origin), |_| {});
        let got = get(&handler, "/app.js").await;
        assert_eq!(got.status, 502, "origin status {status}");
        let body = String::from_utf8(got.body.unwrap().to_vec()).unwrap();
        assert!(body.contains(&format!("invalid status {status}")), "{body}");
        settle(&handler).await;
        assert_eq!(get(&handler, "/app.js").await.status, 502);
        assert_eq!(origin.fetches(), 2, "nothing was stored for status {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_coding_the_client_did_not_accept_is_never_relayed_to_it() {
    // An origin that compresses with br whatever it is asked for.
    let origin = Scripted::new(|_, _| Box::pin(async { reply(200, &[IMMUTABLE, ("content-encoding", "br")], "br!") }));
    let handler = handler(Arc::clone(&origin), |_| {});

    let gzip_only = get_with(&handler, "/app.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gzip_only.status, 502);
    assert!(gzip_only.headers.get("content-encoding").is_none());
    let identity = get_with(&handler, "/app.js", &[("accept-encoding", "identity")]).await;
    assert_eq!(identity.status, 502);
    let refused = get_with(&handler, "/app.js", &[("accept-encoding", "br;q=0, *")]).await;
    assert_eq!(refused.status, 502);

    // A client that accepts br gets it even though holdfast asked the
    // origin for gzip; one that sent no Accept-Encoding accepts any coding
    // (RFC 9110 §12.5.3).
    let browser = get_with(&handler, "/app.js", &[("accept-encoding", "gzip;q=1, br;q=0.5")]).await;
    assert_eq!((browser.status, browser.x_cache.as_str()), (200, "MISS"));
    assert_eq!(browser.headers["content-encoding"], "br");
    let no_header = get(&handler, "/app.js").await;
    assert_eq!((no_header.status, no_header.x_cache.as_str()), (200, "MISS"));
    settle(&handler).await;
    assert_eq!(get_with(&handler, "/app.js", &[("accept-encoding", "gzip")]).await.status, 502, "nothing stored");
}

/// A response whose Content-Encoding is not visible ASCII.
fn opaque_coding() -> Result<Fetched, holdfast_frontend::UpstreamError> {
    let body = Full::new(Bytes::from_static(b"??")).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("public, max-age=600"));
    headers.insert("content-encoding", HeaderValue::from_bytes(b"\xa6r").unwrap());
    Ok(Fetched { origin: "scripted".into(), response })
}

#[tokio::test(start_paused = true)]
async fn a_coding_that_is_not_ascii_is_not_stored_as_identity() {
    let origin = Scripted::new(|_, _| Box::pin(async { opaque_coding() }));
    let handler = handler(Arc::clone(&origin), |_| {});
    let first = get(&handler, "/blob").await;
    assert_eq!((first.status, first.x_cache.as_str()), (200, "MISS"));
    settle(&handler).await;
    // Had it been kept as the identity variant, this would be a HIT of
    // bytes nobody can decode.
    let identity = get_with(&handler, "/blob", &[("accept-encoding", "identity")]).await;
    assert_eq!(identity.status, 502);
    assert_eq!(origin.fetches(), 2);
}

/// Catalogue F16: an `immutable` object whose refetch (its freshness ran
/// out) brings other bytes is counted and logged; the new bytes replace it,
/// as HTTP says (RFC 8246 promises nothing past freshness). The same bytes,
/// or other bytes of an object that never said immutable, count nothing.
#[tokio::test(start_paused = true)]
async fn an_immutable_object_whose_bytes_change_is_counted() {
    const EXPIRED: (&str, &str) = ("cache-control", "public, max-age=0, immutable");
    const PLAIN: (&str, &str) = ("cache-control", "public, max-age=0");
    // Fetches in order: /app.js ×3, /same.js ×2, /plain.js ×2.
    let origin = Scripted::new(|n, fetch| {
        Box::pin(async move {
            let (control, body) = match (fetch.path_and_query.as_str(), n) {
                ("/app.js", 0) => (EXPIRED, "v1"),
                ("/app.js", _) => (EXPIRED, "v2"),
                ("/same.js", _) => (EXPIRED, "same"),
                (_, 5) => (PLAIN, "p1"),
                _ => (PLAIN, "p2"),
            };
            reply(200, &[control], body)
        })
    });
    let handler = handler(Arc::clone(&origin), |_| {});
    let changed = || handler.tiers().immutable_changed();

    assert_eq!(get(&handler, "/app.js").await.body.unwrap(), "v1");
    settle(&handler).await;
    assert_eq!(changed(), 0, "a first fetch is no change");
    let refetched = get(&handler, "/app.js").await;
    assert_eq!((refetched.status, refetched.body.unwrap()), (200, Bytes::from("v2")));
    settle(&handler).await;
    assert_eq!(changed(), 1);
    assert_eq!(get(&handler, "/app.js").await.body.unwrap(), "v2", "the new bytes were stored");
    settle(&handler).await;
    assert_eq!(changed(), 1, "v2 again is no change");

    for path in ["/same.js", "/same.js", "/plain.js", "/plain.js"] {
        get(&handler, path).await;
        settle(&handler).await;
    }
    assert_eq!(origin.fetches(), 7);
    assert_eq!(changed(), 1, "the same bytes again, or a change of an object that never said immutable");
}
