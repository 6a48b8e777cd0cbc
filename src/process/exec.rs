//! The child's half: from clone returning 0 to `execve`.
//!
//! Everything here runs in a copy of a multi-threaded daemon with only the calling thread
//! alive — or, on the usual path ([`super::vfork`]), in the daemon's own memory while the
//! parent thread sleeps, so it also must not write anything of the parent's (it writes only its
//! stack, errno and the kernel's state of the child) — so it is **async-signal-safe only**: raw system calls on data the parent prepared
//! ([`Plan`]), no allocation, no locks, no logging, no panics (no indexing that could fail, no
//! overflowing arithmetic). glibc's `setuid`/`setgid`/`setgroups` are avoided: in a process
//! glibc believes multi-threaded they broadcast to the other threads (which don't exist here);
//! the raw system calls change exactly this process.
//!
//! On failure the child writes one fixed-size [`Record`] (step, index, errno) to the
//! close-on-exec error pipe and `_exit(127)`s; a successful `execve` closes the pipe, which the
//! parent reads as EOF.
//!
//! Order, and why:
//! 1. (fallback without clone3) write "0" to `cgroup.procs`: join the cgroup before anything
//!    else runs;
//! 2. reset every signal disposition to default and unblock all signals: the daemon ignores
//!    SIGPIPE and blocks SIGCHLD for its signalfd, and ignored/blocked state survives exec;
//! 3. `setsid`;
//! 4. user-first layout: ask the parent for the id maps and wait for its byte;
//! 5. `setns` joins (user first, mount last);
//! 6. joined PID namespace: `setns(CLONE_NEWPID)` only moves *children*, so fork once more with
//!    `CLONE_PARENT` — the grandchild becomes the daemon's child (so the daemon reaps it, and
//!    `pidfd_open` on it is race-free); the middle process reports the grandchild's pid and exits.
//!    Consequence: when the pod's PID 1 dies, it stays in `zap_pid_ns_processes` until the
//!    daemon has reaped every joined process of that namespace — never block on the pod's main
//!    process while its joiners are unreaped (the non-blocking reaper never does);
//! 7. `unshare` the remaining new namespaces;
//! 8. time namespace, DESIGN §8's recipe: `unshare(CLONE_NEWTIME)` → write
//!    `/proc/self/timens_offsets` → `setns(/proc/self/ns/time_for_children)`. Entering the time
//!    namespace with `setns` moves the (single-threaded) caller itself, so the process that
//!    execs is already inside: no extra fork. clone3 with CLONE_NEWTIME would freeze the offsets
//!    at 0 before they could be written (EACCES). Done before mounts, while `/proc` is the host's;
//! 9. `lo` up, hostname, sysctls — also before mounts: `/proc/sys` resolves per the caller's
//!    namespaces, and after `pivot_root` there may be no `/proc`;
//! 10. mounts, by descriptor (see **Mounts** below): `/` made a slave, the root bound onto
//!     itself, a fresh /proc, cgroup2 — or a bind of the birth cgroup where cgroup2 already is
//!     mounted, see [`MountOp::Cgroup2`] —, /tmp, binds, read-only paths, pivot_root, and last
//!     the propagation asked for;
//! 11. joins layout with a new user namespace: `unshare(CLONE_NEWUSER)`, ask for the maps, wait;
//! 12. `chdir`, `umask`, stdio, close-on-exec for every other descriptor;
//! 13. capabilities and credentials, in this order, because each step needs what the next one
//!     takes away: drop every capability not in `capabilities` from the bounding set
//!     (`PR_CAPBSET_DROP` needs CAP_SETPCAP: still root); `PR_SET_KEEPCAPS` when ambient
//!     capabilities are wanted (else setuid to a non-root uid empties the permitted set);
//!     `setgroups` → `setresgid` → `setresuid` (groups and gid while still privileged); the
//!     ambient capabilities into the inheritable set (`capset`), then each raised
//!     (`PR_CAP_AMBIENT_RAISE` needs it permitted, inheritable and in the bounding set);
//!     `PR_SET_NO_NEW_PRIVS` last (it takes nothing the steps before need). Execve then gives a
//!     non-root service exactly its ambient set, and root every capability of its bounding set;
//! 14. `execve`.
//!
//! **Mounts** (the class of runc's CVE-2021-30465: a symlink inside a service's root that
//! points out of it, swapped in by whoever may write the root, redirects a bind mount or a
//! read-only remount onto the host). Every mount target is resolved inside the root with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)` — a symlink anywhere in the path is refused
//! (`ELOOP`, "the path goes through a symbolic link"), `..` and absolute names stay inside —
//! and the mount is attached to that descriptor with the mount API (`open_tree` for a bind,
//! `fsopen`/`fsmount` for proc, tmpfs, cgroup2; `move_mount` onto the target's descriptor), so
//! what was checked is what is mounted on: there is no second lookup to race. Read-only is set
//! on the detached copy before it is attached (`mount_setattr`), so it is never writable in the
//! namespace. A missing bind target is created one name at a time from the root, with
//! `mkdirat` or `O_CREAT | O_EXCL | O_NOFOLLOW` (neither follows a symlink) and opened again
//! without following one. Sources (a path of the daemon's view) and `root` itself are resolved
//! with `RESOLVE_NO_SYMLINKS` as well: the rule is the same everywhere, "no symlink in a mount
//! path", and a refused path names itself. The whole setup runs with `/` made a slave first,
//! so no mount of it ever reaches the host; `propagation` is applied to the service's `/` only
//! at the end: `shared` then shares the service's own later mounts with the namespaces it
//! makes (systemd's `MountFlags=shared` does the same), `private` cuts even the host's new
//! mounts off, `slave` keeps receiving them.

use std::ffi::{CStr, CString};
use std::mem::{MaybeUninit, size_of};
use std::os::fd::RawFd;

use super::error::Step;
use super::plan::{CLONE_NEWTIME, MountOp, Plan, StdioSrc};
use super::sys;
use crate::caps::CapSet;

/// What the child tells the parent.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Record {
    pub kind: u32,
    pub step: u32,
    pub index: u32,
    pub errno: i32,
    pub value: i64,
}

/// A step failed: `step`, `index`, `errno`.
pub(super) const RECORD_ERROR: u32 = 1;
/// The pid (in the parent's namespace) of the process that will exec: `value`.
pub(super) const RECORD_PID: u32 = 2;
/// The user namespace exists: write the maps, then send one byte on the go pipe.
pub(super) const RECORD_MAPS: u32 = 3;
pub(super) const RECORD_SIZE: usize = size_of::<Record>();

/// `struct clone_args` as of 5.7 (`CLONE_INTO_CGROUP`): `CLONE_ARGS_SIZE_VER2`, 88 bytes.
#[repr(C, align(8))]
#[derive(Debug, Default)]
pub(super) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// The descriptors the child works with (numbers valid in the child's copy of the table).
#[derive(Debug, Clone, Copy)]
pub(super) struct ChildFds {
    pub err_w: RawFd,
    pub err_r: RawFd,
    pub go_r: RawFd,
    pub go_w: RawFd,
    pub stdio: [StdioSrc; 3],
}

fn errno() -> i32 {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

fn send(fd: RawFd, rec: &Record) {
    loop {
        // SAFETY: writes RECORD_SIZE bytes from a valid struct; < PIPE_BUF, so atomic.
        let n = unsafe { libc::write(fd, (rec as *const Record).cast(), RECORD_SIZE) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return;
    }
}

fn fail_with(fds: &ChildFds, step: Step, index: u32, err: i32) -> ! {
    send(
        fds.err_w,
        &Record {
            kind: RECORD_ERROR,
            step: step as u32,
            index,
            errno: err,
            value: 0,
        },
    );
    // SAFETY: _exit is async-signal-safe and runs no destructors or atexit handlers.
    unsafe { libc::_exit(127) }
}

fn fail(fds: &ChildFds, step: Step, index: u32) -> ! {
    fail_with(fds, step, index, errno())
}

/// Fails the step when a libc-style return value is negative.
fn check<T: Into<i64>>(rc: T, fds: &ChildFds, step: Step, index: u32) {
    if rc.into() < 0 {
        fail(fds, step, index)
    }
}

/// Runs the child. Never returns: it execs or `_exit`s.
///
/// # Safety
/// Only in the child right after clone/fork, with `plan` and `fds` from the parent.
pub(super) unsafe fn run(plan: &Plan, fds: &ChildFds, legacy: bool) -> ! {
    // SAFETY (whole function): raw system calls on valid, NUL-terminated buffers the parent
    // prepared; no allocation happens anywhere below.
    unsafe {
        // Our copies of the parent's ends: the go pipe must read EOF once the parent closes it.
        libc::close(fds.err_r);
        libc::close(fds.go_w);

        if legacy && let Some(procs) = &plan.cgroup_procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check(fd, fds, Step::JoinCgroup, 0);
            // "0" means the writing process (cgroup v2).
            check(
                libc::write(fd, b"0".as_ptr().cast(), 1) as i64,
                fds,
                Step::JoinCgroup,
                0,
            );
            libc::close(fd);
        }

        reset_signals(fds);

        if plan.new_session {
            check(libc::setsid(), fds, Step::Setsid, 0);
        }

        if plan.early_maps {
            ask_for_maps(fds);
        }

        for (kind, fd) in &plan.joins {
            check(
                libc::setns(*fd, kind.flag()),
                fds,
                Step::Setns,
                *kind as u32,
            );
        }

        if plan.pid_join {
            fork_into_joined_pid_ns(fds);
        }

        if plan.unshare_flags != 0 {
            check(libc::unshare(plan.unshare_flags), fds, Step::Unshare, 0);
        }

        if let Some(lines) = &plan.time_offsets {
            enter_new_time_ns(lines, fds);
        }

        if plan.loopback {
            loopback_up(fds);
        }

        if let Some(h) = &plan.hostname {
            check(
                libc::sethostname(h.as_ptr().cast(), h.len()),
                fds,
                Step::Hostname,
                0,
            );
        }

        for (i, (path, value)) in plan.sysctls.iter().enumerate() {
            let i = i as u32;
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check(fd, fds, Step::Sysctl, i);
            let n = libc::write(fd, value.as_ptr().cast(), value.len());
            if n < 0 || n as usize != value.len() {
                fail(fds, Step::Sysctl, i);
            }
            libc::close(fd);
        }

        if !plan.mounts.is_empty() {
            mounts(plan, fds);
        }

        if plan.late_user {
            check(
                libc::unshare(libc::CLONE_NEWUSER),
                fds,
                Step::UnshareUser,
                0,
            );
            ask_for_maps(fds);
        }

        check(libc::chdir(plan.cwd.as_ptr()), fds, Step::Chdir, 0);
        libc::umask(plan.umask);
        setup_stdio(fds);
        // Whatever the daemon leaked without O_CLOEXEC stays out of the service (5.11+;
        // older kernels: ENOSYS/EINVAL, ignored — the daemon opens everything O_CLOEXEC).
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );

        let privileges = &plan.privileges;
        if let Some(keep) = privileges.bounding {
            drop_bounding(keep, fds);
        }
        let ambient = !privileges.ambient.is_empty();
        if ambient {
            // setresuid from 0 to another uid clears the permitted set unless this is set;
            // the ambient set can only hold what is permitted (and inheritable).
            check(
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
                fds,
                Step::KeepCaps,
                0,
            );
        }

        if let Some(c) = &plan.creds {
            let unprivileged = libc::geteuid() != 0;
            let same = c.uid == libc::getuid() && c.gid == libc::getgid();
            // An unprivileged daemon (user mode) can't call setgroups even to change nothing.
            if !(unprivileged && same) {
                // Denied by the parent for a user namespace it made unprivileged: EPERM.
                if !plan.deny_setgroups {
                    check(
                        libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr()),
                        fds,
                        Step::Setgroups,
                        0,
                    );
                }
                check(
                    libc::syscall(libc::SYS_setresgid, c.gid, c.gid, c.gid),
                    fds,
                    Step::Setgid,
                    0,
                );
                check(
                    libc::syscall(libc::SYS_setresuid, c.uid, c.uid, c.uid),
                    fds,
                    Step::Setuid,
                    0,
                );
            }
        }

        if ambient {
            raise_ambient(privileges.ambient, privileges.bounding, fds);
        }
        if privileges.no_new_privs {
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                fds,
                Step::NoNewPrivs,
                0,
            );
        }

        libc::execve(plan.path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(fds, Step::Exec, 0)
    }
}

/// Drops from the bounding set every capability not in `keep`. Numbers past the kernel's last
/// capability give EINVAL, which ends the walk. Needs CAP_SETPCAP (the daemon has it as root,
/// and so has root of a new user namespace).
unsafe fn drop_bounding(keep: CapSet, fds: &ChildFds) {
    for cap in 0..64u32 {
        if keep.has_bit(cap) {
            continue;
        }
        // SAFETY: a prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc < 0 {
            if errno() == libc::EINVAL {
                return;
            }
            fail(fds, Step::Bounding, cap);
        }
    }
}

/// Raises `ambient` in the ambient set, after the switch to the service's credentials: each
/// capability must be permitted (kept across setuid by PR_SET_KEEPCAPS) and inheritable (set
/// here, the permitted and effective sets left as they are), and in the bounding set.
/// A capability outside the bounding set can't be made inheritable either: it is left out
/// there, so that the raise fails naming it.
unsafe fn raise_ambient(ambient: CapSet, bounding: Option<CapSet>, fds: &ChildFds) {
    let inheritable = ambient.bits() & bounding.map_or(u64::MAX, CapSet::bits);
    check(sys::set_inheritable(inheritable), fds, Step::Inheritable, 0);
    for cap in 0..64u32 {
        if !ambient.has_bit(cap) {
            continue;
        }
        // SAFETY: a prctl with integer arguments.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        check(rc, fds, Step::Ambient, cap);
    }
}

unsafe fn reset_signals(fds: &ChildFds) {
    // Raw rt_sigaction/rt_sigprocmask: glibc's wrappers refuse its two internal signals
    // (32, 33), and a daemon started with one of them ignored would pass that on. An all-zero
    // kernel `struct sigaction` is SIG_DFL, no flags, empty mask on every architecture.
    let dfl = [0u64; 4];
    let empty = 0u64;
    unsafe {
        // 1..=64: every standard and real-time signal; SIGKILL/SIGSTOP can't be changed.
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    size_of::<u64>(),
                );
            }
        }
        check(
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &empty as *const u64,
                std::ptr::null_mut::<u64>(),
                size_of::<u64>(),
            ),
            fds,
            Step::Signals,
            0,
        );
    }
}

unsafe fn ask_for_maps(fds: &ChildFds) {
    send(
        fds.err_w,
        &Record {
            kind: RECORD_MAPS,
            ..Record::default()
        },
    );
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a valid buffer.
        let n = unsafe { libc::read(fds.go_r, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // EOF: the parent gave up (it reports its own error).
        fail_with(
            fds,
            Step::WaitParent,
            0,
            if n == 0 { libc::EPIPE } else { errno() },
        );
    }
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fds.go_r) };
}

unsafe fn fork_into_joined_pid_ns(fds: &ChildFds) {
    unsafe {
        // CLONE_PARENT: the new process is the daemon's child, not ours. clone3 requires
        // exit_signal 0 with it (the parent's exit signal, SIGCHLD, is used).
        let args = CloneArgs {
            flags: libc::CLONE_PARENT as u64,
            ..CloneArgs::default()
        };
        let mut rc = libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        );
        if rc < 0 && errno() == libc::ENOSYS {
            rc = libc::syscall(
                libc::SYS_clone,
                libc::CLONE_PARENT as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            );
        }
        if rc < 0 {
            fail(fds, Step::ForkPid, 0);
        }
        if rc > 0 {
            send(
                fds.err_w,
                &Record {
                    kind: RECORD_PID,
                    value: rc,
                    ..Record::default()
                },
            );
            libc::_exit(0);
        }
    }
}

unsafe fn enter_new_time_ns(lines: &[Vec<u8>; 2], fds: &ChildFds) {
    unsafe {
        check(libc::unshare(CLONE_NEWTIME), fds, Step::TimeNamespace, 0);
        let fd = libc::open(
            c"/proc/self/timens_offsets".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        check(fd, fds, Step::TimeOffsets, 0);
        for line in lines {
            let n = libc::write(fd, line.as_ptr().cast(), line.len());
            if n < 0 || n as usize != line.len() {
                fail(fds, Step::TimeOffsets, 0);
            }
        }
        libc::close(fd);
        let ns = libc::open(
            c"/proc/self/ns/time_for_children".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        check(ns, fds, Step::TimeEnter, 0);
        check(libc::setns(ns, CLONE_NEWTIME), fds, Step::TimeEnter, 0);
        libc::close(ns);
    }
}

unsafe fn loopback_up(fds: &ChildFds) {
    // SAFETY: async-signal-safe raw syscalls (see net::set_loopback_up).
    check(
        unsafe { super::net::set_loopback_up() },
        fds,
        Step::Loopback,
        0,
    );
}

/// The directory every mount target is resolved in: `/`, or the service's root once it is
/// bound onto itself. A descriptor of the child's, closed when the setup is done (and at exec).
struct Mounter<'f> {
    fds: &'f ChildFds,
    root: libc::c_int,
}

/// `O_PATH` descriptors: they name a place without opening it (no read, no side effect).
const PATH_FLAGS: u64 = (libc::O_PATH | libc::O_CLOEXEC) as u64;
/// Every path inside the root: no symlink followed, `..` and absolute names kept inside it.
const IN_ROOT: u64 = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_SYMLINKS;

impl Mounter<'_> {
    fn fail(&self, step: Step, i: u32) -> ! {
        fail(self.fds, step, i)
    }

    fn check(&self, rc: libc::c_int, step: Step, i: u32) -> libc::c_int {
        if rc < 0 {
            self.fail(step, i)
        }
        rc
    }

    /// `openat2(dir, path, O_PATH | extra, resolve)`; -1 and errno on failure.
    fn open(&self, dir: libc::c_int, path: &CStr, extra: libc::c_int, resolve: u64) -> libc::c_int {
        let how = sys::OpenHow {
            flags: PATH_FLAGS | extra as u64,
            mode: 0,
            resolve,
        };
        // SAFETY: a NUL-terminated path and a valid `open_how`.
        unsafe { sys::openat2(dir, path.as_ptr(), &how) }
    }

    /// A target inside the root, which must exist.
    fn target(&self, path: &CStr, i: u32) -> libc::c_int {
        let fd = self.open(self.root, path, 0, IN_ROOT);
        self.check(fd, Step::MountTarget, i)
    }

    /// A target inside the root, created when missing — each missing directory on the way, and
    /// the last name as a directory (`dir`) or an empty file — one name at a time from the
    /// root, never through a symlink (`mkdirat` and `O_CREAT | O_EXCL` don't follow one; the
    /// name is opened again with `RESOLVE_NO_SYMLINKS` right after).
    fn create_target(&self, path: &CStr, names: &[CString], dir: bool, i: u32) -> libc::c_int {
        let fd = self.open(self.root, path, 0, IN_ROOT);
        if fd >= 0 || errno() != libc::ENOENT {
            return self.check(fd, Step::MountTarget, i);
        }
        let mut cur = self.root;
        for (n, name) in names.iter().enumerate() {
            let last = n + 1 == names.len();
            let mut next = self.open(cur, name, 0, IN_ROOT);
            if next < 0 && errno() == libc::ENOENT {
                // SAFETY: a NUL-terminated name relative to a directory descriptor we hold.
                let rc = unsafe {
                    if last && !dir {
                        let f = libc::openat(
                            cur,
                            name.as_ptr(),
                            libc::O_WRONLY
                                | libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_NOFOLLOW
                                | libc::O_NOCTTY
                                | libc::O_CLOEXEC,
                            0o644 as libc::c_uint,
                        );
                        if f >= 0 {
                            libc::close(f);
                        }
                        f
                    } else {
                        libc::mkdirat(cur, name.as_ptr(), 0o755)
                    }
                };
                if rc < 0 && errno() != libc::EEXIST {
                    self.fail(Step::BindTarget, i)
                }
                next = self.open(cur, name, 0, IN_ROOT);
            }
            if cur != self.root {
                // SAFETY: a descriptor this walk opened.
                unsafe { libc::close(cur) };
            }
            cur = self.check(next, Step::MountTarget, i);
        }
        cur
    }

    /// Attaches the detached mount `tree` onto `target`; closes both.
    fn attach(&self, tree: libc::c_int, target: libc::c_int, i: u32) {
        self.check(sys::move_mount_fd(tree, target), Step::Mount, i);
        // SAFETY: descriptors of ours.
        unsafe {
            libc::close(tree);
            libc::close(target);
        }
    }

    /// A detached copy of the mount tree at `fd` (a bind mount not yet attached).
    fn clone_tree(&self, fd: libc::c_int, i: u32) -> libc::c_int {
        // SAFETY: an empty path relative to a descriptor.
        let tree = unsafe {
            sys::open_tree(
                fd,
                c"".as_ptr(),
                sys::OPEN_TREE_CLONE
                    | sys::OPEN_TREE_CLOEXEC
                    | sys::AT_RECURSIVE
                    | sys::AT_EMPTY_PATH,
            )
        };
        self.check(tree, Step::Mount, i)
    }

    /// A new file system of type `fstype`, detached.
    fn fresh(
        &self,
        fstype: &CStr,
        attrs: u64,
        option: Option<(&CStr, &CStr)>,
    ) -> Result<libc::c_int, i32> {
        // SAFETY: NUL-terminated strings; descriptors of ours.
        unsafe {
            let fs = sys::fsopen(fstype.as_ptr());
            if fs < 0 {
                return Err(errno());
            }
            // The source mountinfo shows, as `mount -t tmpfs tmpfs /tmp` would give it.
            let mut rc = sys::fsconfig(
                fs,
                sys::FSCONFIG_SET_STRING,
                c"source".as_ptr(),
                fstype.as_ptr().cast(),
            );
            if rc == 0
                && let Some((key, value)) = option
            {
                rc = sys::fsconfig(
                    fs,
                    sys::FSCONFIG_SET_STRING,
                    key.as_ptr(),
                    value.as_ptr().cast(),
                );
            }
            if rc == 0 {
                rc = sys::fsconfig(
                    fs,
                    sys::FSCONFIG_CMD_CREATE,
                    std::ptr::null(),
                    std::ptr::null(),
                );
            }
            let m = if rc == 0 { sys::fsmount(fs, attrs) } else { -1 };
            let err = errno();
            libc::close(fs);
            if m < 0 { Err(err) } else { Ok(m) }
        }
    }

    /// Runs one op (see [`MountOp`]).
    fn run(&mut self, op: &MountOp, i: u32) {
        match op {
            MountOp::Isolate => {
                // SAFETY: a remount of "/" in our own mount namespace.
                let rc = unsafe {
                    libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_SLAVE,
                        std::ptr::null(),
                    )
                };
                self.check(rc, Step::Propagation, i);
            }
            MountOp::Root { path } => {
                // The root itself is a path of the daemon's view; no symlink followed either.
                let dir = self.open(
                    libc::AT_FDCWD,
                    path,
                    libc::O_DIRECTORY,
                    sys::RESOLVE_NO_SYMLINKS,
                );
                let dir = self.check(dir, Step::Root, i);
                let tree = self.clone_tree(dir, i);
                self.check(sys::move_mount_fd(tree, dir), Step::Root, i);
                // SAFETY: ours. `tree` now is the attached mount: the new root.
                unsafe {
                    libc::close(dir);
                    libc::close(self.root);
                }
                self.root = tree;
            }
            MountOp::Fresh {
                fstype,
                target,
                attrs,
                option,
            } => {
                let t = self.target(target, i);
                match self.fresh(fstype, *attrs, *option) {
                    Ok(m) => self.attach(m, t, i),
                    Err(e) => fail_with(self.fds, Step::Mount, i, e),
                }
            }
            MountOp::Cgroup2 {
                target,
                attrs,
                bind,
            } => {
                let t = self.open(self.root, target, 0, IN_ROOT);
                if t < 0 && errno() == libc::ENOENT {
                    return;
                }
                let t = self.check(t, Step::MountTarget, i);
                let m = match self.fresh(c"cgroup2", *attrs, None) {
                    Ok(m) => m,
                    Err(e) => fail_with(self.fds, Step::Mount, i, e),
                };
                if sys::move_mount_fd(m, t) == 0 {
                    // SAFETY: ours.
                    unsafe {
                        libc::close(m);
                        libc::close(t);
                    }
                    return;
                }
                // The same cgroup2 superblock already mounted with its root at `target` may be
                // refused (EBUSY): bind the birth cgroup's directory, the same tree the
                // namespace's mount shows.
                match bind {
                    Some(source) if errno() == libc::EBUSY => {
                        let src = self.open(
                            libc::AT_FDCWD,
                            source,
                            libc::O_DIRECTORY,
                            sys::RESOLVE_NO_SYMLINKS,
                        );
                        let src = self.check(src, Step::MountSource, i);
                        let tree = self.clone_tree(src, i);
                        // SAFETY: ours.
                        unsafe { libc::close(src) };
                        self.attach(tree, t, i);
                    }
                    _ => self.fail(Step::Mount, i),
                }
            }
            MountOp::Bind {
                source,
                target,
                components,
                read_only,
            } => {
                let src = self.open(libc::AT_FDCWD, source, 0, sys::RESOLVE_NO_SYMLINKS);
                let src = self.check(src, Step::MountSource, i);
                // SAFETY: an all-zero stat is a valid out-buffer; fstat fills it.
                let mut st: libc::stat = unsafe { MaybeUninit::zeroed().assume_init() };
                // SAFETY: fstat of an O_PATH descriptor (allowed since 3.6).
                self.check(unsafe { libc::fstat(src, &mut st) }, Step::MountSource, i);
                let tree = self.clone_tree(src, i);
                // SAFETY: ours.
                unsafe { libc::close(src) };
                let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                let t = self.create_target(target, components, is_dir, i);
                if *read_only {
                    // Read-only before it is attached: never writable in the namespace.
                    self.check(
                        sys::mount_setattr_fd(tree, sys::MOUNT_ATTR_RDONLY),
                        Step::ReadOnly,
                        i,
                    );
                }
                self.attach(tree, t, i);
            }
            MountOp::ReadOnly { target } => {
                let t = self.target(target, i);
                let tree = self.clone_tree(t, i);
                self.check(
                    sys::mount_setattr_fd(tree, sys::MOUNT_ATTR_RDONLY),
                    Step::ReadOnly,
                    i,
                );
                self.attach(tree, t, i);
            }
            MountOp::PivotRoot => {
                // SAFETY: fchdir to the root we hold, then the pivot on ".".
                unsafe {
                    self.check(libc::fchdir(self.root), Step::PivotRoot, i);
                    pivot_root(self.fds, i);
                }
            }
            MountOp::Propagation { flags } => {
                // SAFETY: a remount of the (new) "/" in our own mount namespace.
                let rc = unsafe {
                    libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        *flags,
                        std::ptr::null(),
                    )
                };
                self.check(rc, Step::Propagation, i);
            }
        }
    }
}

/// Runs the mount setup of the plan, in order.
unsafe fn mounts(plan: &Plan, fds: &ChildFds) {
    let mut m = Mounter { fds, root: -1 };
    let root = m.open(libc::AT_FDCWD, c"/", libc::O_DIRECTORY, 0);
    m.root = m.check(root, Step::MountTarget, 0);
    for (i, op) in plan.mounts.iter().enumerate() {
        m.run(op, i as u32);
    }
    // SAFETY: ours.
    unsafe { libc::close(m.root) };
}

/// Enters the root the caller has made its working directory (a mount point: the plan binds
/// it onto itself first).
unsafe fn pivot_root(fds: &ChildFds, i: u32) {
    unsafe {
        let dot = c".".as_ptr();
        let rc = libc::syscall(libc::SYS_pivot_root, dot, dot);
        if rc == 0 {
            // pivot_root(".", ".") stacks the old root on top of the new one. Make it a slave
            // first so that detaching it can never propagate an unmount to the host (a
            // shared / would), then detach it.
            let rc = libc::mount(
                std::ptr::null(),
                dot,
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            );
            check(rc, fds, Step::PivotRoot, i);
            check(
                libc::umount2(dot, libc::MNT_DETACH),
                fds,
                Step::PivotRoot,
                i,
            );
        } else if errno() == libc::EINVAL {
            // The initramfs (rootfs) can't be pivoted away (DESIGN §8): move the new root over
            // / and chroot into it, as `runc --no-pivot` and switch_root do.
            let rc = libc::mount(
                dot,
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            );
            check(rc, fds, Step::PivotRoot, i);
            check(libc::chroot(dot), fds, Step::PivotRoot, i);
        } else {
            fail(fds, Step::PivotRoot, i);
        }
        check(libc::chdir(c"/".as_ptr()), fds, Step::PivotRoot, i);
    }
}

/// Puts the planned descriptors on 0, 1, 2. Sources below 3 are first moved above 2, so that
/// filling one slot can never overwrite another's source (stdout = the daemon's fd 0, say).
unsafe fn setup_stdio(fds: &ChildFds) {
    let mut src: [RawFd; 3] = [-1; 3];
    for (i, (slot, s)) in src.iter_mut().zip(fds.stdio.iter()).enumerate() {
        if let StdioSrc::Fd(fd) = *s {
            *slot = if fd < 3 {
                // SAFETY: duplicating a descriptor we hold.
                let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
                check(n, fds, Step::Stdio, i as u32);
                n
            } else {
                fd
            };
        }
    }
    for (target, fd) in (0..).zip(src) {
        if fd >= 0 {
            // dup2 clears O_CLOEXEC on the target.
            // SAFETY: both are descriptors of this process.
            check(
                unsafe { libc::dup2(fd, target) },
                fds,
                Step::Stdio,
                target as u32,
            );
        }
    }
}
