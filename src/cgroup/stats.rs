//! Usage figures, read on demand (no polling): memory, CPU, tasks, IO and pressure (PSI).
//!
//! Every figure is an `Option`: a file that is absent (controller not enabled, older kernel,
//! PSI disabled with `psi=0`, which makes the pressure files fail with EOPNOTSUPP) or that
//! doesn't parse gives `None`, which D-Bus shows as 2^64-1. A missing cgroup gives all `None`.
//! The controller-specific parsers live with their controller; PSI is common to all.

use std::path::Path;

use super::cpu::{self, CpuStat};
use super::io::{self, IoStat};
use super::memory::{self, MemoryEvents};
use super::pids;

/// One PSI line's averages, in percent of wall time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// Everything [`read`] gathers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    pub memory_current: Option<u64>,
    /// Absent before 5.19.
    pub memory_peak: Option<u64>,
    pub memory_events: Option<MemoryEvents>,
    pub cpu: Option<CpuStat>,
    pub pids_current: Option<u64>,
    pub io: Option<IoStat>,
    /// The `some` line of `cpu.pressure`, `memory.pressure`, `io.pressure`.
    pub cpu_pressure: Option<Pressure>,
    pub memory_pressure: Option<Pressure>,
    pub io_pressure: Option<Pressure>,
}

impl Stats {
    /// OOM kills counted in `memory.events`.
    pub fn oom_kills(&self) -> Option<u64> {
        self.memory_events.map(|e| e.oom_kill)
    }
}

/// Reads every figure of the cgroup at `dir`.
pub fn read(dir: &Path) -> Stats {
    let text = |name: &str| super::read_knob(&dir.join(name)).ok();
    let number = |name: &str| text(name).and_then(|t| parse_number(&t));
    let pressure = |name: &str| text(name).and_then(|t| parse_pressure(&t));
    Stats {
        memory_current: number(memory::CURRENT),
        memory_peak: number(memory::PEAK),
        memory_events: text(memory::EVENTS).and_then(|t| memory::parse_events(&t)),
        cpu: text(cpu::STAT).and_then(|t| cpu::parse_stat(&t)),
        pids_current: number(pids::CURRENT),
        io: text(io::STAT).map(|t| io::parse_stat(&t)),
        cpu_pressure: pressure(cpu::PRESSURE),
        memory_pressure: pressure(memory::PRESSURE),
        io_pressure: pressure(io::PRESSURE),
    }
}

/// A file holding one number (`memory.current`, `pids.current`).
pub fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Parses a PSI file's `some` line: `some avg10=0.00 avg60=0.16 avg300=2.12 total=23084427`.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("some"))?;
    let mut avg = [None; 3];
    for word in line.split_whitespace().skip(1) {
        let (k, v) = word.split_once('=')?;
        let slot = match k {
            "avg10" => 0,
            "avg60" => 1,
            "avg300" => 2,
            _ => continue,
        };
        avg[slot] = Some(v.parse::<f64>().ok()?);
    }
    Some(Pressure {
        avg10: avg[0]?,
        avg60: avg[1]?,
        avg300: avg[2]?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_parses_kernel_text() {
        let text = "some avg10=0.00 avg60=0.16 avg300=2.12 total=23084427\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(
            parse_pressure(text),
            Some(Pressure {
                avg10: 0.0,
                avg60: 0.16,
                avg300: 2.12
            })
        );
        // cpu.pressure has a `full` line only since 5.13; `some` is all we read anyway.
        assert_eq!(
            parse_pressure("some avg10=12.50 avg60=3.00 avg300=1.00 total=5\n").map(|p| p.avg10),
            Some(12.5)
        );
        assert_eq!(
            parse_pressure("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            None
        );
        assert_eq!(parse_pressure("some avg10=x avg60=0 avg300=0\n"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("123456\n"), Some(123456));
        assert_eq!(parse_number("max\n"), None);
    }

    #[test]
    fn absent_files_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(read(d), Stats::default());
        std::fs::write(d.join("memory.current"), "8192\n").unwrap();
        std::fs::write(d.join("pids.current"), "3\n").unwrap();
        std::fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        std::fs::write(
            d.join("cpu.stat"),
            "usage_usec 42\nuser_usec 40\nsystem_usec 2\n",
        )
        .unwrap();
        std::fs::write(d.join("io.stat"), "").unwrap();
        let s = read(d);
        assert_eq!(s.memory_current, Some(8192));
        assert_eq!(s.memory_peak, None);
        assert_eq!(s.pids_current, Some(3));
        assert_eq!(s.oom_kills(), Some(1));
        assert_eq!(s.cpu.map(|c| c.usage_usec), Some(42));
        assert_eq!(s.io, Some(IoStat::default()));
        assert_eq!(s.cpu_pressure, None);
    }
}
