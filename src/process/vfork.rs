//! The fast path of [`spawn`](super::spawn): `clone3(CLONE_VM | CLONE_VFORK)`, the way glibc's
//! `posix_spawn` starts a program. The child borrows the daemon's memory instead of copying its
//! page tables (forking a 30 MB daemon cost ~30 % of its CPU in a burst of 1000 starts,
//! docs/PERFORMANCE.md finding 5), and the parent sleeps until the child has exec'ed or exited.
//!
//! What sharing the memory demands of the child (all of it holds for [`super::exec::run`]):
//! - **its own stack**: it runs on the [`Stack`] below, entered by a few lines of assembly right
//!   after the system call, because returning from a system-call wrapper on a stack the parent
//!   will return through again corrupts it. The stack is the parent thread's, reused: the child
//!   is gone from it when clone3 returns;
//! - **no writes to the parent's state**: it only reads the [`Plan`] and writes its own stack
//!   and errno (the parent thread's errno, as in `posix_spawn`: the parent reads it only after a
//!   failed clone3, when there is no child);
//! - **no signal handler of the daemon may run in it**: the caller blocks every signal across
//!   clone3; the child resets every disposition to the default before it unblocks them (it does
//!   not share the handler table: no `CLONE_SIGHAND`);
//! - exec failure still reaches the parent through the close-on-exec pipe: the record is written
//!   before `_exit`, so it is in the pipe when the parent wakes.
//!
//! Where the kernel refuses a process that shares its memory, or the child must wait for the
//! parent, the plan takes the copying path ([`usable`]): entering or creating a user namespace
//! (`userns_install` and `unshare(CLONE_NEWUSER)` demand a single-user mm; the parent writes
//! the id maps while the child waits — with `CLONE_VFORK` it would wait forever), a time
//! namespace (`timens_install`: `current_is_single_threaded`), joining a PID namespace (an
//! extra fork that outlives the middle process), and the legacy clone fallback. Only x86-64 has
//! the entry assembly; other architectures always copy.

use std::cell::Cell;
use std::ffi::c_void;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::exec::{self, ChildFds, CloneArgs};
use super::plan::{NsKind, Plan};
use super::spawn::CLONE_INTO_CGROUP;

/// The child's stack. `exec::run`'s deepest frame needs well under 4 KiB; 64 KiB leaves room
/// for whatever a libc call between clone and exec may want.
const STACK_SIZE: usize = 64 * 1024;

/// Whether this plan may be started with a shared address space (see the module docs).
pub(super) fn usable(plan: &Plan, legacy: bool) -> bool {
    cfg!(target_arch = "x86_64")
        && !legacy
        && !plan.early_maps
        && !plan.late_user
        && !plan.pid_join
        && plan.time_offsets.is_none()
        && plan.clone_flags & libc::CLONE_NEWUSER as u64 == 0
        && plan.unshare_flags & libc::CLONE_NEWUSER == 0
        && !plan
            .joins
            .iter()
            .any(|(kind, _)| matches!(kind, NsKind::User | NsKind::Time))
}

/// The outcome of [`clone_vfork`].
pub(super) enum Vforked {
    /// The child has exec'ed or exited (its record, if any, is in the pipe).
    Child { pid: Pid, pidfd: Option<OwnedFd> },
    /// This kernel does not take the call (clone3 missing or too old for `CLONE_INTO_CGROUP`,
    /// or a flag combination it refuses with a shared mm): take the copying path.
    Unsupported,
}

/// Starts the child of `plan` with `clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | flags)` on
/// its own stack, born in `cgroup`. Returns once the child has exec'ed or exited.
///
/// The caller must have blocked every signal (see the module docs).
pub(super) fn clone_vfork(
    plan: &Plan,
    fds: &ChildFds,
    cgroup: Option<RawFd>,
) -> Result<Vforked, Errno> {
    let stack = STACK.with(Cell::take);
    let stack = match stack {
        Some(s) => s,
        None => Stack::new()?,
    };
    let outcome = clone_on(&stack, plan, fds, cgroup);
    STACK.with(|c| c.set(Some(stack)));
    outcome
}

#[cfg(target_arch = "x86_64")]
fn clone_on(
    stack: &Stack,
    plan: &Plan,
    fds: &ChildFds,
    cgroup: Option<RawFd>,
) -> Result<Vforked, Errno> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64 | plan.clone_flags,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: stack.len as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let child = ChildArgs { plan, fds };
    let ret: i64;
    // SAFETY: clone3 with a stack of our own: the kernel starts the child with rsp at the top
    // of `stack` and every other register as the parent's but rax = 0, so the child jumps to
    // `child_main` (r13) with `&child` (r12) as its argument and never comes back (`-> !`;
    // ud2 would trap). The stack top is 16-byte aligned (page-aligned mapping), so the `call`
    // leaves rsp ≡ 8 mod 16 at entry as the ABI wants. The parent side touches no stack and
    // only rax, rcx and r11 (the syscall's clobbers). `args`, `child` and `stack` stay alive
    // and unmoved until the parent resumes, which CLONE_VFORK makes happen only after the
    // child's exec or exit.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &mut args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") &child as *const ChildArgs as *mut c_void,
            in("r13") child_main as extern "C" fn(*mut c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        let errno = Errno::from_raw(i32::try_from(-ret).unwrap_or(libc::EINVAL));
        return match errno {
            Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL => Ok(Vforked::Unsupported),
            e => Err(e),
        };
    }
    let pid = Pid::from_raw(libc::pid_t::try_from(ret).map_err(|_| Errno::EOVERFLOW)?);
    // SAFETY: CLONE_PIDFD stored a new descriptor we own.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok(Vforked::Child { pid, pidfd })
}

#[cfg(not(target_arch = "x86_64"))]
fn clone_on(_: &Stack, _: &Plan, _: &ChildFds, _: Option<RawFd>) -> Result<Vforked, Errno> {
    Ok(Vforked::Unsupported)
}

/// What the child gets: pointers into the parent's frame, valid while the parent sleeps.
struct ChildArgs<'a> {
    plan: &'a Plan,
    fds: &'a ChildFds,
}

/// The child's first Rust frame, on its own stack.
extern "C" fn child_main(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the `ChildArgs` of `clone_on`, alive in the sleeping parent's frame;
    // `run` is async-signal-safe, writes nothing of the parent's, and execs or `_exit`s.
    unsafe {
        let child = &*(arg as *const ChildArgs);
        exec::run(child.plan, child.fds, false)
    }
}

thread_local! {
    /// This thread's child stack, kept between spawns (the manager spawns from one thread).
    static STACK: Cell<Option<Stack>> = const { Cell::new(None) };
}

/// An anonymous mapping with a guard page at its low end.
struct Stack {
    base: *mut c_void,
    len: usize,
}

impl Stack {
    fn new() -> Result<Stack, Errno> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = STACK_SIZE + page;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let stack = Stack { base, len };
        // An overflow faults on the guard page instead of writing the daemon's memory.
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } < 0 {
            return Err(Errno::last());
        }
        Ok(stack)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used (no child runs on it once clone3 returned).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::spec::{IdMap, NsMode, SpawnSpec};

    fn plan(set: impl FnOnce(&mut SpawnSpec)) -> Plan {
        let mut spec = SpawnSpec::new(["/bin/true"]);
        set(&mut spec);
        Plan::new(&spec).unwrap()
    }

    fn open_ns(kind: &str) -> NsMode {
        NsMode::Join(
            std::fs::File::open(format!("/proc/self/ns/{kind}"))
                .unwrap()
                .into(),
        )
    }

    #[test]
    fn plain_and_unshared_namespaces_share_the_memory() {
        let on_x86 = cfg!(target_arch = "x86_64");
        assert_eq!(usable(&plan(|_| {}), false), on_x86);
        let p = plan(|s| {
            s.namespaces.net = NsMode::New;
            s.namespaces.pid = NsMode::New;
            s.namespaces.mount = NsMode::New;
            s.namespaces.uts = NsMode::New;
            s.namespaces.cgroup = NsMode::New;
        });
        assert_eq!(usable(&p, false), on_x86);
        let p = plan(|s| s.namespaces.net = open_ns("net"));
        assert_eq!(usable(&p, false), on_x86);
    }

    #[test]
    fn what_the_kernel_refuses_or_the_parent_must_answer_copies() {
        assert!(!usable(&plan(|_| {}), true), "legacy clone");
        let user = plan(|s| {
            s.namespaces.user = NsMode::New;
            s.namespaces.uid_map = vec![IdMap::root_to(100000)];
            s.namespaces.gid_map = vec![IdMap::root_to(100000)];
        });
        assert!(
            !usable(&user, false),
            "user first: the parent writes the maps"
        );
        let late_user = plan(|s| {
            s.namespaces.user = NsMode::New;
            s.namespaces.net = open_ns("net");
            s.namespaces.uid_map = vec![IdMap::root_to(100000)];
            s.namespaces.gid_map = vec![IdMap::root_to(100000)];
        });
        assert!(!usable(&late_user, false), "late user namespace");
        let time = plan(|s| s.namespaces.time = NsMode::New);
        assert!(!usable(&time, false), "time namespace");
        assert!(!usable(&plan(|s| s.namespaces.pid = open_ns("pid")), false));
        assert!(!usable(
            &plan(|s| s.namespaces.user = open_ns("user")),
            false
        ));
        assert!(!usable(
            &plan(|s| s.namespaces.time = open_ns("time")),
            false
        ));
    }
}
