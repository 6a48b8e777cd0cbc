//! `cgroup.freeze`: freezing and thawing a subtree, and waiting for the kernel to finish.
//!
//! Writing `cgroup.freeze` only starts the change: each task stops (or resumes) when it next
//! leaves the kernel, and `frozen` in `cgroup.events` flips once all of them have. The kernel
//! signals that flip as a modify event on `cgroup.events`, so the wait is an inotify watch set
//! up *before* the write (no change can slip between write and watch) plus poll(2) with the
//! deadline — no sleep loop. An empty cgroup reports `frozen 1` at once.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::{Cgroup, CgroupError, EVENTS, FREEZE, write_knob};

/// Writes `cgroup.freeze` and waits until `cgroup.events` says `frozen` is `frozen`.
pub fn set_frozen(dir: &Path, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
    let events = dir.join(EVENTS);
    let inotify_err = |err| CgroupError::Inotify {
        path: events.clone(),
        err,
    };
    let inotify =
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(inotify_err)?;
    inotify
        .add_watch(&events, AddWatchFlags::IN_MODIFY)
        .map_err(inotify_err)?;
    write_knob(&dir.join(FREEZE), if frozen { "1" } else { "0" })?;
    let cgroup = Cgroup::new(dir);
    let deadline = Instant::now() + timeout;
    loop {
        if cgroup.events()?.frozen == frozen {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CgroupError::Timeout {
                path: dir.to_path_buf(),
                what: if frozen { "frozen 1" } else { "frozen 0" },
                timeout,
            });
        }
        // Round up so a sub-millisecond remainder doesn't become a busy poll.
        let ms = left.as_micros().div_ceil(1000);
        let wait = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => return Err(inotify_err(err)),
        }
        // Drain; the content is re-read above, so the events themselves don't matter.
        loop {
            match inotify.read_events() {
                Ok(ev) if !ev.is_empty() => continue,
                Ok(_) | Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(inotify_err(err)),
            }
        }
    }
}

/// True when `cgroup.events` says the subtree is frozen.
pub fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    Cgroup::new(dir).events().map(|e| e.frozen)
}
