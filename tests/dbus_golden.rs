//! `dbus/org.corral1.xml` is the API as served: a real corrald is introspected over its private
//! socket (`org.freedesktop.DBus.Introspectable.Introspect` on `/org/corral1` and on unit
//! objects), the `org.corral1.*` interfaces are kept (zbus also lists the standard ones and
//! every child node), normalised — one element per line, members sorted by kind and name, so
//! neither layout nor the order of methods in the source matters — and compared with the file,
//! normalised the same way. `UPDATE_GOLDEN=1 cargo test --test dbus_golden` rewrites it.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/golden.rs"]
mod golden;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/xml.rs"]
mod xml;

use corral::bus::{BUS_NAME, MANAGER_PATH};
use xml::Elem;
use zbus::proxy::Proxy;

const GOLDEN: &str = "dbus/org.corral1.xml";

const HEADER: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!--
  The D-Bus API of corrald (DESIGN §4), as served. Bus name org.corral1 (on the system or
  session bus) or the private socket RUNTIME/private (peer to peer).
    org.corral1.Manager  at /org/corral1
    org.corral1.Unit     at /org/corral1/unit/ESCAPED, one object per unit
  Every object also has org.freedesktop.DBus.Introspectable, .Peer and .Properties.
  Who may call what (judged by corrald from the kernel's credentials of the caller): reading
  states (ListUnits, GetUnit, properties) is open to all; every other method is for uid 0 only
  (in user mode the daemon's own uid), except GetUnitLog, which a unit's own user may also call
  for that unit. Inputs are bounded (src/bounds.rs).

  Generated from a running corrald by tests/dbus_golden.rs (members sorted by kind and name).
  Don't edit by hand: run that test with UPDATE_GOLDEN=1 set to refresh it.
-->
"#;

/// Member kinds in the order the file lists them.
fn kind_rank(name: &str) -> u8 {
    match name {
        "method" => 0,
        "signal" => 1,
        "property" => 2,
        _ => 3,
    }
}

/// An interface with its members sorted (arguments keep their order: it is the signature).
fn sorted(iface: &Elem) -> Elem {
    let mut iface = iface.clone();
    iface.children.sort_by(|a, b| {
        (kind_rank(&a.name), a.attr("name")).cmp(&(kind_rank(&b.name), b.attr("name")))
    });
    iface
}

/// The `org.corral1.*` interfaces declared directly on the root node of `text`, sorted.
fn corral_interfaces(text: &str) -> Vec<Elem> {
    let root = xml::parse(text).unwrap_or_else(|e| panic!("introspection XML: {e}\n{text}"));
    assert_eq!(root.name, "node", "{text}");
    let mut out: Vec<Elem> = root
        .all("interface")
        .filter(|i| {
            i.attr("name")
                .is_some_and(|n| n.starts_with("org.corral1."))
        })
        .map(sorted)
        .collect();
    out.sort_by(|a, b| a.attr("name").cmp(&b.attr("name")));
    out
}

/// The normalised text of a node holding `interfaces`.
fn render(interfaces: &[Elem]) -> String {
    let node = Elem {
        name: "node".into(),
        attrs: Vec::new(),
        children: interfaces.to_vec(),
    };
    let mut out = String::new();
    node.render(0, &mut out);
    out
}

async fn introspect(conn: &zbus::Connection, path: &str) -> String {
    let proxy = Proxy::new(conn, BUS_NAME, path, "org.freedesktop.DBus.Introspectable")
        .await
        .expect("proxy");
    proxy.call("Introspect", &()).await.expect("Introspect")
}

#[tokio::test]
async fn served_introspection_matches_dbus_xml() {
    let units = [(
        "web.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
    )];
    let Some(d) = daemon::Daemon::start("dbusxml", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let conn = d.client().await;

    let manager = corral_interfaces(&introspect(&conn, MANAGER_PATH).await);
    let names: Vec<_> = manager.iter().filter_map(|i| i.attr("name")).collect();
    assert_eq!(names, ["org.corral1.Manager"], "on {MANAGER_PATH}");

    // Every unit object serves the same interface, whatever its kind.
    let mut unit: Option<Vec<Elem>> = None;
    for path in [
        "/org/corral1/unit/web_2eservice",
        "/org/corral1/unit/_2d_2eslice",
    ] {
        let here = corral_interfaces(&introspect(&conn, path).await);
        let names: Vec<_> = here.iter().filter_map(|i| i.attr("name")).collect();
        assert_eq!(names, ["org.corral1.Unit"], "on {path}");
        if let Some(first) = &unit {
            assert_eq!(first, &here, "{path} differs from the other unit object");
        }
        unit = Some(here);
    }
    let mut all = manager;
    all.extend(unit.unwrap_or_default());
    let served = render(&all);
    let file = format!("{HEADER}{served}");
    golden::check_with(GOLDEN, &served, &file, "dbus_golden", |golden| {
        render(&corral_interfaces(golden))
    });
}

#[test]
fn the_golden_file_is_well_formed_and_complete() {
    let text = std::fs::read_to_string(golden::repo_path(GOLDEN)).expect("reading the golden");
    let ifaces = corral_interfaces(&text);
    let names: Vec<_> = ifaces.iter().filter_map(|i| i.attr("name")).collect();
    assert_eq!(names, ["org.corral1.Manager", "org.corral1.Unit"]);
    // Spot checks against DESIGN §4 (the bus tests check every signature at run time).
    let has = |iface: &Elem, kind: &str, name: &str| {
        iface.all(kind).any(|m| m.attr("name") == Some(name))
    };
    for m in [
        "ListUnits",
        "GetUnit",
        "StartUnit",
        "SetUnitLimits",
        "GetUnitLog",
    ] {
        assert!(has(&ifaces[0], "method", m), "Manager.{m}");
    }
    for s in ["JobRemoved", "UnitStateChanged"] {
        assert!(has(&ifaces[0], "signal", s), "Manager.{s}");
    }
    for m in ["Start", "Stop", "GetProcesses"] {
        assert!(has(&ifaces[1], "method", m), "Unit.{m}");
    }
    for p in [
        "ActiveState",
        "ControlGroup",
        "Slice",
        "CPUUsageNSec",
        "MemoryCurrent",
    ] {
        assert!(has(&ifaces[1], "property", p), "Unit.{p}");
    }
}
