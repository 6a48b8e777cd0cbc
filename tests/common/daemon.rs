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
    /// Where its log goes instead of a pipe ([`Daemon::start_logging_to_file`]).
    pub log_file: Option<PathBuf>,
    /// The umask it starts with, if not the test's ([`Daemon::start_with_umask`]).
    pub umask: Option<u32>,
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

    /// As [`Daemon::start_on_bus`] (or without the bus), its log going to a file in its
    /// directory rather than a pipe: a long run's log can't fill the pipe and stall it.
    /// [`Daemon::stop`] returns the file's text.
    pub fn start_logging_to_file(
        name: &str,
        units: &[(&str, String)],
        env: &[(&str, &Path)],
        bus: bool,
    ) -> Option<Daemon> {
        let mut d = Daemon::prepare(name, units)?;
        d.log_file = Some(d.dir.path().join("corrald.log"));
        d.child = d.spawn_child(env, bus);
        d.bus = bus;
        d.wait_for_socket();
        Some(d)
    }

    /// As [`Daemon::start`], corrald (and its restarts) starting with `umask`.
    pub fn start_with_umask(name: &str, units: &[(&str, String)], umask: u32) -> Option<Daemon> {
        let mut d = Daemon::prepare(name, units)?;
        d.umask = Some(umask);
        d.child = d.spawn_child(&[], false);
        d.wait_for_socket();
        Some(d)
    }

    fn spawn_child(&self, env: &[(&str, &Path)], bus: bool) -> Child {
        spawn_corrald(
            &self.root.0,
            self.dir.path(),
            env,
            bus,
            self.stderr(),
            self.umask,
        )
    }

    fn launch(
        name: &str,
        units: &[(&str, String)],
        env: &[(&str, &Path)],
        bus: bool,
    ) -> Option<Daemon> {
        let d = Daemon::spawn(name, units, env, bus)?;
        d.wait_for_socket();
        Some(d)
    }

    /// Where corrald's log goes: a pipe read by [`Daemon::stop`], or the end of the log file.
    fn stderr(&self) -> Stdio {
        match &self.log_file {
            None => Stdio::piped(),
            Some(file) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .expect("opening the daemon's log file")
                .into(),
        }
    }

    fn wait_for_socket(&self) {
        let sock = self.socket();
        wait_for("the private socket", Duration::from_secs(10), || {
            sock.exists()
        });
    }

    /// A zbus client on the private socket (peer to peer, EXTERNAL).
    pub async fn client(&self) -> zbus::Connection {
        p2p_client(&self.socket()).await
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
        let mut d = Daemon::prepare(name, units)?;
        d.child = d.spawn_child(env, bus);
        d.bus = bus;
        Some(d)
    }

    /// The cgroup and directories, with a placeholder child that has already exited.
    fn prepare(name: &str, units: &[(&str, String)]) -> Option<Daemon> {
        let root = TestRoot::new(name)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let unit_dir = dir.path().join("units");
        std::fs::create_dir_all(&unit_dir).expect("unit dir");
        for (file, text) in units {
            // A drop-in names its directory: `web.service.d/10-x.toml`.
            let path = unit_dir.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("drop-in dir");
            }
            std::fs::write(path, text).expect("unit file");
        }
        let mut child = Command::new("true").spawn().expect("running true");
        let _ = child.wait();
        Some(Daemon {
            child,
            root,
            dir,
            bus: false,
            log_file: None,
            umask: None,
        })
    }

    /// SIGKILLs corrald (a crash: its services stay) and starts it again on the same tree
    /// and directories; returns once the new one serves its socket.
    pub fn crash_and_restart(&mut self) {
        self.crash_and_restart_with(|| {});
    }

    /// As [`Daemon::crash_and_restart`], calling `between` while no corrald runs (to change
    /// what the next one finds).
    pub fn crash_and_restart_with(&mut self, between: impl FnOnce()) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        between();
        let sock = self.socket();
        let _ = std::fs::remove_file(&sock);
        self.child = self.spawn_child(&[], self.bus);
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

    /// [`Daemon::ctl`] that must succeed; its standard output.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "corralctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// SIGTERM, then waits for the exit; returns the status and everything it logged.
    pub fn stop(self) -> (std::process::ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.wait_for_exit()
    }

    /// Waits for corrald to exit on its own; returns the status and everything it logged.
    pub fn wait_for_exit(mut self) -> (std::process::ExitStatus, String) {
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
        if let Some(file) = &self.log_file {
            log = std::fs::read_to_string(file).unwrap_or_default();
        }
        (status, log)
    }
}

fn spawn_corrald(
    root: &Path,
    dir: &Path,
    env: &[(&str, &Path)],
    bus: bool,
    stderr: Stdio,
    umask: Option<u32>,
) -> Child {
    let mut cmd = corrald_command(root, dir);
    if !bus {
        cmd.arg("--no-bus");
    }
    if let Some(mask) = umask {
        // SAFETY: umask(2) is async-signal-safe and touches only the child's own state.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                libc::umask(mask);
                Ok(())
            });
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, *v)))
        .stderr(stderr)
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

/// Makes `cmd` run in a mount namespace of its own with a fresh tmpfs on `/run` and an empty
/// `/run/systemd` (the host's `/run` untouched), then calls `then` there before exec.
/// `then` runs between fork and exec: async-signal-safe system calls only, on data made before
/// (see [`os_result`]).
pub fn with_private_run(
    cmd: &mut Command,
    then: impl Fn() -> std::io::Result<()> + Send + Sync + 'static,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe system calls (unshare, mount,
    // mkdir and whatever `then` makes, under the same rule), on strings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            os_result(libc::unshare(libc::CLONE_NEWNS))?;
            os_result(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            os_result(libc::mount(
                c"tmpfs".as_ptr(),
                c"/run".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ))?;
            os_result(libc::mkdir(c"/run/systemd".as_ptr(), 0o755))?;
            then()
        });
    }
}

/// A system call's `0` as `Ok`, anything else as the OS error (async-signal-safe).
pub fn os_result(r: libc::c_int) -> std::io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A zbus client on the socket at `path`, as go-systemd and corralctl make one: peer to peer,
/// EXTERNAL, no `Hello`.
pub async fn p2p_client(path: &Path) -> zbus::Connection {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
    zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .auth_mechanism(zbus::AuthMechanism::External)
        .build()
        .await
        .expect("a p2p connection")
}
