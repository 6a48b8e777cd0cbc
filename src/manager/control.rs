//! The manager's answers to live-control requests: signals, freezing, limits changed at run
//! time (applied to the live cgroup at once, persisted as a drop-in), their dry run, logs (to the privileged uid, and to a unit's own user), processes, and the unit
//! properties read from the cgroup on demand. Limits requests are checked against
//! [`crate::bounds`] and merged in linear time.
//!
//! Decisions: a unit that isn't running has nothing to kill or freeze (`JobFailed`); a dry run
//! of an inactive unit changes no file, so it lists none.
//!
//! **Where limits are kept** (DESIGN §3). Persistent ones in `NAME.KIND.d/50-limits.toml` of
//! the first unit directory; runtime-only ones in `RUNTIME/units/NAME.KIND.d/50-runtime-limits.toml`.
//! Two names, because a same-named drop-in in an earlier directory masks a later one (DESIGN
//! §1): were both `50-limits.toml`, the first directory's would hide the runtime one at the
//! next `Reload`. The runtime name sorts after the persistent one, so at a reload a runtime
//! value holds over a persistent one; and a persistent setting removes its keys from the
//! runtime drop-in, so the newest setting of each key is the one that holds, whichever kind it
//! was. Without the runtime directory (a reboot) the persistent values are back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::executor::Manager;
use super::request::{
    FileChange, LimitValue, LogAccess, LogReader, LogReply, RequestError, Usage, check_limit_pairs,
    log_access,
};
use crate::bounds::{MAX_IO_MAX_ENTRIES, MAX_LOG_LINES};
use crate::cgroup::{Cgroup, effective_limits};
use crate::limits::Resources;
use crate::unit::{LoadState, UnitName};

/// Configured limits, effective limits (key, value, binding unit), usage, freezer state.
pub(super) type LimitProperties = (
    Vec<(String, String)>,
    Vec<(String, String, String)>,
    Usage,
    String,
);

/// How long `Freeze`/`Thaw` wait for the kernel to report the new state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// Cgroups read for a unit's processes at most (a delegated unit's tree is its manager's to
/// grow).
const PROCESS_CGROUPS_READ: usize = 4096;
/// Process listings run at once, each on a thread of its own (a listing may wait on a process
/// for long: the threads are few, and the next caller hears so).
const PROCESS_LISTINGS: usize = 8;
/// The drop-in persistent live limit changes are kept in (in the first unit directory).
pub const LIMITS_DROPIN: &str = "50-limits.toml";
/// The drop-in runtime-only limit changes are kept in (in `RUNTIME/units`): after
/// [`LIMITS_DROPIN`] in merge order, and never masked by it (see the module doc).
pub const RUNTIME_LIMITS_DROPIN: &str = "50-runtime-limits.toml";

impl Manager {
    /// The unit's cgroup, if it exists now (the unit or something in it runs).
    pub(super) fn live_cgroup(&self, name: &UnitName) -> Option<Cgroup> {
        self.live_cgroup_path(name)
            .map(|rel| Cgroup::new(self.tree.root().join(rel)))
    }

    /// The unit's cgroup path below the tree's root, if that cgroup exists now.
    fn live_cgroup_path(&self, name: &UnitName) -> Option<PathBuf> {
        let rel = self.units.get(name)?.cgroup_path();
        (!name.is_root_slice() && self.tree.root().join(&rel).is_dir()).then_some(rel)
    }

    fn running_cgroup(&self, name: &UnitName) -> Result<Cgroup, RequestError> {
        if !self.units.units.contains_key(name) {
            return Err(RequestError::NoSuchUnit(name.clone()));
        }
        self.live_cgroup(name)
            .ok_or_else(|| RequestError::JobFailed(format!("{name} is not running")))
    }

    pub(super) fn kill_unit(&self, name: &UnitName, signal: i32) -> Result<(), RequestError> {
        nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| RequestError::InvalidUnit(format!("{signal} is not a signal")))?;
        self.running_cgroup(name)?;
        // Every process of its cgroup subtree (a delegated unit's init.scope and below), each
        // through a pidfd.
        self.signal_unit(name, signal);
        Ok(())
    }

    /// Freezes or thaws the unit's cgroup and replies once the kernel reports it done — from a
    /// blocking thread: the wait (up to [`FREEZE_TIMEOUT`]) is the kernel's, not the loop's.
    pub(super) fn freeze_unit(
        &self,
        name: &UnitName,
        freeze: bool,
        reply: tokio::sync::oneshot::Sender<Result<(), RequestError>>,
    ) {
        let cg = match self.running_cgroup(name) {
            Ok(cg) => cg,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        tokio::task::spawn_blocking(move || {
            let r = if freeze {
                cg.freeze(FREEZE_TIMEOUT)
            } else {
                cg.thaw(FREEZE_TIMEOUT)
            };
            let _ = reply.send(r.map_err(|e| RequestError::JobFailed(e.to_string())));
        });
    }

    /// The unit's limits now and with `limits` applied, validated.
    pub(super) fn limits_after(
        &self,
        name: &UnitName,
        limits: &[(String, LimitValue)],
    ) -> Result<(Resources, Resources), RequestError> {
        let entry = self
            .units
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        let unit = match &entry.state {
            LoadState::Loaded(u) => u,
            LoadState::Error(e) => return Err(RequestError::InvalidUnit(e.clone())),
        };
        if name.is_root_slice() {
            return Err(RequestError::InvalidLimit(
                "the root slice -.slice is the cgroup root and takes no limits".into(),
            ));
        }
        if limits.is_empty() {
            return Err(RequestError::InvalidLimit("no limit given".into()));
        }
        check_limit_pairs(limits)?;
        let old = unit.resources.clone();
        let changes = limits
            .iter()
            .map(|(key, value)| (key.as_str(), value.raw()));
        let new = old
            .with_changes(changes)
            .map_err(|e| RequestError::InvalidLimit(e.to_string()))?;
        if new.io_max.len() > MAX_IO_MAX_ENTRIES {
            return Err(RequestError::InvalidLimit(format!(
                "io-max: {name} would have {} devices; at most {MAX_IO_MAX_ENTRIES} are kept",
                new.io_max.len()
            )));
        }
        Ok((old, new))
    }

    pub(super) fn diff_limits(
        &self,
        name: &UnitName,
        limits: &[(String, LimitValue)],
    ) -> Result<Vec<FileChange>, RequestError> {
        let (old, new) = self.limits_after(name, limits)?;
        let Some(rel) = self.live_cgroup_path(name) else {
            return Ok(Vec::new());
        };
        let diff = self
            .tree
            .diff(&rel, &old, &new, &self.host)
            .map_err(|e| RequestError::InvalidLimit(e.to_string()))?;
        Ok(diff
            .changes
            .into_iter()
            .map(|c| {
                (
                    c.file.display().to_string(),
                    c.old.unwrap_or_default(),
                    c.new,
                )
            })
            .collect())
    }

    pub(super) fn set_limits(
        &mut self,
        name: &UnitName,
        limits: &[(String, LimitValue)],
        runtime: bool,
    ) -> Result<(), RequestError> {
        let (old, new) = self.limits_after(name, limits)?;
        self.write_live_limits(name, &old, &new)?;
        self.persist_limits(name, limits, &new, runtime)?;
        self.keep_limits(name, new);
        Ok(())
    }

    /// Writes the difference between `old` and `new` to the unit's cgroup, if it is live.
    pub(super) fn write_live_limits(
        &mut self,
        name: &UnitName,
        old: &Resources,
        new: &Resources,
    ) -> Result<(), RequestError> {
        let Some(rel) = self.live_cgroup_path(name) else {
            return Ok(());
        };
        let diff = self
            .tree
            .update(&rel, old, new, &self.host)
            .map_err(|e| RequestError::InvalidLimit(e.to_string()))?;
        for w in diff.warnings {
            tracing::warn!(unit = %name, "{w}");
        }
        for c in &diff.changes {
            tracing::info!(unit = %name, "{c}");
        }
        Ok(())
    }

    /// The unit's limits are `new` from now on.
    pub(super) fn keep_limits(&mut self, name: &UnitName, new: Resources) {
        if let Some(LoadState::Loaded(u)) = self.units.units.get_mut(name).map(|e| &mut e.state) {
            u.resources = new;
        }
    }

    /// Writes the changed keys into the unit's limits drop-in — the runtime one or the
    /// persistent one — keeping what the file already held; a persistent change also takes
    /// its keys out of the runtime drop-in (see the module doc).
    fn persist_limits(
        &self,
        name: &UnitName,
        limits: &[(String, LimitValue)],
        new: &Resources,
        runtime: bool,
    ) -> Result<(), RequestError> {
        let runtime_file = self
            .paths
            .runtime_dir
            .join("units")
            .join(format!("{name}.d"))
            .join(RUNTIME_LIMITS_DROPIN);
        let file = if runtime {
            runtime_file.clone()
        } else {
            self.paths
                .unit_dirs
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from("/etc/corral/units"))
                .join(format!("{name}.d"))
                .join(LIMITS_DROPIN)
        };
        // Each key once: a call with many io-max entries writes the device list once.
        let keys: std::collections::BTreeSet<&str> =
            limits.iter().map(|(k, _)| k.as_str()).collect();
        let failed = |file: &std::path::Path, e: std::io::Error| {
            RequestError::JobFailed(format!(
                "the limits apply now but were not saved: {}: {e}",
                file.display()
            ))
        };
        let mut doc = read_dropin(&file);
        set_in_dropin(&mut doc, &file, keys.iter().copied(), new)?;
        write_dropin(&file, &doc).map_err(|e| failed(&file, e))?;
        if !runtime && runtime_file.exists() {
            let mut doc = read_dropin(&runtime_file);
            let res = resources_table(&mut doc, &runtime_file)?;
            let before = res.len();
            res.retain(|k, _| !keys.contains(k));
            if res.len() != before {
                let emptied = res.is_empty() && doc.len() == 1;
                let done = if emptied {
                    std::fs::remove_file(&runtime_file)
                } else {
                    write_dropin(&runtime_file, &doc)
                };
                done.map_err(|e| failed(&runtime_file, e))?;
            }
        }
        Ok(())
    }

    /// `GetLog`: the last `lines` lines of the unit's log, for the privileged uid (`reader`
    /// `None`) or, if it is the unit's user, for `reader` ([`log_access`]).
    pub(super) fn unit_log(
        &self,
        name: &UnitName,
        lines: u32,
        reader: Option<&LogReader>,
    ) -> Result<LogReply, RequestError> {
        let entry = self
            .units
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        if lines > MAX_LOG_LINES {
            return Err(RequestError::InvalidLimit(format!(
                "{lines} log lines asked; at most {MAX_LOG_LINES}"
            )));
        }
        if let Some(reader) = reader {
            let user = entry
                .unit()
                .and_then(|u| u.service.as_ref())
                .and_then(|s| s.user.as_ref());
            // A unit without `user` runs as the daemon does (root, or the user in user mode).
            let own_uid = nix::unistd::geteuid().as_raw();
            match log_access(user, own_uid, reader) {
                LogAccess::Allowed => {}
                LogAccess::Resolve(user) => return Ok(LogReply::Resolve(user)),
                LogAccess::Denied(runs_as) => {
                    return Ok(LogReply::Denied(format!(
                        "the log of {name} is for the privileged uid and {name}'s own user \
                         ({runs_as}) only; the caller is uid {}",
                        reader.uid
                    )));
                }
            }
        }
        Ok(LogReply::Lines(super::logs::tail(
            &self.paths.log_dir,
            name.as_str(),
            lines as usize,
        )))
    }

    /// Lists the unit's processes, pid and command line, and replies — from a thread of its
    /// own: the walk of a delegated unit's cgroups and a `/proc/PID/cmdline` read for each of
    /// its processes grow with what the unit made, and a read waits for the process's memory
    /// (a page of a FUSE file behind its arguments never comes). The loop only finds the
    /// cgroup; at most [`PROCESS_LISTINGS`] listings run at once.
    pub(super) fn list_processes(&self, name: &UnitName, reply: ProcessesReply) {
        let Some(cg) = self.live_cgroup(name) else {
            let _ = reply.send(if self.units.units.contains_key(name) {
                Ok(Vec::new())
            } else {
                Err(RequestError::NoSuchUnit(name.clone()))
            });
            return;
        };
        // A slice's own cgroup holds none: its units show theirs.
        let slice = name.kind() == crate::unit::Kind::Slice;
        if LISTINGS.fetch_add(1, Ordering::SeqCst) >= PROCESS_LISTINGS {
            LISTINGS.fetch_sub(1, Ordering::SeqCst);
            let _ = reply.send(Err(RequestError::JobFailed(format!(
                "{PROCESS_LISTINGS} process listings are under way; try again once they end"
            ))));
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("corral-ps".into())
            .spawn(move || {
                let _ = reply.send(Ok(processes_of(&cg, slice)));
                LISTINGS.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            LISTINGS.fetch_sub(1, Ordering::SeqCst);
            // The reply went with the closure; the caller sees the request fail.
            tracing::warn!(unit = %name, "listing processes: {e}");
        }
    }

    /// Limits as configured, effective over the slice chain, and usage read now.
    pub(super) fn limit_properties(&self, name: &UnitName, usage: bool) -> LimitProperties {
        let Some(unit) = self.units.get(name) else {
            return (Vec::new(), Vec::new(), Usage::default(), "running".into());
        };
        let limits = unit
            .resources
            .to_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut chain: Vec<(String, Resources)> = Vec::new();
        let mut cur = Some(name.clone());
        while let Some(n) = cur {
            let Some(u) = self.units.get(&n) else { break };
            chain.push((n.to_string(), u.resources.clone()));
            cur = u.slice();
        }
        let refs: Vec<(&str, &Resources)> = chain.iter().map(|(n, r)| (n.as_str(), r)).collect();
        let effective = effective_limits(&refs, self.host.ram_bytes).to_pairs();
        let (usage, frozen) = match self.live_cgroup(name).filter(|_| usage) {
            Some(cg) => (
                super::executor::usage_of(&cg),
                cg.events().is_ok_and(|e| e.frozen),
            ),
            // A stopped unit shows what its cgroup showed last.
            None if usage => (
                self.last_usage.get(name).cloned().unwrap_or_default(),
                false,
            ),
            None => (Usage::default(), false),
        };
        let freezer = if frozen { "frozen" } else { "running" };
        (limits, effective, usage, freezer.to_string())
    }
}

/// A limits drop-in's table (empty when the file is missing or not TOML: it is corrald's own,
/// and rewritten whole).
fn read_dropin(file: &std::path::Path) -> toml::Table {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default()
}

/// The `[resources]` table of a limits drop-in, made when missing.
fn resources_table<'a>(
    doc: &'a mut toml::Table,
    file: &std::path::Path,
) -> Result<&'a mut toml::Table, RequestError> {
    doc.entry("resources")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| {
            RequestError::InvalidLimit(format!("{}: [resources] is not a table", file.display()))
        })
}

/// Sets `keys` in a limits drop-in's `[resources]` to their values in `new` (io-max values
/// beyond 2^63 as strings: a TOML integer can't hold them). Loading the drop-in over the unit
/// gives `new`'s values of those keys.
fn set_in_dropin<'k>(
    doc: &mut toml::Table,
    file: &std::path::Path,
    keys: impl IntoIterator<Item = &'k str>,
    new: &Resources,
) -> Result<(), RequestError> {
    new.write_toml(keys, resources_table(doc, file)?);
    Ok(())
}

/// The text of a limits drop-in.
fn dropin_text(doc: &toml::Table) -> String {
    format!(
        "# Written by corrald for SetUnitLimits / corralctl limit.\n{}",
        toml::to_string(doc).unwrap_or_default()
    )
}

/// Writes a limits drop-in (0644 whatever the umask).
fn write_dropin(file: &std::path::Path, doc: &toml::Table) -> std::io::Result<()> {
    crate::files::write_file(file, dropin_text(doc), crate::files::DROPIN_MODE)
}

/// Process listings under way ([`Manager::list_processes`]).
static LISTINGS: AtomicUsize = AtomicUsize::new(0);

type ProcessesReply = tokio::sync::oneshot::Sender<Result<Vec<(u32, String)>, RequestError>>;

/// A cgroup's processes with their command lines; a service's or scope's whole subtree (a
/// delegated unit's processes live below its own cgroup: crun moves a container into
/// `<scope>/container`), a slice's own cgroup only.
fn processes_of(cg: &Cgroup, slice: bool) -> Vec<(u32, String)> {
    let pids = if slice {
        cg.procs().unwrap_or_default()
    } else {
        cg.procs_below(PROCESS_CGROUPS_READ)
    };
    pids.into_iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .trim_end_matches('\0')
                        .replace('\0', " ")
                })
                .unwrap_or_default();
            (pid, cmd)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RawValue::Str;
    use crate::unit::parse_unit_sources;

    /// A service with `base` as its `[resources]`, loaded with the drop-in `dropin` over it.
    fn load_with(base: &str, dropin: &str) -> Resources {
        let name = UnitName::parse("io.service").unwrap();
        let sources = vec![
            (
                PathBuf::from("io.service.toml"),
                format!("[service]\nexec = [\"/bin/true\"]\n[resources]\n{base}"),
            ),
            (PathBuf::from("io.service.d/50-limits.toml"), dropin.into()),
        ];
        match parse_unit_sources(&name, sources) {
            Ok(u) => u.resources,
            Err(d) => panic!("{dropin}\n{d:?}"),
        }
    }

    /// The drop-in `existing` with `keys` set from `new`, as `persist_limits` writes it.
    fn limits_dropin<'k>(
        existing: &str,
        keys: impl IntoIterator<Item = &'k str>,
        new: &Resources,
    ) -> Result<String, RequestError> {
        let mut doc = existing.parse().unwrap_or_default();
        set_in_dropin(&mut doc, std::path::Path::new("50-limits.toml"), keys, new)?;
        Ok(dropin_text(&doc))
    }

    #[test]
    fn io_max_beyond_i64_round_trips_through_the_dropin() {
        // 2^63 and more: a TOML integer can't hold them (they were written as -1, and the unit
        // no longer loaded); the kernel's io.max takes any u64.
        let base = "memory-max = \"1G\"\n";
        let old = load_with(base, "");
        let changes = [
            (
                "io-max",
                Str("/dev/vda rbps=18446744073709551615 wbps=16777215T riops=9223372036854775808"),
            ),
            ("io-max", Str("/dev/vdb wiops=18446744073709551615")),
            ("pids-max", Str("18446744073709551615")),
        ];
        let new = old.with_changes(changes).unwrap();
        assert_eq!(new.io_max[0].rbps, Some(u64::MAX));
        assert_eq!(new.io_max[0].riops, Some(1 << 63));
        let keys = changes.iter().map(|(k, _)| *k);
        let text = limits_dropin("", keys, &new).unwrap();
        assert!(!text.contains("-1"), "{text}");
        assert_eq!(load_with(base, &text), new, "{text}");

        // Over an earlier drop-in with integers (as corrald wrote them before), which keeps
        // its other keys.
        let earlier = "[resources]\ncpu-weight = \"50\"\nio-max = [{ device = \"/dev/vdc\", riops = 2000 }]\n";
        let before = load_with(base, earlier);
        let new = before.with_changes([changes[0]]).unwrap();
        let text = limits_dropin(earlier, ["io-max"], &new).unwrap();
        let loaded = load_with(base, &text);
        assert_eq!(loaded, new, "{text}");
        assert_eq!(loaded.io_max.len(), 2);
        assert_eq!(
            loaded.cpu_weight.map(|w| w.to_string()).as_deref(),
            Some("50")
        );

        let err = limits_dropin("resources = 3\n", ["pids-max"], &new).unwrap_err();
        assert_eq!(
            err.to_string(),
            RequestError::InvalidLimit("50-limits.toml: [resources] is not a table".into())
                .to_string()
        );
    }
}
