//! The cgroup engine on the host's real cgroup2 mount (found in /proc/self/mountinfo; here
//! `/sys/fs/cgroup/unified`, which offers no resource controllers, but mkdir, cgroup.procs,
//! cgroup.events, cgroup.kill and cgroup.freeze are the kernel's own). Each test works in a
//! fresh, uniquely named child of the mount and removes it when done, even on failure. Skipped,
//! with the reason printed, only where no cgroup2 file system is mounted.

#[path = "common/skip.rs"]
mod skip;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use corral::cgroup::ownership::{self, DelegationMark, RootRequest, RootSource};
use corral::cgroup::{
    Cgroup, CgroupError, CgroupEvent, Controller, EventWatcher, HostInfo, SysfsDevices, Tree,
    Warning, write_knob,
};
use corral::limits::{RawValue, Resources};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// A uniquely named cgroup below the cgroup2 mount, killed and removed on drop.
struct TestTree {
    dir: PathBuf,
}

impl TestTree {
    /// `None` (with the reason printed) where there is no cgroup2 mount.
    fn new(name: &str) -> Option<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let Some(mount) = ownership::parse_mountinfo(&mountinfo) else {
            skip::skipped(format!(
                "{name}: no cgroup2 file system is mounted on this host"
            ));
            return None;
        };
        let dir = mount.mount_point.join(format!(
            "corral-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("mkdir {} (are we allowed to?): {e}", dir.display()));
        Some(TestTree { dir })
    }

    fn tree(&self) -> Tree {
        Tree::new(&self.dir)
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        let top = Cgroup::new(&self.dir);
        let _ = top.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while top.is_populated().unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = top.remove_tree() {
            eprintln!("cleanup of {}: {e}", self.dir.display());
        }
    }
}

/// Starts `sleep 600` inside `cgroup` (it writes itself to cgroup.procs before exec).
fn spawn_in(cgroup: &Path) -> Child {
    let procs = OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .expect("open cgroup.procs");
    let fd = procs.as_raw_fd();
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    // SAFETY: only write(2) runs between fork and exec; `procs` outlives spawn().
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = cmd.spawn().expect("spawn sleep");
    drop(procs);
    child
}

/// Collects watcher events until `done` says enough or the timeout passes.
fn events_until(
    w: &mut EventWatcher,
    timeout: Duration,
    done: impl Fn(&[CgroupEvent]) -> bool,
) -> Vec<CgroupEvent> {
    let deadline = Instant::now() + timeout;
    let mut all = Vec::new();
    while !done(&all) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(ms)).expect("poll");
        all.extend(w.read_events().expect("read_events"));
    }
    all
}

const JOB: &str = "apps.slice/apps-batch.slice/job.service";

#[test]
fn tree_procs_and_kill_with_empty_event() {
    let Some(t) = TestTree::new("kill") else {
        return;
    };
    let tree = t.tree();
    let job = tree.create(JOB).unwrap();
    let slice = tree.cgroup("apps.slice").unwrap();
    assert!(job.exists() && slice.exists());
    assert!(!job.is_populated().unwrap());

    let mut child = spawn_in(job.path());
    let pid = child.id();
    assert_eq!(job.procs().unwrap(), vec![pid]);
    assert!(slice.is_populated().unwrap(), "populated is hierarchical");
    assert_eq!(slice.procs().unwrap(), Vec::<u32>::new());

    let mut w = EventWatcher::new().unwrap();
    assert!(w.add(7, job.path()).unwrap().populated);
    assert!(w.add(8, slice.path()).unwrap().populated);
    assert_eq!(
        w.read_events().unwrap(),
        vec![],
        "nothing pending, no blocking"
    );

    job.kill().unwrap();
    let got = events_until(&mut w, Duration::from_secs(5), |ev| ev.len() >= 2);
    assert!(got.contains(&CgroupEvent::Empty { token: 7 }), "{got:?}");
    assert!(got.contains(&CgroupEvent::Empty { token: 8 }), "{got:?}");
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(job.procs().unwrap(), Vec::<u32>::new());

    w.remove(7);
    w.remove(8);
    tree.remove("apps.slice").unwrap();
    assert!(!slice.exists());
}

#[test]
fn freeze_and_thaw() {
    let Some(t) = TestTree::new("freeze") else {
        return;
    };
    let job = t.tree().create("web.service").unwrap();
    let mut child = spawn_in(job.path());
    job.freeze(Duration::from_secs(5)).unwrap();
    assert!(job.events().unwrap().frozen);
    assert_eq!(job.procs().unwrap(), vec![child.id()], "frozen, not gone");
    job.thaw(Duration::from_secs(5)).unwrap();
    assert!(!job.events().unwrap().frozen);
    job.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_busy_remove_fails_at_once_and_succeeds_once_empty() {
    let Some(t) = TestTree::new("rmdir") else {
        return;
    };
    let tree = t.tree();
    let job = tree.create(JOB).unwrap();
    let mut children: Vec<Child> = (0..4).map(|_| spawn_in(job.path())).collect();
    assert_eq!(job.procs().unwrap().len(), 4);
    // Processes in the tree: EBUSY, reported as such, with no retry (the manager's loop
    // tries again on the cgroup's next "empty" event instead of sleeping).
    let err = tree.remove(JOB).unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(err.to_string().starts_with("removing cgroup "), "{err}");
    assert!(job.exists());
    job.kill().unwrap();
    // Killed processes count until they have gone through exit(): wait as the manager
    // does, for `populated 0`.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while job.is_populated().unwrap() {
        assert!(std::time::Instant::now() < deadline, "still populated");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The loop's removal is one rmdir: a slice holding a unit's cgroup stays, untouched.
    let err = tree.remove_childless("apps.slice").unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(job.exists());
    tree.remove_childless(JOB).unwrap();
    tree.remove_childless("apps.slice/apps-batch.slice")
        .unwrap();
    tree.remove_childless("apps.slice").unwrap();
    assert!(!tree.root().join("apps.slice").exists());
    // Bottom-up, everything below.
    tree.create(JOB).unwrap();
    tree.remove("apps.slice").unwrap();
    assert!(!job.exists());
    for c in &mut children {
        c.wait().unwrap();
    }
}

#[test]
fn realize_without_controllers_warns_and_writes_are_checked() {
    let Some(t) = TestTree::new("realize") else {
        return;
    };
    let tree = t.tree();
    let host = HostInfo::new(1 << 30, SysfsDevices::new());
    let offered = Cgroup::new(&t.dir).controllers().unwrap();

    // No keys: memory/pids accounting where offered, and no warning either way.
    assert_eq!(
        tree.realize(JOB, &Resources::default(), &host).unwrap(),
        vec![]
    );
    let mut r = Resources::default();
    r.set("memory-max", RawValue::Str("1G")).unwrap();
    r.set("pids-max", RawValue::Int(10)).unwrap();
    let warnings = tree.realize(JOB, &r, &host).unwrap();
    if !offered.contains(Controller::Memory) {
        assert!(
            warnings.contains(&Warning::ControllerMissing {
                key: "memory-max",
                controller: Controller::Memory,
                cgroup: t.dir.clone(),
            }),
            "{warnings:?}"
        );
    } else {
        let job = tree.cgroup(JOB).unwrap();
        assert_eq!(
            std::fs::read_to_string(job.file("memory.max")).unwrap(),
            "1073741824\n"
        );
    }

    // A misspelt knob is an error and no file appears; the kernel's refusal names path and value.
    let job = tree.cgroup(JOB).unwrap();
    let err = write_knob(&job.file("cgroup.freez"), "1").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!job.file("cgroup.freez").exists());
    let err = write_knob(&job.file("cgroup.freeze"), "abc").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "writing \"abc\" to {}: Invalid argument",
            job.file("cgroup.freeze").display()
        )
    );
    assert!(matches!(err, CgroupError::Write { .. }));
}

#[test]
fn ownership_on_the_real_hierarchy() {
    let Some(t) = TestTree::new("owner") else {
        return;
    };
    let req = RootRequest::detect(false, None).unwrap();
    if ownership::is_hierarchy_root(&req.own_cgroup) && !req.is_pid1 {
        let err = ownership::decide_root(&req).unwrap_err().to_string();
        assert!(err.contains("root of the cgroup hierarchy"), "{err}");
        assert!(err.contains("Delegate=yes"), "{err}");
    }

    // --cgroup-root on a cgroup we created: ours, while its init.scope holds no one else.
    let flagged = RootRequest {
        cgroup_root: Some(t.dir.clone()),
        ..req.clone()
    };
    let root = ownership::decide_root(&flagged).unwrap();
    assert_eq!(
        (root.path.as_path(), root.source),
        (t.dir.as_path(), RootSource::Flag)
    );

    // A stand-in daemon (moving the test runner would put it in the tree the guard kills):
    // started elsewhere, moved into init.scope like corrald moves itself.
    let tree = t.tree();
    let parking = tree.create("parking.scope").unwrap();
    let mut daemon = spawn_in(parking.path());
    let scope = tree.enter_init_scope(daemon.id()).unwrap();
    assert_eq!(scope.procs().unwrap(), vec![daemon.id()]);
    let as_daemon = RootRequest {
        pid: daemon.id(),
        ..flagged.clone()
    };
    assert!(
        ownership::decide_root(&as_daemon).is_ok(),
        "itself is not another manager"
    );
    let mut other = spawn_in(scope.path());
    let err = ownership::decide_root(&as_daemon).unwrap_err();
    assert!(
        matches!(err, ownership::OwnershipError::OtherManager { pid, .. } if pid == other.id()),
        "{err}"
    );
    assert!(err.to_string().contains("(sleep)"), "{err}");
    for c in [&mut daemon, &mut other] {
        c.kill().unwrap();
        c.wait().unwrap();
    }

    // Delegating a unit's cgroup marks it so a nested manager recognises it.
    let unit = tree.create("nested.service").unwrap();
    let me = nix::unistd::Uid::current().as_raw();
    let gid = nix::unistd::Gid::current().as_raw();
    unit.delegate_to(me, gid).unwrap();
    let mark = ownership::delegation_mark(unit.path(), false, me);
    assert!(
        matches!(
            mark,
            Some(DelegationMark::TrustedXattr) | Some(DelegationMark::UserXattr)
        ),
        "{mark:?}"
    );
}
