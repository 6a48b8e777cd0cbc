//! The memory controller: `memory-max/-high/-low/-min/-swap-max` (`memory.max` …
//! `memory.swap.max`, bytes or `max`), `oom-policy = "kill"` (`memory.oom.group` = 1), and the
//! usage files `memory.current`, `memory.peak`, `memory.events`.
//!
//! Kernel rules relied on:
//! - the kernel rounds byte limits down to whole pages; corrald writes the exact bytes;
//! - `N%` of RAM is resolved against `MemTotal` (see [`HostInfo`](super::HostInfo)) when written;
//! - `memory.swap.max` exists only with swap accounting (a missing file is a warning);
//! - `memory.peak` appeared in 5.19 (read as `None` where absent);
//! - `memory.events` counts for the cgroup and its descendants (`.local` would not), so a
//!   delegated unit's OOM kills below it count for the unit.

use super::Controller;
use super::settings::{Presence, Setting};
use crate::limits::{MemoryLimit, Resources};

pub const MAX: &str = "memory.max";
pub const HIGH: &str = "memory.high";
pub const LOW: &str = "memory.low";
pub const MIN: &str = "memory.min";
pub const SWAP_MAX: &str = "memory.swap.max";
pub const OOM_GROUP: &str = "memory.oom.group";
pub const CURRENT: &str = "memory.current";
pub const PEAK: &str = "memory.peak";
pub const EVENTS: &str = "memory.events";
pub const PRESSURE: &str = "memory.pressure";

/// The value written for a limit: bytes, or `max`.
pub fn limit_value(limit: MemoryLimit, ram: u64) -> String {
    match limit.resolve(ram) {
        Some(bytes) => bytes.to_string(),
        None => "max".to_string(),
    }
}

pub(crate) fn settings(res: &Resources, ram: u64) -> Vec<Setting> {
    let v = |l: Option<MemoryLimit>| l.map(|l| limit_value(l, ram));
    let m = Controller::Memory;
    vec![
        Setting::new("memory-max", m, MAX, v(res.memory_max), "max"),
        Setting::new("memory-high", m, HIGH, v(res.memory_high), "max"),
        Setting::new("memory-low", m, LOW, v(res.memory_low), "0"),
        Setting::new("memory-min", m, MIN, v(res.memory_min), "0"),
        Setting::new(
            "memory-swap-max",
            m,
            SWAP_MAX,
            v(res.memory_swap_max),
            "max",
        )
        .presence(Presence::Warn),
        Setting::new(
            "oom-policy",
            m,
            OOM_GROUP,
            res.oom_group.then(|| "1".to_string()),
            "0",
        ),
    ]
}

/// `memory.events` (hierarchical counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
}

/// Parses `memory.events`; `None` without an `oom_kill` line (not that file).
pub fn parse_events(text: &str) -> Option<MemoryEvents> {
    let mut ev = MemoryEvents::default();
    let mut seen_oom_kill = false;
    for (key, value) in super::flat_keyed(text) {
        match key {
            "low" => ev.low = value,
            "high" => ev.high = value,
            "max" => ev.max = value,
            "oom" => ev.oom = value,
            "oom_kill" => {
                ev.oom_kill = value;
                seen_oom_kill = true;
            }
            _ => {}
        }
    }
    seen_oom_kill.then_some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RawValue::Str;

    const GIB: u64 = 1 << 30;

    #[test]
    fn every_key_and_format() {
        let mut r = Resources::default();
        r.set("memory-max", Str("512M")).unwrap();
        r.set("memory-high", Str("25%")).unwrap();
        r.set("memory-low", Str("max")).unwrap();
        r.set("memory-min", Str("4096")).unwrap();
        r.set("memory-swap-max", Str("0")).unwrap();
        r.oom_group = true;
        let got: Vec<_> = settings(&r, 4 * GIB)
            .into_iter()
            .map(|s| (s.file, s.value.unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (MAX, "536870912".to_string()),
                (HIGH, GIB.to_string()),
                (LOW, "max".to_string()),
                (MIN, "4096".to_string()),
                (SWAP_MAX, "0".to_string()),
                (OOM_GROUP, "1".to_string()),
            ]
        );
        let none = settings(&Resources::default(), GIB);
        assert!(none.iter().all(|s| s.value.is_none()));
        let resets: Vec<_> = none.iter().map(|s| s.reset.as_str()).collect();
        assert_eq!(resets, ["max", "max", "0", "0", "max", "0"]);
    }

    #[test]
    fn events_parse_kernel_text() {
        let text = "low 0\nhigh 12\nmax 40\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(
            parse_events(text),
            Some(MemoryEvents {
                low: 0,
                high: 12,
                max: 40,
                oom: 2,
                oom_kill: 1
            })
        );
        assert_eq!(parse_events("populated 1\n"), None);
    }
}
