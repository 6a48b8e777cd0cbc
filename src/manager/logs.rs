//! Service output with `stdout`/`stderr = "log"`: the service writes into a pipe, and a task of
//! the daemon appends what arrives to `LOG_DIR/UNIT.log`, rotating it to `UNIT.log.1` when it
//! passes [`MAX_LOG_BYTES`] (so a chatty service can't fill the disk), and forwards each line to
//! journald when its socket exists.
//!
//! One relay per service start, shared by stdout and stderr (both ends of one pipe); it ends
//! when every writer has closed the pipe, i.e. when the unit's processes are gone.
//!
//! Cheap per running service (docs/PERFORMANCE.md findings 4 and 8): a relay waits for its pipe
//! to be readable and only then borrows the thread's one read buffer, so no buffer is held per
//! service; the log directory is created when a log file can't be opened for want of it, not
//! on every start.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// A log file is rotated when it grows past this.
pub const MAX_LOG_BYTES: u64 = 8 << 20;
/// journald's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The path of a unit's log file.
pub fn log_path(dir: &Path, unit: &str) -> PathBuf {
    dir.join(format!("{unit}.log"))
}

/// Creates the pipe for a service's output and starts the task that drains it. Returns the
/// write end, for the child's stdout and/or stderr.
pub fn start_relay(dir: &Path, unit: &str) -> std::io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
    let path = log_path(dir, unit);
    let unit = unit.to_string();
    tokio::spawn(relay(reader, path, unit));
    Ok(write)
}

async fn relay(reader: tokio::net::unix::pipe::Receiver, path: PathBuf, unit: String) {
    let mut log = match LogFile::open(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(unit = %unit, "log file: {e}");
            return;
        }
    };
    let journal = Journal::connect();
    let mut partial: Vec<u8> = Vec::new();
    loop {
        if let Err(e) = reader.readable().await {
            tracing::warn!(unit = %unit, "reading service output: {e}");
            break;
        }
        // The buffer is borrowed only between readiness and the next await.
        let read = READ_BUF.with_borrow_mut(|buf| match reader.try_read(buf) {
            Ok(0) => Ok(false),
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default();
                if let Err(e) = log.write(data) {
                    tracing::warn!(unit = %unit, "writing {}: {e}", log.path.display());
                }
                if let Some(j) = &journal {
                    j.send_lines(&unit, &mut partial, data);
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        });
        match read {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(unit = %unit, "reading service output: {e}");
                break;
            }
        }
    }
    if let (Some(j), false) = (&journal, partial.is_empty()) {
        j.send(&unit, &partial);
    }
}

thread_local! {
    /// The read buffer every relay of this thread shares (16 KiB, once per thread).
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 16 << 10].into_boxed_slice());
}

/// An append-only log file that rotates itself.
struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
}

impl LogFile {
    /// Opens (creates) the log file; creates its directory when that is missing.
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let open = || OpenOptions::new().create(true).append(true).open(&path);
        let file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open()?
            }
            other => other?,
        };
        let size = file.metadata()?.len();
        Ok(LogFile { path, file, size })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.size + data.len() as u64 > MAX_LOG_BYTES && self.size > 0 {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
            *self = LogFile::open(self.path.clone())?;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }
}

/// journald's native protocol, one datagram per line.
struct Journal(UnixDatagram);

impl Journal {
    fn connect() -> Option<Journal> {
        if !Path::new(JOURNAL_SOCKET).exists() {
            return None;
        }
        let sock = UnixDatagram::unbound().ok()?;
        sock.connect(JOURNAL_SOCKET).ok()?;
        sock.set_nonblocking(true).ok()?;
        Some(Journal(sock))
    }

    /// Sends every complete line of `partial` + `data`, keeping the rest in `partial` (sent
    /// anyway past 4 KiB).
    fn send_lines(&self, unit: &str, partial: &mut Vec<u8>, data: &[u8]) {
        partial.extend_from_slice(data);
        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            self.send(unit, line.get(..pos).unwrap_or_default());
        }
        if partial.len() > 4096 {
            self.send(unit, partial);
            partial.clear();
        }
    }

    fn send(&self, unit: &str, line: &[u8]) {
        // MESSAGE may hold anything but a newline here (lines are split above).
        let mut msg = Vec::with_capacity(line.len() + 96);
        msg.extend_from_slice(b"SYSLOG_IDENTIFIER=");
        msg.extend_from_slice(unit.as_bytes());
        msg.extend_from_slice(b"\nCORRAL_UNIT=");
        msg.extend_from_slice(unit.as_bytes());
        msg.extend_from_slice(b"\nPRIORITY=6\nMESSAGE=");
        msg.extend_from_slice(line);
        msg.push(b'\n');
        // A full journal drops lines rather than blocking the daemon.
        let _ = self.0.send(&msg);
    }
}

/// The last `n` lines of a unit's log (for `GetUnitLog` and `status`).
pub fn tail(dir: &Path, unit: &str, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log_path(dir, unit)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.service.log");
        let mut log = LogFile::open(path.clone()).unwrap();
        let chunk = vec![b'a'; (MAX_LOG_BYTES / 2) as usize];
        log.write(&chunk).unwrap();
        log.write(&chunk).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MAX_LOG_BYTES);
        log.write(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(
            std::fs::metadata(dir.path().join("x.service.log.1"))
                .unwrap()
                .len(),
            MAX_LOG_BYTES
        );
    }

    #[tokio::test]
    async fn relay_appends_what_the_service_writes() {
        let dir = tempfile::tempdir().unwrap();
        let w = start_relay(dir.path(), "r.service").unwrap();
        let mut f = File::from(w);
        f.write_all(b"one\ntwo\n").unwrap();
        drop(f);
        wait_for_log(dir.path(), "r.service", &["one", "two"]).await;
    }

    async fn wait_for_log(dir: &Path, unit: &str, want: &[&str]) {
        for _ in 0..200 {
            if tail(dir, unit, 100) == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("log of {unit}: {:?}", tail(dir, unit, 100));
    }

    #[tokio::test]
    async fn relays_sharing_the_buffer_keep_their_output_apart_and_make_the_directory() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("made/on/first/start");
        let a = start_relay(&dir, "a.service").unwrap();
        let b = start_relay(&dir, "b.service").unwrap();
        let (mut a, mut b) = (File::from(a), File::from(b));
        // More than the shared buffer holds, interleaved between the two.
        let long = "x".repeat(20_000);
        for i in 0..3 {
            writeln!(a, "a{i} {long}").unwrap();
            writeln!(b, "b{i}").unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop((a, b));
        let a_lines: Vec<String> = (0..3).map(|i| format!("a{i} {long}")).collect();
        let a_want: Vec<&str> = a_lines.iter().map(String::as_str).collect();
        wait_for_log(&dir, "a.service", &a_want).await;
        wait_for_log(&dir, "b.service", &["b0", "b1", "b2"]).await;
    }
}
