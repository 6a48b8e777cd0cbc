//! corrald on the system bus (DESIGN §4 "Transports"), on the host: a real corrald on a
//! delegated cgroup and a private `dbus-daemon` with a system-bus-like configuration that
//! includes `dbus/org.corral1.conf`. corrald starts **before** the bus exists (as PID 1 does
//! at boot) — not even the socket's directory is there — and must take `org.corral1` once the
//! bus comes up, without a retry timer (it doesn't wake while it waits, and does when the
//! directory appears); then:
//! - root calls, introspects and reads through the bus name, and receives `JobRemoved`,
//!   `UnitStateChanged` and `PropertiesChanged` over the bus;
//! - uid 65534 (through setpriv) reads, and is refused every state change with `AccessDenied`
//!   by corrald itself (the bus policy lets the calls through; corrald judges the sender's
//!   uid from the bus daemon's `GetConnectionCredentials`);
//! - the bus daemon is killed (its socket stays behind, as after a crash) and started again:
//!   corrald, still serving its private socket meanwhile, takes the name again;
//! - `corralctl` as uid 65534, with no `--address`, can't open the private socket and falls
//!   back to the bus: `list` and `status` work, `start` is AccessDenied.
//!
//! And with `org.corral1` already owned by another connection, corrald warns, naming the
//! owner, and serves the API on its unique name.
//!
//! Needs root, a cgroup2 mount, `dbus-daemon`, `busctl` and `setpriv`; without them it says
//! why and skips.

#[path = "common/bus.rs"]
mod bus;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/golden.rs"]
mod golden;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use bus::{Bus, busctl, rejected, show};
use daemon::{Daemon, wait_for};
use futures_util::StreamExt;

const NAME: &str = "org.corral1";
const MANAGER: &str = "org.corral1.Manager";
const UNIT: &str = "org.corral1.Unit";
const WEB: &str = "/org/corral1/unit/web_2eservice";
const NOBODY: u32 = 65534;

/// Starts the bus daemon at `address` and waits for corrald to take its name there.
fn start_bus(config: &Path, address: &str) -> Bus {
    let bus = Bus::start(config, None);
    assert!(
        bus.address.starts_with(&format!("{address},")),
        "the bus listens where corrald looks: {}",
        bus.address
    );
    wait_for(
        "corrald to own org.corral1",
        Duration::from_secs(10),
        || bus::owner(address, NAME).is_some(),
    );
    bus
}

/// Context switches of every thread of `pid` so far: unchanged means it never woke.
fn context_switches(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads");
    let mut total = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.expect("a thread").path().join("status"))
            .expect("a thread's status");
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads web.service's `prop` through the bus (as `uid`, if given) and checks busctl's answer.
fn assert_web_property(address: &str, uid: Option<u32>, prop: &str, want: &str) {
    let out = busctl(address, uid, &["get-property", NAME, WEB, UNIT, prop]);
    assert_eq!(stdout(&out).trim(), want, "{prop}: {}", show(&out));
}

/// corralctl as uid 65534 with no `--address`: the system bus is the one at `address`.
fn ctl_as_nobody(address: &str, args: &[&str]) -> Output {
    bus::command_as(Some(NOBODY), env!("CARGO_BIN_EXE_corralctl"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .args(args)
        .output()
        .expect("running corralctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrald_waits_for_the_system_bus_serves_it_and_survives_its_restart() {
    if let Some(why) = bus::missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // uid 65534 must reach the bus socket inside.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Not even the directory of the socket exists when corrald starts.
    let socket = dir.path().join("dbus/system_bus_socket");
    let address = format!("unix:path={}", socket.display());
    let config = dir.path().join("system.conf");
    std::fs::write(
        &config,
        bus::system_config(&socket, &golden::repo_path("dbus/org.corral1.conf")),
    )
    .expect("writing the bus configuration");

    let units = [(
        "web.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
    )];
    let Some(d) = Daemon::start_on_bus(
        "bus",
        &units,
        &[("DBUS_SYSTEM_BUS_ADDRESS", Path::new(&address))],
    ) else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
    };
    // Serving its private socket, waiting for the bus — without ever waking up: no retry
    // timer, only inotify, which wakes it when the way to the socket changes.
    let out = d.ctl(&["list"]);
    assert!(stdout(&out).contains("web.service"), "{}", show(&out));
    let pid = d.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let before = context_switches(pid);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(context_switches(pid), before, "corrald woke up while idle");
    std::fs::create_dir(dir.path().join("dbus")).expect("mkdir");
    wait_for("corrald to notice dbus/", Duration::from_secs(5), || {
        context_switches(pid) > before
    });
    let bus = start_bus(&config, &address);

    // Root: calls, introspection and properties through the bus name.
    let out = busctl(
        &address,
        None,
        &["call", NAME, "/org/corral1", MANAGER, "ListUnits"],
    );
    assert!(stdout(&out).contains("web.service"), "{}", show(&out));
    let out = busctl(&address, None, &["introspect", NAME, WEB]);
    assert!(stdout(&out).contains(".Start"), "{}", show(&out));
    let out = busctl(
        &address,
        None,
        &["get-property", NAME, "/org/corral1", MANAGER, "Mode"],
    );
    assert_eq!(stdout(&out).trim(), "s \"system\"", "{}", show(&out));

    // Signals over the bus, for a job started over the bus.
    let client = zbus::connection::Builder::address(address.as_str())
        .expect("address")
        .build()
        .await
        .expect("root connects to the bus");
    let manager = zbus::Proxy::new(&client, NAME, "/org/corral1", MANAGER)
        .await
        .expect("manager proxy");
    let mut removed = manager.receive_signal("JobRemoved").await.expect("match");
    let mut changed = manager
        .receive_signal("UnitStateChanged")
        .await
        .expect("match");
    let unit = zbus::Proxy::new(&client, NAME, WEB, UNIT)
        .await
        .expect("unit proxy");
    let mut props = unit.receive_property_changed::<String>("ActiveState").await;
    let id: u32 = manager
        .call("StartUnit", &("web.service",))
        .await
        .expect("StartUnit as root over the bus");
    let (job, job_unit, result) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let msg = removed.next().await.expect("signal stream");
            let body: (u32, String, String) = msg.body().deserialize().expect("(uss)");
            if body.0 == id {
                return body;
            }
        }
    })
    .await
    .expect("JobRemoved over the bus within 10 s");
    assert_eq!(
        (job, job_unit.as_str(), result.as_str()),
        (id, "web.service", "done")
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), changed.next())
        .await
        .expect("UnitStateChanged over the bus within 10 s")
        .expect("signal stream");
    let (changed_unit, _, _): (String, String, String) = msg.body().deserialize().expect("(sss)");
    assert_eq!(changed_unit, "web.service");
    tokio::time::timeout(Duration::from_secs(10), async {
        // The first item is the cached value; wait for "active" from PropertiesChanged.
        while let Some(p) = props.next().await {
            if p.get().await.is_ok_and(|s| s == "active") {
                return;
            }
        }
        panic!("PropertiesChanged stream ended");
    })
    .await
    .expect("PropertiesChanged over the bus within 10 s");

    // uid 65534: reads, and is refused every state change by corrald.
    assert_web_property(&address, Some(NOBODY), "ActiveState", "s \"active\"");
    let out = busctl(
        &address,
        Some(NOBODY),
        &["call", NAME, "/org/corral1", MANAGER, "ListUnits"],
    );
    assert!(stdout(&out).contains("web.service"), "{}", show(&out));
    let denied: &[&[&str]] = &[
        &[
            "call",
            NAME,
            "/org/corral1",
            MANAGER,
            "StartUnit",
            "s",
            "web.service",
        ],
        &[
            "call",
            NAME,
            "/org/corral1",
            MANAGER,
            "StopUnit",
            "s",
            "web.service",
        ],
        &[
            "call",
            NAME,
            "/org/corral1",
            MANAGER,
            "RestartUnit",
            "s",
            "web.service",
        ],
        &[
            "call",
            NAME,
            "/org/corral1",
            MANAGER,
            "KillUnit",
            "si",
            "web.service",
            "9",
        ],
        &[
            "call",
            NAME,
            "/org/corral1",
            MANAGER,
            "FreezeUnit",
            "s",
            "web.service",
        ],
        &[
            "call",
            NAME,
            "/org/corral1",
            MANAGER,
            "SetUnitLimits",
            "sa{sv}b",
            "web.service",
            "1",
            "memory-max",
            "s",
            "64M",
            "true",
        ],
        &["call", NAME, "/org/corral1", MANAGER, "Reload"],
        &["call", NAME, WEB, UNIT, "Stop"],
        &["call", NAME, WEB, UNIT, "Kill", "i", "9"],
    ];
    for call in denied {
        let out = busctl(&address, Some(NOBODY), call);
        assert!(rejected(&out), "{call:?} as uid 65534: {}", show(&out));
    }
    // Nothing of that happened.
    assert_web_property(&address, None, "ActiveState", "s \"active\"");
    assert_web_property(&address, None, "NRestarts", "u 0");

    // corralctl as uid 65534 falls back to the bus: reads, and is refused a start.
    let out = ctl_as_nobody(&address, &["list"]);
    assert!(
        out.status.success() && stdout(&out).contains("web.service"),
        "{}",
        show(&out)
    );
    let out = ctl_as_nobody(&address, &["status", "web.service"]);
    assert!(stdout(&out).contains("active (running)"), "{}", show(&out));
    // busctl words every AccessDenied alike; corralctl shows corrald's own message, which
    // says it judged the sender's uid (the bus itself would not know what the method does).
    for args in [
        &["stop", "web.service"][..],
        &["start", "web.service"],
        &["limit", "web.service", "memory-max=64M", "--runtime"],
        &["kill", "web.service"],
        &["freeze", "web.service"],
    ] {
        let out = ctl_as_nobody(&address, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("AccessDenied")
                && err.contains("the caller is uid 65534"),
            "corralctl {args:?} as uid 65534: {}",
            show(&out)
        );
    }

    // The bus daemon dies (SIGKILL: its socket file stays) and comes back.
    drop(client);
    bus.kill();
    assert!(socket.exists(), "a killed dbus-daemon leaves its socket");
    let out = d.ctl(&["status", "web.service"]);
    assert!(
        stdout(&out).contains("active (running)"),
        "the private socket keeps serving: {}",
        show(&out)
    );
    let bus = start_bus(&config, &address);
    assert_web_property(&address, None, "ActiveState", "s \"active\"");
    // And root still changes state through it.
    let out = busctl(
        &address,
        None,
        &[
            "call",
            NAME,
            "/org/corral1",
            MANAGER,
            "StopUnit",
            "s",
            "web.service",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));

    // daemon-reexec through the bus (root, and no private socket at the default path):
    // corralctl returns once org.corral1 has passed to the re-executed daemon.
    let reexecs = if Path::new(corral::ctl::client::DEFAULT_SOCKET).exists() {
        eprintln!("daemon-reexec over the bus not tried: this machine runs a corrald");
        0
    } else {
        let out = bus::command_as(None, env!("CARGO_BIN_EXE_corralctl"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .arg("daemon-reexec")
            .output()
            .expect("running corralctl");
        assert!(out.status.success(), "{}", show(&out));
        assert_web_property(&address, None, "ActiveState", "s \"inactive\"");
        1
    };

    drop(bus);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert_eq!(log.matches("re-executing").count(), reexecs, "{log}");
    assert_eq!(
        log.matches("acquired org.corral1").count(),
        2 + reexecs,
        "{log}"
    );
    assert!(log.contains("disconnected from the system bus"), "{log}");
    // The bus coming and going is news, not trouble.
    assert!(!log.contains("WARN"), "{log}");
}

/// DESIGN §1: a well-known name already owned by another daemon is a warning, not a failure.
/// corrald names the owner in its log and serves the whole API on its unique name. (A
/// session-like bus, so that root may call a unique name; the system policy opens only
/// `org.corral1`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_owned_by_another_is_a_warning_and_the_api_stays_on_the_unique_name() {
    if let Some(why) = bus::missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus");
    let config = dir.path().join("bus.conf");
    std::fs::write(&config, bus::session_config(&socket)).expect("writing the bus configuration");
    let bus = Bus::start(&config, None);
    let other = zbus::connection::Builder::address(bus.address.as_str())
        .expect("address")
        .name(NAME)
        .expect("name")
        .build()
        .await
        .expect("the other owner takes org.corral1");
    let other_name = other.unique_name().expect("a unique name").to_string();

    let units = [(
        "web.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
    )];
    let address = format!("unix:path={}", socket.display());
    let Some(d) = Daemon::start_on_bus(
        "busname",
        &units,
        &[("DBUS_SYSTEM_BUS_ADDRESS", Path::new(&address))],
    ) else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
    };
    // corrald's connection: the unique name whose process is corrald.
    let driver = zbus::fdo::DBusProxy::new(&other).await.expect("bus proxy");
    let pid = d.child.id();
    let mut corrald_name = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while corrald_name.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "corrald never connected to the bus"
        );
        for name in driver.list_names().await.expect("ListNames") {
            if name.starts_with(':')
                && driver
                    .get_connection_unix_process_id(name.as_ref())
                    .await
                    .is_ok_and(|p| p == pid)
            {
                corrald_name = Some(name.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let corrald_name = corrald_name.unwrap_or_default();
    let out = busctl(
        &address,
        None,
        &["call", &corrald_name, "/org/corral1", MANAGER, "ListUnits"],
    );
    assert!(stdout(&out).contains("web.service"), "{}", show(&out));
    assert_eq!(
        bus::owner(&address, NAME),
        Some(format!("s \"{other_name}\"")),
        "the name stays with its owner"
    );

    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    let warning = format!(
        "org.corral1 is owned by {other_name} (pid {}, uid 0); serving on {corrald_name} only",
        std::process::id()
    );
    assert!(log.contains(&warning), "no {warning:?} in {log}");
    drop(bus);
}
