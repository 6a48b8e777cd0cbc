//! The cgroup v2 engine: the tree corrald owns, one file per controller, live changes,
//! effective limits, stats, events and ownership of the hierarchy (DESIGN §1, §3).
//!
//! Every function takes the cgroup directory as a path: the daemon passes `/sys/fs/cgroup` or a
//! delegated subtree, the tests a temporary directory laid out like cgroupfs. This module knows
//! nothing of units or D-Bus; it speaks [`crate::limits::Resources`] and relative paths such as
//! `apps.slice/apps-batch.slice/job.service`.
//!
//! Rooms:
//! - [`tree`]: creating the tree, `init.scope`, enabling controllers top-down, applying and
//!   updating limits, removal;
//! - [`cpu`], [`cpuset`], [`memory`], [`pids`], [`io`]: what each `[resources]` key writes
//!   (DESIGN §3) and the controller's own stat parsers;
//! - [`settings`]: the machine facts a write depends on ([`HostInfo`]: RAM, block devices), the
//!   file-by-file plan of a [`Resources`](crate::limits::Resources) and the dry-run [`Change`]s;
//! - [`effective`]: the tightest limit over a unit and its ancestors;
//! - [`stats`]: usage read on demand; [`events`]: inotify on `cgroup.events`/`memory.events`;
//! - [`freezer`]: `cgroup.freeze` with an event-driven wait; [`ownership`]: which tree is ours.
//!
//! Kernel rules relied on throughout:
//! - cgroupfs knob files exist from `mkdir`; writes never create files (no `O_CREAT`), so a
//!   misspelt knob is an error and never a stray file;
//! - each `write(2)` to a knob is one command: a value is written with a single call;
//! - a cgroup with processes cannot enable controllers for children, and a cgroup whose
//!   `cgroup.subtree_control` is non-empty cannot take processes (the no-internal-process rule,
//!   EBUSY): only leaves hold processes, the daemon lives in `<root>/init.scope`.
//!
//! Errors carry the path and the value: `writing "50000 100000" to
//! /sys/fs/cgroup/apps.slice/cpu.max: Invalid argument`. The OS error is printed in the message
//! and not chained as a `source()`, so `{:#}` doesn't repeat it; [`CgroupError::errno`] gives it.

pub mod cpu;
pub mod cpuset;
pub mod effective;
pub mod events;
pub mod freezer;
pub mod io;
pub mod memory;
pub mod ownership;
pub mod pids;
pub mod settings;
pub mod stats;
pub mod tree;

#[cfg(test)]
pub(crate) mod fixture;

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use effective::{Binding, EffectiveIo, EffectiveLimits, effective_limits};
pub use events::{CgroupEvent, EventWatcher, Token, WatchState};
pub use io::{DevNum, FixedDevices, ResolveDevice, SysfsDevices};
pub use ownership::{CgroupRoot, OwnershipError, RootRequest, RootSource, decide_root};
pub use settings::{Change, HostInfo, LimitsDiff};
pub use stats::Stats;
pub use tree::{INIT_SCOPE, Tree};

/// `cgroup.procs`: the processes of a cgroup, one PID a line; writing a PID moves its process.
pub const PROCS: &str = "cgroup.procs";
/// `cgroup.controllers`: the controllers the parent makes available to this cgroup.
pub const CONTROLLERS: &str = "cgroup.controllers";
/// `cgroup.subtree_control`: the controllers this cgroup enables for its children.
pub const SUBTREE_CONTROL: &str = "cgroup.subtree_control";
/// `cgroup.events`: `populated 0|1` and `frozen 0|1`; modified events on change.
pub const EVENTS: &str = "cgroup.events";
/// `cgroup.kill`: writing 1 SIGKILLs every process of the subtree (5.14+).
pub const KILL: &str = "cgroup.kill";
/// `cgroup.freeze`: 1 freezes the subtree, 0 thaws it.
pub const FREEZE: &str = "cgroup.freeze";
/// `cgroup.type`: exists in every cgroup except the root of the hierarchy.
pub const TYPE: &str = "cgroup.type";

/// What went wrong talking to cgroupfs.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("writing {value:?} to {}: {}", path.display(), os_msg(err))]
    Write {
        path: PathBuf,
        value: String,
        err: std::io::Error,
    },
    #[error("reading {}: {}", path.display(), os_msg(err))]
    Read { path: PathBuf, err: std::io::Error },
    #[error("creating cgroup {}: {}", path.display(), os_msg(err))]
    Create { path: PathBuf, err: std::io::Error },
    #[error("removing cgroup {}: {}", path.display(), os_msg(err))]
    Remove { path: PathBuf, err: std::io::Error },
    #[error("unexpected content in {}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
    #[error("invalid cgroup path {path:?}: must be relative, without \"..\" or \".\"")]
    InvalidPath { path: PathBuf },
    #[error("io-max device {}: {reason}", device.display())]
    Device { device: PathBuf, reason: String },
    #[error("{}: {what} did not happen within {}", path.display(), humantime::format_duration(*timeout))]
    Timeout {
        path: PathBuf,
        what: &'static str,
        timeout: Duration,
    },
    /// `path` is empty for the inotify instance itself.
    #[error("inotify{}: {}", on_path(path), err.desc())]
    Inotify { path: PathBuf, err: nix::Error },
    #[error(
        "cannot watch {} under token {token}: the token is in use, or the cgroup is watched \
         under another token",
        path.display()
    )]
    AlreadyWatched { token: Token, path: PathBuf },
}

impl CgroupError {
    /// The OS error behind a failed read, write, mkdir or rmdir, if any.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            CgroupError::Write { err, .. }
            | CgroupError::Read { err, .. }
            | CgroupError::Create { err, .. }
            | CgroupError::Remove { err, .. } => {
                err.raw_os_error().map(nix::errno::Errno::from_raw)
            }
            CgroupError::Inotify { err, .. } => Some(*err),
            _ => None,
        }
    }

    /// True when the error is "no such file or directory" (e.g. the cgroup is gone).
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::ENOENT)
    }

    /// True when a cgroup could not be removed because it still holds a process or a child
    /// cgroup (EBUSY): try again when its `cgroup.events` says empty.
    pub fn is_busy(&self) -> bool {
        matches!(self, CgroupError::Remove { .. }) && self.errno() == Some(nix::errno::Errno::EBUSY)
    }
}

fn on_path(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" on {}", path.display())
    }
}

/// `Invalid argument`, not `Invalid argument (os error 22)`.
pub(crate) fn os_msg(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

/// A problem that does not stop the rest of a unit's limits from applying. The caller adds the
/// unit's name: `web.service: io-max cannot be enforced: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The kernel (or the delegating manager) does not offer the controller the key needs.
    ControllerMissing {
        key: &'static str,
        controller: Controller,
        /// The highest cgroup whose `cgroup.controllers` lacks it.
        cgroup: PathBuf,
    },
    /// The controller is there but this knob is not (e.g. `memory.swap.max` without swap
    /// accounting, `io.weight` without io.cost).
    FileMissing { key: &'static str, file: PathBuf },
}

impl Warning {
    /// The `[resources]` key that cannot be enforced.
    pub fn key(&self) -> &'static str {
        match self {
            Warning::ControllerMissing { key, .. } | Warning::FileMissing { key, .. } => key,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ControllerMissing {
                key,
                controller,
                cgroup,
            } => write!(
                f,
                "{key} cannot be enforced: the {controller} controller is not offered in {} \
                 (missing from its cgroup.controllers); `corralctl doctor` tells why and how to \
                 fix it",
                cgroup.display()
            ),
            Warning::FileMissing { key, file } => write!(
                f,
                "{key} cannot be enforced: the kernel has no {}",
                file.display()
            ),
        }
    }
}

/// The controllers corrald manages, in the kernel's order of `cgroup.controllers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Cpuset,
    Cpu,
    Io,
    Memory,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 5] = [
        Controller::Cpuset,
        Controller::Cpu,
        Controller::Io,
        Controller::Memory,
        Controller::Pids,
    ];

    /// The name the kernel uses in `cgroup.controllers`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpuset => "cpuset",
            Controller::Cpu => "cpu",
            Controller::Io => "io",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Controller`]s; iterates in kernel order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ControllerSet(u8);

impl ControllerSet {
    pub const EMPTY: ControllerSet = ControllerSet(0);

    pub fn contains(self, c: Controller) -> bool {
        self.0 & c.bit() != 0
    }
    pub fn insert(&mut self, c: Controller) {
        self.0 |= c.bit();
    }
    pub fn union(self, other: ControllerSet) -> ControllerSet {
        ControllerSet(self.0 | other.0)
    }
    pub fn intersection(self, other: ControllerSet) -> ControllerSet {
        ControllerSet(self.0 & other.0)
    }
    pub fn difference(self, other: ControllerSet) -> ControllerSet {
        ControllerSet(self.0 & !other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Controller> {
        Controller::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    /// Parses `cgroup.controllers` / `cgroup.subtree_control`: names separated by spaces.
    /// Controllers corrald doesn't manage (`hugetlb`, `rdma`, `misc`) are skipped; a leading `+`
    /// is tolerated so the parser also reads what a test fixture holds after a write.
    pub fn parse(text: &str) -> ControllerSet {
        let mut set = ControllerSet::EMPTY;
        for word in text.split_whitespace() {
            if let Some(c) = Controller::from_name(word.trim_start_matches('+')) {
                set.insert(c);
            }
        }
        set
    }
}

impl FromIterator<Controller> for ControllerSet {
    fn from_iter<I: IntoIterator<Item = Controller>>(iter: I) -> Self {
        let mut set = ControllerSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl fmt::Display for ControllerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for c in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(c.name())?;
        }
        Ok(())
    }
}

/// Writes `value` to the knob at `path` with one `write(2)`, without `O_CREAT`. An empty value is
/// written as `"\n"` (resetting `cpuset.cpus` to "inherit"), since a zero-length write may never
/// reach the kernel's handler. `O_TRUNC` makes a test fixture's file hold exactly the last value;
/// cgroupfs ignores it, as it does for the shell's `echo 1 > cgroup.kill`.
pub fn write_knob(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |err: std::io::Error| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        err,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    let bytes = if value.is_empty() {
        b"\n" as &[u8]
    } else {
        value.as_bytes()
    };
    let n = file.write(bytes).map_err(err)?;
    if n != bytes.len() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", bytes.len()),
        )));
    }
    Ok(())
}

/// Reads a knob whole.
///
/// One `read` into a stack buffer, not `read_to_string` (which adds a `statx` and an `lseek`
/// to size its buffer: 6 system calls instead of 3, docs/PERFORMANCE.md finding 4). A read
/// that does not fill the buffer is the whole file: cgroup files are `seq_file`s (or at most a
/// page read at once), and `seq_read_iter` fills the caller's buffer until the file ends; only a
/// full buffer reads on, to EOF.
pub fn read_knob(path: &Path) -> Result<String, CgroupError> {
    let err = |err: std::io::Error| CgroupError::Read {
        path: path.to_path_buf(),
        err,
    };
    let mut file = fs::File::open(path).map_err(err)?;
    let mut buf = [0u8; 4096];
    let mut bytes = Vec::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if bytes.is_empty() && n < buf.len() {
            return String::from_utf8(chunk.to_vec()).map_err(|e| err(invalid_utf8(e)));
        }
        bytes.extend_from_slice(chunk);
        if n == 0 {
            return String::from_utf8(bytes).map_err(|e| err(invalid_utf8(e)));
        }
    }
}

fn invalid_utf8(e: std::string::FromUtf8Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// Reads a knob that may not exist (a controller not enabled, an older kernel): `None` when
/// absent.
pub fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match read_knob(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks that a cgroup path relative to the root names a descendant: no root, no `..`, no `.`.
pub fn check_relative(rel: &Path) -> Result<(), CgroupError> {
    let ok = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidPath {
            path: rel.to_path_buf(),
        })
    }
}

/// `cgroup.events` as read: `populated` and `frozen` (the latter absent in the root cgroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupEvents {
    pub populated: bool,
    pub frozen: bool,
}

/// Parses `cgroup.events`: `populated 1\nfrozen 0\n`. `None` without a `populated` line.
pub fn parse_cgroup_events(text: &str) -> Option<CgroupEvents> {
    let mut populated = None;
    let mut frozen = false;
    for (key, value) in flat_keyed(text) {
        match key {
            "populated" => populated = Some(value != 0),
            "frozen" => frozen = value != 0,
            _ => {}
        }
    }
    Some(CgroupEvents {
        populated: populated?,
        frozen,
    })
}

/// The kernel's "flat keyed" format: `KEY VALUE` a line (memory.events, cpu.stat,
/// cgroup.events). Lines that don't parse are skipped.
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        let key = words.next()?;
        let value = words.next()?.parse().ok()?;
        Some((key, value))
    })
}

/// A handle on one cgroup directory. Cheap to make; nothing is checked until used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Cgroup { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of one of its files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// `mkdir`; an existing cgroup is fine.
    pub fn create(&self) -> Result<(), CgroupError> {
        match fs::create_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(err) => Err(CgroupError::Create {
                path: self.path.clone(),
                err,
            }),
        }
    }

    /// The PIDs in `cgroup.procs` (of this cgroup only, not its descendants). A PID of 0 is a
    /// process outside the reader's PID namespace.
    pub fn procs(&self) -> Result<Vec<u32>, CgroupError> {
        let path = self.file(PROCS);
        let text = read_knob(&path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim().parse().map_err(|_| CgroupError::Parse {
                    path: path.clone(),
                    what: format!("{l:?} is not a PID"),
                })
            })
            .collect()
    }

    /// The PIDs of this cgroup and of every cgroup below it (a delegated unit's nested tree),
    /// visiting at most `max_cgroups` cgroups; a cgroup that vanishes meanwhile counts as
    /// empty.
    pub fn procs_below(&self, max_cgroups: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut todo = vec![self.path.clone()];
        let mut visited = 0;
        while let Some(dir) = todo.pop() {
            visited += 1;
            if visited > max_cgroups {
                break;
            }
            out.extend(Cgroup::new(&dir).procs().unwrap_or_default());
            if let Ok(entries) = fs::read_dir(&dir) {
                todo.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        out
    }

    /// Moves a process (all its threads) into this cgroup. Fails with EBUSY on a cgroup that
    /// has controllers enabled in `cgroup.subtree_control` (the no-internal-process rule).
    pub fn add_pid(&self, pid: u32) -> Result<(), CgroupError> {
        write_knob(&self.file(PROCS), &pid.to_string())
    }

    /// `cgroup.events`.
    pub fn events(&self) -> Result<CgroupEvents, CgroupError> {
        let path = self.file(EVENTS);
        let text = read_knob(&path)?;
        parse_cgroup_events(&text).ok_or_else(|| CgroupError::Parse {
            path,
            what: "no \"populated\" line".into(),
        })
    }

    /// True while a process lives in the cgroup or below it.
    pub fn is_populated(&self) -> Result<bool, CgroupError> {
        self.events().map(|e| e.populated)
    }

    /// SIGKILLs every process of the subtree at once, atomically against forks (`cgroup.kill`).
    pub fn kill(&self) -> Result<(), CgroupError> {
        write_knob(&self.file(KILL), "1")
    }

    /// Freezes the subtree and waits, event-driven, until the kernel reports `frozen 1`.
    pub fn freeze(&self, timeout: Duration) -> Result<(), CgroupError> {
        freezer::set_frozen(&self.path, true, timeout)
    }

    /// Thaws the subtree and waits until the kernel reports `frozen 0`.
    pub fn thaw(&self, timeout: Duration) -> Result<(), CgroupError> {
        freezer::set_frozen(&self.path, false, timeout)
    }

    /// The controllers the parent offers this cgroup (`cgroup.controllers`).
    pub fn controllers(&self) -> Result<ControllerSet, CgroupError> {
        read_knob(&self.file(CONTROLLERS)).map(|s| ControllerSet::parse(&s))
    }

    /// The controllers this cgroup enables for its children (`cgroup.subtree_control`).
    pub fn subtree_control(&self) -> Result<ControllerSet, CgroupError> {
        read_knob(&self.file(SUBTREE_CONTROL)).map(|s| ControllerSet::parse(&s))
    }

    /// Usage figures, read now; whatever the kernel can't give is `None`.
    pub fn stats(&self) -> Stats {
        stats::read(&self.path)
    }

    /// `cpuset.cpus.effective` and `cpuset.mems.effective`; `None` where absent.
    pub fn cpuset_effective(&self) -> Result<cpuset::EffectiveCpuset, CgroupError> {
        cpuset::read_effective(&self.path)
    }

    /// Removes this (empty, childless) cgroup; see [`tree::remove_dir`] for EBUSY.
    /// A cgroup that is already gone is fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        tree::remove_dir(&self.path)
    }

    /// Removes this cgroup and every cgroup below it, deepest first (rmdir only removes
    /// childless cgroups). Processes must be gone: kill first.
    pub fn remove_tree(&self) -> Result<(), CgroupError> {
        tree::remove_subtree(&self.path)
    }

    /// Marks this cgroup as delegated (DESIGN §2 `delegate = true`): the `trusted.delegate`
    /// xattr, and ownership of the directory and of the files a nested manager writes, as
    /// systemd does for `Delegate=yes`.
    pub fn delegate_to(&self, uid: u32, gid: u32) -> Result<(), CgroupError> {
        ownership::mark_delegated(&self.path, uid, gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_of_any_size_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, 10_000] {
            let text: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let path = dir.path().join(format!("knob-{len}"));
            fs::write(&path, &text).unwrap();
            assert_eq!(read_knob(&path).unwrap(), text, "{len} bytes");
        }
        fs::write(dir.path().join("bad"), [0xff, 0xfe]).unwrap();
        let err = read_knob(&dir.path().join("bad")).unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        assert!(
            read_knob(&dir.path().join("absent"))
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn controller_sets_parse_in_kernel_order() {
        let set = ControllerSet::parse("cpuset cpu io memory hugetlb pids rdma misc\n");
        assert_eq!(set.to_string(), "cpuset cpu io memory pids");
        assert_eq!(ControllerSet::parse("+pids +cpu").to_string(), "cpu pids");
        assert!(ControllerSet::parse("hugetlb\n").is_empty());
        let mp: ControllerSet = [Controller::Pids, Controller::Memory].into_iter().collect();
        assert_eq!(mp.to_string(), "memory pids");
        assert_eq!(set.difference(mp).to_string(), "cpuset cpu io");
    }

    #[test]
    fn cgroup_events_parse() {
        let e = parse_cgroup_events("populated 1\nfrozen 0\n").unwrap();
        assert_eq!(
            e,
            CgroupEvents {
                populated: true,
                frozen: false
            }
        );
        assert!(parse_cgroup_events("frozen 1\n").is_none());
        assert!(
            parse_cgroup_events("populated 0\nfrozen 1\n")
                .unwrap()
                .frozen
        );
    }

    #[test]
    fn relative_paths_stay_below_the_root() {
        assert!(check_relative(Path::new("apps.slice/apps-batch.slice/job.service")).is_ok());
        assert!(check_relative(Path::new("")).is_ok());
        for bad in ["/etc", "../x", "a/../../b", "./a"] {
            assert!(check_relative(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn write_never_creates_and_errors_name_path_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let knob = dir.path().join("cpu.maxx");
        let err = write_knob(&knob, "50000 100000").unwrap_err();
        assert!(!knob.exists());
        assert_eq!(
            err.to_string(),
            format!(
                "writing \"50000 100000\" to {}: No such file or directory",
                knob.display()
            )
        );
        assert!(err.is_not_found());
        let real = dir.path().join("cpu.max");
        fs::write(&real, "max 100000\n").unwrap();
        write_knob(&real, "50000 100000").unwrap();
        assert_eq!(fs::read_to_string(&real).unwrap(), "50000 100000");
        write_knob(&real, "").unwrap();
        assert_eq!(fs::read_to_string(&real).unwrap(), "\n");
    }
}
