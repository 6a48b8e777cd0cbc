//! The cpu controller: `cpu-max` and `cpu-period` (`cpu.max`), `cpu-weight` (`cpu.weight`, or
//! `cpu.idle` for `"idle"`), and `cpu.stat`.
//!
//! Kernel rules relied on (verified on 6.1, DESIGN §8):
//! - `cpu.max` is `QUOTA PERIOD` in µs, or `max PERIOD`; it rejects a quota under 1 ms and a
//!   period over 1 s. The quota is percent × period / 100, raised to 1000 µs should a value that
//!   slipped past validation round below it;
//! - writing `cpu.weight` fails while `cpu.idle` = 1, so `cpu.idle` = 0 is written before a
//!   numeric weight, and a weight being reset (back to 100) is written before `cpu.idle` = 1;
//! - `cpu.stat` exists in every cgroup (usage from the core); `nr_throttled` and
//!   `throttled_usec` only with the controller enabled.

use super::Controller;
use super::settings::Setting;
use crate::limits::{CpuMax, CpuPeriod, CpuWeight, Resources};

pub const MAX: &str = "cpu.max";
pub const WEIGHT: &str = "cpu.weight";
pub const IDLE: &str = "cpu.idle";
pub const STAT: &str = "cpu.stat";
pub const PRESSURE: &str = "cpu.pressure";

/// The kernel's smallest quota.
pub const MIN_QUOTA_US: u64 = 1_000;
/// `cpu.weight` when nothing is set.
pub const DEFAULT_WEIGHT: u16 = 100;

/// The `cpu.max` line: `"50000 100000"`, or `"max 100000"`.
pub fn max_value(max: Option<CpuMax>, period: CpuPeriod) -> String {
    match max.and_then(|m| m.quota_us(period)) {
        Some(q) => format!("{} {}", q.max(MIN_QUOTA_US), period.micros()),
        None => format!("max {}", period.micros()),
    }
}

pub(crate) fn settings(res: &Resources) -> Vec<Setting> {
    let period = res.effective_period();
    let (max_key, max_line) = match (res.cpu_max, res.cpu_period) {
        (None, None) => ("cpu-max", None),
        (Some(_), _) => ("cpu-max", Some(max_value(res.cpu_max, period))),
        (None, Some(_)) => ("cpu-period", Some(max_value(None, period))),
    };
    let idle = Setting::new(
        "cpu-weight",
        Controller::Cpu,
        IDLE,
        res.cpu_weight.map(|w| match w {
            CpuWeight::Idle => "1".to_string(),
            CpuWeight::Weight(_) => "0".to_string(),
        }),
        "0",
    );
    let weight = Setting::new(
        "cpu-weight",
        Controller::Cpu,
        WEIGHT,
        match res.cpu_weight {
            Some(CpuWeight::Weight(w)) => Some(w.to_string()),
            _ => None,
        },
        DEFAULT_WEIGHT.to_string(),
    );
    let max = Setting::new(
        max_key,
        Controller::Cpu,
        MAX,
        max_line,
        max_value(None, period),
    );
    if res.cpu_weight == Some(CpuWeight::Idle) {
        vec![weight, idle, max]
    } else {
        vec![idle, weight, max]
    }
}

/// The figures of `cpu.stat` corrald reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuStat {
    pub usage_usec: u64,
    /// Only with the cpu controller enabled.
    pub nr_throttled: Option<u64>,
    pub throttled_usec: Option<u64>,
}

/// Parses `cpu.stat` (flat keyed); `None` without `usage_usec`.
pub fn parse_stat(text: &str) -> Option<CpuStat> {
    let mut usage = None;
    let mut stat = CpuStat::default();
    for (key, value) in super::flat_keyed(text) {
        match key {
            "usage_usec" => usage = Some(value),
            "nr_throttled" => stat.nr_throttled = Some(value),
            "throttled_usec" => stat.throttled_usec = Some(value),
            _ => {}
        }
    }
    stat.usage_usec = usage?;
    Some(stat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{RawValue::Str, Weight};

    fn res(pairs: &[(&str, &str)]) -> Resources {
        let mut r = Resources::default();
        for (k, v) in pairs {
            r.set(k, Str(v)).unwrap();
        }
        r
    }

    fn values(r: &Resources) -> Vec<(&'static str, Option<String>)> {
        settings(r).into_iter().map(|s| (s.file, s.value)).collect()
    }

    #[test]
    fn cpu_max_formats() {
        let p = CpuPeriod::DEFAULT;
        let pct = |s| CpuMax::parse(Str(s)).unwrap();
        assert_eq!(max_value(Some(pct("50%")), p), "50000 100000");
        assert_eq!(max_value(Some(pct("150%")), p), "150000 100000");
        assert_eq!(max_value(Some(pct("12.5%")), p), "12500 100000");
        assert_eq!(max_value(Some(CpuMax::Max), p), "max 100000");
        assert_eq!(max_value(None, p), "max 100000");
        let ms10 = CpuPeriod::from_micros(10_000).unwrap();
        assert_eq!(max_value(Some(pct("20%")), ms10), "2000 10000");
        // 1% of 10ms is 100µs: below the kernel's minimum, raised to 1ms.
        assert_eq!(max_value(Some(pct("1%")), ms10), "1000 10000");
    }

    #[test]
    fn settings_per_key() {
        assert_eq!(
            values(&res(&[("cpu-max", "20%"), ("cpu-period", "50ms")])),
            vec![
                (IDLE, None),
                (WEIGHT, None),
                (MAX, Some("10000 50000".into()))
            ]
        );
        assert_eq!(
            values(&res(&[("cpu-period", "50ms")]))[2],
            (MAX, Some("max 50000".into()))
        );
        assert_eq!(
            values(&res(&[("cpu-weight", "200")])),
            vec![
                (IDLE, Some("0".into())),
                (WEIGHT, Some("200".into())),
                (MAX, None)
            ]
        );
        // Idle: the weight's reset goes before cpu.idle = 1.
        assert_eq!(
            values(&res(&[("cpu-weight", "idle")])),
            vec![(WEIGHT, None), (IDLE, Some("1".into())), (MAX, None)]
        );
        let w = Resources {
            cpu_weight: Some(CpuWeight::Weight(Weight::new(1).unwrap())),
            ..Resources::default()
        };
        assert_eq!(values(&w)[1], (WEIGHT, Some("1".into())));
        assert!(
            values(&Resources::default())
                .iter()
                .all(|(_, v)| v.is_none())
        );
    }

    #[test]
    fn stat_parses_kernel_text() {
        let with_controller = "usage_usec 148334882\nuser_usec 92415411\nsystem_usec 55919470\n\
                               nice_usec 0\ncore_sched.force_idle_usec 0\nnr_periods 12\n\
                               nr_throttled 3\nthrottled_usec 45678\nnr_bursts 0\nburst_usec 0\n";
        assert_eq!(
            parse_stat(with_controller),
            Some(CpuStat {
                usage_usec: 148334882,
                nr_throttled: Some(3),
                throttled_usec: Some(45678)
            })
        );
        let core_only = "usage_usec 10\nuser_usec 6\nsystem_usec 4\n";
        assert_eq!(
            parse_stat(core_only),
            Some(CpuStat {
                usage_usec: 10,
                nr_throttled: None,
                throttled_usec: None
            })
        );
        assert_eq!(parse_stat(""), None);
    }
}
