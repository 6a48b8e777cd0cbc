//! The cpuset controller: `cpuset-cpus` and `cpuset-mems` (`cpuset.cpus`, `cpuset.mems`), and
//! the effective sets the kernel computes (`cpuset.cpus.effective`, `cpuset.mems.effective`).
//!
//! Kernel rules relied on: in cgroup v2 a child may ask for CPUs its parent lacks; the effective
//! set is the intersection, and an empty request means "whatever the parent has" — which is why
//! resetting writes an empty value, and why DESIGN §3 reports the effective set rather than a
//! tightest-over-ancestors value.

use std::path::Path;

use super::settings::Setting;
use super::{CgroupError, Controller, read_optional};
use crate::limits::{CpuList, RawValue, Resources};

pub const CPUS: &str = "cpuset.cpus";
pub const MEMS: &str = "cpuset.mems";
pub const CPUS_EFFECTIVE: &str = "cpuset.cpus.effective";
pub const MEMS_EFFECTIVE: &str = "cpuset.mems.effective";

pub(crate) fn settings(res: &Resources) -> Vec<Setting> {
    let list = |l: &Option<CpuList>| l.as_ref().map(|l| l.as_str().to_string());
    vec![
        Setting::new(
            "cpuset-cpus",
            Controller::Cpuset,
            CPUS,
            list(&res.cpuset_cpus),
            "",
        ),
        Setting::new(
            "cpuset-mems",
            Controller::Cpuset,
            MEMS,
            list(&res.cpuset_mems),
            "",
        ),
    ]
}

/// The CPUs and memory nodes a cgroup's processes may actually use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveCpuset {
    /// `None` where the cpuset controller isn't enabled for the cgroup.
    pub cpus: Option<CpuList>,
    pub mems: Option<CpuList>,
}

/// Reads `cpuset.cpus.effective` and `cpuset.mems.effective`.
pub fn read_effective(dir: &Path) -> Result<EffectiveCpuset, CgroupError> {
    let read = |name: &str| -> Result<Option<CpuList>, CgroupError> {
        let path = dir.join(name);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        CpuList::parse(RawValue::Str(text))
            .map(Some)
            .map_err(|e| CgroupError::Parse {
                path,
                what: e.to_string(),
            })
    };
    Ok(EffectiveCpuset {
        cpus: read(CPUS_EFFECTIVE)?,
        mems: read(MEMS_EFFECTIVE)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RawValue::Str;

    #[test]
    fn lists_written_as_given() {
        let mut r = Resources::default();
        r.set("cpuset-cpus", Str("0-1,3")).unwrap();
        let s = settings(&r);
        assert_eq!(s[0].value.as_deref(), Some("0-1,3"));
        assert_eq!(s[0].reset, "");
        assert_eq!(s[1].value, None);
    }

    #[test]
    fn effective_sets_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CPUS_EFFECTIVE), "0-3,6\n").unwrap();
        std::fs::write(dir.path().join(MEMS_EFFECTIVE), "\n").unwrap();
        let e = read_effective(dir.path()).unwrap();
        assert_eq!(e.cpus.unwrap().members(), vec![0, 1, 2, 3, 6]);
        assert_eq!(e.mems, None);
        std::fs::write(dir.path().join(CPUS_EFFECTIVE), "zero\n").unwrap();
        assert!(read_effective(dir.path()).is_err());
    }
}
