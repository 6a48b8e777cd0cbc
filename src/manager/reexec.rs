//! Re-executing the daemon in place (`Reexec`, DESIGN §4): how an upgrade replaces corrald
//! without touching a service.
//!
//! The manager saves `RUNTIME/state` and returns from its loop; [`exec`] then executes the
//! daemon's binary — the file now on disk, which an upgrade may have replaced — with the same
//! arguments, in the same process. The services stay our children (same PID, so their exits are
//! reaped with their real status), and the new daemon adopts them from the state file as after
//! a crash. What a crash loses and a re-exec keeps is their output: the read ends of the log
//! relays' pipes stay open across the exec, and their numbers travel in [`RELAYS_ENV`], so a
//! service never sees a closed pipe and nothing it writes meanwhile is lost (the pipe buffers
//! it).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};

use super::logs::Relays;

/// `UNIT=FD,UNIT=FD…`: the relays a re-executing daemon hands on. Its presence also tells the
/// new daemon that this is a re-exec (as PID 1: the machine is already booted).
pub const RELAYS_ENV: &str = "CORRAL_REEXEC_RELAYS";

/// The binary to execute: the path of our executable, which after an upgrade the kernel shows
/// as `PATH (deleted)` — the new file is at `PATH`.
pub fn binary() -> std::io::Result<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Whether [`exec`] can be expected to succeed: the binary exists and is executable. Checked
/// before `Reexec` is accepted, since after it the manager is gone.
pub fn check() -> Result<(), String> {
    let bin = binary().map_err(|e| format!("finding the daemon's binary: {e}"))?;
    nix::unistd::access(&bin, nix::unistd::AccessFlags::X_OK)
        .map_err(|e| format!("{} can't be executed: {e}", bin.display()))
}

/// Keeps the relays' read ends open across the exec and executes the daemon again with the
/// same arguments. Returns only if the exec failed.
pub fn exec(relays: &Relays) -> std::io::Error {
    let mut handed = Vec::new();
    for (unit, fd) in relays.snapshot() {
        // Still ours until the exec: the relay tasks run on this thread, which is here.
        match fcntl(
            // SAFETY: `fd` is open (its relay task, which owns it, removes it from the map
            // before closing it) and is only borrowed for this call.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            FcntlArg::F_SETFD(FdFlag::empty()),
        ) {
            Ok(_) => handed.push(format!("{unit}={fd}")),
            Err(e) => tracing::warn!(unit = %unit, "keeping its log pipe open: {e}"),
        }
    }
    let bin = match binary() {
        Ok(b) => b,
        Err(e) => return e,
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    tracing::info!("executing {}", bin.display());
    std::process::Command::new(&bin)
        .arg0(
            std::env::args_os()
                .next()
                .unwrap_or_else(|| bin.clone().into()),
        )
        .args(args)
        .env(RELAYS_ENV, handed.join(","))
        .exec()
}

/// What the previous daemon handed on, if this process is a re-exec: unit → relay read end.
/// Takes the variable out of the environment (services must not inherit it). Call before any
/// other thread exists and before anything opens a file (the numbers name inherited fds).
pub fn inherited() -> Option<HashMap<String, OwnedFd>> {
    let value = std::env::var(RELAYS_ENV).ok()?;
    // SAFETY: called at the start of main, while this is the only thread.
    unsafe { std::env::remove_var(RELAYS_ENV) };
    Some(
        parse(&value)
            .filter_map(|(unit, fd)| Some((unit, take_fifo(fd)?)))
            .collect(),
    )
}

fn parse(value: &str) -> impl Iterator<Item = (String, RawFd)> + '_ {
    value.split(',').filter_map(|item| {
        let (unit, fd) = item.rsplit_once('=')?;
        Some((unit.to_string(), fd.parse().ok()?))
    })
}

/// Takes ownership of an inherited fd if it is an open pipe (anything else was not handed on
/// by us and is left alone), closing it on the next exec again.
fn take_fifo(fd: RawFd) -> Option<OwnedFd> {
    if fd <= 2 {
        return None;
    }
    // SAFETY: only inspects the fd number; fails cleanly if it is not open.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let st = fstat(borrowed).ok()?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return None;
    }
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    // SAFETY: the fd is open, a pipe handed on by the previous daemon for this purpose, and
    // nothing else in this process refers to it (nothing has been opened yet).
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_hand_over_names_each_unit_and_its_pipe() {
        let parsed: Vec<_> = parse("a.service=7,web@x.service=12,bad,b.service=x").collect();
        assert_eq!(
            parsed,
            [
                ("a.service".to_string(), 7),
                ("web@x.service".to_string(), 12)
            ]
        );
    }

    #[test]
    fn only_pipes_are_taken() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let raw = read.as_raw_fd();
        std::mem::forget(read);
        let taken = take_fifo(raw).expect("a pipe is taken");
        assert_eq!(taken.as_raw_fd(), raw);
        let flags = fcntl(&taken, FcntlArg::F_GETFD).unwrap();
        assert!(FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC));
        let file = tempfile::tempfile().unwrap();
        assert!(take_fifo(file.as_raw_fd()).is_none(), "a file is not ours");
        assert!(take_fifo(1).is_none());
        drop(write);
    }
}
