//! The admin API and the operator CLI: purges of every kind, soft purge,
//! authentication, durability across restarts, fan-out with a node down,
//! and metrics checked with a Prometheus text parser.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{TOKEN, node_with, token_file, with_admin, within};
use holdfast_node::RunningNode;
use holdfast_node::config::FileConfig;
use holdfast_test::{FakeOrigin, Protocol, Reply, get, send};

/// One admin request; returns status and JSON body.
async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, _, bytes) = common::admin_request(addr, method, path, token, body).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

async fn purge(node: &RunningNode, body: &str) -> serde_json::Value {
    let (status, value) = admin(node.admin_addr.unwrap(), "POST", "/purge", Some(TOKEN), body).await;
    assert_eq!(status, 200, "{value}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_purge_kind_is_followed_by_a_miss() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/a/1.js", Reply::ok("1").header("surrogate-key", "release-7 js"));
        origin.route("/a/2.js", Reply::ok("2").header("cache-tag", "release-7"));
        origin.route("/b/3.css", Reply::ok("3"));
        let (node, addr) = node_with(&origin, with_admin(token_file("kinds"))).await;
        let host = addr.ip().to_string();
        let paths = ["/a/1.js", "/a/2.js", "/b/3.css"];
        let warm = || async {
            for path in paths {
                get(addr, path).await;
            }
        };
        let result = |path: &'static str| async move { get(addr, path).await.x_cache().to_owned() };
        warm().await;
        purge(&node, &format!(r#"{{"url": "https://{host}/a/1.js"}}"#)).await;
        assert_eq!((result("/a/1.js").await, result("/a/2.js").await), ("MISS".into(), "HIT".into()));
        purge(&node, r#"{"tag": "release-7"}"#).await;
        assert_eq!(
            (result("/a/1.js").await, result("/a/2.js").await, result("/b/3.css").await),
            ("MISS".into(), "MISS".into(), "HIT".into())
        );
        purge(&node, &format!(r#"{{"prefix": "{host}/b/"}}"#)).await;
        assert_eq!((result("/b/3.css").await, result("/a/1.js").await), ("MISS".into(), "HIT".into()));
        let all = purge(&node, r#"{"all": true}"#).await;
        assert!(all["purged"]["memory"].as_u64().unwrap() >= 3, "{all}");
        for path in paths {
            assert_eq!(result(path).await, "MISS", "{path} after purging all");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_is_served_stale_while_the_origin_is_down() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/soft.js", Reply::ok("kept").header("etag", "\"s\""));
        let (node, addr) = node_with(&origin, |c| {
            c.admin.token_file = Some(token_file("soft"));
            c.origin.hold_budget = Duration::from_millis(200);
        })
        .await;
        get(addr, "/soft.js").await;
        purge(&node, &format!(r#"{{"prefix": "{}/", "soft": true}}"#, addr.ip())).await;
        origin.stop().await;
        let response = get(addr, "/soft.js").await;
        assert_eq!(
            (response.status.as_u16(), response.x_cache(), response.bytes().as_ref()),
            (200, "STALE", b"kept".as_ref())
        );
        origin.restart().await;
        let response = get(addr, "/soft.js").await;
        assert_eq!(response.x_cache(), "REVALIDATED", "after a soft purge the origin is asked again");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_nothing_is_done() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, with_admin(token_file("auth"))).await;
        get(addr, "/kept.js").await;
        let admin_addr = node.admin_addr.unwrap();
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            for (method, path) in
                [("POST", "/purge"), ("GET", "/stats"), ("GET", "/metrics"), ("GET", "/nope"), ("POST", "/reload")]
            {
                let (status, _) = admin(admin_addr, method, path, token, r#"{"all": true}"#).await;
                assert_eq!(status, 401, "{method} {path} with {token:?}");
            }
        }
        assert_eq!(get(addr, "/kept.js").await.x_cache(), "HIT", "nothing was purged");
        assert_eq!(admin(admin_addr, "GET", "/live", None, "").await.0, 200);
        assert_eq!(admin(admin_addr, "GET", "/ready", None, "").await.0, 200);
        // Purge is never reachable on the public listener.
        for method in ["PURGE", "BAN"] {
            assert_eq!(send(addr, Protocol::Http1, method, "/kept.js", &[]).await.unwrap().status, 405);
        }
        let (status, body) = admin(admin_addr, "POST", "/purge", Some(TOKEN), r#"{"url": "a", "tag": "b"}"#).await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = admin(admin_addr, "POST", "/purge", Some(TOKEN), "not json").await;
        assert_eq!(status, 400);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_survives_a_restart() {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = std::env::temp_dir().join(format!("holdfast-purge-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let token = token_file("restart");
        let config = |dir: PathBuf, token: PathBuf| {
            move |c: &mut FileConfig| {
                c.cache.dir = Some(dir);
                c.admin.token_file = Some(token);
            }
        };
        let (first, addr) = node_with(&origin, config(dir.clone(), token.clone())).await;
        for path in ["/gone.js", "/stays.js"] {
            get(addr, path).await;
        }
        let disk = first.handler().disk().unwrap().clone();
        holdfast_test::eventually(Duration::from_secs(10), "disk writes", || disk.stats().records_written >= 2).await;
        let report = purge(&first, &format!(r#"{{"url": "http://{}/gone.js"}}"#, addr.ip())).await;
        assert_eq!(report["purged"]["disk"], 1, "{report}");
        first.shutdown().await;
        let (_second, addr) = node_with(&origin, config(dir.clone(), token)).await;
        assert_eq!(get(addr, "/stays.js").await.x_cache(), "HIT");
        assert_eq!(get(addr, "/gone.js").await.x_cache(), "MISS", "the purged object did not come back from disk");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_known_traffic() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, |c| {
            c.admin.token_file = Some(token_file("metrics"));
            c.admin.metrics_without_token = true;
        })
        .await;
        for _ in 0..3 {
            get(addr, "/m.js").await;
        }
        send(addr, Protocol::Http1, "POST", "/m.js", &[]).await.unwrap();
        let stream = tokio::net::TcpStream::connect(node.admin_addr.unwrap()).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let response = sender
            .send_request(
                http::Request::get("/metrics")
                    .header("host", "a")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "metrics open to scrapers by configuration");
        use http_body_util::BodyExt;
        let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
        let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum()
        };
        let miss = [("protocol", "HTTP/1.1"), ("status", "200"), ("cache", "MISS")];
        assert_eq!(value("holdfast_responses_total", &miss), 1.0, "{text}");
        assert_eq!(value("holdfast_responses_total", &[("cache", "HIT")]), 2.0);
        assert_eq!(value("holdfast_responses_total", &[("status", "405"), ("cache", "ERROR")]), 1.0);
        assert_eq!(value("holdfast_origin_requests_total", &[("site", "default")]), 1.0);
        assert_eq!(value("holdfast_cache_objects", &[("tier", "memory")]), 1.0);
        assert_eq!(value("holdfast_origin_up", &[]), 1.0);
        assert!(scrape.samples.iter().any(|s| s.metric == "holdfast_access_log_dropped_total"), "{text}");
        let latency = scrape.samples.iter().find(|s| s.metric == "holdfast_origin_latency_seconds");
        assert!(matches!(latency.map(|s| &s.value), Some(prometheus_parse::Value::Histogram(_))), "{text}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_swaps_origins_keeps_the_cache_and_refuses_bad_files() {
    within(async {
        let (a, b) = (FakeOrigin::start().await, FakeOrigin::start().await);
        let path = std::env::temp_dir().join(format!("holdfast-reload-{}.toml", std::process::id()));
        let write = |origin: &FakeOrigin, extra: &str| {
            let text = format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\nshutdown_delay = \"0s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                 [origin]\nurls = [\"{}\"]\nhealth_check_path = \"\"\n{extra}",
                origin.url()
            );
            std::fs::write(&path, text).unwrap();
        };
        // Keys the running node cannot change are named, not silently ignored.
        let with_workers = |workers: usize| {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replacen("[server]\n", &format!("[server]\nworkers = {workers}\n"), 1)).unwrap();
        };
        write(&a, "");
        let env = holdfast_node::Environment::default();
        let config = holdfast_node::NodeConfig::load(Some(&path), holdfast_node::Overrides::default(), &env).unwrap();
        let node = RunningNode::start(config).await.unwrap();
        node.reloader().set_source(path.clone(), holdfast_node::Overrides::default());
        let addr = node.local_addrs[0];
        assert_eq!(get(addr, "/before.js").await.x_cache(), "MISS");
        write(&b, "");
        let summary = node.reload().unwrap();
        assert!(summary.contains("reloaded"), "{summary}");
        assert_eq!(get(addr, "/after.js").await.status, 200);
        assert_eq!((a.hits("/after.js"), b.hits("/after.js")), (0, 1), "the new origin serves misses");
        assert_eq!(get(addr, "/before.js").await.x_cache(), "HIT", "the cache survived the reload");
        write(&b, "[cache]\nmemory_size = \"8MiB\"\n");
        with_workers(3);
        let summary = node.reload().unwrap();
        assert!(
            summary.contains("not applied until a restart or --upgrade: server.workers, cache.memory_size"),
            "{summary}"
        );
        write(&a, "bogus_key = 1\n");
        let error = format!("{:#}", node.reload().unwrap_err());
        assert!(error.contains("bogus_key") && error.contains(&path.display().to_string()), "{error}");
        get(addr, "/later.js").await;
        assert_eq!((a.hits("/later.js"), b.hits("/later.js")), (0, 1), "a bad file changes nothing");
        let _ = std::fs::remove_file(&path);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_json_line_per_request() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/log.js", Reply::ok(vec![1u8; 1000]));
        let path = std::env::temp_dir().join(format!("holdfast-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log_path = path.display().to_string();
        let (_node, addr) = node_with(&origin, move |c| c.log.access = log_path).await;
        get(addr, "/log.js").await;
        get(addr, "/log.js").await;
        send(addr, Protocol::H2c, "HEAD", "/log.js", &[]).await.unwrap();
        send(addr, Protocol::Http1, "DELETE", "/log.js", &[]).await.unwrap();
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        holdfast_test::eventually(Duration::from_secs(10), "four access lines", || read().lines().count() >= 4).await;
        let lines: Vec<serde_json::Value> = read().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let summary: Vec<(String, String, u64, String, u64)> = lines
            .iter()
            .map(|l| {
                (
                    l["method"].as_str().unwrap().to_owned(),
                    l["cache"].as_str().unwrap().to_owned(),
                    l["status"].as_u64().unwrap(),
                    l["protocol"].as_str().unwrap().to_owned(),
                    l["bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("GET".into(), "MISS".into(), 200, "HTTP/1.1".into(), 1000),
                ("GET".into(), "HIT".into(), 200, "HTTP/1.1".into(), 1000),
                ("HEAD".into(), "HIT".into(), 200, "HTTP/2".into(), 0),
                ("DELETE".into(), "ERROR".into(), 405, "HTTP/1.1".into(), lines[3]["bytes"].as_u64().unwrap()),
            ]
        );
        assert_eq!(lines[0]["origin"], origin.url());
        assert_eq!(lines[0]["site"], "default");
        assert_eq!(lines[0]["path"], "/log.js");
        assert!(lines[0]["ttfb_ms"].as_f64().unwrap() <= lines[0]["total_ms"].as_f64().unwrap());
        for l in &lines {
            assert!(l["complete"] == true && l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        }
        let _ = std::fs::remove_file(&path);
    })
    .await
}

/// `GET /top`: the URL most requested and the ones that made origin
/// fetches, counted exactly at this load (every request is sampled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_names_the_hot_url_and_the_urls_that_went_to_the_origin() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/hot.js", Reply::ok("hot"));
        for i in 0..3 {
            origin.route(&format!("/cold/{i}.css"), Reply::ok("cold"));
        }
        let (node, addr) = node_with(&origin, with_admin(token_file("top"))).await;
        let admin_addr = node.admin_addr.unwrap();
        for _ in 0..20 {
            assert_eq!(get(addr, "/hot.js").await.status, 200);
        }
        for i in 0..3 {
            get(addr, &format!("/cold/{i}.css")).await;
        }
        // Windows are whole seconds: poll until the last one is complete.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let top = loop {
            let (status, top) = admin(admin_addr, "GET", "/top?seconds=10&limit=5", Some(TOKEN), "").await;
            assert_eq!(status, 200, "{top}");
            let counted: u64 = top["requests"].as_array().unwrap().iter().map(|t| t["count"].as_u64().unwrap()).sum();
            if counted == 23 {
                break top;
            }
            assert!(tokio::time::Instant::now() < deadline, "top never counted the 23 requests: {top}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let host = addr.ip().to_string();
        let entry = |list: &str, i: usize| {
            let t = &top[list][i];
            (t["url"].as_str().unwrap().to_owned(), t["count"].as_u64().unwrap(), t["error"].as_u64().unwrap())
        };
        assert_eq!(entry("requests", 0), (format!("{host}/hot.js"), 20, 0), "{top}");
        assert_eq!(top["sample_every"], 1);
        let mut fetched: Vec<_> = (0..4).map(|i| entry("fetches", i)).collect();
        fetched.sort();
        let mut expected: Vec<_> = (0..3).map(|i| (format!("{host}/cold/{i}.css"), 1, 0)).collect();
        expected.push((format!("{host}/hot.js"), 1, 0));
        assert_eq!(fetched, expected, "one fetch each: the hot URL's hits went nowhere");
        assert_eq!(admin(admin_addr, "GET", "/top", None, "").await.0, 401);
        assert_eq!(admin(admin_addr, "GET", "/top?seconds=60", Some(TOKEN), "").await.0, 400);
        assert_eq!(admin(admin_addr, "POST", "/top", Some(TOKEN), "").await.0, 405);
    })
    .await
}

/// After an upgrade's handover the old process still holds the shared
/// admin socket for a moment; a readiness probe it takes asks about the
/// pod, which the new process serves: it must not answer 503 (a flapping
/// probe takes the pod out of its Service mid-upgrade). A plain stop does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_leaves_the_pod_ready_and_a_stop_does_not() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, _) = node_with(&origin, |_| {}).await;
        let readiness = node.readiness().clone();
        node.hand_over().await;
        assert!(readiness.is_ready(), "ready after a handover");

        let (node, _) = node_with(&origin, |_| {}).await;
        let readiness = node.readiness().clone();
        node.shutdown().await;
        assert!(!readiness.is_ready(), "draining after a stop");
    })
    .await
}
