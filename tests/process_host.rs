//! Spawning on the real kernel of this host (run as root): cgroup birth, exec failures,
//! credentials, environment, stdio, signals, namespaces and mounts.
//!
//! Tests run in parallel threads of one process, so they never `waitpid(-1)` (that would take
//! other tests' children): each waits for its own pid. The reaper has its own test binary
//! (`tests/process_reaper.rs`) because it changes process-wide signal state.
//!
//! Host notes: the cgroup2 hierarchy may be mounted anywhere (Debian 12's hybrid layout puts it
//! at `/sys/fs/cgroup/unified`, with no controllers): it is found in `/proc/self/mountinfo`, and
//! each test makes its own uniquely named cgroup there, removed afterwards.

#[path = "common/skip.rs"]
mod skip;
use std::ffi::OsString;
use std::fs;
use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use corral::caps::{Cap, CapSet};
use corral::process::{
    Bind, Child, ClockOffset, Credentials, ExitStatus, IdMap, NsMode, Privileges, SpawnError,
    SpawnSpec, Stdio, Step, kill_process_group, resolve_user, spawn, wait_pid,
};
use nix::errno::Errno;
use nix::unistd::Pid;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            skip::skipped("needs root");
            return;
        }
    };
}

/// The cgroup2 mount point, from mountinfo (field 5 is the mount point; the filesystem type
/// follows the " - " separator).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// A uniquely named cgroup, removed on drop.
struct TestCgroup {
    path: PathBuf,
    /// As `/proc/PID/cgroup` shows it (relative to the hierarchy's root).
    rel: String,
}

impl TestCgroup {
    fn new(tag: &str) -> TestCgroup {
        static N: AtomicU32 = AtomicU32::new(0);
        let mnt = cgroup2_mount().expect("no cgroup2 mount on this host");
        let name = format!(
            "corral-proc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = mnt.join(&name);
        fs::create_dir(&path).unwrap();
        TestCgroup {
            path,
            rel: format!("/{name}"),
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // An exited process leaves its cgroup a moment after it is reaped.
        for _ in 0..100 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn pipe() -> (fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (fs::File::from(r), w)
}

/// Spawns with stdout (and stderr) on a pipe, reads everything, waits for this one pid.
fn run(mut spec: SpawnSpec) -> (ExitStatus, String) {
    let (mut r, w) = pipe();
    spec.stderr = Stdio::Fd(w.try_clone().unwrap());
    spec.stdout = Stdio::Fd(w);
    let child = spawn(&spec).unwrap_or_else(|e| panic!("spawn {:?}: {e}", spec.argv));
    drop(spec);
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    (child.wait().unwrap(), out)
}

fn run_ok(spec: SpawnSpec) -> String {
    let (status, out) = run(spec);
    assert_eq!(status, ExitStatus::Exited(0), "output: {out}");
    out
}

fn sh(script: &str) -> SpawnSpec {
    SpawnSpec::new(["/bin/sh", "-c", script])
}

fn exec_error(spec: &SpawnSpec) -> SpawnError {
    match spawn(spec) {
        Ok(c) => panic!("spawned {:?} unexpectedly as {}", spec.argv, c.pid),
        Err(e) => e,
    }
}

/// True when `pid` is no child of ours any more (reaped: no zombie left).
fn reaped(pid: Pid) -> bool {
    let mut status = 0;
    // SAFETY: plain syscall.
    let rc = unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::WNOHANG) };
    rc < 0 && Errno::last() == Errno::ECHILD
}

#[test]
fn child_is_born_in_the_given_cgroup() {
    require_root!();
    let cg = TestCgroup::new("birth");
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/cgroup"]);
    spec.cgroup = Some(cg.path.clone());
    let out = run_ok(spec);
    let line = out.lines().find(|l| l.starts_with("0::")).unwrap();
    assert_eq!(line, format!("0::{}", cg.rel));
}

#[test]
fn fallback_without_clone3_joins_the_cgroup_before_exec() {
    require_root!();
    let cg = TestCgroup::new("legacy");
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/cgroup"]);
    spec.cgroup = Some(cg.path.clone());
    spec.legacy_clone = true;
    let out = run_ok(spec);
    let line = out.lines().find(|l| l.starts_with("0::")).unwrap();
    assert_eq!(line, format!("0::{}", cg.rel));
}

#[test]
fn fallback_with_new_user_and_cgroup_namespaces() {
    require_root!();
    let cg = TestCgroup::new("legacy-userns");
    let mut spec = sh("grep '^0::' /proc/self/cgroup; cat /proc/self/uid_map; id -u");
    spec.cgroup = Some(cg.path.clone());
    spec.legacy_clone = true;
    spec.namespaces.user = NsMode::New;
    spec.namespaces.cgroup = NsMode::New;
    spec.namespaces.uid_map = vec![IdMap::root_to(100000)];
    spec.namespaces.gid_map = vec![IdMap::root_to(100000)];
    let out = run_ok(spec);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["0::/", "0", "100000", "1", "0"]);
    assert_eq!(
        fs::read_to_string(cg.path.join("cgroup.procs")).unwrap(),
        ""
    );
}

#[test]
fn clone_into_a_missing_cgroup_names_it() {
    let spec = {
        let mut s = SpawnSpec::new(["/bin/true"]);
        s.cgroup = Some("/nonexistent-cgroup".into());
        s
    };
    let e = exec_error(&spec);
    assert_eq!(
        e.to_string(),
        "opening cgroup /nonexistent-cgroup: No such file or directory"
    );
}

#[test]
fn missing_binary_is_reported_and_reaped() {
    let spec = SpawnSpec::new(["/nonexistent"]);
    let e = exec_error(&spec);
    assert_eq!(
        e.to_string(),
        "exec /nonexistent: No such file or directory"
    );
    match e {
        SpawnError::Exec {
            step, pid, status, ..
        } => {
            assert_eq!(step, Step::Exec);
            assert_eq!(status, Some(ExitStatus::Exited(127)));
            assert!(reaped(pid), "failed child {pid} left a zombie");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn chdir_failure_is_reported() {
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.working_directory = "/nonexistent-dir".into();
    let e = exec_error(&spec);
    assert_eq!(
        e.to_string(),
        "chdir /nonexistent-dir: No such file or directory"
    );
    assert_eq!(e.errno(), Some(Errno::ENOENT));
}

#[test]
fn working_directory_is_entered() {
    let mut spec = SpawnSpec::new(["/bin/pwd"]);
    spec.working_directory = "/usr/bin".into();
    assert_eq!(run_ok(spec), "/usr/bin\n");
}

#[test]
fn runs_as_nobody() {
    require_root!();
    let creds = resolve_user("nobody", None).unwrap();
    let mut spec = SpawnSpec::new(["/usr/bin/id", "-u"]);
    spec.credentials = Some(creds.clone());
    assert_eq!(run_ok(spec), "65534\n");

    let mut spec = SpawnSpec::new(["/usr/bin/id"]);
    spec.credentials = Some(Credentials {
        uid: 65534,
        gid: 65534,
        groups: vec![65534, 100],
    });
    let out = run_ok(spec);
    assert!(
        out.starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{out}"
    );
    assert!(out.contains("groups=65534(nogroup),100(users)"), "{out}");
}

/// The `CapXxx:` and `NoNewPrivs:` lines of a `/proc/self/status`, as `name value`.
fn privilege_lines(status: &str) -> String {
    status
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn caps(names: &[&str]) -> CapSet {
    names.iter().map(|n| Cap::from_name(n).unwrap()).collect()
}

#[test]
fn root_keeps_exactly_its_bounding_set() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/status"]);
    spec.privileges = Privileges {
        no_new_privs: true,
        bounding: Some(caps(&["CAP_NET_BIND_SERVICE", "CAP_CHOWN"])),
        ambient: CapSet::EMPTY,
    };
    assert_eq!(
        privilege_lines(&run_ok(spec)),
        "CapInh: 0000000000000000\nCapPrm: 0000000000000401\nCapEff: 0000000000000401\n\
         CapBnd: 0000000000000401\nCapAmb: 0000000000000000\nNoNewPrivs: 1"
    );
}

#[test]
fn ambient_capabilities_reach_a_non_root_service() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/status"]);
    spec.credentials = Some(resolve_user("nobody", None).unwrap());
    spec.privileges = Privileges {
        no_new_privs: true,
        bounding: Some(caps(&["CAP_NET_BIND_SERVICE", "CAP_KILL"])),
        ambient: caps(&["CAP_NET_BIND_SERVICE"]),
    };
    assert_eq!(
        privilege_lines(&run_ok(spec)),
        "CapInh: 0000000000000400\nCapPrm: 0000000000000400\nCapEff: 0000000000000400\n\
         CapBnd: 0000000000000420\nCapAmb: 0000000000000400\nNoNewPrivs: 1"
    );
    // Without ambient capabilities a non-root service has none.
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/status"]);
    spec.credentials = Some(resolve_user("nobody", None).unwrap());
    let out = privilege_lines(&run_ok(spec));
    assert!(
        out.contains("CapEff: 0000000000000000") && out.contains("NoNewPrivs: 0"),
        "{out}"
    );
}

#[test]
fn an_ambient_capability_outside_the_bounding_set_fails_the_start() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.credentials = Some(resolve_user("nobody", None).unwrap());
    spec.privileges.bounding = Some(caps(&["CAP_KILL"]));
    spec.privileges.ambient = caps(&["CAP_NET_BIND_SERVICE"]);
    assert_eq!(
        exec_error(&spec).to_string(),
        "raising the ambient capability CAP_NET_BIND_SERVICE: Operation not permitted"
    );
}

#[test]
fn environment_and_umask_reach_the_child() {
    let mut spec = sh("echo $FOO; echo ${HOME:-unset}; umask");
    spec.env("FOO", "bar baz");
    spec.umask = 0o027;
    assert_eq!(run_ok(spec), "bar baz\nunset\n0027\n");
}

#[test]
fn stdout_and_stderr_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let mut spec = sh("echo out; echo err >&2");
    spec.stdout = Stdio::Fd(OwnedFd::from(file.try_clone().unwrap()));
    spec.stderr = Stdio::Fd(OwnedFd::from(file));
    let child = spawn(&spec).unwrap();
    drop(spec);
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(fs::read_to_string(&path).unwrap(), "out\nerr\n");
}

#[test]
fn file_outputs_are_opened_by_spawn_and_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.log");
    fs::write(&path, "before\n").unwrap();
    let mut spec = sh("echo out; echo err >&2");
    spec.stdout = Stdio::File(path.clone());
    spec.stderr = Stdio::File(path.clone());
    let child = spawn(&spec).unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(fs::read_to_string(&path).unwrap(), "before\nout\nerr\n");
}

/// A `file:` path the service's user can change under the daemon: a symlink to a file the
/// daemon may write, or a FIFO. spawn refuses both before anything is started, and returns at
/// once (a FIFO with no reader would otherwise block the open).
#[test]
fn file_outputs_refuse_symlinks_and_fifos() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "untouched\n").unwrap();
    let link = dir.path().join("out.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut spec = sh("echo written");
    spec.stdout = Stdio::File(link.clone());
    let err = spawn(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "stdout = \"file:{}\": a component of the path is a symbolic link, which is never \
             followed for file: outputs",
            link.display()
        )
    );
    let fifo = dir.path().join("fifo.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    spec.stdout = Stdio::Null;
    spec.stderr = Stdio::File(fifo.clone());
    let err = spawn(&spec).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("a FIFO or a device, not a regular file"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");
}

#[test]
fn null_stdio() {
    // stdin on /dev/null: cat sees EOF at once; output to /dev/null is accepted.
    let child = spawn(&SpawnSpec::new(["/bin/cat"])).unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
    let mut spec = sh("echo hidden; readlink /proc/self/fd/0 /proc/self/fd/2 >&2");
    spec.stdout = Stdio::Null;
    let (r, w) = pipe();
    spec.stderr = Stdio::Fd(w);
    let child = spawn(&spec).unwrap();
    drop(spec);
    let out = std::io::read_to_string(r).unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
    assert!(out.starts_with("/dev/null\n"), "{out}");
}

#[test]
fn inherit_stdio_shares_the_daemons_descriptor() {
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.stdout = Stdio::Inherit;
    let child = spawn(&spec).unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
}

#[test]
fn signal_mask_and_dispositions_are_reset() {
    // Block SIGTERM and SIGCHLD in this test thread (the daemon blocks SIGCHLD for its
    // signalfd); Rust already ignores SIGPIPE process-wide. The child must inherit neither.
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGTERM);
    set.add(nix::sys::signal::Signal::SIGCHLD);
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&set),
        Some(&mut old),
    )
    .unwrap();
    let out = run_ok(SpawnSpec::new([
        "/bin/grep",
        "-E",
        "^Sig(Blk|Ign)",
        "/proc/self/status",
    ]));
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None)
        .unwrap();
    assert_eq!(
        out,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

#[test]
fn new_session_makes_a_group_leader() {
    let out = run_ok(SpawnSpec::new(["/bin/cat", "/proc/self/stat"]));
    // pid (comm) state ppid pgrp session ...
    let after = out.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let pid: &str = out.split_whitespace().next().unwrap();
    assert_eq!((f[2], f[3]), (pid, pid), "pgrp and session = pid");

    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/stat"]);
    spec.new_session = false;
    let out = run_ok(spec);
    let after = out.rsplit_once(')').unwrap().1;
    let sid: i32 = after.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(sid, nix::unistd::getsid(None).unwrap().as_raw());
}

#[test]
fn pidfd_signals_the_child_and_polls_readable_at_exit() {
    let child: Child = spawn(&SpawnSpec::new(["/bin/sleep", "100"])).unwrap();
    let pidfd = child.pidfd.as_ref().expect("no pidfd from clone3");
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: valid pollfd array.
    assert_eq!(
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 50) },
        0,
        "readable while alive"
    );
    child.signal(libc::SIGKILL).unwrap();
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) },
        1,
        "not readable after exit"
    );
    assert_eq!(
        child.wait().unwrap(),
        ExitStatus::Signaled(libc::SIGKILL, false)
    );
    // Exited and reaped: a pidfd never reaches a recycled pid.
    assert_eq!(child.signal(libc::SIGKILL), Err(Errno::ESRCH));
}

#[test]
fn process_group_signal_reaches_every_member() {
    let (mut r, w) = pipe();
    let mut spec = sh("/bin/sleep 100 & echo started; wait");
    spec.stdout = Stdio::Fd(w);
    let child = spawn(&spec).unwrap();
    drop(spec);
    let mut buf = [0u8; 8];
    let n = r.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"started\n");
    kill_process_group(child.pid, libc::SIGTERM).unwrap();
    assert_eq!(
        child.wait().unwrap(),
        ExitStatus::Signaled(libc::SIGTERM, false)
    );
    // The backgrounded sleep got it too: its write end of the pipe closes.
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(kill_process_group(Pid::from_raw(1), 0).is_err());
}

// ---------------------------------------------------------------- namespaces

#[test]
fn new_uts_namespace_with_hostname() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/hostname"]);
    spec.namespaces.uts = NsMode::New;
    spec.namespaces.hostname = Some("corral-test".into());
    assert_eq!(run_ok(spec), "corral-test\n");
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "corral-test"
    );
}

#[test]
fn new_pid_and_mount_namespace_is_pid_1_with_its_own_proc() {
    require_root!();
    let mut spec = sh("echo $$");
    spec.namespaces.pid = NsMode::New;
    spec.namespaces.mount = NsMode::New;
    assert_eq!(run_ok(spec), "1\n");

    let mut spec = SpawnSpec::new(["/bin/ls", "/proc"]);
    spec.namespaces.pid = NsMode::New;
    spec.namespaces.mount = NsMode::New;
    let out = run_ok(spec);
    let pids: Vec<&str> = out
        .lines()
        .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(pids, ["1"]);
}

#[test]
fn new_net_namespace_has_only_lo_and_it_is_up() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/net/dev"]);
    spec.namespaces.net = NsMode::New;
    let out = run_ok(spec);
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"]);

    let mut spec = SpawnSpec::new(["/usr/sbin/ip", "-o", "link", "show", "lo"]);
    spec.namespaces.net = NsMode::New;
    let out = run_ok(spec);
    assert!(out.contains("<LOOPBACK,UP,LOWER_UP>"), "{out}");
}

#[test]
fn namespaced_sysctl_is_written_inside_only() {
    require_root!();
    let key = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let host = fs::read_to_string(key).unwrap();
    let mut spec = SpawnSpec::new(["/bin/cat", key]);
    spec.namespaces.net = NsMode::New;
    spec.namespaces.sysctls = vec![("net.ipv4.ip_unprivileged_port_start".into(), "80".into())];
    assert_eq!(run_ok(spec), "80\n");
    assert_eq!(fs::read_to_string(key).unwrap(), host);

    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.namespaces.net = NsMode::New;
    spec.namespaces.sysctls = vec![("net.ipv4.no_such_key".into(), "1".into())];
    assert_eq!(
        exec_error(&spec).to_string(),
        "sysctl net.ipv4.no_such_key: No such file or directory"
    );
}

#[test]
fn new_user_namespace_with_parent_written_maps() {
    require_root!();
    let map = IdMap {
        inside: 0,
        outside: 100000,
        count: 65536,
    };
    let mut spec = sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g");
    spec.namespaces.user = NsMode::New;
    spec.namespaces.uid_map = vec![map];
    spec.namespaces.gid_map = vec![map];
    let out = run_ok(spec);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "100000", "65536", "0", "100000", "65536", "0", "0"]
    );

    // Outside, the same process runs as uid 100000.
    let mut spec = SpawnSpec::new(["/bin/sleep", "100"]);
    spec.namespaces.user = NsMode::New;
    spec.namespaces.uid_map = vec![map];
    spec.namespaces.gid_map = vec![map];
    spec.credentials = Some(Credentials {
        uid: 1000,
        gid: 1000,
        groups: vec![],
    });
    let child = spawn(&spec).unwrap();
    let status = fs::read_to_string(format!("/proc/{}/status", child.pid)).unwrap();
    child.signal(libc::SIGKILL).unwrap();
    child.wait().unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid_line, "Uid:\t101000\t101000\t101000\t101000");
}

#[test]
fn user_namespace_owns_the_other_new_namespaces() {
    require_root!();
    let map = IdMap {
        inside: 0,
        outside: 200000,
        count: 65536,
    };
    let mut spec =
        sh("echo $$; hostname; cat /proc/net/dev | tail -n +3 | cut -d: -f1; ls -A /tmp");
    spec.namespaces.user = NsMode::New;
    spec.namespaces.uid_map = vec![map];
    spec.namespaces.gid_map = vec![map];
    spec.namespaces.pid = NsMode::New;
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.net = NsMode::New;
    spec.namespaces.uts = NsMode::New;
    spec.namespaces.ipc = NsMode::New;
    spec.namespaces.hostname = Some("in-userns".into());
    spec.namespaces.mounts.private_tmp = true;
    spec.namespaces.sysctls = vec![("net.ipv4.ip_unprivileged_port_start".into(), "0".into())];
    let out = run_ok(spec);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["1", "in-userns", "lo"]);
}

#[test]
fn id_map_failure_is_reported_and_the_child_reaped() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.namespaces.user = NsMode::New;
    // Two overlapping ranges: the kernel refuses the map (EINVAL).
    spec.namespaces.uid_map = vec![
        IdMap {
            inside: 0,
            outside: 100000,
            count: 10,
        },
        IdMap {
            inside: 5,
            outside: 200000,
            count: 10,
        },
    ];
    spec.namespaces.gid_map = vec![IdMap::root_to(100000)];
    let e = exec_error(&spec);
    match &e {
        SpawnError::IdMap { path, errno, .. } => {
            assert!(path.ends_with("uid_map"), "{e}");
            assert_eq!(*errno, Errno::EINVAL);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn time_namespace_shifts_boottime() {
    require_root!();
    let offset = 10 * 86400;
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/uptime"]);
    spec.namespaces.time = NsMode::New;
    spec.namespaces.boottime_offset = ClockOffset::from_secs(offset);
    spec.namespaces.monotonic_offset = ClockOffset::from_secs(3600);
    let before = uptime(&fs::read_to_string("/proc/uptime").unwrap());
    let inside = uptime(&run_ok(spec));
    let after = uptime(&fs::read_to_string("/proc/uptime").unwrap());
    let off = offset as f64;
    assert!(
        inside >= before + off && inside <= after + off,
        "inside {inside}, host {before}..{after}"
    );
}

#[test]
fn time_namespace_takes_negative_offsets() {
    require_root!();
    // -1.5 s: the kernel wants "-2 500000000"; the clock inside must stay >= 0 (ERANGE).
    let offset = ClockOffset::from_nanos(-1_500_000_000);
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/uptime", "/proc/self/timens_offsets"]);
    spec.namespaces.time = NsMode::New;
    spec.namespaces.boottime_offset = offset;
    spec.namespaces.monotonic_offset = offset;
    let before = uptime(&fs::read_to_string("/proc/uptime").unwrap());
    let out = run_ok(spec);
    let after = uptime(&fs::read_to_string("/proc/uptime").unwrap());
    let inside = uptime(&out);
    assert!(
        inside >= before - 1.5 - 0.01 && inside <= after - 1.5 + 0.01,
        "inside {inside}, host {before}..{after}"
    );
    assert!(
        out.contains("monotonic") && out.contains("-2 500000000"),
        "{out}"
    );
}

fn uptime(s: &str) -> f64 {
    s.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn time_namespace_inside_a_user_namespace() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/uptime"]);
    spec.namespaces.user = NsMode::New;
    spec.namespaces.uid_map = vec![IdMap::root_to(100000)];
    spec.namespaces.gid_map = vec![IdMap::root_to(100000)];
    spec.namespaces.time = NsMode::New;
    spec.namespaces.boottime_offset = ClockOffset::from_secs(86400);
    let host = uptime(&fs::read_to_string("/proc/uptime").unwrap());
    let inside = uptime(&run_ok(spec));
    // Both read at 10 ms resolution, and 21487.29 + 86400.0 is a hair above 107887.29 in
    // floating point: equal to the hundredth is right.
    assert!(
        inside >= host + 86400.0 - 0.005,
        "inside {inside}, host {host}"
    );
}

#[test]
fn cgroup_namespace_roots_at_the_birth_cgroup() {
    require_root!();
    let cg = TestCgroup::new("cgns");
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/cgroup"]);
    spec.cgroup = Some(cg.path.clone());
    spec.namespaces.cgroup = NsMode::New;
    let out = run_ok(spec);
    assert!(out.lines().any(|l| l == "0::/"), "{out}");
}

#[test]
fn cgroup_namespace_with_mount_namespace_sees_its_cgroup_as_root() {
    require_root!();
    let cg = TestCgroup::new("cgfs");
    let mut spec = sh("cat /proc/self/cgroup | grep '^0::'; grep -c . /sys/fs/cgroup/cgroup.procs");
    spec.cgroup = Some(cg.path.clone());
    spec.namespaces.cgroup = NsMode::New;
    spec.namespaces.mount = NsMode::New;
    let out = run_ok(spec);
    // Only the processes of the test cgroup: the shell and its grep.
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0::/"));
    let n: u32 = lines.next().unwrap().parse().unwrap();
    assert!((1..=3).contains(&n), "{out}");
}

#[test]
fn cgroup_namespace_in_the_fallback() {
    require_root!();
    let cg = TestCgroup::new("cgns-legacy");
    let mut spec = SpawnSpec::new(["/bin/cat", "/proc/self/cgroup"]);
    spec.cgroup = Some(cg.path.clone());
    spec.namespaces.cgroup = NsMode::New;
    spec.legacy_clone = true;
    let out = run_ok(spec);
    assert!(out.lines().any(|l| l == "0::/"), "{out}");
}

#[test]
fn private_tmp_hides_the_hosts() {
    require_root!();
    let marker = tempfile::Builder::new()
        .prefix("corral-host-")
        .tempfile_in("/tmp")
        .unwrap();
    let mut spec = sh("ls -A /tmp; touch /tmp/inside; ls /tmp; stat -c %a /tmp");
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.private_tmp = true;
    assert_eq!(run_ok(spec), "inside\n1777\n");
    assert!(marker.path().exists());
    assert!(!Path::new("/tmp/inside").exists());
}

#[test]
fn read_only_path_refuses_writes() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let script = format!(
        "touch {0}/x 2>&1; touch {0}/sub/y 2>&1; echo rc=$?",
        dir.path().display()
    );
    let mut spec = sh(&script);
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.read_only_paths = vec![dir.path().to_path_buf()];
    let out = run_ok(spec);
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    assert!(out.ends_with("rc=1\n"), "{out}");
    // The host's view is untouched.
    fs::write(dir.path().join("x"), "host").unwrap();
}

#[test]
fn read_only_path_that_is_missing_is_an_error() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.read_only_paths = vec!["/nonexistent-ro".into()];
    assert_eq!(
        exec_error(&spec).to_string(),
        "mount target /nonexistent-ro: No such file or directory"
    );
}

#[test]
fn bind_mounts_create_their_target() {
    require_root!();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("hello"), "from the host\n").unwrap();
    let file_src = src.path().join("hello");
    let host = tempfile::tempdir().unwrap();
    let dir_target = host.path().join("a/b/data");
    let file_target = host.path().join("c/hello.txt");
    let script = format!(
        "cat {0}/hello; cat {1}; touch {0}/new 2>&1; echo rc=$?",
        dir_target.display(),
        file_target.display()
    );
    let mut spec = sh(&script);
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.binds = vec![
        Bind {
            source: src.path().to_path_buf(),
            target: dir_target.clone(),
            read_only: true,
        },
        Bind {
            source: file_src,
            target: file_target.clone(),
            read_only: false,
        },
    ];
    let out = run_ok(spec);
    assert!(out.starts_with("from the host\nfrom the host\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(dir_target.is_dir() && file_target.is_file());
    // The mounts stayed in the child's namespace.
    assert_eq!(fs::read_dir(&dir_target).unwrap().count(), 0);
}

#[test]
fn bind_of_a_missing_source_names_it() {
    require_root!();
    let host = tempfile::tempdir().unwrap();
    let target = host.path().join("t");
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.binds = vec![Bind {
        source: "/nonexistent-src".into(),
        target: target.clone(),
        read_only: false,
    }];
    assert_eq!(
        exec_error(&spec).to_string(),
        "bind source /nonexistent-src: No such file or directory"
    );
    assert!(
        !target.exists(),
        "no target is created for a missing source"
    );
}

/// A minimal root: the host's /usr bound read-only, the merged-/usr symlinks, /proc and /tmp.
fn make_rootfs() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for d in ["usr", "proc", "tmp", "etc"] {
        fs::create_dir(root.path().join(d)).unwrap();
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        let target = fs::read_link(Path::new("/").join(l)).unwrap_or_else(|_| {
            panic!("/{l} is not a symlink: this test expects Debian 12's merged /usr")
        });
        std::os::unix::fs::symlink(target, root.path().join(l)).unwrap();
    }
    fs::write(root.path().join("etc/marker"), "rootfs\n").unwrap();
    root
}

#[test]
fn root_is_entered_with_pivot_root() {
    require_root!();
    let root = make_rootfs();
    let mut spec = sh("ls /; cat /etc/marker; echo $$; cat /proc/1/comm; pwd");
    spec.working_directory = "/etc".into();
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.pid = NsMode::New;
    spec.namespaces.mounts.root = Some(root.path().to_path_buf());
    spec.namespaces.mounts.private_tmp = true;
    spec.namespaces.mounts.binds = vec![Bind {
        source: "/usr".into(),
        target: "/usr".into(),
        read_only: true,
    }];
    let out = run_ok(spec);
    assert_eq!(
        out,
        "bin\netc\nlib\nlib64\nproc\nsbin\ntmp\nusr\nrootfs\n1\nsh\n/etc\n"
    );
    // Nothing stayed mounted on the host's copy of the root.
    assert_eq!(fs::read_dir(root.path().join("usr")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.path().join("proc")).unwrap().count(), 0);
}

#[test]
fn missing_root_is_an_error() {
    require_root!();
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.root = Some("/nonexistent-root".into());
    assert_eq!(
        exec_error(&spec).to_string(),
        "root /nonexistent-root: No such file or directory"
    );
}

/// The class of runc's CVE-2021-30465: whoever may write a service's root puts a symlink where
/// a bind target, a read-only path or a directory on the way to one should be, pointing out of
/// the root (here at `outside`, standing for the host's /etc). No mount lands outside the
/// root, nothing is created there, and the start fails naming the path.
#[test]
fn symlinks_in_the_root_never_redirect_a_mount() {
    require_root!();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("passwd"), "host\n").unwrap();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("evil"), "evil\n").unwrap();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("proc")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../..", root.path().join("up")).unwrap();
    let r = root.path().display().to_string();
    let loop_msg = "the path goes through a symbolic link, which mount setup never follows \
                    (name the real path)";
    let bind = |target: &str| Bind {
        source: src.path().to_path_buf(),
        target: target.into(),
        read_only: false,
    };
    let cases: Vec<(Vec<Bind>, Vec<PathBuf>, String)> = vec![
        (
            vec![bind("/etc")],
            vec![],
            format!("mount target /etc in {r}: {loop_msg}"),
        ),
        (
            vec![bind("/etc/sub/dir")],
            vec![],
            format!("mount target /etc/sub/dir in {r}: {loop_msg}"),
        ),
        (
            vec![bind(&format!("/up{}/x", outside.path().display()))],
            vec![],
            format!(
                "mount target /up{}/x in {r}: {loop_msg}",
                outside.path().display()
            ),
        ),
        (
            vec![],
            vec!["/etc".into()],
            format!("mount target /etc in {r}: {loop_msg}"),
        ),
    ];
    for (binds, read_only, want) in cases {
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.namespaces.mount = NsMode::New;
        spec.namespaces.mounts.root = Some(root.path().to_path_buf());
        spec.namespaces.mounts.binds = binds;
        spec.namespaces.mounts.read_only_paths = read_only;
        assert_eq!(exec_error(&spec).to_string(), want);
        // Nothing was made outside the root.
        let names: Vec<_> = fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwd"], "{want}");
    }
    // A symlinked source is refused too: a mount path never goes through a symlink.
    std::os::unix::fs::symlink(outside.path(), src.path().join("link")).unwrap();
    let mut spec = SpawnSpec::new(["/bin/true"]);
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.binds = vec![Bind {
        source: src.path().join("link"),
        target: root.path().join("proc"),
        read_only: false,
    }];
    assert_eq!(
        exec_error(&spec).to_string(),
        format!("bind source {}/link: {loop_msg}", src.path().display())
    );
}

/// `..` in a symlink-free path is clamped to the root (RESOLVE_IN_ROOT): a target made with
/// the root's own directories stays inside, and a read-only path inside the root stays there.
#[test]
fn bind_targets_are_created_inside_the_root() {
    require_root!();
    let root = make_rootfs();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), "from the host\n").unwrap();
    let mut spec = sh("cat /srv/data/f; ls -d /srv/data; touch /etc/x 2>&1; echo rc=$?");
    spec.namespaces.mount = NsMode::New;
    spec.namespaces.mounts.root = Some(root.path().to_path_buf());
    spec.namespaces.mounts.read_only_paths = vec!["/etc".into()];
    spec.namespaces.mounts.binds = vec![
        Bind {
            source: "/usr".into(),
            target: "/usr".into(),
            read_only: true,
        },
        Bind {
            source: src.path().to_path_buf(),
            target: "/srv/data".into(),
            read_only: false,
        },
    ];
    let out = run_ok(spec);
    assert!(out.starts_with("from the host\n/srv/data\n"), "{out}");
    assert!(
        out.contains("Read-only file system") && out.contains("rc=1"),
        "{out}"
    );
    assert!(root.path().join("srv/data").is_dir());
    assert!(!Path::new("/srv/data").join("f").exists());
}

// ---------------------------------------------------------------- joining (pod style)

fn ns_link(pid: Pid, kind: &str) -> OsString {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .into_os_string()
}

fn open_ns(pid: Pid, kind: &str) -> OwnedFd {
    fs::File::open(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .into()
}

/// A `sleep` in new namespaces, killed on drop.
struct Sleeper(Child);

impl Sleeper {
    fn new(f: impl FnOnce(&mut SpawnSpec)) -> Sleeper {
        let mut spec = SpawnSpec::new(["/bin/sleep", "100"]);
        f(&mut spec);
        Sleeper(spawn(&spec).unwrap())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.signal(libc::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn joins_another_process_net_namespace() {
    require_root!();
    let pod = Sleeper::new(|s| s.namespaces.net = NsMode::New);
    let mut spec = SpawnSpec::new(["/usr/bin/readlink", "/proc/self/ns/net"]);
    spec.namespaces.net = NsMode::Join(open_ns(pod.0.pid, "net"));
    let out = run_ok(spec);
    assert_eq!(
        OsString::from_vec(out.trim_end().as_bytes().to_vec()),
        ns_link(pod.0.pid, "net")
    );
}

#[test]
fn joins_a_net_namespace_then_creates_a_user_namespace() {
    require_root!();
    let pod = Sleeper::new(|s| s.namespaces.net = NsMode::New);
    let mut spec = sh("readlink /proc/self/ns/net; cat /proc/self/uid_map; id -u; hostname");
    spec.namespaces.net = NsMode::Join(open_ns(pod.0.pid, "net"));
    spec.namespaces.user = NsMode::New;
    spec.namespaces.uts = NsMode::New;
    spec.namespaces.hostname = Some("late-user".into());
    spec.namespaces.uid_map = vec![IdMap::root_to(100000)];
    spec.namespaces.gid_map = vec![IdMap::root_to(100000)];
    let out = run_ok(spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(OsString::from(lines[0]), ns_link(pod.0.pid, "net"));
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "1"]
    );
    assert_eq!(&lines[2..], ["0", "late-user"]);
}

#[test]
fn joins_another_process_pid_namespace() {
    require_root!();
    let pod = Sleeper::new(|s| {
        s.namespaces.pid = NsMode::New;
        s.namespaces.mount = NsMode::New;
    });
    let pod_ns = ns_link(pod.0.pid, "pid");
    let mut spec = sh("readlink /proc/self/ns/pid; echo $$; cat /proc/1/comm");
    spec.namespaces.pid = NsMode::Join(open_ns(pod.0.pid, "pid"));
    spec.namespaces.mount = NsMode::New;
    let (r, w) = pipe();
    spec.stdout = Stdio::Fd(w);
    let child = spawn(&spec).unwrap();
    drop(spec);
    let has_pidfd = child.pidfd.is_some();
    let out = std::io::read_to_string(r).unwrap();
    // waitpid(pid) works only for our own children: the service is the daemon's child
    // (CLONE_PARENT), not the middle process's. Reap it before any assertion can unwind: the
    // pod's PID 1, killed on drop, waits until every process of its namespace is reaped.
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
    assert!(has_pidfd);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(OsString::from(lines[0]), pod_ns);
    assert_ne!(lines[1], "1", "the pod's sleep is PID 1");
    assert_eq!(lines[2], "sleep");
}

#[test]
fn pid_join_failure_after_the_fork_is_reported() {
    require_root!();
    let pod = Sleeper::new(|s| {
        s.namespaces.pid = NsMode::New;
        s.namespaces.mount = NsMode::New;
    });
    let mut spec = SpawnSpec::new(["/nonexistent-in-pod"]);
    spec.namespaces.pid = NsMode::Join(open_ns(pod.0.pid, "pid"));
    let e = exec_error(&spec);
    assert_eq!(
        e.to_string(),
        "exec /nonexistent-in-pod: No such file or directory"
    );
    if let SpawnError::Exec { pid, status, .. } = e {
        assert_eq!(status, Some(ExitStatus::Exited(127)));
        assert!(reaped(pid));
    }
}

#[test]
fn pidfd_of_a_spawned_child_is_pollable_by_asfd() {
    let child = spawn(&SpawnSpec::new(["/bin/true"])).unwrap();
    let fd = child.pidfd.as_ref().unwrap().as_fd();
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    assert_eq!(nix::poll::poll(&mut fds, 5000u16).unwrap(), 1);
    assert_eq!(wait_pid(child.pid).unwrap(), ExitStatus::Exited(0));
}
