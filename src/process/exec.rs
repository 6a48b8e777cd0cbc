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
//! 10. mounts (propagation, root self-bind, /proc, cgroup2 — or a bind of the birth cgroup where
//!     cgroup2 already is mounted, see [`MountOp::Cgroup2`] —, /tmp, binds, read-only,
//!     pivot_root);
//! 11. joins layout with a new user namespace: `unshare(CLONE_NEWUSER)`, ask for the maps, wait;
//! 12. `chdir`, `umask`, stdio, close-on-exec for every other descriptor;
//! 13. `setgroups` → `setresgid` → `setresuid` (groups and gid while still privileged);
//! 14. `execve`.

use std::mem::{MaybeUninit, size_of};
use std::os::fd::RawFd;

use super::error::Step;
use super::plan::{CLONE_NEWTIME, MountOp, Plan, StdioSrc};

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

/// `struct mount_attr` (5.12+).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;

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

fn opt_ptr(c: &Option<std::ffi::CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
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

        for (i, op) in plan.mounts.iter().enumerate() {
            mount_op(op, i as u32, fds);
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

        libc::execve(plan.path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(fds, Step::Exec, 0)
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

unsafe fn mount_op(op: &MountOp, i: u32, fds: &ChildFds) {
    let step = op.step();
    unsafe {
        match op {
            MountOp::Mount {
                source,
                target,
                fstype,
                flags,
                data,
                optional,
            } => {
                if *optional && libc::access(target.as_ptr(), libc::F_OK) != 0 {
                    return;
                }
                let rc = libc::mount(
                    opt_ptr(source),
                    target.as_ptr(),
                    opt_ptr(fstype),
                    *flags,
                    opt_ptr(data).cast(),
                );
                check(rc, fds, step, i);
            }
            MountOp::Cgroup2 {
                target,
                flags,
                bind,
            } => {
                if libc::access(target.as_ptr(), libc::F_OK) != 0 {
                    return;
                }
                let fstype = c"cgroup2".as_ptr();
                let rc = libc::mount(fstype, target.as_ptr(), fstype, *flags, std::ptr::null());
                if rc == 0 {
                    return;
                }
                // The same cgroup2 superblock is already mounted with its root at `target`:
                // the kernel refuses a second mount of it there (EBUSY). Bind the birth
                // cgroup's directory instead: the same tree the namespace's mount would show.
                match bind {
                    Some(source) if errno() == libc::EBUSY => {
                        let rc = libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        );
                        check(rc, fds, step, i);
                    }
                    _ => fail(fds, step, i),
                }
            }
            MountOp::Propagation { flags } => {
                let rc = libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    *flags,
                    std::ptr::null(),
                );
                check(rc, fds, step, i);
            }
            MountOp::Mkdirs { dirs } => {
                for d in dirs {
                    if libc::mkdir(d.as_ptr(), 0o755) < 0 && errno() != libc::EEXIST {
                        fail(fds, step, i);
                    }
                }
            }
            MountOp::CreateTarget { source, target } => {
                let mut st: libc::stat = MaybeUninit::zeroed().assume_init();
                if libc::lstat(target.as_ptr(), &mut st) == 0 {
                    return;
                }
                check(libc::stat(source.as_ptr(), &mut st), fds, step, i);
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    if libc::mkdir(target.as_ptr(), 0o755) < 0 && errno() != libc::EEXIST {
                        fail(fds, step, i);
                    }
                } else {
                    let fd = libc::open(
                        target.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOCTTY,
                        0o644 as libc::c_uint,
                    );
                    check(fd, fds, step, i);
                    libc::close(fd);
                }
            }
            MountOp::ReadOnly { target } => make_read_only(target.as_ptr(), fds, i),
            MountOp::PivotRoot { root } => pivot_root(root.as_ptr(), fds, i),
        }
    }
}

/// Read-only for the mount at `target` and every mount below it: `mount_setattr(AT_RECURSIVE)`
/// (5.12+). Fallback: a bind remount of the top mount, keeping its nosuid/nodev/noexec/atime
/// flags — in a user namespace those are locked and dropping them is EPERM.
unsafe fn make_read_only(target: *const libc::c_char, fds: &ChildFds, i: u32) {
    unsafe {
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target,
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        );
        if rc == 0 {
            return;
        }
        if errno() != libc::ENOSYS {
            fail(fds, Step::ReadOnly, i);
        }
        // statvfs's ST_* flags have the MS_* values; glibc takes them from statfs(2) f_flags.
        let mut sf: libc::statvfs = MaybeUninit::zeroed().assume_init();
        check(libc::statvfs(target, &mut sf), fds, Step::ReadOnly, i);
        let keep = (sf.f_flag as libc::c_ulong)
            & (libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC
                | libc::MS_NOATIME
                | libc::MS_NODIRATIME
                | libc::MS_RELATIME);
        let rc = libc::mount(
            std::ptr::null(),
            target,
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
            std::ptr::null(),
        );
        check(rc, fds, Step::ReadOnly, i);
    }
}

/// Enters `root` (already a mount point: the plan bind-mounts it onto itself first).
unsafe fn pivot_root(root: *const libc::c_char, fds: &ChildFds, i: u32) {
    unsafe {
        check(libc::chdir(root), fds, Step::PivotRoot, i);
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
