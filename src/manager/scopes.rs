//! The manager's answers to the `org.freedesktop.systemd1` subset (DESIGN §9): scopes and
//! slices made over D-Bus, their limits changed by `SetUnitProperties`, processes attached
//! to a running unit, a main process signalled, and `ResetFailedUnit` (also
//! `org.corral1`'s); and the executor's half of a scope's start, adopting its processes.
//!
//! Decisions:
//! - **Made over D-Bus, transient.** A scope or slice made here has no file (DESIGN §9: no
//!   scope unit files) and is marked [`Unit::transient`]: unloaded once inactive, as systemd
//!   collects transient units; a slice stays while a unit still lives in it. Its parent
//!   slices are implied by name (`kubepods-besteffort-pod1.slice` brings `kubepods.slice` and
//!   `kubepods-besteffort.slice`), as for every unit ([`crate::unit::UnitSet::insert`]).
//! - **A live duplicate is `UnitExists`**, as systemd's "already loaded or has a fragment
//!   file": a unit that is up, failed, busy with a job, or has a file. An inactive unit without
//!   a file (an implicit slice, a transient unit not collected yet) is replaced. `-.slice` and
//!   `init.scope` (where corrald lives) always exist.
//! - **Processes are checked before anything changes**: each PID is opened as a pidfd (a PID
//!   that is no process is `NoSuchProcess`); corrald itself and kernel threads are refused.
//!   They are moved by writing their numbers to `cgroup.procs` in the same turn of the event
//!   loop; a process that exits in between fails the scope's start (`resources`), and one
//!   whose number is reused in those microseconds is the kernel's race, as systemd's.
//! - **Limits** are the `[resources]` keys the bus layer mapped the properties to, checked and
//!   written by the same path as `SetUnitLimits` ([`crate::cgroup::Tree::update`]). Only a
//!   unit with files has a drop-in to persist them in (`runtime`: RUNTIME/units); a unit made
//!   over D-Bus keeps them in memory for its life.
//! - **Delegate**: a delegated scope's cgroup is marked (`trusted.delegate`) and offered every
//!   controller, as a delegated service's; corrald writes its own files (the limits of the
//!   scope itself) and never inside it. Only `AttachProcessesToUnit` with a sub-cgroup, at the
//!   caller's request, makes a directory there.

use std::path::{Component, Path};

use super::engine::Input;
use super::engine::service::ActiveState;
use super::executor::Manager;
use super::request::{
    BusUnitSpec, JobKind, LimitValue, Notification, RequestError, check_limit_pairs,
};
use crate::bounds::{MAX_SCOPE_PIDS, MAX_SUBCGROUP_BYTES};
use crate::cgroup::{self, Cgroup, INIT_SCOPE};
use crate::limits::{RawValue, Resources};
use crate::process;
use crate::unit::{Kind, Scope, Unit, UnitName};

/// `PF_KTHREAD` in the flags of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

impl Manager {
    /// `ResetFailedUnit`: a failed service or scope back to inactive (a transient one is then
    /// unloaded); any other unit is left as it is.
    pub(super) fn reset_failed(&mut self, name: &UnitName) -> Result<(), RequestError> {
        if !self.units.units.contains_key(name) {
            return Err(RequestError::NoSuchUnit(name.clone()));
        }
        self.feed(Input::ResetFailed(name.clone()));
        Ok(())
    }

    /// `StartTransientUnit` of `org.freedesktop.systemd1`: makes the scope or slice and queues
    /// its start; returns the job's id.
    pub(super) fn start_bus_transient(&mut self, spec: BusUnitSpec) -> Result<u32, RequestError> {
        let name = spec.name.clone();
        self.check_new_name(&name)?;
        let scope = match name.kind() {
            Kind::Service => {
                return Err(RequestError::InvalidUnit(format!(
                    "{name}: only scopes and slices are made over org.freedesktop.systemd1 \
                     (a service is made with org.corral1's StartTransientUnit)"
                )));
            }
            Kind::Slice => {
                if !spec.pids.is_empty() {
                    return Err(RequestError::InvalidUnit(format!(
                        "{name}: a slice holds no processes (PIDs are for scopes)"
                    )));
                }
                let parent = name.parent_slice();
                if let Some(given) = &spec.slice
                    && Some(given) != parent.as_ref()
                {
                    return Err(RequestError::InvalidUnit(format!(
                        "{name} lives in {} by its name, not in {given}",
                        parent.map_or_else(|| "no slice".to_string(), |p| p.to_string())
                    )));
                }
                None
            }
            Kind::Scope => {
                if spec.pids.is_empty() {
                    return Err(RequestError::InvalidUnit(format!(
                        "{name}: a scope needs PIDs, the processes it adopts"
                    )));
                }
                Some(Box::new(Scope {
                    slice: spec.slice.clone().unwrap_or_else(UnitName::default_slice),
                    pids: spec.pids.clone(),
                    delegate: spec.delegate,
                    stop_timeout: spec.stop_timeout.unwrap_or(Scope::DEFAULT_STOP_TIMEOUT),
                }))
            }
        };
        check_pids(&spec.pids)?;
        let resources = resources_of(&name, &spec.limits)?;
        let unit = Unit {
            name: name.clone(),
            description: spec.description,
            files: Vec::new(),
            resources,
            service: None,
            scope,
            transient: true,
        };
        let added = self.units.insert(unit);
        if let Some(u) = self.units.get(&name) {
            self.engine.track(u);
        }
        for added in added {
            let _ = self.notify.send(Notification::UnitAdded(added));
        }
        self.queue_job(name, JobKind::Start)
    }

    /// Refuses a name that is taken (see the module doc).
    fn check_new_name(&self, name: &UnitName) -> Result<(), RequestError> {
        if name.is_root_slice() || name.as_str() == INIT_SCOPE {
            return Err(RequestError::UnitExists(format!(
                "unit {name} already exists: it is corrald's own"
            )));
        }
        let Some(entry) = self.units.units.get(name) else {
            return Ok(());
        };
        let (active, _) = self.engine.active_sub(name);
        let why = if active != ActiveState::Inactive {
            Some(active.as_str())
        } else if !entry.files.is_empty() {
            Some("loaded from a file")
        } else if self.engine.is_busy(name) {
            Some("busy with a job")
        } else {
            None
        };
        match why {
            Some(why) => Err(RequestError::UnitExists(format!(
                "unit {name} already exists ({why})"
            ))),
            None => Ok(()),
        }
    }

    /// `SetUnitProperties`: the limits applied at once to the live cgroup and kept with the
    /// unit; persisted as a drop-in only for a unit that has files.
    pub(super) fn set_properties(
        &mut self,
        name: &UnitName,
        limits: &[(String, LimitValue)],
        runtime: bool,
    ) -> Result<(), RequestError> {
        let entry = self
            .units
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        // Only properties that were accepted and ignored (devices, accounting): nothing to do.
        if limits.is_empty() {
            return Ok(());
        }
        if !entry.files.is_empty() {
            return self.set_limits(name, limits, runtime);
        }
        let (old, new) = self.limits_after(name, limits)?;
        self.write_live_limits(name, &old, &new)?;
        self.keep_limits(name, new);
        // A unit made over D-Bus keeps its limits in the state file (for a re-exec).
        self.engine.mark_dirty();
        Ok(())
    }

    /// `AttachProcessesToUnit`: moves `pids` into a running unit's cgroup, or into
    /// `subcgroup` below a delegated one.
    pub(super) fn attach_processes(
        &mut self,
        name: &UnitName,
        subcgroup: &Path,
        pids: &[u32],
    ) -> Result<(), RequestError> {
        let unit = self
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        if name.kind() == Kind::Slice {
            return Err(RequestError::NotSupported(format!(
                "{name} is a slice: slices hold units, not processes"
            )));
        }
        check_subcgroup(subcgroup)?;
        if !subcgroup.as_os_str().is_empty() && !unit.delegated() {
            return Err(RequestError::NotSupported(format!(
                "{name} is not delegated: processes go into its own cgroup, not below it"
            )));
        }
        if pids.is_empty() || pids.len() > MAX_SCOPE_PIDS {
            return Err(RequestError::InvalidUnit(format!(
                "{} processes given: from 1 to {MAX_SCOPE_PIDS}",
                pids.len()
            )));
        }
        if self.engine.active_sub(name).0 != ActiveState::Active {
            return Err(RequestError::UnitInactive(format!("{name} is not active")));
        }
        let Some(cg) = self.live_cgroup(name) else {
            return Err(RequestError::UnitInactive(format!("{name} is not active")));
        };
        check_pids(pids)?;
        let target = cg.path().join(subcgroup);
        if target != cg.path() {
            std::fs::create_dir_all(&target).map_err(|e| {
                RequestError::JobFailed(format!("making {}: {e}", target.display()))
            })?;
        }
        let target = Cgroup::new(target);
        for pid in pids {
            target.add_pid(*pid).map_err(|e| match e.errno() {
                Some(nix::errno::Errno::ESRCH) => {
                    RequestError::NoSuchProcess(format!("process {pid} does not exist"))
                }
                _ => RequestError::JobFailed(e.to_string()),
            })?;
        }
        self.mark_populated(name);
        Ok(())
    }

    /// `KillUnit` with whom `main`: the unit's main process, through its pidfd.
    pub(super) fn kill_main(&self, name: &UnitName, signal: i32) -> Result<(), RequestError> {
        nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| RequestError::InvalidUnit(format!("{signal} is not a signal")))?;
        if !self.units.units.contains_key(name) {
            return Err(RequestError::NoSuchUnit(name.clone()));
        }
        let pid = self.engine.main_pid(name).ok_or_else(|| {
            RequestError::NoSuchProcess(format!("{name} has no main process to signal"))
        })?;
        self.signal_main(name, pid, signal);
        Ok(())
    }

    /// The executor's half of a scope's start ([`super::engine::Effect::AttachScope`]): its
    /// cgroup made and its limits written, a delegated one marked, the watch added, and its
    /// processes moved in. False if any of it failed (the log says what).
    pub(super) fn attach_scope(&mut self, name: &UnitName) -> bool {
        let Some(unit) = self.units.get(name) else {
            return false;
        };
        let Some(scope) = unit.scope.as_deref() else {
            return false;
        };
        let (rel, pids, delegate) = (unit.cgroup_path(), scope.pids.clone(), scope.delegate);
        let resources = unit.resources.clone();
        match self.tree.realize(&rel, &resources, &self.host) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!(unit = %name, "{w}");
                }
            }
            Err(e) => {
                tracing::error!(unit = %name, "{e}");
                return false;
            }
        }
        let cg = Cgroup::new(self.tree.root().join(&rel));
        if delegate {
            // As a delegated service's (DESIGN §2): every controller offered, and the mark.
            let all = cgroup::ControllerSet::parse("cpuset cpu io memory pids");
            if let Err(e) = self.tree.enable_controllers(&rel, all) {
                tracing::warn!(unit = %name, "enabling controllers for the delegate: {e}");
            }
            let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            if let Err(e) = cg.delegate_to(uid.as_raw(), gid.as_raw()) {
                tracing::warn!(unit = %name, "marking the scope delegated: {e}");
            }
        }
        if let Err(e) = self.watch(name) {
            tracing::error!(unit = %name, "watching {}: {e}", cg.path().display());
            return false;
        }
        for &pid in &pids {
            if let Err(e) = cg.add_pid(pid) {
                tracing::error!(unit = %name, "adopting process {pid}: {e}");
                return false;
            }
        }
        self.mark_populated(name);
        self.last_usage.remove(name);
        tracing::info!(unit = %name, "adopted {} processes", pids.len());
        true
    }
}

/// A scope's or slice's limits from the resource properties, checked as `SetUnitLimits`
/// checks them.
fn resources_of(
    name: &UnitName,
    limits: &[(String, LimitValue)],
) -> Result<Resources, RequestError> {
    check_limit_pairs(limits)?;
    let mut res = Resources::default();
    if limits.is_empty() {
        return Ok(res);
    }
    if name.is_root_slice() {
        return Err(RequestError::InvalidLimit(
            "the root slice -.slice is the cgroup root and takes no limits".into(),
        ));
    }
    res.set_all(limits.iter().map(|(k, v)| {
        let raw = match v {
            LimitValue::Str(s) => RawValue::Str(s),
            LimitValue::Int(i) => RawValue::Int(*i),
        };
        (k.as_str(), raw)
    }))
    .map_err(|e| RequestError::InvalidLimit(e.to_string()))?;
    res.validate()
        .map_err(|e| RequestError::InvalidLimit(format!("cpu-max: {e}")))?;
    Ok(res)
}

/// Each PID is a process that may be moved: not 0, not corrald, not a kernel thread, and
/// alive (opened as a pidfd, so it is the process checked).
fn check_pids(pids: &[u32]) -> Result<(), RequestError> {
    if pids.len() > MAX_SCOPE_PIDS {
        return Err(RequestError::InvalidUnit(format!(
            "{} processes given; at most {MAX_SCOPE_PIDS}",
            pids.len()
        )));
    }
    for &pid in pids {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(RequestError::InvalidUnit(format!(
                "process identifier {pid} is not valid"
            )));
        }
        if pid == std::process::id() {
            return Err(RequestError::InvalidUnit(format!(
                "process {pid} is corrald itself, the manager: refusing"
            )));
        }
        let _held = process::pidfd_open(nix::unistd::Pid::from_raw(pid as i32))
            .map_err(|_| RequestError::NoSuchProcess(format!("process {pid} does not exist")))?;
        if is_kernel_thread(pid) {
            return Err(RequestError::InvalidUnit(format!(
                "process {pid} is a kernel thread: refusing"
            )));
        }
    }
    Ok(())
}

/// Whether `/proc/PID/stat` has `PF_KTHREAD` in its flags (field 9, after the command name in
/// parentheses, which may hold any character).
fn is_kernel_thread(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().nth(6)?.parse::<u64>().ok()
        })
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

/// A sub-cgroup of `AttachProcessesToUnit`: relative, each component a plain name, bounded.
fn check_subcgroup(sub: &Path) -> Result<(), RequestError> {
    let bad = |why: &str| {
        RequestError::InvalidUnit(format!("sub-cgroup {:?}: {why}", sub.display().to_string()))
    };
    if sub.as_os_str().len() > MAX_SUBCGROUP_BYTES {
        return Err(bad(&format!("longer than {MAX_SUBCGROUP_BYTES} bytes")));
    }
    for c in sub.components() {
        match c {
            Component::Normal(n) if !n.is_empty() => {}
            _ => {
                return Err(bad(
                    "must be a relative path of plain names, without \"..\" or \".\"",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_cgroups_stay_below_the_unit() {
        assert!(check_subcgroup(Path::new("")).is_ok());
        assert!(check_subcgroup(Path::new("container")).is_ok());
        assert!(check_subcgroup(Path::new("a/b")).is_ok());
        for bad in ["../x", "/abs", "a/../b", "./a"] {
            let e = check_subcgroup(Path::new(bad)).expect_err(bad);
            assert!(e.to_string().contains("relative path"), "{bad}: {e}");
        }
        let long = "a".repeat(MAX_SUBCGROUP_BYTES + 1);
        assert!(check_subcgroup(Path::new(&long)).is_err());
    }

    #[test]
    fn pids_are_checked_before_anything_is_done() {
        let me = std::process::id();
        assert!(matches!(
            check_pids(&[me]),
            Err(RequestError::InvalidUnit(m)) if m.contains("corrald itself")
        ));
        assert!(matches!(
            check_pids(&[0]),
            Err(RequestError::InvalidUnit(_))
        ));
        assert!(matches!(
            check_pids(&[i32::MAX as u32]),
            Err(RequestError::NoSuchProcess(_))
        ));
        // kthreadd, a kernel thread, where there is one (not in every container).
        if is_kernel_thread(2) {
            assert!(matches!(
                check_pids(&[2]),
                Err(RequestError::InvalidUnit(m)) if m.contains("kernel thread")
            ));
        }
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(check_pids(&[child.id()]).is_ok());
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        let too_many = vec![1; MAX_SCOPE_PIDS + 1];
        assert!(check_pids(&too_many).is_err());
    }

    #[test]
    fn limits_are_checked_as_set_unit_limits_checks_them() {
        let n = UnitName::parse("c.scope").unwrap();
        let ok = resources_of(
            &n,
            &[
                ("memory-max".into(), LimitValue::Int(64 << 20)),
                ("cpu-max".into(), LimitValue::Str("50%".into())),
            ],
        )
        .unwrap();
        assert_eq!(
            ok.to_pairs(),
            [
                ("cpu-max", "50%".to_string()),
                ("memory-max", "64M".to_string())
            ]
        );
        let e = resources_of(&n, &[("cpu-weight".into(), LimitValue::Int(0))]).unwrap_err();
        assert!(matches!(e, RequestError::InvalidLimit(_)), "{e}");
        let root = UnitName::root_slice();
        assert!(resources_of(&root, &[("pids-max".into(), LimitValue::Int(5))]).is_err());
        assert_eq!(resources_of(&root, &[]).unwrap(), Resources::default());
    }
}
