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
//!   per socket (public TCP, QUIC UDP, admin), then the new node sends
//!   `READY\n` once it serves. QUIC connections still open on the old node
//!   get GOAWAY and close once their requests are done.
//!
//! The socket lives in a directory only this user can enter, and both ends
//! check the peer's uid (SO_PEERCRED): another local user can neither take
//! the listening sockets nor squat the socket's name.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use crate::config::Environment;

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
/// first listening address, so `--upgrade` with the same arguments finds
/// it, in a directory only this user can enter ([`private_dir`]).
pub fn default_path(env: &Environment, first_listen: SocketAddr) -> PathBuf {
    let name = format!("holdfast-{}.sock", first_listen.to_string().replace([':', '[', ']'], "_"));
    private_dir(env).join(name)
}

/// `$XDG_RUNTIME_DIR/holdfast`, or `$TMPDIR/holdfast-<uid>`: created 0700.
/// Another local user must not be able to take the listening sockets or
/// block startup by squatting the socket's name.
fn private_dir(env: &Environment) -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    match &env.runtime_dir {
        Some(dir) => dir.join("holdfast"),
        None => env.temp_dir.join(format!("holdfast-{uid}")),
    }
}

/// Makes sure the socket's directory exists, belongs to this user and is
/// closed to everyone else; refuses to use it otherwise.
fn ensure_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let Some(dir) = path.parent() else { return Ok(()) };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the control socket directory {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let metadata = std::fs::metadata(dir)?;
    let uid = nix::unistd::geteuid().as_raw();
    if metadata.uid() != uid || metadata.mode() & 0o077 != 0 {
        bail!(
            "the control socket directory {} is not private (owner uid {}, mode {:o}; expected uid {uid}, mode 700): \
             remove it, or set server.control_socket to a path in a directory only this user can enter",
            dir.display(),
            metadata.uid(),
            metadata.mode() & 0o7777
        );
    }
    Ok(())
}

/// Whether the other end of a control connection runs as this user (or root).
fn trusted_peer(stream: &UnixStream) -> anyhow::Result<()> {
    let credentials = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    let ours = nix::unistd::geteuid().as_raw();
    if credentials.uid() != ours && credentials.uid() != 0 {
        bail!("control connection from uid {} refused (this node runs as uid {ours})", credentials.uid());
    }
    Ok(())
}

/// Whether a process has exited (gone, or a zombie waiting for its parent).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses
        // and may itself contain ") ".
        Ok(stat) => stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Asks a running node for its pid.
pub fn running_pid(path: &Path) -> Option<u32> {
    let mut stream = UnixStream::connect(path).ok()?;
    trusted_peer(&stream).ok()?;
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
    ensure_private(&path)?;
    if path.exists() {
        // A stale socket from a killed node (a live one would have kept the
        // port, and bind would have failed before we got here).
        let _ = std::fs::remove_file(&path);
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind control socket {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    std::thread::Builder::new().name("holdfast-control".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(error) = trusted_peer(&stream) {
                tracing::warn!(error = %format!("{error:#}"), "control connection refused");
                continue;
            }
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
    trusted_peer(&stream).context("--upgrade: the control socket belongs to another user")?;
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
    #[allow(unsafe_code)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_process_is_gone_once_it_exited_even_unreaped() {
        assert!(!process_gone(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not waited for yet: a zombie once it exits.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !process_gone(pid) {
            assert!(std::time::Instant::now() < deadline, "an exited child still counts as running");
            std::thread::yield_now();
        }
        child.wait().unwrap();
        assert!(process_gone(pid));
    }

    #[test]
    fn a_directory_others_can_enter_is_refused() {
        let dir = std::env::temp_dir().join(format!("holdfast-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let socket = dir.join("node.sock");
        let error = ensure_private(&socket).unwrap_err().to_string();
        assert!(error.contains("not private"), "{error}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(ensure_private(&socket).is_ok());
        // A directory that does not exist yet is created private.
        let fresh = dir.join("fresh").join("node.sock");
        ensure_private(&fresh).unwrap();
        let mode = std::fs::metadata(dir.join("fresh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_socket_lives_in_a_private_directory() {
        let path = default_path(&Environment::default(), "127.0.0.1:8080".parse().unwrap());
        let dir = path.parent().unwrap().to_string_lossy().into_owned();
        assert!(dir.ends_with("/holdfast") || dir.contains("holdfast-"), "{dir}");
    }
}
