//! corrald's settings as PID 1 come from the kernel command line (DESIGN §6), never from argv.
//!
//! The kernel hands init every word it does not know that has neither `=` nor `.` in it
//! (`splash`, `single`, `emergency`, `1`…`5`, `-b`, `-s`, and what follows `--`): those are
//! meant for some init, and an init that exits over them panics the kernel. So as PID 1
//! corrald ignores its argv (logging it once) and reads its own words, `corral.KEY=VALUE`,
//! from `/proc/cmdline` — as systemd reads `systemd.*` there. A word with a dot is never
//! passed to init by the kernel, so this is also the only place such words can be seen.
//!
//! Keys are corrald's long flags (`_` may stand for `-`): `corral.log-level=debug`,
//! `corral.unit-path=DIR` (repeatable), `corral.runtime-dir=DIR`, `corral.log-dir=DIR`,
//! `corral.no-bus` (or `=1`/`=0`), `corral.systemd-compat=0` (the `org.freedesktop.systemd1`
//! subset, on by default as PID 1). `quiet` keeps the console to warnings and errors unless
//! `corral.log-level` says otherwise. Anything else is reported, never fatal.

use std::path::PathBuf;

use crate::daemon::Config;

/// What the kernel command line tells corrald.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelArgs {
    pub config: Config,
    /// `corral.log-level=`, if given.
    pub log_level: Option<tracing::Level>,
    /// The kernel's `quiet`.
    pub quiet: bool,
    /// `corral.*` words that could not be used, each with why.
    pub problems: Vec<String>,
}

impl KernelArgs {
    /// The level the daemon logs at: `corral.log-level`, else warnings only with `quiet`,
    /// else `info`.
    pub fn level(&self) -> tracing::Level {
        match (self.log_level, self.quiet) {
            (Some(l), _) => l,
            (None, true) => tracing::Level::WARN,
            (None, false) => tracing::Level::INFO,
        }
    }
}

/// Splits a command line into words as the kernel does: on spaces, with double quotes
/// grouping (`key="a b"`); the quotes themselves are dropped.
fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// A switch word: `corral.KEY` or `=1`/`yes`/`true` is on, `=0`/`no`/`false` off.
fn switch(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("1" | "yes" | "true") => Ok(true),
        Some("0" | "no" | "false") => Ok(false),
        Some(_) => Err("expected 1 or 0".to_string()),
    }
}

/// Reads corrald's settings from the text of `/proc/cmdline`. Words after `--` belong to init's
/// argv and are not settings.
pub fn parse(cmdline: &str) -> KernelArgs {
    let mut args = KernelArgs {
        config: Config {
            user: false,
            cgroup_root: None,
            unit_paths: Vec::new(),
            runtime_dir: None,
            log_dir: None,
            no_bus: false,
            // As PID 1 the machine's cgroup manager is corrald: container runtimes find it.
            systemd_compat: true,
        },
        log_level: None,
        quiet: false,
        problems: Vec::new(),
    };
    for word in words(cmdline) {
        if word == "--" {
            break;
        }
        if word == "quiet" {
            args.quiet = true;
            continue;
        }
        let Some(setting) = word.strip_prefix("corral.") else {
            continue;
        };
        let (key, value) = match setting.split_once('=') {
            Some((k, v)) => (k.replace('_', "-"), Some(v)),
            None => (setting.replace('_', "-"), None),
        };
        let path = |v: Option<&str>| match v {
            Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
            _ => Err("expected an absolute path".to_string()),
        };
        let result = match key.as_str() {
            "log-level" => value
                .ok_or_else(|| "expected error, warn, info, debug or trace".to_string())
                .and_then(|v| {
                    v.parse::<tracing::Level>()
                        .map_err(|_| "expected error, warn, info, debug or trace".to_string())
                })
                .map(|l| args.log_level = Some(l)),
            "unit-path" => path(value).map(|p| args.config.unit_paths.push(p)),
            "runtime-dir" => path(value).map(|p| args.config.runtime_dir = Some(p)),
            "log-dir" => path(value).map(|p| args.config.log_dir = Some(p)),
            "no-bus" => switch(value).map(|on| args.config.no_bus = on),
            "systemd-compat" => switch(value).map(|on| args.config.systemd_compat = on),
            _ => Err(
                "unknown setting; corrald takes corral.log-level, corral.unit-path, \
                      corral.runtime-dir, corral.log-dir, corral.no-bus and \
                      corral.systemd-compat"
                    .to_string(),
            ),
        };
        if let Err(why) = result {
            args.problems.push(format!("{word}: {why}"));
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_the_kernel_hands_to_init_are_not_settings() {
        let a = parse("BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet splash single 3 -b -s emergency");
        assert!(a.quiet);
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        assert_eq!(a.level(), tracing::Level::WARN);
        assert_eq!(a.config.unit_paths, Vec::<PathBuf>::new());
        assert_eq!(parse("").level(), tracing::Level::INFO);
    }

    #[test]
    fn corral_words_set_the_flags() {
        let a = parse(
            "console=ttyS0 quiet corral.log_level=debug corral.unit-path=/a \
             corral.unit-path=/b corral.runtime-dir=/run/x corral.log-dir=\"/var/log/my logs\" \
             corral.no-bus -- corral.log-level=trace",
        );
        assert_eq!(a.level(), tracing::Level::DEBUG);
        assert_eq!(
            a.config.unit_paths,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(a.config.runtime_dir, Some(PathBuf::from("/run/x")));
        assert_eq!(a.config.log_dir, Some(PathBuf::from("/var/log/my logs")));
        assert!(a.config.no_bus);
        assert!(a.config.systemd_compat, "on by default as PID 1");
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        assert!(!parse("corral.systemd_compat=0").config.systemd_compat);
    }

    #[test]
    fn bad_corral_words_are_reported_not_fatal() {
        let a = parse(
            "corral.log-level=loud corral.unit-path=rel corral.frobnicate=1 corral.no-bus=maybe",
        );
        assert_eq!(a.problems.len(), 4, "{:?}", a.problems);
        assert!(
            a.problems[0].starts_with("corral.log-level=loud: expected"),
            "{:?}",
            a.problems
        );
        assert!(
            a.problems[2].contains("unknown setting"),
            "{:?}",
            a.problems
        );
        assert_eq!(a.level(), tracing::Level::INFO);
    }
}
