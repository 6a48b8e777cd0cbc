//! The eight Linux namespace kinds, once: the name corral uses for each (a `[namespaces]` key,
//! a `corralctl run --ns` word), the name the kernel gives it under `/proc/PID/ns/`, and its
//! `CLONE_NEW*` flag. The unit model, the manager and the process layer all take them from here,
//! so a list of kinds is never written out twice (issue 13: "one source of truth").
//!
//! It sits beside [`crate::limits`] below every other module: the process layer may use it
//! without knowing anything of units.

/// `CLONE_NEWTIME` (5.6+); not in every libc version. Its value (0x80) overlaps `CSIGNAL`, so it
/// is only valid for `unshare`, `setns` and clone3.
pub const CLONE_NEWTIME: libc::c_int = 0x80;

/// A kind of namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NsKind {
    Pid,
    Net,
    Mount,
    Uts,
    Ipc,
    User,
    Cgroup,
    Time,
}

impl NsKind {
    /// Every kind, in the order DESIGN §2 and a unit file list them.
    pub const ALL: [NsKind; 8] = [
        NsKind::Pid,
        NsKind::Net,
        NsKind::Mount,
        NsKind::Uts,
        NsKind::Ipc,
        NsKind::User,
        NsKind::Cgroup,
        NsKind::Time,
    ];

    /// corral's name: the `[namespaces]` key and the `--ns` word.
    pub const fn name(self) -> &'static str {
        match self {
            NsKind::Pid => "pid",
            NsKind::Net => "net",
            NsKind::Mount => "mount",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::User => "user",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }

    /// The file under `/proc/PID/ns/`. For `time` this is the namespace the process is in, not
    /// `time_for_children` (a service enters its time namespace itself, see process/exec.rs).
    pub const fn proc_name(self) -> &'static str {
        match self {
            NsKind::Mount => "mnt",
            other => other.name(),
        }
    }

    /// The `CLONE_NEW*` flag (also what `ioctl(NS_GET_NSTYPE)` returns).
    pub const fn flag(self) -> libc::c_int {
        match self {
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Mount => libc::CLONE_NEWNS,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Time => CLONE_NEWTIME,
        }
    }

    /// What the kind isolates, for help texts.
    pub const fn isolates(self) -> &'static str {
        match self {
            NsKind::Pid => "process ids (the service is PID 1 of its own, with a fresh /proc)",
            NsKind::Net => "network interfaces, addresses, ports and routes",
            NsKind::Mount => "the mount table",
            NsKind::Uts => "host and domain name",
            NsKind::Ipc => "System V IPC and POSIX message queues",
            NsKind::User => "user and group ids and capabilities",
            NsKind::Cgroup => "the view of the cgroup tree (its own cgroup is /)",
            NsKind::Time => "the monotonic and boot-time clocks",
        }
    }

    /// The kind called `name` (corral's names, as [`NsKind::name`]).
    pub fn from_name(name: &str) -> Option<NsKind> {
        NsKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind whose `CLONE_NEW*` flag is `flag`.
    pub fn from_flag(flag: libc::c_int) -> Option<NsKind> {
        NsKind::ALL.into_iter().find(|k| k.flag() == flag)
    }

    /// Every name, in [`NsKind::ALL`] order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NsKind::ALL.into_iter().map(NsKind::name)
    }
}

impl std::fmt::Display for NsKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_flags_and_proc_files_round_trip() {
        for k in NsKind::ALL {
            assert_eq!(NsKind::from_name(k.name()), Some(k));
            assert_eq!(NsKind::from_flag(k.flag()), Some(k));
            assert!(
                std::path::Path::new("/proc/self/ns")
                    .join(k.proc_name())
                    .exists(),
                "{k}"
            );
        }
        assert_eq!(NsKind::from_name("mnt"), None);
        let flags = NsKind::ALL.iter().fold(0, |acc, k| acc | k.flag());
        assert_eq!(flags.count_ones(), 8, "eight distinct flags");
    }
}
