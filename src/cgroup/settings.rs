//! From a [`Resources`] to file contents: the machine facts a write depends on ([`HostInfo`]),
//! the per-file plan every controller module contributes (`Setting`), the first application of
//! a unit's limits and the live difference between two sets of limits ([`Change`], for
//! `--dry-run` and `SetUnitLimits`).
//!
//! Decisions:
//! - a fresh cgroup gets only the keys that are set (DESIGN §3: an unset key writes nothing);
//! - a live change writes only the files whose content the change alters: for each file the
//!   string of the current and of the desired limits are compared, and a key going from set to
//!   unset writes the kernel's default back (`max`, `0`, `100`, `default 100`, `""` for cpusets);
//!   a write that would leave the file as it reads now is dropped;
//! - `old` in a [`Change`] is read from the cgroup, not derived: it is what the file holds now,
//!   `None` when the file doesn't exist yet (its controller isn't enabled yet). For the files
//!   holding one line per device (`io.max`, `io.weight`) it is that device's line, or the
//!   kernel's default for a device that has no line;
//! - percentages of RAM are resolved when the plan is made: comparing two plans compares bytes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::io::{ResolveDevice, SysfsDevices};
use super::tree::Availability;
use super::{
    CgroupError, Controller, ControllerSet, Warning, read_knob, read_optional, write_knob,
};
use crate::limits::Resources;

/// What writing limits needs to know about the machine. Injectable so tests don't depend on
/// the host's RAM or disks.
pub struct HostInfo {
    /// `MemTotal` in bytes, for `memory-* = "N%"`.
    pub ram_bytes: u64,
    /// Turns an `io-max` device path into its whole disk's `MAJ:MIN`.
    pub devices: Box<dyn ResolveDevice>,
}

impl HostInfo {
    pub fn new(ram_bytes: u64, devices: impl ResolveDevice + 'static) -> Self {
        HostInfo {
            ram_bytes,
            devices: Box::new(devices),
        }
    }

    /// RAM from `/proc/meminfo`, devices from `/sys/dev/block`.
    pub fn detect() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/meminfo");
        let text = read_knob(path)?;
        let ram = parse_mem_total(&text).ok_or_else(|| CgroupError::Parse {
            path: path.to_path_buf(),
            what: "no MemTotal line".into(),
        })?;
        Ok(HostInfo::new(ram, SysfsDevices::new()))
    }
}

impl fmt::Debug for HostInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostInfo")
            .field("ram_bytes", &self.ram_bytes)
            .finish_non_exhaustive()
    }
}

/// `MemTotal:       24684096 kB` → bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// Whether a knob may be missing although its controller is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Always there with the controller: writing to a missing one is an error.
    Required,
    /// Depends on kernel configuration: warn and go on (`memory.swap.max`, `io.weight`).
    Warn,
    /// Written "where present" (`io.bfq.weight`): skipped silently.
    Silent,
}

/// One file's content derived from a [`Resources`]: `value` is `None` when the key behind it is
/// unset, `reset` is what returns the file to the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The `[resources]` key a warning names.
    pub key: &'static str,
    pub controller: Controller,
    pub file: &'static str,
    /// For files with one line per device: the line's first word (`default`, `254:0`).
    pub line: Option<String>,
    pub value: Option<String>,
    pub reset: String,
    pub presence: Presence,
}

impl Setting {
    pub fn new(
        key: &'static str,
        controller: Controller,
        file: &'static str,
        value: Option<String>,
        reset: impl Into<String>,
    ) -> Self {
        Setting {
            key,
            controller,
            file,
            line: None,
            value,
            reset: reset.into(),
            presence: Presence::Required,
        }
    }

    pub fn presence(mut self, presence: Presence) -> Self {
        self.presence = presence;
        self
    }

    pub fn line(mut self, first_word: impl Into<String>) -> Self {
        self.line = Some(first_word.into());
        self
    }

    fn id(&self) -> (&'static str, Option<&str>) {
        (self.file, self.line.as_deref())
    }
}

/// Every file a [`Resources`] decides, in write order. `lenient` skips io-max devices that no
/// longer resolve (used for the *current* limits: the kernel dropped their lines already).
pub(crate) fn plan(
    res: &Resources,
    host: &HostInfo,
    lenient: bool,
) -> Result<Vec<Setting>, CgroupError> {
    let mut out = super::cpu::settings(res);
    out.extend(super::cpuset::settings(res));
    out.extend(super::memory::settings(res, host.ram_bytes));
    out.extend(super::pids::settings(res));
    out.extend(super::io::settings(res, host.devices.as_ref(), lenient)?);
    Ok(out)
}

/// One file write of a live change, with the exact strings: `old` as the file reads now
/// (`None`: it doesn't exist yet), `new` as it will be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub file: PathBuf,
    pub old: Option<String>,
    pub new: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?} -> {:?}",
            self.file.display(),
            self.old.as_deref().unwrap_or(""),
            self.new
        )
    }
}

/// The result of comparing two sets of limits on a cgroup: the writes, and the keys that cannot
/// be enforced here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsDiff {
    pub changes: Vec<Change>,
    pub warnings: Vec<Warning>,
}

/// Decides whether a setting can be written to `dir`, recording why not.
struct Gate<'a> {
    dir: &'a Path,
    avail: &'a Availability,
    /// What `dir/cgroup.controllers` lists now: a knob's absence only means something once its
    /// controller is enabled.
    enabled_here: ControllerSet,
    warnings: Vec<Warning>,
}

impl<'a> Gate<'a> {
    fn new(dir: &'a Path, avail: &'a Availability) -> Self {
        let enabled_here = read_optional(&dir.join(super::CONTROLLERS))
            .ok()
            .flatten()
            .map(|s| ControllerSet::parse(&s))
            .unwrap_or_default();
        Gate {
            dir,
            avail,
            enabled_here,
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, w: Warning) {
        if !self.warnings.iter().any(|x| x.key() == w.key()) {
            self.warnings.push(w);
        }
    }

    fn allows(&mut self, s: &Setting) -> bool {
        if !self.avail.available.contains(s.controller) {
            let cgroup = self
                .avail
                .missing_at(s.controller)
                .unwrap_or(self.dir)
                .to_path_buf();
            self.warn(Warning::ControllerMissing {
                key: s.key,
                controller: s.controller,
                cgroup,
            });
            return false;
        }
        let path = self.dir.join(s.file);
        match s.presence {
            Presence::Required => true,
            _ if !self.enabled_here.contains(s.controller) => true,
            _ if path.exists() => true,
            Presence::Warn => {
                self.warn(Warning::FileMissing {
                    key: s.key,
                    file: path,
                });
                false
            }
            Presence::Silent => false,
        }
    }
}

/// Writes every set key of `res` to the (new) cgroup `dir`.
pub(crate) fn apply_fresh(
    dir: &Path,
    res: &Resources,
    host: &HostInfo,
    avail: &Availability,
) -> Result<Vec<Warning>, CgroupError> {
    let settings = plan(res, host, false)?;
    // Most units set no limit: their new cgroup is not read at all.
    if settings.iter().all(|s| s.value.is_none()) {
        return Ok(Vec::new());
    }
    let mut gate = Gate::new(dir, avail);
    for s in &settings {
        let Some(value) = &s.value else { continue };
        if gate.allows(s) {
            write_knob(&dir.join(s.file), value)?;
        }
    }
    Ok(gate.warnings)
}

/// The writes that take `dir` from `current` to `desired` limits. Linear in the number of
/// settings: each plan is indexed by file and line once, and each file is read once (an
/// `io.max` of many devices was searched, and read again, for every device).
pub(crate) fn diff(
    dir: &Path,
    current: &Resources,
    desired: &Resources,
    host: &HostInfo,
    avail: &Availability,
) -> Result<LimitsDiff, CgroupError> {
    let cur = plan(current, host, true)?;
    let des = plan(desired, host, false)?;
    let index = |v: &'_ [Setting]| {
        // Each file and line appears once in a plan; were it twice, the first would count.
        let mut values: HashMap<(&'static str, Option<String>), Option<String>> = HashMap::new();
        for x in v {
            values
                .entry((x.file, x.line.clone()))
                .or_insert_with(|| x.value.clone());
        }
        values
    };
    let (cur_values, des_values) = (index(&cur), index(&des));
    let mut gate = Gate::new(dir, avail);
    let mut files = Files::default();
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    // Desired order first: it puts `cpu.idle = 0` before a weight and after a reset of one.
    for s in des.iter().chain(cur.iter()) {
        if !seen.insert(s.id()) {
            continue;
        }
        let id = (s.file, s.line.clone());
        let value = |values: &HashMap<_, Option<String>>| values.get(&id).cloned().flatten();
        let (old_value, new_value) = (value(&cur_values), value(&des_values));
        if old_value == new_value {
            continue;
        }
        // Unsetting a key whose controller isn't there: nothing to undo, nothing to warn about.
        if new_value.is_none() && !avail.available.contains(s.controller) {
            continue;
        }
        if !gate.allows(s) {
            continue;
        }
        let new = new_value.unwrap_or_else(|| s.reset.clone());
        let file = dir.join(s.file);
        let old = files.current(&file, s)?;
        if old.as_deref() == Some(new.as_str()) {
            continue;
        }
        changes.push(Change {
            key: s.key,
            file,
            old,
            new,
        });
    }
    Ok(LimitsDiff {
        changes,
        warnings: gate.warnings,
    })
}

/// The cgroup files a diff has read, each read once; a file of one line per device is indexed
/// by the line's first word.
#[derive(Default)]
struct Files {
    read: HashMap<PathBuf, Option<FileText>>,
}

struct FileText {
    whole: String,
    by_first_word: HashMap<String, String>,
}

impl Files {
    /// What a setting's file holds now, in the form the setting writes.
    fn current(&mut self, file: &Path, s: &Setting) -> Result<Option<String>, CgroupError> {
        if !self.read.contains_key(file) {
            let text = read_optional(file)?.map(|text| FileText {
                by_first_word: text
                    .lines()
                    .map(str::trim)
                    .filter_map(|l| Some((l.split_whitespace().next()?.to_string(), l.to_string())))
                    .rev() // the first line of a word wins, as a search from the top found it
                    .collect(),
                whole: text,
            });
            self.read.insert(file.to_path_buf(), text);
        }
        let Some(Some(text)) = self.read.get(file) else {
            return Ok(None);
        };
        Ok(Some(match &s.line {
            None => text.whole.trim().to_string(),
            Some(first) => text
                .by_first_word
                .get(first)
                .cloned()
                .unwrap_or_else(|| s.reset.clone()),
        }))
    }
}

/// Writes the changes, in order. Stops at the first failure.
pub fn apply_changes(changes: &[Change]) -> Result<(), CgroupError> {
    for c in changes {
        write_knob(&c.file, &c.new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total() {
        let text = "MemTotal:       24684096 kB\nMemFree:        24248036 kB\n";
        assert_eq!(parse_mem_total(text), Some(24684096 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
    }
}
