//! corrald's start-up order, tested in-process through the library (`corral::daemon`): the
//! daemon runs in this test's own process, on a fresh cgroup of the host, exactly as the
//! binary runs it. One test, in steps, because the daemon's start-up changes the process for
//! good (SIGCHLD blocked, subreaper, signal handlers, its cgroup).
//!
//! Needs root and the host's cgroup2 mount (fails under `CI=true` without them).

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use corral::boot::pid1::Final;
use corral::daemon::{Config, run_until};
use daemon::{TestRoot, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn config(root: &Path, dir: &Path) -> Config {
    Config {
        user: false,
        cgroup_root: Some(root.to_path_buf()),
        unit_paths: vec![dir.join("units")],
        runtime_dir: Some(dir.join("run")),
        log_dir: Some(dir.join("log")),
        no_bus: true,
        systemd_compat: false,
    }
}

/// The cgroup this process is in, as a path under the cgroup2 mount.
fn own_cgroup(mount: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line");
    mount.join(rel.trim_start_matches('/'))
}

fn corralctl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .arg("--address")
        .arg(format!("unix:path={}", dir.join("run/private").display()))
        .args(args)
        .output()
        .expect("running corralctl")
}

#[test]
fn start_up_order() {
    if !nix::unistd::geteuid().is_root() {
        skip::skipped("needs root (the daemon moves this process into its cgroup)");
        return;
    }
    let Some(root) = TestRoot::new("inproc") else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let mount = root.0.parent().expect("the mount").to_path_buf();
    // Dropped before `root` (declared after it): out of the daemon's init.scope again, also
    // when an assertion fails, so that removing the test root never kills this process.
    let _home = GoBack(own_cgroup(&mount));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("units")).expect("unit dir");
    std::fs::write(
        dir.path().join("units/kept.service.toml"),
        "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
    )
    .expect("unit file");

    // 1. The signal handlers exist before the socket: SIGTERM sent the moment the socket
    //    appears ends the daemon cleanly (powering off, as PID 1 would) instead of killing
    //    this process.
    let socket = dir.path().join("run/private");
    let watcher = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            wait_for("the private socket", Duration::from_secs(20), || {
                socket.exists()
            });
            kill(Pid::this(), Signal::SIGTERM).expect("SIGTERM to ourselves");
        })
    };
    let how = run_until(
        config(&root.0, dir.path()),
        Default::default(),
        std::future::pending(),
    );
    watcher.join().expect("the watcher");
    assert_eq!(how.expect("the daemon ends cleanly"), Final::PowerOff);
    assert!(!socket.exists(), "the socket is removed at the end");

    // 2. A service left running by an earlier daemon is adopted before autostart runs: the
    //    autostart unit is not started a second time. And READY=1 reaches our supervisor only
    //    once the API answers.
    let unit_cg = root.0.join("system.slice/kept.service");
    std::fs::create_dir_all(&unit_cg).expect("the unit's cgroup");
    let mut earlier = Command::new("/bin/sleep")
        .arg("1000")
        .spawn()
        .expect("an earlier daemon's service");
    std::fs::write(unit_cg.join("cgroup.procs"), earlier.id().to_string()).expect("moving it");
    std::fs::write(
        dir.path().join("run/state"),
        format!(
            r#"{{"kept.service":{{"main_pid":{},"n_restarts":2,"active_enter":0}}}}"#,
            earlier.id()
        ),
    )
    .expect("state file");
    let supervisor = UnixDatagram::bind(dir.path().join("notify")).expect("notify socket");
    // SAFETY: no other thread of this test reads the environment now (the watcher is joined).
    unsafe { std::env::set_var("NOTIFY_SOCKET", dir.path().join("notify")) };
    let checker = {
        let dir = dir.path().to_path_buf();
        let earlier = earlier.id();
        let unit_cg = unit_cg.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let n = supervisor
                .recv(&mut buf)
                .expect("a message to the supervisor");
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(msg.contains("READY=1"), "{msg}");
            let status = corralctl(&dir, &["--json", "status", "kept.service"]);
            let text = String::from_utf8_lossy(&status.stdout).into_owned();
            let stop = || kill(Pid::this(), Signal::SIGTERM).expect("SIGTERM");
            if !status.status.success() {
                stop();
                panic!("the API answers once READY=1 is sent: {status:?}");
            }
            let json: serde_json::Value = serde_json::from_str(&text).expect("json");
            let unit = &json[0];
            let procs = std::fs::read_to_string(unit_cg.join("cgroup.procs")).unwrap_or_default();
            stop();
            (
                unit["MainPID"].as_u64(),
                unit["NRestarts"].as_u64(),
                earlier,
                procs,
            )
        })
    };
    let how = run_until(
        config(&root.0, dir.path()),
        Default::default(),
        std::future::pending(),
    );
    let (main_pid, n_restarts, earlier_pid, procs) = checker.join().expect("the checker");
    assert_eq!(how.expect("the daemon ends cleanly"), Final::PowerOff);
    assert_eq!(
        main_pid,
        Some(u64::from(earlier_pid)),
        "the running service is adopted, not started again"
    );
    assert_eq!(n_restarts, Some(2), "its counters come from the state file");
    assert_eq!(
        procs.split_whitespace().collect::<Vec<_>>(),
        [earlier_pid.to_string()],
        "no second copy of the adopted service was started"
    );
    // The daemon stopped it at its end (and, this process being its parent, reaped it).
    assert_eq!(
        kill(Pid::from_raw(earlier_pid as i32), None),
        Err(nix::errno::Errno::ESRCH),
        "the adopted service is stopped with the daemon"
    );
    let _ = earlier.try_wait();
}

/// Moves this process back into a cgroup when dropped.
struct GoBack(std::path::PathBuf);

impl Drop for GoBack {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.procs"), std::process::id().to_string());
    }
}
