//! Operator commands that talk to running nodes: purge, stats, warm
//! (and the requests `holdfast top` makes).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use holdfast_control::{ErrorAnswer, PurgeAnswer, PurgeRequest, PurgeTarget, Stats};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// How long one node may take to answer an admin or warm request.
const NODE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(3)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Reads the admin token: the file if given, else `from_env`
/// (HOLDFAST_ADMIN_TOKEN, read once by `main`).
pub fn token(file: Option<&Path>, from_env: Option<&str>) -> anyhow::Result<String> {
    let token = match file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read token file {}", path.display()))?
        }
        None => from_env.context("give --token-file or set HOLDFAST_ADMIN_TOKEN")?.to_owned(),
    };
    Ok(token.trim().to_owned())
}

/// Nodes to purge, by tier, as written in a nodes file:
/// `shields = ["http://10.0.0.1:9901"]`, `edges = [...]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodesFile {
    pub shields: Vec<String>,
    pub edges: Vec<String>,
}

/// A node's reply: its status, and the answer it was asked for (2xx) or
/// its error message.
pub(crate) type Reply<T> = (StatusCode, Result<T, String>);

/// One node's reply to a purge.
struct Answer {
    tier: &'static str,
    node: String,
    outcome: Result<Reply<PurgeAnswer>, String>,
    took: Duration,
}

/// Calls an admin endpoint; `Err` when the node could not be asked.
pub(crate) async fn call<T: DeserializeOwned>(
    client: &HttpClient,
    method: Method,
    url: &str,
    token: &str,
    body: Option<&PurgeRequest>,
) -> Result<Reply<T>, String> {
    let mut request =
        Request::builder().method(method).uri(url).header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(value) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(serde_json::to_vec(value).map_err(|e| e.to_string())?))
        }
        None => Full::new(Bytes::new()),
    };
    let request = request.body(body).map_err(|e| format!("bad node URL {url}: {e}"))?;
    let response = tokio::time::timeout(NODE_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let answer = if status.is_success() {
        serde_json::from_slice(&bytes).map_err(|e| format!("unexpected answer: {e}"))
    } else {
        Err(serde_json::from_slice::<ErrorAnswer>(&bytes).map(|e| e.error).unwrap_or_default())
    };
    Ok((status, answer))
}

pub(crate) fn admin_url(node: &str, path: &str) -> String {
    format!("{}{path}", node.trim_end_matches('/'))
}

/// Purges on every node, shields first (so edges cannot refill from a
/// shield that still has the old object), then edges, each tier in
/// parallel. Prints a table; returns false if any node failed.
pub async fn purge(
    target: PurgeTarget,
    soft: bool,
    shields: Vec<String>,
    edges: Vec<String>,
    token: &str,
) -> anyhow::Result<bool> {
    if shields.is_empty() && edges.is_empty() {
        bail!("no node to purge: give --node URL (edges), --shield URL, or --nodes-file FILE");
    }
    let body = PurgeRequest::new(target, soft);
    let client = client();
    let started = Instant::now();
    let mut answers = Vec::new();
    for (tier, nodes) in [("shield", &shields), ("edge", &edges)] {
        let calls = nodes.iter().map(|node| {
            let (client, body) = (client.clone(), &body);
            async move {
                let started = Instant::now();
                let outcome = call(&client, Method::POST, &admin_url(node, "/purge"), token, Some(body)).await;
                Answer { tier, node: node.clone(), outcome, took: started.elapsed() }
            }
        });
        answers.extend(futures_util::future::join_all(calls).await);
    }
    println!("{:<7} {:<32} {:<7} {:>8} {:>8} {:>7}  ERROR", "TIER", "NODE", "STATUS", "MEMORY", "DISK", "MS");
    let mut ok = true;
    for answer in &answers {
        let (status, memory, disk, error) = match &answer.outcome {
            Ok((status, Ok(answer))) => {
                let purged = answer.purged;
                (status.as_u16().to_string(), purged.memory.to_string(), purged.disk.to_string(), String::new())
            }
            Ok((status, Err(error))) => {
                ok = false;
                (status.as_u16().to_string(), "-".into(), "-".into(), error.clone())
            }
            Err(error) => {
                ok = false;
                ("FAILED".into(), "-".into(), "-".into(), error.clone())
            }
        };
        println!(
            "{:<7} {:<32} {:<7} {:>8} {:>8} {:>7}  {}",
            answer.tier,
            answer.node,
            status,
            memory,
            disk,
            answer.took.as_millis(),
            error
        );
    }
    println!(
        "{} node(s) in {} ms{}",
        answers.len(),
        started.elapsed().as_millis(),
        if ok { "" } else { "; SOME FAILED" }
    );
    Ok(ok)
}

/// Prints a node's stats.
pub async fn stats(node: &str, token: &str, json: bool) -> anyhow::Result<bool> {
    let url = admin_url(node, "/stats");
    if json {
        // As the node wrote it, fields this CLI does not know included.
        let value: serde_json::Value = stats_answer(node, call(&client(), Method::GET, &url, token, None).await)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(true);
    }
    let stats: Stats = stats_answer(node, call(&client(), Method::GET, &url, token, None).await)?;
    println!("node        {node} (up {} s, ready {})", stats.uptime_s, stats.ready);
    println!("hit ratio   {:.3}", stats.hit_ratio);
    println!("responses   {}", serde_json::to_string(&stats.responses)?);
    println!("memory      {} objects, {} bytes", stats.memory.objects, stats.memory.bytes);
    match &stats.disk {
        None => println!("disk        (memory only)"),
        Some(disk) => println!(
            "disk        {} bodies, {} bytes, {} corrupt, full {}",
            disk.blobs, disk.objects_bytes, disk.corrupt, disk.full
        ),
    }
    for site in &stats.origins {
        for member in &site.members {
            println!(
                "origin      {} {} {}{}",
                site.site,
                member.origin,
                member.breaker,
                if member.fallback { " (fallback)" } else { "" }
            );
        }
    }
    Ok(true)
}

/// The stats answer, or an error naming the node.
fn stats_answer<T>(node: &str, reply: Result<Reply<T>, String>) -> anyhow::Result<T> {
    match reply {
        Ok((_, Ok(answer))) => Ok(answer),
        Ok((status, Err(error))) => bail!("{node}: {status}: {error}"),
        Err(error) => bail!("{node}: {error}"),
    }
}

/// The asset paths of a manifest: a Vite `manifest.json` (`file`, `css`,
/// `assets` of every chunk), any other JSON (webpack's assets manifest:
/// every string value that looks like a path), or a text file with one URL
/// or path per line.
pub fn manifest_paths(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
    let mut paths = Vec::new();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => collect_json_paths(&value, &mut paths),
        Err(_) => paths
            .extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned)),
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    if paths.is_empty() {
        bail!("{}: no asset path found", path.display());
    }
    Ok(paths)
}

fn collect_json_paths(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if looks_like_asset(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json_paths(v, out)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                // Vite: "file", "css", "assets"; skip "src" (source paths) and imports (chunk names).
                if matches!(key.as_str(), "src" | "imports" | "dynamicImports" | "name") {
                    continue;
                }
                collect_json_paths(v, out);
            }
        }
        _ => {}
    }
}

fn looks_like_asset(s: &str) -> bool {
    let name = s.rsplit('/').next().unwrap_or(s);
    name.contains('.') && !s.contains(' ') && !s.starts_with("data:")
}

/// Requests every path through a node so it is stored, at most
/// `concurrency` at a time, with a progress bar. Returns false if any failed.
pub async fn warm(node: &str, paths: Vec<String>, concurrency: usize) -> anyhow::Result<bool> {
    let base = node.trim_end_matches('/').to_owned();
    let client = client();
    let bar = indicatif::ProgressBar::new(paths.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let tasks = paths.into_iter().map(|path| {
        let (client, semaphore, bar, base) = (client.clone(), Arc::clone(&semaphore), bar.clone(), base.clone());
        async move {
            let _permit = semaphore.acquire().await;
            let url = if path.starts_with("http://") || path.starts_with("https://") {
                path.clone()
            } else {
                format!("{base}/{}", path.trim_start_matches('/'))
            };
            let outcome = fetch(&client, &url).await;
            bar.inc(1);
            (url, outcome)
        }
    });
    let results = futures_util::future::join_all(tasks).await;
    bar.finish_and_clear();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut failed = Vec::new();
    for (url, outcome) in results {
        match outcome {
            Ok(x_cache) => *counts.entry(x_cache).or_default() += 1,
            Err(error) => failed.push((url, error)),
        }
    }
    for (url, error) in &failed {
        eprintln!("failed: {url}: {error}");
    }
    println!(
        "warmed {} object(s) in {} ms: {:?}, {} failed",
        counts.values().sum::<usize>(),
        started.elapsed().as_millis(),
        counts,
        failed.len()
    );
    Ok(failed.is_empty())
}

async fn fetch(client: &HttpClient, url: &str) -> Result<String, String> {
    let request = Request::get(url).body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(NODE_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let x_cache = response.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    response.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    if !status.is_success() {
        return Err(format!("{status} ({x_cache})"));
    }
    Ok(x_cache)
}

/// Reads a nodes file.
pub fn nodes_file(path: &PathBuf) -> anyhow::Result<NodesFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read nodes file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("nodes file {}: {}", path.display(), e.to_string().trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vite_and_webpack_manifests_and_lists() {
        let dir = std::env::temp_dir().join(format!("holdfast-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vite = dir.join("manifest.json");
        std::fs::write(
            &vite,
            r#"{"index.html": {"file": "assets/index-4f2a.js", "src": "index.html", "isEntry": true,
                "css": ["assets/index-9c1b.css"], "assets": ["assets/logo-77aa.svg"], "imports": ["_vendor.js"]},
               "_vendor.js": {"file": "assets/vendor-1b2c.js"}}"#,
        )
        .unwrap();
        let mut paths = manifest_paths(&vite).unwrap();
        paths.sort();
        assert_eq!(
            paths,
            ["assets/index-4f2a.js", "assets/index-9c1b.css", "assets/logo-77aa.svg", "assets/vendor-1b2c.js"]
        );
        let webpack = dir.join("asset-manifest.json");
        std::fs::write(
            &webpack,
            r#"{"files": {"main.js": "/static/js/main.1a.js"}, "entrypoints": ["static/js/main.1a.js"]}"#,
        )
        .unwrap();
        let mut paths = manifest_paths(&webpack).unwrap();
        paths.sort();
        assert_eq!(paths, ["/static/js/main.1a.js", "static/js/main.1a.js"]);
        let list = dir.join("list.txt");
        std::fs::write(&list, "# assets\n/a.js\n\nhttp://cdn/b.css\n/a.js\n").unwrap();
        assert_eq!(manifest_paths(&list).unwrap(), ["/a.js", "http://cdn/b.css"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
