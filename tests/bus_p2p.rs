//! The D-Bus API over the private peer-to-peer socket, with a fake manager task that answers
//! [`Request`]s from a fixed table: a zbus client (p2p, EXTERNAL) and the real `busctl`
//! (systemd's sd-bus, which needs the `Hello` shim) call methods, read properties, introspect,
//! receive signals and get the stable error names; an unprivileged caller (busctl run through
//! `setpriv` as uid 65534) is refused state changes by the `SO_PEERCRED` check but can read.
//!
//! Needs `/usr/bin/busctl` and `setpriv`; the uid-switching test is skipped, with the reason
//! printed, when not run as root.

#[path = "common/skip.rs"]
mod skip;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use corral::bus::{
    Access, BUS_NAME, JobKind, LoadState, LogReply, MANAGER_INTERFACE, MANAGER_PATH, ManagerHandle,
    Mode, Notification, Notifier, PrivateServer, Request, RequestError, RequestReceiver,
    ServerError, ServerInfo, UNIT_INTERFACE, UnitProperties, UnitSummary, request_queue,
};
use corral::manager::request::{LogAccess, log_access};
use corral::manager::state::{ActiveState, JobResult, UnitResult};
use corral::unit::{Ident, UnitName};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::zvariant::OwnedObjectPath;
use zbus::{AuthMechanism, Connection, Proxy};

const CGROUP_ROOT: &str = "/sys/fs/cgroup/corral-test";
const TIMEOUT: Duration = Duration::from_secs(10);

fn name(s: &str) -> UnitName {
    UnitName::parse(s).expect("test unit names are valid")
}

fn status(
    unit: &str,
    active_state: ActiveState,
    sub_state: &'static str,
    main_pid: u32,
) -> UnitProperties {
    let unit = name(unit);
    UnitProperties {
        description: format!("the {unit} unit"),
        load_state: LoadState::Loaded,
        load_error: String::new(),
        active_state,
        sub_state,
        result: UnitResult::Success,
        main_pid,
        exit_status: 0,
        n_restarts: 0,
        control_group: format!("/system.slice/{unit}"),
        slice: "system.slice".into(),
        limits: vec![("memory-max".into(), "64M".into())],
        effective_limits: vec![("memory-max".into(), "64M".into(), unit.to_string())],
        usage: Default::default(),
        active_enter_timestamp: 0,
        freezer_state: "running".into(),
        name: unit,
    }
}

/// A unit whose property requests the fake manager counts (only one test uses it).
const COUNTED: &str = "counted.service";
static COUNTED_GETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static COUNTED_USAGE_GETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What a test tells the fake manager to do, as unit files appearing or going would.
enum Control {
    Add(Box<UnitProperties>),
    Remove(UnitName),
    /// From now on, end jobs without announcing `JobRemoved` (a lost signal).
    LoseJobResults,
    /// From now on, unload a unit once a stop has ended it, as a transient unit is.
    CollectOnStop,
    /// Announce this many state changes and job results in one turn, far more than the
    /// notification buffer holds: job ids from 100000 up.
    Burst(u32),
    /// Announce this many job results (only) in one turn, ids from `from` up.
    Jobs {
        from: u32,
        n: u32,
    },
}

/// The fake manager: one task owning a table, answering requests as the real one will.
async fn fake_manager(
    mut rx: RequestReceiver,
    mut control: mpsc::Receiver<Control>,
    notify: Notifier,
) {
    let mut units: BTreeMap<UnitName, UnitProperties> = [
        status("web.service", ActiveState::Active, "running", 4242),
        status("db.service", ActiveState::Inactive, "dead", 0),
        status("apps.slice", ActiveState::Active, "active", 0),
    ]
    .into_iter()
    .map(|s| (s.name.clone(), s))
    .collect();
    let mut next_job = 1;
    let mut lose_job_results = false;
    let mut collect_on_stop = false;
    loop {
        let req = tokio::select! {
            req = rx.recv() => match req {
                Some(req) => req,
                None => return,
            },
            Some(c) = control.recv() => {
                match c {
                    Control::Add(st) => {
                        let unit = st.name.clone();
                        units.insert(unit.clone(), *st);
                        let _ = notify.send(Notification::UnitAdded(unit));
                    }
                    Control::Remove(unit) => {
                        units.remove(&unit);
                        let _ = notify.send(Notification::UnitRemoved(unit));
                    }
                    Control::LoseJobResults => lose_job_results = true,
                    Control::CollectOnStop => collect_on_stop = true,
                    Control::Jobs { from, n } => {
                        for id in from..from + n {
                            notify.send(Notification::JobRemoved {
                                id,
                                unit: name("web.service"),
                                result: JobResult::Done,
                            });
                        }
                    }
                    Control::Burst(n) => {
                        for i in 0..n {
                            notify.send(Notification::UnitStateChanged {
                                unit: name("web.service"),
                                active_state: ActiveState::Active,
                                sub_state: "running",
                            });
                            notify.send(Notification::JobRemoved {
                                id: 100_000 + i,
                                unit: name("web.service"),
                                result: JobResult::Done,
                            });
                        }
                    }
                }
                continue;
            }
        };
        match req {
            Request::ListUnits { reply } => {
                let rows = units
                    .values()
                    .map(|s| UnitSummary {
                        name: s.name.clone(),
                        description: s.description.clone(),
                        load_state: s.load_state,
                        active_state: s.active_state,
                        sub_state: s.sub_state,
                    })
                    .collect();
                let _ = reply.send(rows);
            }
            Request::GetUnit { unit, reply } => {
                let found = units.contains_key(&unit);
                let _ = reply.send(if found {
                    Ok(())
                } else {
                    Err(RequestError::NoSuchUnit(unit))
                });
            }
            Request::GetProperties { unit, usage, reply } => {
                if unit.as_str() == COUNTED {
                    COUNTED_GETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if usage {
                        COUNTED_USAGE_GETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                let _ = reply.send(
                    units
                        .get(&unit)
                        .cloned()
                        .ok_or(RequestError::NoSuchUnit(unit)),
                );
            }
            // The live-control requests are the real manager's (tests/ctl_host.rs): here
            // they only need an answer, so the bus side's access checks can be shown.
            Request::KillUnit { reply, .. }
            | Request::Freeze { reply, .. }
            | Request::SetLimits { reply, .. }
            | Request::ResetFailed { reply, .. }
            | Request::SetProperties { reply, .. }
            | Request::AttachProcesses { reply, .. }
            | Request::KillMain { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            // org.freedesktop.systemd1 is the real manager's (tests/systemd1_host.rs).
            Request::StartBusTransient { reply, .. } => {
                let _ = reply.send(Err(RequestError::NotSupported("not here".into())));
            }
            Request::DiffLimits { reply, .. } => {
                let _ = reply.send(Ok(Vec::new()));
            }
            // web.service runs as the user nobody, every other unit as root: the decision is
            // the real manager's pure function, the name resolved by the bus layer.
            Request::GetLog {
                unit,
                reader,
                reply,
                ..
            } => {
                let user = (unit.as_str() == "web.service").then(|| Ident::Name("nobody".into()));
                let lines = LogReply::Lines(vec!["a line".into()]);
                let answer = match reader {
                    None => lines,
                    Some(reader) => match log_access(user.as_ref(), 0, &reader) {
                        LogAccess::Allowed => lines,
                        LogAccess::Resolve(user) => LogReply::Resolve(user),
                        LogAccess::Denied(who) => LogReply::Denied(format!(
                            "{unit} runs as {who}; the caller is uid {}",
                            reader.uid
                        )),
                    },
                };
                let _ = reply.send(Ok(answer));
            }
            Request::GetProcesses { reply, .. } => {
                let _ = reply.send(Ok(vec![(777, "/bin/sleep 1".into())]));
            }
            Request::StartTransient { unit, reply, .. } => {
                // Running at once, its job announced; it ends when a test replaces it.
                let id = next_job;
                next_job += 1;
                units.insert(
                    unit.clone(),
                    status(unit.as_str(), ActiveState::Active, "running", 778),
                );
                let _ = notify.send(Notification::UnitAdded(unit.clone()));
                let _ = reply.send(Ok(id));
                let _ = notify.send(Notification::JobRemoved {
                    id,
                    unit,
                    result: JobResult::Done,
                });
            }
            Request::Enable { reply, .. } | Request::Shutdown { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            Request::GetUnitFiles { reply, .. } => {
                let _ = reply.send(Ok(Vec::new()));
            }
            Request::Reload { reply } => {
                let _ = reply.send(Vec::new());
            }
            Request::QueueJob { unit, kind, reply } => {
                let Some(st) = units.get_mut(&unit) else {
                    let _ = reply.send(Err(RequestError::NoSuchUnit(unit)));
                    continue;
                };
                let id = next_job;
                next_job += 1;
                let _ = reply.send(Ok(id));
                (st.active_state, st.sub_state, st.main_pid) = match kind {
                    JobKind::Start | JobKind::Restart => (ActiveState::Active, "running", 777),
                    JobKind::Stop => (ActiveState::Inactive, "dead", 0),
                };
                let _ = notify.send(Notification::UnitStateChanged {
                    unit: unit.clone(),
                    active_state: st.active_state,
                    sub_state: st.sub_state,
                });
                if !lose_job_results {
                    let _ = notify.send(Notification::JobRemoved {
                        id,
                        unit: unit.clone(),
                        result: JobResult::Done,
                    });
                }
                if collect_on_stop && kind == JobKind::Stop {
                    units.remove(&unit);
                    let _ = notify.send(Notification::UnitRemoved(unit));
                }
            }
        }
    }
}

/// A server on a temporary socket with the fake manager behind it.
struct Fixture {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    server: Option<PrivateServer>,
    control: mpsc::Sender<Control>,
    /// Each live connection task holds one subscription.
    notify: Notifier,
}

/// A fake manager task and the handle the bus layer uses to reach it.
fn spawn_fake_manager() -> (ManagerHandle, mpsc::Sender<Control>, Notifier) {
    let (tx, rx) = request_queue();
    let (control_tx, control_rx) = mpsc::channel(16);
    let notify = Notifier::new(64);
    tokio::spawn(fake_manager(rx, control_rx, notify.clone()));
    (ManagerHandle::new(tx, notify.clone()), control_tx, notify)
}

impl Fixture {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // Below a directory that does not exist yet: the server creates it.
        let sock = dir.path().join("run/corral/private");
        let (manager, control, notify) = spawn_fake_manager();
        let server = PrivateServer::bind(
            &sock,
            ServerInfo::new(Mode::System, CGROUP_ROOT),
            Access::for_mode(Mode::System),
            manager,
        )
        .expect("binding the private socket");
        Fixture {
            _dir: dir,
            sock,
            server: Some(server),
            control,
            notify,
        }
    }

    /// The fake manager loads `late.service` (inactive) and announces it.
    async fn add_late_service(&self) {
        self.control
            .send(Control::Add(Box::new(status(
                "late.service",
                ActiveState::Inactive,
                "dead",
                0,
            ))))
            .await
            .expect("the fake manager runs");
    }

    /// Only for tests of the uid checks: lets uid 65534 reach the socket, so that the uid
    /// check is what refuses it (the temp dir is 0700, the socket 0600).
    fn open_to_everyone(&self) {
        let mut dir = self.sock.as_path();
        while let Some(parent) = dir.parent() {
            if parent == std::env::temp_dir() || parent == Path::new("/") {
                break;
            }
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).expect("chmod dir");
            dir = parent;
        }
        fs::set_permissions(&self.sock, fs::Permissions::from_mode(0o666)).expect("chmod socket");
    }

    async fn client(&self) -> Connection {
        let stream = tokio::net::UnixStream::connect(&self.sock)
            .await
            .expect("connecting to the private socket");
        tokio::time::timeout(
            TIMEOUT,
            zbus::connection::Builder::unix_stream(stream)
                .p2p()
                .auth_mechanism(AuthMechanism::External)
                .build(),
        )
        .await
        .expect("authentication timed out")
        .expect("p2p client connection")
    }

    /// Runs busctl against the socket (as `uid` through setpriv, if given), off the runtime.
    async fn busctl(&self, uid: Option<u32>, args: &[&str]) -> Output {
        let mut cmd = match uid {
            None => Command::new("busctl"),
            Some(uid) => {
                let uid = uid.to_string();
                let mut c = Command::new("setpriv");
                c.args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "busctl"]);
                c
            }
        };
        cmd.arg(format!("--address=unix:path={}", self.sock.display()))
            .arg("--no-pager")
            .args(args)
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_LOG_LEVEL", "debug");
        let shown = format!("{cmd:?}");
        tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("busctl thread")
            .unwrap_or_else(|e| panic!("running {shown}: {e}"))
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "busctl failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Reads the unit object at `path` until it is gone (`UnknownObject`), for up to [`TIMEOUT`].
async fn until_unknown(conn: &Connection, path: &'static str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let unit = Proxy::new(conn, BUS_NAME, path, UNIT_INTERFACE)
            .await
            .expect("proxy");
        match unit.get_property::<String>("ActiveState").await {
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline, "{path} never went");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                assert_eq!(error_name(&e), "org.freedesktop.DBus.Error.UnknownObject");
                return;
            }
        }
    }
}

async fn manager_proxy(conn: &Connection) -> Proxy<'static> {
    Proxy::new(conn, BUS_NAME, MANAGER_PATH, MANAGER_INTERFACE)
        .await
        .expect("manager proxy")
}

/// The D-Bus error name of a failed call.
fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        zbus::Error::FDO(e) => zbus::DBusError::name(&**e).to_string(),
        other => panic!("expected a D-Bus error reply, got {other:?}"),
    }
}

type Row = (String, String, String, String, String, OwnedObjectPath);

#[tokio::test]
async fn zbus_client_lists_units_and_reads_properties() {
    let fx = Fixture::start();
    let conn = fx.client().await;
    let manager = manager_proxy(&conn).await;

    let rows: Vec<Row> = manager.call("ListUnits", &()).await.expect("ListUnits");
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["apps.slice", "db.service", "web.service"]);
    let web = &rows[2];
    assert_eq!(
        (
            web.1.as_str(),
            web.2.as_str(),
            web.3.as_str(),
            web.4.as_str()
        ),
        ("the web.service unit", "loaded", "active", "running")
    );
    assert_eq!(web.5.as_str(), "/org/corral1/unit/web_2eservice");

    let path: OwnedObjectPath = manager
        .call("GetUnit", &("web.service",))
        .await
        .expect("GetUnit");
    assert_eq!(path.as_str(), "/org/corral1/unit/web_2eservice");
    let root: OwnedObjectPath = manager.call("GetUnit", &("apps.slice",)).await.unwrap();
    assert_eq!(root.as_str(), "/org/corral1/unit/apps_2eslice");

    let version: String = manager.get_property("Version").await.expect("Version");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let mode: String = manager.get_property("Mode").await.expect("Mode");
    assert_eq!(mode, "system");
    let root: String = manager
        .get_property("CgroupRoot")
        .await
        .expect("CgroupRoot");
    assert_eq!(root, CGROUP_ROOT);

    let unit = Proxy::new(&conn, BUS_NAME, path, UNIT_INTERFACE)
        .await
        .expect("unit proxy");
    let get = |p: &'static str| {
        let unit = unit.clone();
        async move {
            unit.get_property::<String>(p)
                .await
                .unwrap_or_else(|e| panic!("{p}: {e}"))
        }
    };
    assert_eq!(get("Name").await, "web.service");
    assert_eq!(get("Kind").await, "service");
    assert_eq!(get("ActiveState").await, "active");
    assert_eq!(get("SubState").await, "running");
    assert_eq!(get("Result").await, "success");
    assert_eq!(get("LoadState").await, "loaded");
    assert_eq!(get("ControlGroup").await, "/system.slice/web.service");
    let pid: u32 = unit.get_property("MainPID").await.expect("MainPID");
    assert_eq!(pid, 4242);
}

#[tokio::test]
async fn errors_have_stable_names() {
    let fx = Fixture::start();
    let conn = fx.client().await;
    let manager = manager_proxy(&conn).await;

    let e = manager
        .call::<_, _, OwnedObjectPath>("GetUnit", &("nope.service",))
        .await
        .expect_err("unknown unit");
    assert_eq!(error_name(&e), "org.corral1.Error.NoSuchUnit");
    for bad in ["../etc.service", "web", "a/b.service", ""] {
        let e = manager
            .call::<_, _, OwnedObjectPath>("GetUnit", &(bad,))
            .await
            .expect_err("bad name");
        assert_eq!(error_name(&e), "org.corral1.Error.InvalidUnit", "{bad:?}");
    }
    let e = manager
        .call::<_, _, u32>("StartUnit", &("nope.service",))
        .await
        .expect_err("unknown unit");
    assert_eq!(error_name(&e), "org.corral1.Error.NoSuchUnit");

    // busctl shows the same name in its debug log.
    let out = fx
        .busctl(
            None,
            &[
                "call",
                BUS_NAME,
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "GetUnit",
                "s",
                "nope.service",
            ],
        )
        .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("error-name=org.corral1.Error.NoSuchUnit"),
        "stderr: {err}"
    );
    assert!(err.contains("nope.service is not loaded"), "stderr: {err}");
}

#[tokio::test]
async fn busctl_calls_reads_and_introspects() {
    let fx = Fixture::start();

    let out = fx
        .busctl(
            None,
            &[
                "call",
                BUS_NAME,
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "ListUnits",
            ],
        )
        .await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.starts_with("a(ssssso) 3 \"apps.slice\""), "{text}");
    assert!(
        text.contains(
            "\"web.service\" \"the web.service unit\" \"loaded\" \"active\" \"running\" \
             \"/org/corral1/unit/web_2eservice\""
        ),
        "{text}"
    );

    let out = fx
        .busctl(
            None,
            &[
                "get-property",
                BUS_NAME,
                "/org/corral1/unit/web_2eservice",
                UNIT_INTERFACE,
                "ActiveState",
            ],
        )
        .await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "s \"active\"\n");

    let out = fx
        .busctl(
            None,
            &[
                "get-property",
                BUS_NAME,
                "/org/corral1/unit/web_2eservice",
                UNIT_INTERFACE,
                "MainPID",
            ],
        )
        .await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "u 4242\n");

    let out = fx
        .busctl(None, &["introspect", BUS_NAME, MANAGER_PATH])
        .await;
    assert_ok(&out);
    let text = stdout(&out);
    for needle in [
        "org.corral1.Manager",
        ".ListUnits",
        ".GetUnit",
        ".StartUnit",
        ".StopUnit",
        ".JobRemoved",
        ".UnitStateChanged",
        ".Version",
        ".CgroupRoot",
        "org.freedesktop.DBus.Properties",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with(".ListUnits")
            && l.contains("method")
            && l.contains("a(ssssso)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(".JobRemoved") && l.contains("signal") && l.contains("uss")),
        "{text}"
    );

    let out = fx
        .busctl(
            None,
            &["introspect", BUS_NAME, "/org/corral1/unit/apps_2eslice"],
        )
        .await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("org.corral1.Unit"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(".ActiveState") && l.contains("\"active\"")),
        "{text}"
    );

    // Unit objects are listed as children for tree walkers (`busctl tree`).
    let out = fx.busctl(None, &["tree", BUS_NAME]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("/org/corral1/unit/db_2eservice"), "{text}");
}

#[tokio::test]
async fn state_changes_need_the_privileged_uid_and_end_with_job_removed() {
    if !nix::unistd::geteuid().is_root() {
        skip::skipped("switching to uid 65534 needs root");
        return;
    }
    let fx = Fixture::start();
    let mode = fs::metadata(&fx.sock).expect("socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private socket is 0600");

    fx.open_to_everyone();

    let nobody = Some(65534);
    for (path, iface, method, args) in [
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "StartUnit",
            &["s", "web.service"][..],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "StopUnit",
            &["s", "web.service"],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "RestartUnit",
            &["s", "web.service"],
        ),
        (
            "/org/corral1/unit/web_2eservice",
            UNIT_INTERFACE,
            "Start",
            &[],
        ),
        (
            "/org/corral1/unit/web_2eservice",
            UNIT_INTERFACE,
            "Stop",
            &[],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "KillUnit",
            &["si", "web.service", "15"],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "FreezeUnit",
            &["s", "web.service"],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "ThawUnit",
            &["s", "web.service"],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "SetUnitLimits",
            &[
                "sa{sv}b",
                "web.service",
                "1",
                "memory-max",
                "s",
                "64M",
                "false",
            ],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "StartTransientUnit",
            &["ss", "t.service", "[service]\nexec = [\"/bin/true\"]\n"],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "EnableUnit",
            &["s", "web.service"],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "DisableUnit",
            &["s", "web.service"],
        ),
        (MANAGER_PATH, MANAGER_INTERFACE, "Reload", &[]),
        (MANAGER_PATH, MANAGER_INTERFACE, "Reexec", &[]),
        (MANAGER_PATH, MANAGER_INTERFACE, "PowerOff", &[]),
        (MANAGER_PATH, MANAGER_INTERFACE, "Reboot", &[]),
        (
            "/org/corral1/unit/web_2eservice",
            UNIT_INTERFACE,
            "Kill",
            &["i", "15"],
        ),
        (
            "/org/corral1/unit/web_2eservice",
            UNIT_INTERFACE,
            "Freeze",
            &[],
        ),
        (
            "/org/corral1/unit/web_2eservice",
            UNIT_INTERFACE,
            "Thaw",
            &[],
        ),
        (
            "/org/corral1/unit/web_2eservice",
            UNIT_INTERFACE,
            "SetLimits",
            &["a{sv}b", "1", "pids-max", "t", "64", "true"],
        ),
    ] {
        let mut argv = vec!["call", BUS_NAME, path, iface, method];
        argv.extend_from_slice(args);
        let out = fx.busctl(nobody, &argv).await;
        assert!(!out.status.success(), "{method} as uid 65534 succeeded");
        let err = stderr(&out);
        assert!(
            err.contains("error-name=org.freedesktop.DBus.Error.AccessDenied"),
            "{method}: {err}"
        );
        assert!(err.contains("the caller is uid 65534"), "{method}: {err}");
    }
    // Reading stays open to the unprivileged caller.
    let out = fx
        .busctl(
            nobody,
            &[
                "call",
                BUS_NAME,
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "ListUnits",
            ],
        )
        .await;
    assert_ok(&out);
    let out = fx
        .busctl(
            nobody,
            &[
                "get-property",
                BUS_NAME,
                "/org/corral1/unit/web_2eservice",
                UNIT_INTERFACE,
                "SubState",
            ],
        )
        .await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "s \"running\"\n", "nothing was stopped");

    // As root: subscribe first, then start; the job's id comes back at once and JobRemoved
    // carries it.
    let conn = fx.client().await;
    let manager = manager_proxy(&conn).await;
    let mut removed = manager
        .receive_signal("JobRemoved")
        .await
        .expect("subscribing to JobRemoved");
    let mut changed = manager
        .receive_signal("UnitStateChanged")
        .await
        .expect("subscribing to UnitStateChanged");
    let unit = Proxy::new(
        &conn,
        BUS_NAME,
        "/org/corral1/unit/db_2eservice",
        UNIT_INTERFACE,
    )
    .await
    .expect("unit proxy");
    let mut active = unit.receive_property_changed::<String>("ActiveState").await;
    let initial = tokio::time::timeout(TIMEOUT, active.next())
        .await
        .expect("initial ActiveState")
        .expect("property stream");
    assert_eq!(initial.get().await.expect("ActiveState"), "inactive");

    let job: u32 = manager
        .call("StartUnit", &("db.service",))
        .await
        .expect("StartUnit as root");
    let msg = tokio::time::timeout(TIMEOUT, removed.next())
        .await
        .expect("JobRemoved within the timeout")
        .expect("signal stream");
    let (id, unit_name, result): (u32, String, String) =
        msg.body().deserialize().expect("JobRemoved(uss)");
    assert_eq!(
        (id, unit_name.as_str(), result.as_str()),
        (job, "db.service", "done")
    );

    let msg = tokio::time::timeout(TIMEOUT, changed.next())
        .await
        .expect("UnitStateChanged within the timeout")
        .expect("signal stream");
    let body: (String, String, String) = msg.body().deserialize().expect("(sss)");
    assert_eq!(
        body,
        ("db.service".into(), "active".into(), "running".into())
    );

    let now = tokio::time::timeout(TIMEOUT, active.next())
        .await
        .expect("PropertiesChanged within the timeout")
        .expect("property stream");
    assert_eq!(now.get().await.expect("ActiveState"), "active");
    let pid: u32 = unit.get_property("MainPID").await.expect("MainPID");
    assert_eq!(pid, 777, "MainPID was invalidated, so it is read again");
}

#[tokio::test]
async fn unit_objects_follow_the_manager() {
    let fx = Fixture::start();
    let conn = fx.client().await;
    let introspect = |path: &'static str| {
        let conn = conn.clone();
        async move {
            let p = Proxy::new(&conn, BUS_NAME, path, "org.freedesktop.DBus.Introspectable")
                .await
                .expect("proxy");
            let xml: String = p.call("Introspect", &()).await.expect("Introspect");
            xml
        }
    };
    assert!(
        !introspect("/org/corral1/unit")
            .await
            .contains("late_2eservice")
    );

    fx.add_late_service().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !introspect("/org/corral1/unit")
        .await
        .contains("late_2eservice")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "late.service never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = Proxy::new(
        &conn,
        BUS_NAME,
        "/org/corral1/unit/late_2eservice",
        UNIT_INTERFACE,
    )
    .await
    .expect("proxy");
    let state: String = late.get_property("ActiveState").await.expect("ActiveState");
    assert_eq!(state, "inactive");

    fx.control
        .send(Control::Remove(name("web.service")))
        .await
        .expect("the fake manager runs");
    until_unknown(&conn, "/org/corral1/unit/web_2eservice").await;

    // A new connection sees the same set of objects from the start.
    let out = fx.busctl(None, &["tree", BUS_NAME]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("/org/corral1/unit/late_2eservice"), "{text}");
    assert!(!text.contains("web_2eservice"), "{text}");
}

/// A private-socket connection registers a unit's object at its client's first call to it
/// (src/bus/on_demand.rs): a unit path called cold works, one added after the
/// client connected too, and an unknown or removed one is `UnknownObject`.
#[tokio::test]
async fn unit_objects_are_there_at_a_clients_first_call() {
    let fx = Fixture::start();
    let conn = fx.client().await;
    let active_state = |path: &'static str| {
        let conn = conn.clone();
        async move {
            let p = Proxy::new(&conn, BUS_NAME, path, UNIT_INTERFACE)
                .await
                .expect("proxy");
            p.get_property::<String>("ActiveState").await
        }
    };
    // No GetUnit, ListUnits or Introspect first.
    assert_eq!(
        active_state("/org/corral1/unit/web_2eservice")
            .await
            .expect("web.service read cold"),
        "active"
    );
    let e = active_state("/org/corral1/unit/nope_2eservice")
        .await
        .expect_err("no such unit");
    assert_eq!(error_name(&e), "org.freedesktop.DBus.Error.UnknownObject");

    fx.add_late_service().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match active_state("/org/corral1/unit/late_2eservice").await {
            Ok(state) => {
                assert_eq!(state, "inactive");
                break;
            }
            Err(e) => {
                assert_eq!(error_name(&e), "org.freedesktop.DBus.Error.UnknownObject");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "late.service never appeared"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    // busctl, calling cold on a connection of its own, and then removal.
    let out = fx
        .busctl(
            None,
            &[
                "get-property",
                BUS_NAME,
                "/org/corral1/unit/late_2eservice",
                UNIT_INTERFACE,
                "SubState",
            ],
        )
        .await;
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), "s \"dead\"");
    fx.control
        .send(Control::Remove(name("late.service")))
        .await
        .expect("the fake manager runs");
    until_unknown(&conn, "/org/corral1/unit/late_2eservice").await;
}

/// Bug: in a burst larger than the notification buffer, a connection lost `JobRemoved`
/// signals (it only resynced its objects). Every job result must arrive; state changes may be
/// coalesced.
#[tokio::test]
async fn a_burst_never_loses_a_job_removed() {
    const N: u32 = 2000;
    let fx = Fixture::start();
    let conn = fx.client().await;
    let manager = manager_proxy(&conn).await;
    let mut removed = manager.receive_signal("JobRemoved").await.expect("match");
    fx.control
        .send(Control::Burst(N))
        .await
        .expect("fake manager");
    let mut ids = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        while ids.len() < N as usize {
            let msg = removed.next().await.expect("signal stream");
            let (id, _, _): (u32, String, String) = msg.body().deserialize().expect("(uss)");
            ids.push(id);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {N} JobRemoved arrived", ids.len()));
    assert_eq!(ids, (100_000..100_000 + N).collect::<Vec<u32>>());
}

/// corralctl's safety net: a job whose `JobRemoved` never comes ends once its unit is seen in
/// the state the job wanted, instead of waiting forever.
#[tokio::test]
async fn a_client_does_not_wait_forever_for_a_lost_job_removed() {
    let fx = Fixture::start();
    fx.control
        .send(Control::LoseJobResults)
        .await
        .expect("fake manager");
    let client = corral::ctl::client::Client::connect(fx.sock.clone())
        .await
        .expect("corralctl's client")
        .with_job_quiet(Duration::from_millis(200));
    for (method, unit) in [("StartUnit", "db.service"), ("StopUnit", "web.service")] {
        let result = tokio::time::timeout(TIMEOUT, client.job(method, unit, false))
            .await
            .unwrap_or_else(|_| panic!("{method} {unit}: still waiting"))
            .expect("the job");
        assert_eq!(result, "done", "{method} {unit}");
    }
}

/// Bug: a stop whose `JobRemoved` had not been read when corralctl's quiet spell ended read the
/// unit's state — and a transient unit is unloaded as soon as it has stopped, so the read
/// failed with NoSuchUnit and `corralctl stop` with it (seen when a stop took the whole
/// SIGTERM timeout, which is as long as the quiet spell). A stopped unit that is gone is done.
#[tokio::test]
async fn a_stop_is_done_when_its_unit_was_collected_before_the_client_looked() {
    let fx = Fixture::start();
    for c in [Control::LoseJobResults, Control::CollectOnStop] {
        fx.control.send(c).await.expect("fake manager");
    }
    let client = corral::ctl::client::Client::connect(fx.sock.clone())
        .await
        .expect("corralctl's client")
        .with_job_quiet(Duration::from_millis(200));
    let result = tokio::time::timeout(TIMEOUT, client.job("StopUnit", "web.service", false))
        .await
        .expect("still waiting")
        .expect("the stop of a unit collected once stopped");
    assert_eq!(result, "done");
}

/// `corralctl run --wait` waits for its unit's end through `UnitStateChanged`, which a slow
/// client may be spared (state changes are coalesced, unlike job results): when its unit ends
/// without one, it still notices after a quiet spell and returns the exit status.
#[tokio::test]
async fn run_wait_notices_an_end_it_was_not_told_of() {
    let fx = Fixture::start();
    let client = corral::ctl::client::Client::connect(fx.sock.clone())
        .await
        .expect("corralctl's client")
        .with_job_quiet(Duration::from_millis(200));
    let run = tokio::spawn(async move {
        client
            .transient("once.service", "[service]\nexec = [\"/bin/true\"]\n", true)
            .await
    });
    // Let it see the unit running, then end the unit without a state-change signal (the fake
    // manager announces a replaced unit only as added).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ended = status("once.service", ActiveState::Inactive, "dead", 0);
    ended.exit_status = 3;
    fx.control
        .send(Control::Add(Box::new(ended)))
        .await
        .expect("fake manager");
    let code = tokio::time::timeout(TIMEOUT, run)
        .await
        .expect("run --wait is still waiting")
        .expect("the task")
        .expect("the run");
    assert_eq!(code, Some(3));
}

#[tokio::test]
async fn a_closed_connection_ends_its_task() {
    let fx = Fixture::start();
    let wait_for = |n: usize| {
        let notify = fx.notify.clone();
        async move {
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            while notify.receiver_count() != n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} connection tasks, expected {n}",
                    notify.receiver_count()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let a = fx.client().await;
    let b = fx.client().await;
    wait_for(2).await;
    drop(a);
    wait_for(1).await;
    // A client that connects and never authenticates holds a task only until it hangs up.
    let silent = tokio::net::UnixStream::connect(&fx.sock)
        .await
        .expect("connect");
    wait_for(2).await;
    drop(silent);
    wait_for(1).await;
    drop(b);
    wait_for(0).await;
}

#[tokio::test]
async fn socket_is_0600_replaces_stale_and_refuses_live_or_foreign() {
    let mut fx = Fixture::start();
    let md = fs::metadata(&fx.sock).expect("socket");
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let runtime = fx.sock.parent().expect("parent");
    assert_eq!(
        fs::metadata(runtime)
            .expect("runtime dir")
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_dir(runtime).expect("runtime dir").count(),
        1,
        "no temporary socket is left behind"
    );

    let again = || {
        PrivateServer::bind(
            &fx.sock,
            ServerInfo::new(Mode::System, CGROUP_ROOT),
            Access::for_mode(Mode::System),
            spawn_fake_manager().0,
        )
    };
    // A live daemon's socket is not taken over.
    assert!(matches!(again(), Err(ServerError::InUse { .. })));

    // A stale socket (its server gone, the file left) is replaced. Dropping the server closes
    // the listener but leaves the file, as a crash would.
    let early = fx.client().await;
    drop(fx.server.take());
    tokio::time::timeout(TIMEOUT, early.closed())
        .await
        .expect("dropping the server ends its connections");
    assert!(fx.sock.exists());
    // A busctl that another test forks at this moment holds a copy of the listening socket
    // until it execs (close-on-exec), and the socket is live while it does: retry briefly.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let server = loop {
        match again() {
            Err(ServerError::InUse { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other.expect("replacing a stale socket"),
        }
    };
    let _client = fx.client().await;
    server.shutdown();
    assert!(!fx.sock.exists(), "shutdown removes the socket");

    // Something that is not a socket is never replaced.
    fs::write(&fx.sock, "not a socket").expect("write");
    assert!(matches!(again(), Err(ServerError::NotASocket { .. })));
}

/// `GetAll` is answered by zbus calling every getter: those of one call share one snapshot of
/// the unit (two questions to the manager, the second for the cgroup's usage figures) instead
/// of asking thirty times; a state property alone never reads usage; the next call is fresh.
#[tokio::test]
async fn get_all_asks_the_manager_once_per_kind_of_property() {
    use std::sync::atomic::Ordering::SeqCst;
    let fx = Fixture::start();
    fx.control
        .send(Control::Add(Box::new(status(
            COUNTED,
            ActiveState::Active,
            "running",
            42,
        ))))
        .await
        .expect("the fake manager runs");
    let conn = fx.client().await;
    let path = "/org/corral1/unit/counted_2eservice";
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let props = loop {
        let p = zbus::fdo::PropertiesProxy::builder(&conn)
            .destination(BUS_NAME)
            .expect("name")
            .path(path)
            .expect("path")
            .build()
            .await
            .expect("proxy");
        let iface = zbus::names::InterfaceName::from_static_str_unchecked(UNIT_INTERFACE);
        match p.get_all(iface).await {
            Ok(all) => break all,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "counted.service never appeared: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(props.len(), 27, "{:?}", props.keys());
    assert_eq!(u32::try_from(&props["MainPID"]).expect("MainPID is u"), 42);
    assert_eq!(COUNTED_GETS.load(SeqCst), 2, "one GetAll");
    assert_eq!(COUNTED_USAGE_GETS.load(SeqCst), 1, "one GetAll");

    let unit = zbus::proxy::Builder::<Proxy>::new(&conn)
        .destination(BUS_NAME)
        .expect("name")
        .path(path)
        .expect("path")
        .interface(UNIT_INTERFACE)
        .expect("interface")
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("proxy");
    for _ in 0..2 {
        let state: String = unit.get_property("ActiveState").await.expect("ActiveState");
        assert_eq!(state, "active");
    }
    assert_eq!(COUNTED_GETS.load(SeqCst), 4, "each Get is fresh");
    assert_eq!(
        COUNTED_USAGE_GETS.load(SeqCst),
        1,
        "a state property reads no usage"
    );
}

/// DESIGN §4: reading *contents* is root's. uid 65534 is refused `GetUnitFiles`,
/// `DiffUnitLimits`, `GetProcesses` and the log of a unit that runs as root, each with
/// `AccessDenied` saying why; it reads the log of web.service, which runs as the user nobody
/// (the name resolved off the manager's loop); root reads everything.
#[tokio::test]
async fn contents_are_for_root_and_a_log_for_its_units_user() {
    if !nix::unistd::geteuid().is_root() {
        skip::skipped("switching to uid 65534 needs root");
        return;
    }
    let fx = Fixture::start();
    fx.open_to_everyone();
    let web = "/org/corral1/unit/web_2eservice";
    let calls: [(&str, &str, &str, &[&str]); 4] = [
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "GetUnitFiles",
            &["s", "web.service"],
        ),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "DiffUnitLimits",
            &[
                "sa{sv}",
                "web.service",
                "1",
                "io-max",
                "s",
                "/etc/shadow rbps=2M",
            ],
        ),
        (web, UNIT_INTERFACE, "GetProcesses", &[]),
        (
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "GetUnitLog",
            &["su", "db.service", "5"],
        ),
    ];
    for (path, iface, method, args) in calls {
        let mut argv = vec!["call", BUS_NAME, path, iface, method];
        argv.extend_from_slice(args);
        let out = fx.busctl(Some(65534), &argv).await;
        let err = stderr(&out);
        assert!(
            !out.status.success()
                && err.contains("error-name=org.freedesktop.DBus.Error.AccessDenied"),
            "{method} as uid 65534: {err}"
        );
        assert!(err.contains("the caller is uid 65534"), "{method}: {err}");
        let out = fx.busctl(None, &argv).await;
        assert_ok(&out);
    }
    let log = [
        "call",
        BUS_NAME,
        MANAGER_PATH,
        MANAGER_INTERFACE,
        "GetUnitLog",
        "su",
        "web.service",
        "5",
    ];
    let out = fx.busctl(Some(65534), &log).await;
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), "as 1 \"a line\"");
    // Another unprivileged uid is not web.service's user.
    let out = fx.busctl(Some(65533), &log).await;
    let err = stderr(&out);
    assert!(
        err.contains("AccessDenied") && err.contains("user nobody (uid 65534)"),
        "{err}"
    );
}

/// A client that stops reading is dropped, and one that reads loses nothing: a raw client
/// authenticates and never reads its socket while the manager announces more job results than
/// a connection may leave unsent; a zbus client that reads gets every one of them, in turns
/// it keeps up with, and the stalled connection's task ends and its socket is shut.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_one_that_reads_loses_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ROUND: u32 = 1000;
    let rounds = (corral::bounds::MAX_PENDING_JOB_RESULTS as u32).div_ceil(ROUND) + 4;
    let fx = Fixture::start();
    let mut stalled = tokio::net::UnixStream::connect(&fx.sock)
        .await
        .expect("connect");
    let uid: String = nix::unistd::getuid()
        .as_raw()
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    stalled
        .write_all(format!("\0AUTH EXTERNAL {uid}\r\n").as_bytes())
        .await
        .expect("AUTH");
    let mut ok = [0u8; 128];
    let n = stalled.read(&mut ok).await.expect("the server's OK");
    assert!(
        ok[..n].starts_with(b"OK "),
        "{:?}",
        String::from_utf8_lossy(&ok[..n])
    );
    stalled.write_all(b"BEGIN\r\n").await.expect("BEGIN");

    let conn = fx.client().await;
    let manager = manager_proxy(&conn).await;
    let mut removed = manager.receive_signal("JobRemoved").await.expect("match");
    // Both connections are served (each holds a subscription) before anything is announced.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while fx.notify.receiver_count() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut next = 1;
    for round in 0..rounds {
        let from = round * ROUND + 1;
        fx.control
            .send(Control::Jobs { from, n: ROUND })
            .await
            .expect("the fake manager runs");
        tokio::time::timeout(TIMEOUT, async {
            while next < from + ROUND {
                let msg = removed.next().await.expect("signal stream");
                let (id, _, _): (u32, String, String) = msg.body().deserialize().expect("(uss)");
                assert_eq!(id, next, "job results in order, none lost");
                next += 1;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: the reading client stopped at {next}"));
    }
    // The stalled connection was dropped: its task is gone, its socket shut.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while fx.notify.receiver_count() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections still served",
            fx.notify.receiver_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(TIMEOUT, async {
        while stalled.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await
    .expect("the stalled client's socket ends");
}
