//! The tree corrald owns below its root: creating a unit's cgroup with its slices, moving the
//! daemon into `<root>/init.scope`, enabling controllers, writing a unit's limits when it starts
//! ([`Tree::realize`]) and when they change ([`Tree::diff`], [`Tree::update`]), and removal.
//!
//! Kernel rules relied on:
//! - **No internal processes**: a non-root cgroup that holds processes cannot enable controllers
//!   in its `cgroup.subtree_control` (EBUSY), and one that has controllers enabled cannot take
//!   processes. Only leaves (services, `init.scope`) hold processes; the daemon leaves the root
//!   for `init.scope` before the first controller is enabled there. The root of the whole
//!   hierarchy is exempt, but corrald lives in `init.scope` there too, so both cases look alike.
//! - **Top-down enabling**: a cgroup can only enable a controller its parent enabled for it (it
//!   must be listed in its own `cgroup.controllers`), so controllers are enabled from the root
//!   down to the unit's parent; the unit's own knob files appear once its parent enables the
//!   controller. The unit's own `cgroup.subtree_control` is never written (it holds processes, or
//!   belongs to a nested manager when delegated).
//! - **Only as needed** (DESIGN §3): memory and pids always, for accounting; cpu for cpu-max,
//!   cpu-period, cpu-weight; cpuset for cpuset-*; io for io-*. Enabling is monotonic: a
//!   controller enabled for one unit stays enabled in the shared ancestors (disabling would need
//!   to know every sibling's needs and is left to a later pass).
//! - A controller missing from the root's `cgroup.controllers` (not built in, or not delegated to
//!   us) cannot be enabled below it: the keys that need it become [`Warning`]s, everything else
//!   is still written. memory and pids missing only cost accounting: no warning.
//!
//! **What the tree remembers**: each ancestor directory it has created or read, with the
//! controllers it is offered and those it enables, so that starting a unit in a slice realized
//! before costs one `mkdir` (its own cgroup), not one per ancestor plus two reads each
//! (docs/PERFORMANCE.md finding 4). We are the only writer of those `cgroup.subtree_control`
//! files; what could change behind our back is forgotten where it happens: a directory that
//! `mkdir` creates anew or that [`Tree::remove`] removes, with everything below it; the
//! children of a directory whose `cgroup.subtree_control` we write (what they are offered
//! changed); everything when the unit's own `mkdir` finds an ancestor gone (ENOENT: it is
//! retried from the root) and on [`Tree::forget`] (a daemon reload).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::settings::{self, HostInfo, LimitsDiff};
use super::{
    CONTROLLERS, Cgroup, CgroupError, Controller, ControllerSet, SUBTREE_CONTROL, Warning,
    check_relative, read_knob, write_knob,
};
use crate::limits::Resources;

/// The name of the leaf the daemon lives in.
pub const INIT_SCOPE: &str = "init.scope";

/// The controllers a cgroup with these limits needs its ancestors to enable.
pub fn needed_controllers(res: &Resources) -> ControllerSet {
    let mut set: ControllerSet = [Controller::Memory, Controller::Pids].into_iter().collect();
    if res.cpu_max.is_some() || res.cpu_period.is_some() || res.cpu_weight.is_some() {
        set.insert(Controller::Cpu);
    }
    if res.cpuset_cpus.is_some() || res.cpuset_mems.is_some() {
        set.insert(Controller::Cpuset);
    }
    if res.io_weight.is_some() || !res.io_max.is_empty() {
        set.insert(Controller::Io);
    }
    set
}

/// A change needs the new limits' controllers, and the old ones' to write their defaults back
/// (those are enabled already, so this adds no write).
fn needed_for_change(current: &Resources, desired: &Resources) -> ControllerSet {
    needed_controllers(current).union(needed_controllers(desired))
}

/// Which of the needed controllers a cgroup has (or would have, for a dry run), and where the
/// others are missing; plus the `cgroup.subtree_control` writes made, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Availability {
    pub available: ControllerSet,
    /// A needed controller and the highest cgroup that doesn't offer it.
    pub missing: Vec<(Controller, PathBuf)>,
    /// Each write to a `cgroup.subtree_control`: the cgroup and the controllers enabled.
    pub enabled: Vec<(PathBuf, ControllerSet)>,
}

impl Availability {
    pub fn missing_at(&self, c: Controller) -> Option<&Path> {
        self.missing
            .iter()
            .find(|(m, _)| *m == c)
            .map(|(_, p)| p.as_path())
    }
}

/// corrald's tree: a root directory (`/sys/fs/cgroup`, a delegated cgroup, a temp dir) and
/// operations on the cgroups below it, named by relative paths.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    /// Ancestor directories known to exist (see the module docs).
    known: RefCell<HashMap<PathBuf, Known>>,
}

/// What the tree remembers of an ancestor directory.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// Its `cgroup.controllers`.
    offered: ControllerSet,
    /// Its `cgroup.subtree_control`.
    enabled: ControllerSet,
}

impl PartialEq for Tree {
    /// Two trees are the same when they have the same root; what they remember doesn't count.
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Eq for Tree {}

impl Tree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Tree {
            root: root.into(),
            known: RefCell::new(HashMap::new()),
        }
    }

    /// Forgets every directory remembered: the next realize reads everything again.
    pub fn forget(&self) {
        self.known.borrow_mut().clear();
    }

    /// Forgets `dir` and everything below it.
    fn forget_below(&self, dir: &Path, with_itself: bool) {
        self.known
            .borrow_mut()
            .retain(|p, _| !(p.starts_with(dir) && (with_itself || p != dir)));
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup at `rel` (e.g. `apps.slice/apps-batch.slice/job.service`); `""` is the root.
    pub fn cgroup(&self, rel: impl AsRef<Path>) -> Result<Cgroup, CgroupError> {
        let rel = rel.as_ref();
        check_relative(rel)?;
        Ok(Cgroup::new(self.root.join(rel)))
    }

    /// The directories from the root down to `rel`'s parent, top-down.
    fn ancestors(&self, rel: &Path) -> Vec<PathBuf> {
        let parts: Vec<_> = rel.components().collect();
        if parts.is_empty() {
            return Vec::new();
        }
        let mut out = vec![self.root.clone()];
        let mut cur = self.root.clone();
        for part in &parts[..parts.len() - 1] {
            cur.push(part);
            out.push(cur.clone());
        }
        out
    }

    /// Creates `rel` and every slice above it (each `mkdir` top-down; existing ones are fine;
    /// ancestors the tree knows exist are skipped).
    pub fn create(&self, rel: impl AsRef<Path>) -> Result<Cgroup, CgroupError> {
        let rel = rel.as_ref();
        check_relative(rel)?;
        match self.create_below(rel, true) {
            // An ancestor it remembered is gone: forget, and mkdir every level again.
            Err(e) if e.is_not_found() => {
                self.forget();
                self.create_below(rel, false)
            }
            other => other,
        }
    }

    fn create_below(&self, rel: &Path, skip_known: bool) -> Result<Cgroup, CgroupError> {
        let mut cur = self.root.clone();
        let mut parts = rel.components().peekable();
        while let Some(part) = parts.next() {
            cur.push(part);
            let leaf = parts.peek().is_none();
            if !leaf && skip_known && self.known.borrow().contains_key(&cur) {
                continue;
            }
            match fs::create_dir(&cur) {
                // A new directory: nothing remembered of that path can be true of it.
                Ok(()) => self.forget_below(&cur, true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(CgroupError::Create { path: cur, err }),
            }
        }
        Ok(Cgroup::new(cur))
    }

    /// Moves `pid` (normally the daemon itself) into `<root>/init.scope`, creating it. Must come
    /// before any controller is enabled in the root (no-internal-process rule).
    pub fn enter_init_scope(&self, pid: u32) -> Result<Cgroup, CgroupError> {
        let scope = Cgroup::new(self.root.join(INIT_SCOPE));
        scope.create()?;
        scope.add_pid(pid)?;
        Ok(scope)
    }

    /// Enables `needed` controllers top-down in every ancestor of `rel`, writing only those not
    /// yet enabled, one write per cgroup (`+cpu +memory +pids`; the kernel applies it whole).
    pub fn enable_controllers(
        &self,
        rel: impl AsRef<Path>,
        needed: ControllerSet,
    ) -> Result<Availability, CgroupError> {
        let rel = rel.as_ref();
        check_relative(rel)?;
        let mut avail = Availability {
            available: needed,
            ..Availability::default()
        };
        for dir in self.ancestors(rel) {
            let remembered = self.known.borrow().get(&dir).copied();
            let mut known = match remembered {
                Some(k) => k,
                None => Known {
                    offered: ControllerSet::parse(&read_knob(&dir.join(CONTROLLERS))?),
                    enabled: ControllerSet::parse(&read_knob(&dir.join(SUBTREE_CONTROL))?),
                },
            };
            note_missing(&mut avail, known.offered, &dir);
            let todo = avail.available.difference(known.enabled);
            if !todo.is_empty() {
                let value = todo
                    .iter()
                    .map(|c| format!("+{c}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                write_knob(&dir.join(SUBTREE_CONTROL), &value)?;
                known.enabled = known.enabled.union(todo);
                // What the children are offered follows this file.
                self.forget_below(&dir, false);
                avail.enabled.push((dir.clone(), todo));
            }
            self.known.borrow_mut().insert(dir, known);
        }
        if rel.as_os_str().is_empty() {
            let offered = Cgroup::new(&self.root).controllers()?;
            note_missing(&mut avail, offered, &self.root);
        }
        Ok(avail)
    }

    /// What [`enable_controllers`](Self::enable_controllers) would make available, without
    /// writing: a controller the root offers can be enabled all the way down.
    pub fn probe_controllers(
        &self,
        rel: impl AsRef<Path>,
        needed: ControllerSet,
    ) -> Result<Availability, CgroupError> {
        check_relative(rel.as_ref())?;
        let mut avail = Availability {
            available: needed,
            ..Availability::default()
        };
        let offered = Cgroup::new(&self.root).controllers()?;
        note_missing(&mut avail, offered, &self.root);
        Ok(avail)
    }

    /// Creates the cgroup of a starting unit, enables what its limits need and writes every key
    /// that is set. Slices above it must have been realized first for their own limits.
    pub fn realize(
        &self,
        rel: impl AsRef<Path>,
        res: &Resources,
        host: &HostInfo,
    ) -> Result<Vec<Warning>, CgroupError> {
        let rel = rel.as_ref();
        let cg = self.create(rel)?;
        let avail = self.enable_controllers(rel, needed_controllers(res))?;
        settings::apply_fresh(cg.path(), res, host, &avail)
    }

    /// The writes a change of limits would make (`--dry-run`), with each file's content now.
    pub fn diff(
        &self,
        rel: impl AsRef<Path>,
        current: &Resources,
        desired: &Resources,
        host: &HostInfo,
    ) -> Result<LimitsDiff, CgroupError> {
        let rel = rel.as_ref();
        let cg = self.cgroup(rel)?;
        let avail = self.probe_controllers(rel, needed_for_change(current, desired))?;
        settings::diff(cg.path(), current, desired, host, &avail)
    }

    /// Changes a live cgroup's limits: enables what the new limits need, then makes the writes
    /// [`diff`](Self::diff) lists. Returns what was written.
    pub fn update(
        &self,
        rel: impl AsRef<Path>,
        current: &Resources,
        desired: &Resources,
        host: &HostInfo,
    ) -> Result<LimitsDiff, CgroupError> {
        let rel = rel.as_ref();
        let cg = self.cgroup(rel)?;
        let avail = self.enable_controllers(rel, needed_for_change(current, desired))?;
        let diff = settings::diff(cg.path(), current, desired, host, &avail)?;
        settings::apply_changes(&diff.changes)?;
        Ok(diff)
    }

    /// Removes a unit's cgroup and everything below it (a delegated unit's nested tree),
    /// deepest first. Its processes must be gone: [`Cgroup::kill`] first. The work grows
    /// with what is below: the manager's loop uses [`Tree::remove_childless`].
    pub fn remove(&self, rel: impl AsRef<Path>) -> Result<(), CgroupError> {
        self.removable(rel.as_ref())?.remove_tree()
    }

    /// Removes the cgroup at `rel` alone, one `rmdir`: a slice (its units' cgroups go with
    /// their units) or a unit's own cgroup. A child cgroup or a process makes it EBUSY
    /// ([`CgroupError::is_busy`]); nothing below it is walked.
    pub fn remove_childless(&self, rel: impl AsRef<Path>) -> Result<(), CgroupError> {
        self.removable(rel.as_ref())?.remove()
    }

    /// The cgroup at `rel`, forgotten by this tree's records; never the root.
    fn removable(&self, rel: &Path) -> Result<Cgroup, CgroupError> {
        if rel.as_os_str().is_empty() {
            return Err(CgroupError::InvalidPath {
                path: rel.to_path_buf(),
            });
        }
        let cg = self.cgroup(rel)?;
        self.forget_below(cg.path(), true);
        Ok(cg)
    }
}

fn note_missing(avail: &mut Availability, offered: ControllerSet, dir: &Path) {
    for c in avail.available.difference(offered).iter() {
        avail.missing.push((c, dir.to_path_buf()));
    }
    avail.available = avail.available.intersection(offered);
}

/// `rmdir` of one cgroup; a cgroup already gone is fine.
///
/// One attempt, never a wait: `rmdir` fails with EBUSY while the cgroup holds a process or a
/// child cgroup ([`CgroupError::is_busy`]), and whoever removes it tries again when its
/// `cgroup.events` next says empty (the manager keeps such cgroups watched). A process killed
/// through `cgroup.kill` still counts until it has gone through `exit()`: the event, not a
/// sleep, says when it has.
pub fn remove_dir(path: &Path) -> Result<(), CgroupError> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(CgroupError::Remove {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// Removes `path` and every cgroup below it, children before parents.
pub fn remove_subtree(path: &Path) -> Result<(), CgroupError> {
    // Most cgroups have no child cgroup: one `rmdir`, no listing. It fails with EBUSY when
    // there are children (or processes): then bottom-up.
    match fs::remove_dir(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(CgroupError::Read {
                path: path.to_path_buf(),
                err,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|err| CgroupError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        // cgroupfs has files and directories only; `file_type` doesn't follow links.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_subtree(&entry.path())?;
        }
    }
    remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fixture::Fixture;
    use crate::cgroup::io::{DevNum, FixedDevices};
    use crate::cgroup::settings::Change;
    use crate::limits::RawValue::Str;
    use std::time::Duration;

    const GIB: u64 = 1 << 30;
    const JOB: &str = "apps.slice/apps-batch.slice/job.service";

    fn host() -> HostInfo {
        let vda = DevNum {
            major: 254,
            minor: 0,
        };
        HostInfo::new(
            4 * GIB,
            FixedDevices::new([("/dev/vda", vda), ("/dev/vda1", vda)]),
        )
    }

    fn res(pairs: &[(&str, &str)]) -> Resources {
        let mut r = Resources::default();
        for (k, v) in pairs {
            r.set(k, Str(v)).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        r
    }

    fn realized(pairs: &[(&str, &str)]) -> (Fixture, Vec<Warning>) {
        let fx = Fixture::new();
        fx.cgroup(JOB);
        let w = Tree::new(fx.path())
            .realize(JOB, &res(pairs), &host())
            .unwrap();
        (fx, w)
    }

    #[test]
    fn every_key_is_written_exactly() {
        let mut r = res(&[
            ("cpu-max", "20%"),
            ("cpu-period", "50ms"),
            ("cpu-weight", "200"),
            ("cpuset-cpus", "0-1"),
            ("cpuset-mems", "0"),
            ("memory-max", "512M"),
            ("memory-high", "25%"),
            ("memory-low", "64M"),
            ("memory-min", "4096"),
            ("memory-swap-max", "0"),
            ("pids-max", "64"),
            ("io-weight", "300"),
            ("io-max", "/dev/vda1 rbps=20M riops=2000"),
        ]);
        r.oom_group = true;
        let fx = Fixture::new();
        fx.cgroup(JOB);
        let warnings = Tree::new(fx.path()).realize(JOB, &r, &host()).unwrap();
        assert_eq!(warnings, vec![]);
        let want = [
            ("cpu.idle", "0"),
            ("cpu.weight", "200"),
            ("cpu.max", "10000 50000"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("memory.max", "536870912"),
            ("memory.high", "1073741824"),
            ("memory.low", "67108864"),
            ("memory.min", "4096"),
            ("memory.swap.max", "0"),
            ("memory.oom.group", "1"),
            ("pids.max", "64"),
            ("io.weight", "default 300"),
            ("io.bfq.weight", "default 118"),
            // The partition resolved to its disk.
            (
                "io.max",
                "254:0 rbps=20971520 wbps=max riops=2000 wiops=max",
            ),
        ];
        for (file, content) in want {
            assert_eq!(fx.read(JOB, file), content, "{file}");
        }
    }

    #[test]
    fn every_format_variant() {
        // (keys set, file, exact content). Files not listed keep the fixture's default.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("cpu-max", "max")], "cpu.max", "max 100000"),
            (&[("cpu-max", "150%")], "cpu.max", "150000 100000"),
            (&[("cpu-max", "12.5%")], "cpu.max", "12500 100000"),
            (
                &[("cpu-max", "10%"), ("cpu-period", "10ms")],
                "cpu.max",
                "1000 10000",
            ),
            (&[("cpu-period", "1s")], "cpu.max", "max 1000000"),
            (&[("cpu-weight", "idle")], "cpu.idle", "1"),
            (&[("cpu-weight", "idle")], "cpu.weight", "100\n"),
            (&[("cpu-weight", "10000")], "cpu.weight", "10000"),
            (&[("cpu-weight", "1")], "cpu.idle", "0"),
            (&[("cpuset-cpus", "0-1,3")], "cpuset.cpus", "0-1,3"),
            (&[("cpuset-cpus", "")], "cpuset.cpus", "\n"),
            (&[("memory-max", "max")], "memory.max", "max"),
            (&[("memory-max", "50%")], "memory.max", "2147483648"),
            (&[("memory-max", "1.5G")], "memory.max", "1610612736"),
            (&[("memory-high", "0")], "memory.high", "0"),
            (&[("memory-low", "max")], "memory.low", "max"),
            (&[("memory-min", "1%")], "memory.min", "42949672"),
            (&[("memory-swap-max", "max")], "memory.swap.max", "max"),
            (&[("pids-max", "max")], "pids.max", "max"),
            (&[("pids-max", "1")], "pids.max", "1"),
            (&[("io-weight", "1")], "io.weight", "default 1"),
            (&[("io-weight", "10000")], "io.bfq.weight", "default 1000"),
            (
                &[("io-max", "/dev/vda rbps=2 wbps=3 riops=4 wiops=5")],
                "io.max",
                "254:0 rbps=2 wbps=3 riops=4 wiops=5",
            ),
            (
                &[("io-max", "/dev/vda wbps=1M")],
                "io.max",
                "254:0 rbps=max wbps=1048576 riops=max wiops=max",
            ),
            (&[], "memory.oom.group", "0\n"),
        ];
        for (pairs, file, content) in cases {
            let (fx, warnings) = realized(pairs);
            assert_eq!(warnings, vec![], "{pairs:?}");
            assert_eq!(fx.read(JOB, file), *content, "{pairs:?} -> {file}");
        }
    }

    #[test]
    fn slices_gone_behind_the_trees_back_are_made_and_set_up_again() {
        let fx = Fixture::new();
        fx.cgroup(JOB);
        let tree = Tree::new(fx.path());
        let set = |s: &str| ControllerSet::parse(s);
        tree.realize(JOB, &Resources::default(), &host()).unwrap();
        assert_eq!(
            fx.read("apps.slice", "cgroup.subtree_control"),
            "+memory +pids"
        );

        // A sibling in the same slices: the tree remembers they are set up.
        fx.cgroup("apps.slice/apps-batch.slice/other.service");
        let a = tree
            .enable_controllers(
                "apps.slice/apps-batch.slice/other.service",
                set("memory pids"),
            )
            .unwrap();
        assert!(a.enabled.is_empty(), "{:?}", a.enabled);

        // Someone removes the slices: the unit's mkdir fails, the tree forgets and mkdirs
        // every level again, then reads and enables them again.
        fs::remove_dir_all(fx.path().join("apps.slice")).unwrap();
        let cg = tree.create(JOB).unwrap();
        assert!(cg.path().is_dir());
        for rel in ["apps.slice", "apps.slice/apps-batch.slice"] {
            fx.write(rel, "cgroup.controllers", "memory pids\n");
            fx.write(rel, "cgroup.subtree_control", "");
        }
        let a = tree.enable_controllers(JOB, set("memory pids")).unwrap();
        let root = fx.path().to_path_buf();
        assert_eq!(
            a.enabled,
            vec![
                (root.join("apps.slice"), set("memory pids")),
                (root.join("apps.slice/apps-batch.slice"), set("memory pids")),
            ]
        );
    }

    #[test]
    fn controllers_enabled_top_down_and_only_as_needed() {
        let fx = Fixture::new();
        fx.cgroup(JOB);
        fx.cgroup("apps.slice/web.service");
        let tree = Tree::new(fx.path());
        let root = fx.path().to_path_buf();
        let slice = root.join("apps.slice");
        let batch = slice.join("apps-batch.slice");
        let set = |s: &str| ControllerSet::parse(s);

        // Accounting only: memory and pids, root first, down to the unit's parent.
        let a = tree.enable_controllers(JOB, needed_controllers(&Resources::default()));
        let a = a.unwrap();
        assert_eq!(
            a.enabled,
            vec![
                (root.clone(), set("memory pids")),
                (slice.clone(), set("memory pids")),
                (batch.clone(), set("memory pids")),
            ]
        );
        assert_eq!(a.available, set("memory pids"));
        assert_eq!(fx.read("", "cgroup.subtree_control"), "+memory +pids");
        assert_eq!(
            fx.read(JOB, "cgroup.subtree_control"),
            "",
            "never the leaf's own"
        );

        // A second unit needing cpu: only +cpu, only where it is missing.
        let a = tree
            .enable_controllers(
                "apps.slice/web.service",
                needed_controllers(&res(&[("cpu-max", "50%")])),
            )
            .unwrap();
        assert_eq!(
            a.enabled,
            vec![(root.clone(), set("cpu")), (slice.clone(), set("cpu"))]
        );
        assert_eq!(fx.read("", "cgroup.subtree_control"), "+cpu");

        // The fixture now holds only the last write; restore what the kernel would show.
        fx.write("", "cgroup.subtree_control", "cpu memory pids\n");
        fx.write("apps.slice", "cgroup.subtree_control", "cpu memory pids\n");
        let needs = |pairs: &[(&str, &str)]| needed_controllers(&res(pairs));
        assert_eq!(needs(&[("cpu-weight", "idle")]), set("cpu memory pids"));
        assert_eq!(needs(&[("cpu-period", "10ms")]), set("cpu memory pids"));
        assert_eq!(needs(&[("cpuset-mems", "0")]), set("cpuset memory pids"));
        assert_eq!(
            needs(&[("io-max", "/dev/vda rbps=2M")]),
            set("io memory pids")
        );
        assert_eq!(needs(&[("io-weight", "50")]), set("io memory pids"));
        assert_eq!(needs(&[("memory-max", "1G")]), set("memory pids"));
        let a = tree
            .enable_controllers(JOB, needs(&[("cpuset-cpus", "0"), ("io-weight", "50")]))
            .unwrap();
        assert_eq!(
            a.enabled,
            vec![
                (root.clone(), set("cpuset io")),
                (slice.clone(), set("cpuset io")),
                (batch.clone(), set("cpuset io")),
            ]
        );
        assert_eq!(
            fx.read("apps.slice", "cgroup.subtree_control"),
            "+cpuset +io"
        );
    }

    #[test]
    fn missing_controller_warns_and_the_rest_applies() {
        let fx = Fixture::with_controllers("cpuset cpu memory hugetlb pids rdma misc");
        fx.cgroup(JOB);
        let r = res(&[
            ("memory-max", "1G"),
            ("io-weight", "300"),
            ("io-max", "/dev/vda rbps=2M"),
            ("pids-max", "10"),
        ]);
        let warnings = Tree::new(fx.path()).realize(JOB, &r, &host()).unwrap();
        let root = fx.path().to_path_buf();
        assert_eq!(
            warnings,
            vec![
                Warning::ControllerMissing {
                    key: "io-weight",
                    controller: Controller::Io,
                    cgroup: root.clone()
                },
                Warning::ControllerMissing {
                    key: "io-max",
                    controller: Controller::Io,
                    cgroup: root.clone()
                },
            ]
        );
        assert_eq!(
            warnings[0].to_string(),
            format!(
                "io-weight cannot be enforced: the io controller is not offered in {} \
                 (missing from its cgroup.controllers); `corralctl doctor` tells why and how \
                 to fix it",
                root.display()
            )
        );
        assert_eq!(fx.read(JOB, "memory.max"), "1073741824");
        assert_eq!(fx.read(JOB, "pids.max"), "10");
        assert_eq!(fx.read("", "cgroup.subtree_control"), "+memory +pids");

        // No memory or pids at all (a v1-shared host): accounting is lost, silently.
        let fx = Fixture::with_controllers("hugetlb");
        fx.cgroup("a.service");
        let w = Tree::new(fx.path())
            .realize("a.service", &Resources::default(), &host())
            .unwrap();
        assert_eq!(w, vec![]);
        assert_eq!(fx.read("", "cgroup.subtree_control"), "");
    }

    #[test]
    fn missing_optional_knobs() {
        let fx = Fixture::new();
        let dir = fx.cgroup(JOB);
        fs::remove_file(dir.join("memory.swap.max")).unwrap();
        fs::remove_file(dir.join("io.bfq.weight")).unwrap();
        let r = res(&[
            ("memory-swap-max", "0"),
            ("memory-max", "1G"),
            ("io-weight", "200"),
        ]);
        let w = Tree::new(fx.path()).realize(JOB, &r, &host()).unwrap();
        assert_eq!(
            w,
            vec![Warning::FileMissing {
                key: "memory-swap-max",
                file: dir.join("memory.swap.max")
            }]
        );
        assert_eq!(
            w[0].to_string(),
            format!(
                "memory-swap-max cannot be enforced: the kernel has no {}",
                dir.join("memory.swap.max").display()
            )
        );
        assert_eq!(fx.read(JOB, "memory.max"), "1073741824");
        assert_eq!(fx.read(JOB, "io.weight"), "default 200");
        assert!(!dir.join("io.bfq.weight").exists(), "never created");

        // A required knob that is missing is an error that names the file and the value.
        fs::remove_file(dir.join("pids.max")).unwrap();
        let err = Tree::new(fx.path())
            .realize(JOB, &res(&[("pids-max", "5")]), &host())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "writing \"5\" to {}: No such file or directory",
                dir.join("pids.max").display()
            )
        );
        assert!(!dir.join("pids.max").exists());
    }

    #[test]
    fn write_errors_carry_path_and_value() {
        let fx = Fixture::new();
        let dir = fx.cgroup(JOB);
        fs::remove_file(dir.join("cpu.max")).unwrap();
        fs::create_dir(dir.join("cpu.max")).unwrap();
        let err = Tree::new(fx.path())
            .realize(JOB, &res(&[("cpu-max", "50%")]), &host())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "writing \"50000 100000\" to {}: Is a directory",
                dir.join("cpu.max").display()
            )
        );
        let err = Tree::new(fx.path())
            .realize(JOB, &res(&[("io-max", "/dev/sdq rbps=2M")]), &host())
            .unwrap_err();
        assert_eq!(err.to_string(), "io-max device /dev/sdq: unknown device");
    }

    fn change(key: &'static str, dir: &Path, file: &str, old: &str, new: &str) -> Change {
        Change {
            key,
            file: dir.join(file),
            old: Some(old.to_string()),
            new: new.to_string(),
        }
    }

    #[test]
    fn dry_run_diffs_then_update() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            &'a [(&'static str, &'a str, &'a str, &'a str)],
        );
        let cases: &[Case] = &[
            (
                &[("memory-max", "512M")],
                &[("memory-max", "1G")],
                &[("memory-max", "memory.max", "536870912", "1073741824")],
            ),
            // Set -> unset writes the kernel default back.
            (
                &[("memory-max", "512M"), ("memory-low", "1G")],
                &[],
                &[
                    ("memory-max", "memory.max", "536870912", "max"),
                    ("memory-low", "memory.low", "1073741824", "0"),
                ],
            ),
            // The same bytes written another way: nothing to do.
            (&[("memory-max", "2G")], &[("memory-max", "50%")], &[]),
            // An explicit default where the file already holds it: nothing to do.
            (&[], &[("pids-max", "max")], &[]),
            (
                &[("pids-max", "10")],
                &[("pids-max", "max")],
                &[("pids-max", "pids.max", "10", "max")],
            ),
            // A weight going idle: reset the weight while it is still writable, then idle.
            (
                &[("cpu-weight", "200")],
                &[("cpu-weight", "idle")],
                &[
                    ("cpu-weight", "cpu.weight", "200", "100"),
                    ("cpu-weight", "cpu.idle", "0", "1"),
                ],
            ),
            // Idle to a weight: cpu.idle = 0 first.
            (
                &[("cpu-weight", "idle")],
                &[("cpu-weight", "300")],
                &[
                    ("cpu-weight", "cpu.idle", "1", "0"),
                    ("cpu-weight", "cpu.weight", "100", "300"),
                ],
            ),
            (
                &[("cpu-weight", "idle")],
                &[],
                &[("cpu-weight", "cpu.idle", "1", "0")],
            ),
            // A new period rescales the quota.
            (
                &[("cpu-max", "50%")],
                &[("cpu-max", "50%"), ("cpu-period", "50ms")],
                &[("cpu-max", "cpu.max", "50000 100000", "25000 50000")],
            ),
            (
                &[("cpu-max", "50%")],
                &[],
                &[("cpu-max", "cpu.max", "50000 100000", "max 100000")],
            ),
            (
                &[("cpuset-cpus", "0-1")],
                &[],
                &[("cpuset-cpus", "cpuset.cpus", "0-1", "")],
            ),
            (
                &[("io-weight", "300")],
                &[("io-weight", "100")],
                &[
                    ("io-weight", "io.weight", "default 300", "default 100"),
                    ("io-weight", "io.bfq.weight", "default 118", "default 100"),
                ],
            ),
            // io-max by device: a field changes; the device named by its partition is the same.
            (
                &[("io-max", "/dev/vda rbps=2M")],
                &[("io-max", "/dev/vda1 rbps=2M wiops=100")],
                &[(
                    "io-max",
                    "io.max",
                    "254:0 rbps=2097152 wbps=max riops=max wiops=max",
                    "254:0 rbps=2097152 wbps=max riops=max wiops=100",
                )],
            ),
            (
                &[("io-max", "/dev/vda rbps=2M")],
                &[],
                &[(
                    "io-max",
                    "io.max",
                    "254:0 rbps=2097152 wbps=max riops=max wiops=max",
                    "254:0 rbps=max wbps=max riops=max wiops=max",
                )],
            ),
        ];
        for (cur, des, want) in cases {
            let (fx, _) = realized(cur);
            let tree = Tree::new(fx.path());
            let dir = fx.path().join(JOB);
            let (cur, des) = (res(cur), res(des));
            let want: Vec<Change> = want
                .iter()
                .map(|(k, f, o, n)| change(k, &dir, f, o, n))
                .collect();
            let d = tree.diff(JOB, &cur, &des, &host()).unwrap();
            assert_eq!(d.changes, want, "{cur:?} -> {des:?}");
            assert_eq!(d.warnings, vec![]);
            let applied = tree.update(JOB, &cur, &des, &host()).unwrap();
            assert_eq!(applied.changes, want);
            for c in &want {
                // An empty value goes out as "\n" (see write_knob).
                let written = if c.new.is_empty() {
                    "\n"
                } else {
                    c.new.as_str()
                };
                assert_eq!(fs::read_to_string(&c.file).unwrap(), written);
            }
            let again = tree.diff(JOB, &des, &des, &host()).unwrap();
            assert_eq!(again.changes, vec![], "no-op after update");
        }
    }

    #[test]
    fn oom_group_and_absent_files_in_diffs() {
        let fx = Fixture::new();
        let dir = fx.cgroup(JOB);
        let tree = Tree::new(fx.path());
        let on = Resources {
            oom_group: true,
            ..Resources::default()
        };
        tree.realize(JOB, &on, &host()).unwrap();
        assert_eq!(fx.read(JOB, "memory.oom.group"), "1");
        let d = tree.diff(JOB, &on, &Resources::default(), &host()).unwrap();
        assert_eq!(
            d.changes,
            vec![change("oom-policy", &dir, "memory.oom.group", "1", "0")]
        );
        // A file that doesn't exist yet (controller not enabled yet): old is None.
        fs::remove_file(dir.join("cpu.max")).unwrap();
        let d = tree
            .diff(
                JOB,
                &Resources::default(),
                &res(&[("cpu-max", "20%")]),
                &host(),
            )
            .unwrap();
        assert_eq!(
            d.changes,
            vec![Change {
                key: "cpu-max",
                file: dir.join("cpu.max"),
                old: None,
                new: "20000 100000".into()
            }]
        );
        assert_eq!(
            d.changes[0].to_string(),
            format!(
                "{}: \"\" -> \"20000 100000\"",
                dir.join("cpu.max").display()
            )
        );
        // A dry run against a root without io: a warning, not a change.
        let fx = Fixture::with_controllers("cpu memory pids");
        fx.cgroup(JOB);
        let d = Tree::new(fx.path())
            .diff(
                JOB,
                &Resources::default(),
                &res(&[("io-weight", "5")]),
                &host(),
            )
            .unwrap();
        assert_eq!(d.changes, vec![]);
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.warnings[0].key(), "io-weight");
    }

    #[test]
    fn tree_paths_and_init_scope() {
        let fx = Fixture::new();
        fx.cgroup("init.scope");
        let tree = Tree::new(fx.path());
        assert!(matches!(
            tree.cgroup("../etc"),
            Err(CgroupError::InvalidPath { .. })
        ));
        assert!(tree.create("/abs").is_err());
        assert!(tree.remove("").is_err());
        let scope = tree.enter_init_scope(4321).unwrap();
        assert_eq!(scope.path(), fx.path().join("init.scope"));
        assert_eq!(fx.read("init.scope", "cgroup.procs"), "4321");
        // mkdir of every level; existing ones are fine.
        let cg = tree.create("a.slice/a-b.slice/x.service").unwrap();
        assert!(cg.exists());
        tree.create("a.slice/a-b.slice/x.service").unwrap();
        tree.remove("a.slice").unwrap();
        assert!(!fx.path().join("a.slice").exists());
        tree.remove("a.slice").unwrap();
    }

    #[test]
    fn handle_reads_and_writes() {
        let fx = Fixture::new();
        let dir = fx.cgroup("a.service");
        let cg = Cgroup::new(&dir);
        fx.write("a.service", "cgroup.procs", "12\n345\n");
        assert_eq!(cg.procs().unwrap(), vec![12, 345]);
        fx.write("a.service", "cgroup.procs", "12\nabc\n");
        assert!(matches!(cg.procs(), Err(CgroupError::Parse { .. })));
        cg.kill().unwrap();
        assert_eq!(fx.read("a.service", "cgroup.kill"), "1");
        assert!(!cg.is_populated().unwrap());
        assert_eq!(
            cg.controllers().unwrap().to_string(),
            "cpuset cpu io memory pids"
        );
        assert_eq!(cg.cpuset_effective().unwrap().cpus.unwrap().as_str(), "0-3");
        assert_eq!(cg.stats().memory_current, Some(0));
        assert_eq!(cg.stats().oom_kills(), Some(0));
    }

    #[test]
    fn freeze_waits_for_the_kernel() {
        let fx = Fixture::new();
        let dir = fx.cgroup("a.service");
        let cg = Cgroup::new(&dir);
        // Already frozen (an empty cgroup freezes at once).
        fx.write("a.service", "cgroup.events", "populated 0\nfrozen 1\n");
        cg.freeze(Duration::from_secs(1)).unwrap();
        assert_eq!(fx.read("a.service", "cgroup.freeze"), "1");
        // Never reported: times out at the deadline.
        fx.write("a.service", "cgroup.events", "populated 1\nfrozen 0\n");
        let t = std::time::Instant::now();
        let err = cg.freeze(Duration::from_millis(100)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(
            matches!(
                err,
                CgroupError::Timeout {
                    what: "frozen 1",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("frozen 1 did not happen within 100ms"),
            "{err}"
        );
        // Reported later: the modify event wakes the wait.
        let events = dir.join("cgroup.events");
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(50));
            // One same-length write over the old content: unlike fs::write (truncate, then
            // write) the reader never sees an empty file, as on cgroupfs.
            let mut f = fs::OpenOptions::new().write(true).open(events).unwrap();
            f.write_all(b"populated 1\nfrozen 1\n").unwrap();
        });
        let t = std::time::Instant::now();
        cg.freeze(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(4));
        writer.join().unwrap();
        fx.write("a.service", "cgroup.events", "populated 1\nfrozen 0\n");
        cg.thaw(Duration::from_secs(1)).unwrap();
        assert_eq!(fx.read("a.service", "cgroup.freeze"), "0");
    }
}
