//! Errors of spawning, and the steps of the child between clone and exec that can fail.
//!
//! A failure in the child travels to the parent as a fixed-size record (step, index, errno) on
//! a close-on-exec pipe; the parent turns it into [`SpawnError::Exec`] with a subject taken from
//! the spec, so the message reads like a shell's: `exec /usr/bin/x: No such file or directory`,
//! `setuid 1000: Operation not permitted`, `chdir /srv: No such file or directory`.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::reap::ExitStatus;

/// A step of the child's way from clone to exec, in the order the child takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Fallback without clone3: the child writes itself to `cgroup.procs`.
    JoinCgroup = 1,
    /// Resetting signal dispositions and the signal mask.
    Signals,
    Setsid,
    /// Waiting for the parent to write the user namespace's id maps.
    WaitParent,
    /// `setns` into a namespace the caller gave (index: which kind).
    Setns,
    /// The extra fork that puts the service into a joined PID namespace.
    ForkPid,
    /// `unshare` of the new namespaces not created by clone.
    Unshare,
    /// `unshare(CLONE_NEWUSER)` after joining namespaces.
    UnshareUser,
    /// `unshare(CLONE_NEWTIME)`.
    TimeNamespace,
    /// Writing `/proc/self/timens_offsets`.
    TimeOffsets,
    /// `setns` into `/proc/self/ns/time_for_children`.
    TimeEnter,
    /// Bringing up `lo` in a new network namespace.
    Loopback,
    Hostname,
    /// Writing a sysctl (index: which one).
    Sysctl,
    /// Making `/` private/slave/shared in the new mount namespace.
    Propagation,
    /// Resolving `root` and binding it onto itself.
    Root,
    /// A mount: fresh /proc, /tmp, cgroup2, the root's self-bind, a bind (index).
    Mount,
    /// Resolving a bind source (index: the mount op), no symlink followed.
    MountSource,
    /// Resolving a mount target inside the root (index: the mount op), no symlink followed.
    MountTarget,
    /// Creating the missing target of a bind mount (index).
    BindTarget,
    /// Making a path read-only (index into read-only paths, then binds).
    ReadOnly,
    PivotRoot,
    Chdir,
    /// Putting a descriptor on stdin/stdout/stderr (index: 0, 1, 2).
    Stdio,
    /// Dropping a capability from the bounding set (index: its number).
    Bounding,
    /// `PR_SET_KEEPCAPS`, so that the permitted set survives setuid for the ambient set.
    KeepCaps,
    Setgroups,
    Setgid,
    Setuid,
    /// Putting the ambient capabilities into the inheritable set.
    Inheritable,
    /// Raising an ambient capability (index: its number).
    Ambient,
    NoNewPrivs,
    Exec,
}

impl Step {
    const ALL: [Step; 33] = [
        Step::JoinCgroup,
        Step::Signals,
        Step::Setsid,
        Step::WaitParent,
        Step::Setns,
        Step::ForkPid,
        Step::Unshare,
        Step::UnshareUser,
        Step::TimeNamespace,
        Step::TimeOffsets,
        Step::TimeEnter,
        Step::Loopback,
        Step::Hostname,
        Step::Sysctl,
        Step::Propagation,
        Step::Root,
        Step::Mount,
        Step::MountSource,
        Step::MountTarget,
        Step::BindTarget,
        Step::ReadOnly,
        Step::PivotRoot,
        Step::Chdir,
        Step::Stdio,
        Step::Bounding,
        Step::KeepCaps,
        Step::Setgroups,
        Step::Setgid,
        Step::Setuid,
        Step::Inheritable,
        Step::Ambient,
        Step::NoNewPrivs,
        Step::Exec,
    ];

    pub(crate) fn from_raw(raw: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == raw)
    }

    /// The verb shown in messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::JoinCgroup => "joining cgroup",
            Step::Signals => "resetting signals",
            Step::Setsid => "setsid",
            Step::WaitParent => "waiting for id maps",
            Step::Setns => "setns",
            Step::ForkPid => "fork into pid namespace",
            Step::Unshare => "unshare",
            Step::UnshareUser => "unshare user namespace",
            Step::TimeNamespace => "unshare time namespace",
            Step::TimeOffsets => "writing /proc/self/timens_offsets",
            Step::TimeEnter => "entering time namespace",
            Step::Loopback => "bringing up lo",
            Step::Hostname => "sethostname",
            Step::Sysctl => "sysctl",
            Step::Propagation => "mount propagation",
            Step::Root => "root",
            Step::Mount => "mount",
            Step::MountSource => "bind source",
            Step::MountTarget => "mount target",
            Step::BindTarget => "creating bind target",
            Step::ReadOnly => "read-only",
            Step::PivotRoot => "pivot_root",
            Step::Chdir => "chdir",
            Step::Stdio => "stdio",
            Step::Bounding => "dropping from the bounding set",
            Step::KeepCaps => "keeping capabilities across setuid",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::Inheritable => "setting the inheritable capabilities",
            Step::Ambient => "raising the ambient capability",
            Step::NoNewPrivs => "setting no-new-privileges",
            Step::Exec => "exec",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`spawn`](super::spawn) failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The spec cannot be carried out (checked before anything is created).
    #[error("invalid spawn request: {0}")]
    Invalid(String),
    /// Preparing in the parent: opening the cgroup directory, `/dev/null`, a pipe.
    #[error("{what} {}: {}", path.display(), errno.desc())]
    Setup {
        what: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    /// `clone3` (or the fallback) itself failed, e.g. EBUSY for a cgroup with
    /// `cgroup.subtree_control` set (no-internal-process rule), EAGAIN at `pids.max`.
    #[error("clone{}: {}", cgroup.as_ref().map(|c| format!(" into {}", c.display())).unwrap_or_default(), errno.desc())]
    Clone {
        cgroup: Option<PathBuf>,
        errno: Errno,
    },
    /// The parent could not write the id maps of the child's user namespace.
    #[error("writing {value:?} to {}: {}", path.display(), errno.desc())]
    IdMap {
        path: PathBuf,
        value: String,
        errno: Errno,
    },
    /// A step in the child failed; the child exited 127 and has been reaped (`status`).
    #[error("{}", exec_message(*step, subject, *errno))]
    Exec {
        step: Step,
        /// What the step worked on: the program, the directory, the uid, the mount…
        subject: String,
        errno: Errno,
        /// The pid the failed child had (already reaped: don't look for it).
        pid: Pid,
        /// Its exit status, when `spawn` could reap it (not when something else did first).
        status: Option<ExitStatus>,
    },
    /// A `file:` output was refused (a symlink, a FIFO…) or could not be opened.
    #[error("{0}")]
    Output(super::output::OutputRefused),
    /// The child broke the pipe protocol (a short record): a bug, not an OS error.
    #[error("spawn: malformed report from child {pid}")]
    Protocol { pid: Pid },
}

impl SpawnError {
    /// The OS error underneath, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            SpawnError::Setup { errno, .. }
            | SpawnError::Clone { errno, .. }
            | SpawnError::IdMap { errno, .. }
            | SpawnError::Exec { errno, .. } => Some(*errno),
            SpawnError::Output(r) => match r.why {
                super::output::OutputError::Os(e) => Some(e),
                _ => None,
            },
            SpawnError::Invalid(_) | SpawnError::Protocol { .. } => None,
        }
    }
}

fn exec_message(step: Step, subject: &str, errno: Errno) -> String {
    // openat2(RESOLVE_NO_SYMLINKS) says ELOOP for a symlink anywhere in the path: say that.
    let why = match (step, errno) {
        (Step::Root | Step::MountSource | Step::MountTarget, Errno::ELOOP) => {
            "the path goes through a symbolic link, which mount setup never follows \
             (name the real path)"
        }
        _ => errno.desc(),
    };
    if subject.is_empty() {
        format!("{step}: {why}")
    } else {
        format!("{step} {subject}: {why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_raw() {
        for s in Step::ALL {
            assert_eq!(Step::from_raw(s as u32), Some(s));
        }
        assert_eq!(Step::from_raw(0), None);
        assert_eq!(Step::from_raw(999), None);
    }

    #[test]
    fn exec_errors_read_like_a_shell() {
        let e = |step, subject: &str, errno| SpawnError::Exec {
            step,
            subject: subject.into(),
            errno,
            pid: Pid::from_raw(1),
            status: None,
        };
        assert_eq!(
            e(Step::Exec, "/usr/bin/x", Errno::ENOENT).to_string(),
            "exec /usr/bin/x: No such file or directory"
        );
        assert_eq!(
            e(Step::Setuid, "1000", Errno::EPERM).to_string(),
            "setuid 1000: Operation not permitted"
        );
        assert_eq!(
            e(Step::Setsid, "", Errno::EPERM).to_string(),
            "setsid: Operation not permitted"
        );
        assert_eq!(
            e(Step::MountTarget, "/etc/x in /srv/r", Errno::ELOOP).to_string(),
            "mount target /etc/x in /srv/r: the path goes through a symbolic link, which mount \
             setup never follows (name the real path)"
        );
    }
}
