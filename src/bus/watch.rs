//! Waiting for a socket path to appear, with inotify and nothing else (DESIGN §4: as PID 1 the
//! bus is not up when corrald starts, and the daemon has no retry timers: idle, it never wakes).
//!
//! A [`PathWatch`] watches the nearest existing ancestor directory of the path — its parent
//! once that exists, else the closest ancestor that does — and reports each event that may
//! concern the path: the next component on the way to it created, removed, renamed, or (for
//! the path itself) its attributes changed. It then moves its watch down as directories appear
//! (and up if the watched one goes away). The caller tries its connection after every report
//! and waits again if that fails. The attribute change matters: `dbus-daemon` binds its
//! socket, listens, then chmods it, so a connection tried right after the socket was created
//! can be refused, and the chmod is what says it is ready.
//!
//! Nothing here knows D-Bus; it only needs a path.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

/// The inotify instance, as the event loop wants it.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A watch for changes on the way to one path (see the module doc).
pub struct PathWatch {
    fd: AsyncFd<Fd>,
    target: PathBuf,
    /// The directory watched now and its descriptor.
    watched: Option<(PathBuf, WatchDescriptor)>,
}

impl std::fmt::Debug for PathWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathWatch")
            .field("target", &self.target)
            .field("watched", &self.watched.as_ref().map(|(p, _)| p))
            .finish()
    }
}

const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

impl PathWatch {
    /// Starts watching the way to `target` (an absolute path). Anything that happens after this
    /// returns is reported by [`PathWatch::changed`]; check the path itself after creating the
    /// watch, not before, or its appearance in between is missed.
    pub fn new(target: &Path) -> io::Result<PathWatch> {
        if !target.is_absolute() || target.parent().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not an absolute path to a file", target.display()),
            ));
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mut watch = PathWatch {
            // SAFETY: `Fd` owns the inotify descriptor, so it stays open and the same for the
            // AsyncFd's whole life.
            fd: unsafe {
                AsyncFd::register_with_interest(Fd(inotify), tokio::io::Interest::READABLE)
            }?,
            target: target.to_path_buf(),
            watched: None,
        };
        watch.rewatch()?;
        Ok(watch)
    }

    /// The directory watched now.
    pub fn watched(&self) -> Option<&Path> {
        self.watched.as_ref().map(|(p, _)| p.as_path())
    }

    /// Watches the nearest existing ancestor of the target, if that is not the one watched.
    fn rewatch(&mut self) -> io::Result<()> {
        loop {
            let Some(dir) = nearest_dir(&self.target) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no directory on the way to {}", self.target.display()),
                ));
            };
            if self.watched().is_some_and(|w| w == dir) {
                return Ok(());
            }
            match self.fd.get_ref().0.add_watch(dir.as_path(), MASK) {
                Ok(wd) => {
                    if let Some((_, old)) = self.watched.replace((dir, wd))
                        && old != wd
                    {
                        // Already gone if the old directory was removed; nothing to undo.
                        let _ = self.fd.get_ref().0.rm_watch(old);
                    }
                    return Ok(());
                }
                // Removed between the look and the watch: look again.
                Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits for the next change that may concern the target, then moves the watch to the
    /// nearest existing ancestor. Changes to other entries of the watched directory are read
    /// and passed over.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            let events = match self.fd.get_ref().0.read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EAGAIN) => {
                    ready.clear_ready();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            drop(ready);
            let next = self.next_component().map(OsStr::to_os_string);
            let current = self.watched.as_ref().map(|(_, wd)| *wd);
            // Events of a watch given up (its IN_IGNORED comes after we moved on) don't count.
            let concerns = events.iter().any(|ev| {
                let gone = AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF
                    | AddWatchFlags::IN_IGNORED;
                // Events lost: anything may have happened.
                ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                    || (Some(ev.wd) == current
                        && (ev.mask.intersects(gone) || (ev.name.is_some() && ev.name == next)))
            });
            if concerns {
                self.rewatch()?;
                return Ok(());
            }
        }
    }

    /// The component of the target right below the watched directory.
    fn next_component(&self) -> Option<&OsStr> {
        let (dir, _) = self.watched.as_ref()?;
        self.target.strip_prefix(dir).ok()?.iter().next()
    }
}

/// The nearest existing directory above `target`: its parent, or the closest ancestor that
/// exists.
fn nearest_dir(target: &Path) -> Option<PathBuf> {
    target
        .ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn changed(w: &mut PathWatch) {
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("an event within 5 s")
            .expect("reading inotify");
    }

    async fn quiet(w: &mut PathWatch) {
        assert!(
            tokio::time::timeout(Duration::from_millis(200), w.changed())
                .await
                .is_err(),
            "no event expected"
        );
    }

    #[tokio::test]
    async fn follows_directories_down_to_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("a/b/sock");
        let mut w = PathWatch::new(&target).expect("watch");
        assert_eq!(w.watched(), Some(tmp.path()));
        // Unrelated entries are passed over.
        std::fs::create_dir(tmp.path().join("other")).expect("mkdir");
        quiet(&mut w).await;
        std::fs::create_dir(tmp.path().join("a")).expect("mkdir");
        changed(&mut w).await;
        assert_eq!(w.watched(), Some(tmp.path().join("a").as_path()));
        std::fs::create_dir(tmp.path().join("a/b")).expect("mkdir");
        changed(&mut w).await;
        assert_eq!(w.watched(), Some(tmp.path().join("a/b").as_path()));
        std::fs::write(tmp.path().join("a/b/unrelated"), "").expect("write");
        quiet(&mut w).await;
        let _l = std::os::unix::net::UnixListener::bind(&target).expect("bind");
        changed(&mut w).await;
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
        changed(&mut w).await;
        // The directory goes away: the watch moves up again.
        std::fs::remove_dir_all(tmp.path().join("a")).expect("rm");
        changed(&mut w).await;
        while w.watched() != Some(tmp.path()) {
            changed(&mut w).await;
        }
    }

    #[test]
    fn a_relative_path_is_refused() {
        assert!(PathWatch::new(Path::new("sock")).is_err());
    }
}
