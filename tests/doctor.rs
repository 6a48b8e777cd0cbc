//! `corralctl doctor` against fake machines — `tests/fixtures/doctor/{unified,hybrid,legacy}`
//! hold a `/proc` (mountinfo, cgroups, the kernel release) and a cgroupfs tree each — and on
//! this machine, whose layout is read independently from its mountinfo.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use corral::cgroup::ownership::set_xattr;
use corral::doctor::{Level, Report, Roots, inspect};

/// A copy of a fixture (xattrs and sockets can't live in git), with the sockets in it.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new(layout: &str) -> Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/doctor")
            .join(layout);
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&src, dir.path());
        Machine { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn roots(&self) -> Roots {
        Roots {
            proc: self.path("proc"),
            fs: self.path("fs"),
            bus_socket: self.path("fs/run/dbus/system_bus_socket"),
            daemon_socket: self.path("fs/run/corral/private"),
        }
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn level(r: &Report, check: &str) -> Level {
    r.get(check)
        .unwrap_or_else(|| panic!("no {check} finding:\n{}", r.to_text()))
        .level
}

fn message(r: &Report, check: &str) -> String {
    r.get(check).unwrap().message.clone()
}

#[test]
fn a_unified_host_with_a_delegated_corrald_is_all_ok() {
    let m = Machine::new("unified");
    let svc = m.path("fs/sys/fs/cgroup/system.slice/corrald.service");
    set_xattr(&svc, "trusted.delegate", b"1").unwrap();
    m.write(
        "fs/sys/fs/cgroup/system.slice/corrald.service/init.scope/cgroup.procs",
        "4242\n",
    );
    m.write("proc/4242/comm", "corrald\n");
    std::fs::create_dir_all(m.path("fs/run/dbus")).unwrap();
    std::fs::create_dir_all(m.path("fs/run/corral")).unwrap();
    let _bus = UnixListener::bind(m.path("fs/run/dbus/system_bus_socket")).unwrap();
    let _daemon = UnixListener::bind(m.path("fs/run/corral/private")).unwrap();

    let r = inspect(&m.roots());
    let text = r.to_text();
    assert_eq!(r.errors(), 0, "{text}");
    assert_eq!(level(&r, "layout"), Level::Ok);
    assert_eq!(message(&r, "layout"), "unified: cgroup2 at /sys/fs/cgroup");
    for c in ["cpu", "memory", "pids", "io"] {
        assert_eq!(level(&r, c), Level::Ok, "{text}");
        assert_eq!(message(&r, c), "on cgroup2 at /sys/fs/cgroup");
    }
    // systemd did not delegate cpuset to corrald.service: a warning with its fix.
    assert_eq!(level(&r, "cpuset"), Level::Warn, "{text}");
    assert!(
        r.get("cpuset")
            .unwrap()
            .fix
            .as_ref()
            .unwrap()
            .contains("DelegateControllers")
    );
    assert_eq!(level(&r, "tree"), Level::Ok);
    assert!(
        message(&r, "tree").contains(
            "corrald.service is delegated (trusted.delegate) and corrald (PID 4242) manages it"
        ),
        "{text}"
    );
    for check in [
        "kernel",
        "clone3",
        "pidfd",
        "cgroup.kill",
        "time namespace",
        "psi",
        "bus",
        "daemon",
    ] {
        assert_eq!(level(&r, check), Level::Ok, "{check}: {text}");
    }
    // One finding a line; every warn and error has its fix.
    assert_eq!(text.lines().count(), r.findings.len());
    assert!(
        r.findings
            .iter()
            .all(|f| (f.level == Level::Ok) == f.fix.is_none()),
        "{text}"
    );
}

#[test]
fn a_hybrid_host_says_where_each_controller_is_and_how_to_move_it() {
    let m = Machine::new("hybrid");
    let r = inspect(&m.roots());
    let text = r.to_text();
    assert_eq!(level(&r, "layout"), Level::Warn, "{text}");
    assert!(
        message(&r, "layout").starts_with("hybrid: cgroup2 at /sys/fs/cgroup/unified"),
        "{text}"
    );
    assert!(
        message(&r, "layout").contains("memory at /sys/fs/cgroup/memory"),
        "{text}"
    );
    for (c, lvl, at) in [
        ("cpu", Level::Error, "/sys/fs/cgroup/cpu"),
        ("memory", Level::Error, "/sys/fs/cgroup/memory"),
        ("pids", Level::Error, "/sys/fs/cgroup/pids"),
        ("io", Level::Warn, "/sys/fs/cgroup/blkio"),
        ("cpuset", Level::Warn, "/sys/fs/cgroup/cpuset"),
    ] {
        let f = r.get(c).unwrap();
        assert_eq!(f.level, lvl, "{c}: {text}");
        assert!(
            f.message
                .starts_with(&format!("bound to cgroup v1 at {at}")),
            "{text}"
        );
        assert!(
            f.fix
                .as_ref()
                .unwrap()
                .contains("systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all")
        );
    }
    assert_eq!(level(&r, "tree"), Level::Warn);
    assert!(
        message(&r, "tree").contains("PID 1 (process_api)"),
        "{text}"
    );
    assert_eq!(level(&r, "kernel"), Level::Ok);
    assert_eq!(level(&r, "bus"), Level::Warn);
    assert_eq!(level(&r, "daemon"), Level::Warn);
    assert!(message(&r, "daemon").starts_with("corrald is not running"));
    assert_eq!(r.errors(), 3, "{text}");
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["errors"], 3);
    assert_eq!(json["findings"][0]["check"], "layout");
    assert_eq!(json["findings"][0]["level"], "warn");
}

#[test]
fn a_legacy_host_and_an_old_kernel_are_errors() {
    let m = Machine::new("legacy");
    let r = inspect(&m.roots());
    let text = r.to_text();
    assert_eq!(level(&r, "layout"), Level::Error, "{text}");
    assert!(
        message(&r, "layout").starts_with("legacy: no cgroup2 is mounted"),
        "{text}"
    );
    assert!(
        r.get("layout")
            .unwrap()
            .fix
            .as_ref()
            .unwrap()
            .contains("cgroup_no_v1=all")
    );
    assert_eq!(level(&r, "memory"), Level::Error);
    assert_eq!(level(&r, "tree"), Level::Error);
    // 4.19: older than 5.7, and no time namespace.
    assert_eq!(level(&r, "kernel"), Level::Error);
    assert_eq!(level(&r, "clone3"), Level::Error);
    assert_eq!(level(&r, "cgroup.kill"), Level::Error);
    assert_eq!(level(&r, "pidfd"), Level::Error);
    assert_eq!(level(&r, "time namespace"), Level::Warn);
    assert!(r.get("psi").is_none(), "{text}");
}

#[test]
fn disabled_and_undelegated_controllers_and_a_stale_socket() {
    let m = Machine::new("unified");
    let cgroups = std::fs::read_to_string(m.path("proc/cgroups")).unwrap();
    m.write(
        "proc/cgroups",
        &cgroups.replace("memory\t0\t81\t1", "memory\t0\t81\t0"),
    );
    m.write(
        "fs/sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io pids\n",
    );
    m.write("proc/sys/kernel/osrelease", "5.10.0-30-amd64\n");
    std::fs::create_dir_all(m.path("fs/run/corral")).unwrap();
    drop(UnixListener::bind(m.path("fs/run/corral/private")).unwrap());
    let r = inspect(&m.roots());
    let text = r.to_text();
    let mem = r.get("memory").unwrap();
    assert_eq!(mem.level, Level::Error, "{text}");
    assert!(
        mem.message
            .starts_with("disabled on the kernel command line"),
        "{text}"
    );
    assert_eq!(
        mem.fix.as_deref(),
        Some("remove `cgroup_disable=memory` from the kernel command line")
    );
    // Nothing delegated in this copy.
    assert_eq!(level(&r, "tree"), Level::Warn, "{text}");
    assert!(
        r.get("tree")
            .unwrap()
            .fix
            .as_ref()
            .unwrap()
            .contains("Delegate=yes")
    );
    assert_eq!(level(&r, "kernel"), Level::Warn, "{text}");
    assert_eq!(level(&r, "cgroup.kill"), Level::Error, "{text}");
    assert_eq!(level(&r, "daemon"), Level::Warn);
    assert!(message(&r, "daemon").contains("a stale socket"), "{text}");
}

#[test]
fn this_machine() {
    let out = assert_cmd::Command::cargo_bin("corralctl")
        .unwrap()
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    println!("{text}");
    let errors = text.lines().filter(|l| l.starts_with("error ")).count();
    assert_eq!(out.status.success(), errors == 0, "{text}");
    // The layout, read here without the doctor's code.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let fstypes: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split_once(" - ")?.1.split_whitespace().next())
        .collect();
    let v2 = fstypes.contains(&"cgroup2");
    let v1_controllers = mountinfo.lines().any(|l| {
        l.split_once(" - ").is_some_and(|(_, post)| {
            let mut f = post.split_whitespace();
            f.next() == Some("cgroup")
                && f.nth(1).is_some_and(|o| {
                    o.split(',')
                        .any(|x| !["rw", "ro", "xattr"].contains(&x) && !x.starts_with("name="))
                })
        })
    });
    let want = match (v2, v1_controllers) {
        (true, false) => "ok    layout: unified",
        (true, true) => "warn  layout: hybrid",
        (false, _) => "error layout: legacy",
    };
    assert!(text.starts_with(want), "expected {want:?}:\n{text}");
    let json = assert_cmd::Command::cargo_bin("corralctl")
        .unwrap()
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["errors"], errors);
    assert_eq!(
        v["findings"].as_array().unwrap().len(),
        text.lines().count()
    );
}
