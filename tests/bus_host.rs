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
//! And DESIGN §4's "reading contents is root's", as an attacker with uid 65534 on the bus
//! would try it: a 0600 drop-in holding a token is never returned (`GetUnitFiles`, `corralctl
//! cat`), nor a root service's log or processes (`GetUnitLog`, `GetProcesses`, `corralctl
//! status`), nor a dry run that stats paths as root (`DiffUnitLimits`); the service that runs
//! as uid 65534 gets its own log.
//!
//! Needs root, a cgroup2 mount, `dbus-daemon`, `busctl` and `setpriv`; without them it says
//! why and skips.

#[path = "common/bus.rs"]
mod bus;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

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
        skip::skipped(why);
        return;
    }
    // Not even the directory of the socket exists when corrald starts.
    let bus::SystemBusDir {
        dir,
        socket,
        address,
        config,
    } = bus::SystemBusDir::new("dbus/system_bus_socket");

    let units = [(
        "web.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
    )];
    let Some(d) = Daemon::start_on_bus(
        "bus",
        &units,
        &[("DBUS_SYSTEM_BUS_ADDRESS", Path::new(&address))],
    ) else {
        skip::skipped("no cgroup2 mount on this host");
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
        skip::skipped(why);
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
        skip::skipped("no cgroup2 mount on this host");
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

/// What an unprivileged user on the bus can't read, and the one log it can (see the module
/// doc).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_user_reads_no_contents_but_its_own_units_log() {
    if let Some(why) = bus::missing_tools() {
        skip::skipped(why);
        return;
    }
    const TOKEN: &str = "tok-3f9a1c7e";
    const LOG_SECRET: &str = "log-secret-4242";
    const ARGV_SECRET: &str = "argv-secret-7777";
    let system = bus::SystemBusDir::new("system_bus_socket");
    let address = system.address.clone();
    let _bus = Bus::start(&system.config, None);
    let units = [
        (
            "chatty.service.toml",
            format!(
                "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sh\", \"-c\", \
                 \"echo {LOG_SECRET}; while :; do sleep 1000; done\", \"{ARGV_SECRET}\"]\n"
            ),
        ),
        (
            "chatty.service.d/10-token.toml",
            format!("[service]\nenvironment = {{ API_TOKEN = \"{TOKEN}\" }}\n"),
        ),
        (
            "mine.service.toml",
            "[unit]\nautostart = true\n[service]\nuser = \"nobody\"\n\
             exec = [\"/bin/sh\", \"-c\", \"echo nobody-line; exec sleep 1000\"]\n"
                .to_string(),
        ),
    ];
    let Some(d) = Daemon::start_on_bus(
        "contents",
        &units,
        &[("DBUS_SYSTEM_BUS_ADDRESS", Path::new(&address))],
    ) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let dropin = d.out_dir().join("units/chatty.service.d/10-token.toml");
    std::fs::set_permissions(&dropin, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    wait_for("corrald on the bus", Duration::from_secs(10), || {
        bus::owner(&address, NAME).is_some()
    });
    // Both services have written their line.
    let log_dir = d.out_dir().join("log");
    wait_for("the services' logs", Duration::from_secs(10), || {
        std::fs::read_to_string(log_dir.join("chatty.service.log"))
            .is_ok_and(|l| l.contains(LOG_SECRET))
            && std::fs::read_to_string(log_dir.join("mine.service.log"))
                .is_ok_and(|l| l.contains("nobody-line"))
    });
    let chatty = "/org/corral1/unit/chatty_2eservice";
    let m = |method: &'static str| ["call", NAME, "/org/corral1", MANAGER, method];
    let secret_free = |out: &Output| {
        let all = format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr));
        !all.contains(TOKEN) && !all.contains(LOG_SECRET) && !all.contains(ARGV_SECRET)
    };
    let attempts: Vec<Vec<&str>> = vec![
        [&m("GetUnitFiles")[..], &["s", "chatty.service"]].concat(),
        [&m("GetUnitLog")[..], &["su", "chatty.service", "100"]].concat(),
        [
            &m("DiffUnitLimits")[..],
            &[
                "sa{sv}",
                "chatty.service",
                "1",
                "io-max",
                "s",
                "/root/.probe rbps=2M",
            ],
        ]
        .concat(),
        vec!["call", NAME, chatty, UNIT, "GetProcesses"],
    ];
    for call in &attempts {
        let out = busctl(&address, Some(NOBODY), call);
        assert!(rejected(&out), "{call:?} as uid 65534: {}", show(&out));
        assert!(secret_free(&out), "{call:?} leaked: {}", show(&out));
        // Root may call each (and the secrets are there to be read; the dry run answers that
        // no such device exists, which is what it would tell an attacker about root's files).
        let out = busctl(&address, None, call);
        assert!(!rejected(&out), "{call:?} as root: {}", show(&out));
    }
    let out = busctl(&address, None, &attempts[0]);
    assert!(stdout(&out).contains(TOKEN), "{}", show(&out));
    let out = busctl(&address, None, &attempts[3]);
    assert!(stdout(&out).contains(ARGV_SECRET), "{}", show(&out));

    // corralctl as uid 65534 (through the bus): status without processes or log lines, and
    // a hint; cat and logs of the root service refused; its own service's log shown.
    let out = ctl_as_nobody(&address, &["status", "chatty.service"]);
    assert!(
        out.status.success() && stdout(&out).contains("active (running)") && secret_free(&out),
        "{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shown to root only"),
        "{}",
        show(&out)
    );
    for args in [&["cat", "chatty.service"][..], &["logs", "chatty.service"]] {
        let out = ctl_as_nobody(&address, args);
        assert!(
            !out.status.success() && secret_free(&out),
            "corralctl {args:?}: {}",
            show(&out)
        );
    }
    let out = ctl_as_nobody(&address, &["logs", "mine.service"]);
    assert!(
        out.status.success() && stdout(&out).contains("nobody-line"),
        "{}",
        show(&out)
    );
    let out = busctl(
        &address,
        Some(NOBODY),
        &[&m("GetUnitLog")[..], &["su", "mine.service", "5"]].concat(),
    );
    assert!(stdout(&out).contains("nobody-line"), "{}", show(&out));

    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}
