//! The `org.freedesktop.systemd1` subset (DESIGN §9) on systemd's private socket, against a real
//! corrald with `--systemd-compat` on a delegated host cgroup: every call with the argument
//! shapes runc, crun and kubelet send, and every kind of bad input answered with systemd's
//! error name and nothing changed.
//!
//! corrald runs in a mount namespace of its own with a tmpfs on `/run` and this test's
//! directory bind-mounted at `/run/systemd`, so `/run/systemd/private` and the
//! `/run/systemd/system` marker it makes are this test's (and the host's own, if any, are not
//! touched). The host's cgroup2 has no controllers, so limits are checked as the unit holds
//! them (`org.corral1` `Limits`); `tests/vm_containers.rs` proves them in the kernel. Needs
//! root (the namespace, the cgroup, moving processes); skipped with the reason otherwise.

#[path = "common/bus.rs"]
mod bus;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/golden.rs"]
mod golden;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/xml.rs"]
mod xml;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use daemon::{TestRoot, corrald_command, os_result, wait_for, with_private_run};
use futures_util::StreamExt;
use zbus::message::Type;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, MessageStream};

const NAME: &str = "org.freedesktop.systemd1";
const ROOT: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// corrald with `--systemd-compat`, its `/run/systemd` being `systemd_dir`.
struct Compat {
    child: Child,
    root: TestRoot,
    dir: tempfile::TempDir,
    /// Killed and started again: the marker is the first daemon's.
    restarted: bool,
}

/// corrald on `root` with its directories in `dir`, in a mount namespace where `/run` is a
/// tmpfs and `/run/systemd` is `dir/systemd`; its log appended to `dir/corrald.log`.
fn spawn(root: &Path, dir: &Path) -> Child {
    let systemd = dir.join("systemd");
    let source = CString::new(systemd.as_os_str().as_bytes()).expect("no NUL");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("corrald.log"))
        .expect("log file");
    let mut cmd = corrald_command(root, dir);
    cmd.args(["--no-bus", "--systemd-compat"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    with_private_run(&mut cmd, move || {
        // SAFETY: mount(2) on strings made before the fork.
        os_result(unsafe {
            libc::mount(
                source.as_ptr(),
                c"/run/systemd".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        })
    });
    cmd.spawn().expect("starting corrald")
}

impl Compat {
    fn start(name: &str, units: &[(&str, &str)]) -> Option<Compat> {
        let root = TestRoot::new(name)?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("systemd")).expect("mkdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::create_dir(dir.path().join("units")).expect("units");
        for (file, text) in units {
            std::fs::write(dir.path().join("units").join(file), text).expect("unit file");
        }
        let child = spawn(&root.0, dir.path());
        let c = Compat {
            child,
            root,
            dir,
            restarted: false,
        };
        c.wait_for_socket();
        Some(c)
    }

    fn wait_for_socket(&self) {
        let socket = self.socket();
        wait_for("/run/systemd/private", Duration::from_secs(10), || {
            socket.exists()
        });
    }

    /// SIGKILL (a crash: the scopes' processes stay), calls `between` while no corrald runs,
    /// then starts the daemon again on the same tree.
    fn crash_and_restart_with(&mut self, between: impl FnOnce()) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        between();
        let _ = std::fs::remove_file(self.socket());
        self.child = spawn(&self.root.0, self.dir.path());
        self.restarted = true;
        self.wait_for_socket();
    }

    fn systemd_dir(&self) -> PathBuf {
        self.dir.path().join("systemd")
    }

    fn socket(&self) -> PathBuf {
        self.systemd_dir().join("private")
    }

    /// A client on `/run/systemd/private` as go-systemd makes one: peer to peer, EXTERNAL,
    /// no `Hello`.
    async fn client(&self) -> Connection {
        daemon::p2p_client(&self.socket()).await
    }

    /// corralctl on corrald's own socket.
    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_corralctl"))
            .arg("--address")
            .arg(format!(
                "unix:path={}",
                self.dir.path().join("run/private").display()
            ))
            .args(args)
            .output()
            .expect("corralctl");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// SIGTERM and the exit; returns the daemon's log.
    fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "corrald ended with {status}");
        let log = std::fs::read_to_string(self.dir.path().join("corrald.log")).unwrap_or_default();
        assert!(
            self.restarted || !self.systemd_dir().join("system").exists(),
            "the marker goes with the daemon that made it"
        );
        let _ = &self.root;
        log
    }
}

impl Drop for Compat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A property as an `(sv)` entry.
fn prop<'a>(name: &'a str, v: impl Into<Value<'a>>) -> (&'a str, Value<'a>) {
    (name, v.into())
}

type Props<'a> = Vec<(&'a str, Value<'a>)>;

/// The D-Bus error name of a failed call.
fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        zbus::Error::FDO(e) => zbus::DBusError::name(&**e).to_string(),
        other => format!("{other:?}"),
    }
}

async fn call<B>(conn: &Connection, member: &str, body: &B) -> zbus::Result<zbus::Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(Some(NAME), ROOT, Some(MANAGER), member, body)
        .await
}

async fn start_transient(conn: &Connection, name: &str, props: Props<'_>) -> zbus::Result<String> {
    let aux: Vec<(&str, Props<'_>)> = Vec::new();
    let reply = call(conn, "StartTransientUnit", &(name, "fail", props, aux)).await?;
    let path: OwnedObjectPath = reply.body().deserialize()?;
    Ok(path.to_string())
}

/// `JobRemoved(uoss)` signals arriving on `conn`.
async fn job_results(conn: &Connection) -> MessageStream {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface(MANAGER)
        .expect("interface")
        .member("JobRemoved")
        .expect("member")
        .build();
    MessageStream::for_match_rule(rule, conn, Some(1024))
        .await
        .expect("subscribing to JobRemoved")
}

/// Waits for the job at `path`; returns (unit, result).
async fn job_end(results: &mut MessageStream, path: &str) -> (String, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), results.next())
            .await
            .unwrap_or_else(|_| panic!("no JobRemoved for {path} in 20 s"))
            .expect("signal stream")
            .expect("a signal");
        let (_, job, unit, result): (u32, OwnedObjectPath, String, String) =
            msg.body().deserialize().expect("(uoss)");
        if job.as_str() == path {
            return (unit, result);
        }
    }
}

async fn unit_prop(conn: &Connection, unit: &str, iface: &str, name: &str) -> zbus::Result<String> {
    let reply = call(conn, "GetUnit", &(unit,)).await?;
    let path: OwnedObjectPath = reply.body().deserialize()?;
    let reply = conn
        .call_method(
            Some(NAME),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(iface, name),
        )
        .await?;
    let v: OwnedValue = reply.body().deserialize()?;
    String::try_from(v).map_err(Into::into)
}

/// The cgroup a process is in, relative to the mount.
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .unwrap_or_default()
}

fn sleeper() -> Child {
    Command::new("sleep").arg("300").spawn().expect("sleep")
}

/// The cgroup root as the kernel shows it in `/proc/PID/cgroup`.
fn root_rel(root: &Path) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mount = corral::cgroup::ownership::parse_mountinfo(&mountinfo).expect("cgroup2");
    format!(
        "/{}",
        root.strip_prefix(&mount.mount_point)
            .expect("under the mount")
            .display()
    )
}

/// The names of every unit (through org.corral1 on the same socket).
async fn unit_names(conn: &Connection) -> Vec<String> {
    let reply = conn
        .call_method(
            Some("org.corral1"),
            "/org/corral1",
            Some("org.corral1.Manager"),
            "ListUnits",
            &(),
        )
        .await
        .expect("ListUnits");
    let rows: Vec<(String, String, String, String, String, OwnedObjectPath)> =
        reply.body().deserialize().expect("a(ssssso)");
    rows.into_iter().map(|r| r.0).collect()
}

fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (a mount namespace, a cgroup, moving processes)".into());
    }
    None
}

/// runc's scope and kubelet's pod slice, with the calls each makes, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_make_scopes_and_slices_over_the_private_socket() {
    if let Some(why) = missing() {
        skip::skipped(why);
        return;
    }
    let Some(d) = Compat::start("systemd1", &[]) else {
        skip::skipped("no cgroup2 mount");
        return;
    };
    assert!(
        d.systemd_dir().join("system").is_dir(),
        "the sd_booted marker is made"
    );
    let conn = d.client().await;
    // runc waits for JobRemoved on a second connection.
    let signals = d.client().await;
    let mut results = job_results(&signals).await;

    // Version, read as go-systemd reads it.
    let reply = conn
        .call_method(
            Some(NAME),
            ROOT,
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(MANAGER, "Version"),
        )
        .await
        .expect("Version");
    let v: OwnedValue = reply.body().deserialize().expect("v");
    assert_eq!(String::try_from(v).unwrap(), "252");

    // kubelet: the pod slice, with no PIDs, Wants= its parent; the parents are implied.
    let pod = "kubepods-besteffort-pod1.slice";
    let job = start_transient(
        &conn,
        pod,
        vec![
            prop(
                "Description",
                "libcontainer container kubepods-besteffort-pod1.slice",
            ),
            prop("Wants", vec!["kubepods-besteffort.slice"]),
            prop("MemoryAccounting", true),
            prop("CPUAccounting", true),
            prop("IOAccounting", true),
            prop("TasksAccounting", true),
            prop("DefaultDependencies", false),
        ],
    )
    .await
    .expect("the pod slice");
    assert!(job.starts_with("/org/freedesktop/systemd1/job/"), "{job}");
    assert_eq!(
        job_end(&mut results, &job).await,
        (pod.into(), "done".into())
    );
    let pod_dir = d
        .root
        .0
        .join("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice");
    assert!(pod_dir.is_dir(), "{}", pod_dir.display());
    // kubelet ignores UnitExists for a slice it made before.
    let e = start_transient(&conn, pod, Vec::new()).await.unwrap_err();
    assert_eq!(error_name(&e), "org.freedesktop.systemd1.UnitExists", "{e}");
    // Then its limits, as kubelet's Set sends them.
    call(
        &conn,
        "SetUnitProperties",
        &(
            pod,
            true,
            vec![
                prop("MemoryMax", 256u64 << 20),
                prop("CPUWeight", 2u64),
                prop("CPUQuotaPerSecUSec", u64::MAX),
                prop("TasksMax", u64::MAX),
            ],
        ),
    )
    .await
    .expect("SetUnitProperties on the pod slice");

    // runc: the container's scope, adopting its init by PID, delegated.
    let mut init = sleeper();
    let scope = "cri-containerd-c1.scope";
    let device_allow: Vec<(&str, &str)> = vec![("/dev/null", "rwm")];
    let job = start_transient(
        &conn,
        scope,
        vec![
            prop("Description", "libcontainer container c1"),
            prop("Slice", pod),
            prop("Delegate", true),
            prop("PIDs", vec![init.id()]),
            prop("MemoryAccounting", true),
            prop("CPUAccounting", true),
            prop("IOAccounting", true),
            prop("TasksAccounting", true),
            prop("DefaultDependencies", false),
            prop("DevicePolicy", "strict"),
            prop("DeviceAllow", device_allow),
        ],
    )
    .await
    .expect("the container's scope");
    assert_eq!(
        job_end(&mut results, &job).await,
        (scope.into(), "done".into())
    );
    let scope_rel = format!(
        "{}/kubepods.slice/kubepods-besteffort.slice/{pod}/{scope}",
        root_rel(&d.root.0)
    );
    assert_eq!(cgroup_of(init.id()), scope_rel, "its init is adopted");
    assert_eq!(
        unit_prop(&conn, scope, "org.freedesktop.systemd1.Unit", "ActiveState")
            .await
            .unwrap(),
        "active"
    );
    assert_eq!(
        unit_prop(&conn, scope, "org.freedesktop.systemd1.Unit", "SubState")
            .await
            .unwrap(),
        "running"
    );
    assert_eq!(
        unit_prop(
            &conn,
            scope,
            "org.freedesktop.systemd1.Scope",
            "ControlGroup"
        )
        .await
        .unwrap(),
        scope_rel
    );
    // A live duplicate is refused with the name runc looks for; nothing else changes.
    let e = start_transient(
        &conn,
        scope,
        vec![prop("PIDs", vec![init.id()]), prop("Slice", pod)],
    )
    .await
    .unwrap_err();
    assert_eq!(error_name(&e), "org.freedesktop.systemd1.UnitExists", "{e}");
    // The same unit through org.corral1: a scope, shown by list, status and tree.
    let list = d.ctl(&["list"]);
    assert!(list.contains(scope), "{list}");
    let status = d.ctl(&["status", scope]);
    assert!(status.contains("Active: active (running)"), "{status}");
    let tree = d.ctl(&["tree", pod]);
    assert!(tree.contains(scope), "{tree}");
    assert!(tree.contains(&init.id().to_string()), "{tree}");
    let kind = conn
        .call_method(
            Some("org.corral1"),
            "/org/corral1/unit/cri_2dcontainerd_2dc1_2escope",
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.corral1.Unit", "Kind"),
        )
        .await
        .expect("Kind");
    let kind: OwnedValue = kind.body().deserialize().unwrap();
    assert_eq!(String::try_from(kind).unwrap(), "scope");

    // runc update: the limits as runc 1.1 sends them, kept with the unit.
    call(
        &conn,
        "SetUnitProperties",
        &(
            scope,
            true,
            vec![
                prop("DevicePolicy", "strict"),
                prop("MemoryMax", 64u64 << 20),
                prop("CPUWeight", 50u64),
                prop("CPUQuotaPeriodUSec", 100_000u64),
                prop("CPUQuotaPerSecUSec", 250_000u64),
                prop("TasksMax", 20u64),
                prop("AllowedCPUs", vec![1u8]),
            ],
        ),
    )
    .await
    .expect("SetUnitProperties on the scope");
    let status = d.ctl(&["--json", "status", scope]);
    for want in [
        "\"memory-max\":\"64M\"",
        "\"cpu-max\":\"25%\"",
        "\"pids-max\":\"20\"",
        "\"cpu-weight\":\"50\"",
        "\"cpuset-cpus\":\"0\"",
    ] {
        assert!(status.contains(want), "{want} in {status}");
    }

    // AttachProcessesToUnit: another process, into a sub-cgroup of the delegated scope.
    let mut exec = sleeper();
    call(
        &conn,
        "AttachProcessesToUnit",
        &(scope, "/exec", vec![exec.id()]),
    )
    .await
    .expect("AttachProcessesToUnit");
    assert_eq!(cgroup_of(exec.id()), format!("{scope_rel}/exec"));

    // runc kill: the processes end; the scope is gone once empty.
    call(&conn, "KillUnit", &(scope, "all", libc::SIGKILL))
        .await
        .expect("KillUnit");
    let _ = init.wait();
    let _ = exec.wait();
    let gone = || async {
        matches!(call(&conn, "GetUnit", &(scope,)).await,
            Err(e) if error_name(&e) == "org.freedesktop.systemd1.NoSuchUnit")
    };
    for _ in 0..500 {
        if gone().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone().await, "the empty scope is gone");
    // runc delete: StopUnit of the gone scope is NoSuchUnit; its cgroup is removed.
    let e = call(&conn, "StopUnit", &(scope, "replace"))
        .await
        .unwrap_err();
    assert_eq!(error_name(&e), "org.freedesktop.systemd1.NoSuchUnit", "{e}");
    assert!(
        !pod_dir.join(scope).exists(),
        "the scope's cgroup is removed"
    );

    // A scope stopped with StopUnit: SIGTERM to its cgroup, done, gone.
    let mut a = sleeper();
    let mut b = sleeper();
    let job = start_transient(
        &conn,
        "run-r2.scope",
        vec![prop("PIDs", vec![a.id(), b.id()])],
    )
    .await
    .expect("a second scope");
    job_end(&mut results, &job).await;
    assert_eq!(
        cgroup_of(b.id()),
        format!("{}/system.slice/run-r2.scope", root_rel(&d.root.0))
    );
    let reply = call(&conn, "StopUnit", &("run-r2.scope", "replace"))
        .await
        .expect("StopUnit");
    let job: OwnedObjectPath = reply.body().deserialize().unwrap();
    assert_eq!(
        job_end(&mut results, job.as_str()).await.1,
        "done",
        "the stop job"
    );
    assert!(a.wait().unwrap().signal() == Some(libc::SIGTERM));
    assert!(b.wait().unwrap().signal() == Some(libc::SIGTERM));
    assert!(!d.root.0.join("system.slice/run-r2.scope").exists());

    // kubelet removes the pod: StopUnit of the slice, which goes; its parents stay.
    let reply = call(&conn, "StopUnit", &(pod, "replace"))
        .await
        .expect("StopUnit of the pod slice");
    let job: OwnedObjectPath = reply.body().deserialize().unwrap();
    assert_eq!(job_end(&mut results, job.as_str()).await.1, "done");
    assert!(!pod_dir.exists(), "the pod slice's cgroup is removed");
    let names = unit_names(&conn).await;
    assert!(!names.iter().any(|n| n == pod), "{names:?}");
    assert!(
        names.iter().any(|n| n == "kubepods-besteffort.slice"),
        "{names:?}"
    );
    d.stop();
}

use std::os::unix::process::ExitStatusExt;

/// Scopes and slices made over D-Bus have no file: the state file keeps them, and a daemon
/// started again after a crash (as after a re-exec) finds them, with their limits, and stops
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_units_survive_a_crash_of_the_daemon() {
    if let Some(why) = missing() {
        skip::skipped(why);
        return;
    }
    let Some(mut d) = Compat::start("systemd1-crash", &[]) else {
        skip::skipped("no cgroup2 mount");
        return;
    };
    let conn = d.client().await;
    let mut results = job_results(&conn).await;
    let job = start_transient(&conn, "pods-a.slice", vec![prop("MemoryMax", 1u64 << 30)])
        .await
        .expect("a slice");
    job_end(&mut results, &job).await;
    // c2.scope: a delegated scope whose manager made cgroups below it, and whose process ends
    // while no corrald runs: the next one finds it empty and removes its subtree (off the loop).
    let (mut child, mut gone) = (sleeper(), sleeper());
    for (scope, pid) in [("c1.scope", child.id()), ("c2.scope", gone.id())] {
        let job = start_transient(
            &conn,
            scope,
            vec![
                prop("Slice", "pods-a.slice"),
                prop("PIDs", vec![pid]),
                prop("Delegate", true),
            ],
        )
        .await
        .expect("a scope");
        job_end(&mut results, &job).await;
    }
    call(
        &conn,
        "SetUnitProperties",
        &("c1.scope", true, vec![prop("TasksMax", 5u64)]),
    )
    .await
    .expect("a limit");
    let c2 = d.root.0.join("pods.slice/pods-a.slice/c2.scope");
    for i in 0..50 {
        std::fs::create_dir_all(c2.join(format!("sub{i}/a/b"))).unwrap();
    }
    drop(results);
    drop(conn);

    d.crash_and_restart_with(|| {
        let _ = gone.kill();
        let _ = gone.wait();
    });
    wait_for(
        "the emptied scope's subtree removed",
        Duration::from_secs(10),
        || !c2.exists(),
    );
    let conn = d.client().await;
    let mut results = job_results(&conn).await;
    assert_eq!(
        unit_prop(
            &conn,
            "c1.scope",
            "org.freedesktop.systemd1.Unit",
            "ActiveState"
        )
        .await
        .expect("the scope is known again"),
        "active"
    );
    let status = d.ctl(&["--json", "status", "c1.scope", "pods-a.slice"]);
    assert!(status.contains("\"pids-max\":\"5\""), "{status}");
    assert!(status.contains("\"memory-max\":\"1G\""), "{status}");
    let reply = call(&conn, "StopUnit", &("c1.scope", "replace"))
        .await
        .expect("StopUnit of the adopted scope");
    let job: OwnedObjectPath = reply.body().deserialize().unwrap();
    assert_eq!(job_end(&mut results, job.as_str()).await.1, "done");
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    let reply = call(&conn, "StopUnit", &("pods-a.slice", "replace"))
        .await
        .expect("StopUnit of the adopted slice");
    let job: OwnedObjectPath = reply.body().deserialize().unwrap();
    assert_eq!(job_end(&mut results, job.as_str()).await.1, "done");
    assert!(!d.root.0.join("pods.slice/pods-a.slice").exists());
    d.stop();
}

/// Bad input: systemd's error names, and nothing changed — no unit, no cgroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_get_systemds_errors_and_change_nothing() {
    if let Some(why) = missing() {
        skip::skipped(why);
        return;
    }
    let Some(d) = Compat::start(
        "systemd1-bad",
        &[(
            "fails.service.toml",
            "[service]\nexec = [\"/bin/sh\", \"-c\", \"exit 3\"]\n",
        )],
    ) else {
        skip::skipped("no cgroup2 mount");
        return;
    };
    let conn = d.client().await;
    let before = unit_names(&conn).await;
    let dirs = || {
        let mut v: Vec<String> = walkdir(&d.root.0);
        v.sort();
        v
    };
    let dirs_before = dirs();
    let mut child = sleeper();
    let pid = child.id();
    let invalid = "org.freedesktop.DBus.Error.InvalidArgs";
    let aux: Vec<(&str, Props<'_>)> = vec![("x.service", Vec::new())];
    let cases: Vec<(&str, zbus::Result<String>, &str)> = vec![
        (
            "malformed name",
            start_transient(&conn, "../x.scope", vec![prop("PIDs", vec![pid])]).await,
            invalid,
        ),
        (
            "unknown kind",
            start_transient(&conn, "x.socket", vec![prop("PIDs", vec![pid])]).await,
            invalid,
        ),
        (
            "a service",
            start_transient(&conn, "x.service", vec![prop("PIDs", vec![pid])]).await,
            invalid,
        ),
        (
            "no PIDs",
            start_transient(&conn, "x.scope", Vec::new()).await,
            invalid,
        ),
        (
            "not a process",
            start_transient(&conn, "x.scope", vec![prop("PIDs", vec![i32::MAX as u32])]).await,
            "org.freedesktop.systemd1.NoSuchProcess",
        ),
        (
            "corrald itself",
            start_transient(&conn, "x.scope", vec![prop("PIDs", vec![d.child.id()])]).await,
            invalid,
        ),
        (
            "a slice escaping the tree",
            start_transient(
                &conn,
                "x.scope",
                vec![prop("PIDs", vec![pid]), prop("Slice", "../../x.slice")],
            )
            .await,
            invalid,
        ),
        (
            "a slice that is no slice",
            start_transient(
                &conn,
                "x.scope",
                vec![prop("PIDs", vec![pid]), prop("Slice", "x.service")],
            )
            .await,
            invalid,
        ),
        (
            "a slice placed elsewhere than its name says",
            start_transient(&conn, "a-b.slice", vec![prop("Slice", "c.slice")]).await,
            invalid,
        ),
        (
            "a wrong-typed property",
            start_transient(
                &conn,
                "x.scope",
                vec![prop("PIDs", vec![pid]), prop("MemoryMax", "64M")],
            )
            .await,
            invalid,
        ),
        (
            "a limit out of range",
            start_transient(
                &conn,
                "x.scope",
                vec![prop("PIDs", vec![pid]), prop("CPUWeight", 20_000u64)],
            )
            .await,
            invalid,
        ),
        (
            "init.scope",
            start_transient(&conn, "init.scope", vec![prop("PIDs", vec![pid])]).await,
            "org.freedesktop.systemd1.UnitExists",
        ),
        (
            "a unit from a file",
            start_transient(&conn, "fails.service", Vec::new()).await,
            "org.freedesktop.systemd1.UnitExists",
        ),
    ];
    for (what, got, want) in cases {
        let e = got.expect_err(what);
        assert_eq!(error_name(&e), want, "{what}: {e}");
    }
    let e = call(
        &conn,
        "StartTransientUnit",
        &("x.scope", "fail", vec![prop("PIDs", vec![pid])], aux),
    )
    .await
    .unwrap_err();
    assert_eq!(error_name(&e), "org.freedesktop.DBus.Error.NotSupported");
    let e = call(
        &conn,
        "StartTransientUnit",
        &(
            "x.scope",
            "sometimes",
            vec![prop("PIDs", vec![pid])],
            Vec::<(&str, Props<'_>)>::new(),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(error_name(&e), invalid, "a job mode: {e}");
    // Wrong argument types for the method itself.
    let e = call(&conn, "StopUnit", &("x.scope",)).await.unwrap_err();
    assert!(
        error_name(&e).contains("InvalidArgs") || error_name(&e).contains("UnknownMethod"),
        "{e}"
    );
    for (member, e) in [
        (
            "StopUnit",
            call(&conn, "StopUnit", &("nope.scope", "replace")).await,
        ),
        ("GetUnit", call(&conn, "GetUnit", &("nope.scope",)).await),
        (
            "KillUnit",
            call(&conn, "KillUnit", &("nope.scope", "all", 15i32)).await,
        ),
        (
            "ResetFailedUnit",
            call(&conn, "ResetFailedUnit", &("nope.scope",)).await,
        ),
        (
            "SetUnitProperties",
            call(
                &conn,
                "SetUnitProperties",
                &("nope.scope", true, vec![prop("MemoryMax", 1u64 << 30)]),
            )
            .await,
        ),
        (
            "AttachProcessesToUnit",
            call(
                &conn,
                "AttachProcessesToUnit",
                &("nope.scope", "", vec![pid]),
            )
            .await,
        ),
    ] {
        let e = e.expect_err(member);
        assert_eq!(
            error_name(&e),
            "org.freedesktop.systemd1.NoSuchUnit",
            "{member}: {e}"
        );
    }
    for (what, e, want) in [
        (
            "a bad signal",
            call(&conn, "KillUnit", &("system.slice", "all", 999i32)).await,
            invalid,
        ),
        (
            "a bad whom",
            call(&conn, "KillUnit", &("system.slice", "nobody", 15i32)).await,
            invalid,
        ),
        (
            "a wrong-typed limit",
            call(
                &conn,
                "SetUnitProperties",
                &("system.slice", true, vec![prop("TasksMax", "5")]),
            )
            .await,
            invalid,
        ),
        (
            "a slice given after the unit is made",
            call(
                &conn,
                "SetUnitProperties",
                &("system.slice", true, vec![prop("Slice", "a.slice")]),
            )
            .await,
            invalid,
        ),
        (
            "processes into a slice",
            call(
                &conn,
                "AttachProcessesToUnit",
                &("system.slice", "", vec![pid]),
            )
            .await,
            "org.freedesktop.DBus.Error.NotSupported",
        ),
        (
            "processes into an inactive unit",
            call(
                &conn,
                "AttachProcessesToUnit",
                &("fails.service", "", vec![pid]),
            )
            .await,
            "org.freedesktop.systemd1.UnitInactive",
        ),
        (
            "a sub-cgroup escaping",
            call(
                &conn,
                "AttachProcessesToUnit",
                &("fails.service", "../../x", vec![pid]),
            )
            .await,
            invalid,
        ),
        (
            "the main process of a unit that has none",
            call(&conn, "KillUnit", &("fails.service", "main", 15i32)).await,
            "org.freedesktop.systemd1.NoSuchProcess",
        ),
    ] {
        let e = e.expect_err(what);
        assert_eq!(error_name(&e), want, "{what}: {e}");
    }
    // Unknown and device properties are accepted and ignored.
    let device_allow: Vec<(&str, &str)> = vec![("char-pts", "rwm")];
    call(
        &conn,
        "SetUnitProperties",
        &(
            "system.slice",
            true,
            vec![prop("DeviceAllow", device_allow), prop("Frobnicate", 7u32)],
        ),
    )
    .await
    .expect("unknown properties are ignored");
    assert_eq!(unit_names(&conn).await, before, "no unit came or went");
    assert_eq!(dirs(), dirs_before, "no cgroup was made");
    assert_eq!(
        cgroup_of(pid),
        cgroup_of(std::process::id()),
        "the process was not moved"
    );
    let _ = child.kill();
    let _ = child.wait();

    // reset-failed: a failed unit back to inactive; a failed transient unit is collected.
    let reply = conn
        .call_method(
            Some("org.corral1"),
            "/org/corral1",
            Some("org.corral1.Manager"),
            "StartUnit",
            &("fails.service",),
        )
        .await
        .expect("StartUnit");
    let _: u32 = reply.body().deserialize().unwrap();
    wait_for("fails.service to fail", Duration::from_secs(10), || {
        d.ctl(&["status", "fails.service"])
            .contains("Active: failed")
    });
    call(&conn, "ResetFailedUnit", &("fails.service",))
        .await
        .expect("ResetFailedUnit");
    let status = d.ctl(&["status", "fails.service"]);
    assert!(status.contains("Active: inactive"), "{status}");
    let toml = "[service]\nexec = [\"/bin/false\"]\n";
    conn.call_method(
        Some("org.corral1"),
        "/org/corral1",
        Some("org.corral1.Manager"),
        "StartTransientUnit",
        &("once.service", toml),
    )
    .await
    .expect("a transient service");
    wait_for("once.service to fail", Duration::from_secs(10), || {
        d.ctl(&["status", "once.service"])
            .contains("Active: failed")
    });
    let out = d.ctl(&["reset-failed", "once"]);
    assert!(out.trim().is_empty(), "{out}");
    let out = d.ctl(&["status", "once.service"]);
    assert!(out.contains("NoSuchUnit"), "collected once reset: {out}");
    d.stop();
}

/// Access: every call, and every property read, is uid 0's only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_may_call() {
    if let Some(why) = missing() {
        skip::skipped(why);
        return;
    }
    if let Some(why) = bus::missing_tools() {
        skip::skipped(why);
        return;
    }
    let Some(d) = Compat::start("systemd1-access", &[]) else {
        skip::skipped("no cgroup2 mount");
        return;
    };
    // Let uid 65534 reach the socket, so that corrald (not the file mode) judges it.
    for p in [d.dir.path().to_path_buf(), d.systemd_dir(), d.socket()] {
        let mode = if p == d.socket() { 0o666 } else { 0o755 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let address = format!("unix:path={}", d.socket().display());
    let mut child = sleeper();
    let pid = child.id().to_string();
    for args in [
        vec!["get-property", NAME, ROOT, MANAGER, "Version"],
        vec!["call", NAME, ROOT, MANAGER, "GetUnit", "s", "system.slice"],
        vec![
            "call",
            NAME,
            ROOT,
            MANAGER,
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            "x.scope",
            "fail",
            "1",
            "PIDs",
            "au",
            "1",
            &pid,
            "0",
        ],
        vec![
            "call",
            NAME,
            ROOT,
            MANAGER,
            "StopUnit",
            "ss",
            "system.slice",
            "replace",
        ],
        vec![
            "call",
            NAME,
            ROOT,
            MANAGER,
            "KillUnit",
            "ssi",
            "system.slice",
            "all",
            "15",
        ],
        vec![
            "call",
            NAME,
            ROOT,
            MANAGER,
            "ResetFailedUnit",
            "s",
            "system.slice",
        ],
        vec![
            "call",
            NAME,
            ROOT,
            MANAGER,
            "SetUnitProperties",
            "sba(sv)",
            "system.slice",
            "true",
            "1",
            "TasksMax",
            "t",
            "5",
        ],
        vec![
            "call",
            NAME,
            ROOT,
            MANAGER,
            "AttachProcessesToUnit",
            "ssau",
            "system.slice",
            "",
            "1",
            &pid,
        ],
    ] {
        let out = bus::busctl(&address, Some(65534), &args);
        assert!(bus::rejected(&out), "{args:?}: {}", bus::show(&out));
    }
    // Root through busctl (which says Hello first: answered on this socket too).
    let out = bus::busctl(
        &address,
        None,
        &["get-property", NAME, ROOT, MANAGER, "Version"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "s \"252\"",
        "{}",
        bus::show(&out)
    );
    let out = bus::busctl(
        &address,
        None,
        &[
            "call",
            NAME,
            ROOT,
            MANAGER,
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            "busctl.scope",
            "replace",
            "1",
            "PIDs",
            "au",
            "1",
            &pid,
            "0",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/org/freedesktop/systemd1/job/"),
        "{}",
        bus::show(&out)
    );
    assert!(
        cgroup_of(child.id()).ends_with("/system.slice/busctl.scope"),
        "{}",
        cgroup_of(child.id())
    );
    let _ = child.kill();
    let _ = child.wait();
    d.stop();
}

/// Every directory under `dir`, relative.
fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
                todo.push(e.path());
            }
        }
    }
    out
}

/// `dbus/org.freedesktop.systemd1.xml` is the subset as served: the manager object and a scope's
/// and a slice's unit objects introspected on the private socket, the `org.freedesktop.systemd1.*`
/// interfaces kept, members sorted (`UPDATE_GOLDEN=1` rewrites it). And every method in it is
/// let through by `dbus/org.freedesktop.systemd1.conf`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_introspection_matches_the_subsets_xml() {
    const GOLDEN: &str = "dbus/org.freedesktop.systemd1.xml";
    const HEADER: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!--
  corrald's org.freedesktop.systemd1 subset (DESIGN §9), as served with --systemd-compat (on
  by default as PID 1): on the system bus beside org.corral1, and on /run/systemd/private
  (peer to peer, no Hello). For container runtimes and kubelet with the systemd cgroup driver.
    org.freedesktop.systemd1.Manager                 at /org/freedesktop/systemd1
    org.freedesktop.systemd1.Unit and .Scope/.Slice/.Service
                                                     at /org/freedesktop/systemd1/unit/ESCAPED
  Every member is for uid 0 only (judged by corrald from the kernel's credentials).

  Generated from a running corrald by tests/systemd1_host.rs (members sorted by kind and name).
  Don't edit by hand: run that test with UPDATE_GOLDEN=1 set to refresh it.
-->
"#;
    if let Some(why) = missing() {
        skip::skipped(why);
        return;
    }
    let Some(d) = Compat::start("systemd1-xml", &[]) else {
        skip::skipped("no cgroup2 mount");
        return;
    };
    let conn = d.client().await;
    let mut results = job_results(&conn).await;
    let mut child = sleeper();
    let job = start_transient(&conn, "x.scope", vec![prop("PIDs", vec![child.id()])])
        .await
        .expect("a scope");
    job_end(&mut results, &job).await;
    let rank = |kind: &str| match kind {
        "method" => 0,
        "signal" => 1,
        "property" => 2,
        _ => 3,
    };
    let ours = |text: &str| -> Vec<xml::Elem> {
        let root = xml::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut out: Vec<xml::Elem> = root
            .all("interface")
            .filter(|i| {
                i.attr("name")
                    .is_some_and(|n| n.starts_with("org.freedesktop.systemd1."))
            })
            .map(|i| {
                let mut i = i.clone();
                i.children.sort_by(|a, b| {
                    (rank(&a.name), a.attr("name")).cmp(&(rank(&b.name), b.attr("name")))
                });
                i
            })
            .collect();
        out.sort_by(|a, b| a.attr("name").cmp(&b.attr("name")));
        out
    };
    let introspect = |path: &'static str| {
        let conn = conn.clone();
        async move {
            let reply = conn
                .call_method(
                    Some(NAME),
                    path,
                    Some("org.freedesktop.DBus.Introspectable"),
                    "Introspect",
                    &(),
                )
                .await
                .expect("Introspect");
            reply.body().deserialize::<String>().expect("xml")
        }
    };
    let mut all = ours(&introspect(ROOT).await);
    for path in [
        "/org/freedesktop/systemd1/unit/x_2escope",
        "/org/freedesktop/systemd1/unit/system_2eslice",
    ] {
        for iface in ours(&introspect(path).await) {
            if !all.iter().any(|a| a.attr("name") == iface.attr("name")) {
                all.push(iface);
            }
        }
    }
    all.sort_by(|a, b| a.attr("name").cmp(&b.attr("name")));
    let render = |ifaces: &[xml::Elem]| {
        let node = xml::Elem {
            name: "node".into(),
            attrs: Vec::new(),
            children: ifaces.to_vec(),
        };
        let mut out = String::new();
        node.render(0, &mut out);
        out
    };
    let served = render(&all);
    let names: Vec<_> = all.iter().filter_map(|i| i.attr("name")).collect();
    assert_eq!(
        names,
        [
            "org.freedesktop.systemd1.Manager",
            "org.freedesktop.systemd1.Scope",
            "org.freedesktop.systemd1.Slice",
            "org.freedesktop.systemd1.Unit"
        ]
    );
    golden::check_with(
        GOLDEN,
        &served,
        &format!("{HEADER}{served}"),
        "systemd1_host",
        |g| render(&ours(g)),
    );
    // The bus policy lets every method through, for corrald to judge.
    let policy = std::fs::read_to_string(golden::repo_path("dbus/org.freedesktop.systemd1.conf"))
        .expect("the policy");
    for iface in &all {
        for m in iface.all("method") {
            let name = m.attr("name").unwrap_or_default();
            assert!(
                policy.contains(&format!("send_member=\"{name}\"")),
                "{name} is not allowed by dbus/org.freedesktop.systemd1.conf"
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    d.stop();
}
