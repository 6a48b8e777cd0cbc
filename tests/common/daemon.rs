//! A corrald on the host for integration tests: a fresh child of the host's cgroup2 mount as
//! its `--cgroup-root`, a temporary unit directory, runtime and log directories; killed and
//! cleaned up on drop. Include with `#[path = "common/daemon.rs"] mod daemon;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use corral::cgroup::{Cgroup, ownership};

/// A fresh cgroup under the host's cgroup2 mount, removed (with anything left in it) on drop.
pub struct TestRoot(pub PathBuf);

impl TestRoot {
    /// `None` where the host has no cgroup2 mount (the caller prints why it skips).
    pub fn new(name: &str) -> Option<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = ownership::parse_mountinfo(&mountinfo)?;
        let dir = mount
            .mount_point
            .join(format!("corral-test-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(TestRoot(dir))
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        let _ = Cgroup::new(&self.0).kill();
        std::thread::sleep(Duration::from_millis(100));
        let _ = Cgroup::new(&self.0).remove_tree();
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// corrald with its directories; SIGKILLed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub root: TestRoot,
    pub dir: tempfile::TempDir,
    /// Whether it serves the bus too (else `--no-bus`).
    pub bus: bool,
}

impl Daemon {
    /// Starts corrald over `units` (file name, text) and waits for its private socket.
    pub fn start(name: &str, units: &[(&str, String)]) -> Option<Daemon> {
        Daemon::start_with_env(name, units, &[])
    }

    /// As [`Daemon::start`], with extra environment for corrald.
    pub fn start_with_env(
        name: &str,
        units: &[(&str, String)],
        env: &[(&str, &Path)],
    ) -> Option<Daemon> {
        Daemon::launch(name, units, env, false)
    }

    /// As [`Daemon::start_with_env`], serving the bus as well (`env` says where it is).
    pub fn start_on_bus(
        name: &str,
        units: &[(&str, String)],
        env: &[(&str, &Path)],
    ) -> Option<Daemon> {
        Daemon::launch(name, units, env, true)
    }

    fn launch(
        name: &str,
        units: &[(&str, String)],
        env: &[(&str, &Path)],
        bus: bool,
    ) -> Option<Daemon> {
        let d = Daemon::spawn(name, units, env, bus)?;
        let sock = d.socket();
        wait_for("the private socket", Duration::from_secs(10), || {
            sock.exists()
        });
        Some(d)
    }

    /// Starts corrald (without the bus) and returns at once, before it serves anything.
    pub fn spawn_unwaited(name: &str, units: &[(&str, String)]) -> Option<Daemon> {
        Daemon::spawn(name, units, &[], false)
    }

    fn spawn(
        name: &str,
        units: &[(&str, String)],
        env: &[(&str, &Path)],
        bus: bool,
    ) -> Option<Daemon> {
        let root = TestRoot::new(name)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let unit_dir = dir.path().join("units");
        std::fs::create_dir_all(&unit_dir).expect("unit dir");
        for (file, text) in units {
            std::fs::write(unit_dir.join(file), text).expect("unit file");
        }
        let child = spawn_corrald(&root.0, dir.path(), env, bus);
        Some(Daemon {
            child,
            root,
            dir,
            bus,
        })
    }

    /// SIGKILLs corrald (a crash: its services stay) and starts it again on the same tree
    /// and directories; returns once the new one serves its socket.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let sock = self.socket();
        let _ = std::fs::remove_file(&sock);
        self.child = spawn_corrald(&self.root.0, self.dir.path(), &[], self.bus);
        wait_for(
            "the restarted daemon's socket",
            Duration::from_secs(10),
            || sock.exists(),
        );
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/private")
    }

    pub fn out_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs corralctl against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_corralctl"))
            .arg("--address")
            .arg(format!("unix:path={}", self.socket().display()))
            .args(args)
            .output()
            .expect("running corralctl")
    }

    /// SIGTERM, then waits for the exit; returns the status and everything it logged.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "corrald did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut log);
        }
        (status, log)
    }
}

fn spawn_corrald(root: &Path, dir: &Path, env: &[(&str, &Path)], bus: bool) -> Child {
    let mut cmd = corrald_command(root, dir);
    if !bus {
        cmd.arg("--no-bus");
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, *v)))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting corrald")
}

/// corrald on the cgroup `root` with its directories under `dir` (`units`, `run`, `log`).
pub fn corrald_command(root: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corrald"));
    cmd.arg("--cgroup-root")
        .arg(root)
        .arg("--unit-path")
        .arg(dir.join("units"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .arg("--log-dir")
        .arg(dir.join("log"));
    cmd
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
