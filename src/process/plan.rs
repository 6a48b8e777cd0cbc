//! The parent's half of spawning: turning a [`SpawnSpec`] into a [`Plan`] — every C string,
//! pointer array, path and buffer the child will touch — *before* clone, because the child may
//! not allocate (DESIGN/STYLE: code between fork and exec is async-signal-safe).
//!
//! The plan also fixes the *layout*: which namespaces clone3 creates and which the child creates
//! later with `unshare`, and when the parent writes the id maps.
//!
//! - **user first** (a new user namespace and nothing to join): clone3 creates the user
//!   namespace together with every other new one, so the kernel makes the user namespace their
//!   owner — root inside may then configure its network, mount, hostname. The child tells the
//!   parent it exists and waits on a pipe until the parent has written `uid_map`/`gid_map`
//!   (the child cannot map itself to another outside uid: EPERM, DESIGN §8).
//! - **joins first** (anything else): existing namespaces are joined with `setns` while the
//!   child still has the daemon's privileges, then the new ones are `unshare`d (so a joined user
//!   namespace owns them), set up, and only then, when a new user namespace is wanted together
//!   with joins, it is created last (`unshare(CLONE_NEWUSER)`) and mapped by the parent — a
//!   process in a fresh user namespace has no rights over the daemon's namespaces it would join
//!   (DESIGN §8). The other new namespaces are then owned by the initial user namespace: root
//!   inside cannot reconfigure them, which is fine for a service that shares a pod's namespaces.
//!   A new PID namespace is always made by clone3 (`unshare(CLONE_NEWPID)` only affects children);
//!   *joining* a PID namespace takes one extra fork (see `exec.rs`).

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::error::{SpawnError, Step};
use super::spec::{Credentials, NsMode, Privileges, Propagation, SpawnSpec, Stdio};
use super::sys;
pub(super) use crate::ns::{CLONE_NEWTIME, NsKind};

/// The order joins happen in: user first (so it owns what follows), mount last (it changes the
/// root the others' paths were resolved in).
pub(super) const JOIN_ORDER: [NsKind; 8] = [
    NsKind::User,
    NsKind::Ipc,
    NsKind::Uts,
    NsKind::Net,
    NsKind::Cgroup,
    NsKind::Time,
    NsKind::Pid,
    NsKind::Mount,
];

/// Where a standard descriptor of the child comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum StdioSrc {
    Inherit,
    Fd(RawFd),
}

/// One step of the mount setup, run in order by the child ([`super::exec`] has the rules:
/// every path inside the service's root is resolved with `openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_SYMLINKS)` and mounted on by descriptor).
#[derive(Debug)]
pub(super) enum MountOp {
    /// `mount(NULL, "/", MS_REC | MS_SLAVE)`: from here on nothing mounted in the new namespace
    /// reaches the host, whatever `propagation` says.
    Isolate,
    /// Bind the new root onto itself (pivot_root wants a mount point); every later target is
    /// resolved inside it. Without this op targets are resolved inside `/`.
    Root { path: CString },
    /// A new file system (`proc`, `tmpfs`) on `target`, with mount attributes `attrs` and one
    /// string option.
    Fresh {
        fstype: &'static CStr,
        target: CString,
        attrs: u64,
        option: Option<(&'static CStr, &'static CStr)>,
    },
    /// A cgroup2 mount at `target` (skipped when `target` does not exist), made in the new
    /// cgroup namespace so that it is rooted at the service's cgroup. Should the kernel refuse
    /// it (EBUSY, as `mount(2)` does for the same file system on its own root), the child binds
    /// `bind` (the birth cgroup's directory, which *is* the namespace's root) there instead.
    Cgroup2 {
        target: CString,
        attrs: u64,
        bind: Option<CString>,
    },
    /// Bind `source` (a path of the daemon's view) onto `target`, which is created when missing
    /// (a directory for a directory source, an empty file otherwise; `components` are its
    /// names, for the walk that creates it), read-only before it is attached when asked.
    Bind {
        source: CString,
        target: CString,
        components: Vec<CString>,
        read_only: bool,
    },
    /// Make `target` and every mount below it read-only: a read-only copy of its tree is
    /// attached over it.
    ReadOnly { target: CString },
    /// Enter the root (pivot_root, or MS_MOVE + chroot on the initramfs).
    PivotRoot,
    /// The propagation asked for, on the service's `/`, recursively: after the setup, so that
    /// `shared` shares the service's own mounts with its children, never the setup's with the
    /// host.
    Propagation { flags: libc::c_ulong },
}

/// What a mount op works on, for messages: the target (as the unit names it, with the root it
/// is inside) and, for a bind, the source.
#[derive(Debug, Clone, Default)]
pub(super) struct MountSubject {
    pub target: String,
    pub source: String,
}

/// Everything the child needs, allocated up front. Raw pointers point into the `CString`s the
/// plan owns (their heap buffers never move).
#[derive(Debug)]
pub(super) struct Plan {
    pub path: CString,
    _argv: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    pub envp: Vec<*const libc::c_char>,
    pub cwd: CString,
    pub umask: libc::mode_t,
    pub creds: Option<Credentials>,
    pub privileges: Privileges,
    pub new_session: bool,
    /// Namespace flags for clone3 (CLONE_NEW*).
    pub clone_flags: u64,
    /// User first: the child asks for its maps right after clone.
    pub early_maps: bool,
    /// `setns` targets in [`NsKind::ALL`] order.
    pub joins: Vec<(NsKind, RawFd)>,
    /// Joining a PID namespace: fork once more after the joins.
    pub pid_join: bool,
    /// New namespaces the child `unshare`s after the joins.
    pub unshare_flags: libc::c_int,
    /// New time namespace: the lines for `/proc/self/timens_offsets`.
    pub time_offsets: Option<[Vec<u8>; 2]>,
    pub loopback: bool,
    pub hostname: Option<Vec<u8>>,
    pub sysctls: Vec<(CString, Vec<u8>)>,
    pub sysctl_keys: Vec<String>,
    pub mounts: Vec<MountOp>,
    /// What each mount op is about, for messages.
    pub mount_subjects: Vec<MountSubject>,
    /// Joins and a new user namespace: create it last and ask for the maps then.
    pub late_user: bool,
    pub uid_map: String,
    pub gid_map: String,
    /// A new user namespace made by an unprivileged daemon (user mode): the kernel lets it
    /// write `gid_map` only after `deny` went to `/proc/PID/setgroups`, and the child must then
    /// not call `setgroups` (EPERM) — it keeps no supplementary groups.
    pub deny_setgroups: bool,
    pub cgroup: Option<PathBuf>,
    /// Fallback without clone3: `<cgroup>/cgroup.procs`, which the child writes "0" to.
    pub cgroup_procs: Option<CString>,
    pub needs_null: bool,
}

fn cstr(what: &str, bytes: &[u8]) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Invalid(format!("{what} contains a NUL byte")))
}

fn cpath(what: &str, p: &Path) -> Result<CString, SpawnError> {
    cstr(what, p.as_os_str().as_bytes())
}

fn absolute(what: &str, p: &Path) -> Result<(), SpawnError> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(SpawnError::Invalid(format!(
            "{what} {} is not an absolute path",
            p.display()
        )))
    }
}

/// A path for `openat2`: absolute, with no `..` (inside a root `RESOLVE_IN_ROOT` would keep
/// `..` in, but a `..` in a mount path is refused at load already and means a mistake).
fn inside_path(what: &str, p: &Path) -> Result<CString, SpawnError> {
    absolute(what, p)?;
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(SpawnError::Invalid(format!(
            "{what} {} contains \"..\"",
            p.display()
        )));
    }
    cpath(what, p)
}

fn sysctl_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_owned()
    } else {
        key.replace('.', "/")
    };
    Path::new("/proc/sys").join(rel)
}

fn map_text(maps: &[super::spec::IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
        .collect()
}

impl Plan {
    pub(super) fn new(spec: &SpawnSpec) -> Result<Plan, SpawnError> {
        let ns = &spec.namespaces;
        let program = spec
            .argv
            .first()
            .ok_or_else(|| SpawnError::Invalid("empty argv".into()))?;
        absolute("program", Path::new(program))?;
        absolute("working directory", &spec.working_directory)?;
        let argv_c = spec
            .argv
            .iter()
            .map(|a| cstr("argument", a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp_c = spec
            .env
            .iter()
            .map(|(k, v)| {
                if k.is_empty() || k.as_bytes().contains(&b'=') {
                    return Err(SpawnError::Invalid(format!(
                        "bad environment variable name {k:?}"
                    )));
                }
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstr("environment", &kv)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };

        // --- namespaces and their consistency
        let mount_new = ns.mount.is_new();
        if ns.hostname.is_some() && !ns.uts.is_new() {
            return Err(SpawnError::Invalid(
                "hostname needs a new uts namespace".into(),
            ));
        }
        if !ns.mounts.is_empty() && !mount_new {
            return Err(SpawnError::Invalid(
                "mount setup needs a new mount namespace".into(),
            ));
        }
        let time_new = ns.time.is_new();
        if (!ns.monotonic_offset.is_zero() || !ns.boottime_offset.is_zero()) && !time_new {
            return Err(SpawnError::Invalid(
                "clock offsets need a new time namespace".into(),
            ));
        }
        let user_new = ns.user.is_new();
        if user_new && (ns.uid_map.is_empty() || ns.gid_map.is_empty()) {
            return Err(SpawnError::Invalid(
                "a new user namespace needs a uid map and a gid map".into(),
            ));
        }
        if !user_new && (!ns.uid_map.is_empty() || !ns.gid_map.is_empty()) {
            return Err(SpawnError::Invalid(
                "id maps need a new user namespace".into(),
            ));
        }

        let mut joins = Vec::new();
        let mut new_flags: libc::c_int = 0;
        for kind in JOIN_ORDER {
            match spec.namespaces.get(kind) {
                NsMode::Host => {}
                NsMode::New => new_flags |= kind.flag(),
                NsMode::Join(fd) => joins.push((kind, fd.as_raw_fd())),
            }
        }
        let pid_join = matches!(ns.pid, NsMode::Join(_));
        let user_first = user_new && joins.is_empty();
        // The time namespace is always unshared by the child (DESIGN §8: created by clone3 its
        // offsets are frozen before they can be written).
        let without_time = new_flags & !CLONE_NEWTIME;
        let (clone_flags, mut unshare_flags, late_user) = if user_first {
            (without_time, 0, false)
        } else {
            (
                without_time & libc::CLONE_NEWPID,
                without_time & !(libc::CLONE_NEWPID | libc::CLONE_NEWUSER),
                user_new,
            )
        };
        let mut clone_flags = clone_flags as u32 as u64;
        let cgroup_procs = match &spec.cgroup {
            Some(c) => Some(cpath("cgroup", &c.join("cgroup.procs"))?),
            None => None,
        };
        if spec.legacy_clone && clone_flags & libc::CLONE_NEWCGROUP as u64 != 0 {
            // Without CLONE_INTO_CGROUP the child joins its cgroup after clone; a cgroup
            // namespace made before that would be rooted at the daemon's cgroup.
            clone_flags &= !(libc::CLONE_NEWCGROUP as u64);
            unshare_flags |= libc::CLONE_NEWCGROUP;
        }

        let time_offsets = if time_new {
            let line = |clock: libc::clockid_t, offset: super::spec::ClockOffset| {
                let (secs, nanos) = offset.timens_parts();
                format!("{clock} {secs} {nanos}\n").into_bytes()
            };
            Some([
                line(libc::CLOCK_MONOTONIC, ns.monotonic_offset),
                line(libc::CLOCK_BOOTTIME, ns.boottime_offset),
            ])
        } else {
            None
        };

        let hostname = ns.hostname.as_ref().map(|h| h.as_bytes().to_vec());
        let mut sysctls = Vec::new();
        for (k, v) in &ns.sysctls {
            if k.contains("..") {
                return Err(SpawnError::Invalid(format!("bad sysctl name {k:?}")));
            }
            sysctls.push((cpath("sysctl", &sysctl_path(k))?, v.as_bytes().to_vec()));
        }

        // --- mounts
        let mut mounts = Vec::new();
        let mut subjects = Vec::new();
        if mount_new {
            Self::plan_mounts(spec, &mut mounts, &mut subjects)?;
        }

        let creds = match (&spec.credentials, user_new) {
            (Some(c), _) => Some(c.clone()),
            (None, true) => Some(Credentials {
                uid: 0,
                gid: 0,
                groups: Vec::new(),
            }),
            (None, false) => None,
        };

        let needs_null = [&spec.stdin, &spec.stdout, &spec.stderr]
            .iter()
            .any(|s| matches!(s, Stdio::Null));

        let argv = ptrs(&argv_c);
        let envp = ptrs(&envp_c);
        Ok(Plan {
            path: cstr("program", program.as_bytes())?,
            _argv: argv_c,
            argv,
            _envp: envp_c,
            envp,
            cwd: cpath("working directory", &spec.working_directory)?,
            umask: spec.umask as libc::mode_t,
            creds,
            privileges: spec.privileges,
            new_session: spec.new_session,
            clone_flags,
            early_maps: user_first,
            joins,
            pid_join,
            unshare_flags,
            time_offsets,
            loopback: ns.net.is_new(),
            hostname,
            sysctls,
            sysctl_keys: ns.sysctls.iter().map(|(k, _)| k.clone()).collect(),
            mounts,
            mount_subjects: subjects,
            late_user,
            uid_map: map_text(&ns.uid_map),
            gid_map: map_text(&ns.gid_map),
            // Without CAP_SETGID over the parent user namespace (we only ask whether we are
            // root, as the child's credential code does).
            deny_setgroups: user_new && !nix::unistd::geteuid().is_root(),
            cgroup: spec.cgroup.clone(),
            cgroup_procs,
            needs_null,
        })
    }

    fn plan_mounts(
        spec: &SpawnSpec,
        ops: &mut Vec<MountOp>,
        subjects: &mut Vec<MountSubject>,
    ) -> Result<(), SpawnError> {
        let ns = &spec.namespaces;
        let m = &ns.mounts;
        let root = m.root.as_deref();
        let inside = |p: &Path| match root {
            Some(r) => format!("{} in {}", p.display(), r.display()),
            None => p.display().to_string(),
        };
        let mut push = |op: MountOp, target: String, source: String| {
            ops.push(op);
            subjects.push(MountSubject { target, source });
        };
        push(MountOp::Isolate, "/".into(), String::new());
        if let Some(r) = root {
            absolute("root", r)?;
            let path = inside_path("root", r)?;
            push(
                MountOp::Root { path },
                r.display().to_string(),
                String::new(),
            );
        }
        let safe = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC;
        if !ns.pid.is_host() {
            // A /proc that shows the service's PID namespace (the mounter's active one).
            let target = Path::new("/proc");
            push(
                MountOp::Fresh {
                    fstype: c"proc",
                    target: inside_path("mount target", target)?,
                    attrs: safe,
                    option: None,
                },
                format!("proc on {}", inside(target)),
                String::new(),
            );
        }
        if ns.cgroup.is_new() {
            // The service sees its own cgroup as the root of /sys/fs/cgroup, like /proc/self/cgroup.
            let target = Path::new("/sys/fs/cgroup");
            push(
                MountOp::Cgroup2 {
                    target: inside_path("mount target", target)?,
                    attrs: safe,
                    bind: spec
                        .cgroup
                        .as_deref()
                        .map(|c| cpath("cgroup", c))
                        .transpose()?,
                },
                format!("cgroup2 on {}", inside(target)),
                String::new(),
            );
        }
        if m.private_tmp {
            let target = Path::new("/tmp");
            push(
                MountOp::Fresh {
                    fstype: c"tmpfs",
                    target: inside_path("mount target", target)?,
                    attrs: sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
                    option: Some((c"mode", c"1777")),
                },
                format!("tmpfs on {}", inside(target)),
                String::new(),
            );
        }
        for b in &m.binds {
            absolute("bind source", &b.source)?;
            absolute("bind target", &b.target)?;
            let components = b
                .target
                .components()
                .filter_map(|c| match c {
                    Component::Normal(name) => Some(cstr("bind target", name.as_bytes())),
                    _ => None,
                })
                .collect::<Result<Vec<_>, _>>()?;
            push(
                MountOp::Bind {
                    source: inside_path("bind source", &b.source)?,
                    target: inside_path("bind target", &b.target)?,
                    components,
                    read_only: b.read_only,
                },
                inside(&b.target),
                b.source.display().to_string(),
            );
        }
        for p in &m.read_only_paths {
            absolute("read-only path", p)?;
            push(
                MountOp::ReadOnly {
                    target: inside_path("read-only path", p)?,
                },
                inside(p),
                String::new(),
            );
        }
        if root.is_some() {
            push(
                MountOp::PivotRoot,
                root.map(|r| r.display().to_string()).unwrap_or_default(),
                String::new(),
            );
        }
        let flags = match m.propagation {
            Propagation::Private => libc::MS_PRIVATE,
            Propagation::Slave => libc::MS_SLAVE,
            Propagation::Shared => libc::MS_SHARED,
        };
        push(
            MountOp::Propagation {
                flags: libc::MS_REC | flags,
            },
            "/".into(),
            String::new(),
        );
        Ok(())
    }

    /// The subject shown after the step's verb in an error message.
    pub(super) fn subject(&self, spec: &SpawnSpec, step: Step, index: u32) -> String {
        let i = index as usize;
        let lossy = |s: &OsStr| String::from_utf8_lossy(s.as_bytes()).into_owned();
        match step {
            Step::Exec => spec.argv.first().map(|a| lossy(a)).unwrap_or_default(),
            Step::Chdir => spec.working_directory.display().to_string(),
            Step::JoinCgroup => self
                .cgroup
                .as_ref()
                .map(|c| c.display().to_string())
                .unwrap_or_default(),
            Step::Setuid => self
                .creds
                .as_ref()
                .map(|c| c.uid.to_string())
                .unwrap_or_default(),
            Step::Setgid => self
                .creds
                .as_ref()
                .map(|c| c.gid.to_string())
                .unwrap_or_default(),
            Step::Setgroups => self
                .creds
                .as_ref()
                .map(|c| {
                    c.groups
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            Step::Setns => NsKind::ALL
                .into_iter()
                .find(|k| *k as usize == i)
                .map(|k| k.proc_name().to_owned())
                .unwrap_or_default(),
            Step::Unshare => NsKind::ALL
                .iter()
                .filter(|k| self.unshare_flags & k.flag() != 0)
                .map(|k| k.proc_name())
                .collect::<Vec<_>>()
                .join(","),
            Step::Hostname => spec.namespaces.hostname.clone().unwrap_or_default(),
            Step::Sysctl => self.sysctl_keys.get(i).cloned().unwrap_or_default(),
            Step::Stdio => ["stdin", "stdout", "stderr"]
                .get(i)
                .map(|s| (*s).to_owned())
                .unwrap_or_default(),
            Step::MountSource => self
                .mount_subjects
                .get(i)
                .map(|s| s.source.clone())
                .unwrap_or_default(),
            Step::Mount
            | Step::Root
            | Step::MountTarget
            | Step::Propagation
            | Step::BindTarget
            | Step::ReadOnly
            | Step::PivotRoot => self
                .mount_subjects
                .get(i)
                .map(|s| s.target.clone())
                .unwrap_or_default(),
            Step::Bounding | Step::Ambient => crate::caps::NAMES
                .get(i)
                .map_or_else(|| format!("capability {i}"), |n| (*n).to_owned()),
            Step::Signals
            | Step::KeepCaps
            | Step::Inheritable
            | Step::NoNewPrivs
            | Step::Setsid
            | Step::WaitParent
            | Step::ForkPid
            | Step::UnshareUser
            | Step::TimeNamespace
            | Step::TimeOffsets
            | Step::TimeEnter
            | Step::Loopback => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::spec::{Bind, ClockOffset, IdMap};

    #[test]
    fn sysctl_keys_become_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_unprivileged_port_start"),
            Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/forwarding"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.1/forwarding")
        );
    }

    #[test]
    fn user_first_when_nothing_is_joined() {
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.user = NsMode::New;
        spec.namespaces.net = NsMode::New;
        spec.namespaces.pid = NsMode::New;
        spec.namespaces.mount = NsMode::New;
        spec.namespaces.uid_map = vec![IdMap::root_to(100000)];
        spec.namespaces.gid_map = vec![IdMap::root_to(100000)];
        let p = Plan::new(&spec).unwrap();
        assert!(p.early_maps && !p.late_user);
        let want =
            libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWPID | libc::CLONE_NEWNS;
        assert_eq!(p.clone_flags, want as u64);
        assert_eq!(p.unshare_flags, 0);
        assert_eq!(p.uid_map, "0 100000 1\n");
        assert_eq!(
            p.creds,
            Some(Credentials {
                uid: 0,
                gid: 0,
                groups: vec![]
            })
        );
    }

    #[test]
    fn joins_come_before_a_late_user_namespace() {
        let net = std::fs::File::open("/proc/self/ns/net").unwrap();
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.user = NsMode::New;
        spec.namespaces.net = NsMode::Join(net.into());
        spec.namespaces.pid = NsMode::New;
        spec.namespaces.uts = NsMode::New;
        spec.namespaces.uid_map = vec![IdMap::root_to(100000)];
        spec.namespaces.gid_map = vec![IdMap::root_to(100000)];
        let p = Plan::new(&spec).unwrap();
        assert!(!p.early_maps && p.late_user);
        assert_eq!(p.clone_flags, libc::CLONE_NEWPID as u64);
        assert_eq!(p.unshare_flags, libc::CLONE_NEWUTS);
        assert_eq!(p.joins.len(), 1);
        assert_eq!(p.joins[0].0, NsKind::Net);
    }

    #[test]
    fn time_is_never_a_clone_flag() {
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.time = NsMode::New;
        spec.namespaces.boottime_offset = ClockOffset::from_secs(3600);
        spec.namespaces.monotonic_offset = ClockOffset::from_nanos(-1_500_000_000);
        let p = Plan::new(&spec).unwrap();
        assert_eq!(p.clone_flags, 0);
        assert_eq!(p.unshare_flags, 0);
        let offsets = p.time_offsets.unwrap();
        assert_eq!(offsets[0], b"1 -2 500000000\n");
        assert_eq!(offsets[1], b"7 3600 0\n");
    }

    #[test]
    fn inconsistent_specs_are_refused() {
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.hostname = Some("x".into());
        assert!(matches!(Plan::new(&spec), Err(SpawnError::Invalid(_))));

        let mut spec = SpawnSpec::new(["bin/true"]);
        spec.namespaces.uts = NsMode::New;
        assert!(matches!(Plan::new(&spec), Err(SpawnError::Invalid(_))));

        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.mounts.private_tmp = true;
        assert!(matches!(Plan::new(&spec), Err(SpawnError::Invalid(_))));

        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.user = NsMode::New;
        assert!(matches!(Plan::new(&spec), Err(SpawnError::Invalid(_))));

        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.env("A=B", "c");
        assert!(matches!(Plan::new(&spec), Err(SpawnError::Invalid(_))));
    }

    #[test]
    fn mounts_are_ordered_binds_before_read_only() {
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.mount = NsMode::New;
        spec.namespaces.pid = NsMode::New;
        spec.namespaces.mounts.root = Some("/srv/r".into());
        spec.namespaces.mounts.private_tmp = true;
        spec.namespaces.mounts.read_only_paths = vec!["/etc".into()];
        spec.namespaces.mounts.propagation = Propagation::Shared;
        spec.namespaces.mounts.binds = vec![Bind {
            source: "/data".into(),
            target: "/mnt/data".into(),
            read_only: true,
        }];
        let p = Plan::new(&spec).unwrap();
        let ops: Vec<String> = p
            .mounts
            .iter()
            .zip(&p.mount_subjects)
            .map(|(op, s)| {
                let kind = match op {
                    MountOp::Isolate => "isolate".to_string(),
                    MountOp::Root { path } => format!("root {path:?}"),
                    MountOp::Fresh { fstype, target, .. } => format!("{fstype:?} {target:?}"),
                    MountOp::Cgroup2 { .. } => "cgroup2".into(),
                    MountOp::Bind {
                        source,
                        target,
                        components,
                        read_only,
                    } => format!("bind {source:?} {target:?} {components:?} ro={read_only}"),
                    MountOp::ReadOnly { target } => format!("read-only {target:?}"),
                    MountOp::PivotRoot => "pivot".into(),
                    MountOp::Propagation { flags } => {
                        format!("propagation shared={}", flags & libc::MS_SHARED != 0)
                    }
                };
                format!("{kind} | {} | {}", s.target, s.source)
            })
            .collect();
        assert_eq!(
            ops,
            [
                "isolate | / | ",
                "root \"/srv/r\" | /srv/r | ",
                "\"proc\" \"/proc\" | proc on /proc in /srv/r | ",
                "\"tmpfs\" \"/tmp\" | tmpfs on /tmp in /srv/r | ",
                "bind \"/data\" \"/mnt/data\" [\"mnt\", \"data\"] ro=true | /mnt/data in /srv/r | /data",
                "read-only \"/etc\" | /etc in /srv/r | ",
                "pivot | /srv/r | ",
                "propagation shared=true | / | ",
            ]
        );
    }
}
