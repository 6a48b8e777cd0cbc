//! Where corrald's own lines go (DESIGN §7): to journald, in its native protocol (priority,
//! target, code location), when systemd made corrald's stderr the journal (`JOURNAL_STREAM` names
//! stderr's device and inode); to stderr otherwise, without colours when stderr is no terminal.
//!
//! The journal is faked: corrald runs in a mount namespace of its own with a tmpfs on `/run`, and
//! this test's datagram socket bind-mounted at `/run/systemd/journal/socket`. Needs root (the
//! namespace and the cgroup); skipped with the reason printed otherwise.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use daemon::{TestRoot, corrald_command, os_result, wait_for, with_private_run};

/// corrald on `root`, with the fake journal at `socket`, its stderr to `stderr`, and
/// `JOURNAL_STREAM` as given.
fn corrald(root: &Path, dir: &Path, socket: &Path, stderr: File, journal_stream: &str) -> Child {
    let source = CString::new(socket.as_os_str().as_bytes()).expect("no NUL in a temp path");
    let mut cmd = corrald_command(root, dir);
    cmd.arg("--no-bus")
        .env("JOURNAL_STREAM", journal_stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    with_private_run(&mut cmd, move || {
        // SAFETY: open, close and mount(2) on strings made before the fork.
        unsafe {
            os_result(libc::mkdir(c"/run/systemd/journal".as_ptr(), 0o755))?;
            let fd = libc::open(
                c"/run/systemd/journal/socket".as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            os_result(libc::mount(
                source.as_ptr(),
                c"/run/systemd/journal/socket".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))
        }
    });
    cmd.spawn().expect("corrald starts")
}

/// Datagrams to the fake journal until one holds `needle`, for up to `wait`.
fn journal_entry(journal: &UnixDatagram, needle: &str, wait: Duration) -> Option<Vec<u8>> {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    while start.elapsed() < wait {
        if let Ok(n) = journal.recv(&mut buf) {
            let entry = &buf[..n];
            if entry.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Some(entry.to_vec());
            }
        }
    }
    None
}

/// The fields of one entry of journald's native protocol: `NAME=value\n`, or `NAME\n`, a
/// little-endian 64-bit length, the value and `\n`.
fn fields(mut entry: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while let Some(end) = entry.iter().position(|&b| b == b'=' || b == b'\n') {
        let name = String::from_utf8_lossy(&entry[..end]).into_owned();
        let value;
        if entry[end] == b'=' {
            let rest = &entry[end + 1..];
            let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            value = &rest[..len];
            entry = rest.get(len + 1..).unwrap_or_default();
        } else {
            let rest = &entry[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().expect("8 length bytes")) as usize;
            value = &rest[8..8 + len];
            entry = rest.get(8 + len + 1..).unwrap_or_default();
        }
        out.insert(name, String::from_utf8_lossy(value).into_owned());
    }
    out
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on the pid of our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
}

#[test]
fn own_lines_go_to_the_journal_only_when_stderr_is_the_journal() {
    if !nix::unistd::geteuid().is_root() {
        skip::skipped("needs root (a mount namespace and a cgroup)");
        return;
    }
    let Some(root) = TestRoot::new("journal") else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("units")).expect("unit dir");
    let socket = dir.path().join("journal.socket");
    let journal = UnixDatagram::bind(&socket).expect("the fake journal's socket");
    journal
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let private = dir.path().join("run/private");

    // systemd's journal stream: the journal gets the lines, natively; stderr none.
    let path = dir.path().join("stderr-journal");
    let stderr = File::create(&path).expect("stderr file");
    let meta = stderr.metadata().expect("stderr metadata");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let child = corrald(&root.0, dir.path(), &socket, stderr, &stream);
    let entry = journal_entry(&journal, "serving the API", Duration::from_secs(10));
    wait_for("the private socket", Duration::from_secs(10), || {
        private.exists()
    });
    stop(child);
    let entry = fields(&entry.expect("corrald's 'serving the API' line in the journal"));
    assert_eq!(
        entry.get("PRIORITY").map(String::as_str),
        Some("6"),
        "{entry:?}"
    );
    assert_eq!(
        entry.get("TARGET").map(String::as_str),
        Some("corral::daemon"),
        "{entry:?}"
    );
    assert!(
        entry["MESSAGE"].starts_with("serving the API on "),
        "{entry:?}"
    );
    let logged = std::fs::read_to_string(&path).expect("stderr file");
    assert!(!logged.contains("serving the API"), "{logged}");

    // Any other stderr (here a file that is not the stream named): plain lines on stderr.
    let path = dir.path().join("stderr-file");
    let stderr = File::create(&path).expect("stderr file");
    let _ = std::fs::remove_file(&private);
    let child = corrald(&root.0, dir.path(), &socket, stderr, &stream);
    wait_for("the private socket", Duration::from_secs(10), || {
        private.exists()
    });
    stop(child);
    let logged = std::fs::read_to_string(&path).expect("stderr file");
    assert!(logged.contains("serving the API"), "{logged}");
    assert!(
        !logged.contains('\u{1b}'),
        "colour codes in a file: {logged:?}"
    );
    assert!(
        // corrald has exited: whatever it sent is queued already.
        journal_entry(&journal, "serving the API", Duration::from_secs(1)).is_none(),
        "the journal got a line while stderr was a file of its own"
    );
}
