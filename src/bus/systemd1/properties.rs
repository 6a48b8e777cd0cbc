//! The `a(sv)` properties of `StartTransientUnit` and `SetUnitProperties`, read into what the
//! manager takes (DESIGN §9): a scope's or slice's settings, and the resource properties as
//! `[resources]` keys, so that they are checked and written by corral's own limits path.
//!
//! | property | type | key |
//! |---|---|---|
//! | `MemoryMax`, `MemoryHigh`, `MemoryLow`, `MemoryMin`, `MemorySwapMax` | `t` | `memory-max` …; 2^64-1 is `max` |
//! | `CPUQuotaPerSecUSec` (+ `CPUQuotaPeriodUSec`) | `t` | `cpu-max` as a share (10 000 µs/s = 1 %), at least 1 ms per period as systemd clamps it; 2^64-1 is `max` |
//! | `CPUQuotaPeriodUSec` | `t` | `cpu-period`, clamped to 1 ms..1 s as systemd does; 2^64-1 is the kernel's 100 ms |
//! | `CPUWeight` | `t` | `cpu-weight` 1..10000; 0 is `idle` (systemd 252); 2^64-1 the default 100 |
//! | `TasksMax` | `t` | `pids-max`; 2^64-1 is `max` |
//! | `IOWeight` | `t` | `io-weight` 1..10000; 2^64-1 the default 100 |
//! | `AllowedCPUs`, `AllowedMemoryNodes` | `ay` | `cpuset-cpus`/`-mems`: bit N of byte B is CPU 8B+N |
//!
//! Also read, when a unit is made: `Description s`, `Slice s`, `Delegate b`, `PIDs au`,
//! `TimeoutStopUSec t`. Checked for their type and otherwise ignored: `Wants`/`Requires`/
//! `After`/`Before as` (a slice's parent is its name's), `DefaultDependencies b`, the
//! `*Accounting b` (memory and pids accounting are always on; CPU usage is always counted),
//! `DevicePolicy s` and `DeviceAllow a(ss)` (the runtime loads its own device filter in the
//! delegated scope). Any other property is accepted and ignored, as DESIGN §9 says (systemd
//! itself refuses unknown ones); the bus layer logs each name once. A known property of the
//! wrong type, or out of range, is `InvalidArgs` naming it, and nothing is done.

use std::time::Duration;

use zbus::zvariant::{OwnedValue, Value};

use crate::bounds::{
    MAX_CPU_MASK_BYTES, MAX_DESCRIPTION_BYTES, MAX_IGNORED_ENTRIES, MAX_SCOPE_PIDS,
    MAX_UNIT_PROPERTIES,
};
use crate::limits::Percent;
use crate::manager::request::LimitValue;
use crate::unit::{Kind, UnitName};

/// Which call the properties came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `StartTransientUnit`: the unit is being made.
    Make,
    /// `SetUnitProperties`: the unit exists; only limits change.
    Set,
}

/// What the properties say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub description: Option<String>,
    pub slice: Option<UnitName>,
    pub delegate: bool,
    pub pids: Vec<u32>,
    pub stop_timeout: Option<Duration>,
    /// The resource properties as `[resources]` keys, in the order given.
    pub limits: Vec<(String, LimitValue)>,
    /// Names of properties accepted and ignored.
    pub ignored: Vec<String>,
}

/// Bytes of a property's name (systemd's longest is about 40).
const MAX_NAME_BYTES: usize = 255;
/// 2^64-1: systemd's "infinity" / "unset".
const INFINITY: u64 = u64::MAX;

/// Reads `props`; the error says which property is wrong and why.
pub fn parse(props: &[(String, OwnedValue)], call: Call) -> Result<Parsed, String> {
    if props.len() > MAX_UNIT_PROPERTIES {
        return Err(format!(
            "{} properties; at most {MAX_UNIT_PROPERTIES} in one call",
            props.len()
        ));
    }
    let mut out = Parsed::default();
    let mut quota: Option<u64> = None;
    let mut period: Option<u64> = None;
    for (name, value) in props {
        if name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "a property name of {} bytes; at most {MAX_NAME_BYTES}",
                name.len()
            ));
        }
        let v: &Value<'_> = match &**value {
            Value::Value(inner) => inner,
            other => other,
        };
        let p = Prop { name, v };
        let made_only = |what: &str| {
            if call == Call::Set {
                Err(format!(
                    "{name}: {what} is given when the unit is made, not changed after"
                ))
            } else {
                Ok(())
            }
        };
        match name.as_str() {
            "Description" => {
                let d = p.string()?;
                if d.len() > MAX_DESCRIPTION_BYTES {
                    return Err(format!(
                        "Description: {} bytes; at most {MAX_DESCRIPTION_BYTES}",
                        d.len()
                    ));
                }
                out.description = Some(d.to_string());
            }
            "Slice" => {
                made_only("the slice")?;
                let s = p.string()?;
                let slice = UnitName::parse(s).map_err(|e| format!("Slice: {e}"))?;
                if slice.kind() != Kind::Slice {
                    return Err(format!("Slice: {slice} is not a slice"));
                }
                out.slice = Some(slice);
            }
            "Delegate" => {
                made_only("delegation")?;
                out.delegate = p.boolean()?;
            }
            "PIDs" => {
                made_only("the processes a scope adopts")?;
                let pids = p.u32_array()?;
                if out.pids.len() + pids.len() > MAX_SCOPE_PIDS {
                    return Err(format!("PIDs: more than {MAX_SCOPE_PIDS} processes"));
                }
                out.pids.extend(pids);
            }
            "TimeoutStopUSec" => {
                made_only("the stop timeout")?;
                out.stop_timeout = Some(Duration::from_micros(p.u64()?));
            }
            "MemoryMax" | "MemoryHigh" | "MemoryLow" | "MemoryMin" | "MemorySwapMax" => {
                let key = match name.as_str() {
                    "MemoryMax" => "memory-max",
                    "MemoryHigh" => "memory-high",
                    "MemoryLow" => "memory-low",
                    "MemoryMin" => "memory-min",
                    _ => "memory-swap-max",
                };
                out.limits.push((key.into(), max_or_int(p.u64()?)));
            }
            "TasksMax" => match p.u64()? {
                0 => return Err("TasksMax: 0 is out of range (at least 1)".into()),
                n => out.limits.push(("pids-max".into(), max_or_int(n))),
            },
            "CPUWeight" => {
                let value = match p.u64()? {
                    0 => LimitValue::Str("idle".into()),
                    INFINITY => LimitValue::Int(100),
                    w @ 1..=10_000 => LimitValue::Int(w.into()),
                    w => return Err(format!("CPUWeight: {w} is out of range (1 to 10000)")),
                };
                out.limits.push(("cpu-weight".into(), value));
            }
            "IOWeight" => {
                let value = match p.u64()? {
                    INFINITY => 100,
                    w @ 1..=10_000 => w,
                    w => return Err(format!("IOWeight: {w} is out of range (1 to 10000)")),
                };
                out.limits
                    .push(("io-weight".into(), LimitValue::Int(value.into())));
            }
            "CPUQuotaPerSecUSec" => match p.u64()? {
                0 => return Err("CPUQuotaPerSecUSec: 0 is out of range".into()),
                q => quota = Some(q),
            },
            "CPUQuotaPeriodUSec" => period = Some(p.u64()?),
            "AllowedCPUs" | "AllowedMemoryNodes" => {
                let key = if name == "AllowedCPUs" {
                    "cpuset-cpus"
                } else {
                    "cpuset-mems"
                };
                let mask = p.bytes()?;
                out.limits
                    .push((key.into(), LimitValue::Str(cpu_list(&mask))));
            }
            "Wants" | "Requires" | "After" | "Before" | "BindsTo" | "PartOf" | "Conflicts" => {
                p.string_array()?;
                out.ignored.push(name.clone());
            }
            "DefaultDependencies"
            | "MemoryAccounting"
            | "CPUAccounting"
            | "IOAccounting"
            | "TasksAccounting"
            | "BlockIOAccounting"
            | "IPAccounting" => {
                p.boolean()?;
                out.ignored.push(name.clone());
            }
            "DevicePolicy" => {
                p.string()?;
                out.ignored.push(name.clone());
            }
            "DeviceAllow" => {
                p.device_allow()?;
                out.ignored.push(name.clone());
            }
            _ => out.ignored.push(name.clone()),
        }
    }
    // The period first: the quota's share is worked out over it.
    if let Some(period) = period {
        let us = if period == INFINITY {
            100_000
        } else {
            period.clamp(1_000, 1_000_000)
        };
        out.limits
            .push(("cpu-period".into(), LimitValue::Int(us.into())));
    }
    if let Some(q) = quota {
        let period_us = period
            .filter(|p| *p != INFINITY)
            .map_or(100_000, |p| p.clamp(1_000, 1_000_000));
        out.limits.push(("cpu-max".into(), cpu_share(q, period_us)));
    }
    Ok(out)
}

/// `max` for systemd's infinity, else the number.
fn max_or_int(n: u64) -> LimitValue {
    if n == INFINITY {
        LimitValue::Str("max".into())
    } else {
        LimitValue::Int(n.into())
    }
}

/// `CPUQuotaPerSecUSec` as a share of one CPU: 10 000 µs per second is 1 %, kept to
/// hundredths of a percent (rounded up), and at least 1 ms per period (as systemd writes
/// `cpu.max`: `MAX(quota × period / 1 s, 1 ms)`).
fn cpu_share(per_sec_us: u64, period_us: u64) -> LimitValue {
    if per_sec_us == INFINITY {
        return LimitValue::Str("max".into());
    }
    // Hundredths of a percent: 1 % is 10 000 µs/s, so one hundredth is 100 µs/s.
    let hundredths = per_sec_us.div_ceil(100);
    // quota = hundredths × period / 10 000 ≥ 1000 µs.
    let least = (1_000u64 * 10_000).div_ceil(period_us);
    let h = hundredths.max(least).min(u64::from(u32::MAX));
    LimitValue::Str(Percent::from_hundredths(h as u32).to_string())
}

/// A CPU or node mask (bit N of byte B is number 8B+N) as a list: `0-1,3`; empty when no bit
/// is set.
pub fn cpu_list(mask: &[u8]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (byte_at, byte) in mask.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) == 0 {
                continue;
            }
            let n = byte_at * 8 + bit;
            match ranges.last_mut() {
                Some((_, hi)) if *hi + 1 == n => *hi = n,
                _ => ranges.push((n, n)),
            }
        }
    }
    ranges
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One property being read: its name for messages and its value.
struct Prop<'a> {
    name: &'a str,
    v: &'a Value<'a>,
}

impl<'a> Prop<'a> {
    fn wrong(&self, expected: &str) -> String {
        format!(
            "{}: expected {expected}, got {}",
            self.name,
            self.v.value_signature()
        )
    }

    fn string(&self) -> Result<&'a str, String> {
        match self.v {
            Value::Str(s) => Ok(s.as_str()),
            _ => Err(self.wrong("s (a string)")),
        }
    }

    fn boolean(&self) -> Result<bool, String> {
        match self.v {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong("b (a boolean)")),
        }
    }

    fn u64(&self) -> Result<u64, String> {
        match self.v {
            Value::U64(n) => Ok(*n),
            _ => Err(self.wrong("t (an unsigned 64-bit integer)")),
        }
    }

    fn array(&self, element: &str, what: &str) -> Result<&'a [Value<'a>], String> {
        match self.v {
            Value::Array(a) if a.element_signature().to_string() == element => {
                if a.len() > MAX_IGNORED_ENTRIES {
                    return Err(format!(
                        "{}: {} entries; at most {MAX_IGNORED_ENTRIES}",
                        self.name,
                        a.len()
                    ));
                }
                Ok(a.inner())
            }
            _ => Err(self.wrong(what)),
        }
    }

    fn u32_array(&self) -> Result<Vec<u32>, String> {
        Ok(self
            .array("u", "au (an array of process identifiers)")?
            .iter()
            .filter_map(|v| match v {
                Value::U32(n) => Some(*n),
                _ => None,
            })
            .collect())
    }

    fn string_array(&self) -> Result<(), String> {
        self.array("s", "as (an array of strings)").map(|_| ())
    }

    fn device_allow(&self) -> Result<(), String> {
        self.array("(ss)", "a(ss) (device, permissions)")
            .map(|_| ())
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        let items = match self.v {
            Value::Array(a) if a.element_signature().to_string() == "y" => a.inner(),
            _ => return Err(self.wrong("ay (a bit mask)")),
        };
        if items.len() > MAX_CPU_MASK_BYTES {
            return Err(format!(
                "{}: a mask of {} bytes; at most {MAX_CPU_MASK_BYTES}",
                self.name,
                items.len()
            ));
        }
        Ok(items
            .iter()
            .filter_map(|v| match v {
                Value::U8(b) => Some(*b),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Str;

    fn prop(name: &str, v: Value<'static>) -> (String, OwnedValue) {
        (name.to_string(), OwnedValue::try_from(v).unwrap())
    }

    fn limits(props: &[(String, OwnedValue)]) -> Vec<(String, LimitValue)> {
        parse(props, Call::Set).unwrap().limits
    }

    fn s(v: &str) -> LimitValue {
        LimitValue::Str(v.into())
    }

    /// What runc 1.1 sends when it makes a container's scope.
    #[test]
    fn runc_makes_a_scope() {
        let device_allow: Vec<(String, String)> = Vec::new();
        let props = [
            prop("Description", Value::from("libcontainer container c1")),
            prop("Slice", Value::from("kubepods-besteffort-pod1.slice")),
            prop("Delegate", Value::from(true)),
            prop("PIDs", Value::from(vec![4242u32])),
            prop("MemoryAccounting", Value::from(true)),
            prop("CPUAccounting", Value::from(true)),
            prop("IOAccounting", Value::from(true)),
            prop("TasksAccounting", Value::from(true)),
            prop("DefaultDependencies", Value::from(false)),
            prop("DevicePolicy", Value::from("strict")),
            prop("DeviceAllow", Value::from(device_allow)),
        ];
        let p = parse(&props, Call::Make).unwrap();
        assert_eq!(p.description.as_deref(), Some("libcontainer container c1"));
        assert_eq!(
            p.slice.as_ref().map(UnitName::as_str),
            Some("kubepods-besteffort-pod1.slice")
        );
        assert!(p.delegate);
        assert_eq!(p.pids, [4242]);
        assert!(p.limits.is_empty());
        assert_eq!(p.ignored.len(), 7);
    }

    /// The property → `[resources]` key mapping, with systemd's infinities.
    #[test]
    fn resource_properties_become_limits() {
        let got = limits(&[
            prop("MemoryMax", Value::from(64u64 << 20)),
            prop("MemoryHigh", Value::from(u64::MAX)),
            prop("MemorySwapMax", Value::from(0u64)),
            prop("TasksMax", Value::from(32u64)),
            prop("CPUWeight", Value::from(1u64)),
            prop("IOWeight", Value::from(u64::MAX)),
            prop("AllowedCPUs", Value::from(vec![0b0000_1011u8])),
            prop("AllowedMemoryNodes", Value::from(vec![1u8])),
            prop("CPUQuotaPerSecUSec", Value::from(500_000u64)),
            prop("CPUQuotaPeriodUSec", Value::from(100_000u64)),
        ]);
        assert_eq!(
            got,
            [
                ("memory-max".to_string(), LimitValue::Int(64 << 20)),
                ("memory-high".into(), s("max")),
                ("memory-swap-max".into(), LimitValue::Int(0)),
                ("pids-max".into(), LimitValue::Int(32)),
                ("cpu-weight".into(), LimitValue::Int(1)),
                ("io-weight".into(), LimitValue::Int(100)),
                ("cpuset-cpus".into(), s("0-1,3")),
                ("cpuset-mems".into(), s("0")),
                ("cpu-period".into(), LimitValue::Int(100_000)),
                ("cpu-max".into(), s("50%")),
            ]
        );
        assert_eq!(
            limits(&[prop("CPUWeight", Value::from(0u64))]),
            [("cpu-weight".to_string(), s("idle"))]
        );
        assert_eq!(
            limits(&[prop("TasksMax", Value::from(u64::MAX))]),
            [("pids-max".to_string(), s("max"))]
        );
        assert_eq!(
            limits(&[prop("AllowedCPUs", Value::from(Vec::<u8>::new()))]),
            [("cpuset-cpus".to_string(), s(""))]
        );
    }

    /// runc rounds a quota up to 10 ms per second; systemd writes at least 1 ms per period.
    #[test]
    fn cpu_quotas_are_shares_of_one_cpu() {
        assert_eq!(cpu_share(10_000, 100_000), s("1%"));
        assert_eq!(cpu_share(1_500_000, 100_000), s("150%"));
        assert_eq!(cpu_share(12_345, 100_000), s("1.24%"));
        assert_eq!(cpu_share(u64::MAX, 100_000), s("max"));
        // 100 µs/s over a 100 ms period would be 10 µs: clamped to 1 ms, i.e. 1 %.
        assert_eq!(cpu_share(100, 100_000), s("1%"));
        // Over a 10 ms period 1 ms is 10 %.
        assert_eq!(cpu_share(10_000, 10_000), s("10%"));
        let got = limits(&[
            prop("CPUQuotaPerSecUSec", Value::from(u64::MAX)),
            prop("CPUQuotaPeriodUSec", Value::from(5_000_000u64)),
        ]);
        assert_eq!(
            got,
            [
                ("cpu-period".to_string(), LimitValue::Int(1_000_000)),
                ("cpu-max".into(), s("max"))
            ]
        );
    }

    #[test]
    fn a_bit_mask_becomes_a_list() {
        assert_eq!(cpu_list(&[]), "");
        assert_eq!(cpu_list(&[0]), "");
        assert_eq!(cpu_list(&[0xff, 0x01]), "0-8");
        assert_eq!(cpu_list(&[0b1010_0101]), "0,2,5,7");
        assert_eq!(cpu_list(&[0, 0, 0x80]), "23");
    }

    /// A known property of the wrong type, out of range or too big is refused with its name;
    /// an unknown one is accepted and ignored.
    #[test]
    fn bad_properties_are_named() {
        let cases: Vec<((String, OwnedValue), &str)> = vec![
            (
                prop("MemoryMax", Value::from("1G")),
                "MemoryMax: expected t",
            ),
            (prop("MemoryMax", Value::from(5u32)), "got u"),
            (prop("PIDs", Value::from(vec![1i32])), "PIDs: expected au"),
            (prop("PIDs", Value::from(7u32)), "PIDs: expected au"),
            (prop("Delegate", Value::from("yes")), "Delegate: expected b"),
            (prop("Slice", Value::from("../x.slice")), "Slice: unit name"),
            (prop("Slice", Value::from("a/b.slice")), "contains \"/\""),
            (prop("Slice", Value::from("web.service")), "is not a slice"),
            (prop("CPUWeight", Value::from(20_000u64)), "out of range"),
            (prop("IOWeight", Value::from(0u64)), "out of range"),
            (prop("TasksMax", Value::from(0u64)), "out of range"),
            (
                prop("CPUQuotaPerSecUSec", Value::from(0u64)),
                "out of range",
            ),
            (prop("AllowedCPUs", Value::from("0-1")), "expected ay"),
            (
                prop(
                    "AllowedCPUs",
                    Value::from(vec![0u8; MAX_CPU_MASK_BYTES + 1]),
                ),
                "at most 1024",
            ),
            (prop("MemoryAccounting", Value::from(1u32)), "expected b"),
            (
                prop("DeviceAllow", Value::from(vec!["x"])),
                "expected a(ss)",
            ),
            (prop("Wants", Value::from("a.slice")), "expected as"),
            (
                prop(
                    "Description",
                    Value::from("d".repeat(MAX_DESCRIPTION_BYTES + 1)),
                ),
                "at most 4096",
            ),
        ];
        for (p, want) in cases {
            let e = parse(std::slice::from_ref(&p), Call::Make).expect_err(&p.0);
            assert!(e.contains(want), "{}: {e}", p.0);
        }
        let many: Vec<_> = (0..=MAX_UNIT_PROPERTIES)
            .map(|i| prop(&format!("X{i}"), Value::from(true)))
            .collect();
        assert!(
            parse(&many, Call::Make)
                .unwrap_err()
                .contains("at most 256")
        );
        let long = prop(&"N".repeat(300), Value::from(true));
        assert!(parse(&[long], Call::Make).is_err());
        let pids = prop("PIDs", Value::from(vec![1u32; MAX_SCOPE_PIDS + 1]));
        assert!(
            parse(&[pids], Call::Make)
                .unwrap_err()
                .contains("more than 1024")
        );
        // Made only when the unit is.
        let e = parse(&[prop("Slice", Value::from("a.slice"))], Call::Set).unwrap_err();
        assert!(e.contains("when the unit is made"), "{e}");
        // Unknown: accepted, ignored, named.
        let p = parse(&[prop("CPUShares", Value::from(Str::from("x")))], Call::Set).unwrap();
        assert_eq!(p.ignored, ["CPUShares"]);
    }
}
