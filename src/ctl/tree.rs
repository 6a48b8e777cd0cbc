//! `corralctl tree [NAME]`: the slice tree, as `systemd-cgls` draws it — slices nesting by their
//! `Slice` property (which follows the name: `apps-batch.slice` under `apps.slice` under
//! `-.slice`), every unit with its state and the limits set on it (`Limits`, in brackets, so a
//! pod slice and its containers' scopes show what binds them), and each live unit's processes
//! (`GetProcesses`).
//!
//! Gathering ([`gather`]) and drawing ([`render`]) are apart, so the drawing is tested on
//! tables. A unit that vanishes between `ListUnits` and the reads of its properties is left out
//! rather than failing the whole tree (units come and go; `top` relies on the same rule).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use futures_util::StreamExt;
use zbus::proxy::Proxy;

use super::client::{Client, ClientError, UnitObject};

/// The root slice: the cgroup root, parent of every top-level slice.
pub const ROOT_SLICE: &str = "-.slice";

/// What the tree shows of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeUnit {
    pub name: String,
    /// The parent slice (`Slice` property); empty for the root slice.
    pub slice: String,
    pub control_group: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// The limits set on the unit (`Limits`), in `[resources]` order.
    pub limits: Vec<(String, String)>,
    /// (pid, command line) of the processes in the unit's own cgroup.
    pub processes: Vec<(u32, String)>,
}

/// True when a call failed because the unit (or its object) is gone.
pub(crate) fn vanished(e: &zbus::Error) -> bool {
    let name = match e {
        zbus::Error::MethodError(name, _, _) => name.as_str().to_string(),
        zbus::Error::FDO(e) => zbus::DBusError::name(&**e).to_string(),
        _ => return false,
    };
    name == "org.corral1.Error.NoSuchUnit" || name == "org.freedesktop.DBus.Error.UnknownObject"
}

async fn read_unit(unit: &UnitObject) -> zbus::Result<TreeUnit> {
    let p: &Proxy<'_> = &unit.proxy;
    let slice: String = p.get_property("Slice").await?;
    let control_group: String = p.get_property("ControlGroup").await?;
    let limits: std::collections::HashMap<String, zbus::zvariant::OwnedValue> =
        p.get_property("Limits").await?;
    let limits = ordered_limits(&limits);
    // Processes are shown to root only (DESIGN §4): for anyone else the tree has none.
    let processes: Vec<(u32, String)> = if unit.row.active_state == "inactive" {
        Vec::new()
    } else {
        match p.call("GetProcesses", &()).await {
            Ok(procs) => procs,
            Err(e) if super::client::denied(&e) => Vec::new(),
            Err(e) => return Err(e),
        }
    };
    Ok(TreeUnit {
        name: unit.row.name.clone(),
        slice,
        control_group,
        load_state: unit.row.load_state.clone(),
        active_state: unit.row.active_state.clone(),
        sub_state: unit.row.sub_state.clone(),
        limits,
        processes,
    })
}

/// The `Limits` property as (key, value) pairs in `[resources]` order; `io-max` once per
/// device.
fn ordered_limits(
    map: &std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
) -> Vec<(String, String)> {
    use zbus::zvariant::Value;
    let mut out = Vec::new();
    for key in crate::limits::RESOURCE_KEYS {
        match map.get(key).map(|v| &**v) {
            Some(Value::Str(s)) => out.push((key.to_string(), s.to_string())),
            Some(Value::Array(a)) => {
                for v in a.iter() {
                    if let Value::Str(s) = v {
                        out.push((key.to_string(), s.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Every unit's place in the tree, read concurrently.
pub async fn gather(client: &Client) -> Result<Vec<TreeUnit>, ClientError> {
    let objects = client.unit_objects().await?;
    let mut out = Vec::with_capacity(objects.len());
    let reads: Vec<_> = futures_util::stream::iter(objects.iter().map(read_unit))
        .buffered(super::client::CONCURRENT_CALLS)
        .collect()
        .await;
    for read in reads {
        match read {
            Ok(u) => out.push(u),
            Err(e) if vanished(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// `corralctl tree [NAME]`: the whole tree, or the subtree of `name`.
pub async fn show(client: &Client, name: Option<&str>) -> Result<String, ClientError> {
    let units = gather(client).await?;
    match render(&units, name) {
        Some(text) => Ok(text),
        // Not in the list: let the daemon say why (an invalid name, or no such unit).
        None => match name {
            Some(n) => {
                client.unit(n).await?;
                Err(ClientError::Call(format!(
                    "{n} vanished while the tree was read"
                )))
            }
            None => Err(ClientError::Call("the daemon listed no root slice".into())),
        },
    }
}

/// The state column: `active (running)`, or just `active` when the sub state says no more;
/// a unit that did not load says how.
fn state(u: &TreeUnit) -> String {
    let mut s = if u.sub_state.is_empty() || u.sub_state == u.active_state {
        u.active_state.clone()
    } else {
        format!("{} ({})", u.active_state, u.sub_state)
    };
    if !u.load_state.is_empty() && u.load_state != "loaded" {
        let _ = write!(s, " [{}]", u.load_state);
    }
    if !u.limits.is_empty() {
        let limits: Vec<String> = u.limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(s, "  [{}]", limits.join(" "));
    }
    s
}

/// Draws the tree under `root` (default: every unit without a known parent — normally just
/// `-.slice`). `None` when `root` is not among `units`.
pub fn render(units: &[TreeUnit], root: Option<&str>) -> Option<String> {
    let by_name: BTreeMap<&str, &TreeUnit> = units.iter().map(|u| (u.name.as_str(), u)).collect();
    let mut children: BTreeMap<&str, Vec<&TreeUnit>> = BTreeMap::new();
    let mut tops: Vec<&TreeUnit> = Vec::new();
    for u in units {
        // A parent that isn't listed (or a unit naming itself) would lose the unit: show it at
        // the top instead.
        if u.slice.is_empty() || u.slice == u.name || !by_name.contains_key(u.slice.as_str()) {
            tops.push(u);
        } else {
            children.entry(u.slice.as_str()).or_default().push(u);
        }
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    // The root slice first, then any orphans by name.
    tops.sort_by(|a, b| (a.name != ROOT_SLICE, &a.name).cmp(&(b.name != ROOT_SLICE, &b.name)));
    let roots: Vec<&TreeUnit> = match root {
        Some(name) => vec![*by_name.get(name)?],
        None => tops,
    };

    let mut out = String::new();
    for top in roots {
        if top.control_group.is_empty() {
            let _ = writeln!(out, "Unit {}:", top.name);
        } else {
            let _ = writeln!(out, "Control group {}:", top.control_group);
        }
        let _ = writeln!(out, "{} {}", top.name, state(top));
        let mut seen = HashSet::new();
        seen.insert(top.name.as_str());
        draw_below(&mut out, top, &children, "", &mut seen);
    }
    Some(out)
}

/// The processes of `unit`, then its child units, each with its own subtree.
fn draw_below<'a>(
    out: &mut String,
    unit: &TreeUnit,
    children: &BTreeMap<&str, Vec<&'a TreeUnit>>,
    prefix: &str,
    seen: &mut HashSet<&'a str>,
) {
    let kids: &[&TreeUnit] = children
        .get(unit.name.as_str())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let total = unit.processes.len() + kids.len();
    let mut index = 0;
    let branch = |last: bool| {
        if last {
            ("└─", "  ")
        } else {
            ("├─", "│ ")
        }
    };
    for (pid, cmd) in &unit.processes {
        index += 1;
        let (here, _) = branch(index == total);
        let _ = writeln!(out, "{prefix}{here}{pid} {cmd}");
    }
    for kid in kids {
        index += 1;
        let (here, below) = branch(index == total);
        let _ = writeln!(out, "{prefix}{here}{} {}", kid.name, state(kid));
        // Guards against a cycle in what the daemon reports; never expected.
        if seen.insert(kid.name.as_str()) {
            draw_below(out, kid, children, &format!("{prefix}{below}"), seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, slice: &str, active: &str, sub: &str, procs: &[(u32, &str)]) -> TreeUnit {
        TreeUnit {
            name: name.into(),
            slice: slice.into(),
            control_group: String::new(),
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            limits: Vec::new(),
            processes: procs.iter().map(|(p, c)| (*p, c.to_string())).collect(),
        }
    }

    fn fixture() -> Vec<TreeUnit> {
        let mut root = unit("-.slice", "", "active", "active", &[]);
        root.control_group = "/".into();
        let mut broken = unit("broken.service", "system.slice", "inactive", "dead", &[]);
        broken.load_state = "error".into();
        vec![
            unit(
                "web.service",
                "apps.slice",
                "active",
                "running",
                &[(10, "/bin/web -p 80"), (11, "worker")],
            ),
            unit("apps.slice", "-.slice", "active", "active", &[]),
            unit("apps-batch.slice", "apps.slice", "active", "active", &[]),
            unit(
                "job.service",
                "apps-batch.slice",
                "active",
                "running",
                &[(20, "job")],
            ),
            root,
            unit("system.slice", "-.slice", "active", "active", &[]),
            broken,
            unit("db.service", "system.slice", "failed", "failed", &[]),
        ]
    }

    #[test]
    fn slices_nest_and_processes_hang_below_their_unit() {
        let text = render(&fixture(), None).unwrap();
        let expected = "\
Control group /:
-.slice active
├─apps.slice active
│ ├─apps-batch.slice active
│ │ └─job.service active (running)
│ │   └─20 job
│ └─web.service active (running)
│   ├─10 /bin/web -p 80
│   └─11 worker
└─system.slice active
  ├─broken.service inactive (dead) [error]
  └─db.service failed
";
        assert_eq!(text, expected, "\n{text}");
    }

    /// A pod slice and its containers' scopes, each with what binds it.
    #[test]
    fn limits_are_shown_beside_the_state() {
        let limited = |mut u: TreeUnit, limits: &[(&str, &str)]| {
            u.limits = limits
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            u
        };
        let units = vec![
            unit("-.slice", "", "active", "active", &[]),
            limited(
                unit("kubepods-pod1.slice", "-.slice", "active", "active", &[]),
                &[("cpu-weight", "2"), ("memory-max", "256M")],
            ),
            limited(
                unit(
                    "cri-containerd-a.scope",
                    "kubepods-pod1.slice",
                    "active",
                    "running",
                    &[(7, "sleep 1000")],
                ),
                &[
                    ("cpu-max", "50%"),
                    ("memory-max", "64M"),
                    ("pids-max", "32"),
                ],
            ),
        ];
        let text = render(&units, Some("kubepods-pod1.slice")).unwrap();
        assert_eq!(
            text,
            "Unit kubepods-pod1.slice:\n\
             kubepods-pod1.slice active  [cpu-weight=2 memory-max=256M]\n\
             └─cri-containerd-a.scope active (running)  [cpu-max=50% memory-max=64M pids-max=32]\n  \
             └─7 sleep 1000\n"
        );
    }

    #[test]
    fn a_subtree_starts_at_the_named_unit() {
        let text = render(&fixture(), Some("apps-batch.slice")).unwrap();
        assert_eq!(
            text,
            "Unit apps-batch.slice:\napps-batch.slice active\n└─job.service active (running)\n  └─20 job\n"
        );
        assert_eq!(render(&fixture(), Some("nope.service")), None);
    }

    #[test]
    fn a_unit_whose_slice_is_not_listed_is_still_shown() {
        let units = vec![
            unit("-.slice", "", "active", "active", &[]),
            unit("lost.service", "gone.slice", "active", "running", &[]),
        ];
        let text = render(&units, None).unwrap();
        assert!(text.contains("\nlost.service active (running)\n"), "{text}");
    }

    #[test]
    fn vanished_units_are_recognised_by_error_name() {
        let gone = zbus::Error::FDO(Box::new(zbus::fdo::Error::UnknownObject("x".into())));
        assert!(vanished(&gone));
        let denied = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("x".into())));
        assert!(!vanished(&denied));
    }
}
