//! The manager's answers to live-control requests: signals, freezing, limits changed at run
//! time (applied to the live cgroup at once, persisted as the drop-in `50-limits.toml`), their
//! dry run, logs, processes, and the unit properties read from the cgroup on demand.
//!
//! Decisions: a unit that isn't running has nothing to kill or freeze (`JobFailed`); a dry run
//! of an inactive unit changes no file, so it lists none; runtime-only limits go to
//! `RUNTIME/units/NAME.KIND.d/50-limits.toml`, persistent ones to the first unit directory.

use std::path::PathBuf;
use std::time::Duration;

use super::executor::Manager;
use super::request::{FileChange, LimitValue, RequestError, Usage};
use crate::cgroup::{Cgroup, effective_limits};
use crate::limits::{RawValue, Resources};
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
/// The file live limit changes are persisted in.
pub const LIMITS_DROPIN: &str = "50-limits.toml";

impl Manager {
    /// The unit's cgroup, if it exists now (the unit or something in it runs).
    pub(super) fn live_cgroup(&self, name: &UnitName) -> Option<Cgroup> {
        let unit = self.units.get(name)?;
        let cg = Cgroup::new(self.tree.root().join(unit.cgroup_path()));
        (cg.exists() && !name.is_root_slice()).then_some(cg)
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
        let cg = self.running_cgroup(name)?;
        for pid in cg
            .procs()
            .map_err(|e| RequestError::JobFailed(e.to_string()))?
        {
            // ESRCH: it exited meanwhile.
            let _ = crate::process::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
        Ok(())
    }

    pub(super) fn freeze_unit(&self, name: &UnitName, freeze: bool) -> Result<(), RequestError> {
        let cg = self.running_cgroup(name)?;
        let r = if freeze {
            cg.freeze(FREEZE_TIMEOUT)
        } else {
            cg.thaw(FREEZE_TIMEOUT)
        };
        r.map_err(|e| RequestError::JobFailed(e.to_string()))
    }

    /// The unit's limits now and with `limits` applied, validated.
    fn limits_after(
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
        let old = unit.resources.clone();
        let mut new = old.clone();
        for (key, value) in limits {
            let raw = match value {
                LimitValue::Str(s) => RawValue::Str(s),
                LimitValue::Int(i) => RawValue::Int(*i),
            };
            new.set(key, raw)
                .map_err(|e| RequestError::InvalidLimit(e.to_string()))?;
        }
        new.validate()
            .map_err(|e| RequestError::InvalidLimit(format!("cpu-max: {e}")))?;
        Ok((old, new))
    }

    pub(super) fn diff_limits(
        &self,
        name: &UnitName,
        limits: &[(String, LimitValue)],
    ) -> Result<Vec<FileChange>, RequestError> {
        let (old, new) = self.limits_after(name, limits)?;
        let Some(_) = self.live_cgroup(name) else {
            return Ok(Vec::new());
        };
        let rel = self
            .units
            .get(name)
            .map(|u| u.cgroup_path())
            .unwrap_or_default();
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
        if self.live_cgroup(name).is_some() {
            let rel = self
                .units
                .get(name)
                .map(|u| u.cgroup_path())
                .unwrap_or_default();
            let diff = self
                .tree
                .update(&rel, &old, &new, &self.host)
                .map_err(|e| RequestError::InvalidLimit(e.to_string()))?;
            for w in diff.warnings {
                tracing::warn!(unit = %name, "{w}");
            }
            for c in &diff.changes {
                tracing::info!(unit = %name, "{c}");
            }
        }
        self.persist_limits(name, limits, &new, runtime)?;
        if let Some(LoadState::Loaded(u)) = self.units.units.get_mut(name).map(|e| &mut e.state) {
            u.resources = new;
        }
        Ok(())
    }

    /// Writes the changed keys into the unit's `50-limits.toml` drop-in, keeping what the
    /// file already held.
    fn persist_limits(
        &self,
        name: &UnitName,
        limits: &[(String, LimitValue)],
        new: &Resources,
        runtime: bool,
    ) -> Result<(), RequestError> {
        let dir = if runtime {
            self.paths.runtime_dir.join("units")
        } else {
            self.paths
                .unit_dirs
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from("/etc/corral/units"))
        };
        let file = dir.join(format!("{name}.d")).join(LIMITS_DROPIN);
        let mut doc: toml::Table = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        let res = doc
            .entry("resources")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(res) = res.as_table_mut() else {
            return Err(RequestError::InvalidLimit(format!(
                "{}: [resources] is not a table",
                file.display()
            )));
        };
        let pairs = new.to_pairs();
        for (key, _) in limits {
            let value = if key == "io-max" {
                let entries = new
                    .io_max
                    .iter()
                    .map(|io| {
                        let mut t = toml::Table::new();
                        t.insert("device".into(), io.device.display().to_string().into());
                        for f in crate::limits::IO_MAX_FIELDS {
                            if let Some(v) = io.field(f) {
                                t.insert(f.into(), toml::Value::Integer(v as i64));
                            }
                        }
                        toml::Value::Table(t)
                    })
                    .collect();
                toml::Value::Array(entries)
            } else {
                let v = pairs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                toml::Value::String(v)
            };
            res.insert(key.clone(), value);
        }
        let text = format!(
            "# Written by corrald for SetUnitLimits / corralctl limit.\n{}",
            toml::to_string(&doc).unwrap_or_default()
        );
        super::admin::write_file(&file, &text).map_err(|e| {
            RequestError::JobFailed(format!(
                "the limits apply now but were not saved: {}: {e}",
                file.display()
            ))
        })
    }

    pub(super) fn processes(&self, name: &UnitName) -> Result<Vec<(u32, String)>, RequestError> {
        let Some(cg) = self.live_cgroup(name) else {
            return if self.units.units.contains_key(name) {
                Ok(Vec::new())
            } else {
                Err(RequestError::NoSuchUnit(name.clone()))
            };
        };
        let mut out = Vec::new();
        for pid in cg.procs().unwrap_or_default() {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .trim_end_matches('\0')
                        .replace('\0', " ")
                })
                .unwrap_or_default();
            out.push((pid, cmd));
        }
        Ok(out)
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
            Some(cg) => {
                let s = cg.stats();
                let p = |x: Option<crate::cgroup::stats::Pressure>| {
                    x.map_or((0.0, 0.0, 0.0), |p| (p.avg10, p.avg60, p.avg300))
                };
                let usage = Usage {
                    memory_current: s.memory_current.unwrap_or(u64::MAX),
                    memory_peak: s.memory_peak.unwrap_or(u64::MAX),
                    cpu_usage_nsec: s
                        .cpu
                        .map_or(u64::MAX, |c| c.usage_usec.saturating_mul(1000)),
                    tasks_current: s.pids_current.unwrap_or(u64::MAX),
                    io_read_bytes: s.io.map_or(u64::MAX, |i| i.rbytes),
                    io_write_bytes: s.io.map_or(u64::MAX, |i| i.wbytes),
                    oom_kills: s.oom_kills().unwrap_or(u64::MAX),
                    cpu_pressure: p(s.cpu_pressure),
                    memory_pressure: p(s.memory_pressure),
                    io_pressure: p(s.io_pressure),
                };
                (usage, cg.events().is_ok_and(|e| e.frozen))
            }
            None => (Usage::default(), false),
        };
        let freezer = if frozen { "frozen" } else { "running" };
        (limits, effective, usage, freezer.to_string())
    }
}
