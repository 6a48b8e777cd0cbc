//! What a unit looks like from the bus: its row in `ListUnits` and its properties, from the
//! engine's tables, the unit's definition and — when asked — its cgroup read now.
//!
//! A unit's counters outlive its cgroup: when a stopped unit's cgroup is removed, what it
//! showed last is kept (`Manager::last_usage`) and read back until the unit starts again, so a
//! unit that failed for an OOM kill still says `OOMKills = 1`, and how much CPU it used.

use super::super::engine::service::UnitResult;
use super::super::request::{LoadState, RequestError, UnitProperties, UnitSummary, Usage};
use super::Manager;
use crate::cgroup::Cgroup;
use crate::unit::{LoadState as Loaded, Unit, UnitName};

/// The usage figures of a cgroup now (2^64-1 where the kernel can't give one).
pub(crate) fn usage_of(cg: &Cgroup) -> Usage {
    let s = cg.stats();
    let p = |x: Option<crate::cgroup::stats::Pressure>| {
        x.map_or((0.0, 0.0, 0.0), |p| (p.avg10, p.avg60, p.avg300))
    };
    Usage {
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
    }
}

impl Manager {
    pub(super) fn summary(&self, name: &UnitName) -> UnitSummary {
        let entry = self.units.units.get(name);
        let (active_state, sub_state) = self.engine.active_sub(name);
        UnitSummary {
            name: name.clone(),
            description: entry
                .and_then(|e| e.unit())
                .map(|u| u.description.clone())
                .unwrap_or_default(),
            load_state: match entry.map(|e| &e.state) {
                Some(Loaded::Loaded(_)) => LoadState::Loaded,
                Some(Loaded::Error(_)) => LoadState::Error,
                None => LoadState::NotFound,
            },
            active_state,
            sub_state,
        }
    }

    pub(super) fn properties(
        &self,
        name: &UnitName,
        usage: bool,
    ) -> Result<UnitProperties, RequestError> {
        let entry = self
            .units
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        let summary = self.summary(name);
        let (limits, effective_limits, usage, freezer_state) = self.limit_properties(name, usage);
        let st = self.engine.service(name);
        let unit = entry.unit();
        Ok(UnitProperties {
            name: name.clone(),
            description: summary.description,
            load_state: summary.load_state,
            load_error: match &entry.state {
                Loaded::Error(m) => m.clone(),
                Loaded::Loaded(_) => String::new(),
            },
            active_state: summary.active_state,
            sub_state: summary.sub_state,
            result: st.map_or(UnitResult::Success, |s| s.result),
            main_pid: st.and_then(|s| s.main_pid).unwrap_or(0),
            exit_status: st.map_or(0, |s| s.exit_status),
            n_restarts: st.map_or(0, |s| s.n_restarts),
            control_group: unit.map_or_else(String::new, |u| self.control_group(&u.cgroup_path())),
            slice: unit
                .and_then(Unit::slice)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            limits,
            effective_limits,
            usage,
            active_enter_timestamp: self
                .engine
                .active_enter(name)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as u64),
            freezer_state,
        })
    }
}
