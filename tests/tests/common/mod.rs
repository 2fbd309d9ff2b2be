//! Shared set-up for the end-to-end tests: a node in process on an
//! ephemeral loopback port, in front of a fake origin.

#![allow(dead_code)]

pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
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

pub async fn node(origin: &FakeOrigin) -> (RunningNode, SocketAddr) {
    node_with(origin, |_| {}).await
}

/// Origin URLs as config entries.
pub fn urls(urls: &[String]) -> Vec<OriginEntry> {
    urls.iter().cloned().map(OriginEntry::Url).collect()
}

// ---- the binary as a child process ------------------------------------

/// Builds (if needed) and returns the `holdfast` binary of this workspace
/// (or the one `HOLDFAST_BIN` names, e.g. a release build for load tests).
pub fn holdfast_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HOLDFAST_BIN") {
            // Relative to the workspace root, where the command was given.
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
            return workspace.join(bin);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bin", "holdfast"])
            .current_dir(workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin holdfast failed");
        let exe = std::env::current_exe().expect("test exe");
        // target/<profile>/deps/<test> -> target/<profile>/holdfast
        exe.parent().and_then(Path::parent).expect("target dir").join("holdfast")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct NodeProcess {
    pub child: Child,
}

impl NodeProcess {
    pub fn spawn(args: &[String]) -> NodeProcess {
        let child = Command::new(holdfast_bin())
            .args(args)
            .env("HOLDFAST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn holdfast");
        NodeProcess { child }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(tokio::time::Instant::now() < deadline, "the node did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve_args(listen: SocketAddr, origin: &str, dir: &Path, admin: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        listen.to_string(),
        "--origin".into(),
        origin.into(),
        "--cache-dir".into(),
        dir.display().to_string(),
        "--admin-listen".into(),
        format!("127.0.0.1:{admin}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub async fn wait_until_serving(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "node at {addr} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
