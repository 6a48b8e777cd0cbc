//! Effective limits (DESIGN §3): for the max-type keys — cpu-max, memory-max, memory-high,
//! memory-swap-max, pids-max, and io-max per device and field — the limit in force for a unit
//! is the tightest of its own and its ancestors', because the kernel enforces every level's
//! limit on the whole subtree below it. Reported with the unit that binds it.
//!
//! Rules:
//! - the input is a chain from the unit up to the root: `[(job.service, …), (apps-batch.slice,
//!   …), (apps.slice, …)]`; a unit that doesn't set a key doesn't take part for that key;
//! - on a tie the unit nearest the service binds (parent 60 %, child 60 % → the child);
//! - cpu-max is compared as a share of a CPU, whatever each level's period;
//! - memory percentages are compared after resolving against RAM (`ram`), and reported as the
//!   binding unit wrote them;
//! - io-max devices are compared by path as written: the pure function can't know that
//!   `/dev/vda` and `/dev/disk/by-path/…` are the same disk;
//! - an explicit `max` takes part like any value and binds when nothing is tighter.
//!
//! cpuset is not a max-type key: its effective set comes from the kernel
//! ([`super::cpuset::read_effective`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::limits::{CpuMax, IO_MAX_FIELDS, IoMax, MemoryLimit, PidsMax, Resources, format_bytes};

/// A value and the unit it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<T> {
    pub value: T,
    pub unit: String,
}

/// One io-max field's effective value for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveIo {
    pub device: PathBuf,
    /// `rbps`, `wbps`, `riops` or `wiops`.
    pub field: &'static str,
    pub value: u64,
    pub unit: String,
}

/// The effective max-type limits of one unit; `None` where no unit in the chain sets the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveLimits {
    pub cpu_max: Option<Binding<CpuMax>>,
    pub memory_max: Option<Binding<MemoryLimit>>,
    pub memory_high: Option<Binding<MemoryLimit>>,
    pub memory_swap_max: Option<Binding<MemoryLimit>>,
    pub pids_max: Option<Binding<PidsMax>>,
    /// In order of first appearance from the unit up, fields in io.max order.
    pub io_max: Vec<EffectiveIo>,
}

impl EffectiveLimits {
    /// `(key, value, binding unit)` for D-Bus `EffectiveLimits a{s(ss)}`: keys as in
    /// `[resources]`, io-max as `io-max DEVICE FIELD` (`io-max /dev/vda rbps`), values canonical.
    pub fn to_pairs(&self) -> Vec<(String, String, String)> {
        fn pair<T: std::fmt::Display>(
            key: &str,
            b: &Option<Binding<T>>,
        ) -> Option<(String, String, String)> {
            b.as_ref()
                .map(|b| (key.to_string(), b.value.to_string(), b.unit.clone()))
        }
        let mut out: Vec<_> = [
            pair("cpu-max", &self.cpu_max),
            pair("memory-max", &self.memory_max),
            pair("memory-high", &self.memory_high),
            pair("memory-swap-max", &self.memory_swap_max),
            pair("pids-max", &self.pids_max),
        ]
        .into_iter()
        .flatten()
        .collect();
        for io in &self.io_max {
            let value = if io.field.ends_with("bps") {
                format_bytes(io.value)
            } else {
                io.value.to_string()
            };
            out.push((
                format!("io-max {} {}", io.device.display(), io.field),
                value,
                io.unit.clone(),
            ));
        }
        out
    }
}

/// The tightest value of one key: lowest rank wins, the first (nearest) on a tie.
fn tightest<T: Copy>(
    chain: &[(&str, &Resources)],
    get: impl Fn(&Resources) -> Option<T>,
    rank: impl Fn(T) -> u128,
) -> Option<Binding<T>> {
    let mut best: Option<(u128, Binding<T>)> = None;
    for (unit, res) in chain {
        let Some(value) = get(res) else { continue };
        let r = rank(value);
        if best.as_ref().is_none_or(|(b, _)| r < *b) {
            best = Some((
                r,
                Binding {
                    value,
                    unit: unit.to_string(),
                },
            ));
        }
    }
    best.map(|(_, b)| b)
}

/// Computes the effective limits of the first unit of `chain` (unit first, root last) on a
/// machine with `ram` bytes.
pub fn effective_limits(chain: &[(&str, &Resources)], ram: u64) -> EffectiveLimits {
    let cpu_rank = |c: CpuMax| match c {
        CpuMax::Percent(p) => u128::from(p.hundredths()),
        CpuMax::Max => u128::MAX,
    };
    let mem_rank = |m: MemoryLimit| m.resolve(ram).map_or(u128::MAX, u128::from);
    let pids_rank = |p: PidsMax| match p {
        PidsMax::Limit(n) => u128::from(n),
        PidsMax::Max => u128::MAX,
    };
    // Each unit's entry per device (the last one is in force), indexed once: linear in the
    // entries of the chain, where a search per device was quadratic.
    let per_unit: Vec<HashMap<&PathBuf, &IoMax>> = chain
        .iter()
        .map(|(_, res)| res.io_max.iter().map(|e| (&e.device, e)).collect())
        .collect();
    let mut devices: Vec<&PathBuf> = Vec::new();
    let mut seen: HashSet<&PathBuf> = HashSet::new();
    for (_, res) in chain {
        for e in &res.io_max {
            if seen.insert(&e.device) {
                devices.push(&e.device);
            }
        }
    }
    let mut io_max = Vec::new();
    for device in devices {
        for field in IO_MAX_FIELDS {
            let mut best: Option<(u64, usize)> = None;
            for (i, entries) in per_unit.iter().enumerate() {
                let Some(v) = entries.get(device).and_then(|e| e.field(field)) else {
                    continue;
                };
                // Lowest wins; the nearest unit on a tie.
                if best.is_none_or(|(b, _)| v < b) {
                    best = Some((v, i));
                }
            }
            if let Some((value, i)) = best {
                io_max.push(EffectiveIo {
                    device: device.clone(),
                    field,
                    value,
                    unit: chain[i].0.to_string(),
                });
            }
        }
    }
    EffectiveLimits {
        cpu_max: tightest(chain, |r| r.cpu_max, cpu_rank),
        memory_max: tightest(chain, |r| r.memory_max, mem_rank),
        memory_high: tightest(chain, |r| r.memory_high, mem_rank),
        memory_swap_max: tightest(chain, |r| r.memory_swap_max, mem_rank),
        pids_max: tightest(chain, |r| r.pids_max, pids_rank),
        io_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RawValue::{self, Str};

    const GIB: u64 = 1 << 30;

    fn res(pairs: &[(&str, &str)]) -> Resources {
        let mut r = Resources::default();
        for (k, v) in pairs {
            r.set(k, Str(v)).unwrap();
        }
        r
    }

    /// Effective `key` of a 3-level chain (service, slice, parent slice), as (value, unit).
    fn eff(levels: [&[(&str, &str)]; 3], key: &str) -> Option<(String, String)> {
        let [svc, slice, top] = levels.map(res);
        let chain = [
            ("job.service", &svc),
            ("apps-batch.slice", &slice),
            ("apps.slice", &top),
        ];
        effective_limits(&chain, 4 * GIB)
            .to_pairs()
            .into_iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, u)| (v, u))
    }

    #[test]
    fn tightest_wins_and_nearest_breaks_ties() {
        type Case<'a> = (
            [&'a [(&'a str, &'a str)]; 3],
            &'a str,
            Option<(&'a str, &'a str)>,
        );
        let cases: &[Case] = &[
            // The design's examples, on the two nearest levels.
            (
                [&[("cpu-max", "60%")], &[("cpu-max", "60%")], &[]],
                "cpu-max",
                Some(("60%", "job.service")),
            ),
            (
                [&[("cpu-max", "60%")], &[("cpu-max", "30%")], &[]],
                "cpu-max",
                Some(("30%", "apps-batch.slice")),
            ),
            // The grandparent binds through an unlimited middle.
            (
                [&[("cpu-max", "60%")], &[], &[("cpu-max", "20%")]],
                "cpu-max",
                Some(("20%", "apps.slice")),
            ),
            // A share of a CPU, whatever the period: 50% at 10ms ties with 50% at 100ms.
            (
                [
                    &[("cpu-max", "50%"), ("cpu-period", "10ms")],
                    &[],
                    &[("cpu-max", "50%")],
                ],
                "cpu-max",
                Some(("50%", "job.service")),
            ),
            (
                [&[("cpu-max", "max")], &[("cpu-max", "150%")], &[]],
                "cpu-max",
                Some(("150%", "apps-batch.slice")),
            ),
            (
                [&[("cpu-max", "max")], &[], &[]],
                "cpu-max",
                Some(("max", "job.service")),
            ),
            ([&[], &[], &[]], "cpu-max", None),
            // cpu-period alone is not a cpu-max.
            ([&[("cpu-period", "10ms")], &[], &[]], "cpu-max", None),
            // Percentages of RAM against bytes: 50% of 4G = 2G.
            (
                [
                    &[("memory-max", "3G")],
                    &[("memory-max", "50%")],
                    &[("memory-max", "1G")],
                ],
                "memory-max",
                Some(("1G", "apps.slice")),
            ),
            (
                [
                    &[("memory-max", "3G")],
                    &[("memory-max", "50%")],
                    &[("memory-max", "max")],
                ],
                "memory-max",
                Some(("50%", "apps-batch.slice")),
            ),
            (
                [&[("memory-max", "2G")], &[], &[("memory-max", "50%")]],
                "memory-max",
                Some(("2G", "job.service")),
            ),
            (
                [&[], &[("memory-high", "60%")], &[("memory-high", "60%")]],
                "memory-high",
                Some(("60%", "apps-batch.slice")),
            ),
            (
                [
                    &[("memory-swap-max", "0")],
                    &[],
                    &[("memory-swap-max", "1G")],
                ],
                "memory-swap-max",
                Some(("0", "job.service")),
            ),
            // memory-low is a protection, not a max: never reported.
            ([&[("memory-low", "1G")], &[], &[]], "memory-low", None),
            (
                [
                    &[("pids-max", "100")],
                    &[("pids-max", "max")],
                    &[("pids-max", "50")],
                ],
                "pids-max",
                Some(("50", "apps.slice")),
            ),
        ];
        for (levels, key, want) in cases {
            let want = want.map(|(v, u)| (v.to_string(), u.to_string()));
            assert_eq!(eff(*levels, key), want, "{key} over {levels:?}");
        }
    }

    #[test]
    fn io_max_per_device_and_field() {
        let svc = res(&[
            ("io-max", "/dev/vda rbps=20M wbps=10M"),
            ("io-max", "/dev/vdb riops=100"),
        ]);
        let slice = res(&[("io-max", "/dev/vda rbps=10M wiops=500")]);
        let top = res(&[
            ("io-max", "/dev/vda rbps=10M wbps=20M"),
            ("io-max", "/dev/vdb riops=50"),
        ]);
        let chain = [
            ("job.service", &svc),
            ("apps-batch.slice", &slice),
            ("apps.slice", &top),
        ];
        let got = effective_limits(&chain, GIB).to_pairs();
        let want = [
            ("io-max /dev/vda rbps", "10M", "apps-batch.slice"),
            ("io-max /dev/vda wbps", "10M", "job.service"),
            ("io-max /dev/vda wiops", "500", "apps-batch.slice"),
            ("io-max /dev/vdb riops", "50", "apps.slice"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(k, v, u)| (k.to_string(), v.to_string(), u.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn typed_values_for_callers() {
        let mut svc = Resources::default();
        svc.set("memory-max", RawValue::Int(1 << 20)).unwrap();
        let e = effective_limits(&[("a.service", &svc)], GIB);
        assert_eq!(
            e.memory_max,
            Some(Binding {
                value: MemoryLimit::Bytes(1 << 20),
                unit: "a.service".into()
            })
        );
        assert_eq!(e.pids_max, None);
        assert!(effective_limits(&[], GIB).to_pairs().is_empty());
    }
}
