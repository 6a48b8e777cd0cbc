//! `corrald --user` as an unprivileged user (uid 65534) on a cgroup delegated to it: XDG
//! paths for units, socket and logs, services spawned into its tree, and `Mode` "user".

#[path = "common/daemon.rs"]
mod daemon;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon::{TestRoot, wait_for};

const NOBODY: u32 = 65534;

#[test]
fn user_mode_as_an_unprivileged_user() {
    if !std::path::Path::new("/usr/bin/setpriv").exists() || !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root and setpriv to become uid {NOBODY}");
        return;
    }
    let Some(root) = TestRoot::new("user") else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
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
    std::fs::write(
        config.join("corral/units/hello.service.toml"),
        "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sh\", \"-c\", \"echo hello from $(id -u); exec sleep 1000\"]\n",
    )
    .unwrap();
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
    // Started inside its delegated cgroup, as a user manager is: moving a process between
    // cgroups needs write access to their common ancestor, which the user has only below.
    let procs_file = root.0.join("cgroup.procs");
    let mut start = Command::new("/usr/bin/setpriv");
    // SAFETY: pre_exec runs in the forked child before exec; it only writes one file.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut start, move || {
            std::fs::write(&procs_file, "0")
        });
    }
    let mut child = start
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_corrald"))
        .args(["--user", "--no-bus", "--cgroup-root"])
        .arg(&root.0)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", &config)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("XDG_STATE_HOME", &state)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = runtime.join("corral/private");
    wait_for("the user daemon's socket", Duration::from_secs(10), || {
        sock.exists()
    });
    let ctl = |args: &[&str]| {
        Command::new("/usr/bin/setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ])
            .arg(env!("CARGO_BIN_EXE_corralctl"))
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
    let out = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_corralctl"))
        .args(["--user", "list"])
        .env("XDG_RUNTIME_DIR", &runtime)
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

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
}
