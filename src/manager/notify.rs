//! The sd_notify protocol: one datagram socket (`RUNTIME/notify`) whose path `notify`
//! services get as `$NOTIFY_SOCKET`. Each datagram holds newline-separated `KEY=VALUE` lines;
//! the sender is identified by the kernel (`SCM_CREDENTIALS`, with `SO_PASSCRED` on), never by
//! what it writes. What is understood: `READY=1`, `STATUS=…`, `MAINPID=…`, `STOPPING=1`.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};

/// One message from a service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The sending process, from the kernel.
    pub pid: u32,
    pub ready: bool,
    pub stopping: bool,
    pub status: Option<String>,
    pub main_pid: Option<u32>,
}

/// Parses a datagram's text (unknown keys are ignored, as systemd does).
pub fn parse(pid: u32, text: &str) -> Message {
    let mut m = Message {
        pid,
        ..Message::default()
    };
    for line in text.lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => m.ready = true,
            Some(("STOPPING", "1")) => m.stopping = true,
            Some(("STATUS", s)) => m.status = Some(s.to_string()),
            Some(("MAINPID", p)) => m.main_pid = p.trim().parse().ok().filter(|p| *p > 0),
            _ => {}
        }
    }
    m
}

/// The bound socket.
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds `path` (a stale socket there is replaced), non-blocking, with credentials passing.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            crate::files::create_dir_all(dir, crate::files::DIR_MODE)?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let sock = UnixDatagram::bind(path)?;
        sock.set_nonblocking(true)?;
        setsockopt(&sock, sockopt::PassCred, &true).map_err(std::io::Error::from)?;
        // Services running as other users must be able to send.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        Ok(NotifySocket {
            sock,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A duplicate of the fd, for registration with the event loop.
    pub fn fd(&self) -> std::io::Result<OwnedFd> {
        self.sock.as_fd().try_clone_to_owned()
    }

    /// Every datagram waiting, each with its sender's pid; datagrams without credentials
    /// are dropped.
    pub fn read_all(&self) -> Vec<Message> {
        self.read_up_to(usize::MAX).0
    }

    /// As [`NotifySocket::read_all`], at most `max` datagrams; `true` with them when more may
    /// be waiting.
    pub fn read_up_to(&self, max: usize) -> (Vec<Message>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read = 0;
        loop {
            if read == max {
                return (out, true);
            }
            read += 1;
            let mut cmsg = nix::cmsg_space!(UnixCredentials);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("reading {}: {e}", self.path.display());
                    break;
                }
            };
            let pid = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|c| match c {
                    ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid() as u32),
                    _ => None,
                })
            });
            let len = msg.bytes;
            if let Some(pid) = pid {
                out.push(parse(pid, &String::from_utf8_lossy(&buf[..len])));
            }
        }
        (out, false)
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The cgroup of a process relative to the cgroup2 mount (`/system.slice/x.service`).
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_keys_it_knows() {
        let m = parse(7, "READY=1\nSTATUS=warming up\nMAINPID=42\nX_FOO=1\n");
        assert_eq!(
            m,
            Message {
                pid: 7,
                ready: true,
                stopping: false,
                status: Some("warming up".into()),
                main_pid: Some(42),
            }
        );
        assert!(!parse(1, "READY=0").ready);
        assert!(parse(1, "STOPPING=1").stopping);
        assert_eq!(parse(1, "MAINPID=abc").main_pid, None);
    }

    #[test]
    fn credentials_come_from_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(&dir.path().join("notify")).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1\nSTATUS=up", sock.path()).unwrap();
        let msgs = sock.read_all();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].pid, std::process::id());
        assert!(msgs[0].ready);
        assert_eq!(msgs[0].status.as_deref(), Some("up"));
        assert!(sock.read_all().is_empty());
    }
}
