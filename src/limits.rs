//! Resource values: the `[resources]` keys of a unit as validated types, parsed from the
//! unit-file syntax (`"512M"`, `"20%"`, `"max"`, `"0-1"`) or from integers, and printed back in
//! one canonical form.
//!
//! This module is the lowest layer: unit files, live `SetUnitLimits` calls and the cgroup engine
//! all speak these types, so a value that got past [`Resources::set`] and
//! [`Resources::validate`] is one the kernel accepts (cpu quota ≥ 1 ms, period 1 ms–1 s, io-max
//! values ≥ 2, weights 1–10000).
//!
//! Decisions where the design is silent:
//! - sizes accept a decimal with a suffix (`"1.5G"`), bytes must be whole; suffixes are
//!   upper-case `K M G T`, 1024-based, as systemd's;
//! - an integer given for `cpu-period` is microseconds, for `cpu-max` a percentage;
//! - `N%` of RAM for memory keys is kept as a percentage and resolved against the machine's RAM
//!   when written, so a unit file means the same thing on every machine.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, PathBuf};
use std::str::FromStr;

/// A value as it arrives from a unit file or a D-Bus `a{sv}`, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    Str(&'a str),
    Int(i128),
}

/// Why a value was refused: what was expected and what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct LimitError {
    pub expected: String,
    pub got: String,
}

impl LimitError {
    fn new(expected: impl Into<String>, got: impl fmt::Display) -> Self {
        LimitError {
            expected: expected.into(),
            got: got.to_string(),
        }
    }
}

impl fmt::Display for RawValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Str(s) => write!(f, "{s:?}"),
            RawValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// Hundredths of a percent: `12.5%` is 1250. Used for CPU shares and fractions of RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u32);

impl Percent {
    pub const fn from_hundredths(h: u32) -> Self {
        Percent(h)
    }
    pub const fn hundredths(self) -> u32 {
        self.0
    }

    /// Parses `"20%"` or `"12.5%"` (at most two decimals).
    fn parse(s: &str) -> Option<Self> {
        let num = s.strip_suffix('%')?;
        let (whole, frac) = match num.split_once('.') {
            Some((w, f)) => (w, f),
            None => (num, ""),
        };
        if whole.is_empty() || frac.len() > 2 || !all_digits(whole) || !all_digits(frac) {
            return None;
        }
        let whole: u32 = whole.parse().ok()?;
        let mut frac_h: u32 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        if frac.len() == 1 {
            frac_h *= 10;
        }
        whole.checked_mul(100)?.checked_add(frac_h).map(Percent)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w, h) = (self.0 / 100, self.0 % 100);
        match h {
            0 => write!(f, "{w}%"),
            h if h % 10 == 0 => write!(f, "{w}.{}%", h / 10),
            h => write!(f, "{w}.{h:02}%"),
        }
    }
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

const SIZE_PCT_EXPECTED: &str =
    "a size: bytes, a number with K, M, G or T (1024-based), \"N%\" of RAM, or \"max\"";

/// Parses a byte count: `"4096"`, `"512M"`, `"1.5G"`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let (num, shift) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 10),
        b'M' => (&s[..s.len() - 1], 20),
        b'G' => (&s[..s.len() - 1], 30),
        b'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) if shift > 0 && !f.is_empty() => (w, f),
        Some(_) => return None,
        None => (num, ""),
    };
    if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || frac.len() > 9 {
        return None;
    }
    // A whole part beyond u64 is out of range whatever the suffix. (`u128::checked_shl` is no
    // overflow check: it refuses only a shift wider than the type, and shifted the high bits
    // of a huge number out: "332306998946228968225951765070086145K" was 1 KiB.)
    let whole: u64 = whole.parse().ok()?;
    let mut value = u128::from(whole) << shift;
    if !frac.is_empty() {
        let denom = 10u128.pow(frac.len() as u32);
        let frac: u128 = frac.parse().ok()?;
        value += (frac << shift) / denom;
    }
    u64::try_from(value).ok()
}

/// Prints bytes with the largest 1024-based suffix that divides them exactly.
pub fn format_bytes(b: u64) -> String {
    for (shift, suffix) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if b != 0 && b.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", b >> shift);
        }
    }
    b.to_string()
}

fn raw_bytes(v: RawValue<'_>, expected: &str) -> Result<u64, LimitError> {
    match v {
        RawValue::Int(i) => u64::try_from(i).map_err(|_| LimitError::new(expected, v)),
        RawValue::Str(s) => parse_bytes(s).ok_or_else(|| LimitError::new(expected, v)),
    }
}

/// A memory limit: bytes, a fraction of the machine's RAM, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryLimit {
    Bytes(u64),
    OfRam(Percent),
    Max,
}

impl MemoryLimit {
    pub fn parse(v: RawValue<'_>) -> Result<Self, LimitError> {
        if let RawValue::Str(s) = v {
            if s == "max" || s == "infinity" {
                return Ok(MemoryLimit::Max);
            }
            if s.ends_with('%') {
                return match Percent::parse(s) {
                    Some(p) if p.0 > 0 && p.0 <= 10_000 => Ok(MemoryLimit::OfRam(p)),
                    _ => Err(LimitError::new("a percentage of RAM from 0.01% to 100%", v)),
                };
            }
        }
        raw_bytes(v, SIZE_PCT_EXPECTED).map(MemoryLimit::Bytes)
    }

    /// The value in bytes on a machine with `ram` bytes of memory; `None` for no limit.
    pub fn resolve(self, ram: u64) -> Option<u64> {
        match self {
            MemoryLimit::Bytes(b) => Some(b),
            MemoryLimit::OfRam(p) => Some((ram as u128 * p.0 as u128 / 10_000) as u64),
            MemoryLimit::Max => None,
        }
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryLimit::Bytes(b) => f.write_str(&format_bytes(*b)),
            MemoryLimit::OfRam(p) => p.fmt(f),
            MemoryLimit::Max => f.write_str("max"),
        }
    }
}

/// CPU bandwidth: a share of one CPU (`150%` = 1.5 CPUs) or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuMax {
    Percent(Percent),
    Max,
}

impl CpuMax {
    pub fn parse(v: RawValue<'_>) -> Result<Self, LimitError> {
        const EXPECTED: &str = "a CPU share such as \"20%\" or \"150%\" (1.5 CPUs), or \"max\"";
        let p = match v {
            RawValue::Str("max") => return Ok(CpuMax::Max),
            RawValue::Str(s) => Percent::parse(s),
            RawValue::Int(i) => u32::try_from(i)
                .ok()
                .and_then(|i| i.checked_mul(100))
                .map(Percent),
        };
        match p {
            Some(p) if p.0 > 0 => Ok(CpuMax::Percent(p)),
            _ => Err(LimitError::new(EXPECTED, v)),
        }
    }

    /// The quota in microseconds for a period, as written to `cpu.max`.
    pub fn quota_us(self, period: CpuPeriod) -> Option<u64> {
        match self {
            CpuMax::Percent(p) => Some(p.0 as u64 * period.0 as u64 / 10_000),
            CpuMax::Max => None,
        }
    }
}

impl fmt::Display for CpuMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuMax::Percent(p) => p.fmt(f),
            CpuMax::Max => f.write_str("max"),
        }
    }
}

/// The CPU bandwidth period in microseconds, 1 ms to 1 s (the kernel's range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuPeriod(u32);

impl CpuPeriod {
    pub const DEFAULT: CpuPeriod = CpuPeriod(100_000);

    pub fn from_micros(us: u64) -> Result<Self, LimitError> {
        if (1_000..=1_000_000).contains(&us) {
            Ok(CpuPeriod(us as u32))
        } else {
            Err(LimitError::new(
                "a period from 1ms to 1s",
                humantime::format_duration(std::time::Duration::from_micros(us)),
            ))
        }
    }

    pub fn parse(v: RawValue<'_>) -> Result<Self, LimitError> {
        let us = match v {
            RawValue::Int(i) => u64::try_from(i).ok(),
            RawValue::Str(s) => humantime::parse_duration(s)
                .ok()
                .and_then(|d| u64::try_from(d.as_micros()).ok()),
        };
        match us {
            Some(us) => Self::from_micros(us),
            None => Err(LimitError::new(
                "a duration such as \"100ms\" (1ms to 1s), or microseconds",
                v,
            )),
        }
    }

    pub fn micros(self) -> u32 {
        self.0
    }
}

impl fmt::Display for CpuPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(std::time::Duration::from_micros(self.0 as u64)).fmt(f)
    }
}

/// A weight from 1 to 10000 (cpu.weight, io.weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weight(u16);

impl Weight {
    pub fn new(w: u64) -> Option<Self> {
        (1..=10_000).contains(&w).then_some(Weight(w as u16))
    }
    pub fn get(self) -> u16 {
        self.0
    }
    pub fn parse(v: RawValue<'_>) -> Result<Self, LimitError> {
        let n = match v {
            RawValue::Int(i) => u64::try_from(i).ok(),
            RawValue::Str(s) => s.parse().ok(),
        };
        n.and_then(Weight::new)
            .ok_or_else(|| LimitError::new("a weight from 1 to 10000", v))
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `cpu-weight`: a weight, or `idle` (cpu.idle = 1: runs only when nothing else wants the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuWeight {
    Weight(Weight),
    Idle,
}

impl CpuWeight {
    pub fn parse(v: RawValue<'_>) -> Result<Self, LimitError> {
        if v == RawValue::Str("idle") {
            return Ok(CpuWeight::Idle);
        }
        Weight::parse(v)
            .map(CpuWeight::Weight)
            .map_err(|_| LimitError::new("a weight from 1 to 10000, or \"idle\"", v))
    }
}

impl fmt::Display for CpuWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuWeight::Weight(w) => w.fmt(f),
            CpuWeight::Idle => f.write_str("idle"),
        }
    }
}

/// A CPU or memory-node list as the kernel writes it: `"0-1,3"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuList(String);

impl CpuList {
    pub fn parse(v: RawValue<'_>) -> Result<Self, LimitError> {
        let err = || LimitError::new("a list of CPUs or nodes such as \"0-1,3\"", v);
        let s = match v {
            RawValue::Str(s) => s.trim().to_string(),
            RawValue::Int(i) if i >= 0 => i.to_string(),
            RawValue::Int(_) => return Err(err()),
        };
        for part in s.split(',') {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let (lo, hi) = (lo.trim(), hi.trim());
            if lo.is_empty() || !all_digits(lo) || hi.is_empty() || !all_digits(hi) {
                return Err(err());
            }
            match (lo.parse::<u32>(), hi.parse::<u32>()) {
                (Ok(lo), Ok(hi)) if lo <= hi => {}
                _ => return Err(err()),
            }
        }
        Ok(CpuList(s.replace(' ', "")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The CPUs in the list, ascending.
    pub fn members(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for part in self.0.split(',') {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            if let (Ok(lo), Ok(hi)) = (lo.parse::<u32>(), hi.parse::<u32>()) {
                out.extend(lo..=hi);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `pids-max`: a number of tasks, or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PidsMax {
    Limit(u64),
    Max,
}

impl PidsMax {
    pub fn parse(v: RawValue<'_>) -> Result<Self, LimitError> {
        let n = match v {
            RawValue::Str("max") | RawValue::Str("infinity") => return Ok(PidsMax::Max),
            RawValue::Int(i) => u64::try_from(i).ok(),
            RawValue::Str(s) if all_digits(s) => s.parse().ok(),
            RawValue::Str(_) => None,
        };
        n.map(PidsMax::Limit)
            .ok_or_else(|| LimitError::new("a number of tasks, or \"max\"", v))
    }
}

impl fmt::Display for PidsMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidsMax::Limit(n) => n.fmt(f),
            PidsMax::Max => f.write_str("max"),
        }
    }
}

/// One `io-max` entry: limits for one block device. Every value present is ≥ 2 (io.max rejects
/// 0 and 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IoMax {
    pub device: PathBuf,
    pub rbps: Option<u64>,
    pub wbps: Option<u64>,
    pub riops: Option<u64>,
    pub wiops: Option<u64>,
}

/// The fields of an io-max entry, in the order io.max writes them.
pub const IO_MAX_FIELDS: [&str; 4] = ["rbps", "wbps", "riops", "wiops"];

impl IoMax {
    /// An entry with no limit yet for `device`: an absolute path with no `..` (as every path
    /// of a unit file) and no white space (the D-Bus form `"DEVICE rbps=…"` splits at it, so
    /// such an entry could be set from a file but never printed back).
    pub fn new(device: PathBuf) -> Result<Self, LimitError> {
        let text = device.to_string_lossy();
        if !device.is_absolute()
            || device.components().any(|c| c == Component::ParentDir)
            || text.contains(char::is_whitespace)
        {
            return Err(LimitError::new(
                "an absolute device path such as \"/dev/vda\", without \"..\" or spaces",
                format_args!("{text:?}"),
            ));
        }
        Ok(IoMax {
            device,
            rbps: None,
            wbps: None,
            riops: None,
            wiops: None,
        })
    }

    /// Sets one field (`rbps`, `wbps`: sizes per second; `riops`, `wiops`: counts).
    pub fn set_field(&mut self, field: &str, v: RawValue<'_>) -> Result<(), LimitError> {
        let value = match field {
            "rbps" | "wbps" => raw_bytes(v, "bytes per second of at least 2, or \"max\""),
            _ => match v {
                RawValue::Int(i) => u64::try_from(i).map_err(|_| LimitError::new("", v)),
                RawValue::Str(s) => s.parse().map_err(|_| LimitError::new("", v)),
            },
        };
        let value = match (v, value) {
            (RawValue::Str("max"), _) => None,
            (_, Ok(n)) if n >= 2 => Some(n),
            _ => {
                let what = if field.ends_with("bps") {
                    "bytes per second"
                } else {
                    "operations per second"
                };
                return Err(LimitError::new(
                    format!("{what} of at least 2 (io.max rejects 0 and 1), or \"max\""),
                    v,
                ));
            }
        };
        *self
            .field_mut(field)
            .ok_or_else(|| LimitError::new("one of rbps, wbps, riops, wiops", field))? = value;
        Ok(())
    }

    pub fn field(&self, field: &str) -> Option<u64> {
        match field {
            "rbps" => self.rbps,
            "wbps" => self.wbps,
            "riops" => self.riops,
            "wiops" => self.wiops,
            _ => None,
        }
    }

    /// The unit-file form: `{ device = "/dev/vda", rbps = "20M", riops = "2000" }`, every
    /// field a string (see [`Resources::write_toml`]).
    pub fn to_toml(&self) -> toml::Value {
        let mut t = toml::Table::new();
        t.insert("device".into(), self.device.display().to_string().into());
        for field in IO_MAX_FIELDS {
            match self.field(field) {
                Some(n) if field.ends_with("bps") => {
                    t.insert(field.into(), format_bytes(n).into());
                }
                Some(n) => {
                    t.insert(field.into(), n.to_string().into());
                }
                None => {}
            }
        }
        toml::Value::Table(t)
    }

    fn field_mut(&mut self, field: &str) -> Option<&mut Option<u64>> {
        match field {
            "rbps" => Some(&mut self.rbps),
            "wbps" => Some(&mut self.wbps),
            "riops" => Some(&mut self.riops),
            "wiops" => Some(&mut self.wiops),
            _ => None,
        }
    }
}

/// The D-Bus form: `"/dev/vda rbps=20M wbps=10M riops=2000"`.
impl FromStr for IoMax {
    type Err = LimitError;
    fn from_str(s: &str) -> Result<Self, LimitError> {
        let mut words = s.split_whitespace();
        let device = words
            .next()
            .ok_or_else(|| LimitError::new("\"DEVICE rbps=N wbps=N riops=N wiops=N\"", "\"\""))?;
        let mut io = IoMax::new(PathBuf::from(device))?;
        for word in words {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| LimitError::new("FIELD=VALUE (rbps, wbps, riops, wiops)", word))?;
            if !IO_MAX_FIELDS.contains(&k) {
                return Err(LimitError::new("one of rbps, wbps, riops, wiops", k));
            }
            io.set_field(k, RawValue::Str(v))?;
        }
        Ok(io)
    }
}

impl fmt::Display for IoMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.device.display())?;
        for field in IO_MAX_FIELDS {
            match self.field(field) {
                Some(n) if field.ends_with("bps") => write!(f, " {field}={}", format_bytes(n))?,
                Some(n) => write!(f, " {field}={n}")?,
                None => {}
            }
        }
        Ok(())
    }
}

/// A `[resources]` key as documentation shows it: its name, what leaving it out amounts to (an
/// unset key writes nothing, DESIGN §3), and what it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceKey {
    pub name: &'static str,
    pub unset: &'static str,
    pub doc: &'static str,
}

/// The `[resources]` keys, in the order the design lists them: the one list every other place
/// (validation, `corralctl run -p`, the unit-key tests) derives from.
pub const RESOURCES: [ResourceKey; 13] = [
    ResourceKey {
        name: "cpu-max",
        unset: "\"max\"",
        doc: "CPU time per period: \"150%\" = 1.5 CPUs (cpu.max)",
    },
    ResourceKey {
        name: "cpu-period",
        unset: "\"100ms\"",
        doc: "the period of cpu-max, 1ms..1s",
    },
    ResourceKey {
        name: "cpu-weight",
        unset: "100",
        doc: "1..10000, or \"idle\" (cpu.weight, cpu.idle)",
    },
    ResourceKey {
        name: "cpuset-cpus",
        unset: "\"\"",
        doc: "the CPUs allowed, e.g. \"0-1\"",
    },
    ResourceKey {
        name: "cpuset-mems",
        unset: "\"\"",
        doc: "the memory nodes allowed",
    },
    ResourceKey {
        name: "memory-max",
        unset: "\"max\"",
        doc: "hard limit: bytes, K/M/G/T, \"N%\" of RAM, or \"max\"",
    },
    ResourceKey {
        name: "memory-high",
        unset: "\"max\"",
        doc: "throttling limit, as memory-max",
    },
    ResourceKey {
        name: "memory-low",
        unset: "\"0\"",
        doc: "best-effort protection, as memory-max",
    },
    ResourceKey {
        name: "memory-min",
        unset: "\"0\"",
        doc: "hard protection, as memory-max",
    },
    ResourceKey {
        name: "memory-swap-max",
        unset: "\"max\"",
        doc: "swap limit, as memory-max",
    },
    ResourceKey {
        name: "pids-max",
        unset: "\"max\"",
        doc: "tasks, or \"max\"",
    },
    ResourceKey {
        name: "io-weight",
        unset: "100",
        doc: "1..10000 (with io.cost or BFQ on the device)",
    },
    ResourceKey {
        name: "io-max",
        unset: "[]",
        doc: "[{ device = \"/dev/vda\", rbps = \"20M\", wbps = …, riops = N, wiops = N }], each ≥ 2",
    },
];

/// The names of [`RESOURCES`], in the same order.
pub const RESOURCE_KEYS: [&str; RESOURCES.len()] = {
    let mut names = [""; RESOURCES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = RESOURCES[i].name;
        i += 1;
    }
    names
};

/// The desired resource settings of one cgroup. `None` (or an empty `io_max`) means the key is
/// unset: nothing is written and no controller is enabled for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_max: Option<CpuMax>,
    pub cpu_period: Option<CpuPeriod>,
    pub cpu_weight: Option<CpuWeight>,
    pub cpuset_cpus: Option<CpuList>,
    pub cpuset_mems: Option<CpuList>,
    pub memory_max: Option<MemoryLimit>,
    pub memory_high: Option<MemoryLimit>,
    pub memory_low: Option<MemoryLimit>,
    pub memory_min: Option<MemoryLimit>,
    pub memory_swap_max: Option<MemoryLimit>,
    pub pids_max: Option<PidsMax>,
    pub io_weight: Option<Weight>,
    pub io_max: Vec<IoMax>,
    /// `memory.oom.group` = 1 (from `oom-policy = "kill"`).
    pub oom_group: bool,
}

/// A key that is not a `[resources]` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource key {0:?}")]
pub struct UnknownKey(pub String);

/// Why [`Resources::set`] refused a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error(transparent)]
    UnknownKey(#[from] UnknownKey),
    #[error("{key}: {err}")]
    Value { key: String, err: LimitError },
}

impl Resources {
    /// Sets one key from its unit-file or D-Bus form. `io-max` takes the D-Bus string form and
    /// replaces the entry for the same device (unit files build [`IoMax`] entries directly).
    /// An empty string for `cpuset-cpus`/`cpuset-mems` unsets the key. Rules between keys are
    /// left to [`Resources::validate`], called once every key is in place.
    pub fn set(&mut self, key: &str, v: RawValue<'_>) -> Result<(), SetError> {
        self.set_all([(key, v)])
    }

    /// Sets each `(key, value)` in turn, as [`Resources::set`] sets one, in time linear in the
    /// number of pairs and of the entries already held: `io-max` devices are found through an
    /// index built once, not searched for each entry (a call with 20 000 entries searched
    /// 20 000 × 20 000 times). Stops at the first refused value.
    pub fn set_all<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a str, RawValue<'a>)>,
    ) -> Result<(), SetError> {
        // Device → position in `io_max`, built at the first io-max pair. With duplicates (a
        // unit file may name a device twice) the last one is the one in force, so it is the
        // one replaced.
        let mut devices: Option<HashMap<PathBuf, usize>> = None;
        for (key, v) in pairs {
            if key != "io-max" {
                self.set_scalar(key, v)?;
                continue;
            }
            let entry: IoMax = match v {
                RawValue::Str(s) => s.parse().map_err(|err| SetError::Value {
                    key: key.to_string(),
                    err,
                })?,
                RawValue::Int(_) => {
                    return Err(SetError::Value {
                        key: key.to_string(),
                        err: LimitError::new("\"DEVICE rbps=N wbps=N riops=N wiops=N\"", v),
                    });
                }
            };
            let index = devices.get_or_insert_with(|| {
                self.io_max
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.device.clone(), i))
                    .collect()
            });
            match index.get(&entry.device) {
                Some(&i) => self.io_max[i] = entry,
                None => {
                    index.insert(entry.device.clone(), self.io_max.len());
                    self.io_max.push(entry);
                }
            }
        }
        Ok(())
    }

    /// Every key but `io-max`.
    fn set_scalar(&mut self, key: &str, v: RawValue<'_>) -> Result<(), SetError> {
        let wrap = |err: LimitError| SetError::Value {
            key: key.to_string(),
            err,
        };
        match key {
            "cpu-max" => self.cpu_max = Some(CpuMax::parse(v).map_err(wrap)?),
            "cpu-period" => self.cpu_period = Some(CpuPeriod::parse(v).map_err(wrap)?),
            "cpu-weight" => self.cpu_weight = Some(CpuWeight::parse(v).map_err(wrap)?),
            "cpuset-cpus" | "cpuset-mems" => {
                let list = match v {
                    RawValue::Str(s) if s.trim().is_empty() => None,
                    _ => Some(CpuList::parse(v).map_err(wrap)?),
                };
                if key == "cpuset-cpus" {
                    self.cpuset_cpus = list;
                } else {
                    self.cpuset_mems = list;
                }
            }
            "memory-max" | "memory-high" | "memory-low" | "memory-min" | "memory-swap-max" => {
                let limit = MemoryLimit::parse(v).map_err(wrap)?;
                *self.memory_mut(key).ok_or_else(|| UnknownKey(key.into()))? = Some(limit);
            }
            "pids-max" => self.pids_max = Some(PidsMax::parse(v).map_err(wrap)?),
            "io-weight" => self.io_weight = Some(Weight::parse(v).map_err(wrap)?),
            _ => return Err(UnknownKey(key.to_string()).into()),
        }
        Ok(())
    }

    fn memory_mut(&mut self, key: &str) -> Option<&mut Option<MemoryLimit>> {
        match key {
            "memory-max" => Some(&mut self.memory_max),
            "memory-high" => Some(&mut self.memory_high),
            "memory-low" => Some(&mut self.memory_low),
            "memory-min" => Some(&mut self.memory_min),
            "memory-swap-max" => Some(&mut self.memory_swap_max),
            _ => None,
        }
    }

    /// The period in force: the configured one or the kernel's default of 100 ms.
    pub fn effective_period(&self) -> CpuPeriod {
        self.cpu_period.unwrap_or(CpuPeriod::DEFAULT)
    }

    /// Rules that involve more than one key: the cpu quota must be at least 1 ms of its period.
    pub fn validate(&self) -> Result<(), LimitError> {
        if let Some(CpuMax::Percent(p)) = self.cpu_max {
            let period = self.effective_period();
            let quota = CpuMax::Percent(p).quota_us(period).unwrap_or(u64::MAX);
            if quota < 1_000 {
                return Err(LimitError::new(
                    format!("a CPU share whose quota is at least 1ms of the {period} period"),
                    format!("{p} ({quota}µs)"),
                ));
            }
        }
        Ok(())
    }

    /// The canonical string of every key that is set, in [`RESOURCE_KEYS`] order; `io-max`
    /// appears once per device.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        push("cpu-max", self.cpu_max.map(|v| v.to_string()));
        push("cpu-period", self.cpu_period.map(|v| v.to_string()));
        push("cpu-weight", self.cpu_weight.map(|v| v.to_string()));
        push(
            "cpuset-cpus",
            self.cpuset_cpus.as_ref().map(|v| v.to_string()),
        );
        push(
            "cpuset-mems",
            self.cpuset_mems.as_ref().map(|v| v.to_string()),
        );
        push("memory-max", self.memory_max.map(|v| v.to_string()));
        push("memory-high", self.memory_high.map(|v| v.to_string()));
        push("memory-low", self.memory_low.map(|v| v.to_string()));
        push("memory-min", self.memory_min.map(|v| v.to_string()));
        push(
            "memory-swap-max",
            self.memory_swap_max.map(|v| v.to_string()),
        );
        push("pids-max", self.pids_max.map(|v| v.to_string()));
        push("io-weight", self.io_weight.map(|v| v.to_string()));
        for io in &self.io_max {
            push("io-max", Some(io.to_string()));
        }
        out
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }

    /// These resources with `changes` applied in order, then validated as a whole: what a
    /// live `SetUnitLimits` asks for. A refused value names its key.
    pub fn with_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, RawValue<'a>)>,
    ) -> Result<Resources, SetError> {
        let mut new = self.clone();
        new.set_all(changes)?;
        new.validate().map_err(|err| SetError::Value {
            key: "cpu-max".into(),
            err,
        })?;
        Ok(new)
    }

    /// Writes the canonical value of each of `keys` into `table`, the `[resources]` table of a
    /// drop-in, so that loading the drop-in gives these values back (`SetUnitLimits` persists
    /// its keys so). A key that is unset is written as its unit-file default where one exists
    /// (`cpuset-*`: `""`), and `io-max` as every entry. A key given many times (a call with
    /// many io-max entries) is written once.
    ///
    /// Every io-max field is written as a string (`rbps = "20M"`, `riops = "2000"`), which the
    /// unit-file syntax accepts like an integer: the kernel's io.max takes any u64, and a TOML
    /// integer stops at i64::MAX — an integer cast from a larger value came back as -1 and the
    /// unit no longer loaded.
    pub fn write_toml<'k>(&self, keys: impl IntoIterator<Item = &'k str>, table: &mut toml::Table) {
        let pairs = self.to_pairs();
        let mut written = std::collections::HashSet::new();
        for key in keys {
            if !written.insert(key) {
                continue;
            }
            let value = if key == "io-max" {
                let entries = self.io_max.iter().map(IoMax::to_toml).collect();
                toml::Value::Array(entries)
            } else {
                let v = pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                toml::Value::String(v)
            };
            table.insert(key.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RawValue::{Int, Str};

    #[test]
    fn bytes_parse_and_print() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("4096", Some(4096)),
            ("1K", Some(1024)),
            ("512M", Some(512 << 20)),
            ("1.5G", Some(3 << 29)),
            ("2T", Some(2 << 40)),
            ("1.5", None),
            ("12Q", None),
            ("M", None),
            ("-1", None),
            ("1 G", None),
            ("512MB", None),
            ("", None),
            ("99999999999999999999T", None),
            // 2^118 + 1: shifted by 10 it wrapped to 1024 in u128.
            ("332306998946228968225951765070086145K", None),
            ("340282366920938463463374607431768211455T", None),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("16777215T", Some(u64::MAX - (1 << 40) + 1)),
            ("16777216T", None),
            ("16777215.999999999T", Some(u64::MAX - 1099)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_bytes(s), *want, "{s:?}");
        }
        assert_eq!(format_bytes(512 << 20), "512M");
        assert_eq!(format_bytes(3 << 29), "1536M");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
    }

    #[test]
    fn memory_limits() {
        assert_eq!(MemoryLimit::parse(Str("max")), Ok(MemoryLimit::Max));
        assert_eq!(
            MemoryLimit::parse(Str("64M")),
            Ok(MemoryLimit::Bytes(64 << 20))
        );
        assert_eq!(MemoryLimit::parse(Int(4096)), Ok(MemoryLimit::Bytes(4096)));
        let half = MemoryLimit::parse(Str("50%")).unwrap();
        assert_eq!(half, MemoryLimit::OfRam(Percent(5000)));
        assert_eq!(half.resolve(1 << 30), Some(1 << 29));
        assert_eq!(half.to_string(), "50%");
        for bad in [Str("0%"), Str("101%"), Str("lots"), Int(-5), Str("1.234%")] {
            assert!(MemoryLimit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            MemoryLimit::parse(Str("12Q")).unwrap_err().to_string(),
            format!("expected {SIZE_PCT_EXPECTED}, got \"12Q\"")
        );
    }

    #[test]
    fn cpu_max_and_period() {
        assert_eq!(
            CpuMax::parse(Str("20%")),
            Ok(CpuMax::Percent(Percent(2000)))
        );
        assert_eq!(
            CpuMax::parse(Str("150%")),
            Ok(CpuMax::Percent(Percent(15000)))
        );
        assert_eq!(
            CpuMax::parse(Str("12.5%")),
            Ok(CpuMax::Percent(Percent(1250)))
        );
        assert_eq!(CpuMax::parse(Int(30)), Ok(CpuMax::Percent(Percent(3000))));
        assert_eq!(CpuMax::parse(Str("max")), Ok(CpuMax::Max));
        for bad in [Str("0%"), Str("20"), Str("%"), Str("-5%"), Int(0), Int(-1)] {
            assert!(CpuMax::parse(bad).is_err(), "{bad}");
        }
        let p = CpuPeriod::parse(Str("100ms")).unwrap();
        assert_eq!(p.micros(), 100_000);
        assert_eq!(CpuMax::parse(Str("20%")).unwrap().quota_us(p), Some(20_000));
        assert_eq!(CpuPeriod::parse(Int(50_000)).unwrap().micros(), 50_000);
        assert!(CpuPeriod::parse(Str("2s")).is_err());
        assert!(CpuPeriod::parse(Str("500us")).is_err());
        assert!(CpuPeriod::parse(Str("soon")).is_err());
        assert_eq!(CpuPeriod::parse(Str("1s")).unwrap().to_string(), "1s");
    }

    #[test]
    fn cpu_quota_must_be_one_millisecond() {
        let mut r = Resources::default();
        r.set("cpu-max", Str("5%")).unwrap();
        assert_eq!(r.validate(), Ok(()));
        r.set("cpu-period", Str("10ms")).unwrap();
        let err = r.validate().unwrap_err();
        assert!(err.to_string().contains("at least 1ms"), "{err}");
        r.set("cpu-max", Str("10%")).unwrap();
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(
            r.cpu_max.unwrap().quota_us(r.effective_period()),
            Some(1000)
        );
    }

    #[test]
    fn weights_and_lists() {
        assert_eq!(CpuWeight::parse(Str("idle")), Ok(CpuWeight::Idle));
        assert_eq!(CpuWeight::parse(Int(200)).unwrap().to_string(), "200");
        assert!(CpuWeight::parse(Int(0)).is_err());
        assert!(CpuWeight::parse(Int(10_001)).is_err());
        assert!(Weight::parse(Int(10_000)).is_ok());
        assert_eq!(
            CpuList::parse(Str("0-1,3")).unwrap().members(),
            vec![0, 1, 3]
        );
        assert_eq!(CpuList::parse(Int(2)).unwrap().as_str(), "2");
        for bad in ["1-0", "a", "0-", ",", "0,,1"] {
            assert!(CpuList::parse(Str(bad)).is_err(), "{bad}");
        }
        assert_eq!(PidsMax::parse(Str("max")), Ok(PidsMax::Max));
        assert_eq!(PidsMax::parse(Int(64)), Ok(PidsMax::Limit(64)));
        assert_eq!(PidsMax::parse(Str("64")), Ok(PidsMax::Limit(64)));
        assert!(PidsMax::parse(Int(-1)).is_err());
        assert!(PidsMax::parse(Str("many")).is_err());
    }

    #[test]
    fn io_max_dbus_form() {
        let io: IoMax = "/dev/vda rbps=20M wbps=10M riops=2000".parse().unwrap();
        assert_eq!(io.rbps, Some(20 << 20));
        assert_eq!(io.wbps, Some(10 << 20));
        assert_eq!(io.riops, Some(2000));
        assert_eq!(io.wiops, None);
        assert_eq!(io.to_string(), "/dev/vda rbps=20M wbps=10M riops=2000");
        assert!("/dev/vda rbps=1".parse::<IoMax>().is_err());
        assert!("/dev/vda wiops=0".parse::<IoMax>().is_err());
        assert!("vda rbps=2M".parse::<IoMax>().is_err());
        // A unit file refuses them, so must a caller: a persisted limit would not load.
        assert_eq!(
            "/dev/../etc/passwd rbps=2M".parse::<IoMax>(),
            Err(LimitError::new(
                "an absolute device path such as \"/dev/vda\", without \"..\" or spaces",
                "\"/dev/../etc/passwd\""
            ))
        );
        assert!(IoMax::new("/dev/my disk".into()).is_err());
        assert!(IoMax::new("/dev/x\u{3000}y".into()).is_err());
        assert!(IoMax::new("/dev/..x".into()).is_ok());
        assert!("/dev/vda speed=2M".parse::<IoMax>().is_err());
        assert!("".parse::<IoMax>().is_err());
    }

    #[test]
    fn set_replaces_io_device_and_reports_key() {
        let mut r = Resources::default();
        r.set("io-max", Str("/dev/vda rbps=2M")).unwrap();
        r.set("io-max", Str("/dev/vda wbps=4M")).unwrap();
        assert_eq!(r.io_max.len(), 1);
        assert_eq!(r.io_max[0].wbps, Some(4 << 20));
        assert_eq!(r.io_max[0].rbps, None);
        let err = r.set("memory-max", Str("lots")).unwrap_err();
        assert!(err.to_string().starts_with("memory-max: expected"), "{err}");
        assert_eq!(
            r.set("memory-maxx", Str("1G")),
            Err(SetError::UnknownKey(UnknownKey("memory-maxx".into())))
        );
        r.set("cpuset-cpus", Str("0-1")).unwrap();
        r.set("cpuset-cpus", Str("")).unwrap();
        assert_eq!(r.cpuset_cpus, None);
    }

    /// Many entries in one batch (the 20 000) merge by device through an index: one
    /// entry per device, the last one given wins, and a device a unit file named twice has
    /// the entry in force (the last) replaced.
    #[test]
    fn set_all_merges_many_io_max_entries_by_device() {
        let texts: Vec<String> = (0..20_000)
            .map(|i| format!("/dev/d{} rbps={}", i % 100, i + 2))
            .collect();
        let mut r = Resources::default();
        r.set_all(texts.iter().map(|t| ("io-max", Str(t)))).unwrap();
        assert_eq!(r.io_max.len(), 100);
        assert_eq!(r.io_max[7].device, PathBuf::from("/dev/d7"));
        assert_eq!(r.io_max[7].rbps, Some(19_907 + 2));

        let mut dup = Resources {
            io_max: vec![
                "/dev/vda rbps=2".parse().unwrap(),
                "/dev/vda rbps=3".parse().unwrap(),
            ],
            ..Resources::default()
        };
        dup.set_all([("io-max", Str("/dev/vda rbps=9")), ("pids-max", Int(5))])
            .unwrap();
        assert_eq!(dup.io_max[0].rbps, Some(2));
        assert_eq!(dup.io_max[1].rbps, Some(9));
        assert_eq!(dup.pids_max, Some(PidsMax::Limit(5)));
        // A refused value stops the batch and names its key.
        let err = dup
            .set_all([("io-max", Str("/dev/vda rbps=1")), ("pids-max", Int(6))])
            .unwrap_err();
        assert!(err.to_string().starts_with("io-max:"), "{err}");
    }

    #[test]
    fn percent_display_round_trips() {
        for s in ["20%", "12.5%", "0.05%", "150%"] {
            assert_eq!(Percent::parse(s).unwrap().to_string(), s);
        }
    }
}
