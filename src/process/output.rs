//! Opening a `stdout`/`stderr = "file:/path"` output (DESIGN §2): appended to; no symlink in
//! the path is followed; only a regular file is opened, never a FIFO or a device; and opening
//! it never blocks the daemon. A new file is created with mode 0640 whatever the umask
//! (DESIGN §4).
//!
//! The danger is a less privileged account that owns a directory on the path (`/var/log/svc`
//! owned by the service's user `svc`): corrald opens the file as root, so whatever svc puts at
//! the path is what root writes to. Each rule closes one way in:
//! - a symlink to `/etc/passwd` — `openat2(RESOLVE_NO_SYMLINKS)` refuses a symlink in any
//!   component of the path (`ELOOP`);
//! - a hard link to `/etc/passwd` (possible where `fs.protected_hardlinks` is 0, the kernel's
//!   default when no init sets it) — a file with more than one link is refused;
//! - a FIFO (the open would wait for a reader: PID 1 stuck in `open`) — opened with
//!   `O_NONBLOCK`, a FIFO without a reader fails at once (`ENXIO`) and with one it opens at
//!   once; either way `fstat` then refuses anything that is not `S_ISREG` (a FIFO, a device, a
//!   socket, a directory), and only then is `O_NONBLOCK` cleared, so the service writes
//!   blocking as usual. `O_NOCTTY`: a terminal never becomes the daemon's;
//! - a file created by a umask of 000 readable by all: the mode is set with `fchmod` after an
//!   exclusive create (`O_CREAT | O_EXCL`, which also never follows a symlink).
//!
//! **Where it is opened: in the parent (the daemon), before clone.** The child would be a fine
//! place for a blocking open (only that child would wait, and the start timeout covers it), but
//! the child is not always privileged over the host's files: with a new user namespace made by
//! clone3 (the "user first" layout, see `plan`), the child is born inside it, and root there
//! has no `CAP_DAC_OVERRIDE` over `/var/log` (its owner is not mapped), so it could not open a
//! log file root owns. With `O_NONBLOCK` no file *type* can block the open; what is left is a
//! file system that stalls lookups: a FUSE mount needs `allow_other` (root's choice in
//! `/etc/fuse.conf`) for root to enter it at all — without it the kernel refuses root at once,
//! without asking the FUSE daemon — and a hung NFS server is the administrator's own mount.
//! Neither is in the hands of the service's user.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::sys::{self, OpenHow};

/// The mode of a log file corral creates (DESIGN §4).
pub const FILE_MODE: u32 = 0o640;

/// Why a `file:` output was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error(
        "a component of the path is a symbolic link, which is never followed for file: outputs"
    )]
    Symlink,
    #[error("{0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it has {0} hard links; a file: output must have exactly one")]
    HardLinks(u64),
    #[error("{}", .0.desc())]
    Os(Errno),
}

/// Opens `path` for appending, by the rules of the module docs. The descriptor is close-on-exec
/// and blocking.
pub fn open_output(path: &Path) -> Result<OwnedFd, OutputError> {
    let c =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| OutputError::Os(Errno::EINVAL))?;
    let flags =
        libc::O_WRONLY | libc::O_APPEND | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // A file that appears or vanishes between the two opens (another start, a log rotation)
    // just takes another round; a few are plenty.
    let mut last = Errno::ENOENT;
    for _ in 0..4 {
        match open_how(&c, flags, 0) {
            Ok(fd) => return check(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(refusal(e)),
        }
        match open_how(&c, flags | libc::O_CREAT | libc::O_EXCL, FILE_MODE) {
            Ok(fd) => {
                // The umask took bits off the mode given to open: set it whole.
                // SAFETY: fchmod on a descriptor we own.
                if unsafe { libc::fchmod(fd.as_raw_fd(), FILE_MODE) } < 0 {
                    return Err(OutputError::Os(Errno::last()));
                }
                return check(fd);
            }
            Err(Errno::EEXIST) => last = Errno::EEXIST,
            Err(e) => return Err(refusal(e)),
        }
    }
    Err(OutputError::Os(last))
}

fn open_how(path: &CString, flags: libc::c_int, mode: u32) -> Result<OwnedFd, Errno> {
    let how = OpenHow {
        flags: flags as u64,
        mode: u64::from(mode),
        resolve: sys::RESOLVE_NO_SYMLINKS,
    };
    loop {
        // SAFETY: a NUL-terminated path and a valid `open_how`.
        let fd = unsafe { sys::openat2(libc::AT_FDCWD, path.as_ptr(), &how) };
        if fd >= 0 {
            // SAFETY: a new descriptor we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        match Errno::last() {
            Errno::EINTR | Errno::EAGAIN => continue,
            e => return Err(e),
        }
    }
}

fn refusal(e: Errno) -> OutputError {
    match e {
        Errno::ELOOP => OutputError::Symlink,
        // O_NONBLOCK | O_WRONLY on a FIFO without a reader, or a device with no driver.
        Errno::ENXIO => OutputError::NotRegular("a FIFO or a device"),
        Errno::EISDIR => OutputError::NotRegular("a directory"),
        e => OutputError::Os(e),
    }
}

/// The checks after the open: a regular file with one link; then blocking again.
fn check(fd: OwnedFd) -> Result<OwnedFd, OutputError> {
    let st = nix::sys::stat::fstat(&fd).map_err(OutputError::Os)?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFIFO => Some("a FIFO"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        libc::S_IFSOCK => Some("a socket"),
        libc::S_IFDIR => Some("a directory"),
        _ => Some("a special file"),
    };
    if let Some(kind) = kind {
        return Err(OutputError::NotRegular(kind));
    }
    if st.st_nlink != 1 {
        return Err(OutputError::HardLinks(st.st_nlink as u64));
    }
    // SAFETY: fcntl on a descriptor we own.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0
        // SAFETY: as above.
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) } < 0
    {
        return Err(OutputError::Os(Errno::last()));
    }
    Ok(fd)
}

/// An output that could not be opened: which stream, which path, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRefused {
    pub stream: &'static str,
    pub path: PathBuf,
    pub why: OutputError,
}

impl fmt::Display for OutputRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = \"file:{}\": {}",
            self.stream,
            self.path.display(),
            self.why
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The mode whatever the umask: tests/process_output.rs (the umask is process-wide).
    #[test]
    fn appends_and_keeps_an_existing_files_mode() {
        let d = dir("create");
        let p = d.join("out.log");
        let mut f = std::fs::File::from(open_output(&p).unwrap());
        f.write_all(b"one\n").unwrap();
        let mut g = std::fs::File::from(open_output(&p).unwrap());
        g.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\ntwo\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        drop(open_output(&p).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_fifos_links_and_directories_are_refused() {
        let d = dir("refuse");
        let victim = d.join("victim");
        std::fs::write(&victim, "untouched\n").unwrap();
        // A symlink as the file, and as a directory on the way.
        std::os::unix::fs::symlink(&victim, d.join("link.log")).unwrap();
        assert_eq!(
            open_output(&d.join("link.log")).unwrap_err(),
            OutputError::Symlink
        );
        std::os::unix::fs::symlink(&d, d.join("dirlink")).unwrap();
        assert_eq!(
            open_output(&d.join("dirlink/new.log")).unwrap_err(),
            OutputError::Symlink
        );
        assert!(!d.join("new.log").exists());
        // A dangling symlink is not created through either.
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling.log")).unwrap();
        assert_eq!(
            open_output(&d.join("dangling.log")).unwrap_err(),
            OutputError::Symlink
        );
        assert!(!d.join("nowhere").exists());
        // A FIFO without a reader: refused at once, not waited on.
        let fifo = d.join("fifo.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert_eq!(
            open_output(&fifo).unwrap_err(),
            OutputError::NotRegular("a FIFO or a device")
        );
        // With a reader the open succeeds, and the type check refuses it.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        assert_eq!(
            open_output(&fifo).unwrap_err(),
            OutputError::NotRegular("a FIFO")
        );
        drop(reader);
        // A device.
        assert_eq!(
            open_output(Path::new("/dev/null")).unwrap_err(),
            OutputError::NotRegular("a character device")
        );
        // A hard link to another file.
        std::fs::hard_link(&victim, d.join("hard.log")).unwrap();
        assert_eq!(
            open_output(&d.join("hard.log")).unwrap_err(),
            OutputError::HardLinks(2)
        );
        assert_eq!(
            open_output(&d).unwrap_err(),
            OutputError::NotRegular("a directory")
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
        let refused = OutputRefused {
            stream: "stdout",
            path: d.join("link.log"),
            why: OutputError::Symlink,
        };
        assert!(
            refused.to_string().starts_with("stdout = \"file:/"),
            "{refused}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    use std::os::unix::fs::OpenOptionsExt;
}
