//! `corralctl run`: the unit file of a transient service, from a command line.
//!
//! `-p KEY=VALUE` takes any `[service]` key (but `exec`, which is the command) and any
//! `[resources]` key; which table a key belongs to comes from [`crate::unit::keys`], the one
//! list of keys. A value goes into the TOML as follows:
//! - `[resources]`: a string (`"512M"`, `"100"`: the limits parser takes both forms), unless it
//!   is an array or table (`io-max=[{ device = "/dev/vda", rbps = "1M" }]`), taken as TOML;
//! - `[service]`: as TOML when it is a TOML value (`true`, `1000`, `["CAP_CHOWN"]`, `"x"`);
//!   otherwise a list key (`capabilities=CAP_NET_BIND_SERVICE,CAP_CHOWN`) splits on commas
//!   into strings, and anything else is a string (`restart=always`, `stop-timeout=5s`).
//!
//! The daemon validates the result like any unit file; an unknown key is refused here, with the
//! nearest known one.

use std::fmt::Write as _;

use crate::ns::NsKind;
use crate::unit::keys::{self, Table};

/// Why a `run` command line can't become a unit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunError {
    #[error("-p {0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("-p {key}: not a [service] or [resources] key{}", suggestion(.key))]
    UnknownKey { key: String },
    #[error("--ns {0:?}: not a namespace kind (one of {kinds})", kinds = NsKind::names().collect::<Vec<_>>().join(", "))]
    UnknownNamespace(String),
    #[error("{0}: not found in $PATH")]
    NotFound(String),
}

fn suggestion(key: &str) -> String {
    match keys::run_property_suggestion(key) {
        Some(s) => format!("; did you mean {s}?"),
        None => String::new(),
    }
}

/// The TOML of a `corralctl run` unit. A program without `/` is looked up in `path` (the
/// caller's `$PATH`) here, since units take absolute paths.
pub fn transient_toml(
    slice: Option<&str>,
    properties: &[String],
    ns: &[String],
    command: &[String],
    path: Option<&std::ffi::OsStr>,
) -> Result<String, RunError> {
    let mut argv = command.to_vec();
    if let Some(prog) = argv.first_mut()
        && !prog.contains('/')
    {
        let found = path
            .into_iter()
            .flat_map(|p| std::env::split_paths(p).collect::<Vec<_>>())
            .map(|d| d.join(&*prog))
            .find(|p| p.is_file())
            .ok_or_else(|| RunError::NotFound(prog.clone()))?;
        *prog = found.display().to_string();
    }
    let mut service = String::new();
    let mut resources = String::new();
    for kv in properties {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| RunError::NotKeyValue(kv.clone()))?;
        let table = keys::run_property_table(k)
            .ok_or_else(|| RunError::UnknownKey { key: k.to_string() })?;
        let lines = match table {
            Table::Resources => &mut resources,
            _ => &mut service,
        };
        let _ = writeln!(lines, "{k} = {}", value(table, k, v));
    }
    let kinds = ns
        .iter()
        .map(|k| NsKind::from_name(k).ok_or_else(|| RunError::UnknownNamespace(k.clone())))
        .collect::<Result<Vec<_>, _>>()?;

    let mut t = String::from("[unit]\n");
    if let Some(s) = slice {
        let _ = writeln!(t, "slice = {}", quote(s));
    }
    t.push_str("[service]\nexec = [");
    t.push_str(&argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", "));
    t.push_str("]\n");
    t.push_str(&service);
    if !resources.is_empty() {
        t.push_str("[resources]\n");
        t.push_str(&resources);
    }
    if !kinds.is_empty() {
        t.push_str("[namespaces]\n");
        for kind in kinds {
            let _ = writeln!(t, "{kind} = true");
        }
    }
    Ok(t)
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Whether `v` is one TOML value.
fn is_toml(v: &str) -> bool {
    format!("v = {v}").parse::<toml::Table>().is_ok()
}

/// The TOML text of `-p KEY=VALUE`'s value (see the module docs).
fn value(table: Table, key: &str, v: &str) -> String {
    let trimmed = v.trim_start();
    match table {
        Table::Resources if (trimmed.starts_with('[') || trimmed.starts_with('{')) => v.to_string(),
        Table::Resources => quote(v),
        _ if is_toml(v) => v.to_string(),
        _ if keys::is_list(table, key) => {
            let items: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(quote)
                .collect();
            format!("[{}]", items.join(", "))
        }
        _ => quote(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(props: &[&str], ns: &[&str]) -> Result<String, RunError> {
        let props: Vec<String> = props.iter().map(|s| s.to_string()).collect();
        let ns: Vec<String> = ns.iter().map(|s| s.to_string()).collect();
        transient_toml(None, &props, &ns, &["/bin/true".into()], None)
    }

    #[test]
    fn properties_go_to_their_table_with_their_type() {
        let t = toml(
            &[
                "pids-max=10",
                "memory-max=512M",
                "no-new-privileges=true",
                "capabilities=CAP_NET_BIND_SERVICE, CAP_CHOWN",
                "ambient-capabilities=[\"CAP_NET_BIND_SERVICE\"]",
                "user=1000",
                "restart=on-failure",
                "stdout=file:/var/log/x.log",
            ],
            &["pid", "net"],
        )
        .unwrap();
        assert_eq!(
            t,
            "[unit]\n[service]\nexec = [\"/bin/true\"]\nno-new-privileges = true\n\
             capabilities = [\"CAP_NET_BIND_SERVICE\", \"CAP_CHOWN\"]\n\
             ambient-capabilities = [\"CAP_NET_BIND_SERVICE\"]\nuser = 1000\n\
             restart = \"on-failure\"\nstdout = \"file:/var/log/x.log\"\n\
             [resources]\npids-max = \"10\"\nmemory-max = \"512M\"\n\
             [namespaces]\npid = true\nnet = true\n"
        );
        // The result is a valid unit.
        let name = crate::unit::UnitName::parse("r.service").unwrap();
        let unit = crate::unit::parse_unit(&name, std::path::Path::new("r"), &t).unwrap();
        let svc = unit.service.unwrap();
        assert!(svc.no_new_privileges);
        assert_eq!(
            format!("{:?}", svc.capabilities),
            r#"Some(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])"#
        );
    }

    #[test]
    fn bad_keys_and_kinds_are_refused_here() {
        assert_eq!(
            toml(&["memory-mx=1G"], &[]).unwrap_err().to_string(),
            "-p memory-mx: not a [service] or [resources] key; did you mean memory-max?"
        );
        assert!(matches!(
            toml(&["exec=[\"/bin/sh\"]"], &[]),
            Err(RunError::UnknownKey { .. })
        ));
        assert!(matches!(
            toml(&["pids-max"], &[]),
            Err(RunError::NotKeyValue(_))
        ));
        assert_eq!(
            toml(&[], &["mnt"]).unwrap_err().to_string(),
            "--ns \"mnt\": not a namespace kind (one of pid, net, mount, uts, ipc, user, cgroup, time)"
        );
    }
}
