//! corrald as PID 1 of a VM proves that limits hold in a real kernel: units from
//! `tests/vm/limits/` run memory, CPU and fork hogs; `checks.service` measures their effect from
//! inside the guest (cgroup CPU time against guest uptime, memory.events, pids.events,
//! Cpus_allowed_list) and powers the machine off with SIGTERM to PID 1.

#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn limits_hold_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/limits");
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(Path::new(env!("CARGO_BIN_EXE_corrald")), Path::new("/init"))
        .binary(
            Path::new("/usr/bin/stress-ng"),
            Path::new("/usr/bin/stress-ng"),
        )
        .dir(Path::new("/etc/corral/units"), 0o755)
        .dir(Path::new("/var/log/corral"), 0o755);
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(180))
        .run_reported("limits");
    out.assert_passed(&[
        "cpu-max",
        "nesting",
        "cpu-weight",
        "pids-max",
        "cpuset-cpus",
        "memory-high",
        "memory-max-neighbour",
    ]);
    out.assert_all_passed();
    // The kernel's own word that the hog died inside its cgroup, and the daemon's result.
    if !out.console.contains("Memory cgroup out of memory") {
        out.fail("no memory cgroup OOM kill in the kernel log");
    }
    let hog_failed = out
        .console
        .lines()
        .any(|l| l.contains("unit=hog.service") && l.contains("failed (failed), result oom-kill"));
    if !hog_failed {
        out.fail("hog.service did not end failed with result oom-kill");
    }
    if !out.console.contains("every unit stopped") {
        out.fail("corrald did not stop every unit before powering off");
    }
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
