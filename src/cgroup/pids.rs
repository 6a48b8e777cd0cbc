//! The pids controller: `pids-max` (`pids.max`, a number or `max`) and `pids.current`.
//! Always enabled with memory, so every unit has a task count.

use super::Controller;
use super::settings::Setting;
use crate::limits::Resources;

pub const MAX: &str = "pids.max";
pub const CURRENT: &str = "pids.current";

pub(crate) fn settings(res: &Resources) -> Vec<Setting> {
    vec![Setting::new(
        "pids-max",
        Controller::Pids,
        MAX,
        res.pids_max.map(|p| p.to_string()),
        "max",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::PidsMax;

    #[test]
    fn pids_max_formats() {
        let mut r = Resources {
            pids_max: Some(PidsMax::Limit(64)),
            ..Resources::default()
        };
        assert_eq!(settings(&r)[0].value.as_deref(), Some("64"));
        r.pids_max = Some(PidsMax::Max);
        assert_eq!(settings(&r)[0].value.as_deref(), Some("max"));
        r.pids_max = None;
        assert_eq!(settings(&r)[0].value, None);
        assert_eq!(settings(&r)[0].reset, "max");
    }
}
