//! What the admin dashboard reads: `/stats` with the tiers against their
//! budgets, per-origin latency, the version and the recent purges, behind
//! the token and never cached.

mod common;

use std::net::SocketAddr;

use bytesize::ByteSize;
use common::{TOKEN, admin_request as admin, node_with, token_file, with_admin, within};
use holdfast_test::{FakeOrigin, get};

async fn stats(addr: SocketAddr) -> serde_json::Value {
    let (status, headers, body) = admin(addr, "GET", "/stats", Some(TOKEN), "").await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store", "live data is never cached");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_budgets_latency_version_and_the_last_purges_newest_first() {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = std::env::temp_dir().join(format!("holdfast-dashboard-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let token = token_file("dashboard-stats");
        let cache_dir = dir.clone();
        let (node, addr) = node_with(&origin, move |c| {
            c.admin.token_file = Some(token);
            c.cache.memory_size = ByteSize::mib(32);
            c.cache.fill_buffer_size = ByteSize::mib(8);
            c.cache.max_concurrent_fills = 77;
            c.cache.dir = Some(cache_dir);
            c.cache.disk_size = ByteSize::mib(64);
        })
        .await;
        let admin_addr = node.admin_addr.unwrap();
        for (token, path) in [(None, "/stats"), (Some("wrong-token-0123456789"), "/stats")] {
            let (status, headers, _) = admin(admin_addr, "GET", path, token, "").await;
            assert_eq!((status, headers["www-authenticate"].to_str().unwrap()), (401, "Bearer"), "{path} {token:?}");
        }
        get(addr, "/a.js").await;
        get(addr, "/a.js").await;

        let host = addr.ip().to_string();
        let purges = [
            format!(r#"{{"url": "http://{host}/a.js", "soft": true}}"#),
            r#"{"tag": "release-7"}"#.to_owned(),
            r#"{"all": true}"#.to_owned(),
        ];
        for body in &purges {
            let (status, _, answer) = admin(admin_addr, "POST", "/purge", Some(TOKEN), body).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        }
        let s = stats(admin_addr).await;
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(s["config_path"], serde_json::Value::Null, "started without a file");
        assert_eq!(s["responses"]["HIT"], 1);
        assert_eq!(s["memory"]["limit_bytes"], 32 * 1024 * 1024);
        assert_eq!(s["fill_buffer"]["limit_bytes"], 8 * 1024 * 1024);
        assert_eq!(s["fills_limit"], 77);
        assert_eq!(s["disk"]["limit_bytes"], 64 * 1024 * 1024);
        assert!(s["disk"]["limit_files"].as_u64().unwrap() > 0, "{s}");
        let group = &s["origins"][0];
        assert_eq!((group["relayed_errors"].as_u64(), group["panic_routed"].as_u64()), (Some(0), Some(0)), "{group}");
        let member = &group["members"][0];
        assert_eq!(
            (member["origin"].as_str(), member["breaker"].as_str()),
            (Some(origin.url().as_str()), Some("closed"))
        );
        assert_eq!(member["latency_count"], 1, "one origin response was timed: {member}");
        assert!(member["latency_us_total"].as_u64().unwrap() > 0, "{member}");
        let recent: Vec<(&str, Option<&str>, bool)> = s["recent_purges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["kind"].as_str().unwrap(), p["target"].as_str(), p["soft"] == true))
            .collect();
        let url = format!("http://{host}/a.js");
        assert_eq!(
            recent,
            [("all", None, false), ("tag", Some("release-7"), false), ("url", Some(url.as_str()), true)]
        );
        assert_eq!(s["recent_purges"][2]["purged"]["memory"], 1, "the soft purge marked the one object");
        assert!(
            s["recent_purges"][0]["at_unix_ms"].as_u64().unwrap()
                >= s["recent_purges"][2]["at_unix_ms"].as_u64().unwrap()
        );

        for n in 0..25 {
            let body = format!(r#"{{"tag": "t{n}"}}"#);
            assert_eq!(admin(admin_addr, "POST", "/purge", Some(TOKEN), &body).await.0, 200);
        }
        let s = stats(admin_addr).await;
        let recent = s["recent_purges"].as_array().unwrap();
        assert_eq!(recent.len(), 20, "holdfast_control::RECENT_PURGES");
        assert_eq!((recent[0]["target"].as_str(), recent[19]["target"].as_str()), (Some("t24"), Some("t5")));
        node.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_load_without_the_token_with_their_types_and_policy() {
    within(async {
        let origin = FakeOrigin::start().await;
        let (node, addr) = node_with(&origin, with_admin(token_file("dashboard-page"))).await;
        let admin_addr = node.admin_addr.unwrap();
        get(addr, "/seen.js").await;
        let (status, headers, body) = admin(admin_addr, "GET", "/", None, "").await;
        assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "text/html; charset=utf-8"));
        let page = String::from_utf8(body).unwrap();
        assert!(page.contains("id=\"login-form\""), "the page asks for the token");
        assert!(!page.contains(&origin.url()) && !page.contains("seen.js"), "the page itself holds no data");
        let mut assets = vec![("/".to_owned(), headers, page.clone())];
        for (path, content_type) in [
            ("/dashboard/app.js", "text/javascript; charset=utf-8"),
            ("/dashboard/app.css", "text/css; charset=utf-8"),
            ("/dashboard/icon.svg", "image/svg+xml"),
        ] {
            assert!(page.contains(&format!("\"{path}\"")), "the page loads {path}");
            let (status, headers, body) = admin(admin_addr, "GET", path, None, "").await;
            assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, content_type), "{path}");
            assets.push((path.to_owned(), headers, String::from_utf8(body).unwrap()));
        }
        for (path, headers, text) in &assets {
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.starts_with("default-src 'self';") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            // Nothing comes from the network: the only URL is the SVG namespace.
            let urls = text.matches("http://").count() + text.matches("https://").count();
            assert_eq!(urls, text.matches("http://www.w3.org/2000/svg").count(), "{path} links outside the node");
        }
        // No inline script: every script element has a src on this listener.
        assert_eq!(page.matches("<script").count(), page.matches("<script src=\"/dashboard/").count());
        let script = &assets[1].2;
        assert!(script.contains("fetch(\"/stats\"") && script.contains("Authorization: \"Bearer \" + token"));
        assert!(script.contains("sessionStorage") && !script.contains("localStorage"), "the token stays in the tab");

        // The data stays behind the token, whatever the page does.
        for path in ["/stats", "/metrics"] {
            assert_eq!(admin(admin_addr, "GET", path, None, "").await.0, 401, "{path}");
        }
        let (status, headers, body) = admin(admin_addr, "HEAD", "/", None, "").await;
        assert_eq!((status, body.len(), headers.contains_key("content-security-policy")), (200, 0, true));
        let (status, headers, _) = admin(admin_addr, "POST", "/", Some(TOKEN), "").await;
        assert_eq!((status, headers["allow"].to_str().unwrap()), (405, "GET, HEAD"));
        let (status, _, _) = admin(admin_addr, "GET", "/dashboard/nope.js", None, "").await;
        assert_eq!(status, 401, "other paths stay behind the token");
    })
    .await
}
