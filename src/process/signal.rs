//! Signalling: by pidfd (race-free: a pidfd names one process, never a recycled pid), by pid,
//! and to a whole process group.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// `pidfd_open(2)` (5.3+): a descriptor for `pid`. Race-free only while `pid` cannot be
/// recycled: for our own unreaped child, or when the result is checked afterwards (adoption
/// after a restart re-checks the process's cgroup through the pidfd-held process).
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    if rc < 0 {
        return Err(Errno::last());
    }
    let fd = libc::c_int::try_from(rc).map_err(|_| Errno::EBADF)?;
    // pidfd_open sets O_CLOEXEC on the new descriptor itself.
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)` (5.1+): signals exactly the process the pidfd refers to. ESRCH once it
/// has exited (even if not yet reaped).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall; NULL siginfo means "as kill(2) would send it".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    Errno::result(rc).map(drop)
}

/// `kill(pid, signal)`.
pub fn kill(pid: Pid, signal: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    Errno::result(unsafe { libc::kill(pid.as_raw(), signal) }).map(drop)
}

/// Signals every process of process group `pgid` (`kill(-pgid, signal)`). With
/// `new_session = true` a service's main process leads a group whose id is its pid.
/// Prefer `cgroup.kill`/the cgroup's process list for "every process of the unit": processes can
/// leave a process group, never their cgroup.
pub fn kill_process_group(pgid: Pid, signal: i32) -> Result<(), Errno> {
    if pgid.as_raw() <= 1 {
        // kill(-1) and kill(0) mean "everyone" and "my own group": never what the caller meant.
        return Err(Errno::EINVAL);
    }
    // SAFETY: plain syscall.
    Errno::result(unsafe { libc::kill(-pgid.as_raw(), signal) }).map(drop)
}
