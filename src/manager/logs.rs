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
//!
//! The log file is opened (created) and journald's socket looked up with the service's first
//! output, not when it starts: a start does no file system work for its log, and a service that
//! never writes never creates one. Creating a file is the costly part (an inode allocation:
//! 0.3–1 ms of system time on an ext4 with many recently deleted inodes — most of corrald's CPU
//! in a burst of 1000 starts); a service that writes pays it with its first line, as before it
//! paid it at start. What readers see is the same: `tail` of a missing log is empty, as of an
//! empty one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::bounds::{MAX_LOG_LINES, MAX_LOG_TAIL_BYTES};

/// A log file is rotated when it grows past this.
pub const MAX_LOG_BYTES: u64 = 8 << 20;
/// journald's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The path of a unit's log file.
pub fn log_path(dir: &Path, unit: &str) -> PathBuf {
    dir.join(format!("{unit}.log"))
}

/// The read ends of the running relays by unit: what a re-executing daemon hands on to the
/// next one (see [`super::reexec`]), so its services' output keeps flowing through the exec.
/// Shared by the manager and every relay task, each of which removes its entry as it ends.
#[derive(Debug, Clone, Default)]
pub struct Relays(Arc<Mutex<HashMap<String, RawFd>>>);

impl Relays {
    /// Every running relay's unit and read end.
    pub fn snapshot(&self) -> Vec<(String, RawFd)> {
        self.lock().iter().map(|(u, fd)| (u.clone(), *fd)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RawFd>> {
        // A relay task that panicked holding the lock left a map that is still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Creates the pipe for a service's output and starts the task that drains it. Returns the
/// write end, for the child's stdout and/or stderr.
pub fn start_relay(dir: &Path, unit: &str, relays: &Relays) -> std::io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    resume_relay(dir, unit, read, relays)?;
    Ok(write)
}

/// Starts draining an existing pipe's read end into the unit's log (a relay handed on by the
/// daemon that re-executed into this one).
pub fn resume_relay(dir: &Path, unit: &str, read: OwnedFd, relays: &Relays) -> std::io::Result<()> {
    let raw = read.as_raw_fd();
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
    relays.lock().insert(unit.to_string(), raw);
    let path = log_path(dir, unit);
    let unit = unit.to_string();
    let relays = relays.clone();
    tokio::spawn(async move {
        relay(reader, path, &unit).await;
        // A restart may have registered a newer relay of the unit meanwhile: only ours goes.
        let mut map = relays.lock();
        if map.get(&unit) == Some(&raw) {
            map.remove(&unit);
        }
    });
    Ok(())
}

async fn relay(reader: tokio::net::unix::pipe::Receiver, path: PathBuf, unit: &str) {
    // Opened with the first output (see the module docs).
    let mut out: Option<(LogFile, Option<Journal>)> = None;
    let mut partial: Vec<u8> = Vec::new();
    // Writes that failed in a row (a full disk): said once when it starts and once when it
    // ends, not once per read of a service that keeps writing.
    let mut failed_writes: u64 = 0;
    loop {
        if let Err(e) = reader.readable().await {
            tracing::warn!(unit = %unit, "reading service output: {e}");
            break;
        }
        // The buffer is borrowed only between readiness and the next await.
        let read = READ_BUF.with_borrow_mut(|buf| match reader.try_read(buf) {
            Ok(0) => Drained::End,
            Ok(n) => {
                let (log, journal) = match &mut out {
                    Some(o) => o,
                    None => match LogFile::open(path.clone()) {
                        Ok(l) => out.insert((l, Journal::connect())),
                        Err(e) => return Drained::NoLog(e),
                    },
                };
                let data = buf.get(..n).unwrap_or_default();
                match log.write(data) {
                    Err(e) => {
                        if failed_writes == 0 {
                            tracing::warn!(
                                unit = %unit,
                                "writing {}: {e} (output is lost until a write succeeds)",
                                log.path.display()
                            );
                        }
                        failed_writes += 1;
                    }
                    Ok(()) if failed_writes > 0 => {
                        tracing::info!(
                            unit = %unit,
                            "writing {} works again, after {failed_writes} failed writes",
                            log.path.display()
                        );
                        failed_writes = 0;
                    }
                    Ok(()) => {}
                }
                if let Some(j) = journal {
                    j.send_lines(unit, &mut partial, data);
                }
                Drained::More
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Drained::More,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Drained::More,
            Err(e) => Drained::Failed(e),
        });
        match read {
            Drained::More => {}
            Drained::End => break,
            Drained::NoLog(e) => {
                tracing::warn!(unit = %unit, "log file: {e}");
                return;
            }
            Drained::Failed(e) => {
                tracing::warn!(unit = %unit, "reading service output: {e}");
                break;
            }
        }
    }
    if let (Some((_, Some(j))), false) = (&out, partial.is_empty()) {
        j.send(unit, &partial);
    }
}

/// What one read of a relay's pipe came to.
enum Drained {
    /// Output relayed, or nothing to read yet.
    More,
    /// Every writer has closed the pipe.
    End,
    /// The log file can't be opened: the relay ends, as it did when that was found at start.
    NoLog(std::io::Error),
    Failed(std::io::Error),
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
    /// Opens (creates, 0640 whatever the umask) the log file; creates its directory (0755)
    /// when that is missing.
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = crate::files::open_append(&path, crate::files::LOG_MODE)?;
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

/// The last `n` lines of a unit's log (for `GetUnitLog` and `status`), read from the end of
/// the file: a few KiB for a few lines however long the log is. Bounded and linear in what it
/// returns: at most [`MAX_LOG_LINES`] lines from the last [`MAX_LOG_TAIL_BYTES`] of the file,
/// each byte read and scanned once. A line cut by that byte bound is shown from `…`. Bytes
/// that are not UTF-8 are shown as U+FFFD rather than hiding the log. The file is opened
/// without following a symlink and without waiting (it is never a FIFO of ours, but the
/// daemon must not hang on one).
pub fn tail(dir: &Path, unit: &str, n: usize) -> Vec<String> {
    use std::os::unix::fs::OpenOptionsExt;
    const CHUNK: u64 = 16 << 10;
    let n = n.min(MAX_LOG_LINES as usize);
    if n == 0 {
        return Vec::new();
    }
    let Ok(mut file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(log_path(dir, unit))
    else {
        return Vec::new();
    };
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    if !meta.is_file() {
        return Vec::new();
    }
    let len = meta.len();
    let floor = len.saturating_sub(MAX_LOG_TAIL_BYTES);
    // Chunks from the end backwards, until they hold n full lines (n + 1 newlines, counting
    // the one that ends the last line), the byte bound or the whole file.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    let mut start = len;
    while start > floor && newlines <= n {
        let from = start.saturating_sub(CHUNK).max(floor);
        let mut chunk = vec![0u8; (start - from) as usize];
        if file.seek(SeekFrom::Start(from)).is_err() || file.read_exact(&mut chunk).is_err() {
            return Vec::new();
        }
        newlines += chunk.iter().filter(|b| **b == b'\n').count();
        chunks.push(chunk);
        start = from;
    }
    let buf: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    let cut = start > 0 && !lines.is_empty();
    let skip = lines.len().saturating_sub(n);
    if skip > 0 {
        // Enough whole lines: the one cut by where reading began is among those left out.
        lines.drain(..skip);
        return lines.iter().map(|l| l.to_string()).collect();
    }
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    if cut && let Some(first) = out.first_mut() {
        // Fewer lines than asked in the bytes allowed: the first one is the end of a longer
        // line (a line cut by where reading began, when the whole file was read, is a line).
        first.insert(0, '…');
    }
    out
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

    #[test]
    fn tail_reads_the_last_lines_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        assert!(tail(dir.path(), "none.service", 5).is_empty());
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str("partial");
        std::fs::write(log_path(dir.path(), "t.service"), &text).unwrap();
        assert_eq!(
            tail(dir.path(), "t.service", 3),
            ["line 19998", "line 19999", "partial"]
        );
        // More lines than the bound: the last MAX_LOG_LINES.
        let all = tail(dir.path(), "t.service", 100_000);
        assert_eq!(all.len(), MAX_LOG_LINES as usize);
        assert_eq!(all[0], format!("line {}", 20_000 - MAX_LOG_LINES + 1));
        let all = tail(dir.path(), "t.service", 20_001);
        assert!(tail(dir.path(), "t.service", 0).is_empty());
        let _ = all;
        let few: String = (0..3).map(|i| format!("line {i}\n")).collect();
        std::fs::write(log_path(dir.path(), "f.service"), &few).unwrap();
        assert_eq!(
            tail(dir.path(), "f.service", 100),
            ["line 0", "line 1", "line 2"]
        );
        // Not UTF-8: shown, not hidden.
        std::fs::write(log_path(dir.path(), "b.service"), b"ok\n\xff\xfe bad\n").unwrap();
        assert_eq!(
            tail(dir.path(), "b.service", 5),
            ["ok", "\u{fffd}\u{fffd} bad"]
        );
    }

    /// A log of one line longer than the byte bound: its end is shown, cut and marked, and
    /// no more than the bound is read.
    #[test]
    fn tail_reads_at_most_its_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = "x".repeat(3 * MAX_LOG_TAIL_BYTES as usize);
        text.push_str("end\nlast\n");
        std::fs::write(log_path(dir.path(), "long.service"), &text).unwrap();
        let got = tail(dir.path(), "long.service", 5);
        assert_eq!(got.len(), 2);
        assert!(
            got[0].starts_with('…') && got[0].ends_with("xend"),
            "{}",
            &got[0][..10]
        );
        assert!(got[0].len() <= MAX_LOG_TAIL_BYTES as usize + '…'.len_utf8());
        assert_eq!(got[1], "last");
        // Many short lines beyond the byte bound: only whole lines from inside it.
        let lines: String = (0..300_000).map(|i| format!("{i:07}\n")).collect();
        std::fs::write(log_path(dir.path(), "many.service"), &lines).unwrap();
        let got = tail(dir.path(), "many.service", MAX_LOG_LINES as usize);
        assert_eq!(got.len(), MAX_LOG_LINES as usize);
        assert_eq!(got.last().map(String::as_str), Some("0299999"));
        // Not a regular file (a FIFO): nothing, at once.
        let fifo = log_path(dir.path(), "fifo.service");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(tail(dir.path(), "fifo.service", 5).is_empty());
    }

    #[tokio::test]
    async fn relay_appends_what_the_service_writes() {
        let dir = tempfile::tempdir().unwrap();
        let relays = Relays::default();
        let w = start_relay(dir.path(), "r.service", &relays).unwrap();
        assert_eq!(relays.snapshot().len(), 1);
        let mut f = File::from(w);
        f.write_all(b"one\ntwo\n").unwrap();
        drop(f);
        wait_for_log(dir.path(), "r.service", &["one", "two"]).await;
        // The relay ended with its writers and left the registry.
        for _ in 0..200 {
            if relays.snapshot().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(relays.snapshot().is_empty(), "{:?}", relays.snapshot());
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
    async fn a_service_that_writes_nothing_makes_no_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let relays = Relays::default();
        let silent = start_relay(dir.path(), "quiet.service", &relays).unwrap();
        let w = start_relay(dir.path(), "talks.service", &relays).unwrap();
        drop(silent);
        // The silent relay has ended (its writer is gone) without creating its file.
        for _ in 0..200 {
            if relays.snapshot().len() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(relays.snapshot().len(), 1, "{:?}", relays.snapshot());
        assert!(!log_path(dir.path(), "quiet.service").exists());
        assert!(!log_path(dir.path(), "talks.service").exists());
        let mut f = File::from(w);
        f.write_all(b"first\n").unwrap();
        wait_for_log(dir.path(), "talks.service", &["first"]).await;
        assert!(tail(dir.path(), "quiet.service", 10).is_empty());
    }

    #[tokio::test]
    async fn relays_sharing_the_buffer_keep_their_output_apart_and_make_the_directory() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("made/on/first/start");
        let relays = Relays::default();
        let a = start_relay(&dir, "a.service", &relays).unwrap();
        let b = start_relay(&dir, "b.service", &relays).unwrap();
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
