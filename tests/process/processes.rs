//! The `holdfast` binary as a child process: kill -9 during disk writes,
//! graceful drain on SIGTERM, zero-downtime upgrades under load, the purge
//! CLI against a fleet with a node down, the allocator's purge thread, and
//! disk writes landed before a stop and seen by the next process.
//!
//! A test target of the `holdfast` package (see crates/node/Cargo.toml), so
//! Cargo builds the binary first and names it in `CARGO_BIN_EXE_holdfast`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{node_with, token_file, with_admin, within};
use holdfast_test::process::{NodeProcess, free_port, serve_args, temp_dir, wait_until_serving};
use holdfast_test::{FakeOrigin, Gate, KeepAlive, Outcome, Reply, eventually, get};

/// The binary under test: this build's, or the one `HOLDFAST_BIN` names.
fn holdfast_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("HOLDFAST_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_holdfast")), PathBuf::from)
    })
}

/// Bodies of assorted sizes whose bytes depend on their index.
fn body(i: usize) -> Vec<u8> {
    let len = 1 + (i * 7919) % 200_000;
    (0..len).map(|j| (j.wrapping_mul(31) ^ i) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_never_serves_a_corrupt_byte() {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = temp_dir("kill9");
        const N: usize = 300;
        for i in 0..N {
            origin.route(&format!("/k/{i}"), Reply::ok(body(i)));
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut node = NodeProcess::spawn(holdfast_bin(), &serve_args(addr, &origin.url(), &dir, free_port(), &[]));
        wait_until_serving(addr).await;
        // Four clients fill the cache; the node is killed in the middle.
        let clients: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(async move {
                    let mut client = KeepAlive::new(addr);
                    for i in (w..N).step_by(4) {
                        if let Outcome::Failed(_) = client.get(&format!("/k/{i}")).await {
                            return;
                        }
                    }
                })
            })
            .collect();
        eventually(Duration::from_secs(20), "some objects fetched", || origin.total_hits() >= N / 3).await;
        node.signal("-KILL");
        node.exit_code().await;
        for client in clients {
            let _ = client.await;
        }
        origin.stop().await;

        // Objects the killed node never stored now fail fast (origin down).
        let config = dir.with_extension("toml");
        std::fs::write(&config, "[origin]\nurls = [\"http://127.0.0.1:1\"]\nhold_budget = \"20ms\"\n").unwrap();
        let config_arg = config.display().to_string();
        let mut restarted = NodeProcess::spawn(
            holdfast_bin(),
            &serve_args(addr, &origin.url(), &dir, free_port(), &["--config", &config_arg]),
        );
        wait_until_serving(addr).await;
        let mut client = KeepAlive::new(addr);
        let mut served = 0;
        for i in 0..N {
            let response = holdfast_test::send(addr, holdfast_test::Protocol::Http1, "GET", &format!("/k/{i}"), &[])
                .await
                .unwrap();
            if response.status == 200 {
                assert_eq!(response.bytes().as_ref(), &body(i)[..], "object {i} served with wrong bytes");
                served += 1;
            } else {
                assert_eq!(response.status, 503, "object {i}: not stored, origin down");
            }
        }
        let _ = client.get("/").await;
        eprintln!("after kill -9: {served} of {N} objects served from disk, all verified");
        assert!(served > 0);
        restarted.signal("-TERM");
        assert_eq!(restarted.exit_code().await, Some(0));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&config);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_downloads_and_exits_0() {
    within(async {
        let origin = FakeOrigin::start().await;
        let gate = Gate::new();
        let big = vec![7u8; 2 << 20];
        origin.route("/big.bin", Reply::ok(big.clone()).chunked(64 << 10, Duration::ZERO).hold_body(&gate));
        let dir = temp_dir("drain");
        let admin = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut node = NodeProcess::spawn(holdfast_bin(), &serve_args(addr, &origin.url(), &dir, admin, &[]));
        wait_until_serving(addr).await;
        let download = tokio::spawn(async move { get(addr, "/big.bin").await });
        eventually(Duration::from_secs(10), "download started", || origin.hits("/big.bin") == 1).await;
        node.signal("-TERM");
        // Readiness turns false first, while the listener still accepts.
        let ready = loop {
            let r = holdfast_test::send(
                format!("127.0.0.1:{admin}").parse().unwrap(),
                holdfast_test::Protocol::Http1,
                "GET",
                "/ready",
                &[],
            )
            .await
            .unwrap();
            if r.status != 200 {
                break r.status;
            }
        };
        assert_eq!(ready, 503);
        gate.open();
        let response = download.await.unwrap();
        assert_eq!(response.bytes().len(), big.len(), "the in-flight download finished whole");
        assert_eq!(node.exit_code().await, Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// Requests on new connections, each, until `stop`: (answered, failures).
fn load(
    addr: SocketAddr,
    paths: &'static [&'static str],
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(usize, Vec<Outcome>)>> {
    (0..4)
        .map(|w| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // New connections each time, to cross the handover.
                    let mut client = KeepAlive::new(addr);
                    let path = if n % 2 == 0 {
                        paths[n / 2 % paths.len()].to_owned()
                    } else {
                        format!("{}?u={w}-{n}", paths[0])
                    };
                    match client.get(&path).await {
                        Outcome::Answered { status: 200, complete: true, .. } => ok += 1,
                        other => failed.push(other),
                    }
                    n += 1;
                }
                (ok, failed)
            })
        })
        .collect()
}

async fn tally(workers: Vec<tokio::task::JoinHandle<(usize, Vec<Outcome>)>>) -> (usize, Vec<Outcome>) {
    let (mut ok, mut failed) = (0, Vec::new());
    for worker in workers {
        let (o, f) = worker.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_loses_no_request() {
    upgrade_under_load("upgrade", &[]).await;
}

/// One worker runs the current-thread scheduler (what a pod with a CPU
/// limit of 1 gets): the handover, the drain and the serving all work on
/// one thread too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_thread_node_upgrades_under_load_and_loses_no_request() {
    upgrade_under_load("upgrade-one-thread", &["--workers", "1"]).await;
}

/// Serves `/hot.js` and distinct misses on new connections while a second
/// process started with `--upgrade` takes over; both run with `extra`.
async fn upgrade_under_load(name: &str, extra: &[&str]) {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = temp_dir(name);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // The same arguments for both processes, admin listener included.
        let args = serve_args(addr, &origin.url(), &dir, free_port(), extra);
        let mut old = NodeProcess::spawn(holdfast_bin(), &args);
        wait_until_serving(addr).await;

        // A second node without --upgrade is refused at once, naming the first.
        let refused = Command::new(holdfast_bin()).args(&args).output().expect("run holdfast");
        assert!(!refused.status.success());
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains(&format!("pid {}", old.child.id())) && message.contains("--upgrade"), "{message}");

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = load(addr, &["/hot.js"], &stop);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut upgrade = args.clone();
        upgrade.push("--upgrade".into());
        let mut new = NodeProcess::spawn(holdfast_bin(), &upgrade);
        assert_eq!(old.exit_code().await, Some(0), "the old node drains and exits by itself");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = tally(workers).await;
        eprintln!("upgrade under load: {ok} requests ok, {} failed", failed.len());
        assert!(failed.is_empty(), "{failed:?}");
        assert!(ok > 100);
        new.signal("-TERM");
        assert_eq!(new.exit_code().await, Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// Regression (issue 13): the README's procedure with the default config
/// (admin listener on) failed: the admin socket was not handed over, and
/// the new process exited with "Address already in use".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_upgrade_works_with_the_default_config() {
    within(async {
        // This target belongs to crates/node: the workspace is two levels up.
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap();
        let (listen, admin) = (free_port(), free_port());
        // config/holdfast.toml as shipped, on free ports (tests may not take 8080).
        let config = std::fs::read_to_string(workspace.join("config/holdfast.toml"))
            .unwrap()
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{listen}"))
            .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
            .replace("dir:demo-site", &format!("dir:{}", workspace.join("config/demo-site").display()));
        let dir = temp_dir("readme-upgrade");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("holdfast.toml");
        std::fs::write(&path, config).unwrap();
        let args: Vec<String> = vec!["serve".into(), "--config".into(), path.display().to_string()];
        let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
        let mut old = NodeProcess::spawn(holdfast_bin(), &args);
        wait_until_serving(addr).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = load(addr, &["/assets/app.js", "/assets/style.css", "/index.html"], &stop);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut upgrade = args.clone();
        upgrade.insert(1, "--upgrade".into());
        let started = std::time::Instant::now();
        let mut new = NodeProcess::spawn(holdfast_bin(), &upgrade);
        assert_eq!(old.exit_code().await, Some(0), "the old node drains and exits by itself");
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = tally(workers).await;
        eprintln!(
            "README upgrade under load: {ok} requests ok, {} failed, old process gone after {took:?}",
            failed.len()
        );
        assert!(failed.is_empty(), "{failed:?}");
        // The admin listener moved too: the new node answers its probes.
        let ready = holdfast_test::get(format!("127.0.0.1:{admin}").parse().unwrap(), "/ready").await;
        assert_eq!(ready.status.as_u16(), 200);
        new.signal("-TERM");
        assert_eq!(new.exit_code().await, Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_cli_names_a_node_that_is_down_and_fails() {
    within(async {
        let origin = FakeOrigin::start().await;
        let token = token_file("cli");
        let (node, addr) = node_with(&origin, with_admin(token.clone())).await;
        get(addr, "/cli.js").await;
        let down = format!(
            "http://127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        );
        let up = format!("http://{}", node.admin_addr.unwrap());
        let mut command = Command::new(holdfast_bin());
        command
            .args(["purge", "--url"])
            .arg(format!("http://{}/cli.js", addr.ip()))
            .args(["--shield", &up, "--node", &down, "--token-file"])
            .arg(&token);
        let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{stdout}");
        assert!(stdout.contains(&down) && stdout.contains("FAILED"), "{stdout}");
        assert!(stdout.lines().any(|l| l.starts_with("shield") && l.contains(&up) && l.contains("200")), "{stdout}");
        assert_eq!(get(addr, "/cli.js").await.x_cache(), "MISS", "the node that was up purged");
    })
    .await
}

/// Regression: the signal handlers were installed after the node began to
/// serve, so a SIGHUP (reload) or SIGTERM sent as soon as it answered met
/// the default action and killed it: no drain, no exit code. On a busy
/// machine the window failed the test below 2 times in 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_as_soon_as_the_node_answers_are_handled() {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = temp_dir("early-signals");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut node = NodeProcess::spawn(holdfast_bin(), &serve_args(addr, &origin.url(), &dir, free_port(), &[]));
        wait_until_serving(addr).await;
        node.signal("-HUP");
        assert_eq!(get(addr, "/after-hup").await.status, 200, "a reload signal does not stop the node");
        node.signal("-TERM");
        assert_eq!(node.exit_code().await, Some(0), "SIGTERM drains and exits 0");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// A serving node gives freed memory back while idle: jemalloc's purge
/// thread runs (without it, RSS stays at the peak of a burst until the next
/// allocations; README › Benchmarks has the measurement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_node_returns_freed_memory_in_the_background() {
    within(async {
        let origin = FakeOrigin::start().await;
        let dir = temp_dir("allocator");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut node = NodeProcess::spawn(holdfast_bin(), &serve_args(addr, &origin.url(), &dir, free_port(), &[]));
        wait_until_serving(addr).await;
        let tasks = PathBuf::from(format!("/proc/{}/task", node.child.id()));
        let names: Vec<String> = std::fs::read_dir(&tasks)
            .expect("the node's threads")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect();
        assert!(names.iter().any(|name| name == "jemalloc_bg_thd"), "no purge thread among {names:?}");
        node.signal("-TERM");
        assert_eq!(node.exit_code().await, Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

/// What a node fetched just before SIGTERM is on disk for the next process:
/// the stop waits for the queued disk writes (fsync on, so they are slow
/// enough to still be queued when the signal comes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lands_the_queued_disk_writes_before_exit() {
    within(async {
        let origin = FakeOrigin::start().await;
        const N: usize = 48;
        for i in 0..N {
            origin.route(&format!("/w/{i}"), Reply::ok(vec![i as u8; 64 << 10]));
        }
        let dir = temp_dir("settle");
        let config = dir.with_extension("toml");
        std::fs::write(&config, "[server]\nshutdown_delay = \"0s\"\n[cache]\nfsync = \"always\"\n").unwrap();
        let config_arg = config.display().to_string();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut node = NodeProcess::spawn(
            holdfast_bin(),
            &serve_args(addr, &origin.url(), &dir, free_port(), &["--config", &config_arg]),
        );
        wait_until_serving(addr).await;
        let clients: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(async move {
                    let mut client = KeepAlive::new(addr);
                    for i in (w..N).step_by(4) {
                        let outcome = client.get(&format!("/w/{i}")).await;
                        assert!(
                            matches!(outcome, Outcome::Answered { status: 200, complete: true, .. }),
                            "/w/{i}: {outcome:?}"
                        );
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        node.signal("-TERM");
        assert_eq!(node.exit_code().await, Some(0));
        let records = std::fs::read_dir(dir.join("v2/records"))
            .unwrap()
            .flatten()
            .map(|sub| std::fs::read_dir(sub.path()).map_or(0, |files| files.count()))
            .sum::<usize>();
        assert_eq!(records, N, "every fetched object was on disk when the node exited");
        origin.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&config);
    })
    .await
}

/// An upgrade's old process stores what it was fetching while it drains;
/// the new process serves it from disk, not from the origin again (its
/// disk index is built only once the old process is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_old_process_stores_while_draining_is_a_disk_hit_for_the_new_one() {
    within(async {
        let origin = FakeOrigin::start().await;
        let gate = Gate::new();
        let late = Reply::ok(vec![5u8; 64 << 10]).chunked(16 << 10, Duration::ZERO).hold_body(&gate);
        origin.route("/late.bin", late);
        origin.route("/probe", Reply::ok(b"probe".to_vec()));
        let dir = temp_dir("upgrade-late");
        let admin = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let token = token_file("upgrade-late");
        let token_arg = token.display().to_string();
        let args = serve_args(addr, &origin.url(), &dir, admin, &["--admin-token-file", &token_arg]);
        let mut old = NodeProcess::spawn(holdfast_bin(), &args);
        wait_until_serving(addr).await;
        let download = tokio::spawn(async move { get(addr, "/late.bin").await });
        eventually(Duration::from_secs(10), "the old process is fetching", || origin.hits("/late.bin") == 1).await;

        // A kept-alive connection to the old process: it is closed when
        // the old process has handed its sockets over and drains.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /probe HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();

        let mut upgrade = args.clone();
        upgrade.push("--upgrade".into());
        let mut new = NodeProcess::spawn(holdfast_bin(), &upgrade);
        let mut answered = Vec::new();
        idle.read_to_end(&mut answered).await.unwrap();
        assert!(answered.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answered));
        // Now only the new process answers (and, before the fix, had
        // already built its disk index without the fill still running).
        let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
        assert_eq!(holdfast_test::get(admin_addr, "/ready").await.status.as_u16(), 200);
        // Before the fix the new process had its index within milliseconds
        // of starting; now it waits for the old one. Up to a second for it.
        let scanned = || async {
            let auth = format!("Bearer {}", common::TOKEN);
            let stats = holdfast_test::send(
                admin_addr,
                holdfast_test::Protocol::Http1,
                "GET",
                "/stats",
                &[("authorization", auth.as_str())],
            )
            .await
            .unwrap();
            String::from_utf8_lossy(stats.bytes()).contains("\"scanned\":true")
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while !scanned().await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gate.open();
        assert_eq!(download.await.unwrap().bytes().len(), 64 << 10);
        assert_eq!(old.exit_code().await, Some(0), "the old node drains and exits by itself");

        let response = holdfast_test::get(addr, "/late.bin").await;
        assert_eq!(response.status.as_u16(), 200);
        assert_eq!(response.x_cache(), "HIT");
        assert_eq!(origin.hits("/late.bin"), 1, "served from the disk, not fetched again");
        new.signal("-TERM");
        assert_eq!(new.exit_code().await, Some(0));
        origin.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&token);
    })
    .await
}
