//! `corrald --user` as an unprivileged user (uid 65534) on a cgroup delegated to it: XDG
//! paths for units, socket and logs, services spawned into its tree, and `Mode` "user".

#[path = "common/bus.rs"]
mod bus;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon::{TestRoot, wait_for};

const NOBODY: u32 = 65534;

/// A cgroup delegated to uid 65534 and a home with XDG directories it owns.
struct UserSetup {
    root: TestRoot,
    home: tempfile::TempDir,
    config: PathBuf,
    runtime: PathBuf,
    state: PathBuf,
}

impl UserSetup {
    /// `None` (after printing why) where the test can't run; `units` are (file, text).
    fn new(name: &str, units: &[(&str, &str)]) -> Option<UserSetup> {
        if !std::path::Path::new("/usr/bin/setpriv").exists() || !nix::unistd::geteuid().is_root() {
            skip::skipped(format!("needs root and setpriv to become uid {NOBODY}"));
            return None;
        }
        let Some(root) = TestRoot::new(name) else {
            skip::skipped("no cgroup2 mount on this host");
            return None;
        };
        // Delegate the cgroup to the user, as systemd's user@.service does.
        for p in [
            root.0.clone(),
            root.0.join("cgroup.procs"),
            root.0.join("cgroup.subtree_control"),
        ] {
            nix::unistd::chown(&p, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
        }
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (config, runtime, state) = (
            home.path().join("config"),
            home.path().join("runtime"),
            home.path().join("state"),
        );
        std::fs::create_dir_all(config.join("corral/units")).unwrap();
        for (file, text) in units {
            std::fs::write(config.join("corral/units").join(file), text).unwrap();
        }
        for d in [&runtime, &state] {
            std::fs::create_dir_all(d).unwrap();
        }
        Command::new("chown")
            .args([
                "-R",
                &format!("{NOBODY}:{NOBODY}"),
                &home.path().display().to_string(),
            ])
            .status()
            .unwrap();
        Some(UserSetup {
            root,
            home,
            config,
            runtime,
            state,
        })
    }

    /// `corrald --user` as the user, started inside its delegated cgroup (as a user manager
    /// is: moving a process between cgroups needs write access to their common ancestor,
    /// which the user has only below), with `args` and extra `env`.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let procs_file = self.root.0.join("cgroup.procs");
        let mut start = bus::command_as(Some(NOBODY), env!("CARGO_BIN_EXE_corrald"));
        // SAFETY: pre_exec runs in the forked child before exec; it only writes one file.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut start, move || {
                std::fs::write(&procs_file, "0")
            });
        }
        start
            .arg("--user")
            .args(args)
            .arg("--cgroup-root")
            .arg(&self.root.0)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", &self.config)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("XDG_STATE_HOME", &self.state)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// SIGTERM, then the exit status and everything the daemon logged.
fn stop(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

#[test]
fn user_mode_as_an_unprivileged_user() {
    let Some(setup) = UserSetup::new(
        "user",
        &[(
            "hello.service.toml",
            "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sh\", \"-c\", \"echo hello from $(id -u); exec sleep 1000\"]\n",
        )],
    ) else {
        return;
    };
    let (root, runtime, state) = (&setup.root, &setup.runtime, &setup.state);
    let child = setup.spawn(&["--no-bus"], &[]);
    let sock = runtime.join("corral/private");
    wait_for("the user daemon's socket", Duration::from_secs(10), || {
        sock.exists()
    });
    let ctl = |args: &[&str]| {
        bus::command_as(Some(NOBODY), env!("CARGO_BIN_EXE_corralctl"))
            .arg("--address")
            .arg(format!("unix:path={}", sock.display()))
            .args(args)
            .output()
            .unwrap()
    };
    wait_for("hello.service active", Duration::from_secs(10), || {
        String::from_utf8_lossy(&ctl(&["status", "hello.service"]).stdout)
            .contains("active (running)")
    });
    let log = state.join("corral/log/hello.service.log");
    wait_for("the user's log", Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("hello from 65534"))
    });
    let procs =
        std::fs::read_to_string(root.0.join("system.slice/hello.service/cgroup.procs")).unwrap();
    assert_eq!(procs.lines().count(), 1, "{procs}");
    // corralctl --user finds the user's socket through $XDG_RUNTIME_DIR.
    let out = bus::command_as(Some(NOBODY), env!("CARGO_BIN_EXE_corralctl"))
        .args(["--user", "list"])
        .env("XDG_RUNTIME_DIR", runtime)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello.service"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The user may change state on its own manager.
    let out = ctl(&["stop", "hello.service"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, err) = stop(child);
    assert!(status.success(), "{err}");
}

/// #7: the per-user manager on the session bus. A session `dbus-daemon` runs as the user on
/// `$XDG_RUNTIME_DIR/bus` (its policy lets other uids connect too, so that corrald, not the
/// bus, is what turns them away); `corrald --user` serves on it; `corralctl --user`, which
/// finds no private socket where it looks, falls back to the session bus and starts, reads
/// and stops a unit through it. Another uid (root) reads but is refused state changes.
#[test]
fn user_mode_on_the_session_bus() {
    if let Some(why) = bus::missing_tools() {
        skip::skipped(why);
        return;
    }
    let Some(setup) = UserSetup::new(
        "userbus",
        &[(
            "job.service.toml",
            "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
        )],
    ) else {
        return;
    };
    let socket = setup.runtime.join("bus");
    let address = format!("unix:path={}", socket.display());
    let config = setup.home.path().join("session.conf");
    std::fs::write(&config, bus::session_config(&socket)).unwrap();
    let session = bus::Bus::start(&config, Some(NOBODY));
    let child = setup.spawn(&[], &[("DBUS_SESSION_BUS_ADDRESS", &address)]);
    wait_for(
        "corrald --user to own org.corral1",
        Duration::from_secs(10),
        || bus::owner(&address, "org.corral1").is_some(),
    );

    // No private socket where this corralctl looks: it goes to the session bus.
    let elsewhere = setup.home.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    nix::unistd::chown(&elsewhere, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    let ctl = |uid: Option<u32>, args: &[&str]| {
        bus::command_as(uid, env!("CARGO_BIN_EXE_corralctl"))
            .arg("--user")
            .args(args)
            .env("XDG_RUNTIME_DIR", &elsewhere)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .output()
            .unwrap()
    };
    let out = ctl(Some(NOBODY), &["start", "job.service"]);
    assert!(out.status.success(), "{}", bus::show(&out));
    let out = ctl(Some(NOBODY), &["status", "job.service"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("active (running)"),
        "{}",
        bus::show(&out)
    );
    let procs = std::fs::read_to_string(setup.root.0.join("system.slice/job.service/cgroup.procs"))
        .unwrap();
    assert_eq!(procs.lines().count(), 1, "{procs}");
    let get = |uid: Option<u32>, path: &str, iface: &str, prop: &str| {
        let out = bus::busctl(
            &address,
            uid,
            &["get-property", "org.corral1", path, iface, prop],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let unit = "/org/corral1/unit/job_2eservice";
    assert_eq!(
        get(Some(NOBODY), "/org/corral1", "org.corral1.Manager", "Mode"),
        "s \"user\""
    );

    // Another uid reads, and is refused state changes — by corrald, in its own words.
    assert_eq!(
        get(None, unit, "org.corral1.Unit", "ActiveState"),
        "s \"active\""
    );
    let out = ctl(None, &["stop", "job.service"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("AccessDenied")
            && err.contains("the caller is uid 0"),
        "{}",
        bus::show(&out)
    );
    let out = bus::busctl(
        &address,
        None,
        &["call", "org.corral1", unit, "org.corral1.Unit", "Stop"],
    );
    assert!(bus::rejected(&out), "{}", bus::show(&out));
    assert_eq!(
        get(None, unit, "org.corral1.Unit", "ActiveState"),
        "s \"active\""
    );

    // The user stops it through the bus.
    let out = ctl(Some(NOBODY), &["stop", "job.service"]);
    assert!(out.status.success(), "{}", bus::show(&out));
    assert_eq!(
        get(Some(NOBODY), unit, "org.corral1.Unit", "ActiveState"),
        "s \"inactive\""
    );

    drop(session);
    let (status, log) = stop(child);
    assert!(status.success(), "{log}");
    assert!(log.contains("connected to the session bus"), "{log}");
    assert!(log.contains("acquired org.corral1"), "{log}");
}
