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
