//! The validated unit model (DESIGN §2): what a unit file means once every key has been
//! checked. Nothing here can hold a value the file format forbids — an exec path that is not
//! absolute, a hostname without a uts namespace, a oneshot that restarts always — because
//! [`super::validate`] is the only way in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::diag::Location;
use super::name::UnitName;
pub use crate::caps::{Cap, CapSet};
use crate::limits::Resources;
pub use crate::ns::NsKind;

/// A loaded unit: a service, a slice or a scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub name: UnitName,
    pub description: String,
    /// The unit file and its drop-ins, in merge order; empty for an implicit slice and for a
    /// unit created over D-Bus.
    pub files: Vec<PathBuf>,
    pub resources: Resources,
    /// `Some` for a service.
    pub service: Option<Box<Service>>,
    /// `Some` for a scope.
    pub scope: Option<Box<Scope>>,
    /// Created over D-Bus (`org.freedesktop.systemd1` `StartTransientUnit`, DESIGN §9): it has
    /// no file, and is unloaded once it is inactive, as systemd collects transient units.
    pub transient: bool,
}

/// A scope (DESIGN §9): processes corral did not start, adopted by PID into
/// `<slice>/<name>.scope`, stopped by signalling its cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub slice: UnitName,
    /// The processes it adopts when it starts.
    pub pids: Vec<u32>,
    /// `Delegate=yes`: the cgroup below the scope belongs to whoever asked for it (a container
    /// runtime writes its own limits and device filter there); corral never writes inside.
    pub delegate: bool,
    /// From the stop signal to `cgroup.kill`, and from there to giving up.
    pub stop_timeout: Duration,
}

impl Scope {
    /// How long a scope's processes get to exit on SIGTERM when nothing else is said (as a
    /// service's `stop-timeout`).
    pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Unit {
    /// A slice that is referenced but has no file: it exists, with no limits.
    pub fn implicit_slice(name: UnitName) -> Self {
        Unit {
            name,
            description: String::new(),
            files: Vec::new(),
            resources: Resources::default(),
            service: None,
            scope: None,
            transient: false,
        }
    }

    /// The slice this unit lives in: a service's or scope's `slice`, a slice's parent by name.
    pub fn slice(&self) -> Option<UnitName> {
        match (&self.service, &self.scope) {
            (Some(s), _) => Some(s.slice.clone()),
            (None, Some(s)) => Some(s.slice.clone()),
            (None, None) => self.name.parent_slice(),
        }
    }

    /// The unit's cgroup relative to the cgroup root.
    pub fn cgroup_path(&self) -> PathBuf {
        let slice = match (&self.service, &self.scope) {
            (Some(s), _) => Some(&s.slice),
            (None, Some(s)) => Some(&s.slice),
            (None, None) => None,
        };
        self.name.cgroup_path(slice)
    }

    /// Whether the unit's cgroup below its own belongs to someone else (`delegate`).
    pub fn delegated(&self) -> bool {
        self.service.as_ref().is_some_and(|s| s.delegate)
            || self.scope.as_ref().is_some_and(|s| s.delegate)
    }
}

/// A dependency on another unit, with the place it was written (for cycle and missing-unit
/// messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: UnitName,
    pub at: Location,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deps {
    pub requires: Vec<Dep>,
    pub wants: Vec<Dep>,
    pub after: Vec<Dep>,
    pub before: Vec<Dep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    Simple,
    Exec,
    Notify,
    Oneshot { remain_after_exit: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMode {
    ControlGroup,
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyAccess {
    Main,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomPolicy {
    Stop,
    Continue,
    Kill,
}

/// Where a service's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The unit's log file (and journald when present).
    Log,
    Inherit,
    Null,
    /// An absolute path, appended to; opened by the process layer with the rules of DESIGN §2
    /// (see [`crate::process::Stdio::File`]).
    File(PathBuf),
}

/// A user or group: a name to look up, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Name(String),
    Id(u32),
}

/// More than `burst` starts within `interval` fail the unit with `start-limit-hit`.
/// `interval` zero disables the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    pub burst: u32,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub slice: UnitName,
    pub deps: Deps,
    pub autostart: bool,
    pub kind: ServiceType,
    /// argv; `exec[0]` is an absolute path.
    pub exec: Vec<String>,
    /// Empty, or an argv whose first element is an absolute path.
    pub exec_stop: Vec<String>,
    /// `None`: root.
    pub user: Option<Ident>,
    /// `None`: the user's primary group.
    pub group: Option<Ident>,
    pub working_directory: PathBuf,
    pub environment: BTreeMap<String, String>,
    pub umask: u32,
    pub restart: Restart,
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    pub start_limit: StartLimit,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub stop_signal: Signal,
    pub kill_mode: KillMode,
    pub notify_access: NotifyAccess,
    pub stdout: Output,
    pub stderr: Output,
    /// `PR_SET_NO_NEW_PRIVS` before exec.
    pub no_new_privileges: bool,
    /// The bounding set, exactly; `None` keeps the daemon's.
    pub capabilities: Option<CapSet>,
    /// Raised in the ambient set; within `capabilities` when that is set.
    pub ambient_capabilities: CapSet,
    pub oom_policy: OomPolicy,
    pub delegate: bool,
    pub namespaces: Namespaces,
}

/// How a service gets one kind of namespace. Absent means the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsMode {
    /// A fresh namespace.
    New,
    /// The namespace of another running unit (pod style).
    Share(UnitName),
    /// `setns` to a namespace file such as `/run/netns/x`.
    Path(PathBuf),
}

/// One line of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Private,
    Slave,
    Shared,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub pid: Option<NsMode>,
    pub net: Option<NsMode>,
    /// A new mount namespace also when implied (by `pid = true`, `private-tmp`,
    /// `read-only-paths` or `bind`): validation fills it in.
    pub mount: Option<NsMode>,
    pub uts: Option<NsMode>,
    pub ipc: Option<NsMode>,
    pub user: Option<NsMode>,
    pub cgroup: Option<NsMode>,
    pub time: Option<NsMode>,
    /// Only with a new user namespace.
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    /// Nanoseconds; only with a new time namespace.
    pub monotonic_offset: i64,
    pub boottime_offset: i64,
    /// Only with a new uts namespace.
    pub hostname: Option<String>,
    /// Only with a new mount namespace.
    pub root: Option<PathBuf>,
    pub private_tmp: bool,
    pub read_only_paths: Vec<PathBuf>,
    pub bind: Vec<Bind>,
    pub propagation: Option<Propagation>,
    /// Namespaced sysctls only, each matched to a namespace the unit gets.
    pub sysctl: BTreeMap<String, String>,
    /// Where each shared namespace (`net = "pod.service"`) was written, by kind.
    pub share_at: BTreeMap<NsKind, Location>,
}

impl Namespaces {
    pub fn get(&self, kind: NsKind) -> Option<&NsMode> {
        self.slot(kind).as_ref()
    }

    fn slot(&self, kind: NsKind) -> &Option<NsMode> {
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

    /// The mode of `kind`, to set it.
    pub fn get_mut(&mut self, kind: NsKind) -> &mut Option<NsMode> {
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

    /// Units whose namespaces this one joins: they must be running first.
    pub fn shared_with(&self) -> impl Iterator<Item = &UnitName> {
        NsKind::ALL.into_iter().filter_map(|k| match self.get(k) {
            Some(NsMode::Share(u)) => Some(u),
            _ => None,
        })
    }
}

/// The namespace a sysctl belongs to, if it is namespaced at all (as the kernel has it).
pub fn sysctl_namespace(key: &str) -> Option<NsKind> {
    const IPC: [&str; 8] = [
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
    ];
    if key.starts_with("net.") {
        Some(NsKind::Net)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(NsKind::Uts)
    } else if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(NsKind::Ipc)
    } else {
        None
    }
}
