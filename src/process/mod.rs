//! Process spawning and reaping: the lower layer under the manager. It knows nothing of units or
//! D-Bus; it takes a plain [`SpawnSpec`] (argv, environment, numeric credentials, open stdio
//! descriptors, a cgroup directory, namespace modes and setup data) and returns a [`Child`] with
//! a pidfd. Descriptors are exposed raw (`OwnedFd`/`AsFd`) for the daemon's event loop.
//!
//! Rooms:
//! - [`spec`]: what to start; [`resolve_user`] turns names into numbers *before* fork;
//! - `plan`: the parent's preparation — every string, pointer array and path the child touches
//!   is allocated before clone, and the namespace layout is decided (user first vs joins first);
//! - `exec`: the child between clone and exec, async-signal-safe only; `sys`: the raw system
//!   calls it needs that libc has no wrapper for (openat2, the mount API, capset);
//! - [`output`]: opening a `file:` output without following symlinks or blocking;
//! - `spawn`: clone3 with `CLONE_INTO_CGROUP | CLONE_PIDFD`, the pipe protocol, the fallback;
//! - `vfork`: the usual clone3, `CLONE_VM | CLONE_VFORK` on a stack of the child's own;
//! - [`reap`]: the SIGCHLD signalfd, the `waitpid(-1)` drain, subreaper, exit statuses;
//! - [`signal`]: pidfd/pid/process-group signalling.
//!
//! Kernel rules relied on (each is commented where it is used):
//! - `clone3(CLONE_INTO_CGROUP)` (5.7+): the child is born in its cgroup, so limits hold from
//!   its first instruction — no window outside it; `CLONE_PIDFD`: no pid-reuse races;
//! - code between fork and exec must be async-signal-safe: no allocation, locks or logging;
//!   failures go to the parent as a fixed-size record on a close-on-exec pipe (EOF = exec'ed);
//! - DESIGN §8: a time namespace's offsets must be written between `unshare(CLONE_NEWTIME)` and
//!   entering it; a child can't write its own uid_map to another uid, the parent does while the
//!   child waits; existing namespaces are joined before a user namespace is created; pivot_root
//!   fails with EINVAL on the initramfs (fallback `MS_MOVE` + `chroot`);
//! - blocked and ignored signals survive exec: the child resets both;
//! - signals coalesce: the reaper always drains `waitpid(-1, WNOHANG)`;
//! - pid → unit is registered right after `spawn` returns, in the task that also reaps, so no
//!   exit can be observed before its registration (see [`reap`]).

pub mod error;
mod exec;
pub mod net;
pub mod output;
mod plan;
pub mod reap;
pub mod signal;
mod spawn;
pub mod spec;
mod sys;
mod vfork;

pub use error::{SpawnError, Step};
pub use output::{OutputError, OutputRefused, open_output};
pub use reap::{ExitStatus, Reaper, block_sigchld, reap_all, set_child_subreaper, wait_pid};
pub use signal::{kill, kill_process_group, pidfd_open, pidfd_send_signal};
pub use spawn::{Child, spawn};
pub use spec::{
    Bind, ClockOffset, Credentials, IdMap, MountSetup, Namespaces, NsMode, Privileges, Propagation,
    ResolveError, SpawnSpec, Stdio, resolve_group, resolve_user,
};
