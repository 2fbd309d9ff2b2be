//! Shared set-up for the end-to-end tests: a node in process on an
//! ephemeral loopback port, in front of a fake origin.

#![allow(dead_code)]

pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use holdfast_node::config::{FileConfig, OriginEntry};
use holdfast_node::{Environment, NodeConfig, Overrides, RunningNode};
use holdfast_test::FakeOrigin;

/// Every end-to-end test finishes within this bound.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, future).await.expect("test exceeded its time bound")
}

/// Starts a node in front of `origin`, after `tweak` edits its config.
pub async fn node_with(origin: &FakeOrigin, tweak: impl FnOnce(&mut FileConfig)) -> (RunningNode, SocketAddr) {
    let mut file = FileConfig::default();
    file.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    file.admin.listen = "127.0.0.1:0".parse().unwrap();
    file.server.shutdown_delay = Duration::ZERO;
    file.origin.urls = urls(&[origin.url()]);
    // Keep test timing short: fast checks, short ejections.
    file.origin.health_check_interval = Duration::from_millis(200);
    file.origin.health_check_path = holdfast_test::HEALTH_PATH.to_owned();
    tweak(&mut file);
    let config =
        NodeConfig::from_file(file, Path::new("."), "test config", Overrides::default(), &Environment::default())
            .expect("valid config");
    let node = RunningNode::start(config).await.expect("node starts");
    let addr = node.local_addrs[0];
    (node, addr)
}

/// The admin token tests authenticate with.
pub const TOKEN: &str = "test-token-0123456789";

/// A token file holding [`TOKEN`], named after the test, in Cargo's
/// scratch directory for integration tests (under `target/`, not `/tmp`).
pub fn token_file(name: &str) -> std::path::PathBuf {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("holdfast-token-{name}-{}", std::process::id()));
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

/// A config edit that turns on the admin API's authentication.
pub fn with_admin(token: std::path::PathBuf) -> impl FnOnce(&mut FileConfig) {
    move |c: &mut FileConfig| c.admin.token_file = Some(token)
}

pub async fn node(origin: &FakeOrigin) -> (RunningNode, SocketAddr) {
    node_with(origin, |_| {}).await
}

/// Origin URLs as config entries.
pub fn urls(urls: &[String]) -> Vec<OriginEntry> {
    urls.iter().cloned().map(OriginEntry::Url).collect()
}

/// One admin request: status, headers and body.
pub async fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder().method(method).uri(path).header("host", "admin");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body.to_owned()))).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    use http_body_util::BodyExt;
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status.as_u16(), parts.headers, bytes)
}
