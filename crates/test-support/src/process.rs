//! The `holdfast` binary as a child process: spawned with arguments,
//! signalled, waited for within a bound, killed when dropped.
//!
//! The binary's path comes from the test: Cargo names it in
//! `CARGO_BIN_EXE_holdfast` for the tests of the package that builds it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port that was free a moment ago (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct NodeProcess {
    pub child: Child,
}

impl NodeProcess {
    /// Starts `bin` with `args`, logging warnings to the test's stderr.
    pub fn spawn(bin: &Path, args: &[String]) -> NodeProcess {
        NodeProcess::spawn_with_env(bin, args, &[])
    }

    /// As [`NodeProcess::spawn`], with `env` added to the environment
    /// (and no `OTEL_*` inherited from the test's).
    pub fn spawn_with_env(bin: &Path, args: &[String], env: &[(&str, &str)]) -> NodeProcess {
        let mut command = Command::new(bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(args)
            .envs(env.iter().copied())
            .env("HOLDFAST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
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

/// `holdfast serve` arguments for a node on `listen` in front of `origin`.
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

/// Waits (bounded) until something accepts connections on `addr`.
pub async fn wait_until_serving(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "node at {addr} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh, empty directory under the system's temporary directory,
/// named after the test and this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("holdfast-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
