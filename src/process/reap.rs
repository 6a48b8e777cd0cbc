//! Reaping: a signalfd for SIGCHLD and a `waitpid(-1, WNOHANG)` drain.
//!
//! Kernel rules relied on:
//! - a signalfd only receives signals that are *blocked* in every thread, so SIGCHLD must be
//!   blocked before any thread exists ([`block_sigchld`] first thing in `main`; threads inherit
//!   the mask). Children get an empty mask back in [`spawn`](super::spawn).
//! - Standard signals coalesce: one SIGCHLD may stand for many exits, so [`Reaper::reap`] always
//!   drains `waitpid(-1, WNOHANG)` until nothing is left, whatever the signalfd said.
//! - Orphans reparent to the nearest *subreaper* ancestor, else to PID 1: outside PID 1 the
//!   daemon calls [`set_child_subreaper`] so double-forking services' leftovers come to it.
//!
//! **Registration rule** (issue 4): pid → unit must be known before the pid's exit can be
//! observed. `reap()` only runs from the daemon's event loop, in the same task that calls
//! `spawn()`; `spawn()` returns the pid and the caller records it before it yields back to the
//! loop. So registration right after `spawn()` returns is race-free even for a child that has
//! already exited: its zombie waits (and keeps its pid) until `reap()` collects it.
//!
//! The same task rule makes [`spawn`](super::spawn)'s own `waitpid(pid)` on a child that failed
//! before exec safe: the reaper cannot run concurrently and steal that status. Whoever calls
//! spawn from another thread must keep that rule (or accept `status: None` in the error).
//!
//! Don't use `std::process`/`tokio::process` `wait` for supervised children while `reap()` runs:
//! `waitpid(-1)` takes their statuses.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`, code 0–255.
    Exited(i32),
    /// Killed by a signal (raw number, real-time signals included); `true` when it dumped core.
    Signaled(i32, bool),
}

impl ExitStatus {
    /// Decodes a raw `waitpid` status; `None` for stop/continue reports.
    pub fn from_raw(status: libc::c_int) -> Option<ExitStatus> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ExitStatus::Signaled(
                libc::WTERMSIG(status),
                libc::WCOREDUMP(status),
            ))
        } else {
            None
        }
    }

    /// `exit(0)`.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// A shell's `$?`: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s, _) => 128 + s,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(c) => write!(f, "exited with status {c}"),
            ExitStatus::Signaled(s, core) => {
                match Signal::try_from(s) {
                    Ok(sig) => write!(f, "killed by {}", sig.as_str())?,
                    Err(_) => write!(f, "killed by signal {s}")?,
                }
                if core {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Blocks SIGCHLD in the calling thread. Call it in `main` before any thread starts (threads
/// inherit the mask), so that no thread takes the signal and the [`Reaper`]'s signalfd sees it.
pub fn block_sigchld() -> Result<(), Errno> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

/// Makes the daemon a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphaned descendants reparent
/// to it instead of PID 1, so it reaps them and sees a double-forking service's processes die.
/// Not needed (and harmless) as PID 1.
pub fn set_child_subreaper() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    Errno::result(rc).map(drop)
}

/// Waits for one specific child (blocking `waitpid(pid, 0)`), retrying on EINTR.
///
/// Only for children no `waitpid(-1)` reaper can race for: the failed-before-exec child inside
/// `spawn`, tests, tools without a reaper.
pub fn wait_pid(pid: Pid) -> Result<ExitStatus, Errno> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if rc < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        if let Some(s) = ExitStatus::from_raw(status) {
            return Ok(s);
        }
    }
}

/// Owns the SIGCHLD signalfd; the event loop polls [`Reaper::as_fd`] for readability and then
/// calls [`Reaper::reap`].
#[derive(Debug)]
pub struct Reaper {
    fd: SignalFd,
}

impl Reaper {
    /// Creates the signalfd (non-blocking, close-on-exec). SIGCHLD must already be blocked in
    /// every thread ([`block_sigchld`]); this blocks it in the calling thread too.
    pub fn new() -> Result<Reaper, Errno> {
        block_sigchld()?;
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Reaper { fd })
    }

    /// Empties the signalfd and collects every child that has ended, until none is left.
    /// Call it whenever the fd is readable; calling it when nothing happened is cheap.
    pub fn reap(&mut self) -> Vec<(Pid, ExitStatus)> {
        // Drain first, then wait: an exit after the drain raises a new SIGCHLD, so none is lost.
        while let Ok(Some(_)) = self.fd.read_signal() {}
        reap_all()
    }

    /// As [`Reaper::reap`], collecting at most `max` children; `true` with them when more
    /// may be waiting (call again: no new SIGCHLD will say so).
    pub fn reap_up_to(&mut self, max: usize) -> (Vec<(Pid, ExitStatus)>, bool) {
        while let Ok(Some(_)) = self.fd.read_signal() {}
        let mut out = Vec::new();
        while out.len() < max {
            match reap_one() {
                Some(Some(child)) => out.push(child),
                Some(None) => continue,
                None => return (out, false),
            }
        }
        (out, true)
    }
}

/// One `waitpid(-1, WNOHANG)`: `None` when no child has ended (or there are none),
/// `Some(None)` for a status that is not an end (a stop).
fn reap_one() -> Option<Option<(Pid, ExitStatus)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a valid out-pointer.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if rc > 0 {
            return Some(ExitStatus::from_raw(status).map(|s| (Pid::from_raw(rc), s)));
        }
        if rc < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return None;
    }
}

impl AsFd for Reaper {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Reaper {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

/// `waitpid(-1, WNOHANG)` until it reports nothing (0) or no children (ECHILD).
pub fn reap_all() -> Vec<(Pid, ExitStatus)> {
    let mut out = Vec::new();
    while let Some(child) = reap_one() {
        out.extend(child);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_statuses() {
        assert_eq!(ExitStatus::from_raw(3 << 8), Some(ExitStatus::Exited(3)));
        assert_eq!(
            ExitStatus::from_raw(9),
            Some(ExitStatus::Signaled(9, false))
        );
        assert_eq!(
            ExitStatus::from_raw(11 | 0x80),
            Some(ExitStatus::Signaled(11, true))
        );
        // stopped by SIGSTOP
        assert_eq!(ExitStatus::from_raw((19 << 8) | 0x7f), None);
    }

    #[test]
    fn displays_like_systemd() {
        assert_eq!(ExitStatus::Exited(1).to_string(), "exited with status 1");
        assert_eq!(
            ExitStatus::Signaled(9, false).to_string(),
            "killed by SIGKILL"
        );
        assert_eq!(
            ExitStatus::Signaled(11, true).to_string(),
            "killed by SIGSEGV (core dumped)"
        );
        assert_eq!(
            ExitStatus::Signaled(40, false).to_string(),
            "killed by signal 40"
        );
        assert_eq!(ExitStatus::Signaled(15, false).shell_code(), 143);
    }
}
