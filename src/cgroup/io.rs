//! The io controller: `io-weight` (`io.weight` = `default N`, and `io.bfq.weight` where present),
//! `io-max` (`io.max` = `MAJ:MIN rbps=N wbps=N riops=N wiops=N`, `max` where unset), `io.stat`,
//! and turning a device path into the `MAJ:MIN` io.max wants.
//!
//! Kernel rules relied on:
//! - io.max applies to whole disks: a partition (`/dev/vda1`) is resolved to its disk
//!   (`/dev/vda`) by stat'ing the node's rdev and, when `/sys/dev/block/MAJ:MIN/partition`
//!   exists, reading the parent's `dev` (`/sys/dev/block/MAJ:MIN` is a symlink into the device's
//!   sysfs directory, whose parent is the disk);
//! - io.max rejects 0 and 1 (validated in [`crate::limits`]); writing a line with every field
//!   `max` removes the device's entry;
//! - `io.weight` exists only with io.cost (a missing file is a warning); `io.bfq.weight` only
//!   with the BFQ scheduler and takes 1–1000, so the 1–10000 weight is mapped as systemd maps
//!   it (identity up to the default 100, then linear to 1000).
//!
//! Two io-max entries naming the same disk (a partition and its disk): the later entry wins,
//! as [`Resources::set_all`] does for the same path; found through an index, so the plan is
//! linear in the number of entries.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::settings::{Presence, Setting};
use super::{CgroupError, Controller, read_knob};
use crate::limits::{IO_MAX_FIELDS, IoMax, Resources};

pub const WEIGHT: &str = "io.weight";
pub const BFQ_WEIGHT: &str = "io.bfq.weight";
pub const MAX: &str = "io.max";
pub const STAT: &str = "io.stat";
pub const PRESSURE: &str = "io.pressure";

/// A block device number, printed `MAJ:MIN` as cgroupfs and sysfs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl std::str::FromStr for DevNum {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (maj, min) = s.trim().split_once(':').ok_or(())?;
        Ok(DevNum {
            major: maj.parse().map_err(|_| ())?,
            minor: min.parse().map_err(|_| ())?,
        })
    }
}

/// Turns an io-max device path into its whole disk's number.
pub trait ResolveDevice: Send + Sync {
    fn whole_disk(&self, device: &Path) -> Result<DevNum, CgroupError>;
}

/// The real resolver: stat the node, then sysfs for partitions.
#[derive(Debug, Clone)]
pub struct SysfsDevices {
    sys_dev_block: PathBuf,
}

impl SysfsDevices {
    pub fn new() -> Self {
        Self::with_sys_dev_block("/sys/dev/block")
    }

    /// Uses another `/sys/dev/block` (tests).
    pub fn with_sys_dev_block(path: impl Into<PathBuf>) -> Self {
        SysfsDevices {
            sys_dev_block: path.into(),
        }
    }
}

impl Default for SysfsDevices {
    fn default() -> Self {
        Self::new()
    }
}

impl ResolveDevice for SysfsDevices {
    fn whole_disk(&self, device: &Path) -> Result<DevNum, CgroupError> {
        use nix::sys::stat::{SFlag, major, minor, stat};
        let err = |reason: String| CgroupError::Device {
            device: device.to_path_buf(),
            reason,
        };
        let st = stat(device).map_err(|e| err(e.desc().to_string()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFBLK {
            return Err(err("not a block device".into()));
        }
        let dev = DevNum {
            major: major(st.st_rdev) as u32,
            minor: minor(st.st_rdev) as u32,
        };
        whole_disk_of(&self.sys_dev_block, dev).map_err(|e| err(e.to_string()))
    }
}

/// The disk a device number belongs to, from a `/sys/dev/block` directory: itself, or the
/// parent's `dev` when `partition` exists.
pub fn whole_disk_of(sys_dev_block: &Path, dev: DevNum) -> Result<DevNum, CgroupError> {
    let node = sys_dev_block.join(dev.to_string());
    if !node.join("partition").exists() {
        return Ok(dev);
    }
    // `node` is a symlink to the partition's directory; the kernel follows it before `..`.
    let parent = node.join("..").join("dev");
    let text = read_knob(&parent)?;
    text.parse().map_err(|()| CgroupError::Parse {
        path: parent,
        what: format!("{:?} is not MAJ:MIN", text.trim()),
    })
}

/// A fixed table, for tests and for callers that resolved devices already.
#[derive(Debug, Clone, Default)]
pub struct FixedDevices(pub HashMap<PathBuf, DevNum>);

impl FixedDevices {
    pub fn new<P: Into<PathBuf>>(entries: impl IntoIterator<Item = (P, DevNum)>) -> Self {
        FixedDevices(entries.into_iter().map(|(p, d)| (p.into(), d)).collect())
    }
}

impl ResolveDevice for FixedDevices {
    fn whole_disk(&self, device: &Path) -> Result<DevNum, CgroupError> {
        self.0
            .get(device)
            .copied()
            .ok_or_else(|| CgroupError::Device {
                device: device.to_path_buf(),
                reason: "unknown device".into(),
            })
    }
}

/// The `io.max` line for one device.
pub fn max_line(dev: DevNum, entry: &IoMax) -> String {
    let mut line = dev.to_string();
    for field in IO_MAX_FIELDS {
        match entry.field(field) {
            Some(n) => line.push_str(&format!(" {field}={n}")),
            None => line.push_str(&format!(" {field}=max")),
        }
    }
    line
}

/// The `io.max` line that removes a device's limits.
pub fn max_reset_line(dev: DevNum) -> String {
    format!("{dev} rbps=max wbps=max riops=max wiops=max")
}

/// `io.weight` 1–10000 to BFQ's 1–1000, default 100 kept (systemd's mapping).
pub fn bfq_weight(weight: u16) -> u64 {
    let w = u64::from(weight);
    if w <= 100 {
        w
    } else {
        (w - 100) * (1000 - 100) / (10_000 - 100) + 100
    }
}

pub(crate) fn settings(
    res: &Resources,
    devices: &dyn ResolveDevice,
    lenient: bool,
) -> Result<Vec<Setting>, CgroupError> {
    let io = Controller::Io;
    let mut out = vec![
        Setting::new(
            "io-weight",
            io,
            WEIGHT,
            res.io_weight.map(|w| format!("default {w}")),
            "default 100",
        )
        .line("default")
        .presence(Presence::Warn),
        Setting::new(
            "io-weight",
            io,
            BFQ_WEIGHT,
            res.io_weight
                .map(|w| format!("default {}", bfq_weight(w.get()))),
            "default 100",
        )
        .line("default")
        .presence(Presence::Silent),
    ];
    let mut per_disk: Vec<(DevNum, &IoMax)> = Vec::new();
    let mut slot_of: HashMap<DevNum, usize> = HashMap::new();
    for entry in &res.io_max {
        let dev = match devices.whole_disk(&entry.device) {
            Ok(dev) => dev,
            Err(_) if lenient => continue,
            Err(e) => return Err(e),
        };
        match slot_of.get(&dev) {
            Some(&i) => per_disk[i].1 = entry,
            None => {
                slot_of.insert(dev, per_disk.len());
                per_disk.push((dev, entry));
            }
        }
    }
    for (dev, entry) in per_disk {
        out.push(
            Setting::new(
                "io-max",
                io,
                MAX,
                Some(max_line(dev, entry)),
                max_reset_line(dev),
            )
            .line(dev.to_string()),
        );
    }
    Ok(out)
}

/// Bytes read and written, summed over devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoStat {
    pub rbytes: u64,
    pub wbytes: u64,
}

/// Parses `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` a line.
pub fn parse_stat(text: &str) -> IoStat {
    let mut st = IoStat::default();
    for line in text.lines() {
        for word in line.split_whitespace().skip(1) {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "rbytes" => st.rbytes = st.rbytes.saturating_add(v),
                "wbytes" => st.wbytes = st.wbytes.saturating_add(v),
                _ => {}
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{RawValue::Str, Weight};

    const VDA: DevNum = DevNum {
        major: 254,
        minor: 0,
    };

    #[test]
    fn io_max_lines() {
        let e: IoMax = "/dev/vda rbps=20M wiops=1000".parse().unwrap();
        assert_eq!(
            max_line(VDA, &e),
            "254:0 rbps=20971520 wbps=max riops=max wiops=1000"
        );
        let all: IoMax = "/dev/vda rbps=2 wbps=3 riops=4 wiops=5".parse().unwrap();
        assert_eq!(max_line(VDA, &all), "254:0 rbps=2 wbps=3 riops=4 wiops=5");
        assert_eq!(
            max_reset_line(VDA),
            "254:0 rbps=max wbps=max riops=max wiops=max"
        );
    }

    #[test]
    fn weights() {
        assert_eq!(bfq_weight(1), 1);
        assert_eq!(bfq_weight(100), 100);
        assert_eq!(bfq_weight(10_000), 1000);
        assert_eq!(bfq_weight(5050), 550);
        let r = Resources {
            io_weight: Weight::new(300),
            ..Resources::default()
        };
        let s = settings(&r, &FixedDevices::default(), false).unwrap();
        assert_eq!(s[0].value.as_deref(), Some("default 300"));
        assert_eq!(s[1].value.as_deref(), Some("default 118"));
    }

    #[test]
    fn same_disk_twice_keeps_the_later_entry_and_unknown_devices_fail() {
        let devs = FixedDevices::new([("/dev/vda", VDA), ("/dev/vda1", VDA)]);
        let mut r = Resources::default();
        r.set("io-max", Str("/dev/vda rbps=2M")).unwrap();
        r.set("io-max", Str("/dev/vda1 wbps=4M")).unwrap();
        let s = settings(&r, &devs, false).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[2].value.as_deref(),
            Some("254:0 rbps=max wbps=4194304 riops=max wiops=max")
        );
        r.set("io-max", Str("/dev/vdz rbps=2M")).unwrap();
        let err = settings(&r, &devs, false).unwrap_err();
        assert_eq!(err.to_string(), "io-max device /dev/vdz: unknown device");
        assert_eq!(settings(&r, &devs, true).unwrap().len(), 3);
    }

    #[test]
    fn partitions_resolve_to_their_disk() {
        // /sys/dev/block/254:1 -> ../../devices/virtual/block/vda/vda1, as sysfs lays it out.
        let tmp = tempfile::tempdir().unwrap();
        let disk = tmp.path().join("devices/virtual/block/vda");
        std::fs::create_dir_all(disk.join("vda1")).unwrap();
        std::fs::write(disk.join("dev"), "254:0\n").unwrap();
        std::fs::write(disk.join("vda1/dev"), "254:1\n").unwrap();
        std::fs::write(disk.join("vda1/partition"), "1\n").unwrap();
        let block = tmp.path().join("dev/block");
        std::fs::create_dir_all(&block).unwrap();
        std::os::unix::fs::symlink("../../devices/virtual/block/vda/vda1", block.join("254:1"))
            .unwrap();
        std::os::unix::fs::symlink("../../devices/virtual/block/vda", block.join("254:0")).unwrap();
        let vda1 = DevNum {
            major: 254,
            minor: 1,
        };
        assert_eq!(whole_disk_of(&block, vda1).unwrap(), VDA);
        assert_eq!(whole_disk_of(&block, VDA).unwrap(), VDA);
        // Not in sysfs at all (a device-mapper node seen through another /sys): itself.
        let dm = DevNum {
            major: 253,
            minor: 3,
        };
        assert_eq!(whole_disk_of(&block, dm).unwrap(), dm);
    }

    #[test]
    fn nodes_that_are_not_block_devices_are_refused() {
        let r = SysfsDevices::new();
        let err = r.whole_disk(Path::new("/dev/null")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "io-max device /dev/null: not a block device"
        );
        let err = r.whole_disk(Path::new("/dev/no-such-disk")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "io-max device /dev/no-such-disk: No such file or directory"
        );
    }

    #[test]
    fn stat_sums_devices() {
        let text = "254:0 rbytes=1024 wbytes=4096 rios=2 wios=1 dbytes=0 dios=0\n\
                    253:0 rbytes=10 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
        assert_eq!(
            parse_stat(text),
            IoStat {
                rbytes: 1034,
                wbytes: 4096
            }
        );
        assert_eq!(parse_stat(""), IoStat::default());
    }
}
