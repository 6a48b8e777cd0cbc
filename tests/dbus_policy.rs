//! `dbus/org.corral1.conf`, the system bus policy: every method of the served API
//! (`dbus/org.corral1.xml`) is allowed to everyone, since corrald judges privilege itself; only
//! root owns `org.corral1`. Proven twice: by reading the file, and by running a real
//! `dbus-daemon` with a system-bus-like configuration that includes it — which also proves the
//! file parses — and calling through it with `busctl` as root and as uid 65534 (via `setpriv`).
//!
//! The bus test stands in for corrald with a stub owning `org.corral1` (the stub answers
//! `ListUnits` and nothing else): what is checked is the bus's verdict, and a message the bus
//! refuses fails with `AccessDenied` before it reaches anyone (the stub never answers that). It needs
//! `dbus-daemon`, `busctl` and `setpriv` (the `dbus`, `systemd` and `util-linux` packages, in
//! scripts/vm-deps) and root; without them it says why and skips.

#[path = "common/bus.rs"]
mod bus;
#[path = "common/golden.rs"]
mod golden;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/xml.rs"]
mod xml;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use bus::{Bus, rejected, show};

use xml::Elem;
use zbus::interface;
use zbus::zvariant::OwnedObjectPath;

const NAME: &str = "org.corral1";
const MANAGER: &str = "org.corral1.Manager";
const UNIT: &str = "org.corral1.Unit";

fn read(rel: &str) -> Elem {
    let path = golden::repo_path(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    xml::parse(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// (interface, method) for every method of the served API.
fn api_methods() -> Vec<(String, String)> {
    let api = read("dbus/org.corral1.xml");
    let mut out = Vec::new();
    for iface in api.all("interface") {
        let Some(i) = iface.attr("name") else {
            continue;
        };
        for m in iface.all("method") {
            if let Some(m) = m.attr("name") {
                out.push((i.to_string(), m.to_string()));
            }
        }
    }
    out
}

fn policy<'a>(conf: &'a Elem, key: &str, value: &str) -> &'a Elem {
    conf.all("policy")
        .find(|p| p.attr(key) == Some(value))
        .unwrap_or_else(|| panic!("no <policy {key}=\"{value}\">"))
}

#[test]
fn the_policy_file_allows_the_whole_api_and_only_root_owns_the_name() {
    let conf = read("dbus/org.corral1.conf");
    assert_eq!(conf.name, "busconfig");
    let root = policy(&conf, "user", "root");
    assert!(
        root.all("allow").any(|a| a.attr("own") == Some(NAME)),
        "root may own {NAME}"
    );
    let default = policy(&conf, "context", "default");
    assert!(
        !conf
            .all("policy")
            .filter(|p| p.attr("user") != Some("root"))
            .flat_map(|p| p.all("allow"))
            .any(|a| a.attr("own").is_some() || a.attr("own_prefix").is_some()),
        "only root may own a name"
    );
    // Closed by default, then opened member by member.
    let first = default.children.first().expect("an empty default policy");
    assert_eq!(
        (first.name.as_str(), first.attr("send_destination")),
        ("deny", Some(NAME)),
        "the default policy starts by denying everything sent to {NAME}"
    );
    let allowed = |iface: &str, member: &str| {
        default.all("allow").any(|a| {
            a.attr("send_destination") == Some(NAME)
                && a.attr("send_interface") == Some(iface)
                && a.attr("send_member").is_none_or(|m| m == member)
        })
    };
    let methods = api_methods();
    assert!(methods.len() > 20, "{methods:?}");
    let missing: Vec<String> = methods
        .iter()
        .filter(|(i, m)| !allowed(i, m))
        .map(|(i, m)| format!("{i}.{m}"))
        .collect();
    assert!(
        missing.is_empty(),
        "methods of dbus/org.corral1.xml that dbus/org.corral1.conf doesn't allow: {missing:?}"
    );
    for (i, m) in [
        ("org.freedesktop.DBus.Introspectable", "Introspect"),
        ("org.freedesktop.DBus.Properties", "Get"),
        ("org.freedesktop.DBus.Properties", "GetAll"),
        ("org.freedesktop.DBus.Peer", "Ping"),
    ] {
        assert!(allowed(i, m), "{i}.{m}");
    }
    assert!(!allowed("org.freedesktop.DBus.Properties", "Set"));
    assert!(!allowed(MANAGER, "NoSuchMethod"));
    assert!(
        default
            .all("allow")
            .any(|a| a.attr("receive_sender") == Some(NAME)),
        "signals reach everyone"
    );
}

/// The stand-in for corrald.
struct Stub;

#[interface(name = "org.corral1.Manager")]
impl Stub {
    fn list_units(&self) -> Vec<(String, String, String, String, String, OwnedObjectPath)> {
        Vec::new()
    }
}

/// busctl on the test bus, as root or (through setpriv) as uid 65534, off the runtime (the
/// stub answers on it).
async fn busctl(address: &str, nobody: bool, args: &[&str]) -> Output {
    let mut cmd = bus::busctl_command(address, nobody.then_some(65534), args);
    tokio::task::spawn_blocking(move || cmd.output().expect("running busctl"))
        .await
        .expect("busctl thread")
}

#[tokio::test]
async fn a_dbus_daemon_with_the_policy_lets_everyone_call_the_api_and_only_root_own_it() {
    if let Some(why) = bus::missing_tools() {
        skip::skipped(why);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // uid 65534 must reach the socket inside.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = dir.path().join("system_bus_socket");
    let config = dir.path().join("system.conf");
    std::fs::write(
        &config,
        bus::system_config(&socket, &golden::repo_path("dbus/org.corral1.conf")),
    )
    .expect("writing the bus configuration");
    let bus = Bus::start(&config, None);
    let address = bus.address.clone();

    // The stub owns the name, as root.
    let _stub = zbus::connection::Builder::address(address.as_str())
        .expect("address")
        .name(NAME)
        .expect("name")
        .serve_at("/org/corral1", Stub)
        .expect("serve")
        .build()
        .await
        .expect("root owns org.corral1 on the bus");

    // uid 65534 reads through the bus...
    let out = busctl(
        &address,
        true,
        &["call", NAME, "/org/corral1", MANAGER, "ListUnits"],
    )
    .await;
    assert!(
        out.status.success(),
        "ListUnits as uid 65534: {}",
        show(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a(ssssso) 0");
    let out = busctl(&address, true, &["introspect", NAME, "/org/corral1"]).await;
    assert!(
        out.status.success(),
        "Introspect as uid 65534: {}",
        show(&out)
    );

    // ...and the bus lets every method of the API through (the stub answers UnknownMethod or
    // UnknownObject; corrald would judge the caller's uid itself).
    let unit_path = "/org/corral1/unit/web_2eservice";
    for (iface, method) in api_methods() {
        let path = if iface == UNIT {
            unit_path
        } else {
            "/org/corral1"
        };
        let out = busctl(&address, true, &["call", NAME, path, &iface, &method]).await;
        assert!(
            !rejected(&out),
            "the bus refused {iface}.{method} to uid 65534: {}",
            show(&out)
        );
    }
    let get = ["get-property", NAME, "/org/corral1", MANAGER, "Version"];
    let out = busctl(&address, true, &get).await;
    assert!(!rejected(&out), "Properties.Get: {}", show(&out));
    let ping = [
        "call",
        NAME,
        "/org/corral1",
        "org.freedesktop.DBus.Peer",
        "Ping",
    ];
    let out = busctl(&address, true, &ping).await;
    assert!(out.status.success(), "Peer.Ping: {}", show(&out));

    // What is not in the API is refused by the bus to anyone but root.
    let set = [
        "call",
        NAME,
        "/org/corral1",
        "org.freedesktop.DBus.Properties",
        "Set",
        "ssv",
        MANAGER,
        "Version",
        "s",
        "x",
    ];
    let out = busctl(&address, true, &set).await;
    assert!(
        rejected(&out),
        "Properties.Set as uid 65534: {}",
        show(&out)
    );
    let bogus = ["call", NAME, "/org/corral1", MANAGER, "Frobnicate"];
    let out = busctl(&address, true, &bogus).await;
    assert!(rejected(&out), "Frobnicate as uid 65534: {}", show(&out));
    let out = busctl(&address, false, &bogus).await;
    assert!(!rejected(&out), "Frobnicate as root: {}", show(&out));

    // Only root may own the name.
    let request = [
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "RequestName",
        "su",
        NAME,
        "0",
    ];
    let out = busctl(&address, true, &request).await;
    assert!(rejected(&out), "RequestName as uid 65534: {}", show(&out));
    let out = busctl(&address, false, &request).await;
    // 2: queued behind the stub, which holds the name; not refused.
    assert!(out.status.success(), "RequestName as root: {}", show(&out));
    drop(bus);
}
