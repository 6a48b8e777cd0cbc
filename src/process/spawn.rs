//! [`spawn`]: clone3 into the cgroup, the parent's side of the pipe protocol, and the fallback.
//!
//! Kernel rules relied on:
//! - `clone3` with `CLONE_INTO_CGROUP` (5.7+) makes the child a member of the target cgroup
//!   from its first instruction: its limits (memory.max, pids.max, cpuset…) apply at birth and
//!   there is no window in which it runs — or forks — outside the unit's cgroup, which moving a
//!   child after fork leaves open. The target is an fd of the cgroup *directory*, opened
//!   `O_RDONLY|O_DIRECTORY` (6.18 also takes an `O_PATH` fd — tried on the build host — but a
//!   readable directory fd is what every kernel since 5.7 accepts), and must obey the
//!   no-internal-process rule (EBUSY when it has controllers in `cgroup.subtree_control`).
//! - `CLONE_PIDFD` returns a pidfd for the child atomically with its creation: signals and exit
//!   notification through it can never hit a recycled pid.
//! - `clone3` accepts `CLONE_INTO_CGROUP` together with `CLONE_NEWCGROUP`: the new cgroup
//!   namespace is rooted at the target, so the service sees `0::/` (DESIGN §8).
//! - Fallback, only when clone3 is missing (ENOSYS, < 5.3) or too old for `CLONE_INTO_CGROUP`
//!   (E2BIG for the 88-byte struct, < 5.7): the legacy `clone` with the same namespace flags,
//!   and the child writes "0" (itself) to `cgroup.procs` before anything else; the pidfd then
//!   comes from `pidfd_open` (race-free: an unreaped child's pid can't be reused), or there is
//!   none (ENOSYS).
//!
//! - The usual path shares the daemon's memory with the child until it execs
//!   (`CLONE_VM | CLONE_VFORK`, see [`super::vfork`]); units whose child must wait for the
//!   parent (id maps) or that the kernel refuses with a shared mm take the copying clone3.
//!
//! **Reaping a child that failed before exec**: `spawn` reaps it itself (`waitpid(pid)`) before
//! returning [`SpawnError::Exec`], and puts pid and status in the error. This is safe next to the
//! daemon's `waitpid(-1)` reaper because both run in the manager's task (see [`super::reap`]):
//! the reaper never sees such a pid, and no unit ever registers it. Should something else reap
//! it first, the error carries `status: None`.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::Pid;

use super::error::{SpawnError, Step};
use super::exec::{
    self, ChildFds, CloneArgs, RECORD_ERROR, RECORD_MAPS, RECORD_PID, RECORD_SIZE, Record,
};
use super::output::{OutputRefused, open_output};
use super::plan::{Plan, StdioSrc};
use super::reap::{ExitStatus, wait_pid};
use super::signal::{kill, pidfd_open, pidfd_send_signal};
use super::spec::{SpawnSpec, Stdio};
use super::vfork::{self, Vforked};

/// `CLONE_INTO_CGROUP` (5.7+), a clone3-only flag above 32 bits.
pub(super) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A started process: its pid in the daemon's PID namespace and, where the kernel has them, a
/// pidfd (poll it for readability = exited; signal through it with [`Child::signal`]).
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    pub pidfd: Option<OwnedFd>,
}

impl Child {
    /// Sends `signal` to this process: through the pidfd when there is one, else `kill(pid)`.
    pub fn signal(&self, signal: i32) -> Result<(), Errno> {
        match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd.as_fd(), signal),
            None => kill(self.pid, signal),
        }
    }

    /// Blocks until the process ends and reaps it. Not for a daemon that runs a `waitpid(-1)`
    /// [`Reaper`](super::Reaper): that one would take the status.
    pub fn wait(&self) -> Result<ExitStatus, Errno> {
        wait_pid(self.pid)
    }
}

/// Starts `spec.argv` as described: born in `spec.cgroup`, in the requested namespaces, with
/// the credentials, environment, directory, umask and stdio given. Returns once the program
/// has been exec'ed (or failed to be): an `Ok` child is running the new program.
///
/// Call it from the task that also runs the reaper (see the module docs of [`super::reap`]).
pub fn spawn(spec: &SpawnSpec) -> Result<Child, SpawnError> {
    let plan = Plan::new(spec)?;

    let null = if plan.needs_null {
        Some(open_fd(Path::new("/dev/null"), libc::O_RDWR, "opening")?)
    } else {
        None
    };
    let null_raw = null.as_ref().map_or(-1, |f| f.as_raw_fd());
    // `file:` outputs are opened here in the parent (super::output says why here, and how),
    // and kept open in `files` until the child has its copies.
    let streams = [
        ("stdin", &spec.stdin),
        ("stdout", &spec.stdout),
        ("stderr", &spec.stderr),
    ];
    let mut files = Vec::new();
    let mut stdio = [StdioSrc::Inherit; 3];
    for (slot, (stream, s)) in stdio.iter_mut().zip(streams) {
        *slot = match s {
            Stdio::Null => StdioSrc::Fd(null_raw),
            Stdio::Inherit => StdioSrc::Inherit,
            Stdio::Fd(fd) => StdioSrc::Fd(fd.as_raw_fd()),
            Stdio::File(path) => {
                let fd = open_output(path).map_err(|why| {
                    SpawnError::Output(OutputRefused {
                        stream,
                        path: path.clone(),
                        why,
                    })
                })?;
                let fd = above_stdio(fd).map_err(|errno| SpawnError::Setup {
                    what: "opening",
                    path: path.clone(),
                    errno,
                })?;
                let raw = fd.as_raw_fd();
                files.push(fd);
                StdioSrc::Fd(raw)
            }
        };
    }

    let cgroup_fd = match &spec.cgroup {
        Some(dir) => Some(open_fd(
            dir,
            libc::O_RDONLY | libc::O_DIRECTORY,
            "opening cgroup",
        )?),
        None => None,
    };
    let (err_r, err_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let fds = ChildFds {
        err_w: err_w.as_raw_fd(),
        err_r: err_r.as_raw_fd(),
        go_r: go_r.as_raw_fd(),
        go_w: go_w.as_raw_fd(),
        stdio,
    };

    // Block every signal across clone: the child must not run one of the daemon's handlers
    // (on a copy of its state) before it has reset the dispositions. The child unblocks all.
    let all = SigSet::all();
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut old)).map_err(|errno| {
        SpawnError::Setup {
            what: "blocking signals for",
            path: PathBuf::from("clone"),
            errno,
        }
    })?;
    let cloned = if vfork::usable(&plan, spec.legacy_clone) {
        match vfork::clone_vfork(&plan, &fds, cgroup_fd.as_ref().map(AsRawFd::as_raw_fd)) {
            Ok(Vforked::Child { pid, pidfd }) => Ok(Cloned::Parent {
                pid,
                pidfd,
                legacy: false,
            }),
            Ok(Vforked::Unsupported) => clone_child(&plan, cgroup_fd.as_ref(), spec.legacy_clone),
            Err(errno) => Err(errno),
        }
    } else {
        clone_child(&plan, cgroup_fd.as_ref(), spec.legacy_clone)
    };
    // Restoring the mask we had just set cannot fail; nothing useful to do if it did.
    let restore = || {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    };
    let (first, clone_pidfd, legacy) = match cloned {
        // SAFETY: we are the child of clone; `run` only makes async-signal-safe calls on the
        // plan and descriptors prepared above, and never returns.
        Ok(Cloned::InChild { legacy }) => unsafe { exec::run(&plan, &fds, legacy) },
        Ok(Cloned::Parent { pid, pidfd, legacy }) => {
            restore();
            (pid, pidfd, legacy)
        }
        Err(errno) => {
            restore();
            return Err(SpawnError::Clone {
                cgroup: spec.cgroup.clone(),
                errno,
            });
        }
    };
    drop(err_w);
    drop(go_r);
    drop(cgroup_fd);

    let outcome = converse(&plan, spec, first, &err_r, go_w);

    // The middle process of a PID-namespace join exits right after reporting the service's pid.
    if plan.pid_join {
        let _ = wait_pid(first);
    }
    let main = match outcome {
        Ok(main) => main,
        Err((err, main)) => {
            let status = match main {
                Some(p) => wait_pid(p).ok(),
                None if !plan.pid_join => wait_pid(first).ok(),
                None => None,
            };
            return Err(match err {
                SpawnError::Exec {
                    step,
                    subject,
                    errno,
                    pid,
                    ..
                } => SpawnError::Exec {
                    step,
                    subject,
                    errno,
                    pid,
                    status,
                },
                other => other,
            });
        }
    };

    let pidfd = if main == first && !legacy {
        clone_pidfd
    } else {
        // Our own unreaped child: its pid can't have been reused, so this is race-free.
        pidfd_open(main).ok()
    };
    Ok(Child { pid: main, pidfd })
}

enum Cloned {
    InChild {
        legacy: bool,
    },
    Parent {
        pid: Pid,
        pidfd: Option<OwnedFd>,
        legacy: bool,
    },
}

fn clone_child(plan: &Plan, cgroup: Option<&OwnedFd>, force_legacy: bool) -> Result<Cloned, Errno> {
    if !force_legacy {
        let mut pidfd: libc::c_int = -1;
        let mut args = CloneArgs {
            flags: libc::CLONE_PIDFD as u64 | plan.clone_flags,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(fd) = cgroup {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd.as_raw_fd() as u64;
        }
        // SAFETY: with stack = 0 clone3 behaves like fork: the child continues here on a copy of
        // our stack and memory. `args` outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                size_of::<CloneArgs>(),
            )
        };
        if rc == 0 {
            return Ok(Cloned::InChild { legacy: false });
        }
        if rc > 0 {
            let pid = Pid::from_raw(libc::pid_t::try_from(rc).map_err(|_| Errno::EOVERFLOW)?);
            // SAFETY: CLONE_PIDFD stored a new descriptor we own.
            let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
            return Ok(Cloned::Parent {
                pid,
                pidfd,
                legacy: false,
            });
        }
        match Errno::last() {
            Errno::ENOSYS | Errno::E2BIG => {}
            e => return Err(e),
        }
    }
    // Legacy clone(2): namespace flags and SIGCHLD; stack 0 = fork-like. Same layout.
    let flags = plan.clone_flags as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if rc == 0 {
        return Ok(Cloned::InChild { legacy: true });
    }
    if rc < 0 {
        return Err(Errno::last());
    }
    let pid = Pid::from_raw(libc::pid_t::try_from(rc).map_err(|_| Errno::EOVERFLOW)?);
    Ok(Cloned::Parent {
        pid,
        pidfd: None,
        legacy: true,
    })
}

/// The parent's side of the pipe protocol. Returns the pid that exec'ed, or the error and the
/// pid to reap (when known).
fn converse(
    plan: &Plan,
    spec: &SpawnSpec,
    first: Pid,
    err_r: &OwnedFd,
    go_w: OwnedFd,
) -> Result<Pid, (SpawnError, Option<Pid>)> {
    let mut main = (!plan.pid_join).then_some(first);
    let mut go_w = Some(go_w);
    let mut maps_pending = false;
    let mut failure: Option<SpawnError> = None;

    loop {
        let rec = match read_record(err_r.as_raw_fd()) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(()) => {
                failure.get_or_insert(SpawnError::Protocol { pid: first });
                break;
            }
        };
        match rec.kind {
            RECORD_PID => {
                main = libc::pid_t::try_from(rec.value).ok().map(Pid::from_raw);
            }
            RECORD_MAPS => maps_pending = true,
            RECORD_ERROR => {
                if failure.is_none() {
                    let step = Step::from_raw(rec.step);
                    failure = Some(match step {
                        Some(step) => SpawnError::Exec {
                            step,
                            subject: plan.subject(spec, step, rec.index),
                            errno: Errno::from_raw(rec.errno),
                            pid: main.unwrap_or(first),
                            status: None,
                        },
                        None => SpawnError::Protocol { pid: first },
                    });
                }
            }
            _ => {
                failure.get_or_insert(SpawnError::Protocol { pid: first });
            }
        }
        // The maps go to the process that made the user namespace, which in a PID-namespace
        // join is the grandchild: wait for its pid if its request came first.
        if maps_pending && let Some(pid) = main {
            maps_pending = false;
            match write_maps(plan, pid) {
                Ok(()) => {
                    if let Some(w) = &go_w
                        && let Err(errno) = write_byte(w)
                    {
                        failure.get_or_insert(SpawnError::Setup {
                            what: "releasing child",
                            path: PathBuf::from(format!("/proc/{pid}")),
                            errno,
                        });
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    // EOF on the go pipe tells the child to give up.
                    go_w = None;
                }
            }
        }
    }
    drop(go_w);
    match failure {
        None => main.ok_or((SpawnError::Protocol { pid: first }, None)),
        Some(e) => Err((e, main)),
    }
}

/// Reads one record; `Ok(None)` on EOF (the child exec'ed or exited), `Err` on a short one.
fn read_record(fd: RawFd) -> Result<Option<Record>, ()> {
    let mut rec = Record::default();
    let mut got = 0usize;
    while got < RECORD_SIZE {
        // SAFETY: reads into the remaining bytes of a plain-old-data struct.
        let n = unsafe {
            libc::read(
                fd,
                (&mut rec as *mut Record).cast::<u8>().add(got).cast(),
                RECORD_SIZE - got,
            )
        };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(());
        }
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(()) };
        }
        got += n as usize;
    }
    Ok(Some(rec))
}

fn write_byte(fd: &OwnedFd) -> Result<(), Errno> {
    loop {
        // SAFETY: writes one byte from a valid buffer.
        let n = unsafe { libc::write(fd.as_raw_fd(), b"1".as_ptr().cast(), 1) };
        if n == 1 {
            return Ok(());
        }
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return Err(Errno::last());
    }
}

/// Writes `uid_map` then `gid_map` of `pid`, each with a single `write` (the kernel takes a map
/// only whole, once). A privileged daemon leaves `setgroups` allowed, so the child may call it;
/// an unprivileged one (user mode) writes `deny` to `setgroups` first, as the kernel demands.
fn write_maps(plan: &Plan, pid: Pid) -> Result<(), SpawnError> {
    // user_namespaces(7): an unprivileged writer of gid_map must first disable setgroups.
    let deny = String::from("deny");
    let setgroups = plan.deny_setgroups.then_some(("setgroups", &deny));
    let maps = [("uid_map", &plan.uid_map), ("gid_map", &plan.gid_map)];
    for (file, text) in setgroups.into_iter().chain(maps) {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        let err = |errno| SpawnError::IdMap {
            path: path.clone(),
            value: text.clone(),
            errno,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| err(io_errno(&e)))?;
        let n = f.write(text.as_bytes()).map_err(|e| err(io_errno(&e)))?;
        if n != text.len() {
            return Err(err(Errno::EIO));
        }
    }
    Ok(())
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn open_fd(path: &Path, flags: libc::c_int, what: &'static str) -> Result<OwnedFd, SpawnError> {
    let err = |errno| SpawnError::Setup {
        what,
        path: path.to_path_buf(),
        errno,
    };
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| err(Errno::EINVAL))?;
    // SAFETY: valid C string; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err(Errno::last()));
    }
    // SAFETY: just opened.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    above_stdio(fd).map_err(err)
}

/// A close-on-exec pipe whose ends are both above 2.
fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let err = |errno| SpawnError::Setup {
        what: "creating",
        path: PathBuf::from("pipe"),
        errno,
    };
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(err(Errno::last()));
    }
    // SAFETY: pipe2 returned two new descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r).map_err(err)?, above_stdio(w).map_err(err)?))
}

/// Moves a descriptor that landed on 0–2 (a daemon started with closed stdio) above 2, so the
/// child's stdio setup can never overwrite it.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicating a descriptor we own; the result is new and ours.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(Errno::last());
    }
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}
