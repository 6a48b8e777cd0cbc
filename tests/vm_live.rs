//! Live control of running units in a VM with corrald as PID 1, measured in the guest kernel:
//! `busctl SetUnitLimits` on a running CPU hog changes its use within seconds, freeze stops it
//! and thaw resumes it, restart-on-failure ends in start-limit-hit, a service that ignores
//! SIGTERM is killed at stop-timeout, orphans are reaped, effective limits name the binding
//! slice, `corralctl daemon-reexec` re-executes PID 1 with every service kept, and SIGTERM to
//! PID 1 stops every unit and powers the machine off.

#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn live_control_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/live");
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        .binary("/usr/bin/busctl", "/usr/bin/busctl")
        .dir("/var/log/corral", 0o755);
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(180))
        .run_reported("live");
    out.assert_passed(&[
        "set-limits-live",
        "runtime-dropin",
        "freeze-thaw",
        "restart-start-limit",
        "stop-timeout-kill",
        "zombies-reaped",
        "effective-binding",
        "reexec-pid1",
    ]);
    out.assert_all_passed();
    if !out.console.contains("every unit stopped") {
        out.fail("corrald did not stop every unit before powering off");
    }
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
