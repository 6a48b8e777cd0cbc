//! Containers on corral (DESIGN §9, issue 15): corrald as PID 1 serves the
//! `org.freedesktop.systemd1` subset, and Debian's runc (1.1) and crun (1.8) run busybox
//! containers from bundles built in the guest, with `--systemd-cgroup`, in a kubepods-style
//! slice tree that kubelet's own sequence of calls (replayed with busctl) made: run, exec,
//! update (the limits change in the scope's cgroup files), kill, delete (the scope and its
//! cgroup are gone). runc first runs with no bus (go-systemd falls back to
//! `/run/systemd/private`, without `Hello`), then corrald starts the system bus as a unit and
//! crun (sd-bus, matching `JobRemoved` on the sender `org.freedesktop.systemd1`) and runc go
//! through it. Half-way, `corralctl daemon-reexec` (the upgrade path) keeps both containers'
//! scopes and the pod slice, which have no file. The checks are
//! `tests/vm/containers/containers.sh`; `scripts/demo --containers` shows them.
//!
//! containerd (`ctr run` with `SystemdCgroup = true`) is not run: its daemon, shim and an image
//! store would more than double the guest image and the boot for nothing runc does not already
//! show — containerd hands the systemd driver to runc.

#[path = "common/bus.rs"]
mod bus;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

/// The runtimes, at their Debian paths (scripts/vm-deps installs them).
const RUNTIMES: [&str; 2] = ["/usr/sbin/runc", "/usr/bin/crun"];

#[test]
fn runc_and_crun_run_containers_with_the_systemd_driver_under_corrald() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/vm/containers");
    if let Some(why) = bus::missing_guest_tools() {
        skip::skipped(why);
        return;
    }
    if let Some(missing) = RUNTIMES.iter().find(|t| !Path::new(t).is_file()) {
        skip::skipped(format!("no {missing} (see scripts/vm-deps)"));
        return;
    }
    // The system bus with both policies: corral's and the subset's.
    let config = bus::guest_system_config().replace(
        "</busconfig>",
        "  <include>/etc/dbus-1/org.freedesktop.systemd1.conf</include>\n</busconfig>",
    );
    let mut overlay = vm::Initramfs::new();
    overlay.system_bus(&bus::GUEST_TOOLS, &config);
    overlay.copy(
        root.join("dbus/org.freedesktop.systemd1.conf"),
        "/etc/dbus-1/org.freedesktop.systemd1.conf",
    );
    for runtime in RUNTIMES {
        overlay.binary(runtime, runtime);
    }
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(240))
        .run_reported("containers");
    out.assert_passed(&[
        "compat-socket",
        "kubelet-pod-slice",
        "runc-run",
        "runc-exec",
        "runc-update",
        "corralctl-tree",
        "reexec-keeps-scopes",
        "runc-kill-delete",
        "bus-name",
        "crun-run",
        "crun-exec",
        "crun-update",
        "crun-kill-delete",
        "runc-bus",
        "kubelet-pod-removed",
    ]);
    out.assert_all_passed();
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
