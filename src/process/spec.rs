//! What to start: the plain description [`spawn`](super::spawn) takes, and resolving a user and
//! group to numbers (done before fork: NSS lookups allocate, take locks and may talk to daemons).
//!
//! Nothing here knows about units: the manager translates a unit's `[service]` and `[namespaces]`
//! tables into a [`SpawnSpec`], opening log pipes, `/proc/PID/ns/*` of a unit to share with, and
//! choosing the id maps, itself. A `file:` output is only named here ([`Stdio::File`]):
//! [`spawn`](super::spawn) opens it by the rules of [`super::output`].

use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

use crate::caps::CapSet;
use crate::ns::NsKind;

/// Where a standard stream of the child goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// `/dev/null` (opened by the parent, so it works after `root` is changed).
    #[default]
    Null,
    /// The daemon's own descriptor with the same number.
    Inherit,
    /// A descriptor the caller opened (a log pipe).
    Fd(OwnedFd),
    /// A file appended to, opened by [`spawn`](super::spawn) with the rules of
    /// [`super::output`]: no symlink followed, a regular file only, never blocking, created
    /// 0640.
    File(PathBuf),
}

/// The privileges a service keeps across exec, set around the switch of credentials (see
/// [`super::exec`] for the order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privileges {
    /// `PR_SET_NO_NEW_PRIVS`: execve never grants privileges again (setuid bits, file
    /// capabilities).
    pub no_new_privs: bool,
    /// The bounding set, exactly these; `None` leaves the daemon's. Needs `CAP_SETPCAP`.
    pub bounding: Option<CapSet>,
    /// Raised in the ambient set after the switch to the service's user, so that a non-root
    /// program keeps them across exec. Each must be in the bounding set.
    pub ambient: CapSet,
}

/// Numeric credentials the child switches to just before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; set with `setgroups(2)` (empty clears them).
    pub groups: Vec<u32>,
}

/// How the child gets one kind of namespace.
#[derive(Debug, Default)]
pub enum NsMode {
    /// Share the daemon's.
    #[default]
    Host,
    /// Create a new one.
    New,
    /// Join an existing one: an fd of `/proc/PID/ns/TYPE` (or a bind-mounted namespace file)
    /// that the caller opened, e.g. from another unit's main PID.
    Join(OwnedFd),
}

impl NsMode {
    pub fn is_new(&self) -> bool {
        matches!(self, NsMode::New)
    }
    pub fn is_host(&self) -> bool {
        matches!(self, NsMode::Host)
    }
}

/// One line of `/proc/PID/uid_map` or `gid_map`: `count` ids from `inside` map to `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

impl IdMap {
    /// The map DESIGN §2 uses by default: root inside is `outside` (the service's user) outside.
    pub fn root_to(outside: u32) -> IdMap {
        IdMap {
            inside: 0,
            outside,
            count: 1,
        }
    }
}

/// A signed clock offset of a time namespace, in nanoseconds. The kernel takes negative
/// offsets (`/proc/PID/timens_offsets` lines are `CLOCK SECONDS NANOSECONDS` with negative
/// seconds and `0 <= NANOSECONDS < 10^9`), as long as the clock seen inside stays non-negative
/// when the offset is written (ERANGE otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockOffset(i64);

impl ClockOffset {
    pub const ZERO: ClockOffset = ClockOffset(0);

    pub const fn from_nanos(nanos: i64) -> ClockOffset {
        ClockOffset(nanos)
    }

    /// Saturates at the range of an `i64` of nanoseconds (about ±292 years).
    pub const fn from_secs(secs: i64) -> ClockOffset {
        ClockOffset(secs.saturating_mul(1_000_000_000))
    }

    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Whole seconds (rounded towards negative infinity) and the non-negative nanoseconds
    /// that remain: the two numbers of a `timens_offsets` line. `-0.5 s` is `(-1, 500000000)`.
    pub const fn timens_parts(self) -> (i64, u32) {
        (
            self.0.div_euclid(1_000_000_000),
            // rem_euclid of a positive divisor is in 0..1e9: it fits a u32.
            self.0.rem_euclid(1_000_000_000) as u32,
        )
    }
}

impl From<Duration> for ClockOffset {
    /// Saturates at `i64::MAX` nanoseconds.
    fn from(d: Duration) -> ClockOffset {
        ClockOffset(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// Mount propagation of the service's `/` (applied recursively), set once the setup is done:
/// the setup itself always runs on a slave of the host's mounts, so none of its mounts (the
/// root, /proc, /tmp, binds) ever reaches the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Nothing propagates in either direction (the default, as `runc`).
    #[default]
    Private,
    /// Host mounts propagate in; nothing propagates out.
    Slave,
    /// Host mounts propagate in, and the service's mounts propagate to the namespaces it
    /// makes (a container runtime's), never to the host: a slave made shared, as systemd's
    /// `MountFlags=shared` gives a service with a namespace.
    Shared,
}

/// A bind mount: `source` is a path of the daemon's view; `target` a path inside the service's
/// view (under `root` when one is set). The target is created when missing: a directory for a
/// directory source, an empty file otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// What the child does in its new mount namespace (all of it needs `mount = New`).
#[derive(Debug, Default)]
pub struct MountSetup {
    pub propagation: Propagation,
    /// New root directory; entered with `pivot_root`, or `MS_MOVE` + `chroot` on the initramfs.
    pub root: Option<PathBuf>,
    /// A fresh tmpfs (mode 1777) on `/tmp`.
    pub private_tmp: bool,
    /// Paths (inside the service's view) made read-only, recursively.
    pub read_only_paths: Vec<PathBuf>,
    pub binds: Vec<Bind>,
}

impl MountSetup {
    /// True when the setup asks for anything at all.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
            && !self.private_tmp
            && self.read_only_paths.is_empty()
            && self.binds.is_empty()
            && self.propagation == Propagation::Private
    }
}

/// The namespaces of the child and what to set up inside them before exec.
#[derive(Debug, Default)]
pub struct Namespaces {
    pub pid: NsMode,
    pub net: NsMode,
    pub mount: NsMode,
    pub uts: NsMode,
    pub ipc: NsMode,
    pub user: NsMode,
    pub cgroup: NsMode,
    pub time: NsMode,
    /// With `user = New`: written by the parent to `/proc/PID/uid_map` (must not be empty).
    pub uid_map: Vec<IdMap>,
    /// With `user = New`: written by the parent to `/proc/PID/gid_map` (must not be empty).
    pub gid_map: Vec<IdMap>,
    /// With `time = New`: `CLOCK_MONOTONIC` offset (may be negative).
    pub monotonic_offset: ClockOffset,
    /// With `time = New`: `CLOCK_BOOTTIME` offset (may be negative; `/proc/uptime` shows it).
    pub boottime_offset: ClockOffset,
    /// Needs `uts = New`.
    pub hostname: Option<String>,
    /// Namespaced sysctls written to `/proc/sys/…` inside, in order: `net.ipv4.ip_forward` or
    /// `net/ipv4/conf/eth0.1/forwarding` (a key with `/` is taken as a path, as systemd does).
    pub sysctls: Vec<(String, String)>,
    pub mounts: MountSetup,
}

impl Namespaces {
    /// The mode of one kind.
    pub fn get(&self, kind: NsKind) -> &NsMode {
        match kind {
            NsKind::Pid => &self.pid,
            NsKind::Net => &self.net,
            NsKind::Mount => &self.mount,
            NsKind::Uts => &self.uts,
            NsKind::Ipc => &self.ipc,
            NsKind::User => &self.user,
            NsKind::Cgroup => &self.cgroup,
            NsKind::Time => &self.time,
        }
    }

    /// The mode of one kind, to set it.
    pub fn get_mut(&mut self, kind: NsKind) -> &mut NsMode {
        match kind {
            NsKind::Pid => &mut self.pid,
            NsKind::Net => &mut self.net,
            NsKind::Mount => &mut self.mount,
            NsKind::Uts => &mut self.uts,
            NsKind::Ipc => &mut self.ipc,
            NsKind::User => &mut self.user,
            NsKind::Cgroup => &mut self.cgroup,
            NsKind::Time => &mut self.time,
        }
    }
}

/// Everything [`spawn`](super::spawn) needs; every value is already resolved (numbers, paths,
/// open descriptors).
#[derive(Debug)]
pub struct SpawnSpec {
    /// `argv[0]` is also the program executed: an absolute path (no `$PATH` search).
    pub argv: Vec<OsString>,
    /// The complete environment (nothing is inherited from the daemon).
    pub env: Vec<(OsString, OsString)>,
    /// Absolute, as seen inside the service's mount namespace and root.
    pub working_directory: PathBuf,
    /// `None` keeps the daemon's credentials. With a new user namespace these are the ids
    /// *inside* it, and they default to `0:0` with no supplementary groups.
    pub credentials: Option<Credentials>,
    pub umask: u32,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// The cgroup directory the child is born in; `None` leaves it in the daemon's cgroup.
    pub cgroup: Option<PathBuf>,
    pub namespaces: Namespaces,
    pub privileges: Privileges,
    /// `setsid(2)`: the child leads a new session and process group (pgid = its pid), so the
    /// group can be signalled as a whole and it has no controlling terminal.
    pub new_session: bool,
    /// Tests only: skip `clone3` and take the fallback a kernel without it takes (fork, then
    /// the child writes itself to `cgroup.procs`).
    #[doc(hidden)]
    pub legacy_clone: bool,
}

impl SpawnSpec {
    /// A spec with systemd's defaults: empty environment, `/` as working directory, umask 0022,
    /// stdio on `/dev/null`, the daemon's credentials, cgroup and namespaces, a new session.
    pub fn new<I, S>(argv: I) -> SpawnSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        SpawnSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            working_directory: PathBuf::from("/"),
            credentials: None,
            umask: 0o022,
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
            cgroup: None,
            namespaces: Namespaces::default(),
            privileges: Privileges::default(),
            new_session: true,
            legacy_clone: false,
        }
    }

    /// Adds `KEY=VALUE` to the environment.
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A user or group that cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("group {0:?} does not exist")]
    NoSuchGroup(String),
    #[error("looking up {what} {name:?}: {}", errno.desc())]
    Lookup {
        what: &'static str,
        name: String,
        errno: nix::errno::Errno,
    },
}

/// Resolves `user` (a name or a number) and optionally `group` to numbers, with the user's
/// supplementary groups from the group database (`getgrouplist`).
///
/// Rules (systemd's): the group defaults to the user's primary group. A numeric user without a
/// passwd entry is allowed (container id ranges often have none): its group defaults to the same
/// number and it gets no supplementary groups. A name must exist.
///
/// Call this before spawning (never between fork and exec): NSS may allocate, lock or open
/// sockets.
pub fn resolve_user(user: &str, group: Option<&str>) -> Result<Credentials, ResolveError> {
    let lookup = |errno| ResolveError::Lookup {
        what: "user",
        name: user.to_owned(),
        errno,
    };
    let entry = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).map_err(lookup)?,
        Err(_) => Some(
            User::from_name(user)
                .map_err(lookup)?
                .ok_or_else(|| ResolveError::NoSuchUser(user.to_owned()))?,
        ),
    };
    let gid = match group {
        Some(g) => resolve_group(g)?,
        None => match &entry {
            Some(e) => e.gid.as_raw(),
            // Numeric user without an entry: parsed above, so this cannot fail.
            None => user
                .parse::<u32>()
                .map_err(|_| ResolveError::NoSuchUser(user.to_owned()))?,
        },
    };
    let (uid, groups) = match &entry {
        Some(e) => {
            let name = CString::new(e.name.as_bytes())
                .map_err(|_| ResolveError::NoSuchUser(user.to_owned()))?;
            let mut groups: Vec<u32> = getgrouplist(&name, Gid::from_raw(gid))
                .map_err(lookup)?
                .into_iter()
                .map(Gid::as_raw)
                .collect();
            groups.sort_unstable();
            groups.dedup();
            (e.uid.as_raw(), groups)
        }
        None => {
            let uid = user
                .parse::<u32>()
                .map_err(|_| ResolveError::NoSuchUser(user.to_owned()))?;
            (uid, vec![gid])
        }
    };
    Ok(Credentials { uid, gid, groups })
}

/// Resolves a group name or number; a number needs no entry.
pub fn resolve_group(group: &str) -> Result<u32, ResolveError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    Group::from_name(group)
        .map_err(|errno| ResolveError::Lookup {
            what: "group",
            name: group.to_owned(),
            errno,
        })?
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| ResolveError::NoSuchGroup(group.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_root_by_name_and_number() {
        let by_name = resolve_user("root", None).unwrap();
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        assert!(by_name.groups.contains(&0));
        let by_number = resolve_user("0", None).unwrap();
        assert_eq!(by_name, by_number);
    }

    #[test]
    fn numeric_user_without_entry_gets_its_own_number_as_group() {
        let c = resolve_user("4000000", None).unwrap();
        assert_eq!(
            c,
            Credentials {
                uid: 4000000,
                gid: 4000000,
                groups: vec![4000000]
            }
        );
        let c = resolve_user("4000000", Some("5")).unwrap();
        assert_eq!((c.uid, c.gid), (4000000, 5));
    }

    #[test]
    fn explicit_group_by_name() {
        let c = resolve_user("nobody", Some("root")).unwrap();
        assert_eq!(c.gid, 0);
        assert_eq!(c.uid, 65534);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(matches!(
            resolve_user("no-such-user-corral", None),
            Err(ResolveError::NoSuchUser(_))
        ));
        let err = resolve_user("root", Some("no-such-group-corral")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "group \"no-such-group-corral\" does not exist"
        );
    }
}
