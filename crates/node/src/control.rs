//! The control socket: zero-downtime restarts and upgrades on one machine.
//!
//! A running node listens on a Unix socket. `holdfast serve --upgrade`
//! connects to it and asks for the listening sockets; the old node sends
//! them (SCM_RIGHTS, as Pingora and Envoy do), the new node starts
//! accepting on them and says READY, and the old node then stops accepting
//! and drains. The sockets are never closed, so connections queued in their
//! backlogs are accepted by one process or the other: none is refused.
//!
//! Protocol (one line each way, then the descriptors):
//! - `PID\n` -> `<pid>\n`: who is running (for error messages).
//! - `UPGRADE\n` -> `<pid> tcp/<addr> udp/<addr>...\n` with one descriptor
//!   per socket, then the new node sends `READY\n` once it serves. QUIC
//!   (UDP) sockets are handed over too; QUIC connections still open on the
//!   old node then break, and their clients reconnect.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The most listeners one node hands over.
const MAX_FDS: usize = 64;

/// A listening socket as the control socket knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Tcp,
    Udp,
}

impl SocketKind {
    fn prefix(self) -> &'static str {
        match self {
            SocketKind::Tcp => "tcp/",
            SocketKind::Udp => "udp/",
        }
    }
}

/// A socket the running node serves on: its kind, address and descriptor.
pub type SharedSocket = (SocketKind, SocketAddr, RawFd);

/// Where a node's control socket lives unless configured: derived from its
/// first listening address, so `--upgrade` with the same arguments finds it.
pub fn default_path(first_listen: SocketAddr) -> PathBuf {
    let name = format!("holdfast-{}.sock", first_listen.to_string().replace([':', '[', ']'], "_"));
    std::env::temp_dir().join(name)
}

/// Asks a running node for its pid.
pub fn running_pid(path: &Path) -> Option<u32> {
    let mut stream = UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"PID\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.trim().parse().ok()
}

/// The old node's side: answers PID and UPGRADE requests on a thread of its
/// own. `on_handed_over` runs once a new node has said READY.
pub fn serve(
    path: PathBuf,
    listeners: Vec<SharedSocket>,
    on_handed_over: impl Fn() + Send + 'static,
) -> anyhow::Result<()> {
    if path.exists() {
        // A stale socket from a killed node (a live one would have kept the
        // port, and bind would have failed before we got here).
        let _ = std::fs::remove_file(&path);
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind control socket {}", path.display()))?;
    std::thread::Builder::new().name("holdfast-control".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            match handle(stream, &listeners) {
                Ok(true) => {
                    tracing::info!("listeners handed over to the new node; draining");
                    on_handed_over();
                    return;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(error = %format!("{error:#}"), "control request failed"),
            }
        }
    })?;
    Ok(())
}

fn handle(stream: UnixStream, listeners: &[SharedSocket]) -> anyhow::Result<bool> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut writer = stream;
    match line.trim() {
        "PID" => {
            writeln!(writer, "{}", std::process::id())?;
            Ok(false)
        }
        "UPGRADE" => {
            let mut text = std::process::id().to_string();
            for (kind, addr, _) in listeners {
                text.push(' ');
                text.push_str(kind.prefix());
                text.push_str(&addr.to_string());
            }
            text.push('\n');
            let fds: Vec<RawFd> = listeners.iter().map(|(_, _, fd)| *fd).collect();
            sendmsg::<()>(
                writer.as_raw_fd(),
                &[IoSlice::new(text.as_bytes())],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )?;
            let mut ready = String::new();
            reader.read_line(&mut ready)?;
            if ready.trim() != "READY" {
                bail!("the new node did not confirm ({:?}); keeping the listeners", ready.trim());
            }
            Ok(true)
        }
        other => bail!("unknown control request {other:?}"),
    }
}

/// The new node's side of an upgrade, holding the stream until READY.
pub struct Takeover {
    stream: UnixStream,
    pub old_pid: u32,
    /// The sockets received, not yet claimed by a listener of the new node.
    pub sockets: Vec<(SocketKind, SocketAddr, OwnedFd)>,
}

/// Connects to the running node and receives its listening sockets.
pub fn take_over(path: &Path) -> anyhow::Result<Takeover> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!("--upgrade: no running holdfast node answers on the control socket {}", path.display())
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"UPGRADE\n")?;
    let mut buf = vec![0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let message = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fds = Vec::new();
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received);
            }
        }
        (message.bytes, fds)
    };
    // SAFETY: SCM_RIGHTS installed these descriptors in this process just
    // now and nothing else refers to them: each is owned exactly once here.
    let owned: Vec<OwnedFd> = fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    let mut words = text.split_whitespace();
    let old_pid: u32 = words.next().and_then(|p| p.parse().ok()).context("malformed upgrade answer")?;
    let mut entries = Vec::new();
    for word in words {
        let (kind, addr) = match (word.strip_prefix("tcp/"), word.strip_prefix("udp/")) {
            (Some(addr), _) => (SocketKind::Tcp, addr),
            (_, Some(addr)) => (SocketKind::Udp, addr),
            _ => bail!("malformed upgrade answer: {word:?}"),
        };
        entries.push((kind, addr.parse::<SocketAddr>().context("malformed upgrade answer")?));
    }
    if entries.len() != owned.len() {
        bail!("the running node sent {} sockets for {} addresses", owned.len(), entries.len());
    }
    let sockets = entries.into_iter().zip(owned).map(|((kind, addr), fd)| (kind, addr, fd)).collect();
    Ok(Takeover { stream, old_pid, sockets })
}

impl Takeover {
    /// Claims the received socket of this kind and address, if any.
    pub fn claim(&mut self, kind: SocketKind, addr: SocketAddr) -> Option<OwnedFd> {
        let index = self.sockets.iter().position(|(k, a, _)| *k == kind && *a == addr)?;
        Some(self.sockets.remove(index).2)
    }

    /// Tells the old node to stop accepting and drain.
    pub fn confirm(mut self) -> anyhow::Result<()> {
        self.stream.write_all(b"READY\n")?;
        Ok(())
    }
}
