//! corrald as PID 1 of a VM proves that every namespace of `[namespaces]` holds in a real
//! kernel: units from `tests/vm/namespaces/` start in fresh pid, mount, uts, net, ipc, cgroup,
//! user and time namespaces, a new root, and a pod-style shared network namespace; each records
//! what it sees from inside, and `checks.service` (`ns.sh`) compares that with what the guest
//! kernel shows the host side (`/proc/PID/ns/*`, `status`, `mountinfo`, `net/dev`, `root`),
//! prints `CORRAL-CHECK` lines and powers the machine off with SIGTERM to PID 1. On the way
//! down, `iso.service`'s `exec-stop` checks that a control command joins the service's
//! namespaces (PID namespace included).
//!
//! The image adds a small root file system (`/srv/rootfs`: a marker file and `/proc`), a
//! world-writable results directory (`/var/ns`: the user-namespace services write there as
//! uid 100000 and 1000 outside) and the `dummy` module, loaded through `modules-load.d` so that
//! the host has an interface besides `lo` that a fresh network namespace must not show.

#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn namespaces_hold_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/namespaces");
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(Path::new(env!("CARGO_BIN_EXE_corrald")), Path::new("/init"))
        .dir(Path::new("/etc/corral/units"), 0o755)
        .dir(Path::new("/var/log/corral"), 0o755)
        .dir(Path::new("/var/ns"), 0o1777)
        .dir(Path::new("/srv/rootfs/proc"), 0o555)
        .file("/srv/rootfs/etc/corral-rootfs", "corral rootfs\n", 0o644)
        .file("/etc/modules-load.d/ns.conf", "dummy\n", 0o644)
        .kernel_modules(vm::Kernel::host(), &["dummy"]);
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(180))
        .run_reported("namespaces");
    out.assert_passed(&[
        "pid",
        "hostname",
        "net-lo",
        "mount-table",
        "private-tmp",
        "read-only",
        "cgroup",
        "root",
        "user-map",
        "user-default-map",
        "time",
        "time-negative",
        "ipc",
        "sysctl",
        "pod-net",
        "owner-not-running",
        "exec-stop",
    ]);
    out.assert_all_passed();
    // The daemon's own word on why lonely.service could not start.
    let refused = out
        .console
        .lines()
        .any(|l| l.contains("lonely.service") && l.contains("gone.service is not running"));
    if !refused {
        out.fail("lonely.service did not fail because gone.service is not running");
    }
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
