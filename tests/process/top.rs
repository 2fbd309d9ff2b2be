//! `holdfast top` as a person uses it: in a terminal (a pseudo-terminal
//! read through a VT100 emulator), against a node under traffic and a node
//! that is down; quit with `q`, or with Ctrl-C, and the terminal is given
//! back as it was.
//!
//! A test target of the `holdfast` package (see crates/node/Cargo.toml), so
//! Cargo builds the binary first and names it in `CARGO_BIN_EXE_holdfast`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{token_file, within};
use holdfast_test::process::{NodeProcess, free_port, serve_args, temp_dir, wait_until_serving};
use holdfast_test::{FakeOrigin, KeepAlive, Reply};
use nix::pty::{Winsize, openpty};
use nix::sys::termios::{LocalFlags, tcgetattr};

const ROWS: NonZeroU16 = NonZeroU16::new(40).unwrap();
const COLS: NonZeroU16 = NonZeroU16::new(140).unwrap();

/// `holdfast top` in a pseudo-terminal, its screen kept by an emulator.
struct Tui {
    child: Child,
    /// Our copy of the terminal's slave side: its modes are the terminal's.
    slave: Option<OwnedFd>,
    master: std::fs::File,
    screen: Arc<Mutex<vt100::Parser>>,
    /// Everything the program wrote.
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Tui {
    fn start(args: &[String]) -> Tui {
        let winsize = Winsize { ws_row: ROWS.get(), ws_col: COLS.get(), ws_xpixel: 0, ws_ypixel: 0 };
        let pty = openpty(&winsize, None::<&nix::sys::termios::Termios>).expect("openpty");
        let stdio = || Stdio::from(pty.slave.try_clone().expect("dup pty"));
        let child = Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .arg("top")
            .args(args)
            .env("TERM", "xterm")
            .env("HOLDFAST_LOG", "warn")
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .spawn()
            .expect("spawn holdfast top");
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reading = master.try_clone().expect("dup master");
        let (into_screen, into_output) = (Arc::clone(&screen), Arc::clone(&output));
        // Ends when the last slave descriptor closes (EIO).
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = reading.read(&mut buf) {
                into_screen.lock().unwrap().process(&buf[..n]);
                into_output.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tui { child, slave: Some(pty.slave), master, screen, output, reader: Some(reader) }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits (bounded) until the screen shows every one of `texts`.
    async fn wait_for(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.contents();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {texts:?}:\n{screen}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn press(&mut self, keys: &[u8]) {
        self.master.write_all(keys).expect("type into the terminal");
    }

    /// Waits (bounded) for the exit, then checks the terminal is as it was:
    /// line editing and echo back on, main screen, cursor shown. Returns
    /// the exit code.
    async fn exit_restored(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "holdfast top did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let slave = self.slave.take().expect("slave kept until now");
        let modes = tcgetattr(&slave).expect("tcgetattr");
        assert!(modes.local_flags.contains(LocalFlags::ICANON | LocalFlags::ECHO), "still in raw mode");
        drop(slave);
        self.reader.take().expect("reader").join().expect("reader thread");
        let screen = self.screen.lock().unwrap();
        assert!(!screen.screen().alternate_screen(), "left on the alternate screen");
        assert!(!screen.screen().hide_cursor(), "cursor left hidden");
        let output = self.output.lock().unwrap();
        let text = String::from_utf8_lossy(&output);
        let (entered, left) = (text.rfind("\x1b[?1049h"), text.rfind("\x1b[?1049l"));
        assert!(entered.is_some() && left > entered, "the alternate screen was not left at the end");
        assert!(!text.contains("\x1b[?1000h") && !text.contains("\x1b[?1003h"), "mouse capture turned on");
        status.code()
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node under steady traffic (mostly one URL) and a node that is down,
/// both named by a nodes file:
/// the view shows the hit ratio, the hot URL, the origin's breaker and the
/// down node; `q` quits with status 0 and a restored terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_in_a_terminal_shows_the_hit_ratio_and_the_hot_url_and_quits_on_q() {
    within(async {
        let origin = FakeOrigin::start().await;
        origin.route("/assets/hot-4f2a.js", Reply::ok("hot"));
        origin.route("/assets/cold.css", Reply::ok("cold"));
        let dir = temp_dir("top-tui");
        let token = token_file("top-tui");
        let token_arg = token.display().to_string();
        let (admin, addr) = (free_port(), format!("127.0.0.1:{}", free_port()).parse::<SocketAddr>().unwrap());
        let _node = NodeProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_holdfast")),
            &serve_args(addr, &origin.url(), &dir, admin, &["--admin-token-file", &token_arg]),
        );
        wait_until_serving(addr).await;
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut client = KeepAlive::new(addr);
                for i in 0..1_000_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = if i % 5 == 4 { "/assets/cold.css" } else { "/assets/hot-4f2a.js" };
                    let _ = client.get(path).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        // Both nodes from a nodes file, as `holdfast purge` reads it.
        let down = format!("http://127.0.0.1:{}", free_port());
        let nodes_file = dir.with_extension("nodes.toml");
        std::fs::write(&nodes_file, format!("shields = []\nedges = [\"http://127.0.0.1:{admin}\", \"{down}\"]\n"))
            .unwrap();
        let args = [
            "--nodes-file".into(),
            nodes_file.display().to_string(),
            "--token-file".into(),
            token_arg.clone(),
            "--interval".into(),
            "500ms".into(),
        ];
        let mut tui = Tui::start(&args);
        let screen = tui
            .wait_for(&["% last interval", "req/s", "127.0.0.1/assets/hot-4f2a.js", "closed", &format!("{down} down")])
            .await;
        let summary = screen.lines().find(|l| l.contains("hit ratio")).unwrap_or_default().to_owned();
        assert!(summary.contains("1/2 nodes up"), "{summary}");
        assert!(!summary.contains("hit ratio -"), "no hit ratio under traffic: {summary}");
        // The hot URL leads the requests panel with a rate above zero.
        let hot = screen.lines().find(|l| l.contains("hot-4f2a.js")).unwrap_or_default();
        let rate = hot.trim_start_matches(['│', ' ']).split_whitespace().next().and_then(|r| r.parse::<f64>().ok());
        assert!(rate.is_some_and(|r| r > 0.0), "no rate for the hot URL: {hot}");
        tui.press(b"q");
        assert_eq!(tui.exit_restored().await, Some(0));
        stop.store(true, Ordering::Relaxed);
        traffic.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&nodes_file);
        let _ = std::fs::remove_file(&token);
    })
    .await
}

/// Ctrl-C (a key in raw mode) quits as cleanly as `q`, even when the only
/// node is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_quits_cleanly_with_every_node_down() {
    within(async {
        let token = token_file("top-ctrl-c");
        let down = format!("http://127.0.0.1:{}", free_port());
        let args = ["--node".into(), down.clone(), "--token-file".into(), token.display().to_string()];
        let mut tui = Tui::start(&args);
        tui.wait_for(&["0/1 node up", &format!("{down} down: unreachable")]).await;
        tui.press(b"\x03");
        assert_eq!(tui.exit_restored().await, Some(0));
        let _ = std::fs::remove_file(&token);
    })
    .await
}
