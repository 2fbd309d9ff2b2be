//! What clients get when the origin answers with its own errors: the
//! origin's page, relayed, and no refusal without trying when one URL's
//! errors have ejected every origin.

mod common;

use std::time::Duration;

use common::{node_with, within};
use holdfast_test::{FakeOrigin, Gate, Protocol, Reply, eventually, get, send};

/// Retries end on the origin's own 503: the client gets that page (status,
/// body, Retry-After), not holdfast's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_maintenance_page_is_relayed() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route(
            "/app.js",
            Reply::ok("down for maintenance").status(503).without("cache-control").header("retry-after", "120"),
        );
        let (node, addr) = node_with(&origin, |c| {
            c.origin.hold_budget = Duration::from_millis(300);
            c.origin.health_check_path = String::new();
        })
        .await;
        let response = get(addr, "/app.js").await;
        assert_eq!(response.status, 503);
        assert_eq!(response.bytes().as_ref(), b"down for maintenance");
        assert_eq!(response.header("retry-after"), Some("120"));
        assert!(origin.hits("/app.js") >= 2, "retried before giving up");
        assert_eq!(node.origins()[0].1.stats().snapshot().relayed_errors, 1);
    })
    .await
}

/// An origin that answers 503 is up, not restarting: a miss stops
/// retrying it after `answered_error_hold` and relays its answer, long
/// before the hold budget meant for an origin that cannot be reached
/// (a client would have given up by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answering_origin_is_not_held_for_the_whole_budget() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/app.js", Reply::ok("overloaded").status(503).without("cache-control"));
        let (_node, addr) = node_with(&origin, |c| {
            c.origin.hold_budget = Duration::from_secs(600);
            c.origin.answered_error_hold = Duration::from_millis(300);
            c.origin.health_check_path = String::new();
        })
        .await;
        let response = tokio::time::timeout(Duration::from_secs(20), get(addr, "/app.js"))
            .await
            .expect("answered within the answered-error hold, not the 600 s hold budget");
        assert_eq!(response.status, 503);
        assert_eq!(response.bytes().as_ref(), b"overloaded");
        assert!(origin.hits("/app.js") >= 2, "retried before giving up");
    })
    .await
}

/// A dying origin breaks the connection of a request in flight (closed
/// without a response) and then refuses connections: that is a restart, not
/// an answer, so the miss keeps the whole hold budget and gets the object
/// once the origin is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_off_by_a_dying_origin_waits_for_its_restart() {
    within(async {
        let origin = FakeOrigin::start().await;
        let gate = Gate::new();
        origin.route("/app.js", Reply::ok("before").hold_head(&gate));
        let (_node, addr) = node_with(&origin, |c| {
            c.origin.hold_budget = Duration::from_secs(30);
            c.origin.answered_error_hold = Duration::from_millis(100);
            c.origin.health_check_path = String::new();
        })
        .await;
        let request = tokio::spawn(get(addr, "/app.js"));
        eventually(Duration::from_secs(10), "the origin has the request", || origin.hits("/app.js") == 1).await;
        origin.stop().await;
        // Down for many answered-error holds: the restart takes a while.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        origin.route("/app.js", Reply::ok("after"));
        origin.restart().await;
        let response = request.await.expect("request task");
        assert_eq!(response.status, 200);
        assert_eq!(response.bytes().as_ref(), b"after");
    })
    .await
}

/// One URL's 503s eject the only origin; a POST (which cannot wait) and a
/// GET for another URL still get an attempt, and their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_urls_errors_do_not_turn_other_requests_away() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/broken", Reply::ok("broken").status(503).without("cache-control"));
        origin.route("/form", Reply::ok("posted").without("cache-control"));
        let (node, addr) = node_with(&origin, |c| {
            c.origin.hold_budget = Duration::from_millis(300);
            c.origin.health_check_path = String::new();
            c.origin.failure_threshold = 2;
            c.origin.ejection = Duration::from_secs(60);
            c.server.pass_methods = vec!["POST".into()];
        })
        .await;
        assert_eq!(get(addr, "/broken").await.status, 503);
        let ejected = node.origins()[0].1.members()[0].breaker.as_str().to_owned();
        assert_eq!(ejected, "open", "the only origin is ejected");
        let post = send(addr, Protocol::Http1, "POST", "/form", &[]).await.unwrap();
        assert_eq!((post.status.as_u16(), post.bytes().as_ref()), (200, b"posted".as_ref()));
        let stats = || node.origins()[0].1.stats().snapshot();
        assert_eq!(stats().panic_routed, 1);
        assert_eq!(node.origins()[0].1.members()[0].breaker.as_str(), "closed", "the answer proved it alive");

        // Ejected again; now a GET for another URL.
        assert_eq!(get(addr, "/broken").await.status, 503);
        assert_eq!(node.origins()[0].1.members()[0].breaker.as_str(), "open");
        let other = get(addr, "/fine.js").await;
        assert_eq!(other.status, 200, "a GET waits out its hold, then tries anyway");
        assert_eq!(stats().panic_routed, 2);
    })
    .await
}

/// An origin that keeps connections alive, and closes one that sat idle
/// past `idle` the moment a request arrives on it, unanswered: the worst
/// case of a Node.js or Apache origin closing keep-alive connections after
/// 5 s while a request is on its way.
async fn impatient_origin(idle: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut buf, mut last) = (vec![0u8; 65536], std::time::Instant::now());
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if last.elapsed() > idle => return,
                        Ok(_) => {}
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    last = std::time::Instant::now();
                }
            });
        }
    });
    url
}

/// Regression (a CI run of the conformance suite, whose Node.js origin
/// closes idle connections after 5 s, got "connection reset" on a relayed
/// PUT): idle origin connections are closed after `origin.idle_timeout`,
/// below the origin's own timeout, so a POST after a pause goes on a new
/// connection. With the old 60 s pool, it went on the stale one and got 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_after_a_pause_is_not_sent_on_a_connection_the_origin_dropped() {
    within(async {
        let idle = Duration::from_millis(300);
        for (pool_idle, expected) in [(Duration::from_millis(100), 200), (Duration::from_secs(60), 502)] {
            let url = impatient_origin(idle).await;
            let placeholder = FakeOrigin::start().await;
            let (_node, addr) = node_with(&placeholder, |c| {
                c.origin.urls = common::urls(&[url]);
                c.origin.health_check_path = String::new();
                c.origin.idle_timeout = pool_idle;
                c.origin.hold_budget = Duration::from_millis(300);
                c.server.pass_methods = vec!["POST".into()];
            })
            .await;
            let post = |path: &'static str| send(addr, Protocol::Http1, "POST", path, &[]);
            assert_eq!(post("/first").await.unwrap().status.as_u16(), 200);
            // The pause is the point: longer than the origin keeps an idle connection.
            tokio::time::sleep(idle + Duration::from_millis(100)).await;
            let after = post("/second").await.unwrap();
            assert_eq!(after.status.as_u16(), expected, "pool idle timeout {pool_idle:?}");
        }
    })
    .await
}
